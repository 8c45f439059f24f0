//! `corosync/cpg.h`.

use std::collections::HashMap;
use std::os::raw::{c_char, c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use services::proto::CsError;

use super::{code, iov_slices, put, CsErrorT};
use crate::cpg::{
    Address, Cpg, CpgCallbacks, FlowControl, IterationDescription, IterationType, RingId,
    MAX_NAME_LENGTH, MEMBERS_MAX,
};
use crate::handles::HandleTable;
use crate::{DispatchFlags, Guarantee};

/// `CPG_MODEL_V1`.
const CPG_MODEL_V1: c_uint = 1;

#[repr(C)]
pub struct CpgName {
    length: u32,
    value: [c_char; MAX_NAME_LENGTH],
}

#[repr(C)]
pub struct CpgAddress {
    nodeid: u32,
    pid: u32,
    reason: u32,
}

#[repr(C)]
pub struct CpgRingId {
    nodeid: u32,
    seq: u64,
}

#[repr(C)]
pub struct CpgIterationDescription {
    group: CpgName,
    nodeid: u32,
    pid: u32,
}

type DeliverFn = unsafe extern "C" fn(u64, *const CpgName, u32, u32, *mut c_void, usize);
type ConfchgFn = unsafe extern "C" fn(
    u64,
    *const CpgName,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
    *const CpgAddress,
    usize,
);
type TotemConfchgFn = unsafe extern "C" fn(u64, CpgRingId, u32, *const u32);

/// `cpg_callbacks_t`.
#[repr(C)]
pub struct CpgCallbacksT {
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
}

/// `cpg_model_v1_data_t`.
#[repr(C)]
pub struct CpgModelV1Data {
    model: c_uint,
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
    totem_confchg: Option<TotemConfchgFn>,
    flags: c_uint,
}

/// `cpg_model_data_t`: the common head of every model's data.
#[repr(C)]
pub struct CpgModelData {
    model: c_uint,
}

impl CpgName {
    const EMPTY: CpgName = CpgName {
        length: 0,
        value: [0; MAX_NAME_LENGTH],
    };

    fn new(bytes: &[u8]) -> CpgName {
        let mut n = CpgName::EMPTY;
        n.set(bytes);
        n
    }

    /// Writes `bytes` (zero-padded) where the name lies. The per-event
    /// callbacks fill one on their own stack this way: a name built by
    /// `new` and then moved there was read back in 16-byte loads right
    /// after `memcpy` wrote it in smaller stores, and that stall was 8% of
    /// a 64 B benchmark client's time.
    fn set(&mut self, bytes: &[u8]) {
        self.length = bytes.len() as u32;
        for (d, s) in self.value.iter_mut().zip(bytes) {
            *d = *s as c_char;
        }
    }

    /// The name's bytes; `NameTooLong` past the array.
    fn bytes(&self) -> Result<Vec<u8>, CsError> {
        let len = self.length as usize;
        if len > MAX_NAME_LENGTH {
            return Err(CsError::NameTooLong);
        }
        Ok(self.value[..len].iter().map(|&c| c as u8).collect())
    }
}

fn c_addresses(list: &[Address]) -> Vec<CpgAddress> {
    list.iter()
        .map(|a| CpgAddress {
            nodeid: a.nodeid,
            pid: a.pid,
            reason: a.reason,
        })
        .collect()
}

/// The C callbacks of one handle, called with that handle.
struct CCallbacks {
    handle: AtomicU64,
    deliver: Option<DeliverFn>,
    confchg: Option<ConfchgFn>,
    totem_confchg: Option<TotemConfchgFn>,
}

impl CpgCallbacks for CCallbacks {
    fn deliver(&self, _cpg: &Cpg, group: &[u8], nodeid: u32, pid: u32, msg: &mut [u8]) {
        let Some(f) = self.deliver else { return };
        let mut name = CpgName::EMPTY;
        name.set(group);
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: a callback the application registered for this handle;
        // every pointer is valid for the call (`msg` writable, as the
        // header promises).
        unsafe { f(h, &name, nodeid, pid, msg.as_mut_ptr().cast(), msg.len()) }
    }

    fn confchg(&self, _: &Cpg, group: &[u8], m: &[Address], l: &[Address], j: &[Address]) {
        let Some(f) = self.confchg else { return };
        let mut name = CpgName::EMPTY;
        name.set(group);
        let (m, l, j) = (c_addresses(m), c_addresses(l), c_addresses(j));
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback; each list pointer is valid for its
        // count of entries for the duration of the call.
        unsafe {
            f(
                h,
                &name,
                m.as_ptr(),
                m.len(),
                l.as_ptr(),
                l.len(),
                j.as_ptr(),
                j.len(),
            )
        }
    }

    fn totem_confchg(&self, _cpg: &Cpg, ring_id: RingId, members: &[u32]) {
        let Some(f) = self.totem_confchg else { return };
        let ring = CpgRingId {
            nodeid: ring_id.nodeid,
            seq: ring_id.seq,
        };
        let h = self.handle.load(Ordering::Acquire);
        // SAFETY: registered callback; `members` is valid for its length.
        unsafe { f(h, ring, members.len() as u32, members.as_ptr()) }
    }
}

/// Buffers from `cpg_zcb_alloc`, by address, with their lengths.
#[derive(Default)]
struct ZcbBuffers(HashMap<usize, usize>);

impl ZcbBuffers {
    fn alloc(&mut self, size: usize) -> *mut u8 {
        let buf: Box<[u8]> = vec![0u8; size.max(1)].into_boxed_slice();
        let len = buf.len();
        let ptr = Box::into_raw(buf) as *mut u8;
        self.0.insert(ptr as usize, len);
        ptr
    }

    fn free(&mut self, ptr: *mut u8) -> Result<(), CsError> {
        let len = self
            .0
            .remove(&(ptr as usize))
            .ok_or(CsError::InvalidParam)?;
        // SAFETY: `ptr`/`len` came from `Box::into_raw` in `alloc` and were
        // still in the map, so the box is live and freed exactly once.
        drop(unsafe { Box::from_raw(std::ptr::slice_from_raw_parts_mut(ptr, len)) });
        Ok(())
    }
}

impl Drop for ZcbBuffers {
    fn drop(&mut self) {
        let ptrs: Vec<usize> = self.0.keys().copied().collect();
        for p in ptrs {
            let _ = self.free(p as *mut u8);
        }
    }
}

struct CpgInst {
    cpg: Cpg,
    callbacks: CCallbacks,
    context: AtomicPtr<c_void>,
    zcb: Mutex<ZcbBuffers>,
}

struct IterInst {
    parent: u64,
    entries: Vec<IterationDescription>,
    next: Mutex<usize>,
}

static CPG_HANDLES: HandleTable<CpgInst> = HandleTable::new(0xC9A0);
static ITER_HANDLES: HandleTable<IterInst> = HandleTable::new(0xC9A1);

fn initialize(
    handle: *mut u64,
    model: u32,
    flags: u32,
    callbacks: CCallbacks,
    context: *mut c_void,
) -> Result<(), CsError> {
    if handle.is_null() {
        return Err(CsError::InvalidParam);
    }
    let cpg = if model == 0 {
        Cpg::initialize(crate::cpg::CpgHandlers::new())?
    } else {
        Cpg::model_initialize_shared(flags, Arc::new(crate::cpg::CpgHandlers::new()))?
    };
    let h = CPG_HANDLES.insert(CpgInst {
        cpg,
        callbacks,
        context: AtomicPtr::new(context),
        zcb: Mutex::new(ZcbBuffers::default()),
    })?;
    CPG_HANDLES
        .get(h)?
        .callbacks
        .handle
        .store(h, Ordering::Release);
    // SAFETY: checked non-NULL above; valid for a write by the contract.
    unsafe { put(handle, h) }
}

/// `cs_error_t cpg_initialize(cpg_handle_t *handle, cpg_callbacks_t *callbacks)`.
///
/// # Safety
/// `handle` is NULL or writable; `callbacks` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn cpg_initialize(
    handle: *mut u64,
    callbacks: *const CpgCallbacksT,
) -> CsErrorT {
    let (deliver, confchg) = if callbacks.is_null() {
        (None, None)
    } else {
        // SAFETY: non-NULL and readable by the contract.
        let cb = unsafe { &*callbacks };
        (cb.deliver, cb.confchg)
    };
    let cbs = CCallbacks {
        handle: AtomicU64::new(0),
        deliver,
        confchg,
        totem_confchg: None,
    };
    code(initialize(handle, 0, 0, cbs, std::ptr::null_mut()))
}

