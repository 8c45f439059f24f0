//! CMAP (the configuration and statistics key/value store) client
//! protocol, service id [`service::CMAP`](super::service::CMAP).
//!
//! A connection first sends [`Request::Init`] naming the map it works on
//! (`map::ICMAP` or `map::STATS`), as `cmap_initialize_map` does; then
//! requests of kind `kind::*` below 100, each answered with a payload that
//! starts with the `u32` [`CsError`](super::CsError) code. Change
//! notifications of tracked keys are events of kind [`kind::NOTIFY`].
//!
//! Values travel as `u32 type | u32 len | bytes`: integers and floats in
//! little endian at their natural size, strings as their bytes without the
//! C terminator, binaries as they are.

use std::fmt;

use super::{CsError, DecodeError, Reader, Writer};

/// `CMAP_KEYNAME_MAXLEN`.
pub const KEYNAME_MAXLEN: usize = 255;
/// `CMAP_KEYNAME_MINLEN`.
pub const KEYNAME_MINLEN: usize = 3;
/// Largest value the daemon stores (a binary or a string).
pub const MAX_VALUE_LEN: usize = 1 << 20;
/// Longest key accepted on the wire (longer ones decode, then fail the
/// name check with `CS_ERR_NAME_TOO_LONG` as in Corosync).
const WIRE_KEY_MAX: usize = 4096;

/// `CMAP_TRACK_*`.
pub mod track {
    pub const DELETE: i32 = 1;
    pub const MODIFY: i32 = 2;
    pub const ADD: i32 = 4;
    /// Track every key under the prefix (never reported in an event).
    pub const PREFIX: i32 = 8;
    pub const ALL: i32 = DELETE | MODIFY | ADD | PREFIX;
}

/// `cmap_map_t`.
pub mod map {
    pub const ICMAP: u32 = 0;
    pub const STATS: u32 = 1;
}

/// `cmap_value_types_t`.
pub mod value_type {
    pub const INT8: u32 = 1;
    pub const UINT8: u32 = 2;
    pub const INT16: u32 = 3;
    pub const UINT16: u32 = 4;
    pub const INT32: u32 = 5;
    pub const UINT32: u32 = 6;
    pub const INT64: u32 = 7;
    pub const UINT64: u32 = 8;
    pub const FLOAT: u32 = 9;
    pub const DOUBLE: u32 = 10;
    pub const STRING: u32 = 11;
    pub const BINARY: u32 = 12;
}

pub mod kind {
    pub const INIT: u16 = 0;
    pub const GET: u16 = 1;
    pub const SET: u16 = 2;
    pub const DELETE: u16 = 3;
    pub const INC: u16 = 4;
    pub const DEC: u16 = 5;
    pub const ITER_INIT: u16 = 6;
    pub const ITER_NEXT: u16 = 7;
    pub const ITER_FINALIZE: u16 = 8;
    pub const TRACK_ADD: u16 = 9;
    pub const TRACK_DELETE: u16 = 10;
    /// Event: a tracked key changed.
    pub const NOTIFY: u16 = 100;
}

/// A typed value, as `cmap_value_types_t` names them.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    I8(i8),
    U8(u8),
    I16(i16),
    U16(u16),
    I32(i32),
    U32(u32),
    I64(i64),
    U64(u64),
    Float(f32),
    Double(f64),
    Str(String),
    Binary(Vec<u8>),
}

impl Value {
    /// The `cmap_value_types_t` code.
    pub fn type_code(&self) -> u32 {
        use value_type::*;
        match self {
            Value::I8(_) => INT8,
            Value::U8(_) => UINT8,
            Value::I16(_) => INT16,
            Value::U16(_) => UINT16,
            Value::I32(_) => INT32,
            Value::U32(_) => UINT32,
            Value::I64(_) => INT64,
            Value::U64(_) => UINT64,
            Value::Float(_) => FLOAT,
            Value::Double(_) => DOUBLE,
            Value::Str(_) => STRING,
            Value::Binary(_) => BINARY,
        }
    }

