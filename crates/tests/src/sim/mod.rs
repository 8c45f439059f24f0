//! Deterministic simulator: many Totem nodes in one thread, virtual time in
//! nanoseconds, one u64 seed driving every choice (configuration, faults,
//! workload, network). A run is a fault phase followed by a healed phase
//! (everyone up, network perfect) that must converge; the checkers in
//! [`crate::checker`] watch every event.
//!
//! Determinism: one ChaCha8 stream per run, events ordered by (time,
//! insertion number), nodes scanned in index order, no iteration over hash
//! maps. The same seed gives the same trace hash.

pub mod net;
pub mod payload;
pub mod swarm;

use std::cell::RefCell;
use std::cmp::Ordering;
use std::collections::{BTreeMap, BinaryHeap, VecDeque};
use std::panic::AssertUnwindSafe;
use std::rc::Rc;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use totem_ring::{
    ConfigKind, Destination, Event, Guarantee, Instant, Mutant, NodeId, SubmitError, Totem,
};

use crate::checker::{Checker, FinalNode, Violation, Visit};
use net::Net;
use payload::MsgId;
use swarm::{Params, MS};

/// What a run may vary beyond its seed.
#[derive(Clone, Debug)]
pub struct Options {
    /// Inclusive range of the node count.
    pub nodes: (u32, u32),
    /// Known bug re-inserted into every node.
    pub mutant: Option<Mutant>,
    /// Print the parameters and every trace event to stderr.
    pub trace: bool,
    /// Fixed length of the fault phase (ms) instead of the seed's choice
    /// (shorter runs for debug-build tests).
    pub fault_ms: Option<u64>,
    /// Run to the end after a violation (for timing; the first one is kept).
    pub keep_going: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            nodes: (2, 7),
            mutant: None,
            trace: false,
            fault_ms: None,
            keep_going: false,
        }
    }
}

/// Outcome and counters of one run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RunReport {
    pub seed: u64,
    pub nodes: u32,
    /// The first violation (runs stop there).
    pub violation: Option<Violation>,
    pub trace_hash: u64,
    /// Inputs handed to nodes and fault actions performed.
    pub events: u64,
    /// Datagrams the network did not deliver (loss, partition, dead or
    /// paused receiver with a full socket buffer).
    pub drops: u64,
    pub dups: u64,
    pub partitions: u64,
    pub clogs: u64,
    pub crashes: u64,
    pub leaves: u64,
    pub pauses: u64,
    /// Receive back-pressure episodes (`Totem::set_receive_congested`).
    pub congestions: u64,
    /// Inputs after which a holding node left its events unpolled.
    pub held_inputs: u64,
    /// Held tokens visited again for the holder's own frames
    /// (`Stats::held_token_revisits`, over every node instance).
    pub held_revisits: u64,
    /// Deliveries by reference made copies before they were polled
    /// (`Stats::refs_copied`, over every node instance).
    pub refs_copied: u64,
    /// Stable-storage writes lost to a crash before completing.
    pub persist_lost: u64,
    /// Crashes scheduled inside a ring-seq write.
    pub persist_crashes: u64,
    /// Regular configurations installed.
    pub configs: u64,
    pub delivered: u64,
    pub sent: u64,
    pub submitted: u64,
    pub queue_full: u64,
    /// Virtual time simulated (ns).
    pub virtual_ns: u64,
    /// The most inputs handled at one virtual instant (the livelock
    /// detector fails a run past `MAX_STEPS_AT_ONE_INSTANT`).
    pub busiest_instant: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum NodeState {
    Down,
    Up,
    Paused,
}

enum Inbound {
    Datagram(NodeId, Rc<[u8]>),
    Persisted(u64),
}

struct Node {
    id: NodeId,
    totem: Option<Totem>,
    state: NodeState,
    /// Bumped on every state change; scheduled restarts/resumes carry it.
    gen: u64,
    inc: u32,
    /// What a paused node's socket (and disk completions) buffered.
    inbox: VecDeque<Inbound>,
    /// The last completed stable-storage write.
    stored_seq: u64,
    /// Completions are FIFO: the next one is not before this.
    persist_busy_until: u64,
    timer: Option<u64>,
    handles: BTreeMap<u64, MsgId>,
    /// Message counter, kept across incarnations so ids stay unique.
    counter: u64,
    /// A message refused with QueueFull, retried on the next tick.
    pending: Option<(MsgId, usize, Guarantee)>,
    /// Receive back-pressure is on until then (0: off).
    congested_until: u64,
    /// A node that submits nothing and, in the fault phase, leaves its
    /// events in Totem's queue for stretches of inputs, as the daemon
    /// does for the rest of a run-loop turn (and longer, as a stalled
    /// reader would): deliveries by reference then pin the store across
    /// later frames, token visits and membership changes. Such nodes send
    /// nothing because the checker learns a message's place in its ring
    /// from the sender's `Sent` event, which must come before any delivery.
    holder: bool,
    /// Inputs left before a holder polls its events again.
    hold_left: u32,
}

