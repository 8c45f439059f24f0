//! An in-memory N-node ring: N [`Totem`] cores with ids `1..=N`, a virtual
//! clock and a perfect network (no loss, no reordering, no latency), without
//! sockets or threads.
//!
//! It is the fixture for measuring the core itself: the allocation test, the
//! criterion benches and the callgrind workload all drive it. The driver
//! therefore keeps its own hot path free of allocation: datagram buffers come
//! from a pool and go back to it, the in-flight queue and the payload buffer
//! keep their capacity, and everything grows only while warming up.
//!
//! Network model: every transmit is copied into a pooled buffer and queued in
//! one FIFO; a `Multicast` reaches every other node, a `Unicast` its target,
//! so every link is FIFO. Time stands still while datagrams are in flight and
//! jumps to the earliest deadline when none are (a zero-latency network).
//! Persistence requests are acknowledged at once.

use std::collections::VecDeque;

use totem_ring::{
    Config, ConfigError, Destination, Event, Guarantee, Instant, MemberState, MsgHandle, NodeId,
    SubmitError, Totem,
};

/// Datagrams the in-flight queue and the buffer pool are sized for up front.
const INITIAL_IN_FLIGHT: usize = 4096;
/// Steps [`MemRing::form`] allows before it gives up.
const FORM_STEP_LIMIT: u64 = 1_000_000;
/// Steps per delivered message (per node) a workload may take before it is
/// declared stalled; generous, a healthy ring needs far less than one.
const STEPS_PER_MESSAGE_LIMIT: u64 = 64;

/// What one node saw, counted by the driver.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct NodeCounters {
    /// Messages delivered to this node (from every sender).
    pub delivered: u64,
    pub delivered_bytes: u64,
    /// This node's own messages delivered back to it.
    pub own_delivered: u64,
    /// Messages this node's application submitted.
    pub submitted: u64,
    pub config_changes: u64,
    pub datagrams_sent: u64,
    pub datagrams_received: u64,
    /// Order-sensitive hash of (sender, length, first 8 payload bytes) of
    /// every delivered message: equal on every node iff they delivered the
    /// same messages in the same order (up to hash collisions).
    pub delivery_digest: u64,
}

/// The driver ran out of steps or of things to do before its goal was met.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stalled {
    pub steps: u64,
    pub now: Instant,
    pub what: &'static str,
}

impl std::fmt::Display for Stalled {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "mem ring stalled ({}) after {} steps at t={} ns",
            self.what, self.steps, self.now.0
        )
    }
}

impl std::error::Error for Stalled {}

struct Datagram {
    from: NodeId,
    dest: Destination,
    bytes: Vec<u8>,
}

/// Everything but the cores, so a core and the network can be borrowed at once.
struct Network {
    queue: VecDeque<Datagram>,
    pool: Vec<Vec<u8>>,
    persist: Vec<u64>,
    counters: Vec<NodeCounters>,
}

pub struct MemRing {
    nodes: Vec<Totem>,
    now: Instant,
    net: Network,
    /// Reused for every message the workloads submit.
    payload: Vec<u8>,
    /// Messages submitted by [`MemRing::round_robin`] so far (stamped into payloads).
    stamp: u64,
    steps: u64,
}

/// Word-at-a-time multiplicative hash (as rustc's FxHasher): a few
/// instructions per word, so the digest barely shows in instruction counts.
const MIX: u64 = 0x517c_c1b7_2722_0a95;
const DIGEST_SEED: u64 = 0xcbf2_9ce4_8422_2325;

fn mix(h: u64, v: u64) -> u64 {
    (h.rotate_left(5) ^ v).wrapping_mul(MIX)
}

