// SPDX-License-Identifier: Apache-2.0
//! The shared conformance vectors (tests/vectors/vectors.tsv): register every row in order,
//! check the ids or the error, and export each registered layer byte for byte.

mod common;

use std::collections::{BTreeSet, HashMap};
use std::fs;

use common::*;
use rolayer::{sys, ChainId, ErrorKind, Layer};

struct Row {
    name: String,
    input: String,
    parent: String,
    diff_id: String,
    chain_id: String,
    error: String,
}

fn rows() -> Vec<Row> {
    let text =
        fs::read_to_string(vectors_dir().join("vectors.tsv")).expect("tests/vectors/vectors.tsv");
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().unwrap().split('\t').collect();
    assert_eq!(
        header,
        ["name", "input", "parent", "diff_id", "chain_id", "error"],
        "vectors.tsv columns"
    );
    lines
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 6, "row {l:?}");
            Row {
                name: c[0].into(),
                input: c[1].into(),
                parent: c[2].into(),
                diff_id: c[3].into(),
                chain_id: c[4].into(),
                error: c[5].into(),
            }
        })
        .collect()
}

fn code_of(name: &str) -> i32 {
    match name {
        "ROLAYER_EINVAL" => sys::ROLAYER_EINVAL,
        "ROLAYER_ENOTFOUND" => sys::ROLAYER_ENOTFOUND,
        "ROLAYER_EEXISTS" => sys::ROLAYER_EEXISTS,
        "ROLAYER_ENOTRETAINED" => sys::ROLAYER_ENOTRETAINED,
        "ROLAYER_EMAXDEPTH" => sys::ROLAYER_EMAXDEPTH,
        "ROLAYER_ENOTANCESTOR" => sys::ROLAYER_ENOTANCESTOR,
        "ROLAYER_EDIGEST" => sys::ROLAYER_EDIGEST,
        "ROLAYER_ECORRUPT" => sys::ROLAYER_ECORRUPT,
        "ROLAYER_EARCHIVE" => sys::ROLAYER_EARCHIVE,
        "ROLAYER_EUNSAFE" => sys::ROLAYER_EUNSAFE,
        "ROLAYER_EIO" => sys::ROLAYER_EIO,
        "ROLAYER_ENOMEM" => sys::ROLAYER_ENOMEM,
        "ROLAYER_EUSER" => sys::ROLAYER_EUSER,
        "ROLAYER_EBUSY" => sys::ROLAYER_EBUSY,
        "ROLAYER_EUNSUPPORTED" => sys::ROLAYER_EUNSUPPORTED,
        other => panic!("unknown status code {other} in vectors.tsv"),
    }
}

fn run_vectors(driver: &str) {
    let dir = tempdir();
    let store = open(dir.path(), driver);
    let rows = rows();
    assert!(rows.len() >= 10, "only {} vectors", rows.len());
    // Keep every registered layer: a later row may use it as its parent.
    let mut layers: HashMap<String, Layer<'_>> = HashMap::new();
    let mut expected_ids = BTreeSet::new();
    for (i, row) in rows.iter().enumerate() {
        let data = fs::read(vectors_dir().join("data").join(&row.input)).unwrap();
        let parent: Option<ChainId> = match row.parent.as_str() {
            "-" => None,
            p if p.starts_with("sha256:") => Some(id(p)),
            p => Some(
                layers
                    .get(p)
                    .unwrap_or_else(|| panic!("{}: no earlier row {p}", row.name))
                    .chain_id()
                    .clone(),
            ),
        };
        // Exercise the three ways in: a Read through the callback, memory, a file descriptor.
        let result = match i % 3 {
            0 => store.register(
                parent.as_ref(),
                fs::File::open(vectors_dir().join("data").join(&row.input)).unwrap(),
            ),
            1 => store.register_bytes(parent.as_ref(), &data),
            _ => store.register_fd(
                parent.as_ref(),
                fs::File::open(vectors_dir().join("data").join(&row.input)).unwrap(),
            ),
        };
        if row.error != "-" {
            let err = result.err().unwrap_or_else(|| {
                panic!("{} [{driver}]: registered, want {}", row.name, row.error)
            });
            assert_eq!(
                err.code(),
                code_of(&row.error),
                "{} [{driver}]: {err:?}, want {}",
                row.name,
                row.error
            );
            if row.error == "ROLAYER_ENOTFOUND" {
                assert_eq!(*err.kind(), ErrorKind::NotFound);
            }
            continue;
        }
        let layer = result.unwrap_or_else(|e| panic!("{} [{driver}]: {e:?}", row.name));
        assert_eq!(
            layer.diff_id().as_str(),
            row.diff_id,
            "{} [{driver}]: DiffID",
            row.name
        );
        assert_eq!(
            layer.chain_id().as_str(),
            row.chain_id,
            "{} [{driver}]: ChainID",
            row.name
        );
        assert_eq!(
            layer.parent(),
            parent.as_ref(),
            "{} [{driver}]: parent",
            row.name
        );
        assert_eq!(
            layer.stream_size().unwrap(),
            data.len() as u64,
            "{} [{driver}]: stream size",
            row.name
        );
        let exported = export(&layer);
        assert!(
            exported == data,
            "{} [{driver}]: export differs ({} bytes, want {})",
            row.name,
            exported.len(),
            data.len()
        );
        layer
            .verify()
            .unwrap_or_else(|e| panic!("{} [{driver}]: verify: {e:?}", row.name));
        expected_ids.insert(layer.chain_id().clone());
        layers.insert(row.name.clone(), layer);
    }
    // Failed rows left nothing behind.
    assert_eq!(
        listed(&store).into_iter().collect::<BTreeSet<_>>(),
        expected_ids
    );
    // Children keep parents alive, so releasing in any order deletes everything in the end.
    for (_, layer) in layers {
        layer.release().unwrap();
    }
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn vectors_on_exact() {
    run_vectors("exact");
}

#[test]
fn vectors_on_dir() {
    run_vectors("dir");
}