enum Ev {
    Datagram {
        to: usize,
        from: NodeId,
        bytes: Rc<[u8]>,
    },
    Persisted {
        node: usize,
        inc: u32,
        seq: u64,
    },
    Submit {
        node: usize,
    },
    Start {
        node: usize,
    },
    /// Crash unless the node restarted meanwhile.
    CrashIf {
        node: usize,
        gen: u64,
    },
    Crash {
        node: usize,
    },
    Leave {
        node: usize,
    },
    Restart {
        node: usize,
        gen: u64,
    },
    Pause {
        node: usize,
    },
    Resume {
        node: usize,
        gen: u64,
    },
    Cut {
        one_way: bool,
        dur: u64,
    },
    CutEnd {
        id: u64,
    },
    Clog {
        dur: u64,
    },
    /// Receive back-pressure on a node (its reader cannot keep up), as the
    /// daemon applies it, for `dur`.
    Congest {
        node: usize,
        dur: u64,
    },
    CongestEnd {
        node: usize,
    },
    Heal,
}

struct Sched {
    at: u64,
    n: u64,
    ev: Ev,
}

impl PartialEq for Sched {
    fn eq(&self, o: &Self) -> bool {
        (self.at, self.n) == (o.at, o.n)
    }
}
impl Eq for Sched {}
impl PartialOrd for Sched {
    fn partial_cmp(&self, o: &Self) -> Option<Ordering> {
        Some(self.cmp(o))
    }
}
impl Ord for Sched {
    // Reversed: BinaryHeap is a max-heap and we want the earliest first.
    fn cmp(&self, o: &Self) -> Ordering {
        (o.at, o.n).cmp(&(self.at, self.n))
    }
}

/// Steps without virtual time advancing before a run counts as livelocked.
const MAX_STEPS_AT_ONE_INSTANT: u64 = 200_000;
/// Steps in one run before it counts as livelocked.
const MAX_STEPS: u64 = 30_000_000;

struct World {
    p: Params,
    rng: ChaCha8Rng,
    now: u64,
    heap: BinaryHeap<Sched>,
    next_n: u64,
    nodes: Vec<Node>,
    net: Net,
    checker: Checker,
    next_cut: u64,
    steps_at_now: u64,
    tx_buf: Vec<(Destination, Rc<[u8]>)>,
    persist_buf: Vec<u64>,
    msg_buf: Vec<u8>,
    r: RunReport,
    keep_going: bool,
    trace: bool,
    /// Network drops when the healed phase began (it must drop nothing).
    drops_at_heal: u64,
    /// Draws the holders' stretches (a generator of its own, so that the
    /// seeds without holders run as they did before holders existed).
    hold_rng: ChaCha8Rng,
}

impl World {
    fn new(seed: u64, opts: &Options) -> World {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let mut p = swarm::generate(&mut rng, opts.nodes, opts.fault_ms);
        p.config.mutant = opts.mutant;
        if opts.trace {
            eprintln!("seed {seed}: {p:#?}");
        }
        let n = p.nodes as usize;
        let nodes = (0..n)
            .map(|i| Node {
                id: i as NodeId + 1,
                totem: None,
                state: NodeState::Down,
                gen: 0,
                inc: 0,
                inbox: VecDeque::new(),
                stored_seq: 0,
                persist_busy_until: 0,
                timer: None,
                handles: BTreeMap::new(),
                counter: 0,
                pending: None,
                congested_until: 0,
                holder: false,
                hold_left: 0,
            })
            .collect();
        let mut w = World {
            net: Net::new(n, p.net.clone()),
            checker: Checker::new(p.nodes, &p.config, opts.trace),
            rng,
            now: 0,
            heap: BinaryHeap::new(),
            next_n: 0,
            nodes,
            next_cut: 0,
            steps_at_now: 0,
            tx_buf: Vec::new(),
            persist_buf: Vec::new(),
            msg_buf: Vec::new(),
            r: RunReport {
                seed,
                nodes: p.nodes,
                ..RunReport::default()
            },
            keep_going: opts.keep_going,
            trace: opts.trace,
            drops_at_heal: 0,
            hold_rng: ChaCha8Rng::seed_from_u64(seed ^ 0x5EED_0FE7_E475_u64),
            p,
        };
        w.choose_holders();
        w.schedule_all();
        w.schedule_congestion(seed);
        w
    }

    /// In a third of the seeds with three nodes or more, up to a third of
    /// the nodes hold their events (see `Node::holder`).
    fn choose_holders(&mut self) {
        let n = self.nodes.len();
        if n < 3 || !self.hold_rng.gen_ratio(1, 3) {
            return;
        }
        let count = self.hold_rng.gen_range(1..=n / 3);
        for _ in 0..count {
            let i = self.hold_rng.gen_range(0..n);
            self.nodes[i].holder = true;
        }
    }

    /// How many inputs a holder leaves its events for next: mostly a few
    /// (a run-loop turn), now and then thousands (a stalled reader).
    fn draw_hold(&mut self) -> u32 {
        let r = &mut self.hold_rng;
        match r.gen_range(0..100) {
            0..=59 => r.gen_range(1..=8),
            60..=94 => r.gen_range(8..=64),
            _ => r.gen_range(500..=5_000),
        }
    }

