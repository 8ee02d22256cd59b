// SPDX-License-Identifier: Apache-2.0
//! Graph drivers written in Rust: the [`Driver`] trait, given to a store with
//! [`StoreOptions::custom_driver`](crate::StoreOptions::custom_driver) and called through the C
//! ABI (`rolayer_driver_ops`, `include/rolayer/driver.h`; the contract is `docs/drivers.md`).

use std::any::Any;
use std::error::Error as StdError;
use std::ffi::{c_char, c_int, c_void, CStr, CString, OsStr};
use std::fmt;
use std::io::{self, Read};
use std::os::unix::ffi::OsStrExt;
use std::panic::{self, AssertUnwindSafe};
use std::path::Path;
use std::ptr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use rolayer_sys as sys;

use crate::util;

/// A graph driver: it stores the layers' data in place of a built-in driver ("dir", "exact").
///
/// Layers are named by ids the store chooses (not ChainIDs); a parent by its own id (None for
/// a base layer). The store calls the methods on the thread of the call that needs them
/// ([`Store::register`](crate::Store::register) calls `create` and `apply_diff`, reading a
/// [`TarStream`](crate::TarStream) calls `diff` or `payload`, a release calls `remove`, …),
/// possibly from several threads at once for different layers, never at once for one layer;
/// hence `Send + Sync`. A driver must not call back into the store that uses it.
///
/// A method's [`DriverError`] fails the operation with [`ErrorKind::User`](crate::ErrorKind::User)
/// whose `code` is the error's [`code`](DriverError::code) and whose message carries the
/// error's text. A panic in a method is caught before it reaches C (`catch_unwind`) and fails
/// the operation the same way, with code [`DriverError::PANICKED`] and the panic's message; it is
/// not resumed. Either way the store stays consistent: a failed register leaves nothing behind,
/// a failed `remove` leaves a mark that the next open retries.
///
/// The store keeps the driver until it is closed (dropped); the driver itself is dropped then,
/// or when opening fails, unless the caller keeps another `Arc` of it.
pub trait Driver: Send + Sync + 'static {
    /// Recorded in the store when it is created: reopening needs a driver of the same name.
    /// Read once, when the store opens.
    fn name(&self) -> &str;

    /// What the driver declares; read once, when the store opens. None by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::new()
    }

    /// Makes empty storage for layer `id` on top of `parent`.
    fn create(&self, id: &str, parent: Option<&str>) -> Result<(), DriverError>;

    /// Deletes layer `id`'s storage. Removing an id that does not exist succeeds.
    fn remove(&self, id: &str) -> Result<(), DriverError>;

    /// Stores the uncompressed tar read from `diff` (it need not be read to its end) in layer
    /// `id` and returns the bytes the layer stores. The data must be durable when it returns
    /// `Ok`. `diff` is valid during the call only (it cannot leave this thread).
    fn apply_diff(
        &self,
        id: &str,
        parent: Option<&str>,
        diff: &mut dyn Read,
    ) -> Result<u64, DriverError>;

    /// The differences of layer `id` against `ancestor` (None: the whole flattened chain) as a
    /// tar stream. With [`Capabilities::exact_diffs`], the diff against the parent must be the
    /// registered stream byte for byte (the store verifies it against the DiffID). The stream is
    /// read by one thread at a time (it may move between threads), then dropped.
    fn diff(&self, id: &str, ancestor: Option<&str>) -> Result<Box<dyn Read + Send>, DriverError>;

    /// Opens the content of a regular file of layer `id`, named by its cleaned relative path as
    /// applied (no leading `/`, `.` and `..` resolved; the archive's bytes, which need not be
    /// UTF-8), for random access; holes read as zeros.
    /// Without [`Capabilities::exact_diffs`] the store rebuilds exports from it: it opens each
    /// regular file of the registered stream in stream order (so a path that occurs twice is
    /// opened twice) and reads it at offsets of the file's content. Drivers with exact diffs
    /// need not implement it (the default fails with [`DriverError::UNSUPPORTED`]).
    fn payload(&self, id: &str, path: &Path) -> Result<Box<dyn Payload>, DriverError> {
        let _ = (id, path);
        Err(DriverError::new(
            DriverError::UNSUPPORTED,
            "this driver gives no payload access",
        ))
    }

    /// Describes layer `id` as key/value pairs ([`Layer::metadata`](crate::Layer::metadata)).
    /// None by default.
    fn metadata(&self, id: &str) -> Result<Vec<(String, String)>, DriverError> {
        let _ = id;
        Ok(Vec::new())
    }
}

