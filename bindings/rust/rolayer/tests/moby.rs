// SPDX-License-Identifier: Apache-2.0
//! Behaviours of the Docker engine's layer store (moby `layer/`), through the safe API.

mod common;

use std::fs;
use std::io::{self, Read};

use common::*;
use rolayer::{ChainId, Descriptor, Digest, ErrorKind, RegisterOptions, Store, MAX_DEPTH};

fn ids(removed: &[rolayer::Removed]) -> Vec<&ChainId> {
    removed.iter().map(|r| &r.chain_id).collect()
}

fn cascade(driver: &str) {
    let dir = tempdir();
    let store = open(dir.path(), driver);
    let l1 = store
        .register_bytes(None, &tar_of(&[("a", b"one")]))
        .unwrap();
    let l2 = store
        .register_bytes(Some(l1.chain_id()), &tar_of(&[("b", b"two!")]))
        .unwrap();
    let l3a = store
        .register_bytes(Some(l2.chain_id()), &tar_of(&[("c", b"three-a")]))
        .unwrap();
    let l3b = store
        .register_bytes(Some(l2.chain_id()), &tar_of(&[("c", b"three-b..")]))
        .unwrap();
    let (id1, id2, id3a, id3b) = (
        l1.chain_id().clone(),
        l2.chain_id().clone(),
        l3a.chain_id().clone(),
        l3b.chain_id().clone(),
    );
    assert_eq!(
        (l1.depth(), l2.depth(), l3a.depth(), l3b.depth()),
        (1, 2, 3, 3)
    );
    assert_eq!(l3a.parent(), Some(&id2));
    assert_eq!(listed(&store).len(), 4);

    // Children hold their parents.
    assert!(l1.release().unwrap().is_empty());
    assert!(l2.release().unwrap().is_empty());
    assert_eq!(listed(&store).len(), 4);
    let removed = l3a.release().unwrap();
    assert_eq!(ids(&removed), [&id3a]);
    assert_eq!(removed[0].diff_size, 7);
    assert_eq!(removed[0].size, 3 + 4 + 7);
    // The last child goes, then its parent, then the base: child first.
    let removed = l3b.release().unwrap();
    assert_eq!(ids(&removed), [&id3b, &id2, &id1]);
    assert_eq!(
        removed.iter().map(|r| r.diff_size).collect::<Vec<_>>(),
        [9, 4, 3]
    );
    assert_eq!(
        removed.iter().map(|r| r.size).collect::<Vec<_>>(),
        [16, 7, 3]
    );
    assert!(removed
        .iter()
        .all(|r| r.diff_id.as_digest().algorithm() == "sha256"));
    assert!(store.list().unwrap().is_empty());
    assert!(store.get(&id1).unwrap_err().is_not_found());
}

#[test]
fn release_cascade_exact() {
    cascade("exact");
}

#[test]
fn release_cascade_dir() {
    cascade("dir");
}

