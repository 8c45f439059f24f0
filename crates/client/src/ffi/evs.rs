//! `corosync/evs.h` (Corosync 1.x/2.x EVS API).

use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use services::proto::CsError;

use super::{code, iov_slices, put, CsErrorT};
use crate::evs::{Evs, EvsCallbacks, EvsHandlers, Group, MAX_GROUPS};
use crate::handles::HandleTable;
use crate::{DispatchFlags, Guarantee};

/// `struct evs_ring_id`.
#[repr(C)]
pub struct EvsRingId {
    nodeid: c_uint,
    seq: u64,
}

type DeliverFn = unsafe extern "C" fn(u64, c_uint, *const c_void, usize);
type ConfchgFn = unsafe extern "C" fn(
    u64,
    *const c_uint,
    usize,
    *const c_uint,
    usize,
    *const c_uint,
    usize,
    *const EvsRingId,
);

/// `evs_callbacks_t`.
#[repr(C)]
pub struct EvsCallbacksT {
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
}

struct CCallbacks {
    handle: AtomicU64,
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
}

impl EvsCallbacks for CCallbacks {
    fn deliver(&self, _evs: &Evs, nodeid: u32, msg: &[u8]) {
        let Some(f) = self.deliver else { return };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: a callback the application registered; `msg` is valid
        // for `msg.len()` bytes during the call.
        unsafe { f(h, nodeid, msg.as_ptr().cast(), msg.len()) }
    }

    fn confchg(&self, _evs: &Evs, members: &[u32], left: &[u32], joined: &[u32]) {
        let Some(f) = self.confchg else { return };
        // The protocol does not carry the ring id: it reads as zero.
        let ring = EvsRingId { nodeid: 0, seq: 0 };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback; every list is valid for its count
        // and `ring` for the call.
        unsafe {
            f(
                h,
                members.as_ptr(),
                members.len(),
                left.as_ptr(),
                left.len(),
                joined.as_ptr(),
                joined.len(),
                &ring,
            )
        }
    }
}

struct EvsInst {
    evs: Evs,
    callbacks: CCallbacks,
    context: AtomicPtr<c_void>,
}

static EVS_HANDLES: HandleTable<EvsInst> = HandleTable::new(0xE5E0);

/// The groups of a `const struct evs_group *groups, size_t group_cnt` pair.
///
/// # Safety
/// `groups` is NULL or points to `n` readable groups.
unsafe fn groups_arg(groups: *const Group, n: usize) -> Result<Vec<Group>, CsError> {
    if n > MAX_GROUPS {
        return Err(CsError::TooManyGroups);
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    if groups.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL, `n` readable `struct evs_group` (32 bytes, align 1,
    // the layout of `Group`) by the contract.
    Ok(unsafe { std::slice::from_raw_parts(groups, n) }.to_vec())
}

/// `cs_error_t evs_initialize(evs_handle_t *handle, evs_callbacks_t *callbacks)`.
///
/// # Safety
/// `handle` is NULL or writable; `callbacks` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn evs_initialize(
    handle: *mut u64,
    callbacks: *const EvsCallbacksT,
) -> CsErrorT {
    if handle.is_null() {
        return CsError::InvalidParam.code();
    }
    let (deliver, confchg) = if callbacks.is_null() {
        (None, None)
    } else {
        // SAFETY: non-NULL and readable by the contract.
        let cb = unsafe { &*callbacks };
        (cb.deliver, cb.confchg)
    };
    let r = Evs::initialize_shared(Arc::new(EvsHandlers::new())).and_then(|evs| {
        let h = EVS_HANDLES.insert(EvsInst {
            evs,
            callbacks: CCallbacks {
                handle: AtomicU64::new(0),
                deliver,
                confchg,
            },
            context: AtomicPtr::new(std::ptr::null_mut()),
        })?;
        EVS_HANDLES
            .get(h)?
            .callbacks
            .handle
            .store(h, Ordering::Release);
        // SAFETY: non-NULL (checked), writable by the contract.
        unsafe { put(handle, h) }
    });
    code(r)
}

/// `cs_error_t evs_finalize(evs_handle_t handle)`.
#[no_mangle]
pub extern "C" fn evs_finalize(handle: u64) -> CsErrorT {
    code(EVS_HANDLES.remove(handle).map(|inst| {
        let _ = inst.evs.finalize_shared();
    }))
}

/// `cs_error_t evs_fd_get(evs_handle_t handle, int *fd)`.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn evs_fd_get(handle: u64, fd: *mut c_int) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(fd, inst.evs.fd()) }
    }))
}

/// `cs_error_t evs_context_get(evs_handle_t handle, void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn evs_context_get(handle: u64, context: *mut *mut c_void) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, inst.context.load(Ordering::Acquire)) }
    }))
}

/// `cs_error_t evs_context_set(evs_handle_t handle, void *context)`.
#[no_mangle]
pub extern "C" fn evs_context_set(handle: u64, context: *mut c_void) -> CsErrorT {
    code(
        EVS_HANDLES
            .get(handle)
            .map(|inst| inst.context.store(context, Ordering::Release)),
    )
}

/// `cs_error_t evs_dispatch(evs_handle_t handle, cs_dispatch_flags_t dispatch_types)`.
#[no_mangle]
pub extern "C" fn evs_dispatch(handle: u64, dispatch_types: c_uint) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_types).ok_or(CsError::InvalidParam)?;
        inst.evs.dispatch_with(flags, &inst.callbacks)
    }))
}

