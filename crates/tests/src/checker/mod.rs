//! One checker per EVS property (I1–I14 of `shared/EVS-INVARIANTS.md`),
//! fed incrementally with the trace of a simulated run.
//!
//! Every trace event costs O(1) or O(log n) amortized: messages get a rank
//! on their ring when they are sent (`Sent` events of one ring are emitted
//! in sequence order, the token being in one place at a time), so ordering,
//! gap, FIFO and causality checks compare counters instead of sets.
//!
//! Incarnations: a restarted node is a new incarnation. Everything a
//! property says about "p" is per incarnation, except I3's ring-seq
//! monotonicity, which holds across restarts (ring seqs are persisted).
//! A node that crashes or leaves is excused from what it would have had to
//! do "before its next configuration" (I7, I10).

mod config;
mod delivery;
mod flow;
mod liveness;

use std::collections::{BTreeMap, HashMap, HashSet};

use totem_ring::{Config, Guarantee, NodeId, RingId};

pub use flow::Visit;
pub use liveness::FinalNode;

use crate::sim::payload::MsgId;

/// A configuration as the trace names it: a regular one by its ring, a
/// transitional one by (old ring, new ring). A transitional before a
/// node's first regular configuration has no old ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum ConfId {
    Regular(RingId),
    Trans { old: Option<RingId>, new: RingId },
}

impl std::fmt::Display for ConfId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfId::Regular(r) => write!(f, "Regular({})", ring_str(*r)),
            ConfId::Trans { old: Some(o), new } => {
                write!(f, "Trans({} → {})", ring_str(*o), ring_str(*new))
            }
            ConfId::Trans { old: None, new } => write!(f, "Trans(none → {})", ring_str(*new)),
        }
    }
}

/// The first property found broken in a run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Violation {
    /// "I1" … "I14", or "panic" / "livelock" / "api" for a core that
    /// panicked, spun, or broke its API contract.
    pub invariant: &'static str,
    pub at_ns: u64,
    /// The node concerned (0 = none in particular).
    pub node: NodeId,
    pub detail: String,
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} at {}.{:06} ms node {}: {}",
            self.invariant,
            self.at_ns / 1_000_000,
            self.at_ns % 1_000_000,
            self.node,
            self.detail
        )
    }
}

/// Where a message sits on the ring it was sent on.
#[derive(Clone, Copy, Debug)]
struct SendInfo {
    ring: RingId,
    seq: u32,
    /// Position in the ring's total order (0, 1, 2, … in `Sent` order).
    rank: u32,
    /// Position among the sender's messages on this ring.
    ordinal: u32,
    /// The sender had delivered ranks `0..frontier` of this ring when it
    /// sent the message (causal predecessors).
    frontier: u32,
}

struct MsgInfo {
    guarantee: Guarantee,
    len: u32,
    send: Option<SendInfo>,
    /// Someone delivered it as safe in the regular configuration of its ring.
    safe_in_regular: bool,
}

struct Installer {
    node: NodeId,
    inc: u32,
    /// Installed its next regular configuration (so it is done with the ring).
    finished: bool,
}

#[derive(Default)]
struct RingInfo {
    /// Members as reported by the first node that installed Regular(ring).
    members: Option<Vec<NodeId>>,
    sent: u32,
    /// (seq, sender, handle) of the last message sent on the ring.
    last_key: Option<(u32, NodeId, u64)>,
    per_sender: BTreeMap<NodeId, u32>,
    safe_msgs: Vec<MsgId>,
    installers: Vec<Installer>,
}

/// A node's deliveries on one ring.
#[derive(Default)]
struct Cursor {
    ring: Option<RingId>,
    count: u32,
    /// Ranks `0..prefix` of the ring have all been delivered.
    prefix: u32,
    last_rank: Option<u32>,
    per_sender: BTreeMap<NodeId, u32>,
}

/// Per node; everything but `max_ring_seq` is per incarnation.
#[derive(Default)]
struct NodeCk {
    inc: u32,
    alive: bool,
    cur: Option<ConfId>,
    last_regular: Option<(RingId, Vec<NodeId>)>,
    /// The last configuration installed was this transitional (new ring, members).
    pending_trans: Option<(RingId, Vec<NodeId>)>,
    max_ring_seq: Option<u64>,
    /// (count, sum of mixed ids) of the deliveries in `cur`.
    digest: (u64, u64),
    cursor: Cursor,
    /// Own messages sent and not yet delivered, with their ring (I7).
    own_undelivered: BTreeMap<MsgId, RingId>,
    /// Messages this incarnation's `submit` accepted (I14).
    accepted: Vec<MsgId>,
    token: Option<(RingId, u32)>,
}

/// Counters of a run, from the trace.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TraceCounts {
    pub sent: u64,
    pub delivered: u64,
    pub regular_configs: u64,
    pub transitional_configs: u64,
    pub token_visits: u64,
}

