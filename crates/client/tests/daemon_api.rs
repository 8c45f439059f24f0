//! The Rust API against the real daemon (`common::daemon`: one
//! `corosync -f` per test, a one-node cluster on loopback): callbacks,
//! self-delivery, the largest message, every query, two processes in one
//! group, a sender and a dispatcher on two threads under flow control, the
//! end of a blocking dispatch when the daemon dies, and EVS.

mod common;

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::daemon::{Daemon, NODE};
use corosync_rs::cpg::{
    self, Address, Cpg, CpgHandlers, FlowControl, IterationDescription, IterationType, RingId,
};
use corosync_rs::evs::{group, Evs, EvsHandlers};
use corosync_rs::{CsError, DispatchFlags, Guarantee};

/// How long a test waits for an event.
const EVENT_TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
enum Seen {
    Deliver(Vec<u8>, u32, u32, Vec<u8>),
    Confchg(Vec<u8>, Vec<Address>, Vec<Address>, Vec<Address>),
    Totem(RingId, Vec<u32>),
}

type Log = Arc<Mutex<Vec<Seen>>>;

fn recording() -> (CpgHandlers, Log) {
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

/// Dispatches (one event at a time) until `log` holds `n` entries, or
/// fails after [`EVENT_TIMEOUT`].
fn dispatch_until(cpg: &Cpg, log: &Mutex<Vec<Seen>>, n: usize) {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while log.lock().unwrap().len() < n {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {n} events: {:?}",
            log.lock().unwrap()
        );
        match cpg.dispatch(DispatchFlags::OneNonblocking) {
            Ok(()) => {}
            Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(1)),
            Err(e) => panic!("dispatch: {e}"),
        }
    }
}

/// Retries `f` while the daemon answers TRY_AGAIN (flow control, sync).
fn retry<T>(mut f: impl FnMut() -> Result<T, CsError>) -> Result<T, CsError> {
    let deadline = Instant::now() + EVENT_TIMEOUT;
    loop {
        match f() {
            Err(CsError::TryAgain) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(1))
            }
            r => return r,
        }
    }
}

fn addr(pid: u32, reason: u32) -> Address {
    Address {
        nodeid: NODE,
        pid,
        reason,
    }
}

/// An entry of a member list (Corosync 3: reason CPG_REASON_UNDEFINED).
fn member(pid: u32) -> Address {
    addr(pid, 0)
}