    fn at(&mut self, at: u64, ev: Ev) {
        self.next_n += 1;
        self.heap.push(Sched {
            at,
            n: self.next_n,
            ev,
        });
    }

    fn schedule_all(&mut self) {
        let n = self.nodes.len();
        for i in 0..n {
            let s = self.p.start_ns[i];
            self.at(s, Ev::Start { node: i });
            let first = s + self.rng.gen_range(0..=self.p.workload.interval_ns);
            self.at(first, Ev::Submit { node: i });
        }
        let f = self.p.faults.clone();
        let end = self.p.fault_ns;
        let kinds = [
            (f.crashes, 0u8),
            (f.leaves, 1),
            (f.pauses, 2),
            (f.partitions, 3),
            (f.one_way, 4),
            (f.clogs, 5),
        ];
        for (count, kind) in kinds {
            for _ in 0..count {
                let t = self.rng.gen_range(0..end);
                let node = self.rng.gen_range(0..n);
                let dur = self.rng.gen_range(MS..=f.cut_max_ns.max(MS));
                let ev = match kind {
                    0 => Ev::Crash { node },
                    1 => Ev::Leave { node },
                    2 => Ev::Pause { node },
                    3 => Ev::Cut {
                        one_way: false,
                        dur,
                    },
                    4 => Ev::Cut { one_way: true, dur },
                    _ => Ev::Clog { dur: dur / 2 },
                };
                self.at(t, ev);
            }
        }
        self.at(end, Ev::Heal);
    }

