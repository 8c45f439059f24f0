//! ipc-bench: the shared-memory IPC measured between two processes, one
//! client-API call per message, the server validating every header; with two
//! baselines in the same run: a unix SOCK_SEQPACKET socket (busy and
//! blocking) and a bare eventfd ping (the machine's wake-up cost). The
//! parked pings and the eventfd pings alternate in blocks between the same
//! two processes, so both see the same machine at the same moments (this VM's
//! wake-up cost drifts by a quarter within seconds). A third block of
//! eventfd pings has the server wait in `epoll_wait` before it reads, as
//! any server that waits for many clients must: `eventfd_epoll_parked_*`
//! tells how much of the parked path's cost is that wait's.
//!
//! `ipc-bench [--quick]`; the last line is the summary:
//! `busy_one_way_p50_ns=A socket_busy_one_way_p50_ns=B parked_one_way_p50_ns=C
//!  eventfd_parked_p50_ns=D msgs_per_s_64B=E socket_msgs_per_s_64B=F`
//! (one line). The process re-executes itself (`--child ROLE ...`) for the
//! second process of each measurement.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write as _};
use std::os::fd::RawFd;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use ipc_shm::{
    monotonic_ns, Client, ClientConfig, ClientError, Endpoint, Event, PollLoop, RingSizes, Server,
    ServerConfig, Wait,
};

const K_MODE: u16 = 1;
const K_PING: u16 = 2;
const K_TP: u16 = 3;
const K_TP_END: u16 = 4;
/// Payload: a block length, a warm-up flag and an epoll flag; the server
/// answers, then takes that many bare eventfd pings (waiting in
/// `epoll_wait` before each read with the epoll flag) before it looks at
/// its rings again.
const K_EFD_BLOCK: u16 = 5;
/// Parked pings and eventfd pings alternate in blocks of this many.
const PARKED_BLOCK: usize = 1000;
/// Payload: a packet count; the server answers, then receives that many
/// 64-byte packets on the baseline socket and sends back how long they took.
const K_SOCK_TP: u16 = 6;
/// Throughput is measured this many times per size (the 64-byte rate
/// alternating with the socket's), and the best round counts: this VM's
/// cross-core bandwidth drops by a factor of four for seconds at a time.
const TP_ROUNDS: usize = 3;

struct Plan {
    pings_busy: usize,
    pings_parked: usize,
    tp: [(usize, usize); 3],
    idle_sessions: usize,
}

fn plan(quick: bool) -> Plan {
    if quick {
        Plan {
            pings_busy: 50_000,
            pings_parked: 10_000,
            tp: [(64, 2_000_000), (1024, 500_000), (65536, 20_000)],
            idle_sessions: 64,
        }
    } else {
        Plan {
            pings_busy: 500_000,
            pings_parked: 100_000,
            tp: [(64, 20_000_000), (1024, 5_000_000), (65536, 200_000)],
            idle_sessions: 256,
        }
    }
}

fn pct(v: &mut [u64], q: f64) -> u64 {
    if v.is_empty() {
        return 0;
    }
    v.sort_unstable();
    v[((q * v.len() as f64) as usize).min(v.len() - 1)]
}

fn percentiles(v: &mut [u64]) -> (u64, u64, u64) {
    (pct(v, 0.50), pct(v, 0.99), pct(v, 0.999))
}

fn spawn_child(args: &[String]) -> std::process::Child {
    Command::new(std::env::current_exe().expect("own path"))
        .arg("--child")
        .args(args)
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn child")
}

/// Waits for a child and parses its `RESULT k=v ...` lines.
fn child_results(child: std::process::Child) -> BTreeMap<String, u64> {
    let out = child.wait_with_output().expect("child output");
    assert!(out.status.success(), "child failed: {:?}", out.status);
    let mut m = BTreeMap::new();
    for line in BufReader::new(&out.stdout[..]).lines() {
        let line = line.expect("utf8");
        if let Some(rest) = line.strip_prefix("RESULT ") {
            for kv in rest.split_whitespace() {
                if let Some((k, v)) = kv.split_once('=') {
                    m.insert(k.to_owned(), v.parse().expect("number"));
                }
            }
        }
    }
    m
}

