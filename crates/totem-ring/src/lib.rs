//! Totem single-ring ordering and membership protocol (Totem SRP with
//! Extended Virtual Synchrony) as a pure state machine.
//!
//! No clock, socket, thread or randomness: the driver (the daemon's run loop
//! or the simulator) feeds datagrams, timeouts and persistence completions
//! in, and pulls transmissions, events and the next deadline out, in the
//! style of quinn-proto:
//!
//! ```text
//! handle_datagram(now, from, bytes)   poll_transmit(now) -> Transmit
//! handle_timeout(now)                 poll_timeout()     -> Instant
//! handle_persisted(now, ring_seq)     poll_event()       -> Event
//! submit(msg, guarantee)              leave(now)
//! ```
//!
//! See `../shared/EVS-INVARIANTS.md` for the properties the simulator checks.
#![forbid(unsafe_code)]

/// `mutant!(self, Name)`: whether the known bug `Name` is switched on
/// (always false without the `mutants` feature).
macro_rules! mutant {
    ($self:expr, $m:ident) => {{
        #[cfg(feature = "mutants")]
        let on = $self.cfg.mutant == Some($crate::Mutant::$m);
        #[cfg(not(feature = "mutants"))]
        let on = false;
        on
    }};
}
pub(crate) use mutant;

mod config;
mod deliver;
mod membership;
pub mod seq;
mod srp;
mod store;
pub mod wire;

pub use config::{Config, ConfigError};
pub use deliver::Parts;
pub use srp::{DropReason, MemberState, Stats, Totem, DROP_REASONS};

/// A node's identifier on the ring (Corosync's nodeid). 0 is never valid.
pub type NodeId = u32;

/// Protocol time in nanoseconds since an arbitrary origin chosen by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Instant(pub u64);

impl Instant {
    pub fn plus_ms(self, ms: u64) -> Instant {
        Instant(self.0.saturating_add(ms.saturating_mul(1_000_000)))
    }
}

/// Identity of a ring: its representative and a sequence number that grows
/// with every new ring and is persisted by every member before use.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct RingId {
    pub rep: NodeId,
    pub seq: u64,
}

/// Delivery guarantee of a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Guarantee {
    /// Delivered in total order once every earlier message has been delivered.
    Agreed,
    /// Additionally held back until every member of the ring is known to
    /// have received it (the token's aru covered it on two visits).
    Safe,
}

/// Where a datagram goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Destination {
    /// To every node (multicast, or one send per member with udpu).
    Multicast,
    /// To one node (the token and the commit token).
    Unicast(NodeId),
}

/// A datagram to send. The bytes are valid until the next call on the core.
#[derive(Debug)]
pub struct Transmit<'a> {
    pub dest: Destination,
    pub bytes: &'a [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ConfigKind {
    /// Members that came with this node from its previous regular ring.
    Transitional,
    Regular,
}

/// Handle of a submitted message; the `Sent` event reports it once the
/// message (its last fragment) has been given its place on a ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MsgHandle(pub u64);

/// Output of the core, in the order the application must see it.
#[derive(Debug)]
pub enum Event<'a> {
    /// A message delivered to the application.
    Deliver {
        payload: &'a [u8],
        sender: NodeId,
        ring: RingId,
        /// Sequence number of the frame that completed the message.
        seq: u32,
        guarantee: Guarantee,
    },
    /// A message delivered in the pieces it travelled in (a fragmented one
    /// of at least [`Config::deliver_parts_from`] bytes): its bytes are
    /// `parts` in order. `seq` is the frame that completed it.
    DeliverParts {
        parts: Parts<'a>,
        sender: NodeId,
        ring: RingId,
        seq: u32,
        guarantee: Guarantee,
    },
    /// A configuration change. For a transitional configuration `ring_id` is
    /// the new ring being installed.
    ConfigChange {
        kind: ConfigKind,
        members: &'a [NodeId],
        left: &'a [NodeId],
        joined: &'a [NodeId],
        ring_id: RingId,
    },
    /// Write this ring seq to stable storage and report completion with
    /// [`Totem::handle_persisted`]; the core will not use it before.
    PersistRingSeq(u64),
    /// A submitted message was sequenced (its last fragment got `seq` on `ring`).
    Sent {
        handle: MsgHandle,
        ring: RingId,
        seq: u32,
    },
    /// This node forwarded the token: what it broadcast during the visit.
    /// For statistics and the simulator's flow-control checker.
    TokenVisit {
        ring: RingId,
        token_seq: u32,
        new_frames: u32,
        retransmits: u32,
        /// Members of the ring the token circulates on.
        ring_size: u32,
        /// Frames broadcast on the ring during the rotation that ends with
        /// this visit (the token's fcc after this node's update).
        rotation_frames: u32,
    },
}

