// SPDX-License-Identifier: Apache-2.0
//! Store::gc and Layer::cache_id.
mod common;

use common::*;
use rolayer::{ErrorKind, StoreOptions};

#[test]
fn gc_collects_only_what_nothing_keeps() {
    for driver in ["exact", "dir"] {
        let dir = tempdir();
        let (orphan_base, orphan_child, kept_base, kept, held) = {
            let store = open(dir.path(), driver);
            let b = store.register_bytes(None, &tar_of(&[("a", b"1")])).unwrap();
            let c = store
                .register_bytes(Some(b.chain_id()), &tar_of(&[("b", b"22")]))
                .unwrap();
            let kb = store
                .register_bytes(None, &tar_of(&[("c", b"333")]))
                .unwrap();
            let k = store
                .register_bytes(Some(kb.chain_id()), &tar_of(&[("d", b"4444")]))
                .unwrap();
            let h = store
                .register_bytes(None, &tar_of(&[("e", b"55555")]))
                .unwrap();
            store.retain(k.chain_id()).unwrap();
            (
                b.chain_id().clone(),
                c.chain_id().clone(),
                kb.chain_id().clone(),
                k.chain_id().clone(),
                h.chain_id().clone(),
            )
        }; // dropped and closed: nothing deleted
        let store = open(dir.path(), driver);
        assert_eq!(store.list().unwrap().len(), 5);
        let h = store.get(&held).unwrap();
        let removed = store.gc().unwrap();
        let ids: Vec<_> = removed.iter().map(|r| r.chain_id.clone()).collect();
        assert_eq!(
            ids,
            [orphan_child.clone(), orphan_base],
            "{driver}: child first"
        );
        assert_eq!(removed[0].diff_size, 2);
        let mut want = vec![kept_base, kept, held.clone()];
        want.sort();
        assert_eq!(listed(&store), want);
        assert!(store.get(&orphan_child).unwrap_err().is_not_found());
        assert!(store.gc().unwrap().is_empty(), "nothing more to collect");
        let removed = h.release().unwrap();
        assert_eq!(removed.len(), 1);
        assert_eq!(removed[0].chain_id, held);

        let ro = StoreOptions::new()
            .read_only(true)
            .open(dir.path())
            .unwrap();
        let e = ro.gc().unwrap_err();
        assert!(
            matches!(e.kind(), ErrorKind::Io { errno, .. } if *errno == libc_erofs()),
            "{driver}: gc on a read-only store: {e:?}"
        );
        assert_eq!(store.list().unwrap().len(), 2);
    }
}

/// EROFS on Linux.
fn libc_erofs() -> i32 {
    30
}

#[test]
fn cache_id_is_the_drivers_directory() {
    let dir = tempdir();
    let (id, cache) = {
        let store = open(dir.path(), "dir");
        let a = store.register_bytes(None, &empty_tar()).unwrap();
        let b = store
            .register_bytes(Some(a.chain_id()), &tar_of(&[("x", b"x")]))
            .unwrap();
        let cache = a.cache_id().to_owned();
        assert!(!cache.is_empty());
        assert_ne!(cache, b.cache_id());
        assert_ne!(cache, a.chain_id().as_str());
        assert!(dir.path().join("dir").join(&cache).is_dir());
        let again = store.get(a.chain_id()).unwrap();
        assert_eq!(again.cache_id(), cache);
        store.retain(b.chain_id()).unwrap();
        (a.chain_id().clone(), cache)
    };
    let store = open(dir.path(), "dir");
    assert_eq!(store.get(&id).unwrap().cache_id(), cache);
}

/// StoreOptions::payload_pack_max turns the dir driver's payload pack on, is kept in the store
/// (a later open without it keeps it, a negative value turns it off), and packed layers export
/// byte for byte.
#[test]
fn payload_pack_option_is_kept_and_exports_exactly() {
    let dir = tempdir();
    let data = tar_of(&[
        ("small", b"a small payload"),
        ("big", &[b'b'; 40 << 10]),
        ("tiny", b"t"),
    ]);
    let cache = {
        let store = StoreOptions::new()
            .driver("dir")
            .payload_pack_max(32 << 10)
            .open(dir.path())
            .unwrap();
        assert_eq!(store.payload_pack_max(), 32 << 10);
        let l = store.register_bytes(None, &data).unwrap();
        assert_eq!(export(&l), data, "the packed layer's export");
        l.cache_id().to_owned()
    };
    let pack = std::fs::read(dir.path().join("dir").join(&cache).join("meta/pack")).unwrap();
    assert_eq!(
        pack, b"a small payloadt",
        "the small payloads, in stream order"
    );
    let again = StoreOptions::new().open(dir.path()).unwrap();
    assert_eq!(again.payload_pack_max(), 32 << 10, "kept in the store");
    drop(again);
    let off = StoreOptions::new()
        .payload_pack_max(-1)
        .open(dir.path())
        .unwrap();
    assert_eq!(off.payload_pack_max(), 0);
    let m = off
        .register_bytes(None, &tar_of(&[("other", b"x")]))
        .unwrap();
    assert!(!dir
        .path()
        .join("dir")
        .join(m.cache_id())
        .join("meta/pack")
        .exists());
    let e = StoreOptions::new()
        .payload_pack_max(17 << 20)
        .open(tempdir().path())
        .unwrap_err();
    assert!(matches!(e.kind(), ErrorKind::InvalidArgument), "{e}");
}
