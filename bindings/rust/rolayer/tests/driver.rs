// SPDX-License-Identifier: Apache-2.0
//! Drivers written in Rust (`rolayer::Driver`): an in-memory driver with and without exact
//! diffs registering and exporting the shared vectors byte for byte, a lying driver caught,
//! callbacks failing or panicking at each step, bad drivers refused, threads.

mod common;

use std::collections::HashMap;
use std::fs;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use common::*;
use rolayer::{
    sys, Capabilities, ChainId, Driver, DriverError, ErrorKind, Layer, Payload, Store, StoreOptions,
};

// ---- an in-memory driver ------------------------------------------------------------------

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Trap {
    Fail,
    Panic,
}

/// The C test's codes and messages (tests/c/test_user_driver.c), step by step.
fn trap_of(step: &str) -> (i32, &'static str) {
    match step {
        "create" => (5, "create refused by the test"),
        "remove" => (6, "remove refused by the test"),
        "apply" => (7, "disk full (test)"),
        "diff_open" => (8, "diff_open refused by the test"),
        "diff_read" => (10, "diff_read failed (test)"),
        "payload_open" => (11, "payload_open refused by the test"),
        "payload_read" => (13, "payload_read failed (test)"),
        "metadata" => (14, "metadata refused by the test"),
        other => panic!("no step {other}"),
    }
}

#[derive(Default)]
struct State {
    layers: HashMap<String, MemLayer>,
    traps: HashMap<&'static str, Trap>,
    lie: bool,
    open: usize, // diff streams and payloads open
}

struct MemLayer {
    parent: Option<String>,
    /// The stream as applied (what diff gives, in both modes).
    raw: Arc<Vec<u8>>,
    /// Payload mode: every regular file, in stream order, by cleaned path.
    files: Vec<(PathBuf, Arc<Vec<u8>>)>,
    /// The index in `files` just after the payload opened last: `payload` looks for the path
    /// from there on, then from the start (a new export). The C API does not say which export
    /// an open belongs to, so concurrent exports of one layer with a duplicated path could mix
    /// occurrences up (the store's verification would catch it).
    next: usize,
}

/// With `exact`, declares exact diffs and exports through `diff`; without, the store rebuilds
/// exports from its record and `payload`, keeping every occurrence of a path in order.
struct MemDriver {
    name: String,
    exact: bool,
    state: Arc<Mutex<State>>,
}

fn check(state: &Mutex<State>, step: &'static str) -> Result<(), DriverError> {
    let trap = state.lock().unwrap().traps.get(step).copied();
    match trap {
        Some(Trap::Fail) => {
            let (code, msg) = trap_of(step);
            Err(DriverError::new(code, msg))
        }
        Some(Trap::Panic) => panic!("{step} exploded"),
        None => Ok(()),
    }
}

impl MemDriver {
    fn new(exact: bool) -> Arc<MemDriver> {
        Arc::new(MemDriver {
            name: if exact {
                "rust-memory-exact"
            } else {
                "rust-memory"
            }
            .into(),
            exact,
            state: Arc::default(),
        })
    }

    fn named(exact: bool, name: &str) -> Arc<MemDriver> {
        Arc::new(MemDriver {
            name: name.into(),
            exact,
            state: Arc::default(),
        })
    }

    fn set(&self, step: &'static str, trap: Option<Trap>) {
        let mut st = self.state.lock().unwrap();
        match trap {
            Some(t) => st.traps.insert(step, t),
            None => st.traps.remove(step),
        };
    }

    fn count(&self) -> usize {
        self.state.lock().unwrap().layers.len()
    }

    fn open_count(&self) -> usize {
        self.state.lock().unwrap().open
    }
}

/// The cleaned relative path of an archive name: no leading `/`, `.` and `..` resolved.
fn clean(name: &[u8]) -> PathBuf {
    use std::os::unix::ffi::OsStrExt;
    let mut parts: Vec<&[u8]> = Vec::new();
    for part in name.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => {
                parts.pop();
            }
            p => parts.push(p),
        }
    }
    PathBuf::from(std::ffi::OsStr::from_bytes(&parts.join(&b'/')))
}

