// SPDX-License-Identifier: Apache-2.0
//! [`Staged`]: registering in two phases (`include/rolayer/stage.h`), so that the layers of an
//! image are applied on many threads at once and committed in chain order; and
//! [`Store::layers`], every layer of a store from one read of its database.

use std::fmt;
use std::io::Read;
use std::os::fd::{AsFd, AsRawFd};
use std::ptr::{self, NonNull};

use rolayer_sys as sys;

use crate::digest::{ChainId, DiffId, Digest};
use crate::error::{Error, Result};
use crate::layer::Layer;
use crate::store::{read_with, COptions, Descriptor, RegisterOptions, Store};
use crate::util::{c_string, call, opt_ptr};

/// A layer applied but not yet registered: [`Store::stage`] reads, hashes, validates and (on
/// the `dir` driver) applies a layer's stream before its parent is known, and
/// [`Staged::commit`] puts it on its parent with the same outcome as [`Store::register_with`]
/// of the same stream on that parent.
///
/// ```no_run
/// # fn f(store: &rolayer::Store, blobs: Vec<Vec<u8>>) -> rolayer::Result<()> {
/// let opts = rolayer::RegisterOptions::new();
/// let staged: Vec<rolayer::Result<rolayer::Staged<'_>>> = std::thread::scope(|s| {
///     let jobs: Vec<_> = blobs
///         .iter()
///         .map(|b| s.spawn(|| store.stage(&b[..], &opts)))
///         .collect();
///     jobs.into_iter().map(|j| j.join().unwrap()).collect()
/// });
/// let mut parent: Option<rolayer::ChainId> = None;
/// for st in staged {
///     let layer = st?.commit(parent.as_ref())?; // base first, in chain order
///     parent = Some(layer.chain_id().clone());
/// }
/// # Ok(()) }
/// ```
///
/// Dropping a `Staged` that was not committed discards it: its data and temporary files are
/// removed. A staged layer is not a registered layer, so this deletes nothing registered. The
/// borrow of the [`Store`] keeps a staged layer from outliving it.
pub struct Staged<'s> {
    raw: Option<NonNull<sys::rolayer_staged>>,
    store: &'s Store,
    diff_id: DiffId,
    stream_size: u64,
    deferred: bool,
}

// SAFETY: stage.h: "a rolayer_staged is used by one thread at a time and may move between
// threads". Every call that uses the handle takes &mut self or self, so it is never shared.
unsafe impl Send for Staged<'_> {}

