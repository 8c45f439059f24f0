//! Session set-up, request/response/event paths, flow control, lifetimes,
//! authorization and hostile clients, with real processes where it matters.

mod common;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use ipc_shm::proto::{self, Status};
use ipc_shm::{
    Client, ClientError, Delivery, DisconnectReason, DispatchMode, Endpoint, FrameHeader, PollLoop,
    RingSizes, SendError, Server, ServerConfig, Wait,
};

const LONG: Duration = Duration::from_secs(20);

/// Entry point of the child processes the tests spawn (re-executing this
/// binary); a no-op in a normal run.
#[test]
fn child_entry() {
    let Ok(role) = std::env::var("IPC_SHM_CHILD") else {
        return;
    };
    let cfg = ipc_shm::ClientConfig::default(); // endpoint from the environment
    match role.as_str() {
        "sigkill" => {
            let c = Client::connect(&cfg).unwrap();
            for i in 0..3u8 {
                c.send(1, KIND_ONE_WAY, &[i; 10]).unwrap();
            }
            println!("READY");
            std::thread::sleep(Duration::from_secs(60));
        }
        "nobody" => {
            // SAFETY: plain libc calls with no pointers, in a throwaway child process.
            let ok = unsafe { libc::setgid(65534) == 0 && libc::setuid(65534) == 0 };
            assert!(ok, "setuid failed");
            match Client::connect(&cfg) {
                Ok(_) => println!("RESULT ok"),
                Err(ClientError::Refused(s)) => println!("RESULT refused {s:?}"),
                Err(e) => println!("RESULT error {e}"),
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

#[test]
fn call_events_and_pollable_fd() {
    let srv = EchoServer::start(server_config("basic"));
    let c = Client::connect(&client_config(&srv.endpoint)).unwrap();
    let r = c
        .call(1, KIND_ECHO, b"hello", Wait::Park, Some(LONG))
        .unwrap();
    assert_eq!(r.payload, b"hello");
    assert_eq!(r.header.kind, KIND_ECHO);
    // Nothing to dispatch yet: the fd is not readable.
    let mut pfd = libc::pollfd {
        fd: c.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    c.call(1, KIND_EVENTS, &5u32.to_le_bytes(), Wait::Spin, Some(LONG))
        .unwrap();
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1, "fd readable");
    let mut seen = Vec::new();
    let n = c
        .dispatch(DispatchMode::One, None, |h, p| {
            seen.push((h.request_id, p.len()))
        })
        .unwrap();
    assert_eq!(n, 1);
    // Events remain: the fd stays readable.
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 1);
    c.dispatch(DispatchMode::All, None, |h, p| {
        seen.push((h.request_id, p.len()))
    })
    .unwrap();
    assert_eq!(seen, (0..5).map(|i| (i, 64)).collect::<Vec<_>>());
    // Drained and reset.
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 0) }, 0);
    assert_eq!(c.dispatch(DispatchMode::All, None, |_, _| {}).unwrap(), 0);
}

#[test]
fn many_callers_while_one_dispatches() {
    let srv = EchoServer::start(server_config("threads"));
    let c = Arc::new(Client::connect(&client_config(&srv.endpoint)).unwrap());
    let delivered = Arc::new(AtomicU64::new(0));
    let dispatcher = {
        let (c, d) = (c.clone(), delivered.clone());
        std::thread::spawn(move || {
            let mut next = 0u64;
            while d.load(Ordering::Relaxed) < 400 {
                c.dispatch(
                    DispatchMode::Blocking,
                    Some(Duration::from_millis(200)),
                    |h, _| {
                        assert_eq!(h.request_id % 100, next % 100);
                        next += 1;
                        d.fetch_add(1, Ordering::Relaxed);
                    },
                )
                .unwrap();
            }
        })
    };
    let callers: Vec<_> = (0..4u8)
        .map(|t| {
            let c = c.clone();
            std::thread::spawn(move || {
                for i in 0..300u32 {
                    let body = [t, (i % 251) as u8, 7];
                    let wait = if i % 2 == 0 { Wait::Park } else { Wait::Spin };
                    let r = loop {
                        match c.call(1, KIND_ECHO, &body, wait, Some(LONG)) {
                            Err(ClientError::TryAgain) => std::thread::yield_now(),
                            other => break other.unwrap(),
                        }
                    };
                    assert_eq!(r.payload, body);
                }
            })
        })
        .collect();
    for t in callers {
        t.join().unwrap();
    }
    // 4 rounds of 100 events, in order, while calls go on.
    for _ in 0..4 {
        c.call(
            1,
            KIND_EVENTS,
            &100u32.to_le_bytes(),
            Wait::Park,
            Some(LONG),
        )
        .unwrap();
    }
    dispatcher.join().unwrap();
    assert_eq!(delivered.load(Ordering::Relaxed), 400);
    assert_eq!(c.unmatched_responses(), 0);
}

