//! Tests of the cluster harness itself, with a stand-in daemon (a shell
//! script that prints the lines the harness waits on, then sleeps).
//!
//! As root with `ip`, the harness runs in namespaces mode and these tests
//! check the namespaces, addresses, unicast (IPv4 and IPv6), multicast,
//! faults and teardown. Otherwise they check the loopback fallback and
//! that the namespace-only operations say they are unsupported. Either
//! way each test states (on stderr) which mode it covered.

use std::collections::HashSet;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use tests::cluster::{self, Cluster, Error, Mode, Transport};

const T: Duration = Duration::from_secs(10);

/// The stand-in daemon. `--probe` exits at once (used to wait out
/// ETXTBSY after writing it).
const STANDIN: &str = r#"#!/bin/sh
[ "$1" = "--probe" ] && exit 0
echo "stand-in pid=$$ args=$*"
echo "stand-in endpoint=$COROSYNC_IPC_ENDPOINT authkey=${COROSYNC_TOTEM_AUTHKEY_FILE:-none}"
echo "Members[1]: 1"
echo "Completed service synchronization, ready to provide service."
sleep 0.2
echo "Members[3]: 1 2 3"
exec sleep 100000
"#;

/// Writes the stand-in once per process, under a name of its own, and
/// waits until it can be executed (a child forked by another test thread
/// while the file was open for writing holds it busy until it execs).
fn standin() -> &'static Path {
    static PATH: OnceLock<PathBuf> = OnceLock::new();
    PATH.get_or_init(|| {
        // One per user: a non-root run cannot write into root's.
        use std::os::unix::fs::MetadataExt;
        let uid = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
        let dir = std::env::temp_dir().join(format!("corosync-rs-standin-{uid}"));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("corosync");
        let tmp = dir.join(format!("corosync.{}", std::process::id()));
        std::fs::write(&tmp, STANDIN).unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::rename(&tmp, &path).unwrap();
        for _ in 0..200 {
            match Command::new(&path).arg("--probe").status() {
                Ok(s) if s.success() => return path,
                Err(e) if e.raw_os_error() == Some(libc::ETXTBSY) => {
                    std::thread::sleep(Duration::from_millis(10))
                }
                other => panic!("stand-in {}: {other:?}", path.display()),
            }
        }
        panic!("stand-in stays busy");
    })
}

fn builder() -> cluster::ClusterBuilder {
    Cluster::builder().daemon_binary(standin())
}

/// Says which mode a test covered, past libtest's capture.
fn covered(test: &str, mode: Mode) {
    let _ = writeln!(std::io::stderr(), "{test}: tested in {mode:?} mode");
}

fn netns_list() -> Vec<String> {
    cluster::net::list_netns().expect("ip netns list")
}

fn ip_in(ns: &str, args: &[&str]) -> String {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    cluster::net::ip(&all).expect("ip")
}

// ----- UDP probes run inside the node namespaces -----

fn unspecified(like: IpAddr) -> SocketAddr {
    match like {
        IpAddr::V4(_) => SocketAddr::from(([0, 0, 0, 0], 0)),
        IpAddr::V6(_) => SocketAddr::from(([0u16; 8], 0)),
    }
}

/// Ends a receiver: set by the sender when it is done; the receiver then
/// listens for `GRACE` more (so a slow start under load is no failure,
/// and a blocked path costs the sending time plus the grace only).
#[derive(Clone, Default)]
struct Sent(Arc<AtomicBool>);

const GRACE: Duration = Duration::from_millis(300);

impl Sent {
    fn done(&self) {
        self.0.store(true, Ordering::Release);
    }
    /// Calls `recv` (which should time out quickly) until it returns false
    /// or the sender is done and GRACE has passed.
    fn receive_until_quiet(&self, mut recv: impl FnMut() -> bool) {
        let mut done_at = None;
        loop {
            if !recv() {
                return;
            }
            if self.0.load(Ordering::Acquire) {
                let since = *done_at.get_or_insert_with(Instant::now);
                if since.elapsed() > GRACE {
                    return;
                }
            }
        }
    }
}