/// Counts one delivery of `len` bytes given as `pieces`: the digest takes
/// the sender, the length and the first 8 bytes.
fn count_delivery<'a>(
    c: &mut NodeCounters,
    me: usize,
    sender: NodeId,
    len: usize,
    pieces: impl Iterator<Item = &'a [u8]>,
) {
    c.delivered += 1;
    c.delivered_bytes += len as u64;
    if sender as usize == me + 1 {
        c.own_delivered += 1;
    }
    let mut head = [0u8; 8];
    let mut n = 0;
    for p in pieces {
        let k = (8 - n).min(p.len());
        head[n..n + k].copy_from_slice(&p[..k]);
        n += k;
        if n == 8 {
            break;
        }
    }
    let h = mix(c.delivery_digest, u64::from(sender));
    let h = mix(h, len as u64);
    c.delivery_digest = mix(h, u64::from_le_bytes(head));
}

impl Network {
    fn take_buffer(&mut self, bytes: &[u8]) -> Vec<u8> {
        let mut buf = self.pool.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(bytes);
        buf
    }

    fn count_event(&mut self, me: usize, ev: &Event<'_>) {
        let c = &mut self.counters[me];
        match *ev {
            Event::Deliver {
                payload, sender, ..
            } => count_delivery(c, me, sender, payload.len(), std::iter::once(payload)),
            Event::DeliverParts { parts, sender, .. } => {
                count_delivery(c, me, sender, parts.len(), parts.iter())
            }
            Event::ConfigChange { .. } => c.config_changes += 1,
            Event::PersistRingSeq(seq) => self.persist.push(seq),
            Event::Sent { .. } | Event::TokenVisit { .. } => {}
        }
    }

    /// Takes everything `node` has to say after an input: events (acking
    /// persistence at once) and transmits, until it is quiet.
    fn drain(&mut self, me: usize, node: &mut Totem, now: Instant) {
        loop {
            let mut quiet = true;
            while let Some(ev) = node.poll_event() {
                quiet = false;
                self.count_event(me, &ev);
            }
            while let Some(seq) = self.persist.pop() {
                quiet = false;
                node.handle_persisted(now, seq);
            }
            while let Some(t) = node.poll_transmit(now) {
                quiet = false;
                if let Destination::Unicast(to) = t.dest {
                    assert_ne!(to as usize, me + 1, "core sent a unicast to itself");
                }
                let bytes = self.take_buffer(t.bytes);
                self.queue.push_back(Datagram {
                    from: me as NodeId + 1,
                    dest: t.dest,
                    bytes,
                });
                self.counters[me].datagrams_sent += 1;
            }
            if quiet {
                return;
            }
        }
    }
}

impl MemRing {
    /// `n` cores with ids `1..=n`, all started at time 0 with ring seq 0.
    pub fn new(n: usize, config: Config) -> Result<MemRing, ConfigError> {
        assert!(n >= 1, "a ring needs at least one node");
        let now = Instant(0);
        let nodes = (1..=n)
            .map(|id| Totem::new(id as NodeId, config.clone(), 0, now))
            .collect::<Result<Vec<_>, _>>()?;
        let mut ring = MemRing {
            nodes,
            now,
            net: Network {
                queue: VecDeque::with_capacity(INITIAL_IN_FLIGHT),
                pool: Vec::with_capacity(INITIAL_IN_FLIGHT),
                persist: Vec::with_capacity(8),
                counters: vec![
                    NodeCounters {
                        delivery_digest: DIGEST_SEED,
                        ..Default::default()
                    };
                    n
                ],
            },
            payload: Vec::new(),
            stamp: 0,
            steps: 0,
        };
        let frame = config.max_frame().max(64);
        for _ in 0..INITIAL_IN_FLIGHT {
            ring.net.pool.push(Vec::with_capacity(frame));
        }
        for i in 0..n {
            ring.net.drain(i, &mut ring.nodes[i], now);
        }
        Ok(ring)
    }

    /// Timers small enough that forming a ring takes little virtual time,
    /// with Corosync's windows.
    pub fn fast_config() -> Config {
        Config::low_latency()
    }

    pub fn len(&self) -> usize {
        self.nodes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }

    pub fn now(&self) -> Instant {
        self.now
    }

    /// Steps taken so far.
    pub fn steps(&self) -> u64 {
        self.steps
    }

