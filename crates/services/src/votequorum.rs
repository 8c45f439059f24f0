//! Votequorum (service id 13), the quorum provider, with Corosync's vote
//! arithmetic; and the state the quorum service (id 10, `quorum.rs`)
//! reports from.
//!
//! # Vote arithmetic (as Corosync's `votequorum.c`)
//!
//! Every node has votes (nodelist `quorum_votes`, default 1) and the
//! cluster has expected votes (`quorum.expected_votes`, else the sum of
//! the nodelist's votes), never below the votes present. With `total`
//! the votes of the ring's members:
//!
//! * `quorum = max((expected + 2) / 2, (total + 2) / 2)`, i.e.
//!   `expected / 2 + 1` when all is well; `two_node` with at most two
//!   members: quorum 1;
//! * quorate when `total ≥ quorum`;
//! * `wait_for_all` (implied by `two_node`): after start-up, and again
//!   after quorum was lost, not quorate until every expected vote is
//!   present at once — unless a member of the new ring was quorate and
//!   not waiting (a node rejoining a running cluster does not block it);
//! * `auto_tie_breaker`: a partition holding exactly half the expected
//!   votes is quorate when it holds the tie-breaker node (`lowest` /
//!   `highest` id of the last quorate membership, or the first node of a
//!   list that is present, provided no earlier list node was in the
//!   previous membership) and the other half cannot have quorum;
//! * `last_man_standing`: once a quorate ring that lost nodes has been
//!   stable for `last_man_standing_window` ms, expected votes drop to the
//!   votes present (with `auto_tie_breaker` down to one node).
//!
//! # Replicated state and determinism
//!
//! The state that decides quorum (each member's votes, the cluster's
//! expected votes, the wait-for-all status, the tie-breaker history) is
//! rebuilt at every sync: each member multicasts a NODEINFO (its votes,
//! its expected votes, whether it was quorate and whether it was waiting
//! for all, its previous membership and tie-breaker history); at
//! activation every member combines the same NODEINFOs the same way.
//! Changes between syncs (setexpected, setvotes, the last-man-standing
//! timer) are multicast as RECONFIG / LMS messages and applied in total
//! order. So every member of a ring computes the same quorate value at
//! the same point of the message stream.
//!
//! # Executive messages
//!
//! ```text
//! NODEINFO (0): u32 ring rep | u64 ring seq | u32 votes | u32 expected | u32 flags
//!               | u32 atb lowest | u32 atb highest | u64 atb ring seq
//!               | u32 n | n × u32 previous members
//! RECONFIG (1): u32 param (1 expected, 2 votes) | u32 nodeid | u32 value
//! LMS      (2): u32 ring rep | u64 ring seq | u32 expected
//! ```
//!
//! # Error codes (Corosync's)
//!
//! Without the provider every votequorum request is CS_ERR_NOT_SUPPORTED.
//! getinfo of an unknown node: NOT_EXIST. setexpected / setvotes that would
//! leave the cluster unable to be quorate (new quorum above the votes
//! present or below half of them): INVALID_PARAM; setvotes of an unknown
//! node: NAME_NOT_FOUND; both TRY_AGAIN during sync. trackstart while
//! tracking: EXIST; trackstop while not: NOT_EXIST.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::cpg::decode_error_code;
use crate::proto::quorum::{self as qp, Ring, MAX_NODES};
use crate::proto::votequorum::{
    info_flag, kind, nodestate, EventMsg, Info, Request, QDEVICE_NODEID,
};
use crate::proto::{service, CsError, DecodeError, Reader, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service, SyncProgress, SyncRound};
use crate::wire::{get_ring, put_ring};
use crate::{ConnId, Guarantee, NodeId, ReplyTo, RingId};

/// Executive message kinds.
pub mod exec_kind {
    pub const NODEINFO: u16 = 0;
    pub const RECONFIG: u16 = 1;
    pub const LMS: u16 = 2;
}

const RECONFIG_EXPECTED: u32 = 1;
const RECONFIG_VOTES: u32 = 2;

/// The most votes one node may have (configuration, `votequorum_setvotes`,
/// a member's NODEINFO or RECONFIG): with at most 384 nodes no total can
/// then overflow a u32, as the protocol's fields are.
pub const MAX_VOTES: u32 = 1_000_000;

/// NODEINFO flags.
const F_QUORATE: u32 = 1;
const F_WAITING: u32 = 2;

/// The last-man-standing timer.
const LMS_TIMER: u32 = 1;

/// Corosync's default `last_man_standing_window` (ms).
pub const DEFAULT_LMS_WINDOW_MS: u32 = 10_000;

/// `auto_tie_breaker_node`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TieBreaker {
    Lowest,
    Highest,
    List(Vec<NodeId>),
}

impl TieBreaker {
    /// `lowest`, `highest` or a space-separated list of node ids; `None`
    /// when it is none of these (Corosync then disables the tie breaker).
    pub fn parse(s: &str) -> Option<TieBreaker> {
        match s.trim() {
            "lowest" => Some(TieBreaker::Lowest),
            "highest" => Some(TieBreaker::Highest),
            list => {
                let ids: Option<Vec<NodeId>> = list
                    .split_whitespace()
                    .map(|t| t.parse().ok().filter(|&n: &NodeId| n != 0))
                    .collect();
                ids.filter(|v| !v.is_empty()).map(TieBreaker::List)
            }
        }
    }
}

