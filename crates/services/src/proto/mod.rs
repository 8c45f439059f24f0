//! The client ⇄ daemon protocol: what travels in the payload of an
//! `ipc-shm` frame. The frame header carries the service id (`service`),
//! the message kind (`kind`) and a request id; this module defines the
//! payloads, as little-endian fields written and read by [`Writer`] and
//! [`Reader`]. Both the daemon (services) and the client libraries use
//! these types, so the two sides cannot disagree about a layout.
//!
//! Every response payload starts with a `u32` [`CsError`] code.
//! Decoding never panics: a short or malformed payload is a
//! [`DecodeError`], which the daemon answers with `CS_ERR_INVALID_PARAM`.

pub mod cfg;
pub mod cmap;
pub mod cpg;
pub mod evs;
pub mod quorum;
pub mod votequorum;

use std::fmt;

/// Service ids, as Corosync numbers them (`corosync/ipc_*` headers).
pub mod service {
    pub const EVS: u16 = 0;
    pub const CLM: u16 = 1;
    pub const AMF: u16 = 2;
    pub const CKPT: u16 = 3;
    pub const EVT: u16 = 4;
    pub const LCK: u16 = 5;
    pub const MSG: u16 = 6;
    pub const CFG: u16 = 7;
    pub const CPG: u16 = 8;
    pub const CMAP: u16 = 9;
    pub const QUORUM: u16 = 10;
    pub const PLOAD: u16 = 11;
    pub const TMR: u16 = 12;
    pub const VOTEQUORUM: u16 = 13;
    pub const MON: u16 = 14;
    pub const WD: u16 = 15;
}

/// Corosync's `cs_error_t` values (`corosync/corotypes.h`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(u32)]
pub enum CsError {
    Ok = 1,
    Library = 2,
    Version = 3,
    Init = 4,
    Timeout = 5,
    TryAgain = 6,
    InvalidParam = 7,
    NoMemory = 8,
    BadHandle = 9,
    Busy = 10,
    Access = 11,
    NotExist = 12,
    NameTooLong = 13,
    Exist = 14,
    NoSpace = 15,
    Interrupt = 16,
    NameNotFound = 17,
    NoResources = 18,
    NotSupported = 19,
    BadOperation = 20,
    FailedOperation = 21,
    MessageError = 22,
    QueueFull = 23,
    QueueNotAvailable = 24,
    BadFlags = 25,
    TooBig = 26,
    NoSections = 27,
    ContextNotFound = 28,
    TooManyGroups = 30,
    Security = 100,
}

impl CsError {
    pub const ALL: [CsError; 30] = [
        CsError::Ok,
        CsError::Library,
        CsError::Version,
        CsError::Init,
        CsError::Timeout,
        CsError::TryAgain,
        CsError::InvalidParam,
        CsError::NoMemory,
        CsError::BadHandle,
        CsError::Busy,
        CsError::Access,
        CsError::NotExist,
        CsError::NameTooLong,
        CsError::Exist,
        CsError::NoSpace,
        CsError::Interrupt,
        CsError::NameNotFound,
        CsError::NoResources,
        CsError::NotSupported,
        CsError::BadOperation,
        CsError::FailedOperation,
        CsError::MessageError,
        CsError::QueueFull,
        CsError::QueueNotAvailable,
        CsError::BadFlags,
        CsError::TooBig,
        CsError::NoSections,
        CsError::ContextNotFound,
        CsError::TooManyGroups,
        CsError::Security,
    ];

    pub fn code(self) -> u32 {
        self as u32
    }

    /// The error for a code; an unknown code is `Library` (never a panic).
    pub fn from_code(code: u32) -> CsError {
        CsError::ALL
            .into_iter()
            .find(|e| e.code() == code)
            .unwrap_or(CsError::Library)
    }

    /// The `CS_ERR_*` / `CS_OK` name.
    pub fn name(self) -> &'static str {
        match self {
            CsError::Ok => "CS_OK",
            CsError::Library => "CS_ERR_LIBRARY",
            CsError::Version => "CS_ERR_VERSION",
            CsError::Init => "CS_ERR_INIT",
            CsError::Timeout => "CS_ERR_TIMEOUT",
            CsError::TryAgain => "CS_ERR_TRY_AGAIN",
            CsError::InvalidParam => "CS_ERR_INVALID_PARAM",
            CsError::NoMemory => "CS_ERR_NO_MEMORY",
            CsError::BadHandle => "CS_ERR_BAD_HANDLE",
            CsError::Busy => "CS_ERR_BUSY",
            CsError::Access => "CS_ERR_ACCESS",
            CsError::NotExist => "CS_ERR_NOT_EXIST",
            CsError::NameTooLong => "CS_ERR_NAME_TOO_LONG",
            CsError::Exist => "CS_ERR_EXIST",
            CsError::NoSpace => "CS_ERR_NO_SPACE",
            CsError::Interrupt => "CS_ERR_INTERRUPT",
            CsError::NameNotFound => "CS_ERR_NAME_NOT_FOUND",
            CsError::NoResources => "CS_ERR_NO_RESOURCES",
            CsError::NotSupported => "CS_ERR_NOT_SUPPORTED",
            CsError::BadOperation => "CS_ERR_BAD_OPERATION",
            CsError::FailedOperation => "CS_ERR_FAILED_OPERATION",
            CsError::MessageError => "CS_ERR_MESSAGE_ERROR",
            CsError::QueueFull => "CS_ERR_QUEUE_FULL",
            CsError::QueueNotAvailable => "CS_ERR_QUEUE_NOT_AVAILABLE",
            CsError::BadFlags => "CS_ERR_BAD_FLAGS",
            CsError::TooBig => "CS_ERR_TOO_BIG",
            CsError::NoSections => "CS_ERR_NO_SECTIONS",
            CsError::ContextNotFound => "CS_ERR_CONTEXT_NOT_FOUND",
            CsError::TooManyGroups => "CS_ERR_TOO_MANY_GROUPS",
            CsError::Security => "CS_ERR_SECURITY",
        }
    }
}

