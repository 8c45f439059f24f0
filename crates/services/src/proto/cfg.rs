//! CFG (configuration and administration) client protocol, service id
//! [`service::CFG`](super::service::CFG).
//!
//! Requests of kind `kind::*` below 100, each answered with a payload
//! that starts with the `u32` [`CsError`](super::CsError) code; the
//! shutdown callback is the event [`kind::SHUTDOWN`].

use super::{DecodeError, Reader, Writer};

/// `CFG_MAX_LINKS`.
pub const MAX_LINKS: usize = 8;
/// `CFG_MAX_HOST_LEN`.
pub const MAX_HOST_LEN: usize = 256;
/// `CFG_NODE_STATUS_V1`.
pub const NODE_STATUS_V1: u32 = 1;
/// Longest kill reason carried (longer ones are cut).
pub const MAX_REASON: usize = 512;

/// `corosync_cfg_shutdown_flags_t`.
pub mod shutdown_flags {
    pub const REQUEST: u32 = 0;
    pub const REGARDLESS: u32 = 1;
    pub const IMMEDIATE: u32 = 2;
}

/// `corosync_cfg_shutdown_reply_flags_t`.
pub mod shutdown_reply {
    pub const NO: u32 = 0;
    pub const YES: u32 = 1;
}

pub mod kind {
    pub const RING_STATUS_GET: u16 = 0;
    pub const LOCAL_GET: u16 = 1;
    pub const NODE_STATUS_GET: u16 = 2;
    pub const GET_NODE_ADDRS: u16 = 3;
    pub const KILL_NODE: u16 = 4;
    pub const TRY_SHUTDOWN: u16 = 5;
    pub const REPLYTO_SHUTDOWN: u16 = 6;
    pub const RELOAD_CONFIG: u16 = 7;
    pub const REOPEN_LOG_FILES: u16 = 8;
    pub const TRACKSTART: u16 = 9;
    pub const TRACKSTOP: u16 = 10;
    pub const RING_REENABLE: u16 = 11;
    /// Event: a shutdown was requested (`u32` flags).
    pub const SHUTDOWN: u16 = 100;
}

/// A client request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Request<'a> {
    RingStatusGet,
    LocalGet,
    NodeStatusGet { nodeid: u32, version: u32 },
    GetNodeAddrs { nodeid: u32 },
    KillNode { nodeid: u32, reason: &'a [u8] },
    TryShutdown { flags: u32 },
    ReplytoShutdown { reply: u32 },
    ReloadConfig,
    ReopenLogFiles,
    Trackstart { flags: u32 },
    Trackstop,
    RingReenable,
}

impl<'a> Request<'a> {
    /// Appends the payload; returns the frame kind.
    pub fn encode(&self, out: &mut Vec<u8>) -> u16 {
        let mut w = Writer(out);
        match self {
            Request::RingStatusGet => kind::RING_STATUS_GET,
            Request::LocalGet => kind::LOCAL_GET,
            Request::NodeStatusGet { nodeid, version } => {
                w.u32(*nodeid).u32(*version);
                kind::NODE_STATUS_GET
            }
            Request::GetNodeAddrs { nodeid } => {
                w.u32(*nodeid);
                kind::GET_NODE_ADDRS
            }
            Request::KillNode { nodeid, reason } => {
                w.u32(*nodeid)
                    .bytes(&reason[..reason.len().min(MAX_REASON)]);
                kind::KILL_NODE
            }
            Request::TryShutdown { flags } => {
                w.u32(*flags);
                kind::TRY_SHUTDOWN
            }
            Request::ReplytoShutdown { reply } => {
                w.u32(*reply);
                kind::REPLYTO_SHUTDOWN
            }
            Request::ReloadConfig => kind::RELOAD_CONFIG,
            Request::ReopenLogFiles => kind::REOPEN_LOG_FILES,
            Request::Trackstart { flags } => {
                w.u32(*flags);
                kind::TRACKSTART
            }
            Request::Trackstop => kind::TRACKSTOP,
            Request::RingReenable => kind::RING_REENABLE,
        }
    }

    pub fn decode(k: u16, payload: &'a [u8]) -> Result<Request<'a>, DecodeError> {
        let mut r = Reader(payload);
        let req = match k {
            kind::RING_STATUS_GET => Request::RingStatusGet,
            kind::LOCAL_GET => Request::LocalGet,
            kind::NODE_STATUS_GET => Request::NodeStatusGet {
                nodeid: r.u32("nodeid")?,
                version: r.u32("version")?,
            },
            kind::GET_NODE_ADDRS => Request::GetNodeAddrs {
                nodeid: r.u32("nodeid")?,
            },
            kind::KILL_NODE => Request::KillNode {
                nodeid: r.u32("nodeid")?,
                reason: r.bytes(MAX_REASON, "reason")?,
            },
            kind::TRY_SHUTDOWN => Request::TryShutdown {
                flags: r.u32("flags")?,
            },
            kind::REPLYTO_SHUTDOWN => Request::ReplytoShutdown {
                reply: r.u32("reply")?,
            },
            kind::RELOAD_CONFIG => Request::ReloadConfig,
            kind::REOPEN_LOG_FILES => Request::ReopenLogFiles,
            kind::TRACKSTART => Request::Trackstart {
                flags: r.u32("flags")?,
            },
            kind::TRACKSTOP => Request::Trackstop,
            kind::RING_REENABLE => Request::RingReenable,
            other => return Err(DecodeError::UnknownKind(other)),
        };
        r.finish()?;
        Ok(req)
    }
}

/// One link of a node (`struct corosync_knet_link_status_v1`).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct LinkStatus {
    pub enabled: bool,
    pub connected: bool,
    pub dynconnected: bool,
    pub mtu: u32,
    pub src: String,
    pub dst: String,
}

