//! EVS, extended virtual synchrony groups (service id 0), as Corosync's
//! `evs` service.
//!
//! A connection becomes an EVS connection with its first EVS request (our
//! IPC connect does not say which service it is for); it then gets a
//! CONFCHG with the current ring (as Corosync's `evs_lib_init_fn` sends),
//! and one on every regular configuration. Groups are 32-byte keys a
//! connection joins locally (no multicast: EVS groups are a delivery
//! filter, not a replicated membership); a message names groups and is
//! delivered to every EVS connection on every node that joined at least one
//! of them, sender included.
//!
//! Executive message (after the `u16 service, u16 kind` header):
//! `MCAST (0): u32 n | n × 32-byte group | message …`.
//!
//! Error codes: every request before the first sync: TRY_AGAIN; JOIN beyond
//! the per-connection cap: TOO_MANY_GROUPS; LEAVE of a group not joined:
//! NOT_EXIST (nothing is left); MCAST_*: TRY_AGAIN during sync or when
//! Totem's queue is ≥ 75% full, TOO_BIG when it does not fit one Totem
//! message. MCAST_JOINED with no group joined answers CS_OK and sends
//! nothing (Corosync multicasts a message that reaches no one).

use std::collections::{BTreeMap, BTreeSet};

use crate::cpg::decode_error_code;
use crate::proto::evs::{encode_membership, kind, EventMsg, Group, Request, GROUP_LEN, MAX_GROUPS};
use crate::proto::{service, CsError, DecodeError, Reader, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service};
use crate::wire;
use crate::{ConfigKind, ConnId, Guarantee, NodeId, ReplyTo};

/// Executive message kinds.
pub mod exec_kind {
    pub const MCAST: u16 = 0;
}

/// The EVS service.
pub struct Evs {
    max_groups: usize,
    conns: BTreeMap<ConnId, BTreeSet<Group>>,
    /// The connections that joined each group (the inverse of `conns`): a
    /// delivery looks up the groups its message names, not every
    /// connection's groups (up to 1024 groups a connection, a message).
    members_of: BTreeMap<Group, BTreeSet<ConnId>>,
    /// The last regular configuration.
    members: Vec<NodeId>,
    left: Vec<NodeId>,
    joined: Vec<NodeId>,
    scratch: Vec<u8>,
}

impl Evs {
    pub fn new(max_groups: usize) -> Evs {
        Evs {
            max_groups,
            conns: BTreeMap::new(),
            members_of: BTreeMap::new(),
            members: Vec::new(),
            left: Vec::new(),
            joined: Vec::new(),
            scratch: Vec::new(),
        }
    }

    fn confchg_event(&self, ctx: &mut Ctx<'_>, conn: ConnId) {
        let mut buf = Vec::new();
        let k = EventMsg::Confchg {
            members: self.members.clone(),
            left: self.left.clone(),
            joined: self.joined.clone(),
        }
        .encode(&mut buf);
        ctx.event(conn, service::EVS, k, &[&buf]);
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        req: Request<'_>,
    ) -> Result<Vec<u8>, CsError> {
        let mut body = Vec::new();
        match req {
            Request::Join { groups } => {
                let mine = self.conns.entry(conn).or_default();
                let new: BTreeSet<Group> =
                    groups.into_iter().filter(|g| !mine.contains(g)).collect();
                if mine.len() + new.len() > self.max_groups {
                    return Err(CsError::TooManyGroups);
                }
                for g in &new {
                    self.members_of.entry(*g).or_default().insert(conn);
                }
                mine.extend(new);
            }
            Request::Leave { groups } => {
                let mine = self.conns.entry(conn).or_default();
                if !groups.iter().all(|g| mine.contains(g)) {
                    return Err(CsError::NotExist);
                }
                for g in &groups {
                    mine.remove(g);
                }
                for g in &groups {
                    self.forget_member(g, conn);
                }
            }
            Request::McastJoined { guarantee, msg } => {
                let groups: Vec<Group> = self
                    .conns
                    .get(&conn)
                    .into_iter()
                    .flatten()
                    .copied()
                    .collect();
                self.mcast(ctx, guarantee, &groups, msg)?;
            }
            Request::McastGroups {
                guarantee,
                groups,
                msg,
            } => self.mcast(ctx, guarantee, &groups, msg)?,
            Request::MembershipGet => {
                encode_membership(&mut body, ctx.env.local, &ctx.env.members);
            }
        }
        Ok(body)
    }

