//! `corotypes.h` functions: `cs_strerror`, `qb_to_cs_error`,
//! `hdb_error_to_cs`.

use std::ffi::CStr;
use std::os::raw::{c_char, c_int};

use services::proto::CsError;

use super::CsErrorT;
use crate::conn::errno_to_cs;

/// A static, NUL-terminated description of a `cs_error_t`: `"success"`
/// for `CS_OK`, the constant's name otherwise, `"unknown error"` for a
/// value that is none (as Corosync's `cs_strerror`).
pub(crate) fn strerror(err: u32) -> &'static CStr {
    if err == CsError::Ok.code() {
        return c"success";
    }
    let Some(e) = CsError::ALL.into_iter().find(|e| e.code() == err) else {
        return c"unknown error";
    };
    match e {
        CsError::Ok => c"success",
        CsError::Library => c"CS_ERR_LIBRARY",
        CsError::Version => c"CS_ERR_VERSION",
        CsError::Init => c"CS_ERR_INIT",
        CsError::Timeout => c"CS_ERR_TIMEOUT",
        CsError::TryAgain => c"CS_ERR_TRY_AGAIN",
        CsError::InvalidParam => c"CS_ERR_INVALID_PARAM",
        CsError::NoMemory => c"CS_ERR_NO_MEMORY",
        CsError::BadHandle => c"CS_ERR_BAD_HANDLE",
        CsError::Busy => c"CS_ERR_BUSY",
        CsError::Access => c"CS_ERR_ACCESS",
        CsError::NotExist => c"CS_ERR_NOT_EXIST",
        CsError::NameTooLong => c"CS_ERR_NAME_TOO_LONG",
        CsError::Exist => c"CS_ERR_EXIST",
        CsError::NoSpace => c"CS_ERR_NO_SPACE",
        CsError::Interrupt => c"CS_ERR_INTERRUPT",
        CsError::NameNotFound => c"CS_ERR_NAME_NOT_FOUND",
        CsError::NoResources => c"CS_ERR_NO_RESOURCES",
        CsError::NotSupported => c"CS_ERR_NOT_SUPPORTED",
        CsError::BadOperation => c"CS_ERR_BAD_OPERATION",
        CsError::FailedOperation => c"CS_ERR_FAILED_OPERATION",
        CsError::MessageError => c"CS_ERR_MESSAGE_ERROR",
        CsError::QueueFull => c"CS_ERR_QUEUE_FULL",
        CsError::QueueNotAvailable => c"CS_ERR_QUEUE_NOT_AVAILABLE",
        CsError::BadFlags => c"CS_ERR_BAD_FLAGS",
        CsError::TooBig => c"CS_ERR_TOO_BIG",
        CsError::NoSections => c"CS_ERR_NO_SECTIONS",
        CsError::ContextNotFound => c"CS_ERR_CONTEXT_NOT_FOUND",
        CsError::TooManyGroups => c"CS_ERR_TOO_MANY_GROUPS",
        CsError::Security => c"CS_ERR_SECURITY",
    }
}

/// `const char *cs_strerror(cs_error_t err)`: a static string, never NULL.
#[no_mangle]
pub extern "C" fn cs_strerror(err: CsErrorT) -> *const c_char {
    strerror(err).as_ptr()
}

/// `cs_error_t qb_to_cs_error(int result)`: a negative errno (libqb's
/// convention) to a `cs_error_t`; zero or positive is `CS_OK`.
#[no_mangle]
pub extern "C" fn qb_to_cs_error(result: c_int) -> CsErrorT {
    if result >= 0 {
        return CsError::Ok.code();
    }
    errno_to_cs(result.saturating_neg()).code()
}

/// `cs_error_t hdb_error_to_cs(int res)`: a handle-database result to a
/// `cs_error_t`, as Corosync maps it.
#[no_mangle]
pub extern "C" fn hdb_error_to_cs(res: c_int) -> CsErrorT {
    let e = match res {
        0 => CsError::Ok,
        r if r == -libc::EBADF => CsError::BadHandle,
        r if r == -libc::ENOMEM => CsError::NoMemory,
        r if r == -libc::EMFILE => CsError::NoResources,
        r if r == -libc::EACCES => CsError::Access,
        _ => CsError::Library,
    };
    e.code()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_static_string() {
        assert_eq!(strerror(1), c"success");
        assert_eq!(strerror(0), c"unknown error");
        assert_eq!(strerror(29), c"unknown error");
        for e in CsError::ALL.into_iter().skip(1) {
            assert_eq!(strerror(e.code()).to_str().unwrap(), e.name());
        }
        assert!(!cs_strerror(12345).is_null());
    }

    #[test]
    fn errno_helpers() {
        assert_eq!(qb_to_cs_error(0), 1);
        assert_eq!(qb_to_cs_error(-libc::EAGAIN), CsError::TryAgain.code());
        assert_eq!(qb_to_cs_error(i32::MIN), CsError::Library.code());
        assert_eq!(hdb_error_to_cs(-libc::EBADF), CsError::BadHandle.code());
        assert_eq!(hdb_error_to_cs(-1000), CsError::Library.code());
    }
}