#[test]
fn full_request_ring_returns_try_again() {
    let (mut server, mut pl, ccfg) = small_rings("tryagain");
    let (c, _) = connect(&mut server, &mut pl, ccfg);
    let mut sent = 0u32;
    loop {
        match c.send(1, KIND_ONE_WAY, &sent.to_le_bytes()) {
            Ok(_) => sent += 1,
            Err(ClientError::TryAgain) => break,
            Err(e) => panic!("{e}"),
        }
        assert!(sent < 10_000, "ring never filled");
    }
    assert_eq!(sent, 4096 / 32);
    // The server drains; every message arrives, in order, none dropped.
    let mut got = 0u32;
    pump(&mut server, &mut pl, LONG, |_, ev| {
        let Ev::Request(_, _, p) = ev else {
            panic!("{ev:?}")
        };
        assert_eq!(p, got.to_le_bytes());
        got += 1;
        (got == sent).then_some(())
    });
    c.send(1, KIND_ONE_WAY, b"again").unwrap();
    assert!(matches!(
        c.send(1, KIND_ONE_WAY, &vec![0u8; 4096]),
        Err(ClientError::TooLarge)
    ));
}

#[test]
fn event_overflow_is_bounded_and_lossless() {
    let mut cfg = server_config("overflow");
    cfg.overflow_frames = 64;
    let mut server = Server::new(cfg).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let mut ccfg = client_config(server.endpoint());
    ccfg.sizes.event = 4096;
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let h = |i: u64| FrameHeader {
        service: 1,
        kind: 9,
        request_id: i,
    };
    // 4096 / (16 + 112) = 32 fit in the ring; the next 64 queue.
    let mut queued = 0;
    for i in 0..96u64 {
        if server.send_event(id, h(i), &[1u8; 100]).unwrap() == Delivery::Queued {
            queued += 1;
        }
    }
    assert_eq!(queued, 64);
    // The client reads everything, in order, as the server refills.
    read_in_order(&c, &mut server, &mut pl, 96);
    // A client that stops reading: ring full, queue full, then disconnected.
    let mut result = Ok(Delivery::Ring);
    for i in 0..200u64 {
        result = server.send_event(id, h(i), &[2u8; 100]);
        if result.is_err() {
            break;
        }
    }
    assert_eq!(result, Err(SendError::Disconnected));
    let reason = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) if s == id => Some(r),
        other => panic!("{other:?}"),
    });
    assert!(matches!(
        reason,
        DisconnectReason::TooSlow { ring: "event", .. }
    ));
    assert_eq!(server.send_event(id, h(0), b"x"), Err(SendError::NoSession));
    // The client sees the events that made it, then the end of the session.
    let mut n = 0;
    loop {
        match c.dispatch(DispatchMode::All, None, |_, _| n += 1) {
            Ok(_) => continue,
            Err(ClientError::Disconnected) => break,
            Err(e) => panic!("{e}"),
        }
    }
    assert_eq!(n, 32);
}

#[test]
fn overflow_of_all_sessions_together_is_bounded() {
    // Per session 80 frames may wait, all sessions together 100 frames'
    // bytes: a second client that reads nothing is disconnected once the
    // total is reached, and its share is freed for the others.
    let mut cfg = server_config("overflow-total");
    cfg.overflow_frames = 80;
    cfg.overflow_total_bytes = 100 * 100;
    let mut server = Server::new(cfg).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let mut ccfg = client_config(server.endpoint());
    ccfg.sizes.event = 4096;
    let (a, ida) = connect(&mut server, &mut pl, ccfg.clone());
    let (_b, idb) = connect(&mut server, &mut pl, ccfg);
    let h = |i: u64| FrameHeader {
        service: 1,
        kind: 9,
        request_id: i,
    };
    // 32 fit in each ring; A queues 64 (6,400 bytes), B 36 more (10,000).
    for i in 0..96u64 {
        server.send_event(ida, h(i), &[1u8; 100]).unwrap();
    }
    for i in 0..68u64 {
        server.send_event(idb, h(i), &[2u8; 100]).unwrap();
    }
    assert_eq!(
        server.send_event(idb, h(68), &[2u8; 100]),
        Err(SendError::Disconnected)
    );
    let reason = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) if s == idb => Some(r),
        other => panic!("{other:?}"),
    });
    assert!(matches!(
        reason,
        DisconnectReason::TooSlow { ring: "event", .. }
    ));
    // B's 3,600 bytes went back: A may queue up to its own 80 frames.
    for i in 96..112u64 {
        assert_eq!(
            server.send_event(ida, h(i), &[1u8; 100]),
            Ok(Delivery::Queued)
        );
    }
    // A reads every one of its 112 events, in order.
    read_in_order(&a, &mut server, &mut pl, 112);
}

/// The client dispatches events 0..n (by request id, in order) while the
/// server refills its ring from the overflow queue; nothing else happens.
fn read_in_order(c: &Client, server: &mut Server, pl: &mut PollLoop, n: u64) {
    let mut next = 0u64;
    while next < n {
        c.dispatch(DispatchMode::All, None, |hd, _| {
            assert_eq!(hd.request_id, next);
            next += 1;
        })
        .unwrap();
        pl.turn(server, Some(Duration::from_millis(5))).unwrap();
        if let Some(ev) = next_ev(server) {
            panic!("unexpected {ev:?}");
        }
    }
}