/// Every regular file of a tar, in order, with its content.
fn regular_files(data: &[u8]) -> io::Result<Vec<(PathBuf, Arc<Vec<u8>>)>> {
    let mut out = Vec::new();
    let mut archive = tar::Archive::new(data);
    for entry in archive.entries()? {
        let mut entry = entry?;
        let t = entry.header().entry_type();
        if t.is_file() || t.is_contiguous() || t.is_gnu_sparse() {
            let path = clean(&entry.path_bytes());
            let mut content = Vec::new();
            entry.read_to_end(&mut content)?;
            out.push((path, Arc::new(content)));
        }
    }
    Ok(out)
}

impl Driver for MemDriver {
    fn name(&self) -> &str {
        &self.name
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities::new().with_exact_diffs(self.exact)
    }

    fn create(&self, id: &str, parent: Option<&str>) -> Result<(), DriverError> {
        check(&self.state, "create")?;
        let mut st = self.state.lock().unwrap();
        if st.layers.contains_key(id) {
            return Err(format!("layer {id} exists").into());
        }
        if let Some(p) = parent {
            if !st.layers.contains_key(p) {
                return Err(format!("no parent {p}").into());
            }
        }
        st.layers.insert(
            id.to_owned(),
            MemLayer {
                parent: parent.map(str::to_owned),
                raw: Arc::default(),
                files: Vec::new(),
                next: 0,
            },
        );
        Ok(())
    }

    fn remove(&self, id: &str) -> Result<(), DriverError> {
        check(&self.state, "remove")?;
        self.state.lock().unwrap().layers.remove(id);
        Ok(())
    }

    fn apply_diff(
        &self,
        id: &str,
        _parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64, DriverError> {
        if !self.state.lock().unwrap().layers.contains_key(id) {
            return Err(format!("no such layer {id}").into());
        }
        // The trap fires once some input went through (as the C test's does after 512 bytes).
        let mut raw = Vec::new();
        diff.take(512).read_to_end(&mut raw)?;
        check(&self.state, "apply")?;
        diff.read_to_end(&mut raw)?;
        let files = if self.exact {
            Vec::new()
        } else {
            // A bad archive: the store finds it too, and its error is the one reported.
            regular_files(&raw).map_err(DriverError::other)?
        };
        let size = if self.exact {
            raw.len() as u64
        } else {
            files.iter().map(|(_, d)| d.len() as u64).sum()
        };
        let mut st = self.state.lock().unwrap();
        let l = st.layers.get_mut(id).unwrap();
        l.raw = Arc::new(raw);
        l.files = files;
        Ok(size)
    }

    fn diff(&self, id: &str, ancestor: Option<&str>) -> Result<Box<dyn Read + Send>, DriverError> {
        check(&self.state, "diff_open")?;
        let mut st = self.state.lock().unwrap();
        let l = st
            .layers
            .get(id)
            .ok_or_else(|| format!("no such layer {id}"))?;
        if ancestor != l.parent.as_deref() {
            return Err(DriverError::new(2, "only diffs against the parent"));
        }
        let mut data = (*l.raw).clone();
        if st.lie && !data.is_empty() {
            data[0] ^= 1; // claims fidelity, changes a byte
        }
        st.open += 1;
        Ok(Box::new(MemStream {
            state: Arc::clone(&self.state),
            data: io::Cursor::new(data),
        }))
    }

    fn payload(&self, id: &str, path: &Path) -> Result<Box<dyn Payload>, DriverError> {
        check(&self.state, "payload_open")?;
        let mut st = self.state.lock().unwrap();
        let l = st
            .layers
            .get_mut(id)
            .ok_or_else(|| format!("no such layer {id}"))?;
        let find = |from: usize| (from..l.files.len()).find(|&i| l.files[i].0 == path);
        let i = find(l.next)
            .or_else(|| find(0))
            .ok_or_else(|| DriverError::new(12, format!("no such file {path:?}")))?;
        l.next = i + 1;
        let data = Arc::clone(&l.files[i].1);
        st.open += 1;
        Ok(Box::new(MemPayload {
            state: Arc::clone(&self.state),
            data,
        }))
    }

    fn metadata(&self, id: &str) -> Result<Vec<(String, String)>, DriverError> {
        check(&self.state, "metadata")?;
        let st = self.state.lock().unwrap();
        let l = st
            .layers
            .get(id)
            .ok_or_else(|| format!("no such layer {id}"))?;
        Ok(vec![
            ("kind".into(), "memory".into()),
            ("bytes".into(), l.raw.len().to_string()),
        ])
    }
}

/// Gives at most 1000 bytes a read.
struct MemStream {
    state: Arc<Mutex<State>>,
    data: io::Cursor<Vec<u8>>,
}

impl Read for MemStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.data.position() > 0 {
            check(&self.state, "diff_read")?;
        }
        let n = buf.len().min(1000);
        self.data.read(&mut buf[..n])
    }
}

