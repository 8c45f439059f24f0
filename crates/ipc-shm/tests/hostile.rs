//! A hostile client writes random bytes over its whole segment (indices,
//! chunk headers, payloads), alone and concurrently with the daemon reading:
//! the daemon disconnects it or carries on, never panics, never reads out of
//! bounds, and keeps serving others.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ipc_shm::{
    Client, DisconnectReason, FrameHeader, PollLoop, RingSizes, Server, SessionId, Wait,
};

use rand::{RngCore, SeedableRng};

struct Gen(rand_chacha::ChaCha8Rng);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
}

/// A raw view of a client's segment, movable to the scribbling thread.
#[derive(Clone, Copy)]
struct Segment(*mut u8, usize);
// SAFETY: the tests keep the client (and so the mapping) alive until the
// thread using this view has been joined.
unsafe impl Send for Segment {}

impl Segment {
    /// Writes random bytes: everywhere (mode 0), over the control page only
    /// (mode 1: indices and flags), or over a few single words (mode 2).
    fn scribble(self, g: &mut Gen, mode: u64) {
        let (start, end) = match mode {
            0 => (0, self.1),
            1 => (0, 4096),
            _ => {
                for _ in 0..8 {
                    let at = (g.next() as usize % (self.1 / 8)) * 8;
                    // SAFETY: `at + 8 <= len`, inside the live mapping;
                    // racing the daemon is the point of the test.
                    unsafe { std::ptr::write_volatile(self.0.add(at).cast::<u64>(), g.next()) };
                }
                return;
            }
        };
        for at in (start..end).step_by(8) {
            // SAFETY: as above.
            unsafe { std::ptr::write_volatile(self.0.add(at).cast::<u64>(), g.next()) };
        }
    }
}

fn small() -> RingSizes {
    RingSizes {
        request: 4096,
        response: 4096,
        event: 4096,
    }
}

/// Lets the server look at the session and write to it a few times;
/// returns whether it disconnected the session.
fn exercise(server: &mut Server, pl: &mut PollLoop, id: SessionId) -> Option<DisconnectReason> {
    let h = FrameHeader {
        service: 1,
        kind: 1,
        request_id: 1,
    };
    for round in 0..20 {
        server.poll_busy();
        let _ = server.send_event(id, h, &[round as u8; 40]);
        let _ = server.respond(id, h, &[round as u8; 24]);
        pl.turn(server, Some(Duration::from_millis(1))).unwrap();
        while let Some(ev) = next(server) {
            match ev {
                Ev::Disconnected(s, r) if s == id => return Some(r),
                Ev::Request(s, _, p) => assert!(s == id && p.len() <= 2032),
                other => panic!("{other:?}"),
            }
        }
    }
    None
}

