//! Votequorum client protocol (`libvotequorum`), service id
//! [`service::VOTEQUORUM`](super::service::VOTEQUORUM).
//!
//! ```text
//! INIT        (0):                               →   (NOT_SUPPORTED without the provider)
//! GETINFO     (1): u32 nodeid (0 = this node)    → Info
//! SETEXPECTED (2): u32 expected votes            →
//! SETVOTES    (3): u32 nodeid | u32 votes        →
//! TRACKSTART  (4): u64 context | u32 flags       →
//! TRACKSTOP   (5):                               →
//! QUORUM    (100): u64 context | u32 quorate | u32 n | n × (u32 nodeid | u32 state)
//! NODELIST  (101): u64 context | u32 ring rep | u64 ring seq | u32 n | n × u32 nodeid
//! EXPECTED  (102): u64 context | u32 expected votes
//! Info:            8 × u32 (struct votequorum_info order) | u32 qdevice votes | bytes qdevice name
//! ```

use super::quorum::{get_nodes, put_nodes, Ring, MAX_NODES};
use super::{DecodeError, Reader, Writer};

/// `VOTEQUORUM_INFO_*` flags.
pub mod info_flag {
    pub const TWONODE: u32 = 1;
    pub const QUORATE: u32 = 2;
    pub const WAIT_FOR_ALL: u32 = 4;
    pub const LAST_MAN_STANDING: u32 = 8;
    pub const AUTO_TIE_BREAKER: u32 = 16;
    pub const ALLOW_DOWNSCALE: u32 = 32;
    pub const QDEVICE_REGISTERED: u32 = 64;
    pub const QDEVICE_ALIVE: u32 = 128;
    pub const QDEVICE_CAST_VOTE: u32 = 256;
    pub const QDEVICE_MASTER_WINS: u32 = 512;
    pub const SYNC: u32 = 1024;
}

/// `VOTEQUORUM_NODESTATE_*`.
pub mod nodestate {
    pub const MEMBER: u32 = 1;
    pub const DEAD: u32 = 2;
    pub const LEAVING: u32 = 3;
}

/// `VOTEQUORUM_QDEVICE_NODEID`: also "this node" for getinfo.
pub const QDEVICE_NODEID: u32 = 0;
/// `VOTEQUORUM_QDEVICE_MAX_NAME_LEN`.
pub const QDEVICE_MAX_NAME_LEN: usize = 255;

pub mod kind {
    pub const INIT: u16 = 0;
    pub const GETINFO: u16 = 1;
    pub const SETEXPECTED: u16 = 2;
    pub const SETVOTES: u16 = 3;
    pub const TRACKSTART: u16 = 4;
    pub const TRACKSTOP: u16 = 5;
    /// Events.
    pub const QUORUM: u16 = 100;
    pub const NODELIST: u16 = 101;
    pub const EXPECTED: u16 = 102;
}

/// A client request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    Init,
    GetInfo { nodeid: u32 },
    SetExpected { expected: u32 },
    SetVotes { nodeid: u32, votes: u32 },
    TrackStart { context: u64, flags: u32 },
    TrackStop,
}

impl Request {
    pub fn kind(&self) -> u16 {
        match self {
            Request::Init => kind::INIT,
            Request::GetInfo { .. } => kind::GETINFO,
            Request::SetExpected { .. } => kind::SETEXPECTED,
            Request::SetVotes { .. } => kind::SETVOTES,
            Request::TrackStart { .. } => kind::TRACKSTART,
            Request::TrackStop => kind::TRACKSTOP,
        }
    }

    /// Appends the payload; returns the frame kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match *self {
            Request::Init | Request::TrackStop => {}
            Request::GetInfo { nodeid } => {
                w.u32(nodeid);
            }
            Request::SetExpected { expected } => {
                w.u32(expected);
            }
            Request::SetVotes { nodeid, votes } => {
                w.u32(nodeid).u32(votes);
            }
            Request::TrackStart { context, flags } => {
                w.u64(context).u32(flags);
            }
        }
        self.kind()
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<Request, DecodeError> {
        let mut r = Reader(payload);
        let req = match kind {
            kind::INIT => Request::Init,
            kind::GETINFO => Request::GetInfo {
                nodeid: r.u32("nodeid")?,
            },
            kind::SETEXPECTED => Request::SetExpected {
                expected: r.u32("expected votes")?,
            },
            kind::SETVOTES => Request::SetVotes {
                nodeid: r.u32("nodeid")?,
                votes: r.u32("votes")?,
            },
            kind::TRACKSTART => Request::TrackStart {
                context: r.u64("context")?,
                flags: r.u32("track flags")?,
            },
            kind::TRACKSTOP => Request::TrackStop,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// `struct votequorum_info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Info {
    pub node_id: u32,
    pub node_state: u32,
    pub node_votes: u32,
    pub node_expected_votes: u32,
    pub highest_expected: u32,
    pub total_votes: u32,
    pub quorum: u32,
    pub flags: u32,
    pub qdevice_votes: u32,
    pub qdevice_name: Vec<u8>,
}

impl Info {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u32(self.node_id)
            .u32(self.node_state)
            .u32(self.node_votes)
            .u32(self.node_expected_votes)
            .u32(self.highest_expected)
            .u32(self.total_votes)
            .u32(self.quorum)
            .u32(self.flags)
            .u32(self.qdevice_votes)
            .bytes(&self.qdevice_name);
    }

    pub fn decode(body: &[u8]) -> Result<Info, DecodeError> {
        let mut r = Reader(body);
        let info = Info {
            node_id: r.u32("node_id")?,
            node_state: r.u32("node_state")?,
            node_votes: r.u32("node_votes")?,
            node_expected_votes: r.u32("node_expected_votes")?,
            highest_expected: r.u32("highest_expected")?,
            total_votes: r.u32("total_votes")?,
            quorum: r.u32("quorum")?,
            flags: r.u32("flags")?,
            qdevice_votes: r.u32("qdevice_votes")?,
            qdevice_name: r.bytes(QDEVICE_MAX_NAME_LEN - 1, "qdevice_name")?.to_vec(),
        };
        r.finish()?;
        Ok(info)
    }
}