impl Drop for MemStream {
    fn drop(&mut self) {
        self.state.lock().unwrap().open -= 1;
    }
}

struct MemPayload {
    state: Arc<Mutex<State>>,
    data: Arc<Vec<u8>>,
}

impl Payload for MemPayload {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize> {
        check(&self.state, "payload_read")?;
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.data.len());
        let n = buf.len().min(self.data.len() - start);
        buf[..n].copy_from_slice(&self.data[start..start + n]);
        Ok(n)
    }
}

impl Drop for MemPayload {
    fn drop(&mut self) {
        self.state.lock().unwrap().open -= 1;
    }
}

// ---- helpers ------------------------------------------------------------------------------

fn open_with(dir: &Path, d: &Arc<MemDriver>) -> Store {
    StoreOptions::new()
        .custom_driver(Arc::clone(d))
        .open(dir)
        .unwrap_or_else(|e| panic!("open with a Rust driver: {e:?}"))
}

fn vector(name: &str) -> Vec<u8> {
    fs::read(vectors_dir().join("data").join(format!("{name}.tar"))).unwrap()
}

fn both_modes(f: impl Fn(Arc<MemDriver>)) {
    f(MemDriver::new(true));
    f(MemDriver::new(false));
}

/// The whole verified stream, or the error.
fn try_export(layer: &Layer<'_>) -> rolayer::Result<Vec<u8>> {
    let mut s = layer.tar_stream()?;
    let mut out = Vec::new();
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = s.read_raw(&mut buf)?;
        if n == 0 {
            return Ok(out);
        }
        out.extend_from_slice(&buf[..n]);
    }
}

#[track_caller]
fn want_callback_error(err: &rolayer::Error, code: i32, msg: &str) {
    match err.kind() {
        ErrorKind::User { code: c, .. } => {
            assert_eq!(*c, code, "{err:?}");
            assert!(err.message().contains(msg), "{err:?} lacks {msg:?}");
        }
        _ => panic!("{err:?}, want ErrorKind::User"),
    }
}

// ---- tests --------------------------------------------------------------------------------