    /// The short name `corosync-cmapctl` prints and accepts (`u32`, `str`…).
    pub fn type_name(code: u32) -> Option<&'static str> {
        Some(match code {
            1 => "i8",
            2 => "u8",
            3 => "i16",
            4 => "u16",
            5 => "i32",
            6 => "u32",
            7 => "i64",
            8 => "u64",
            9 => "flt",
            10 => "dbl",
            11 => "str",
            12 => "bin",
            _ => return None,
        })
    }

    /// The code for a short type name.
    pub fn type_from_name(name: &str) -> Option<u32> {
        (1..=12).find(|&c| Value::type_name(c) == Some(name))
    }

    /// The value's bytes (strings without a terminator).
    pub fn raw(&self) -> Vec<u8> {
        match self {
            Value::I8(v) => v.to_le_bytes().to_vec(),
            Value::U8(v) => v.to_le_bytes().to_vec(),
            Value::I16(v) => v.to_le_bytes().to_vec(),
            Value::U16(v) => v.to_le_bytes().to_vec(),
            Value::I32(v) => v.to_le_bytes().to_vec(),
            Value::U32(v) => v.to_le_bytes().to_vec(),
            Value::I64(v) => v.to_le_bytes().to_vec(),
            Value::U64(v) => v.to_le_bytes().to_vec(),
            Value::Float(v) => v.to_le_bytes().to_vec(),
            Value::Double(v) => v.to_le_bytes().to_vec(),
            Value::Str(s) => s.as_bytes().to_vec(),
            Value::Binary(b) => b.clone(),
        }
    }

    /// The length `cmap_get` reports: a string counts its terminator.
    pub fn c_len(&self) -> usize {
        match self {
            Value::Str(s) => s.len() + 1,
            v => v.raw().len(),
        }
    }

    /// A value from its type code and bytes: `CS_ERR_INVALID_PARAM` for
    /// an unknown type or a length that does not match it (a string may
    /// carry one trailing NUL, which is dropped), and for a string that is
    /// not UTF-8 (stored as text, it would read back changed; BINARY keeps
    /// any bytes).
    pub fn from_raw(code: u32, b: &[u8]) -> Result<Value, CsError> {
        fn arr<const N: usize>(b: &[u8]) -> Result<[u8; N], CsError> {
            b.try_into().map_err(|_| CsError::InvalidParam)
        }
        use value_type::*;
        Ok(match code {
            INT8 => Value::I8(i8::from_le_bytes(arr(b)?)),
            UINT8 => Value::U8(u8::from_le_bytes(arr(b)?)),
            INT16 => Value::I16(i16::from_le_bytes(arr(b)?)),
            UINT16 => Value::U16(u16::from_le_bytes(arr(b)?)),
            INT32 => Value::I32(i32::from_le_bytes(arr(b)?)),
            UINT32 => Value::U32(u32::from_le_bytes(arr(b)?)),
            INT64 => Value::I64(i64::from_le_bytes(arr(b)?)),
            UINT64 => Value::U64(u64::from_le_bytes(arr(b)?)),
            FLOAT => Value::Float(f32::from_le_bytes(arr(b)?)),
            DOUBLE => Value::Double(f64::from_le_bytes(arr(b)?)),
            STRING => {
                let b = b.strip_suffix(&[0]).unwrap_or(b);
                if b.contains(&0) {
                    return Err(CsError::InvalidParam);
                }
                let text = std::str::from_utf8(b).map_err(|_| CsError::InvalidParam)?;
                Value::Str(text.to_owned())
            }
            BINARY => Value::Binary(b.to_vec()),
            _ => return Err(CsError::InvalidParam),
        })
    }

    /// Adds `delta` (±1) with wrap-around; `CS_ERR_INVALID_PARAM` for
    /// types that are not integers (as `icmap_adjust_int`).
    pub fn adjust(&self, delta: i8) -> Result<Value, CsError> {
        let d = i64::from(delta);
        Ok(match *self {
            Value::I8(v) => Value::I8(v.wrapping_add(delta)),
            Value::U8(v) => Value::U8(v.wrapping_add(delta as u8)),
            Value::I16(v) => Value::I16(v.wrapping_add(d as i16)),
            Value::U16(v) => Value::U16(v.wrapping_add(d as u16)),
            Value::I32(v) => Value::I32(v.wrapping_add(d as i32)),
            Value::U32(v) => Value::U32(v.wrapping_add(d as u32)),
            Value::I64(v) => Value::I64(v.wrapping_add(d)),
            Value::U64(v) => Value::U64(v.wrapping_add(d as u64)),
            _ => return Err(CsError::InvalidParam),
        })
    }

    /// Writes `u32 type | u32 len | bytes`.
    pub fn put(&self, w: &mut Writer<'_>) {
        w.u32(self.type_code()).bytes(&self.raw());
    }

    /// Reads what [`Value::put`] wrote.
    pub fn get(r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        let code = r.u32("value type")?;
        let b = r.bytes(MAX_VALUE_LEN, "value")?;
        Value::from_raw(code, b).map_err(|_| DecodeError::Invalid("value"))
    }
}