#[test]
fn cpg_join_mcast_self_delivery_and_queries() {
    let d = Daemon::start();
    let me = std::process::id();
    let (h, log) = recording();
    let cpg = d
        .connect(|| Cpg::model_initialize(cpg::MODEL_V1_DELIVER_INITIAL_TOTEM_CONF, h))
        .unwrap();
    assert!(cpg.fd() >= 0);

    // Nothing to dispatch before a join (Corosync sends the initial Totem
    // configuration only after the connection's first join).
    assert_eq!(
        cpg.dispatch(DispatchFlags::OneNonblocking),
        Err(CsError::TryAgain)
    );
    assert_eq!(cpg.dispatch(DispatchFlags::All), Ok(()));

    // Join: errors first, then our own confchg.
    cpg.join(b"grp").unwrap();
    assert_eq!(cpg.join(b"grp"), Err(CsError::Exist));
    assert_eq!(cpg.join(b"other"), Err(CsError::Exist));
    assert_eq!(cpg.join(&[b'x'; 129]), Err(CsError::NameTooLong));
    cpg.dispatch(DispatchFlags::One).unwrap();
    let me_joined = addr(me, cpg::reason::JOIN);
    assert_eq!(
        log.lock().unwrap()[0],
        Seen::Confchg(b"grp".to_vec(), vec![member(me)], vec![], vec![me_joined])
    );

    // Then the initial Totem configuration: this node alone, on the ring
    // the daemon logged.
    cpg.dispatch(DispatchFlags::One).unwrap();
    let ring = match &log.lock().unwrap()[1] {
        Seen::Totem(ring, members) => {
            assert_eq!(members, &vec![NODE]);
            *ring
        }
        other => panic!("expected the Totem confchg after the join's, got {other:?}"),
    };
    assert_eq!(ring.nodeid, NODE);
    assert!(ring.seq > 0, "{ring:?}");
    let formed = format!(
        "A new membership ({:x}.{:x}) was formed",
        ring.nodeid, ring.seq
    );
    assert!(d.log().contains(&formed), "{formed:?} not in:\n{}", d.log());

    // Self-delivery of a gathered message, with our pid.
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

    // The largest message (1 MiB), SAFE; one byte more is refused by the
    // daemon, 4 MiB by the client (it does not fit the request ring).
    let max = cpg.max_atomic_msgsize().unwrap();
    assert_eq!(max, 1 << 20);
    let big: Vec<u8> = (0..max as usize).map(|i| (i % 251) as u8).collect();
    retry(|| cpg.mcast_joined(Guarantee::Safe, &[&big])).unwrap();
    cpg.dispatch(DispatchFlags::One).unwrap();
    assert!(
        log.lock().unwrap()[3] == Seen::Deliver(b"grp".to_vec(), NODE, me, big.clone()),
        "the 1 MiB message came back different"
    );
    // Longer ones go in pieces (as libcpg sends them) and come back whole:
    // one byte past the limit, and 5 MiB in six pieces, SAFE.
    let mut longer = big.clone();
    longer.push(b'x');
    retry(|| cpg.mcast_joined(Guarantee::Agreed, &[big.as_slice(), b"x"])).unwrap();
    dispatch_until(&cpg, &log, 5);
    assert!(
        log.lock().unwrap()[4] == Seen::Deliver(b"grp".to_vec(), NODE, me, longer),
        "the 1 MiB + 1 message came back different"
    );
    let five: Vec<u8> = (0..5usize << 20).map(|i| (i % 253) as u8).collect();
    retry(|| cpg.mcast_joined(Guarantee::Safe, &[&five])).unwrap();
    dispatch_until(&cpg, &log, 6);
    assert!(
        log.lock().unwrap()[5] == Seen::Deliver(b"grp".to_vec(), NODE, me, five),
        "the 5 MiB message came back different"
    );
    // Past what a receiver holds whole: refused.
    let too_big = vec![0u8; (16 << 20) + 1];
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[&too_big]),
        Err(CsError::TooBig)
    );

    // Queries.
    assert_eq!(cpg.membership_get(b"grp").unwrap(), vec![member(me)]);
    assert_eq!(cpg.membership_get(b"nobody").unwrap(), vec![]);
    assert_eq!(cpg.local_get().unwrap(), NODE);
    assert_eq!(cpg.flow_control_state_get().unwrap(), FlowControl::Disabled);
    let entry = IterationDescription {
        group: b"grp".to_vec(),
        nodeid: NODE,
        pid: me,
    };
    assert_eq!(
        cpg.iteration(IterationType::All, None).unwrap(),
        vec![entry.clone()]
    );
    assert_eq!(
        cpg.iteration(IterationType::OneGroup, Some(b"grp"))
            .unwrap(),
        vec![entry]
    );
    assert_eq!(
        cpg.iteration(IterationType::NameOnly, None).unwrap(),
        vec![IterationDescription {
            group: b"grp".to_vec(),
            nodeid: 0,
            pid: 0
        }]
    );
    assert_eq!(
        cpg.iteration(IterationType::OneGroup, None),
        Err(CsError::InvalidParam)
    );

    // Leave: our own confchg with reason LEAVE, then nothing to send to.
    assert_eq!(cpg.leave(b"other"), Err(CsError::NotExist));
    cpg.leave(b"grp").unwrap();
    cpg.dispatch(DispatchFlags::One).unwrap();
    assert_eq!(
        log.lock().unwrap()[6],
        Seen::Confchg(
            b"grp".to_vec(),
            vec![],
            vec![addr(me, cpg::reason::LEAVE)],
            vec![]
        )
    );
    assert_eq!(cpg.leave(b"grp"), Err(CsError::NotExist));
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[b"x"]),
        Err(CsError::NotExist)
    );
    assert_eq!(cpg.iteration(IterationType::All, None).unwrap(), vec![]);
    cpg.finalize().unwrap();
}