// ---------------------------------------------------------------- IPC ----

fn ipc_parent(plan: &Plan, endpoint: &Endpoint) -> BTreeMap<String, u64> {
    let mut cfg = ServerConfig {
        endpoint: endpoint.clone(),
        ..ServerConfig::default()
    };
    cfg.max_sessions = plan.idle_sessions + 4;
    let mut server = Server::new(cfg).expect("server");
    let mut pl = PollLoop::new().expect("poll loop");
    // First, while the heap holds nothing freed that sessions could reuse.
    let idle = idle_memory(&mut server, &mut pl, plan.idle_sessions, endpoint);
    let ep = endpoint_arg(endpoint);
    // The bare eventfd baseline: `ping` carries the client's timestamp to
    // the server, `ack` answers it. The baseline through `epoll_wait` has a
    // pair of its own: an eventfd in an epoll set costs its writer the
    // set's callback, which must not weigh on the plain one.
    let [ping, ack] = raw_fd_pair("efd");
    let [ping_ep, ack_ep] = raw_fd_pair("efd");
    // The socket throughput baseline: the server receives on `sock_mine`.
    let [sock_mine, sock_theirs] = raw_fd_pair("sock");
    let child = spawn_child(&[
        "ipc".into(),
        ep,
        plan.pings_busy.to_string(),
        plan.pings_parked.to_string(),
        plan.tp
            .iter()
            .map(|(s, n)| format!("{s}:{n}"))
            .collect::<Vec<_>>()
            .join(","),
        ping.to_string(),
        ack.to_string(),
        sock_theirs.to_string(),
        ping_ep.to_string(),
        ack_ep.to_string(),
    ]);
    close(sock_theirs);
    let mut efd_one_way = Vec::with_capacity(plan.pings_parked);
    let mut efd_epoll_one_way = Vec::with_capacity(plan.pings_parked);
    let efd_epoll = epoll_on(ping_ep);
    let mut busy = false;
    let mut one_way: [Vec<u64>; 2] = [
        Vec::with_capacity(plan.pings_busy),
        Vec::with_capacity(plan.pings_parked),
    ];
    let mut tp_count = 0u64;
    let mut tp_first = 0u64;
    let mut finished = false;
    let mut spins = 0u32;
    while !finished {
        spins = spins.wrapping_add(1);
        if busy {
            server.poll_busy();
            if spins.is_multiple_of(1024) {
                pl.turn(&mut server, Some(Duration::ZERO)).expect("turn");
            }
        } else {
            pl.turn(&mut server, Some(Duration::from_millis(100)))
                .expect("turn");
        }
        while let Some(ev) = server.next_event() {
            let (id, h, p) = match ev {
                Event::Request {
                    session,
                    header,
                    payload,
                } => (session, header, payload),
                Event::Connected { .. } => continue,
                Event::Disconnected { .. } => {
                    finished = true;
                    break;
                }
            };
            match h.kind {
                K_PING => {
                    let now = monotonic_ns();
                    let ts = u64::from_le_bytes(p[..8].try_into().expect("8"));
                    // A zero timestamp marks a warm-up ping.
                    if ts != 0 {
                        one_way[usize::from(!busy)].push(now.saturating_sub(ts));
                    }
                    server.respond(id, h, &[]).expect("respond");
                }
                K_TP => {
                    if tp_count == 0 {
                        tp_first = monotonic_ns();
                    }
                    tp_count += 1;
                }
                K_TP_END => {
                    // Queued behind the last message: its arrival ends the run.
                    let tp_last = monotonic_ns();
                    let mut b = [0u8; 16];
                    b[..8].copy_from_slice(&tp_count.to_le_bytes());
                    b[8..].copy_from_slice(&(tp_last - tp_first).to_le_bytes());
                    tp_count = 0;
                    server.respond(id, h, &b).expect("respond");
                }
                K_EFD_BLOCK => {
                    let n = u32::from_le_bytes(p[..4].try_into().expect("4"));
                    let warm_up = p[4] != 0;
                    let via_epoll = p[5] != 0;
                    server.respond(id, h, &[]).expect("respond");
                    let (ping, ack) = if via_epoll {
                        (ping_ep, ack_ep)
                    } else {
                        (ping, ack)
                    };
                    for _ in 0..n {
                        if via_epoll {
                            epoll_wait_one(efd_epoll);
                        }
                        let ts = read_u64(ping);
                        let now = monotonic_ns();
                        if !warm_up {
                            let v = if via_epoll {
                                &mut efd_epoll_one_way
                            } else {
                                &mut efd_one_way
                            };
                            v.push(now.saturating_sub(ts));
                        }
                        write_u64(ack, 1);
                    }
                }
                K_SOCK_TP => {
                    let n = u64::from_le_bytes(p[..8].try_into().expect("8"));
                    server.respond(id, h, &[]).expect("respond");
                    let mut buf = [0u8; 64];
                    sock_recv(sock_mine, &mut buf, false);
                    let first = monotonic_ns();
                    for _ in 1..n {
                        sock_recv(sock_mine, &mut buf, false);
                    }
                    let ns = monotonic_ns() - first;
                    sock_send(sock_mine, &ns.to_le_bytes());
                }
                K_MODE => {
                    busy = p[0] == 0;
                    server.respond(id, h, &[]).expect("respond");
                    server.set_busy_poll(busy);
                    break;
                }
                _ => {}
            }
        }
    }
    close(efd_epoll);
    for fd in [ping, ack, ping_ep, ack_ep, sock_mine] {
        close(fd);
    }
    let mut m = child_results(child);
    let (e50, e99, e999) = percentiles(&mut efd_one_way);
    m.insert("eventfd_parked_p50_ns".into(), e50);
    m.insert("eventfd_parked_p99_ns".into(), e99);
    m.insert("eventfd_parked_p999_ns".into(), e999);
    let (e50, e99, e999) = percentiles(&mut efd_epoll_one_way);
    m.insert("eventfd_epoll_parked_p50_ns".into(), e50);
    m.insert("eventfd_epoll_parked_p99_ns".into(), e99);
    m.insert("eventfd_epoll_parked_p999_ns".into(), e999);
    let (b50, b99, b999) = percentiles(&mut one_way[0]);
    let (p50, p99, p999) = percentiles(&mut one_way[1]);
    m.insert("busy_one_way_p50_ns".into(), b50);
    m.insert("busy_one_way_p99_ns".into(), b99);
    m.insert("busy_one_way_p999_ns".into(), b999);
    m.insert("parked_one_way_p50_ns".into(), p50);
    m.insert("parked_one_way_p99_ns".into(), p99);
    m.insert("parked_one_way_p999_ns".into(), p999);
    m.extend(idle);
    m
}

