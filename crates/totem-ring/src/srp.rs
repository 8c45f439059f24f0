//! The Totem state machine: public API, token handling, sending (packing and
//! fragmentation), timers and outputs. Membership (gather, commit, recovery,
//! install) lives in `membership.rs`, ordered delivery in `deliver.rs`.

use std::collections::VecDeque;

use crate::store::{Insert, Store};
use crate::wire::{self, DecodeError, FragKind, McastHeader, PacketType, Token};
use crate::{
    seq, Config, ConfigError, ConfigKind, Destination, Event, Guarantee, Instant, MsgHandle,
    NodeId, QueueBounds, RingId, SubmitError, Transmit,
};

/// How long a receive-congested node holds a token it could add
/// nothing to (see `token_visit`).
const CONGESTION_HOLD_NS: u64 = 1_000_000;

/// Where a node stands in the membership protocol.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum MemberState {
    Gather,
    Commit,
    Recovery,
    Operational,
    /// Left the ring with [`Totem::leave`]; every input is ignored.
    Left,
}

/// Why a datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    Truncated = 0,
    BadMagic,
    BadVersion,
    BadType,
    Malformed,
    Oversized,
    /// Transport-level sender differs from the header's sender.
    Forged,
    /// For a ring this node is not operating on.
    ForeignRing,
    /// A token whose token_seq was already seen, or one not meant for us.
    StaleToken,
    /// Membership message that no longer applies.
    StaleMembership,
    /// Frame outside the store's window.
    OutOfWindow,
    /// A join whose processors would make a ring too large for a frame
    /// (`Config::max_ring_members`).
    TooManyMembers,
}

pub const DROP_REASONS: usize = 12;

impl From<DecodeError> for DropReason {
    fn from(e: DecodeError) -> Self {
        match e {
            DecodeError::Truncated => DropReason::Truncated,
            DecodeError::BadMagic => DropReason::BadMagic,
            DecodeError::BadVersion => DropReason::BadVersion,
            DecodeError::BadType => DropReason::BadType,
            DecodeError::Malformed => DropReason::Malformed,
            DecodeError::Oversized => DropReason::Oversized,
        }
    }
}

/// Counters of the core, for the statistics map.
#[derive(Clone, Debug, Default)]
pub struct Stats {
    pub drops_total: u64,
    pub drops: [u64; DROP_REASONS],
    pub datagrams_received: u64,
    pub tokens_received: u64,
    pub token_retransmits: u64,
    pub frames_sent: u64,
    pub frames_retransmitted: u64,
    pub frames_received: u64,
    pub duplicate_frames: u64,
    pub messages_delivered: u64,
    pub bytes_delivered: u64,
    pub config_changes: u64,
    pub token_lost: u64,
    pub failed_to_receive: u64,
    /// Messages dropped in a transitional configuration because an earlier
    /// frame they depend on was lost with a failed node.
    pub trans_discarded: u64,
    /// Held idle tokens visited again at once for our own new frames
    /// instead of forwarded as held (`Totem::submit` while holding).
    pub held_token_revisits: u64,
    /// Queued deliveries by reference into the store turned into copies:
    /// their events were not polled before the ring changed or the store
    /// needed the room they pinned (`Config::deliver_parts_from`).
    pub refs_copied: u64,
}

impl Stats {
    pub(crate) fn drop(&mut self, why: DropReason) {
        self.drops_total += 1;
        self.drops[why as usize] += 1;
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(usize)]
pub(crate) enum Timer {
    Loopback = 0,
    TokenRetransmit,
    Hold,
    TokenLoss,
    Join,
    Consensus,
    Merge,
}
const TIMERS: usize = 7;
const ALL_TIMERS: [Timer; TIMERS] = [
    Timer::Loopback,
    Timer::TokenRetransmit,
    Timer::Hold,
    Timer::TokenLoss,
    Timer::Join,
    Timer::Consensus,
    Timer::Merge,
];

/// Per-origin delivery state on one ring: the FIFO chain and reassembly.
pub(crate) struct SenderState {
    pub origin: NodeId,
    /// Seq of the origin's last frame this node processed for delivery.
    pub last_own: Option<u32>,
    /// The message being reassembled, as a copy (complete while it has
    /// fewer than `Config::deliver_parts_from` bytes)...
    pub reasm: Vec<u8>,
    /// ...and, with delivery by reference, as its pieces in the store.
    pub reasm_refs: Vec<crate::deliver::FragRef>,
    /// Bytes reassembled so far (the copy holds them all, or none).
    pub reasm_len: usize,
    pub in_frag: bool,
    /// The chain broke in a transitional configuration: deliver nothing more.
    pub broken: bool,
}

impl SenderState {
    /// The message being reassembled stops pointing into `store`: its
    /// pieces are copied unless the copy is complete already.
    pub(crate) fn refs_to_copy(&mut self, store: &crate::store::Store) {
        if !self.reasm_refs.is_empty() && self.reasm.len() != self.reasm_len {
            self.reasm.clear();
            for p in &self.reasm_refs {
                self.reasm.extend_from_slice(p.resolve(store));
            }
        }
        self.reasm_refs.clear();
    }
}

/// Everything this node knows about one ring's message stream.
pub(crate) struct RingState {
    pub ring: RingId,
    pub store: Store,
    pub my_aru: u32,
    pub high: u32,
    pub delivered: u32,
    pub safe_line: u32,
    /// aru this node forwarded on its last two token visits.
    pub fwd_aru: [u32; 2],
    pub visits: u32,
    pub last_token_seq: Option<u32>,
    pub own_last: Option<u32>,
    /// The node that sent frame `high` (0: no frame in this ring yet).
    pub high_origin: NodeId,
    pub senders: Vec<SenderState>,
    /// Set once our commit entry reported this ring's contents: plain frames
    /// of this ring are no longer accepted (recovery must work on exactly
    /// what was reported).
    pub frozen: bool,
}

impl RingState {
    pub fn new(capacity: u32) -> RingState {
        RingState {
            ring: RingId::default(),
            store: Store::new(capacity, 0),
            my_aru: 0,
            high: 0,
            delivered: 0,
            safe_line: 0,
            fwd_aru: [0; 2],
            visits: 0,
            last_token_seq: None,
            own_last: None,
            high_origin: 0,
            senders: Vec::new(),
            frozen: false,
        }
    }

    pub fn reset(&mut self, ring: RingId, start: u32) {
        self.ring = ring;
        self.store.reset(start);
        self.my_aru = start;
        self.high = start;
        self.delivered = start;
        self.safe_line = start;
        self.fwd_aru = [start; 2];
        self.visits = 0;
        self.last_token_seq = None;
        self.own_last = None;
        self.high_origin = 0;
        self.senders.clear();
        self.frozen = false;
    }

    /// Stores a frame `origin` sent; advances aru and high. Returns
    /// whether it was new.
    pub fn insert(&mut self, seq: u32, origin: NodeId, frame: &[u8]) -> Insert {
        let r = self.store.insert(seq, frame);
        if let Insert::New = r {
            if seq::gt(seq, self.high) {
                self.high = seq;
                self.high_origin = origin;
            }
            while self.store.has(self.my_aru.wrapping_add(1)) {
                self.my_aru = self.my_aru.wrapping_add(1);
            }
        }
        r
    }