/// The peer's stdout, line by line.
struct Peer {
    lines: Receiver<String>,
    seen: Vec<String>,
}

impl Peer {
    /// Waits for the next line that `pred` accepts.
    fn expect(&mut self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + EVENT_TIMEOUT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(l) => {
                    self.seen.push(l.clone());
                    if pred(&l) {
                        return l;
                    }
                }
                Err(e) => panic!("peer: no {what} ({e}); it printed {:?}", self.seen),
            }
        }
    }
}

#[test]
fn two_processes_see_each_other() {
    let d = Daemon::start();
    let me = std::process::id();
    let peer_exe = common::compile_c("peer.c", &common::scratch("peer"));

    let (h, log_a) = recording();
    let a = d.connect(|| Cpg::initialize(h)).unwrap();
    a.join(b"g").unwrap();
    dispatch_until(&a, &log_a, 1);
    let me_joined = addr(me, cpg::reason::JOIN);
    assert_eq!(
        log_a.lock().unwrap()[0],
        Seen::Confchg(b"g".to_vec(), vec![member(me)], vec![], vec![me_joined])
    );

    // One process is one member: a second connection of ours may not
    // join the same group, but may join another.
    let b = d.connect(|| Cpg::initialize(CpgHandlers::new())).unwrap();
    assert_eq!(b.join(b"g"), Err(CsError::Exist));
    b.join(b"h").unwrap();

    // Another process joins: both see it.
    let mut child = Command::new(&peer_exe)
        .arg("g")
        .env("LD_LIBRARY_PATH", common::profile_dir())
        .env("COROSYNC_IPC_ENDPOINT", &d.endpoint)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let peer_pid = child.id();
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for l in BufReader::new(stdout).lines() {
            let Ok(l) = l else { break };
            if tx.send(l).is_err() {
                break;
            }
        }
    });
    let mut peer = Peer {
        lines: rx,
        seen: Vec::new(),
    };
    peer.expect("READY", |l| l == format!("READY {peer_pid}"));
    dispatch_until(&a, &log_a, 2);
    let peer_joined = addr(peer_pid, cpg::reason::JOIN);
    let mut both = vec![member(me), member(peer_pid)];
    both.sort_by_key(|a| a.pid);
    assert_eq!(
        log_a.lock().unwrap()[1],
        Seen::Confchg(b"g".to_vec(), both, vec![], vec![peer_joined])
    );
    peer.expect("its join", |l| {
        l == format!("CONFCHG 2 LEFT - JOINED {peer_pid}:1")
    });

    // A message from us; the peer answers; both see both, in one order.
    a.mcast_joined(Guarantee::Agreed, &[b"from a"]).unwrap();
    dispatch_until(&a, &log_a, 4);
    assert_eq!(
        log_a.lock().unwrap()[2..],
        [
            Seen::Deliver(b"g".to_vec(), NODE, me, b"from a".to_vec()),
            Seen::Deliver(b"g".to_vec(), NODE, peer_pid, b"from peer".to_vec()),
        ]
    );
    peer.expect("our message", |l| {
        l == format!("DELIVER {NODE} {me} from a")
    });
    peer.expect("its answer", |l| {
        l == format!("DELIVER {NODE} {peer_pid} from peer")
    });

    // Dropping a connection finalizes it: the peer sees us go (PROCDOWN).
    drop(a);
    peer.expect("our leave", |l| {
        l.starts_with("CONFCHG") && l.contains(&format!("LEFT {me}:"))
    });
    assert_eq!(
        peer.seen.last().unwrap(),
        &format!("CONFCHG 1 LEFT {me}:{} JOINED -", cpg::reason::PROCDOWN)
    );

    // Now another connection of ours may join; then the peer process
    // exits without finalizing and we see it go (PROCDOWN).
    let (h, log_c) = recording();
    let c = d.connect(|| Cpg::initialize(h)).unwrap();
    retry(|| c.join(b"g")).unwrap();
    dispatch_until(&c, &log_c, 1);
    assert!(
        matches!(&log_c.lock().unwrap()[0],
            Seen::Confchg(_, m, l, j) if m.len() == 2 && l.is_empty() && j == &[me_joined]),
        "{:?}",
        log_c.lock().unwrap()
    );
    drop(child.stdin.take());
    let status = child.wait().unwrap();
    assert!(status.success(), "peer: {status}; printed {:?}", peer.seen);
    dispatch_until(&c, &log_c, 2);
    assert_eq!(
        log_c.lock().unwrap()[1],
        Seen::Confchg(
            b"g".to_vec(),
            vec![member(me)],
            vec![addr(peer_pid, cpg::reason::PROCDOWN)],
            vec![]
        )
    );
    drop(b);
}

