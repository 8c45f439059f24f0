//! CPG, closed process groups (service id 8), with Corosync's semantics.
//!
//! # Replicated state
//!
//! `groups`: group name → sorted set of `(nodeid, pid)` members (sorted as
//! Corosync sorts its process list, so member lists are the same on every
//! node whatever the history). It changes only on delivered messages and
//! at sync activation, so every node that delivered the same messages
//! holds the same state.
//!
//! # Executive messages (Totem body after the `u16 service, u16 kind` header)
//!
//! ```text
//! PROCJOIN  (0): bytes group | u32 pid | u32 reason (JOIN)
//! PROCLEAVE (1): bytes group | u32 pid | u32 reason (LEAVE or PROCDOWN)
//! MCAST     (2): bytes group | u32 pid | message …
//! JOINLIST  (3): u32 ring rep | u64 ring seq | u8 first | u32 n | n × (bytes group | u32 pid)
//! ```
//! `bytes` = `u32 length` + at most 128 bytes. The MCAST overhead is
//! 4 + 4 + 128 + 4 = [`MCAST_OVERHEAD`] = 140 bytes, so
//! `max_atomic_msgsize = max_message − 140` (1 MiB by default).
//!
//! # Membership changes and virtual synchrony
//!
//! * JOIN/LEAVE/disconnect are multicast (PROCJOIN/PROCLEAVE), so they are
//!   ordered with the group's data on every node. A process's messages
//!   are delivered only while it is a member in the receiver's view, so
//!   no process receives a message from a process it has not seen join.
//! * `synced` is the set of nodes whose processes this node's view
//!   reflects. Messages from a node outside it (one that arrived with a
//!   merge and whose join list has not been activated yet) are not applied
//!   live: their joins/leaves go into that node's pending join list (after
//!   its join list was delivered), their data is dropped — from this
//!   node's processes' point of view those processes join later (NODEUP).
//! * On a regular configuration the nodes of the last synced membership
//!   that are not in the transitional configuration have left: their
//!   processes leave every group with reason NODEDOWN, at once (Corosync 3
//!   reports them at the end of the sync round; reporting at the regular
//!   configuration is as consistent — every node of the transitional
//!   configuration computes the same list at the same point of the
//!   message stream — and a round of sync sooner).
//! * During the sync every node multicasts its join list (its local
//!   processes, joins in flight included: they are delivered before the
//!   list, FIFO). At activation each node adds the processes of nodes
//!   outside `synced` with reason NODEUP (as Corosync's
//!   `joinlist_inform_clients` does), one CONFCHG per group; then every
//!   node holds the same view.
//!
//! # Error codes (Corosync 3's)
//!
//! Requests before INIT: CS_ERR_BAD_HANDLE. INIT before the first sync:
//! TRY_AGAIN; a second INIT: CS_ERR_EXIST; unknown model: INVALID_PARAM.
//! JOIN: name longer than 128: NAME_TOO_LONG; empty: INVALID_PARAM; already
//! joined or joining: EXIST; leave in flight: BUSY; the same pid already in
//! the group through another connection: EXIST (or TRY_AGAIN while its
//! leave is in flight); group full (128): NO_SPACE; too many groups:
//! TOO_MANY_GROUPS. LEAVE: not joined / leave in flight / other group:
//! NOT_EXIST; join in flight: BUSY. MCAST: not joined: NOT_EXIST; larger
//! than the atomic size: TOO_BIG. JOIN, LEAVE, MCAST: TRY_AGAIN during
//! sync or when Totem's queue is ≥ 75% full. FINALIZE is always accepted
//! (it leaves with PROCDOWN, like a disconnect).
//!
//! MCAST_ASYNC gets no response: the client checks the errors above itself
//! (it knows whether it joined, the atomic size and the guarantees) and
//! the runtime stops reading requests while the engine is congested, so
//! the request waits in the client's ring instead of being refused. One
//! that arrives anyway is multicast whenever the connection is a member
//! (the queue has room above 75%); one from a connection that is not (a
//! client bug, or a race with its own leave) or that is too big is
//! counted as a bad request — never dropped silently.

use std::collections::{BTreeMap, BTreeSet};

use crate::proto::cpg::{
    encode_iteration, encode_membership, flow, guarantee, iteration, kind, model, reason, Address,
    EventMsg, IterationEntry, Request, MAX_MEMBERS, MAX_NAME,
};
use crate::proto::{service, CsError, DecodeError, Reader, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service, SyncProgress, SyncRound};
use crate::wire::{self, get_ring, put_ring};
use crate::{ConfigKind, ConnId, Guarantee, NodeId, ReplyTo, RingId};

/// Bytes a CPG MCAST adds around the client's message on Totem.
pub const MCAST_OVERHEAD: usize = wire::HEADER_LEN + 4 + MAX_NAME + 4;

/// Executive message kinds.
pub mod exec_kind {
    pub const PROCJOIN: u16 = 0;
    pub const PROCLEAVE: u16 = 1;
    pub const MCAST: u16 = 2;
    pub const JOINLIST: u16 = 3;
    /// `group, pid, partial type, total length, piece`.
    pub const PARTIAL: u16 = 4;
}