impl fmt::Display for Value {
    /// The value as `corosync-cmapctl` prints it (binary as escaped text).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::I8(v) => write!(f, "{v}"),
            Value::U8(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::Float(v) => write!(f, "{v:.6}"),
            Value::Double(v) => write!(f, "{v:.6}"),
            Value::Str(s) => f.write_str(s),
            Value::Binary(b) => {
                for &c in b {
                    match c {
                        b'\\' => f.write_str("\\\\")?,
                        b' '..=0x7e => write!(f, "{}", c as char)?,
                        _ => write!(f, "\\x{c:02X}")?,
                    }
                }
                Ok(())
            }
        }
    }
}

/// A client request.
#[derive(Clone, Debug, PartialEq)]
pub enum Request<'a> {
    /// First request of a connection: which map it works on.
    Init {
        map: u32,
    },
    Get {
        key: &'a [u8],
    },
    Set {
        key: &'a [u8],
        value: Value,
    },
    Delete {
        key: &'a [u8],
    },
    Inc {
        key: &'a [u8],
    },
    Dec {
        key: &'a [u8],
    },
    IterInit {
        prefix: &'a [u8],
    },
    IterNext {
        iter: u64,
    },
    IterFinalize {
        iter: u64,
    },
    TrackAdd {
        key: &'a [u8],
        track_type: i32,
    },
    TrackDelete {
        track: u64,
    },
}