/// How many of `count` datagrams sent from node `from` arrive at
/// `dest` (bound inside node `to`). With `stop_at_first`, sends are 20 ms
/// apart and stop once one arrived; otherwise they go in paced bursts.
fn udp_count(
    c: &Cluster,
    from: usize,
    to: usize,
    dest: IpAddr,
    count: u32,
    stop_at_first: bool,
) -> usize {
    let (port_tx, port_rx) = mpsc::channel();
    let got_one = Arc::new(AtomicBool::new(false));
    let sent = Sent::default();
    let (got, until) = (got_one.clone(), sent.clone());
    let receiver = c.in_node(to, move || {
        let sock = UdpSocket::bind(SocketAddr::new(dest, 0)).expect("bind receiver");
        sock.set_read_timeout(Some(Duration::from_millis(20)))
            .unwrap();
        port_tx.send(sock.local_addr().unwrap()).unwrap();
        let mut seen = HashSet::new();
        let mut buf = [0u8; 64];
        until.receive_until_quiet(|| {
            if let Ok(4) = sock.recv(&mut buf) {
                seen.insert(u32::from_le_bytes(buf[..4].try_into().unwrap()));
                got.store(true, Ordering::Relaxed);
            }
            // Go on unless the first one was all we wanted.
            !stop_at_first || seen.is_empty()
        });
        seen.len()
    });
    let addr = port_rx.recv().expect("receiver bound");
    let sender = c.in_node(from, move || {
        let sock = UdpSocket::bind(unspecified(addr.ip())).expect("bind sender");
        for seq in 0..count {
            if stop_at_first && got_one.load(Ordering::Relaxed) {
                break;
            }
            let _ = sock.send_to(&seq.to_le_bytes(), addr);
            if stop_at_first {
                std::thread::sleep(Duration::from_millis(20));
            } else if seq % 32 == 31 {
                std::thread::sleep(Duration::from_millis(1));
            }
        }
        sent.done();
    });
    sender.join().expect("sender");
    receiver.join().expect("receiver")
}

/// True when a datagram from node `from` reaches node `to` at `dest`
/// (30 tries, 20 ms apart).
fn reaches(c: &Cluster, from: usize, to: usize, dest: IpAddr) -> bool {
    udp_count(c, from, to, dest, 30, true) > 0
}

/// Which of `to` receive a multicast datagram sent from node `from` to
/// the cluster's group (30 tries, 20 ms apart).
fn multicast_reaches(c: &Cluster, from: usize, to: &[usize]) -> Vec<bool> {
    let (group, port) = c.mcast();
    let port = port + 100; // not the daemons' port
    let sent = Sent::default();
    let (ready_tx, ready_rx) = mpsc::channel();
    let receivers: Vec<_> = to
        .iter()
        .map(|&i| {
            let me = c.ipv4(i);
            let (ready, until) = (ready_tx.clone(), sent.clone());
            c.in_node(i, move || {
                let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).expect("bind");
                sock.join_multicast_v4(&group, &me).expect("join");
                sock.set_read_timeout(Some(Duration::from_millis(20)))
                    .unwrap();
                ready.send(()).unwrap();
                let mut got = false;
                until.receive_until_quiet(|| {
                    got = sock.recv(&mut [0u8; 16]).is_ok();
                    !got
                });
                got
            })
        })
        .collect();
    for _ in to {
        ready_rx.recv().unwrap();
    }
    let sender = c.in_node(from, move || {
        let sock = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind");
        sock.set_multicast_ttl_v4(1).unwrap();
        for _ in 0..30 {
            sock.send_to(b"mcast", (group, port)).expect("send");
            std::thread::sleep(Duration::from_millis(20));
        }
        sent.done();
    });
    sender.join().unwrap();
    receivers.into_iter().map(|r| r.join().unwrap()).collect()
}

// ----- layout -----