type Group = Vec<u8>;
/// `(nodeid, pid)`.
type Member = (NodeId, u32);

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum JoinState {
    Unjoined,
    /// PROCJOIN sent, not yet delivered.
    JoinStarted,
    Joined,
    /// PROCLEAVE (reason LEAVE) sent, not yet delivered.
    LeaveStarted,
}

#[derive(Debug)]
struct Conn {
    pid: u32,
    model: u32,
    flags: u32,
    state: JoinState,
    group: Group,
    /// The totem confchg that CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF asks
    /// for went out (after the connection's first join confchg, as in
    /// Corosync).
    initial_totem_sent: bool,
}

impl Conn {
    /// Gets group events and messages (Corosync: JOIN_COMPLETED or
    /// LEAVE_STARTED).
    fn receives(&self) -> bool {
        matches!(self.state, JoinState::Joined | JoinState::LeaveStarted)
    }
}

/// Join lists collected during a sync round.
#[derive(Debug)]
struct Pending {
    ring: RingId,
    members: Vec<NodeId>,
    /// For nodes outside `synced`: their processes, once their join list
    /// was delivered, updated by their later joins and leaves.
    lists: BTreeMap<NodeId, BTreeSet<(Group, u32)>>,
}

/// A decoded executive message.
#[derive(Debug)]
enum Exec<'a> {
    ProcJoin {
        group: &'a [u8],
        pid: u32,
    },
    ProcLeave {
        group: &'a [u8],
        pid: u32,
        reason: u32,
    },
    Mcast {
        group: &'a [u8],
        pid: u32,
        msg: &'a [u8],
    },
    Partial {
        group: &'a [u8],
        pid: u32,
        part: u32,
        total: u32,
        msg: &'a [u8],
    },
    JoinList {
        ring: RingId,
        first: bool,
        entries: Vec<(&'a [u8], u32)>,
    },
}

fn get_name<'a>(r: &mut Reader<'a>) -> Result<&'a [u8], DecodeError> {
    let g = r.bytes(MAX_NAME, "group name")?;
    if g.is_empty() {
        return Err(DecodeError::Invalid("group name"));
    }
    Ok(g)
}

/// The head of an exec PARTIAL message: group, pid, piece type, total.
fn get_partial_head<'a>(r: &mut Reader<'a>) -> Result<(&'a [u8], u32, u32, u32), DecodeError> {
    Ok((
        get_name(r)?,
        r.u32("pid")?,
        r.u32("partial type")?,
        r.u32("total length")?,
    ))
}

impl<'a> Exec<'a> {
    fn decode(k: u16, body: &'a [u8]) -> Result<Exec<'a>, DecodeError> {
        let mut r = Reader(body);
        let m = match k {
            exec_kind::PROCJOIN | exec_kind::PROCLEAVE => {
                let group = get_name(&mut r)?;
                let pid = r.u32("pid")?;
                let why = r.u32("reason")?;
                match (k, why) {
                    (exec_kind::PROCJOIN, reason::JOIN) => Exec::ProcJoin { group, pid },
                    (exec_kind::PROCLEAVE, reason::LEAVE | reason::PROCDOWN) => Exec::ProcLeave {
                        group,
                        pid,
                        reason: why,
                    },
                    _ => return Err(DecodeError::Invalid("reason")),
                }
            }
            exec_kind::MCAST => Exec::Mcast {
                group: get_name(&mut r)?,
                pid: r.u32("pid")?,
                msg: r.rest(),
            },
            exec_kind::PARTIAL => {
                let (group, pid, part, total) = get_partial_head(&mut r)?;
                let msg = r.rest();
                crate::proto::cpg::check_partial(part, total, msg.len())?;
                Exec::Partial {
                    group,
                    pid,
                    part,
                    total,
                    msg,
                }
            }
            exec_kind::JOINLIST => {
                let ring = get_ring(&mut r)?;
                let first = match r.u8("first")? {
                    0 => false,
                    1 => true,
                    _ => return Err(DecodeError::Invalid("first")),
                };
                let n = r.count(9, "join list")?;
                let mut entries = Vec::with_capacity(n);
                for _ in 0..n {
                    entries.push((get_name(&mut r)?, r.u32("pid")?));
                }
                Exec::JoinList {
                    ring,
                    first,
                    entries,
                }
            }
            k => return Err(DecodeError::UnknownKind(k)),
        };
        r.finish()?;
        Ok(m)
    }
}

/// The error a request that does not decode gets.
pub(crate) fn decode_error_code(e: &DecodeError) -> CsError {
    match e {
        DecodeError::UnknownKind(_) => CsError::NotSupported,
        _ => CsError::InvalidParam,
    }
}

/// The CPG service.
pub struct Cpg {
    local: NodeId,
    max_groups: usize,
    conns: BTreeMap<ConnId, Conn>,
    groups: BTreeMap<Group, BTreeSet<Member>>,
    /// Local connections that receive each group's events (index of
    /// `conns` by group, for connections where `Conn::receives`).
    receivers: BTreeMap<Group, BTreeSet<ConnId>>,
    synced: BTreeSet<NodeId>,
    trans: Option<Vec<NodeId>>,
    sync: Option<Pending>,
    last_ring: RingId,
    last_members: Vec<NodeId>,
    scratch: Vec<u8>,
    /// Where the last multicast delivered went: see [`Route`].
    route: Option<Route>,
}

/// The last delivered multicast's group, sender and pid, the event header
/// built for it, and the local connections it went to. One sender's
/// messages to one group come in runs (a Totem frame packs one sender's
/// messages), and a run skips the lookups and the header after its first
/// message. Every input but a multicast (delivered or sent) may change the
/// groups, the receivers or the synced nodes, so each clears it.
struct Route {
    group: Vec<u8>,
    node: NodeId,
    pid: u32,
    header: Vec<u8>,
    receivers: Vec<ConnId>,
}

impl Cpg {
    pub fn new(local: NodeId, max_groups: usize) -> Cpg {
        Cpg {
            local,
            max_groups,
            conns: BTreeMap::new(),
            groups: BTreeMap::new(),
            receivers: BTreeMap::new(),
            synced: BTreeSet::from([local]),
            trans: None,
            sync: None,
            last_ring: RingId::default(),
            last_members: vec![local],
            scratch: Vec::new(),
            route: None,
        }
    }