fn next_ev(server: &mut Server) -> Option<Ev> {
    common::next(server)
}

#[test]
fn unknown_service_is_an_error_to_the_client() {
    let mut cfg = server_config("svc");
    cfg.services = 1 << 1;
    let srv = EchoServer::start(cfg);
    let c = Client::connect(&client_config(&srv.endpoint)).unwrap();
    assert!(matches!(
        c.call(5, KIND_ECHO, b"x", Wait::Park, Some(LONG)),
        Err(ClientError::UnknownService)
    ));
    assert!(matches!(
        c.call(200, KIND_ECHO, b"x", Wait::Park, Some(LONG)),
        Err(ClientError::UnknownService)
    ));
    assert_eq!(
        c.call(1, KIND_ECHO, b"y", Wait::Park, Some(LONG))
            .unwrap()
            .payload,
        b"y"
    );
}

#[test]
fn malformed_hello_gets_an_explicit_status() {
    use std::io::{Read, Write};
    use std::os::linux::net::SocketAddrExt;
    let srv = EchoServer::start(server_config("hello"));
    let Endpoint::Abstract(name) = &srv.endpoint else {
        unreachable!()
    };
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
    let status = |bytes: &[u8]| {
        let mut s = std::os::unix::net::UnixStream::connect_addr(&addr).unwrap();
        s.set_read_timeout(Some(LONG)).unwrap();
        s.write_all(bytes).unwrap();
        let mut b = [0u8; proto::REPLY_LEN];
        s.read_exact(&mut b).unwrap();
        proto::decode_reply(&b).unwrap().status
    };
    assert_eq!(status(&[0xAB; 32]), Status::BadHello);
    assert_eq!(status(b"short"), Status::BadHello);
    let mut hello = proto::encode_hello(&proto::Hello {
        version: proto::PROTOCOL_VERSION,
        sizes: RingSizes {
            request: 0,
            response: 0,
            event: 0,
        },
    });
    hello[4] = 99;
    assert_eq!(status(&hello), Status::BadVersion);
    // The server is still fine.
    let c = Client::connect(&client_config(&srv.endpoint)).unwrap();
    c.call(1, KIND_ECHO, b"ok", Wait::Park, Some(LONG)).unwrap();
}

#[test]
fn session_limit_is_an_explicit_refusal() {
    let mut cfg = server_config("limit");
    cfg.max_sessions = 1;
    let srv = EchoServer::start(cfg);
    let _a = Client::connect(&client_config(&srv.endpoint)).unwrap();
    assert!(matches!(
        Client::connect(&client_config(&srv.endpoint)),
        Err(ClientError::Refused(Status::TooManySessions))
    ));
}

/// A server that takes no connections yet (the daemon before its first
/// sync) answers each with NotReady, which the client turns into
/// TRY_AGAIN; once it accepts, the same client connects.
#[test]
fn not_accepting_refuses_as_not_ready_until_accepting() {
    let mut server = Server::new(server_config("notready")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let cfg = client_config(server.endpoint());
    let attempt = |server: &mut Server, pl: &mut PollLoop| {
        let cfg = cfg.clone();
        let t = std::thread::spawn(move || Client::connect(&cfg).map(drop));
        while !t.is_finished() {
            pl.turn(server, Some(Duration::from_millis(10))).unwrap();
            while next(server).is_some() {}
        }
        t.join().unwrap()
    };
    server.set_accepting(false);
    for _ in 0..3 {
        assert!(matches!(
            attempt(&mut server, &mut pl),
            Err(ClientError::Refused(Status::NotReady))
        ));
    }
    assert_eq!(server.stats().refused, 3);
    assert_eq!(server.sessions(), 0);
    server.set_accepting(true);
    attempt(&mut server, &mut pl).unwrap();
}

#[test]
fn unauthorized_peer_is_refused_until_allowed() {
    // SAFETY: plain getter.
    if unsafe { libc::geteuid() } != 0 {
        eprintln!("skipped: needs root to run a child as another uid");
        return;
    }
    let mut server = Server::new(server_config("authz")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ep = server.endpoint().clone();
    let run_child = |server: &mut Server, pl: &mut PollLoop| {
        let mut child = spawn_child("nobody", &ep);
        let t = std::thread::spawn(move || {
            let line = wait_line(&mut child, "RESULT");
            drop(child);
            line
        });
        while !t.is_finished() {
            pl.turn(server, Some(Duration::from_millis(10))).unwrap();
            while let Some(ev) = next(server) {
                if let Ev::Request(..) = ev {
                    panic!("{ev:?}")
                }
            }
        }
        t.join().unwrap()
    };
    assert_eq!(
        run_child(&mut server, &mut pl),
        "RESULT refused NotAuthorized"
    );
    assert_eq!(server.stats().refused, 1);
    server.authorization_mut().runtime_uids.insert(65534);
    assert_eq!(run_child(&mut server, &mut pl), "RESULT ok");
}

#[test]
fn sigkilled_client_is_reclaimed_exactly_once() {
    let mut server = Server::new(server_config("kill")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let mut child = spawn_child("sigkill", server.endpoint());
    let ep = server.endpoint().clone();
    let _ = ep;
    // Run the server while the child connects and sends.
    let reader = std::thread::spawn(move || {
        let line = wait_line(&mut child, "READY");
        (line, child)
    });
    let mut session = None;
    let mut requests = 0;
    pump(&mut server, &mut pl, LONG, |_, ev| {
        match ev {
            Ev::Connected(id) => session = Some(id),
            Ev::Request(id, _, p) => {
                assert_eq!(Some(id), session);
                assert_eq!(p, vec![requests as u8; 10]);
                requests += 1;
            }
            other => panic!("{other:?}"),
        }
        (requests == 3).then_some(())
    });
    let (_, mut child) = reader.join().unwrap();
    assert_eq!(server.sessions(), 1);
    child.0.kill().unwrap();
    child.0.wait().unwrap();
    let id = session.unwrap();
    let reason = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) => {
            assert_eq!(s, id);
            Some(r)
        }
        other => panic!("{other:?}"),
    });
    assert_eq!(reason, DisconnectReason::PeerClosed);
    assert_eq!(server.sessions(), 0);
    // Nothing more about that session, ever.
    for _ in 0..20 {
        pl.turn(&mut server, Some(Duration::from_millis(5)))
            .unwrap();
        assert_eq!(next(&mut server), None);
    }
    assert_eq!(
        server.respond(id, FrameHeader::default(), b""),
        Err(SendError::NoSession)
    );
    server.disconnect(id, "again");
    assert_eq!(next(&mut server), None);
    assert_eq!(server.stats().disconnected, 1);
}

