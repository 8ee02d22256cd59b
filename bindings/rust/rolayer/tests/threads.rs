// SPDX-License-Identifier: Apache-2.0
//! Send/Sync as the C library's threading rules say, and concurrent use.

mod common;

use std::io::Read;
use std::sync::{Arc, Barrier};
use std::thread;

use common::*;
use rolayer::{Layer, Store, TarStream};

fn assert_send_sync<T: Send + Sync>() {}
fn assert_send<T: Send>() {}

/// Compiles only when `T` is not `Sync` (an impl for `u8` would make the call ambiguous).
trait AmbiguousIfSync<A> {
    fn check() {}
}
impl<T: ?Sized> AmbiguousIfSync<()> for T {}
impl<T: ?Sized + Sync> AmbiguousIfSync<u8> for T {}

#[test]
fn auto_traits() {
    assert_send_sync::<Store>();
    assert_send_sync::<Layer<'static>>();
    assert_send::<TarStream<'static>>();
    <TarStream<'static> as AmbiguousIfSync<_>>::check();
    assert_send_sync::<rolayer::Error>();
    assert_send_sync::<rolayer::ChainId>();
}

#[test]
fn concurrent_register_export_release() {
    const THREADS: usize = 4;
    const PER_THREAD: usize = 8;
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let shared_tar = tar_of(&[("shared", b"every thread registers this")]);
    let base = store
        .register_bytes(None, &tar_of(&[("base", b"base layer")]))
        .unwrap();
    let barrier = Barrier::new(THREADS);
    thread::scope(|s| {
        let mut handles = Vec::new();
        for t in 0..THREADS {
            let (store, base, barrier, shared_tar) = (&store, &base, &barrier, &shared_tar);
            handles.push(s.spawn(move || {
                barrier.wait();
                // The same layer from every thread at once: one layer, many references.
                let shared = store.register(None, &shared_tar[..]).unwrap();
                let mut mine = Vec::new();
                for i in 0..PER_THREAD {
                    let content = format!("thread {t} layer {i}");
                    let tar = tar_of(&[("f", content.as_bytes())]);
                    let l = store.register(Some(base.chain_id()), &tar[..]).unwrap();
                    assert_eq!(l.parent(), Some(base.chain_id()));
                    assert_eq!(export(&l), tar);
                    base.verify().unwrap();
                    mine.push(l);
                }
                assert_eq!(export(&shared), *shared_tar);
                // Each child was the only reference to itself.
                for l in mine {
                    assert_eq!(l.release().unwrap().len(), 1);
                }
                shared
            }));
        }
        // The shared layer's references, one per thread, released here.
        for h in handles {
            h.join().unwrap().release().unwrap();
        }
    });
    assert_eq!(store.list().unwrap(), [base.chain_id().clone()]);
    assert_eq!(base.release().unwrap().len(), 1);
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn layers_and_streams_move_between_threads() {
    let dir = tempdir();
    let store = Arc::new(open(dir.path(), "exact"));
    let tar = tar_of(&[("big", &vec![0x5a; 300_000][..])]);
    let layer = store.register_bytes(None, &tar).unwrap();
    let mut stream = layer.tar_stream().unwrap();
    let mut first = vec![0u8; 1000];
    stream.read_exact(&mut first).unwrap();
    thread::scope(|s| {
        // A Layer shared by reference between threads (Sync).
        for _ in 0..3 {
            let layer = &layer;
            s.spawn(move || {
                layer.verify().unwrap();
                assert_eq!(layer.size().unwrap(), 300_000);
                assert!(!layer.metadata().unwrap().is_empty());
            });
        }
        // A stream moved to another thread and finished there (Send).
        let rest = s
            .spawn(move || {
                let mut rest = Vec::new();
                stream.read_to_end(&mut rest).unwrap();
                rest
            })
            .join()
            .unwrap();
        first.extend(rest);
    });
    assert_eq!(first, tar);
    // A Layer moved into another thread and released there.
    let removed = thread::scope(|s| s.spawn(move || layer.release().unwrap()).join().unwrap());
    assert_eq!(removed.len(), 1);
}