#[test]
fn layout_names_and_addresses() {
    let c = builder().nodes(3).start().expect("start");
    covered("layout_names_and_addresses", c.mode());
    assert_eq!(c.mode(), Cluster::host_mode());
    let p = c.prefix().to_owned();
    assert!(p.starts_with("crh") && p.len() <= 12, "{p}");
    assert!(c.dir().ends_with(format!("corosync-rs-{p}")));
    let ids: HashSet<_> = (0..3).map(|i| c.ipc_endpoint(i).to_owned()).collect();
    assert_eq!(ids.len(), 3, "distinct IPC endpoints");
    assert_eq!(c.node_ids(), vec![1, 2, 3]);
    for i in 0..3 {
        assert!(c.run_dir(i).ends_with(format!("n{i}/run")));
        assert!(c.state_dir(i).is_dir());
        assert!(c.log_path(i).starts_with(c.run_dir(i)));
        let conf = std::fs::read_to_string(c.config_path(i)).unwrap();
        for j in 0..3 {
            assert!(
                conf.contains(&format!("ring0_addr: {}", c.addr(j))),
                "{conf}"
            );
        }
        assert!(conf.contains(&format!("state_dir: {}", c.state_dir(i).display())));
        assert!(conf.contains(&format!("cluster_name: {p}")));
    }
    if c.mode() == Mode::Loopback {
        for i in 0..3 {
            assert!(c.addr(i).is_loopback() && c.netns(i).is_none());
        }
        return;
    }
    let list = netns_list();
    let br = c.bridge_netns().unwrap();
    assert!(list.contains(&br), "{list:?}");
    for i in 0..3 {
        let ns = c.netns(i).unwrap();
        assert_eq!(ns, format!("{p}-n{i}"));
        assert!(list.iter().any(|n| n == ns), "{list:?}");
        let dev = c.interface(i).unwrap();
        assert!(dev.starts_with(&p) && dev.len() <= 15, "{dev}");
        let addrs = ip_in(ns, &["-o", "addr", "show", "dev", dev]);
        assert!(addrs.contains(&format!("{}/24", c.ipv4(i))), "{addrs}");
        assert!(
            addrs.contains(&format!("{}/64", c.ipv6(i).unwrap())),
            "{addrs}"
        );
        let v6_line = addrs.lines().find(|l| l.contains("fd00")).unwrap();
        assert!(!v6_line.contains("tentative"), "usable at once: {v6_line}");
        let lo = ip_in(ns, &["-o", "link", "show", "dev", "lo"]);
        assert!(lo.contains("UP"), "{lo}");
        let routes = ip_in(ns, &["route", "show"]);
        assert!(routes.contains("224.0.0.0/4"), "{routes}");
    }
    let ports = ip_in(&br, &["-o", "link", "show", "master", &format!("{p}br")]);
    assert_eq!(ports.lines().count(), 3, "{ports}");
}

