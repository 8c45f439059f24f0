//! The unmodified protocol passes every checker over many seeds, and the
//! seeds really do inject faults.

use tests::sim::{default_threads, replay_command, run_seeds, Options};

#[test]
fn clean_seeds_have_no_violations() {
    let opts = Options {
        nodes: (2, 7),
        fault_ms: Some(1_500),
        ..Options::default()
    };
    let reports = run_seeds(1, 50, &opts, default_threads());
    let failures: Vec<String> = reports
        .iter()
        .filter_map(|r| {
            let v = r.violation.as_ref()?;
            Some(format!(
                "seed {}: {v}\n  replay: {}",
                r.seed,
                replay_command(r.seed, &opts)
            ))
        })
        .collect();
    assert!(
        failures.is_empty(),
        "{} of 50 seeds failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
    let sum = |f: fn(&tests::sim::RunReport) -> u64| reports.iter().map(f).sum::<u64>();
    for (what, n) in [
        ("drops", sum(|r| r.drops)),
        ("duplicates", sum(|r| r.dups)),
        ("partitions", sum(|r| r.partitions)),
        ("clogs", sum(|r| r.clogs)),
        ("crashes", sum(|r| r.crashes)),
        ("leaves", sum(|r| r.leaves)),
        ("pauses", sum(|r| r.pauses)),
        ("regular configurations", sum(|r| r.configs)),
        ("deliveries", sum(|r| r.delivered)),
        ("backpressure", sum(|r| r.queue_full)),
        ("ring-seq writes lost to crashes", sum(|r| r.persist_lost)),
    ] {
        assert!(
            n > 0,
            "no {what} in 50 seeds: the fault injection is not working"
        );
    }
}
