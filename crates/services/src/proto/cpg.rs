//! CPG (closed process groups) client protocol, service id
//! [`service::CPG`](super::service::CPG).
//!
//! Requests travel in frames of kind `kind::*` below 100; each but
//! `MCAST_ASYNC` gets a response of the same kind whose payload starts with
//! the `u32` [`CsError`](super::CsError) code. Events (kind ≥ 100) are pushed on the
//! event ring. A connection is one `cpg_handle_t`: it may have joined at
//! most one group at a time, as in Corosync. The process id of a member is
//! the connecting process's, taken from the socket's peer credentials, so
//! a client cannot claim another pid.

use super::{DecodeError, Reader, Writer};

/// `CPG_MAX_NAME_LENGTH`.
pub const MAX_NAME: usize = 128;
/// `CPG_MEMBERS_MAX`.
pub const MAX_MEMBERS: usize = 128;

/// `cpg_guarantee_t`.
pub mod guarantee {
    pub const UNORDERED: u32 = 0;
    pub const FIFO: u32 = 1;
    pub const AGREED: u32 = 2;
    pub const SAFE: u32 = 3;
}

/// `cpg_reason_t` (confchg reasons).
pub mod reason {
    pub const JOIN: u32 = 1;
    pub const LEAVE: u32 = 2;
    pub const NODEDOWN: u32 = 3;
    pub const NODEUP: u32 = 4;
    pub const PROCDOWN: u32 = 5;
}

/// `cpg_model_t` and its flags.
pub mod model {
    pub const V1: u32 = 1;
    pub const V1_DELIVER_INITIAL_TOTEM_CONF: u32 = 1;
}

/// `cpg_iteration_type_t`.
pub mod iteration {
    pub const NAME_ONLY: u32 = 1;
    pub const ONE_GROUP: u32 = 2;
    pub const ALL: u32 = 3;
}

/// `cpg_flow_control_state_t`.
pub mod flow {
    pub const DISABLED: u32 = 0;
    pub const ENABLED: u32 = 1;
}

pub mod kind {
    pub const INIT: u16 = 0;
    pub const JOIN: u16 = 1;
    pub const LEAVE: u16 = 2;
    pub const MCAST: u16 = 3;
    pub const MEMBERSHIP_GET: u16 = 4;
    pub const LOCAL_GET: u16 = 5;
    pub const ITERATION: u16 = 6;
    pub const MAX_ATOMIC_MSGSIZE: u16 = 7;
    pub const FLOW_CONTROL_STATE: u16 = 8;
    pub const FINALIZE: u16 = 9;
    /// `cpg_mcast_joined` without a response (pipelined): same payload as
    /// `MCAST`. The client checks locally what the daemon would refuse;
    /// the daemon stops reading requests while it cannot admit more, so
    /// back-pressure is a full request ring (TRY_AGAIN at the client).
    pub const MCAST_ASYNC: u16 = 10;
    /// One piece of a message longer than `MAX_ATOMIC_MSGSIZE`, without a
    /// response (libcpg's PARTIAL_MCAST): guarantee, [`super::partial`]
    /// type, the whole message's length, then the piece.
    pub const MCAST_PARTIAL_ASYNC: u16 = 11;
    /// Events.
    pub const DELIVER: u16 = 100;
    pub const CONFCHG: u16 = 101;
    pub const TOTEM_CONFCHG: u16 = 102;
    /// A piece of a message sent in pieces (`PartialDeliver`); the client
    /// library puts the message together and delivers it whole.
    pub const PARTIAL_DELIVER: u16 = 103;
}

/// Which piece of a message sent in pieces (libcpg's LIBCPG_PARTIAL_*).
pub mod partial {
    pub const FIRST: u32 = 1;
    pub const CONTINUED: u32 = 2;
    pub const LAST: u32 = 3;
}

/// The longest message sent in pieces: the receiving library holds it
/// whole before delivering it, and its pieces must fit a reader's overflow
/// allowance (64 MiB) while the sender is still sending.
pub const MAX_PARTIAL_TOTAL: u32 = 16 << 20;