#[test]
fn random_bytes_over_the_segment() {
    let mut server = Server::new(server_config("hostile")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let mut g = Gen::new(0x5eed);
    let mut disconnected = 0;
    let rounds = 300;
    for round in 0..rounds {
        let mut cfg = client_config(server.endpoint());
        cfg.sizes = small();
        let (c, id) = connect(&mut server, &mut pl, cfg);
        // A few honest frames first, so indices are not all zero.
        for i in 0..(round % 7) {
            c.send(1, 3, &[i as u8; 50]).unwrap();
        }
        let (p, len) = c.segment_for_tests();
        Segment(p, len).scribble(&mut g, round % 3);
        let _ = c.send(1, 3, b"after"); // rings the doorbell if it can
        let reason = exercise(&mut server, &mut pl, id);
        if let Some(r) = &reason {
            assert!(
                matches!(
                    r,
                    DisconnectReason::RingViolation { .. } | DisconnectReason::TooSlow { .. }
                ),
                "{r:?}"
            );
            disconnected += 1;
        }
        drop(c);
        if reason.is_none() {
            pump(
                &mut server,
                &mut pl,
                Duration::from_secs(20),
                |_, ev| match ev {
                    Ev::Disconnected(s, _) if s == id => Some(()),
                    _ => None,
                },
            );
        }
        assert_eq!(server.sessions(), 0);
    }
    assert!(disconnected > rounds / 2, "only {disconnected} disconnects");
    // Still serving.
    let mut cfg = client_config(server.endpoint());
    cfg.sizes = small();
    let (c, id) = connect(&mut server, &mut pl, cfg);
    c.send(1, 3, b"fine").unwrap();
    let got = pump(
        &mut server,
        &mut pl,
        Duration::from_secs(20),
        |_, ev| match ev {
            Ev::Request(s, _, p) if s == id => Some(p),
            other => panic!("{other:?}"),
        },
    );
    assert_eq!(got, b"fine");
}

#[test]
fn scribbling_while_the_daemon_reads() {
    let mut server = Server::new(server_config("race")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    server.set_busy_poll(true);
    for seed in 0..6u64 {
        let mut cfg = client_config(server.endpoint());
        cfg.sizes = small();
        let (c, id) = connect(&mut server, &mut pl, cfg);
        let seg = {
            let (p, len) = c.segment_for_tests();
            Segment(p, len)
        };
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let scribbler = std::thread::spawn(move || {
            let mut g = Gen::new(seed);
            while !s.load(Ordering::Relaxed) {
                seg.scribble(&mut g, 2);
            }
        });
        let mut reason = None;
        for _ in 0..2000 {
            reason = exercise(&mut server, &mut pl, id);
            if reason.is_some() {
                break;
            }
        }
        stop.store(true, Ordering::Relaxed);
        scribbler.join().unwrap();
        drop(c);
        if reason.is_none() {
            pump(
                &mut server,
                &mut pl,
                Duration::from_secs(20),
                |_, ev| match ev {
                    Ev::Disconnected(s, _) if s == id => Some(()),
                    _ => None,
                },
            );
        }
        assert_eq!(server.sessions(), 0);
    }
    server.set_busy_poll(false);
    let cfg = client_config(server.endpoint());
    let t = std::thread::spawn(move || {
        let c = Client::connect(&cfg).unwrap();
        c.send(1, 3, b"ok").unwrap();
        c
    });
    pump(
        &mut server,
        &mut pl,
        Duration::from_secs(20),
        |_, ev| match ev {
            Ev::Request(_, _, p) => {
                let _: () = assert_eq!(p, b"ok");
                Some(())
            }
            _ => None,
        },
    );
    let c = t.join().unwrap();
    let _ = c.call(
        1,
        KIND_ONE_WAY,
        b"",
        Wait::Spin,
        Some(Duration::from_millis(1)),
    );
}

/// The doorbell is one open file description shared with the client: a
/// client that clears its `O_NONBLOCK` and empties it behind the daemon's
/// back (after the daemon saw it readable, before it drains it) must not
/// make the daemon's drain block.
#[test]
fn a_doorbell_made_blocking_and_emptied_by_the_client_never_blocks_the_daemon() {
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut server = Server::new(server_config("bell")).unwrap();
        let mut pl = PollLoop::new().unwrap();
        let cfg = client_config(server.endpoint());
        let (c, id) = connect(&mut server, &mut pl, cfg);
        let bell = c.doorbell_for_tests();
        // SAFETY: flag calls on the client's own doorbell fd.
        unsafe {
            let fl = libc::fcntl(bell, libc::F_GETFL);
            assert!(fl >= 0);
            assert_eq!(libc::fcntl(bell, libc::F_SETFL, fl & !libc::O_NONBLOCK), 0);
        }
        for round in 0..3u8 {
            // The daemon goes idle and asks for a doorbell ...
            if let Some(ev) = next(&mut server) {
                panic!("{ev:?}");
            }
            assert!(!server.has_work());
            // ... which the send rings.
            c.send(1, 3, &[round; 8]).unwrap();
            // The daemon sees the doorbell readable ...
            let mut reported = 0;
            while reported == 0 {
                reported = pl.turn(&mut server, Some(Duration::from_secs(5))).unwrap();
            }
            // ... and the client empties it first (a pipe doorbell's write
            // end cannot be read: then this fails at once, also fine).
            let mut v = 0u64;
            // SAFETY: reads 8 bytes into a valid local.
            unsafe { libc::read(bell, (&mut v as *mut u64).cast(), 8) };
            // The daemon reads the request, then drains the doorbell and
            // goes idle, without blocking.
            let mut got = Vec::new();
            while let Some(ev) = next(&mut server) {
                got.push(ev);
            }
            assert!(
                matches!(&got[..], [Ev::Request(s, _, p)] if *s == id && p[..] == [round; 8]),
                "{got:?}"
            );
        }
        done_tx.send(()).unwrap();
    });
    done_rx
        .recv_timeout(Duration::from_secs(60))
        .expect("the daemon blocked on a doorbell the client emptied");
}
