//! Every timing constant and window of the protocol, under Corosync's names
//! and with Corosync's defaults (all times in milliseconds, as in
//! `corosync.conf`), plus the options Corosync lacks.

use crate::wire;

/// Protocol configuration. Build it with [`Config::default`] (Corosync's
/// defaults) or [`Config::low_latency`], adjust fields, then hand it to
/// [`crate::Totem::new`], which validates it.
#[derive(Clone, Debug, PartialEq)]
pub struct Config {
    /// Token loss timeout (ms). Corosync: `token`, default 3000.
    pub token: u64,
    /// Added to `token` per node above two by [`Config::for_nodes`] (ms).
    /// Corosync: `token_coefficient`, default 650.
    pub token_coefficient: u64,
    /// Token retransmissions before the token is declared lost.
    /// Corosync: `token_retransmits_before_loss_const`, default 4.
    pub token_retransmits_before_loss_const: u32,
    /// Token retransmit timeout (ms); `None` derives token / (retransmits + 0.2).
    pub token_retransmit: Option<u64>,
    /// Token hold time when the ring is idle (ms); `None` derives 0.8 × token_retransmit.
    pub hold: Option<u64>,
    /// Interval between join messages in gather (ms). Corosync: `join`, default 50.
    pub join: u64,
    /// Consensus timeout (ms); `None` derives 1.2 × token. Corosync: `consensus`.
    pub consensus: Option<u64>,
    /// Interval of merge-detect messages from a ring's representative (ms).
    /// Corosync: `merge`, default 200.
    pub merge: u64,
    /// Accepted for configuration compatibility; interface re-checks are the
    /// transport's business (ms). Corosync: `downcheck`, default 1000.
    pub downcheck: u64,
    /// Token visits with our aru stuck behind the ring before we leave the
    /// ring as a failed receiver. Corosync: `fail_recv_const`, default 2500.
    pub fail_recv_const: u32,
    /// Idle rotations before the node that sent last (else the
    /// representative) holds the token. Corosync: `seqno_unchanged_const`,
    /// default 30; ours 4: a ring idle for four rotations (half a
    /// millisecond on 3 nodes here) stops circulating the token, so a
    /// lone sender's next message leaves at once and idle daemons sleep.
    /// On larger rings [`Config::hold_after_idle_hops`] may shorten it.
    pub seqno_unchanged_const: u32,
    /// Idle token hops after which the idle token is held, when that is
    /// sooner than `seqno_unchanged_const` rotations: the holder stops at
    /// the smaller of `seqno_unchanged_const` and ⌈this ÷ ring members⌉
    /// (at least 1) idle visits. A rotation of 12 nodes takes four times
    /// the hops of one of 3, so with rotations alone a ring of 12 kept an
    /// idle token circulating four times as long, and a sender at 1000
    /// messages a second found it resting almost never. 0 = rotations only
    /// (Corosync's behaviour; the daemon sets 0 when corosync.conf names
    /// `seqno_unchanged_const`). Ours: 12 (4 rotations of 3 nodes, 2 of 6,
    /// 1 of 12).
    pub hold_after_idle_hops: u32,
    /// Token visits a gap must be seen before it is put on the retransmit
    /// list. Corosync: `miss_count_const`, default 5.
    pub miss_count_const: u32,
    /// Frames broadcast per token rotation by all nodes together.
    /// Corosync: `window_size`, default 50; ours 150. A visit's frames
    /// leave as one GSO send, so a rotation costs about the same for 17
    /// frames a node as for 50: three times the window moved 15–40% more
    /// bytes at 16 KiB to 1 MiB messages in `cluster-bench` (3 nodes).
    pub window_size: u32,
    /// Frames broadcast per token visit by one node. Corosync:
    /// `max_messages`, default 17; ours 50 (a third of the window).
    pub max_messages: u32,
    /// Frames per rotation per ring member. A rotation's window is the
    /// larger of `window_size` and this × the ring's members (at most what
    /// keeps 4 windows inside the retransmit store), so that a larger ring
    /// does not cut each node's share: with a fixed window a 12-node ring
    /// gives every sender a quarter of what a 3-node ring does, while the
    /// rotation takes four times as many hops. Visits stay bounded by
    /// `max_messages`, so no burst grows. 0 = a fixed `window_size`
    /// (Corosync's behaviour; the daemon sets 0 when corosync.conf names
    /// `window_size`). Ours: 50.
    pub window_per_member: u32,
    /// Byte-based window: payload bytes broadcast per rotation by all nodes
    /// together (0 = off, frames only).
    pub window_bytes: u32,
    /// Network MTU (bytes). Corosync: `netmtu`, default 1500.
    pub netmtu: u32,
    /// Bytes of every datagram taken by IP, UDP and the transport's
    /// authentication/encryption; a Totem frame is at most netmtu − this.
    pub frame_overhead: u32,
    /// Capacity of the receive/retransmit store in frames. Corosync's
    /// retransmit queue: 16384.
    pub retransmit_queue: u32,
    /// Entries on the token's retransmission list (≤ [`wire::MAX_RTR`]).
    pub rtr_max: u32,
    /// Largest message accepted by `submit` (bytes). Corosync: 1 MiB.
    pub max_message_size: u32,
    /// Bound of the send queue in messages.
    pub send_queue_messages: u32,
    /// Bound of the send queue in bytes.
    pub send_queue_bytes: u32,
    /// Accelerated Ring: pass the token before the burst's frames, and ask
    /// for retransmission only up to the previous token's seq.
    pub accelerated: bool,
    /// With `accelerated`: only a visit whose burst has at least this many
    /// frames passes the token ahead of it (0: every visit).
    pub accelerate_from_frames: u32,
    /// Deliver a message that came in pieces (fragmented) and has at least
    /// this many bytes where it lies in the retransmit store, as
    /// [`crate::Event::DeliverParts`], instead of reassembling it into one
    /// buffer: a copy fewer. 0 = never (every message is one buffer). Frames
    /// that queued events point at stay in the store until they are polled;
    /// the old ring's messages delivered at a membership change are copied
    /// as before. The daemon: 8192 (below that the bookkeeping of the pieces
    /// costs more than the copy: 14% more instructions a message at 1 KiB,
    /// where a message packed behind another is often cut in two).
    pub deliver_parts_from: u32,
    /// Report every sequenced message as [`crate::Event::Sent`] (the
    /// simulator's checker maps handles to sequence numbers with it). An
    /// application that does not read them turns them off: one event fewer
    /// per message it sends.
    pub sent_events: bool,
    /// First message sequence number of every ring minus one (tests start
    /// it near wraparound; Corosync starts at 0).
    pub initial_seq: u32,
    /// A known bug to re-insert (simulator checker proofs only).
    #[cfg(feature = "mutants")]
    pub mutant: Option<crate::Mutant>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            token: 3000,
            token_coefficient: 650,
            token_retransmits_before_loss_const: 4,
            token_retransmit: None,
            hold: None,
            join: 50,
            consensus: None,
            merge: 200,
            downcheck: 1000,
            fail_recv_const: 2500,
            seqno_unchanged_const: 4,
            hold_after_idle_hops: 12,
            miss_count_const: 5,
            window_size: 150,
            max_messages: 50,
            window_per_member: 50,
            window_bytes: 0,
            netmtu: 1500,
            frame_overhead: 28 + 64,
            retransmit_queue: 16384,
            rtr_max: 30,
            max_message_size: 1 << 20,
            send_queue_messages: 65536,
            send_queue_bytes: 16 << 20,
            accelerated: false,
            accelerate_from_frames: 0,
            deliver_parts_from: 0,
            sent_events: true,
            initial_seq: 0,
            #[cfg(feature = "mutants")]
            mutant: None,
        }
    }
}