#[test]
fn vectors_through_a_rust_driver() {
    let text = fs::read_to_string(vectors_dir().join("vectors.tsv")).unwrap();
    both_modes(|d| {
        let dir = tempdir();
        let store = open_with(dir.path(), &d);
        assert_eq!(store.driver(), d.name);
        let mut layers: HashMap<String, Layer<'_>> = HashMap::new();
        let mut order = Vec::new();
        for line in text.lines().skip(1).filter(|l| !l.trim().is_empty()) {
            let c: Vec<&str> = line.split('\t').collect();
            let (name, input, parent, diff_id, chain_id, error) =
                (c[0], c[1], c[2], c[3], c[4], c[5]);
            let data = fs::read(vectors_dir().join("data").join(input)).unwrap();
            let parent: Option<ChainId> = match parent {
                "-" => None,
                p if p.starts_with("sha256:") => Some(id(p)),
                p => Some(layers[p].chain_id().clone()),
            };
            let result = store.register(parent.as_ref(), &data[..]);
            if error != "-" {
                let err = result
                    .err()
                    .unwrap_or_else(|| panic!("{name}: registered, want {error}"));
                let want = match error {
                    "ROLAYER_EARCHIVE" => sys::ROLAYER_EARCHIVE,
                    "ROLAYER_EUNSAFE" => sys::ROLAYER_EUNSAFE,
                    "ROLAYER_ENOTFOUND" => sys::ROLAYER_ENOTFOUND,
                    other => panic!("{name}: unexpected code {other} in vectors.tsv"),
                };
                assert_eq!(err.code(), want, "{name} [{}]: {err:?}", d.name);
                continue;
            }
            let layer = result.unwrap_or_else(|e| panic!("{name} [{}]: {e:?}", d.name));
            assert_eq!(layer.diff_id().as_str(), diff_id, "{name}");
            assert_eq!(layer.chain_id().as_str(), chain_id, "{name}");
            let exported =
                try_export(&layer).unwrap_or_else(|e| panic!("{name} [{}]: {e:?}", d.name));
            assert!(exported == data, "{name} [{}]: export differs", d.name);
            layer.verify().unwrap();
            let md = layer.metadata().unwrap();
            assert!(md.contains(&("kind".into(), "memory".into())), "{md:?}");
            order.push(layer.chain_id().clone());
            layers.insert(name.to_owned(), layer);
        }
        assert_eq!(d.open_count(), 0, "diff streams or payloads left open");
        assert_eq!(d.count(), order.len(), "failed registrations left data");
        // Dropping would only close; releasing every reference deletes everything (children
        // keep their parents alive, so the order does not matter).
        for (_, layer) in layers {
            layer.release().unwrap();
        }
        assert!(store.list().unwrap().is_empty());
        assert_eq!(d.count(), 0);
        drop(store);
        assert_eq!(
            Arc::strong_count(&d),
            1,
            "the store kept the driver after it closed"
        );
    });
}

#[test]
fn tar_stream_from_is_the_drivers_diff() {
    both_modes(|d| {
        let dir = tempdir();
        let store = open_with(dir.path(), &d);
        let base = store.register(None, &vector("base")[..]).unwrap();
        let child_tar = vector("child");
        let child = store
            .register(Some(base.chain_id()), &child_tar[..])
            .unwrap();
        let mut diff = Vec::new();
        child
            .tar_stream_from(Some(base.chain_id()))
            .unwrap()
            .read_to_end(&mut diff)
            .unwrap();
        assert!(diff == child_tar);
        // The flattened chain is built by the store from the verified streams: the driver
        // (which only diffs against the parent) is not asked.
        let mut flat = Vec::new();
        child
            .tar_stream_from(None)
            .unwrap()
            .read_to_end(&mut flat)
            .unwrap();
        assert!(!flat.is_empty());
    });
}

#[test]
fn reopening_keeps_layers_and_checks_the_name() {
    both_modes(|d| {
        let dir = tempdir();
        let data = vector("gnu-longname");
        let id = {
            let store = open_with(dir.path(), &d);
            let l = store.register(None, &data[..]).unwrap();
            store.retain(l.chain_id()).unwrap();
            l.chain_id().clone()
        };
        assert_eq!(Arc::strong_count(&d), 1);
        let other = MemDriver::named(d.exact, "another");
        let err = StoreOptions::new()
            .custom_driver(Arc::clone(&other))
            .open(dir.path())
            .unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{err:?}");
        assert_eq!(
            Arc::strong_count(&other),
            1,
            "a failed open kept the driver"
        );
        let store = open_with(dir.path(), &d);
        let l = store.get(&id).unwrap();
        assert!(export(&l) == data);
        drop(l);
        store.unretain(&id).unwrap();
        assert_eq!(d.count(), 0);
    });
}