    fn set_state(&mut self, conn: ConnId, state: JoinState) {
        let Some(c) = self.conns.get_mut(&conn) else {
            return;
        };
        let was = c.receives();
        c.state = state;
        let now = c.receives();
        if was && !now {
            if let Some(set) = self.receivers.get_mut(&c.group) {
                set.remove(&conn);
                if set.is_empty() {
                    self.receivers.remove(&c.group);
                }
            }
        } else if now && !was {
            self.receivers
                .entry(c.group.clone())
                .or_default()
                .insert(conn);
        }
        if state == JoinState::Unjoined {
            c.group.clear();
        }
    }

    /// Sends a CONFCHG for `group` (members = the group after the change)
    /// to its local receivers.
    fn notify(&mut self, ctx: &mut Ctx<'_>, group: &[u8], left: &[Address], joined: &[Address]) {
        let members: Vec<Address> = self
            .groups
            .get(group)
            .into_iter()
            .flatten()
            .map(|&(nodeid, pid)| Address {
                nodeid,
                pid,
                reason: 0,
            })
            .collect();
        let mut buf = Vec::new();
        let k = EventMsg::Confchg {
            group,
            members,
            left: left.to_vec(),
            joined: joined.to_vec(),
        }
        .encode(&mut buf);
        for &conn in self.receivers.get(group).into_iter().flatten() {
            ctx.event(conn, service::CPG, k, &[&buf]);
        }
    }

    fn totem_confchg(&self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let mut buf = Vec::new();
        let k = EventMsg::TotemConfchg {
            ring_rep: self.last_ring.rep,
            ring_seq: self.last_ring.seq,
            members: self.last_members.clone(),
        }
        .encode(&mut buf);
        ctx.event(conn, service::CPG, k, &[&buf]);
    }

    /// The local connection(s) that sent a join or leave for `(pid, group)`.
    fn local_conns(&self, pid: u32, group: &[u8], state: JoinState) -> Vec<ConnId> {
        self.conns
            .iter()
            .filter(|(_, c)| c.pid == pid && c.group == group && c.state == state)
            .map(|(&id, _)| id)
            .collect()
    }

    fn apply_join(&mut self, ctx: &mut Ctx<'_>, group: &[u8], node: NodeId, pid: u32) {
        let size = self.groups.get(group).map(BTreeSet::len);
        if self
            .groups
            .get(group)
            .is_some_and(|s| s.contains(&(node, pid)))
        {
            ctx.count_dropped();
            return;
        }
        let full = match size {
            Some(n) => n >= MAX_MEMBERS,
            None => self.groups.len() >= self.max_groups,
        };
        if full {
            // Refused identically on every node; a local joiner learns it
            // by losing its connection rather than waiting forever.
            ctx.count_dropped();
            if node == self.local {
                for conn in self.local_conns(pid, group, JoinState::JoinStarted) {
                    self.set_state(conn, JoinState::Unjoined);
                    ctx.disconnect(conn, "cpg group full");
                }
            }
            return;
        }
        self.groups
            .entry(group.to_vec())
            .or_default()
            .insert((node, pid));
        let completed = if node == self.local {
            self.local_conns(pid, group, JoinState::JoinStarted)
        } else {
            Vec::new()
        };
        for &conn in &completed {
            self.set_state(conn, JoinState::Joined);
        }
        let who = Address {
            nodeid: node,
            pid,
            reason: reason::JOIN,
        };
        self.notify(ctx, group, &[], &[who]);
        // Then, once per connection that asked for it, the membership of
        // the ring its join was made in.
        for conn in completed {
            let wants = self.conns.get_mut(&conn).is_some_and(|c| {
                let wants = c.model == model::V1
                    && c.flags & model::V1_DELIVER_INITIAL_TOTEM_CONF != 0
                    && !c.initial_totem_sent;
                c.initial_totem_sent |= wants;
                wants
            });
            if wants {
                self.totem_confchg(ctx, conn);
            }
        }
    }

