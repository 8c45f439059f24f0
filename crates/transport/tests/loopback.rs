//! Loopback round trips, run against both engines.

mod common;

use std::net::{SocketAddr, UdpSocket};
use std::time::Duration;

use common::*;
use transport::{
    Cipher, ClusterKey, Dest, EngineChoice, EngineKind, Mode, NodeId, Transport, TransportConfig,
};

const WAIT: Duration = Duration::from_secs(5);

fn pair(o: &Opts, ob: &Opts) -> (Transport, Transport) {
    let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
    let a = Transport::new(config(1, &m, o)).expect("node 1");
    let b = Transport::new(config(2, &m, ob)).expect("node 2");
    (a, b)
}

fn expect_engine(t: &Transport, e: EngineChoice) {
    let want = match e {
        EngineChoice::Fallback => EngineKind::Fallback,
        _ => EngineKind::IoUring,
    };
    if std::env::var(transport::ENGINE_ENV_VAR).is_err() {
        assert_eq!(t.status().engine, want, "{:?}", t.status());
    }
}

fn for_engines(f: impl Fn(EngineChoice)) {
    for e in engines() {
        if available(e) {
            eprintln!("engine {e:?}");
            f(e);
        }
    }
}

#[test]
fn udpu_multicast_reaches_every_member_including_self() {
    for_engines(|e| {
        let o = Opts::new(e);
        let (mut a, mut b) = pair(&o, &o);
        expect_engine(&a, e);
        let r = a
            .send_batch(&[(Dest::Multicast, b"hello".as_slice())])
            .unwrap();
        assert_eq!(r.datagrams, 2);
        let got = collect(&mut b, 1, WAIT);
        assert_eq!(got, vec![(NodeId(1), b"hello".to_vec())]);
        let own = collect(&mut a, 1, WAIT);
        assert_eq!(own, vec![(NodeId(1), b"hello".to_vec())]);
    });
}

#[test]
fn unicast_to_one_node() {
    for_engines(|e| {
        let o = Opts::new(e);
        let (mut a, mut b) = pair(&o, &o);
        a.send_batch(&[(Dest::Node(NodeId(2)), b"token".as_slice())])
            .unwrap();
        assert_eq!(
            collect(&mut b, 1, WAIT),
            vec![(NodeId(1), b"token".to_vec())]
        );
        assert!(settle(&mut a).is_empty());
        // An unknown node's frame is dropped and counted; the others go.
        a.send_batch(&[
            (Dest::Node(NodeId(9)), b"x".as_slice()),
            (Dest::Node(NodeId(2)), b"y".as_slice()),
        ])
        .unwrap();
        assert_eq!(a.stats().unknown_dest, 1);
        assert_eq!(collect(&mut b, 1, WAIT), vec![(NodeId(1), b"y".to_vec())]);
    });
}

/// Without root the socket buffers cannot be forced past rmem_max, so a
/// single-threaded burst is kept small enough to fit.
fn fit_burst(size: usize, n: usize) -> usize {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        n
    } else {
        n.min(60_000 / (size + 512)).max(4)
    }
}

fn burst(e: EngineChoice, gso: bool, cipher: Cipher, size: usize, n: usize) {
    let n = fit_burst(size, n);
    let mut o = Opts::new(e);
    o.gso = gso;
    o.gro = gso;
    o.cipher = cipher;
    if cipher != Cipher::None {
        o.key = Some(ClusterKey::generate(256).unwrap());
    }
    let (mut a, mut b) = pair(&o, &o);
    let frames: Vec<Vec<u8>> = (0..n)
        .map(|i| {
            let mut v = vec![(i % 251) as u8; size];
            v[..4].copy_from_slice(&(i as u32).to_le_bytes());
            v
        })
        .collect();
    let msgs: Vec<(Dest, &[u8])> = frames
        .iter()
        .map(|f| (Dest::Node(NodeId(2)), f.as_slice()))
        .collect();
    let r = a.send_batch(&msgs).unwrap();
    assert_eq!(r.datagrams, n);
    let got = collect(&mut b, n, WAIT);
    assert_eq!(got.len(), n, "stats {:?}", b.stats());
    for (i, (node, p)) in got.iter().enumerate() {
        assert_eq!(*node, NodeId(1));
        assert_eq!(p, &frames[i], "frame {i} in order and intact");
    }
    if gso && n > 1 && a.status().gso {
        assert!(a.stats().gso_sends > 0, "{:?}", a.stats());
    }
}