fn endpoint_arg(e: &Endpoint) -> String {
    match e {
        Endpoint::Abstract(n) => format!("@{n}"),
        Endpoint::Path(p) => p.display().to_string(),
    }
}

fn call(c: &Client, kind: u16, payload: &[u8], wait: Wait) -> Vec<u8> {
    loop {
        match c.call(1, kind, payload, wait, Some(Duration::from_secs(30))) {
            Ok(r) => return r.payload,
            Err(ClientError::TryAgain) => std::hint::spin_loop(),
            Err(e) => panic!("call: {e}"),
        }
    }
}

fn ipc_child(args: &[String]) {
    let endpoint = Endpoint::parse(&args[0]);
    let pings_busy: usize = args[1].parse().expect("n");
    let pings_parked: usize = args[2].parse().expect("n");
    let cfg = ClientConfig {
        endpoint,
        sizes: RingSizes {
            request: 1 << 20,
            response: 1 << 16,
            event: 1 << 16,
        },
        ..ClientConfig::default()
    };
    let c = Client::connect(&cfg).expect("connect");
    let ping: RawFd = args[4].parse().expect("fd");
    let ack: RawFd = args[5].parse().expect("fd");
    let ping_ep: RawFd = args[7].parse().expect("fd");
    let ack_ep: RawFd = args[8].parse().expect("fd");
    let mut out = format!("RESULT light_requests={}", u8::from(c.light_requests()));
    for (mode, n, wait, name) in [
        (0u8, pings_busy, Wait::Spin, "busy"),
        (1u8, pings_parked, Wait::Park, "parked"),
    ] {
        call(&c, K_MODE, &[mode], Wait::Park);
        let mut rtt = Vec::with_capacity(n);
        let mut body = [0u8; 64];
        // Busy: one run. Parked: blocks of PARKED_BLOCK, each after a block
        // of bare eventfd pings; the first pair of blocks (or the first
        // tenth of a busy run) warms up and is not counted.
        let block = if mode == 0 {
            n + n / 10
        } else {
            PARKED_BLOCK.min(n.max(1))
        };
        let blocks = if mode == 0 { 1 } else { n.div_ceil(block) + 1 };
        for b in 0..blocks {
            let warm_up = |i: usize| if mode == 0 { i < n / 10 } else { b == 0 };
            if mode == 1 {
                for via_epoll in [0u8, 1] {
                    let mut req = [0u8; 6];
                    req[..4].copy_from_slice(&(block as u32).to_le_bytes());
                    req[4] = u8::from(warm_up(0));
                    req[5] = via_epoll;
                    call(&c, K_EFD_BLOCK, &req, Wait::Park);
                    let (ping, ack) = if via_epoll == 1 {
                        (ping_ep, ack_ep)
                    } else {
                        (ping, ack)
                    };
                    for _ in 0..block {
                        write_u64(ping, monotonic_ns());
                        read_u64(ack);
                    }
                }
            }
            for i in 0..block {
                let t0 = monotonic_ns();
                let ts = if warm_up(i) { 0 } else { t0 };
                body[..8].copy_from_slice(&ts.to_le_bytes());
                call(&c, K_PING, &body, wait);
                if !warm_up(i) {
                    rtt.push(monotonic_ns() - t0);
                }
            }
        }
        let (a, b, d) = percentiles(&mut rtt);
        out += &format!(" {name}_round_trip_p50_ns={a} {name}_round_trip_p99_ns={b} {name}_round_trip_p999_ns={d}");
    }
    for fd in [ping, ack, ping_ep, ack_ep] {
        close(fd);
    }
    call(&c, K_MODE, &[0], Wait::Park);
    let sock: RawFd = args[6].parse().expect("fd");
    for (i, spec) in args[3].split(',').enumerate() {
        let (size, n) = spec.split_once(':').expect("size:n");
        let (size, n): (usize, u64) = (size.parse().expect("size"), n.parse().expect("n"));
        let payload = vec![0xA5u8; size];
        let mut best = 0f64;
        let mut best_sock = 0f64;
        for _ in 0..TP_ROUNDS {
            best = best.max(ipc_throughput(&c, &payload, n));
            if i == 0 {
                best_sock = best_sock.max(socket_throughput(&c, sock, n / 4));
            }
        }
        out += &format!(
            " msgs_per_s_{}={} mb_per_s_{}={}",
            label(size),
            best as u64,
            label(size),
            (best * size as f64 / 1e6) as u64
        );
        if i == 0 {
            out += &format!(" socket_msgs_per_s_{}={}", label(size), best_sock as u64);
        }
    }
    close(sock);
    println!("{out}");
}