#[test]
fn one_thread_mcasts_while_another_dispatches() {
    let d = Daemon::start();
    let me = std::process::id();
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let cpg = Arc::new(
        d.connect(|| {
            Cpg::initialize(CpgHandlers::new().on_deliver(move |_, g, n, p, m| {
                // Agreed order from one sender: the order sent.
                let k = counter.load(Ordering::Relaxed);
                assert_eq!((g, n, p, m.len()), (b"t".as_slice(), NODE, me, 100));
                assert_eq!(m, [k as u8; 100], "message {k} out of order");
                counter.store(k + 1, Ordering::Relaxed);
            }))
        })
        .unwrap(),
    );
    cpg.join(b"t").unwrap();
    const N: usize = 2000;
    let sender = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || {
            let mut try_again = 0usize;
            for i in 0..N {
                loop {
                    match cpg.mcast_joined(Guarantee::Agreed, &[[i as u8; 100]]) {
                        Ok(()) => break,
                        Err(CsError::TryAgain) => {
                            try_again += 1;
                            std::thread::sleep(Duration::from_micros(100));
                        }
                        Err(e) => panic!("mcast {i}: {e}"),
                    }
                }
            }
            try_again
        })
    };
    dispatch_while(
        &cpg,
        Duration::from_secs(60),
        || got.load(Ordering::Relaxed) >= N,
        "2000 messages",
    );
    let try_again = sender.join().unwrap();
    eprintln!("{N} multicasts, {try_again} answered TRY_AGAIN");
    assert_eq!(got.load(Ordering::Relaxed), N);
    assert_eq!(
        cpg.dispatch(DispatchFlags::OneNonblocking),
        Err(CsError::TryAgain),
        "nothing after the last message"
    );
}

#[test]
fn blocking_dispatch_returns_when_the_daemon_dies() {
    let mut d = Daemon::start();
    let cpg = Arc::new(d.connect(|| Cpg::initialize(CpgHandlers::new())).unwrap());
    cpg.join(b"g").unwrap();
    let t = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || cpg.dispatch(DispatchFlags::Blocking))
    };
    std::thread::sleep(Duration::from_millis(200));
    assert!(!t.is_finished(), "blocking dispatch returned early");
    d.kill();
    assert_eq!(t.join().unwrap(), Err(CsError::Library));
    assert_eq!(cpg.dispatch(DispatchFlags::One), Err(CsError::Library));
    assert_eq!(cpg.local_get(), Err(CsError::Library));
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[b"x"]),
        Err(CsError::Library)
    );
    // Nobody listens on the endpoint any more.
    assert_eq!(
        d.connect(|| Cpg::initialize(CpgHandlers::new())).err(),
        Some(CsError::Library)
    );
}