    /// Takes `conn` out of `g`'s member index.
    fn forget_member(&mut self, g: &Group, conn: ConnId) {
        if let Some(conns) = self.members_of.get_mut(g) {
            conns.remove(&conn);
            if conns.is_empty() {
                self.members_of.remove(g);
            }
        }
    }

    fn mcast(
        &mut self,
        ctx: &mut Ctx<'_>,
        g: u32,
        groups: &[Group],
        msg: &[u8],
    ) -> Result<(), CsError> {
        let size = wire::HEADER_LEN + 4 + GROUP_LEN * groups.len() + msg.len();
        if size > ctx.env.max_message {
            return Err(CsError::TooBig);
        }
        ctx.admit()?;
        if groups.is_empty() {
            return Ok(());
        }
        let totem = if g == 3 {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        self.scratch.clear();
        let mut w = Writer(&mut self.scratch);
        w.u32(groups.len() as u32);
        for grp in groups {
            w.rest(grp);
        }
        ctx.multicast(service::EVS, exec_kind::MCAST, totem, &[&self.scratch, msg]);
        Ok(())
    }
}

impl Service for Evs {
    fn id(&self) -> u16 {
        service::EVS
    }

    fn name(&self) -> &'static str {
        "evs"
    }

    fn needs_first_sync(&self, _kind: u16) -> bool {
        true
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        let new = !self.conns.contains_key(&conn);
        if new {
            self.conns.insert(conn, BTreeSet::new());
        }
        match Request::decode(to.kind, payload) {
            Ok(req) => match self.request(ctx, conn, req) {
                Ok(body) => ctx.respond(conn, to, CsError::Ok, &[&body]),
                Err(e) => ctx.respond(conn, to, e, &[]),
            },
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
            }
        }
        if new {
            self.confchg_event(ctx, conn);
        }
    }

    fn lib_disconnect(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId) {
        for g in self.conns.remove(&conn).unwrap_or_default() {
            self.forget_member(&g, conn);
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
        if k != exec_kind::MCAST {
            return Err(DecodeError::UnknownKind(k));
        }
        let mut r = Reader(body);
        let n = r.count(GROUP_LEN, "groups")?;
        if n > MAX_GROUPS {
            return Err(DecodeError::Invalid("groups"));
        }
        let mut groups = Vec::with_capacity(n);
        for _ in 0..n {
            let mut g = [0u8; GROUP_LEN];
            for b in g.iter_mut() {
                *b = r.u8("group")?;
            }
            groups.push(g);
        }
        let msg = r.rest();
        let hdr = sender.to_le_bytes();
        // Each connection once, in connection order, however many of the
        // named groups it joined.
        let to: BTreeSet<ConnId> = groups
            .iter()
            .filter_map(|g| self.members_of.get(g))
            .flatten()
            .copied()
            .collect();
        for conn in to {
            ctx.event(conn, service::EVS, kind::DELIVER, &[&hdr, msg]);
        }
        Ok(())
    }

    fn confchg(&mut self, ctx: &mut Ctx<'_>, change: &ConfChange<'_>) {
        if change.kind != ConfigKind::Regular {
            return;
        }
        self.members = change.members.to_vec();
        self.left = change.left.to_vec();
        self.joined = change.joined.to_vec();
        let conns: Vec<ConnId> = self.conns.keys().copied().collect();
        for conn in conns {
            self.confchg_event(ctx, conn);
        }
    }

    fn add_stats(&self, s: &mut crate::EngineStats) {
        s.evs_connections = self.conns.len() as u64;
    }
}