/// Sends `n` messages of `payload` as fast as the ring takes them; the
/// server times first to last arrival. Returns messages per second.
fn ipc_throughput(c: &Client, payload: &[u8], n: u64) -> f64 {
    for _ in 0..n {
        loop {
            match c.send(1, K_TP, payload) {
                Ok(_) => break,
                Err(ClientError::TryAgain) => std::hint::spin_loop(),
                Err(e) => panic!("send: {e}"),
            }
        }
    }
    let r = call(c, K_TP_END, &[], Wait::Spin);
    let count = u64::from_le_bytes(r[..8].try_into().expect("8"));
    let ns = u64::from_le_bytes(r[8..16].try_into().expect("8")).max(1);
    assert_eq!(count, n, "every message arrived");
    (count - 1) as f64 * 1e9 / ns as f64
}

/// The same over the SOCK_SEQPACKET baseline: `n` 64-byte packets, one
/// send call each, the server receiving with one call each.
fn socket_throughput(c: &Client, sock: RawFd, n: u64) -> f64 {
    call(c, K_SOCK_TP, &n.to_le_bytes(), Wait::Park);
    let msg = [0u8; 64];
    for _ in 0..n {
        sock_send(sock, &msg);
    }
    let mut r = [0u8; 64];
    let len = sock_recv(sock, &mut r, false);
    assert_eq!(len, 8);
    let ns = u64::from_le_bytes(r[..8].try_into().expect("8")).max(1);
    (n - 1) as f64 * 1e9 / ns as f64
}

