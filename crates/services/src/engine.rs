//! The service engine: connections, dispatch, and the sync protocol.
//!
//! # Sync protocol (as Corosync's `sync.c`)
//!
//! On every regular configuration every member multicasts an announce
//! barrier (step 0) tagged with the new ring id. When every member's
//! barrier for that ring and step has been delivered, the first syncing
//! service gets `sync_init` and then `sync_process` until it reports
//! `Done`, after which this node multicasts the barrier for step 1; when
//! all members' step-1 barriers are in, the next service runs, and so on.
//! After the last service's barrier every syncing service is activated, in
//! order. Barriers are delivered in total order, so every member moves to
//! the next step (and activates) at the same point of the message stream.
//!
//! A configuration change while a round runs (the transitional
//! configuration that precedes the next ring) aborts it: every syncing
//! service gets `sync_abort`, and the regular configuration that follows
//! starts a new round. Barriers carrying another ring id, or a step other
//! than the current one, are stale and ignored.
//!
//! Client traffic into Totem is refused with TRY_AGAIN from the
//! transitional configuration until the round of the next ring completes
//! (see [`crate::Ctx::admit`]); before the first round ever completes, the
//! services refuse what they list in [`Service::needs_first_sync`].

use std::collections::{BTreeMap, BTreeSet};

use crate::cfg::Cfg;
use crate::cmap::{Cmap, Keys};
use crate::cpg::{Cpg, MCAST_OVERHEAD};
use crate::evs::Evs;
use crate::proto::CsError;
use crate::service::{ConfChange, Creds, Ctx, Env, Service, SyncProgress, SyncRound, DELIVER_HEAD};
use crate::votequorum;
use crate::wire::{self, Barrier, SYNC_SERVICE};
use crate::{ConfigKind, ConnId, Guarantee, Instant, NodeId, Output, ReplyTo, RingId};

/// Most `sync_process` calls per engine input (bounded work per call; the
/// round resumes on the next delivery).
const MAX_PROCESS_CALLS: usize = 256;

/// Engine configuration.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub local: NodeId,
    /// Largest Totem payload the engine multicasts (CPG's
    /// `max_atomic_msgsize` is this minus [`MCAST_OVERHEAD`]). Totem's
    /// `max_message_size` must be at least this.
    pub max_message: usize,
    /// Most client connections; later ones get CS_ERR_NO_RESOURCES on their
    /// first request and are disconnected.
    pub max_connections: usize,
    /// Most CPG groups in the cluster.
    pub cpg_max_groups: usize,
    /// Most groups one EVS connection may join.
    pub evs_max_groups: usize,
    /// The quorum provider (`quorum { }`); the default is none: always
    /// quorate, as Corosync without a provider.
    pub quorum: votequorum::QuorumConfig,
    /// The configuration's keys for cmap's icmap (and cfg's node list).
    pub initial_keys: Keys,
}

/// Armed service timers: (service id, timer id) → deadline.
pub(crate) type Timers = BTreeMap<(u16, u32), Instant>;

impl EngineConfig {
    /// Defaults: `max_message` = 1 MiB + [`MCAST_OVERHEAD`] (140 bytes),
    /// so CPG messages of exactly 1 MiB are atomic; 1024 connections; 4096
    /// CPG groups; 1024 groups per EVS connection.
    pub fn new(local: NodeId) -> EngineConfig {
        EngineConfig {
            local,
            max_message: (1 << 20) + MCAST_OVERHEAD,
            max_connections: 1024,
            cpg_max_groups: 4096,
            evs_max_groups: crate::proto::evs::MAX_GROUPS,
            quorum: votequorum::QuorumConfig::default(),
            initial_keys: Vec::new(),
        }
    }
}

