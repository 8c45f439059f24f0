//! Everything a run does is derived here from its seed: node count, protocol
//! configuration, network behaviour, which faults are enabled and how often
//! (swarm testing: each seed enables a random subset), and the workload.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use totem_ring::Config;

pub const MS: u64 = 1_000_000;

/// How the simulated network treats datagrams (per seed).
#[derive(Clone, Debug)]
pub struct NetParams {
    /// One-way latency of every datagram.
    pub latency_ns: u64,
    /// Extra random delay (reordering); 0 = in-order links.
    pub jitter_ns: u64,
    /// Probability that any datagram is lost.
    pub loss: f64,
    /// Extra loss per packet type.
    pub loss_token: f64,
    pub loss_commit: f64,
    pub loss_join: f64,
    pub loss_mcast: f64,
    /// Probability that a datagram is delivered twice.
    pub dup: f64,
    /// Time a link takes to carry one byte (picoseconds): a link carries
    /// one datagram at a time, so a burst takes time to cross it.
    pub ps_per_byte: u64,
}

/// 1 Gbit/s links: 8,000 ps a byte.
pub const LINK_PS_PER_BYTE: u64 = 8_000;

impl NetParams {
    /// No loss, duplication or reordering; the same latency and links.
    pub fn perfect(latency_ns: u64, ps_per_byte: u64) -> NetParams {
        NetParams {
            latency_ns,
            ps_per_byte,
            jitter_ns: 0,
            loss: 0.0,
            loss_token: 0.0,
            loss_commit: 0.0,
            loss_join: 0.0,
            loss_mcast: 0.0,
            dup: 0.0,
        }
    }
}

/// How many faults of each kind the fault phase injects (0 = disabled).
#[derive(Clone, Debug, Default)]
pub struct FaultParams {
    pub crashes: u32,
    pub leaves: u32,
    pub pauses: u32,
    pub partitions: u32,
    pub one_way: u32,
    pub clogs: u32,
    /// Longest time a crashed or left node stays down.
    pub down_max_ns: u64,
    /// Longest pause.
    pub pause_max_ns: u64,
    /// Longest partition or clog.
    pub cut_max_ns: u64,
    /// Datagrams a paused node's socket buffers before dropping.
    pub pause_inbox: usize,
    /// Longest stable-storage write (completions are FIFO per node).
    pub persist_max_ns: u64,
    /// Chance that a node crashes while a ring-seq write it asked for is
    /// still in flight (during the fault phase).
    pub crash_in_persist: f64,
}

#[derive(Clone, Debug)]
pub struct WorkloadParams {
    /// Mean time between two submissions of one node.
    pub interval_ns: u64,
    /// Probability that a message asks for safe delivery.
    pub safe: f64,
    /// Probability of a 1–8 KiB message, and of an 8–64 KiB one.
    pub large: f64,
    pub huge: f64,
}

#[derive(Clone, Debug)]
pub struct Params {
    pub nodes: u32,
    pub config: Config,
    pub net: NetParams,
    pub faults: FaultParams,
    pub workload: WorkloadParams,
    /// Start times of the nodes.
    pub start_ns: Vec<u64>,
    /// End of the fault phase; the healed phase follows.
    pub fault_ns: u64,
    /// Submissions stop here (inside the healed phase).
    pub workload_stop_ns: u64,
    /// End of the run, where liveness (I14) is checked.
    pub end_ns: u64,
}

fn chance(rng: &mut ChaCha8Rng, p: f64) -> bool {
    rng.gen_bool(p)
}

/// A rate that is 0 half of the time, else up to `max`.
fn rate(rng: &mut ChaCha8Rng, max: f64) -> f64 {
    if chance(rng, 0.5) {
        0.0
    } else {
        rng.gen_range(0.0..max)
    }
}

fn count(rng: &mut ChaCha8Rng, max: u32) -> u32 {
    if chance(rng, 0.5) {
        0
    } else {
        rng.gen_range(1..=max)
    }
}

