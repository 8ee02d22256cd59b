//! Small FFI helpers shared by the modules.

use std::ffi::{c_char, c_int, CStr, CString};
use std::path::Path;
use std::ptr;

use rolayer_sys as sys;

use crate::error::{Error, Result};

/// Calls `f` with an error out-parameter and turns a non-zero status into an [`Error`].
pub(crate) fn call(f: impl FnOnce(*mut *mut sys::rolayer_error) -> c_int) -> Result<()> {
    let mut err: *mut sys::rolayer_error = ptr::null_mut();
    let rc = f(&mut err);
    if rc == sys::ROLAYER_OK {
        // On success *err is left untouched, so it is still NULL.
        Ok(())
    } else {
        // SAFETY: on failure err is NULL or a new error object that we own.
        Err(unsafe { Error::from_raw(rc, err) })
    }
}

/// Copies a borrowed C string (NULL gives None). Invalid UTF-8 is replaced.
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
pub(crate) unsafe fn opt_string(p: *const c_char) -> Option<String> {
    if p.is_null() {
        None
    } else {
        Some(unsafe { CStr::from_ptr(p) }.to_string_lossy().into_owned())
    }
}

pub(crate) fn c_string(s: &str, what: &str) -> Result<CString> {
    CString::new(s).map_err(|_| Error::invalid(format!("{what} contains a NUL byte")))
}

pub(crate) fn path_c_string(p: &Path) -> Result<CString> {
    use std::os::unix::ffi::OsStrExt;
    CString::new(p.as_os_str().as_bytes())
        .map_err(|_| Error::invalid("the path contains a NUL byte"))
}

/// A pointer to `s`, or NULL for None.
pub(crate) fn opt_ptr(s: Option<&CString>) -> *const c_char {
    s.map_or(ptr::null(), |s| s.as_ptr())
}
