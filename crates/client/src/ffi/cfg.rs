//! `corosync/cfg.h`.

use std::ffi::c_char;
use std::net::IpAddr;
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};
use std::sync::Arc;

use services::proto::CsError;

use super::{code, put, CsErrorT};
use crate::cfg::{Cfg, MAX_HOST_LEN, MAX_LINKS};
use crate::handles::HandleTable;
use crate::DispatchFlags;

type ShutdownFn = unsafe extern "C" fn(u64, c_uint);

/// `corosync_cfg_callbacks_t`.
#[repr(C)]
pub struct CfgCallbacksT {
    shutdown: Option<ShutdownFn>,
}

/// `corosync_cfg_node_address_t`.
#[repr(C)]
pub struct NodeAddressT {
    address_length: c_int,
    address: [u8; std::mem::size_of::<libc::sockaddr_in6>()],
}

/// `struct corosync_knet_link_status_v1`.
#[repr(C)]
pub struct LinkStatusV1 {
    enabled: u8,
    connected: u8,
    dynconnected: u8,
    mtu: c_uint,
    src_ipaddr: [c_char; MAX_HOST_LEN],
    dst_ipaddr: [c_char; MAX_HOST_LEN],
}

/// `struct corosync_cfg_node_status_v1`.
#[repr(C)]
pub struct NodeStatusV1 {
    version: c_uint,
    nodeid: c_uint,
    reachable: u8,
    remote: u8,
    external: u8,
    onwire_min: u8,
    onwire_max: u8,
    onwire_ver: u8,
    link_status: [LinkStatusV1; MAX_LINKS],
}

struct CfgInst {
    cfg: Cfg,
    context: AtomicPtr<c_void>,
}

static CFG_HANDLES: HandleTable<CfgInst> = HandleTable::new(0xCF60);

/// `cs_error_t corosync_cfg_initialize(corosync_cfg_handle_t *cfg_handle,
/// const corosync_cfg_callbacks_t *cfg_callbacks)`.
///
/// # Safety
/// `cfg_handle` is NULL or writable; `cfg_callbacks` NULL or readable.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_initialize(
    cfg_handle: *mut u64,
    cfg_callbacks: *const CfgCallbacksT,
) -> CsErrorT {
    if cfg_handle.is_null() {
        return CsError::InvalidParam.code();
    }
    let shutdown = if cfg_callbacks.is_null() {
        None
    } else {
        // SAFETY: non-NULL and readable by the contract.
        unsafe { (*cfg_callbacks).shutdown }
    };
    let handle = Arc::new(AtomicU64::new(0));
    let cb = shutdown.map(|f| {
        let handle = Arc::clone(&handle);
        Arc::new(move |_: &Cfg, flags: u32| {
            // SAFETY: the callback the application registered.
            unsafe { f(handle.load(Ordering::Acquire), flags) }
        }) as Arc<crate::cfg::ShutdownFn>
    });
    let r = Cfg::initialize(cb).and_then(|cfg| {
        let h = CFG_HANDLES.insert(CfgInst {
            cfg,
            context: AtomicPtr::new(std::ptr::null_mut()),
        })?;
        handle.store(h, Ordering::Release);
        // SAFETY: non-NULL (checked), writable by the contract.
        unsafe { put(cfg_handle, h) }
    });
    code(r)
}

/// `cs_error_t corosync_cfg_finalize(corosync_cfg_handle_t cfg_handle)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_finalize(cfg_handle: u64) -> CsErrorT {
    code(CFG_HANDLES.remove(cfg_handle).map(|inst| {
        let _ = inst.cfg.finalize();
    }))
}

/// `cs_error_t corosync_cfg_fd_get(corosync_cfg_handle_t cfg_handle, int32_t *selection_fd)`.
///
/// # Safety
/// `selection_fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_fd_get(cfg_handle: u64, selection_fd: *mut i32) -> CsErrorT {
    code(CFG_HANDLES.get(cfg_handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(selection_fd, inst.cfg.fd()) }
    }))
}

/// `cs_error_t corosync_cfg_context_get(corosync_cfg_handle_t, void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_context_get(
    cfg_handle: u64,
    context: *mut *mut c_void,
) -> CsErrorT {
    code(CFG_HANDLES.get(cfg_handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, inst.context.load(Ordering::Acquire)) }
    }))
}

/// `cs_error_t corosync_cfg_context_set(corosync_cfg_handle_t, void *context)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_context_set(cfg_handle: u64, context: *mut c_void) -> CsErrorT {
    code(
        CFG_HANDLES
            .get(cfg_handle)
            .map(|inst| inst.context.store(context, Ordering::Release)),
    )
}

/// `cs_error_t corosync_cfg_dispatch(corosync_cfg_handle_t, cs_dispatch_flags_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_dispatch(cfg_handle: u64, dispatch_flags: c_uint) -> CsErrorT {
    code(CFG_HANDLES.get(cfg_handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_flags).ok_or(CsError::InvalidParam)?;
        inst.cfg.dispatch(flags)
    }))
}

