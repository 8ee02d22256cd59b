// SPDX-License-Identifier: Apache-2.0
//! [`Store`]: opening a store, registering, opening and releasing layers, persistent references.

use std::any::Any;
use std::ffi::{c_int, c_void, CStr};
use std::fmt;
use std::io::{self, Read};
use std::os::fd::{AsFd, AsRawFd};
use std::panic::{self, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::ptr::{self, NonNull};
use std::sync::Arc;
use std::time::Duration;

use rolayer_sys as sys;

use crate::digest::{ChainId, Digest};
use crate::driver::{self, Driver, DriverOps};
use crate::error::{Error, Result};
use crate::layer::{take_removed, Layer, Removed};
use crate::util::{self, c_string, call, opt_ptr, path_c_string};

/// How to open a store: the driver and how long to wait for another process's lock.
/// Builder in the style of `std::fs::OpenOptions`:
///
/// ```no_run
/// use std::time::Duration;
/// let store = rolayer::StoreOptions::new()
///     .driver("exact")
///     .busy_timeout(Duration::from_secs(30))
///     .open("/var/lib/example/layers")?;
/// # Ok::<(), rolayer::Error>(())
/// ```
#[derive(Clone, Default)]
pub struct StoreOptions {
    driver: Option<String>,
    custom_driver: Option<Arc<dyn Driver>>,
    busy_timeout_ms: c_int,
    read_only: bool,
    payload_pack_max: i64,
}

impl fmt::Debug for StoreOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StoreOptions")
            .field("driver", &self.driver)
            .field(
                "custom_driver",
                &self.custom_driver.as_ref().map(|d| d.name().to_owned()),
            )
            .field("busy_timeout_ms", &self.busy_timeout_ms)
            .field("read_only", &self.read_only)
            .field("payload_pack_max", &self.payload_pack_max)
            .finish()
    }
}

impl StoreOptions {
    /// The defaults: the "dir" driver, the library's default lock wait (5 s).
    pub fn new() -> StoreOptions {
        StoreOptions::default()
    }

    /// The built-in driver: `"dir"` or `"exact"`. Without one, a store is opened with the
    /// driver that created it, and a new store gets `"dir"`. A store can only be reopened with
    /// the driver that created it.
    pub fn driver(&mut self, name: impl Into<String>) -> &mut StoreOptions {
        self.driver = Some(name.into());
        self
    }

    /// A driver written in Rust, used instead of a built-in one (do not set
    /// [`driver`](StoreOptions::driver) too). The store calls it until it is dropped; a store
    /// created with it can only be reopened with a driver of the same
    /// [`name`](Driver::name). Keep a clone of the `Arc` to look at the driver meanwhile.
    ///
    /// ```no_run
    /// # use std::sync::Arc;
    /// # fn f(my_driver: Arc<impl rolayer::Driver>) -> rolayer::Result<()> {
    /// let store = rolayer::StoreOptions::new()
    ///     .custom_driver(my_driver)
    ///     .open("/var/lib/example/layers")?;
    /// # Ok(()) }
    /// ```
    pub fn custom_driver<D: Driver>(&mut self, driver: Arc<D>) -> &mut StoreOptions {
        self.custom_driver = Some(driver);
        self
    }

    /// Opens the store read-only: list, open, export and verify work; every write fails with
    /// [`ErrorKind::Io`](crate::ErrorKind::Io) and errno `EROFS`, and nothing in the store is
    /// changed. A store on a read-only file system is opened this way anyway.
    pub fn read_only(&mut self, yes: bool) -> &mut StoreOptions {
        self.read_only = yes;
        self
    }

    /// The `dir` driver's payload pack (docs/store.md): `bytes > 0` = layers registered from
    /// now on also keep the payloads of their regular files of 1 to `bytes` bytes (at most
    /// 16 MiB) in one pack file, which exports read instead of one file per payload (those
    /// bytes are stored twice); `bytes < 0` = no pack for new layers; 0 (the default) = the
    /// store's setting as it is. The setting is kept in the store for later opens and other
    /// processes. Above 16 MiB: [`ErrorKind::Invalid`](crate::ErrorKind::InvalidArgument); a change on
    /// a read-only open: [`ErrorKind::Io`](crate::ErrorKind::Io). Other drivers ignore it.
    pub fn payload_pack_max(&mut self, bytes: i64) -> &mut StoreOptions {
        self.payload_pack_max = bytes;
        self
    }

