// SPDX-License-Identifier: Apache-2.0
//! Safe Rust binding of librolayer: a read-only container-image layer store with verified,
//! byte-exact tar streams, behind a stable C ABI (the `rolayer-sys` crate).
//!
//! * [`Store`]: open a store ([`Store::open`], [`Store::open_with_driver`], [`StoreOptions`]),
//!   register layers from any [`std::io::Read`], open them by [`ChainId`], list them, keep
//!   persistent references ([`Store::retain`] / [`Store::unretain`]).
//! * [`Layer`]: a reference to a layer; its ids, sizes, descriptor and metadata. Dropping it
//!   only closes the handle (nothing is deleted); [`Layer::release`] (or [`Store::release`])
//!   deletes the layer when it was the last reference, and reports the deleted layers, child
//!   first.
//! * [`TarStream`]: the layer's tar as `std::io::Read`, verified against the DiffID.
//! * [`Error`] / [`ErrorKind`]: the library's status codes with their detail; converts into
//!   `std::io::Error`, keeping itself as the inner error.
//! * [`Driver`]: a graph driver written in Rust, used instead of a built-in one
//!   ([`StoreOptions::custom_driver`]).
//!
//! ```no_run
//! use std::io::Read;
//! use rolayer::Store;
//!
//! let store = Store::open_with_driver("/tmp/layers", "exact")?;
//! let base = store.register(None, std::fs::File::open("base.tar")?)?;
//! let child = store.register(Some(base.chain_id()), std::fs::File::open("child.tar")?)?;
//! println!("{} at depth {}, {} bytes", child.chain_id(), child.depth(), child.size()?);
//! let mut tar = Vec::new();
//! child.tar_stream()?.read_to_end(&mut tar)?; // fails if the stored data was modified
//! base.close(); // closing (or dropping) never deletes; the child keeps its parent anyway
//! let removed = child.release()?; // [child, base]: nothing references them any more
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Dropping is not deleting
//! A [`Layer`] going out of scope, an unbound result (`store.register_bytes(None, &tar)?;`,
//! which `#[must_use]` warns about) or a panic unwinding past layers only *closes* their
//! handles: the layers stay in the store, as after a restart. Deleting is always explicit:
//! [`Layer::release`], [`Store::release`] or [`Store::unretain`]. The C library's
//! `rolayer_layer_close` and the Go binding's finalizer (and `Store.CloseLayer`) do the same.
//!
//! An unbound layer is warned about (here made an error):
//!
//! ```compile_fail
//! #![deny(unused_must_use)]
//! fn f(store: &rolayer::Store) -> rolayer::Result<()> {
//!     store.register_bytes(None, &[0u8; 1024])?; // error: unused `Layer` that must be used
//!     Ok(())
//! }
//! ```
//!
//! while binding it, closing it or releasing it is fine:
//!
//! ```no_run
//! #![deny(unused_must_use)]
//! fn f(store: &rolayer::Store) -> rolayer::Result<()> {
//!     let layer = store.register_bytes(None, &[0u8; 1024])?;
//!     store.retain(layer.chain_id())?; // keep it across processes
//!     layer.close(); // the handle goes, the layer stays
//!     Ok(())
//! }
//! ```
//!
//! # Threads
//! [`Store`] and [`Layer`] are `Send + Sync`; [`TarStream`] is `Send` only. Layers and streams
//! borrow their store (`Layer<'s>`), since the C library invalidates them when the store is
//! freed; share a store between threads with `std::thread::scope` or an `Arc<Store>` and
//! scoped work.
//!
//! A layer cannot outlive its store:
//!
//! ```compile_fail
//! let layer = {
//!     let store = rolayer::Store::open("/tmp/layers")?;
//!     store.register_bytes(None, &[0u8; 1024])? // error: `store` does not live long enough
//! };
//! # Ok::<(), rolayer::Error>(())
//! ```
//!
//! and a stream cannot be shared between threads (it can be moved):
//!
//! ```compile_fail
//! fn shared<T: Sync>(_: &T) {}
//! # fn f(layer: &rolayer::Layer<'_>) -> rolayer::Result<()> {
//! let stream = layer.tar_stream()?;
//! shared(&stream); // error: `NonNull<rolayer_tar_stream>` cannot be shared between threads
//! # Ok(()) }
//! ```
//!
//! # Panics in readers
//! A reader given to [`Store::register`] runs inside a C callback. A panic there is caught
//! before it reaches C, the registration is aborted (the library leaves nothing behind), and the
//! panic is resumed once the C call has returned. An `io::Error` from the reader aborts the
//! registration with [`ErrorKind::User`] and is kept as the error's `source()`.
#![warn(missing_docs)]
#![deny(unsafe_op_in_unsafe_fn)]

mod digest;
pub mod docker;
mod driver;
mod error;
mod layer;
mod mount;
mod stage;
mod store;
mod stream;
mod util;

pub use digest::{ChainId, DiffId, Digest};
pub use driver::{Capabilities, Driver, DriverError, Payload};
pub use error::{Error, ErrorKind, Result};
pub use layer::{Layer, Removed};
pub use mount::{MOUNT_NODEV, MOUNT_NOEXEC, MOUNT_NOSUID};
pub use stage::{LayerInfo, Staged};
pub use store::{Descriptor, RegisterOptions, Store, StoreOptions, MAX_DEPTH};
pub use stream::TarStream;

/// The raw bindings, for what the safe API does not cover.
pub use rolayer_sys as sys;

/// The version of the loaded library, `"MAJOR.MINOR.PATCH"`.
pub fn version() -> &'static str {
    // SAFETY: a static NUL-terminated string.
    unsafe { std::ffi::CStr::from_ptr(sys::rolayer_version_string()) }
        .to_str()
        .unwrap_or("")
}

/// The loaded library's `ROLAYER_VERSION_NUMBER` (major * 10000 + minor * 100 + patch);
/// compare with [`sys::ROLAYER_VERSION_NUMBER`], the header's.
pub fn version_number() -> i32 {
    // SAFETY: no arguments, no state.
    unsafe { sys::rolayer_version() }
}

#[cfg(doctest)]
#[doc = include_str!("../../README.md")]
mod readme_doctest {}

#[cfg(doctest)]
#[doc = include_str!("../README.md")]
mod crate_readme_doctest {}
