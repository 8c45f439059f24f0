//! `chaos`: random sequences of real faults on real clusters, checked by
//! the CPG verifier.
//!
//! ```text
//! cargo run --release -p tests --bin chaos -- --minutes 10 [--seed S]
//! ```
//!
//! Until the time is up (and at least until every fault kind has occurred
//! once): start a cluster of 3 to 5 nodes with a verifier on each, run a
//! few random scenarios on it ([`tests::chaos::FaultKind`]), drain and
//! check the logs, tear it down. Ends with one line on stdout:
//!
//! `scenarios=N violations=V lost=L delivered=D faults=F`
//!
//! and exits non-zero on any violation or lost message, when N, D or F is
//! 0, or when interrupted (SIGINT/SIGTERM are blocked and polled between
//! steps, so the cluster is always torn down). Logs of a failing cluster
//! are kept under `--keep-dir` with the seed to replay it.

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tests::chaos::{unsupported_reason, FaultKind, Params, Run};

#[derive(Parser, Debug)]
#[command(
    about = "Random real-fault scenarios against a corosync-rs cluster, checked by cpg-verify"
)]
struct Args {
    /// How long to run (scenarios go on past it until every fault kind
    /// occurred once).
    #[arg(long, default_value_t = 10.0)]
    minutes: f64,
    /// Seed of the whole run (default: from the clock).
    #[arg(long)]
    seed: Option<u64>,
    #[arg(long, default_value_t = 3)]
    min_nodes: usize,
    #[arg(long, default_value_t = 5)]
    max_nodes: usize,
    /// Totem token timeout (ms).
    #[arg(long, default_value_t = 1000)]
    token: u32,
    /// Messages per second per verifier.
    #[arg(long, default_value_t = 150)]
    rate: u32,
    /// Scenarios per cluster before it is checked and replaced.
    #[arg(long, default_value_t = 4)]
    per_cluster: usize,
    /// Only these fault kinds (names as printed, comma-separated).
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
    /// Where the logs of failing clusters are kept.
    #[arg(long, default_value = "/tmp/corosync-rs-chaos")]
    keep_dir: PathBuf,
}

/// True once SIGINT or SIGTERM is pending (both are blocked from the start
/// of `main`, in every thread and child, so they wait to be seen here).
fn interrupted() -> bool {
    let Ok(s) = std::fs::read_to_string("/proc/self/status") else {
        return false;
    };
    let mask = (1u64 << (libc::SIGINT - 1)) | (1u64 << (libc::SIGTERM - 1));
    s.lines()
        .filter_map(|l| {
            l.strip_prefix("ShdPnd:")
                .or_else(|| l.strip_prefix("SigPnd:"))
        })
        .filter_map(|v| u64::from_str_radix(v.trim(), 16).ok())
        .any(|bits| bits & mask != 0)
}

#[derive(Default)]
struct Totals {
    scenarios: u64,
    violations: u64,
    lost: u64,
    delivered: u64,
    faults: u64,
    clusters: u64,
}

/// The next kind: those not yet seen first (in random order), then any.
fn next_kind(kinds: &[FaultKind], seen: &BTreeSet<FaultKind>, rng: &mut ChaCha8Rng) -> FaultKind {
    let mut unseen: Vec<FaultKind> = kinds
        .iter()
        .copied()
        .filter(|k| !seen.contains(k))
        .collect();
    unseen.shuffle(rng);
    unseen
        .first()
        .copied()
        .unwrap_or_else(|| *kinds.choose(rng).expect("kinds"))
}

/// The kinds `--only` names (every kind without it).
fn kinds(a: &Args) -> Vec<FaultKind> {
    let all = FaultKind::ALL.to_vec();
    if a.only.is_empty() {
        return all;
    }
    let picked: Vec<FaultKind> = all
        .into_iter()
        .filter(|k| a.only.iter().any(|o| o == k.name()))
        .collect();
    if picked.is_empty() {
        eprintln!(
            "chaos: --only names no fault kind (kinds: {:?})",
            FaultKind::ALL.map(FaultKind::name)
        );
        std::process::exit(2);
    }
    picked
}