    /// How long a call waits for another writer's short lock on the store (a database
    /// transaction of another process or another `Store` on the same root) before failing with
    /// [`ErrorKind::Busy`](crate::ErrorKind::Busy). `Duration::ZERO` fails at once.
    /// Millisecond resolution (rounded up), at most `i32::MAX` ms.
    pub fn busy_timeout(&mut self, timeout: Duration) -> &mut StoreOptions {
        self.busy_timeout_ms = if timeout.is_zero() {
            -1
        } else {
            let ms = timeout.as_nanos().div_ceil(1_000_000);
            c_int::try_from(ms).unwrap_or(c_int::MAX)
        };
        self
    }

    /// Opens (creating it if needed) the store rooted at `root`.
    pub fn open(&self, root: impl AsRef<Path>) -> Result<Store> {
        let root = path_c_string(root.as_ref())?;
        let driver = self
            .driver
            .as_deref()
            .map(|d| c_string(d, "the driver name"))
            .transpose()?;
        if driver.is_some() && self.custom_driver.is_some() {
            return Err(Error::invalid(
                "a store takes a built-in driver or a custom driver, not both",
            ));
        }
        let prepared = self
            .custom_driver
            .as_ref()
            .map(|d| driver::prepare(Arc::clone(d)))
            .transpose()?;
        let opts = sys::rolayer_store_options {
            driver: opt_ptr(driver.as_ref()),
            driver_ops: prepared.as_ref().map_or(ptr::null(), |p| p.ops.as_ptr()),
            driver_user_data: prepared.as_ref().map_or(ptr::null_mut(), |p| p.user_data),
            busy_timeout_ms: self.busy_timeout_ms,
            read_only: c_int::from(self.read_only),
            payload_pack_max: self.payload_pack_max,
            ..sys::rolayer_store_options::INIT
        };
        let mut out = ptr::null_mut();
        // SAFETY: every pointer is valid for the call; the library copies the ops, and owns the
        // driver's user data from now on (freed by its destroy callback) unless it fails before
        // taking it, which open_failed finds out.
        let opened =
            call(|err| unsafe { sys::rolayer_store_open_ext(&mut out, root.as_ptr(), &opts, err) });
        if let Err(e) = opened {
            if let Some(p) = prepared {
                p.open_failed();
            }
            return Err(e);
        }
        // SAFETY: success gives a new, non-NULL store that we own.
        let mut store = unsafe { Store::from_raw(out) }?;
        store.driver_ops = prepared.map(|p| p.ops);
        Ok(store)
    }
}

/// A layer store: an open `rolayer_store`.
///
/// `Store` is `Send + Sync` (the C store is safe to use from many threads at once) and its
/// methods take `&self`: share it by reference, e.g. with `std::thread::scope`, or in an `Arc`.
/// [`Layer`]s and [`TarStream`](crate::TarStream)s borrow it (`Layer<'s>`), because the
/// C library invalidates them when the store is freed; dropping the `Store` closes it.
///
/// A root may be opened any number of times at once, by this process and by others: each
/// `Store` sees the others' registers as soon as they commit, and a layer any live process
/// holds is never deleted under it (docs/threading.md, "Processes").
pub struct Store {
    raw: NonNull<sys::rolayer_store>,
    root: PathBuf,
    driver: String,
    /// A custom driver's ops, kept as long as the store (dropped after it).
    driver_ops: Option<DriverOps>,
}

// SAFETY: store.h: "a rolayer_store is safe to use from many threads at once". The cached
// root and driver are immutable Rust values; a custom driver's ops are never touched again by
// Rust, and the driver behind them is Send + Sync.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

/// The most layers in a chain (a base layer has depth 1), as in the Docker engine.
pub const MAX_DEPTH: u32 = sys::ROLAYER_MAX_DEPTH as u32;