/// Checks a piece's header: a known type, a total within
/// [`MAX_PARTIAL_TOTAL`], a piece no longer than the total.
pub fn check_partial(part: u32, total: u32, piece_len: usize) -> Result<(), DecodeError> {
    if !(partial::FIRST..=partial::LAST).contains(&part) {
        return Err(DecodeError::Invalid("partial type"));
    }
    if total > MAX_PARTIAL_TOTAL || piece_len > total as usize {
        return Err(DecodeError::Invalid("partial length"));
    }
    Ok(())
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    /// First request of a connection: the model (`model::V1`, or 0 for the
    /// plain `cpg_initialize`) and its flags.
    Init {
        model: u32,
        flags: u32,
    },
    Join {
        group: &'a [u8],
    },
    Leave {
        group: &'a [u8],
    },
    /// `cpg_mcast_joined`: to the group this connection joined.
    Mcast {
        guarantee: u32,
        msg: &'a [u8],
    },
    /// The same, without a response (`kind::MCAST_ASYNC`).
    McastAsync {
        guarantee: u32,
        msg: &'a [u8],
    },
    /// One piece of a longer message (`kind::MCAST_PARTIAL_ASYNC`).
    McastPartialAsync {
        guarantee: u32,
        part: u32,
        total: u32,
        msg: &'a [u8],
    },
    MembershipGet {
        group: &'a [u8],
    },
    LocalGet,
    /// `cpg_iteration_initialize`; the response carries every entry.
    Iteration {
        kind: u32,
        group: &'a [u8],
    },
    MaxAtomicMsgsize,
    FlowControlState,
    /// `cpg_finalize`: leaves the group (reason PROCDOWN) before the
    /// connection closes.
    Finalize,
}

fn name<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let n = r.bytes(MAX_NAME, "group name")?;
    Ok(n)
}

impl<'a> Request<'a> {
    pub fn kind(&self) -> u16 {
        match self {
            Request::Init { .. } => kind::INIT,
            Request::Join { .. } => kind::JOIN,
            Request::Leave { .. } => kind::LEAVE,
            Request::Mcast { .. } => kind::MCAST,
            Request::McastAsync { .. } => kind::MCAST_ASYNC,
            Request::McastPartialAsync { .. } => kind::MCAST_PARTIAL_ASYNC,
            Request::MembershipGet { .. } => kind::MEMBERSHIP_GET,
            Request::LocalGet => kind::LOCAL_GET,
            Request::Iteration { .. } => kind::ITERATION,
            Request::MaxAtomicMsgsize => kind::MAX_ATOMIC_MSGSIZE,
            Request::FlowControlState => kind::FLOW_CONTROL_STATE,
            Request::Finalize => kind::FINALIZE,
        }
    }

    /// Appends the payload; returns the frame kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            Request::Init { model, flags } => {
                w.u32(*model).u32(*flags);
            }
            Request::Join { group } | Request::Leave { group } => {
                w.bytes(group);
            }
            Request::Mcast { guarantee, msg } | Request::McastAsync { guarantee, msg } => {
                w.u32(*guarantee).rest(msg);
            }
            Request::McastPartialAsync {
                guarantee,
                part,
                total,
                msg,
            } => {
                w.u32(*guarantee).u32(*part).u32(*total).rest(msg);
            }
            Request::MembershipGet { group } => {
                w.bytes(group);
            }
            Request::Iteration { kind, group } => {
                w.u32(*kind).bytes(group);
            }
            Request::LocalGet
            | Request::MaxAtomicMsgsize
            | Request::FlowControlState
            | Request::Finalize => {}
        }
        self.kind()
    }

    pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(payload);
        let req = match kind {
            kind::INIT => Request::Init {
                model: r.u32("model")?,
                flags: r.u32("model flags")?,
            },
            kind::JOIN => Request::Join {
                group: name(&mut r)?,
            },
            kind::LEAVE => Request::Leave {
                group: name(&mut r)?,
            },
            kind::MCAST | kind::MCAST_ASYNC => {
                let guarantee = r.u32("guarantee")?;
                if guarantee > guarantee::SAFE {
                    return Err(DecodeError::Invalid("guarantee"));
                }
                let msg = r.rest();
                if kind == kind::MCAST {
                    Request::Mcast { guarantee, msg }
                } else {
                    Request::McastAsync { guarantee, msg }
                }
            }
            kind::MCAST_PARTIAL_ASYNC => {
                let guarantee = r.u32("guarantee")?;
                if guarantee > guarantee::SAFE {
                    return Err(DecodeError::Invalid("guarantee"));
                }
                let part = r.u32("partial type")?;
                let total = r.u32("total length")?;
                let msg = r.rest();
                check_partial(part, total, msg.len())?;
                Request::McastPartialAsync {
                    guarantee,
                    part,
                    total,
                    msg,
                }
            }
            kind::MEMBERSHIP_GET => Request::MembershipGet {
                group: name(&mut r)?,
            },
            kind::LOCAL_GET => Request::LocalGet,
            kind::ITERATION => Request::Iteration {
                kind: r.u32("iteration type")?,
                group: name(&mut r)?,
            },
            kind::MAX_ATOMIC_MSGSIZE => Request::MaxAtomicMsgsize,
            kind::FLOW_CONTROL_STATE => Request::FlowControlState,
            kind::FINALIZE => Request::Finalize,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// `struct cpg_address`: a member of a group.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Address {
    pub nodeid: u32,
    pub pid: u32,
    pub reason: u32,
}