    /// Receive back-pressure episodes in the fault phase of half the seeds,
    /// each on one node for up to four tokens. Drawn from a generator of
    /// their own, so that every seed's other draws stay what they were.
    fn schedule_congestion(&mut self, seed: u64) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed ^ 0xB4C4_9E55_0C0F_FEE5);
        if rng.gen_bool(0.5) {
            return;
        }
        let end = self.p.fault_ns;
        let token = self.p.config.token * MS;
        let count = rng.gen_range(1..=(end / (1_000 * MS)).max(1) * 2);
        for _ in 0..count {
            let t = rng.gen_range(0..end);
            let node = rng.gen_range(0..self.nodes.len());
            let dur = rng.gen_range(MS..=(4 * token).max(MS)).min(end - t);
            self.at(t, Ev::Congest { node, dur });
        }
    }

    /// The fault phase, the healed phase (which must converge by
    /// `end_ns`), then as long as the send queues need to drain on the
    /// perfect network; then the liveness checks.
    fn run(&mut self) {
        if !self.run_until(self.p.end_ns) {
            return;
        }
        self.checker.set_now(self.now.max(self.p.end_ns));
        let live = self.final_nodes();
        self.checker.converged(&live);
        let until = self.p.end_ns + self.drain_allowance();
        if !self.run_until(until) {
            return;
        }
        self.now = self.now.max(until);
        self.checker.set_now(self.now);
        let healed_drops = self.net.drops + self.r.drops - self.drops_at_heal;
        if healed_drops > 0 {
            let detail =
                format!("simulator bug: the healed network dropped {healed_drops} datagrams");
            self.checker.fail("harness", 0, detail);
        }
        let live = self.final_nodes();
        self.checker.finish(&live);
    }

    /// Runs events up to `deadline`; false when the run must stop here.
    fn run_until(&mut self, deadline: u64) -> bool {
        loop {
            if !self.keep_going && self.checker.violation().is_some() {
                return false;
            }
            let mut timer: Option<(u64, usize)> = None;
            for (i, n) in self.nodes.iter().enumerate() {
                if let (NodeState::Up, Some(t)) = (n.state, n.timer) {
                    if timer.is_none_or(|(bt, _)| t < bt) {
                        timer = Some((t, i));
                    }
                }
            }
            let heap_at = self.heap.peek().map(|s| s.at);
            let (at, timer_node) = match (timer, heap_at) {
                (Some((t, i)), Some(h)) if t < h => (t, Some(i)),
                (Some((t, i)), None) => (t, Some(i)),
                (_, Some(h)) => (h, None),
                (None, None) => return true,
            };
            if at > deadline {
                return true;
            }
            if !self.advance(at) {
                return false;
            }
            match timer_node {
                Some(i) => {
                    self.r.events += 1;
                    let now = Instant(self.now);
                    if let Some(t) = self.nodes[i].totem.as_mut() {
                        t.handle_timeout(now);
                    }
                    self.drain(i);
                }
                None => {
                    let s = self.heap.pop().expect("peeked");
                    self.dispatch(s.ev);
                }
            }
        }
    }

    /// Time the converged ring needs, at worst, to drain every send queue
    /// on the perfect network: as if only one node sent at a time
    /// (max_messages frames, or window_bytes, per rotation), three times over.
    fn drain_allowance(&self) -> u64 {
        let c = &self.p.config;
        let payload = c.max_payload().max(1) as u64;
        let (mut frames, mut bytes) = (0u64, 0u64);
        for t in self.nodes.iter().filter_map(|n| n.totem.as_ref()) {
            let q = t.queue_bounds();
            bytes += u64::from(q.send_queue_bytes);
            frames += u64::from(q.send_queue_bytes) / payload + u64::from(q.send_queue_msgs);
        }
        let mut rotations = frames.div_ceil(u64::from(c.max_messages.max(1)));
        if c.window_bytes > 0 {
            rotations = rotations.max(bytes.div_ceil(u64::from(c.window_bytes)));
        }
        // Each hop: the latency, the token's time on the wire, and slack;
        // and the sender's frames cross the link before the token does.
        let wire_ns = (u64::from(c.netmtu) * self.p.net.ps_per_byte).div_ceil(1_000);
        let hop_ns = self.p.net.latency_ns + wire_ns + 50_000;
        let rotation_ns = self.nodes.len() as u64 * hop_ns + u64::from(c.max_messages) * wire_ns;
        3 * (rotations + 20) * rotation_ns
    }

    /// Moves virtual time to `at`; false when the run is livelocked.
    fn advance(&mut self, at: u64) -> bool {
        if at > self.now {
            self.now = at;
            self.steps_at_now = 0;
            self.checker.set_now(at);
        }
        self.steps_at_now += 1;
        self.r.busiest_instant = self.r.busiest_instant.max(self.steps_at_now);
        if self.steps_at_now > MAX_STEPS_AT_ONE_INSTANT {
            self.checker.fail(
                "livelock",
                0,
                format!("{} steps without virtual time advancing", self.steps_at_now),
            );
            return false;
        }
        if self.r.events > MAX_STEPS {
            self.checker.fail(
                "livelock",
                0,
                format!("more than {MAX_STEPS} inputs in one run"),
            );
            return false;
        }
        true
    }

    fn dispatch(&mut self, ev: Ev) {
        match ev {
            Ev::Datagram { to, from, bytes } => self.datagram(to, from, bytes),
            Ev::Persisted { node, inc, seq } => self.persisted(node, inc, seq),
            Ev::Submit { node } => self.submit(node),
            // The heal may have started it already (a very short fault phase).
            Ev::Start { node } => {
                if self.nodes[node].inc == 0 {
                    self.start(node);
                }
            }
            Ev::Crash { node } => self.crash(node, false),
            Ev::CrashIf { node, gen } => {
                if self.nodes[node].gen == gen && self.now < self.p.fault_ns {
                    self.crash(node, false)
                }
            }
            Ev::Leave { node } => self.crash(node, true),
            Ev::Restart { node, gen } => {
                if self.nodes[node].gen == gen && self.nodes[node].state == NodeState::Down {
                    self.start(node);
                }
            }
            Ev::Pause { node } => self.pause(node),
            Ev::Resume { node, gen } => {
                if self.nodes[node].gen == gen && self.nodes[node].state == NodeState::Paused {
                    self.resume(node);
                }
            }
            Ev::Cut { one_way, dur } => self.cut(one_way, dur),
            Ev::CutEnd { id } => self.net.remove_cut(id),
            Ev::Clog { dur } => self.clog(dur),
            Ev::Congest { node, dur } => self.congest(node, dur),
            Ev::CongestEnd { node } => {
                if self.now >= self.nodes[node].congested_until {
                    self.set_congested(node, false);
                }
            }
            Ev::Heal => self.heal(),
        }
    }

    fn datagram(&mut self, to: usize, from: NodeId, bytes: Rc<[u8]>) {
        if self.trace {
            eprintln!(
                "{:>14} n{} <- n{from} {}",
                self.now,
                to + 1,
                describe(&bytes)
            );
        }
        let node = &mut self.nodes[to];
        match node.state {
            NodeState::Down => self.r.drops += 1,
            NodeState::Paused if node.inbox.len() >= self.p.faults.pause_inbox => self.r.drops += 1,
            NodeState::Paused => node.inbox.push_back(Inbound::Datagram(from, bytes)),
            NodeState::Up => {
                self.r.events += 1;
                if let Some(t) = node.totem.as_mut() {
                    t.handle_datagram(Instant(self.now), Some(from), &bytes);
                }
                self.drain(to);
            }
        }
    }

    fn persisted(&mut self, i: usize, inc: u32, seq: u64) {
        let node = &mut self.nodes[i];
        if node.inc != inc || node.state == NodeState::Down {
            self.r.persist_lost += 1;
            return;
        }
        node.stored_seq = seq;
        if node.state == NodeState::Paused {
            node.inbox.push_back(Inbound::Persisted(seq));
            return;
        }
        self.r.events += 1;
        if let Some(t) = node.totem.as_mut() {
            t.handle_persisted(Instant(self.now), seq);
        }
        self.drain(i);
    }

    fn start(&mut self, i: usize) {
        self.r.events += 1;
        let now = self.now;
        let node = &mut self.nodes[i];
        node.inc += 1;
        node.gen += 1;
        node.state = NodeState::Up;
        node.persist_busy_until = now;
        node.timer = None;
        let (id, stored) = (node.id, node.stored_seq);
        self.checker.restart(id);
        match Totem::new(id, self.p.config.clone(), stored, Instant(now)) {
            Ok(t) => self.nodes[i].totem = Some(t),
            Err(e) => {
                return self.checker.fail(
                    "api",
                    id,
                    format!("Totem::new refused the configuration: {e}"),
                )
            }
        }
        self.drain(i);
    }

    fn crash(&mut self, i: usize, graceful: bool) {
        let state = self.nodes[i].state;
        if state == NodeState::Down || (graceful && state != NodeState::Up) {
            return;
        }
        self.r.events += 1;
        if graceful {
            self.r.leaves += 1;
            if let Some(t) = self.nodes[i].totem.as_mut() {
                t.leave(Instant(self.now));
            }
            self.drain(i);
        } else {
            self.r.crashes += 1;
        }
        let node = &mut self.nodes[i];
        node.state = NodeState::Down;
        if let Some(t) = node.totem.take() {
            self.r.held_revisits += t.stats().held_token_revisits;
            self.r.refs_copied += t.stats().refs_copied;
        }
        node.inbox.clear();
        node.gen += 1;
        node.timer = None;
        node.handles.clear();
        node.pending = None;
        let (id, gen) = (node.id, node.gen);
        self.checker.crash(id, graceful);
        let down = self.rng.gen_range(MS..=self.p.faults.down_max_ns.max(MS));
        self.at(self.now + down, Ev::Restart { node: i, gen });
    }

    fn pause(&mut self, i: usize) {
        if self.nodes[i].state != NodeState::Up {
            return;
        }
        self.r.events += 1;
        self.r.pauses += 1;
        let node = &mut self.nodes[i];
        node.state = NodeState::Paused;
        node.gen += 1;
        let (id, gen) = (node.id, node.gen);
        self.checker.pause(id, true);
        let d = self.rng.gen_range(MS..=self.p.faults.pause_max_ns.max(MS));
        self.at(self.now + d, Ev::Resume { node: i, gen });
    }

    /// A resumed node processes its burst: everything its socket buffered
    /// while it was stopped, then (in the main loop) its overdue timers.
    fn resume(&mut self, i: usize) {
        self.r.events += 1;
        let node = &mut self.nodes[i];
        node.state = NodeState::Up;
        node.gen += 1;
        let id = node.id;
        self.checker.pause(id, false);
        while let Some(item) = self.nodes[i].inbox.pop_front() {
            if !self.keep_going && self.checker.violation().is_some() {
                return;
            }
            self.r.events += 1;
            let now = Instant(self.now);
            if let Some(t) = self.nodes[i].totem.as_mut() {
                match item {
                    Inbound::Datagram(from, bytes) => t.handle_datagram(now, Some(from), &bytes),
                    Inbound::Persisted(seq) => t.handle_persisted(now, seq),
                }
            }
            self.drain(i);
        }
    }

    fn cut(&mut self, one_way: bool, dur: u64) {
        let n = self.nodes.len();
        let mut blocked = vec![false; n * n];
        if one_way {
            match self.rng.gen_range(0..3) {
                // One node deaf, or one node mute.
                0 | 1 => {
                    let x = self.rng.gen_range(0..n);
                    let deaf = self.rng.gen_bool(0.5);
                    for y in (0..n).filter(|&y| y != x) {
                        blocked[if deaf { y * n + x } else { x * n + y }] = true;
                    }
                }
                _ => {
                    for (l, b) in blocked.iter_mut().enumerate() {
                        *b = l / n != l % n && self.rng.gen_bool(0.3);
                    }
                }
            }
        } else {
            // Symmetric: two or three sides, or one node isolated.
            let sides = self.rng.gen_range(2..=3);
            let side: Vec<usize> = if self.rng.gen_bool(0.3) {
                let x = self.rng.gen_range(0..n);
                (0..n).map(|y| usize::from(y == x)).collect()
            } else {
                (0..n).map(|_| self.rng.gen_range(0..sides)).collect()
            };
            for a in 0..n {
                for b in 0..n {
                    blocked[a * n + b] = side[a] != side[b];
                }
            }
        }
        self.r.events += 1;
        self.r.partitions += 1;
        self.next_cut += 1;
        let id = self.next_cut;
        self.net.add_cut(id, blocked);
        self.at(self.now + dur, Ev::CutEnd { id });
    }

    fn clog(&mut self, dur: u64) {
        let n = self.nodes.len();
        let to = self.rng.gen_range(0..n);
        let until = self.now + dur;
        self.r.events += 1;
        self.r.clogs += 1;
        if self.rng.gen_bool(0.5) {
            for from in (0..n).filter(|&f| f != to) {
                self.net.clog(from, to, until);
            }
        } else {
            let from = self.rng.gen_range(0..n);
            self.net.clog(from, to, until);
        }
    }

    fn congest(&mut self, i: usize, dur: u64) {
        self.r.events += 1;
        self.r.congestions += 1;
        let until = self.now + dur;
        self.nodes[i].congested_until = self.nodes[i].congested_until.max(until);
        self.set_congested(i, true);
        self.at(until, Ev::CongestEnd { node: i });
    }

    /// Sets the flag on the node's current incarnation (a restarted node
    /// starts without it; the end event then finds nothing to clear).
    fn set_congested(&mut self, i: usize, on: bool) {
        if !on {
            self.nodes[i].congested_until = 0;
        }
        if let Some(t) = self.nodes[i].totem.as_mut() {
            t.set_receive_congested(on);
        }
    }

    fn heal(&mut self) {
        self.net.heal();
        self.drops_at_heal = self.net.drops + self.r.drops;
        for i in 0..self.nodes.len() {
            self.set_congested(i, false);
        }
        for i in 0..self.nodes.len() {
            match self.nodes[i].state {
                NodeState::Down => self.start(i),
                NodeState::Paused => self.resume(i),
                NodeState::Up => {}
            }
        }
    }

    fn submit(&mut self, i: usize) {
        if self.now >= self.p.workload_stop_ns || self.nodes[i].holder {
            return;
        }
        let w = &self.p.workload;
        let next = self.now + self.rng.gen_range(1..=2 * w.interval_ns);
        self.at(next, Ev::Submit { node: i });
        if self.nodes[i].state != NodeState::Up {
            return;
        }
        let (id, len, g) = match self.nodes[i].pending.take() {
            Some(m) => m,
            None => {
                let w = &self.p.workload;
                let r: f64 = self.rng.gen();
                let len = if r < w.huge {
                    self.rng.gen_range(8192..=65_536)
                } else if r < w.huge + w.large {
                    self.rng.gen_range(1024..=8192)
                } else {
                    self.rng.gen_range(8..=200)
                };
                let g = if self.rng.gen_bool(w.safe) {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                };
                let node = &mut self.nodes[i];
                node.counter += 1;
                (
                    payload::msg_id(node.id, node.counter),
                    len.max(payload::HEADER_LEN),
                    g,
                )
            }
        };
        payload::build(id, len, &mut self.msg_buf);
        self.r.events += 1;
        let node = &mut self.nodes[i];
        let Some(t) = node.totem.as_mut() else { return };
        match t.submit(&self.msg_buf, g) {
            Ok(h) => {
                node.handles.insert(h.0, id);
                self.r.submitted += 1;
                self.checker.submitted(node.id, id, g, len as u32);
            }
            Err(SubmitError::QueueFull) => {
                self.r.queue_full += 1;
                node.pending = Some((id, len, g));
            }
            Err(SubmitError::Left) => {}
            Err(e) => {
                let id = node.id;
                self.checker.fail(
                    "api",
                    id,
                    format!("submit of a {len}-byte message failed: {e}"),
                );
            }
        }
        self.drain(i);
    }

    /// Takes everything node `i` has to say after an input: transmissions
    /// go to the network, events to the checkers.
    fn drain(&mut self, i: usize) {
        let now = self.now;
        // A holder in the fault phase polls its events only every so often.
        let hold =
            self.nodes[i].holder && now < self.p.fault_ns && self.nodes[i].totem.is_some() && {
                if self.nodes[i].hold_left == 0 {
                    self.nodes[i].hold_left = self.draw_hold();
                    false
                } else {
                    self.nodes[i].hold_left -= 1;
                    self.r.held_inputs += 1;
                    true
                }
            };
        let mut out = std::mem::take(&mut self.tx_buf);
        let mut persists = std::mem::take(&mut self.persist_buf);
        let node = &mut self.nodes[i];
        let p = node.id;
        let Some(t) = node.totem.as_mut() else { return };
        loop {
            let mut any = false;
            while let Some(tx) = t.poll_transmit(Instant(now)) {
                if tx.bytes.len() > self.p.config.max_frame() {
                    let detail = format!(
                        "a datagram of {} bytes, larger than a frame ({} bytes): a transport would not send it",
                        tx.bytes.len(),
                        self.p.config.max_frame()
                    );
                    self.checker.fail("api", p, detail);
                }
                out.push((tx.dest, Rc::from(tx.bytes)));
                any = true;
            }
            while let Some(ev) = if hold { None } else { t.poll_event() } {
                any = true;
                match ev {
                    Event::Deliver {
                        payload,
                        sender,
                        ring,
                        seq,
                        guarantee,
                    } => self
                        .checker
                        .deliver(p, payload, sender, ring, seq, guarantee),
                    Event::DeliverParts {
                        parts,
                        sender,
                        ring,
                        seq,
                        guarantee,
                    } => {
                        let payload = parts.to_vec();
                        self.checker
                            .deliver(p, &payload, sender, ring, seq, guarantee)
                    }
                    Event::ConfigChange {
                        kind,
                        members,
                        ring_id,
                        ..
                    } => {
                        // A ring seq is used only once it is on stable storage.
                        if kind == ConfigKind::Regular && ring_id.seq > node.stored_seq {
                            let detail = format!(
                                "installed ring {}:{} while stable storage held only {}",
                                ring_id.rep, ring_id.seq, node.stored_seq
                            );
                            self.checker.fail("I3", p, detail);
                        }
                        self.checker.config_change(p, kind, members, ring_id)
                    }
                    Event::PersistRingSeq(s) => persists.push(s),
                    Event::Sent { handle, ring, seq } => {
                        let id = node.handles.remove(&handle.0);
                        self.checker.sent(p, handle, id, ring, seq)
                    }
                    Event::TokenVisit {
                        ring,
                        token_seq,
                        new_frames,
                        retransmits,
                        ring_size,
                        rotation_frames,
                    } => {
                        let v = Visit {
                            ring,
                            token_seq,
                            new_frames,
                            retransmits,
                            ring_size,
                            rotation_frames,
                        };
                        self.checker.token_visit(p, v)
                    }
                }
            }
            if !any {
                break;
            }
        }
        self.checker.queue_bounds(p, t.queue_bounds());
        node.timer = t.poll_timeout().map(|x| x.0);
        for s in persists.drain(..) {
            self.persist(i, s);
        }
        for (dest, bytes) in out.drain(..) {
            match dest {
                Destination::Multicast => {
                    for j in (0..self.nodes.len()).filter(|&j| j != i) {
                        self.send(i, j, &bytes);
                    }
                }
                Destination::Unicast(q) if q == p || q == 0 || q as usize > self.nodes.len() => {
                    self.checker.fail("api", p, format!("unicast to node {q}"));
                }
                Destination::Unicast(q) => self.send(i, q as usize - 1, &bytes),
            }
        }
        self.tx_buf = out;
        self.persist_buf = persists;
    }

    fn send(&mut self, from: usize, to: usize, bytes: &Rc<[u8]>) {
        let arrivals = self.net.route(&mut self.rng, self.now, from, to, bytes);
        let from_id = self.nodes[from].id;
        for at in arrivals.into_iter().flatten() {
            self.at(
                at,
                Ev::Datagram {
                    to,
                    from: from_id,
                    bytes: bytes.clone(),
                },
            );
        }
    }

    /// A stable-storage write; it completes after a random delay, in order.
    fn persist(&mut self, i: usize, seq: u64) {
        // A slow disk is a fault; once healed, writes take a tenth as long.
        let mut max = self.p.faults.persist_max_ns;
        if self.now >= self.p.fault_ns {
            max /= 10;
        }
        let delay = if max == 0 {
            0
        } else {
            self.rng.gen_range(0..=max)
        };
        let node = &mut self.nodes[i];
        let at = (self.now + delay).max(node.persist_busy_until);
        node.persist_busy_until = at;
        let (inc, gen) = (node.inc, node.gen);
        self.at(at, Ev::Persisted { node: i, inc, seq });
        // The crash the ring seq must survive: after the request, before
        // the write completes.
        let p = self.p.faults.crash_in_persist;
        if self.now < self.p.fault_ns && p > 0.0 && self.rng.gen_bool(p) {
            let when = self.now + self.rng.gen_range(0..=(at - self.now));
            self.r.persist_crashes += 1;
            self.at(when, Ev::CrashIf { node: i, gen });
        }
    }

    fn final_nodes(&self) -> Vec<FinalNode> {
        self.nodes
            .iter()
            .filter(|n| n.state != NodeState::Down)
            .filter_map(|n| {
                let t = n.totem.as_ref()?;
                Some(FinalNode {
                    id: n.id,
                    state: t.state(),
                    ring: t.ring_id(),
                    members: t.members().to_vec(),
                    send_queue_msgs: t.queue_bounds().send_queue_msgs,
                })
            })
            .collect()
    }

    fn report(mut self) -> RunReport {
        let c = self.checker.counts;
        self.r.virtual_ns = self.now;
        self.r.violation = self.checker.violation().cloned();
        self.r.trace_hash = self.checker.trace_hash();
        self.r.drops += self.net.drops;
        self.r.dups = self.net.dups;
        for t in self.nodes.iter().filter_map(|n| n.totem.as_ref()) {
            self.r.held_revisits += t.stats().held_token_revisits;
            self.r.refs_copied += t.stats().refs_copied;
        }
        self.r.configs = c.regular_configs;
        self.r.delivered = c.delivered;
        self.r.sent = c.sent;
        self.r
    }
}