pub struct Checker {
    /// The windows (I12): `window_for` the ring's size.
    flow: Config,
    max_messages: u32,
    retransmit_queue: u32,
    /// Bounds from the configuration (I13), not from the core's own report.
    send_queue_messages: u32,
    send_queue_bytes: u32,
    max_message_size: u32,
    nodes: Vec<NodeCk>,
    msgs: HashMap<MsgId, MsgInfo>,
    rings: BTreeMap<RingId, RingInfo>,
    /// (node, incarnation, message) for every delivery.
    delivered: HashSet<(NodeId, u32, MsgId)>,
    /// (new ring, old ring) → members of that transitional configuration.
    trans_groups: BTreeMap<(RingId, Option<RingId>), Vec<NodeId>>,
    /// new ring → node → the node's previous regular ring when it moved there.
    came_from: BTreeMap<RingId, BTreeMap<NodeId, Option<RingId>>>,
    /// (c, c') → (deliveries in c, sum of mixed ids, first reporter) (I6).
    transitions: BTreeMap<(ConfId, ConfId), (u64, u64, NodeId)>,
    /// ring → frames broadcast at each token visit reported on it (I12,
    /// counted here rather than trusted from the token).
    rotations: BTreeMap<RingId, flow::Rotations>,
    /// The ring all live nodes were on at the end of the healed phase (I14).
    converged_ring: Option<RingId>,
    now: u64,
    violation: Option<Violation>,
    hash: u64,
    trace: bool,
    pub counts: TraceCounts,
}

fn mix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn ring_str(r: RingId) -> String {
    format!("{}:{}", r.rep, r.seq)
}

impl Checker {
    pub fn new(nodes: u32, config: &Config, trace: bool) -> Checker {
        Checker {
            flow: config.clone(),
            max_messages: config.max_messages,
            retransmit_queue: config.retransmit_queue,
            send_queue_messages: config.send_queue_messages,
            send_queue_bytes: config.send_queue_bytes,
            max_message_size: config.max_message_size,
            nodes: (0..nodes).map(|_| NodeCk::default()).collect(),
            msgs: HashMap::new(),
            rings: BTreeMap::new(),
            delivered: HashSet::new(),
            trans_groups: BTreeMap::new(),
            came_from: BTreeMap::new(),
            transitions: BTreeMap::new(),
            rotations: BTreeMap::new(),
            converged_ring: None,
            now: 0,
            violation: None,
            hash: 0x5151_5eed,
            trace,
            counts: TraceCounts::default(),
        }
    }

    pub fn violation(&self) -> Option<&Violation> {
        self.violation.as_ref()
    }

    /// Hash of every trace event so far (same seed ⇒ same hash).
    pub fn trace_hash(&self) -> u64 {
        self.hash
    }

    /// Records a violation (only the first one of a run is kept).
    pub fn fail(&mut self, invariant: &'static str, node: NodeId, detail: String) {
        if self.trace {
            eprintln!(
                "{:>14} VIOLATION {invariant} node {node}: {detail}",
                self.now
            );
        }
        if self.violation.is_none() {
            self.violation = Some(Violation {
                invariant,
                at_ns: self.now,
                node,
                detail,
            });
        }
    }

    fn hash_event(&mut self, words: &[u64]) {
        let mut h = self.hash ^ mix(self.now);
        for &w in words {
            h = mix(h ^ w);
        }
        self.hash = h;
    }

    fn node(&mut self, p: NodeId) -> &mut NodeCk {
        &mut self.nodes[p as usize - 1]
    }

    fn log(&self, p: NodeId, what: std::fmt::Arguments<'_>) {
        if self.trace {
            eprintln!("{:>14} n{p} {what}", self.now);
        }
    }

    pub fn set_now(&mut self, now: u64) {
        self.now = now;
    }

    /// `restart(p)`: a new incarnation of p starts (also the first start).
    pub fn restart(&mut self, p: NodeId) {
        self.hash_event(&[1, u64::from(p)]);
        let n = self.node(p);
        let keep = n.max_ring_seq;
        let inc = n.inc + 1;
        *n = NodeCk {
            inc,
            alive: true,
            max_ring_seq: keep,
            ..NodeCk::default()
        };
        self.log(p, format_args!("restart (incarnation {inc})"));
    }

    /// `crash(p)`; `graceful` for a node that called `leave()`.
    pub fn crash(&mut self, p: NodeId, graceful: bool) {
        self.hash_event(&[2, u64::from(p), u64::from(graceful)]);
        self.node(p).alive = false;
        self.log(
            p,
            format_args!("{}", if graceful { "left" } else { "crash" }),
        );
    }

    pub fn pause(&mut self, p: NodeId, paused: bool) {
        self.hash_event(&[3, u64::from(p), u64::from(paused)]);
        self.log(
            p,
            format_args!("{}", if paused { "pause" } else { "resume" }),
        );
    }

    /// `submit` accepted message `id` at p.
    pub fn submitted(&mut self, p: NodeId, id: MsgId, guarantee: Guarantee, len: u32) {
        self.hash_event(&[4, u64::from(p), id, len.into()]);
        self.msgs.insert(
            id,
            MsgInfo {
                guarantee,
                len,
                send: None,
                safe_in_regular: false,
            },
        );
        self.node(p).accepted.push(id);
    }
}

#[cfg(test)]
mod tests;