/// What votequorum needs from `corosync.conf`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct QuorumConfig {
    /// `provider: corosync_votequorum`; false: no provider, always quorate.
    pub votequorum: bool,
    /// This node's votes.
    pub votes: u32,
    /// Expected votes at start-up.
    pub expected_votes: u32,
    pub two_node: bool,
    pub wait_for_all: bool,
    pub last_man_standing: bool,
    pub last_man_standing_window_ms: u32,
    pub auto_tie_breaker: Option<TieBreaker>,
}

impl Default for QuorumConfig {
    fn default() -> Self {
        QuorumConfig {
            votequorum: false,
            votes: 1,
            expected_votes: 1,
            two_node: false,
            wait_for_all: false,
            last_man_standing: false,
            last_man_standing_window_ms: DEFAULT_LMS_WINDOW_MS,
            auto_tie_breaker: None,
        }
    }
}

impl QuorumConfig {
    /// Corosync's start-up checks and adjustments: `two_node` with the tie
    /// breaker disables `two_node`; the tie breaker with an odd number of
    /// expected votes needs `wait_for_all` (without it the tie breaker is
    /// disabled, or start-up fails when `last_man_standing` is set too).
    /// Returns what to log.
    pub fn check(&mut self) -> Result<Vec<String>, String> {
        let mut notes = Vec::new();
        if !self.votequorum {
            return Ok(notes);
        }
        if self.expected_votes == 0 {
            return Err(
                "configuration error: nodelist or quorum.expected_votes must be configured!".into(),
            );
        }
        if self.two_node && self.auto_tie_breaker.is_some() {
            notes.push("two_node and auto_tie_breaker are both specified but are not compatible; two_node has been disabled".into());
            self.two_node = false;
        }
        if self.auto_tie_breaker.is_some() && self.expected_votes % 2 == 1 && !self.wait_for_all {
            if self.last_man_standing {
                return Err("configuration error: auto_tie_breaker & last_man_standing not available in odd sized cluster".into());
            }
            notes.push("auto_tie_breaker is set and the cluster has an odd number of nodes but wait_for_all is not set: auto_tie_breaker has been disabled".into());
            self.auto_tie_breaker = None;
        }
        Ok(notes)
    }
}

/// What a member announced at sync.
#[derive(Clone, Debug, PartialEq, Eq)]
struct NodeInfo {
    ring: RingId,
    votes: u32,
    expected: u32,
    flags: u32,
    atb_low: NodeId,
    atb_high: NodeId,
    atb_seq: u64,
    prev: Vec<NodeId>,
}

impl NodeInfo {
    fn encode(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(40 + 4 * self.prev.len());
        let mut w = Writer(&mut v);
        put_ring(&mut w, self.ring);
        w.u32(self.votes)
            .u32(self.expected)
            .u32(self.flags)
            .u32(self.atb_low)
            .u32(self.atb_high)
            .u64(self.atb_seq);
        qp::put_nodes(&mut w, &self.prev);
        v
    }

    fn decode(body: &[u8]) -> Result<NodeInfo, DecodeError> {
        let mut r = Reader(body);
        let info = NodeInfo {
            ring: get_ring(&mut r)?,
            votes: match r.u32("votes")? {
                v if v > MAX_VOTES => return Err(DecodeError::Invalid("votes")),
                v => v,
            },
            expected: r.u32("expected votes")?,
            flags: r.u32("flags")?,
            atb_low: r.u32("atb lowest")?,
            atb_high: r.u32("atb highest")?,
            atb_seq: r.u64("atb ring seq")?,
            prev: qp::get_nodes(&mut r, "previous members")?,
        };
        r.finish()?;
        Ok(info)
    }
}

/// A node votequorum knows of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct NodeRec {
    pub votes: u32,
    pub expected: u32,
    pub state: u32,
}

/// NODEINFOs collected during a sync round.
struct Pending {
    ring: RingId,
    members: Vec<NodeId>,
    infos: BTreeMap<NodeId, NodeInfo>,
}

/// A quorum (`libquorum`) connection.
#[derive(Clone, Copy, Debug)]
pub(crate) struct QuorumConn {
    pub model: u32,
    pub tracking: bool,
}

/// The state both quorum services share.
pub(crate) struct Core {
    pub local: NodeId,
    pub cfg: QuorumConfig,
    pub nodes: BTreeMap<NodeId, NodeRec>,
    pub members: Vec<NodeId>,
    pub ring: RingId,
    pub expected: u32,
    pub quorum: u32,
    pub total: u32,
    pub quorate: bool,
    my_votes: u32,
    waiting: bool,
    atb_low: NodeId,
    atb_high: NodeId,
    /// Ring seq of the quorate ring that set `atb_low` / `atb_high`.
    atb_seq: u64,
    prev: Vec<NodeId>,
    pending: Option<Pending>,
    pub quorum_conns: BTreeMap<ConnId, QuorumConn>,
    /// Votequorum connections: `Some(context)` when tracking.
    vq_conns: BTreeMap<ConnId, Option<u64>>,
}

