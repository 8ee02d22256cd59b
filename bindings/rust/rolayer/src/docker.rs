// SPDX-License-Identifier: Apache-2.0
//! Reading a Docker engine's graphdriver layers offline, without a daemon
//! (`include/rolayer/docker.h`).
//!
//! A [`Root`] is an open Docker data root (`/var/lib/docker`) with the `overlay2` or `vfs`
//! driver. It lists the engine's layer database, resolves an image name, image ID or ChainID to
//! its chain of layers, and opens a layer's tar stream, reassembled from the engine's tar-split
//! record and the driver's files and verified while it is read (every file against the record,
//! the whole stream against the DiffID), exactly as `docker save` would produce it.
//!
//! Nothing under the data root is ever written; reading is safe while dockerd runs. A `Root` is
//! `Send + Sync`; a stream is a [`TarStream`] (`std::io::Read`) that does not borrow the root
//! and stays valid after it is dropped.
//!
//! ```no_run
//! use std::io::Read;
//! # fn f() -> rolayer::Result<()> {
//! let root = rolayer::docker::Root::open("/var/lib/docker", None)?;
//! for id in root.resolve("alpine:latest")? {
//!     let size = root.verify(id.as_str())?;
//!     println!("{id}: {size} bytes, intact");
//! }
//! # Ok(()) }
//! ```

use std::ffi::c_char;
use std::fmt;
use std::path::Path;
use std::ptr::{self, NonNull};

use rolayer_sys as sys;

use crate::digest::{ChainId, DiffId, Digest};
use crate::error::{Error, Result};
use crate::store::{take_string_list, Descriptor};
use crate::stream::TarStream;
use crate::util::{c_string, call, opt_string, path_c_string};

/// An open Docker data root.
pub struct Root {
    raw: NonNull<sys::rolayer_docker_root>,
    driver: String,
}

// SAFETY: docker.h: "a rolayer_docker_root may be used from many threads at once (each stream
// has its own descriptors)".
unsafe impl Send for Root {}
unsafe impl Sync for Root {}

/// One layer of the engine's layer database.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayerInfo {
    /// Its ChainID.
    pub chain_id: ChainId,
    /// Its DiffID; `None` when its metadata could not be read ([`error`](LayerInfo::error)).
    pub diff_id: Option<DiffId>,
    /// The parent's ChainID; `None` for a base layer.
    pub parent: Option<ChainId>,
    /// The driver's id of the layer (its directory under `<root>/vfs/dir` or `<root>/overlay2`).
    pub cache_id: String,
    /// The size of the layer's files the engine recorded, when it did.
    pub size: Option<u64>,
    /// The distribution descriptor from `descriptor.json` (dockerd 20.10 writes one for foreign
    /// layers only).
    pub descriptor: Option<Descriptor>,
    /// Why the layer's metadata could not be read (the other fields are then empty), or `None`.
    pub error: Option<String>,
}

impl Root {
    /// Opens the Docker data root `data_root` (the directory itself may be reached through
    /// symlinks, nothing below it is) with `driver` (`"overlay2"`, `"vfs"`, or `None` for the
    /// one driver that has a layer database).
    ///
    /// Errors: [`NotFound`](crate::ErrorKind::NotFound) (no such directory, no layer
    /// database), [`Unsupported`](crate::ErrorKind::Unsupported) (another driver: btrfs, zfs,
    /// …; the message names it), [`InvalidArgument`](crate::ErrorKind::InvalidArgument) (several drivers and
    /// `None`), [`Io`](crate::ErrorKind::Io).
    pub fn open(data_root: impl AsRef<Path>, driver: Option<&str>) -> Result<Root> {
        let root = path_c_string(data_root.as_ref())?;
        let drv = driver.map(|d| c_string(d, "the driver")).transpose()?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call; drv may be NULL.
        call(|err| unsafe {
            sys::rolayer_docker_root_open(
                &mut out,
                root.as_ptr(),
                drv.as_ref().map_or(ptr::null(), |d| d.as_ptr()),
                err,
            )
        })?;
        let raw = NonNull::new(out)
            .ok_or_else(|| Error::invalid("the library returned no docker root"))?;
        // SAFETY: a live handle; the string is copied.
        let driver = unsafe { opt_string(sys::rolayer_docker_root_driver(raw.as_ptr())) }
            .unwrap_or_default();
        Ok(Root { raw, driver })
    }