fn run_cluster(
    a: &Args,
    rng: &mut ChaCha8Rng,
    seed: u64,
    t: &mut Totals,
    seen: &mut BTreeSet<FaultKind>,
) {
    let nodes = rng.gen_range(a.min_nodes..=a.max_nodes.max(a.min_nodes));
    let cluster_no = t.clusters;
    t.clusters += 1;
    let log_dir = std::env::temp_dir().join(format!(
        "corosync-rs-chaos-{}-{cluster_no}",
        std::process::id()
    ));
    let params = Params {
        nodes,
        token_ms: a.token,
        rate: a.rate,
        hold: Duration::from_millis(rng.gen_range(500..3000)),
        log_dir: log_dir.clone(),
    };
    eprintln!(
        "chaos: cluster {cluster_no}: {nodes} nodes, hold {:?}",
        params.hold
    );
    let mut run = match Run::start(params) {
        Ok(r) => r,
        Err(e) => {
            eprintln!("chaos: cluster {cluster_no}: start failed: {e}");
            t.violations += 1;
            keep(a, &log_dir, seed, cluster_no);
            return;
        }
    };
    let mut failed = false;
    for _ in 0..a.per_cluster {
        if interrupted() {
            break;
        }
        let kind = next_kind(&kinds(a), seen, rng);
        let t0 = Instant::now();
        match run.scenario(kind, rng, &interrupted) {
            Ok(o) => {
                seen.insert(kind);
                t.scenarios += 1;
                t.faults += o.faults;
                eprintln!(
                    "chaos: cluster {cluster_no}: {} ({}) re-formed in {:?} (bound {:?}), {:?} in all",
                    kind.name(),
                    o.detail,
                    o.reform,
                    o.bound,
                    t0.elapsed()
                );
            }
            Err(e) => {
                seen.insert(kind);
                t.scenarios += 1;
                t.faults += 1;
                if interrupted() {
                    break;
                }
                eprintln!("chaos: cluster {cluster_no}: {} FAILED: {e}", kind.name());
                t.violations += 1;
                failed = true;
                break;
            }
        }
        // Traffic between faults, so each fault hits a busy ring.
        tests::chaos::pause(
            Duration::from_millis(rng.gen_range(300..1500)),
            &interrupted,
        );
    }
    if interrupted() {
        return;
    }
    let report = if failed {
        // The cluster may never have re-formed: heal what can be healed
        // and give it a last chance before checking.
        let _ = run.cluster.heal();
        for i in 0..nodes {
            let _ = run.cluster.sigcont(i);
            let _ = run.cluster.link_up(i);
        }
        run.finish()
    } else {
        run.finish()
    };
    t.violations += report.violations;
    t.lost += report.lost;
    t.delivered += report.delivered;
    eprintln!(
        "chaos: cluster {cluster_no}: {}",
        report.describe().trim_end()
    );
    if failed || !report.ok() {
        run.save_daemon_logs();
        keep(a, &log_dir, seed, cluster_no);
    }
    drop(run);
    let _ = std::fs::remove_dir_all(&log_dir);
}

/// Copies a failing cluster's logs under the keep dir.
fn keep(a: &Args, from: &std::path::Path, seed: u64, cluster_no: u64) {
    let to = a.keep_dir.join(format!("seed-{seed}-cluster-{cluster_no}"));
    let _ = std::fs::create_dir_all(&to);
    if let Ok(entries) = std::fs::read_dir(from) {
        for e in entries.flatten() {
            let _ = std::fs::copy(e.path(), to.join(e.file_name()));
        }
    }
    eprintln!("chaos: logs kept in {}", to.display());
}

fn main() {
    // Before any thread exists, so every thread and child inherits it.
    transport::runloop::block_signals(&[libc::SIGINT, libc::SIGTERM]);
    let a = Args::parse();
    if let Some(why) = unsupported_reason() {
        eprintln!("chaos: cannot run: {why}");
        println!("scenarios=0 violations=0 lost=0 delivered=0 faults=0");
        std::process::exit(2);
    }
    let seed = a.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    eprintln!(
        "chaos: seed {seed} (replay: cargo run --release -p tests --bin chaos -- --minutes {} --seed {seed})",
        a.minutes
    );
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let deadline = Instant::now() + Duration::from_secs_f64(a.minutes.max(0.0) * 60.0);
    let mut t = Totals::default();
    let mut seen = BTreeSet::new();
    let wanted = kinds(&a).len();
    while !interrupted() && (Instant::now() < deadline || seen.len() < wanted) {
        run_cluster(&a, &mut rng, seed, &mut t, &mut seen);
    }
    let stopped = interrupted();
    println!(
        "scenarios={} violations={} lost={} delivered={} faults={}",
        t.scenarios, t.violations, t.lost, t.delivered, t.faults
    );
    let bad =
        t.violations > 0 || t.lost > 0 || t.scenarios == 0 || t.delivered == 0 || t.faults == 0;
    if stopped {
        eprintln!("chaos: interrupted");
        std::process::exit(130);
    }
    std::process::exit(i32::from(bad));
}