pub(crate) type Shared = Arc<Mutex<Core>>;

pub(crate) fn lock(core: &Shared) -> MutexGuard<'_, Core> {
    core.lock().unwrap_or_else(|p| p.into_inner())
}

/// Builds the votequorum and quorum services around one shared state.
pub fn services(local: NodeId, cfg: QuorumConfig) -> (Votequorum, crate::quorum::Quorum) {
    let core = Arc::new(Mutex::new(Core::new(local, cfg)));
    (
        Votequorum {
            core: Arc::clone(&core),
        },
        crate::quorum::Quorum::new(core),
    )
}

impl Core {
    fn new(local: NodeId, cfg: QuorumConfig) -> Core {
        let my_votes = cfg.votes;
        let mut core = Core {
            local,
            nodes: BTreeMap::from([(
                local,
                NodeRec {
                    votes: my_votes,
                    expected: cfg.expected_votes,
                    state: nodestate::MEMBER,
                },
            )]),
            members: vec![local],
            ring: RingId::default(),
            expected: cfg.expected_votes,
            quorum: 0,
            total: 0,
            quorate: false,
            my_votes,
            waiting: cfg.wait_for_all,
            atb_low: 0,
            atb_high: 0,
            atb_seq: 0,
            prev: Vec::new(),
            pending: None,
            quorum_conns: BTreeMap::new(),
            vq_conns: BTreeMap::new(),
            cfg,
        };
        core.evaluate();
        core
    }

    pub fn provider(&self) -> bool {
        self.cfg.votequorum
    }

    /// Whether the cluster is quorate (always, without a provider).
    pub fn is_quorate(&self) -> bool {
        !self.cfg.votequorum || self.quorate
    }

    pub fn ring(&self) -> Ring {
        Ring {
            nodeid: self.ring.rep,
            seq: self.ring.seq,
        }
    }

    fn votes_of(&self, n: NodeId) -> u32 {
        self.nodes.get(&n).map_or(0, |r| r.votes)
    }

    /// Quorum for `expected` and `total` votes over `members` nodes.
    fn quorum_for(&self, expected: u32, total: u32, members: usize) -> u32 {
        if self.cfg.two_node && members <= 2 {
            return 1;
        }
        (expected.saturating_add(2) / 2).max(total.saturating_add(2) / 2)
    }

    fn atb_wins(&self) -> bool {
        match &self.cfg.auto_tie_breaker {
            None => false,
            Some(TieBreaker::Lowest) => self.atb_low != 0 && self.members.contains(&self.atb_low),
            Some(TieBreaker::Highest) => {
                self.atb_high != 0 && self.members.contains(&self.atb_high)
            }
            Some(TieBreaker::List(list)) => {
                for (i, n) in list.iter().enumerate() {
                    if self.members.contains(n) {
                        return !list[..i].iter().any(|p| self.prev.contains(p));
                    }
                }
                false
            }
        }
    }

    /// Recomputes total, expected, quorum and quorate from the members'
    /// votes and the cluster's expected votes. Returns whether quorate
    /// changed.
    fn evaluate(&mut self) -> bool {
        let was = self.quorate;
        // Saturating as well as capped (MAX_VOTES a node): a wrapped total
        // would lose quorum cluster-wide.
        let total = self
            .members
            .iter()
            .fold(0u32, |t, &n| t.saturating_add(self.votes_of(n)));
        self.total = total;
        self.expected = self.expected.max(total);
        self.quorum = self.quorum_for(self.expected, total, self.members.len());
        let quorate = if self.waiting && total != self.expected {
            false
        } else {
            let tie = self.cfg.auto_tie_breaker.is_some()
                && total == self.expected / 2
                && (self.prev.len().saturating_sub(self.members.len()) as u32) < self.quorum
                && self.atb_wins();
            total >= self.quorum || tie
        };
        if quorate {
            self.waiting = false;
            self.atb_low = self.members.iter().copied().min().unwrap_or(0);
            self.atb_high = self.members.iter().copied().max().unwrap_or(0);
            self.atb_seq = self.ring.seq;
        } else if self.cfg.wait_for_all {
            self.waiting = true;
        }
        self.quorate = quorate;
        for m in &self.members {
            if let Some(r) = self.nodes.get_mut(m) {
                r.expected = self.expected;
            }
        }
        was != quorate
    }

    fn info_flags(&self) -> u32 {
        let mut f = 0;
        if self.cfg.two_node {
            f |= info_flag::TWONODE;
        }
        if self.quorate {
            f |= info_flag::QUORATE;
        }
        if self.cfg.wait_for_all {
            f |= info_flag::WAIT_FOR_ALL;
        }
        if self.cfg.last_man_standing {
            f |= info_flag::LAST_MAN_STANDING;
        }
        if self.cfg.auto_tie_breaker.is_some() {
            f |= info_flag::AUTO_TIE_BREAKER;
        }
        f
    }

