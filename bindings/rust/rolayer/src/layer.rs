// SPDX-License-Identifier: Apache-2.0
//! [`Layer`]: a reference to a layer of a [`Store`], closed (never deleted) on drop.

use std::ffi::CStr;
use std::fmt;
use std::mem::ManuallyDrop;
use std::ptr::{self, NonNull};

use rolayer_sys as sys;

use crate::digest::{ChainId, DiffId, Digest};
use crate::error::{Error, Result};
use crate::store::{take_string_list, Descriptor, Store};
use crate::stream::TarStream;
use crate::util::{c_string, call, opt_ptr, opt_string};

/// A reference to a layer (a `rolayer_layer` handle), from [`Store::register`] or
/// [`Store::get`]. It borrows its store.
///
/// **Dropping is not deleting.** Dropping a `Layer` (going out of scope, an unbound result, a
/// panic that unwinds) only *closes* the handle (`rolayer_layer_close`): the in-memory
/// reference goes and nothing on disk is touched, so the layer stays in the store as it would
/// after the process ended. Deleting is always explicit: [`release`](Layer::release) drops the
/// reference *and* deletes the layer when it was the last reference of any kind (handles,
/// children, persistent references), its parent being released in turn (the cascade); it
/// reports what was deleted. [`Store::unretain`] does the same for a persistent reference.
///
/// (One exception, from the C library: when another reference asked for this layer's release
/// while this handle was open, the layer goes when its last reference does, dropped or not.)
///
/// `Layer` is `Send + Sync`: the C getters are read-only and thread-safe, a handle may be used
/// from any thread, and the one consuming call, `rolayer_release`, takes `self`. Its identity
/// (ChainID, DiffID, parent, depth) is immutable and read once when the handle is made.
#[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
pub struct Layer<'s> {
    raw: NonNull<sys::rolayer_layer>,
    store: &'s Store,
    chain_id: ChainId,
    diff_id: DiffId,
    parent: Option<ChainId>,
    depth: u32,
}

// SAFETY: store.h / layer.h: "Layer handles may be used from any thread; their getters are
// read-only" and "All getters are read-only and thread-safe". Release consumes the Layer, so
// it never races with another use of the same handle.
unsafe impl Send for Layer<'_> {}
unsafe impl Sync for Layer<'_> {}

/// A layer deleted by a release, unretain or [`Store::gc`](crate::Store::gc), as reported child first.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Removed {
    /// Its ChainID.
    pub chain_id: ChainId,
    /// Its DiffID.
    pub diff_id: DiffId,
    /// Its size: DiffSize summed over its chain.
    pub size: u64,
    /// Its own regular-file payload bytes.
    pub diff_size: u64,
}

