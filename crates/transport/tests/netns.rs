//! Round trips between network namespaces: a veth pair (udpu) and three
//! namespaces on a bridge (multicast). Needs root; skips otherwise. Every
//! namespace has a unique name and is removed by a guard, also on failure.

mod common;

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::Duration;

use common::*;
use transport::{Dest, Mode, NodeId, Transport};

static SEQ: AtomicU32 = AtomicU32::new(0);

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| format!("cannot run ip: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "ip {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

/// Namespaces created by one test, deleted on drop (veths and bridges go
/// with them).
struct Namespaces(Vec<String>);

impl Namespaces {
    fn create(tag: &str, n: usize) -> Result<Self, String> {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let mut me = Namespaces(Vec::new());
        for i in 0..n {
            let name = format!("crs-{}-{}-{tag}{i}", std::process::id(), seq);
            ip(&["netns", "add", &name])?;
            me.0.push(name.clone());
            ip(&["-n", &name, "link", "set", "lo", "up"])?;
        }
        Ok(me)
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        for n in &self.0 {
            if let Err(e) = ip(&["netns", "del", n]) {
                eprintln!("cleanup: {e}");
            }
        }
    }
}

fn skip_unless_root() -> bool {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        skip("namespace test needs root (it creates network namespaces)");
        return true;
    }
    false
}

/// Runs `f` on a thread that has entered namespace `ns`; sockets it
/// creates live in that namespace.
fn in_ns<T: Send + 'static>(
    ns: &str,
    f: impl FnOnce() -> T + Send + 'static,
) -> thread::JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        use std::os::fd::AsRawFd;
        // SAFETY: `file` is an open namespace descriptor; setns changes only
        // this thread's network namespace.
        let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
        f()
    })
}

/// Resolves neighbours (ARP/NDP) before a burst: packets queued behind an
/// unresolved neighbour are limited to unres_qlen_bytes, which a GSO burst
/// exceeds. The active side says hello until the passive side answers.
fn handshake_active(t: &mut Transport, peer: NodeId) {
    for _ in 0..100 {
        t.send_batch(&[(Dest::Node(peer), b"hello".as_slice())])
            .expect("hello");
        if collect(t, 1, Duration::from_millis(100))
            .iter()
            .any(|(_, p)| p == b"ready")
        {
            return;
        }
    }
    panic!("no answer from {peer:?}");
}

fn handshake_passive(t: &mut Transport, peer: NodeId) {
    for _ in 0..100 {
        if collect(t, 1, Duration::from_millis(100))
            .iter()
            .any(|(_, p)| p == b"hello")
        {
            t.send_batch(&[(Dest::Node(peer), b"ready".as_slice())])
                .expect("ready");
            return;
        }
    }
    panic!("no hello from {peer:?}");
}

fn veth_pair(tag: &str, mtu: u32) -> Result<Namespaces, String> {
    let ns = Namespaces::create(tag, 2)?;
    let (a, b) = (&ns.0[0], &ns.0[1]);
    ip(&[
        "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b,
    ])?;
    for (n, dev, addr) in [(a, "v0", "10.77.0.1/24"), (b, "v1", "10.77.0.2/24")] {
        ip(&["-n", n, "addr", "add", addr, "dev", dev])?;
        ip(&["-n", n, "link", "set", dev, "mtu", &mtu.to_string(), "up"])?;
    }
    Ok(ns)
}

#[test]
fn veth_round_trip_both_engines() {
    if skip_unless_root() {
        return;
    }
    for e in engines() {
        if !available(e) {
            continue;
        }
        let ns = match veth_pair("v", 1500) {
            Ok(ns) => ns,
            Err(why) => {
                skip(&format!("namespace test: {why}"));
                return;
            }
        };
        let m = vec![
            (
                NodeId(1),
                SocketAddr::from((Ipv4Addr::new(10, 77, 0, 1), 5405)),
            ),
            (
                NodeId(2),
                SocketAddr::from((Ipv4Addr::new(10, 77, 0, 2), 5405)),
            ),
        ];
        let ready = Arc::new(Barrier::new(2));
        let (m2, r2) = (m.clone(), ready.clone());
        let rx = in_ns(&ns.0[1], move || {
            let mut b = Transport::new(config(2, &m2, &Opts::new(e))).expect("node 2");
            r2.wait();
            handshake_passive(&mut b, NodeId(1));
            let got: Vec<_> = collect(&mut b, 210, Duration::from_secs(10))
                .into_iter()
                .filter(|(_, p)| p != b"hello")
                .collect();
            (got, b.stats())
        });
        let m1 = m.clone();
        let tx = in_ns(&ns.0[0], move || {
            let mut a = Transport::new(config(1, &m1, &Opts::new(e))).expect("node 1");
            ready.wait();
            handshake_active(&mut a, NodeId(2));
            let big = vec![0xabu8; 1400];
            let small = vec![0x11u8; 64];
            // 4000 B frames exceed the 1500 MTU: GSO refuses that segment
            // size and the transport falls back to single (fragmented) sends.
            let over_mtu = vec![0x22u8; 4000];
            let msgs: Vec<(Dest, &[u8])> = (0..100)
                .map(|_| (Dest::Node(NodeId(2)), big.as_slice()))
                .chain((0..100).map(|_| (Dest::Multicast, small.as_slice())))
                .chain((0..10).map(|_| (Dest::Node(NodeId(2)), over_mtu.as_slice())))
                .collect();
            a.send_batch(&msgs).expect("send");
            a.status().clone()
        });
        let status = tx.join().expect("sender");
        let (got, stats) = rx.join().expect("receiver");
        eprintln!("{e:?}: {status:?} / {stats:?}");
        let mut hist = std::collections::BTreeMap::new();
        for (_, p) in &got {
            *hist.entry(p.len()).or_insert(0) += 1;
        }
        eprintln!("sizes {hist:?}");
        assert_eq!(got.len(), 210, "{stats:?}");
        assert!(got[..100]
            .iter()
            .all(|(n, p)| *n == NodeId(1) && p.len() == 1400));
        assert!(got[100..200].iter().all(|(_, p)| p.len() == 64));
        assert!(got[200..].iter().all(|(_, p)| p.len() == 4000));
    }
}

