//! `corosync/cmap.h`.

use std::ffi::{c_char, CStr};
use std::os::raw::{c_int, c_uint, c_void};
use std::sync::atomic::{AtomicPtr, AtomicU64, Ordering};

use services::proto::CsError;

use super::{code, put, CsErrorT};
use crate::cmap::{value_type, Cmap, Map, Value, KEYNAME_MAXLEN};
use crate::handles::HandleTable;
use crate::DispatchFlags;

/// `struct cmap_notify_value`.
#[repr(C)]
pub struct CmapNotifyValue {
    type_: c_uint,
    len: usize,
    data: *const c_void,
}

type NotifyFn = unsafe extern "C" fn(
    u64,
    u64,
    i32,
    *const c_char,
    CmapNotifyValue,
    CmapNotifyValue,
    *mut c_void,
);

struct CmapInst {
    cmap: Cmap,
    handle: AtomicU64,
    context: AtomicPtr<c_void>,
}

static CMAP_HANDLES: HandleTable<CmapInst> = HandleTable::new(0xC3A9);

/// A key argument.
///
/// # Safety
/// `p` is NULL or a NUL-terminated string.
unsafe fn key_arg<'a>(p: *const c_char) -> Result<&'a str, CsError> {
    if p.is_null() {
        return Err(CsError::InvalidParam);
    }
    // SAFETY: non-NULL and NUL-terminated by the contract.
    let s = unsafe { CStr::from_ptr(p) };
    s.to_str().map_err(|_| CsError::NameTooLong)
}

fn initialize(handle: *mut u64, map: Map) -> CsErrorT {
    if handle.is_null() {
        return CsError::InvalidParam.code();
    }
    let r = Cmap::initialize(map).and_then(|cmap| {
        let h = CMAP_HANDLES.insert(CmapInst {
            cmap,
            handle: AtomicU64::new(0),
            context: AtomicPtr::new(std::ptr::null_mut()),
        })?;
        CMAP_HANDLES.get(h)?.handle.store(h, Ordering::Release);
        // SAFETY: non-NULL (checked), writable by the contract.
        unsafe { put(handle, h) }
    });
    code(r)
}

/// `cs_error_t cmap_initialize(cmap_handle_t *handle)`.
///
/// # Safety
/// `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_initialize(handle: *mut u64) -> CsErrorT {
    initialize(handle, Map::Icmap)
}

/// `cs_error_t cmap_initialize_map(cmap_handle_t *handle, cmap_map_t map)`.
///
/// # Safety
/// `handle` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_initialize_map(handle: *mut u64, map: c_uint) -> CsErrorT {
    match map {
        0 => initialize(handle, Map::Icmap),
        1 => initialize(handle, Map::Stats),
        _ => CsError::InvalidParam.code(),
    }
}

/// `cs_error_t cmap_finalize(cmap_handle_t handle)`.
#[no_mangle]
pub extern "C" fn cmap_finalize(handle: u64) -> CsErrorT {
    code(CMAP_HANDLES.remove(handle).map(|inst| {
        let _ = inst.cmap.finalize();
    }))
}

/// `cs_error_t cmap_fd_get(cmap_handle_t handle, int *fd)`.
///
/// # Safety
/// `fd` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_fd_get(handle: u64, fd: *mut c_int) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(fd, inst.cmap.fd()) }
    }))
}

/// `cs_error_t cmap_dispatch(cmap_handle_t handle, cs_dispatch_flags_t dispatch_types)`.
#[no_mangle]
pub extern "C" fn cmap_dispatch(handle: u64, dispatch_types: c_uint) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        let flags = DispatchFlags::from_raw(dispatch_types).ok_or(CsError::InvalidParam)?;
        inst.cmap.dispatch(flags)
    }))
}

/// `cs_error_t cmap_context_get(cmap_handle_t handle, const void **context)`.
///
/// # Safety
/// `context` is NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_context_get(handle: u64, context: *mut *const c_void) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        let c = inst.context.load(Ordering::Acquire) as *const c_void;
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(context, c) }
    }))
}

/// `cs_error_t cmap_context_set(cmap_handle_t handle, const void *context)`.
#[no_mangle]
pub extern "C" fn cmap_context_set(handle: u64, context: *const c_void) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).map(|inst| {
        inst.context
            .store(context as *mut c_void, Ordering::Release)
    }))
}