#[test]
fn batched_bursts_arrive_in_order_all_sizes() {
    for_engines(|e| {
        for gso in [false, true] {
            for size in [64, 1024, 1400, 8192] {
                burst(e, gso, Cipher::None, size, 150);
            }
        }
    });
}

#[test]
fn sealed_bursts_both_ciphers() {
    for_engines(|e| {
        for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
            burst(e, true, c, 1400, 100);
            burst(e, false, c, 64, 100);
        }
    });
}

#[test]
fn wrong_key_is_always_rejected() {
    for_engines(|e| {
        let mut o = Opts::new(e);
        o.cipher = Cipher::Aes256Gcm;
        o.key = Some(ClusterKey::generate(256).unwrap());
        let mut ob = Opts::new(e);
        ob.cipher = Cipher::Aes256Gcm;
        ob.key = Some(ClusterKey::generate(256).unwrap());
        let (mut a, mut b) = pair(&o, &ob);
        let p = [7u8; 200];
        let mut got = Vec::new();
        for _ in 0..10 {
            let msgs: Vec<(Dest, &[u8])> =
                (0..50).map(|_| (Dest::Node(NodeId(2)), &p[..])).collect();
            a.send_batch(&msgs).unwrap();
            got.extend(collect(&mut b, usize::MAX, Duration::from_millis(50)));
        }
        got.extend(settle(&mut b));
        assert!(got.is_empty());
        let s = b.stats();
        assert_eq!(s.frames.auth_failed, 500, "{s:?}");
        assert_eq!(s.frames.opened, 0);
    });
}

#[test]
fn other_cluster_name_or_cipher_is_rejected() {
    for_engines(|e| {
        let key = ClusterKey::generate(128).unwrap();
        let mut o = Opts::new(e);
        o.cipher = Cipher::Aes256Gcm;
        o.key = Some(key.clone());
        let mut ob = Opts::new(e);
        ob.cipher = Cipher::Aes256Gcm;
        ob.key = Some(key.clone());
        ob.cluster = "other".into();
        let (mut a, mut b) = pair(&o, &ob);
        a.send_batch(&[(Dest::Node(NodeId(2)), b"x".as_slice())])
            .unwrap();
        assert!(settle(&mut b).is_empty());
        assert_eq!(b.stats().frames.auth_failed, 1);

        let mut oc = Opts::new(e);
        oc.cipher = Cipher::ChaCha20Poly1305;
        oc.key = Some(key);
        let (mut a, mut b) = pair(&o, &oc);
        a.send_batch(&[(Dest::Node(NodeId(2)), b"x".as_slice())])
            .unwrap();
        assert!(settle(&mut b).is_empty());
        assert_eq!(b.stats().frames.cipher_mismatch, 1);
    });
}

#[test]
fn garbage_truncated_and_replayed_datagrams_are_dropped_and_counted() {
    for_engines(|e| {
        let mut o = Opts::new(e);
        o.cipher = Cipher::Aes256Gcm;
        o.key = Some(ClusterKey::generate(256).unwrap());
        // Node 3 is a plain socket that captures a sealed frame.
        let spy_addr = unique_lo(5405);
        let spy = UdpSocket::bind(spy_addr).unwrap();
        let m = [
            (NodeId(1), unique_lo(5405)),
            (NodeId(2), unique_lo(5405)),
            (NodeId(3), spy_addr),
        ];
        let mut a = Transport::new(config(1, &m, &o)).unwrap();
        let mut b = Transport::new(config(2, &m, &o)).unwrap();
        a.send_batch(&[(Dest::Node(NodeId(3)), b"secret".as_slice())])
            .unwrap();
        let mut buf = [0u8; 2048];
        spy.set_read_timeout(Some(WAIT)).unwrap();
        let (n, _) = spy.recv_from(&mut buf).unwrap();
        let sealed = buf[..n].to_vec();
        assert!(
            !sealed.windows(6).any(|w| w == b"secret"),
            "payload is encrypted"
        );
        let to: SocketAddr = m[1].1;
        // Replay: the first copy is accepted, the second dropped.
        spy.send_to(&sealed, to).unwrap();
        spy.send_to(&sealed, to).unwrap();
        // Truncations, bit flips and garbage.
        for cut in [0usize, 1, 7, 8, 19, 20, 35, n - 1] {
            spy.send_to(&sealed[..cut], to).unwrap();
        }
        let mut flipped = sealed.clone();
        flipped[n / 2] ^= 1;
        spy.send_to(&flipped, to).unwrap();
        spy.send_to(&[0xffu8; 1500], to).unwrap();
        spy.send_to(&[0u8; 9000], to).unwrap();
        let got = settle(&mut b);
        assert_eq!(got, vec![(NodeId(1), b"secret".to_vec())]);
        let s = b.stats();
        assert_eq!(s.frames.replayed, 1, "{s:?}");
        assert_eq!(s.frames.opened, 1);
        assert_eq!(s.frames.dropped(), 1 + 8 + 1 + 2, "{s:?}");
    });
}

