// SPDX-License-Identifier: Apache-2.0
//! The error type: a status code from the C library with its detail.

use std::error::Error as StdError;
use std::ffi::{c_int, CStr};
use std::fmt;
use std::io;

use rolayer_sys as sys;

use crate::digest::DiffId;
use crate::util::opt_string;

/// A `Result` whose error is [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong: one variant per `ROLAYER_E*` status code, with the detail the C error
/// object carries for that code.
///
/// The C library may add codes; new variants may be added here, so `match` needs a wildcard
/// arm. Codes this version does not know come back as [`ErrorKind::Unknown`].
#[non_exhaustive]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// `ROLAYER_EINVAL`: an invalid argument or a malformed digest.
    InvalidArgument,
    /// `ROLAYER_ENOTFOUND`: the layer does not exist.
    NotFound,
    /// `ROLAYER_EEXISTS`: already exists.
    Exists,
    /// `ROLAYER_ENOTRETAINED`: the reference was already released (or, for
    /// [`Store::unretain`](crate::Store::unretain), the layer has no persistent reference).
    NotRetained,
    /// `ROLAYER_EMAXDEPTH`: the parent is already [`MAX_DEPTH`](crate::MAX_DEPTH) deep.
    MaxDepth,
    /// `ROLAYER_ENOTANCESTOR`: the given layer is not an ancestor of this one.
    NotAncestor,
    /// `ROLAYER_EDIGEST`: the stream does not match its DiffID.
    #[non_exhaustive]
    Digest {
        /// The DiffID of the layer that failed to verify.
        diff_id: Option<DiffId>,
    },
    /// `ROLAYER_ECORRUPT`: a stored payload or record is damaged.
    #[non_exhaustive]
    Corrupt {
        /// The DiffID of the layer, when known.
        diff_id: Option<DiffId>,
        /// The archive entry concerned, when known.
        path: Option<String>,
    },
    /// `ROLAYER_EARCHIVE`: a malformed or unsupported tar archive.
    #[non_exhaustive]
    Archive {
        /// The archive entry concerned, when known.
        path: Option<String>,
    },
    /// `ROLAYER_EUNSAFE`: an archive path or link escapes the layer.
    #[non_exhaustive]
    Unsafe {
        /// The archive entry concerned, when known.
        path: Option<String>,
    },
    /// `ROLAYER_EIO`: an operating-system I/O error.
    #[non_exhaustive]
    Io {
        /// The `errno` behind it (0 when there is none).
        errno: i32,
    },
    /// `ROLAYER_ENOMEM`: out of memory.
    OutOfMemory,
    /// `ROLAYER_EUSER`: a callback aborted the operation. For a reader passed to
    /// [`Store::register`](crate::Store::register), the reader's `io::Error` is the
    /// [`source`](std::error::Error::source) of the [`Error`].
    #[non_exhaustive]
    User {
        /// The value the callback returned.
        code: i32,
    },
    /// `ROLAYER_EBUSY`: the store is locked by another process.
    Busy,
    /// `ROLAYER_EUNSUPPORTED`: the operation is not supported (by this driver).
    Unsupported,
    /// A status code this version of the binding does not know.
    #[non_exhaustive]
    Unknown {
        /// The raw status code.
        code: i32,
    },
}

impl ErrorKind {
    /// The `ROLAYER_E*` status code of this kind.
    pub fn code(&self) -> i32 {
        match self {
            ErrorKind::InvalidArgument => sys::ROLAYER_EINVAL,
            ErrorKind::NotFound => sys::ROLAYER_ENOTFOUND,
            ErrorKind::Exists => sys::ROLAYER_EEXISTS,
            ErrorKind::NotRetained => sys::ROLAYER_ENOTRETAINED,
            ErrorKind::MaxDepth => sys::ROLAYER_EMAXDEPTH,
            ErrorKind::NotAncestor => sys::ROLAYER_ENOTANCESTOR,
            ErrorKind::Digest { .. } => sys::ROLAYER_EDIGEST,
            ErrorKind::Corrupt { .. } => sys::ROLAYER_ECORRUPT,
            ErrorKind::Archive { .. } => sys::ROLAYER_EARCHIVE,
            ErrorKind::Unsafe { .. } => sys::ROLAYER_EUNSAFE,
            ErrorKind::Io { .. } => sys::ROLAYER_EIO,
            ErrorKind::OutOfMemory => sys::ROLAYER_ENOMEM,
            ErrorKind::User { .. } => sys::ROLAYER_EUSER,
            ErrorKind::Busy => sys::ROLAYER_EBUSY,
            ErrorKind::Unsupported => sys::ROLAYER_EUNSUPPORTED,
            ErrorKind::Unknown { code } => *code,
        }
    }