    pub fn reassembly_bytes(&self) -> usize {
        self.senders.iter().map(|s| s.reasm.len()).sum()
    }
}

pub(crate) struct QueuedMsg {
    pub handle: MsgHandle,
    pub guarantee: Guarantee,
    pub data: Vec<u8>,
}

/// An event waiting in the queue; payloads live in the arena.
pub(crate) enum Pending {
    Deliver {
        off: usize,
        len: usize,
        sender: NodeId,
        ring: RingId,
        seq: u32,
        guarantee: Guarantee,
    },
    /// A delivery by reference: `count` pieces from `Totem::frag_refs`
    /// at `start`, `len` bytes in all.
    DeliverRefs {
        start: u32,
        count: u32,
        len: u32,
        sender: NodeId,
        ring: RingId,
        seq: u32,
        guarantee: Guarantee,
    },
    /// Boxed: a delivery (the common event) then moves in half the bytes.
    Config(Box<ConfigPending>),
    Persist(u64),
    Sent {
        handle: MsgHandle,
        ring: RingId,
        seq: u32,
    },
    TokenVisit {
        ring: RingId,
        token_seq: u32,
        new_frames: u32,
        retransmits: u32,
        ring_size: u32,
        rotation_frames: u32,
    },
}

/// A configuration change waiting in the event queue.
pub(crate) struct ConfigPending {
    pub kind: ConfigKind,
    pub members: Vec<NodeId>,
    pub left: Vec<NodeId>,
    pub joined: Vec<NodeId>,
    pub ring: RingId,
}

/// The recovery plan computed from the second pass of the commit token.
#[derive(Clone, Debug, Default)]
pub(crate) struct Recovery {
    /// Members of the new ring that come from this node's previous ring.
    pub trans_members: Vec<NodeId>,
    pub low: u32,
    pub high: u32,
    pub max_safe: u32,
    /// Next old-ring seq to re-broadcast; done when past `high`.
    pub next: u32,
    pub active: bool,
    pub install_count: u32,
    /// Token seq at the last visit counted in `install_count`.
    pub install_seq: u32,
    pub token_started: bool,
}

impl Recovery {
    pub fn pending(&self) -> bool {
        self.active && seq::le(self.next, self.high)
    }
}

/// One Totem node.
pub struct Totem {
    pub(crate) id: NodeId,
    pub(crate) cfg: Config,
    pub(crate) state: MemberState,
    pub(crate) now: Instant,

    /// The ring this node works on: the installed ring when operational,
    /// the new ring during recovery.
    pub(crate) cur: RingState,
    /// The previous ring, kept during recovery.
    pub(crate) old: Option<RingState>,
    pub(crate) spare: Option<RingState>,
    /// Members of `cur`'s ring.
    pub(crate) ring_members: Vec<NodeId>,
    /// The last installed regular configuration.
    pub(crate) installed: Option<(RingId, Vec<NodeId>)>,

    pub(crate) high_ring_seq: u64,
    pub(crate) persisted: u64,
    /// Highest value handed out in a `PersistRingSeq` event.
    pub(crate) persist_requested: u64,

    // Gather / commit.
    pub(crate) proc_set: Vec<NodeId>,
    pub(crate) fail_set: Vec<NodeId>,
    pub(crate) joins: Vec<wire::Join>,
    pub(crate) pending_commit: Option<wire::Commit>,
    pub(crate) commit: Option<wire::Commit>,
    pub(crate) recovery: Recovery,

    // Token.
    pub(crate) tok: Option<Box<Token>>,
    pub(crate) last_token: Vec<u8>,
    pub(crate) last_token_target: NodeId,
    pub(crate) last_fwd_seq: u32,
    pub(crate) holding: bool,
    /// The held token was held because the ring is idle (not under
    /// receive back-pressure): see `release_held_token`.
    pub(crate) idle_hold: bool,
    pub(crate) my_last_fcc: u32,
    /// See [`Totem::set_receive_congested`].
    pub(crate) receive_congested: bool,
    pub(crate) my_last_fcc_bytes: u32,
    pub(crate) my_last_backlog: u32,
    pub(crate) seq_unchanged: u32,
    pub(crate) last_seen_seq: u32,
    pub(crate) prev_token_seq_seen: u32,
    pub(crate) fail_recv_count: u32,
    pub(crate) last_visit_aru: u32,
    pub(crate) hold_cancel_sent: bool,
    /// A hold-cancel came while we did not hold the token: do not hold it
    /// at the next visit (its sender may have asked just before we would
    /// have; it will not ask again).
    pub(crate) hold_cancel_seen: bool,

    // Send queue.
    pub(crate) sendq: VecDeque<QueuedMsg>,
    pub(crate) sendq_bytes: usize,
    pub(crate) head_offset: usize,
    pub(crate) next_handle: u64,
    pub(crate) msg_pool: Vec<Vec<u8>>,

    // Outputs.
    pub(crate) txq: VecDeque<(Destination, Vec<u8>)>,
    pub(crate) tx_current: Vec<u8>,
    pub(crate) buf_pool: Vec<Vec<u8>>,
    pub(crate) loopback: VecDeque<Vec<u8>>,
    pub(crate) events: VecDeque<Pending>,
    pub(crate) arena: Vec<u8>,
    /// Pieces of the queued deliveries by reference (cleared with the
    /// arena once the queue is empty).
    pub(crate) frag_refs: Vec<crate::deliver::FragRef>,
    /// The lowest frame seq the queued deliveries point at: the store
    /// releases nothing from there on while they wait.
    pub(crate) refs_pin: Option<u32>,
    /// The configuration change `poll_event` last returned (its lists are
    /// lent to the caller).
    pub(crate) ev_current: Option<Box<ConfigPending>>,
    pub(crate) timers: [Option<Instant>; TIMERS],
    pub(crate) stats: Stats,
}

const LOOPBACK_BATCH: usize = 32;
const POOL_MAX: usize = 4096;
const POOLED_MSG_MAX: usize = 64 * 1024;

impl Totem {
    /// A node with id `id` whose stable storage held `loaded_ring_seq` (0 if
    /// none). It starts gathering at once.
    pub fn new(
        id: NodeId,
        cfg: Config,
        loaded_ring_seq: u64,
        now: Instant,
    ) -> Result<Totem, ConfigError> {
        cfg.validate()?;
        if id == 0 {
            return Err(ConfigError {
                key: "nodeid",
                reason: "0 is not a valid node id".into(),
            });
        }
        if loaded_ring_seq > wire::MAX_RING_SEQ {
            return Err(ConfigError {
                key: "ring seq",
                reason: format!(
                    "the stored ring seq {loaded_ring_seq} is above {} (a corrupt state file?)",
                    wire::MAX_RING_SEQ
                ),
            });
        }
        #[cfg(feature = "mutants")]
        let loaded = if cfg.mutant == Some(crate::Mutant::ReuseRingSeq) {
            0
        } else {
            loaded_ring_seq
        };
        #[cfg(not(feature = "mutants"))]
        let loaded = loaded_ring_seq;
        let cap = cfg.retransmit_queue;
        let mut cur = RingState::new(cap);
        cur.reset(RingId::default(), cfg.initial_seq);
        let queue_cap = (cfg.window_size as usize * 4).max(64);
        let mut t = Totem {
            id,
            state: MemberState::Gather,
            now,
            cur,
            old: None,
            spare: Some(RingState::new(cap)),
            ring_members: vec![id],
            installed: None,
            // Bumped on load so that a ring seq is never reused, whatever
            // happened between the last write and the crash.
            high_ring_seq: loaded + 4,
            persisted: loaded,
            persist_requested: loaded,
            proc_set: Vec::new(),
            fail_set: Vec::new(),
            joins: Vec::new(),
            pending_commit: None,
            commit: None,
            recovery: Recovery::default(),
            tok: Some(Box::new(Token::new(id, RingId::default(), 0))),
            last_token: Vec::with_capacity(wire::TOKEN_FIXED_LEN + 4 * wire::MAX_RTR),
            last_token_target: 0,
            last_fwd_seq: 0,
            holding: false,
            idle_hold: false,
            my_last_fcc: 0,
            receive_congested: false,
            my_last_fcc_bytes: 0,
            my_last_backlog: 0,
            seq_unchanged: 0,
            last_seen_seq: 0,
            prev_token_seq_seen: 0,
            fail_recv_count: 0,
            last_visit_aru: 0,
            hold_cancel_sent: false,
            hold_cancel_seen: false,
            sendq: VecDeque::with_capacity(cfg.send_queue_messages.min(65536) as usize),
            sendq_bytes: 0,
            head_offset: 0,
            next_handle: 0,
            msg_pool: Vec::new(),
            txq: VecDeque::with_capacity(queue_cap),
            tx_current: Vec::new(),
            buf_pool: Vec::new(),
            loopback: VecDeque::with_capacity(8),
            events: VecDeque::with_capacity(queue_cap),
            arena: Vec::new(),
            frag_refs: Vec::new(),
            refs_pin: None,
            ev_current: None,
            timers: [None; TIMERS],
            stats: Stats::default(),
            cfg,
        };
        t.enter_gather(now, &[id], &[]);
        Ok(t)
    }

