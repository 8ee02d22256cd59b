// SPDX-License-Identifier: Apache-2.0
//! Raw FFI bindings to librolayer's C ABI (`rolayer.h`).
//!
//! Everything here is `unsafe` and follows the header's contract word for word; use the safe
//! `rolayer` crate instead. `src/bindings.rs` is bindgen's output for the public header,
//! checked in: bindgen does not run at build time. `tests/bindings.rs` regenerates it and fails
//! when it differs (`ROLAYER_BLESS=1 cargo test -p rolayer-sys --test bindings` rewrites it).
//!
//! The library is found with pkg-config (`rolayer >= 0.1, < 0.2`); the crate declares
//! `links = "rolayer"`, so dependents' build scripts see `DEP_ROLAYER_INCLUDE`.
#![no_std]
#![allow(non_camel_case_types, non_snake_case, non_upper_case_globals)]
#![allow(clippy::all)]
// The header's C comments become doc comments: "sha256:<hex>" is not HTML.
#![allow(
    rustdoc::invalid_html_tags,
    rustdoc::broken_intra_doc_links,
    rustdoc::bare_urls
)]

include!("bindings.rs");

impl rolayer_store_options {
    /// `ROLAYER_STORE_OPTIONS_INIT` (function-like initialisers are not translated by bindgen).
    pub const INIT: Self = Self {
        version: ROLAYER_STORE_OPTIONS_VERSION,
        driver: core::ptr::null(),
        driver_ops: core::ptr::null(),
        driver_user_data: core::ptr::null_mut(),
        busy_timeout_ms: 0,
        read_only: 0,
        payload_pack_max: 0,
    };
}

impl rolayer_register_options {
    /// `ROLAYER_REGISTER_OPTIONS_INIT`.
    pub const INIT: Self = Self {
        version: ROLAYER_REGISTER_OPTIONS_VERSION,
        descriptor_media_type: core::ptr::null(),
        descriptor_digest: core::ptr::null(),
        descriptor_size: 0,
    };
}