#[test]
fn evs_join_mcast_and_membership() {
    let d = Daemon::start();
    let got = Arc::new(Mutex::new(Vec::new()));
    let confchgs = Arc::new(Mutex::new(Vec::new()));
    let (sink, changes) = (Arc::clone(&got), Arc::clone(&confchgs));
    let evs = d
        .connect(|| {
            Evs::initialize(
                EvsHandlers::new()
                    .on_deliver(move |_, n, m| sink.lock().unwrap().push((n, m.to_vec())))
                    .on_confchg(move |_, m, l, j| {
                        changes
                            .lock()
                            .unwrap()
                            .push((m.to_vec(), l.to_vec(), j.to_vec()))
                    }),
            )
        })
        .unwrap();
    evs.join(&[group("a"), group("b")]).unwrap();
    evs.mcast_joined(Guarantee::Agreed, &[b"one"]).unwrap();
    evs.mcast_groups(Guarantee::Agreed, &[group("b")], &[b"two"])
        .unwrap();
    evs.mcast_groups(Guarantee::Agreed, &[group("zzz")], &[b"nobody"])
        .unwrap();
    evs.mcast_groups(Guarantee::Agreed, &[group("a")], &[b"three"])
        .unwrap();
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while got.lock().unwrap().len() < 3 {
        assert!(Instant::now() < deadline, "{:?}", got.lock().unwrap());
        evs.dispatch(DispatchFlags::One).unwrap();
    }
    // "nobody" was sent before "three" (total order): it reached no one.
    assert_eq!(
        *got.lock().unwrap(),
        vec![
            (NODE, b"one".to_vec()),
            (NODE, b"two".to_vec()),
            (NODE, b"three".to_vec())
        ]
    );
    // The first EVS request brought the current configuration.
    assert_eq!(
        confchgs.lock().unwrap().first(),
        Some(&(vec![NODE], vec![], vec![NODE])),
        "{:?}",
        confchgs.lock().unwrap()
    );
    assert_eq!(evs.membership_get().unwrap(), (NODE, vec![NODE]));

    // After leaving "a", a message to "a" no longer arrives.
    evs.leave(&[group("a")]).unwrap();
    assert_eq!(evs.leave(&[group("a")]), Err(CsError::NotExist));
    evs.mcast_groups(Guarantee::Agreed, &[group("a")], &[b"gone"])
        .unwrap();
    evs.mcast_joined(Guarantee::Agreed, &[b"four"]).unwrap();
    while got.lock().unwrap().len() < 4 {
        assert!(Instant::now() < deadline, "{:?}", got.lock().unwrap());
        evs.dispatch(DispatchFlags::One).unwrap();
    }
    assert_eq!(got.lock().unwrap()[3], (NODE, b"four".to_vec()));
    assert_eq!(evs.dispatch(DispatchFlags::All), Ok(()));
    assert_eq!(got.lock().unwrap().len(), 4);
    evs.finalize().unwrap();
}

/// Dispatches (ALL, sleeping briefly when idle) until `done` holds, or
/// fails after `limit`.
fn dispatch_while(cpg: &Cpg, limit: Duration, mut done: impl FnMut() -> bool, what: &str) {
    let deadline = Instant::now() + limit;
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        match cpg.dispatch(DispatchFlags::All) {
            Ok(()) | Err(CsError::TryAgain) => std::thread::sleep(Duration::from_micros(200)),
            Err(e) => panic!("dispatch: {e}"),
        }
    }
}