/// An open regular-file payload of a [`Driver`] (see [`Driver::payload`]).
pub trait Payload: Send {
    /// Reads up to `buf.len()` bytes at `offset` of the file's content; `Ok(0)` at the end.
    /// An `io::Error` that wraps a [`DriverError`] keeps its code.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<usize>;
}

/// What a [`Driver`] declares to the store.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub struct Capabilities {
    /// `diff(id, parent)` reproduces the registered stream byte for byte. The store then keeps
    /// no record of its own and exports that diff, still verified against the DiffID (a driver
    /// that claims it and lies is caught with [`ErrorKind::Digest`](crate::ErrorKind::Digest)).
    /// Without it the store records every non-payload byte at register and reads the payloads
    /// back through [`Driver::payload`].
    pub exact_diffs: bool,
}

impl Capabilities {
    /// No capability.
    pub const fn new() -> Capabilities {
        Capabilities { exact_diffs: false }
    }

    /// Sets [`exact_diffs`](Capabilities::exact_diffs).
    pub const fn with_exact_diffs(mut self, exact: bool) -> Capabilities {
        self.exact_diffs = exact;
        self
    }
}

/// A [`Driver`] method's failure: the code the store reports
/// ([`ErrorKind::User`](crate::ErrorKind::User)'s `code`) and a message.
///
/// `?` converts an `io::Error` (keeping the code of a `DriverError` it wraps, else
/// [`DriverError::FAILED`]), a `String`, a `&str`, or a boxed error.
pub struct DriverError {
    code: i32,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl DriverError {
    /// The code of a failure that does not choose one.
    pub const FAILED: i32 = 1;
    /// The code of a panicking method.
    pub const PANICKED: i32 = 2;
    /// The code of the default [`Driver::payload`].
    pub const UNSUPPORTED: i32 = 3;

    /// A failure with `code` (0 is taken as [`FAILED`](DriverError::FAILED)) and `message`.
    pub fn new(code: i32, message: impl Into<String>) -> DriverError {
        DriverError {
            code: if code == 0 { Self::FAILED } else { code },
            message: message.into(),
            source: None,
        }
    }

    /// Wraps any error, with code [`FAILED`](DriverError::FAILED).
    pub fn other(err: impl Into<Box<dyn StdError + Send + Sync + 'static>>) -> DriverError {
        let err = err.into();
        DriverError {
            code: Self::FAILED,
            message: err.to_string(),
            source: Some(err),
        }
    }

    /// The code reported to the store (never 0).
    pub fn code(&self) -> i32 {
        self.code
    }

    /// The message.
    pub fn message(&self) -> &str {
        &self.message
    }
}

impl fmt::Debug for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DriverError")
            .field("code", &self.code)
            .field("message", &self.message)
            .finish()
    }
}

impl fmt::Display for DriverError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for DriverError {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<io::Error> for DriverError {
    fn from(err: io::Error) -> DriverError {
        if !err.get_ref().is_some_and(|e| e.is::<DriverError>()) {
            return DriverError::other(err);
        }
        match err.into_inner().map(|e| e.downcast::<DriverError>()) {
            Some(Ok(inner)) => *inner,
            _ => DriverError::new(DriverError::FAILED, "an I/O error"), // checked above
        }
    }
}

impl From<DriverError> for io::Error {
    fn from(err: DriverError) -> io::Error {
        io::Error::other(err)
    }
}

impl From<String> for DriverError {
    fn from(message: String) -> DriverError {
        DriverError::new(DriverError::FAILED, message)
    }
}

impl From<&str> for DriverError {
    fn from(message: &str) -> DriverError {
        DriverError::new(DriverError::FAILED, message)
    }
}

impl From<Box<dyn StdError + Send + Sync + 'static>> for DriverError {
    fn from(err: Box<dyn StdError + Send + Sync + 'static>) -> DriverError {
        DriverError::other(err)
    }
}

// ---- the C side ---------------------------------------------------------------------------

