//! `corosync/quorum.h`.

use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use services::proto::CsError;

use super::{code, put, CsErrorT};
use crate::handles::HandleTable;
use crate::quorum::{Model, Quorum, QuorumCallbacks, QuorumHandlers, RingId};
use crate::DispatchFlags;

/// `quorum_ring_id`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct QuorumRingId {
    nodeid: u32,
    seq: u64,
}

type V0NotifyFn = unsafe extern "C" fn(u64, u32, u64, u32, *mut u32);
type V1NotifyFn = unsafe extern "C" fn(u64, u32, QuorumRingId, u32, *const u32);
type V1NodelistFn =
    unsafe extern "C" fn(u64, QuorumRingId, u32, *const u32, u32, *const u32, u32, *const u32);

/// `quorum_callbacks_t` (and `quorum_model_v0_data_t` after its model).
#[repr(C)]
pub struct QuorumCallbacksT {
    quorum_notify_fn: Option<V0NotifyFn>,
}

/// `quorum_model_v0_data_t`.
#[repr(C)]
pub struct ModelV0Data {
    model: c_uint,
    quorum_notify_fn: Option<V0NotifyFn>,
}

/// `quorum_model_v1_data_t`.
#[repr(C)]
pub struct ModelV1Data {
    model: c_uint,
    quorum_notify_fn: Option<V1NotifyFn>,
    nodelist_notify_fn: Option<V1NodelistFn>,
}

enum CFns {
    V0(Option<V0NotifyFn>),
    V1(Option<V1NotifyFn>, Option<V1NodelistFn>),
}

struct CCallbacks {
    handle: AtomicU64,
    fns: CFns,
}

fn ring(r: RingId) -> QuorumRingId {
    QuorumRingId {
        nodeid: r.nodeid,
        seq: r.seq,
    }
}

impl QuorumCallbacks for CCallbacks {
    fn notify(&self, _q: &Quorum, quorate: bool, r: RingId, members: &[u32]) {
        let h = self.handle.load(Ordering::Acquire);
        let n = members.len() as u32;
        match self.fns {
            CFns::V0(Some(f)) => {
                // The V0 prototype takes a mutable list: hand it a copy.
                let mut list = members.to_vec();
                // SAFETY: a callback the application registered; `list` is
                // valid for `n` entries during the call.
                unsafe { f(h, u32::from(quorate), r.seq, n, list.as_mut_ptr()) }
            }
            // SAFETY: registered callback; `members` valid for `n` entries.
            CFns::V1(Some(f), _) => unsafe {
                f(h, u32::from(quorate), ring(r), n, members.as_ptr())
            },
            _ => {}
        }
    }

    fn nodelist(&self, _q: &Quorum, r: RingId, members: &[u32], joined: &[u32], left: &[u32]) {
        let CFns::V1(_, Some(f)) = self.fns else {
            return;
        };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback; every list valid for its count.
        unsafe {
            f(
                h,
                ring(r),
                members.len() as u32,
                members.as_ptr(),
                joined.len() as u32,
                joined.as_ptr(),
                left.len() as u32,
                left.as_ptr(),
            )
        }
    }
}

struct QuorumInst {
    quorum: Quorum,
    callbacks: CCallbacks,
    context: AtomicPtr<c_void>,
}

static QUORUM_HANDLES: HandleTable<QuorumInst> = HandleTable::new(0x0A10);

fn init(
    handle: *mut u64,
    quorum_type: *mut u32,
    model: Model,
    fns: CFns,
    context: *mut c_void,
) -> Result<(), CsError> {
    if handle.is_null() || quorum_type.is_null() {
        return Err(CsError::InvalidParam);
    }
    let (quorum, t) = Quorum::initialize_shared(model, Arc::new(QuorumHandlers::new()))?;
    let h = QUORUM_HANDLES.insert(QuorumInst {
        quorum,
        callbacks: CCallbacks {
            handle: AtomicU64::new(0),
            fns,
        },
        context: AtomicPtr::new(context),
    })?;
    QUORUM_HANDLES
        .get(h)?
        .callbacks
        .handle
        .store(h, Ordering::Release);
    // SAFETY: both non-NULL (checked), writable by the caller's contract.
    unsafe {
        put(quorum_type, t)?;
        put(handle, h)
    }
}

/// `cs_error_t quorum_initialize(quorum_handle_t *handle,
/// quorum_callbacks_t *callbacks, uint32_t *quorum_type)`.
///
/// # Safety
/// `handle` and `quorum_type` NULL or writable; `callbacks` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn quorum_initialize(
    handle: *mut u64,
    callbacks: *const QuorumCallbacksT,
    quorum_type: *mut u32,
) -> CsErrorT {
    let f = if callbacks.is_null() {
        None
    } else {
        // SAFETY: non-NULL and readable by the contract.
        unsafe { (*callbacks).quorum_notify_fn }
    };
    code(init(
        handle,
        quorum_type,
        Model::V0,
        CFns::V0(f),
        std::ptr::null_mut(),
    ))
}