#[test]
fn multicast_across_three_namespaces_on_a_bridge() {
    if skip_unless_root() {
        return;
    }
    for e in engines() {
        if !available(e) {
            continue;
        }
        let ns = match bridge3() {
            Ok(ns) => ns,
            Err(why) => {
                skip(&format!("namespace test: {why}"));
                return;
            }
        };
        let members: Vec<(NodeId, SocketAddr)> = (1..=3u8)
            .map(|i| {
                (
                    NodeId(u32::from(i)),
                    SocketAddr::from((Ipv4Addr::new(10, 78, 0, i), 5405)),
                )
            })
            .collect();
        let group: SocketAddr = "239.192.77.1:5405".parse().unwrap();
        let ready = Arc::new(Barrier::new(3));
        let mut handles = Vec::new();
        for i in 1..=3u32 {
            let (m, r) = (members.clone(), ready.clone());
            handles.push(in_ns(&ns.0[i as usize], move || {
                let mut c = config(i, &m, &Opts::new(e));
                c.mode = Mode::Multicast { group, ttl: 1 };
                let mut t = Transport::new(c).expect("transport");
                r.wait();
                let payload = vec![i as u8; 900];
                let msgs: Vec<(Dest, &[u8])> = (0..20)
                    .map(|_| (Dest::Multicast, payload.as_slice()))
                    .collect();
                t.send_batch(&msgs).expect("send");
                let next = NodeId(i % 3 + 1);
                t.send_batch(&[(Dest::Node(next), b"token".as_slice())])
                    .expect("token");
                let got = collect(&mut t, 61, Duration::from_secs(10));
                (i, got, t.stats(), t.status().clone())
            }));
        }
        for h in handles {
            let (i, got, stats, status) = h.join().expect("node thread");
            eprintln!("{e:?} node {i}: {} frames, {stats:?} {status:?}", got.len());
            let mcast = got.iter().filter(|(_, p)| p.len() == 900).count();
            let tokens = got.iter().filter(|(_, p)| p == b"token").count();
            assert_eq!(
                mcast, 60,
                "node {i}: every member's multicast, its own included"
            );
            assert_eq!(tokens, 1, "node {i}: one token from its predecessor");
        }
        drop(ns);
    }
}

/// The multicast form of corosync.conf has no member list: a node learns
/// where its peers are from their frames, so the token can be unicast.
#[test]
fn multicast_learns_peer_addresses_without_a_member_list() {
    if skip_unless_root() {
        return;
    }
    for e in engines() {
        if !available(e) {
            continue;
        }
        let ns = match bridge3() {
            Ok(ns) => ns,
            Err(why) => {
                skip(&format!("namespace test: {why}"));
                return;
            }
        };
        let group: SocketAddr = "239.192.77.2:5405".parse().unwrap();
        let ready = Arc::new(Barrier::new(3));
        let mut handles = Vec::new();
        for i in 1..=3u32 {
            let r = ready.clone();
            handles.push(in_ns(&ns.0[i as usize], move || {
                let me = SocketAddr::from((Ipv4Addr::new(10, 78, 0, i as u8), 5405));
                let mut c = config(i, &[(NodeId(i), me)], &Opts::new(e));
                c.mode = Mode::Multicast { group, ttl: 1 };
                let mut t = Transport::new(c).expect("transport");
                let next = NodeId(i % 3 + 1);
                // Not known yet: dropped and counted, never an error.
                t.send_batch(&[(Dest::Node(next), b"early".as_slice())])
                    .expect("send to an unknown node");
                r.wait();
                t.send_batch(&[(Dest::Multicast, [i as u8; 100].as_slice())])
                    .expect("send");
                let mut got = collect(&mut t, 3, Duration::from_secs(10));
                r.wait();
                t.send_batch(&[(Dest::Node(next), b"token".as_slice())])
                    .expect("token");
                got.extend(collect(&mut t, 1, Duration::from_secs(10)));
                (i, got, t.stats())
            }));
        }
        for h in handles {
            let (i, got, stats) = h.join().expect("node thread");
            let tokens: Vec<_> = got.iter().filter(|(_, p)| p == b"token").collect();
            assert_eq!(tokens.len(), 1, "node {i}: {got:?} {stats:?}");
            assert_eq!(tokens[0].0, NodeId((i + 1) % 3 + 1), "from its predecessor");
            assert_eq!(stats.unknown_dest, 1, "node {i}: the early token");
            assert!(stats.learned_nodes >= 2, "node {i}: {stats:?}");
        }
        drop(ns);
    }
}