impl<'a> Request<'a> {
    /// Appends the payload; returns the frame kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            Request::Init { map } => {
                w.u32(*map);
                kind::INIT
            }
            Request::Get { key } => {
                w.bytes(key);
                kind::GET
            }
            Request::Set { key, value } => {
                w.bytes(key);
                value.put(&mut w);
                kind::SET
            }
            Request::Delete { key } => {
                w.bytes(key);
                kind::DELETE
            }
            Request::Inc { key } => {
                w.bytes(key);
                kind::INC
            }
            Request::Dec { key } => {
                w.bytes(key);
                kind::DEC
            }
            Request::IterInit { prefix } => {
                w.bytes(prefix);
                kind::ITER_INIT
            }
            Request::IterNext { iter } => {
                w.u64(*iter);
                kind::ITER_NEXT
            }
            Request::IterFinalize { iter } => {
                w.u64(*iter);
                kind::ITER_FINALIZE
            }
            Request::TrackAdd { key, track_type } => {
                w.bytes(key).u32(*track_type as u32);
                kind::TRACK_ADD
            }
            Request::TrackDelete { track } => {
                w.u64(*track);
                kind::TRACK_DELETE
            }
        }
    }

    pub fn decode(k: u16, payload: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        let mut r = Reader(payload);
        let key = |r: &mut Reader<'a>| r.bytes(WIRE_KEY_MAX, "key");
        let req = match k {
            kind::INIT => Request::Init { map: r.u32("map")? },
            kind::GET => Request::Get { key: key(&mut r)? },
            kind::SET => Request::Set {
                key: key(&mut r)?,
                value: Value::get(&mut r)?,
            },
            kind::DELETE => Request::Delete { key: key(&mut r)? },
            kind::INC => Request::Inc { key: key(&mut r)? },
            kind::DEC => Request::Dec { key: key(&mut r)? },
            kind::ITER_INIT => Request::IterInit {
                prefix: key(&mut r)?,
            },
            kind::ITER_NEXT => Request::IterNext {
                iter: r.u64("iterator")?,
            },
            kind::ITER_FINALIZE => Request::IterFinalize {
                iter: r.u64("iterator")?,
            },
            kind::TRACK_ADD => Request::TrackAdd {
                key: key(&mut r)?,
                track_type: r.u32("track type")? as i32,
            },
            kind::TRACK_DELETE => Request::TrackDelete {
                track: r.u64("track")?,
            },
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// Response body of ITER_NEXT: the key, its type and its `cmap_get` length.
pub fn encode_iter_next(out: &mut Vec<u8>, key: &str, v: &Value) {
    Writer(out)
        .bytes(key.as_bytes())
        .u32(v.type_code())
        .u64(v.c_len() as u64);
}

pub fn decode_iter_next(body: &[u8]) -> Result<(String, u32, u64), DecodeError> {
    let mut r = Reader(body);
    let key = r.bytes(WIRE_KEY_MAX, "key")?;
    let t = r.u32("type")?;
    let len = r.u64("length")?;
    r.finish()?;
    Ok((String::from_utf8_lossy(key).into_owned(), t, len))
}

/// A change notification (event [`kind::NOTIFY`]).
#[derive(Clone, Debug, PartialEq)]
pub struct Notify {
    pub track: u64,
    /// One of `track::ADD`, `DELETE`, `MODIFY`.
    pub event: i32,
    pub key: String,
    pub new: Option<Value>,
    pub old: Option<Value>,
}

impl Notify {
    /// Where the track handle lies in an encoded notification (a
    /// little-endian u64, first), so that one encoding can go to every
    /// track of a change with only the handle rewritten.
    pub const TRACK_AT: std::ops::Range<usize> = 0..8;

    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u64(self.track)
            .u32(self.event as u32)
            .bytes(self.key.as_bytes());
        for v in [&self.new, &self.old] {
            match v {
                Some(v) => {
                    w.u8(1);
                    v.put(&mut w);
                }
                None => {
                    w.u8(0);
                }
            }
        }
    }

    pub fn decode(body: &[u8]) -> Result<Notify, DecodeError> {
        let mut r = Reader(body);
        let track = r.u64("track")?;
        let event = r.u32("event")? as i32;
        let key = String::from_utf8_lossy(r.bytes(WIRE_KEY_MAX, "key")?).into_owned();
        let mut vals = [None, None];
        for v in vals.iter_mut() {
            if r.u8("value present")? == 1 {
                *v = Some(Value::get(&mut r)?);
            }
        }
        r.finish()?;
        let [new, old] = vals;
        Ok(Notify {
            track,
            event,
            key,
            new,
            old,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::Init { map: map::STATS },
            Request::Get {
                key: b"totem.token",
            },
            Request::Set {
                key: b"a.b",
                value: Value::Str("x y".into()),
            },
            Request::Set {
                key: b"a.c",
                value: Value::Double(1.5),
            },
            Request::Delete { key: b"abc" },
            Request::Inc { key: b"abc" },
            Request::Dec { key: b"abc" },
            Request::IterInit { prefix: b"" },
            Request::IterNext { iter: 7 },
            Request::IterFinalize { iter: 7 },
            Request::TrackAdd {
                key: b"totem.",
                track_type: track::ADD | track::PREFIX,
            },
            Request::TrackDelete { track: 3 },
        ];
        for req in reqs {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v).unwrap(), req);
            for cut in 0..v.len() {
                assert!(Request::decode(k, &v[..cut]).is_err() || cut == v.len());
            }
        }
        assert_eq!(Request::decode(99, &[]), Err(DecodeError::UnknownKind(99)));
    }

    #[test]
    fn values_check_their_length_and_type() {
        assert_eq!(Value::from_raw(6, &[1, 0, 0, 0]), Ok(Value::U32(1)));
        assert_eq!(Value::from_raw(6, &[1, 0]), Err(CsError::InvalidParam));
        assert_eq!(Value::from_raw(0, &[]), Err(CsError::InvalidParam));
        assert_eq!(Value::from_raw(13, &[]), Err(CsError::InvalidParam));
        assert_eq!(Value::from_raw(11, b"ab\0"), Ok(Value::Str("ab".into())));
        assert_eq!(Value::from_raw(11, b"a\0b"), Err(CsError::InvalidParam));
        // Latin-1, not UTF-8: refused, not stored changed.
        assert_eq!(Value::from_raw(11, b"caf\xe9"), Err(CsError::InvalidParam));
        assert_eq!(
            Value::from_raw(11, "café".as_bytes()),
            Ok(Value::Str("café".into()))
        );
        assert_eq!(Value::Str("ab".into()).c_len(), 3);
        assert_eq!(Value::U8(255).adjust(1), Ok(Value::U8(0)));
        assert_eq!(Value::I8(-128).adjust(-1), Ok(Value::I8(127)));
        assert_eq!(Value::Str("x".into()).adjust(1), Err(CsError::InvalidParam));
        for c in 1..=12 {
            assert_eq!(Value::type_from_name(Value::type_name(c).unwrap()), Some(c));
        }
        assert_eq!(
            Value::Binary(vec![b'a', 0, b'\\']).to_string(),
            "a\\x00\\\\"
        );
    }

    #[test]
    fn notify_round_trips() {
        let n = Notify {
            track: 9,
            event: track::MODIFY,
            key: "a.b.c".into(),
            new: Some(Value::U64(5)),
            old: None,
        };
        let mut v = Vec::new();
        n.encode(&mut v);
        assert_eq!(Notify::decode(&v), Ok(n.clone()));
        assert!(Notify::decode(&v[..v.len() - 1]).is_err());
        // The handle is where TRACK_AT says: rewritten there, the rest stays.
        v[Notify::TRACK_AT].copy_from_slice(&77u64.to_le_bytes());
        assert_eq!(Notify::decode(&v), Ok(Notify { track: 77, ..n }));
    }
}
