//! Seeds of the long 2–16-node run that once livelocked or failed to
//! converge, replayed whole (see crates/totem-ring/DESIGN.md, "Membership").

use tests::sim::{replay_command, run_seed, Options, RunReport};

fn opts() -> Options {
    Options {
        nodes: (2, 16),
        ..Options::default()
    }
}

/// Replays `seed` whole and asserts it ended without a violation.
fn converges(seed: u64) -> RunReport {
    let r = run_seed(seed, &opts());
    assert!(
        r.violation.is_none(),
        "{:?}\n  replay: {}",
        r.violation,
        replay_command(r.seed, &opts())
    );
    r
}

/// 9 nodes, 27% commit-token loss, duplicates: the cluster splintered into
/// rings of one that re-formed on every join heard (~486,000 regular
/// configurations in 8.8 s before the simulator's input budget ran out).
/// A normal run of this size installs a few hundred to a thousand.
#[test]
fn membership_churn_seed_converges() {
    let r = converges(100_374);
    assert!(r.configs < 5_000, "{} regular configurations", r.configs);
}

/// 14 nodes: a recovery of thousands of old-ring frames crawled at one frame
/// per visit because the send queues, unsendable in recovery, were counted
/// as backlog; the ring was still in recovery at the end of the healed phase.
#[test]
fn large_recovery_seed_converges() {
    converges(100_027);
}

/// 12 and 15 nodes: after seconds of faults without a ring, every send queue
/// full, eight (ten) nodes formed rings of one at the same instant and each
/// sent its whole queue at once (a ring of one rotates its token in no
/// time, as the protocol means it to). The simulated links had no
/// bandwidth: 29,434 frames, 334,519 deliveries (265,260 for seed 100,495)
/// arrived at one nanosecond, and the livelock detector (200,000 inputs at
/// one instant) fired on a finite burst. Links now carry one datagram at a
/// time (sim/net.rs).
#[test]
fn burst_of_rings_of_one_is_spread_over_time() {
    for seed in [100_525, 100_495] {
        let r = converges(seed);
        assert!(
            r.busiest_instant < 20_000,
            "seed {seed}: {} inputs at one instant",
            r.busiest_instant
        );
    }
}

/// 16 nodes, 24% commit-token loss: with no retransmission of the commit
/// token, a 32-hop commit round almost never got round; and members that
/// had agreed failed the representative at the consensus timeout while its
/// slow token was still on the way, so no ring larger than one ever formed
/// and the seed ran out of its input budget (30 M inputs). It now installs
/// ~240 rings.
#[test]
fn lossy_commit_tokens_seed_converges() {
    let r = converges(108_023);
    assert!(r.configs < 5_000, "{} regular configurations", r.configs);
}

/// 15 nodes, lossy links: after a 15-node ring broke, joins from the round
/// that broke it (naming us failed) kept arriving while we gathered; each
/// made us fail its sender and form a ring of one at once, whose traffic
/// pulled the others into gather: ~120,000 rings of one in a virtual second,
/// until the input budget ran out. Joins older than our last ring are now
/// ignored in gather as in operational; the seed installs ~230 rings.
#[test]
fn stale_joins_seed_converges() {
    let r = converges(105_588);
    assert!(r.configs < 5_000, "{} regular configurations", r.configs);
}

/// 5 nodes on a 355-byte MTU with loss (found by CI's random seeds, 2–7
/// nodes): a token carried 55 retransmission requests, 278 bytes on a
/// 263-byte frame, which no transport would send. The list is now held to
/// what fits (`Config::token_rtr_max`); the simulator fails any datagram
/// larger than a frame.
#[test]
fn tokens_fit_small_frames_seed() {
    let opts = Options {
        nodes: (2, 7),
        ..Options::default()
    };
    for seed in [49_825_782_609_176_946, 49_825_782_609_177_834] {
        let r = run_seed(seed, &opts);
        assert!(
            r.violation.is_none(),
            "{:?}\n  replay: {}",
            r.violation,
            replay_command(seed, &opts)
        );
    }
}