/// Counters and sizes for logs and tools.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct EngineStats {
    /// Open client connections.
    pub connections: u64,
    /// Connections that sent CPG INIT / an EVS request.
    pub cpg_connections: u64,
    pub evs_connections: u64,
    pub cpg_groups: u64,
    /// Processes in CPG groups, cluster-wide as this node knows them.
    pub cpg_members: u64,
    pub syncs_completed: u64,
    pub sync_aborts: u64,
    /// Requests answered CS_ERR_TRY_AGAIN.
    pub try_again: u64,
    /// Delivered messages that did not decode (dropped).
    pub malformed: u64,
    /// Delivered messages that decoded but had no effect by rule (e.g.
    /// data from a process this node does not know).
    pub dropped: u64,
    /// Barriers of another ring or step (ignored).
    pub stale_barriers: u64,
    /// Requests that failed to decode or named an unknown service/kind.
    pub bad_requests: u64,
    pub events: u64,
    /// Events the runtime refused (connection gone or too slow).
    pub events_refused: u64,
}

/// A running sync round.
struct Round {
    info: SyncRound,
    /// 0 = announce; `i ≥ 1` = the barrier after participant `i - 1`.
    step: u16,
    got: BTreeSet<NodeId>,
    /// The current participant's `sync_process` has not reported `Done`.
    processing: bool,
}

/// The service engine. See the crate docs and the module docs.
pub struct Engine {
    env: Env,
    stats: EngineStats,
    dying: BTreeSet<ConnId>,
    conns: BTreeMap<ConnId, Creds>,
    over_limit: BTreeSet<ConnId>,
    /// In sync order.
    services: Vec<Box<dyn Service>>,
    /// Index into `services` by service id (ids are small; a look-up per
    /// request and per delivery instead of asking each service its id).
    by_id: Vec<Option<u8>>,
    /// Indices into `services` of the syncing ones, in order.
    participants: Vec<usize>,
    /// Members of the transitional configuration since the last regular.
    trans: Option<Vec<NodeId>>,
    round: Option<Round>,
    timers: Timers,
}

impl Engine {
    pub fn new(cfg: EngineConfig) -> Engine {
        let services: Vec<Box<dyn Service>> = vec![
            Box::new(Cpg::new(cfg.local, cfg.cpg_max_groups)),
            Box::new(Evs::new(cfg.evs_max_groups)),
            Box::new(Cmap::new(&cfg.initial_keys)),
            Box::new(Cfg::new(cfg.local, &cfg.initial_keys)),
        ];
        let mut services = services;
        let (vq, q) = votequorum::services(cfg.local, cfg.quorum.clone());
        services.push(Box::new(vq));
        services.push(Box::new(q));
        let participants = (0..services.len())
            .filter(|&i| services[i].syncs())
            .collect();
        let top = services
            .iter()
            .map(|s| usize::from(s.id()))
            .max()
            .unwrap_or(0);
        let mut by_id = vec![None; top + 1];
        for (i, s) in services.iter().enumerate() {
            by_id[usize::from(s.id())] = Some(i as u8);
        }
        assert!(
            cfg.max_message > MCAST_OVERHEAD,
            "max_message must leave room for CPG's header"
        );
        Engine {
            env: Env {
                local: cfg.local,
                ring: RingId::default(),
                members: Vec::new(),
                syncing: false,
                synced_once: false,
                max_message: cfg.max_message,
                max_connections: cfg.max_connections,
                now: Instant(0),
                reloads_read: 0,
            },
            stats: EngineStats::default(),
            dying: BTreeSet::new(),
            conns: BTreeMap::new(),
            over_limit: BTreeSet::new(),
            services,
            by_id,
            participants,
            trans: None,
            round: None,
            timers: Timers::new(),
        }
    }