impl<'s> Layer<'s> {
    /// # Safety
    /// `raw` is a new layer reference from `store` that nothing else owns.
    pub(crate) unsafe fn from_raw(
        store: &'s Store,
        raw: *mut sys::rolayer_layer,
    ) -> Result<Layer<'s>> {
        let raw =
            NonNull::new(raw).ok_or_else(|| Error::invalid("the library returned no layer"))?;
        // SAFETY: raw is a live handle; the strings are borrowed from it and copied here.
        let (chain_id, diff_id, parent, depth) = unsafe {
            let p = raw.as_ptr();
            (
                opt_string(sys::rolayer_layer_chain_id(p)),
                opt_string(sys::rolayer_layer_diff_id(p)),
                opt_string(sys::rolayer_layer_parent(p)),
                sys::rolayer_layer_depth(p),
            )
        };
        let layer = Layer {
            raw,
            store,
            chain_id: ChainId::from_library(chain_id.unwrap_or_default()),
            diff_id: DiffId::from_library(diff_id.unwrap_or_default()),
            parent: parent.map(ChainId::from_library),
            depth: u32::try_from(depth).unwrap_or(0),
        };
        Ok(layer)
    }

    fn ptr(&self) -> *mut sys::rolayer_layer {
        self.raw.as_ptr()
    }

    /// The store this layer belongs to.
    pub fn store(&self) -> &'s Store {
        self.store
    }

    /// The ChainID.
    pub fn chain_id(&self) -> &ChainId {
        &self.chain_id
    }

    /// The DiffID: sha256 of the registered tar stream.
    pub fn diff_id(&self) -> &DiffId {
        &self.diff_id
    }

    /// The parent's ChainID, or None for a base layer.
    pub fn parent(&self) -> Option<&ChainId> {
        self.parent.as_ref()
    }

    /// The cache id: the id under which the store's driver keeps this layer's files (the `id`
    /// a [`Driver`](crate::Driver) is called with), like the Docker engine's cache-id. Fixed at
    /// registration; not the ChainID.
    pub fn cache_id(&self) -> &str {
        // SAFETY: a live handle; the string is borrowed from it, lives as long as the handle
        // (so as long as &self) and never changes.
        let p = unsafe { sys::rolayer_layer_cache_id(self.ptr()) };
        if p.is_null() {
            return "";
        }
        // SAFETY: a NUL-terminated string owned by the handle.
        unsafe { std::ffi::CStr::from_ptr(p) }
            .to_str()
            .unwrap_or("")
    }

    /// The depth in the chain: 1 for a base layer, at most [`MAX_DEPTH`](crate::MAX_DEPTH).
    pub fn depth(&self) -> u32 {
        self.depth
    }

    /// The size: [`diff_size`](Layer::diff_size) summed over the chain.
    pub fn size(&self) -> Result<u64> {
        self.get_i64(sys::rolayer_layer_size)
    }

    /// This layer's regular-file payload bytes.
    pub fn diff_size(&self) -> Result<u64> {
        self.get_i64(sys::rolayer_layer_diff_size)
    }

    /// The length in bytes of the registered (uncompressed) tar stream.
    pub fn stream_size(&self) -> Result<u64> {
        self.get_i64(sys::rolayer_layer_stream_size)
    }

    fn get_i64(
        &self,
        f: unsafe extern "C" fn(
            *mut i64,
            *const sys::rolayer_layer,
            *mut *mut sys::rolayer_error,
        ) -> i32,
    ) -> Result<u64> {
        let mut v = 0i64;
        // SAFETY: a live handle and valid out-pointers.
        call(|err| unsafe { f(&mut v, self.ptr(), err) })?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    /// The distribution descriptor given at register, if any. (A descriptor recorded without
    /// a digest by another client is reported as None; a missing media type as "" and a
    /// missing size as 0.)
    pub fn descriptor(&self) -> Option<Descriptor> {
        // SAFETY: a live handle; the strings are copied at once.
        let (media_type, digest, size) = unsafe {
            (
                opt_string(sys::rolayer_layer_descriptor_media_type(self.ptr())),
                opt_string(sys::rolayer_layer_descriptor_digest(self.ptr())),
                sys::rolayer_layer_descriptor_size(self.ptr()),
            )
        };
        let digest = Digest::parse(&digest?).ok()?;
        Some(Descriptor {
            media_type: media_type.unwrap_or_default(),
            digest,
            size: u64::try_from(size).unwrap_or(0),
        })
    }

    /// The driver's metadata about this layer, as (key, value) pairs.
    pub fn metadata(&self) -> Result<Vec<(String, String)>> {
        let mut out = ptr::null_mut();
        // SAFETY: a live handle and valid out-pointers.
        call(|err| unsafe { sys::rolayer_layer_metadata(&mut out, self.ptr(), err) })?;
        // SAFETY: a list we own.
        let items = unsafe { take_string_list(out) };
        let mut it = items.into_iter();
        let mut pairs = Vec::new();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            pairs.push((k, v));
        }
        Ok(pairs)
    }

    /// Reads the whole verified stream and discards it: Ok when it matches its DiffID,
    /// [`Digest`](crate::ErrorKind::Digest) or [`Corrupt`](crate::ErrorKind::Corrupt)
    /// (naming the path) otherwise.
    pub fn verify(&self) -> Result<()> {
        // SAFETY: a live handle. The C function takes a non-const pointer but, like the
        // getters, is safe to call on a handle shared between threads.
        call(|err| unsafe { sys::rolayer_layer_verify(self.ptr(), err) })
    }

    /// The registered tar stream, byte for byte, verified against the DiffID as it is read.
    /// The stream keeps the layer alive: this `Layer` may be released while it is open.
    pub fn tar_stream(&self) -> Result<TarStream<'s>> {
        let mut out = ptr::null_mut();
        // SAFETY: a live handle and valid out-pointers.
        call(|err| unsafe { sys::rolayer_tar_stream_open(&mut out, self.ptr(), err) })?;
        // SAFETY: a new stream that we own.
        unsafe { TarStream::from_raw(out) }
    }

    /// The diff between this layer and `ancestor` (None: the whole flattened chain), verified
    /// on every driver: against the parent it is the registered stream; against an older
    /// ancestor or the whole chain it is built from the layers' verified streams.
    /// [`NotAncestor`](crate::ErrorKind::NotAncestor) when `ancestor` is not in this layer's
    /// chain.
    pub fn tar_stream_from(&self, ancestor: Option<&ChainId>) -> Result<TarStream<'s>> {
        let ancestor = ancestor
            .map(|a| c_string(a.as_str(), "the ancestor ChainID"))
            .transpose()?;
        let mut out = ptr::null_mut();
        // SAFETY: a live handle and valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_tar_stream_open_from(&mut out, self.ptr(), opt_ptr(ancestor.as_ref()), err)
        })?;
        // SAFETY: a new stream that we own.
        unsafe { TarStream::from_raw(out) }
    }

    /// A new, independent reference to the same layer.
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn try_clone(&self) -> Result<Layer<'s>> {
        self.store.get(&self.chain_id)
    }

    /// Releases the reference and reports the layers that this deleted, child first (empty
    /// when the layer is still referenced). This, [`Store::release`] and [`Store::unretain`]
    /// are the only ways the binding deletes a layer; dropping a `Layer` only closes it.
    pub fn release(self) -> Result<Vec<Removed>> {
        let raw = self.into_raw();
        let mut removed = ptr::null_mut();
        // SAFETY: we own raw; the handle is gone after this call whatever it returns.
        call(|err| unsafe { sys::rolayer_release_ext(&mut removed, raw.as_ptr(), err) })?;
        // SAFETY: a report we own.
        Ok(unsafe { take_removed(removed) })
    }

    /// Closes the handle without releasing it, as dropping does (spelled out for readers).
    /// Nothing is deleted: the layer stays in the store.
    pub fn close(self) {
        drop(self);
    }

    /// Gives up the handle without releasing it.
    fn into_raw(self) -> NonNull<sys::rolayer_layer> {
        let mut me = ManuallyDrop::new(self);
        let raw = me.raw;
        // SAFETY: the owned fields are dropped exactly once here; Drop does not run.
        unsafe {
            ptr::drop_in_place(&mut me.chain_id);
            ptr::drop_in_place(&mut me.diff_id);
            ptr::drop_in_place(&mut me.parent);
        }
        raw
    }
}