pub fn random_config(rng: &mut ChaCha8Rng) -> Config {
    let token = rng.gen_range(50..=300u64);
    let consensus = if chance(rng, 0.5) {
        None
    } else {
        Some(token * 6 / 5 + rng.gen_range(0..=token))
    };
    let window_size = rng.gen_range(8..=100u32);
    let mut c = Config {
        token,
        token_retransmits_before_loss_const: rng.gen_range(2..=6),
        join: rng.gen_range(5..=50),
        consensus,
        merge: rng.gen_range(20..=200),
        fail_recv_const: rng.gen_range(50..=2500),
        seqno_unchanged_const: rng.gen_range(2..=50),
        miss_count_const: rng.gen_range(1..=8),
        window_size,
        max_messages: rng.gen_range(1..=window_size.min(30)),
        window_bytes: if chance(rng, 0.7) {
            0
        } else {
            rng.gen_range(16_384..=262_144)
        },
        netmtu: rng.gen_range(300..=1500),
        retransmit_queue: (4 * window_size + 64).next_power_of_two() << rng.gen_range(0..=3),
        rtr_max: rng.gen_range(4..=64),
        max_message_size: 65_536,
        send_queue_messages: rng.gen_range(16..=2048),
        send_queue_bytes: rng.gen_range(65_536..=(4 << 20)),
        accelerated: chance(rng, 0.5),
        initial_seq: match rng.gen_range(0..3) {
            0 => 0,
            1 => rng.gen(),
            _ => 0xffff_fe00u32.wrapping_add(rng.gen_range(0..0x300)),
        },
        ..Config::default()
    };
    if c.consensus_ms() < c.join {
        c.join = c.consensus_ms();
    }
    // Half the seeds a fixed window (Corosync's), half one that grows by a
    // visit's frames per member (the daemon's default). Taken from values
    // already drawn, so that every seed's other draws stay what they were.
    c.window_per_member = if c.token.is_multiple_of(2) {
        0
    } else {
        c.max_messages
    };
    // The idle token held after rotations only (Corosync's counting, as
    // when corosync.conf names seqno_unchanged_const), after the daemon's
    // default 12 idle hops, or after one idle visit whatever the count;
    // again from a value already drawn.
    c.hold_after_idle_hops = match c.fail_recv_const % 3 {
        0 => 0,
        1 => 12,
        _ => 1,
    };
    // With the Accelerated Ring: every visit passes the token ahead of its
    // burst, only the fuller half (the daemon's `auto` on 2 CPUs), or only
    // the full ones; again from a value already drawn.
    c.accelerate_from_frames = match c.miss_count_const % 3 {
        0 => 0,
        1 => c.max_messages / 2,
        _ => c.max_messages,
    };
    // A third of the seeds reassemble every message into one buffer, a
    // third deliver every fragmented one where its pieces lie in the store,
    // a third only those of 8 KiB or more (the daemon's way); again from a
    // value already drawn.
    c.deliver_parts_from = match c.rtr_max % 3 {
        0 => 0,
        1 => 1,
        _ => 8192,
    };
    c
}

pub fn generate(rng: &mut ChaCha8Rng, nodes: (u32, u32), fault_ms: Option<u64>) -> Params {
    let n = rng.gen_range(nodes.0..=nodes.1);
    let mut config = random_config(rng);
    // A ring of n must fit its frames (`Config::max_ring_members`): the
    // smallest drawn MTUs are raised for the larger rings (no extra draw,
    // so every seed's other values stay what they were).
    while config.max_ring_members() < n as usize {
        config.netmtu += 16;
    }
    let latency_ns = rng.gen_range(50_000..=1_000_000u64);
    let net = NetParams {
        latency_ns,
        jitter_ns: if chance(rng, 0.5) {
            0
        } else {
            rng.gen_range(0..=latency_ns * 4)
        },
        loss: rate(rng, 0.08),
        loss_token: rate(rng, 0.15),
        loss_commit: rate(rng, 0.3),
        loss_join: rate(rng, 0.3),
        loss_mcast: rate(rng, 0.1),
        dup: rate(rng, 0.1),
        ps_per_byte: LINK_PS_PER_BYTE,
    };
    let token = config.token * MS;
    let fault_ns = rng.gen_range(5_000 * MS..=10_000 * MS).max(10 * token);
    let fault_ns = fault_ms.map_or(fault_ns, |ms| ms * MS);
    // Fault counts scale with the fault phase: at most about one of each
    // kind a second.
    let secs = (fault_ns / 1_000 / MS).max(1) as u32;
    let faults = FaultParams {
        crashes: count(rng, secs + 1),
        leaves: if chance(rng, 0.25) {
            rng.gen_range(1..=secs.div_ceil(2))
        } else {
            0
        },
        pauses: count(rng, secs + 1),
        partitions: count(rng, secs),
        one_way: count(rng, secs.div_ceil(2)),
        clogs: count(rng, secs + 1),
        down_max_ns: rng.gen_range(token / 4..=token * 8),
        pause_max_ns: rng.gen_range(token / 10..=token * 4),
        cut_max_ns: rng.gen_range(token / 2..=token * 8),
        pause_inbox: rng.gen_range(8..=512),
        crash_in_persist: if chance(rng, 0.3) {
            rng.gen_range(0.05..=0.5)
        } else {
            0.0
        },
        persist_max_ns: if chance(rng, 0.5) {
            0
        } else {
            rng.gen_range(1..=token)
        },
    };
    let workload = WorkloadParams {
        interval_ns: rng.gen_range(MS / 4..=10 * MS),
        safe: rng.gen_range(0.0..=1.0),
        large: rng.gen_range(0.0..0.15),
        huge: if chance(rng, 0.5) {
            0.0
        } else {
            rng.gen_range(0.0..0.01)
        },
    };
    let start_spread = rng.gen_range(0..=2 * token);
    let start_ns = (0..n).map(|_| rng.gen_range(0..=start_spread)).collect();
    let consensus = config.consensus_ms() * MS;
    // Healing needs merge detection, gather + consensus (a few rounds when
    // nodes come back at slightly different times), recovery, and draining
    // of send queues filled during the fault phase.
    let heal_ns = 4 * config.merge * MS + 6 * consensus + 12 * token + 500 * MS;
    let workload_stop_ns = fault_ns + heal_ns / 4;
    Params {
        nodes: n,
        config,
        net,
        faults,
        workload,
        start_ns,
        fault_ns,
        workload_stop_ns,
        end_ns: fault_ns + heal_ns,
    }
}
