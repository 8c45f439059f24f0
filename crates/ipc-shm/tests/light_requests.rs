//! The request path without locked instructions: a client publishes with
//! plain stores where the daemon pairs them with membarrier, and its send
//! lock is biased to the first sending thread. What could go wrong is a
//! lost wake-up (a daemon that parks on a request it did not see) or two
//! threads inside the send lock at once (lost, duplicated or torn frames).

mod common;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::time::Duration;

use common::*;
use ipc_shm::{Client, ClientError, Event, PollLoop, Server, ServerStats};

/// Runs the server on its own thread, waiting in the poll loop with no
/// timeout of its own (so only the server's re-check of parked sessions
/// ends a wait a lost wake-up left it in), counting one-way requests, whose
/// payloads are (sender u64, sequence u64) and must come in order per
/// sender. Ends at the first disconnection; returns the counts per sender
/// and the server's counters.
fn counting_server(
    mut server: Server,
    seen: Arc<AtomicU64>,
    busy: bool,
) -> std::thread::JoinHandle<(Vec<u64>, ServerStats)> {
    std::thread::spawn(move || {
        let mut pl = PollLoop::new().unwrap();
        server.set_busy_poll(busy);
        let mut next = vec![0u64; 8];
        let mut connected = false;
        loop {
            if busy {
                server.poll_busy();
                pl.turn(&mut server, Some(Duration::ZERO)).unwrap();
            } else {
                pl.turn(&mut server, None).unwrap();
            }
            while let Some(ev) = server.next_event() {
                match ev {
                    Event::Connected { .. } => connected = true,
                    Event::Request { payload, .. } => {
                        let who = u64::from_le_bytes(payload[..8].try_into().unwrap());
                        let seq = u64::from_le_bytes(payload[8..16].try_into().unwrap());
                        assert_eq!(seq, next[who as usize], "sender {who} out of order");
                        next[who as usize] += 1;
                        seen.fetch_add(1, Ordering::Release);
                    }
                    Event::Disconnected { .. } if connected => {
                        return (next, server.stats());
                    }
                    Event::Disconnected { .. } => {}
                }
            }
        }
    })
}

fn frame(who: u64, seq: u64) -> [u8; 64] {
    let mut b = [0u8; 64];
    b[..8].copy_from_slice(&who.to_le_bytes());
    b[8..16].copy_from_slice(&seq.to_le_bytes());
    b
}

fn send(c: &Client, who: u64, seq: u64) {
    loop {
        match c.send(1, KIND_ONE_WAY, &frame(who, seq)) {
            Ok(_) => return,
            Err(ClientError::TryAgain) => std::hint::spin_loop(),
            Err(e) => panic!("send: {e}"),
        }
    }
}

/// Waits for `rx` with a deadline that only a hang reaches; says how far
/// the requests counted in `seen` got (a slow run gets far, a hang not).
fn join_within<T>(rx: mpsc::Receiver<T>, what: &str, seen: &AtomicU64, total: u64) -> T {
    rx.recv_timeout(Duration::from_secs(120))
        .unwrap_or_else(|_| {
            panic!(
                "{what}: not done in 120 s, {} of {total} requests counted",
                seen.load(Ordering::Relaxed)
            )
        })
}

/// One request at a time, each sent while the daemon is somewhere between
/// finding the ring empty, asking for a wake-up, its barrier and parking
/// (the sender waits for the previous one to be counted, then spins a
/// varying while): every one must wake it. Both request paths.
#[test]
fn a_daemon_going_to_sleep_misses_no_request() {
    for light in [true, false] {
        let mut cfg = server_config("light-park");
        cfg.light_requests = light;
        let server = Server::new(cfg).unwrap();
        let offered = server.light_requests();
        let ep = server.endpoint().clone();
        let seen = Arc::new(AtomicU64::new(0));
        let srv = counting_server(server, seen.clone(), false);
        let (tx, rx) = mpsc::channel();
        let n = 20_000u64;
        let counted = seen.clone();
        let client = std::thread::spawn(move || {
            let c = Client::connect(&client_config(&ep)).unwrap();
            let used = c.light_requests();
            let mut x = 0x9e37_79b9_7f4a_7c15u64;
            for i in 0..n {
                send(&c, 0, i);
                while seen.load(Ordering::Acquire) <= i {
                    std::hint::spin_loop();
                }
                // xorshift: 0 to ~4000 spins before the next send.
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                for _ in 0..x % 4096 {
                    std::hint::spin_loop();
                }
            }
            drop(c);
            tx.send(used).unwrap();
        });
        // Which path hung, if one does (once in CI, 2026-11-28, unknown).
        let what = format!(
            "parking daemon, {} request path",
            if light && offered {
                "light (idle barrier)"
            } else {
                "fenced"
            }
        );
        let used = join_within(rx, &what, &counted, n);
        client.join().unwrap();
        let (counts, stats) = srv.join().unwrap();
        assert_eq!(counts[0], n);
        assert_eq!(used, offered, "the client uses what the daemon offers");
        if light && offered {
            assert!(stats.barriers > 0, "no barrier issued on the light path");
            // The kernel's barrier does not always reach the client's CPU
            // (README, IPC measurements): what that lost, the re-check of
            // parked sessions found.
            eprintln!("light path: {} wake-ups lost and found", stats.lost_wakeups);
        } else {
            assert_eq!(stats.barriers, 0);
            // Fenced publish against fenced park: nothing can be lost; a
            // client descheduled between its publish and its look at the
            // flag while the re-check ran would be counted all the same.
            eprintln!("fenced path: {} wake-ups counted lost", stats.lost_wakeups);
        }
        if light && !offered {
            eprintln!("membarrier not offered by this kernel: checked the fenced path only");
        }
    }
}