/// What the store's `user_data` points at: a `Box<Host>`, freed by `destroy`.
struct Host {
    driver: Arc<dyn Driver>,
    /// Set by `destroy`; the opener keeps a clone to know whether the library called it.
    destroyed: Arc<AtomicBool>,
}

/// The ops and the name they point at, kept alive as long as the store.
pub(crate) struct DriverOps {
    ops: Box<sys::rolayer_driver_ops>,
    _name: CString,
}

/// What `open` needs to pass a driver to the library, and to clean up when it fails.
pub(crate) struct Prepared {
    pub(crate) ops: DriverOps,
    pub(crate) user_data: *mut c_void,
    destroyed: Arc<AtomicBool>,
}

impl DriverOps {
    pub(crate) fn as_ptr(&self) -> *const sys::rolayer_driver_ops {
        &*self.ops
    }
}

/// Builds the ops and the user data for `driver`.
pub(crate) fn prepare(driver: Arc<dyn Driver>) -> crate::Result<Prepared> {
    let name = CString::new(driver.name())
        .map_err(|_| crate::Error::invalid("the driver's name contains a NUL byte"))?;
    let caps = driver.capabilities();
    let ops = Box::new(sys::rolayer_driver_ops {
        version: sys::ROLAYER_DRIVER_OPS_VERSION,
        name: name.as_ptr(),
        capabilities: if caps.exact_diffs {
            sys::ROLAYER_DRIVER_CAP_EXACT_DIFFS
        } else {
            0
        },
        create: Some(create_trampoline),
        remove: Some(remove_trampoline),
        apply_diff: Some(apply_diff_trampoline),
        diff_open: Some(diff_open_trampoline),
        diff_read: Some(diff_read_trampoline),
        diff_close: Some(diff_close_trampoline),
        payload_open: Some(payload_open_trampoline),
        payload_read: Some(payload_read_trampoline),
        payload_close: Some(payload_close_trampoline),
        metadata: Some(metadata_trampoline),
        destroy: Some(destroy_trampoline),
    });
    let destroyed = Arc::new(AtomicBool::new(false));
    let host = Box::new(Host {
        driver,
        destroyed: Arc::clone(&destroyed),
    });
    Ok(Prepared {
        ops: DriverOps { ops, _name: name },
        user_data: Box::into_raw(host).cast(),
        destroyed,
    })
}

impl Prepared {
    /// After a failed open: frees the user data unless the library's `destroy` did.
    pub(crate) fn open_failed(self) {
        if !self.destroyed.load(Ordering::Acquire) {
            // SAFETY: the library did not call destroy, so the Box is still ours; it keeps no
            // copy of user_data after a failed open.
            drop(unsafe { Box::from_raw(self.user_data.cast::<Host>()) });
        }
    }
}

/// The driver behind `user_data`.
///
/// # Safety
/// `ud` is the user data of a live store's driver.
unsafe fn driver<'a>(ud: *mut c_void) -> &'a dyn Driver {
    // SAFETY: per the caller; the Host lives until destroy, after every other callback.
    unsafe { &*(*ud.cast::<Host>()).driver }
}

/// An id argument (NULL gives None). Ids are the library's (hex), so UTF-8.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string valid for `'a`.
unsafe fn id_arg<'a>(p: *const c_char) -> Result<Option<&'a str>, DriverError> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: per the caller.
    let c = unsafe { CStr::from_ptr(p) };
    c.to_str()
        .map(Some)
        .map_err(|_| format!("a layer id that is not UTF-8: {c:?}").into())
}

/// A non-NULL id argument.
///
/// # Safety
/// As for `id_arg`.
unsafe fn need_id<'a>(p: *const c_char) -> Result<&'a str, DriverError> {
    // SAFETY: per the caller.
    unsafe { id_arg(p) }?.ok_or_else(|| "a NULL layer id".into())
}

fn panic_message(payload: &(dyn Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        format!("panicked: {s}")
    } else if let Some(s) = payload.downcast_ref::<String>() {
        format!("panicked: {s}")
    } else {
        "panicked".to_owned()
    }
}

fn set_message(derr: *mut sys::rolayer_driver_error, message: &str) {
    let c = CString::new(message.replace('\0', "\u{FFFD}")).unwrap_or_default();
    // SAFETY: derr is the callback's (NULL is a no-op); the message is copied.
    unsafe { sys::rolayer_driver_error_set(derr, c.as_ptr()) };
}