/// Encoded size of an [`Address`].
pub const ADDRESS_LEN: usize = 12;

fn put_addresses(w: &mut Writer<'_>, list: &[Address]) {
    w.u32(list.len() as u32);
    for a in list {
        w.u32(a.nodeid).u32(a.pid).u32(a.reason);
    }
}

fn get_addresses(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<Address>, DecodeError> {
    let n = r.count(ADDRESS_LEN, what)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(Address {
            nodeid: r.u32(what)?,
            pid: r.u32(what)?,
            reason: r.u32(what)?,
        });
    }
    Ok(v)
}

/// Response bodies after the error code (requests not listed answer the
/// error code alone).
pub fn encode_membership(out: &mut Vec<u8>, members: &[Address]) {
    put_addresses(&mut Writer(out), members);
}

pub fn decode_membership(body: &[u8]) -> Result<Vec<Address>, DecodeError> {
    let mut r = Reader(body);
    let v = get_addresses(&mut r, "members")?;
    r.finish()?;
    Ok(v)
}

/// One `cpg_iteration_description_t`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IterationEntry {
    pub group: Vec<u8>,
    pub nodeid: u32,
    pub pid: u32,
}

pub fn encode_iteration(out: &mut Vec<u8>, entries: &[IterationEntry]) {
    let mut w = Writer(out);
    w.u32(entries.len() as u32);
    for e in entries {
        w.bytes(&e.group).u32(e.nodeid).u32(e.pid);
    }
}

pub fn decode_iteration(body: &[u8]) -> Result<Vec<IterationEntry>, DecodeError> {
    let mut r = Reader(body);
    let n = r.count(12, "iteration entries")?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(IterationEntry {
            group: name(&mut r)?.to_vec(),
            nodeid: r.u32("nodeid")?,
            pid: r.u32("pid")?,
        });
    }
    r.finish()?;
    Ok(v)
}

/// A `u32` body: `LocalGet` (node id), `MaxAtomicMsgsize` (bytes),
/// `FlowControlState` (`flow::*`).
pub fn decode_u32(body: &[u8]) -> Result<u32, DecodeError> {
    let mut r = Reader(body);
    let v = r.u32("value")?;
    r.finish()?;
    Ok(v)
}

/// An event pushed to a client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventMsg<'a> {
    Deliver {
        group: &'a [u8],
        nodeid: u32,
        pid: u32,
        msg: &'a [u8],
    },
    Confchg {
        group: &'a [u8],
        members: Vec<Address>,
        left: Vec<Address>,
        joined: Vec<Address>,
    },
    /// Model v1 totem confchg: the ring and its members.
    TotemConfchg {
        ring_rep: u32,
        ring_seq: u64,
        members: Vec<u32>,
    },
    /// A piece of a message sent in pieces.
    PartialDeliver {
        group: &'a [u8],
        nodeid: u32,
        pid: u32,
        part: u32,
        total: u32,
        msg: &'a [u8],
    },
}

