//! CFG (service id 7): node and link status, node addresses, kill node,
//! shutdown with veto, cluster-wide configuration reload and log
//! reopening, as Corosync's `cfg` service.
//!
//! * Status: the node list comes from the configuration's `nodelist.node.*`
//!   keys (or, without a nodelist, from the ring's members); a node is
//!   reachable and its link 0 connected while it is a member of the
//!   current ring. One link per node (this transport has one).
//! * KILL_NODE is multicast; the named node asks the daemon to leave the
//!   ring and exit ([`Control::Exit`]). The caller gets CS_OK once it is
//!   sent, whether or not the node exists (as Corosync).
//! * TRY_SHUTDOWN (local): IMMEDIATE exits at once. REQUEST and
//!   REGARDLESS send the shutdown callback to every connection that called
//!   `corosync_cfg_trackstart` (other than the caller) and wait up to
//!   [`SHUTDOWN_TIMEOUT_MS`] for their `replyto_shutdown`; a silent client
//!   counts as yes. With REQUEST one NO refuses the shutdown (the caller
//!   gets CS_ERR_BUSY); REGARDLESS ignores the answers. A second request
//!   while one waits is CS_ERR_BUSY.
//! * RELOAD_CONFIG is multicast; every node asks the daemon to re-read its
//!   own file ([`Control::ReloadConfig`]); the caller is answered when its
//!   own node delivers the message.
//!
//! Executive messages: `KILL (0): u32 nodeid | bytes reason`,
//! `RELOAD (1): u64 token`.

use std::collections::{BTreeMap, BTreeSet};

use crate::cmap::Keys;
use crate::cpg::decode_error_code;
use crate::proto::cfg::{
    encode_strings, kind, shutdown_flags, shutdown_reply, LinkStatus, NodeStatus, Request,
    NODE_STATUS_V1,
};
use crate::proto::cmap::Value;
use crate::proto::{service, CsError, DecodeError, Reader, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service};
use crate::{ConnId, Control, Guarantee, Instant, NodeId, ReplyTo};

/// How long shutdown callbacks may take to answer (Corosync: 5 s).
pub const SHUTDOWN_TIMEOUT_MS: u64 = 5000;
const TIMER_SHUTDOWN: u32 = 0;
/// Reload requests waiting for their own delivery, at most.
const MAX_PENDING_RELOADS: usize = 64;

pub mod exec_kind {
    pub const KILL: u16 = 0;
    pub const RELOAD: u16 = 1;
}

struct Shutdown {
    caller: ConnId,
    to: ReplyTo,
    flags: u32,
    waiting: BTreeSet<ConnId>,
    refused: bool,
}

/// A node of the configuration: id and ring addresses (link order).
#[derive(Clone, Debug, Default)]
struct Node {
    addrs: Vec<String>,
}

/// The CFG service.
pub struct Cfg {
    local: NodeId,
    nodes: BTreeMap<NodeId, Node>,
    mtu: u32,
    trackers: BTreeSet<ConnId>,
    shutdown: Option<Shutdown>,
    reloads: BTreeMap<u64, (ConnId, ReplyTo)>,
    next_token: u64,
    /// [`Control::ReloadConfig`] requests made so far (every node's).
    reload_controls: u64,
    /// Local callers whose reload was delivered, with the number of the
    /// control it made: answered once a read made after it is applied.
    awaiting: Vec<(u64, ConnId, ReplyTo)>,
}

/// The nodes (id → ring addresses) named by `nodelist.node.<i>.*` keys.
fn nodes_from_keys(keys: &[(String, Value)]) -> BTreeMap<NodeId, Node> {
    let mut by_index: BTreeMap<&str, (Option<u32>, BTreeMap<u32, String>)> = BTreeMap::new();
    for (k, v) in keys {
        let Some(rest) = k.strip_prefix("nodelist.node.") else {
            continue;
        };
        let Some((i, field)) = rest.split_once('.') else {
            continue;
        };
        let e = by_index.entry(i).or_default();
        match (field, v) {
            ("nodeid", Value::U32(id)) => e.0 = Some(*id),
            (f, Value::Str(a)) => {
                let link = f
                    .strip_prefix("ring")
                    .and_then(|r| r.strip_suffix("_addr"))
                    .and_then(|n| n.parse::<u32>().ok());
                if let Some(link) = link {
                    e.1.insert(link, a.clone());
                }
            }
            _ => {}
        }
    }
    by_index
        .into_values()
        .filter_map(|(id, addrs)| {
            Some((
                id?,
                Node {
                    addrs: addrs.into_values().collect(),
                },
            ))
        })
        .collect()
}