/// One line about a datagram, for `--trace`.
fn describe(bytes: &[u8]) -> String {
    use totem_ring::wire::{decode, Packet};
    match decode(bytes) {
        Ok(Packet::Token(t)) => format!(
            "token ring {}:{} token_seq {} seq {} aru {} aru_addr {} flg {} by {} fcc {} backlog {} rtr {:?}",
            t.ring.rep,
            t.ring.seq,
            t.token_seq,
            t.seq,
            t.aru,
            t.aru_addr,
            t.retrans_flg,
            t.retrans_addr,
            t.fcc,
            t.backlog,
            t.rtr()
        ),
        Ok(Packet::Mcast(m)) => {
            let h = m.header;
            format!(
                "mcast ring {}:{} seq {} origin {} flags {} ({} bytes)",
                h.ring.rep,
                h.ring.seq,
                h.seq,
                h.origin,
                h.flags,
                bytes.len()
            )
        }
        Ok(Packet::Join(j)) => format!(
            "join ring_seq {} procs {:?} fails {:?}",
            j.ring_seq, j.procs, j.fails
        ),
        Ok(Packet::Commit(c)) => format!(
            "commit ring {}:{} pass {} entries (node, old ring rep, seq, aru, high) {:?}",
            c.ring.rep,
            c.ring.seq,
            c.pass,
            c.entries
                .iter()
                .map(|e| (e.node, e.old_ring.rep, e.old_ring.seq, e.aru, e.high))
                .collect::<Vec<_>>()
        ),
        Ok(other) => format!("{other:?}"),
        Err(e) => format!("undecodable ({e:?}, {} bytes)", bytes.len()),
    }
}