#[test]
fn daemon_death_is_a_clear_error_and_clients_reconnect() {
    let cfg = server_config("death");
    let ep = cfg.endpoint.clone();
    let srv = EchoServer::start(cfg.clone());
    let c = Client::connect(&client_config(&ep)).unwrap();
    c.call(1, KIND_ECHO, b"1", Wait::Park, Some(LONG)).unwrap();
    let log = srv.stop();
    assert!(matches!(log[0], Ev::Connected(_)));
    // The pollable fd reports the hang-up; every call says Disconnected.
    let mut pfd = libc::pollfd {
        fd: c.fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    assert_eq!(unsafe { libc::poll(&mut pfd, 1, 20_000) }, 1);
    assert!(matches!(
        c.dispatch(DispatchMode::Blocking, Some(LONG), |_, _| {}),
        Err(ClientError::Disconnected)
    ));
    assert!(matches!(
        c.call(1, KIND_ECHO, b"2", Wait::Park, Some(LONG)),
        Err(ClientError::Disconnected)
    ));
    assert!(matches!(
        c.send(1, KIND_ONE_WAY, b"3"),
        Err(ClientError::Disconnected)
    ));
    drop(c);
    assert!(Client::connect(&client_config(&ep)).is_err());
    // A new daemon on the same endpoint: clients reconnect.
    let srv = EchoServer::start(cfg);
    let c = Client::connect(&client_config(&ep)).unwrap();
    assert_eq!(
        c.call(1, KIND_ECHO, b"4", Wait::Park, Some(LONG))
            .unwrap()
            .payload,
        b"4"
    );
    drop(srv);
}

#[test]
fn filesystem_path_endpoint_and_override() {
    let dir = std::env::temp_dir().join(format!("ipc-shm-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("ipc.sock");
    let ep = Endpoint::parse(path.to_str().unwrap());
    assert_eq!(ep, Endpoint::Path(path.clone()));
    let srv = EchoServer::start(ServerConfig {
        endpoint: ep.clone(),
        ..ServerConfig::default()
    });
    let c = Client::connect(&client_config(&ep)).unwrap();
    c.call(1, KIND_ECHO, b"p", Wait::Park, Some(LONG)).unwrap();
    drop(c);
    drop(srv);
    assert!(!path.exists(), "socket file removed");
    std::fs::remove_dir(&dir).unwrap();
}

#[test]
fn client_closing_is_noticed() {
    let mut server = Server::new(server_config("close")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    drop(c);
    let r = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) if s == id => Some(r),
        other => panic!("{other:?}"),
    });
    assert_eq!(r, DisconnectReason::PeerClosed);
}

#[test]
fn a_session_the_daemon_ends_makes_the_client_fd_readable() {
    let mut server = Server::new(server_config("ended")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    // Nothing to read yet: a poller sleeps.
    assert!(!readable(c.fd(), 0));
    server.disconnect(id, "test: protocol abuse");
    let r = pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, r) if s == id => Some(r),
        other => panic!("{other:?}"),
    });
    assert_eq!(r, DisconnectReason::Requested("test: protocol abuse"));
    // A poller wakes, and dispatch says why (also a second time).
    assert!(readable(c.fd(), 5000), "the fd stayed quiet");
    for _ in 0..2 {
        assert!(matches!(
            c.dispatch(DispatchMode::All, None, |_, _| {}),
            Err(ClientError::Disconnected)
        ));
    }
    assert!(matches!(
        c.send(1, KIND_ONE_WAY, b"x"),
        Err(ClientError::Disconnected)
    ));
}