    pub fn id(&self) -> NodeId {
        self.id
    }

    pub fn config(&self) -> &Config {
        &self.cfg
    }

    /// Receive back-pressure: while set, this node broadcasts no new
    /// frames of its own (unless it is alone in its ring) and claims the
    /// whole window in the token's flow-control count, so on their next
    /// visits the other members broadcast nothing (neither new frames nor
    /// retransmissions). The token keeps circulating, held for a
    /// millisecond at each of this node's visits that adds nothing (empty
    /// rotations at full speed would take the CPU the slow reader needs),
    /// and nothing times out. The driver sets it while a local reader
    /// cannot keep up with deliveries and clears it when it has caught up
    /// (bounding how long, so one stuck reader cannot stop the ring for
    /// good).
    pub fn set_receive_congested(&mut self, congested: bool) {
        self.receive_congested = congested;
    }

    /// Takes from `new` the values Corosync lets an operator change on a
    /// running node (its "volatile" totem keys): token, token_retransmit,
    /// hold, token_retransmits_before_loss_const, join, consensus, merge,
    /// downcheck, fail_recv_const, seqno_unchanged_const (with
    /// hold_after_idle_hops), miss_count_const,
    /// window_size, max_messages and window_per_member. The rest of `new`
    /// (frame and queue sizes, which size buffers; netmtu; the ring
    /// options) is ignored.
    /// Timers already armed keep their deadlines; each takes the new value
    /// the next time it is armed. Nothing changes when the result fails
    /// validation.
    pub fn set_timings(&mut self, new: &Config) -> Result<(), ConfigError> {
        let mut c = self.cfg.clone();
        c.token = new.token;
        c.token_coefficient = new.token_coefficient;
        c.token_retransmits_before_loss_const = new.token_retransmits_before_loss_const;
        c.token_retransmit = new.token_retransmit;
        c.hold = new.hold;
        c.join = new.join;
        c.consensus = new.consensus;
        c.merge = new.merge;
        c.downcheck = new.downcheck;
        c.fail_recv_const = new.fail_recv_const;
        c.seqno_unchanged_const = new.seqno_unchanged_const;
        c.hold_after_idle_hops = new.hold_after_idle_hops;
        c.miss_count_const = new.miss_count_const;
        c.window_size = new.window_size;
        c.max_messages = new.max_messages;
        c.window_per_member = new.window_per_member;
        c.validate()?;
        self.cfg = c;
        Ok(())
    }

    /// Whether the ring is quiet here: this node holds the idle token, or
    /// the token's last visit found no frame that was not there at the
    /// visit before. A driver that reads its clients' requests only when
    /// the token comes by (sparing them a wake-up per message while the
    /// ring is busy) must listen for requests again once it is quiet: the
    /// token may stop at the last sender, and a request would wait for
    /// whatever woke this node next.
    pub fn ring_quiet(&self) -> bool {
        self.holding || self.seq_unchanged > 0
    }

    pub fn state(&self) -> MemberState {
        self.state
    }

    /// The ring this node currently works on (during recovery: the new ring).
    pub fn ring_id(&self) -> RingId {
        self.cur.ring
    }

    /// Members of the last installed regular configuration (empty before the first).
    pub fn members(&self) -> &[NodeId] {
        self.installed
            .as_ref()
            .map(|(_, m)| m.as_slice())
            .unwrap_or(&[])
    }

    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// Bytes of messages submitted and not yet sent (`queue_bounds` without
    /// the rest: cheap enough for every request and every turn).
    pub fn send_queue_bytes(&self) -> usize {
        self.sendq_bytes
    }

    /// Messages submitted and not yet sent.
    pub fn send_queue_msgs(&self) -> usize {
        self.sendq.len()
    }

    pub fn queue_bounds(&self) -> QueueBounds {
        let reasm = self.cur.reassembly_bytes()
            + self.old.as_ref().map(|o| o.reassembly_bytes()).unwrap_or(0);
        QueueBounds {
            store_len: self.cur.store.len(),
            store_cap: self.cur.store.capacity(),
            old_store_len: self.old.as_ref().map(|o| o.store.len()).unwrap_or(0),
            send_queue_msgs: self.sendq.len() as u32,
            send_queue_msgs_cap: self.cfg.send_queue_messages,
            send_queue_bytes: self.sendq_bytes as u32,
            send_queue_bytes_cap: self.cfg.send_queue_bytes,
            reassembly_bytes: reasm as u32,
            // One partial message per origin of the (at most two) rings held.
            reassembly_cap: self.cfg.max_message_size.saturating_mul(
                2 * (self.cur.senders.len() + self.old.as_ref().map_or(0, |o| o.senders.len()))
                    .max(1) as u32,
            ),
        }
    }

    // ---------------------------------------------------------------- input

    /// Feeds one received datagram. `from` is the node the transport says
    /// sent it (if it knows); a mismatch with the header drops the datagram.
    pub fn handle_datagram(&mut self, now: Instant, from: Option<NodeId>, bytes: &[u8]) {
        self.now = now;
        if self.state == MemberState::Left {
            return;
        }
        self.stats.datagrams_received += 1;
        self.dispatch(now, from, bytes);
        self.run_loopback(now);
    }

    fn dispatch(&mut self, now: Instant, from: Option<NodeId>, bytes: &[u8]) {
        let (t, sender) = match wire::peek_header(bytes) {
            Ok(h) => h,
            Err(e) => return self.stats.drop(e.into()),
        };
        if from.is_some_and(|f| f != sender) {
            return self.stats.drop(DropReason::Forged);
        }
        if sender == self.id && t != PacketType::Token && t != PacketType::Commit {
            // Our own multicast looped back by the network: already processed.
            return;
        }
        let r = match t {
            PacketType::Token => {
                // The scratch token is taken out while it is processed (no allocation).
                let Some(mut tok) = self.tok.take() else {
                    return;
                };
                let r = wire::decode_token_into(bytes, &mut tok);
                let out = match r {
                    Ok(()) => {
                        self.on_token(now, &mut tok);
                        Ok(())
                    }
                    Err(e) => Err(e),
                };
                self.tok = Some(tok);
                out
            }
            PacketType::Mcast => wire::decode_mcast(bytes).map(|m| self.on_mcast(now, m, bytes)),
            _ => match wire::decode(bytes) {
                Ok(wire::Packet::Join(j)) => {
                    self.on_join(now, j);
                    Ok(())
                }
                Ok(wire::Packet::Commit(c)) => {
                    self.on_commit(now, c);
                    Ok(())
                }
                Ok(wire::Packet::MergeDetect { sender, ring }) => {
                    self.on_merge_detect(now, sender, ring);
                    Ok(())
                }
                Ok(wire::Packet::HoldCancel { ring, .. }) => {
                    self.on_hold_cancel(now, ring);
                    Ok(())
                }
                Ok(_) => Err(DecodeError::BadType),
                Err(e) => Err(e),
            },
        };
        if let Err(e) = r {
            self.stats.drop(e.into());
        }
    }