#[test]
fn drop_closes_and_only_release_deletes() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let child_id = {
        let base = store.register_bytes(None, &tar_of(&[("a", b"x")])).unwrap();
        let child = store
            .register_bytes(Some(base.chain_id()), &tar_of(&[("b", b"y")]))
            .unwrap();
        assert_eq!(store.list().unwrap().len(), 2);
        child.chain_id().clone()
    }; // both handles dropped: closed, nothing deleted
    assert_eq!(store.list().unwrap().len(), 2);
    let child = store.get(&child_id).unwrap();
    assert_eq!(child.release().unwrap().len(), 2); // the child, then its parent
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn restore_after_reopen_with_retain() {
    let dir = tempdir();
    let (id1, id2, tar2) = {
        let store = open(dir.path(), "exact");
        let l1 = store
            .register_bytes(None, &tar_of(&[("etc/os-release", b"ID=test\n")]))
            .unwrap();
        let tar2 = tar_of(&[("usr/bin/tool", b"#!/bin/sh\necho hi\n")]);
        let l2 = store.register_bytes(Some(l1.chain_id()), &tar2).unwrap();
        store.retain(l2.chain_id()).unwrap();
        assert_eq!(store.retained(l2.chain_id()).unwrap(), 1);
        assert_eq!(store.retained(l1.chain_id()).unwrap(), 0);
        let ids = (l1.chain_id().clone(), l2.chain_id().clone());
        // The persistent reference keeps both layers when the handles go.
        assert!(l2.release().unwrap().is_empty());
        assert!(l1.release().unwrap().is_empty());
        (ids.0, ids.1, tar2)
    }; // the store is closed here

    let store = open(dir.path(), "exact");
    let mut want = vec![id1.clone(), id2.clone()];
    want.sort();
    assert_eq!(listed(&store), want);
    assert_eq!(store.retained(&id2).unwrap(), 1);
    let l2 = store.get(&id2).unwrap();
    assert_eq!(l2.parent(), Some(&id1));
    assert_eq!(l2.depth(), 2);
    assert_eq!(export(&l2), tar2);
    l2.verify().unwrap();
    // Dropping the persistent reference while a handle is open deletes nothing yet...
    assert!(store.unretain(&id2).unwrap().is_empty());
    assert_eq!(store.retained(&id2).unwrap(), 0);
    // ...and the handle was the last reference.
    assert_eq!(ids(&l2.release().unwrap()), [&id2, &id1]);
    assert!(store.list().unwrap().is_empty());
    drop(store);
    assert!(open(dir.path(), "exact").list().unwrap().is_empty());
}

#[test]
fn unretain_deletes_and_reports() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let l = store.register_bytes(None, &empty_tar()).unwrap();
    let id = l.chain_id().clone();
    store.retain(&id).unwrap();
    store.retain(&id).unwrap();
    drop(l);
    assert_eq!(store.retained(&id).unwrap(), 2);
    assert!(store.unretain(&id).unwrap().is_empty());
    assert_eq!(ids(&store.unretain(&id).unwrap()), [&id]);
    let err = store.unretain(&id).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::NotRetained | ErrorKind::NotFound),
        "{err:?}"
    );
}

#[test]
fn unretain_without_retain_is_not_retained() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let l = store.register_bytes(None, &empty_tar()).unwrap();
    let err = store.unretain(l.chain_id()).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotRetained, "{err:?}");
    assert_eq!(err.code(), rolayer::sys::ROLAYER_ENOTRETAINED);
}

#[test]
fn same_tar_twice() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = tar_of(&[("file", b"same content")]);
    let a = store.register_bytes(None, &tar).unwrap();
    let b = store.register(None, &tar[..]).unwrap();
    assert_eq!(a.chain_id(), b.chain_id());
    assert_eq!(a.diff_id(), b.diff_id());
    assert_eq!(store.list().unwrap(), [a.chain_id().clone()]);
    // Nothing of the duplicate stays behind: one stored copy.
    assert_eq!(
        files_under(&dir.path().join("exact"))
            .iter()
            .filter(|p| p.ends_with("layer.tar"))
            .count(),
        1
    );
    let id = a.chain_id().clone();
    assert!(a.release().unwrap().is_empty());
    assert_eq!(export(&b), tar);
    assert_eq!(ids(&b.release().unwrap()), [&id]);

    // The same tar on different parents makes different layers.
    let p1 = store.register_bytes(None, &tar_of(&[("p", b"1")])).unwrap();
    let p2 = store.register_bytes(None, &tar_of(&[("p", b"2")])).unwrap();
    let c1 = store.register_bytes(Some(p1.chain_id()), &tar).unwrap();
    let c2 = store.register_bytes(Some(p2.chain_id()), &tar).unwrap();
    assert_eq!(c1.diff_id(), c2.diff_id());
    assert_ne!(c1.chain_id(), c2.chain_id());
}