/// A configuration value that cannot work, named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    pub key: &'static str,
    pub reason: String,
}

impl std::fmt::Display for ConfigError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "totem.{}: {}", self.key, self.reason)
    }
}

impl std::error::Error for ConfigError {}

fn bad(key: &'static str, reason: impl Into<String>) -> ConfigError {
    ConfigError {
        key,
        reason: reason.into(),
    }
}

impl Config {
    /// Idle visits after which the idle token's holder keeps it, on a ring
    /// of `members` nodes: see [`Config::hold_after_idle_hops`].
    pub fn idle_visits_before_hold(&self, members: usize) -> u32 {
        let rotations = self.seqno_unchanged_const;
        if self.hold_after_idle_hops == 0 || members == 0 {
            return rotations;
        }
        let by_hops = self.hold_after_idle_hops.div_ceil(members as u32).max(1);
        rotations.min(by_hops)
    }

    /// The window (frames per rotation, all nodes together) of a ring of
    /// `members` nodes: see [`Config::window_per_member`].
    pub fn window_for(&self, members: usize) -> u32 {
        let store_cap = u64::from(self.retransmit_queue.saturating_sub(64) / 4);
        let scaled = (u64::from(self.window_per_member) * members as u64).min(store_cap);
        self.window_size.max(scaled as u32)
    }

    /// The documented low-latency profile for telecom use: a lost node is
    /// noticed after 20 ms without a token, and the survivors have installed
    /// the new ring after one consensus period more (≈ 45–50 ms in all; 51 ms
    /// kill → CPG confchg measured by cluster-bench on a loaded 2-core VM,
    /// with no false membership change). It needs a network whose round
    /// trip stays well under the token retransmit interval (20 / 1.2 ≈
    /// 16 ms) and a daemon that is never descheduled for longer than that.
    /// As corosync.conf keys: `token: 20`, `token_coefficient: 0`,
    /// `token_retransmits_before_loss_const: 1`, `consensus: 24`,
    /// `join: 10`, `merge: 50`.
    pub fn low_latency() -> Self {
        Config {
            token: 20,
            token_coefficient: 0,
            token_retransmits_before_loss_const: 1,
            join: 10,
            consensus: Some(24),
            merge: 50,
            ..Config::default()
        }
    }