#[test]
fn ipv6_loopback_round_trip() {
    for_engines(|e| {
        let p1 = UdpSocket::bind("[::1]:0");
        let Ok(p1) = p1 else {
            skip("no IPv6 loopback");
            return;
        };
        let p2 = UdpSocket::bind("[::1]:0").unwrap();
        let m = [
            (NodeId(1), p1.local_addr().unwrap()),
            (NodeId(2), p2.local_addr().unwrap()),
        ];
        drop((p1, p2));
        let mut o = Opts::new(e);
        o.cipher = Cipher::ChaCha20Poly1305;
        o.key = Some(ClusterKey::generate(4096).unwrap());
        let mut a = Transport::new(config(1, &m, &o)).unwrap();
        let mut b = Transport::new(config(2, &m, &o)).unwrap();
        let frames = vec![vec![3u8; 1000]; 20];
        let msgs: Vec<(Dest, &[u8])> = frames
            .iter()
            .map(|f| (Dest::Multicast, f.as_slice()))
            .collect();
        a.send_batch(&msgs).unwrap();
        assert_eq!(collect(&mut b, 20, WAIT).len(), 20);
        assert_eq!(collect(&mut a, 20, WAIT).len(), 20);
    });
}

#[test]
fn oversized_frame_is_refused_before_sending() {
    let o = Opts::new(EngineChoice::Fallback);
    let (mut a, _b) = pair(&o, &o);
    let big = vec![0u8; a.max_payload() + 1];
    assert!(matches!(
        a.send_batch(&[(Dest::Multicast, big.as_slice())]),
        Err(transport::TransportError::FrameTooLarge { .. })
    ));
}

#[test]
fn crypto_on_without_key_is_a_start_up_error() {
    let m = [(NodeId(1), unique_lo(5405))];
    let mut o = Opts::new(EngineChoice::Fallback);
    o.cipher = Cipher::Aes256Gcm;
    let err = Transport::new(config(1, &m, &o)).err().expect("must fail");
    assert!(err.to_string().contains("no cluster key"), "{err}");
}

#[test]
fn status_reports_engine_and_cipher() {
    for_engines(|e| {
        let mut o = Opts::new(e);
        o.cipher = Cipher::Aes256Gcm;
        o.key = Some(ClusterKey::generate(256).unwrap());
        let (a, _b) = pair(&o, &o);
        let s = a.status();
        assert_eq!(s.cipher, Cipher::Aes256Gcm);
        assert!(!s.send_zc);
        eprintln!("{s:?}");
    });
}

fn getsockopt_int(fd: i32, level: i32, name: i32) -> i32 {
    let mut v: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `v` and `len` are live and sized for an int option.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&mut v as *mut i32).cast(), &mut len) };
    assert_eq!(rc, 0);
    v
}