/// The only layer.tar under <root>/exact.
fn stored_tar(root: &std::path::Path) -> std::path::PathBuf {
    let files: Vec<_> = files_under(&root.join("exact"))
        .into_iter()
        .filter(|p| p.ends_with("layer.tar"))
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    files.into_iter().next().unwrap()
}

#[test]
fn verification_fails_after_modifying_stored_data() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = tar_of(&[("etc/passwd", b"root:x:0:0:root:/root:/bin/sh\n")]);
    let layer = store.register_bytes(None, &tar).unwrap();
    layer.verify().unwrap();

    // Flip one byte of the file's payload (right after its 512-byte header).
    let path = stored_tar(dir.path());
    let mut stored = fs::read(&path).unwrap();
    assert_eq!(stored, tar);
    stored[512] ^= 0x20;
    fs::write(&path, &stored).unwrap();

    // verify()
    let err = layer.verify().unwrap_err();
    match err.kind() {
        ErrorKind::Digest { diff_id, .. } => assert_eq!(diff_id.as_ref(), Some(layer.diff_id())),
        other => panic!("verify: {other:?}"),
    }
    assert!(err.is_verification());
    assert!(
        err.message().contains(&format!(
            "could not verify layer data for: {}",
            layer.diff_id()
        )),
        "{}",
        err.message()
    );

    // Read: the bytes before the damaged 1 MiB block come out (none here: the stream is one
    // block), then the read that would have returned them fails; no damaged byte goes out.
    let mut stream = layer.tar_stream().unwrap();
    let mut got = Vec::new();
    let mut buf = vec![0u8; 100];
    let io_err = loop {
        match stream.read(&mut buf) {
            Ok(0) => panic!("a modified layer read to the end without an error"),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break e,
        }
    };
    assert!(
        got.is_empty(),
        "no byte of the damaged block goes out ({} did)",
        got.len()
    );
    assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
    let inner = io_err
        .get_ref()
        .and_then(|e| e.downcast_ref::<rolayer::Error>())
        .expect("a rolayer::Error inside");
    assert!(
        matches!(inner.kind(), ErrorKind::Digest { .. }),
        "{inner:?}"
    );
    // The error is sticky.
    let again = stream.read(&mut buf).unwrap_err();
    assert_eq!(again.kind(), io::ErrorKind::InvalidData);
    // And read_to_end reports it too; into_inner gives the rolayer::Error back.
    let mut v = Vec::new();
    let e = layer.tar_stream().unwrap().read_to_end(&mut v).unwrap_err();
    let owned = e
        .into_inner()
        .unwrap()
        .downcast::<rolayer::Error>()
        .unwrap();
    assert!(matches!(owned.kind(), ErrorKind::Digest { .. }));

    // The diff against the parent (here: the empty chain) is verified too.
    let mut raw = Vec::new();
    let e = layer
        .tar_stream_from(None)
        .unwrap()
        .read_to_end(&mut raw)
        .unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidData);
    assert!(raw.is_empty());
}

#[test]
fn deleting_stored_data_is_an_error() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let layer = store
        .register_bytes(None, &tar_of(&[("f", b"data")]))
        .unwrap();
    fs::remove_file(stored_tar(dir.path())).unwrap();
    let err = layer.verify().unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Corrupt { .. } | ErrorKind::Io { .. }),
        "{err:?}"
    );
    let io_err = io::Error::from(err);
    assert!(io_err.get_ref().unwrap().is::<rolayer::Error>());
}

