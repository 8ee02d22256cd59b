// SPDX-License-Identifier: Apache-2.0
//! Store::stage / Staged::commit (two-phase register) and Store::layers.
mod common;

use std::io::{self, Read};

use common::*;
use rolayer::{Descriptor, Digest, ErrorKind, RegisterOptions};

fn image() -> Vec<Vec<u8>> {
    vec![
        tar_of(&[("etc-os", b"base"), ("bin", b"sh")]),
        tar_of(&[("etc-os", b"second"), ("lib", b"libc")]),
        tar_of(&[("app", b"app")]),
        tar_of(&[("motd", b"hello"), ("app", b"app2")]),
    ]
}

#[test]
fn staged_in_parallel_commit_as_register() {
    for driver in ["exact", "dir"] {
        let layers = image();
        let ref_dir = tempdir();
        let reference = open(ref_dir.path(), driver);
        let mut want = Vec::new();
        let mut parent = None;
        for b in &layers {
            let l = reference.register_bytes(parent.as_ref(), b).unwrap();
            parent = Some(l.chain_id().clone());
            want.push(l.chain_id().clone());
        }

        let dir = tempdir();
        let store = open(dir.path(), driver);
        let opts = RegisterOptions::new();
        let staged: Vec<_> = std::thread::scope(|s| {
            let jobs: Vec<_> = layers
                .iter()
                .map(|b| {
                    let (store, opts) = (&store, &opts);
                    s.spawn(move || store.stage(&b[..], opts))
                })
                .collect();
            jobs.into_iter().map(|j| j.join().unwrap()).collect()
        });
        let mut parent = None;
        for (i, st) in staged.into_iter().enumerate() {
            let mut st = st.unwrap_or_else(|e| panic!("{driver}: stage {i}: {e}"));
            assert_eq!(st.stream_size(), layers[i].len() as u64);
            let l = st.commit(parent.as_ref()).unwrap();
            assert_eq!(l.chain_id(), &want[i], "{driver}: layer {i}");
            assert_eq!(l.diff_id(), st.diff_id());
            assert_eq!(export(&l), layers[i]);
            let again = st.commit(parent.as_ref()).unwrap_err();
            assert_eq!(again.kind(), &ErrorKind::InvalidArgument);
            parent = Some(l.chain_id().clone());
            drop(st); // after a commit: only the handle goes
        }
        let mut got = listed(&store);
        want.sort();
        got.sort();
        assert_eq!(got, want, "{driver}");
    }
}

struct Failing(usize);
impl Read for Failing {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "boom"));
        }
        let n = buf.len().min(self.0);
        buf[..n].fill(0);
        self.0 -= n;
        Ok(n)
    }
}

#[test]
fn failures_and_drops_leave_nothing() {
    for driver in ["exact", "dir"] {
        let layers = image();
        let dir = tempdir();
        let store = open(dir.path(), driver);
        let base = store.register_bytes(None, &layers[0]).unwrap();
        let before = files_under(dir.path());
        let opts = RegisterOptions::new();

        let e = store
            .stage(&b"not a tar archive at all"[..], &opts)
            .unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::Archive { .. }), "{e}");
        let e = store.stage(Failing(700), &opts).unwrap_err();
        assert!(matches!(e.kind(), ErrorKind::User { .. }), "{e}");
        let src = std::error::Error::source(&e).expect("the reader's error is the source");
        assert!(src.to_string().contains("boom"));

        // An unknown parent: the commit fails and the staged layer stays usable.
        let mut st = store.stage(&layers[1][..], &opts).unwrap();
        let unknown = id(&format!("sha256:{:064x}", 1));
        let e = st.commit(Some(&unknown)).unwrap_err();
        assert_eq!(e.kind(), &ErrorKind::NotFound, "{e}");
        let l = st.commit(Some(base.chain_id())).unwrap();
        assert_eq!(export(&l), layers[1]);
        l.release().unwrap();

        // Dropped or discarded without a commit: nothing stays.
        drop(store.stage(&layers[2][..], &opts).unwrap());
        store.stage(&layers[3][..], &opts).unwrap().discard();
        assert_eq!(files_under(dir.path()), before, "{driver}");
        assert_eq!(listed(&store), vec![base.chain_id().clone()]);
    }
}

#[test]
fn layers_match_the_getters() {
    for driver in ["exact", "dir"] {
        let layers = image();
        let dir = tempdir();
        let store = open(dir.path(), driver);
        let mut parent = None;
        let mut held = Vec::new();
        for (i, b) in layers.iter().enumerate() {
            let mut opts = RegisterOptions::new();
            if i == 2 {
                let d: Digest = format!("sha256:{:064x}", 7).parse().unwrap();
                opts = opts.descriptor(Descriptor::new(
                    "application/vnd.oci.image.layer.v1.tar+gzip",
                    d,
                    1234,
                ));
            }
            let l = store.register_with(parent.as_ref(), &b[..], &opts).unwrap();
            parent = Some(l.chain_id().clone());
            held.push(l);
        }
        store.retain(parent.as_ref().unwrap()).unwrap();
        let infos = store.layers().unwrap();
        assert_eq!(infos.len(), layers.len());
        for l in &held {
            let i = infos
                .iter()
                .find(|i| &i.chain_id == l.chain_id())
                .expect("listed");
            assert_eq!(&i.diff_id, l.diff_id());
            assert_eq!(i.parent.as_ref(), l.parent());
            assert_eq!(i.cache_id, l.cache_id());
            assert!(!i.cache_id.is_empty());
            assert_eq!(i.depth, l.depth());
            assert_eq!(i.size, l.size().unwrap());
            assert_eq!(i.diff_size, l.diff_size().unwrap());
            assert_eq!(i.stream_size, l.stream_size().unwrap());
            assert_eq!(i.descriptor, l.descriptor());
            assert_eq!(i.retained, store.retained(l.chain_id()).unwrap());
        }
    }
}