    /// Fires every timer that is due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        self.now = now;
        if self.state == MemberState::Left {
            return;
        }
        for t in ALL_TIMERS {
            if self.timers[t as usize].is_some_and(|d| d <= now) {
                self.timers[t as usize] = None;
                self.on_timer(now, t);
            }
        }
        self.run_loopback(now);
    }

    /// Reports that `ring_seq` (from a `PersistRingSeq` event) is on stable storage.
    pub fn handle_persisted(&mut self, now: Instant, ring_seq: u64) {
        self.now = now;
        if self.state == MemberState::Left {
            return;
        }
        self.persisted = self.persisted.max(ring_seq);
        self.resume_commit(now);
        self.run_loopback(now);
    }

    /// Queues a message for ordered delivery to every member.
    pub fn submit(&mut self, msg: &[u8], guarantee: Guarantee) -> Result<MsgHandle, SubmitError> {
        self.admit(msg.len())?;
        let mut data = self.msg_pool.pop().unwrap_or_default();
        data.clear();
        data.extend_from_slice(msg);
        Ok(self.enqueue(data, guarantee))
    }

    /// `submit` without a copy: the message moves out of `msg`, which
    /// gets an empty buffer back (for the caller to reuse). On an error
    /// `msg` is left as it was.
    pub fn submit_swap(
        &mut self,
        msg: &mut Vec<u8>,
        guarantee: Guarantee,
    ) -> Result<MsgHandle, SubmitError> {
        self.admit(msg.len())?;
        let mut data = self.msg_pool.pop().unwrap_or_default();
        data.clear();
        std::mem::swap(&mut data, msg);
        Ok(self.enqueue(data, guarantee))
    }

    fn admit(&self, len: usize) -> Result<(), SubmitError> {
        if self.state == MemberState::Left {
            return Err(SubmitError::Left);
        }
        if len == 0 {
            return Err(SubmitError::Empty);
        }
        if len > self.cfg.max_message_size as usize {
            return Err(SubmitError::TooLarge);
        }
        if self.sendq.len() >= self.cfg.send_queue_messages as usize
            || self.sendq_bytes + len > self.cfg.send_queue_bytes as usize
        {
            return Err(SubmitError::QueueFull);
        }
        Ok(())
    }

    fn enqueue(&mut self, data: Vec<u8>, guarantee: Guarantee) -> MsgHandle {
        let handle = MsgHandle(self.next_handle);
        self.next_handle += 1;
        self.sendq_bytes += data.len();
        self.sendq.push_back(QueuedMsg {
            handle,
            guarantee,
            data,
        });
        self.wake_held_token();
        handle
    }

    /// Leaves the ring gracefully: the others re-form without waiting for a
    /// token loss. Afterwards every input is ignored.
    pub fn leave(&mut self, now: Instant) {
        if self.state == MemberState::Left {
            return;
        }
        self.now = now;
        let mut procs: Vec<NodeId> = self.ring_members.clone();
        for p in &self.proc_set {
            if !procs.contains(p) {
                procs.push(*p);
            }
        }
        procs.sort_unstable();
        let j = wire::Join {
            sender: self.id,
            ring_seq: self.high_ring_seq,
            procs,
            fails: vec![self.id],
        };
        for _ in 0..2 {
            let mut b = self.take_buf();
            wire::encode_join(&j, &mut b);
            self.txq.push_back((Destination::Multicast, b));
        }
        self.state = MemberState::Left;
        self.timers = [None; TIMERS];
        self.loopback.clear();
    }

    // --------------------------------------------------------------- output