fn sizes(driver: &str) {
    let dir = tempdir();
    let store = open(dir.path(), driver);
    let tar1 = tar_of(&[("a", &[1u8; 1000][..]), ("b", b"12345")]);
    let l1 = store.register_bytes(None, &tar1).unwrap();
    let tar2 = tar_of(&[("c", &[2u8; 70000][..])]);
    let l2 = store.register_bytes(Some(l1.chain_id()), &tar2).unwrap();
    let l3 = store
        .register_bytes(Some(l2.chain_id()), &empty_tar())
        .unwrap();
    assert_eq!(l1.diff_size().unwrap(), 1005);
    assert_eq!(l1.size().unwrap(), 1005);
    assert_eq!(l2.diff_size().unwrap(), 70000);
    assert_eq!(l2.size().unwrap(), 71005);
    assert_eq!(l3.diff_size().unwrap(), 0);
    assert_eq!(l3.size().unwrap(), 71005);
    assert_eq!(l1.stream_size().unwrap(), tar1.len() as u64);
    assert_eq!(l2.stream_size().unwrap(), tar2.len() as u64);
    assert_eq!(l3.stream_size().unwrap(), 1024);
}

#[test]
fn sizes_exact() {
    sizes("exact");
}

#[test]
fn sizes_dir() {
    sizes("dir");
}

#[test]
fn empty_layer() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let empty = store.register(None, io::repeat(0).take(1024)).unwrap();
    assert_eq!(empty.chain_id().as_str(), EMPTY_ID);
    assert_eq!(empty.diff_id().as_str(), EMPTY_ID);
    assert_eq!(empty.parent(), None);
    assert_eq!(empty.depth(), 1);
    assert_eq!(empty.diff_size().unwrap(), 0);
    assert_eq!(empty.size().unwrap(), 0);
    assert_eq!(export(&empty), empty_tar());
    let on_empty = store
        .register(Some(empty.chain_id()), &empty_tar()[..])
        .unwrap();
    assert_eq!(on_empty.chain_id().as_str(), EMPTY_ON_EMPTY_ID);
    assert_eq!(on_empty.diff_id().as_str(), EMPTY_ID);
    assert_eq!(on_empty.parent().map(|p| p.as_str()), Some(EMPTY_ID));
    assert_eq!(on_empty.depth(), 2);
}

#[test]
fn max_depth() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = empty_tar();
    let mut top = store.register_bytes(None, &tar).unwrap();
    for depth in 2..=MAX_DEPTH {
        // The child keeps its parent: the parent's handle can go.
        top = store.register_bytes(Some(top.chain_id()), &tar).unwrap();
        assert_eq!(top.depth(), depth);
    }
    assert_eq!(top.depth(), 125);
    let err = store
        .register_bytes(Some(top.chain_id()), &tar)
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::MaxDepth, "{err:?}");
    let err = store.register(Some(top.chain_id()), &tar[..]).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::MaxDepth, "{err:?}");
    assert_eq!(
        store.list().unwrap().len(),
        125,
        "the failed registration left something behind"
    );
    assert_eq!(top.release().unwrap().len(), 125);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn unknown_and_malformed_ids() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let missing = id(&format!("sha256:{}", "0".repeat(64)));
    assert_eq!(
        *store.get(&missing).unwrap_err().kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        *store
            .register_bytes(Some(&missing), &empty_tar())
            .unwrap_err()
            .kind(),
        ErrorKind::NotFound
    );
    assert_eq!(
        *"sha256:xyz".parse::<ChainId>().unwrap_err().kind(),
        ErrorKind::InvalidArgument
    );
    let io_err: io::Error = store.get(&missing).unwrap_err().into();
    assert_eq!(io_err.kind(), io::ErrorKind::NotFound);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn descriptor_and_metadata() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let blob: Digest = format!("sha256:{}", "ab".repeat(32)).parse().unwrap();
    let d = Descriptor::new("application/vnd.oci.image.layer.v1.tar+gzip", blob, 4242);
    let opts = RegisterOptions::new().descriptor(d.clone());
    let tar = tar_of(&[("x", b"y")]);
    let layer = store.register_with(None, &tar[..], &opts).unwrap();
    assert_eq!(layer.descriptor(), Some(d.clone()));
    // Kept across reopen.
    let cid = layer.chain_id().clone();
    store.retain(&cid).unwrap();
    drop(layer);
    drop(store);
    let store = open(dir.path(), "exact");
    let layer = store.get(&cid).unwrap();
    assert_eq!(layer.descriptor(), Some(d));
    let md = layer.metadata().unwrap();
    assert!(!md.is_empty(), "the exact driver reports metadata");
    assert!(md.iter().all(|(k, _)| !k.is_empty()));

    let plain = store.register_bytes(None, &empty_tar()).unwrap();
    assert_eq!(plain.descriptor(), None);
}