/// Options for registering a layer.
#[derive(Debug, Clone, Default)]
#[non_exhaustive]
pub struct RegisterOptions {
    /// The distribution descriptor of the blob the layer came from, kept with the layer.
    pub descriptor: Option<Descriptor>,
}

impl RegisterOptions {
    /// No options.
    pub fn new() -> RegisterOptions {
        RegisterOptions::default()
    }

    /// Records `descriptor` with the layer ([`Layer::descriptor`]).
    pub fn descriptor(mut self, descriptor: Descriptor) -> RegisterOptions {
        self.descriptor = Some(descriptor);
        self
    }
}

/// An OCI distribution descriptor: the (compressed) blob a layer was pulled as.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Descriptor {
    /// The blob's media type, e.g. `application/vnd.oci.image.layer.v1.tar+gzip`.
    pub media_type: String,
    /// The blob's digest.
    pub digest: Digest,
    /// The blob's size in bytes.
    pub size: u64,
}

impl Descriptor {
    /// A descriptor.
    pub fn new(media_type: impl Into<String>, digest: Digest, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.into(),
            digest,
            size,
        }
    }
}

impl Store {
    /// Opens (creating it if needed) the store rooted at `root` with the built-in driver it was
    /// created with ("dir" for a new store). Half-registered or half-removed layers left by a
    /// crash are cleaned up.
    pub fn open(root: impl AsRef<Path>) -> Result<Store> {
        StoreOptions::new().open(root)
    }

    /// Opens the store at `root` with the built-in driver `driver` (`"dir"` or `"exact"`).
    /// Reopening a store with another driver than the one that created it is
    /// [`ErrorKind::InvalidArgument`](crate::ErrorKind::InvalidArgument).
    pub fn open_with_driver(root: impl AsRef<Path>, driver: &str) -> Result<Store> {
        StoreOptions::new().driver(driver).open(root)
    }