    fn info(&self, nodeid: u32) -> Result<Info, CsError> {
        let id = if nodeid == QDEVICE_NODEID {
            self.local
        } else {
            nodeid
        };
        let rec = self.nodes.get(&id).ok_or(CsError::NotExist)?;
        Ok(Info {
            node_id: id,
            node_state: rec.state,
            node_votes: rec.votes,
            node_expected_votes: if id == self.local {
                self.expected
            } else {
                rec.expected
            },
            highest_expected: self.expected,
            total_votes: self.total,
            quorum: self.quorum,
            flags: self.info_flags(),
            qdevice_votes: 0,
            qdevice_name: Vec::new(),
        })
    }

    /// Corosync's check for setexpected/setvotes: the new quorum must stay
    /// within [total / 2, total].
    fn check_quorum(&self, expected: u32, total: u32) -> Result<(), CsError> {
        let q = self.quorum_for(expected, total, self.members.len());
        if q < total / 2 || q > total {
            Err(CsError::InvalidParam)
        } else {
            Ok(())
        }
    }

    // ------------------------------------------------------ notifications

    fn vq_quorum_event(&self, context: u64) -> (u16, Vec<u8>) {
        let nodes = self
            .nodes
            .iter()
            .take(MAX_NODES)
            .map(|(&id, r)| (id, r.state))
            .collect();
        let mut buf = Vec::new();
        let k = EventMsg::Quorum {
            context,
            quorate: self.quorate,
            nodes,
        }
        .encode(&mut buf);
        (k, buf)
    }

    fn vq_nodelist_event(&self, context: u64) -> (u16, Vec<u8>) {
        let mut buf = Vec::new();
        let k = EventMsg::Nodelist {
            context,
            ring: self.ring(),
            members: self.members.clone(),
        }
        .encode(&mut buf);
        (k, buf)
    }

    fn vq_send_current(&self, ctx: &mut Ctx<'_>, conn: ConnId, context: u64) {
        let (k, b) = self.vq_quorum_event(context);
        ctx.event(conn, service::VOTEQUORUM, k, &[&b]);
        let (k, b) = self.vq_nodelist_event(context);
        ctx.event(conn, service::VOTEQUORUM, k, &[&b]);
    }

    fn vq_trackers(&self) -> Vec<(ConnId, u64)> {
        self.vq_conns
            .iter()
            .filter_map(|(&c, t)| t.map(|ctxt| (c, ctxt)))
            .collect()
    }

    /// Quorum notifications to every tracker of both services; with
    /// `change` (at the end of a sync) also the membership lists.
    pub(crate) fn notify(&self, ctx: &mut Ctx<'_>, change: Option<(&[NodeId], &[NodeId])>) {
        for (conn, context) in self.vq_trackers() {
            let (k, b) = self.vq_quorum_event(context);
            ctx.event(conn, service::VOTEQUORUM, k, &[&b]);
            if change.is_some() {
                let (k, b) = self.vq_nodelist_event(context);
                ctx.event(conn, service::VOTEQUORUM, k, &[&b]);
            }
        }
        let trackers: Vec<(ConnId, u32)> = self
            .quorum_conns
            .iter()
            .filter(|(_, c)| c.tracking)
            .map(|(&id, c)| (id, c.model))
            .collect();
        for (conn, model) in trackers {
            self.quorum_send(ctx, conn, model, change);
        }
    }

    fn notify_expected(&self, ctx: &mut Ctx<'_>) {
        for (conn, context) in self.vq_trackers() {
            let mut buf = Vec::new();
            let k = EventMsg::Expected {
                context,
                expected: self.expected,
            }
            .encode(&mut buf);
            ctx.event(conn, service::VOTEQUORUM, k, &[&buf]);
        }
    }

    // ----------------------------------------------------------- requests

