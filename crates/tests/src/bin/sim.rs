//! `sim`: runs the deterministic simulator over a range of seeds.
//!
//! ```text
//! cargo run --release --bin sim -- --seeds N [--nodes A-B] [--seed S]
//!     [--mutant NAME] [--list-mutants] [--threads T] [--trace]
//! ```
//!
//! Seed i of the batch is start + i; without `--seed` the start is random
//! and printed. Each failing seed prints its first violation and the
//! command that replays it; the last line is the summary, and the exit
//! status is non-zero when any seed failed.

use std::process::ExitCode;

use clap::Parser;
use tests::sim::{default_threads, replay_command, run_seeds, Options, RunReport};
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
    let results = run_seeds(start, args.seeds, &opts, threads);
    let mut violations = 0u64;
    for r in &results {
        if let Some(v) = &r.violation {
            violations += 1;
            println!("seed {} ({} nodes): {v}", r.seed, r.nodes);
            println!("  replay: {}", replay_command(r.seed, &opts));
        }
    }
    let sum = |f: fn(&RunReport) -> u64| results.iter().map(f).sum::<u64>();
    println!(
        "faults: dups={} clogs={} pauses={} leaves={} persist_lost={} persist_crashes={}; workload: submitted={} sent={} queue_full={}; virtual_s={}",
        sum(|r| r.dups),
        sum(|r| r.clogs),
        sum(|r| r.pauses),
        sum(|r| r.leaves),
        sum(|r| r.persist_lost),
        sum(|r| r.persist_crashes),
        sum(|r| r.submitted),
        sum(|r| r.sent),
        sum(|r| r.queue_full),
        sum(|r| r.virtual_ns) / 1_000_000_000,
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