/// `cs_error_t cpg_model_initialize(cpg_handle_t *handle, cpg_model_t model,
/// cpg_model_data_t *model_data, void *context)`.
///
/// # Safety
/// `model_data` is NULL or points to the model's data struct
/// (`cpg_model_v1_data_t` for `CPG_MODEL_V1`).
#[no_mangle]
pub unsafe extern "C" fn cpg_model_initialize(
    handle: *mut u64,
    model: c_uint,
    model_data: *const CpgModelData,
    context: *mut c_void,
) -> CsErrorT {
    if model != CPG_MODEL_V1 {
        return CsError::InvalidParam.code();
    }
    let mut cbs = CCallbacks {
        handle: AtomicU64::new(0),
        deliver: None,
        confchg: None,
        totem_confchg: None,
    };
    let mut flags = 0;
    if !model_data.is_null() {
        // SAFETY: for CPG_MODEL_V1 the caller passes a cpg_model_v1_data_t
        // (libcpg reads it whole too); non-NULL, readable.
        let d = unsafe { &*(model_data as *const CpgModelV1Data) };
        cbs.deliver = d.deliver;
        cbs.confchg = d.confchg;
        cbs.totem_confchg = d.totem_confchg;
        flags = d.flags;
    }
    code(initialize(handle, CPG_MODEL_V1, flags, cbs, context))
}

