//! The C ABI: `extern "C"` functions matching `include/corosync/*.h`.
//!
//! Rules every function follows: a handle is looked up in a
//! [`HandleTable`](crate::handles::HandleTable) (stale or garbage handles
//! are `CS_ERR_BAD_HANDLE`); a NULL pointer the call needs is
//! `CS_ERR_INVALID_PARAM`; no lock is held while a user callback runs, so
//! callbacks may call any function, `*_finalize` included. This is the
//! only module with `unsafe`, each block with its `// SAFETY:` note; what
//! C code passes in is trusted only as far as the header's contract says
//! (pointers valid for the sizes it names).

mod cfg;
mod cmap;
mod common;
mod cpg;
mod evs;
mod quorum;
mod votequorum;

use std::os::raw::c_uint;

use services::proto::CsError;

/// `cs_error_t` as it crosses the ABI (a C enum: `unsigned int` here,
/// its values all positive).
pub(crate) type CsErrorT = c_uint;

pub(crate) fn code(r: Result<(), CsError>) -> CsErrorT {
    match r {
        Ok(()) => CsError::Ok.code(),
        Err(e) => e.code(),
    }
}

/// Writes `v` through an out-pointer.
///
/// # Safety
/// `p` is NULL or valid for a write of `T` (the caller's C contract).
pub(crate) unsafe fn put<T>(p: *mut T, v: T) -> Result<(), CsError> {
    if p.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL, and valid for writes by the caller's contract;
    // `write` does not read (or drop) the old, possibly uninitialized value.
    unsafe { p.write(v) };
    Ok(())
}

/// The buffers an iovec array describes.
///
/// # Safety
/// `iov` is NULL or points to `n` iovecs, each describing `iov_len`
/// readable bytes that stay unchanged for `'a` (the caller's C contract).
pub(crate) unsafe fn iov_slices<'a>(
    iov: *const libc::iovec,
    n: c_uint,
) -> Result<Vec<&'a [u8]>, CsError> {
    if n == 0 {
        return Ok(Vec::new());
    }
    if iov.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL and pointing to `n` iovecs by the caller's contract.
    let iovs = unsafe { std::slice::from_raw_parts(iov, n as usize) };
    let mut parts = Vec::with_capacity(iovs.len());
    for v in iovs {
        if v.iov_len == 0 {
            continue;
        }
        if v.iov_base.is_null() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: a non-empty iovec describes `iov_len` readable bytes at
        // `iov_base` (caller's contract), unchanged during the call.
        parts.push(unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) });
    }
    Ok(parts)
}