    /// The earliest armed service timer, if any.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.values().min().copied()
    }

    /// Moves the engine's clock to `now` (never backwards) and fires every
    /// service timer due by then. Call it on every turn of the run loop,
    /// before feeding other input, so services see the current time.
    pub fn handle_timeout(&mut self, now: Instant, out: &mut impl Output) {
        self.env.now = self.env.now.max(now);
        let now = self.env.now;
        while let Some((&key, _)) = self.timers.iter().find(|(_, &at)| at <= now) {
            self.timers.remove(&key);
            let (service, id) = key;
            if let Some(i) = self.service_index(service) {
                self.with_ctx(out, |svc, ctx| svc.timer(ctx, id), i);
            }
        }
        self.pump(out);
    }

    /// True once the first sync after start-up has completed.
    pub fn synced(&self) -> bool {
        self.env.synced_once
    }

    /// True while a sync round runs or one is pending (client traffic is
    /// refused with TRY_AGAIN).
    pub fn syncing(&self) -> bool {
        self.env.syncing
    }

    /// Service synchronizations completed (`stats().syncs_completed`
    /// without summing every service's statistics).
    pub fn syncs_completed(&self) -> u64 {
        self.stats.syncs_completed
    }

    pub fn stats(&self) -> EngineStats {
        let mut s = self.stats;
        s.connections = self.conns.len() as u64;
        for svc in &self.services {
            svc.add_stats(&mut s);
        }
        s
    }

    /// A message Totem delivered, in total order.
    pub fn deliver(
        &mut self,
        sender: NodeId,
        guarantee: Guarantee,
        payload: &[u8],
        out: &mut impl Output,
    ) {
        self.deliver_dyn(sender, guarantee, payload, out);
        self.pump(out);
    }

    /// A message Totem delivered in pieces (`Event::DeliverParts`): the
    /// pieces in order. The service header and the first bytes after it
    /// are gathered (at most `DELIVER_HEAD` bytes); the rest goes to the
    /// service where it lies.
    pub fn deliver_parts(
        &mut self,
        sender: NodeId,
        guarantee: Guarantee,
        parts: &[&[u8]],
        out: &mut impl Output,
    ) {
        let mut head = [0u8; DELIVER_HEAD];
        let mut n = 0;
        let mut rest: Vec<&[u8]> = Vec::with_capacity(parts.len());
        for p in parts {
            let k = (DELIVER_HEAD - n).min(p.len());
            head[n..n + k].copy_from_slice(&p[..k]);
            n += k;
            if k < p.len() {
                rest.push(&p[k..]);
            }
        }
        let head = &head[..n];
        match wire::split(head) {
            Ok((service, kind, body)) if service != SYNC_SERVICE => {
                match self.service_index(service) {
                    Some(i) => {
                        let mut ok = true;
                        self.with_ctx(
                            out,
                            |svc, ctx| {
                                ok = svc
                                    .exec_deliver_parts(ctx, sender, guarantee, kind, body, &rest)
                                    .is_ok();
                            },
                            i,
                        );
                        if !ok {
                            self.stats.malformed += 1;
                        }
                    }
                    None => self.stats.malformed += 1,
                }
            }
            _ => {
                // Sync barriers are never that long; anything else here is
                // handled as one buffer.
                let all = crate::service::gather(head, &rest);
                self.deliver_dyn(sender, guarantee, &all, out);
            }
        }
        self.pump(out);
    }

    fn deliver_dyn(
        &mut self,
        sender: NodeId,
        guarantee: Guarantee,
        payload: &[u8],
        out: &mut dyn Output,
    ) {
        let Ok((service, kind, body)) = wire::split(payload) else {
            self.stats.malformed += 1;
            return;
        };
        if service == SYNC_SERVICE {
            match (kind, Barrier::decode(body)) {
                (wire::sync_kind::BARRIER, Ok(b)) => self.on_barrier(sender, b, out),
                _ => self.stats.malformed += 1,
            }
            return;
        }
        let Some(i) = self.service_index(service) else {
            self.stats.malformed += 1;
            return;
        };
        let Engine {
            env,
            stats,
            dying,
            services,
            timers,
            ..
        } = self;
        let mut ctx = Ctx {
            out,
            env,
            stats,
            dying,
            timers,
        };
        if services[i]
            .exec_deliver(&mut ctx, sender, guarantee, kind, body)
            .is_err()
        {
            self.stats.malformed += 1;
        }
    }

    /// A Totem configuration change (transitional then regular).
    pub fn config_change(
        &mut self,
        kind: ConfigKind,
        members: &[NodeId],
        left: &[NodeId],
        joined: &[NodeId],
        ring: RingId,
        out: &mut impl Output,
    ) {
        self.abort_round(out);
        if kind == ConfigKind::Regular {
            self.env.ring = ring;
            self.env.members = members.to_vec();
        } else {
            self.trans = Some(members.to_vec());
        }
        self.env.syncing = true;
        let change = ConfChange {
            kind,
            members,
            left,
            joined,
            ring,
        };
        for i in 0..self.services.len() {
            self.with_ctx(out, |svc, ctx| svc.confchg(ctx, &change), i);
        }
        if kind == ConfigKind::Regular {
            self.start_round(out);
        }
    }

    /// A client connected.
    pub fn connect(&mut self, conn: ConnId, pid: u32, uid: u32, gid: u32) {
        if self.conns.len() >= self.env.max_connections {
            self.over_limit.insert(conn);
        } else {
            self.conns.insert(conn, Creds { pid, uid, gid });
        }
    }

    /// A request frame from a client.
    ///
    /// Errors the engine answers itself: a connection over the limit gets
    /// CS_ERR_NO_RESOURCES (and is disconnected); an unknown connection
    /// CS_ERR_BAD_HANDLE; an unknown service CS_ERR_NOT_SUPPORTED; a
    /// request that needs the first sync before it completed
    /// CS_ERR_TRY_AGAIN. Services answer an unknown kind with
    /// CS_ERR_NOT_SUPPORTED and an undecodable payload with
    /// CS_ERR_INVALID_PARAM.
    pub fn request(
        &mut self,
        conn: ConnId,
        service: u16,
        kind: u16,
        request_id: u64,
        payload: &[u8],
        out: &mut impl Output,
    ) {
        let to = ReplyTo {
            service,
            kind,
            request_id,
        };
        let err = if self.over_limit.contains(&conn) {
            out.disconnect(conn, "too many connections");
            Some(CsError::NoResources)
        } else if !self.conns.contains_key(&conn) {
            self.stats.bad_requests += 1;
            Some(CsError::BadHandle)
        } else {
            match self.service_index(service) {
                None => {
                    self.stats.bad_requests += 1;
                    Some(CsError::NotSupported)
                }
                Some(i) if !self.env.synced_once && self.services[i].needs_first_sync(kind) => {
                    Some(CsError::TryAgain)
                }
                Some(i) => {
                    let creds = self.conns[&conn];
                    self.with_ctx(
                        out,
                        |svc, ctx| svc.lib_request(ctx, conn, creds, to, payload),
                        i,
                    );
                    None
                }
            }
        };
        if let Some(err) = err {
            if err == CsError::TryAgain {
                self.stats.try_again += 1;
            }
            out.respond(conn, to, &[&err.code().to_le_bytes()]);
        }
        self.pump(out);
    }

    /// A statistics snapshot for cmap's stats map (the runtime calls this
    /// periodically and before cmap requests; trackers of stats keys are
    /// told what changed since the last one).
    pub fn set_stats(&mut self, keys: Keys, out: &mut impl Output) {
        for i in 0..self.services.len() {
            self.with_ctx(out, |svc, ctx| svc.stats_snapshot(ctx, &keys), i);
        }
    }

    /// The runtime re-read the configuration after a cfg reload request:
    /// its keys, or why it could not be read.
    /// The daemon's configuration, read again (or why it could not be),
    /// after the first `covers` [`Control::ReloadConfig`] requests it was
    /// given: those requests are answered now.
    pub fn config_reloaded(
        &mut self,
        keys: Result<Keys, String>,
        covers: u64,
        out: &mut impl Output,
    ) {
        self.env.reloads_read = self.env.reloads_read.max(covers);
        for i in 0..self.services.len() {
            self.with_ctx(out, |svc, ctx| svc.config_reloaded(ctx, &keys), i);
        }
    }

    /// The client is gone (exactly once per connect): services emit the
    /// leaves it implies (CPG PROCLEAVE with reason PROCDOWN).
    pub fn disconnect(&mut self, conn: ConnId, out: &mut impl Output) {
        self.over_limit.remove(&conn);
        if self.conns.remove(&conn).is_none() {
            return;
        }
        self.dying.insert(conn);
        for i in 0..self.services.len() {
            self.with_ctx(out, |svc, ctx| svc.lib_disconnect(ctx, conn), i);
        }
        self.dying.remove(&conn);
    }

    fn with_ctx(
        &mut self,
        out: &mut dyn Output,
        f: impl FnOnce(&mut dyn Service, &mut Ctx<'_>),
        i: usize,
    ) {
        let Engine {
            env,
            stats,
            dying,
            services,
            timers,
            ..
        } = self;
        let mut ctx = Ctx {
            out,
            env,
            stats,
            dying,
            timers,
        };
        f(services[i].as_mut(), &mut ctx);
    }

    fn start_round(&mut self, out: &mut dyn Output) {
        let trans = self.trans.take().unwrap_or_else(|| vec![self.env.local]);
        let info = SyncRound {
            ring: self.env.ring,
            members: self.env.members.clone(),
            trans,
        };
        self.round = Some(Round {
            info,
            step: 0,
            got: BTreeSet::new(),
            processing: false,
        });
        self.send_barrier(0, out);
    }

    fn send_barrier(&mut self, step: u16, out: &mut dyn Output) {
        let b = Barrier {
            ring: self.env.ring,
            step,
        }
        .encode();
        let hdr = wire::header(SYNC_SERVICE, wire::sync_kind::BARRIER);
        out.multicast(Guarantee::Agreed, &[&hdr, &b]);
    }

    fn abort_round(&mut self, out: &mut dyn Output) {
        if self.round.take().is_none() {
            return;
        }
        self.stats.sync_aborts += 1;
        for p in self.participants.clone() {
            self.with_ctx(out, |svc, ctx| svc.sync_abort(ctx), p);
        }
    }

    fn on_barrier(&mut self, sender: NodeId, b: Barrier, out: &mut dyn Output) {
        let Some(round) = self.round.as_mut() else {
            self.stats.stale_barriers += 1;
            return;
        };
        if b.ring != round.info.ring
            || b.step != round.step
            || !round.info.members.contains(&sender)
        {
            self.stats.stale_barriers += 1;
            return;
        }
        round.got.insert(sender);
        if round.info.members.iter().all(|m| round.got.contains(m)) {
            self.next_step(out);
        }
    }

    /// Every member passed the current barrier.
    fn next_step(&mut self, out: &mut dyn Output) {
        let Some(round) = self.round.as_mut() else {
            return;
        };
        round.step += 1;
        round.got.clear();
        let idx = usize::from(round.step) - 1;
        if let Some(&p) = self.participants.get(idx) {
            round.processing = true;
            let info = round.info.clone();
            self.with_ctx(out, |svc, ctx| svc.sync_init(ctx, &info), p);
            self.pump(out);
        } else {
            self.round = None;
            self.env.syncing = false;
            self.env.synced_once = true;
            self.stats.syncs_completed += 1;
            for p in self.participants.clone() {
                self.with_ctx(out, |svc, ctx| svc.sync_activate(ctx), p);
            }
        }
    }

    /// Runs the current participant's `sync_process` while Totem's queue
    /// has room, then sends its barrier once it is done.
    /// The index in `services` of service `id`.
    #[inline]
    fn service_index(&self, id: u16) -> Option<usize> {
        self.by_id
            .get(usize::from(id))
            .copied()
            .flatten()
            .map(usize::from)
    }

    /// Runs the sync round's processing step while it has work.
    #[inline]
    fn pump(&mut self, out: &mut dyn Output) {
        if self.round.as_ref().is_some_and(|r| r.processing) {
            self.pump_round(out);
        }
    }

    fn pump_round(&mut self, out: &mut dyn Output) {
        for _ in 0..MAX_PROCESS_CALLS {
            let Some(round) = self.round.as_ref() else {
                return;
            };
            if !round.processing {
                return;
            }
            let step = round.step;
            let p = self.participants[usize::from(step) - 1];
            let mut progress = SyncProgress::More;
            self.with_ctx(out, |svc, ctx| progress = svc.sync_process(ctx), p);
            if progress == SyncProgress::Done {
                if let Some(r) = self.round.as_mut() {
                    r.processing = false;
                }
                self.send_barrier(step, out);
                return;
            }
            if out.send_room().congested() {
                return;
            }
        }
    }
}