fn netmtu(keys: &[(String, Value)]) -> u32 {
    keys.iter()
        .find_map(|(k, v)| match (k.as_str(), v) {
            ("totem.netmtu", Value::U32(m)) => Some(*m),
            _ => None,
        })
        .unwrap_or(1500)
}

impl Cfg {
    pub fn new(local: NodeId, keys: &[(String, Value)]) -> Cfg {
        Cfg {
            local,
            nodes: nodes_from_keys(keys),
            mtu: netmtu(keys),
            trackers: BTreeSet::new(),
            shutdown: None,
            reloads: BTreeMap::new(),
            next_token: 1,
            reload_controls: 0,
            awaiting: Vec::new(),
        }
    }

    fn addrs_of(&self, ctx: &Ctx<'_>, nodeid: NodeId) -> Option<Vec<String>> {
        match self.nodes.get(&nodeid) {
            Some(n) => Some(n.addrs.clone()),
            // Without a nodelist (multicast), members are known by id only.
            None if ctx.env.members.contains(&nodeid) => Some(Vec::new()),
            None => None,
        }
    }

    fn node_status(&self, ctx: &Ctx<'_>, nodeid: NodeId) -> Result<NodeStatus, CsError> {
        let addrs = self.addrs_of(ctx, nodeid).ok_or(CsError::NotExist)?;
        let local_addr = self
            .nodes
            .get(&self.local)
            .and_then(|n| n.addrs.first().cloned())
            .unwrap_or_default();
        let member = ctx.env.members.contains(&nodeid) || nodeid == self.local;
        let links = if addrs.is_empty() {
            vec![LinkStatus {
                enabled: true,
                connected: member,
                dynconnected: member,
                mtu: self.mtu,
                src: local_addr,
                dst: String::new(),
            }]
        } else {
            addrs
                .iter()
                .map(|dst| LinkStatus {
                    enabled: true,
                    connected: member,
                    dynconnected: member,
                    mtu: self.mtu,
                    src: local_addr.clone(),
                    dst: dst.clone(),
                })
                .collect()
        };
        Ok(NodeStatus {
            nodeid,
            reachable: member,
            links,
            ..NodeStatus::default()
        })
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        to: ReplyTo,
        req: Request<'_>,
    ) -> Result<Option<Vec<u8>>, CsError> {
        let mut body = Vec::new();
        match req {
            Request::LocalGet => {
                Writer(&mut body).u32(self.local);
            }
            Request::RingStatusGet => {
                let addr = self
                    .nodes
                    .get(&self.local)
                    .and_then(|n| n.addrs.first().cloned())
                    .unwrap_or_default();
                encode_strings(&mut body, &[addr]);
                encode_strings(&mut body, &["ring 0 active with no faults".to_string()]);
            }
            Request::NodeStatusGet { nodeid, version } => {
                if version != NODE_STATUS_V1 {
                    return Err(CsError::NotSupported);
                }
                self.node_status(ctx, nodeid)?.encode(&mut body);
            }
            Request::GetNodeAddrs { nodeid } => {
                let addrs = self.addrs_of(ctx, nodeid).ok_or(CsError::NotExist)?;
                encode_strings(&mut body, &addrs);
            }
            Request::KillNode { nodeid, reason } => {
                ctx.admit()?;
                let mut m = Vec::new();
                Writer(&mut m).u32(nodeid).bytes(reason);
                ctx.multicast(service::CFG, exec_kind::KILL, Guarantee::Agreed, &[&m]);
            }
            Request::TryShutdown { flags } => return self.try_shutdown(ctx, conn, to, flags),
            Request::ReplytoShutdown { reply } => self.reply_shutdown(ctx, conn, reply)?,
            Request::ReloadConfig => {
                ctx.admit()?;
                if self.reloads.len() + self.awaiting.len() >= MAX_PENDING_RELOADS {
                    return Err(CsError::TryAgain);
                }
                let token = self.next_token;
                self.next_token += 1;
                self.reloads.insert(token, (conn, to));
                let t = token.to_le_bytes();
                ctx.multicast(service::CFG, exec_kind::RELOAD, Guarantee::Agreed, &[&t]);
                return Ok(None);
            }
            Request::ReopenLogFiles => ctx.out.control(Control::ReopenLogFiles),
            Request::Trackstart { .. } => {
                self.trackers.insert(conn);
            }
            Request::Trackstop => {
                self.trackers.remove(&conn);
            }
            Request::RingReenable => {}
        }
        Ok(Some(body))
    }