/// `cs_error_t cpg_finalize(cpg_handle_t handle)`.
#[no_mangle]
pub extern "C" fn cpg_finalize(handle: u64) -> CsErrorT {
    let r = CPG_HANDLES.remove(handle).map(|inst| {
        ITER_HANDLES.remove_where(|it| it.parent == handle);
        // Whatever the daemon answers, the handle is gone (as libcpg).
        let _ = inst.cpg.finalize_shared();
    });
    code(r)
}

/// `cs_error_t cpg_fd_get(cpg_handle_t handle, int *fd)`.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_fd_get(handle: u64, fd: *mut c_int) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(fd, inst.cpg.fd()) }
    });
    code(r)
}

/// `cs_error_t cpg_max_atomic_msgsize_get(cpg_handle_t handle, uint32_t *size)`.
///
/// # Safety
/// `size` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_max_atomic_msgsize_get(handle: u64, size: *mut u32) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        if size.is_null() {
            return Err(CsError::InvalidParam);
        }
        let v = inst.cpg.max_atomic_msgsize()?;
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(size, v) }
    });
    code(r)
}

/// `cs_error_t cpg_context_get(cpg_handle_t handle, void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_context_get(handle: u64, context: *mut *mut c_void) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, inst.context.load(Ordering::Acquire)) }
    });
    code(r)
}

/// `cs_error_t cpg_context_set(cpg_handle_t handle, void *context)`.
#[no_mangle]
pub extern "C" fn cpg_context_set(handle: u64, context: *mut c_void) -> CsErrorT {
    let r = CPG_HANDLES
        .get(handle)
        .map(|inst| inst.context.store(context, Ordering::Release));
    code(r)
}