    /// # Safety
    /// `raw` is a store handle from the library that nothing else owns.
    unsafe fn from_raw(raw: *mut sys::rolayer_store) -> Result<Store> {
        use std::os::unix::ffi::OsStrExt;
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::invalid("the library returned no store"))?;
        // SAFETY: raw is a live store; both strings are borrowed from it and copied at once.
        let (root, driver) = unsafe {
            let root = sys::rolayer_store_root(raw.as_ptr());
            let driver = sys::rolayer_store_driver(raw.as_ptr());
            (
                if root.is_null() {
                    PathBuf::new()
                } else {
                    PathBuf::from(std::ffi::OsStr::from_bytes(CStr::from_ptr(root).to_bytes()))
                },
                if driver.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(driver).to_string_lossy().into_owned()
                },
            )
        };
        Ok(Store {
            raw,
            root,
            driver,
            driver_ops: None,
        })
    }

    pub(crate) fn as_ptr(&self) -> *mut sys::rolayer_store {
        self.raw.as_ptr()
    }

    /// The store's root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The driver's name.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The payload-pack threshold in bytes this store applies new layers with
    /// ([`StoreOptions::payload_pack_max`], as kept in the store when it was opened; 0 = no
    /// pack).
    pub fn payload_pack_max(&self) -> i64 {
        // SAFETY: the store pointer is valid while self lives; the call only reads it.
        unsafe { sys::rolayer_store_payload_pack_max(self.as_ptr()) }
    }

    /// Registers a layer from an uncompressed tar stream read from `reader` to its end, on
    /// top of `parent` (None for a base layer).
    ///
    /// * The DiffID is the sha256 of every byte read; the ChainID follows the OCI image spec.
    /// * Errors: [`Archive`](crate::ErrorKind::Archive) for a malformed tar,
    ///   [`Unsafe`](crate::ErrorKind::Unsafe) for one escaping the layer,
    ///   [`NotFound`](crate::ErrorKind::NotFound) for an unknown parent,
    ///   [`MaxDepth`](crate::ErrorKind::MaxDepth) when the parent is [`MAX_DEPTH`] deep.
    /// * Registering an existing ChainID gives a new reference to the existing layer.
    /// * A failure leaves nothing behind.
    ///
    /// The reader runs on this thread, during the call, through a C callback:
    /// * an `io::Error` from it (other than `Interrupted`, which is retried) aborts the
    ///   registration with [`ErrorKind::User`](crate::ErrorKind::User), and the reader's
    ///   `io::Error` is the returned error's `source()` (its `io::ErrorKind` is kept when the
    ///   error is converted into an `io::Error`);
    /// * a panic in it is caught at the FFI boundary (it never unwinds through C), the
    ///   registration is aborted and cleaned up by the library, and the panic is then
    ///   **resumed** with its original payload once the C call has returned.
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn register<R: Read>(&self, parent: Option<&ChainId>, reader: R) -> Result<Layer<'_>> {
        self.register_with(parent, reader, &RegisterOptions::new())
    }

    /// [`register`](Store::register) with options (a distribution descriptor).
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn register_with<R: Read>(
        &self,
        parent: Option<&ChainId>,
        reader: R,
        options: &RegisterOptions,
    ) -> Result<Layer<'_>> {
        read_with(
            reader,
            |state_ptr, read| {
                self.register_raw(parent, options, |out, store, parent, opts, err| {
                    // SAFETY: state_ptr outlives the call and read matches its type
                    // (read_with's contract).
                    unsafe {
                        sys::rolayer_register_ext(out, store, parent, read, state_ptr, opts, err)
                    }
                })
            },
            |layer| {
                // The caller never sees this registration: in the unlikely case the library
                // still succeeded, give its reference back explicitly (a close would keep a
                // layer nobody asked for).
                let _ = layer.release();
            },
        )
    }

    /// Registers a layer from bytes in memory.
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn register_bytes(&self, parent: Option<&ChainId>, data: &[u8]) -> Result<Layer<'_>> {
        self.register_raw(
            parent,
            &RegisterOptions::new(),
            |out, store, parent, opts, err| {
                // SAFETY: data is valid for data.len() bytes during the call.
                unsafe {
                    sys::rolayer_register_memory(
                        out,
                        store,
                        parent,
                        data.as_ptr(),
                        data.len(),
                        opts,
                        err,
                    )
                }
            },
        )
    }

    /// Registers a layer read from an open file descriptor to its end (the descriptor is
    /// borrowed, not closed), without a callback per read.
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn register_fd(&self, parent: Option<&ChainId>, fd: impl AsFd) -> Result<Layer<'_>> {
        let fd = fd.as_fd();
        self.register_raw(
            parent,
            &RegisterOptions::new(),
            |out, store, parent, opts, err| {
                // SAFETY: fd stays open during the call (borrowed).
                unsafe { sys::rolayer_register_fd(out, store, parent, fd.as_raw_fd(), opts, err) }
            },
        )
    }

    fn register_raw(
        &self,
        parent: Option<&ChainId>,
        options: &RegisterOptions,
        f: impl FnOnce(
            *mut *mut sys::rolayer_layer,
            *mut sys::rolayer_store,
            *const std::ffi::c_char,
            *const sys::rolayer_register_options,
            *mut *mut sys::rolayer_error,
        ) -> c_int,
    ) -> Result<Layer<'_>> {
        let parent = parent
            .map(|p| c_string(p.as_str(), "the parent ChainID"))
            .transpose()?;
        let c_options = COptions::new(options)?;
        let opts = c_options.raw();
        let mut out = ptr::null_mut();
        call(|err| {
            f(
                &mut out,
                self.as_ptr(),
                opt_ptr(parent.as_ref()),
                &opts,
                err,
            )
        })?;
        // SAFETY: success gives a new layer reference that we own.
        unsafe { Layer::from_raw(self, out) }
    }

    /// Opens a new reference to the layer `chain_id`
    /// ([`NotFound`](crate::ErrorKind::NotFound) if there is none).
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn get(&self, chain_id: &ChainId) -> Result<Layer<'_>> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_open(&mut out, self.as_ptr(), id.as_ptr(), err) })?;
        // SAFETY: success gives a new layer reference that we own.
        unsafe { Layer::from_raw(self, out) }
    }

    /// Releases `layer` (the same as [`Layer::release`]): drops the reference and, when it was
    /// the last reference of any kind, deletes the layer and releases its parent in turn.
    /// Returns the deleted layers, child first. Deleting is always explicit: dropping a
    /// [`Layer`] only closes it.
    pub fn release(&self, layer: Layer<'_>) -> Result<Vec<Removed>> {
        if !std::ptr::eq(layer.store(), self) {
            // Closed, not released: a caller's mix-up must not delete anything.
            return Err(Error::invalid("the layer belongs to another store"));
        }
        layer.release()
    }

    /// Every ChainID in the store, in no particular order.
    pub fn list(&self) -> Result<Vec<ChainId>> {
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_store_list(&mut out, self.as_ptr(), err) })?;
        // SAFETY: a list we own, freed once copied.
        let strings = unsafe { take_string_list(out) };
        Ok(strings.into_iter().map(ChainId::from_library).collect())
    }

    /// Adds a persistent reference (kept in the store's database, across processes and
    /// reopenings) to `chain_id`.
    pub fn retain(&self, chain_id: &ChainId) -> Result<()> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_store_retain(self.as_ptr(), id.as_ptr(), err) })
    }

    /// Drops a persistent reference; when it was the last reference of any kind the layer is
    /// deleted, with the cascade, and the deleted layers are returned child first.
    /// [`NotRetained`](crate::ErrorKind::NotRetained) when `chain_id` has no persistent reference.
    pub fn unretain(&self, chain_id: &ChainId) -> Result<Vec<Removed>> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        let mut removed = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_store_unretain(&mut removed, self.as_ptr(), id.as_ptr(), err)
        })?;
        // SAFETY: a report we own.
        Ok(unsafe { take_removed(removed) })
    }

    /// Collects what nothing keeps: the holds, temporary files and intent marks of processes
    /// that died with the store open, and every layer without a persistent reference
    /// ([`retain`](Store::retain)), a child, or a [`Layer`] or stream open in any live process
    /// (a layer registered by a process killed before it retained it, or dropped unreleased
    /// before its store was closed). Layers held by this `Store` or another live process are
    /// never touched. Returns the deleted layers, child first (empty when nothing was deleted).
    ///
    /// Errors: [`ErrorKind::Io`](crate::ErrorKind::Io) with errno `EROFS` on a read-only
    /// store, [`ErrorKind::Busy`](crate::ErrorKind::Busy) when another writer kept the store
    /// locked longer than the busy timeout. Several processes may run it at once.
    pub fn gc(&self) -> Result<Vec<Removed>> {
        let mut removed = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_store_gc(&mut removed, self.as_ptr(), err) })?;
        // SAFETY: a report we own.
        Ok(unsafe { take_removed(removed) })
    }

    /// The number of persistent references on `chain_id`.
    pub fn retained(&self, chain_id: &ChainId) -> Result<u64> {
        let id = c_string(chain_id.as_str(), "the ChainID")?;
        let mut n = 0i64;
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_store_retained(&mut n, self.as_ptr(), id.as_ptr(), err)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // Every Layer and TarStream borrows the store, so none is left open here.
        // SAFETY: we own the handle.
        unsafe { sys::rolayer_store_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("root", &self.root)
            .field("driver", &self.driver)
            .finish()
    }
}

