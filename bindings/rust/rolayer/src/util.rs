// SPDX-License-Identifier: Apache-2.0
//! Small FFI helpers shared by the modules.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::io;
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

/// A `&mut [u8]` over a buffer the library lends a callback, zeroed first (it may be
/// uninitialised, and `Read` implementations may look at it).
///
/// # Safety
/// `buf` holds `cap` writable bytes, not otherwise used while the slice lives.
pub(crate) unsafe fn out_buf<'a>(buf: *mut c_void, cap: usize) -> &'a mut [u8] {
    if cap == 0 || buf.is_null() {
        return &mut [];
    }
    // SAFETY: per the caller.
    unsafe {
        ptr::write_bytes(buf.cast::<u8>(), 0, cap);
        std::slice::from_raw_parts_mut(buf.cast::<u8>(), cap)
    }
}

/// Runs `read` into `out`, retrying on `Interrupted`, and refuses a count larger than the
/// buffer (`InvalidData`, "`what` returned N bytes for a buffer of CAP").
pub(crate) fn read_checked(
    what: &str,
    out: &mut [u8],
    mut read: impl FnMut(&mut [u8]) -> io::Result<usize>,
) -> io::Result<usize> {
    let cap = out.len();
    let n = loop {
        match read(out) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => break r?,
        }
    };
    if n > cap {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("{what} returned {n} bytes for a buffer of {cap}"),
        ));
    }
    Ok(n)
}