    pub fn node(&self, id: NodeId) -> &Totem {
        &self.nodes[Self::index(id)]
    }

    pub fn counters(&self, id: NodeId) -> &NodeCounters {
        &self.net.counters[Self::index(id)]
    }

    pub fn delivered(&self, id: NodeId) -> u64 {
        self.counters(id).delivered
    }

    /// Datagrams currently in flight.
    pub fn in_flight(&self) -> usize {
        self.net.queue.len()
    }

    fn index(id: NodeId) -> usize {
        assert!(id >= 1, "node ids start at 1");
        id as usize - 1
    }

    /// Every node is operational on one ring of all `n` nodes.
    pub fn is_formed(&self) -> bool {
        let n = self.nodes.len();
        let ring = self.nodes[0].ring_id();
        self.nodes.iter().all(|t| {
            t.state() == MemberState::Operational && t.members().len() == n && t.ring_id() == ring
        })
    }

    /// Delivers one datagram, or, with none in flight, advances the clock to
    /// the earliest deadline and fires every timer due. `false` when there
    /// is nothing left to do at all.
    pub fn step(&mut self) -> bool {
        self.steps += 1;
        if let Some(d) = self.net.queue.pop_front() {
            self.deliver(&d);
            self.net.pool.push(d.bytes);
            return true;
        }
        let Some(next) = self.nodes.iter().filter_map(Totem::poll_timeout).min() else {
            return false;
        };
        self.now = self.now.max(next);
        for i in 0..self.nodes.len() {
            if self.nodes[i].poll_timeout().is_some_and(|t| t <= self.now) {
                self.nodes[i].handle_timeout(self.now);
                self.net.drain(i, &mut self.nodes[i], self.now);
            }
        }
        true
    }

    fn deliver(&mut self, d: &Datagram) {
        let now = self.now;
        let to_one = |ring: &mut MemRing, i: usize| {
            ring.net.counters[i].datagrams_received += 1;
            ring.nodes[i].handle_datagram(now, Some(d.from), &d.bytes);
            ring.net.drain(i, &mut ring.nodes[i], now);
        };
        match d.dest {
            Destination::Unicast(to) => to_one(self, Self::index(to)),
            Destination::Multicast => {
                for i in 0..self.nodes.len() {
                    if i + 1 != d.from as usize {
                        to_one(self, i);
                    }
                }
            }
        }
    }

    /// Steps until `done` holds, at most `max_steps` times.
    pub fn run_until(
        &mut self,
        max_steps: u64,
        mut done: impl FnMut(&MemRing) -> bool,
    ) -> Result<(), Stalled> {
        for _ in 0..max_steps {
            if done(self) {
                return Ok(());
            }
            if !self.step() {
                return if done(self) {
                    Ok(())
                } else {
                    Err(self.stalled("nothing left to do"))
                };
            }
        }
        if done(self) {
            Ok(())
        } else {
            Err(self.stalled("step limit"))
        }
    }

    fn stalled(&self, what: &'static str) -> Stalled {
        Stalled {
            steps: self.steps,
            now: self.now,
            what,
        }
    }

    /// Runs until every node is operational on one ring of all nodes.
    pub fn form(&mut self) -> Result<(), Stalled> {
        self.run_until(FORM_STEP_LIMIT, MemRing::is_formed)
    }

    pub fn submit(
        &mut self,
        id: NodeId,
        msg: &[u8],
        g: Guarantee,
    ) -> Result<MsgHandle, SubmitError> {
        let i = Self::index(id);
        let h = self.nodes[i].submit(msg, g)?;
        self.net.counters[i].submitted += 1;
        // A submit may end a held token's wait (hold cancel) at once.
        self.net.drain(i, &mut self.nodes[i], self.now);
        Ok(h)
    }

