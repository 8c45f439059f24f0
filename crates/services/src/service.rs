//! The contract every service implements, and the context it acts through.
//!
//! A service has four kinds of handlers, as in Corosync's service engine:
//!
//! * library handlers ([`Service::lib_request`], [`Service::lib_disconnect`]):
//!   client requests on a connection; the node local to the client replies;
//! * executive handlers ([`Service::exec_deliver`]): multicasts delivered
//!   by Totem in total order, applied identically on every node;
//! * a configuration-change hook ([`Service::confchg`]), transitional then
//!   regular, exactly as Totem reports them;
//! * sync hooks ([`Service::sync_init`], [`Service::sync_process`],
//!   [`Service::sync_activate`], [`Service::sync_abort`]) that rebuild the
//!   replicated state after a membership change (see `engine.rs` for the
//!   round itself).

use std::collections::BTreeSet;

use crate::cmap::Keys;
use crate::engine::{EngineStats, Timers};
use crate::proto::cmap::Value;
use crate::proto::{CsError, DecodeError};
use crate::wire;
use crate::{ConfigKind, ConnId, Guarantee, Instant, NodeId, Output, ReplyTo, RingId};

/// Peer credentials of a connection (from `SO_PEERCRED`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Creds {
    pub pid: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What every service may read: the node, the ring and the sync state.
#[derive(Clone, Debug)]
pub struct Env {
    pub local: NodeId,
    /// The current ring (last regular configuration) and its members.
    pub ring: RingId,
    pub members: Vec<NodeId>,
    /// A sync round is running, or a transitional configuration was seen
    /// and the next regular one has not completed its sync yet.
    pub syncing: bool,
    /// The first sync after start-up has completed.
    pub synced_once: bool,
    /// Largest Totem payload the engine may multicast.
    pub max_message: usize,
    /// Most client connections per service.
    pub max_connections: usize,
    /// The runtime's clock as of the current input (see
    /// [`crate::Engine::handle_timeout`]).
    pub now: Instant,
    /// How many [`crate::Control::ReloadConfig`] requests the configuration
    /// last given to [`crate::Engine::config_reloaded`] was read after.
    pub reloads_read: u64,
}

/// A configuration change as Totem reported it.
#[derive(Clone, Copy, Debug)]
pub struct ConfChange<'a> {
    pub kind: ConfigKind,
    pub members: &'a [NodeId],
    pub left: &'a [NodeId],
    pub joined: &'a [NodeId],
    pub ring: RingId,
}

/// The sync round a service is asked to take part in.
#[derive(Clone, Debug)]
pub struct SyncRound {
    pub ring: RingId,
    /// Members of the new ring (all must pass every barrier).
    pub members: Vec<NodeId>,
    /// Members of the last transitional configuration before this ring
    /// (the nodes that came along from this node's previous ring); equal
    /// to `[local]` on the first ring after start-up.
    pub trans: Vec<NodeId>,
}

/// Whether `sync_process` has sent everything it has to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncProgress {
    Done,
    /// Call again later (the engine calls again when Totem's queue has
    /// room, at the latest on the next delivery).
    More,
}

/// The context a handler acts through: read the environment, multicast,
/// respond, push events.
pub struct Ctx<'a> {
    pub(crate) out: &'a mut dyn Output,
    pub env: &'a Env,
    pub(crate) stats: &'a mut EngineStats,
    pub(crate) dying: &'a mut BTreeSet<ConnId>,
    pub(crate) timers: &'a mut Timers,
}

impl Ctx<'_> {
    /// Multicasts `[service, kind] ++ parts` (at most 4 parts).
    pub fn multicast(&mut self, service: u16, kind: u16, guarantee: Guarantee, parts: &[&[u8]]) {
        let hdr = wire::header(service, kind);
        let mut all: [&[u8]; 5] = [&[]; 5];
        all[0] = &hdr;
        let n = parts.len().min(4);
        assert_eq!(n, parts.len(), "at most 4 parts per multicast");
        all[1..=n].copy_from_slice(&parts[..n]);
        self.out.multicast(guarantee, &all[..=n]);
    }

    /// Responds with `err` then `body` (at most 3 parts).
    pub fn respond(&mut self, conn: ConnId, to: ReplyTo, err: CsError, body: &[&[u8]]) {
        let code = err.code().to_le_bytes();
        let mut all: [&[u8]; 4] = [&[]; 4];
        all[0] = &code;
        let n = body.len().min(3);
        assert_eq!(n, body.len(), "at most 3 body parts per response");
        all[1..=n].copy_from_slice(&body[..n]);
        if err == CsError::TryAgain {
            self.stats.try_again += 1;
        }
        self.out.respond(conn, to, &all[..=n]);
    }

    /// Pushes an event; false (and nothing sent) when the connection is
    /// disconnecting.
    pub fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool {
        if self.dying.contains(&conn) {
            return false;
        }
        if self.out.event(conn, service, kind, parts) {
            self.stats.events += 1;
            true
        } else {
            self.stats.events_refused += 1;
            self.dying.insert(conn);
            false
        }
    }

    /// Asks the runtime to drop a connection.
    pub fn disconnect(&mut self, conn: ConnId, why: &'static str) {
        if self.dying.insert(conn) {
            self.out.disconnect(conn, why);
        }
    }

    /// Whether the connection is on its way out (no more events).
    pub fn is_dying(&self, conn: ConnId) -> bool {
        self.dying.contains(&conn)
    }

    /// Totem's queue is at least 75% full.
    pub fn congested(&self) -> bool {
        self.out.send_room().congested()
    }

    /// Admission of new client traffic into Totem: TRY_AGAIN during sync
    /// or while the queue is ≥ 75% full, so a request is either accepted
    /// (and will be delivered) or refused — never accepted then dropped.
    pub fn admit(&self) -> Result<(), CsError> {
        if self.env.syncing || self.congested() {
            Err(CsError::TryAgain)
        } else {
            Ok(())
        }
    }

    /// The runtime's clock as of the current input.
    pub fn now(&self) -> Instant {
        self.env.now
    }

    /// Arms (or re-arms) timer `id` of `service` to fire at `at`: the
    /// engine calls that service's [`Service::timer`] once the runtime's
    /// clock reaches it. Effects on replicated state must be multicast
    /// from there, so they are ordered like everything else.
    pub fn set_timer(&mut self, service: u16, id: u32, at: Instant) {
        self.timers.insert((service, id), at);
    }

    /// Disarms timer `id` of `service` (harmless when not armed).
    pub fn cancel_timer(&mut self, service: u16, id: u32) {
        self.timers.remove(&(service, id));
    }

    /// Counts a delivered message some sender had no right to send (e.g.
    /// data from a process this node does not know): dropped, not malformed.
    pub fn count_dropped(&mut self) {
        self.stats.dropped += 1;
    }
}