    fn vq_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        to: ReplyTo,
        req: Request,
    ) -> Result<Vec<u8>, CsError> {
        if !self.cfg.votequorum {
            return Err(CsError::NotSupported);
        }
        self.vq_conns.entry(conn).or_insert(None);
        let mut body = Vec::new();
        match req {
            Request::Init => {}
            Request::GetInfo { nodeid } => self.info(nodeid)?.encode(&mut body),
            Request::SetExpected { expected } => {
                if expected == 0 {
                    return Err(CsError::InvalidParam);
                }
                self.check_quorum(expected, self.total)?;
                ctx.admit()?;
                send_reconfig(ctx, RECONFIG_EXPECTED, self.local, expected);
            }
            Request::SetVotes { nodeid, votes } => {
                let id = if nodeid == QDEVICE_NODEID {
                    self.local
                } else {
                    nodeid
                };
                if !self.nodes.contains_key(&id) {
                    return Err(CsError::NameNotFound);
                }
                if votes > MAX_VOTES {
                    return Err(CsError::InvalidParam);
                }
                let total = self.members.iter().fold(0u32, |t, &n| {
                    t.saturating_add(if n == id { votes } else { self.votes_of(n) })
                });
                self.check_quorum(self.expected, total)?;
                ctx.admit()?;
                send_reconfig(ctx, RECONFIG_VOTES, id, votes);
            }
            Request::TrackStart { context, flags } => {
                let want = qp::track::CHANGES | qp::track::CHANGES_ONLY;
                let tracking = self.vq_conns.get(&conn).copied().flatten();
                if flags & want != 0 && tracking.is_some() {
                    return Err(CsError::Exist);
                }
                ctx.respond(conn, to, CsError::Ok, &[]);
                if flags & (qp::track::CURRENT | qp::track::CHANGES) != 0 {
                    self.vq_send_current(ctx, conn, context);
                }
                if flags & want != 0 {
                    self.vq_conns.insert(conn, Some(context));
                }
                return Err(CsError::Ok);
            }
            Request::TrackStop => {
                if self.vq_conns.insert(conn, None).flatten().is_none() {
                    return Err(CsError::NotExist);
                }
            }
        }
        Ok(body)
    }

    // --------------------------------------------------------------- exec

    fn apply_reconfig(&mut self, ctx: &mut Ctx<'_>, param: u32, nodeid: NodeId, value: u32) {
        let before = self.expected;
        match param {
            RECONFIG_EXPECTED => self.expected = value,
            _ => {
                let Some(r) = self.nodes.get_mut(&nodeid) else {
                    ctx.count_dropped();
                    return;
                };
                r.votes = value;
                if nodeid == self.local {
                    self.my_votes = value;
                }
            }
        }
        let changed = self.evaluate();
        if param == RECONFIG_EXPECTED || self.expected != before {
            self.notify_expected(ctx);
        }
        if changed {
            self.notify(ctx, None);
        }
    }

    fn apply_lms(&mut self, ctx: &mut Ctx<'_>, ring: RingId, expected: u32) {
        if ring != self.ring || !self.quorate || !self.cfg.last_man_standing || ctx.env.syncing {
            ctx.count_dropped();
            return;
        }
        if expected >= self.expected {
            return;
        }
        self.expected = expected;
        let changed = self.evaluate();
        self.notify_expected(ctx);
        if changed {
            self.notify(ctx, None);
        }
    }

    fn activate(&mut self, ctx: &mut Ctx<'_>, p: Pending) {
        let old_members = std::mem::take(&mut self.members);
        let mut prev: BTreeSet<NodeId> = BTreeSet::new();
        for i in p.infos.values() {
            prev.extend(i.prev.iter().copied());
        }
        if p.infos.is_empty() {
            prev.extend(old_members.iter().copied());
        }
        let left_any = prev.iter().any(|n| !p.members.contains(n));
        for r in self.nodes.values_mut() {
            r.state = nodestate::DEAD;
        }
        for &m in &p.members {
            let votes = match p.infos.get(&m) {
                Some(i) => i.votes,
                None if m == self.local => self.my_votes,
                None => self.votes_of(m).max(1),
            };
            self.nodes.insert(
                m,
                NodeRec {
                    votes,
                    expected: self.expected,
                    state: nodestate::MEMBER,
                },
            );
        }
        if self.cfg.votequorum && !p.infos.is_empty() {
            let any_quorate = p.infos.values().any(|i| i.flags & F_QUORATE != 0);
            self.expected = p
                .infos
                .values()
                .filter(|i| !any_quorate || i.flags & F_QUORATE != 0)
                .map(|i| i.expected)
                .max()
                .unwrap_or(self.expected);
            let running = p
                .infos
                .values()
                .any(|i| i.flags & F_QUORATE != 0 && i.flags & F_WAITING == 0);
            if running {
                self.waiting = false;
            }
            // The tie-breaker history recorded by the latest quorate ring
            // (ring seqs only grow) wins; older ones may be stale.
            if let Some(i) = p.infos.values().max_by_key(|i| (i.atb_seq, i.atb_low)) {
                self.atb_low = i.atb_low;
                self.atb_high = i.atb_high;
                self.atb_seq = i.atb_seq;
            }
        }
        self.prev = prev.into_iter().collect();
        self.members = p.members;
        self.ring = p.ring;
        let before = self.expected;
        self.evaluate();
        ctx.cancel_timer(service::VOTEQUORUM, LMS_TIMER);
        let small_votes = self.members.iter().all(|&m| self.votes_of(m) <= 1);
        if self.cfg.votequorum
            && self.cfg.last_man_standing
            && self.quorate
            && left_any
            && small_votes
        {
            let at = ctx
                .now()
                .plus_ms(u64::from(self.cfg.last_man_standing_window_ms));
            ctx.set_timer(service::VOTEQUORUM, LMS_TIMER, at);
        }
        let joined: Vec<NodeId> = self
            .members
            .iter()
            .copied()
            .filter(|m| !old_members.contains(m))
            .collect();
        let left: Vec<NodeId> = old_members
            .iter()
            .copied()
            .filter(|m| !self.members.contains(m))
            .collect();
        if self.expected != before {
            self.notify_expected(ctx);
        }
        self.notify(ctx, Some((&joined, &left)));
    }

    fn my_info(&self, ring: RingId) -> NodeInfo {
        let mut flags = 0;
        if self.quorate {
            flags |= F_QUORATE;
        }
        if self.waiting {
            flags |= F_WAITING;
        }
        NodeInfo {
            ring,
            votes: self.my_votes,
            expected: self.expected,
            flags,
            atb_low: self.atb_low,
            atb_high: self.atb_high,
            atb_seq: self.atb_seq,
            prev: self.members.iter().copied().take(MAX_NODES).collect(),
        }
    }
}