/// `cs_error_t cmap_set(cmap_handle_t handle, const char *key_name,
/// const void *value, size_t value_len, cmap_value_types_t type)`.
///
/// # Safety
/// `key_name` is NULL or a C string; `value` NULL or `value_len` readable bytes.
#[no_mangle]
pub unsafe extern "C" fn cmap_set(
    handle: u64,
    key_name: *const c_char,
    value: *const c_void,
    value_len: usize,
    type_: c_uint,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: by the contract.
        let key = unsafe { key_arg(key_name) }?;
        if value.is_null() && value_len > 0 {
            return Err(CsError::InvalidParam);
        }
        let bytes: &[u8] = if value_len == 0 {
            &[]
        } else {
            // SAFETY: non-NULL, `value_len` readable bytes by the contract.
            unsafe { std::slice::from_raw_parts(value.cast(), value_len) }
        };
        let v = Value::from_raw(type_, bytes)?;
        inst.cmap.set(key, &v)
    }))
}

macro_rules! typed_set {
    ($name:ident, $t:ty, $variant:ident) => {
        #[doc = concat!("`cs_error_t ", stringify!($name), "(cmap_handle_t, const char *key_name, value)`.")]
        ///
        /// # Safety
        /// `key_name` is NULL or a C string.
        #[no_mangle]
        pub unsafe extern "C" fn $name(handle: u64, key_name: *const c_char, value: $t) -> CsErrorT {
            code(CMAP_HANDLES.get(handle).and_then(|inst| {
                // SAFETY: by the contract.
                let key = unsafe { key_arg(key_name) }?;
                inst.cmap.set(key, &Value::$variant(value))
            }))
        }
    };
}

typed_set!(cmap_set_int8, i8, I8);
typed_set!(cmap_set_uint8, u8, U8);
typed_set!(cmap_set_int16, i16, I16);
typed_set!(cmap_set_uint16, u16, U16);
typed_set!(cmap_set_int32, i32, I32);
typed_set!(cmap_set_uint32, u32, U32);
typed_set!(cmap_set_int64, i64, I64);
typed_set!(cmap_set_uint64, u64, U64);
typed_set!(cmap_set_float, f32, Float);
typed_set!(cmap_set_double, f64, Double);

/// `cs_error_t cmap_set_string(cmap_handle_t handle, const char *key_name, const char *value)`.
///
/// # Safety
/// `key_name` and `value` are NULL or C strings.
#[no_mangle]
pub unsafe extern "C" fn cmap_set_string(
    handle: u64,
    key_name: *const c_char,
    value: *const c_char,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: by the contract.
        let key = unsafe { key_arg(key_name) }?;
        if value.is_null() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: non-NULL C string by the contract.
        let v = unsafe { CStr::from_ptr(value) };
        inst.cmap
            .set(key, &Value::Str(v.to_string_lossy().into_owned()))
    }))
}

macro_rules! key_op {
    ($name:ident, $method:ident) => {
        #[doc = concat!("`cs_error_t ", stringify!($name), "(cmap_handle_t handle, const char *key_name)`.")]
        ///
        /// # Safety
        /// `key_name` is NULL or a C string.
        #[no_mangle]
        pub unsafe extern "C" fn $name(handle: u64, key_name: *const c_char) -> CsErrorT {
            code(CMAP_HANDLES.get(handle).and_then(|inst| {
                // SAFETY: by the contract.
                let key = unsafe { key_arg(key_name) }?;
                inst.cmap.$method(key)
            }))
        }
    };
}

key_op!(cmap_delete, delete);
key_op!(cmap_inc, inc);
key_op!(cmap_dec, dec);

/// `cs_error_t cmap_get(cmap_handle_t handle, const char *key_name, void
/// *value, size_t *value_len, cmap_value_types_t *type)`: as Corosync,
/// `value` may be NULL (only the length and type are returned); when it is
/// not, `*value_len` must be at least the value's length
/// (`CS_ERR_INVALID_PARAM` otherwise) and becomes the length copied.
/// Strings count and copy their terminator.
///
/// # Safety
/// `key_name` is NULL or a C string; `value` NULL or writable for
/// `*value_len` bytes; `value_len` and `type` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_get(
    handle: u64,
    key_name: *const c_char,
    value: *mut c_void,
    value_len: *mut usize,
    type_: *mut c_uint,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: by the contract.
        let key = unsafe { key_arg(key_name) }?;
        let v = inst.cmap.get(key)?;
        // SAFETY: each pointer is NULL or valid as the contract says.
        unsafe { copy_out(&v, value, value_len, type_) }
    }))
}