/// `head` and then `rest`, in one buffer.
pub(crate) fn gather(head: &[u8], rest: &[&[u8]]) -> Vec<u8> {
    let mut v = Vec::with_capacity(head.len() + rest.iter().map(|p| p.len()).sum::<usize>());
    v.extend_from_slice(head);
    for p in rest {
        v.extend_from_slice(p);
    }
    v
}

/// Bytes of a message delivered in pieces that the engine gathers before
/// handing the rest on where it lies (`Service::exec_deliver_parts`):
/// enough for every service's executive header (CPG's: a group name of up
/// to 128 bytes with its length, and a pid).
pub const DELIVER_HEAD: usize = 256;

/// One service (EVS, CPG, and the AIS services to come).
pub trait Service {
    /// Service id (`proto::service::*`), also the Totem message prefix.
    fn id(&self) -> u16;
    fn name(&self) -> &'static str;

    /// Whether a request of `kind` is refused with TRY_AGAIN before the
    /// first sync has completed.
    fn needs_first_sync(&self, kind: u16) -> bool;

    /// A client request. Must answer exactly once through `ctx.respond`
    /// (the engine answers decode failures itself only when asked to).
    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    );

    /// The connection is gone (exactly once per connection that the
    /// service may know; unknown connections are ignored).
    fn lib_disconnect(&mut self, ctx: &mut Ctx<'_>, conn: ConnId);

    /// A delivered executive message of this service. `Err` = malformed
    /// (counted and dropped by the engine; the service must not have
    /// changed state).
    fn exec_deliver(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        guarantee: Guarantee,
        kind: u16,
        body: &[u8],
    ) -> Result<(), DecodeError>;

    /// `exec_deliver` of a message that arrives in pieces (Totem's delivery
    /// of a fragmented message where it lies): the engine gathers the
    /// message's first [`DELIVER_HEAD`] bytes (all of it if shorter); `head`
    /// is what follows the service header in them and `rest` the pieces
    /// after them, in order. The default copies both into one buffer; a
    /// service that passes its payload on can take the pieces as they are.
    fn exec_deliver_parts(
        &mut self,
        ctx: &mut Ctx<'_>,
        sender: NodeId,
        guarantee: Guarantee,
        kind: u16,
        head: &[u8],
        rest: &[&[u8]],
    ) -> Result<(), DecodeError> {
        self.exec_deliver(ctx, sender, guarantee, kind, &gather(head, rest))
    }

    /// Every configuration change, transitional and regular, in order.
    fn confchg(&mut self, ctx: &mut Ctx<'_>, change: &ConfChange<'_>);

    /// Whether the service takes part in sync rounds (has replicated
    /// state). Services that don't are skipped, saving a barrier.
    fn syncs(&self) -> bool {
        false
    }

    /// The service's turn in a sync round begins.
    fn sync_init(&mut self, _ctx: &mut Ctx<'_>, _round: &SyncRound) {}

    /// Send this node's share of the state; called until `Done`, then the
    /// engine sends this service's barrier.
    fn sync_process(&mut self, _ctx: &mut Ctx<'_>) -> SyncProgress {
        SyncProgress::Done
    }

    /// Every member passed every barrier of the round: install the rebuilt
    /// state (called on all syncing services, in order, at the same point
    /// of the total order on every node).
    fn sync_activate(&mut self, _ctx: &mut Ctx<'_>) {}

    /// The round was cut short by a new configuration change: drop what
    /// was collected.
    fn sync_abort(&mut self, _ctx: &mut Ctx<'_>) {}

    /// Timer `id` this service armed with [`Ctx::set_timer`] expired (it is
    /// disarmed before the call). A late or extra call must be harmless.
    fn timer(&mut self, _ctx: &mut Ctx<'_>, _id: u32) {}

    /// Adds this service's numbers to the statistics.
    fn add_stats(&self, _stats: &mut EngineStats) {}

    /// A fresh statistics snapshot from the runtime (cmap's stats map).
    fn stats_snapshot(&mut self, _ctx: &mut Ctx<'_>, _keys: &[(String, Value)]) {}

    /// The configuration file was re-read: its keys, or why it could not be.
    fn config_reloaded(&mut self, _ctx: &mut Ctx<'_>, _keys: &Result<Keys, String>) {}
}