#[test]
fn configs_per_transport_and_authkey() {
    if Cluster::host_mode() == Mode::Loopback {
        covered("configs_per_transport_and_authkey", Mode::Loopback);
        for t in [Transport::Udp, Transport::Udpu6] {
            let e = builder().transport(t).start().err();
            assert!(matches!(e, Some(Error::Unsupported(_))), "{t:?}: {e:?}");
        }
        return;
    }
    covered("configs_per_transport_and_authkey", Mode::Namespaces);
    let c = builder()
        .nodes(2)
        .transport(Transport::Udp)
        .authkey(&[7u8; 128])
        .totem_extra("crypto_cipher: aes256")
        .config_extra("quorum {\n\tprovider: corosync_votequorum\n}")
        .start()
        .expect("start");
    let conf = std::fs::read_to_string(c.config_path(1)).unwrap();
    let (group, port) = c.mcast();
    assert!(conf.contains("transport: udp\n"), "{conf}");
    assert!(conf.contains(&format!("mcastaddr: {group}")), "{conf}");
    assert!(conf.contains(&format!("mcastport: {port}")), "{conf}");
    let net = Ipv4Addr::from(u32::from(c.ipv4(0)) & 0xffff_ff00);
    assert!(conf.contains(&format!("bindnetaddr: {net}")), "{conf}");
    assert!(!conf.contains("nodelist") && conf.contains("crypto_cipher: aes256"));
    assert!(conf.contains("provider: corosync_votequorum"));
    assert_eq!(
        c.node_id(1),
        u32::from(c.ipv4(1)),
        "derived from the address"
    );
    let key = c.dir().join("authkey");
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(
        std::fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let line = c.wait_log(1, "stand-in endpoint=", T).unwrap();
    assert!(
        line.contains(&format!("authkey={}", key.display())),
        "{line}"
    );
    drop(c);

    let c = builder()
        .nodes(2)
        .transport(Transport::Udpu6)
        .start()
        .unwrap();
    let conf = std::fs::read_to_string(c.config_path(0)).unwrap();
    assert!(conf.contains("ip_version: ipv6"), "{conf}");
    assert!(
        conf.contains(&format!("ring0_addr: {}", c.ipv6(1).unwrap())),
        "{conf}"
    );
    assert_eq!(c.addr(1), IpAddr::from(c.ipv6(1).unwrap()));
}

// ----- traffic -----

#[test]
fn unicast_between_all_nodes_v4_and_v6() {
    let c = builder().nodes(3).autostart(false).start().expect("start");
    covered("unicast_between_all_nodes_v4_and_v6", c.mode());
    for from in 0..3 {
        for to in (0..3).filter(|&t| t != from) {
            let v4 = IpAddr::from(c.ipv4(to));
            assert!(reaches(&c, from, to, v4), "{from} -> {to} ({v4})");
            if let Some(v6) = c.ipv6(to) {
                assert!(reaches(&c, from, to, v6.into()), "{from} -> {to} ({v6})");
            }
        }
    }
}

#[test]
fn multicast_crosses_the_bridge() {
    if Cluster::host_mode() == Mode::Loopback {
        covered("multicast_crosses_the_bridge", Mode::Loopback);
        let e = builder().transport(Transport::Udp).start().err();
        assert!(matches!(e, Some(Error::Unsupported(_))), "{e:?}");
        return;
    }
    covered("multicast_crosses_the_bridge", Mode::Namespaces);
    let c = builder()
        .nodes(3)
        .transport(Transport::Udp)
        .autostart(false)
        .start()
        .expect("start");
    assert_eq!(multicast_reaches(&c, 0, &[1, 2]), vec![true, true]);
    assert_eq!(multicast_reaches(&c, 2, &[0, 1]), vec![true, true]);
}

/// True when the fault API is usable here; otherwise checks that it says
/// why not, and says on stderr what was not tested.
fn faults_usable(c: &Cluster, test: &str) -> bool {
    match c.heal() {
        Ok(()) => true,
        Err(Error::Unsupported(why)) => {
            assert!(
                c.mode() == Mode::Loopback || why.contains("nft"),
                "unexpected: {why}"
            );
            assert!(matches!(
                c.partition(&[&[0], &[1]]),
                Err(Error::Unsupported(_))
            ));
            assert!(matches!(c.loss(0, 10), Err(Error::Unsupported(_))));
            assert!(matches!(c.block(0, 1), Err(Error::Unsupported(_))));
            let _ = writeln!(
                std::io::stderr(),
                "{test}: fault injection NOT TESTED ({why}); tested that it is refused"
            );
            false
        }
        Err(e) => panic!("heal: {e}"),
    }
}

#[test]
fn partition_block_and_heal() {
    let c = builder().nodes(3).autostart(false).start().expect("start");
    covered("partition_block_and_heal", c.mode());
    if !faults_usable(&c, "partition_block_and_heal") {
        return;
    }
    let v4 = |i: usize| IpAddr::from(c.ipv4(i));
    let v6 = |i: usize| IpAddr::from(c.ipv6(i).unwrap());
    assert!(reaches(&c, 0, 2, v4(2)));

    c.partition(&[&[0, 1], &[2]]).unwrap();
    assert!(c.fault_rules().unwrap().contains("drop"));
    assert!(reaches(&c, 0, 1, v4(1)), "same side");
    assert!(reaches(&c, 1, 0, v6(0)), "same side, IPv6");
    assert!(!reaches(&c, 0, 2, v4(2)), "across");
    assert!(!reaches(&c, 2, 1, v4(1)), "across, other way");
    assert!(!reaches(&c, 2, 0, v6(0)), "across, IPv6");
    assert_eq!(multicast_reaches(&c, 0, &[1, 2]), vec![true, false]);

    c.heal().unwrap();
    assert!(reaches(&c, 0, 2, v4(2)), "healed");
    assert!(reaches(&c, 2, 1, v6(1)), "healed, IPv6");
    assert_eq!(multicast_reaches(&c, 0, &[1, 2]), vec![true, true]);

    c.block(0, 1).unwrap();
    assert!(!reaches(&c, 0, 1, v4(1)), "blocked way");
    assert!(reaches(&c, 1, 0, v4(0)), "other way stays open");
    assert!(reaches(&c, 0, 2, v4(2)), "others untouched");
    assert_eq!(multicast_reaches(&c, 0, &[1, 2]), vec![false, true]);
    c.heal().unwrap();
    assert!(reaches(&c, 0, 1, v4(1)));

    assert!(matches!(c.partition(&[&[0], &[0]]), Err(Error::State(_))));
    assert!(matches!(c.block(0, 9), Err(Error::State(_))));
}

#[test]
fn loss_drops_about_the_given_share() {
    let c = builder().nodes(2).autostart(false).start().expect("start");
    covered("loss_drops_about_the_given_share", c.mode());
    if !faults_usable(&c, "loss_drops_about_the_given_share") {
        return;
    }
    let to1 = IpAddr::from(c.ipv4(1));
    // Resolve neighbours before the loss applies to ARP too.
    assert!(reaches(&c, 0, 1, to1));
    assert!(reaches(&c, 1, 0, c.ipv4(0).into()));
    const N: u32 = 2000;
    c.loss(1, 30).unwrap();
    let got = udp_count(&c, 0, 1, to1, N, false);
    let share = got as f64 / f64::from(N);
    assert!(
        (0.6..=0.8).contains(&share),
        "{got} of {N} arrived with 30% loss"
    );
    c.loss(1, 0).unwrap();
    let got = udp_count(&c, 0, 1, to1, 500, false);
    assert!(got >= 495, "{got} of 500 arrived without loss");
}

// ----- daemons -----

fn proc_state(pid: u32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // "pid (comm) S ..."; comm may hold spaces, so look after the last ')'.
    stat.rsplit(')')
        .next()
        .and_then(|r| r.trim_start().chars().next())
        .unwrap_or('?')
}

fn wait_state(pid: u32, want: char) {
    let end = Instant::now() + T;
    while proc_state(pid) != want {
        assert!(Instant::now() < end, "pid {pid} never reached state {want}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn daemon_start_signals_and_restart() {
    let c = builder().nodes(3).start().expect("start");
    covered("daemon_start_signals_and_restart", c.mode());
    for i in 0..3 {
        c.wait_ready(i, T).unwrap();
        assert_eq!(c.wait_members(i, 3, T).unwrap(), vec![1, 2, 3]);
        assert_eq!(c.latest_members(i), Some(vec![1, 2, 3]));
        let line = c.wait_log(i, "stand-in pid=", T).unwrap();
        let conf = c.config_path(i).display().to_string();
        assert!(line.ends_with(&format!("args=-f -c {conf}")), "{line}");
        // `ip netns exec` execs in place: the pid we signal is the daemon's.
        let pid = c.pid(i).unwrap();
        assert!(line.contains(&format!("pid={pid} ")), "{line} vs {pid}");
        let env = c.wait_log(i, "stand-in endpoint=", T).unwrap();
        assert!(
            env.contains(&format!("endpoint={} ", c.ipc_endpoint(i))),
            "{env}"
        );
    }

    // SIGSTOP / SIGCONT
    let pid = c.pid(0).unwrap();
    c.sigstop(0).unwrap();
    wait_state(pid, 'T');
    assert!(c.is_running(0), "a stopped daemon still runs");
    c.sigcont(0).unwrap();
    wait_state(pid, 'S');

    // kill -9: not running; waits fail at once, with the log.
    c.kill9(1).unwrap();
    assert!(!c.is_running(1) && c.pid(1).is_none());
    let started = Instant::now();
    match c.wait_log(1, "never printed", T) {
        Err(Error::Exited(m)) => assert!(m.contains("Members[3]: 1 2 3"), "{m}"),
        other => panic!("{other:?}"),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    assert!(matches!(c.sigterm(1), Err(Error::State(_))));
    assert!(c.kill9(1).is_ok(), "kill9 of a dead node is a no-op");

    // restart: the waits see the new daemon only, the log keeps both.
    let offset = c.log_offset(1);
    c.restart(1).unwrap();
    assert!(c.is_running(1));
    assert_eq!(c.wait_log_count(1, "stand-in pid=", 1, T).unwrap(), 1);
    c.wait_log_since(1, offset, "Members[3]", T).unwrap();
    assert_eq!(c.log(1).matches("stand-in pid=").count(), 2);
    assert!(c.log(1).contains("[cluster harness] start #2 of node 1"));
    assert!(
        matches!(c.start_node(1), Err(Error::State(_))),
        "already running"
    );

    // SIGTERM, then the exit.
    c.sigterm(2).unwrap();
    let status = c.wait_exit(2, T).unwrap();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGTERM), "{status:?}");
}

#[test]
fn waits_time_out_with_the_log_tail() {
    let c = builder().nodes(1).start().expect("start");
    covered("waits_time_out_with_the_log_tail", c.mode());
    c.wait_members(0, 3, T).unwrap();
    let started = Instant::now();
    let e = c
        .wait_log(0, "never printed", Duration::from_millis(200))
        .unwrap_err();
    assert!(started.elapsed() >= Duration::from_millis(200));
    assert!(started.elapsed() < Duration::from_secs(3));
    let Error::Timeout(m) = &e else {
        panic!("{e:?}")
    };
    assert!(
        m.contains("never printed") && m.contains("Members[3]: 1 2 3"),
        "{m}"
    );
    assert!(m.contains(&c.log_path(0).display().to_string()), "{m}");
    assert!(e.to_string().contains("timed out"));
    let e = c
        .wait_members(0, 5, Duration::from_millis(100))
        .unwrap_err();
    assert!(matches!(e, Error::Timeout(_)), "{e:?}");
    let e = c.wait_log_count(0, "Members[", 3, Duration::from_millis(100));
    assert!(matches!(e, Err(Error::Timeout(_))), "{e:?}");
    assert_eq!(c.wait_log_count(0, "Members[", 2, T).unwrap(), 2);
}

#[test]
fn missing_daemon_binary_is_a_clear_error() {
    let c = Cluster::builder()
        .nodes(1)
        .daemon_binary("/nonexistent/corosync")
        .autostart(false)
        .start()
        .expect("start without daemons");
    covered("missing_daemon_binary_is_a_clear_error", c.mode());
    match c.start_node(0) {
        Err(Error::Setup(m)) => assert!(m.contains("CORO_DAEMON_BIN"), "{m}"),
        other => panic!("{other:?}"),
    }
    let e = c.wait_log(0, "x", T).unwrap_err();
    assert!(matches!(e, Error::Exited(_)), "never started: {e:?}");
}

#[test]
fn clients_run_in_the_node_namespace_with_its_env() {
    let c = builder().nodes(2).autostart(false).start().expect("start");
    covered("clients_run_in_the_node_namespace_with_its_env", c.mode());
    let out = c
        .exec_in(
            1,
            &[
                "sh",
                "-c",
                "echo $COROSYNC_IPC_ENDPOINT $COROSYNC_MAIN_CONFIG_FILE",
            ],
        )
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let want = format!("{} {}", c.ipc_endpoint(1), c.config_path(1).display());
    assert_eq!(text.trim(), want);
    assert!(matches!(c.exec_in(0, &[]), Err(Error::State(_))));

    let mut sleeper = c
        .command_in(1, "sleep")
        .arg("1000")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    let pid = sleeper.id();
    if c.mode() == Mode::Namespaces {
        let out = c.exec_in(1, &["ip", "-o", "addr"]).unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(text.contains(&c.ipv4(1).to_string()), "{text}");
        assert!(!text.contains(&c.ipv4(0).to_string()), "{text}");
        let pids = cluster::net::ip(&["netns", "pids", c.netns(1).unwrap()]).unwrap();
        assert!(
            pids.split_whitespace().any(|p| p == pid.to_string()),
            "{pids}"
        );
    }
    drop(c);
    // Teardown killed the client it did not start itself.
    let status = sleeper.wait().unwrap();
    assert!(!status.success(), "{status:?}");
}

// ----- teardown -----

fn assert_gone(prefix: &str) {
    if Cluster::host_mode() == Mode::Namespaces {
        let left: Vec<_> = netns_list()
            .into_iter()
            .filter(|n| n.starts_with(prefix))
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}

#[test]
fn teardown_happens_on_panic() {
    /// Prefix, temp dir and daemon pids of the cluster that panicked.
    type Seen = Option<(String, PathBuf, Vec<u32>)>;
    let seen: Arc<Mutex<Seen>> = Arc::default();
    let inner = seen.clone();
    let result = std::panic::catch_unwind(move || {
        let c = builder().nodes(3).start().expect("start");
        for i in 0..3 {
            c.wait_ready(i, T).unwrap();
        }
        let pids = (0..3).map(|i| c.pid(i).unwrap()).collect();
        *inner.lock().unwrap() = Some((c.prefix().to_owned(), c.dir().to_owned(), pids));
        panic!("deliberate panic with a live cluster");
    });
    assert!(result.is_err());
    let (prefix, dir, pids) = seen.lock().unwrap().take().expect("cluster was built");
    covered("teardown_happens_on_panic", Cluster::host_mode());
    assert_gone(&prefix);
    for pid in pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "daemon {pid} survived"
        );
    }
    // A panicking drop keeps the logs for a look.
    assert!(dir.join("n0/run/corosync.log").is_file());
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A config edit that notes the run's prefix (the cluster_name) and
/// panics for node `panic_at`.
fn prefix_spy(
    seen: &Arc<Mutex<Option<String>>>,
    panic_at: Option<usize>,
) -> impl Fn(usize, String) -> String + Send + Sync + 'static {
    let seen = seen.clone();
    move |i, text| {
        let name = text
            .lines()
            .find_map(|l| l.trim().strip_prefix("cluster_name: "))
            .expect("cluster_name");
        *seen.lock().unwrap() = Some(name.to_owned());
        if panic_at == Some(i) {
            panic!("deliberate panic in the config edit of node {i}");
        }
        text
    }
}

#[test]
fn failed_start_leaves_nothing() {
    covered("failed_start_leaves_nothing", Cluster::host_mode());
    let e = builder().nodes(65).start().err();
    assert!(matches!(e, Some(Error::State(_))), "{e:?}");

    // An error after the network exists: no daemon binary.
    let seen: Arc<Mutex<Option<String>>> = Arc::default();
    let e = Cluster::builder()
        .nodes(2)
        .daemon_binary("/nonexistent/corosync")
        .config_edit(prefix_spy(&seen, None))
        .start()
        .err();
    assert!(matches!(e, Some(Error::Setup(_))), "{e:?}");
    let prefix = seen.lock().unwrap().take().unwrap();
    assert_gone(&prefix);
    let dir = std::env::temp_dir().join(format!("corosync-rs-{prefix}"));
    assert!(!dir.exists(), "{} left behind", dir.display());

    // A panic in the middle of start.
    let r = std::panic::catch_unwind(|| {
        builder()
            .nodes(3)
            .config_edit(prefix_spy(&seen, Some(1)))
            .start()
            .is_ok()
    });
    assert!(r.is_err());
    let prefix = seen.lock().unwrap().take().unwrap();
    assert_gone(&prefix);
    let dir = std::env::temp_dir().join(format!("corosync-rs-{prefix}"));
    assert!(dir.is_dir(), "a panicking drop keeps the dir");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn concurrent_clusters_do_not_collide() {
    let handles: Vec<_> = (0..3)
        .map(|_| {
            std::thread::spawn(|| {
                let c = builder().nodes(2).start().expect("start");
                c.wait_members(0, 3, T).unwrap();
                assert!(reaches(&c, 0, 1, c.ipv4(1).into()));
                (c.prefix().to_owned(), c.mode())
            })
        })
        .collect();
    let results: Vec<(String, Mode)> = handles.into_iter().map(|h| h.join().unwrap()).collect();
    covered("concurrent_clusters_do_not_collide", results[0].1);
    let prefixes: HashSet<_> = results.iter().map(|r| r.0.clone()).collect();
    assert_eq!(prefixes.len(), 3, "{results:?}");
    for p in &prefixes {
        assert_gone(p);
    }
}

#[test]
fn sweep_stale_removes_dead_runs_only() {
    let live = builder().nodes(1).start().expect("start");
    covered("sweep_stale_removes_dead_runs_only", live.mode());
    // A pid that surely is dead: a child we reaped.
    let mut child = Command::new("true").spawn().unwrap();
    child.wait().unwrap();
    let dead = cluster::names::prefix_for(child.id(), 12345);

    // A loopback-mode daemon of the dead run, found by its endpoint.
    let dir = std::env::temp_dir().join(format!("corosync-rs-{dead}"));
    std::fs::create_dir_all(&dir).unwrap();
    let mut orphan = Command::new("sleep")
        .arg("1000")
        .env(cluster::ENDPOINT_ENV, format!("corosync-rs-{dead}-n0"))
        .spawn()
        .unwrap();

    let mut in_ns = None;
    let ns = format!("{dead}-n0");
    if live.mode() == Mode::Namespaces {
        cluster::net::ip(&["netns", "add", &ns]).unwrap();
        in_ns = Some(
            Command::new("ip")
                .args(["netns", "exec", &ns, "sleep", "1000"])
                .spawn()
                .unwrap(),
        );
        // `ip netns exec` has entered the namespace once the pid shows.
        let end = Instant::now() + T;
        while cluster::net::ip(&["netns", "pids", &ns])
            .unwrap()
            .trim()
            .is_empty()
        {
            assert!(Instant::now() < end, "sleep never entered {ns}");
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    cluster::sweep_stale().unwrap();

    assert!(!orphan.wait().unwrap().success(), "orphan daemon killed");
    if let Some(mut p) = in_ns {
        assert!(
            !p.wait().unwrap().success(),
            "process in the stale namespace killed"
        );
        assert!(!netns_list().contains(&ns), "stale namespace removed");
        let mine = live.netns(0).unwrap().to_owned();
        assert!(netns_list().contains(&mine), "a live run is left alone");
        assert!(live
            .bridge_netns()
            .is_some_and(|b| netns_list().contains(&b)));
    }
    // A fresh dir is kept for its logs (an hour); remove ours by hand.
    assert!(dir.is_dir());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        live.is_running(0),
        "the live run's daemon survived the sweep"
    );
}

// ----- loopback fallback, in every mode -----

#[test]
fn loopback_fallback() {
    let c = builder()
        .nodes(3)
        .mode(Mode::Loopback)
        .start()
        .expect("start");
    covered("loopback_fallback", Mode::Loopback);
    assert_eq!(c.mode(), Mode::Loopback);
    let addrs: HashSet<_> = (0..3).map(|i| c.addr(i)).collect();
    assert_eq!(addrs.len(), 3);
    for i in 0..3 {
        assert!(c.addr(i).is_loopback() && c.netns(i).is_none() && c.ipv6(i).is_none());
        c.wait_members(i, 3, T).unwrap();
    }
    assert!(reaches(&c, 0, 1, c.addr(1)));
    for e in [
        c.partition(&[&[0], &[1, 2]]),
        c.loss(0, 5),
        c.block(0, 1),
        c.heal(),
    ] {
        match e {
            Err(Error::Unsupported(m)) => assert!(m.contains("namespaces"), "{m}"),
            other => panic!("{other:?}"),
        }
    }
    for t in [Transport::Udp, Transport::Udpu6] {
        let e = builder().mode(Mode::Loopback).transport(t).start().err();
        assert!(matches!(e, Some(Error::Unsupported(_))), "{t:?}: {e:?}");
    }
    if Cluster::host_mode() == Mode::Loopback {
        let e = builder().mode(Mode::Namespaces).start().err();
        assert!(matches!(e, Some(Error::Unsupported(_))), "{e:?}");
    }
}
