// SPDX-License-Identifier: Apache-2.0
//! rolayer::docker on the committed fixture tests/docker/fixture-vfs (a 2-layer image loaded by
//! dockerd 20.10 with the vfs driver), copied to a temporary directory.
mod common;

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use rolayer::docker::Root;
use rolayer::ErrorKind;

const BASE: &str = "sha256:b1162fda67a9705057b015ca3aa2c7321b0ffcf47ae8742153cd3f2272a975f7";
const TOP: &str = "sha256:3a073f3d534f5cf51952ef675d12f55dd4c9846525dc296bc30177bd8c03631c";
/// sha256 of the top layer's stream (what `docker save` gives; tests/docker/fixture_cli_test.sh).
const TOP_STREAM_SHA: &str = "1e92951b88c83031f52e5273ebb8041940c79517180d3116b12e88fcec515236";

fn fixture(dir: &Path) -> PathBuf {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../../tests/docker/fixture-vfs");
    assert!(
        src.join("image").is_dir(),
        "the fixture is missing: {}",
        src.display()
    );
    let dst = dir.join("root");
    let st = Command::new("cp")
        .arg("-a")
        .arg(&src)
        .arg(&dst)
        .status()
        .unwrap();
    assert!(st.success(), "copy the fixture");
    dst
}

/// sha256 hex of everything `r` gives (the DiffID a rolayer store computes for it when it is a
/// tar), its length, and the read error if any.
fn sha256_hex(mut r: impl Read) -> (String, u64, Result<(), std::io::Error>) {
    let mut data = Vec::new();
    let res = r.read_to_end(&mut data).map(|_| ());
    if res.is_err() {
        return (String::new(), data.len() as u64, res);
    }
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let layer = store.register_bytes(None, &data).unwrap();
    let sum = layer
        .diff_id()
        .as_str()
        .trim_start_matches("sha256:")
        .to_owned();
    (sum, data.len() as u64, res)
}

#[test]
fn layers_and_resolve() {
    let dir = tempdir();
    let root_dir = fixture(dir.path());
    let root = Root::open(&root_dir, None).unwrap();
    assert_eq!(root.driver(), "vfs");
    let ls = root.layers().unwrap();
    let ids: Vec<_> = ls.iter().map(|l| l.chain_id.as_str()).collect();
    assert_eq!(ids, [BASE, TOP], "parents first");
    assert_eq!(ls[0].parent, None);
    assert_eq!(ls[1].parent.as_ref().map(|p| p.as_str()), Some(BASE));
    for l in &ls {
        let cache = std::fs::read_to_string(
            root_dir
                .join("image/vfs/layerdb/sha256")
                .join(&l.chain_id.as_str()[7..])
                .join("cache-id"),
        )
        .unwrap();
        assert_eq!(l.cache_id, cache.trim());
        assert!(
            l.error.is_none() && l.diff_id.is_some() && l.descriptor.is_none(),
            "{l:?}"
        );
    }
    assert_eq!(root.layer(TOP).unwrap(), ls[1]);
    let zero = format!("sha256:{}", "0".repeat(64));
    assert!(root.layer(&zero).unwrap_err().is_not_found());
    assert!(matches!(
        root.layer("sha256:xyz").unwrap_err().kind(),
        ErrorKind::InvalidArgument
    ));
    for r in [
        "fixture:2layers",
        "docker.io/library/fixture:2layers",
        TOP,
        "3a073f",
    ] {
        let chain = root.resolve(r).unwrap();
        let chain: Vec<_> = chain.iter().map(|c| c.as_str()).collect();
        assert_eq!(chain, [BASE, TOP], "resolve {r}");
    }
    assert!(root.resolve("nosuch:tag").unwrap_err().is_not_found());
}

#[test]
fn open_errors() {
    let dir = tempdir();
    assert!(Root::open(dir.path().join("none"), None)
        .unwrap_err()
        .is_not_found());
    std::fs::create_dir_all(dir.path().join("zfs/image/zfs/layerdb/sha256")).unwrap();
    let e = Root::open(dir.path().join("zfs"), None).unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::Unsupported), "{e:?}");
    assert!(e.message().contains("zfs"), "{e}");
    let root_dir = fixture(dir.path());
    assert!(Root::open(root_dir, Some("overlay2")).is_err());
}

#[test]
fn streams_verify_and_outlive_the_root() {
    let dir = tempdir();
    let root = Root::open(fixture(dir.path()), Some("vfs")).unwrap();
    let (sum, n, res) = sha256_hex(root.tar_stream(TOP).unwrap());
    res.unwrap();
    assert_eq!(sum, TOP_STREAM_SHA);
    assert_eq!(root.verify(TOP).unwrap(), n);
    let ls = root.layers().unwrap();
    std::thread::scope(|s| {
        for _ in 0..3 {
            for l in &ls {
                let root = &root;
                s.spawn(move || {
                    let (sum, _, res) = sha256_hex(root.tar_stream(l.chain_id.as_str()).unwrap());
                    res.unwrap();
                    assert_eq!(
                        format!("sha256:{sum}"),
                        l.diff_id.as_ref().unwrap().as_str()
                    );
                });
            }
        }
    });
    let stream = root.tar_stream(BASE).unwrap();
    drop(root);
    let (sum, _, res) = sha256_hex(stream);
    res.unwrap();
    assert_eq!(
        format!("sha256:{sum}"),
        ls[0].diff_id.as_ref().unwrap().as_str()
    );
}

#[test]
fn damage_is_reported_with_the_path() {
    let dir = tempdir();
    let root_dir = fixture(dir.path());
    let root = Root::open(&root_dir, None).unwrap();
    let top = root.layer(TOP).unwrap();
    std::fs::write(
        root_dir
            .join("vfs/dir")
            .join(&top.cache_id)
            .join("etc/hello"),
        b"chanGed\n",
    )
    .unwrap();
    let e = root.verify(TOP).unwrap_err();
    assert!(
        matches!(e.kind(), ErrorKind::Corrupt { path: Some(p), .. } if p == "etc/hello"),
        "{e:?}"
    );
    assert!(e.message().contains("content differs"), "{e}");
    let mut data = Vec::new();
    let ioe = root
        .tar_stream(TOP)
        .unwrap()
        .read_to_end(&mut data)
        .unwrap_err();
    let inner = ioe
        .get_ref()
        .and_then(|e| e.downcast_ref::<rolayer::Error>())
        .expect("a rolayer::Error inside");
    assert!(
        matches!(inner.kind(), ErrorKind::Corrupt { .. }),
        "{inner:?}"
    );
    assert!(
        !data.windows(7).any(|w| w == b"chanGed"),
        "the changed bytes were returned"
    );
    root.verify(BASE).unwrap();
    std::fs::remove_file(
        root_dir
            .join("image/vfs/layerdb/sha256")
            .join(&BASE[7..])
            .join("diff"),
    )
    .unwrap();
    let ls = root.layers().unwrap();
    let last = ls.last().unwrap();
    assert_eq!(last.chain_id.as_str(), BASE);
    assert!(last.error.is_some() && last.diff_id.is_none(), "{ls:?}");
    assert!(matches!(
        root.layer(BASE).unwrap_err().kind(),
        ErrorKind::Corrupt { .. }
    ));
}
