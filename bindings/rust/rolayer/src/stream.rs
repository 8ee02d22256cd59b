// SPDX-License-Identifier: Apache-2.0
//! [`TarStream`]: a layer's tar stream as `std::io::Read`.

use std::fmt;
use std::io::{self, Read};
use std::marker::PhantomData;
use std::ptr::NonNull;

use rolayer_sys as sys;

use crate::error::{Error, Result};
use crate::store::Store;
use crate::util::call;

/// A layer's tar stream (`rolayer_tar_stream`), from [`Layer::tar_stream`](crate::Layer::tar_stream)
/// or [`Layer::tar_stream_from`](crate::Layer::tar_stream_from), both verified.
///
/// A verified stream is hashed as it is read. When the bytes do not match the DiffID, the read
/// that would have returned `Ok(0)` returns an `io::Error` instead (kind `InvalidData`), whose
/// `get_ref()` / `into_inner()` is a [`rolayer::Error`](crate::Error) of kind
/// [`Digest`](crate::ErrorKind::Digest); a stored payload whose size or checksum differs from
/// the record fails at that entry with [`Corrupt`](crate::ErrorKind::Corrupt). So `Ok(0)` from a
/// verified stream means the whole stream matched. After an error every later read fails the
/// same way.
///
/// The stream keeps its layer alive (the [`Layer`](crate::Layer) may be released while it is
/// open) and borrows the store. It is `Send` but not `Sync`: the C library lets a stream move
/// between threads, used by one at a time (and `Read` takes `&mut self` anyway).
pub struct TarStream<'s> {
    raw: NonNull<sys::rolayer_tar_stream>,
    _store: PhantomData<&'s Store>,
}

// SAFETY: stream.h: "A stream is used by one thread at a time but may move between threads."
// Not Sync: nothing may use it from two threads at once (the raw pointer keeps it !Sync).
unsafe impl Send for TarStream<'_> {}

impl TarStream<'_> {
    /// # Safety
    /// `raw` is a new stream from the library that nothing else owns.
    pub(crate) unsafe fn from_raw<'s>(raw: *mut sys::rolayer_tar_stream) -> Result<TarStream<'s>> {
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::invalid("the library returned no stream"))?;
        Ok(TarStream {
            raw,
            _store: PhantomData,
        })
    }

    /// Reads into `buf`, with the library's [`Error`] rather than an `io::Error`:
    /// `Ok(0)` only at the end (and, when verified, only if the stream matched). An empty
    /// `buf` is refused with an invalid-argument error.
    pub fn read_raw(&mut self, buf: &mut [u8]) -> Result<usize> {
        let mut n = 0usize;
        // SAFETY: a live stream used by this thread only (&mut self); buf is writable for its
        // length; n is valid.
        call(|err| unsafe {
            sys::rolayer_tar_stream_read(
                self.raw.as_ptr(),
                buf.as_mut_ptr().cast(),
                buf.len(),
                &mut n,
                err,
            )
        })?;
        Ok(n.min(buf.len()))
    }
}

impl Read for TarStream<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        // The C library refuses a read of 0 bytes (ROLAYER_EINVAL: it would look like the end
        // of the stream); std::io::Read asks for Ok(0) on an empty buffer.
        if buf.is_empty() {
            return Ok(0);
        }
        Ok(self.read_raw(buf)?)
    }
}

impl Drop for TarStream<'_> {
    fn drop(&mut self) {
        // SAFETY: we own the stream; closing early is fine.
        unsafe { sys::rolayer_tar_stream_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for TarStream<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TarStream").finish_non_exhaustive()
    }
}
