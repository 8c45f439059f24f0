//! `corosync/votequorum.h`.

use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use services::proto::votequorum::QDEVICE_MAX_NAME_LEN;
use services::proto::CsError;

use super::{code, put, CsErrorT};
use crate::handles::HandleTable;
use crate::votequorum::{RingId, Votequorum, VotequorumCallbacks, VotequorumHandlers};
use crate::DispatchFlags;

/// `struct votequorum_info`.
#[repr(C)]
pub struct VotequorumInfo {
    node_id: c_uint,
    node_state: c_uint,
    node_votes: c_uint,
    node_expected_votes: c_uint,
    highest_expected: c_uint,
    total_votes: c_uint,
    quorum: c_uint,
    flags: c_uint,
    qdevice_votes: c_uint,
    qdevice_name: [c_char; QDEVICE_MAX_NAME_LEN],
}

/// `votequorum_node_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VotequorumNode {
    nodeid: u32,
    state: u32,
}

/// `votequorum_ring_id_t`.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct VotequorumRingId {
    nodeid: u32,
    seq: u64,
}

type QuorumNotifyFn = unsafe extern "C" fn(u64, u64, u32, u32, *mut VotequorumNode);
type ExpectedNotifyFn = unsafe extern "C" fn(u64, u64, u32);
type NodelistNotifyFn = unsafe extern "C" fn(u64, u64, VotequorumRingId, u32, *mut u32);

/// `votequorum_callbacks_t`.
#[repr(C)]
pub struct VotequorumCallbacksT {
    votequorum_quorum_notify_fn: Option<QuorumNotifyFn>,
    votequorum_expectedvotes_notify_fn: Option<ExpectedNotifyFn>,
    votequorum_nodelist_notify_fn: Option<NodelistNotifyFn>,
}

struct CCallbacks {
    handle: AtomicU64,
    quorum: Option<QuorumNotifyFn>,
    expected: Option<ExpectedNotifyFn>,
    nodelist: Option<NodelistNotifyFn>,
}

impl VotequorumCallbacks for CCallbacks {
    fn quorum(&self, _vq: &Votequorum, context: u64, quorate: bool, nodes: &[(u32, u32)]) {
        let Some(f) = self.quorum else { return };
        let mut list: Vec<VotequorumNode> = nodes
            .iter()
            .map(|&(nodeid, state)| VotequorumNode { nodeid, state })
            .collect();
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: a registered callback; `list` is valid for its length
        // during the call.
        unsafe {
            f(
                h,
                context,
                u32::from(quorate),
                list.len() as u32,
                list.as_mut_ptr(),
            )
        }
    }

    fn nodelist(&self, _vq: &Votequorum, context: u64, r: RingId, members: &[u32]) {
        let Some(f) = self.nodelist else { return };
        let mut list = members.to_vec();
        let ring = VotequorumRingId {
            nodeid: r.nodeid,
            seq: r.seq,
        };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback; `list` valid for its length.
        unsafe { f(h, context, ring, list.len() as u32, list.as_mut_ptr()) }
    }

    fn expected_votes(&self, _vq: &Votequorum, context: u64, expected: u32) {
        let Some(f) = self.expected else { return };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback taking plain values.
        unsafe { f(h, context, expected) }
    }
}

struct VqInst {
    vq: Votequorum,
    callbacks: CCallbacks,
    context: AtomicPtr<c_void>,
}

static VQ_HANDLES: HandleTable<VqInst> = HandleTable::new(0x0A13);