/// `cs_error_t corosync_cfg_local_get(corosync_cfg_handle_t, unsigned int *local_nodeid)`.
///
/// # Safety
/// `local_nodeid` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_local_get(
    handle: u64,
    local_nodeid: *mut c_uint,
) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|inst| {
        let id = inst.cfg.local_get()?;
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(local_nodeid, id) }
    }))
}

fn c_text(dst: &mut [c_char; MAX_HOST_LEN], s: &str) {
    let n = s.len().min(MAX_HOST_LEN - 1);
    for (d, b) in dst.iter_mut().zip(s.as_bytes()[..n].iter()) {
        *d = *b as c_char;
    }
    dst[n] = 0;
}

/// `cs_error_t corosync_cfg_node_status_get(corosync_cfg_handle_t, unsigned
/// int nodeid, corosync_cfg_node_status_version_t version, void *node_status)`.
///
/// # Safety
/// `node_status` is NULL or writable for a `struct corosync_cfg_node_status_v1`.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_node_status_get(
    handle: u64,
    nodeid: c_uint,
    version: c_uint,
    node_status: *mut c_void,
) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|inst| {
        if node_status.is_null() {
            return Err(CsError::InvalidParam);
        }
        if version != 1 {
            return Err(CsError::NotSupported);
        }
        let s = inst.cfg.node_status_get(nodeid)?;
        // SAFETY: zero is a valid bit pattern for this plain C struct.
        let mut out: NodeStatusV1 = unsafe { std::mem::zeroed() };
        out.version = 1;
        out.nodeid = s.nodeid;
        out.reachable = s.reachable as u8;
        out.remote = s.remote as u8;
        out.external = s.external as u8;
        out.onwire_min = s.onwire_min;
        out.onwire_max = s.onwire_max;
        out.onwire_ver = s.onwire_ver;
        for (dst, l) in out.link_status.iter_mut().zip(s.links.iter()) {
            dst.enabled = l.enabled as u8;
            dst.connected = l.connected as u8;
            dst.dynconnected = l.dynconnected as u8;
            dst.mtu = l.mtu;
            c_text(&mut dst.src_ipaddr, &l.src);
            c_text(&mut dst.dst_ipaddr, &l.dst);
        }
        // SAFETY: non-NULL, writable for the struct by the contract.
        unsafe { node_status.cast::<NodeStatusV1>().write_unaligned(out) };
        Ok(())
    }))
}

/// A `malloc`ed C string (NULL when out of memory).
fn malloc_str(s: &str) -> *mut c_char {
    // SAFETY: malloc of len + 1 bytes; NULL is checked.
    let p = unsafe { libc::malloc(s.len() + 1) }.cast::<u8>();
    if !p.is_null() {
        // SAFETY: `p` has room for the bytes and the terminator.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            p.add(s.len()).write(0);
        }
    }
    p.cast()
}

/// A `malloc`ed array of `malloc`ed strings.
fn malloc_list(list: &[String]) -> Result<*mut *mut c_char, CsError> {
    // SAFETY: malloc of n pointers (at least one byte); NULL is checked.
    let arr = unsafe { libc::malloc(std::mem::size_of::<*mut c_char>() * list.len().max(1)) }
        .cast::<*mut c_char>();
    if arr.is_null() {
        return Err(CsError::NoMemory);
    }
    for (i, s) in list.iter().enumerate() {
        // SAFETY: `arr` holds `list.len()` pointers.
        unsafe { arr.add(i).write(malloc_str(s)) };
    }
    Ok(arr)
}

/// `cs_error_t corosync_cfg_ring_status_get(corosync_cfg_handle_t, char
/// ***interface_names, char ***status, unsigned int *interface_count)`:
/// arrays and strings from `malloc`, freed by the caller.
///
/// # Safety
/// Every pointer is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_ring_status_get(
    handle: u64,
    interface_names: *mut *mut *mut c_char,
    status: *mut *mut *mut c_char,
    interface_count: *mut c_uint,
) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|inst| {
        if interface_names.is_null() || status.is_null() || interface_count.is_null() {
            return Err(CsError::InvalidParam);
        }
        let (names, st) = inst.cfg.ring_status_get()?;
        let n = malloc_list(&names)?;
        let s = malloc_list(&st)?;
        // SAFETY: all three are non-NULL and writable by the contract.
        unsafe {
            interface_names.write(n);
            status.write(s);
            interface_count.write(names.len() as c_uint);
        }
        Ok(())
    }))
}

/// `cs_error_t corosync_cfg_ring_reenable(corosync_cfg_handle_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_ring_reenable(handle: u64) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|i| i.cfg.ring_reenable()))
}

/// `cs_error_t corosync_cfg_kill_node(corosync_cfg_handle_t, unsigned int
/// nodeid, const char *reason)`.
///
/// # Safety
/// `reason` is NULL or a C string.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_kill_node(
    handle: u64,
    nodeid: c_uint,
    reason: *const c_char,
) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|inst| {
        let r = if reason.is_null() {
            String::new()
        } else {
            // SAFETY: a C string by the contract.
            unsafe { std::ffi::CStr::from_ptr(reason) }
                .to_string_lossy()
                .into_owned()
        };
        inst.cfg.kill_node(nodeid, &r)
    }))
}

