// SPDX-License-Identifier: Apache-2.0
//! Helpers shared by the integration tests.
#![allow(dead_code)]

use std::io::Read;
use std::path::{Path, PathBuf};

use rolayer::{ChainId, Store};

/// The ChainID (= DiffID) of the empty layer, 1024 zero bytes.
pub const EMPTY_ID: &str =
    "sha256:5f70bf18a086007016e948b04aed3b82103a36bea41755b6cddfaf10ace3c6ef";
/// The ChainID of the empty layer on top of itself.
pub const EMPTY_ON_EMPTY_ID: &str =
    "sha256:170b376f64fb30995c140276be3d71dfb256b308d86183ca3b22aa93a79ad548";

/// The empty layer: the end-of-archive blocks and nothing else.
pub fn empty_tar() -> Vec<u8> {
    vec![0u8; 1024]
}

/// A ustar archive of regular files (mode 0644, mtime 0), with its end-of-archive blocks.
pub fn tar_of(entries: &[(&str, &[u8])]) -> Vec<u8> {
    let mut b = tar::Builder::new(Vec::new());
    for (name, data) in entries {
        let mut h = tar::Header::new_ustar();
        h.set_path(name).unwrap();
        h.set_size(data.len() as u64);
        h.set_mode(0o644);
        h.set_mtime(0);
        h.set_uid(0);
        h.set_gid(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, *data).unwrap();
    }
    b.into_inner().unwrap()
}

/// A one-file archive whose name is written as given (the `tar` crate refuses `..`).
pub fn tar_with_raw_name(name: &[u8], data: &[u8]) -> Vec<u8> {
    let mut h = tar::Header::new_ustar();
    h.as_ustar_mut().unwrap().name[..name.len()].copy_from_slice(name);
    h.set_size(data.len() as u64);
    h.set_mode(0o644);
    h.set_mtime(0);
    h.set_entry_type(tar::EntryType::Regular);
    h.set_cksum();
    let mut out = h.as_bytes().to_vec();
    out.extend_from_slice(data);
    out.resize(out.len().div_ceil(512) * 512 + 1024, 0);
    out
}

/// A fresh temporary directory for a store.
pub fn tempdir() -> tempfile::TempDir {
    tempfile::Builder::new()
        .prefix("rolayer-rust-")
        .tempdir()
        .unwrap()
}

/// Opens a store with `driver` in `dir`.
pub fn open(dir: &Path, driver: &str) -> Store {
    Store::open_with_driver(dir, driver).unwrap_or_else(|e| panic!("open a {driver} store: {e}"))
}

/// The whole verified stream of `layer`.
pub fn export(layer: &rolayer::Layer<'_>) -> Vec<u8> {
    let mut v = Vec::new();
    layer.tar_stream().unwrap().read_to_end(&mut v).unwrap();
    v
}

/// The store's ChainIDs, sorted.
pub fn listed(store: &Store) -> Vec<ChainId> {
    let mut v = store.list().unwrap();
    v.sort();
    v
}

pub fn id(s: &str) -> ChainId {
    s.parse().unwrap()
}

/// tests/vectors at the project root.
pub fn vectors_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../../tests/vectors")
}

/// Every regular file under `dir`, recursively.
pub fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let e = e.unwrap();
            let t = e.file_type().unwrap();
            if t.is_dir() {
                stack.push(e.path());
            } else if t.is_file() {
                out.push(e.path());
            }
        }
    }
    out.sort();
    out
}