fn bridge3() -> Result<Namespaces, String> {
    // ns.0[0] is the hub holding the bridge; 1..=3 are the nodes.
    let ns = Namespaces::create("b", 4)?;
    let hub = &ns.0[0];
    ip(&[
        "-n",
        hub,
        "link",
        "add",
        "br0",
        "type",
        "bridge",
        "mcast_snooping",
        "0",
    ])?;
    ip(&["-n", hub, "link", "set", "br0", "up"])?;
    for i in 1..=3 {
        let node = &ns.0[i];
        let port = format!("p{i}");
        ip(&[
            "-n", node, "link", "add", "e0", "type", "veth", "peer", "name", &port, "netns", hub,
        ])?;
        ip(&["-n", hub, "link", "set", &port, "master", "br0", "up"])?;
        ip(&[
            "-n",
            node,
            "addr",
            "add",
            &format!("10.78.0.{i}/24"),
            "dev",
            "e0",
        ])?;
        ip(&["-n", node, "link", "set", "e0", "up"])?;
        ip(&["-n", node, "route", "add", "224.0.0.0/4", "dev", "e0"])?;
    }
    Ok(ns)
}

fn if_index(name: &str) -> u32 {
    let c = std::ffi::CString::new(name).unwrap();
    // SAFETY: `c` is a live NUL-terminated string.
    unsafe { libc::if_nametoindex(c.as_ptr()) }
}

#[test]
fn ipv6_link_local_multicast_and_unicast_over_veth() {
    if skip_unless_root() {
        return;
    }
    for e in engines() {
        if !available(e) {
            continue;
        }
        let setup = || -> Result<Namespaces, String> {
            let ns = Namespaces::create("six", 2)?;
            let (a, b) = (&ns.0[0], &ns.0[1]);
            ip(&[
                "-n", a, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", b,
            ])?;
            for (n, dev, addr) in [(a, "v0", "fe80::1/64"), (b, "v1", "fe80::2/64")] {
                ip(&["-n", n, "link", "set", dev, "up"])?;
                ip(&["-n", n, "-6", "addr", "add", addr, "dev", dev, "nodad"])?;
            }
            Ok(ns)
        };
        let ns = match setup() {
            Ok(ns) => ns,
            Err(why) => {
                skip(&format!("namespace test: {why}"));
                return;
            }
        };
        let ready = Arc::new(Barrier::new(2));
        let node = |id: u32, dev: &'static str, ready: Arc<Barrier>| {
            move || {
                let ifx = if_index(dev);
                assert_ne!(ifx, 0, "{dev} index");
                let ll = |last: u16| {
                    SocketAddr::V6(SocketAddrV6::new(
                        Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, last),
                        5405,
                        0,
                        ifx,
                    ))
                };
                let m = vec![(NodeId(1), ll(1)), (NodeId(2), ll(2))];
                let mut c = config(id, &m, &Opts::new(e));
                let group = SocketAddrV6::new("ff12::c05e".parse().unwrap(), 5405, 0, ifx);
                c.mode = Mode::Multicast {
                    group: SocketAddr::V6(group),
                    ttl: 1,
                };
                c.loop_to_self = false;
                let mut t = Transport::new(c).expect("transport");
                ready.wait();
                if id == 1 {
                    let p = vec![6u8; 1200];
                    let msgs: Vec<(Dest, &[u8])> =
                        (0..30).map(|_| (Dest::Multicast, p.as_slice())).collect();
                    t.send_batch(&msgs).expect("mcast");
                    t.send_batch(&[(Dest::Node(NodeId(2)), b"token".as_slice())])
                        .expect("ucast");
                    Vec::new()
                } else {
                    collect(&mut t, 31, Duration::from_secs(10))
                }
            }
        };
        let h1 = in_ns(&ns.0[0], node(1, "v0", ready.clone()));
        let h2 = in_ns(&ns.0[1], node(2, "v1", ready));
        h1.join().expect("node 1");
        let got = h2.join().expect("node 2");
        assert_eq!(
            got.iter().filter(|(_, p)| p.len() == 1200).count(),
            30,
            "{e:?}"
        );
        assert_eq!(
            got.iter().filter(|(_, p)| p == b"token").count(),
            1,
            "{e:?}"
        );
    }
}