/// `cs_error_t corosync_cfg_try_shutdown(corosync_cfg_handle_t, corosync_cfg_shutdown_flags_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_try_shutdown(handle: u64, flags: c_uint) -> CsErrorT {
    code(
        CFG_HANDLES
            .get(handle)
            .and_then(|i| i.cfg.try_shutdown(flags)),
    )
}

/// `cs_error_t corosync_cfg_replyto_shutdown(corosync_cfg_handle_t, corosync_cfg_shutdown_reply_flags_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_replyto_shutdown(handle: u64, flags: c_uint) -> CsErrorT {
    code(
        CFG_HANDLES
            .get(handle)
            .and_then(|i| i.cfg.replyto_shutdown(flags)),
    )
}

/// `cs_error_t corosync_cfg_reload_config(corosync_cfg_handle_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_reload_config(handle: u64) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|i| i.cfg.reload_config()))
}

/// `cs_error_t corosync_cfg_reopen_log_files(corosync_cfg_handle_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_reopen_log_files(handle: u64) -> CsErrorT {
    code(
        CFG_HANDLES
            .get(handle)
            .and_then(|i| i.cfg.reopen_log_files()),
    )
}

/// `cs_error_t corosync_cfg_trackstart(corosync_cfg_handle_t, uint8_t track_flags)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_trackstart(handle: u64, track_flags: u8) -> CsErrorT {
    code(
        CFG_HANDLES
            .get(handle)
            .and_then(|i| i.cfg.trackstart(track_flags)),
    )
}

/// `cs_error_t corosync_cfg_trackstop(corosync_cfg_handle_t)`.
#[no_mangle]
pub extern "C" fn corosync_cfg_trackstop(handle: u64) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|i| i.cfg.trackstop()))
}

fn sockaddr(ip: IpAddr) -> NodeAddressT {
    let mut a = NodeAddressT {
        address_length: 0,
        address: [0; std::mem::size_of::<libc::sockaddr_in6>()],
    };
    match ip {
        IpAddr::V4(v4) => {
            // SAFETY: zero is a valid sockaddr_in.
            let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
            sin.sin_family = libc::AF_INET as libc::sa_family_t;
            sin.sin_addr.s_addr = u32::from_ne_bytes(v4.octets());
            let n = std::mem::size_of::<libc::sockaddr_in>();
            // SAFETY: `sin` is `n` readable bytes; `address` has room.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&sin as *const libc::sockaddr_in).cast::<u8>(),
                    a.address.as_mut_ptr(),
                    n,
                )
            };
            a.address_length = n as c_int;
        }
        IpAddr::V6(v6) => {
            // SAFETY: zero is a valid sockaddr_in6.
            let mut sin6: libc::sockaddr_in6 = unsafe { std::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_addr.s6_addr = v6.octets();
            let n = std::mem::size_of::<libc::sockaddr_in6>();
            // SAFETY: `sin6` is `n` readable bytes; `address` has room.
            unsafe {
                std::ptr::copy_nonoverlapping(
                    (&sin6 as *const libc::sockaddr_in6).cast::<u8>(),
                    a.address.as_mut_ptr(),
                    n,
                )
            };
            a.address_length = n as c_int;
        }
    }
    a
}

/// `cs_error_t corosync_cfg_get_node_addrs(corosync_cfg_handle_t, int
/// nodeid, size_t max_addrs, int *num_addrs, corosync_cfg_node_address_t *addrs)`.
///
/// # Safety
/// `num_addrs` is NULL or writable; `addrs` NULL or writable for `max_addrs` entries.
#[no_mangle]
pub unsafe extern "C" fn corosync_cfg_get_node_addrs(
    handle: u64,
    nodeid: c_int,
    max_addrs: usize,
    num_addrs: *mut c_int,
    addrs: *mut NodeAddressT,
) -> CsErrorT {
    code(CFG_HANDLES.get(handle).and_then(|inst| {
        if num_addrs.is_null() || (addrs.is_null() && max_addrs > 0) {
            return Err(CsError::InvalidParam);
        }
        let list: Vec<IpAddr> = inst
            .cfg
            .get_node_addrs(nodeid as u32)?
            .iter()
            .filter_map(|s| s.parse().ok())
            .collect();
        let n = list.len().min(max_addrs);
        for (i, ip) in list.iter().take(n).enumerate() {
            // SAFETY: `addrs` is writable for `max_addrs` ≥ n entries.
            unsafe { addrs.add(i).write(sockaddr(*ip)) };
        }
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(num_addrs, n as c_int) }
    }))
}

const _: () = assert!(std::mem::size_of::<NodeAddressT>() == 32);
const _: () = assert!(std::mem::size_of::<LinkStatusV1>() == 520);