fn label(size: usize) -> String {
    if size >= 1024 {
        format!("{}KiB", size / 1024)
    } else {
        format!("{size}B")
    }
}

/// Daemon-side resident memory per idle session: a child opens `n`
/// sessions and idles; the daemon's RSS grows by the segment pages it
/// touched (the control page) plus its per-session state.
fn idle_memory(
    server: &mut Server,
    pl: &mut PollLoop,
    n: usize,
    endpoint: &Endpoint,
) -> BTreeMap<String, u64> {
    server.set_busy_poll(false);
    let before = rss_kib();
    let mut child = spawn_child(&["idle".into(), endpoint_arg(endpoint), n.to_string()]);
    let mut connected = 0;
    while connected < n {
        pl.turn(server, Some(Duration::from_millis(100)))
            .expect("turn");
        while let Some(ev) = server.next_event() {
            if let Event::Connected { .. } = ev {
                connected += 1;
            }
        }
    }
    let after = rss_kib();
    // The client side's own figure: its first line, once it is connected
    // (the server keeps turning meanwhile, in case a connect still waits).
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    let client_line = loop {
        if let Ok(l) = rx.try_recv() {
            break l;
        }
        assert!(Instant::now() < deadline, "idle child said nothing");
        pl.turn(server, Some(Duration::from_millis(10)))
            .expect("turn");
        while server.next_event().is_some() {}
    };
    let _ = child.kill();
    let _ = child.wait();
    while server.sessions() > 0 {
        pl.turn(server, Some(Duration::from_millis(100)))
            .expect("turn");
        while server.next_event().is_some() {}
    }
    let mut m = BTreeMap::new();
    m.insert(
        "daemon_rss_bytes_per_idle_session".into(),
        after.saturating_sub(before) * 1024 / n as u64,
    );
    if let Some(v) = client_line
        .trim()
        .strip_prefix("RESULT client_rss_bytes_per_idle_session=")
        .and_then(|v| v.parse().ok())
    {
        m.insert("client_rss_bytes_per_idle_session".into(), v);
    }
    m.insert(
        "segment_bytes_per_session_default".into(),
        ServerConfig::default().default_sizes.segment_len() as u64,
    );
    m
}