/// `cs_error_t cpg_dispatch(cpg_handle_t handle, cs_dispatch_flags_t dispatch_types)`.
#[no_mangle]
pub extern "C" fn cpg_dispatch(handle: u64, dispatch_types: c_uint) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_types).ok_or(CsError::InvalidParam)?;
        // `inst` (an Arc) keeps the connection alive even if a callback
        // finalizes the handle; the dispatch then ends with BAD_HANDLE.
        inst.cpg.dispatch_with(flags, &inst.callbacks)
    });
    code(r)
}

/// The bytes of a `struct cpg_name *` argument.
///
/// # Safety
/// `group` is NULL or readable.
unsafe fn name_arg(group: *const CpgName) -> Result<Vec<u8>, CsError> {
    if group.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL, readable by the contract.
    unsafe { &*group }.bytes()
}

/// `cs_error_t cpg_join(cpg_handle_t handle, const struct cpg_name *group)`.
///
/// # Safety
/// `group` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn cpg_join(handle: u64, group: *const CpgName) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: forwarded contract.
        let name = unsafe { name_arg(group) }?;
        inst.cpg.join(&name)
    });
    code(r)
}

/// `cs_error_t cpg_leave(cpg_handle_t handle, const struct cpg_name *group)`.
///
/// # Safety
/// `group` is NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn cpg_leave(handle: u64, group: *const CpgName) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: forwarded contract.
        let name = unsafe { name_arg(group) }?;
        inst.cpg.leave(&name)
    });
    code(r)
}

/// `cs_error_t cpg_mcast_joined(cpg_handle_t handle, cpg_guarantee_t guarantee,
/// const struct iovec *iovec, unsigned int iov_len)`.
///
/// # Safety
/// `iovec` is NULL or points to `iov_len` iovecs of readable memory.
#[no_mangle]
pub unsafe extern "C" fn cpg_mcast_joined(
    handle: u64,
    guarantee: c_uint,
    iovec: *const libc::iovec,
    iov_len: c_uint,
) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        let g = Guarantee::from_raw(guarantee).ok_or(CsError::InvalidParam)?;
        // SAFETY: forwarded contract.
        let parts = unsafe { iov_slices(iovec, iov_len) }?;
        inst.cpg.mcast_joined(g, &parts)
    });
    code(r)
}

/// `cs_error_t cpg_membership_get(cpg_handle_t handle, struct cpg_name *groupName,
/// struct cpg_address *member_list, int *member_list_entries)`. As libcpg,
/// `member_list` must hold `CPG_MEMBERS_MAX` entries (at most that many are
/// written); it may be NULL to get the count only.
///
/// # Safety
/// Pointers NULL or valid as described.
#[no_mangle]
pub unsafe extern "C" fn cpg_membership_get(
    handle: u64,
    group_name: *const CpgName,
    member_list: *mut CpgAddress,
    member_list_entries: *mut c_int,
) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        if member_list_entries.is_null() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: forwarded contract.
        let name = unsafe { name_arg(group_name) }?;
        let members = inst.cpg.membership_get(&name)?;
        let n = members.len().min(MEMBERS_MAX);
        if !member_list.is_null() {
            for (i, a) in members.iter().take(n).enumerate() {
                let c = CpgAddress {
                    nodeid: a.nodeid,
                    pid: a.pid,
                    reason: a.reason,
                };
                // SAFETY: the array holds CPG_MEMBERS_MAX entries (contract)
                // and `i < n <= CPG_MEMBERS_MAX`.
                unsafe { member_list.add(i).write(c) };
            }
        }
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(member_list_entries, n as c_int) }
    });
    code(r)
}

/// `cs_error_t cpg_local_get(cpg_handle_t handle, unsigned int *local_nodeid)`.
///
/// # Safety
/// `local_nodeid` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_local_get(handle: u64, local_nodeid: *mut c_uint) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        if local_nodeid.is_null() {
            return Err(CsError::InvalidParam);
        }
        let id = inst.cpg.local_get()?;
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(local_nodeid, id) }
    });
    code(r)
}