/// Writes a value the way `cmap_get` does.
///
/// # Safety
/// As [`cmap_get`]'s pointers.
unsafe fn copy_out(
    v: &Value,
    value: *mut c_void,
    value_len: *mut usize,
    type_: *mut c_uint,
) -> Result<(), CsError> {
    let mut bytes = v.raw();
    if matches!(v, Value::Str(_)) {
        bytes.push(0);
    }
    if !value.is_null() {
        if value_len.is_null() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: non-NULL, readable by the contract.
        let room = unsafe { *value_len };
        if room < bytes.len() {
            return Err(CsError::InvalidParam);
        }
        // SAFETY: `value` is writable for `room` ≥ `bytes.len()` bytes.
        unsafe { std::ptr::copy_nonoverlapping(bytes.as_ptr(), value.cast::<u8>(), bytes.len()) };
    }
    if !value_len.is_null() {
        // SAFETY: non-NULL, writable by the contract.
        unsafe { value_len.write(bytes.len()) };
    }
    if !type_.is_null() {
        // SAFETY: non-NULL, writable by the contract.
        unsafe { type_.write(v.type_code()) };
    }
    Ok(())
}

macro_rules! typed_get {
    ($name:ident, $t:ty, $variant:ident) => {
        #[doc = concat!("`cs_error_t ", stringify!($name), "(cmap_handle_t, const char *key_name, T *value)`: CS_ERR_INVALID_PARAM when the key has another type.")]
        ///
        /// # Safety
        /// `key_name` is NULL or a C string; `value` NULL or writable.
        #[no_mangle]
        pub unsafe extern "C" fn $name(handle: u64, key_name: *const c_char, value: *mut $t) -> CsErrorT {
            code(CMAP_HANDLES.get(handle).and_then(|inst| {
                // SAFETY: by the contract.
                let key = unsafe { key_arg(key_name) }?;
                match inst.cmap.get(key)? {
                    // SAFETY: `put` checks NULL; writable by the contract.
                    Value::$variant(v) => unsafe { put(value, v) },
                    _ => Err(CsError::InvalidParam),
                }
            }))
        }
    };
}

typed_get!(cmap_get_int8, i8, I8);
typed_get!(cmap_get_uint8, u8, U8);
typed_get!(cmap_get_int16, i16, I16);
typed_get!(cmap_get_uint16, u16, U16);
typed_get!(cmap_get_int32, i32, I32);
typed_get!(cmap_get_uint32, u32, U32);
typed_get!(cmap_get_int64, i64, I64);
typed_get!(cmap_get_uint64, u64, U64);
typed_get!(cmap_get_float, f32, Float);
typed_get!(cmap_get_double, f64, Double);

/// `cs_error_t cmap_get_string(cmap_handle_t handle, const char *key_name,
/// char **str)`: a copy from `malloc` the caller frees.
///
/// # Safety
/// `key_name` is NULL or a C string; `str` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_get_string(
    handle: u64,
    key_name: *const c_char,
    str_: *mut *mut c_char,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: by the contract.
        let key = unsafe { key_arg(key_name) }?;
        if str_.is_null() {
            return Err(CsError::InvalidParam);
        }
        let Value::Str(s) = inst.cmap.get(key)? else {
            return Err(CsError::InvalidParam);
        };
        // SAFETY: malloc of len + 1 bytes; NULL is checked.
        let p = unsafe { libc::malloc(s.len() + 1) }.cast::<u8>();
        if p.is_null() {
            return Err(CsError::NoMemory);
        }
        // SAFETY: `p` has room for the bytes and the terminator.
        unsafe {
            std::ptr::copy_nonoverlapping(s.as_ptr(), p, s.len());
            p.add(s.len()).write(0);
        }
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(str_, p.cast::<c_char>()) }
    }))
}

/// `cs_error_t cmap_iter_init(cmap_handle_t handle, const char *prefix,
/// cmap_iter_handle_t *cmap_iter_handle)`; a NULL prefix is every key.
///
/// # Safety
/// `prefix` is NULL or a C string; `cmap_iter_handle` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_iter_init(
    handle: u64,
    prefix: *const c_char,
    cmap_iter_handle: *mut u64,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        if cmap_iter_handle.is_null() {
            return Err(CsError::InvalidParam);
        }
        let prefix = if prefix.is_null() {
            ""
        } else {
            // SAFETY: by the contract.
            unsafe { key_arg(prefix) }?
        };
        let it = inst.cmap.iter_init(prefix)?;
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(cmap_iter_handle, it) }
    }))
}