/// Current and maximum sizes of the core's bounded queues (for the
/// simulator's bounded-memory checker and for statistics).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct QueueBounds {
    /// Frames held in the receive/retransmit store of the current ring.
    pub store_len: u32,
    pub store_cap: u32,
    /// Frames held for the previous ring during recovery.
    pub old_store_len: u32,
    pub send_queue_msgs: u32,
    pub send_queue_msgs_cap: u32,
    pub send_queue_bytes: u32,
    pub send_queue_bytes_cap: u32,
    /// Bytes held in per-sender reassembly buffers.
    pub reassembly_bytes: u32,
    pub reassembly_cap: u32,
}

/// Why `submit` refused a message.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SubmitError {
    /// The bounded send queue is full: try again after some deliveries.
    QueueFull,
    /// Larger than `max_message_size`.
    TooLarge,
    /// Empty messages carry nothing and are refused.
    Empty,
    /// The node has left the ring.
    Left,
}

impl std::fmt::Display for SubmitError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            SubmitError::QueueFull => "send queue full (try again)",
            SubmitError::TooLarge => "message larger than max_message_size",
            SubmitError::Empty => "empty message",
            SubmitError::Left => "node has left the ring",
        })
    }
}

impl std::error::Error for SubmitError {}

/// Bugs that the simulator re-inserts to prove its checkers (feature `mutants`).
#[cfg(feature = "mutants")]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mutant {
    /// Deliver agreed frames past a gap in the regular configuration.
    DeliverPastGap,
    /// Install the new regular configuration without a transitional one.
    SkipTransitional,
    /// Forget the persisted ring seq on restart (reuse ring seqs).
    ReuseRingSeq,
    /// Deliver old-ring messages in the new regular configuration.
    OldMessagesInNewRegular,
    /// Deliver safe messages as soon as they are received.
    SafeTooEarly,
    /// Ignore flow control: broadcast the whole backlog on every visit.
    IgnoreWindow,
    /// Accept duplicate tokens (no token_seq check).
    AcceptOldToken,
    /// Drop own messages from the send queue without sending them.
    DropOwnMessages,
    /// Deliver a duplicate of each retransmitted frame.
    DeliverDuplicates,
    /// Report a transitional configuration containing every new member.
    WrongTransitional,
    /// Skip recovery: never re-broadcast old-ring messages.
    NoRecovery,
    /// Put the token's seq/aru bookkeeping wrong: never request retransmissions.
    NoRetransmitRequests,
    /// Leave unpolled deliveries pointing into a store that a ring change
    /// resets or moves (no copy made first).
    KeepRefsAcrossRings,
}

#[cfg(feature = "mutants")]
impl Mutant {
    pub const ALL: [Mutant; 13] = [
        Mutant::DeliverPastGap,
        Mutant::SkipTransitional,
        Mutant::ReuseRingSeq,
        Mutant::OldMessagesInNewRegular,
        Mutant::SafeTooEarly,
        Mutant::IgnoreWindow,
        Mutant::AcceptOldToken,
        Mutant::DropOwnMessages,
        Mutant::DeliverDuplicates,
        Mutant::WrongTransitional,
        Mutant::NoRecovery,
        Mutant::NoRetransmitRequests,
        Mutant::KeepRefsAcrossRings,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Mutant::DeliverPastGap => "deliver-past-gap",
            Mutant::SkipTransitional => "skip-transitional",
            Mutant::ReuseRingSeq => "reuse-ring-seq",
            Mutant::OldMessagesInNewRegular => "old-message-in-new-regular",
            Mutant::SafeTooEarly => "safe-too-early",
            Mutant::IgnoreWindow => "ignore-window",
            Mutant::AcceptOldToken => "accept-old-token",
            Mutant::DropOwnMessages => "drop-own-messages",
            Mutant::DeliverDuplicates => "deliver-duplicates",
            Mutant::WrongTransitional => "wrong-transitional",
            Mutant::NoRecovery => "no-recovery",
            Mutant::NoRetransmitRequests => "no-retransmit-requests",
            Mutant::KeepRefsAcrossRings => "keep-refs-across-rings",
        }
    }

    pub fn from_name(s: &str) -> Option<Mutant> {
        Mutant::ALL.iter().copied().find(|m| m.name() == s)
    }
}
