//! `sim`: runs the deterministic simulator over a range of seeds.
//!
//! ```text
//! cargo run --release --bin sim -- --seeds N [--nodes A-B] [--seed S]
//!     [--mutant NAME] [--list-mutants] [--threads T] [--trace]
//!     [--progress K]
//! ```
//!
//! Seed i of the batch is start + i; without `--seed` the start is random
//! and printed. Each failing seed prints its first violation and the
//! command that replays it; the last line is the summary, and the exit
//! status is non-zero when any seed failed. With `--progress K` a
//! `progress` line follows every K finished seeds (long runs), and each
//! violation is printed as soon as its seed finishes.

use std::process::ExitCode;

use clap::Parser;
use tests::sim::{default_threads, replay_command, run_seeds_with, Options, RunReport};
use totem_ring::Mutant;

#[derive(Parser, Debug)]
#[command(about = "Deterministic Totem simulator with one checker per EVS property")]
struct Args {
    /// Number of seeds to run.
    #[arg(long, default_value_t = 1)]
    seeds: u64,
    /// Node count range, inclusive ("3-5", or "4").
    #[arg(long, default_value = "2-7", value_parser = parse_range)]
    nodes: (u32, u32),
    /// First seed (random when absent).
    #[arg(long)]
    seed: Option<u64>,
    /// Re-insert a known bug into every node (see --list-mutants).
    #[arg(long)]
    mutant: Option<String>,
    /// Print the mutant names and exit.
    #[arg(long)]
    list_mutants: bool,
    /// Worker threads (default: available parallelism).
    #[arg(long)]
    threads: Option<usize>,
    /// Print parameters and every trace event to stderr (use with one seed).
    #[arg(long)]
    trace: bool,
    /// Fixed fault-phase length in ms (default: chosen per seed).
    #[arg(long)]
    fault_ms: Option<u64>,
    /// Keep running after a violation (timing; the first one is reported).
    #[arg(long)]
    keep_going: bool,
    /// Print a progress line after every K finished seeds (0: none).
    #[arg(long, default_value_t = 0)]
    progress: u64,
}

fn parse_range(s: &str) -> Result<(u32, u32), String> {
    let (a, b) = s.split_once('-').unwrap_or((s, s));
    let a: u32 = a.trim().parse().map_err(|e| format!("{a}: {e}"))?;
    let b: u32 = b.trim().parse().map_err(|e| format!("{b}: {e}"))?;
    if a == 0 || a > b || b > 64 {
        return Err(format!("need 1 ≤ A ≤ B ≤ 64, got {a}-{b}"));
    }
    Ok((a, b))
}

/// Running totals for `--progress`.
#[derive(Default)]
struct Progress(std::sync::Mutex<ProgressState>);

#[derive(Default)]
struct ProgressState {
    done: u64,
    violations: u64,
    virtual_ns: u64,
    /// The slowest seed so far: (wall, seed, nodes).
    slowest: (std::time::Duration, u64, u32),
}

impl Progress {
    fn record(
        &self,
        r: &RunReport,
        wall: std::time::Duration,
        every: u64,
        t0: std::time::Instant,
        opts: &Options,
    ) {
        let mut p = self.0.lock().unwrap_or_else(|e| e.into_inner());
        p.done += 1;
        p.virtual_ns += r.virtual_ns;
        if wall > p.slowest.0 {
            p.slowest = (wall, r.seed, r.nodes);
        }
        if let Some(v) = &r.violation {
            p.violations += 1;
            println!("seed {} ({} nodes): {v}", r.seed, r.nodes);
            println!("  replay: {}", replay_command(r.seed, opts));
        }
        if p.done.is_multiple_of(every) {
            println!(
                "progress done={} violations={} wall_s={:.1} virtual_s={} slowest_seed={} slowest_nodes={} slowest_wall_s={:.2}",
                p.done,
                p.violations,
                t0.elapsed().as_secs_f64(),
                p.virtual_ns / 1_000_000_000,
                p.slowest.1,
                p.slowest.2,
                p.slowest.0.as_secs_f64()
            );
        }
    }
}

fn random_start() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    h.write_u64(nanos);
    h.write_u32(std::process::id());
    // Leave room so that start + i never wraps.
    h.finish() >> 8
}