impl Drop for Layer<'_> {
    fn drop(&mut self) {
        // Dropping is not deleting: close frees the handle and its in-memory reference only,
        // so an unbound result or an unwinding panic never deletes a layer. release() deletes.
        // SAFETY: we own the handle, which is not used again.
        unsafe { sys::rolayer_layer_close(self.raw.as_ptr()) };
    }
}

impl fmt::Debug for Layer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Layer")
            .field("chain_id", &self.chain_id)
            .field("diff_id", &self.diff_id)
            .field("parent", &self.parent)
            .field("depth", &self.depth)
            .finish()
    }
}

/// Copies and frees a removal report (NULL gives an empty list).
///
/// # Safety
/// `r` is NULL or a report from the library that nothing else owns.
pub(crate) unsafe fn take_removed(r: *mut sys::rolayer_removed) -> Vec<Removed> {
    // SAFETY: r is NULL or live until the free below; strings are copied.
    unsafe {
        let n = sys::rolayer_removed_count(r);
        let v = (0..n)
            .map(|i| Removed {
                chain_id: ChainId::from_library(cstr(sys::rolayer_removed_chain_id(r, i))),
                diff_id: DiffId::from_library(cstr(sys::rolayer_removed_diff_id(r, i))),
                size: u64::try_from(sys::rolayer_removed_size(r, i)).unwrap_or(0),
                diff_size: u64::try_from(sys::rolayer_removed_diff_size(r, i)).unwrap_or(0),
            })
            .collect();
        sys::rolayer_removed_free(r);
        v
    }
}

unsafe fn cstr(p: *const std::ffi::c_char) -> String {
    if p.is_null() {
        String::new()
    } else {
        // SAFETY: a valid C string.
        unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned()
    }
}
