// SPDX-License-Identifier: Apache-2.0
//! Registering from any `Read`: failing, panicking and unusual readers.

mod common;

use std::error::Error as _;
use std::io::{self, Read};
use std::panic;

use common::*;
use rolayer::ErrorKind;

/// Yields `data`, then fails with `err` instead of reporting the end.
struct FailingReader {
    data: io::Cursor<Vec<u8>>,
    err: Option<io::Error>,
}

impl Read for FailingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        if n > 0 {
            return Ok(n);
        }
        Err(self
            .err
            .take()
            .unwrap_or_else(|| io::Error::other("read after failure")))
    }
}

#[test]
fn failing_reader_aborts_with_its_error_as_source() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = tar_of(&[("file", &[1u8; 4000][..])]);
    let reader = FailingReader {
        data: io::Cursor::new(tar[..1536].to_vec()),
        err: Some(io::Error::new(
            io::ErrorKind::ConnectionReset,
            "registry went away",
        )),
    };
    let err = store.register(None, reader).unwrap_err();
    assert!(
        matches!(err.kind(), ErrorKind::User { code, .. } if *code != 0),
        "{err:?}"
    );
    assert_eq!(err.code(), rolayer::sys::ROLAYER_EUSER);
    let src = err.source().expect("the reader's error is the source");
    let io_src = src.downcast_ref::<io::Error>().expect("an io::Error");
    assert_eq!(io_src.kind(), io::ErrorKind::ConnectionReset);
    assert_eq!(io_src.to_string(), "registry went away");
    assert!(err.to_string().contains("registry went away"), "{err}");
    // Into io::Error: the reader's kind, the rolayer::Error inside, the reader's error below it.
    let io_err = io::Error::from(err);
    assert_eq!(io_err.kind(), io::ErrorKind::ConnectionReset);
    let inner = io_err
        .get_ref()
        .unwrap()
        .downcast_ref::<rolayer::Error>()
        .unwrap();
    assert!(matches!(inner.kind(), ErrorKind::User { .. }));
    assert!(inner.source().unwrap().is::<io::Error>());
    // Nothing left behind; the store still works.
    assert!(store.list().unwrap().is_empty());
    assert_eq!(export(&store.register(None, &tar[..]).unwrap()), tar);
}

#[test]
fn failing_reader_at_first_read() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let reader = FailingReader {
        data: io::Cursor::new(Vec::new()),
        err: Some(io::Error::from(io::ErrorKind::PermissionDenied)),
    };
    let err = store.register(None, reader).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::User { .. }), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::PermissionDenied);
    assert!(store.list().unwrap().is_empty());
}

struct PanickingReader {
    data: io::Cursor<Vec<u8>>,
}

impl Read for PanickingReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.data.read(buf)?;
        if n == 0 {
            panic!("reader exploded");
        }
        Ok(n)
    }
}

#[test]
fn panicking_reader_is_resumed_after_the_call() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let tar = tar_of(&[("file", &[3u8; 2000][..])]);
    let result = panic::catch_unwind(panic::AssertUnwindSafe(|| {
        store.register(
            None,
            PanickingReader {
                data: io::Cursor::new(tar[..1024].to_vec()),
            },
        )
    }));
    let payload = result.expect_err("the panic comes back to the caller");
    assert_eq!(payload.downcast_ref::<&str>(), Some(&"reader exploded"));
    // The library cleaned up before the panic resumed, and the store is still usable.
    assert!(store.list().unwrap().is_empty());
    let layer = store.register(None, &tar[..]).unwrap();
    assert_eq!(export(&layer), tar);
}

#[test]
fn panic_with_a_string_payload_on_first_read() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    struct Boom;
    impl Read for Boom {
        fn read(&mut self, _: &mut [u8]) -> io::Result<usize> {
            let n = std::hint::black_box(42);
            panic!("formatted {n}");
        }
    }
    let payload =
        panic::catch_unwind(panic::AssertUnwindSafe(|| store.register(None, Boom))).unwrap_err();
    assert_eq!(
        payload.downcast_ref::<String>().map(String::as_str),
        Some("formatted 42")
    );
    assert!(store.list().unwrap().is_empty());
}

/// Returns `Interrupted` before every chunk and one byte at a time.
struct Stuttering {
    data: io::Cursor<Vec<u8>>,
    interrupt: bool,
}

impl Read for Stuttering {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.interrupt = !self.interrupt;
        if self.interrupt {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = buf.len().min(1);
        self.data.read(&mut buf[..n])
    }
}

#[test]
fn interrupted_and_tiny_reads_are_fine() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let layer = store
        .register(
            None,
            Stuttering {
                data: io::Cursor::new(empty_tar()),
                interrupt: false,
            },
        )
        .unwrap();
    assert_eq!(layer.chain_id().as_str(), EMPTY_ID);
}

#[test]
fn a_reader_that_overreports_is_an_error() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    struct Liar;
    impl Read for Liar {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            Ok(buf.len() + 1)
        }
    }
    let err = store.register(None, Liar).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::User { .. }), "{err:?}");
    assert_eq!(
        err.source()
            .unwrap()
            .downcast_ref::<io::Error>()
            .unwrap()
            .kind(),
        io::ErrorKind::InvalidData
    );
    assert!(store.list().unwrap().is_empty());
}

#[test]
fn reader_by_mutable_reference_and_trailing_bytes() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    // Bytes after the end-of-archive blocks count towards the DiffID and are exported too.
    let mut tar = tar_of(&[("a", b"b")]);
    tar.extend_from_slice(&[0u8; 4096]);
    let mut cursor = io::Cursor::new(tar.clone());
    let layer = store.register(None, &mut cursor).unwrap();
    assert_eq!(cursor.position() as usize, tar.len(), "read to the end");
    assert_eq!(layer.stream_size().unwrap(), tar.len() as u64);
    assert_eq!(export(&layer), tar);
}

#[test]
fn malformed_archives() {
    let dir = tempdir();
    let store = open(dir.path(), "exact");
    let mut bad = tar_of(&[("a", &[1u8; 600][..])]);
    bad.truncate(700);
    let err = store.register(None, &bad[..]).unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Archive { .. }), "{err:?}");
    assert_eq!(io::Error::from(err).kind(), io::ErrorKind::InvalidData);
    let err = store
        .register_bytes(None, &tar_with_raw_name(b"../escape", b"x"))
        .unwrap_err();
    assert!(matches!(err.kind(), ErrorKind::Unsafe { .. }), "{err:?}");
    assert!(store.list().unwrap().is_empty());
}