#[test]
fn a_lying_driver_is_caught() {
    let d = MemDriver::new(true);
    let dir = tempdir();
    let store = open_with(dir.path(), &d);
    let data = vector("base");
    let l = store.register(None, &data[..]).unwrap();
    d.state.lock().unwrap().lie = true;
    let err = try_export(&l).unwrap_err();
    match err.kind() {
        ErrorKind::Digest { diff_id, .. } => assert_eq!(diff_id.as_ref(), Some(l.diff_id())),
        _ => panic!("{err:?}, want Digest"),
    }
    assert!(err
        .message()
        .contains(&format!("could not verify layer data for: {}", l.diff_id())));
    assert!(l.verify().unwrap_err().is_verification());
    // Through std::io::Read too.
    let io_err = l
        .tar_stream()
        .unwrap()
        .read_to_end(&mut Vec::new())
        .unwrap_err();
    assert_eq!(io_err.kind(), io::ErrorKind::InvalidData);
    d.state.lock().unwrap().lie = false;
    assert!(export(&l) == data);
}

#[test]
fn callbacks_failing_or_panicking_at_each_step() {
    for trap in [Trap::Fail, Trap::Panic] {
        both_modes(|d| {
            let dir = tempdir();
            let data = vector("base");
            let want = |step: &'static str| match trap {
                Trap::Fail => (trap_of(step).0, trap_of(step).1.to_owned()),
                Trap::Panic => (DriverError::PANICKED, format!("panicked: {step} exploded")),
            };
            {
                let store = open_with(dir.path(), &d);
                // Register fails at create and at apply: nothing stays.
                for step in ["create", "apply"] {
                    d.set(step, Some(trap));
                    let err = store.register(None, &data[..]).unwrap_err();
                    let (code, msg) = want(step);
                    want_callback_error(&err, code, &msg);
                    d.set(step, None);
                }
                assert!(store.list().unwrap().is_empty());
                assert_eq!(d.count(), 0);
                // Export fails at each step it uses, then works again.
                let l = store.register(None, &data[..]).unwrap();
                let steps = if d.exact {
                    ["diff_open", "diff_read"]
                } else {
                    ["payload_open", "payload_read"]
                };
                for step in steps {
                    d.set(step, Some(trap));
                    let err = try_export(&l).unwrap_err();
                    let (code, msg) = want(step);
                    want_callback_error(&err, code, &msg);
                    d.set(step, None);
                    assert!(export(&l) == data, "export after {step} recovered");
                }
                assert_eq!(d.open_count(), 0);
                d.set("metadata", Some(trap));
                let (code, msg) = want("metadata");
                want_callback_error(&l.metadata().unwrap_err(), code, &msg);
                d.set("metadata", None);
                // A failing remove: the layer leaves the store at once, its data at the next open.
                d.set("remove", Some(trap));
                assert!(l.release().unwrap().len() == 1);
                assert!(store.list().unwrap().is_empty());
                assert_eq!(d.count(), 1);
                d.set("remove", None);
            }
            let _store = open_with(dir.path(), &d);
            assert_eq!(d.count(), 0, "reopening left the orphan");
        });
    }
}

/// A driver whose drop panics: the store's close does not unwind into C.
struct PanicOnDrop(Arc<MemDriver>);

impl Driver for PanicOnDrop {
    fn name(&self) -> &str {
        self.0.name()
    }
    fn capabilities(&self) -> Capabilities {
        self.0.capabilities()
    }
    fn create(&self, id: &str, parent: Option<&str>) -> Result<(), DriverError> {
        self.0.create(id, parent)
    }
    fn remove(&self, id: &str) -> Result<(), DriverError> {
        self.0.remove(id)
    }
    fn apply_diff(&self, id: &str, p: Option<&str>, r: &mut dyn Read) -> Result<u64, DriverError> {
        self.0.apply_diff(id, p, r)
    }
    fn diff(&self, id: &str, a: Option<&str>) -> Result<Box<dyn Read + Send>, DriverError> {
        self.0.diff(id, a)
    }
    // payload and metadata: the defaults (an exact driver needs no payloads).
}

impl Drop for PanicOnDrop {
    fn drop(&mut self) {
        panic!("dropping the driver exploded");
    }
}

