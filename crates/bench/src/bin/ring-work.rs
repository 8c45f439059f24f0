//! A fixed, deterministic ring workload for instruction counting:
//! form an in-memory ring, warm it, then deliver `--messages` messages
//! round-robin from every node, and print what every node delivered.
//!
//! `callgrind-ring.sh` runs it twice (with `--messages 0` and with K) so
//! that the difference isolates the steady state.
//!
//! ```text
//! ring-work [--nodes 3] [--warm 20000] [--messages 100000] [--size 64] [--safe]
//! ```

use std::process::ExitCode;

use bench::warm_ring;
use totem_ring::Guarantee;

struct Args {
    nodes: usize,
    warm: u64,
    messages: u64,
    size: usize,
    guarantee: Guarantee,
}

fn parse() -> Result<Args, String> {
    let mut a = Args {
        nodes: 3,
        warm: 20_000,
        messages: 100_000,
        size: 64,
        guarantee: Guarantee::Agreed,
    };
    let argv = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string()
                .map_err(|a| format!("argument {} is not valid UTF-8", a.to_string_lossy()))
        })
        .collect::<Result<Vec<String>, String>>()?;
    let mut it = argv.into_iter();
    while let Some(flag) = it.next() {
        if flag == "--safe" {
            a.guarantee = Guarantee::Safe;
            continue;
        }
        let value = it.next().ok_or_else(|| format!("{flag} needs a value"))?;
        let bad = |e: std::num::ParseIntError| format!("{flag} {value}: {e}");
        match flag.as_str() {
            "--nodes" => a.nodes = value.parse().map_err(bad)?,
            "--warm" => a.warm = value.parse().map_err(bad)?,
            "--messages" => a.messages = value.parse().map_err(bad)?,
            "--size" => a.size = value.parse().map_err(bad)?,
            _ => return Err(format!("unknown flag {flag}")),
        }
    }
    if a.nodes == 0 || a.size == 0 {
        return Err("--nodes and --size must be ≥ 1".into());
    }
    Ok(a)
}

fn main() -> ExitCode {
    let args = match parse() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ring-work: {e}");
            eprintln!(
                "usage: ring-work [--nodes N] [--warm W] [--messages K] [--size BYTES] [--safe]"
            );
            return ExitCode::from(2);
        }
    };
    let mut ring = warm_ring(args.nodes, args.size, args.warm);
    let before: Vec<u64> = (1..=args.nodes as u32)
        .map(|id| ring.delivered(id))
        .collect();
    if args.messages > 0 {
        if let Err(e) = ring.round_robin(args.messages, args.size, args.guarantee) {
            eprintln!("ring-work: {e}");
            return ExitCode::FAILURE;
        }
    }
    if !ring.agree() {
        eprintln!("ring-work: nodes delivered different sequences");
        return ExitCode::FAILURE;
    }
    for (i, b) in before.iter().enumerate() {
        let id = i as u32 + 1;
        println!(
            "node {id}: delivered {} (warm-up {b})",
            ring.delivered(id) - b
        );
    }
    println!(
        "nodes={} messages={} size={}",
        args.nodes, args.messages, args.size
    );
    ExitCode::SUCCESS
}
