//! The Rust API against the stand-in daemon (`common::fake`): callbacks,
//! self-delivery, a 1 MiB message, membership queries, threads, and the
//! end of a blocking dispatch when the daemon dies.

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::fake::{FakeDaemon, MAX_ATOMIC, NODE};
use corosync_rs::cpg::{self, Address, Cpg, CpgHandlers, FlowControl, IterationType, RingId};
use corosync_rs::evs::{group, Evs, EvsHandlers};
use corosync_rs::{CsError, DispatchFlags, Guarantee};

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Deliver(Vec<u8>, u32, u32, Vec<u8>),
    Confchg(Vec<u8>, Vec<Address>, Vec<Address>, Vec<Address>),
    Totem(RingId, Vec<u32>),
}

fn recording() -> (CpgHandlers, Arc<Mutex<Vec<Seen>>>) {
    let log = Arc::new(Mutex::new(Vec::new()));
    let (a, b, c) = (Arc::clone(&log), Arc::clone(&log), Arc::clone(&log));
    let h = CpgHandlers::new()
        .on_deliver(move |_, g, n, p, m| {
            a.lock()
                .unwrap()
                .push(Seen::Deliver(g.to_vec(), n, p, m.to_vec()))
        })
        .on_confchg(move |_, g, m, l, j| {
            b.lock().unwrap().push(Seen::Confchg(
                g.to_vec(),
                m.to_vec(),
                l.to_vec(),
                j.to_vec(),
            ))
        })
        .on_totem_confchg(move |_, r, m| c.lock().unwrap().push(Seen::Totem(r, m.to_vec())));
    (h, log)
}

fn start(tag: &str) -> FakeDaemon {
    let d = FakeDaemon::start(tag);
    std::env::set_var("COROSYNC_IPC_ENDPOINT", &d.endpoint);
    d
}

/// Dispatches (ONE) until `log` holds `n` entries, or fails after 5 s.
fn dispatch_until(cpg: &Cpg, log: &Mutex<Vec<Seen>>, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while log.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out: {:?}",
            log.lock().unwrap()
        );
        cpg.dispatch(DispatchFlags::OneNonblocking)
            .or_else(|e| {
                if e == CsError::TryAgain {
                    std::thread::sleep(Duration::from_millis(1));
                    Ok(())
                } else {
                    Err(e)
                }
            })
            .unwrap();
    }
}

#[test]
fn cpg_join_mcast_self_delivery_and_queries() {
    let _guard = common::endpoint_lock();
    let _d = start("cpg");
    let me = std::process::id();
    let (h, log) = recording();
    let cpg = Cpg::model_initialize(cpg::MODEL_V1_DELIVER_INITIAL_TOTEM_CONF, h).unwrap();
    assert!(cpg.fd() >= 0);
    cpg.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(
        log.lock().unwrap()[0],
        Seen::Totem(
            RingId {
                nodeid: NODE,
                seq: 4
            },
            vec![NODE]
        )
    );
    assert_eq!(
        cpg.dispatch(DispatchFlags::OneNonblocking),
        Err(CsError::TryAgain)
    );
    assert_eq!(cpg.dispatch(DispatchFlags::All), Ok(()));

    cpg.join(b"grp").unwrap();
    assert_eq!(cpg.join(b"grp"), Err(CsError::Exist));
    assert_eq!(cpg.join(&[b'x'; 129]), Err(CsError::NameTooLong));
    cpg.dispatch(DispatchFlags::One).unwrap();
    let me_addr = Address {
        nodeid: NODE,
        pid: me,
        reason: cpg::reason::JOIN,
    };
    assert_eq!(
        log.lock().unwrap()[1],
        Seen::Confchg(b"grp".to_vec(), vec![me_addr], vec![], vec![me_addr])
    );

    cpg.mcast_joined(
        Guarantee::Agreed,
        &[b"hello ".as_slice(), b"world".as_slice()],
    )
    .unwrap();
    cpg.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(
        log.lock().unwrap()[2],
        Seen::Deliver(b"grp".to_vec(), NODE, me, b"hello world".to_vec())
    );

    // 1 MiB plus a header's worth: the rings carry it both ways.
    let big: Vec<u8> = (0..(1 << 20) + 100).map(|i| (i % 251) as u8).collect();
    cpg.mcast_joined(Guarantee::Safe, &[&big]).unwrap();
    cpg.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(
        log.lock().unwrap()[3],
        Seen::Deliver(b"grp".to_vec(), NODE, me, big)
    );
    let too_big = vec![0u8; 4 << 20];
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[&too_big]),
        Err(CsError::TooBig)
    );

    assert_eq!(cpg.membership_get(b"grp").unwrap(), vec![me_addr]);
    assert_eq!(cpg.local_get().unwrap(), NODE);
    assert_eq!(cpg.max_atomic_msgsize().unwrap(), MAX_ATOMIC);
    assert_eq!(cpg.flow_control_state_get().unwrap(), FlowControl::Disabled);
    let it = cpg.iteration(IterationType::All, None).unwrap();
    assert_eq!(it.len(), 1);
    assert_eq!((it[0].group.as_slice(), it[0].pid), (b"grp".as_slice(), me));
    assert_eq!(
        cpg.iteration(IterationType::OneGroup, None),
        Err(CsError::InvalidParam)
    );

    cpg.leave(b"grp").unwrap();
    cpg.dispatch(DispatchFlags::One).unwrap();
    let left = Address {
        reason: cpg::reason::LEAVE,
        ..me_addr
    };
    assert_eq!(
        log.lock().unwrap()[4],
        Seen::Confchg(b"grp".to_vec(), vec![], vec![left], vec![])
    );
    cpg.finalize().unwrap();
}

