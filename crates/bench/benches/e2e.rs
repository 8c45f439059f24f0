//! One node end to end: our daemon started one-node on loopback (the
//! cluster harness, built `corosync` beside this bench), a CPG client
//! through the Rust API (`corosync_rs::cpg`), and per iteration one
//! `mcast_joined` → self-delivery through the whole stack (request ring,
//! cpg service, totem, transport on loopback, event ring, dispatch).
//!
//! Needs the daemon binary (`target/release/corosync`): `cargo bench`
//! builds only the benchmarked packages' bench targets, not the daemon's
//! binary, so build it first (`cargo build --release -p daemon`). Without
//! it, or when the one-node cluster does not start, the bench exits with
//! an error naming what is missing instead of reporting nothing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corosync_rs::cpg::{Cpg, CpgHandlers};
use corosync_rs::{CsError, DispatchFlags, Guarantee};
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use tests::cluster::{Cluster, Mode};

const GROUP: &[u8] = b"e2e-bench";

/// Prints why the bench cannot run and exits with status 1.
fn fail(what: &str) -> ! {
    eprintln!("e2e bench: {what}");
    std::process::exit(1)
}

fn start() -> Cluster {
    let daemon = Cluster::daemon_binary();
    if !daemon.is_file() {
        fail(&format!(
            "the daemon binary {} does not exist; `cargo bench` does not build other \
             packages' binaries: run `cargo build --release -p daemon` (or point \
             CORO_DAEMON_BIN at a built one), then the bench again",
            daemon.display()
        ));
    }
    // The harness's loopback addresses (127.a.b.1) are not this host's
    // addresses to the daemon: one node on 127.0.0.1 with a free port.
    let port = match std::net::UdpSocket::bind("127.0.0.1:0").and_then(|s| s.local_addr()) {
        Ok(a) => a.port(),
        Err(e) => fail(&format!("finding a free UDP port on 127.0.0.1: {e}")),
    };
    let c = match Cluster::builder()
        .nodes(1)
        .mode(Mode::Loopback)
        .config_edit(move |_, text| one_node_config(&text, port))
        .start()
    {
        Ok(c) => c,
        Err(e) => fail(&format!(
            "starting one node of {} failed: {e}",
            daemon.display()
        )),
    };
    if let Err(e) = c.wait_ready(0, Duration::from_secs(20)) {
        let log = c.log_tail(0, 15);
        // Stops the daemon before exiting (exit runs no destructors).
        drop(c);
        fail(&format!(
            "the one-node daemon did not become ready: {e}\n{log}"
        ));
    }
    // The client library finds the daemon through this variable; set
    // before any client thread exists.
    std::env::set_var(tests::cluster::ENDPOINT_ENV, c.ipc_endpoint(0));
    c
}

/// The harness's text with the nodelist on 127.0.0.1 and `port`, and no
/// realtime scheduling (a benchmark process shares the machine).
fn one_node_config(text: &str, port: u16) -> String {
    let state = text
        .lines()
        .find_map(|l| l.trim().strip_prefix("state_dir:"))
        .unwrap_or(" /tmp")
        .trim()
        .to_owned();
    format!(
        "totem {{\n\tversion: 2\n\tcluster_name: e2ebench\n\ttransport: udpu\n\ttoken: 1000\n\
         \tinterface {{\n\t\tlinknumber: 0\n\t\tmcastport: {port}\n\t}}\n}}\n\
         nodelist {{\n\tnode {{\n\t\tnodeid: 1\n\t\tring0_addr: 127.0.0.1\n\t}}\n}}\n\
         system {{\n\tstate_dir: {state}\n\tsched_rr: no\n}}\n\
         logging {{\n\tto_stderr: yes\n\tto_syslog: no\n\ttimestamp: on\n}}\n"
    )
}

fn connect(delivered: Arc<AtomicU64>) -> Cpg {
    let mut tries = 0;
    let cpg = loop {
        let d = delivered.clone();
        let handlers = CpgHandlers::new().on_deliver(move |_, _, _, _, _| {
            d.fetch_add(1, Ordering::Relaxed);
        });
        match Cpg::initialize(handlers) {
            Ok(c) => break c,
            Err(e) if tries < 100 => {
                tries += 1;
                let _ = e;
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("cpg_initialize: {e:?}"),
        }
    };
    loop {
        match cpg.join(GROUP) {
            Ok(()) => break,
            Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("cpg_join: {e:?}"),
        }
    }
    cpg
}

/// Sends one message and dispatches until it came back.
fn round_trip(cpg: &Cpg, delivered: &AtomicU64, msg: &[u8]) {
    let want = delivered.load(Ordering::Relaxed) + 1;
    loop {
        match cpg.mcast_joined(Guarantee::Agreed, &[msg]) {
            Ok(()) => break,
            Err(CsError::TryAgain) => {
                let _ = cpg.dispatch(DispatchFlags::All);
            }
            Err(e) => panic!("cpg_mcast_joined: {e:?}"),
        }
    }
    while delivered.load(Ordering::Relaxed) < want {
        match cpg.dispatch(DispatchFlags::One) {
            Ok(()) | Err(CsError::TryAgain) => {}
            Err(e) => panic!("cpg_dispatch: {e:?}"),
        }
    }
}

/// Sends `n` messages as fast as flow control allows, then dispatches
/// until all came back (pipelined throughput, one node).
fn burst(cpg: &Cpg, delivered: &AtomicU64, msg: &[u8], n: u64) {
    let want = delivered.load(Ordering::Relaxed) + n;
    let mut sent = 0;
    while sent < n {
        match cpg.mcast_joined(Guarantee::Agreed, &[msg]) {
            Ok(()) => sent += 1,
            Err(CsError::TryAgain) => {}
            Err(e) => panic!("cpg_mcast_joined: {e:?}"),
        }
        let _ = cpg.dispatch(DispatchFlags::All);
    }
    while delivered.load(Ordering::Relaxed) < want {
        match cpg.dispatch(DispatchFlags::One) {
            Ok(()) | Err(CsError::TryAgain) => {}
            Err(e) => panic!("cpg_dispatch: {e:?}"),
        }
    }
}

fn e2e(c: &mut Criterion) {
    let cluster = start();
    let delivered = Arc::new(AtomicU64::new(0));
    let cpg = connect(delivered.clone());
    let mut g = c.benchmark_group("e2e_one_node_cpg");
    g.sample_size(20);
    g.measurement_time(Duration::from_secs(3));
    for size in [64usize, 1024, 65536] {
        let msg = vec![0x5au8; size];
        g.throughput(Throughput::Elements(1));
        g.bench_with_input(
            BenchmarkId::new("mcast_to_self_delivery", size),
            &size,
            |b, _| b.iter(|| round_trip(&cpg, &delivered, &msg)),
        );
        let n = 200u64;
        g.throughput(Throughput::Elements(n));
        g.bench_with_input(BenchmarkId::new("burst_200", size), &size, |b, _| {
            b.iter(|| burst(&cpg, &delivered, &msg, n))
        });
    }
    g.finish();
    let _ = cpg.leave(GROUP);
    drop(cpg);
    drop(cluster);
}

criterion_group!(benches, e2e);
criterion_main!(benches);
