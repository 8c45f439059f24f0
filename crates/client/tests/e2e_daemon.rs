//! End to end against the real daemon: `target/<profile>/corosync -f`
//! with no config file (a one-node loopback cluster) and its own IPC
//! endpoint. Ignored until the daemon binary exists; run with
//! `cargo test -p client --release --test e2e_daemon -- --ignored`
//! after `cargo build --release -p daemon`.

mod common;

use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use corosync_rs::cpg::{self, Address, Cpg, CpgHandlers};
use corosync_rs::evs::{group, Evs, EvsHandlers};
use corosync_rs::{CsError, DispatchFlags, Guarantee};

struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts the daemon (no config file: the one-node loopback defaults;
/// the daemon owner may need to point COROSYNC_MAIN_CONFIG_FILE away from
/// a system corosync.conf) on a unique endpoint (exported to this process's
/// connections) and waits until CPG answers something other than
/// TRY_AGAIN (starting up) or LIBRARY (not listening yet).
fn start_daemon(tag: &str) -> Daemon {
    let bin = common::profile_dir().join("corosync");
    assert!(
        bin.exists(),
        "{} missing: cargo build --release -p daemon",
        bin.display()
    );
    let endpoint = format!("corosync-rs-e2e-{tag}-{}", std::process::id());
    let dir = common::scratch(&format!("e2e-{tag}"));
    let child = Command::new(&bin)
        .arg("-f")
        .env("COROSYNC_IPC_ENDPOINT", &endpoint)
        .current_dir(&dir)
        .stdin(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
    let daemon = Daemon(child);
    std::env::set_var("COROSYNC_IPC_ENDPOINT", &endpoint);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        match Cpg::initialize(CpgHandlers::new()) {
            Ok(c) => {
                c.finalize().unwrap();
                return daemon;
            }
            Err(CsError::TryAgain | CsError::Library) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50))
            }
            Err(e) => panic!("daemon never answered: {e}"),
        }
    }
}

fn retry<T>(mut f: impl FnMut() -> Result<T, CsError>) -> Result<T, CsError> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match f() {
            Err(CsError::TryAgain) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(5))
            }
            r => return r,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Deliver(Vec<u8>, u32, u32, Vec<u8>),
    Confchg(Vec<Address>, Vec<Address>, Vec<Address>),
    Totem(Vec<u32>),
}

/// Callbacks that append what they see to `log`.
fn recording(log: &Arc<Mutex<Vec<Seen>>>) -> CpgHandlers {
    let (a, b, c) = (Arc::clone(log), Arc::clone(log), Arc::clone(log));
    CpgHandlers::new()
        .on_deliver(move |_, g, n, p, m| {
            a.lock()
                .unwrap()
                .push(Seen::Deliver(g.to_vec(), n, p, m.to_vec()))
        })
        .on_confchg(move |_, _, m, l, j| {
            b.lock()
                .unwrap()
                .push(Seen::Confchg(m.to_vec(), l.to_vec(), j.to_vec()))
        })
        .on_totem_confchg(move |_, _, m| c.lock().unwrap().push(Seen::Totem(m.to_vec())))
}

fn dispatch_until(cpg: &Cpg, log: &Mutex<Vec<Seen>>, pred: impl Fn(&[Seen]) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while !pred(&log.lock().unwrap()) {
        assert!(
            Instant::now() < deadline,
            "timed out: {:?}",
            log.lock().unwrap()
        );
        match cpg.dispatch(DispatchFlags::OneNonblocking) {
            Ok(()) => {}
            Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("dispatch: {e}"),
        }
    }
}