    fn apply_leave(&mut self, ctx: &mut Ctx<'_>, group: &[u8], node: NodeId, pid: u32, why: u32) {
        let Some(set) = self.groups.get_mut(group) else {
            ctx.count_dropped();
            return;
        };
        if !set.remove(&(node, pid)) {
            ctx.count_dropped();
            return;
        }
        let who = Address {
            nodeid: node,
            pid,
            reason: why,
        };
        self.notify(ctx, group, &[who], &[]);
        if self.groups.get(group).is_some_and(BTreeSet::is_empty) {
            self.groups.remove(group);
        }
        if node == self.local {
            for conn in self.local_conns(pid, group, JoinState::LeaveStarted) {
                self.set_state(conn, JoinState::Unjoined);
            }
        }
    }

    /// Hands a message to the group's local members.
    fn deliver_mcast(
        &mut self,
        ctx: &mut Ctx<'_>,
        group: &[u8],
        node: NodeId,
        pid: u32,
        msg: &[u8],
    ) {
        if !self.route_cached(group, node, pid) && !self.set_route(ctx, group, node, pid) {
            return;
        }
        let r = self.route.as_ref().expect("set above");
        for &conn in &r.receivers {
            ctx.event(conn, service::CPG, kind::DELIVER, &[&r.header, msg]);
        }
    }

    /// `deliver_mcast` of a message given as its pieces, in order.
    fn deliver_mcast_parts(
        &mut self,
        ctx: &mut Ctx<'_>,
        group: &[u8],
        node: NodeId,
        pid: u32,
        msg: &[&[u8]],
    ) {
        if !self.route_cached(group, node, pid) && !self.set_route(ctx, group, node, pid) {
            return;
        }
        let r = self.route.as_ref().expect("set above");
        let mut parts = Vec::with_capacity(msg.len() + 1);
        parts.push(&r.header[..]);
        parts.extend_from_slice(msg);
        for &conn in &r.receivers {
            ctx.event(conn, service::CPG, kind::DELIVER, &parts);
        }
    }

    /// A piece of a message sent in pieces, to the same receivers as a
    /// whole one: the event carries the route's header, the piece's type
    /// and the total length, then the piece.
    fn deliver_partial(
        &mut self,
        ctx: &mut Ctx<'_>,
        group: &[u8],
        node: NodeId,
        pid: u32,
        (part, total): (u32, u32),
        msg: &[&[u8]],
    ) {
        if !self.route_cached(group, node, pid) && !self.set_route(ctx, group, node, pid) {
            return;
        }
        let r = self.route.as_ref().expect("set above");
        let mut piece = [0u8; 8];
        piece[..4].copy_from_slice(&part.to_le_bytes());
        piece[4..].copy_from_slice(&total.to_le_bytes());
        let mut parts = Vec::with_capacity(msg.len() + 2);
        parts.push(&r.header[..]);
        parts.push(&piece[..]);
        parts.extend_from_slice(msg);
        for &conn in &r.receivers {
            ctx.event(conn, service::CPG, kind::PARTIAL_DELIVER, &parts);
        }
    }

    /// Whether `route` is the one for `node`/`pid`'s messages to `group`.
    fn route_cached(&self, group: &[u8], node: NodeId, pid: u32) -> bool {
        self.route
            .as_ref()
            .is_some_and(|r| r.node == node && r.pid == pid && r.group == group)
    }

    /// Sets `route` to who receives `node`/`pid`'s messages to `group` here
    /// and the event header they get; false (counted as dropped) for a
    /// sender that is not a member.
    #[cold]
    fn set_route(&mut self, ctx: &mut Ctx<'_>, group: &[u8], node: NodeId, pid: u32) -> bool {
        let known = self.synced.contains(&node)
            && self
                .groups
                .get(group)
                .is_some_and(|s| s.contains(&(node, pid)));
        if !known {
            ctx.count_dropped();
            return false;
        }
        let mut r = self.route.take().unwrap_or(Route {
            group: Vec::new(),
            node,
            pid,
            header: Vec::new(),
            receivers: Vec::new(),
        });
        r.group.clear();
        r.group.extend_from_slice(group);
        (r.node, r.pid) = (node, pid);
        r.header.clear();
        Writer(&mut r.header).bytes(group).u32(node).u32(pid);
        r.receivers.clear();
        r.receivers
            .extend(self.receivers.get(group).into_iter().flatten().copied());
        self.route = Some(r);
        true
    }

    /// A join or leave from a node outside `synced`: only its pending join
    /// list (if already delivered) changes.
    fn pend(&mut self, node: NodeId, group: &[u8], pid: u32, join: bool) {
        let cap = self.max_pending();
        if let Some(list) = self.sync.as_mut().and_then(|p| p.lists.get_mut(&node)) {
            if join {
                if list.len() < cap {
                    list.insert((group.to_vec(), pid));
                }
            } else {
                list.remove(&(group.to_vec(), pid));
            }
        }
    }

    fn on_joinlist(&mut self, sender: NodeId, ring: RingId, first: bool, entries: &[(&[u8], u32)]) {
        if sender == self.local || self.synced.contains(&sender) {
            return;
        }
        let cap = self.max_pending();
        let Some(p) = self.sync.as_mut() else {
            return;
        };
        if p.ring != ring || !p.members.contains(&sender) {
            return;
        }
        if first {
            p.lists.insert(sender, BTreeSet::new());
        }
        if let Some(list) = p.lists.get_mut(&sender) {
            // Past what activation could take anyway, nothing more is kept
            // (a member repeating its list until the round ends cannot
            // grow it without end).
            for &(g, pid) in entries {
                if list.len() >= cap {
                    break;
                }
                list.insert((g.to_vec(), pid));
            }
        }
    }