/// Resident KiB of this process: private memory and the shared pages it
/// touched (the session segments are shared memory).
fn rss_kib() -> u64 {
    let s = std::fs::read_to_string("/proc/self/smaps_rollup").unwrap_or_default();
    s.lines()
        .find_map(|l| l.strip_prefix("Rss:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

fn idle_child(args: &[String]) {
    let cfg = ClientConfig {
        endpoint: Endpoint::parse(&args[0]),
        ..ClientConfig::default()
    };
    let n: usize = args[1].parse().expect("n");
    let before = rss_kib();
    let clients: Vec<Client> = (0..n)
        .map(|_| Client::connect(&cfg).expect("connect"))
        .collect();
    let after = rss_kib();
    println!(
        "RESULT client_rss_bytes_per_idle_session={}",
        after.saturating_sub(before) * 1024 / n as u64
    );
    let _ = std::io::stdout().flush();
    std::thread::sleep(Duration::from_secs(120));
    drop(clients);
}

// ---------------------------------------------------------- baselines ----

fn raw_fd_pair(kind: &str) -> [RawFd; 2] {
    let mut fds = [0; 2];
    // SAFETY: plain syscalls writing a valid two-element array; no CLOEXEC
    // so the child inherits them.
    unsafe {
        match kind {
            "sock" => {
                assert_eq!(
                    libc::socketpair(libc::AF_UNIX, libc::SOCK_SEQPACKET, 0, fds.as_mut_ptr()),
                    0
                );
            }
            _ => {
                fds[0] = libc::eventfd(0, 0);
                fds[1] = libc::eventfd(0, 0);
                assert!(fds[0] >= 0 && fds[1] >= 0);
            }
        }
    }
    fds
}

/// An epoll set watching `fd` for input.
fn epoll_on(fd: RawFd) -> RawFd {
    // SAFETY: plain syscall.
    let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
    assert!(
        ep >= 0,
        "epoll_create1: {}",
        std::io::Error::last_os_error()
    );
    let mut ev = libc::epoll_event {
        events: libc::EPOLLIN as u32,
        u64: 0,
    };
    // SAFETY: `ep` and `fd` are open; `ev` is a live epoll_event.
    let r = unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) };
    assert!(r == 0, "epoll_ctl: {}", std::io::Error::last_os_error());
    ep
}

/// Waits until the epoll set `ep` reports a ready fd.
fn epoll_wait_one(ep: RawFd) {
    let mut ev = libc::epoll_event { events: 0, u64: 0 };
    loop {
        // SAFETY: room for one event in `ev`.
        let n = unsafe { libc::epoll_wait(ep, &mut ev, 1, -1) };
        if n == 1 {
            return;
        }
        let e = std::io::Error::last_os_error();
        assert!(
            n == 0 || e.kind() == std::io::ErrorKind::Interrupted,
            "epoll_wait: {e}"
        );
    }
}

fn close(fd: RawFd) {
    // SAFETY: closes an fd this process owns and no longer uses.
    unsafe { libc::close(fd) };
}

fn write_u64(fd: RawFd, v: u64) {
    // SAFETY: writes 8 bytes from a valid local.
    let r = unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
    assert_eq!(r, 8);
}

fn read_u64(fd: RawFd) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a valid local.
    let r = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    assert_eq!(r, 8);
    v
}

fn sock_send(fd: RawFd, buf: &[u8]) {
    // SAFETY: sends from a valid buffer.
    let r = unsafe { libc::send(fd, buf.as_ptr().cast(), buf.len(), 0) };
    assert_eq!(r as usize, buf.len());
}

/// Receives one packet; spinning with MSG_DONTWAIT when `busy`.
fn sock_recv(fd: RawFd, buf: &mut [u8], busy: bool) -> usize {
    let flags = if busy { libc::MSG_DONTWAIT } else { 0 };
    loop {
        // SAFETY: receives into a valid buffer.
        let r = unsafe { libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), flags) };
        if r >= 0 {
            return r as usize;
        }
        std::hint::spin_loop();
    }
}

fn socket_parent(plan: &Plan) -> BTreeMap<String, u64> {
    let [mine, theirs] = raw_fd_pair("sock");
    let child = spawn_child(&[
        "sock".into(),
        theirs.to_string(),
        plan.pings_busy.to_string(),
        plan.pings_parked.to_string(),
    ]);
    close(theirs);
    let mut msg = [0u8; 64];
    let mut ack = [0u8; 64];
    for (n, busy) in [(plan.pings_busy, true), (plan.pings_parked, false)] {
        for _ in 0..n + n / 10 {
            msg[..8].copy_from_slice(&monotonic_ns().to_le_bytes());
            sock_send(mine, &msg);
            sock_recv(mine, &mut ack, busy);
        }
    }
    close(mine);
    child_results(child)
}

fn socket_child(args: &[String]) {
    let fd: RawFd = args[0].parse().expect("fd");
    let n_busy: usize = args[1].parse().expect("n");
    let n_parked: usize = args[2].parse().expect("n");
    let mut buf = [0u8; 64];
    let mut out = String::from("RESULT");
    for (n, busy, name) in [(n_busy, true, "busy"), (n_parked, false, "blocking")] {
        let mut lat = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            sock_recv(fd, &mut buf, busy);
            let now = monotonic_ns();
            let ts = u64::from_le_bytes(buf[..8].try_into().expect("8"));
            if i >= n / 10 {
                lat.push(now.saturating_sub(ts));
            }
            sock_send(fd, &[1]);
        }
        let (a, b, c) = percentiles(&mut lat);
        out += &format!(" socket_{name}_one_way_p50_ns={a} socket_{name}_one_way_p99_ns={b} socket_{name}_one_way_p999_ns={c}");
    }
    println!("{out}");
}