#[test]
fn two_connections_see_each_other() {
    let _guard = common::endpoint_lock();
    let _d = start("two");
    let (h1, log1) = recording();
    let (h2, log2) = recording();
    let a = Cpg::initialize(h1).unwrap();
    let b = Cpg::initialize(h2).unwrap();
    a.join(b"g").unwrap();
    b.join(b"g").unwrap();
    a.mcast_joined(Guarantee::Agreed, &[b"from a"]).unwrap();
    // a: its join, b's join, the message; b: its join, the message.
    dispatch_until(&a, &log1, 3);
    dispatch_until(&b, &log2, 2);
    assert!(
        matches!(&log1.lock().unwrap()[1], Seen::Confchg(_, m, _, j) if m.len() == 2 && j.len() == 1)
    );
    assert!(matches!(&log2.lock().unwrap()[1], Seen::Deliver(_, _, _, m) if m == b"from a"));
    drop(a); // Drop finalizes: b sees a leave (PROCDOWN).
    dispatch_until(&b, &log2, 3);
    assert!(matches!(&log2.lock().unwrap()[2],
        Seen::Confchg(_, m, l, _) if m.len() == 1 && l[0].reason == cpg::reason::PROCDOWN));
}

#[test]
fn one_thread_mcasts_while_another_dispatches() {
    let _guard = common::endpoint_lock();
    let _d = start("threads");
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let cpg = Arc::new(
        Cpg::initialize(CpgHandlers::new().on_deliver(move |_, _, _, _, m| {
            assert_eq!(m.len(), 100);
            counter.fetch_add(1, Ordering::Relaxed);
        }))
        .unwrap(),
    );
    cpg.join(b"t").unwrap();
    const N: usize = 2000;
    let sender = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || {
            for i in 0..N {
                loop {
                    match cpg.mcast_joined(Guarantee::Agreed, &[[i as u8; 100]]) {
                        Ok(()) => break,
                        Err(CsError::TryAgain) => std::thread::yield_now(),
                        Err(e) => panic!("mcast: {e}"),
                    }
                }
            }
        })
    };
    let deadline = Instant::now() + Duration::from_secs(20);
    while got.load(Ordering::Relaxed) < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N}",
            got.load(Ordering::Relaxed)
        );
        match cpg.dispatch(DispatchFlags::All) {
            Ok(()) | Err(CsError::TryAgain) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("dispatch: {e}"),
        }
    }
    sender.join().unwrap();
}

#[test]
fn blocking_dispatch_returns_when_the_daemon_dies() {
    let _guard = common::endpoint_lock();
    let mut d = start("dies");
    let cpg = Arc::new(Cpg::initialize(CpgHandlers::new()).unwrap());
    cpg.join(b"g").unwrap();
    let t = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || {
            let start = Instant::now();
            (cpg.dispatch(DispatchFlags::Blocking), start.elapsed())
        })
    };
    std::thread::sleep(Duration::from_millis(200));
    d.kill();
    let (r, _) = t.join().unwrap();
    assert_eq!(r, Err(CsError::Library));
    assert_eq!(cpg.dispatch(DispatchFlags::One), Err(CsError::Library));
    assert_eq!(cpg.local_get(), Err(CsError::Library));
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[b"x"]),
        Err(CsError::Library)
    );
}

#[test]
fn evs_join_mcast_and_membership() {
    let _guard = common::endpoint_lock();
    let _d = start("evs");
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&got);
    let evs = Evs::initialize(
        EvsHandlers::new().on_deliver(move |_, n, m| sink.lock().unwrap().push((n, m.to_vec()))),
    )
    .unwrap();
    evs.join(&[group("a"), group("b")]).unwrap();
    evs.mcast_joined(Guarantee::Agreed, &[b"one"]).unwrap();
    evs.mcast_groups(Guarantee::Agreed, &[group("b")], &[b"two"])
        .unwrap();
    evs.mcast_groups(Guarantee::Agreed, &[group("zzz")], &[b"nobody"])
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.lock().unwrap().len() < 2 {
        assert!(Instant::now() < deadline);
        evs.dispatch(DispatchFlags::One).unwrap();
    }
    assert_eq!(
        *got.lock().unwrap(),
        vec![(NODE, b"one".to_vec()), (NODE, b"two".to_vec())]
    );
    assert_eq!(evs.membership_get().unwrap(), (NODE, vec![NODE]));
    evs.leave(&[group("a")]).unwrap();
    assert_eq!(evs.dispatch(DispatchFlags::All), Ok(()));
    assert!(got.lock().unwrap().len() == 2);
    evs.finalize().unwrap();
}