    /// The most processes a node's pending join list holds: every group
    /// full of its processes, the most `nodes_up` could activate.
    fn max_pending(&self) -> usize {
        self.max_groups.saturating_mul(MAX_MEMBERS)
    }

    /// Processes of nodes that left (regular configuration): NODEDOWN.
    fn nodes_down(&mut self, ctx: &mut Ctx<'_>, gone: &BTreeSet<NodeId>) {
        if gone.is_empty() {
            return;
        }
        let names: Vec<Group> = self.groups.keys().cloned().collect();
        for g in names {
            let set = self.groups.get_mut(&g).expect("listed above");
            let left: Vec<Address> = set
                .iter()
                .filter(|(n, _)| gone.contains(n))
                .map(|&(nodeid, pid)| Address {
                    nodeid,
                    pid,
                    reason: reason::NODEDOWN,
                })
                .collect();
            if left.is_empty() {
                continue;
            }
            set.retain(|(n, _)| !gone.contains(n));
            self.notify(ctx, &g, &left, &[]);
            if self.groups.get(&g).is_some_and(BTreeSet::is_empty) {
                self.groups.remove(&g);
            }
        }
    }

    /// Adds the processes of the nodes that joined (from their join
    /// lists): NODEUP, one CONFCHG per group.
    fn nodes_up(&mut self, ctx: &mut Ctx<'_>, lists: BTreeMap<NodeId, BTreeSet<(Group, u32)>>) {
        let mut add: BTreeMap<Group, Vec<Member>> = BTreeMap::new();
        for (node, list) in lists {
            for (g, pid) in list {
                add.entry(g).or_default().push((node, pid));
            }
        }
        for (g, mut new) in add {
            new.sort_unstable();
            if !self.groups.contains_key(&g) && self.groups.len() >= self.max_groups {
                ctx.count_dropped();
                continue;
            }
            let set = self.groups.entry(g.clone()).or_default();
            let mut joined = Vec::new();
            for m in new {
                if set.len() >= MAX_MEMBERS {
                    ctx.count_dropped();
                    break;
                }
                if set.insert(m) {
                    joined.push(Address {
                        nodeid: m.0,
                        pid: m.1,
                        reason: reason::NODEUP,
                    });
                }
            }
            if joined.is_empty() {
                if self.groups.get(&g).is_some_and(BTreeSet::is_empty) {
                    self.groups.remove(&g);
                }
                continue;
            }
            self.notify(ctx, &g, &[], &joined);
        }
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        creds: Creds,
        req: Request<'_>,
    ) -> Result<Vec<u8>, CsError> {
        if let Request::Init { model, flags } = req {
            return self.init(ctx, conn, creds, model, flags);
        }
        if !self.conns.contains_key(&conn) {
            return Err(CsError::BadHandle);
        }
        let mut body = Vec::new();
        match req {
            Request::Init { .. } => unreachable!("handled above"),
            Request::Join { group } => self.join(ctx, conn, group)?,
            Request::Leave { group } => self.leave(ctx, conn, group)?,
            Request::Mcast { guarantee, msg } => self.mcast(ctx, conn, guarantee, msg)?,
            Request::McastAsync { .. } | Request::McastPartialAsync { .. } => {
                unreachable!("handled in lib_request")
            }
            Request::Finalize => self.finalize(ctx, conn),
            Request::MembershipGet { group } => {
                let members: Vec<Address> = self
                    .groups
                    .get(group)
                    .into_iter()
                    .flatten()
                    .map(|&(nodeid, pid)| Address {
                        nodeid,
                        pid,
                        reason: 0,
                    })
                    .collect();
                encode_membership(&mut body, &members);
            }
            Request::LocalGet => {
                Writer(&mut body).u32(self.local);
            }
            Request::Iteration { kind, group } => {
                let entries = self.iterate(kind, group)?;
                encode_iteration(&mut body, &entries);
            }
            Request::MaxAtomicMsgsize => {
                let max = ctx.env.max_message - MCAST_OVERHEAD;
                Writer(&mut body).u32(u32::try_from(max).unwrap_or(u32::MAX));
            }
            Request::FlowControlState => {
                let on = ctx.env.syncing || ctx.congested();
                Writer(&mut body).u32(if on { flow::ENABLED } else { flow::DISABLED });
            }
        }
        Ok(body)
    }

    fn init(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        creds: Creds,
        m: u32,
        flags: u32,
    ) -> Result<Vec<u8>, CsError> {
        if self.conns.contains_key(&conn) {
            return Err(CsError::Exist);
        }
        if m != 0 && m != model::V1 {
            return Err(CsError::InvalidParam);
        }
        self.conns.insert(
            conn,
            Conn {
                pid: creds.pid,
                model: m,
                flags,
                state: JoinState::Unjoined,
                group: Vec::new(),
                initial_totem_sent: false,
            },
        );
        let _ = ctx;
        Ok(Vec::new())
    }