#[test]
fn flow_control_answers_try_again_and_loses_nothing() {
    // 256 KiB messages sent as fast as the daemon takes them fill Totem's
    // send queue (16 MiB) past 75% (a ring that sends one small frame per
    // token rotation drains it slowly): the daemon answers TRY_AGAIN, the
    // sender retries, and every accepted message arrives once, in order.
    let d = Daemon::start_with(&["netmtu: 576", "window_size: 2", "max_messages: 1"]);
    const SIZE: usize = 256 << 10;
    // Sending stops after TRY_AGAIN and at least 64 messages, or after
    // 4096 messages (1 GiB) or 20 s without TRY_AGAIN (a failure).
    const MAX: usize = 4096;
    const SEND_LIMIT: Duration = Duration::from_secs(20);
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let cpg = Arc::new(
        d.connect(|| {
            Cpg::initialize(CpgHandlers::new().on_deliver(move |_, _, _, _, m| {
                let k = counter.load(Ordering::Relaxed);
                assert_eq!(m.len(), SIZE);
                let stamp = u32::from_le_bytes(m[..4].try_into().unwrap());
                assert_eq!(stamp as usize, k, "out of order");
                counter.store(k + 1, Ordering::Relaxed);
            }))
        })
        .unwrap(),
    );
    cpg.join(b"fc").unwrap();
    let sender = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || {
            let mut msg = vec![0x5au8; SIZE];
            let (mut sent, mut try_again, mut enabled) = (0usize, 0usize, 0usize);
            let start = Instant::now();
            while sent < MAX && start.elapsed() < SEND_LIMIT && (try_again == 0 || sent < 64) {
                msg[..4].copy_from_slice(&(sent as u32).to_le_bytes());
                match cpg.mcast_joined(Guarantee::Agreed, &[&msg]) {
                    Ok(()) => sent += 1,
                    Err(CsError::TryAgain) => {
                        try_again += 1;
                        if cpg.flow_control_state_get() == Ok(FlowControl::Enabled) {
                            enabled += 1;
                        }
                        std::thread::sleep(Duration::from_micros(200));
                    }
                    Err(e) => panic!("mcast {sent}: {e}"),
                }
            }
            (sent, try_again, enabled)
        })
    };
    let limit = Duration::from_secs(60);
    dispatch_while(&cpg, limit, || sender.is_finished(), "the sender");
    let (sent, try_again, enabled) = sender.join().unwrap();
    eprintln!(
        "{sent} x 256 KiB sent, {try_again} TRY_AGAIN, flow control seen enabled {enabled} times"
    );
    assert!(
        try_again > 0,
        "{sent} x 256 KiB went through without TRY_AGAIN"
    );
    // TRY_AGAIN means a full request ring: flow control says enabled then.
    assert!(
        enabled > 0,
        "flow control never seen enabled in {try_again} TRY_AGAINs"
    );
    dispatch_while(
        &cpg,
        limit,
        || got.load(Ordering::Relaxed) >= sent,
        "every message",
    );
    assert_eq!(got.load(Ordering::Relaxed), sent);
    assert_eq!(
        cpg.dispatch(DispatchFlags::OneNonblocking),
        Err(CsError::TryAgain)
    );
    // Everything delivered, so the daemon has read every request: the
    // request ring is empty and flow control is off again.
    assert_eq!(cpg.flow_control_state_get(), Ok(FlowControl::Disabled));
}

/// A leave sent right after a join (whose PROCJOIN is not delivered yet,
/// so the daemon answers BUSY) waits for the join, as libcpg's loop does:
/// the caller never sees BUSY, and the confchgs come join then leave.
#[test]
fn leave_right_after_join_waits_for_the_join() {
    let d = Daemon::start();
    let (h, log) = recording();
    let cpg = d.connect(|| Cpg::initialize(h)).unwrap();
    let me = std::process::id();
    for round in 0..20 {
        cpg.join(b"quick").unwrap();
        assert_eq!(cpg.leave(b"quick"), Ok(()), "round {round}");
    }
    dispatch_until(&cpg, &log, 40);
    let log = log.lock().unwrap();
    for pair in log.chunks(2) {
        assert_eq!(
            pair[0],
            Seen::Confchg(
                b"quick".to_vec(),
                vec![member(me)],
                vec![],
                vec![addr(me, cpg::reason::JOIN)]
            )
        );
        assert_eq!(
            pair[1],
            Seen::Confchg(
                b"quick".to_vec(),
                vec![],
                vec![addr(me, cpg::reason::LEAVE)],
                vec![]
            )
        );
    }
}