/// `cs_error_t cmap_iter_next(cmap_handle_t handle, cmap_iter_handle_t
/// iter_handle, char key_name[], size_t *value_len, cmap_value_types_t
/// *type)`: `CS_ERR_NO_SECTIONS` at the end.
///
/// # Safety
/// `key_name` is NULL or writable for `CMAP_KEYNAME_MAXLEN + 1` bytes;
/// `value_len` and `type` NULL or writable.
#[no_mangle]
pub unsafe extern "C" fn cmap_iter_next(
    handle: u64,
    iter_handle: u64,
    key_name: *mut c_char,
    value_len: *mut usize,
    type_: *mut c_uint,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        if key_name.is_null() {
            return Err(CsError::InvalidParam);
        }
        let (k, t, l) = inst.cmap.iter_next(iter_handle)?;
        let n = k.len().min(KEYNAME_MAXLEN);
        // SAFETY: `key_name` has room for KEYNAME_MAXLEN + 1 bytes.
        unsafe {
            std::ptr::copy_nonoverlapping(k.as_ptr(), key_name.cast::<u8>(), n);
            key_name.add(n).write(0);
        }
        if !value_len.is_null() {
            // SAFETY: non-NULL, writable by the contract.
            unsafe { value_len.write(l) };
        }
        if !type_.is_null() {
            // SAFETY: non-NULL, writable by the contract.
            unsafe { type_.write(t) };
        }
        Ok(())
    }))
}

/// `cs_error_t cmap_iter_finalize(cmap_handle_t handle, cmap_iter_handle_t iter_handle)`.
#[no_mangle]
pub extern "C" fn cmap_iter_finalize(handle: u64, iter_handle: u64) -> CsErrorT {
    code(
        CMAP_HANDLES
            .get(handle)
            .and_then(|inst| inst.cmap.iter_finalize(iter_handle)),
    )
}

fn notify_value(v: Option<&Value>, storage: &mut Vec<u8>) -> CmapNotifyValue {
    match v {
        None => CmapNotifyValue {
            type_: 0,
            len: 0,
            data: std::ptr::null(),
        },
        Some(v) => {
            *storage = v.raw();
            if matches!(v, Value::Str(_)) {
                storage.push(0);
            }
            CmapNotifyValue {
                type_: v.type_code(),
                len: storage.len(),
                data: storage.as_ptr().cast(),
            }
        }
    }
}

/// `cs_error_t cmap_track_add(cmap_handle_t handle, const char *key_name,
/// int32_t track_type, cmap_notify_fn_t notify_fn, void *user_data,
/// cmap_track_handle_t *cmap_track_handle)`.
///
/// # Safety
/// `key_name` is NULL or a C string; `cmap_track_handle` NULL or writable;
/// `notify_fn` callable with `user_data` until the track is deleted.
#[no_mangle]
pub unsafe extern "C" fn cmap_track_add(
    handle: u64,
    key_name: *const c_char,
    track_type: i32,
    notify_fn: Option<NotifyFn>,
    user_data: *mut c_void,
    cmap_track_handle: *mut u64,
) -> CsErrorT {
    code(CMAP_HANDLES.get(handle).and_then(|inst| {
        // SAFETY: by the contract.
        let key = unsafe { key_arg(key_name) }?;
        if cmap_track_handle.is_null() {
            return Err(CsError::InvalidParam);
        }
        let f = notify_fn.ok_or(CsError::InvalidParam)?;
        let user = user_data as usize;
        let h = inst.handle.load(Ordering::Acquire);
        let t = inst
            .cmap
            .track_add(key, track_type, move |_, track, event, k, new, old| {
                let (mut nb, mut ob) = (Vec::new(), Vec::new());
                let nv = notify_value(new, &mut nb);
                let ov = notify_value(old, &mut ob);
                let Ok(ck) = std::ffi::CString::new(k) else {
                    return;
                };
                // SAFETY: a callback the application registered with this
                // user_data; every pointer is valid during the call.
                unsafe { f(h, track, event, ck.as_ptr(), nv, ov, user as *mut c_void) }
            })?;
        // SAFETY: `put` checks NULL; writable by the contract.
        unsafe { put(cmap_track_handle, t) }
    }))
}

/// `cs_error_t cmap_track_delete(cmap_handle_t handle, cmap_track_handle_t track_handle)`.
#[no_mangle]
pub extern "C" fn cmap_track_delete(handle: u64, track_handle: u64) -> CsErrorT {
    code(
        CMAP_HANDLES
            .get(handle)
            .and_then(|inst| inst.cmap.track_delete(track_handle)),
    )
}

const _: () = assert!(value_type::BINARY == 12);