    fn join(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, group: &[u8]) -> Result<(), CsError> {
        if group.is_empty() {
            return Err(CsError::InvalidParam);
        }
        let c = &self.conns[&conn];
        match c.state {
            JoinState::Unjoined => {}
            JoinState::LeaveStarted => return Err(CsError::Busy),
            JoinState::JoinStarted | JoinState::Joined => return Err(CsError::Exist),
        }
        let pid = c.pid;
        let same_pid = self
            .conns
            .values()
            .any(|o| o.pid == pid && o.group == group && o.state != JoinState::Unjoined);
        if same_pid {
            return Err(CsError::Exist);
        }
        let members = self.groups.get(group);
        if members.is_some_and(|s| s.contains(&(self.local, pid))) {
            return Err(CsError::TryAgain);
        }
        match members {
            Some(s) if s.len() >= MAX_MEMBERS => return Err(CsError::NoSpace),
            None if self.groups.len() >= self.max_groups => return Err(CsError::TooManyGroups),
            _ => {}
        }
        ctx.admit()?;
        if let Some(c) = self.conns.get_mut(&conn) {
            c.group = group.to_vec();
        }
        self.set_state(conn, JoinState::JoinStarted);
        send_joinleave(ctx, exec_kind::PROCJOIN, group, pid, reason::JOIN);
        Ok(())
    }

    fn leave(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, group: &[u8]) -> Result<(), CsError> {
        let c = &self.conns[&conn];
        match c.state {
            JoinState::Unjoined | JoinState::LeaveStarted => return Err(CsError::NotExist),
            JoinState::JoinStarted => return Err(CsError::Busy),
            JoinState::Joined if c.group != group => return Err(CsError::NotExist),
            JoinState::Joined => {}
        }
        ctx.admit()?;
        let (pid, g) = (c.pid, c.group.clone());
        self.set_state(conn, JoinState::LeaveStarted);
        send_joinleave(ctx, exec_kind::PROCLEAVE, &g, pid, reason::LEAVE);
        Ok(())
    }

    fn mcast(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        g: u32,
        msg: &[u8],
    ) -> Result<(), CsError> {
        let c = &self.conns[&conn];
        if !matches!(c.state, JoinState::JoinStarted | JoinState::Joined) {
            return Err(CsError::NotExist);
        }
        if msg.len() > ctx.env.max_message - MCAST_OVERHEAD {
            return Err(CsError::TooBig);
        }
        ctx.admit()?;
        self.send_mcast(ctx, conn, g, msg);
        Ok(())
    }