/// `cs_error_t votequorum_initialize(votequorum_handle_t *handle,
/// votequorum_callbacks_t *callbacks)`.
///
/// # Safety
/// `handle` is NULL or writable; `callbacks` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn votequorum_initialize(
    handle: *mut u64,
    callbacks: *const VotequorumCallbacksT,
) -> CsErrorT {
    if handle.is_null() {
        return CsError::InvalidParam.code();
    }
    let (quorum, expected, nodelist) = if callbacks.is_null() {
        (None, None, None)
    } else {
        // SAFETY: non-NULL and readable by the contract.
        let cb = unsafe { &*callbacks };
        (
            cb.votequorum_quorum_notify_fn,
            cb.votequorum_expectedvotes_notify_fn,
            cb.votequorum_nodelist_notify_fn,
        )
    };
    let r = Votequorum::initialize_shared(Arc::new(VotequorumHandlers::new())).and_then(|vq| {
        let h = VQ_HANDLES.insert(VqInst {
            vq,
            callbacks: CCallbacks {
                handle: AtomicU64::new(0),
                quorum,
                expected,
                nodelist,
            },
            context: AtomicPtr::new(std::ptr::null_mut()),
        })?;
        VQ_HANDLES
            .get(h)?
            .callbacks
            .handle
            .store(h, Ordering::Release);
        // SAFETY: non-NULL (checked), writable by the contract.
        unsafe { put(handle, h) }
    });
    code(r)
}

/// `cs_error_t votequorum_finalize(votequorum_handle_t handle)`.
#[no_mangle]
pub extern "C" fn votequorum_finalize(handle: u64) -> CsErrorT {
    code(VQ_HANDLES.remove(handle).map(|inst| {
        let _ = inst.vq.finalize_shared();
    }))
}

/// `cs_error_t votequorum_dispatch(votequorum_handle_t handle, cs_dispatch_flags_t dispatch_types)`.
#[no_mangle]
pub extern "C" fn votequorum_dispatch(handle: u64, dispatch_types: c_uint) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_types).ok_or(CsError::InvalidParam)?;
        inst.vq.dispatch_with(flags, &inst.callbacks)
    }))
}

/// `cs_error_t votequorum_fd_get(votequorum_handle_t handle, int *fd)`.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn votequorum_fd_get(handle: u64, fd: *mut c_int) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(fd, inst.vq.fd()) }
    }))
}

/// `cs_error_t votequorum_getinfo(votequorum_handle_t handle, unsigned int nodeid,
/// struct votequorum_info *info)`.
///
/// # Safety
/// `info` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn votequorum_getinfo(
    handle: u64,
    nodeid: c_uint,
    info: *mut VotequorumInfo,
) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and_then(|inst| {
        if info.is_null() {
            return Err(CsError::InvalidParam);
        }
        let i = inst.vq.getinfo(nodeid)?;
        let mut name = [0 as c_char; QDEVICE_MAX_NAME_LEN];
        for (d, s) in name
            .iter_mut()
            .zip(i.qdevice_name.iter().take(QDEVICE_MAX_NAME_LEN - 1))
        {
            *d = *s as c_char;
        }
        let v = VotequorumInfo {
            node_id: i.node_id,
            node_state: i.node_state,
            node_votes: i.node_votes,
            node_expected_votes: i.node_expected_votes,
            highest_expected: i.highest_expected,
            total_votes: i.total_votes,
            quorum: i.quorum,
            flags: i.flags,
            qdevice_votes: i.qdevice_votes,
            qdevice_name: name,
        };
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(info, v) }
    }))
}

/// `cs_error_t votequorum_setexpected(votequorum_handle_t handle, unsigned int expected_votes)`.
#[no_mangle]
pub extern "C" fn votequorum_setexpected(handle: u64, expected_votes: c_uint) -> CsErrorT {
    code(
        VQ_HANDLES
            .get(handle)
            .and_then(|inst| inst.vq.setexpected(expected_votes)),
    )
}

/// `cs_error_t votequorum_setvotes(votequorum_handle_t handle, unsigned int nodeid,
/// unsigned int votes)`.
#[no_mangle]
pub extern "C" fn votequorum_setvotes(handle: u64, nodeid: c_uint, votes: c_uint) -> CsErrorT {
    code(
        VQ_HANDLES
            .get(handle)
            .and_then(|inst| inst.vq.setvotes(nodeid, votes)),
    )
}