#[test]
fn tar_stream_from_ancestors() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let base = store.register_bytes(None, &tar_of(&[("a", b"1")])).unwrap();
    let tar2 = tar_of(&[("b", b"2")]);
    let child = store.register_bytes(Some(base.chain_id()), &tar2).unwrap();
    let other = store.register_bytes(None, &tar_of(&[("z", b"9")])).unwrap();
    let mut v = Vec::new();
    child
        .tar_stream_from(Some(base.chain_id()))
        .unwrap()
        .read_to_end(&mut v)
        .unwrap();
    assert_eq!(v, tar2);
    let err = child.tar_stream_from(Some(other.chain_id())).unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::NotAncestor, "{err:?}");
    // The flattened chain, built by the store from the verified streams.
    let mut flat = Vec::new();
    child
        .tar_stream_from(None)
        .unwrap()
        .read_to_end(&mut flat)
        .unwrap();
    assert!(!flat.is_empty());
}

#[test]
fn stream_keeps_its_layer_alive() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = tar_of(&[("f", &[7u8; 5000][..])]);
    let layer = store.register_bytes(None, &tar).unwrap();
    let mut stream = layer.tar_stream().unwrap();
    assert!(
        layer.release().unwrap().is_empty(),
        "the open stream holds a reference"
    );
    assert_eq!(store.list().unwrap().len(), 1);
    let mut v = Vec::new();
    stream.read_to_end(&mut v).unwrap();
    assert_eq!(v, tar);
    drop(stream);
    assert!(
        store.list().unwrap().is_empty(),
        "the stream's reference was the last"
    );
}

#[test]
fn layer_try_clone_is_a_new_reference() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let a = store.register_bytes(None, &empty_tar()).unwrap();
    let b = a.try_clone().unwrap();
    assert!(a.release().unwrap().is_empty());
    assert_eq!(b.release().unwrap().len(), 1);
}

#[test]
fn reopen_with_another_driver_is_invalid() {
    let dir = tempdir();
    drop(open(dir.path(), "exact"));
    let err = Store::open_with_driver(dir.path(), "dir").unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    let err = Store::open_with_driver(dir.path(), "no-such-driver").unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{err:?}");
}

#[test]
fn store_accessors() {
    let dir = tempdir();
    let store = rolayer::StoreOptions::new()
        .driver("exact")
        .busy_timeout(std::time::Duration::from_millis(100))
        .open(dir.path())
        .unwrap();
    assert_eq!(store.driver(), "exact");
    assert_eq!(
        fs::canonicalize(store.root()).unwrap(),
        fs::canonicalize(dir.path()).unwrap()
    );
    assert_eq!(
        rolayer::version_number(),
        rolayer::sys::ROLAYER_VERSION_NUMBER
    );
    assert!(rolayer::version().starts_with("0.1."));
    assert!(format!("{store:?}").contains("exact"));
}