/// Runs `f`, turning its error or panic into the callback's result and message.
fn guard(
    derr: *mut sys::rolayer_driver_error,
    f: impl FnOnce() -> Result<(), DriverError>,
) -> c_int {
    match panic::catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            set_message(derr, &e.message);
            let code = e.code;
            quietly(move || drop(e)); // its source is the caller's type
            code
        }
        Err(payload) => {
            // Formatting cannot panic here: only &str and String payloads are looked at.
            set_message(derr, &panic_message(&*payload));
            // The payload's own drop may panic: keep that from unwinding into C.
            let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
            DriverError::PANICKED
        }
    }
}

/// Runs `f` (a close or a drop), swallowing a panic: there is no way to report it.
fn quietly(f: impl FnOnce()) {
    if let Err(payload) = panic::catch_unwind(AssertUnwindSafe(f)) {
        let _ = panic::catch_unwind(AssertUnwindSafe(move || drop(payload)));
    }
}

unsafe extern "C" fn create_trampoline(
    id: *const c_char,
    parent: *const c_char,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    guard(derr, || {
        // SAFETY: arguments from the library, valid for the call.
        let (d, i, p) = unsafe { (driver(ud), need_id(id)?, id_arg(parent)?) };
        d.create(i, p)
    })
}

unsafe extern "C" fn remove_trampoline(
    id: *const c_char,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    guard(derr, || {
        // SAFETY: arguments from the library, valid for the call.
        let (d, i) = unsafe { (driver(ud), need_id(id)?) };
        d.remove(i)
    })
}

/// The `Read` an `apply_diff` gets: the library's read function, for the call only.
struct CRead {
    read: sys::rolayer_read_fn,
    data: *mut c_void,
    failed: bool,
    eof: bool,
}

impl Read for CRead {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.failed {
            return Err(io::Error::other("the layer input failed"));
        }
        if self.eof || buf.is_empty() {
            return Ok(0);
        }
        let read = self
            .read
            .ok_or_else(|| io::Error::other("no read function"))?;
        let mut n = 0usize;
        // SAFETY: the library's read function and data, valid during apply_diff (this CRead
        // does not outlive it); buf is writable for its length.
        let rc = unsafe { read(buf.as_mut_ptr().cast(), buf.len(), &mut n, self.data) };
        if rc != 0 {
            // The store reports why (its own error wins over the driver's).
            self.failed = true;
            return Err(io::Error::other("the layer input failed"));
        }
        if n > buf.len() {
            self.failed = true;
            return Err(io::Error::other(
                "the layer input reported more bytes than asked",
            ));
        }
        if n == 0 {
            self.eof = true;
        }
        Ok(n)
    }
}

unsafe extern "C" fn apply_diff_trampoline(
    id: *const c_char,
    parent: *const c_char,
    read: sys::rolayer_read_fn,
    read_data: *mut c_void,
    size: *mut i64,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    guard(derr, || {
        // SAFETY: arguments from the library, valid for the call.
        let (d, i, p) = unsafe { (driver(ud), need_id(id)?, id_arg(parent)?) };
        let mut input = CRead {
            read,
            data: read_data,
            failed: false,
            eof: false,
        };
        let n = d.apply_diff(i, p, &mut input)?;
        // SAFETY: size is valid.
        unsafe { *size = i64::try_from(n).unwrap_or(i64::MAX) };
        Ok(())
    })
}

type DiffStream = Box<dyn Read + Send>;