/// `cs_error_t evs_join(evs_handle_t handle, const struct evs_group *groups, size_t group_cnt)`.
///
/// # Safety
/// `groups` is NULL or points to `group_cnt` readable groups.
#[no_mangle]
pub unsafe extern "C" fn evs_join(handle: u64, groups: *const Group, group_cnt: usize) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: forwarded contract.
        let g = unsafe { groups_arg(groups, group_cnt) }?;
        inst.evs.join(&g)
    }))
}

/// `cs_error_t evs_leave(evs_handle_t handle, const struct evs_group *groups, size_t group_cnt)`.
///
/// # Safety
/// `groups` is NULL or points to `group_cnt` readable groups.
#[no_mangle]
pub unsafe extern "C" fn evs_leave(
    handle: u64,
    groups: *const Group,
    group_cnt: usize,
) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: forwarded contract.
        let g = unsafe { groups_arg(groups, group_cnt) }?;
        inst.evs.leave(&g)
    }))
}

/// `cs_error_t evs_mcast_joined(evs_handle_t handle, evs_guarantee_t guarantee,
/// const struct iovec *iovec, unsigned int iov_len)`.
///
/// # Safety
/// `iovec` is NULL or points to `iov_len` iovecs of readable memory.
#[no_mangle]
pub unsafe extern "C" fn evs_mcast_joined(
    handle: u64,
    guarantee: c_uint,
    iovec: *const libc::iovec,
    iov_len: c_uint,
) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        let g = Guarantee::from_raw(guarantee).ok_or(CsError::InvalidParam)?;
        // SAFETY: forwarded contract.
        let parts = unsafe { iov_slices(iovec, iov_len) }?;
        inst.evs.mcast_joined(g, &parts)
    }))
}

/// `cs_error_t evs_mcast_groups(evs_handle_t handle, evs_guarantee_t guarantee,
/// const struct evs_group *groups, size_t group_cnt,
/// const struct iovec *iovec, unsigned int iov_len)`.
///
/// # Safety
/// As `evs_join` and `evs_mcast_joined`.
#[no_mangle]
pub unsafe extern "C" fn evs_mcast_groups(
    handle: u64,
    guarantee: c_uint,
    groups: *const Group,
    group_cnt: usize,
    iovec: *const libc::iovec,
    iov_len: c_uint,
) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        let g = Guarantee::from_raw(guarantee).ok_or(CsError::InvalidParam)?;
        // SAFETY: forwarded contract.
        let groups = unsafe { groups_arg(groups, group_cnt) }?;
        // SAFETY: forwarded contract.
        let parts = unsafe { iov_slices(iovec, iov_len) }?;
        inst.evs.mcast_groups(g, &groups, &parts)
    }))
}

/// `cs_error_t evs_membership_get(evs_handle_t handle, unsigned int *local_nodeid,
/// unsigned int *member_list, size_t *member_list_entries)`: as libevs,
/// `*member_list_entries` is the list's capacity on entry and the count
/// written on return; `local_nodeid` and `member_list` may be NULL.
///
/// # Safety
/// Pointers NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn evs_membership_get(
    handle: u64,
    local_nodeid: *mut c_uint,
    member_list: *mut c_uint,
    member_list_entries: *mut usize,
) -> CsErrorT {
    code(EVS_HANDLES.get(handle).and_then(|inst| {
        if member_list_entries.is_null() {
            return Err(CsError::InvalidParam);
        }
        let (local, members) = inst.evs.membership_get()?;
        if !local_nodeid.is_null() {
            // SAFETY: non-NULL, writable by the contract.
            unsafe { put(local_nodeid, local) }?;
        }
        // SAFETY: non-NULL, readable by the contract.
        let cap = unsafe { member_list_entries.read() };
        let n = members.len().min(cap);
        if !member_list.is_null() {
            for (i, m) in members.iter().take(n).enumerate() {
                // SAFETY: the list holds `cap >= n > i` entries (contract).
                unsafe { member_list.add(i).write(*m) };
            }
        }
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(member_list_entries, n) }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::evs::GROUP_LEN;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<Group>(), GROUP_LEN);
        assert_eq!(std::mem::align_of::<Group>(), 1);
        assert_eq!(std::mem::size_of::<EvsRingId>(), 16);
        assert_eq!(std::mem::size_of::<EvsCallbacksT>(), 16);
    }

    #[test]
    fn garbage_handles_and_nulls() {
        let bad = CsError::BadHandle.code();
        assert_eq!(evs_finalize(0), bad);
        assert_eq!(evs_dispatch(u64::MAX, 2), bad);
        // SAFETY: NULL handle pointer is answered, never written.
        let r = unsafe { evs_initialize(std::ptr::null_mut(), std::ptr::null()) };
        assert_eq!(r, CsError::InvalidParam.code());
        // SAFETY: no group is read when the count is refused.
        let r = unsafe { groups_arg(std::ptr::null(), MAX_GROUPS + 1) };
        assert_eq!(r.err(), Some(CsError::TooManyGroups));
        // SAFETY: NULL with a non-zero count is refused before reading.
        let r = unsafe { groups_arg(std::ptr::null(), 1) };
        assert_eq!(r.err(), Some(CsError::InvalidParam));
    }
}