/// `cs_error_t quorum_model_initialize(quorum_handle_t *handle,
/// quorum_model_t model, quorum_model_data_t *model_data,
/// uint32_t *quorum_type, void *context)`.
///
/// # Safety
/// `model_data` NULL or pointing to the `quorum_model_v*_data_t` that
/// `model` names; other pointers as `quorum_initialize`.
#[no_mangle]
pub unsafe extern "C" fn quorum_model_initialize(
    handle: *mut u64,
    model: c_uint,
    model_data: *const c_void,
    quorum_type: *mut u32,
    context: *mut c_void,
) -> CsErrorT {
    let r = match model {
        0 => {
            let f = if model_data.is_null() {
                None
            } else {
                // SAFETY: a `quorum_model_v0_data_t` by the contract.
                unsafe { (*model_data.cast::<ModelV0Data>()).quorum_notify_fn }
            };
            init(handle, quorum_type, Model::V0, CFns::V0(f), context)
        }
        1 => {
            let (n, l) = if model_data.is_null() {
                (None, None)
            } else {
                // SAFETY: a `quorum_model_v1_data_t` by the contract.
                let d = unsafe { &*model_data.cast::<ModelV1Data>() };
                (d.quorum_notify_fn, d.nodelist_notify_fn)
            };
            init(handle, quorum_type, Model::V1, CFns::V1(n, l), context)
        }
        _ => Err(CsError::InvalidParam),
    };
    code(r)
}

/// `cs_error_t quorum_finalize(quorum_handle_t handle)`.
#[no_mangle]
pub extern "C" fn quorum_finalize(handle: u64) -> CsErrorT {
    code(QUORUM_HANDLES.remove(handle).map(|inst| {
        let _ = inst.quorum.finalize_shared();
    }))
}

/// `cs_error_t quorum_fd_get(quorum_handle_t handle, int *fd)`.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn quorum_fd_get(handle: u64, fd: *mut c_int) -> CsErrorT {
    code(QUORUM_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(fd, inst.quorum.fd()) }
    }))
}

/// `cs_error_t quorum_dispatch(quorum_handle_t handle, cs_dispatch_flags_t dispatch_types)`.
#[no_mangle]
pub extern "C" fn quorum_dispatch(handle: u64, dispatch_types: c_uint) -> CsErrorT {
    code(QUORUM_HANDLES.get(handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_types).ok_or(CsError::InvalidParam)?;
        inst.quorum.dispatch_with(flags, &inst.callbacks)
    }))
}

/// `cs_error_t quorum_getquorate(quorum_handle_t handle, int *quorate)`.
///
/// # Safety
/// `quorate` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn quorum_getquorate(handle: u64, quorate: *mut c_int) -> CsErrorT {
    code(QUORUM_HANDLES.get(handle).and_then(|inst| {
        if quorate.is_null() {
            return Err(CsError::InvalidParam);
        }
        let q = inst.quorum.getquorate()?;
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(quorate, c_int::from(q)) }
    }))
}

/// `cs_error_t quorum_trackstart(quorum_handle_t handle, unsigned int flags)`.
#[no_mangle]
pub extern "C" fn quorum_trackstart(handle: u64, flags: c_uint) -> CsErrorT {
    code(
        QUORUM_HANDLES
            .get(handle)
            .and_then(|inst| inst.quorum.trackstart(flags)),
    )
}

/// `cs_error_t quorum_trackstop(quorum_handle_t handle)`.
#[no_mangle]
pub extern "C" fn quorum_trackstop(handle: u64) -> CsErrorT {
    code(
        QUORUM_HANDLES
            .get(handle)
            .and_then(|inst| inst.quorum.trackstop()),
    )
}

/// `cs_error_t quorum_context_set(quorum_handle_t handle, const void *context)`.
#[no_mangle]
pub extern "C" fn quorum_context_set(handle: u64, context: *const c_void) -> CsErrorT {
    code(
        QUORUM_HANDLES
            .get(handle)
            .map(|inst| inst.context.store(context.cast_mut(), Ordering::Release)),
    )
}

/// `cs_error_t quorum_context_get(quorum_handle_t handle, const void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn quorum_context_get(handle: u64, context: *mut *const c_void) -> CsErrorT {
    code(QUORUM_HANDLES.get(handle).and_then(|inst| {
        let v = inst.context.load(Ordering::Acquire).cast_const();
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, v) }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<QuorumRingId>(), 16);
        assert_eq!(std::mem::size_of::<QuorumCallbacksT>(), 8);
        assert_eq!(std::mem::size_of::<ModelV0Data>(), 16);
        assert_eq!(std::mem::size_of::<ModelV1Data>(), 24);
    }

    #[test]
    fn garbage_handles_and_nulls() {
        let bad = CsError::BadHandle.code();
        assert_eq!(quorum_finalize(0), bad);
        assert_eq!(quorum_dispatch(u64::MAX, 2), bad);
        assert_eq!(quorum_trackstart(7, 1), bad);
        assert_eq!(quorum_trackstop(7), bad);
        assert_eq!(quorum_context_set(7, std::ptr::null()), bad);
        // SAFETY: NULL out-pointers are answered, never written.
        unsafe {
            assert_eq!(quorum_getquorate(7, std::ptr::null_mut()), bad);
            let r = quorum_initialize(std::ptr::null_mut(), std::ptr::null(), std::ptr::null_mut());
            assert_eq!(r, CsError::InvalidParam.code());
            let mut h = 0u64;
            let mut t = 0u32;
            let r =
                quorum_model_initialize(&mut h, 9, std::ptr::null(), &mut t, std::ptr::null_mut());
            assert_eq!(r, CsError::InvalidParam.code());
        }
    }
}