/// Copies and frees a string list (NULL gives an empty list).
///
/// # Safety
/// `l` is NULL or a list from the library that nothing else owns.
pub(crate) unsafe fn take_string_list(l: *mut sys::rolayer_string_list) -> Vec<String> {
    // SAFETY: l is NULL or live until the free below.
    unsafe {
        let n = sys::rolayer_string_list_count(l);
        let v = (0..n)
            .map(|i| {
                let s = sys::rolayer_string_list_get(l, i);
                if s.is_null() {
                    String::new()
                } else {
                    CStr::from_ptr(s).to_string_lossy().into_owned()
                }
            })
            .collect();
        sys::rolayer_string_list_free(l);
        v
    }
}

/// A [`RegisterOptions`] as the C strings that `rolayer_register_options` points to.
pub(crate) struct COptions {
    media_type: Option<std::ffi::CString>,
    digest: Option<std::ffi::CString>,
    size: i64,
}

impl COptions {
    pub(crate) fn new(options: &RegisterOptions) -> Result<COptions> {
        Ok(match &options.descriptor {
            Some(d) => COptions {
                media_type: Some(c_string(&d.media_type, "the descriptor's media type")?),
                digest: Some(c_string(d.digest.as_str(), "the descriptor's digest")?),
                size: i64::try_from(d.size)
                    .map_err(|_| Error::invalid("the descriptor's size is too large"))?,
            },
            None => COptions {
                media_type: None,
                digest: None,
                size: 0,
            },
        })
    }