#[test]
fn a_busy_polling_daemon_is_never_rung_and_a_parked_one_is() {
    let mut server = Server::new(server_config("busybell")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, _id) = connect(&mut server, &mut pl, ccfg);
    let bell = c.doorbell_for_tests();
    // What the client's sends wrote to the doorbell since the last look
    // (the test never turns the poll loop, so nothing else reads it).
    let rung = || {
        let mut v = 0u64;
        // SAFETY: an 8-byte read into a u64 from the client's own eventfd.
        let r = unsafe { libc::read(bell, (&mut v as *mut u64).cast(), 8) };
        if r == 8 {
            v
        } else {
            0
        }
    };
    server.set_busy_poll(true);
    let mut got = 0;
    for i in 0..1000u32 {
        c.send(1, KIND_ONE_WAY, &i.to_le_bytes()).unwrap();
        if i % 100 == 99 {
            server.poll_busy();
            while let Some(ev) = next(&mut server) {
                assert!(matches!(ev, Ev::Request(..)), "{ev:?}");
                got += 1;
            }
        }
    }
    assert_eq!(got, 1000);
    assert_eq!(rung(), 0, "a send to a busy-polling daemon made a syscall");
    // Parked: the daemon finds the ring empty and asks for a doorbell,
    // which the next send rings.
    server.set_busy_poll(false);
    assert!(next(&mut server).is_none());
    assert!(!server.has_work());
    c.send(1, KIND_ONE_WAY, b"wake").unwrap();
    assert!(rung() >= 1, "a send to a parked daemon did not ring it");
}

fn readable(fd: std::os::fd::RawFd, ms: i32) -> bool {
    let mut pfd = libc::pollfd {
        fd,
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd.
    unsafe { libc::poll(&mut pfd, 1, ms) == 1 }
}

#[test]
fn deferred_events_appear_at_publish_and_wake_the_client_once() {
    let mut server = Server::new(server_config("deferred")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let h = |i: u64| FrameHeader {
        service: 1,
        kind: 7,
        request_id: i,
    };
    for i in 0..3 {
        assert_eq!(
            server
                .send_event_deferred(id, h(i), &[&[i as u8; 32]])
                .unwrap(),
            Delivery::Ring
        );
    }
    // Written, not published: the client neither sees nor is woken.
    assert!(!readable(c.fd(), 50));
    assert_eq!(c.dispatch(DispatchMode::All, None, |_, _| {}).unwrap(), 0);
    server.publish_events();
    assert!(readable(c.fd(), 20_000), "one wake-up for the batch");
    let mut seen = Vec::new();
    let n = c
        .dispatch(DispatchMode::All, None, |h, p| {
            seen.push((h.request_id, p[0]))
        })
        .unwrap();
    assert_eq!(n, 3);
    assert_eq!(seen, vec![(0, 0), (1, 1), (2, 2)]);
    // Drained: the fd is reset, and a blind dispatch leaves it so.
    assert!(!readable(c.fd(), 0));
    assert_eq!(c.dispatch(DispatchMode::All, None, |_, _| {}).unwrap(), 0);
    assert!(!readable(c.fd(), 0));
    // A session that ended before the publish is skipped.
    server.send_event_deferred(id, h(9), &[&[9; 8]]).unwrap();
    drop(c);
    pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Disconnected(s, _) if s == id => Some(()),
        _ => None,
    });
    server.publish_events();
}

#[test]
fn payloads_in_parts_arrive_whole_both_ways_through_wrap_and_spill() {
    let (mut server, mut pl, ccfg) = small_rings("parts");
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    // Bodies of 3 parts (one empty) with lengths that make the rings wrap.
    let body = |i: u32| -> (Vec<u8>, Vec<u8>) {
        let a = i.to_le_bytes().to_vec();
        let b = vec![i as u8; 100 + (i as usize * 37) % 400];
        (a, b)
    };
    let whole = |i: u32| {
        let (a, b) = body(i);
        [a, b].concat()
    };
    let total = 40u32;
    let mut sent = 0u32;
    let mut got = 0u32;
    while got < total {
        while sent < total {
            let (a, b) = body(sent);
            match c.send_parts(1, KIND_ONE_WAY, &[&a, &[], &b]) {
                Ok(_) => sent += 1,
                Err(ClientError::TryAgain) => break,
                Err(e) => panic!("{e}"),
            }
        }
        pump(&mut server, &mut pl, LONG, |_, ev| {
            let Ev::Request(_, _, p) = ev else {
                panic!("{ev:?}")
            };
            assert_eq!(p, whole(got), "request {got}");
            got += 1;
            (got == sent).then_some(())
        });
    }
    // Events: more than the 4 KiB ring holds, so some spill and are
    // flushed later; each arrives whole and in order.
    let h = |i: u32| FrameHeader {
        service: 1,
        kind: 7,
        request_id: u64::from(i),
    };
    for i in 0..total {
        let (a, b) = body(i);
        server
            .send_event_deferred(id, h(i), &[&a, &b, &[]])
            .unwrap();
    }
    server.publish_events();
    let mut seen = 0u32;
    let end = std::time::Instant::now() + LONG;
    while seen < total && std::time::Instant::now() < end {
        c.dispatch(DispatchMode::All, None, |hd, p| {
            assert_eq!(hd.request_id, u64::from(seen));
            assert_eq!(p, &whole(seen)[..], "event {seen}");
            seen += 1;
        })
        .unwrap();
        pl.turn(&mut server, Some(Duration::from_millis(5)))
            .unwrap();
        if let Some(ev) = next_ev(&mut server) {
            panic!("unexpected {ev:?}");
        }
    }
    assert_eq!(seen, total);
}

