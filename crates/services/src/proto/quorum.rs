//! Quorum client protocol (`libquorum`), service id
//! [`service::QUORUM`](super::service::QUORUM).
//!
//! Requests are kinds below 100; each response starts with the `u32`
//! [`CsError`](super::CsError) code. Events (kind ≥ 100) carry the
//! notifications of a tracking connection.
//!
//! ```text
//! INIT        (0): u32 model                  → u32 quorum type
//! GETQUORATE  (1):                            → u32 quorate
//! TRACKSTART  (2): u32 flags (CS_TRACK_*)     →
//! TRACKSTOP   (3):                            →
//! NOTIFY    (100): u32 quorate | u32 ring rep | u64 ring seq | u32 n | n × u32 node
//! NODELIST  (101): u32 ring rep | u64 ring seq | 3 × (u32 n | n × u32 node)   members, joined, left
//! ```

use super::{DecodeError, Reader, Writer};

/// `quorum_model_t`.
pub mod model {
    pub const V0: u32 = 0;
    pub const V1: u32 = 1;
}

/// The `quorum_type` `quorum_initialize` returns.
pub mod quorum_type {
    /// `QUORUM_FREE`: no quorum provider, always quorate.
    pub const FREE: u32 = 0;
    /// `QUORUM_SET`: a provider (votequorum) decides.
    pub const SET: u32 = 1;
}

/// `CS_TRACK_*` flags (`corotypes.h`).
pub mod track {
    pub const CURRENT: u32 = 0x01;
    pub const CHANGES: u32 = 0x02;
    pub const CHANGES_ONLY: u32 = 0x04;
}

pub mod kind {
    pub const INIT: u16 = 0;
    pub const GETQUORATE: u16 = 1;
    pub const TRACKSTART: u16 = 2;
    pub const TRACKSTOP: u16 = 3;
    /// Events.
    pub const NOTIFY: u16 = 100;
    pub const NODELIST: u16 = 101;
}

/// Most nodes a list in an event may hold (Totem's processor limit).
pub const MAX_NODES: usize = 384;

/// A client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// First request: the model (V0 for `quorum_initialize`).
    Init {
        model: u32,
    },
    GetQuorate,
    TrackStart {
        flags: u32,
    },
    TrackStop,
}

impl Request {
    pub fn kind(&self) -> u16 {
        match self {
            Request::Init { .. } => kind::INIT,
            Request::GetQuorate => kind::GETQUORATE,
            Request::TrackStart { .. } => kind::TRACKSTART,
            Request::TrackStop => kind::TRACKSTOP,
        }
    }

    /// Appends the payload; returns the frame kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            Request::Init { model } => {
                w.u32(*model);
            }
            Request::TrackStart { flags } => {
                w.u32(*flags);
            }
            Request::GetQuorate | Request::TrackStop => {}
        }
        self.kind()
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(payload);
        let req = match kind {
            kind::INIT => Request::Init {
                model: r.u32("model")?,
            },
            kind::GETQUORATE => Request::GetQuorate,
            kind::TRACKSTART => Request::TrackStart {
                flags: r.u32("track flags")?,
            },
            kind::TRACKSTOP => Request::TrackStop,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// A ring id as the quorum API reports it (`quorum_ring_id`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Ring {
    pub nodeid: u32,
    pub seq: u64,
}

pub(crate) fn put_nodes(w: &mut Writer<'_>, nodes: &[u32]) {
    w.u32(nodes.len() as u32);
    for n in nodes {
        w.u32(*n);
    }
}

pub(crate) fn get_nodes(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u32>, DecodeError> {
    let n = r.count(4, what)?;
    if n > MAX_NODES {
        return Err(DecodeError::Invalid(what));
    }
    (0..n).map(|_| r.u32(what)).collect()
}

/// An event pushed to a tracking connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventMsg {
    /// Quorum state and the quorum members (the ring's members).
    Notify {
        quorate: bool,
        ring: Ring,
        members: Vec<u32>,
    },
    /// Model V1 only: the membership with who joined and who left.
    Nodelist {
        ring: Ring,
        members: Vec<u32>,
        joined: Vec<u32>,
        left: Vec<u32>,
    },
}

impl EventMsg {
    /// Appends the payload; returns the event kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            EventMsg::Notify {
                quorate,
                ring,
                members,
            } => {
                w.u32(u32::from(*quorate)).u32(ring.nodeid).u64(ring.seq);
                put_nodes(&mut w, members);
                kind::NOTIFY
            }
            EventMsg::Nodelist {
                ring,
                members,
                joined,
                left,
            } => {
                w.u32(ring.nodeid).u64(ring.seq);
                put_nodes(&mut w, members);
                put_nodes(&mut w, joined);
                put_nodes(&mut w, left);
                kind::NODELIST
            }
        }
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<EventMsg, DecodeError> {
        let mut r = Reader(payload);
        let ev = match kind {
            kind::NOTIFY => {
                let quorate = match r.u32("quorate")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("quorate")),
                };
                let ring = Ring {
                    nodeid: r.u32("ring rep")?,
                    seq: r.u64("ring seq")?,
                };
                EventMsg::Notify {
                    quorate,
                    ring,
                    members: get_nodes(&mut r, "members")?,
                }
            }
            kind::NODELIST => EventMsg::Nodelist {
                ring: Ring {
                    nodeid: r.u32("ring rep")?,
                    seq: r.u64("ring seq")?,
                },
                members: get_nodes(&mut r, "members")?,
                joined: get_nodes(&mut r, "joined")?,
                left: get_nodes(&mut r, "left")?,
            },
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(ev)
    }
}

/// Decodes a body holding one `u32`.
pub fn decode_u32(body: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader(body);
    let v = r.u32("value")?;
    r.finish()?;
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::Init { model: model::V1 },
            Request::GetQuorate,
            Request::TrackStart {
                flags: track::CHANGES,
            },
            Request::TrackStop,
        ] {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v), Ok(req));
        }
        assert_eq!(Request::decode(9, &[]), Err(DecodeError::UnknownKind(9)));
        assert!(Request::decode(kind::INIT, &[1, 2]).is_err());
        assert!(Request::decode(kind::GETQUORATE, &[0]).is_err());
    }

    #[test]
    fn events_round_trip_and_refuse_garbage() {
        let ring = Ring {
            nodeid: 2,
            seq: 1 << 40,
        };
        for ev in [
            EventMsg::Notify {
                quorate: true,
                ring,
                members: vec![1, 2, 3],
            },
            EventMsg::Nodelist {
                ring,
                members: vec![1, 2],
                joined: vec![2],
                left: vec![3],
            },
        ] {
            let mut v = Vec::new();
            let k = ev.encode(&mut v);
            assert_eq!(EventMsg::decode(k, &v), Ok(ev.clone()));
            for cut in 0..v.len() {
                assert!(EventMsg::decode(k, &v[..cut]).is_err());
            }
        }
        let mut v = Vec::new();
        Writer(&mut v).u32(2).u32(0).u64(0).u32(0);
        assert!(EventMsg::decode(kind::NOTIFY, &v).is_err());
    }
}
