//! EVS (extended virtual synchrony groups) client protocol, service id
//! [`service::EVS`](super::service::EVS).
//!
//! A connection joins any number of groups (each a 32-byte key, `struct
//! evs_group`); a message multicast to a set of groups is delivered to
//! every connection, on every node, that has joined at least one of them.
//! Configuration changes are the ring's (node ids). Responses start with
//! the `u32` error code, as in [`super::cpg`].

use super::{DecodeError, Reader, Writer};

/// `sizeof(struct evs_group)`.
pub const GROUP_LEN: usize = 32;
/// Groups one request may name at most.
pub const MAX_GROUPS: usize = 1024;

pub type Group = [u8; GROUP_LEN];

pub mod kind {
    pub const JOIN: u16 = 0;
    pub const LEAVE: u16 = 1;
    pub const MCAST_JOINED: u16 = 2;
    pub const MCAST_GROUPS: u16 = 3;
    pub const MEMBERSHIP_GET: u16 = 4;
    /// Events.
    pub const DELIVER: u16 = 100;
    pub const CONFCHG: u16 = 101;
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    Join {
        groups: Vec<Group>,
    },
    Leave {
        groups: Vec<Group>,
    },
    /// To the groups this connection joined. `guarantee` is
    /// `evs_guarantee_t` (0 unordered … 3 safe).
    McastJoined {
        guarantee: u32,
        msg: &'a [u8],
    },
    McastGroups {
        guarantee: u32,
        groups: Vec<Group>,
        msg: &'a [u8],
    },
    MembershipGet,
}

fn put_groups(w: &mut Writer<'_>, groups: &[Group]) {
    w.u32(groups.len() as u32);
    for g in groups {
        w.rest(g);
    }
}

fn get_groups(r: &mut Reader<'_>) -> Result<Vec<Group>, DecodeError> {
    let n = r.count(GROUP_LEN, "group count")?;
    if n > MAX_GROUPS {
        return Err(DecodeError::Invalid("group count"));
    }
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        let mut g = [0u8; GROUP_LEN];
        for b in g.iter_mut() {
            *b = r.u8("group")?;
        }
        v.push(g);
    }
    Ok(v)
}

fn get_guarantee(r: &mut Reader<'_>) -> Result<u32, DecodeError> {
    let g = r.u32("guarantee")?;
    if g > 3 {
        return Err(DecodeError::Invalid("guarantee"));
    }
    Ok(g)
}

impl<'a> Request<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            Request::Join { groups } => {
                put_groups(&mut w, groups);
                kind::JOIN
            }
            Request::Leave { groups } => {
                put_groups(&mut w, groups);
                kind::LEAVE
            }
            Request::McastJoined { guarantee, msg } => {
                w.u32(*guarantee).rest(msg);
                kind::MCAST_JOINED
            }
            Request::McastGroups {
                guarantee,
                groups,
                msg,
            } => {
                w.u32(*guarantee);
                put_groups(&mut w, groups);
                w.rest(msg);
                kind::MCAST_GROUPS
            }
            Request::MembershipGet => kind::MEMBERSHIP_GET,
        }
    }

    pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(payload);
        let req = match kind {
            kind::JOIN => Request::Join {
                groups: get_groups(&mut r)?,
            },
            kind::LEAVE => Request::Leave {
                groups: get_groups(&mut r)?,
            },
            kind::MCAST_JOINED => Request::McastJoined {
                guarantee: get_guarantee(&mut r)?,
                msg: r.rest(),
            },
            kind::MCAST_GROUPS => Request::McastGroups {
                guarantee: get_guarantee(&mut r)?,
                groups: get_groups(&mut r)?,
                msg: r.rest(),
            },
            kind::MEMBERSHIP_GET => Request::MembershipGet,
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// `MembershipGet` response body: the local node id, then the members.
pub fn encode_membership(out: &mut Vec<u8>, local: u32, members: &[u32]) {
    let mut w = Writer(out);
    w.u32(local).u32(members.len() as u32);
    for m in members {
        w.u32(*m);
    }
}

pub fn decode_membership(body: &[u8]) -> Result<(u32, Vec<u32>), DecodeError> {
    let mut r = Reader(body);
    let local = r.u32("local nodeid")?;
    let list = get_u32s(&mut r, "members")?;
    r.finish()?;
    Ok((local, list))
}

fn get_u32s(r: &mut Reader<'_>, what: &'static str) -> Result<Vec<u32>, DecodeError> {
    let n = r.count(4, what)?;
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(r.u32(what)?);
    }
    Ok(v)
}

fn put_u32s(w: &mut Writer<'_>, list: &[u32]) {
    w.u32(list.len() as u32);
    for m in list {
        w.u32(*m);
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventMsg<'a> {
    Deliver {
        nodeid: u32,
        msg: &'a [u8],
    },
    Confchg {
        members: Vec<u32>,
        left: Vec<u32>,
        joined: Vec<u32>,
    },
}

impl<'a> EventMsg<'a> {
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            EventMsg::Deliver { nodeid, msg } => {
                w.u32(*nodeid).rest(msg);
                kind::DELIVER
            }
            EventMsg::Confchg {
                members,
                left,
                joined,
            } => {
                put_u32s(&mut w, members);
                put_u32s(&mut w, left);
                put_u32s(&mut w, joined);
                kind::CONFCHG
            }
        }
    }

    pub fn decode(kind: u16, payload: &'a [u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(payload);
        let ev = match kind {
            kind::DELIVER => EventMsg::Deliver {
                nodeid: r.u32("nodeid")?,
                msg: r.rest(),
            },
            kind::CONFCHG => EventMsg::Confchg {
                members: get_u32s(&mut r, "member list")?,
                left: get_u32s(&mut r, "left list")?,
                joined: get_u32s(&mut r, "joined list")?,
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

    fn g(s: &str) -> Group {
        let mut g = [0u8; GROUP_LEN];
        g[..s.len()].copy_from_slice(s.as_bytes());
        g
    }

    #[test]
    fn round_trips() {
        let reqs = [
            Request::Join {
                groups: vec![g("a"), g("b")],
            },
            Request::Leave {
                groups: vec![g("a")],
            },
            Request::McastJoined {
                guarantee: 2,
                msg: b"x",
            },
            Request::McastGroups {
                guarantee: 3,
                groups: vec![g("c")],
                msg: b"yz",
            },
            Request::MembershipGet,
        ];
        for req in reqs {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v), Ok(req));
        }
        let ev = EventMsg::Confchg {
            members: vec![1, 2],
            left: vec![3],
            joined: vec![],
        };
        let mut v = Vec::new();
        let k = ev.encode(&mut v);
        assert_eq!(EventMsg::decode(k, &v), Ok(ev));
        let mut v = Vec::new();
        encode_membership(&mut v, 7, &[7, 8]);
        assert_eq!(decode_membership(&v), Ok((7, vec![7, 8])));
    }

    #[test]
    fn bad_payloads_are_errors() {
        assert!(Request::decode(kind::JOIN, &[2, 0, 0, 0, 1]).is_err());
        assert!(Request::decode(kind::MCAST_JOINED, &[4, 0, 0, 0]).is_err());
        assert!(Request::decode(kind::MEMBERSHIP_GET, &[0]).is_err());
    }
}