fn main() -> ExitCode {
    let args = Args::parse();
    if args.list_mutants {
        for m in Mutant::ALL {
            println!("{}", m.name());
        }
        return ExitCode::SUCCESS;
    }
    let mutant = match args.mutant.as_deref().map(|n| (n, Mutant::from_name(n))) {
        None => None,
        Some((_, Some(m))) => Some(m),
        Some((n, None)) => {
            eprintln!("unknown mutant {n:?}; --list-mutants shows the names");
            return ExitCode::from(2);
        }
    };
    let opts = Options {
        nodes: args.nodes,
        mutant,
        trace: args.trace,
        fault_ms: args.fault_ms,
        keep_going: args.keep_going,
    };
    let start = args.seed.unwrap_or_else(random_start);
    if args.seed.is_none() {
        println!(
            "starting seed {start} (seeds {start}..{})",
            start.saturating_add(args.seeds)
        );
    }
    let threads = args.threads.unwrap_or_else(default_threads);
    let progress = Progress::default();
    let t0 = std::time::Instant::now();
    let results = run_seeds_with(start, args.seeds, &opts, threads, |r, wall| {
        if args.progress > 0 {
            progress.record(r, wall, args.progress, t0, &opts);
        }
    });
    let mut violations = 0u64;
    for r in &results {
        if let Some(v) = &r.violation {
            violations += 1;
            if args.progress == 0 {
                println!("seed {} ({} nodes): {v}", r.seed, r.nodes);
                println!("  replay: {}", replay_command(r.seed, &opts));
            }
        }
    }
    let sum = |f: fn(&RunReport) -> u64| results.iter().map(f).sum::<u64>();
    println!(
        "faults: dups={} clogs={} pauses={} congestions={} held_inputs={} refs_copied={} leaves={} persist_lost={} persist_crashes={}; workload: submitted={} sent={} queue_full={} held_revisits={}; virtual_s={} busiest_instant={}",
        sum(|r| r.dups),
        sum(|r| r.clogs),
        sum(|r| r.pauses),
        sum(|r| r.congestions),
        sum(|r| r.held_inputs),
        sum(|r| r.refs_copied),
        sum(|r| r.leaves),
        sum(|r| r.persist_lost),
        sum(|r| r.persist_crashes),
        sum(|r| r.submitted),
        sum(|r| r.sent),
        sum(|r| r.queue_full),
        sum(|r| r.held_revisits),
        sum(|r| r.virtual_ns) / 1_000_000_000,
        results.iter().map(|r| r.busiest_instant).max().unwrap_or(0),
    );
    let total = RunReport {
        events: sum(|r| r.events),
        drops: sum(|r| r.drops),
        partitions: sum(|r| r.partitions),
        crashes: sum(|r| r.crashes),
        configs: sum(|r| r.configs),
        delivered: sum(|r| r.delivered),
        ..RunReport::default()
    };
    // A long enough clean run must also show it exercised what it claims.
    let unexercised: Vec<&str> = [
        ("drops", total.drops),
        ("partitions", total.partitions),
        ("crashes", total.crashes),
        ("configs", total.configs),
        ("delivered", total.delivered),
        ("duplicates", sum(|r| r.dups)),
        ("pauses", sum(|r| r.pauses)),
        ("clogs", sum(|r| r.clogs)),
        ("congestions", sum(|r| r.congestions)),
        ("held_inputs", sum(|r| r.held_inputs)),
        ("refs_copied", sum(|r| r.refs_copied)),
        ("held_revisits", sum(|r| r.held_revisits)),
        ("leaves", sum(|r| r.leaves)),
        ("persist_crashes", sum(|r| r.persist_crashes)),
    ]
    .into_iter()
    .filter(|&(_, n)| n == 0)
    .map(|(what, _)| what)
    .collect();
    let unexercised_fail =
        violations == 0 && results.len() >= 100 && opts.mutant.is_none() && !unexercised.is_empty();
    if unexercised_fail {
        println!(
            "not exercised in {} seeds: {}",
            results.len(),
            unexercised.join(", ")
        );
    }
    println!(
        "seeds={} violations={violations} events={} drops={} partitions={} crashes={} configs={} delivered={}",
        results.len(),
        total.events,
        total.drops,
        total.partitions,
        total.crashes,
        total.configs,
        total.delivered
    );
    if violations > 0 || unexercised_fail {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}