thread_local! {
    static IN_SIM: RefCell<bool> = const { RefCell::new(false) };
    static LAST_PANIC: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// Keeps panics inside a run quiet and records where they happened, so a
/// panicking core becomes a reported violation of its seed.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if IN_SIM.with(|s| *s.borrow()) {
                let msg = info
                    .payload()
                    .downcast_ref::<&str>()
                    .map(|s| s.to_string())
                    .or_else(|| info.payload().downcast_ref::<String>().cloned())
                    .unwrap_or_else(|| "(non-string panic)".into());
                let mut at = info
                    .location()
                    .map(|l| format!(" at {}:{}", l.file(), l.line()))
                    .unwrap_or_default();
                // The panic site may be inside std; name the core's frame too.
                let bt = std::backtrace::Backtrace::force_capture().to_string();
                if let Some(l) = bt
                    .lines()
                    .find(|l| l.contains("totem-ring/src/") && l.contains(" at "))
                {
                    at.push_str(&format!(" (from {})", l.trim().trim_start_matches("at ")));
                }
                LAST_PANIC.with(|p| *p.borrow_mut() = Some(format!("{msg}{at}")));
            } else {
                previous(info);
            }
        }));
    });
}

/// Runs one seed to completion (or to its first violation).
pub fn run_seed(seed: u64, opts: &Options) -> RunReport {
    install_panic_hook();
    let mut world = World::new(seed, opts);
    IN_SIM.with(|s| *s.borrow_mut() = true);
    let result = std::panic::catch_unwind(AssertUnwindSafe(|| world.run()));
    IN_SIM.with(|s| *s.borrow_mut() = false);
    if result.is_err() {
        let msg = LAST_PANIC
            .with(|p| p.borrow_mut().take())
            .unwrap_or_else(|| "panic".into());
        world
            .checker
            .fail("panic", 0, format!("the core panicked: {msg}"));
    }
    world.report()
}