    /// Runs until every node has delivered at least `count` messages in all.
    pub fn pump_until_delivered(&mut self, count: u64) -> Result<(), Stalled> {
        let behind: u64 = self
            .net
            .counters
            .iter()
            .map(|c| count.saturating_sub(c.delivered))
            .sum();
        let limit = behind.saturating_mul(STEPS_PER_MESSAGE_LIMIT) + FORM_STEP_LIMIT;
        self.run_until(limit, |r| {
            r.net.counters.iter().all(|c| c.delivered >= count)
        })
    }

    /// The steady workload of the tests and benches: `total` messages of
    /// `size` bytes, submitted round-robin from every node while each node
    /// keeps at most `max_outstanding(size)` of its own messages undelivered,
    /// then pumped until every node has delivered all of them. Every
    /// payload carries a running stamp in its first bytes.
    pub fn round_robin(&mut self, total: u64, size: usize, g: Guarantee) -> Result<(), Stalled> {
        assert!(size >= 1, "empty messages are refused by the core");
        self.payload.resize(size, 0xA5);
        let n = self.nodes.len();
        let outstanding = Self::max_outstanding(size);
        let target = self
            .net
            .counters
            .iter()
            .map(|c| c.delivered)
            .min()
            .unwrap_or(0)
            + total;
        let limit = total.saturating_mul(n as u64 * STEPS_PER_MESSAGE_LIMIT) + FORM_STEP_LIMIT;
        let mut submitted = 0u64;
        let mut next = 0usize;
        let mut steps = 0u64;
        while self.net.counters.iter().any(|c| c.delivered < target) {
            while submitted < total {
                let c = &self.net.counters[next];
                if c.submitted - c.own_delivered >= outstanding {
                    break;
                }
                let stamp = self.stamp.to_le_bytes();
                let k = size.min(8);
                self.payload[..k].copy_from_slice(&stamp[..k]);
                match self.nodes[next].submit(&self.payload, g) {
                    Ok(_) => {}
                    Err(SubmitError::QueueFull) => break,
                    Err(e) => panic!("node {} refused a message: {e}", next + 1),
                }
                self.net.counters[next].submitted += 1;
                self.net.drain(next, &mut self.nodes[next], self.now);
                self.stamp += 1;
                submitted += 1;
                next = (next + 1) % n;
            }
            steps += 1;
            if steps > limit {
                return Err(self.stalled("workload step limit"));
            }
            if !self.step() {
                return Err(self.stalled("workload: nothing left to do"));
            }
        }
        Ok(())
    }

    /// Own messages a node may have undelivered in [`MemRing::round_robin`]:
    /// enough to fill every token visit, at most about 1 MiB.
    pub fn max_outstanding(size: usize) -> u64 {
        ((1usize << 20) / size).clamp(4, 1024) as u64
    }

    /// `true` when every node has the same delivery digest and count.
    pub fn agree(&self) -> bool {
        let first = &self.net.counters[0];
        self.net
            .counters
            .iter()
            .all(|c| c.delivered == first.delivered && c.delivery_digest == first.delivery_digest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn three_nodes_form_and_deliver_in_one_order() {
        let mut ring = MemRing::new(3, MemRing::fast_config()).unwrap();
        ring.form().unwrap();
        ring.round_robin(3_000, 64, Guarantee::Agreed).unwrap();
        ring.round_robin(300, 3_000, Guarantee::Safe).unwrap();
        assert!(
            ring.agree(),
            "{:?}",
            (1..=3).map(|i| *ring.counters(i)).collect::<Vec<_>>()
        );
        for id in 1..=3 {
            assert!(ring.delivered(id) >= 3_300);
            assert_eq!(ring.counters(id).own_delivered, ring.counters(id).submitted);
        }
    }

    #[test]
    fn single_node_ring_delivers_its_own_messages() {
        let mut ring = MemRing::new(1, MemRing::fast_config()).unwrap();
        ring.form().unwrap();
        ring.submit(1, b"hello", Guarantee::Agreed).unwrap();
        ring.pump_until_delivered(1).unwrap();
        assert_eq!(ring.counters(1).own_delivered, 1);
    }
}