    fn try_shutdown(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        to: ReplyTo,
        flags: u32,
    ) -> Result<Option<Vec<u8>>, CsError> {
        if flags > shutdown_flags::IMMEDIATE {
            return Err(CsError::InvalidParam);
        }
        if self.shutdown.is_some() {
            return Err(CsError::Busy);
        }
        let waiting: BTreeSet<ConnId> = if flags == shutdown_flags::IMMEDIATE {
            BTreeSet::new()
        } else {
            self.trackers
                .iter()
                .copied()
                .filter(|&c| c != conn)
                .collect()
        };
        let fl = flags.to_le_bytes();
        for &c in &waiting {
            ctx.event(c, service::CFG, kind::SHUTDOWN, &[&fl]);
        }
        self.shutdown = Some(Shutdown {
            caller: conn,
            to,
            flags,
            waiting,
            refused: false,
        });
        let at = Instant(ctx.now().0.saturating_add(SHUTDOWN_TIMEOUT_MS * 1_000_000));
        ctx.set_timer(service::CFG, TIMER_SHUTDOWN, at);
        self.check_shutdown(ctx, false);
        Ok(None)
    }

    fn reply_shutdown(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        reply: u32,
    ) -> Result<(), CsError> {
        if reply > shutdown_reply::YES {
            return Err(CsError::InvalidParam);
        }
        let Some(s) = self.shutdown.as_mut() else {
            return Err(CsError::NotExist);
        };
        if s.waiting.remove(&conn) && reply == shutdown_reply::NO {
            s.refused = true;
        }
        self.check_shutdown(ctx, false);
        Ok(())
    }

    /// Decides once every tracker answered (or the time is up).
    fn check_shutdown(&mut self, ctx: &mut Ctx<'_>, timed_out: bool) {
        let Some(s) = self.shutdown.as_ref() else {
            return;
        };
        if !s.waiting.is_empty() && !timed_out {
            return;
        }
        let s = self.shutdown.take().expect("checked");
        ctx.cancel_timer(service::CFG, TIMER_SHUTDOWN);
        if s.refused && s.flags == shutdown_flags::REQUEST {
            ctx.respond(s.caller, s.to, CsError::Busy, &[]);
            return;
        }
        ctx.respond(s.caller, s.to, CsError::Ok, &[]);
        ctx.out.control(Control::Exit {
            reason: "shutdown requested through cfg".into(),
        });
    }
}

impl Service for Cfg {
    fn id(&self) -> u16 {
        service::CFG
    }