/// `cs_error_t cpg_flow_control_state_get(cpg_handle_t handle,
/// cpg_flow_control_state_t *flow_control_enabled)`.
///
/// # Safety
/// `state` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_flow_control_state_get(handle: u64, state: *mut c_uint) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        if state.is_null() {
            return Err(CsError::InvalidParam);
        }
        let v = match inst.cpg.flow_control_state_get()? {
            FlowControl::Disabled => 0,
            FlowControl::Enabled => 1,
        };
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(state, v) }
    });
    code(r)
}

/// `cs_error_t cpg_zcb_alloc(cpg_handle_t handle, size_t size, void **buffer)`:
/// a buffer for `cpg_zcb_mcast_joined`, freed by `cpg_zcb_free` or with
/// the handle.
///
/// # Safety
/// `buffer` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_zcb_alloc(
    handle: u64,
    size: usize,
    buffer: *mut *mut c_void,
) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        if buffer.is_null() {
            return Err(CsError::InvalidParam);
        }
        if size > inst.cpg.max_request() {
            return Err(CsError::TooBig);
        }
        let mut zcb = inst.zcb.lock().unwrap_or_else(|p| p.into_inner());
        let ptr = zcb.alloc(size);
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(buffer, ptr.cast()) }
    });
    code(r)
}

/// `cs_error_t cpg_zcb_free(cpg_handle_t handle, void *buffer)`.
#[no_mangle]
pub extern "C" fn cpg_zcb_free(handle: u64, buffer: *mut c_void) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        let mut zcb = inst.zcb.lock().unwrap_or_else(|p| p.into_inner());
        zcb.free(buffer.cast())
    });
    code(r)
}

/// `cs_error_t cpg_zcb_mcast_joined(cpg_handle_t handle, cpg_guarantee_t guarantee,
/// void *msg, size_t msg_len)`: `msg` must come from `cpg_zcb_alloc`.
#[no_mangle]
pub extern "C" fn cpg_zcb_mcast_joined(
    handle: u64,
    guarantee: c_uint,
    msg: *mut c_void,
    msg_len: usize,
) -> CsErrorT {
    let r = CPG_HANDLES.get(handle).and_then(|inst| {
        let g = Guarantee::from_raw(guarantee).ok_or(CsError::InvalidParam)?;
        let zcb = inst.zcb.lock().unwrap_or_else(|p| p.into_inner());
        let len = *zcb.0.get(&(msg as usize)).ok_or(CsError::InvalidParam)?;
        if msg_len > len {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: `msg` is a live buffer of `len >= msg_len` bytes from
        // `cpg_zcb_alloc` (it is in the map, which we hold locked so it
        // cannot be freed meanwhile).
        let bytes = unsafe { std::slice::from_raw_parts(msg as *const u8, msg_len) };
        inst.cpg.mcast_joined(g, &[bytes])
    });
    code(r)
}

/// `cs_error_t cpg_iteration_initialize(cpg_handle_t handle,
/// cpg_iteration_type_t iteration_type, const struct cpg_name *group,
/// cpg_iteration_handle_t *cpg_iteration_handle)`.
///
/// # Safety
/// `group` is NULL or readable; `cpg_iteration_handle` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_iteration_initialize(
    handle: u64,
    iteration_type: c_uint,
    group: *const CpgName,
    cpg_iteration_handle: *mut u64,
) -> CsErrorT {
    let r = (|| {
        // The arguments are checked before the handle, in Corosync's order.
        let name = if group.is_null() {
            None
        } else {
            // SAFETY: non-NULL, readable by the contract.
            Some(unsafe { &*group }.bytes()?)
        };
        if cpg_iteration_handle.is_null() {
            return Err(CsError::InvalidParam);
        }
        let kind = match iteration_type {
            1 => IterationType::NameOnly,
            2 => IterationType::OneGroup,
            3 => IterationType::All,
            _ => return Err(CsError::InvalidParam),
        };
        if (kind == IterationType::OneGroup) != name.is_some() {
            return Err(CsError::InvalidParam);
        }
        let inst = CPG_HANDLES.get(handle)?;
        let entries = inst.cpg.iteration(kind, name.as_deref())?;
        let h = ITER_HANDLES.insert(IterInst {
            parent: handle,
            entries,
            next: Mutex::new(0),
        })?;
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(cpg_iteration_handle, h) }
    })();
    code(r)
}

