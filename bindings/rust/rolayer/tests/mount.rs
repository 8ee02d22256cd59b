// SPDX-License-Identifier: Apache-2.0
//! Lower directories and read-only overlay mounts (docs/mount.md).

mod common;

use common::*;
use rolayer::ErrorKind;

/// A base layer with files a and b, and a top layer that deletes a and adds c.
fn two_layers(store: &rolayer::Store) -> (rolayer::Layer<'_>, rolayer::Layer<'_>) {
    let base = store
        .register(None, &tar_of(&[("a", b"1"), ("b", b"2")])[..])
        .unwrap();
    let top = store
        .register(
            Some(base.chain_id()),
            &tar_of(&[(".wh.a", b""), ("c", b"3")])[..],
        )
        .unwrap();
    (base, top)
}

#[test]
fn lower_dirs_are_topmost_first_and_overlay_ready() {
    let dir = tempdir();
    let store = open(dir.path(), "dir");
    let (base, top) = two_layers(&store);
    let (dirs, _) = store.lower_dirs(top.chain_id()).unwrap();
    assert_eq!(dirs.len(), 2);
    assert!(dirs[0].ends_with("diff") && dirs[0] != dirs[1]);
    // The deletion of "a" is a whiteout object in the top layer's directory.
    assert!(std::fs::symlink_metadata(dirs[0].join("a")).is_ok());
    let (one, _) = store.lower_dirs(base.chain_id()).unwrap();
    assert_eq!(one.len(), 2, "a single layer comes with an empty directory");
    assert_eq!(one[0], dirs[1]);
}

#[test]
fn mount_and_unmount() {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc_geteuid() } != 0 {
        eprintln!("SKIP: mounting overlayfs needs root");
        return;
    }
    let dir = tempdir();
    let store = open(dir.path(), "dir");
    let (_base, top) = two_layers(&store);
    let mnt = tempdir();
    if let Err(e) = store.mount(top.chain_id(), mnt.path(), rolayer::MOUNT_NOSUID) {
        if matches!(e.kind(), ErrorKind::Unsupported) || e.message().contains("ENODEV") {
            eprintln!("SKIP: overlayfs unavailable: {e}");
            return;
        }
        panic!("mount: {e}");
    }
    assert!(!mnt.path().join("a").exists(), "a deleted file shows");
    assert_eq!(std::fs::read(mnt.path().join("c")).unwrap(), b"3");
    store.unmount(mnt.path()).unwrap();
    assert!(store.unmount(mnt.path()).unwrap_err().is_not_found());
}

extern "C" {
    #[link_name = "geteuid"]
    fn libc_geteuid() -> u32;
}