    /// Applies `token_coefficient` for a nodelist of `nodes` entries the way
    /// Corosync does: token + (nodes − 2) × coefficient when nodes > 2.
    pub fn for_nodes(mut self, nodes: u32) -> Self {
        if nodes > 2 {
            self.token += u64::from(nodes - 2) * self.token_coefficient;
        }
        self
    }

    pub fn token_retransmit_ms(&self) -> u64 {
        self.token_retransmit.unwrap_or_else(|| {
            let d = f64::from(self.token_retransmits_before_loss_const) + 0.2;
            ((self.token as f64) / d) as u64
        })
    }

    pub fn hold_ms(&self) -> u64 {
        self.hold
            .unwrap_or_else(|| (self.token_retransmit_ms() as f64 * 0.8) as u64)
    }

    pub fn consensus_ms(&self) -> u64 {
        self.consensus.unwrap_or((self.token as f64 * 1.2) as u64)
    }

    /// Largest Totem frame this configuration lets the core build.
    pub fn max_frame(&self) -> usize {
        self.netmtu.saturating_sub(self.frame_overhead) as usize
    }

    /// The most members a ring can have: its commit token (an entry a
    /// member) and a join listing all of them as processors and as failed
    /// must each fit one frame, as must the wire's member limit.
    pub fn max_ring_members(&self) -> usize {
        let frame = self.max_frame();
        let commit = frame.saturating_sub(wire::COMMIT_FIXED_LEN) / wire::COMMIT_ENTRY_LEN;
        let join = frame.saturating_sub(wire::JOIN_FIXED_LEN) / 8;
        commit.min(join).min(wire::MAX_MEMBERS)
    }

    /// The most retransmission requests a token carries: `rtr_max`, or
    /// fewer where a token with that many would not fit a frame (a small
    /// netmtu; the simulator found tokens of 278 bytes on a 263-byte frame).
    pub fn token_rtr_max(&self) -> u32 {
        let fit = self.max_frame().saturating_sub(wire::TOKEN_FIXED_LEN) / 4;
        self.rtr_max.min(fit as u32)
    }

    /// Largest payload area of a non-encapsulated multicast frame: room is
    /// kept so the same frame still fits when it is re-broadcast inside a
    /// recovery frame.
    pub fn max_payload(&self) -> usize {
        self.max_frame().saturating_sub(wire::MCAST_HEADER_LEN * 2)
    }

    /// Checks every value and the relations between them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.token == 0 {
            return Err(bad("token", "must be > 0 ms"));
        }
        if self.token_retransmits_before_loss_const == 0 {
            return Err(bad("token_retransmits_before_loss_const", "must be ≥ 1"));
        }
        if self.token_retransmit_ms() == 0 || self.token_retransmit_ms() >= self.token {
            return Err(bad("token_retransmit", "must be > 0 and < token"));
        }
        if self.hold_ms() >= self.token_retransmit_ms() {
            return Err(bad("hold", "must be < token_retransmit"));
        }
        if self.join == 0 {
            return Err(bad("join", "must be > 0 ms"));
        }
        if self.consensus_ms() < self.join {
            return Err(bad("consensus", "must be ≥ join"));
        }
        if self.merge == 0 {
            return Err(bad("merge", "must be > 0 ms"));
        }
        if self.window_size == 0 || self.max_messages == 0 {
            return Err(bad(
                "window_size",
                "window_size and max_messages must be ≥ 1",
            ));
        }
        // A window that grows with the ring holds a visit from one member
        // up; a fixed one must hold it as written.
        if self.max_messages > self.window_for(1) {
            return Err(bad(
                "max_messages",
                "must be ≤ window_size (or, where the window grows with the ring, ≤ window_per_member)",
            ));
        }
        if self.fail_recv_const == 0 || self.miss_count_const == 0 {
            return Err(bad(
                "fail_recv_const",
                "fail_recv_const and miss_count_const must be ≥ 1",
            ));
        }
        if self.max_payload() < 64 || self.max_frame() > 65_000 {
            return Err(bad(
                "netmtu",
                "leaves a frame outside 64 + headers ..= 65000 bytes",
            ));
        }
        if self.window_size > 1 << 18 {
            return Err(bad("window_size", "must be ≤ 262144"));
        }
        if self.retransmit_queue < 4 * self.window_size + 64
            || !self.retransmit_queue.is_power_of_two()
            || self.retransmit_queue > 1 << 20
        {
            return Err(bad(
                "retransmit_queue",
                "must be a power of two ≥ 4 × window_size + 64 and ≤ 1048576",
            ));
        }
        if self.rtr_max == 0 || self.rtr_max as usize > wire::MAX_RTR {
            return Err(bad("rtr_max", format!("must be 1..={}", wire::MAX_RTR)));
        }
        if self.max_message_size == 0 || self.max_message_size > 16 << 20 {
            return Err(bad("max_message_size", "must be 1..=16 MiB"));
        }
        if self.send_queue_messages == 0 || self.send_queue_bytes < self.max_message_size {
            return Err(bad(
                "send_queue_bytes",
                "send queue must hold at least one message of max_message_size",
            ));
        }
        Ok(())
    }
}