    fn name(&self) -> &'static str {
        "cfg"
    }

    fn needs_first_sync(&self, k: u16) -> bool {
        matches!(k, kind::KILL_NODE | kind::RELOAD_CONFIG)
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        match Request::decode(to.kind, payload) {
            Ok(req) => match self.request(ctx, conn, to, req) {
                Ok(Some(body)) => ctx.respond(conn, to, CsError::Ok, &[&body]),
                Ok(None) => {}
                Err(e) => ctx.respond(conn, to, e, &[]),
            },
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
            }
        }
    }

    fn lib_disconnect(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.trackers.remove(&conn);
        self.reloads.retain(|_, (c, _)| *c != conn);
        self.awaiting.retain(|(_, c, _)| *c != conn);
        if let Some(s) = self.shutdown.as_mut() {
            s.waiting.remove(&conn);
        }
        // A caller that is gone still gets its shutdown; a tracker that
        // is gone no longer counts.
        self.check_shutdown(ctx, false);
    }

    fn exec_deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        _guarantee: Guarantee,
        k: u16,
        body: &[u8],
    ) -> Result<(), DecodeError> {
        let mut r = Reader(body);
        match k {
            exec_kind::KILL => {
                let nodeid = r.u32("nodeid")?;
                let reason = String::from_utf8_lossy(r.bytes(1024, "reason")?).into_owned();
                r.finish()?;
                if nodeid == self.local {
                    ctx.out.control(Control::Exit {
                        reason: format!("killed by node {sender}: {reason}"),
                    });
                }
            }
            exec_kind::RELOAD => {
                let token = r.u64("token")?;
                r.finish()?;
                ctx.out.control(Control::ReloadConfig);
                self.reload_controls += 1;
                if sender == self.local {
                    if let Some((conn, to)) = self.reloads.remove(&token) {
                        // Answered when the file read after this is applied
                        // (`config_reloaded`), with its outcome.
                        self.awaiting.push((self.reload_controls, conn, to));
                    }
                }
            }
            other => return Err(DecodeError::UnknownKind(other)),
        }
        Ok(())
    }

    fn confchg(&mut self, _ctx: &mut Ctx<'_>, _change: &ConfChange<'_>) {}

    fn timer(&mut self, ctx: &mut Ctx<'_>, id: u32) {
        if id == TIMER_SHUTDOWN {
            self.check_shutdown(ctx, true);
        }
    }

    fn config_reloaded(&mut self, ctx: &mut Ctx<'_>, keys: &Result<Keys, String>) {
        if let Ok(keys) = keys {
            self.nodes = nodes_from_keys(keys);
            self.mtu = netmtu(keys);
        }
        // As Corosync: CS_OK once the new file is in use, INVALID_PARAM
        // when it could not be read.
        let code = if keys.is_ok() {
            CsError::Ok
        } else {
            CsError::InvalidParam
        };
        let read = ctx.env.reloads_read;
        let (done, wait): (Vec<_>, Vec<_>) = std::mem::take(&mut self.awaiting)
            .into_iter()
            .partition(|(n, _, _)| *n <= read);
        self.awaiting = wait;
        for (_, conn, to) in done {
            ctx.respond(conn, to, code, &[]);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cfg::decode_strings;
    use crate::test_support::{Recorder, Sent};
    use crate::{ConfigKind, Engine, EngineConfig, RingId};

    fn keys() -> Keys {
        vec![
            ("nodelist.node.0.nodeid".into(), Value::U32(1)),
            (
                "nodelist.node.0.ring0_addr".into(),
                Value::Str("10.0.0.1".into()),
            ),
            ("nodelist.node.1.nodeid".into(), Value::U32(2)),
            (
                "nodelist.node.1.ring0_addr".into(),
                Value::Str("10.0.0.2".into()),
            ),
            ("nodelist.node.2.nodeid".into(), Value::U32(3)),
            (
                "nodelist.node.2.ring0_addr".into(),
                Value::Str("10.0.0.3".into()),
            ),
        ]
    }

    fn engine() -> (Engine, Recorder) {
        let mut cfg = EngineConfig::new(1);
        cfg.initial_keys = keys();
        let mut e = Engine::new(cfg);
        let mut out = Recorder::default();
        for c in 1..=3 {
            e.connect(ConnId(c), 100 + c as u32, 0, 0);
        }
        let ring = RingId { rep: 1, seq: 4 };
        e.config_change(ConfigKind::Regular, &[1, 2], &[], &[1, 2], ring, &mut out);
        (e, out)
    }

    fn send(e: &mut Engine, out: &mut Recorder, conn: u64, req: &Request<'_>) {
        let mut p = Vec::new();
        let k = req.encode(&mut p);
        e.request(ConnId(conn), service::CFG, k, 1, &p, out);
    }

    fn response(out: &mut Recorder, conn: u64) -> Option<(CsError, Vec<u8>)> {
        let i = out
            .sent
            .iter()
            .position(|s| matches!(s, Sent::Respond { conn: c, .. } if c.0 == conn))?;
        let Sent::Respond { payload, .. } = out.sent.remove(i) else {
            unreachable!()
        };
        let code = u32::from_le_bytes(payload[..4].try_into().unwrap());
        Some((CsError::from_code(code), payload[4..].to_vec()))
    }

    fn call(
        e: &mut Engine,
        out: &mut Recorder,
        conn: u64,
        req: &Request<'_>,
    ) -> (CsError, Vec<u8>) {
        send(e, out, conn, req);
        response(out, conn).expect("a response")
    }

    #[test]
    fn status_and_addresses() {
        let (mut e, mut out) = engine();
        let (err, body) = call(&mut e, &mut out, 1, &Request::LocalGet);
        assert_eq!((err, body), (CsError::Ok, 1u32.to_le_bytes().to_vec()));
        let st = |e: &mut Engine, out: &mut Recorder, n| {
            let (err, body) = call(
                e,
                out,
                1,
                &Request::NodeStatusGet {
                    nodeid: n,
                    version: 1,
                },
            );
            (err, NodeStatus::decode(&body).ok())
        };
        let (err, s) = st(&mut e, &mut out, 2);
        assert_eq!(err, CsError::Ok);
        let s = s.unwrap();
        assert!(s.reachable && s.links[0].connected);
        assert_eq!(
            (s.links[0].src.as_str(), s.links[0].dst.as_str()),
            ("10.0.0.1", "10.0.0.2")
        );
        let (_, s3) = st(&mut e, &mut out, 3);
        assert!(!s3.unwrap().reachable);
        assert_eq!(st(&mut e, &mut out, 9).0, CsError::NotExist);
        let bad = Request::NodeStatusGet {
            nodeid: 2,
            version: 2,
        };
        assert_eq!(call(&mut e, &mut out, 1, &bad).0, CsError::NotSupported);
        let (err, body) = call(&mut e, &mut out, 1, &Request::GetNodeAddrs { nodeid: 3 });
        assert_eq!(err, CsError::Ok);
        assert_eq!(
            decode_strings(&mut Reader(&body)).unwrap(),
            vec!["10.0.0.3"]
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::GetNodeAddrs { nodeid: 7 }).0,
            CsError::NotExist
        );
        // An unknown request kind.
        e.request(ConnId(1), service::CFG, 77, 1, &[], &mut out);
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::NotSupported);
    }

    fn deliver_own(e: &mut Engine, out: &mut Recorder, sender: NodeId) {
        let msgs: Vec<Vec<u8>> = out
            .sent
            .iter()
            .filter_map(|s| match s {
                Sent::Multicast(m) if m[..2] == service::CFG.to_le_bytes() => Some(m.clone()),
                _ => None,
            })
            .collect();
        out.sent.retain(|s| !matches!(s, Sent::Multicast(_)));
        for m in msgs {
            e.deliver(sender, Guarantee::Agreed, &m, out);
        }
    }

    #[test]
    fn kill_node_exits_only_the_named_node() {
        let (mut e, mut out) = engine();
        let kill = Request::KillNode {
            nodeid: 2,
            reason: b"test",
        };
        // Before the first sync: TRY_AGAIN.
        assert_eq!(call(&mut e, &mut out, 1, &kill).0, CsError::TryAgain);
        let (mut e, mut out) = synced();
        assert_eq!(call(&mut e, &mut out, 1, &kill).0, CsError::Ok);
        deliver_own(&mut e, &mut out, 1);
        assert!(out.controls.is_empty(), "node 1 is not the one killed");
        let mut m = Vec::new();
        Writer(&mut m).u32(1).bytes(b"bye");
        let mut msg = crate::wire::header(service::CFG, exec_kind::KILL).to_vec();
        msg.extend_from_slice(&m);
        e.deliver(2, Guarantee::Agreed, &msg, &mut out);
        assert!(matches!(&out.controls[..], [Control::Exit { reason }] if reason.contains("bye")));
    }

    /// A one-node engine whose first sync has completed.
    fn synced() -> (Engine, Recorder) {
        let mut cfg = EngineConfig::new(1);
        cfg.initial_keys = keys();
        let mut e = Engine::new(cfg);
        let mut out = Recorder::default();
        for c in 1..=3 {
            e.connect(ConnId(c), 100 + c as u32, 0, 0);
        }
        let ring = RingId { rep: 1, seq: 4 };
        e.config_change(ConfigKind::Regular, &[1], &[], &[1], ring, &mut out);
        for _ in 0..64 {
            let msgs: Vec<Vec<u8>> = out
                .sent
                .iter()
                .filter_map(|s| match s {
                    Sent::Multicast(m) => Some(m.clone()),
                    _ => None,
                })
                .collect();
            out.sent.clear();
            if msgs.is_empty() {
                break;
            }
            for m in msgs {
                e.deliver(1, Guarantee::Agreed, &m, &mut out);
            }
        }
        assert!(e.synced());
        out.sent.clear();
        (e, out)
    }

    #[test]
    fn reload_is_answered_once_the_file_read_after_it_is_applied() {
        let (mut e, mut out) = synced();
        send(&mut e, &mut out, 1, &Request::ReloadConfig);
        assert!(response(&mut out, 1).is_none());
        deliver_own(&mut e, &mut out, 1);
        assert_eq!(out.controls, vec![Control::ReloadConfig]);
        assert!(response(&mut out, 1).is_none(), "not before it is read");
        // A read that was made before this request answers nothing.
        e.config_reloaded(Ok(keys()), 0, &mut out);
        assert!(response(&mut out, 1).is_none());
        e.config_reloaded(Ok(keys()), 1, &mut out);
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::Ok);
        // A file that cannot be read: INVALID_PARAM, as Corosync answers.
        send(&mut e, &mut out, 1, &Request::ReloadConfig);
        deliver_own(&mut e, &mut out, 1);
        e.config_reloaded(Err("corosync.conf:3: bad".into()), 2, &mut out);
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::InvalidParam);
    }

    #[test]
    fn shutdown_with_veto() {
        let (mut e, mut out) = synced();
        // No tracker: the request goes through at once.
        send(&mut e, &mut out, 1, &Request::TryShutdown { flags: 0 });
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::Ok);
        assert!(matches!(out.controls[..], [Control::Exit { .. }]));
        out.controls.clear();

        let (mut e, mut out) = synced();
        call(&mut e, &mut out, 2, &Request::Trackstart { flags: 0 });
        call(&mut e, &mut out, 3, &Request::Trackstart { flags: 0 });
        send(&mut e, &mut out, 1, &Request::TryShutdown { flags: 0 });
        let callbacks = out
            .sent
            .iter()
            .filter(|s| matches!(s, Sent::Event { kind: k, .. } if *k == kind::SHUTDOWN))
            .count();
        assert_eq!(callbacks, 2);
        assert!(response(&mut out, 1).is_none());
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::TryShutdown { flags: 0 }).0,
            CsError::Busy
        );
        call(&mut e, &mut out, 2, &Request::ReplytoShutdown { reply: 1 });
        call(&mut e, &mut out, 3, &Request::ReplytoShutdown { reply: 0 });
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::Busy);
        assert!(out.controls.is_empty());

        // REGARDLESS ignores the veto; a silent tracker times out as yes.
        send(&mut e, &mut out, 1, &Request::TryShutdown { flags: 1 });
        call(&mut e, &mut out, 2, &Request::ReplytoShutdown { reply: 0 });
        assert!(response(&mut out, 1).is_none());
        let t = Instant(SHUTDOWN_TIMEOUT_MS * 1_000_000 + 1);
        e.handle_timeout(t, &mut out);
        assert_eq!(response(&mut out, 1).unwrap().0, CsError::Ok);
        assert!(matches!(out.controls[..], [Control::Exit { .. }]));
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::TryShutdown { flags: 9 }).0,
            CsError::InvalidParam
        );
        assert_eq!(
            call(&mut e, &mut out, 2, &Request::ReplytoShutdown { reply: 1 }).0,
            CsError::NotExist
        );
    }
}
