// SPDX-License-Identifier: Apache-2.0
//! Dropping is not deleting: a `Layer` that goes out of scope, is never bound, or is dropped by
//! an unwinding panic only closes its handle. Deleting takes an explicit `release()`.
mod common;

use std::panic::{self, AssertUnwindSafe};

use common::*;

#[test]
fn an_unbound_register_keeps_the_layer() {
    let dir = tempdir();
    let tar = tar_of(&[("etc/motd", b"hello\n")]);
    let id = {
        let store = open(dir.path(), "dir");
        // The result is deliberately dropped unbound (the pattern #[must_use] warns about).
        #[allow(unused_must_use)]
        {
            store.register_bytes(None, &tar).unwrap();
        }
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1, "the unbound layer was deleted at once");
        listed[0].clone()
    }; // the store is closed here
    let store = open(dir.path(), "dir");
    assert_eq!(listed(&store), std::slice::from_ref(&id));
    let layer = store.get(&id).unwrap();
    assert_eq!(export(&layer), tar);
    layer.verify().unwrap();
    // Only the explicit release deletes it.
    let removed = layer.release().unwrap();
    assert_eq!(removed.len(), 1);
    assert_eq!(removed[0].chain_id, id);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn dropping_and_closing_a_chain_deletes_nothing() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let base = store.register_bytes(None, &empty_tar()).unwrap();
    let child = store
        .register_bytes(Some(base.chain_id()), &tar_of(&[("a", b"a")]))
        .unwrap();
    let (bid, cid) = (base.chain_id().clone(), child.chain_id().clone());
    let again = store.get(&cid).unwrap();
    drop(child);
    again.close();
    drop(base);
    let mut want = vec![bid.clone(), cid.clone()];
    want.sort();
    assert_eq!(listed(&store), want);
    // An explicit Store::release of the child deletes the chain (the cascade).
    let child = store.get(&cid).unwrap();
    let removed = store.release(child).unwrap();
    let removed: Vec<_> = removed.iter().map(|r| r.chain_id.clone()).collect();
    assert_eq!(removed, [cid, bid]);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn an_unwinding_panic_deletes_nothing() {
    let dir = tempdir();
    let store = open(dir.path(), "dir");
    let tars: Vec<Vec<u8>> = (0..3)
        .map(|i| tar_of(&[(&format!("file{i}") as &str, format!("{i}").as_bytes())]))
        .collect();
    let mut ids = Vec::new();
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        let mut held = Vec::new();
        let mut parent = None;
        for tar in &tars {
            let l = store.register_bytes(parent.as_ref(), tar).unwrap();
            parent = Some(l.chain_id().clone());
            ids.push(l.chain_id().clone());
            held.push(l);
        }
        let _alone = store.register_bytes(None, &empty_tar()).unwrap();
        ids.push(_alone.chain_id().clone());
        panic!("an error in the caller while it holds layers");
    }));
    assert!(result.is_err());
    assert_eq!(ids.len(), 4);
    let mut want = ids.clone();
    want.sort();
    assert_eq!(listed(&store), want, "the unwinding panic deleted layers");
    drop(store);
    // And they are all there, whole, after a reopen.
    let store = open(dir.path(), "dir");
    assert_eq!(listed(&store), want);
    for (id, tar) in ids.iter().zip(&tars) {
        assert_eq!(&export(&store.get(id).unwrap()), tar);
    }
}

#[test]
fn releasing_through_another_store_is_refused_and_deletes_nothing() {
    let (d1, d2) = (tempdir(), tempdir());
    let (s1, s2) = (open(d1.path(), "exact"), open(d2.path(), "exact"));
    let l = s1.register_bytes(None, &empty_tar()).unwrap();
    let id = l.chain_id().clone();
    assert!(s2.release(l).is_err());
    assert_eq!(listed(&s1), [id]);
}