#[test]
#[ignore = "needs the daemon"]
fn cpg_and_evs_on_a_one_node_cluster() {
    let _guard = common::endpoint_lock();
    let mut daemon = start_daemon("main");
    let me = std::process::id();

    // CPG: initial totem confchg, join, self confchg, mcast, self delivery.
    let log = Arc::new(Mutex::new(Vec::new()));
    let cpg =
        retry(|| Cpg::model_initialize(cpg::MODEL_V1_DELIVER_INITIAL_TOTEM_CONF, recording(&log)))
            .unwrap();
    let local = cpg.local_get().unwrap();
    dispatch_until(&cpg, &log, |s| {
        s.iter()
            .any(|e| matches!(e, Seen::Totem(m) if m.contains(&local)))
    });

    retry(|| cpg.join(b"e2e")).unwrap();
    dispatch_until(&cpg, &log, |s| {
        s.iter()
            .any(|e| matches!(e, Seen::Confchg(_, _, j) if j.iter().any(|a| a.pid == me)))
    });
    assert!(cpg
        .membership_get(b"e2e")
        .unwrap()
        .iter()
        .any(|a| a.pid == me && a.nodeid == local));
    assert!(cpg.max_atomic_msgsize().unwrap() > 0);

    for i in 0..100u32 {
        retry(|| cpg.mcast_joined(Guarantee::Agreed, &[i.to_le_bytes()])).unwrap();
    }
    dispatch_until(&cpg, &log, |s| {
        s.iter().filter(|e| matches!(e, Seen::Deliver(..))).count() == 100
    });
    let order: Vec<u32> = log
        .lock()
        .unwrap()
        .iter()
        .filter_map(|e| match e {
            Seen::Deliver(g, n, p, m) => {
                assert_eq!((g.as_slice(), *n, *p), (b"e2e".as_slice(), local, me));
                Some(u32::from_le_bytes(m[..4].try_into().unwrap()))
            }
            _ => None,
        })
        .collect();
    assert_eq!(
        order,
        (0..100).collect::<Vec<_>>(),
        "agreed order from one sender"
    );

    // A 1 MiB message.
    let big: Vec<u8> = (0..1 << 20).map(|i| (i % 253) as u8).collect();
    retry(|| cpg.mcast_joined(Guarantee::Agreed, &[&big])).unwrap();
    dispatch_until(&cpg, &log, |s| {
        s.iter()
            .any(|e| matches!(e, Seen::Deliver(_, _, _, m) if m.len() == big.len()))
    });
    assert!(log
        .lock()
        .unwrap()
        .iter()
        .any(|e| matches!(e, Seen::Deliver(_, _, _, m) if *m == big)));

    retry(|| cpg.leave(b"e2e")).unwrap();
    cpg.finalize().unwrap();

    // EVS: join, mcast to the joined groups, self delivery, membership.
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let evs = Evs::initialize(
        EvsHandlers::new().on_deliver(move |_, n, m| sink.lock().unwrap().push((n, m.to_vec()))),
    )
    .unwrap();
    retry(|| evs.join(&[group("e2e-evs")])).unwrap();
    retry(|| evs.mcast_joined(Guarantee::Agreed, &[b"evs hello"])).unwrap();
    retry(|| evs.mcast_groups(Guarantee::Agreed, &[group("e2e-evs")], &[b"evs groups"])).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    while got.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline, "evs: {:?}", got.lock().unwrap());
        match evs.dispatch(DispatchFlags::OneNonblocking) {
            Ok(()) | Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(2)),
            Err(e) => panic!("evs dispatch: {e}"),
        }
    }
    assert_eq!(
        *got.lock().unwrap(),
        vec![
            (local, b"evs hello".to_vec()),
            (local, b"evs groups".to_vec())
        ]
    );
    let (evs_local, members) = evs.membership_get().unwrap();
    assert_eq!((evs_local, members), (local, vec![local]));
    evs.finalize().unwrap();

    // A blocking dispatch ends with CS_ERR_LIBRARY when the daemon dies.
    let cpg = Arc::new(retry(|| Cpg::initialize(CpgHandlers::new())).unwrap());
    let waiter = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || cpg.dispatch(DispatchFlags::Blocking))
    };
    std::thread::sleep(Duration::from_millis(200));
    let _ = daemon.0.kill();
    let _ = daemon.0.wait();
    assert_eq!(waiter.join().unwrap(), Err(CsError::Library));
}