/// This node's votes and the cluster's expected votes as a reloaded
/// configuration gives them (the icmap keys): `quorum.expected_votes`,
/// else the sum of the nodelist's `quorum_votes`; our votes from our
/// nodelist entry (1 without one). `None` without a provider.
fn reload_values(keys: &crate::cmap::Keys, local: NodeId) -> Option<(u32, u32)> {
    use crate::proto::cmap::Value;
    let get = |k: &str| keys.iter().find(|(n, _)| n == k).map(|(_, v)| v);
    let u32_of = |v: Option<&Value>| match v {
        Some(Value::U32(n)) => Some(*n),
        _ => None,
    };
    get("quorum.provider")?;
    let mut sum = 0u32;
    let mut mine = None;
    for (k, v) in keys {
        let Some(idx) = k
            .strip_prefix("nodelist.node.")
            .and_then(|r| r.strip_suffix(".nodeid"))
        else {
            continue;
        };
        let votes = u32_of(get(&format!("nodelist.node.{idx}.quorum_votes"))).unwrap_or(1);
        if votes > MAX_VOTES {
            // Set at run time past what a file may say: not taken.
            return None;
        }
        sum = sum.saturating_add(votes);
        if matches!(v, Value::U32(n) if *n == local) {
            mine = Some(votes);
        }
    }
    let expected = u32_of(get("quorum.expected_votes")).unwrap_or(sum);
    (expected > 0).then_some((mine.unwrap_or(1), expected))
}

fn send_reconfig(ctx: &mut Ctx<'_>, param: u32, nodeid: NodeId, value: u32) {
    let mut buf = Vec::with_capacity(12);
    Writer(&mut buf).u32(param).u32(nodeid).u32(value);
    ctx.multicast(
        service::VOTEQUORUM,
        exec_kind::RECONFIG,
        Guarantee::Agreed,
        &[&buf],
    );
}

/// The votequorum service (id 13): owns the sync of the shared state.
pub struct Votequorum {
    core: Shared,
}

impl Votequorum {
    /// Whether the cluster is quorate now (for tests and logs).
    pub fn quorate(&self) -> bool {
        lock(&self.core).is_quorate()
    }
}

impl Service for Votequorum {
    fn id(&self) -> u16 {
        service::VOTEQUORUM
    }