unsafe extern "C" fn diff_open_trampoline(
    stream: *mut *mut c_void,
    id: *const c_char,
    ancestor: *const c_char,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    // SAFETY: stream is valid.
    unsafe { *stream = ptr::null_mut() };
    guard(derr, || {
        // SAFETY: arguments from the library, valid for the call.
        let (d, i, a) = unsafe { (driver(ud), need_id(id)?, id_arg(ancestor)?) };
        let s: DiffStream = d.diff(i, a)?;
        // SAFETY: stream is valid; the Box is freed by diff_close.
        unsafe { *stream = Box::into_raw(Box::new(s)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn diff_read_trampoline(
    stream: *mut c_void,
    buf: *mut c_void,
    cap: usize,
    n_read: *mut usize,
    derr: *mut sys::rolayer_driver_error,
    _ud: *mut c_void,
) -> c_int {
    // SAFETY: n_read is valid.
    unsafe { *n_read = 0 };
    guard(derr, || {
        // SAFETY: a stream from diff_open, used by one thread at a time; buf holds cap bytes.
        let (s, out) = unsafe { (&mut *stream.cast::<DiffStream>(), util::out_buf(buf, cap)) };
        let n = util::read_checked("the diff stream", out, |o| s.read(o))?;
        // SAFETY: n_read is valid.
        unsafe { *n_read = n };
        Ok(())
    })
}

unsafe extern "C" fn diff_close_trampoline(stream: *mut c_void, _ud: *mut c_void) {
    if stream.is_null() {
        return;
    }
    // SAFETY: a stream from diff_open, closed once.
    let s = unsafe { Box::from_raw(stream.cast::<DiffStream>()) };
    quietly(move || drop(s));
}

type PayloadBox = Box<dyn Payload>;

unsafe extern "C" fn payload_open_trampoline(
    payload: *mut *mut c_void,
    id: *const c_char,
    path: *const c_char,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    // SAFETY: payload is valid.
    unsafe { *payload = ptr::null_mut() };
    guard(derr, || {
        if path.is_null() {
            return Err("a NULL path".into());
        }
        // SAFETY: arguments from the library, valid for the call.
        let (d, i, p) = unsafe { (driver(ud), need_id(id)?, CStr::from_ptr(path)) };
        let p: PayloadBox = d.payload(i, Path::new(OsStr::from_bytes(p.to_bytes())))?;
        // SAFETY: payload is valid; the Box is freed by payload_close.
        unsafe { *payload = Box::into_raw(Box::new(p)).cast() };
        Ok(())
    })
}

unsafe extern "C" fn payload_read_trampoline(
    payload: *mut c_void,
    offset: u64,
    buf: *mut c_void,
    cap: usize,
    n_read: *mut usize,
    derr: *mut sys::rolayer_driver_error,
    _ud: *mut c_void,
) -> c_int {
    // SAFETY: n_read is valid.
    unsafe { *n_read = 0 };
    guard(derr, || {
        // SAFETY: a payload from payload_open, used by one thread at a time; buf holds cap bytes.
        let (p, out) = unsafe { (&mut *payload.cast::<PayloadBox>(), util::out_buf(buf, cap)) };
        let n = util::read_checked("the payload", out, |o| p.read_at(offset, o))?;
        // SAFETY: n_read is valid.
        unsafe { *n_read = n };
        Ok(())
    })
}

unsafe extern "C" fn payload_close_trampoline(payload: *mut c_void, _ud: *mut c_void) {
    if payload.is_null() {
        return;
    }
    // SAFETY: a payload from payload_open, closed once.
    let p = unsafe { Box::from_raw(payload.cast::<PayloadBox>()) };
    quietly(move || drop(p));
}

unsafe extern "C" fn metadata_trampoline(
    id: *const c_char,
    emit: sys::rolayer_metadata_emit_fn,
    emit_data: *mut c_void,
    derr: *mut sys::rolayer_driver_error,
    ud: *mut c_void,
) -> c_int {
    guard(derr, || {
        // SAFETY: arguments from the library, valid for the call.
        let (d, i) = unsafe { (driver(ud), need_id(id)?) };
        let pairs = d.metadata(i)?;
        let emit = emit.ok_or_else(|| DriverError::from("no emit function"))?;
        for (k, v) in pairs {
            let (k, v) = match (CString::new(k), CString::new(v)) {
                (Ok(k), Ok(v)) => (k, v),
                _ => return Err("a metadata key or value contains a NUL byte".into()),
            };
            // SAFETY: the library's emit function and data, during the call.
            if unsafe { emit(k.as_ptr(), v.as_ptr(), emit_data) } != 0 {
                return Err("the store refused a metadata pair".into());
            }
        }
        Ok(())
    })
}

unsafe extern "C" fn destroy_trampoline(ud: *mut c_void) {
    if ud.is_null() {
        return;
    }
    // SAFETY: the Box<Host> that prepare made; destroy is called once, after every callback.
    let host = unsafe { Box::from_raw(ud.cast::<Host>()) };
    host.destroyed.store(true, Ordering::Release);
    // Dropping the driver (its last Arc, perhaps) runs the caller's code: never unwind into C.
    quietly(move || drop(host));
}