    /// Multicasts a member connection's message (checked by the caller).
    fn send_mcast(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, g: u32, msg: &[u8]) {
        let c = &self.conns[&conn];
        let totem = if g == guarantee::SAFE {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        self.scratch.clear();
        Writer(&mut self.scratch).bytes(&c.group).u32(c.pid);
        ctx.multicast(service::CPG, exec_kind::MCAST, totem, &[&self.scratch, msg]);
    }

    /// MCAST_ASYNC: no response. Admission is the runtime's (it reads no
    /// requests while the engine is congested), so a member's message is
    /// sent whatever the queue level; anything else is a client bug,
    /// counted in `bad_requests`, which the daemon logs (rate-limited).
    fn mcast_async(&mut self, ctx: &mut Ctx<'_>, conn: ConnId, g: u32, msg: &[u8]) {
        let member = self
            .conns
            .get(&conn)
            .is_some_and(|c| matches!(c.state, JoinState::JoinStarted | JoinState::Joined));
        if member && msg.len() <= ctx.env.max_message - MCAST_OVERHEAD {
            self.send_mcast(ctx, conn, g, msg);
        } else {
            ctx.stats.bad_requests += 1;
        }
    }

    /// MCAST_PARTIAL_ASYNC: one piece of a message longer than the atomic
    /// limit, multicast as it came (the client sends them in order and
    /// Totem keeps a sender's order); checked as MCAST_ASYNC is.
    fn mcast_partial_async(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        g: u32,
        part: u32,
        total: u32,
        msg: &[u8],
    ) {
        let Some(c) = self.conns.get(&conn) else {
            ctx.stats.bad_requests += 1;
            return;
        };
        let member = matches!(c.state, JoinState::JoinStarted | JoinState::Joined);
        if !member || msg.len() > ctx.env.max_message - MCAST_OVERHEAD - 8 {
            ctx.stats.bad_requests += 1;
            return;
        }
        let totem = if g == guarantee::SAFE {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        self.scratch.clear();
        Writer(&mut self.scratch)
            .bytes(&c.group)
            .u32(c.pid)
            .u32(part)
            .u32(total);
        ctx.multicast(
            service::CPG,
            exec_kind::PARTIAL,
            totem,
            &[&self.scratch, msg],
        );
    }

    /// Leaves (PROCDOWN) and forgets the connection; used by FINALIZE and
    /// disconnect.
    fn finalize(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let Some(c) = self.conns.get(&conn) else {
            return;
        };
        if matches!(c.state, JoinState::JoinStarted | JoinState::Joined) {
            let (g, pid) = (c.group.clone(), c.pid);
            send_joinleave(ctx, exec_kind::PROCLEAVE, &g, pid, reason::PROCDOWN);
        }
        self.set_state(conn, JoinState::Unjoined);
        self.conns.remove(&conn);
    }

    fn iterate(&self, k: u32, group: &[u8]) -> Result<Vec<IterationEntry>, CsError> {
        let entry = |g: &Group, &(nodeid, pid): &Member| IterationEntry {
            group: g.clone(),
            nodeid,
            pid,
        };
        Ok(match k {
            iteration::NAME_ONLY => self
                .groups
                .keys()
                .map(|g| IterationEntry {
                    group: g.clone(),
                    nodeid: 0,
                    pid: 0,
                })
                .collect(),
            iteration::ONE_GROUP => {
                let g = group.to_vec();
                self.groups
                    .get(group)
                    .into_iter()
                    .flatten()
                    .map(|m| entry(&g, m))
                    .collect()
            }
            iteration::ALL => self
                .groups
                .iter()
                .flat_map(|(g, s)| s.iter().map(move |m| entry(g, m)))
                .collect(),
            _ => return Err(CsError::InvalidParam),
        })
    }

    fn send_joinlist(&mut self, ctx: &mut Ctx<'_>) {
        let Some(ring) = self.sync.as_ref().map(|p| p.ring) else {
            return;
        };
        let entries: BTreeSet<(&[u8], u32)> = self
            .conns
            .values()
            .filter(|c| matches!(c.state, JoinState::JoinStarted | JoinState::Joined))
            .map(|c| (c.group.as_slice(), c.pid))
            .collect();
        let entries: Vec<_> = entries.into_iter().collect();
        // One chunk per message; all chunks go out in this call so no join
        // or leave of ours can fall between them.
        let room = ctx.env.max_message - wire::HEADER_LEN - 17;
        let per_chunk = (room / (8 + MAX_NAME)).max(1);
        let mut first = true;
        let mut chunks = entries.chunks(per_chunk);
        loop {
            let chunk = chunks.next().unwrap_or(&[]);
            let mut buf = Vec::new();
            let mut w = Writer(&mut buf);
            put_ring(&mut w, ring);
            w.u8(u8::from(first)).u32(chunk.len() as u32);
            for (g, pid) in chunk {
                w.bytes(g).u32(*pid);
            }
            ctx.multicast(
                service::CPG,
                exec_kind::JOINLIST,
                Guarantee::Agreed,
                &[&buf],
            );
            first = false;
            if chunks.len() == 0 {
                break;
            }
        }
    }
}

fn send_joinleave(ctx: &mut Ctx<'_>, k: u16, group: &[u8], pid: u32, why: u32) {
    let mut buf = Vec::with_capacity(12 + group.len());
    Writer(&mut buf).bytes(group).u32(pid).u32(why);
    ctx.multicast(service::CPG, k, Guarantee::Agreed, &[&buf]);
}

impl Service for Cpg {
    fn id(&self) -> u16 {
        service::CPG
    }

    fn name(&self) -> &'static str {
        "cpg"
    }

    fn needs_first_sync(&self, k: u16) -> bool {
        k == kind::INIT
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        // Corosync answers an over-long name with NAME_TOO_LONG; the shared
        // decoder refuses it, so look at the length first.
        if to.kind == kind::JOIN {
            if let Ok(n) = Reader(payload).u32("group name") {
                if n as usize > MAX_NAME {
                    ctx.stats.bad_requests += 1;
                    ctx.respond(conn, to, CsError::NameTooLong, &[]);
                    return;
                }
            }
        }
        let req = match Request::decode(to.kind, payload) {
            Ok(r) => r,
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
                return;
            }
        };
        if let Request::McastAsync { guarantee, msg } = req {
            self.mcast_async(ctx, conn, guarantee, msg);
            return;
        }
        if let Request::McastPartialAsync {
            guarantee,
            part,
            total,
            msg,
        } = req
        {
            self.mcast_partial_async(ctx, conn, guarantee, part, total, msg);
            return;
        }
        self.route = None;
        match self.request(ctx, conn, creds, req) {
            Ok(body) => ctx.respond(conn, to, CsError::Ok, &[&body]),
            Err(e) => ctx.respond(conn, to, e, &[]),
        }
    }

    fn lib_disconnect(&mut self, ctx: &mut Ctx<'_>, conn: ConnId) {
        self.route = None;
        self.finalize(ctx, conn);
    }

    fn exec_deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        _guarantee: Guarantee,
        k: u16,
        body: &[u8],
    ) -> Result<(), DecodeError> {
        let exec = Exec::decode(k, body)?;
        if !matches!(exec, Exec::Mcast { .. } | Exec::Partial { .. }) {
            self.route = None;
        }
        let live = |c: &Cpg| c.synced.contains(&sender);
        match exec {
            Exec::ProcJoin { group, pid } if live(self) => self.apply_join(ctx, group, sender, pid),
            Exec::ProcJoin { group, pid } => self.pend(sender, group, pid, true),
            Exec::ProcLeave { group, pid, reason } if live(self) => {
                self.apply_leave(ctx, group, sender, pid, reason)
            }
            Exec::ProcLeave { group, pid, .. } => self.pend(sender, group, pid, false),
            Exec::Mcast { group, pid, msg } => self.deliver_mcast(ctx, group, sender, pid, msg),
            Exec::Partial {
                group,
                pid,
                part,
                total,
                msg,
            } => self.deliver_partial(ctx, group, sender, pid, (part, total), &[msg]),
            Exec::JoinList {
                ring,
                first,
                entries,
            } => self.on_joinlist(sender, ring, first, &entries),
        }
        Ok(())
    }

