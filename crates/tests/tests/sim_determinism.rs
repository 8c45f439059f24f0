//! The simulator is deterministic: a seed fixes the whole run.

use tests::sim::{run_seed, Options};

fn opts() -> Options {
    // A short fault phase keeps this fast in debug builds.
    Options {
        fault_ms: Some(500),
        ..Options::default()
    }
}

#[test]
fn same_seed_gives_the_same_run() {
    for seed in [1, 77, 0xdead_beef] {
        let a = run_seed(seed, &opts());
        let b = run_seed(seed, &opts());
        assert_eq!(a, b, "seed {seed} ran differently twice");
        assert!(a.events > 0);
    }
}

#[test]
fn different_seeds_give_different_traces() {
    let mut hashes: Vec<u64> = (100..112)
        .map(|s| run_seed(s, &opts()).trace_hash)
        .collect();
    hashes.sort_unstable();
    hashes.dedup();
    assert_eq!(hashes.len(), 12, "two seeds produced the same trace hash");
}

#[test]
fn thread_count_does_not_change_results() {
    let one = tests::sim::run_seeds(40, 6, &opts(), 1);
    let three = tests::sim::run_seeds(40, 6, &opts(), 3);
    assert_eq!(one, three);
    assert_eq!(
        one.iter().map(|r| r.seed).collect::<Vec<_>>(),
        (40..46).collect::<Vec<_>>()
    );
}