#[test]
fn bad_drivers_are_refused_and_panicking_drops_are_contained() {
    let dir = tempdir();
    {
        let store = StoreOptions::new()
            .custom_driver(Arc::new(PanicOnDrop(MemDriver::new(true))))
            .open(dir.path())
            .unwrap();
        let l = store.register(None, &empty_tar()[..]).unwrap();
        assert!(export(&l) == empty_tar());
        // The default metadata is empty.
        assert!(l.metadata().unwrap().is_empty());
    } // the store closes, the driver's drop panics inside destroy: contained

    // A payload driver must give payloads: the default payload fails the export.
    struct NoPayloads(Arc<MemDriver>);
    impl Driver for NoPayloads {
        fn name(&self) -> &str {
            "no-payloads"
        }
        fn create(&self, id: &str, parent: Option<&str>) -> Result<(), DriverError> {
            self.0.create(id, parent)
        }
        fn remove(&self, id: &str) -> Result<(), DriverError> {
            self.0.remove(id)
        }
        fn apply_diff(
            &self,
            id: &str,
            p: Option<&str>,
            r: &mut dyn Read,
        ) -> Result<u64, DriverError> {
            self.0.apply_diff(id, p, r)
        }
        fn diff(&self, id: &str, a: Option<&str>) -> Result<Box<dyn Read + Send>, DriverError> {
            self.0.diff(id, a)
        }
    }
    let dir2 = tempdir();
    let store = StoreOptions::new()
        .custom_driver(Arc::new(NoPayloads(MemDriver::new(true))))
        .open(dir2.path())
        .unwrap();
    let l = store.register(None, &vector("base")[..]).unwrap();
    want_callback_error(
        &try_export(&l).unwrap_err(),
        DriverError::UNSUPPORTED,
        "no payload access",
    );
    drop(l);
    drop(store);

    for name in ["", "nul\0name"] {
        let d = MemDriver::named(false, name);
        let err = StoreOptions::new()
            .custom_driver(Arc::clone(&d))
            .open(tempdir().path())
            .unwrap_err();
        assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{name:?}: {err:?}");
        assert_eq!(
            Arc::strong_count(&d),
            1,
            "{name:?}: the failed open kept the driver"
        );
    }
    // Failures before the library takes the driver: no leak, no double free.
    let d = MemDriver::new(false);
    let err = StoreOptions::new()
        .custom_driver(Arc::clone(&d))
        .open("")
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    assert_eq!(Arc::strong_count(&d), 1);
    let err = StoreOptions::new()
        .driver("dir")
        .custom_driver(Arc::clone(&d))
        .open(tempdir().path())
        .unwrap_err();
    assert_eq!(*err.kind(), ErrorKind::InvalidArgument, "{err:?}");
    assert_eq!(Arc::strong_count(&d), 1);
    // Options stay usable (and printable) after a failure.
    let mut opts = StoreOptions::new();
    opts.custom_driver(Arc::clone(&d));
    assert!(format!("{opts:?}").contains("rust-memory"));
    let dir3 = tempdir();
    drop(opts.open(dir3.path()).unwrap());
    assert_eq!(Arc::strong_count(&d), 2); // opts still holds one
}

#[test]
fn threads_through_one_driver() {
    both_modes(|d| {
        let dir = tempdir();
        let store = open_with(dir.path(), &d);
        let base = store.register(None, &vector("base")[..]).unwrap();
        std::thread::scope(|s| {
            for w in 0..8 {
                let (store, base) = (&store, &base);
                s.spawn(move || {
                    for r in 0..5 {
                        let name = format!("w{w}/r{r}");
                        let body = vec![b'z'; 100 * w + r];
                        let data = tar_of(&[(&name, &body[..])]);
                        let l = store.register(Some(base.chain_id()), &data[..]).unwrap();
                        assert!(export(&l) == data);
                        l.release().unwrap();
                    }
                });
            }
        });
        drop(base);
        assert_eq!(d.count(), 0);
    });
}