impl<'s> Staged<'s> {
    /// # Safety
    /// `raw` is a staged layer of `store` that the caller owns.
    unsafe fn from_raw(store: &'s Store, raw: *mut sys::rolayer_staged) -> Result<Staged<'s>> {
        let raw = NonNull::new(raw)
            .ok_or_else(|| Error::invalid("the library returned no staged layer"))?;
        // SAFETY: raw is live; the DiffID is borrowed from it and copied here.
        let (diff_id, size, deferred) = unsafe {
            let p = raw.as_ptr();
            let d = sys::rolayer_staged_diff_id(p);
            let d = if d.is_null() {
                String::new()
            } else {
                std::ffi::CStr::from_ptr(d).to_string_lossy().into_owned()
            };
            (
                d,
                sys::rolayer_staged_stream_size(p),
                sys::rolayer_staged_deferred(p),
            )
        };
        Ok(Staged {
            raw: Some(raw),
            store,
            diff_id: DiffId::from_library(diff_id),
            stream_size: u64::try_from(size).unwrap_or(0),
            deferred: deferred == 1,
        })
    }

    /// The staged layer's DiffID (sha256 of its stream).
    pub fn diff_id(&self) -> &DiffId {
        &self.diff_id
    }

    /// The size of the staged stream in bytes.
    pub fn stream_size(&self) -> u64 {
        self.stream_size
    }

    /// Whether the layer is applied at commit rather than while it was staged: on a driver
    /// other than `dir`, or a `dir` layer that depends on its parent (a hard link to a file
    /// outside it, a parent directory it did not declare). Still correct, only not parallel.
    pub fn is_deferred(&self) -> bool {
        self.deferred
    }

    /// Registers the staged layer on top of `parent` (None for a base layer) and returns a new
    /// reference to it. An existing ChainID gives a new reference to the existing layer.
    ///
    /// Errors are [`Store::register_with`]'s: [`NotFound`](crate::ErrorKind::NotFound) for an
    /// unknown parent, [`MaxDepth`](crate::ErrorKind::MaxDepth),
    /// [`Archive`](crate::ErrorKind::Archive) for a hard link whose target is in neither the
    /// layer nor the parent chain, [`Digest`](crate::ErrorKind::Digest) /
    /// [`Corrupt`](crate::ErrorKind::Corrupt) when the staged data was modified before a commit
    /// that applies it again. After a failure the staged layer is unchanged: commit it again or
    /// drop it. After a success it is used up: a second commit is
    /// [`Invalid`](crate::ErrorKind::InvalidArgument).
    #[must_use = "dropping a Layer only closes the handle (the layer stays in the store); call release() to delete it"]
    pub fn commit(&mut self, parent: Option<&ChainId>) -> Result<Layer<'s>> {
        let raw = self
            .raw
            .ok_or_else(|| Error::invalid("the staged layer was already committed"))?;
        let parent = parent
            .map(|p| c_string(p.as_str(), "the parent ChainID"))
            .transpose()?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call; raw is ours and used by this thread only.
        call(|err| unsafe {
            sys::rolayer_stage_commit(
                &mut out,
                self.store.as_ptr(),
                raw.as_ptr(),
                opt_ptr(parent.as_ref()),
                err,
            )
        })?;
        // Committed: only the handle is left to free.
        self.raw = None;
        // SAFETY: raw is ours and no longer used.
        unsafe { sys::rolayer_stage_free(raw.as_ptr()) };
        // SAFETY: success gives a new layer reference that we own.
        unsafe { Layer::from_raw(self.store, out) }
    }

    /// Discards the staged layer (the same as dropping it): nothing of it stays behind.
    pub fn discard(self) {}
}

impl Drop for Staged<'_> {
    fn drop(&mut self) {
        if let Some(raw) = self.raw.take() {
            // SAFETY: an uncommitted staged layer we own, not used again.
            unsafe { sys::rolayer_stage_free(raw.as_ptr()) };
        }
    }
}

impl fmt::Debug for Staged<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Staged")
            .field("diff_id", &self.diff_id)
            .field("stream_size", &self.stream_size)
            .field("deferred", &self.deferred)
            .field("committed", &self.raw.is_none())
            .finish()
    }
}

/// What [`Store::layers`] says of one layer: the values of [`Layer`]'s getters, read without a
/// reference (the layer may be deleted meanwhile).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LayerInfo {
    /// The layer's ChainID.
    pub chain_id: ChainId,
    /// The layer's DiffID.
    pub diff_id: DiffId,
    /// The parent's ChainID, None for a base layer.
    pub parent: Option<ChainId>,
    /// The driver's id for the layer ([`Layer::cache_id`]).
    pub cache_id: String,
    /// 1 for a base layer.
    pub depth: u32,
    /// The chain's DiffSize sum ([`Layer::size`]).
    pub size: u64,
    /// The layer's own DiffSize.
    pub diff_size: u64,
    /// The size of the layer's exported stream.
    pub stream_size: u64,
    /// Persistent references ([`Store::retained`]).
    pub retained: u64,
    /// The distribution descriptor recorded at register, if any.
    pub descriptor: Option<Descriptor>,
}