    /// A multicast in pieces goes to the members' event rings as it lies
    /// (Totem's store): only its header is read here.
    fn exec_deliver_parts(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        guarantee: Guarantee,
        k: u16,
        head: &[u8],
        rest: &[&[u8]],
    ) -> Result<(), DecodeError> {
        if k == exec_kind::PARTIAL {
            let mut r = Reader(head);
            let (group, pid, part, total) = get_partial_head(&mut r)?;
            let first = r.rest();
            let len = first.len() + rest.iter().map(|p| p.len()).sum::<usize>();
            crate::proto::cpg::check_partial(part, total, len)?;
            let mut msg: Vec<&[u8]> = Vec::with_capacity(rest.len() + 1);
            if !first.is_empty() {
                msg.push(first);
            }
            msg.extend_from_slice(rest);
            self.deliver_partial(ctx, group, sender, pid, (part, total), &msg);
            return Ok(());
        }
        if k != exec_kind::MCAST {
            return self.exec_deliver(
                ctx,
                sender,
                guarantee,
                k,
                &crate::service::gather(head, rest),
            );
        }
        let mut r = Reader(head);
        let group = get_name(&mut r)?;
        let pid = r.u32("pid")?;
        let first = r.rest();
        let mut msg: Vec<&[u8]> = Vec::with_capacity(rest.len() + 1);
        if !first.is_empty() {
            msg.push(first);
        }
        msg.extend_from_slice(rest);
        self.deliver_mcast_parts(ctx, group, sender, pid, &msg);
        Ok(())
    }

    fn confchg(&mut self, ctx: &mut Ctx<'_>, change: &ConfChange<'_>) {
        self.route = None;
        match change.kind {
            ConfigKind::Transitional => self.trans = Some(change.members.to_vec()),
            ConfigKind::Regular => {
                let trans = self.trans.take().unwrap_or_else(|| vec![self.local]);
                let gone: BTreeSet<NodeId> = self
                    .synced
                    .iter()
                    .copied()
                    .filter(|n| *n != self.local && !trans.contains(n))
                    .collect();
                self.synced.retain(|n| !gone.contains(n));
                self.nodes_down(ctx, &gone);
            }
        }
    }

    fn syncs(&self) -> bool {
        true
    }

    fn sync_init(&mut self, _ctx: &mut Ctx<'_>, round: &SyncRound) {
        self.route = None;
        self.sync = Some(Pending {
            ring: round.ring,
            members: round.members.clone(),
            lists: BTreeMap::new(),
        });
    }

    fn sync_process(&mut self, ctx: &mut Ctx<'_>) -> SyncProgress {
        self.route = None;
        self.send_joinlist(ctx);
        SyncProgress::Done
    }

    fn sync_activate(&mut self, ctx: &mut Ctx<'_>) {
        self.route = None;
        let Some(p) = self.sync.take() else {
            return;
        };
        self.nodes_up(ctx, p.lists);
        self.synced = p.members.iter().copied().collect();
        self.synced.insert(self.local);
        self.last_ring = p.ring;
        self.last_members = p.members;
        let v1: Vec<ConnId> = self
            .conns
            .iter_mut()
            .filter(|(_, c)| c.model == model::V1)
            .map(|(&id, c)| {
                // A connection told of a ring needs no initial one after
                // its join (it would name the same ring again).
                c.initial_totem_sent = true;
                id
            })
            .collect();
        for conn in v1 {
            self.totem_confchg(ctx, conn);
        }
    }

    fn sync_abort(&mut self, _ctx: &mut Ctx<'_>) {
        self.route = None;
        self.sync = None;
    }

    fn add_stats(&self, s: &mut crate::EngineStats) {
        s.cpg_connections = self.conns.len() as u64;
        s.cpg_groups = self.groups.len() as u64;
        s.cpg_members = self.groups.values().map(|g| g.len() as u64).sum();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_pending_join_list_is_bounded() {
        // Two groups of at most MAX_MEMBERS processes each: a node that is
        // not yet synced can bring at most 2 × MAX_MEMBERS, however many
        // join lists and joins it sends before its barrier.
        let mut cpg = Cpg::new(1, 2);
        let ring = RingId { rep: 1, seq: 8 };
        cpg.sync = Some(Pending {
            ring,
            members: vec![1, 2],
            lists: BTreeMap::new(),
        });
        let names: Vec<Vec<u8>> = (0..10u32).map(|g| format!("g{g}").into_bytes()).collect();
        let mut first = true;
        for round in 0..100u32 {
            let entries: Vec<(&[u8], u32)> = names.iter().map(|n| (n.as_slice(), round)).collect();
            cpg.on_joinlist(2, ring, first, &entries);
            first = false;
            cpg.pend(2, b"extra", 100_000 + round, true);
        }
        let list = &cpg.sync.as_ref().unwrap().lists[&2];
        assert_eq!(list.len(), 2 * MAX_MEMBERS);
    }
}