#[test]
fn batch_dispatch_takes_at_most_n_and_leaves_the_fd_readable() {
    let mut server = Server::new(server_config("batch")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    for i in 0..10u64 {
        let h = FrameHeader {
            service: 1,
            kind: 7,
            request_id: i,
        };
        server.send_event(id, h, &[i as u8; 16]).unwrap();
    }
    let mut seen = Vec::new();
    let mut take = |n| {
        c.dispatch(DispatchMode::Batch(n), None, |h, _| seen.push(h.request_id))
            .unwrap()
    };
    assert_eq!(take(4), 4);
    assert!(readable(c.fd(), 0), "six events remain");
    assert_eq!(take(4), 4);
    assert_eq!(take(4), 2);
    assert_eq!(seen, (0..10).collect::<Vec<u64>>());
    assert!(!readable(c.fd(), 0), "drained");
}

#[test]
fn request_backlog_tells_how_far_behind_the_daemon_is() {
    let mut server = Server::new(server_config("backlog")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let (used, cap) = c.request_backlog();
    assert_eq!(used, 0);
    // The server reads nothing meanwhile: the ring fills to TRY_AGAIN.
    let body = [7u8; 1000];
    let mut sent = 0u32;
    while c.send(1, KIND_ONE_WAY, &body).is_ok() {
        sent += 1;
    }
    let (used, _) = c.request_backlog();
    assert!(
        used > cap / 2 && used <= cap,
        "{used} of {cap} after {sent} sends"
    );
    // It reads them all: the client sees the ring empty again.
    let mut got = 0;
    pump(&mut server, &mut pl, LONG, |_, ev| match ev {
        Ev::Request(s, _, _) if s == id => {
            got += 1;
            (got == sent).then_some(())
        }
        _ => None,
    });
    let end = std::time::Instant::now() + LONG;
    while c.request_backlog().0 != 0 {
        assert!(std::time::Instant::now() < end, "{:?}", c.request_backlog());
        pl.turn(&mut server, Some(Duration::from_millis(10)))
            .unwrap();
        while server.next_event().is_some() {}
    }
}

/// An event handed out in place keeps its ring space until its handler
/// returns, also while a nested dispatch takes and gives back the next
/// event and the daemon writes more: the daemon never overwrites it, the
/// handler may change it, and everything after it arrives whole and in
/// order once it is given back.
#[test]
fn events_handled_in_place_keep_their_ring_space_until_given_back() {
    let (mut server, mut pl, ccfg) = small_rings("inplace");
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let fill = |i: u64| (i as u8).wrapping_mul(37).wrapping_add(1);
    let send = |server: &mut Server, i: u64| {
        let h = FrameHeader {
            service: 1,
            kind: 7,
            request_id: i,
        };
        server.send_event(id, h, &[fill(i); 900]).unwrap();
    };
    for i in 0..3 {
        send(&mut server, i);
    }
    let outer = c
        .dispatch_in_place(|h, a| {
            assert_eq!((h.request_id, a.len()), (0, 900));
            let inner = c
                .dispatch_in_place(|h, b| {
                    b[0] = 0xEE;
                    h.request_id
                })
                .unwrap();
            assert_eq!(inner, Some(1));
            // Four 900-byte events fill the 4 KiB ring: while event 0 is
            // held, event 3 takes the last room and 4..8 wait in the
            // daemon's overflow queue; a daemon that thought event 0's
            // space free would write over it.
            for i in 3..8 {
                send(&mut server, i);
            }
            pl.turn(&mut server, Some(Duration::ZERO)).unwrap();
            while server.next_event().is_some() {}
            a[1] = 0xAA;
            assert!(a[2..].iter().all(|&x| x == fill(0)), "event 0 overwritten");
            h.request_id
        })
        .unwrap();
    assert_eq!(outer, Some(0));
    let mut seen = Vec::new();
    let end = std::time::Instant::now() + LONG;
    while seen.len() < 6 {
        assert!(std::time::Instant::now() < end, "only {seen:?}");
        pl.turn(&mut server, Some(Duration::from_millis(10)))
            .unwrap();
        while server.next_event().is_some() {}
        c.dispatch(DispatchMode::All, None, |h, p| {
            assert!(p.len() == 900 && p.iter().all(|&x| x == fill(h.request_id)));
            seen.push(h.request_id);
        })
        .unwrap();
    }
    assert_eq!(seen, (2..8).collect::<Vec<u64>>());
}

/// A request's payload can be taken out of the server without a copy: the
/// buffer swapped in holds it, and the server goes on reading into the one
/// it got in exchange.
#[test]
fn take_request_swaps_the_payload_out_of_the_server() {
    let mut server = Server::new(server_config("take")).unwrap();
    let mut pl = PollLoop::new().unwrap();
    let ccfg = client_config(server.endpoint());
    let (c, _id) = connect(&mut server, &mut pl, ccfg);
    let mut mine = vec![0u8; server.request_buffer_len()].into_boxed_slice();
    for round in 0..3u8 {
        c.send(1, KIND_ONE_WAY, &[round + 1; 300]).unwrap();
        let end = std::time::Instant::now() + LONG;
        let len = loop {
            assert!(std::time::Instant::now() < end, "no request");
            pl.turn(&mut server, Some(Duration::from_millis(10)))
                .unwrap();
            if let Some(ipc_shm::Event::Request { payload, .. }) = server.next_event() {
                break payload.len();
            }
        };
        server.take_request(&mut mine);
        assert_eq!(&mine[..len], &[round + 1; 300][..]);
    }
}

/// A thread blocked in `dispatch(Blocking)` does not keep a thread that
/// handled an event in place from giving it back: the ring was full behind
/// that event, so the blocked thread waits for exactly the room the give
/// back frees.
#[test]
fn giving_back_an_event_handled_in_place_wakes_a_blocked_dispatcher() {
    let (mut server, mut pl, ccfg) = small_rings("inplace-block");
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let c = std::sync::Arc::new(c);
    let send = |server: &mut Server, i: u64| {
        let h = FrameHeader {
            service: 1,
            kind: 7,
            request_id: i,
        };
        server.send_event(id, h, &[i as u8; 900]).unwrap();
    };
    // Four 900-byte events fill the 4 KiB ring.
    for i in 0..4 {
        send(&mut server, i);
    }
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let (go_tx, go_rx) = std::sync::mpsc::channel::<()>();
    let ca = c.clone();
    let a = std::thread::spawn(move || {
        ca.dispatch_in_place(|h, _| {
            held_tx.send(h.request_id).unwrap();
            go_rx.recv().unwrap();
        })
        .unwrap()
    });
    assert_eq!(held_rx.recv().unwrap(), 0);
    let cb = c.clone();
    let (seen_tx, seen_rx) = std::sync::mpsc::channel();
    let b = std::thread::spawn(move || {
        let mut seen = Vec::new();
        while seen.len() < 7 {
            cb.dispatch(DispatchMode::Blocking, None, |h, _| seen.push(h.request_id))
                .unwrap();
            seen_tx.send(seen.len()).unwrap();
        }
        seen
    });
    // B takes 1..3 and then waits; 4..7 find no room and wait in the daemon.
    assert_eq!(seen_rx.recv_timeout(LONG).unwrap(), 3);
    for i in 4..8 {
        send(&mut server, i);
    }
    std::thread::sleep(Duration::from_millis(50));
    go_tx.send(()).unwrap();
    let end = std::time::Instant::now() + LONG;
    while !b.is_finished() {
        assert!(
            std::time::Instant::now() < end,
            "the blocked dispatcher never got 4..8"
        );
        pl.turn(&mut server, Some(Duration::from_millis(10)))
            .unwrap();
        while server.next_event().is_some() {}
    }
    assert!(a.join().unwrap().is_some());
    assert_eq!(b.join().unwrap(), (1..8).collect::<Vec<u64>>());
}

/// A non-blocking dispatch that finds nothing reads the wake-up pipe (to see
/// a dead daemon's end of file) only now and then: quiet dispatches on a
/// live session say nothing, and a client that keeps dispatching without
/// polling its fd still learns of the daemon's death.
#[test]
fn a_dispatch_loop_that_never_polls_still_notices_a_dead_daemon() {
    let cfg = server_config("deathloop");
    let ep = cfg.endpoint.clone();
    let srv = EchoServer::start(cfg);
    let c = Client::connect(&client_config(&ep)).unwrap();
    c.call(1, KIND_ECHO, b"1", Wait::Park, Some(LONG)).unwrap();
    for _ in 0..10_000 {
        assert_eq!(c.dispatch(DispatchMode::All, None, |_, _| {}).unwrap(), 0);
    }
    srv.stop();
    let t = std::time::Instant::now();
    loop {
        match c.dispatch(DispatchMode::All, None, |_, _| {}) {
            Ok(0) => assert!(
                t.elapsed() < Duration::from_secs(10),
                "no Disconnected 10 s after the daemon stopped"
            ),
            Err(ClientError::Disconnected) => break,
            other => panic!("dispatch after the daemon stopped: {other:?}"),
        }
    }
}

/// Room freed by events handled in place goes back to the daemon in
/// batches (a sixteenth of the ring), all of it once a dispatch finds the
/// ring empty, and at once when the daemon holds spilled events and waits
/// for room.
#[test]
fn room_of_events_handled_in_place_goes_back_in_batches() {
    let (mut server, mut pl, ccfg) = small_rings("inplace-batch");
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let send = |server: &mut Server, i: u64, len: usize| {
        let h = FrameHeader {
            service: 1,
            kind: 7,
            request_id: i,
        };
        server.send_event(id, h, &vec![i as u8; len]).unwrap()
    };
    let in_ring = |server: &Server| {
        let s = server.session_info().find(|s| s.id == id).unwrap();
        (s.event_ring_bytes, s.event_overflow_frames)
    };
    // 16-byte events take 32 bytes of the 4 KiB ring: a batch is 8 of them.
    for i in 0..20 {
        send(&mut server, i, 16);
    }
    assert_eq!(in_ring(&server), (640, 0));
    for i in 0..3 {
        assert_eq!(c.dispatch_in_place(|h, _| h.request_id).unwrap(), Some(i));
    }
    assert_eq!(in_ring(&server), (640, 0), "three events: not yet");
    for i in 3..8 {
        assert_eq!(c.dispatch_in_place(|h, _| h.request_id).unwrap(), Some(i));
    }
    assert_eq!(in_ring(&server), (640 - 8 * 32, 0), "a batch");
    while c.dispatch_in_place(|_, _| ()).unwrap().is_some() {}
    assert_eq!(in_ring(&server), (0, 0), "the rest, once the ring is empty");
    // Fill the ring and spill: the first event given back, far less than a
    // batch, frees its room for the daemon at once.
    let mut i = 100;
    while send(&mut server, i, 16) == Delivery::Ring {
        i += 1;
    }
    assert_eq!(in_ring(&server).1, 1);
    assert!(c.dispatch_in_place(|_, _| ()).unwrap().is_some());
    pl.turn(&mut server, Some(Duration::ZERO)).unwrap();
    while server.next_event().is_some() {}
    assert_eq!(
        in_ring(&server).1,
        0,
        "the spilled event went into the ring"
    );
    // A request that finds its ring full (a daemon that reads no requests
    // while this client's events wait for room, say) gives back the room
    // of the events handled so far.
    while c.dispatch_in_place(|_, _| ()).unwrap().is_some() {}
    for i in 200..210 {
        send(&mut server, i, 16);
    }
    for _ in 0..3 {
        assert!(c.dispatch_in_place(|_, _| ()).unwrap().is_some());
    }
    assert_eq!(in_ring(&server).0, 10 * 32, "three events: not yet");
    loop {
        match c.send(1, KIND_ONE_WAY, &[0; 100]) {
            Ok(_) => {}
            Err(ClientError::TryAgain) => break,
            Err(e) => panic!("send: {e}"),
        }
    }
    assert_eq!(in_ring(&server).0, 7 * 32, "given back with the TRY_AGAIN");
}

#[test]
fn events_taken_one_at_a_time_come_in_order_with_the_fd_readable_while_some_wait() {
    // Events dispatched in place one by one, of sizes that make the 4 KiB
    // ring wrap (pads) again and again, some sent while earlier ones are
    // still being taken: each comes once, in order, its bytes intact, and
    // the pollable fd is readable exactly while another one waits.
    let (mut server, mut pl, ccfg) = small_rings("one-by-one");
    let (c, id) = connect(&mut server, &mut pl, ccfg);
    let mut sent = 0u64;
    let mut taken = 0u64;
    let mut send = |server: &mut Server, n: usize| {
        for _ in 0..n {
            let len = 1 + (sent as usize * 37) % 300;
            let h = FrameHeader {
                service: 1,
                kind: 7,
                request_id: sent,
            };
            let body = vec![sent as u8; len];
            assert_eq!(server.send_event(id, h, &body).unwrap(), Delivery::Ring);
            sent += 1;
        }
        sent
    };
    for round in 0..40 {
        let mut upto = send(&mut server, 3 + round % 7);
        let mut more = round % 3 == 0;
        while taken < upto {
            let got = c
                .dispatch_in_place(|h, p| {
                    let len = 1 + (h.request_id as usize * 37) % 300;
                    assert_eq!(p.len(), len);
                    assert!(p.iter().all(|&b| b == h.request_id as u8));
                    h.request_id
                })
                .unwrap();
            assert_eq!(got, Some(taken), "round {round}");
            taken += 1;
            if more && taken + 1 == upto {
                // Sent while the last known one waits.
                upto = send(&mut server, 2);
                more = false;
            }
            assert_eq!(
                readable(c.fd(), 0),
                taken < upto,
                "round {round}, {taken} of {upto}"
            );
        }
        assert_eq!(c.dispatch_in_place(|_, _| ()).unwrap(), None);
        assert!(!readable(c.fd(), 0));
    }
}