/// `struct corosync_cfg_node_status_v1`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NodeStatus {
    pub nodeid: u32,
    pub reachable: bool,
    pub remote: bool,
    pub external: bool,
    pub onwire_min: u8,
    pub onwire_max: u8,
    pub onwire_ver: u8,
    /// At most [`MAX_LINKS`], indexed by link number.
    pub links: Vec<LinkStatus>,
}

impl NodeStatus {
    pub fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer(out);
        w.u32(self.nodeid)
            .u8(self.reachable as u8)
            .u8(self.remote as u8)
            .u8(self.external as u8)
            .u8(self.onwire_min)
            .u8(self.onwire_max)
            .u8(self.onwire_ver)
            .u32(self.links.len().min(MAX_LINKS) as u32);
        for l in self.links.iter().take(MAX_LINKS) {
            w.u8(l.enabled as u8)
                .u8(l.connected as u8)
                .u8(l.dynconnected as u8)
                .u32(l.mtu)
                .bytes(l.src.as_bytes())
                .bytes(l.dst.as_bytes());
        }
    }

    pub fn decode(body: &[u8]) -> Result<NodeStatus, DecodeError> {
        let mut r = Reader(body);
        let mut s = NodeStatus {
            nodeid: r.u32("nodeid")?,
            reachable: r.u8("reachable")? != 0,
            remote: r.u8("remote")? != 0,
            external: r.u8("external")? != 0,
            onwire_min: r.u8("onwire_min")?,
            onwire_max: r.u8("onwire_max")?,
            onwire_ver: r.u8("onwire_ver")?,
            links: Vec::new(),
        };
        let n = r.count(15, "links")?;
        if n > MAX_LINKS {
            return Err(DecodeError::Invalid("links"));
        }
        for _ in 0..n {
            let text = |r: &mut Reader<'_>, what| {
                r.bytes(MAX_HOST_LEN - 1, what)
                    .map(|b| String::from_utf8_lossy(b).into_owned())
            };
            s.links.push(LinkStatus {
                enabled: r.u8("enabled")? != 0,
                connected: r.u8("connected")? != 0,
                dynconnected: r.u8("dynconnected")? != 0,
                mtu: r.u32("mtu")?,
                src: text(&mut r, "src")?,
                dst: text(&mut r, "dst")?,
            });
        }
        r.finish()?;
        Ok(s)
    }
}

/// A list of strings (`u32 n | n × bytes`): node addresses, ring names
/// and statuses.
pub fn encode_strings(out: &mut Vec<u8>, list: &[String]) {
    let mut w = Writer(out);
    w.u32(list.len() as u32);
    for s in list {
        w.bytes(s.as_bytes());
    }
}

pub fn decode_strings(r: &mut Reader<'_>) -> Result<Vec<String>, DecodeError> {
    let n = r.count(4, "strings")?;
    (0..n)
        .map(|_| {
            r.bytes(MAX_HOST_LEN, "string")
                .map(|b| String::from_utf8_lossy(b).into_owned())
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip() {
        let reqs = [
            Request::RingStatusGet,
            Request::LocalGet,
            Request::NodeStatusGet {
                nodeid: 2,
                version: NODE_STATUS_V1,
            },
            Request::GetNodeAddrs { nodeid: 3 },
            Request::KillNode {
                nodeid: 4,
                reason: b"why",
            },
            Request::TryShutdown { flags: 1 },
            Request::ReplytoShutdown { reply: 0 },
            Request::ReloadConfig,
            Request::ReopenLogFiles,
            Request::Trackstart { flags: 0 },
            Request::Trackstop,
            Request::RingReenable,
        ];
        for req in reqs {
            let mut v = Vec::new();
            let k = req.encode(&mut v);
            assert_eq!(Request::decode(k, &v), Ok(req));
            if !v.is_empty() {
                assert!(Request::decode(k, &v[..v.len() - 1]).is_err());
            }
        }
    }

    #[test]
    fn node_status_and_strings_round_trip() {
        let s = NodeStatus {
            nodeid: 7,
            reachable: true,
            links: vec![LinkStatus {
                enabled: true,
                connected: true,
                mtu: 1500,
                src: "10.0.0.1".into(),
                dst: "10.0.0.2".into(),
                ..LinkStatus::default()
            }],
            ..NodeStatus::default()
        };
        let mut v = Vec::new();
        s.encode(&mut v);
        assert_eq!(NodeStatus::decode(&v), Ok(s));
        let mut v = Vec::new();
        encode_strings(&mut v, &["a".into(), "bc".into()]);
        assert_eq!(decode_strings(&mut Reader(&v)).unwrap(), vec!["a", "bc"]);
    }
}