impl Store {
    /// Stages a layer from an uncompressed tar stream read from `reader` to its end (see
    /// [`Staged`]). Safe to call from many threads at once on one store. The reader runs on
    /// this thread during the call, with [`Store::register`]'s error and panic handling. A
    /// failure leaves nothing behind.
    pub fn stage<R: Read>(&self, reader: R, options: &RegisterOptions) -> Result<Staged<'_>> {
        let c_options = COptions::new(options)?;
        let opts = c_options.raw();
        read_with(
            reader,
            |state_ptr, read| {
                let mut out = ptr::null_mut();
                // SAFETY: state_ptr outlives the call and read matches it (read_with's
                // contract); opts borrows c_options, alive meanwhile.
                call(|err| unsafe {
                    sys::rolayer_stage(&mut out, self.as_ptr(), read, state_ptr, &opts, err)
                })?;
                // SAFETY: success gives a staged layer we own.
                unsafe { Staged::from_raw(self, out) }
            },
            drop,
        )
    }

    /// Stages a layer read from an open file descriptor to its end (borrowed, not closed).
    pub fn stage_fd(&self, fd: impl AsFd, options: &RegisterOptions) -> Result<Staged<'_>> {
        let fd = fd.as_fd();
        let c_options = COptions::new(options)?;
        let opts = c_options.raw();
        let mut out = ptr::null_mut();
        // SAFETY: fd stays open during the call; opts borrows c_options.
        call(|err| unsafe {
            sys::rolayer_stage_fd(&mut out, self.as_ptr(), fd.as_raw_fd(), &opts, err)
        })?;
        // SAFETY: success gives a staged layer we own.
        unsafe { Staged::from_raw(self, out) }
    }

    /// Every layer of the store, from one read of its database, in no particular order: no
    /// handle is opened per layer (a store of 100,000 layers is listed in about a second).
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_store_layers(&mut out, self.as_ptr(), err) })?;
        let list =
            NonNull::new(out).ok_or_else(|| Error::invalid("the library returned no list"))?;
        let l = list.as_ptr();
        let text = |p: *const std::ffi::c_char| -> Option<String> {
            // SAFETY: a NUL-terminated string borrowed from the list, copied here.
            (!p.is_null()).then(|| {
                unsafe { std::ffi::CStr::from_ptr(p) }
                    .to_string_lossy()
                    .into_owned()
            })
        };
        let size = |v: i64| u64::try_from(v).unwrap_or(0);
        // SAFETY: l is a live list we own until the free below; i < count.
        let infos = unsafe {
            let n = sys::rolayer_layer_list_count(l);
            let mut v = Vec::with_capacity(n);
            for i in 0..n {
                let descriptor = match (
                    text(sys::rolayer_layer_list_descriptor_media_type(l, i)),
                    text(sys::rolayer_layer_list_descriptor_digest(l, i)),
                ) {
                    (Some(media_type), Some(digest)) => Some(Descriptor {
                        media_type,
                        digest: Digest::from_library(digest),
                        size: size(sys::rolayer_layer_list_descriptor_size(l, i)),
                    }),
                    _ => None,
                };
                v.push(LayerInfo {
                    chain_id: ChainId::from_library(
                        text(sys::rolayer_layer_list_chain_id(l, i)).unwrap_or_default(),
                    ),
                    diff_id: DiffId::from_library(
                        text(sys::rolayer_layer_list_diff_id(l, i)).unwrap_or_default(),
                    ),
                    parent: text(sys::rolayer_layer_list_parent(l, i)).map(ChainId::from_library),
                    cache_id: text(sys::rolayer_layer_list_cache_id(l, i)).unwrap_or_default(),
                    depth: u32::try_from(sys::rolayer_layer_list_depth(l, i)).unwrap_or(0),
                    size: size(sys::rolayer_layer_list_size(l, i)),
                    diff_size: size(sys::rolayer_layer_list_diff_size(l, i)),
                    stream_size: size(sys::rolayer_layer_list_stream_size(l, i)),
                    retained: size(sys::rolayer_layer_list_retained(l, i)),
                    descriptor,
                });
            }
            sys::rolayer_layer_list_free(l);
            v
        };
        Ok(infos)
    }
}