    /// The `std::io::ErrorKind` an [`Error`] of this kind converts to.
    fn io_kind(&self) -> io::ErrorKind {
        match self {
            ErrorKind::InvalidArgument | ErrorKind::NotAncestor | ErrorKind::NotRetained => {
                io::ErrorKind::InvalidInput
            }
            ErrorKind::NotFound => io::ErrorKind::NotFound,
            ErrorKind::Exists => io::ErrorKind::AlreadyExists,
            ErrorKind::Digest { .. }
            | ErrorKind::Corrupt { .. }
            | ErrorKind::Archive { .. }
            | ErrorKind::Unsafe { .. } => io::ErrorKind::InvalidData,
            ErrorKind::Io { errno } if *errno != 0 => io::Error::from_raw_os_error(*errno).kind(),
            ErrorKind::OutOfMemory => io::ErrorKind::OutOfMemory,
            ErrorKind::Busy => io::ErrorKind::ResourceBusy,
            ErrorKind::Unsupported => io::ErrorKind::Unsupported,
            _ => io::ErrorKind::Other,
        }
    }
}

/// An error from librolayer: a [`kind`](Error::kind) (the status code and its detail), the
/// library's one-line message, and for a failing reader the reader's own error as
/// [`source`](std::error::Error::source).
///
/// It converts into [`std::io::Error`] (what [`TarStream`](crate::TarStream)'s `Read` returns)
/// with `io::Error::new(kind, err)`, so the `rolayer::Error` stays reachable:
///
/// ```
/// # fn f(e: std::io::Error) {
/// if let Some(err) = e.get_ref().and_then(|r| r.downcast_ref::<rolayer::Error>()) {
///     if let rolayer::ErrorKind::Digest { diff_id, .. } = err.kind() {
///         eprintln!("layer {diff_id:?} was modified on disk");
///     }
/// }
/// # }
/// ```
pub struct Error {
    kind: ErrorKind,
    message: String,
    source: Option<Box<dyn StdError + Send + Sync + 'static>>,
}

impl Error {
    /// A new error of `kind` with `message`.
    pub(crate) fn new(kind: ErrorKind, message: impl Into<String>) -> Error {
        Error {
            kind,
            message: message.into(),
            source: None,
        }
    }

    pub(crate) fn invalid(message: impl Into<String>) -> Error {
        Error::new(ErrorKind::InvalidArgument, message)
    }

    pub(crate) fn with_source(
        mut self,
        source: impl Into<Box<dyn StdError + Send + Sync>>,
    ) -> Error {
        self.source = Some(source.into());
        self
    }

    /// Builds an error from a failed call's status code and (owned, possibly NULL) error object,
    /// which is freed.
    ///
    /// # Safety
    /// `err` is NULL or an error object returned by the library that nothing else owns.
    pub(crate) unsafe fn from_raw(code: c_int, err: *mut sys::rolayer_error) -> Error {
        // The library may fail to allocate the error object (ENOMEM): fall back to the code.
        if err.is_null() {
            let kind = match code {
                sys::ROLAYER_EDIGEST => ErrorKind::Digest { diff_id: None },
                sys::ROLAYER_ECORRUPT => ErrorKind::Corrupt {
                    diff_id: None,
                    path: None,
                },
                sys::ROLAYER_EARCHIVE => ErrorKind::Archive { path: None },
                sys::ROLAYER_EUNSAFE => ErrorKind::Unsafe { path: None },
                sys::ROLAYER_EIO => ErrorKind::Io { errno: 0 },
                sys::ROLAYER_EUSER => ErrorKind::User { code: 0 },
                other => simple_kind(other),
            };
            return Error::new(kind, unsafe { strerror(code) });
        }
        // SAFETY (all getters): err is a live error object; strings are copied before the free.
        let message = unsafe { opt_string(sys::rolayer_error_message(err)) }
            .unwrap_or_else(|| unsafe { strerror(code) });
        let diff_id =
            || unsafe { opt_string(sys::rolayer_error_diff_id(err)) }.and_then(|s| s.parse().ok());
        let path = || unsafe { opt_string(sys::rolayer_error_path(err)) };
        let kind = match code {
            sys::ROLAYER_EDIGEST => ErrorKind::Digest { diff_id: diff_id() },
            sys::ROLAYER_ECORRUPT => ErrorKind::Corrupt {
                diff_id: diff_id(),
                path: path(),
            },
            sys::ROLAYER_EARCHIVE => ErrorKind::Archive { path: path() },
            sys::ROLAYER_EUNSAFE => ErrorKind::Unsafe { path: path() },
            sys::ROLAYER_EIO => ErrorKind::Io {
                errno: unsafe { sys::rolayer_error_errno(err) },
            },
            sys::ROLAYER_EUSER => ErrorKind::User {
                code: unsafe { sys::rolayer_error_user_code(err) },
            },
            other => simple_kind(other),
        };
        unsafe { sys::rolayer_error_free(err) };
        Error::new(kind, message)
    }

