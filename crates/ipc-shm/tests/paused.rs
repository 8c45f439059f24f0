//! `Server::set_requests_paused`: requests wait in the clients' rings
//! (which fill: TRY_AGAIN), connections and hang-ups are still reported,
//! and resuming delivers every request, in order, without a new wake-up.

mod common;

use std::time::{Duration, Instant};

use common::*;
use ipc_shm::{ClientError, DisconnectReason, PollLoop, Server};

const LONG: Duration = Duration::from_secs(20);

/// Turns the server for `d`, asserting nothing but `allowed` happens.
fn idle_for(server: &mut Server, pl: &mut PollLoop, d: Duration, mut allowed: impl FnMut(Ev)) {
    let end = Instant::now() + d;
    while Instant::now() < end {
        pl.turn(server, Some(Duration::from_millis(5))).unwrap();
        while let Some(ev) = next(server) {
            allowed(ev);
        }
    }
}

#[test]
fn paused_requests_wait_in_the_ring_and_resume_in_order() {
    let (mut server, mut pl, ccfg) = small_rings("paused");
    let (c, id) = connect(&mut server, &mut pl, ccfg.clone());
    server.set_requests_paused(true);
    assert!(server.requests_paused());
    let mut sent = 0u32;
    loop {
        match c.send(1, KIND_ONE_WAY, &sent.to_le_bytes()) {
            Ok(_) => sent += 1,
            Err(ClientError::TryAgain) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 10_000, "ring never filled");
    }
    // Paused: no request comes out, however long the server turns, and
    // the server does not spin on the client's doorbell.
    idle_for(&mut server, &mut pl, Duration::from_millis(100), |ev| {
        panic!("paused, yet {ev:?}")
    });
    assert!(!server.has_work());
    // Connections and hang-ups are still reported while paused.
    let (c2, id2) = connect(&mut server, &mut pl, ccfg);
    c2.send(1, KIND_ONE_WAY, b"never read").unwrap();
    drop(c2);
    let r = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) if s == id2 => Some(r),
        other => panic!("{other:?}"),
    });
    assert_eq!(r, DisconnectReason::PeerClosed);
    assert!(matches!(
        c.send(1, KIND_ONE_WAY, b"full"),
        Err(ClientError::TryAgain)
    ));
    // Resuming needs no new readiness: the held session has work.
    server.set_requests_paused(false);
    assert!(server.has_work());
    let mut got = 0u32;
    while let Some(ev) = next(&mut server) {
        let Ev::Request(s, _, p) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(s, id);
        assert_eq!(p, got.to_le_bytes(), "in order");
        got += 1;
    }
    if got < sent {
        pump(&mut server, &mut pl, LONG, |_, ev| {
            let Ev::Request(_, _, p) = ev else {
                panic!("{ev:?}")
            };
            assert_eq!(p, got.to_le_bytes(), "in order");
            got += 1;
            (got == sent).then_some(())
        });
    }
    assert_eq!(got, sent, "none lost");
    c.send(1, KIND_ONE_WAY, b"again").unwrap();
    let p = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Request(_, _, p) => Some(p),
        other => panic!("{other:?}"),
    });
    assert_eq!(p, b"again");
}