/// An event pushed to a tracking connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventMsg {
    /// Quorum state and every node this node knows, with its state.
    Quorum {
        context: u64,
        quorate: bool,
        nodes: Vec<(u32, u32)>,
    },
    /// The ring's members.
    Nodelist {
        context: u64,
        ring: Ring,
        members: Vec<u32>,
    },
    /// Expected votes changed.
    Expected { context: u64, expected: u32 },
}

impl EventMsg {
    /// Appends the payload; returns the event kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            EventMsg::Quorum {
                context,
                quorate,
                nodes,
            } => {
                w.u64(*context)
                    .u32(u32::from(*quorate))
                    .u32(nodes.len() as u32);
                for (id, state) in nodes {
                    w.u32(*id).u32(*state);
                }
                kind::QUORUM
            }
            EventMsg::Nodelist {
                context,
                ring,
                members,
            } => {
                w.u64(*context).u32(ring.nodeid).u64(ring.seq);
                put_nodes(&mut w, members);
                kind::NODELIST
            }
            EventMsg::Expected { context, expected } => {
                w.u64(*context).u32(*expected);
                kind::EXPECTED
            }
        }
    }

    pub fn decode(kind: u16, payload: &[u8]) -> Result<EventMsg, DecodeError> {
        let mut r = Reader(payload);
        let ev = match kind {
            kind::QUORUM => {
                let context = r.u64("context")?;
                let quorate = match r.u32("quorate")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("quorate")),
                };
                let n = r.count(8, "nodes")?;
                if n > MAX_NODES + 1 {
                    return Err(DecodeError::Invalid("nodes"));
                }
                let nodes = (0..n)
                    .map(|_| Ok((r.u32("nodeid")?, r.u32("state")?)))
                    .collect::<Result<_, DecodeError>>()?;
                EventMsg::Quorum {
                    context,
                    quorate,
                    nodes,
                }
            }
            kind::NODELIST => EventMsg::Nodelist {
                context: r.u64("context")?,
                ring: Ring {
                    nodeid: r.u32("ring rep")?,
                    seq: r.u64("ring seq")?,
                },
                members: get_nodes(&mut r, "members")?,
            },
            kind::EXPECTED => EventMsg::Expected {
                context: r.u64("context")?,
                expected: r.u32("expected votes")?,
            },
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(ev)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        for req in [
            Request::Init,
            Request::GetInfo { nodeid: 3 },
            Request::SetExpected { expected: 5 },
            Request::SetVotes {
                nodeid: 0,
                votes: 2,
            },
            Request::TrackStart {
                context: u64::MAX,
                flags: 2,
            },
            Request::TrackStop,
        ] {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v), Ok(req));
            if !v.is_empty() {
                assert!(Request::decode(k, &v[..v.len() - 1]).is_err());
            }
        }
        assert_eq!(Request::decode(77, &[]), Err(DecodeError::UnknownKind(77)));
    }

    #[test]
    fn info_and_events_round_trip() {
        let info = Info {
            node_id: 1,
            node_state: nodestate::MEMBER,
            node_votes: 1,
            node_expected_votes: 3,
            highest_expected: 3,
            total_votes: 3,
            quorum: 2,
            flags: info_flag::QUORATE,
            qdevice_votes: 0,
            qdevice_name: Vec::new(),
        };
        let mut v = Vec::new();
        info.encode(&mut v);
        assert_eq!(v.len(), 40);
        assert_eq!(Info::decode(&v), Ok(info));
        assert!(Info::decode(&v[..39]).is_err());
        for ev in [
            EventMsg::Quorum {
                context: 9,
                quorate: false,
                nodes: vec![(1, 1), (2, 2)],
            },
            EventMsg::Nodelist {
                context: 9,
                ring: Ring { nodeid: 1, seq: 8 },
                members: vec![1, 3],
            },
            EventMsg::Expected {
                context: 1,
                expected: 2,
            },
        ] {
            let mut v = Vec::new();
            let k = ev.encode(&mut v);
            assert_eq!(EventMsg::decode(k, &v), Ok(ev.clone()));
            for cut in 0..v.len() {
                assert!(EventMsg::decode(k, &v[..cut]).is_err());
            }
        }
    }
}