/// The command that replays one seed.
pub fn replay_command(seed: u64, opts: &Options) -> String {
    let mut s = format!(
        "cargo run --release --bin sim -- --seeds 1 --seed {seed} --nodes {}-{}",
        opts.nodes.0, opts.nodes.1
    );
    if let Some(ms) = opts.fault_ms {
        s.push_str(&format!(" --fault-ms {ms}"));
    }
    if let Some(m) = opts.mutant {
        s.push_str(" --mutant ");
        s.push_str(m.name());
    }
    s
}

/// Runs seeds `start .. start + count` on `threads` worker threads; the
/// reports come back in seed order whatever the scheduling.
pub fn run_seeds(start: u64, count: u64, opts: &Options, threads: usize) -> Vec<RunReport> {
    run_seeds_with(start, count, opts, threads, |_, _| {})
}

/// [`run_seeds`], calling `on_done(report, wall)` as each seed finishes
/// (in completion order, from the worker thread that ran it).
pub fn run_seeds_with<F>(
    start: u64,
    count: u64,
    opts: &Options,
    threads: usize,
    on_done: F,
) -> Vec<RunReport>
where
    F: Fn(&RunReport, std::time::Duration) + Sync,
{
    use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
    use std::sync::Mutex;
    let threads = threads.clamp(1, 256).min(count.max(1) as usize);
    let next = AtomicU64::new(0);
    let results = Mutex::new(Vec::with_capacity(count as usize));
    std::thread::scope(|s| {
        for _ in 0..threads {
            s.spawn(|| loop {
                let i = next.fetch_add(1, AtomicOrdering::Relaxed);
                if i >= count {
                    break;
                }
                let t0 = std::time::Instant::now();
                let r = run_seed(start.wrapping_add(i), opts);
                on_done(&r, t0.elapsed());
                results
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push((i, r));
            });
        }
    });
    let mut results = results.into_inner().unwrap_or_else(|e| e.into_inner());
    results.sort_by_key(|(i, _)| *i);
    results.into_iter().map(|(_, r)| r).collect()
}

/// Worker threads to use by default.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}
