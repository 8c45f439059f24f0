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

/// Slices of a call's iovecs: a few inline (the common case, one or two
/// iovecs a message), more on the heap. A multicast allocated a `Vec` for
/// them: 5% of a 64-byte sender's instructions with the allocator (callgrind).
pub(crate) enum Slices<'a> {
    Inline([&'a [u8]; INLINE_IOVS], usize),
    Heap(Vec<&'a [u8]>),
}

const INLINE_IOVS: usize = 8;

impl<'a> std::ops::Deref for Slices<'a> {
    type Target = [&'a [u8]];
    fn deref(&self) -> &[&'a [u8]] {
        match self {
            Slices::Inline(a, n) => &a[..*n],
            Slices::Heap(v) => v,
        }
    }
}

/// The buffers an iovec array describes.
///
/// # Safety
/// `iov` is NULL or points to `n` iovecs, each describing `iov_len`
/// readable bytes that stay unchanged for `'a` (the caller's C contract).
pub(crate) unsafe fn iov_slices<'a>(
    iov: *const libc::iovec,
    n: c_uint,
) -> Result<Slices<'a>, CsError> {
    if n == 0 {
        return Ok(Slices::Inline([&[]; INLINE_IOVS], 0));
    }
    if iov.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL and pointing to `n` iovecs by the caller's contract.
    let iovs = unsafe { std::slice::from_raw_parts(iov, n as usize) };
    let mut inline: [&'a [u8]; INLINE_IOVS] = [&[]; INLINE_IOVS];
    let mut heap = Vec::new();
    let mut count = 0;
    for v in iovs {
        if v.iov_len == 0 {
            continue;
        }
        if v.iov_base.is_null() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: a non-empty iovec describes `iov_len` readable bytes at
        // `iov_base` (caller's contract), unchanged during the call.
        let part = unsafe { std::slice::from_raw_parts(v.iov_base as *const u8, v.iov_len) };
        if count < INLINE_IOVS {
            inline[count] = part;
        } else {
            if heap.is_empty() {
                heap.reserve(iovs.len());
                heap.extend_from_slice(&inline);
            }
            heap.push(part);
        }
        count += 1;
    }
    Ok(if count <= INLINE_IOVS {
        Slices::Inline(inline, count)
    } else {
        Slices::Heap(heap)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn iov(b: &[u8]) -> libc::iovec {
        libc::iovec {
            iov_base: b.as_ptr() as *mut libc::c_void,
            iov_len: b.len(),
        }
    }

    #[test]
    fn iovecs_become_slices_inline_or_on_the_heap() {
        // SAFETY (every call below): the iovecs describe live local buffers.
        let none = unsafe { iov_slices(std::ptr::null(), 0) }.unwrap();
        assert!(none.is_empty());
        let (a, b) = (b"abc".to_vec(), b"de".to_vec());
        let few = [iov(&a), iov(&[]), iov(&b)];
        let s = unsafe { iov_slices(few.as_ptr(), few.len() as c_uint) }.unwrap();
        assert!(matches!(s, Slices::Inline(_, 2)));
        assert_eq!(&*s, &[&a[..], &b[..]]);
        let bufs: Vec<Vec<u8>> = (0..12u8).map(|k| vec![k; usize::from(k) + 1]).collect();
        let many: Vec<libc::iovec> = bufs.iter().map(|b| iov(b)).collect();
        let s = unsafe { iov_slices(many.as_ptr(), many.len() as c_uint) }.unwrap();
        assert!(matches!(s, Slices::Heap(_)));
        let want: Vec<&[u8]> = bufs.iter().map(|b| &b[..]).collect();
        assert_eq!(&*s, &want[..]);
        let bad = [libc::iovec {
            iov_base: std::ptr::null_mut(),
            iov_len: 4,
        }];
        assert_eq!(
            unsafe { iov_slices(bad.as_ptr(), 1) }.err(),
            Some(CsError::InvalidParam)
        );
        assert_eq!(
            unsafe { iov_slices(std::ptr::null(), 3) }.err(),
            Some(CsError::InvalidParam)
        );
    }
}