    fn name(&self) -> &'static str {
        "votequorum"
    }

    fn needs_first_sync(&self, k: u16) -> bool {
        k == kind::INIT
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        let req = match Request::decode(to.kind, payload) {
            Ok(r) => r,
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
                return;
            }
        };
        let mut core = lock(&self.core);
        match core.vq_request(ctx, conn, to, req) {
            Ok(body) => ctx.respond(conn, to, CsError::Ok, &[&body]),
            // Already answered (trackstart answers before its events).
            Err(CsError::Ok) => {}
            Err(e) => ctx.respond(conn, to, e, &[]),
        }
    }

    fn lib_disconnect(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId) {
        lock(&self.core).vq_conns.remove(&conn);
    }

    /// A reload changes expected votes and our votes as Corosync's
    /// `votequorum_refresh_config` does: each change is multicast and
    /// applied by every member in total order (a cluster-wide reload makes
    /// every node send the same values). The other quorum options keep
    /// their values until a restart.
    fn config_reloaded(&mut self, ctx: &mut Ctx<'_>, keys: &Result<crate::cmap::Keys, String>) {
        let Ok(keys) = keys else { return };
        let mut core = lock(&self.core);
        if !core.provider() {
            return;
        }
        let Some((votes, expected)) = reload_values(keys, core.local) else {
            return;
        };
        if votes != core.cfg.votes {
            core.cfg.votes = votes;
            send_reconfig(ctx, RECONFIG_VOTES, core.local, votes);
        }
        if expected != core.cfg.expected_votes {
            core.cfg.expected_votes = expected;
            send_reconfig(ctx, RECONFIG_EXPECTED, core.local, expected);
        }
        // two_node is re-read at runtime too (this node's own file, as
        // Corosync's); not with the tie breaker, which excludes it.
        let two_node = keys
            .iter()
            .any(|(k, v)| k == "quorum.two_node" && *v == crate::proto::cmap::Value::U8(1))
            && core.cfg.auto_tie_breaker.is_none();
        if two_node != core.cfg.two_node {
            core.cfg.two_node = two_node;
            if core.evaluate() {
                core.notify(ctx, None);
            }
        }
    }

    fn exec_deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        _guarantee: Guarantee,
        k: u16,
        body: &[u8],
    ) -> Result<(), DecodeError> {
        let mut core = lock(&self.core);
        match k {
            exec_kind::NODEINFO => {
                let info = NodeInfo::decode(body)?;
                match core.pending.as_mut() {
                    Some(p) if p.ring == info.ring && p.members.contains(&sender) => {
                        p.infos.insert(sender, info);
                    }
                    _ => ctx.count_dropped(),
                }
            }
            exec_kind::RECONFIG => {
                let mut r = Reader(body);
                let param = r.u32("param")?;
                let nodeid = r.u32("nodeid")?;
                let value = r.u32("value")?;
                r.finish()?;
                if !matches!(param, RECONFIG_EXPECTED | RECONFIG_VOTES)
                    || (value == 0 && param == RECONFIG_EXPECTED)
                    || (value > MAX_VOTES && param == RECONFIG_VOTES)
                {
                    return Err(DecodeError::Invalid("reconfigure"));
                }
                core.apply_reconfig(ctx, param, nodeid, value);
            }
            exec_kind::LMS => {
                let mut r = Reader(body);
                let ring = get_ring(&mut r)?;
                let expected = r.u32("expected votes")?;
                r.finish()?;
                core.apply_lms(ctx, ring, expected);
            }
            k => return Err(DecodeError::UnknownKind(k)),
        }
        Ok(())
    }

    fn confchg(&mut self, ctx: &mut Ctx<'_>, _change: &ConfChange<'_>) {
        ctx.cancel_timer(service::VOTEQUORUM, LMS_TIMER);
    }

    fn syncs(&self) -> bool {
        true
    }

    fn sync_init(&mut self, _ctx: &mut Ctx<'_>, round: &SyncRound) {
        lock(&self.core).pending = Some(Pending {
            ring: round.ring,
            members: round.members.clone(),
            infos: BTreeMap::new(),
        });
    }

    fn sync_process(&mut self, ctx: &mut Ctx<'_>) -> SyncProgress {
        let core = lock(&self.core);
        if !core.cfg.votequorum {
            return SyncProgress::Done;
        }
        let Some(ring) = core.pending.as_ref().map(|p| p.ring) else {
            return SyncProgress::Done;
        };
        let body = core.my_info(ring).encode();
        ctx.multicast(
            service::VOTEQUORUM,
            exec_kind::NODEINFO,
            Guarantee::Agreed,
            &[&body],
        );
        SyncProgress::Done
    }

    fn sync_activate(&mut self, ctx: &mut Ctx<'_>) {
        let mut core = lock(&self.core);
        if let Some(p) = core.pending.take() {
            core.activate(ctx, p);
        }
    }

    fn sync_abort(&mut self, _ctx: &mut Ctx<'_>) {
        lock(&self.core).pending = None;
    }

    fn timer(&mut self, ctx: &mut Ctx<'_>, id: u32) {
        let core = lock(&self.core);
        if id != LMS_TIMER || !core.quorate || ctx.env.syncing || !core.cfg.last_man_standing {
            return;
        }
        let mut buf = Vec::with_capacity(16);
        let mut w = Writer(&mut buf);
        put_ring(&mut w, core.ring);
        w.u32(core.total);
        ctx.multicast(
            service::VOTEQUORUM,
            exec_kind::LMS,
            Guarantee::Agreed,
            &[&buf],
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn core(cfg: QuorumConfig, members: &[(NodeId, u32)]) -> Core {
        let mut c = Core::new(members[0].0, cfg);
        c.members = members.iter().map(|m| m.0).collect();
        for &(id, votes) in members {
            c.nodes.insert(
                id,
                NodeRec {
                    votes,
                    expected: 0,
                    state: nodestate::MEMBER,
                },
            );
        }
        c.evaluate();
        c
    }

    fn vq(expected: u32) -> QuorumConfig {
        QuorumConfig {
            votequorum: true,
            expected_votes: expected,
            ..QuorumConfig::default()
        }
    }

    #[test]
    fn majority_of_expected_votes() {
        let c = core(vq(3), &[(1, 1), (2, 1), (3, 1)]);
        assert_eq!((c.total, c.expected, c.quorum, c.quorate), (3, 3, 2, true));
        let c = core(vq(3), &[(1, 1), (2, 1)]);
        assert_eq!((c.quorum, c.quorate), (2, true));
        let c = core(vq(3), &[(1, 1)]);
        assert_eq!((c.quorum, c.quorate), (2, false));
        // Weighted votes; expected never below the votes present.
        let c = core(vq(4), &[(1, 3), (2, 1)]);
        assert_eq!((c.total, c.quorum, c.quorate), (4, 3, true));
        let c = core(vq(2), &[(1, 2), (2, 2)]);
        assert_eq!((c.expected, c.quorum), (4, 3));
        let c = core(vq(4), &[(1, 1), (2, 1)]);
        assert_eq!((c.quorum, c.quorate), (3, false));
    }

    #[test]
    fn two_node_and_wait_for_all() {
        let two = QuorumConfig {
            two_node: true,
            wait_for_all: true,
            ..vq(2)
        };
        // Start-up alone: waits for the other node.
        let mut c = core(two.clone(), &[(1, 1)]);
        assert_eq!((c.quorum, c.quorate), (1, false));
        c.members = vec![1, 2];
        c.nodes.insert(
            2,
            NodeRec {
                votes: 1,
                expected: 2,
                state: 1,
            },
        );
        assert!(c.evaluate());
        assert!(c.quorate);
        // The other node goes: still quorate with 1 of 2.
        c.members = vec![1];
        c.evaluate();
        assert_eq!((c.quorum, c.quorate), (1, true));
        // Without wait_for_all a lone two_node node is quorate at once.
        let c = core(
            QuorumConfig {
                two_node: true,
                ..vq(2)
            },
            &[(1, 1)],
        );
        assert!(c.quorate);
        // More than two nodes: two_node has no effect.
        let c = core(
            QuorumConfig {
                two_node: true,
                ..vq(3)
            },
            &[(1, 1), (2, 1), (3, 1)],
        );
        assert_eq!(c.quorum, 2);
        // wait_for_all on 3 nodes: 2 of 3 at start-up is not enough.
        let wfa = QuorumConfig {
            wait_for_all: true,
            ..vq(3)
        };
        let mut c = core(wfa, &[(1, 1), (2, 1)]);
        assert!(!c.quorate);
        c.members = vec![1, 2, 3];
        c.nodes.insert(
            3,
            NodeRec {
                votes: 1,
                expected: 3,
                state: 1,
            },
        );
        c.evaluate();
        assert!(c.quorate);
        c.members = vec![1, 2];
        c.evaluate();
        assert!(c.quorate, "losing one of three keeps quorum");
    }

    #[test]
    fn tie_breaker() {
        let atb = |t: TieBreaker| QuorumConfig {
            auto_tie_breaker: Some(t),
            ..vq(4)
        };
        for (t, winner) in [
            (TieBreaker::Lowest, [1, 2]),
            (TieBreaker::Highest, [3, 4]),
            (TieBreaker::List(vec![3, 1]), [3, 4]),
        ] {
            let all = [(1, 1), (2, 1), (3, 1), (4, 1)];
            for half in [[1, 2], [3, 4]] {
                let mut c = core(atb(t.clone()), &all);
                assert!(c.quorate);
                c.prev = vec![1, 2, 3, 4];
                c.members = half.to_vec();
                c.evaluate();
                assert_eq!(c.quorate, half == winner, "{t:?} {half:?}");
            }
        }
        // A list node that was in the previous membership but is not here
        // denies the later list nodes.
        let mut c = core(
            atb(TieBreaker::List(vec![2, 3])),
            &[(1, 1), (2, 1), (3, 1), (4, 1)],
        );
        c.prev = vec![1, 2, 3, 4];
        c.members = vec![3, 4];
        c.evaluate();
        assert!(!c.quorate);
        assert_eq!(TieBreaker::parse("lowest"), Some(TieBreaker::Lowest));
        assert_eq!(
            TieBreaker::parse(" 3 1 "),
            Some(TieBreaker::List(vec![3, 1]))
        );
        assert_eq!(TieBreaker::parse("x"), None);
        assert_eq!(TieBreaker::parse("0"), None);
    }

    #[test]
    fn setexpected_and_setvotes_bounds() {
        let c = core(vq(3), &[(1, 1), (2, 1), (3, 1)]);
        assert_eq!(c.check_quorum(10, 3), Err(CsError::InvalidParam));
        assert_eq!(c.check_quorum(4, 3), Ok(()));
        assert_eq!(c.check_quorum(1, 3), Ok(()));
        assert_eq!(c.check_quorum(3, 0), Err(CsError::InvalidParam));
    }

    #[test]
    fn reload_reads_expected_and_own_votes() {
        use crate::proto::cmap::Value;
        let k = |n: &str, v: Value| (n.to_string(), v);
        let mut keys = vec![
            k("quorum.provider", Value::Str("corosync_votequorum".into())),
            k("nodelist.node.0.nodeid", Value::U32(1)),
            k("nodelist.node.0.quorum_votes", Value::U32(1)),
            k("nodelist.node.1.nodeid", Value::U32(2)),
            k("nodelist.node.1.quorum_votes", Value::U32(3)),
        ];
        assert_eq!(reload_values(&keys, 2), Some((3, 4)));
        assert_eq!(reload_values(&keys, 9), Some((1, 4)));
        keys.push(k("quorum.expected_votes", Value::U32(7)));
        assert_eq!(reload_values(&keys, 1), Some((1, 7)));
        keys.remove(0);
        assert_eq!(reload_values(&keys, 1), None);
    }

    #[test]
    fn config_checks() {
        let mut c = QuorumConfig {
            two_node: true,
            auto_tie_breaker: Some(TieBreaker::Lowest),
            wait_for_all: true,
            ..vq(2)
        };
        assert_eq!(c.check().unwrap().len(), 1);
        assert!(!c.two_node);
        let mut c = QuorumConfig {
            auto_tie_breaker: Some(TieBreaker::Lowest),
            ..vq(3)
        };
        c.check().unwrap();
        assert_eq!(c.auto_tie_breaker, None);
        let mut c = QuorumConfig {
            auto_tie_breaker: Some(TieBreaker::Lowest),
            last_man_standing: true,
            ..vq(3)
        };
        assert!(c.check().is_err());
        assert!(vq(0).check().is_err());
        assert!(QuorumConfig::default().check().unwrap().is_empty());
    }

    #[test]
    fn nodeinfo_round_trips() {
        let i = NodeInfo {
            ring: RingId { rep: 1, seq: 9 },
            votes: 1,
            expected: 3,
            flags: F_QUORATE,
            atb_low: 1,
            atb_high: 3,
            atb_seq: 7,
            prev: vec![1, 2, 3],
        };
        let v = i.encode();
        assert_eq!(NodeInfo::decode(&v), Ok(i));
        for cut in 0..v.len() {
            assert!(NodeInfo::decode(&v[..cut]).is_err());
        }
    }
}