impl<'a> EventMsg<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            EventMsg::Deliver {
                group,
                nodeid,
                pid,
                msg,
            } => {
                w.bytes(group).u32(*nodeid).u32(*pid).rest(msg);
                kind::DELIVER
            }
            EventMsg::Confchg {
                group,
                members,
                left,
                joined,
            } => {
                w.bytes(group);
                put_addresses(&mut w, members);
                put_addresses(&mut w, left);
                put_addresses(&mut w, joined);
                kind::CONFCHG
            }
            EventMsg::TotemConfchg {
                ring_rep,
                ring_seq,
                members,
            } => {
                w.u32(*ring_rep).u64(*ring_seq).u32(members.len() as u32);
                for m in members {
                    w.u32(*m);
                }
                kind::TOTEM_CONFCHG
            }
            EventMsg::PartialDeliver {
                group,
                nodeid,
                pid,
                part,
                total,
                msg,
            } => {
                w.bytes(group)
                    .u32(*nodeid)
                    .u32(*pid)
                    .u32(*part)
                    .u32(*total)
                    .rest(msg);
                kind::PARTIAL_DELIVER
            }
        }
    }

    pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(payload);
        let ev = match kind {
            kind::DELIVER => EventMsg::Deliver {
                group: name(&mut r)?,
                nodeid: r.u32("nodeid")?,
                pid: r.u32("pid")?,
                msg: r.rest(),
            },
            kind::PARTIAL_DELIVER => {
                let group = name(&mut r)?;
                let nodeid = r.u32("nodeid")?;
                let pid = r.u32("pid")?;
                let part = r.u32("partial type")?;
                let total = r.u32("total length")?;
                let msg = r.rest();
                check_partial(part, total, msg.len())?;
                EventMsg::PartialDeliver {
                    group,
                    nodeid,
                    pid,
                    part,
                    total,
                    msg,
                }
            }
            kind::CONFCHG => EventMsg::Confchg {
                group: name(&mut r)?,
                members: get_addresses(&mut r, "member list")?,
                left: get_addresses(&mut r, "left list")?,
                joined: get_addresses(&mut r, "joined list")?,
            },
            kind::TOTEM_CONFCHG => {
                let ring_rep = r.u32("ring rep")?;
                let ring_seq = r.u64("ring seq")?;
                let n = r.count(4, "totem members")?;
                let mut members = Vec::with_capacity(n);
                for _ in 0..n {
                    members.push(r.u32("totem member")?);
                }
                EventMsg::TotemConfchg {
                    ring_rep,
                    ring_seq,
                    members,
                }
            }
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
        let reqs = [
            Request::Init {
                model: model::V1,
                flags: model::V1_DELIVER_INITIAL_TOTEM_CONF,
            },
            Request::Join { group: b"grp" },
            Request::Leave { group: b"grp" },
            Request::Mcast {
                guarantee: guarantee::SAFE,
                msg: b"hello",
            },
            Request::McastAsync {
                guarantee: guarantee::FIFO,
                msg: b"pipelined",
            },
            Request::MembershipGet { group: b"g" },
            Request::LocalGet,
            Request::Iteration {
                kind: iteration::ALL,
                group: b"",
            },
            Request::MaxAtomicMsgsize,
            Request::FlowControlState,
            Request::Finalize,
        ];
        for req in reqs {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v), Ok(req));
        }
    }

    #[test]
    fn events_round_trip() {
        let a = Address {
            nodeid: 1,
            pid: 2,
            reason: reason::JOIN,
        };
        let evs = [
            EventMsg::Deliver {
                group: b"g",
                nodeid: 3,
                pid: 4,
                msg: b"m",
            },
            EventMsg::Confchg {
                group: b"g",
                members: vec![a, a],
                left: vec![],
                joined: vec![a],
            },
            EventMsg::TotemConfchg {
                ring_rep: 1,
                ring_seq: 1 << 40,
                members: vec![1, 2, 3],
            },
        ];
        for ev in evs {
            let mut v = Vec::new();
            let k = ev.encode(&mut v);
            assert_eq!(EventMsg::decode(k, &v), Ok(ev));
        }
    }

    #[test]
    fn bad_payloads_are_errors() {
        let long = [b'x'; MAX_NAME + 1];
        let mut v = Vec::new();
        Request::Join { group: &long }.encode(&mut v);
        assert!(Request::decode(kind::JOIN, &v).is_err());
        assert!(Request::decode(kind::MCAST, &[9, 0, 0, 0]).is_err());
        assert!(Request::decode(kind::MCAST_ASYNC, &[9, 0, 0, 0]).is_err());
        assert!(Request::decode(kind::INIT, &[1]).is_err());
        assert_eq!(Request::decode(77, &[]), Err(DecodeError::UnknownKind(77)));
        assert!(EventMsg::decode(kind::CONFCHG, &[0, 0, 0, 0, 255, 255, 255, 255]).is_err());
    }
}
