//! Real faults on real clusters, checked message by message: a `cpg-verify`
//! client on every node sends throughout while one fault is injected,
//! held and healed; the cluster must re-form within
//! [`Timing::reform_bound`] (token 1000 ms + 650 ms per node above two,
//! consensus 1.2 × that: 2 × (token + consensus) + join + merge + 3 s of
//! slack — 10.2 s for three nodes, 13.3 s for four), and the verifiers' logs
//! must show total order, no gap or duplicate from a surviving sender,
//! self-delivery, agreement on configurations and no lost message.
//!
//! The short versions of the `chaos` binary's scenarios, one cluster each,
//! one at a time (the machine may have two cores). Without root, `ip` or
//! `nft` every test prints why and passes.

use std::sync::Mutex;
use std::time::Duration;

use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;
use tests::chaos::{unsupported_reason, FaultKind, Params, Run, Timing};

const TOKEN: u32 = 1000;
const RATE: u32 = 100;

/// One cluster at a time.
static SERIAL: Mutex<()> = Mutex::new(());

fn scenario(kind: FaultKind, nodes: usize, seed: u64) {
    let _one = SERIAL.lock().unwrap_or_else(|p| p.into_inner());
    if std::env::var_os(tests::chaos::VERIFY_BIN_ENV).is_none() {
        std::env::set_var(
            tests::chaos::VERIFY_BIN_ENV,
            env!("CARGO_BIN_EXE_cpg-verify"),
        );
    }
    if let Some(why) = unsupported_reason() {
        eprintln!("skipping {}: {why}", kind.name());
        return;
    }
    let log_dir = std::env::temp_dir().join(format!(
        "corosync-rs-faults-{}-{}",
        std::process::id(),
        kind.name()
    ));
    let params = Params {
        nodes,
        token_ms: TOKEN,
        rate: RATE,
        hold: Duration::from_millis(1000),
        log_dir: log_dir.clone(),
    };
    let mut run = Run::start(params).expect("cluster with verifiers");
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let outcome = run.scenario(kind, &mut rng, &|| false);
    // Traffic after the re-formation, then the check.
    std::thread::sleep(Duration::from_millis(1000));
    let report = run.finish();
    let outcome = match outcome {
        Ok(o) => o,
        Err(e) => {
            run.save_daemon_logs();
            panic!(
                "{} (seed {seed}): {e}\n{}\nlogs in {}",
                kind.name(),
                report.describe(),
                log_dir.display()
            );
        }
    };
    eprintln!(
        "{} ({}): re-formed in {:?} (bound {:?}); {}",
        kind.name(),
        outcome.detail,
        outcome.reform,
        outcome.bound,
        report.describe().trim_end()
    );
    if !report.ok() {
        run.save_daemon_logs();
        panic!(
            "{} (seed {seed}, {}): {}logs in {}",
            kind.name(),
            outcome.detail,
            report.describe(),
            log_dir.display()
        );
    }
    assert!(
        report.delivered > 0 && report.sent > 0,
        "{}",
        report.describe()
    );
    drop(run);
    let _ = std::fs::remove_dir_all(&log_dir);
}

#[test]
fn kill9_and_restart() {
    scenario(FaultKind::Kill9Restart, 3, 1);
}

#[test]
fn sigstop_past_the_token_then_sigcont() {
    scenario(FaultKind::StopCont, 3, 2);
}

#[test]
fn symmetric_partition_and_heal() {
    scenario(FaultKind::Partition, 4, 3);
}

#[test]
fn one_way_partition() {
    scenario(FaultKind::OneWay, 3, 4);
}

#[test]
fn ten_percent_loss() {
    scenario(FaultKind::Loss10, 3, 5);
}

#[test]
fn thirty_percent_loss() {
    scenario(FaultKind::Loss30, 3, 6);
}

#[test]
fn link_down_and_up() {
    scenario(FaultKind::LinkDownUp, 3, 7);
}

#[test]
fn slow_client_is_disconnected_with_bounded_daemon_memory() {
    scenario(FaultKind::SlowClient, 3, 8);
}

#[test]
fn the_stated_bound() {
    let t = Timing::new(TOKEN, 3);
    assert_eq!(t.token, Duration::from_millis(1650));
    assert_eq!(t.consensus, Duration::from_millis(1980));
    assert_eq!(
        t.reform_bound(),
        Duration::from_millis(250 + 2 * 3630 + 3000)
    );
}