/// A local client whose events spill past its ring and who reads none of
/// them gains nothing from the senders being held back: receive
/// back-pressure ends soon (not after its 2 s cap) and sending goes on,
/// until that client reads or is disconnected as too slow. Here the client
/// is its own sender and dispatches only after sending, as Corosync's test
/// programs do (cpgverify, cpgbound): each spill used to stall its sends
/// for the whole cap.
#[test]
fn backpressure_ends_when_the_spilled_events_are_not_read() {
    use corosync_rs::cmap::{Cmap, Map, Value};
    let d = Daemon::start();
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let cpg = d
        .connect(|| {
            Cpg::initialize(CpgHandlers::new().on_deliver(move |_, _, _, _, _| {
                counter.fetch_add(1, Ordering::Relaxed);
            }))
        })
        .unwrap();
    cpg.join(b"bp").unwrap();
    let stats = d.connect(|| Cmap::initialize(Map::Stats)).unwrap();
    let stat = |k: &str| match stats.get(k) {
        Ok(Value::U64(v)) => v,
        other => panic!("{k}: {other:?}"),
    };
    // 24 MiB of 64 KiB messages, no dispatch meanwhile: far past the
    // event ring, within the 64 MiB overflow allowance.
    const N: usize = 384;
    let msg = vec![7u8; 64 << 10];
    let t0 = Instant::now();
    for _ in 0..N {
        retry(|| cpg.mcast_joined(Guarantee::Agreed, &[&msg])).unwrap();
    }
    let took = t0.elapsed();
    dispatch_while(
        &cpg,
        Duration::from_secs(30),
        || got.load(Ordering::Relaxed) >= N,
        "every message",
    );
    // The statistics are refreshed now and then.
    std::thread::sleep(Duration::from_millis(1200));
    let episodes = stat("stats.ipcs.global.backpressure_episodes");
    let held_us = stat("stats.ipcs.global.backpressure_us");
    eprintln!("sent in {took:?}; back-pressure {episodes} episode(s), {held_us} us");
    assert!(
        episodes >= 1,
        "the events never spilled: the test proves nothing"
    );
    assert!(
        held_us < 1_000_000,
        "held back for {held_us} us by a client that read nothing meanwhile"
    );
}

#[test]
fn an_event_larger_than_the_clients_ring_disconnects_it_with_a_reason() {
    use corosync_rs::cmap::{track, Cmap, Map, Value};
    let d = Daemon::start();
    let tracker = d.connect(|| Cmap::initialize(Map::Icmap)).unwrap();
    let writer = d.connect(|| Cmap::initialize(Map::Icmap)).unwrap();
    let seen = Arc::new(AtomicUsize::new(0));
    let s = Arc::clone(&seen);
    tracker
        .track_add("big.value", track::MODIFY, move |_, _, _, _, _, _| {
            s.fetch_add(1, Ordering::Relaxed);
        })
        .unwrap();
    // A change notification carries the new and the old value: two values
    // of the largest size (1 MiB) with the key pass what a 4 MiB event ring
    // carries in one frame (2 MiB less its header).
    let big = |b: u8| Value::Binary(vec![b; corosync_rs::cmap::MAX_VALUE_LEN]);
    writer.set("big.value", &big(1)).unwrap();
    writer.set("big.value", &big(2)).unwrap();
    // The tracker is told, not left waiting for an event that never comes.
    let deadline = Instant::now() + EVENT_TIMEOUT;
    let err = loop {
        match tracker.dispatch(DispatchFlags::All) {
            Ok(()) => {}
            Err(e) => break e,
        }
        assert!(
            Instant::now() < deadline,
            "the tracker is still connected; log:\n{}",
            common::daemon::tail(&d.log_path(), 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(err, CsError::Library);
    assert_eq!(seen.load(Ordering::Relaxed), 0);
    // The daemon's log is written after the disconnect: wait for it.
    let logged = |l: &str| {
        l.contains("larger than connection")
            && l.contains("event larger than the client's event ring")
    };
    let deadline = Instant::now() + EVENT_TIMEOUT;
    while !logged(&d.log()) {
        assert!(
            Instant::now() < deadline,
            "the reason is not logged; log:\n{}",
            common::daemon::tail(&d.log_path(), 20)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    // The writer and the daemon go on.
    assert_eq!(writer.get("big.value").unwrap(), big(2));
}