/// `cs_error_t votequorum_trackstart(votequorum_handle_t handle, uint64_t context,
/// unsigned int flags)`.
#[no_mangle]
pub extern "C" fn votequorum_trackstart(handle: u64, context: u64, flags: c_uint) -> CsErrorT {
    code(
        VQ_HANDLES
            .get(handle)
            .and_then(|inst| inst.vq.trackstart(context, flags)),
    )
}

/// `cs_error_t votequorum_trackstop(votequorum_handle_t handle)`.
#[no_mangle]
pub extern "C" fn votequorum_trackstop(handle: u64) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and_then(|inst| inst.vq.trackstop()))
}

/// `cs_error_t votequorum_context_get(votequorum_handle_t handle, void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn votequorum_context_get(
    handle: u64,
    context: *mut *mut c_void,
) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, inst.context.load(Ordering::Acquire)) }
    }))
}

/// `cs_error_t votequorum_context_set(votequorum_handle_t handle, void *context)`.
#[no_mangle]
pub extern "C" fn votequorum_context_set(handle: u64, context: *mut c_void) -> CsErrorT {
    code(
        VQ_HANDLES
            .get(handle)
            .map(|inst| inst.context.store(context, Ordering::Release)),
    )
}

fn qdevice(handle: u64) -> CsErrorT {
    code(VQ_HANDLES.get(handle).and(Err(CsError::NotSupported)))
}

/// `votequorum_qdevice_register`: quorum devices are not supported.
#[no_mangle]
pub extern "C" fn votequorum_qdevice_register(handle: u64, _name: *const c_char) -> CsErrorT {
    qdevice(handle)
}

/// `votequorum_qdevice_unregister`: not supported.
#[no_mangle]
pub extern "C" fn votequorum_qdevice_unregister(handle: u64, _name: *const c_char) -> CsErrorT {
    qdevice(handle)
}

/// `votequorum_qdevice_update`: not supported.
#[no_mangle]
pub extern "C" fn votequorum_qdevice_update(
    handle: u64,
    _oldname: *const c_char,
    _newname: *const c_char,
) -> CsErrorT {
    qdevice(handle)
}

/// `votequorum_qdevice_poll`: not supported.
#[no_mangle]
pub extern "C" fn votequorum_qdevice_poll(
    handle: u64,
    _name: *const c_char,
    _cast_vote: c_uint,
    _ring_id: VotequorumRingId,
) -> CsErrorT {
    qdevice(handle)
}

/// `votequorum_qdevice_master_wins`: not supported.
#[no_mangle]
pub extern "C" fn votequorum_qdevice_master_wins(
    handle: u64,
    _name: *const c_char,
    _allow: c_uint,
) -> CsErrorT {
    qdevice(handle)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<VotequorumInfo>(), 36 + 255 + 1);
        assert_eq!(std::mem::size_of::<VotequorumNode>(), 8);
        assert_eq!(std::mem::size_of::<VotequorumRingId>(), 16);
        assert_eq!(std::mem::size_of::<VotequorumCallbacksT>(), 24);
    }

    #[test]
    fn garbage_handles_and_nulls() {
        let bad = CsError::BadHandle.code();
        assert_eq!(votequorum_finalize(0), bad);
        assert_eq!(votequorum_dispatch(3, 1), bad);
        assert_eq!(votequorum_setexpected(3, 2), bad);
        assert_eq!(votequorum_setvotes(3, 0, 1), bad);
        assert_eq!(votequorum_trackstart(3, 0, 1), bad);
        assert_eq!(votequorum_trackstop(3), bad);
        assert_eq!(votequorum_qdevice_register(3, std::ptr::null()), bad);
        // SAFETY: NULL pointers are answered, never written.
        unsafe {
            assert_eq!(votequorum_getinfo(3, 0, std::ptr::null_mut()), bad);
            let r = votequorum_initialize(std::ptr::null_mut(), std::ptr::null());
            assert_eq!(r, CsError::InvalidParam.code());
        }
    }
}