fn main() {
    let args: Vec<String> = std::env::args_os()
        .skip(1)
        .map(|a| {
            a.into_string().unwrap_or_else(|a| {
                eprintln!(
                    "ipc-bench: argument {} is not valid UTF-8",
                    a.to_string_lossy()
                );
                std::process::exit(2)
            })
        })
        .collect();
    if args.first().map(String::as_str) == Some("--child") {
        let Some(kind) = args.get(1) else {
            eprintln!("ipc-bench: --child needs a kind (ipc, idle, sock)");
            std::process::exit(2)
        };
        let rest = &args[2..];
        match kind.as_str() {
            "ipc" => ipc_child(rest),
            "idle" => idle_child(rest),
            "sock" => socket_child(rest),
            other => panic!("unknown child role {other}"),
        }
        return;
    }
    if args.iter().any(|a| a == "--help" || a == "-h") {
        println!("usage: ipc-bench [--quick] [--throughput-only]");
        return;
    }
    let quick = args.iter().any(|a| a == "--quick");
    let mut plan = plan(quick);
    // For profiling the throughput path alone (`perf record ipc-bench
    // --throughput-only`): no baselines, a token number of pings.
    let tp_only = args.iter().any(|a| a == "--throughput-only");
    if tp_only {
        plan.pings_busy = 1000;
        plan.pings_parked = 100;
    }
    let endpoint = Endpoint::Abstract(format!("ipc-bench-{}", std::process::id()));
    let start = Instant::now();
    let mut m = BTreeMap::new();
    if !tp_only {
        m.extend(socket_parent(&plan));
    }
    m.extend(ipc_parent(&plan, &endpoint));
    for (k, v) in &m {
        println!("{k} = {v}");
    }
    let get = |k: &str| m.get(k).copied().unwrap_or(0);
    let (a, b) = (
        get("busy_one_way_p50_ns"),
        get("socket_busy_one_way_p50_ns"),
    );
    let (c, d) = (get("parked_one_way_p50_ns"), get("eventfd_parked_p50_ns"));
    let (e, f) = (get("msgs_per_s_64B"), get("socket_msgs_per_s_64B"));
    let d_ep = get("eventfd_epoll_parked_p50_ns");
    let gbps = |size: &str| get(&format!("mb_per_s_{size}")) as f64 / 1000.0;
    println!(
        "throughput GB/s: 64B {:.3}, 1KiB {:.3}, 64KiB {:.3}",
        gbps("64B"),
        gbps("1KiB"),
        gbps("64KiB")
    );
    println!(
        "memory per idle session: daemon {} B resident, client {} B resident, segment {} B \
         mapped (memfd: pages are resident only once touched)",
        get("daemon_rss_bytes_per_idle_session"),
        get("client_rss_bytes_per_idle_session"),
        get("segment_bytes_per_session_default")
    );
    println!(
        "request path: {}",
        if get("light_requests") == 1 {
            "plain stores, the daemon's membarrier before it parks"
        } else {
            "a locked exchange per request (membarrier not offered)"
        }
    );
    println!(
        "parked/eventfd_epoll = {:.2}, eventfd_epoll/eventfd = {:.2} (the share of a multiplexed wait)",
        c as f64 / d_ep.max(1) as f64,
        d_ep as f64 / d.max(1) as f64
    );
    println!(
        "goals: busy/socket_busy = {:.2} (<= 0.4), parked/eventfd = {:.2} (<= 1.1), msgs/socket_msgs = {:.1} (>= 20); {:.1} s",
        a as f64 / b.max(1) as f64,
        c as f64 / d.max(1) as f64,
        e as f64 / f.max(1) as f64,
        start.elapsed().as_secs_f64()
    );
    println!(
        "busy_one_way_p50_ns={a} socket_busy_one_way_p50_ns={b} parked_one_way_p50_ns={c} eventfd_parked_p50_ns={d} msgs_per_s_64B={e} socket_msgs_per_s_64B={f}"
    );
}