    /// The driver in use: `"overlay2"` or `"vfs"`.
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// Every layer of the layer database, parents before children (then by ChainID); layers
    /// whose metadata cannot be read come last, with [`LayerInfo::error`] set.
    pub fn layers(&self) -> Result<Vec<LayerInfo>> {
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe { sys::rolayer_docker_layers_list(&mut out, self.raw.as_ptr(), err) })?;
        // SAFETY: a list we own.
        Ok(unsafe { take_layers(out) })
    }

    /// One layer, by ChainID (`"sha256:<hex>"` or the hex).
    ///
    /// Errors: [`NotFound`](crate::ErrorKind::NotFound), [`Corrupt`](crate::ErrorKind::Corrupt)
    /// (damaged metadata), [`InvalidArgument`](crate::ErrorKind::InvalidArgument) (a malformed ChainID).
    pub fn layer(&self, chain_id: &str) -> Result<LayerInfo> {
        let id = c_string(chain_id, "the ChainID")?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_docker_layers_get(&mut out, self.raw.as_ptr(), id.as_ptr(), err)
        })?;
        // SAFETY: a list we own.
        unsafe { take_layers(out) }
            .into_iter()
            .next()
            .ok_or_else(|| Error::invalid("the library returned no layer"))
    }

    /// The chain of ChainIDs, base first, that `reference` names: a layer's ChainID (full, hex,
    /// or a unique hex prefix), an image ID (same forms), or an image name from
    /// `repositories.json` (`"name:tag"`, `"name"`, `"name@sha256:…"`, with or without
    /// `"docker.io/library/"`).
    ///
    /// Errors: [`NotFound`](crate::ErrorKind::NotFound) when nothing matches,
    /// [`InvalidArgument`](crate::ErrorKind::InvalidArgument) for an ambiguous prefix.
    pub fn resolve(&self, reference: &str) -> Result<Vec<ChainId>> {
        let r = c_string(reference, "the reference")?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_docker_resolve(&mut out, self.raw.as_ptr(), r.as_ptr(), err)
        })?;
        // SAFETY: a list we own, freed once copied.
        let ids = unsafe { take_string_list(out) };
        Ok(ids.into_iter().map(ChainId::from_library).collect())
    }

    /// Opens the layer's tar stream, reassembled and verified as it is read. A read fails
    /// with [`Corrupt`](crate::ErrorKind::Corrupt) naming the entry's path when a file is
    /// missing or differs (no byte of a bad file up to 1 MiB is returned) or the record is
    /// damaged, with [`Digest`](crate::ErrorKind::Digest) at the end when the stream does not
    /// match the DiffID. Opening fails with `Corrupt` when the layer's `diff` or `parent` was
    /// changed. The stream does not borrow the root.
    pub fn tar_stream(&self, chain_id: &str) -> Result<TarStream<'static>> {
        let id = c_string(chain_id, "the ChainID")?;
        let mut out = ptr::null_mut();
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_docker_stream_open(&mut out, self.raw.as_ptr(), id.as_ptr(), err)
        })?;
        // SAFETY: a new stream we own; it keeps what it needs of the root alive (docker.h).
        unsafe { TarStream::from_raw(out) }
    }

    /// Reads the layer's whole verified stream and discards it: the stream's length when it is
    /// intact, else the first damage as [`tar_stream`](Root::tar_stream)'s reads report it.
    pub fn verify(&self, chain_id: &str) -> Result<u64> {
        let id = c_string(chain_id, "the ChainID")?;
        let mut n = 0i64;
        // SAFETY: valid pointers for the call.
        call(|err| unsafe {
            sys::rolayer_docker_verify(&mut n, self.raw.as_ptr(), id.as_ptr(), err)
        })?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl Drop for Root {
    fn drop(&mut self) {
        // SAFETY: we own the handle; open streams stay valid (docker.h).
        unsafe { sys::rolayer_docker_root_free(self.raw.as_ptr()) }
    }
}

impl fmt::Debug for Root {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Root")
            .field("driver", &self.driver)
            .finish()
    }
}

/// # Safety
/// `l` is a layer list from the library that nothing else owns; it is freed.
unsafe fn take_layers(l: *mut sys::rolayer_docker_layers) -> Vec<LayerInfo> {
    // SAFETY (all getters): l is live until the free; strings are copied.
    unsafe {
        // Empty strings (the fields of a layer whose metadata could not be read) are absent.
        let s = |p: *const c_char| opt_string(p).filter(|v| !v.is_empty());
        let n = sys::rolayer_docker_layers_count(l);
        let out = (0..n)
            .map(|i| {
                let descriptor = match (
                    s(sys::rolayer_docker_layers_descriptor_media_type(l, i)),
                    s(sys::rolayer_docker_layers_descriptor_digest(l, i)),
                ) {
                    (Some(media_type), Some(digest)) => {
                        Digest::parse(&digest).ok().map(|digest| Descriptor {
                            media_type,
                            digest,
                            size: u64::try_from(sys::rolayer_docker_layers_descriptor_size(l, i))
                                .unwrap_or(0),
                        })
                    }
                    _ => None,
                };
                LayerInfo {
                    chain_id: ChainId::from_library(
                        opt_string(sys::rolayer_docker_layers_chain_id(l, i)).unwrap_or_default(),
                    ),
                    // Parsed, not trusted: they come from the engine's files.
                    diff_id: s(sys::rolayer_docker_layers_diff_id(l, i))
                        .and_then(|d| DiffId::parse(&d).ok()),
                    parent: s(sys::rolayer_docker_layers_parent(l, i))
                        .and_then(|p| ChainId::parse(&p).ok()),
                    cache_id: s(sys::rolayer_docker_layers_cache_id(l, i)).unwrap_or_default(),
                    size: u64::try_from(sys::rolayer_docker_layers_size(l, i)).ok(),
                    descriptor,
                    error: s(sys::rolayer_docker_layers_error(l, i)),
                }
            })
            .collect();
        sys::rolayer_docker_layers_free(l);
        out
    }
}