/// One thread sends alone (the send lock biased to it), then three more
/// join while it is busy (revoking the bias mid-stream): every frame
/// arrives once, in order per sender, against a busy and a parking daemon.
#[test]
fn senders_joining_a_busy_sender_lose_and_reorder_nothing() {
    for busy in [true, false] {
        let server = Server::new(server_config("light-join")).unwrap();
        let ep = server.endpoint().clone();
        let seen = Arc::new(AtomicU64::new(0));
        let srv = counting_server(server, seen.clone(), busy);
        let (tx, rx) = mpsc::channel();
        let per = 50_000u64;
        let counted = seen.clone();
        std::thread::spawn(move || {
            let c = Arc::new(Client::connect(&client_config(&ep)).unwrap());
            let first_done = Arc::new(AtomicBool::new(false));
            let first = {
                let (c, done) = (c.clone(), first_done.clone());
                std::thread::spawn(move || {
                    for i in 0..4 * per {
                        send(&c, 0, i);
                    }
                    done.store(true, Ordering::Relaxed);
                })
            };
            while seen.load(Ordering::Relaxed) < per / 2 {
                std::hint::spin_loop();
            }
            let others: Vec<_> = (1..4u64)
                .map(|who| {
                    let c = c.clone();
                    std::thread::spawn(move || {
                        for i in 0..per {
                            send(&c, who, i);
                        }
                    })
                })
                .collect();
            for t in others {
                t.join().unwrap();
            }
            first.join().unwrap();
            assert!(first_done.load(Ordering::Relaxed));
            while seen.load(Ordering::Acquire) < 7 * per {
                std::thread::yield_now();
            }
            tx.send(()).unwrap();
        });
        join_within(rx, "joining senders", &counted, 7 * per);
        let (counts, _) = srv.join().unwrap();
        assert_eq!(&counts[..4], &[4 * per, per, per, per][..], "busy={busy}");
    }
}

/// A session that asked for a wake-up waits for the barrier that lets the
/// daemon trust its ring; other sessions keeping the daemon busy must not
/// put that barrier off for long. Here the late request's doorbell is
/// never read (the poll loop does not turn), so only the barrier finds it.
#[test]
fn a_busy_session_does_not_hold_back_an_armed_one() {
    let mut server = Server::new(server_config("light-busy-other")).unwrap();
    if !server.light_requests() {
        eprintln!("membarrier not offered by this kernel: nothing to check");
        return;
    }
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (a, _) = connect(&mut server, &mut pl, ccfg.clone());
    let (b, _) = connect(&mut server, &mut pl, ccfg);
    while server.next_event().is_some() {}
    let backlog = 2000u64;
    for i in 0..backlog {
        send(&b, 1, i);
    }
    // Both queued; `a` is found empty and asks for a wake-up, `b` answers.
    server.poll_busy();
    assert!(matches!(server.next_event(), Some(Event::Request { .. })));
    send(&a, 0, 0);
    let mut seen_b = 1u64;
    loop {
        match server.next_event() {
            Some(Event::Request { payload, .. }) => {
                if payload[0] == 0 {
                    break;
                }
                seen_b += 1;
            }
            Some(_) => {}
            None => panic!("ran dry before the armed session's request"),
        }
    }
    assert!(
        seen_b < 200,
        "the armed session waited behind {seen_b} of the other's requests"
    );
}