/// `cs_error_t cpg_iteration_next(cpg_iteration_handle_t handle,
/// struct cpg_iteration_description_t *description)`: `CS_ERR_NO_SECTIONS`
/// after the last entry.
///
/// # Safety
/// `description` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cpg_iteration_next(
    handle: u64,
    description: *mut CpgIterationDescription,
) -> CsErrorT {
    if description.is_null() {
        // Before the handle, as Corosync checks it.
        return code(Err(CsError::InvalidParam));
    }
    let r = ITER_HANDLES.get(handle).and_then(|it| {
        let mut next = it.next.lock().unwrap_or_else(|p| p.into_inner());
        let e = it.entries.get(*next).ok_or(CsError::NoSections)?;
        *next += 1;
        let d = CpgIterationDescription {
            group: CpgName::new(&e.group[..e.group.len().min(MAX_NAME_LENGTH)]),
            nodeid: e.nodeid,
            pid: e.pid,
        };
        // SAFETY: non-NULL, writable by the contract.
        unsafe { put(description, d) }
    });
    code(r)
}

/// `cs_error_t cpg_iteration_finalize(cpg_iteration_handle_t handle)`.
#[no_mangle]
pub extern "C" fn cpg_iteration_finalize(handle: u64) -> CsErrorT {
    code(ITER_HANDLES.remove(handle).map(drop))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn layouts_match_the_header() {
        assert_eq!(std::mem::size_of::<CpgName>(), 132);
        assert_eq!(std::mem::size_of::<CpgAddress>(), 12);
        assert_eq!(std::mem::size_of::<CpgRingId>(), 16);
        assert_eq!(std::mem::size_of::<CpgIterationDescription>(), 140);
        assert_eq!(std::mem::size_of::<CpgCallbacksT>(), 16);
        assert_eq!(std::mem::size_of::<CpgModelV1Data>(), 40);
    }

    #[test]
    fn names_round_trip_and_too_long_is_refused() {
        let n = CpgName::new(b"abc");
        assert_eq!(n.bytes().unwrap(), b"abc");
        let bad = CpgName {
            length: 129,
            value: [0; MAX_NAME_LENGTH],
        };
        assert_eq!(bad.bytes().err(), Some(CsError::NameTooLong));
    }

    #[test]
    fn garbage_handles_and_nulls() {
        let bad = CsError::BadHandle.code();
        assert_eq!(cpg_finalize(0), bad);
        assert_eq!(cpg_finalize(0x1234_5678_9abc_def0), bad);
        assert_eq!(cpg_dispatch(7, 1), bad);
        assert_eq!(cpg_iteration_finalize(99), bad);
        assert_eq!(cpg_zcb_free(1, std::ptr::null_mut()), bad);
        let mut fd = 0;
        // SAFETY: valid out-pointer.
        assert_eq!(unsafe { cpg_fd_get(42, &mut fd) }, bad);
        // SAFETY: NULL handle pointer is answered, never written.
        let r = unsafe { cpg_initialize(std::ptr::null_mut(), std::ptr::null()) };
        assert_eq!(r, CsError::InvalidParam.code());
        // SAFETY: model 7 is refused before anything is read.
        let r = unsafe {
            cpg_model_initialize(
                std::ptr::null_mut(),
                7,
                std::ptr::null(),
                std::ptr::null_mut(),
            )
        };
        assert_eq!(r, CsError::InvalidParam.code());
    }

    #[test]
    fn zcb_buffers_are_tracked_and_freed() {
        let mut z = ZcbBuffers::default();
        let a = z.alloc(100);
        let b = z.alloc(0);
        assert_ne!(a, b);
        assert_eq!(z.free(a), Ok(()));
        assert_eq!(z.free(a), Err(CsError::InvalidParam));
        assert_eq!(z.0.len(), 1);
        drop(z);
    }
}
