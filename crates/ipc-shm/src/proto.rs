//! The session set-up messages exchanged over the unix socket. The daemon
//! decodes `Hello` from untrusted bytes; `Reply` travels the other way with
//! the segment and wake-up fds attached (SCM_RIGHTS).

use crate::ring::RingSizes;

pub const HELLO_MAGIC: u32 = 0x4349_5043; // "CPIC"
pub const REPLY_MAGIC: u32 = 0x5249_5043; // "CPIR"
/// 2: the client rings the daemon through a pipe (fourth fd of the reply).
/// 3: the doorbell takes 8-byte writes (an eventfd, or a pipe on kernels
/// without `RWF_NOWAIT` eventfd reads); a version-2 client's one-byte
/// write would fail on an eventfd.
pub const PROTOCOL_VERSION: u16 = 3;
pub const HELLO_LEN: usize = 32;
pub const REPLY_LEN: usize = 32;
/// Fds attached to an accepted reply: segment memfd, response wake-up read
/// end, event wake-up read end, the client's end of the doorbell.
pub const REPLY_FDS: usize = 4;
/// Reply flag: before it parks on the request ring the daemon makes every
/// CPU running a registered client execute a memory barrier (membarrier's
/// `GLOBAL_EXPEDITED`), so a client that registered may publish requests
/// with plain stores (`RingPtrs::publish_tail_light`). Older clients ignore
/// the flag word, which was zero, and keep their locked exchange.
pub const REPLY_FLAG_LIGHT_REQUESTS: u32 = 1;

/// What a client asks for. Zero sizes mean "the daemon's default".
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hello {
    pub version: u16,
    pub sizes: RingSizes,
}

/// Set-up outcome sent to the client: an explicit answer for every refusal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    Ok = 0,
    /// The peer's uid/gid is not allowed.
    NotAuthorized = 1,
    /// The client speaks a protocol version the daemon does not.
    BadVersion = 2,
    /// The hello was malformed.
    BadHello = 3,
    /// The daemon has no free session slot.
    TooManySessions = 4,
    /// The daemon could not create the session's resources.
    NoResources = 5,
    /// The daemon takes no connections yet (it has not finished its first
    /// synchronization); the client may try again.
    NotReady = 6,
}

impl Status {
    pub fn from_u16(v: u16) -> Option<Status> {
        Some(match v {
            0 => Status::Ok,
            1 => Status::NotAuthorized,
            2 => Status::BadVersion,
            3 => Status::BadHello,
            4 => Status::TooManySessions,
            5 => Status::NoResources,
            6 => Status::NotReady,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Status {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Status::Ok => "ok",
            Status::NotAuthorized => "not authorized",
            Status::BadVersion => "unsupported protocol version",
            Status::BadHello => "malformed hello",
            Status::TooManySessions => "too many sessions",
            Status::NoResources => "daemon out of resources",
            Status::NotReady => "daemon not ready yet",
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reply {
    pub status: Status,
    pub session: u64,
    pub sizes: RingSizes,
    /// `REPLY_FLAG_*` bits.
    pub flags: u32,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloError {
    Short(usize),
    BadMagic,
    /// Decoded, but the version is not ours (answered with BadVersion).
    Version(u16),
    NonZeroReserved,
}

impl std::fmt::Display for HelloError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HelloError::Short(n) => write!(f, "hello of {n} bytes, want {HELLO_LEN}"),
            HelloError::BadMagic => write!(f, "hello with a bad magic"),
            HelloError::Version(v) => write!(f, "hello with protocol version {v}"),
            HelloError::NonZeroReserved => write!(f, "hello with reserved bytes set"),
        }
    }
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

fn u16_at(b: &[u8], at: usize) -> u16 {
    u16::from_le_bytes(b[at..at + 2].try_into().expect("2 bytes"))
}

pub fn encode_hello(h: &Hello) -> [u8; HELLO_LEN] {
    let mut b = [0u8; HELLO_LEN];
    b[0..4].copy_from_slice(&HELLO_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&h.version.to_le_bytes());
    b[8..12].copy_from_slice(&h.sizes.request.to_le_bytes());
    b[12..16].copy_from_slice(&h.sizes.response.to_le_bytes());
    b[16..20].copy_from_slice(&h.sizes.event.to_le_bytes());
    b
}

/// Decodes a client's hello (untrusted bytes; never panics).
pub fn decode_hello(b: &[u8]) -> Result<Hello, HelloError> {
    if b.len() != HELLO_LEN {
        return Err(HelloError::Short(b.len()));
    }
    if u32_at(b, 0) != HELLO_MAGIC {
        return Err(HelloError::BadMagic);
    }
    let version = u16_at(b, 4);
    if version != PROTOCOL_VERSION {
        return Err(HelloError::Version(version));
    }
    if u16_at(b, 6) != 0 || b[20..].iter().any(|&x| x != 0) {
        return Err(HelloError::NonZeroReserved);
    }
    Ok(Hello {
        version,
        sizes: RingSizes {
            request: u32_at(b, 8),
            response: u32_at(b, 12),
            event: u32_at(b, 16),
        },
    })
}

pub fn encode_reply(r: &Reply) -> [u8; REPLY_LEN] {
    let mut b = [0u8; REPLY_LEN];
    b[0..4].copy_from_slice(&REPLY_MAGIC.to_le_bytes());
    b[4..6].copy_from_slice(&PROTOCOL_VERSION.to_le_bytes());
    b[6..8].copy_from_slice(&(r.status as u16).to_le_bytes());
    b[8..16].copy_from_slice(&r.session.to_le_bytes());
    b[16..20].copy_from_slice(&r.sizes.request.to_le_bytes());
    b[20..24].copy_from_slice(&r.sizes.response.to_le_bytes());
    b[24..28].copy_from_slice(&r.sizes.event.to_le_bytes());
    b[28..32].copy_from_slice(&r.flags.to_le_bytes());
    b
}

pub fn decode_reply(b: &[u8]) -> Option<Reply> {
    if b.len() != REPLY_LEN || u32_at(b, 0) != REPLY_MAGIC || u16_at(b, 4) != PROTOCOL_VERSION {
        return None;
    }
    Some(Reply {
        status: Status::from_u16(u16_at(b, 6))?,
        session: u64::from_le_bytes(b[8..16].try_into().ok()?),
        sizes: RingSizes {
            request: u32_at(b, 16),
            response: u32_at(b, 20),
            event: u32_at(b, 24),
        },
        flags: u32_at(b, 28),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hello_round_trip_and_rejects() {
        let h = Hello {
            version: PROTOCOL_VERSION,
            sizes: RingSizes {
                request: 4096,
                response: 0,
                event: 1 << 20,
            },
        };
        let b = encode_hello(&h);
        assert_eq!(decode_hello(&b), Ok(h));
        assert_eq!(decode_hello(&b[..31]), Err(HelloError::Short(31)));
        let mut v = b;
        v[4] = 9;
        assert_eq!(decode_hello(&v), Err(HelloError::Version(9)));
        let mut m = b;
        m[0] ^= 1;
        assert_eq!(decode_hello(&m), Err(HelloError::BadMagic));
        let mut r = b;
        r[31] = 1;
        assert_eq!(decode_hello(&r), Err(HelloError::NonZeroReserved));
    }

    #[test]
    fn reply_round_trip() {
        let r = Reply {
            status: Status::TooManySessions,
            session: 77,
            sizes: RingSizes {
                request: 1,
                response: 2,
                event: 3,
            },
            flags: REPLY_FLAG_LIGHT_REQUESTS,
        };
        assert_eq!(decode_reply(&encode_reply(&r)), Some(r));
    }
}