#[test]
fn verification_fails_after_modifying_a_file_in_a_dir_store() {
    let dir = tempdir();
    let store = open(dir.path(), "dir");
    let payload = b"root:x:0:0:root:/root:/bin/sh\n";
    let tar = tar_of(&[("etc/hostname", b"box\n"), ("etc/passwd", payload)]);
    let layer = store.register_bytes(None, &tar).unwrap();
    layer.verify().unwrap();

    // The stored copy of etc/passwd, found by its content.
    let stored: Vec<_> = files_under(dir.path())
        .into_iter()
        .filter(|p| p.ends_with("passwd") && fs::read(p).map(|c| c == payload).unwrap_or(false))
        .collect();
    assert_eq!(stored.len(), 1, "{stored:?}");
    let mut changed = payload.to_vec();
    changed[0] ^= 0x20;
    fs::write(&stored[0], &changed).unwrap();

    let err = layer.verify().unwrap_err();
    match err.kind() {
        // As moby's "file integrity checksum failed for <path>", naming the entry.
        ErrorKind::Corrupt { path, diff_id, .. } => {
            assert_eq!(path.as_deref(), Some("etc/passwd"), "{err:?}");
            assert_eq!(diff_id.as_ref(), Some(layer.diff_id()));
        }
        other => panic!("verify: {other:?}"),
    }
    assert!(err.is_verification());
    let mut v = Vec::new();
    let io_err = layer.tar_stream().unwrap().read_to_end(&mut v).unwrap_err();
    assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
    assert!(io_err
        .get_ref()
        .unwrap()
        .downcast_ref::<rolayer::Error>()
        .unwrap()
        .is_verification());
}

#[test]
fn dir_flattened_and_partial_diffs() {
    let dir = tempdir();
    let store = open(dir.path(), "dir");
    let base = store.register_bytes(None, &tar_of(&[("a", b"1")])).unwrap();
    let mid = store
        .register_bytes(Some(base.chain_id()), &tar_of(&[("b", b"22")]))
        .unwrap();
    let top = store
        .register_bytes(Some(mid.chain_id()), &tar_of(&[("c", b"333")]))
        .unwrap();
    let names = |s: rolayer::TarStream<'_>| -> Vec<String> {
        let mut a = tar::Archive::new(s);
        let mut v: Vec<String> = a
            .entries()
            .unwrap()
            .map(|e| {
                e.unwrap()
                    .path()
                    .unwrap()
                    .to_string_lossy()
                    .trim_end_matches('/')
                    .to_string()
            })
            .collect();
        v.sort();
        v
    };
    assert_eq!(names(top.tar_stream_from(None).unwrap()), ["a", "b", "c"]);
    assert_eq!(
        names(top.tar_stream_from(Some(base.chain_id())).unwrap()),
        ["b", "c"]
    );
    assert_eq!(
        names(top.tar_stream_from(Some(mid.chain_id())).unwrap()),
        ["c"]
    );
    let other = store.register_bytes(None, &tar_of(&[("z", b"9")])).unwrap();
    assert_eq!(
        *top.tar_stream_from(Some(other.chain_id()))
            .unwrap_err()
            .kind(),
        ErrorKind::NotAncestor
    );
}

#[test]
fn a_second_open_shares_the_store() {
    // The Docker engine's TestStoreRestore shape: a second Store on the same root while the
    // first is open (in this process, or in another) sees and reads its layers at once.
    let dir = tempdir();
    let first = open(dir.path(), "exact");
    let layer = first.register_bytes(None, &empty_tar()).unwrap();
    first.retain(layer.chain_id()).unwrap();
    let second = rolayer::StoreOptions::new()
        .driver("exact")
        .busy_timeout(std::time::Duration::ZERO)
        .open(dir.path())
        .unwrap();
    assert_eq!(second.list().unwrap().len(), 1);
    let again = second.get(layer.chain_id()).unwrap();
    let mut tar = Vec::new();
    again.tar_stream().unwrap().read_to_end(&mut tar).unwrap();
    assert_eq!(tar, empty_tar());
    drop(again);
    drop(layer);
    drop(first);
    assert_eq!(second.list().unwrap().len(), 1);
    // Read-only: reads work, writes fail with EROFS.
    let ro = rolayer::StoreOptions::new()
        .driver("exact")
        .read_only(true)
        .open(dir.path())
        .unwrap();
    assert_eq!(ro.list().unwrap().len(), 1);
    let err = ro.register_bytes(None, &empty_tar()).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::Io { errno: 30, .. }),
        "EROFS: {err:?}"
    );
}