    /// The C options, borrowing from self.
    pub(crate) fn raw(&self) -> sys::rolayer_register_options {
        sys::rolayer_register_options {
            descriptor_media_type: opt_ptr(self.media_type.as_ref()),
            descriptor_digest: opt_ptr(self.digest.as_ref()),
            descriptor_size: self.size,
            ..sys::rolayer_register_options::INIT
        }
    }
}

/// Runs `f` with a `user_data` pointer and the matching `rolayer_read_fn` over `reader`, then
/// turns what the reader did into the result: its `io::Error` becomes the returned error's
/// source, and its panic is resumed once the C call has returned (after `undo` was given any
/// value the library produced anyway).
pub(crate) fn read_with<R: Read, T>(
    reader: R,
    f: impl FnOnce(*mut c_void, sys::rolayer_read_fn) -> Result<T>,
    undo: impl FnOnce(T),
) -> Result<T> {
    let mut state = ReadState {
        reader,
        error: None,
        panic: None,
    };
    let state_ptr = (&mut state as *mut ReadState<R>).cast::<c_void>();
    // read_trampoline::<R> matches the type behind state_ptr, which outlives the call.
    let result = f(state_ptr, Some(read_trampoline::<R>));
    if let Some(payload) = state.panic {
        if let Ok(value) = result {
            undo(value);
        }
        panic::resume_unwind(payload);
    }
    match (result, state.error) {
        (Err(e), Some(io_err)) => {
            let msg = format!("{} (reading the layer stream: {io_err})", e.message());
            Err(Error::new(e.kind().clone(), msg).with_source(io_err))
        }
        (result, _) => result,
    }
}

// ---- the read callback ---------------------------------------------------------------------

/// The reader and what happened to it, behind the callback's `user_data`.
struct ReadState<R> {
    reader: R,
    error: Option<io::Error>,
    panic: Option<Box<dyn Any + Send + 'static>>,
}

/// The callback's return value when the reader failed.
const READER_FAILED: c_int = 1;
/// The callback's return value when the reader panicked.
const READER_PANICKED: c_int = 2;

/// `rolayer_read_fn` over a `ReadState<R>`. Never unwinds.
unsafe extern "C" fn read_trampoline<R: Read>(
    buf: *mut c_void,
    cap: usize,
    n_read: *mut usize,
    user_data: *mut c_void,
) -> c_int {
    // SAFETY: user_data is the &mut ReadState<R> that register_with passed, used only here
    // during the call; n_read is valid.
    let state = unsafe { &mut *user_data.cast::<ReadState<R>>() };
    unsafe { *n_read = 0 };
    if state.error.is_some() {
        return READER_FAILED;
    }
    if state.panic.is_some() {
        return READER_PANICKED;
    }
    // SAFETY: buf holds cap writable bytes (zeroed by out_buf: it may be uninitialised).
    let out = unsafe { util::out_buf(buf, cap) };
    let reader = &mut state.reader;
    let result = panic::catch_unwind(AssertUnwindSafe(|| {
        util::read_checked("the reader", out, |o| reader.read(o))
    }));
    match result {
        Ok(Ok(n)) => {
            // SAFETY: n_read is valid.
            unsafe { *n_read = n };
            0
        }
        Ok(Err(e)) => {
            state.error = Some(e);
            READER_FAILED
        }
        Err(payload) => {
            state.panic = Some(payload);
            READER_PANICKED
        }
    }
}