#[test]
fn dscp_and_buffer_sizes_are_applied() {
    let m = [(NodeId(1), unique_lo(5405))];
    let o = Opts::new(EngineChoice::Fallback);
    let mut c = config(1, &m, &o);
    c.dscp = Some(46);
    c.rcvbuf = Some(1 << 20);
    c.sndbuf = Some(1 << 20);
    let t = Transport::new(c).unwrap();
    let fd = t.socket_fds()[0];
    assert_eq!(getsockopt_int(fd, libc::IPPROTO_IP, libc::IP_TOS), 46 << 2);
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } == 0 {
        // Forced: the kernel reports twice the requested size.
        assert!(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_RCVBUF) >= 1 << 20);
        assert!(getsockopt_int(fd, libc::SOL_SOCKET, libc::SO_SNDBUF) >= 1 << 20);
    }
}

#[test]
fn io_uring_with_sqpoll_round_trip() {
    if !available(EngineChoice::IoUring) {
        return;
    }
    let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
    let o = Opts::new(EngineChoice::IoUring);
    let mut ca = config(1, &m, &o);
    ca.sqpoll_idle_ms = Some(5);
    let mut a = match Transport::new(ca) {
        Ok(a) => a,
        Err(e) => {
            skip(&format!("SQPOLL refused here: {e}"));
            return;
        }
    };
    assert!(a.status().sqpoll);
    let mut b = Transport::new(config(2, &m, &o)).unwrap();
    for i in 0..5u8 {
        a.send_batch(&[(Dest::Node(NodeId(2)), [i; 100].as_slice())])
            .unwrap();
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(collect(&mut b, 5, WAIT).len(), 5);
}

#[test]
fn udpu_burst_to_three_members_keeps_per_member_order() {
    for_engines(|e| {
        let m = [
            (NodeId(1), unique_lo(5405)),
            (NodeId(2), unique_lo(5405)),
            (NodeId(3), unique_lo(5405)),
        ];
        let mut o = Opts::new(e);
        o.cipher = Cipher::Aes256Gcm;
        o.key = Some(ClusterKey::generate(256).unwrap());
        let mut ts: Vec<Transport> = (1..=3)
            .map(|i| Transport::new(config(i, &m, &o)).unwrap())
            .collect();
        let frames: Vec<Vec<u8>> = (0..40u8).map(|i| vec![i; 700]).collect();
        let msgs: Vec<(Dest, &[u8])> = frames
            .iter()
            .map(|f| (Dest::Multicast, f.as_slice()))
            .collect();
        let r = ts[0].send_batch(&msgs).unwrap();
        assert_eq!(r.datagrams, 120);
        for t in ts.iter_mut() {
            let got = collect(t, 40, WAIT);
            let want: Vec<(NodeId, Vec<u8>)> =
                frames.iter().map(|f| (NodeId(1), f.clone())).collect();
            assert_eq!(got, want);
        }
    });
}

#[test]
fn transport_moves_to_the_protocol_thread() {
    fn is_send<T: Send>() {}
    is_send::<Transport>();
    let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
    let o = Opts::new(EngineChoice::Auto);
    let mut a = Transport::new(config(1, &m, &o)).unwrap();
    let b = Transport::new(config(2, &m, &o)).unwrap();
    let h = std::thread::spawn(move || {
        let mut b = b;
        collect(&mut b, 1, WAIT)
    });
    a.send_batch(&[(Dest::Node(NodeId(2)), b"moved".as_slice())])
        .unwrap();
    assert_eq!(h.join().unwrap(), vec![(NodeId(1), b"moved".to_vec())]);
}

#[test]
fn io_uring_sendmsg_zc_round_trip() {
    if !available(EngineChoice::IoUring) || !transport::probe_uring().op_send_zc {
        skip("SENDMSG_ZC not offered here");
        return;
    }
    let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
    let o = Opts::new(EngineChoice::IoUring);
    let mut ca = config(1, &m, &o);
    ca.send_zc = true;
    let mut a = Transport::new(ca).unwrap();
    if std::env::var(transport::ENGINE_ENV_VAR).is_err() {
        assert!(a.status().send_zc, "{:?}", a.status());
    }
    let mut b = Transport::new(config(2, &m, &o)).unwrap();
    let frames: Vec<Vec<u8>> = (0..50u8).map(|i| vec![i; 1400]).collect();
    let msgs: Vec<(Dest, &[u8])> = frames
        .iter()
        .map(|f| (Dest::Node(NodeId(2)), f.as_slice()))
        .collect();
    // Twice: the pool is reused only after every notification arrived.
    for _ in 0..2 {
        assert_eq!(a.send_batch(&msgs).unwrap().datagrams, 50);
        let got = collect(&mut b, 50, WAIT);
        let want: Vec<(NodeId, Vec<u8>)> = frames.iter().map(|f| (NodeId(1), f.clone())).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn multicast_ttl_and_loop_control_are_applied() {
    for (ttl, looped) in [(3u32, false), (1, true)] {
        let bind = unique_lo(5405);
        let mut c = TransportConfig::new(NodeId(1), bind);
        c.mode = Mode::Multicast {
            group: SocketAddr::from(([239, 192, 77, 1], bind.port())),
            ttl,
        };
        c.loop_to_self = looped;
        c.engine = EngineChoice::Fallback;
        let t = match Transport::new(c) {
            Ok(t) => t,
            Err(e) => panic!("multicast on {bind}: {e}"),
        };
        let fd = t.socket_fds()[0];
        assert_eq!(
            getsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_TTL) as u32,
            ttl
        );
        assert_eq!(
            getsockopt_int(fd, libc::IPPROTO_IP, libc::IP_MULTICAST_LOOP) != 0,
            looped
        );
    }
}

#[test]
fn members_added_and_removed_at_runtime() {
    for_engines(|e| {
        let o = Opts::new(e);
        let addrs: Vec<(NodeId, SocketAddr)> =
            (1..=6).map(|i| (NodeId(i), unique_lo(5405))).collect();
        // Node 1 starts knowing only itself and node 2.
        let mut a = Transport::new(config(1, &addrs[..2], &o)).unwrap();
        let mut others: Vec<Transport> = (2..=6)
            .map(|i| Transport::new(config(i, &addrs, &o)).unwrap())
            .collect();
        // Node 3 is not a member yet: its frames are dropped and counted.
        others[1]
            .send_batch(&[(Dest::Node(NodeId(1)), b"early".as_slice())])
            .unwrap();
        assert!(collect(&mut a, 1, Duration::from_millis(300)).is_empty());
        assert_eq!(a.stats().unknown_source, 1);
        // All six: a burst of 64 frames to every member needs more sends
        // than the engine was sized for at start (64 x 2), in chunks.
        a.set_members(&addrs);
        let burst: Vec<Vec<u8>> = (0..64u32).map(|k| k.to_le_bytes().to_vec()).collect();
        let msgs: Vec<(Dest, &[u8])> = burst
            .iter()
            .map(|b| (Dest::Multicast, b.as_slice()))
            .collect();
        let r = a.send_batch(&msgs).unwrap();
        assert_eq!(r.errors, 0);
        for t in others.iter_mut() {
            let got = collect(t, 64, WAIT);
            let want: Vec<(NodeId, Vec<u8>)> =
                burst.iter().map(|b| (NodeId(1), b.clone())).collect();
            assert_eq!(got, want, "node {:?}", t.node_id());
        }
        others[1]
            .send_batch(&[(Dest::Node(NodeId(1)), b"now".as_slice())])
            .unwrap();
        let got = collect(&mut a, 65, WAIT);
        assert_eq!(got.last(), Some(&(NodeId(3), b"now".to_vec())));
        // Node 2 removed: no longer sent to, and its frames are dropped.
        let without_2: Vec<(NodeId, SocketAddr)> = addrs
            .iter()
            .copied()
            .filter(|(n, _)| *n != NodeId(2))
            .collect();
        a.set_members(&without_2);
        let r = a
            .send_batch(&[(Dest::Multicast, b"after".as_slice())])
            .unwrap();
        assert_eq!(r.datagrams, 5);
        assert!(collect(&mut others[0], 1, Duration::from_millis(300)).is_empty());
        let before = a.stats().unknown_source;
        others[0]
            .send_batch(&[(Dest::Node(NodeId(1)), b"gone".as_slice())])
            .unwrap();
        assert!(collect(&mut a, 2, Duration::from_millis(300))
            .iter()
            .all(|(n, _)| *n != NodeId(2)));
        assert_eq!(a.stats().unknown_source, before + 1);
    });
}