    /// The next datagram to send; its bytes stay valid until the next call.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Transmit<'_>> {
        let _ = now;
        let (dest, buf) = self.txq.pop_front()?;
        let prev = std::mem::replace(&mut self.tx_current, buf);
        self.give_buf(prev);
        Some(Transmit {
            dest,
            bytes: &self.tx_current,
        })
    }

    /// Like `poll_transmit`, without a copy: the datagram moves into `buf`,
    /// whose old buffer Totem keeps for later datagrams.
    pub fn poll_transmit_swap(&mut self, now: Instant, buf: &mut Vec<u8>) -> Option<Destination> {
        let _ = now;
        let (dest, mut b) = self.txq.pop_front()?;
        std::mem::swap(&mut b, buf);
        b.clear();
        self.give_buf(b);
        Some(dest)
    }

    /// The earliest deadline at which `handle_timeout` must be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.iter().flatten().min().copied()
    }

    /// The next event for the application, in delivery order.
    #[inline]
    pub fn poll_event(&mut self) -> Option<Event<'_>> {
        let Some(p) = self.events.pop_front() else {
            self.arena.clear();
            self.frag_refs.clear();
            self.refs_pin = None;
            self.ev_current = None;
            return None;
        };
        // Deliveries are nearly every event: theirs is the inlined path.
        if let Pending::Deliver {
            off,
            len,
            sender,
            ring,
            seq,
            guarantee,
        } = p
        {
            return Some(Event::Deliver {
                payload: &self.arena[off..off + len],
                sender,
                ring,
                seq,
                guarantee,
            });
        }
        Some(self.other_event(p))
    }

    /// `poll_event` for everything but a delivery by copy (which it
    /// handles itself and never passes on).
    #[inline(never)]
    fn other_event(&mut self, p: Pending) -> Event<'_> {
        match p {
            Pending::Deliver { .. } => unreachable!("poll_event handles deliveries by copy"),
            Pending::DeliverRefs {
                start,
                count,
                len,
                sender,
                ring,
                seq,
                guarantee,
            } => Event::DeliverParts {
                parts: crate::deliver::Parts {
                    store: &self.cur.store,
                    refs: &self.frag_refs[start as usize..(start + count) as usize],
                    len: len as usize,
                },
                sender,
                ring,
                seq,
                guarantee,
            },
            Pending::Config(c) => {
                let c = self.ev_current.insert(c);
                Event::ConfigChange {
                    kind: c.kind,
                    members: &c.members,
                    left: &c.left,
                    joined: &c.joined,
                    ring_id: c.ring,
                }
            }
            Pending::Persist(s) => Event::PersistRingSeq(s),
            Pending::Sent { handle, ring, seq } => Event::Sent { handle, ring, seq },
            Pending::TokenVisit {
                ring,
                token_seq,
                new_frames,
                retransmits,
                ring_size,
                rotation_frames,
            } => Event::TokenVisit {
                ring,
                token_seq,
                new_frames,
                retransmits,
                ring_size,
                rotation_frames,
            },
        }
    }

    // -------------------------------------------------------------- helpers

    /// `upto`, lowered below the lowest frame that queued deliveries or
    /// unfinished reassemblies by reference point at (released later).
    /// A pin a quarter of the store's window behind `upto` is dropped first
    /// (what points there becomes a copy): the store accepts frames only
    /// within its window of the lowest one it holds, so a pin kept while a
    /// slow sender's next piece or an unpolled event waits could otherwise
    /// fill the window and stop the ring.
    fn unpinned_upto(&mut self, upto: u32) -> u32 {
        let span = self.cur.store.capacity() / 4;
        let far = |p: u32| seq::lt(p, upto) && seq::dist(p, upto) >= span;
        let store = &self.cur.store;
        for st in &mut self.cur.senders {
            if st.reasm_refs.first().is_some_and(|r| far(r.seq)) {
                st.refs_to_copy(store);
            }
        }
        if self.refs_pin.is_some_and(far) {
            self.settle_events();
        }
        let pins = self
            .cur
            .senders
            .iter()
            .filter_map(|s| s.reasm_refs.first().map(|r| r.seq))
            .chain(self.refs_pin);
        pins.fold(
            upto,
            |u, p| {
                if seq::lt(u, p) {
                    u
                } else {
                    p.wrapping_sub(1)
                }
            },
        )
    }

    /// Before the current ring's store is reset or moved: every delivery
    /// and reassembly that points into it becomes a copy.
    pub(crate) fn settle_refs(&mut self) {
        let store = &self.cur.store;
        for st in &mut self.cur.senders {
            st.refs_to_copy(store);
        }
        if !crate::mutant!(self, KeepRefsAcrossRings) {
            self.settle_events();
        }
    }

    /// Every queued delivery that points into the store becomes a copy.
    fn settle_events(&mut self) {
        if self.refs_pin.is_none() {
            return;
        }
        let store = &self.cur.store;
        for ev in self.events.iter_mut() {
            if let Pending::DeliverRefs {
                start,
                count,
                len,
                sender,
                ring,
                seq,
                guarantee,
            } = *ev
            {
                let off = self.arena.len();
                for p in &self.frag_refs[start as usize..(start + count) as usize] {
                    self.arena.extend_from_slice(p.resolve(store));
                }
                self.stats.refs_copied += 1;
                *ev = Pending::Deliver {
                    off,
                    len: len as usize,
                    sender,
                    ring,
                    seq,
                    guarantee,
                };
            }
        }
        self.frag_refs.clear();
        self.refs_pin = None;
    }

    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        let mut b = self
            .buf_pool
            .pop()
            .unwrap_or_else(|| Vec::with_capacity(self.cfg.max_frame()));
        b.clear();
        b
    }

    pub(crate) fn give_buf(&mut self, b: Vec<u8>) {
        if self.buf_pool.len() < POOL_MAX && b.capacity() > 0 {
            self.buf_pool.push(b);
        }
    }

    pub(crate) fn arm(&mut self, t: Timer, at: Instant) {
        self.timers[t as usize] = Some(at);
    }

    pub(crate) fn disarm(&mut self, t: Timer) {
        self.timers[t as usize] = None;
    }

    pub(crate) fn successor(&self) -> NodeId {
        let m = &self.ring_members;
        let i = m.iter().position(|&n| n == self.id).unwrap_or(0);
        m[(i + 1) % m.len()]
    }

    /// Sends a unicast packet (already encoded in `buf`) to `to`, looping it
    /// back internally when `to` is this node.
    pub(crate) fn send_unicast(&mut self, to: NodeId, buf: Vec<u8>) {
        if to == self.id {
            self.loopback.push_back(buf);
        } else {
            self.txq.push_back((Destination::Unicast(to), buf));
        }
    }

    fn run_loopback(&mut self, now: Instant) {
        for _ in 0..LOOPBACK_BATCH {
            let Some(b) = self.loopback.pop_front() else {
                return;
            };
            self.dispatch(now, None, &b);
            self.give_buf(b);
            if self.state == MemberState::Left {
                return;
            }
        }
        if !self.loopback.is_empty() {
            self.arm(Timer::Loopback, now);
        }
    }

    pub(crate) fn push_event(&mut self, e: Pending) {
        self.events.push_back(e);
    }

    fn on_timer(&mut self, now: Instant, t: Timer) {
        match t {
            Timer::Loopback => {}
            Timer::TokenRetransmit => {
                if matches!(
                    self.state,
                    MemberState::Operational | MemberState::Recovery | MemberState::Commit
                ) && !self.last_token.is_empty()
                    && self.last_token_target != self.id
                {
                    self.stats.token_retransmits += 1;
                    let mut b = self.take_buf();
                    b.extend_from_slice(&self.last_token);
                    let to = self.last_token_target;
                    self.send_unicast(to, b);
                    self.arm(
                        Timer::TokenRetransmit,
                        now.plus_ms(self.cfg.token_retransmit_ms()),
                    );
                }
            }
            Timer::Hold => {
                if self.holding {
                    self.release_held_token(now);
                }
            }
            Timer::TokenLoss => self.on_token_loss(now),
            Timer::Join => self.on_join_timer(now),
            Timer::Consensus => self.on_consensus_timeout(now),
            Timer::Merge => {
                if self.state == MemberState::Operational && self.cur.ring.rep == self.id {
                    let mut b = self.take_buf();
                    wire::encode_ring_packet(
                        PacketType::MergeDetect,
                        self.id,
                        self.cur.ring,
                        &mut b,
                    );
                    self.txq.push_back((Destination::Multicast, b));
                    self.arm(Timer::Merge, now.plus_ms(self.cfg.merge));
                }
            }
        }
    }

    /// Who keeps the token once the ring is idle and its seq is `seq`: the
    /// node that sent the last frame, so that a node sending alone finds
    /// the token with it for its next message (no hold-cancel, no hops);
    /// the representative when this ring has no frame yet or the last
    /// sender is gone. On an idle ring every member holds every frame up to
    /// `seq`, so all of them name the same node. (Corosync: always the
    /// representative.)
    fn idle_visits_before_hold(&self) -> u32 {
        self.cfg.idle_visits_before_hold(self.ring_members.len())
    }

    fn idle_holder(&self, seq: u32) -> NodeId {
        let o = self.cur.high_origin;
        if self.cur.high == seq && o != 0 && self.ring_members.contains(&o) {
            o
        } else {
            self.cur.ring.rep
        }
    }

    /// The node holding an idle token forwards it at once when there is
    /// something to send; others ask it to with a hold-cancel. The holder
    /// stops at its `idle_visits_before_hold`-th idle visit (from
    /// `seqno_unchanged_const` and `hold_after_idle_hops`), when the others
    /// have counted one fewer: they ask from there on (a request that
    /// arrives before the hold keeps the token going: `hold_cancel_seen`).
    /// With a count of 1 that is from 0: every visit that
    /// finds a local message waiting may send one.
    fn wake_held_token(&mut self) {
        if self.state != MemberState::Operational {
            return;
        }
        if self.holding {
            let now = self.now;
            self.arm(Timer::Hold, now);
        } else if self.seq_unchanged >= self.idle_visits_before_hold().saturating_sub(1)
            && !self.hold_cancel_sent
            && self.ring_members.len() > 1
        {
            self.hold_cancel_sent = true;
            let mut b = self.take_buf();
            wire::encode_ring_packet(PacketType::HoldCancel, self.id, self.cur.ring, &mut b);
            self.txq.push_back((Destination::Multicast, b));
        }
    }

    /// Whether the stable line covers the aru this visit forwards, so that
    /// a held token may be visited again when a local message comes (see
    /// `release_held_token`). The idle token is held only then: with the
    /// Accelerated Ring the token reaches the next node ahead of the last
    /// frame, which lowers the token's aru for one more rotation, and a
    /// token held too early (after one idle visit of a 12-node ring) could
    /// only be forwarded as held, so the next message waited a rotation.
    fn held_visit_repeatable(&self) -> bool {
        !seq::lt(self.cur.safe_line, self.cur.fwd_aru[1])
    }

    fn on_hold_cancel(&mut self, now: Instant, ring: RingId) {
        if ring != self.cur.ring {
            return self.stats.drop(DropReason::ForeignRing);
        }
        if self.holding {
            self.release_held_token(now);
        } else {
            self.hold_cancel_seen = true;
        }
    }

    /// Lets a held token go. With frames of our own queued (a local
    /// submit woke it, or they came meanwhile) an idle token is visited
    /// again at once, so they leave now rather than one rotation later
    /// (which is what forwarding the token as it was held would cost them).
    /// Nobody else had the token since the visit that held it, so the
    /// second visit is one with no rotation before it: the stable line
    /// moves to the lower of the two arus forwarded, the first visit's.
    /// That is safe only where the line had that aru already, and the
    /// visit that held the token sent nothing (its frames would be missing
    /// from the rotation's count). Otherwise, and for a token held under
    /// receive back-pressure, it is forwarded as it was. (An idle hold is
    /// not enough: this node may itself have raised the aru to `seq` on
    /// that visit, after retransmissions; a second visit then let it
    /// deliver a safe message another member did not have: the
    /// simulator's I10.)
    fn release_held_token(&mut self, now: Instant) {
        let revisit = self.idle_hold
            && self.my_last_fcc == 0
            && self.held_visit_repeatable()
            && !self.sendq.is_empty()
            && !self.receive_congested
            && self.state == MemberState::Operational;
        if !revisit {
            return self.forward_token(now);
        }
        let Some(mut tok) = self.tok.take() else {
            return self.forward_token(now);
        };
        if wire::decode_token_into(&self.last_token, &mut tok).is_ok() {
            self.stats.held_token_revisits += 1;
            self.holding = false;
            self.disarm(Timer::Hold);
            self.token_visit(now, &mut tok);
        } else {
            self.forward_token(now);
        }
        self.tok = Some(tok);
    }

    // ------------------------------------------------------------ multicast

    fn on_mcast(&mut self, now: Instant, m: wire::Mcast<'_>, raw: &[u8]) {
        let h = m.header;
        self.high_ring_seq = self.high_ring_seq.max(h.ring.seq);
        if h.ring != self.cur.ring {
            if self.state == MemberState::Operational && !self.ring_members.contains(&h.sender) {
                // A node of another ring can hear us: merge.
                let mut procs = self.ring_members.clone();
                procs.push(h.sender);
                procs.sort_unstable();
                self.enter_gather(now, &procs, &[]);
            } else {
                self.stats.drop(DropReason::ForeignRing);
            }
            return;
        }
        if self.cur.frozen || self.state == MemberState::Commit {
            return self.stats.drop(DropReason::StaleMembership);
        }
        if h.encapsulated()
            && self.state == MemberState::Recovery
            && self.old_frame_beyond_store(m.payload)
        {
            // Taken, it would count as received while the old-ring frame it
            // carries could not be kept: the ring would install without a
            // frame the others deliver in the transitional configuration.
            // Seen in the simulator (seed 9100000589 with a change to commit
            // handling that was not kept): a node whose delivery waited on a
            // safe message held frames far behind its aru, so its store's
            // window ended short of the others' highest frame. Dropped, it
            // comes again, and the recovery cannot end without it. Since
            // `enter_recovery` releases the old store to its stable line, a
            // correct ring's frames fit (senders stay within half a store of
            // the token's aru); were one never to fit, the ring would wait in
            // recovery until a join moved it, which is safe.
            return self.stats.drop(DropReason::OutOfWindow);
        }
        self.stats.frames_received += 1;
        match self.cur.insert(h.seq, h.origin, raw) {
            Insert::New => {}
            Insert::Duplicate => {
                self.stats.duplicate_frames += 1;
                return;
            }
            Insert::OutOfWindow => return self.stats.drop(DropReason::OutOfWindow),
        }
        if h.origin != self.id && seq::gt(h.seq, self.last_fwd_seq) {
            // Someone after us has the token: stop retransmitting it.
            self.disarm(Timer::TokenRetransmit);
        }
        if h.encapsulated() && self.state == MemberState::Recovery {
            self.recover_frame(m.payload);
        }
        if self.state == MemberState::Operational {
            self.deliver_regular();
        }
    }

    /// Whether a recovery frame carries an old-ring frame of the agreed range
    /// that lies beyond the far end of the old ring's store.
    fn old_frame_beyond_store(&self, inner: &[u8]) -> bool {
        let Ok(im) = wire::decode_mcast_header(inner) else {
            return false;
        };
        let rec = &self.recovery;
        let Some(old) = self.old.as_ref() else {
            return false;
        };
        let s = im.header.seq;
        rec.active
            && im.header.ring == old.ring
            && seq::gt(s, rec.low)
            && seq::le(s, rec.high)
            && old.store.beyond_window(s)
    }

    /// An old-ring frame re-broadcast in recovery: keep it if it belongs to
    /// our previous ring and lies in the range the commit token agreed on.
    fn recover_frame(&mut self, inner: &[u8]) {
        let Ok(im) = wire::decode_mcast(inner) else {
            return;
        };
        let rec = &self.recovery;
        let Some(old) = self.old.as_mut() else { return };
        if im.header.ring != old.ring || !rec.active {
            return;
        }
        if seq::gt(im.header.seq, rec.low) && seq::le(im.header.seq, rec.high) {
            let _ = old.insert(im.header.seq, im.header.origin, inner);
        }
    }

    // ---------------------------------------------------------------- token

    fn on_token(&mut self, now: Instant, tok: &mut Token) {
        if !matches!(self.state, MemberState::Operational | MemberState::Recovery) {
            return self.stats.drop(DropReason::StaleToken);
        }
        if tok.ring != self.cur.ring || !self.ring_members.contains(&tok.sender) {
            return self.stats.drop(DropReason::ForeignRing);
        }
        if tok.target != self.id {
            return self.stats.drop(DropReason::StaleToken);
        }
        let accept_old = crate::mutant!(self, AcceptOldToken);
        if let Some(last) = self.cur.last_token_seq {
            if !seq::gt(tok.token_seq, last) && !accept_old {
                return self.stats.drop(DropReason::StaleToken);
            }
        }
        self.stats.tokens_received += 1;
        self.token_visit(now, tok);
    }

    /// Processes one token visit: retransmit what is asked, broadcast new
    /// frames within the flow-control allowance, request our own gaps,
    /// update aru/fcc/backlog, forward, then deliver.
    pub(crate) fn token_visit(&mut self, now: Instant, tok: &mut Token) {
        self.cur.last_token_seq = Some(tok.token_seq);
        let arrived_token_seq = tok.token_seq;
        self.disarm(Timer::TokenRetransmit);
        self.arm(Timer::TokenLoss, now.plus_ms(self.cfg.token));
        self.hold_cancel_sent = false;

        let window = self.cfg.window_for(self.ring_members.len());
        let fcc_others = tok.fcc.saturating_sub(self.my_last_fcc);
        let window_left = window.saturating_sub(fcc_others);
        let retransmits = self.answer_retransmits(tok, window_left.min(self.cfg.max_messages));

        let my_backlog = self.backlog_frames();
        let total_backlog = tok
            .backlog
            .saturating_sub(self.my_last_backlog)
            .saturating_add(my_backlog);
        let mut allowance = (self.cfg.max_messages - retransmits).min(window_left - retransmits);
        if total_backlog > 0 {
            let share = (u64::from(window) * u64::from(my_backlog))
                .div_ceil(u64::from(total_backlog)) as u32;
            allowance = allowance.min(share.max(1));
        }
        // Receive back-pressure holds our own new frames back too: they
        // would be delivered to the reader that cannot keep up. Not alone
        // in a ring: the token comes straight back to us, and with frames
        // queued and none sent it would circulate without end at one
        // instant (the daemon pauses its clients' requests meanwhile, so
        // the queue it drains is bounded).
        let held_back = self.receive_congested
            && self.state == MemberState::Operational
            && self.ring_members.len() > 1;
        if held_back {
            allowance = 0;
        }
        if crate::mutant!(self, IgnoreWindow) {
            allowance = 4 * window;
        }
        let bytes_others = tok.fcc_bytes.saturating_sub(self.my_last_fcc_bytes);
        let mut bytes_left = if self.cfg.window_bytes > 0 {
            self.cfg.window_bytes.saturating_sub(bytes_others)
        } else {
            u32::MAX
        };

        let txq_mark = self.txq.len();
        let (new_frames, new_bytes) = match self.state {
            MemberState::Recovery => self.send_recovery_frames(tok, allowance, &mut bytes_left),
            _ => self.send_new_frames(tok, allowance, &mut bytes_left),
        };

        self.request_gaps(tok);

        // aru: lower it to ours, or raise it if we were the ones who lowered it.
        let c = &self.cur;
        if seq::lt(c.my_aru, tok.aru) || tok.aru_addr == self.id || tok.aru_addr == 0 {
            tok.aru = c.my_aru;
            tok.aru_addr = if tok.aru == tok.seq { 0 } else { self.id };
        }
        let sent = retransmits + new_frames;
        assert!(
            sent <= self.cfg.max_messages || crate::mutant!(self, IgnoreWindow),
            "flow control: {sent} frames in one visit"
        );
        // Receive back-pressure (`set_receive_congested`): report a full
        // window as ours so the others' window is spent until our next visit.
        let counted = if self.receive_congested && self.state == MemberState::Operational {
            sent.max(window)
        } else {
            sent
        };
        tok.fcc = fcc_others.saturating_add(counted);
        tok.fcc_bytes = bytes_others.saturating_add(new_bytes);
        tok.backlog = total_backlog.saturating_sub(new_frames.min(my_backlog));
        self.my_last_fcc = counted;
        self.my_last_fcc_bytes = new_bytes;
        self.my_last_backlog = my_backlog.saturating_sub(new_frames.min(my_backlog));

        if self.state == MemberState::Recovery {
            if self.recovery.pending() {
                tok.retrans_flg = true;
                tok.retrans_addr = self.id;
            } else if tok.retrans_addr == self.id {
                tok.retrans_flg = false;
                tok.retrans_addr = 0;
            }
        }

        // Stable line: min of the arus we forwarded on our last two visits.
        self.cur.fwd_aru = [self.cur.fwd_aru[1], tok.aru];
        self.cur.visits += 1;
        if self.cur.visits >= 2 {
            let line = seq::min(self.cur.fwd_aru[0], self.cur.fwd_aru[1]);
            self.cur.safe_line = seq::max(self.cur.safe_line, line);
        }

        if tok.seq == self.last_seen_seq {
            self.seq_unchanged = self.seq_unchanged.saturating_add(1);
        } else {
            self.seq_unchanged = 0;
        }
        self.last_seen_seq = tok.seq;
        self.prev_token_seq_seen = tok.seq;

        tok.token_seq = tok.token_seq.wrapping_add(1);
        tok.sender = self.id;
        tok.target = self.successor();
        self.last_fwd_seq = tok.seq;
        self.last_token_target = tok.target;
        let mut lt = std::mem::take(&mut self.last_token);
        wire::encode_token(tok, &mut lt);
        self.last_token = lt;

        self.push_event(Pending::TokenVisit {
            ring: self.cur.ring,
            token_seq: arrived_token_seq,
            new_frames,
            retransmits,
            ring_size: self.ring_members.len() as u32,
            rotation_frames: tok.fcc,
        });

        let idle = tok.seq == tok.aru && tok.rtr_len == 0 && self.sendq.is_empty();
        let cancelled = std::mem::take(&mut self.hold_cancel_seen);
        if self.state == MemberState::Operational
            && self.idle_holder(tok.seq) == self.id
            && idle
            && !cancelled
            && self.seq_unchanged >= self.idle_visits_before_hold()
            && self.held_visit_repeatable()
        {
            self.holding = true;
            self.idle_hold = true;
            self.arm(Timer::Hold, now.plus_ms(self.cfg.hold_ms()));
        } else if held_back && new_frames == 0 && retransmits == 0 {
            // Receive back-pressure: nobody may send, so a token passed on
            // at once would only circulate empty, its hops taking the CPU
            // the slow local reader needs. Hold it briefly (a
            // hold-cancel or the timer releases it).
            self.holding = true;
            self.idle_hold = false;
            self.arm(
                Timer::Hold,
                Instant(
                    now.0
                        .saturating_add(CONGESTION_HOLD_NS.min(self.cfg.hold_ms() * 1_000_000)),
                ),
            );
        } else {
            self.forward_token(now);
            // Accelerated Ring: the token goes out ahead of the burst it
            // announces (unless it was looped back to ourselves).
            if self.cfg.accelerated
                && self.last_token_target != self.id
                && self.txq.len() > txq_mark + 1
                && (self.txq.len() - txq_mark - 1) as u32 >= self.cfg.accelerate_from_frames
            {
                let tokbuf = self.txq.pop_back().expect("longer than the mark");
                self.txq.insert(txq_mark, tokbuf);
            }
        }

        self.after_visit(now, tok);
    }

    pub(crate) fn forward_token(&mut self, now: Instant) {
        self.holding = false;
        self.disarm(Timer::Hold);
        let mut b = self.take_buf();
        b.extend_from_slice(&self.last_token);
        let to = self.last_token_target;
        self.send_unicast(to, b);
        if to != self.id {
            self.arm(
                Timer::TokenRetransmit,
                now.plus_ms(self.cfg.token_retransmit_ms()),
            );
        }
    }

    fn after_visit(&mut self, now: Instant, tok: &Token) {
        match self.state {
            MemberState::Operational => {
                self.deliver_regular();
                let upto = seq::min(self.cur.delivered, self.cur.safe_line);
                let upto = self.unpinned_upto(upto);
                self.cur.store.release_upto(upto);
                // A node whose aru stays behind the ring leaves it cleanly.
                if self.cur.my_aru == self.last_visit_aru && seq::lt(self.cur.my_aru, tok.seq) {
                    self.fail_recv_count += 1;
                } else {
                    self.fail_recv_count = 0;
                }
                self.last_visit_aru = self.cur.my_aru;
                if self.fail_recv_count >= self.cfg.fail_recv_const {
                    self.stats.failed_to_receive += 1;
                    self.fail_recv_count = 0;
                    let procs = self.ring_members.clone();
                    let fails: Vec<NodeId> =
                        procs.iter().copied().filter(|&n| n != self.id).collect();
                    self.enter_gather(now, &procs, &fails);
                }
            }
            MemberState::Recovery => {
                // Recovery frames were unpacked into the old ring's store on
                // receipt; once every member has them they can go.
                let upto = self.unpinned_upto(self.cur.safe_line);
                self.cur.store.release_upto(upto);
                // Two consecutive visits with nothing pending, aru = seq and
                // no frame sent in between: every node was seen holding
                // every frame of the recovery, so all install in this rotation.
                let done = !tok.retrans_flg
                    && tok.aru == tok.seq
                    && self.cur.my_aru == tok.seq
                    && !self.recovery.pending();
                let r = &mut self.recovery;
                if done && r.install_count > 0 && r.install_seq == tok.seq {
                    r.install_count += 1;
                } else {
                    r.install_count = u32::from(done);
                }
                r.install_seq = tok.seq;
                if self.recovery.install_count >= 2 {
                    self.install(now);
                }
            }
            _ => {}
        }
    }

    /// Re-broadcasts the frames the token asks for that we hold.
    fn answer_retransmits(&mut self, tok: &mut Token, budget: u32) -> u32 {
        let mut sent = 0;
        let mut keep = 0usize;
        for i in 0..tok.rtr_len as usize {
            let s = tok.rtr[i];
            if sent < budget && self.cur.store.has(s) {
                let mut b = self.take_buf();
                b.extend_from_slice(self.cur.store.get(s).expect("checked"));
                wire::set_sender(&mut b, self.id);
                self.txq.push_back((Destination::Multicast, b));
                sent += 1;
                self.stats.frames_retransmitted += 1;
            } else {
                tok.rtr[keep] = s;
                keep += 1;
            }
        }
        tok.rtr_len = keep as u8;
        sent
    }

    /// Adds our own missing frames to the retransmission list once they have
    /// been missing for miss_count_const visits.
    fn request_gaps(&mut self, tok: &mut Token) {
        if crate::mutant!(self, NoRetransmitRequests) {
            return;
        }
        // With the Accelerated Ring the burst that follows this token may
        // still be in flight: only ask for what the previous token announced.
        let limit = if self.cfg.accelerated {
            seq::min(self.prev_token_seq_seen, tok.seq)
        } else {
            tok.seq
        };
        let mut s = self.cur.my_aru.wrapping_add(1);
        let mut n = 0;
        while seq::le(s, limit)
            && (tok.rtr_len as u32) < self.cfg.token_rtr_max()
            && n < self.cur.store.capacity()
        {
            if !self.cur.store.has(s) {
                let misses = self.cur.store.bump_miss(s);
                if misses >= self.cfg.miss_count_const && !tok.rtr().contains(&s) {
                    tok.rtr[tok.rtr_len as usize] = s;
                    tok.rtr_len += 1;
                }
            }
            s = s.wrapping_add(1);
            n += 1;
        }
    }

    /// Frames our send queue would need.
    fn backlog_frames(&self) -> u32 {
        // In recovery a node sends old-ring frames only; its send queue waits
        // for the new ring. Counting the queue there (Corosync counts the
        // recovery queue: `backlog_get`) gave the ring a backlog no one
        // could send, and each re-broadcaster a share of one frame a visit:
        // a recovery of thousands of frames took seconds.
        if self.state == MemberState::Recovery {
            let r = &self.recovery;
            return if r.pending() {
                r.high.wrapping_sub(r.next).wrapping_add(1)
            } else {
                0
            };
        }
        if self.sendq.is_empty() {
            return 0;
        }
        let per = self.cfg.max_payload().max(1);
        let bytes = self.sendq_bytes - self.head_offset + self.sendq.len() * wire::MSG_HEADER_LEN;
        (bytes.div_ceil(per)).min(u32::MAX as usize) as u32
    }

    /// May another frame be put on the ring without overrunning anyone's store?
    fn room_for_frame(&self, tok: &Token) -> bool {
        let next = tok.seq.wrapping_add(1);
        seq::dist(tok.aru, next) < self.cfg.retransmit_queue / 2 && self.cur.store.in_window(next)
    }

    fn send_new_frames(
        &mut self,
        tok: &mut Token,
        allowance: u32,
        bytes_left: &mut u32,
    ) -> (u32, u32) {
        let mut frames = 0;
        let mut bytes = 0u32;
        while frames < allowance
            && !self.sendq.is_empty()
            && *bytes_left > 0
            && self.room_for_frame(tok)
        {
            let Some(n) = self.build_frame(tok) else {
                break;
            };
            frames += 1;
            bytes = bytes.saturating_add(n);
            *bytes_left = bytes_left.saturating_sub(n);
        }
        (frames, bytes)
    }

    /// Packs queued messages (fragmenting the head one if needed) into one
    /// frame with the next seq. Returns the payload bytes it carries.
    fn build_frame(&mut self, tok: &mut Token) -> Option<u32> {
        let seq = tok.seq.wrapping_add(1);
        let guarantee = self.sendq.front().expect("non-empty").guarantee;
        let mut flags = 0;
        if guarantee == Guarantee::Safe {
            flags |= wire::MCAST_SAFE;
        }
        if self.cur.own_last.is_some() {
            flags |= wire::MCAST_HAS_PREV;
        }
        let h = McastHeader {
            sender: self.id,
            ring: self.cur.ring,
            seq,
            origin: self.id,
            flags,
            prev_own: self.cur.own_last.unwrap_or(0),
            delivered_upto: self.cur.delivered,
        };
        let mut b = self.take_buf();
        wire::encode_mcast_header(&h, &mut b);
        let count_at = b.len();
        b.extend_from_slice(&0u16.to_le_bytes());
        let limit = wire::MCAST_HEADER_LEN + self.cfg.max_payload();
        let mut carried = 0u32;
        while let Some(m) = self.sendq.front() {
            if m.guarantee != guarantee {
                break;
            }
            if crate::mutant!(self, DropOwnMessages)
                && self.head_offset == 0
                && m.handle.0 % 17 == 5
            {
                let m = self.sendq.pop_front().expect("front exists");
                self.sendq_bytes -= m.data.len();
                self.message_sequenced(m, seq);
                continue;
            }
            let room = limit.saturating_sub(b.len() + wire::MSG_HEADER_LEN);
            let remaining = m.data.len() - self.head_offset;
            let started = b.len() > count_at + 2;
            if remaining <= room {
                let kind = if self.head_offset == 0 {
                    FragKind::Whole
                } else {
                    FragKind::Last
                };
                wire::push_message(&mut b, count_at, kind, &m.data[self.head_offset..]);
                carried += remaining as u32;
                self.head_offset = 0;
                let m = self.sendq.pop_front().expect("front exists");
                self.sendq_bytes -= m.data.len();
                self.message_sequenced(m, seq);
            } else {
                if room < 64 && started {
                    break;
                }
                let kind = if self.head_offset == 0 {
                    FragKind::First
                } else {
                    FragKind::Middle
                };
                let end = self.head_offset + room;
                wire::push_message(&mut b, count_at, kind, &m.data[self.head_offset..end]);
                carried += room as u32;
                self.head_offset = end;
                break;
            }
        }
        if b.len() == count_at + 2 {
            // Nothing went in (only possible when a mutant dropped it all).
            self.give_buf(b);
            return None;
        }
        if !self.sendq.is_empty() {
            // More frames may follow in this visit: make this one full
            // length, so the burst leaves as one GSO send.
            wire::pad_payload(&mut b, limit);
        }
        tok.seq = seq;
        self.cur.own_last = Some(seq);
        let _ = self.cur.insert(seq, self.id, &b);
        self.stats.frames_sent += 1;
        self.txq.push_back((Destination::Multicast, b));
        Some(carried)
    }

    fn message_sequenced(&mut self, m: QueuedMsg, seq: u32) {
        if self.cfg.sent_events {
            self.push_event(Pending::Sent {
                handle: m.handle,
                ring: self.cur.ring,
                seq,
            });
        }
        if m.data.capacity() <= POOLED_MSG_MAX && self.msg_pool.len() < POOL_MAX {
            self.msg_pool.push(m.data);
        }
    }

    /// Recovery: re-broadcast our old-ring frames the others may lack,
    /// each encapsulated in a frame of the new ring.
    fn send_recovery_frames(
        &mut self,
        tok: &mut Token,
        allowance: u32,
        bytes_left: &mut u32,
    ) -> (u32, u32) {
        let mut frames = 0;
        let mut bytes = 0u32;
        while frames < allowance
            && self.recovery.pending()
            && *bytes_left > 0
            && self.room_for_frame(tok)
        {
            let s = self.recovery.next;
            self.recovery.next = s.wrapping_add(1);
            if !self.old.as_ref().is_some_and(|o| o.store.has(s)) {
                continue;
            }
            let seq = tok.seq.wrapping_add(1);
            let h = McastHeader {
                sender: self.id,
                ring: self.cur.ring,
                seq,
                origin: self.id,
                flags: wire::MCAST_ENCAPSULATED,
                prev_own: 0,
                delivered_upto: 0,
            };
            let mut b = self.take_buf();
            wire::encode_mcast_header(&h, &mut b);
            let inner = self
                .old
                .as_ref()
                .and_then(|o| o.store.get(s))
                .expect("checked");
            b.extend_from_slice(inner);
            let n = inner.len() as u32;
            tok.seq = seq;
            let _ = self.cur.insert(seq, self.id, &b);
            self.stats.frames_sent += 1;
            self.txq.push_back((Destination::Multicast, b));
            frames += 1;
            bytes = bytes.saturating_add(n);
            *bytes_left = bytes_left.saturating_sub(n);
        }
        (frames, bytes)
    }
}