impl fmt::Display for CsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for CsError {}

/// A payload that does not parse.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Ran out of bytes reading `what`.
    Short(&'static str),
    /// `what` holds a value outside its range.
    Invalid(&'static str),
    /// Bytes left over after the last field.
    Trailing(usize),
    /// A message kind this side does not know.
    UnknownKind(u16),
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DecodeError::Short(w) => write!(f, "payload too short for {w}"),
            DecodeError::Invalid(w) => write!(f, "invalid {w}"),
            DecodeError::Trailing(n) => write!(f, "{n} unexpected trailing bytes"),
            DecodeError::UnknownKind(k) => write!(f, "unknown message kind {k}"),
        }
    }
}

impl std::error::Error for DecodeError {}

/// Appends little-endian fields to a buffer.
#[derive(Debug)]
pub struct Writer<'a>(pub &'a mut Vec<u8>);

impl Writer<'_> {
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.0.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.0.extend_from_slice(&v.to_le_bytes());
        self
    }
    /// A `u32` length, then the bytes.
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.u32(v.len() as u32);
        self.0.extend_from_slice(v);
        self
    }
    /// The bytes with no length (the last field of a message).
    pub fn rest(&mut self, v: &[u8]) -> &mut Self {
        self.0.extend_from_slice(v);
        self
    }
}

/// Reads little-endian fields; every getter names what it was reading.
#[derive(Clone, Debug)]
pub struct Reader<'a>(pub &'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Short(what));
        }
        let (a, b) = self.0.split_at(n);
        self.0 = b;
        Ok(a)
    }
    pub fn u8(&mut self, what: &'static str) -> Result<u8, DecodeError> {
        Ok(self.take(1, what)?[0])
    }
    pub fn u16(&mut self, what: &'static str) -> Result<u16, DecodeError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    pub fn u32(&mut self, what: &'static str) -> Result<u32, DecodeError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    pub fn u64(&mut self, what: &'static str) -> Result<u64, DecodeError> {
        let b = self.take(8, what)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    /// A `u32` length, then that many bytes (at most `max`).
    pub fn bytes(&mut self, max: usize, what: &'static str) -> Result<&'a [u8], DecodeError> {
        let n = self.u32(what)? as usize;
        if n > max {
            return Err(DecodeError::Invalid(what));
        }
        self.take(n, what)
    }
    /// Everything left.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.0)
    }
    /// A count for a list whose entries take at least `entry_len` bytes;
    /// refuses counts the remaining bytes cannot hold (no huge allocation
    /// from a lying count).
    pub fn count(&mut self, entry_len: usize, what: &'static str) -> Result<usize, DecodeError> {
        let n = self.u32(what)? as usize;
        if n.saturating_mul(entry_len.max(1)) > self.0.len() {
            return Err(DecodeError::Short(what));
        }
        Ok(n)
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
    /// Fails when bytes are left.
    pub fn finish(&self) -> Result<(), DecodeError> {
        if self.0.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Trailing(self.0.len()))
        }
    }
}

/// Writes the `u32` error code every response starts with.
pub fn put_error(out: &mut Vec<u8>, e: CsError) {
    Writer(out).u32(e.code());
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_codes_round_trip_and_unknown_is_library() {
        for e in CsError::ALL {
            assert_eq!(CsError::from_code(e.code()), e);
            assert!(e.name().starts_with("CS_"));
        }
        assert_eq!(CsError::from_code(0), CsError::Library);
        assert_eq!(CsError::from_code(29), CsError::Library);
        assert_eq!(CsError::TryAgain.code(), 6);
        assert_eq!(CsError::Security.code(), 100);
    }

    #[test]
    fn reader_refuses_lying_counts_and_lengths() {
        let mut v = Vec::new();
        Writer(&mut v).u32(1_000_000).u8(1);
        assert_eq!(
            Reader(&v).count(4, "members"),
            Err(DecodeError::Short("members"))
        );
        assert_eq!(
            Reader(&v).bytes(16, "name"),
            Err(DecodeError::Invalid("name"))
        );
        let mut r = Reader(&v);
        r.u32("x").unwrap();
        assert_eq!(r.finish(), Err(DecodeError::Trailing(1)));
    }
}