    /// What went wrong, with its detail.
    pub fn kind(&self) -> &ErrorKind {
        &self.kind
    }

    /// The `ROLAYER_E*` status code (the constants are in `rolayer_sys`).
    pub fn code(&self) -> i32 {
        self.kind.code()
    }

    /// The library's one-line message.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// True for [`ErrorKind::NotFound`].
    pub fn is_not_found(&self) -> bool {
        self.kind == ErrorKind::NotFound
    }

    /// True when verification failed: [`ErrorKind::Digest`] or [`ErrorKind::Corrupt`].
    pub fn is_verification(&self) -> bool {
        matches!(
            self.kind,
            ErrorKind::Digest { .. } | ErrorKind::Corrupt { .. }
        )
    }
}

/// The kind of a code that carries no detail.
fn simple_kind(code: c_int) -> ErrorKind {
    match code {
        sys::ROLAYER_EINVAL => ErrorKind::InvalidArgument,
        sys::ROLAYER_ENOTFOUND => ErrorKind::NotFound,
        sys::ROLAYER_EEXISTS => ErrorKind::Exists,
        sys::ROLAYER_ENOTRETAINED => ErrorKind::NotRetained,
        sys::ROLAYER_EMAXDEPTH => ErrorKind::MaxDepth,
        sys::ROLAYER_ENOTANCESTOR => ErrorKind::NotAncestor,
        sys::ROLAYER_ENOMEM => ErrorKind::OutOfMemory,
        sys::ROLAYER_EBUSY => ErrorKind::Busy,
        sys::ROLAYER_EUNSUPPORTED => ErrorKind::Unsupported,
        other => ErrorKind::Unknown { code: other },
    }
}

/// Static text for a status code.
unsafe fn strerror(code: c_int) -> String {
    // SAFETY: never NULL, static.
    unsafe { CStr::from_ptr(sys::rolayer_strerror(code)) }
        .to_string_lossy()
        .into_owned()
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut d = f.debug_struct("Error");
        d.field("kind", &self.kind).field("message", &self.message);
        if let Some(s) = &self.source {
            d.field("source", s);
        }
        d.finish()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl StdError for Error {
    fn source(&self) -> Option<&(dyn StdError + 'static)> {
        self.source
            .as_deref()
            .map(|e| e as &(dyn StdError + 'static))
    }
}

impl From<Error> for io::Error {
    /// `io::Error::new(kind, err)`: the [`Error`] stays reachable through `get_ref()`,
    /// `into_inner()` and `source()`. A reader's error keeps the reader's `io::ErrorKind`.
    fn from(err: Error) -> io::Error {
        let kind = match (&err.kind, err.source.as_deref()) {
            (ErrorKind::User { .. }, Some(src)) => match src.downcast_ref::<io::Error>() {
                Some(e) => e.kind(),
                None => io::ErrorKind::Other,
            },
            (k, _) => k.io_kind(),
        };
        // The library's errors are sticky (a failed stream fails again), so never hand out
        // `Interrupted`, which `Read` users retry forever.
        let kind = if kind == io::ErrorKind::Interrupted {
            io::ErrorKind::Other
        } else {
            kind
        };
        io::Error::new(kind, err)
    }
}
