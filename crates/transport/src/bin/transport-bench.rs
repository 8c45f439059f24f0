//! `transport-bench`: one-way UDP throughput of each engine against a raw
//! sendmmsg/recvmmsg baseline (batches of 64, same buffers and pinning,
//! measured in the same run), on loopback and on veth pairs between
//! namespaces (root only), plus AEAD throughput per cipher.
//!
//! `--quick` finishes in well under a minute and ends with
//! `min_ratio=R baseline_pps_64B=B aes256gcm_8k_GBps=G`.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use clap::Parser;
use socket2::{Domain, Protocol, SockAddr, Socket, Type};
use transport::{
    Cipher, ClusterKey, Dest, EngineChoice, FrameCodec, NodeId, Transport, TransportConfig,
};

#[derive(Parser, Debug)]
#[command(about = "UDP transport throughput: engines vs a sendmmsg/recvmmsg baseline")]
struct Args {
    /// Short windows; finishes in under 60 s.
    #[arg(long)]
    quick: bool,
    /// Measurement window per cell in ms (default 1500, quick 350).
    #[arg(long)]
    window_ms: Option<u64>,
    /// Skip the veth (namespace) paths even when root.
    #[arg(long)]
    no_netns: bool,
    /// Skip the transport paths; crypto only.
    #[arg(long)]
    crypto_only: bool,
}

const BATCH: usize = 64;
const RCVBUF: usize = 16 << 20;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Variant {
    Baseline,
    Fallback,
    Uring,
    UringGso,
    FallbackGso,
    UringZc,
}

impl Variant {
    fn name(self) -> &'static str {
        match self {
            Variant::Baseline => "baseline sendmmsg/recvmmsg x64",
            Variant::Fallback => "fallback (sendmmsg/recvmmsg)",
            Variant::Uring => "io_uring SendMsg / multishot",
            Variant::UringGso => "io_uring + GSO/GRO (default)",
            Variant::FallbackGso => "fallback + GSO/GRO",
            Variant::UringZc => "io_uring SENDMSG_ZC / multishot",
        }
    }
}

const VARIANTS: [Variant; 6] = [
    Variant::Baseline,
    Variant::Fallback,
    Variant::Uring,
    Variant::UringGso,
    Variant::FallbackGso,
    Variant::UringZc,
];

struct Path {
    name: String,
    mtu: usize,
    /// (sender ns, receiver ns) or loopback.
    ns: Option<(String, String)>,
    tx: SocketAddr,
    rx: SocketAddr,
    sizes: Vec<usize>,
    informational: Vec<usize>,
}

struct Cell {
    rx_pps: f64,
    gbps: f64,
    cpu_pct: f64,
    drops_pct: f64,
}

fn pin(core: usize) {
    if let Some(ids) = core_affinity::get_core_ids() {
        if ids.len() >= 2 {
            core_affinity::set_for_current(ids[core % ids.len()]);
        }
    }
}

fn thread_cpu() -> Duration {
    // SAFETY: all-zero is a valid rusage; getrusage fills it.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a live rusage for the kernel to fill.
    unsafe { libc::getrusage(libc::RUSAGE_THREAD, &mut ru) };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn enter_ns(ns: &Option<String>) {
    if let Some(ns) = ns {
        let f = std::fs::File::open(format!("/run/netns/{ns}")).expect("open netns");
        // SAFETY: `f` is an open namespace fd; only this thread moves.
        let rc = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(rc, 0, "setns: {}", std::io::Error::last_os_error());
    }
}

fn transport_cfg(
    v: Variant,
    id: u32,
    me: SocketAddr,
    peer: SocketAddr,
    size: usize,
) -> TransportConfig {
    let mut c = TransportConfig::new(NodeId(id), me);
    c.members = if id == 1 {
        vec![(NodeId(1), me), (NodeId(2), peer)]
    } else {
        vec![(NodeId(1), peer), (NodeId(2), me)]
    };
    c.max_frame = size.max(1024);
    c.send_batch = BATCH;
    c.rcvbuf = Some(RCVBUF);
    let gso = matches!(v, Variant::UringGso | Variant::FallbackGso);
    c.gso = gso;
    c.gro = gso;
    c.recv_buffers = if gso { 64 } else { 512 };
    c.recv_buffer_size = if gso {
        65_536 + 256
    } else {
        (size + 256).max(512)
    };
    c.send_zc = v == Variant::UringZc;
    c.engine = match v {
        Variant::Fallback | Variant::FallbackGso => EngineChoice::Fallback,
        _ => EngineChoice::IoUring,
    };
    c
}

fn raw_socket(addr: SocketAddr) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_recv_buffer_size(RCVBUF).unwrap();
    s.set_send_buffer_size(4 << 20).unwrap();
    s.bind(&SockAddr::from(addr)).unwrap();
    s
}

/// The baseline sender: sendmmsg of 64 datagrams per call.
fn baseline_send(s: &Socket, to: SocketAddr, size: usize, stop: &AtomicBool, sent: &AtomicU64) {
    let dst = SockAddr::from(to);
    let mut buf = vec![0x5au8; size];
    let mut iov = libc::iovec {
        iov_base: buf.as_mut_ptr().cast(),
        iov_len: size,
    };
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for h in hdrs.iter_mut() {
        h.msg_hdr.msg_name = dst.as_ptr() as *mut libc::c_void;
        h.msg_hdr.msg_namelen = dst.len();
        h.msg_hdr.msg_iov = &mut iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: headers point at `dst`, `iov` and `buf`, alive here.
        let n = unsafe { libc::sendmmsg(s.as_raw_fd(), hdrs.as_mut_ptr(), BATCH as u32, 0) };
        if n > 0 {
            sent.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

/// The baseline receiver: recvmmsg of up to 64 datagrams per call.
fn baseline_recv(s: &Socket, size: usize, stop: &AtomicBool, got: &AtomicU64) {
    s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
    let mut bufs = vec![0u8; BATCH * (size + 64)];
    let mut iovs: Vec<libc::iovec> = (0..BATCH)
        .map(|i| libc::iovec {
            // SAFETY: i < BATCH, inside `bufs`.
            iov_base: unsafe { bufs.as_mut_ptr().add(i * (size + 64)) }.cast(),
            iov_len: size + 64,
        })
        .collect();
    // SAFETY: all-zero is a valid mmsghdr.
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { std::mem::zeroed() }; BATCH];
    for (h, iov) in hdrs.iter_mut().zip(iovs.iter_mut()) {
        h.msg_hdr.msg_iov = iov;
        h.msg_hdr.msg_iovlen = 1;
    }
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: headers point at iovecs into `bufs`, alive here.
        let n = unsafe {
            libc::recvmmsg(
                s.as_raw_fd(),
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n > 0 {
            got.fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

fn measure(path: &Path, v: Variant, size: usize, warm: Duration, window: Duration) -> Cell {
    let stop = Arc::new(AtomicBool::new(false));
    let sent = Arc::new(AtomicU64::new(0));
    let got = Arc::new(AtomicU64::new(0));
    let ready = Arc::new(Barrier::new(3));
    let (tx_ns, rx_ns) = match &path.ns {
        Some((a, b)) => (Some(a.clone()), Some(b.clone())),
        None => (None, None),
    };
    let (txa, rxa) = (path.tx, path.rx);
    let rx = {
        let (stop, got, ready) = (stop.clone(), got.clone(), ready.clone());
        thread::spawn(move || {
            enter_ns(&rx_ns);
            pin(1);
            let c0 = thread_cpu();
            if v == Variant::Baseline {
                let s = raw_socket(rxa);
                ready.wait();
                baseline_recv(&s, size, &stop, &got);
            } else {
                let t = Transport::new(transport_cfg(v, 2, rxa, txa, size));
                ready.wait();
                let mut t = match t {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("receiver set-up failed: {e}");
                        return thread_cpu() - c0;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(n) = t.recv(Some(Duration::from_millis(20)), |_| {}) else {
                        break;
                    };
                    got.fetch_add(n as u64, Ordering::Relaxed);
                }
            }
            thread_cpu() - c0
        })
    };
    let tx = {
        let (stop, sent, ready) = (stop.clone(), sent.clone(), ready.clone());
        thread::spawn(move || {
            enter_ns(&tx_ns);
            pin(0);
            let c0 = thread_cpu();
            if v == Variant::Baseline {
                let s = raw_socket(txa);
                ready.wait();
                baseline_send(&s, rxa, size, &stop, &sent);
            } else {
                let t = Transport::new(transport_cfg(v, 1, txa, rxa, size));
                let payload = vec![0x5au8; size];
                let msgs: Vec<(Dest, &[u8])> = (0..BATCH)
                    .map(|_| (Dest::Node(NodeId(2)), payload.as_slice()))
                    .collect();
                ready.wait();
                let mut t = match t {
                    Ok(t) => t,
                    Err(e) => {
                        eprintln!("sender set-up failed: {e}");
                        return thread_cpu() - c0;
                    }
                };
                while !stop.load(Ordering::Relaxed) {
                    let Ok(r) = t.send_batch(&msgs) else { break };
                    sent.fetch_add(r.datagrams as u64, Ordering::Relaxed);
                }
            }
            thread_cpu() - c0
        })
    };
    ready.wait();
    let t_start = Instant::now();
    thread::sleep(warm);
    let (g0, s0, t0) = (
        got.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    thread::sleep(window);
    let (g1, s1, t1) = (
        got.load(Ordering::Relaxed),
        sent.load(Ordering::Relaxed),
        Instant::now(),
    );
    stop.store(true, Ordering::Relaxed);
    let cpu = tx.join().expect("sender thread") + rx.join().expect("receiver thread");
    let wall = t_start.elapsed().as_secs_f64();
    let secs = (t1 - t0).as_secs_f64();
    let rx_pps = (g1 - g0) as f64 / secs;
    let tx_pps = (s1 - s0) as f64 / secs;
    Cell {
        rx_pps,
        gbps: rx_pps * size as f64 * 8.0 / 1e9,
        cpu_pct: 100.0 * cpu.as_secs_f64() / wall,
        drops_pct: if tx_pps > 0.0 {
            (100.0 * (tx_pps - rx_pps) / tx_pps).max(0.0)
        } else {
            0.0
        },
    }
}

fn ip(args: &[&str]) -> Result<(), String> {
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| e.to_string())?;
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

/// Two namespaces joined by a veth pair; deleted on drop.
struct VethPair(String, String);

impl VethPair {
    /// Removes namespaces left by a bench run that was killed.
    fn remove_stale() {
        let Ok(out) = Command::new("ip").args(["netns", "list"]).output() else {
            return;
        };
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            let name = line.split_whitespace().next().unwrap_or("");
            let Some(rest) = name.strip_prefix("crsbench-") else {
                continue;
            };
            let pid = rest.split('-').next().unwrap_or("");
            if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
                let _ = ip(&["netns", "del", name]);
            }
        }
    }

    fn new(mtu: usize) -> Result<Self, String> {
        let base = format!("crsbench-{}-{mtu}", std::process::id());
        let me = VethPair(format!("{base}-a"), format!("{base}-b"));
        for n in [&me.0, &me.1] {
            ip(&["netns", "add", n])?;
            ip(&["-n", n, "link", "set", "lo", "up"])?;
        }
        ip(&[
            "-n", &me.0, "link", "add", "v0", "type", "veth", "peer", "name", "v1", "netns", &me.1,
        ])?;
        for (n, dev, a) in [(&me.0, "v0", "10.79.0.1/24"), (&me.1, "v1", "10.79.0.2/24")] {
            ip(&["-n", n, "addr", "add", a, "dev", dev])?;
            ip(&["-n", n, "link", "set", dev, "mtu", &mtu.to_string(), "up"])?;
        }
        Ok(me)
    }
}

impl Drop for VethPair {
    fn drop(&mut self) {
        let _ = ip(&["netns", "del", &self.0]);
        let _ = ip(&["netns", "del", &self.1]);
    }
}

fn crypto_gbps(c: Cipher, size: usize, window: Duration) -> (f64, f64) {
    let key = ClusterKey::generate(256).expect("key");
    let mut tx = FrameCodec::new(NodeId(1), c, Some(&key), "bench", size).expect("codec");
    let payload = vec![0x33u8; size];
    let mut slot = vec![0u8; size + 64];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < window {
        for _ in 0..64 {
            std::hint::black_box(tx.seal_into(&mut slot, &payload).expect("seal"));
        }
        n += 64;
    }
    let seal = n as f64 * size as f64 / t0.elapsed().as_secs_f64() / 1e9;
    // Open: the same sealed frame, replay guard bypassed by fresh codecs
    // would cost more than the AEAD; measure the AEAD directly instead.
    let aead = transport::crypto::Aead::new(c, Some(&key), "bench").expect("aead");
    let mut ct = payload.clone();
    let mut tag = [0u8; 16];
    aead.seal([7u8; 12], b"hdr", &mut ct, &mut tag)
        .expect("seal");
    let mut sealed = ct.clone();
    sealed.extend_from_slice(&tag);
    // The working copy sits at a 64-byte aligned offset away from a 4 KiB
    // multiple of `sealed` (4K aliasing between the copy's source and
    // destination otherwise skews the figure).
    let mut backing = vec![0u8; sealed.len() + 4096 + 128];
    let off = 64 + (64 - backing.as_ptr() as usize % 64) % 64 + 1024;
    let work = &mut backing[off..off + sealed.len()];
    let t0 = Instant::now();
    let mut n = 0u64;
    while t0.elapsed() < window {
        for _ in 0..64 {
            work.copy_from_slice(&sealed);
            std::hint::black_box(aead.open([7u8; 12], b"hdr", work).expect("open"));
        }
        n += 64;
    }
    let open = n as f64 * size as f64 / t0.elapsed().as_secs_f64() / 1e9;
    (seal, open)
}

fn main() {
    let args = Args::parse();
    let started = Instant::now();
    let window =
        Duration::from_millis(
            args.window_ms
                .unwrap_or(if args.quick { 350 } else { 1500 }),
        );
    let warm = if args.quick {
        Duration::from_millis(150)
    } else {
        Duration::from_millis(300)
    };
    let cores = core_affinity::get_core_ids().map_or(1, |c| c.len());
    let probe = transport::probe_uring();
    println!(
        "transport-bench: {} cores, window {} ms, io_uring usable: {}{}",
        cores,
        window.as_millis(),
        probe.usable(),
        probe
            .reason
            .as_deref()
            .map(|r| format!(" ({r})"))
            .unwrap_or_default()
    );

    let mut min_ratio = f64::INFINITY;
    let mut baseline_64 = 0.0;
    if !args.crypto_only {
        let mut paths = vec![Path {
            name: "loopback".into(),
            mtu: 65_536,
            ns: None,
            tx: SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 47_001)),
            rx: SocketAddr::from((Ipv4Addr::new(127, 0, 0, 1), 47_002)),
            sizes: vec![64, 1024, 1400, 8192],
            informational: vec![65_000],
        }];
        let mut guards = Vec::new();
        // SAFETY: geteuid has no preconditions.
        let root = unsafe { libc::geteuid() } == 0;
        if args.no_netns {
            println!("veth paths skipped (--no-netns)");
        } else if !root {
            println!("veth paths skipped: not root (namespaces need root)");
        } else {
            VethPair::remove_stale();
            for (mtu, sizes) in [(1500usize, vec![64, 1024, 1400]), (9000, vec![8192])] {
                match VethPair::new(mtu) {
                    Ok(v) => {
                        paths.push(Path {
                            name: "veth".into(),
                            mtu,
                            ns: Some((v.0.clone(), v.1.clone())),
                            tx: SocketAddr::from((Ipv4Addr::new(10, 79, 0, 1), 47_001)),
                            rx: SocketAddr::from((Ipv4Addr::new(10, 79, 0, 2), 47_001)),
                            sizes,
                            informational: vec![],
                        });
                        guards.push(v);
                    }
                    Err(e) => println!("veth MTU {mtu} skipped: {e}"),
                }
            }
        }
        let variants: Vec<Variant> = VARIANTS
            .iter()
            .copied()
            .filter(|v| {
                probe.usable()
                    || !matches!(v, Variant::Uring | Variant::UringGso | Variant::UringZc)
            })
            .collect();
        let default = if probe.usable() {
            Variant::UringGso
        } else {
            Variant::FallbackGso
        };
        println!();
        println!("| path | MTU | payload B | engine | rx Mpps | rx Gbit/s | CPU % (tx+rx) | tx-rx gap % | ratio to baseline |");
        println!("|---|---|---|---|---|---|---|---|---|");
        for p in &paths {
            let all: Vec<(usize, bool)> = p
                .sizes
                .iter()
                .map(|&s| (s, false))
                .chain(p.informational.iter().map(|&s| (s, true)))
                .collect();
            for (size, info) in all {
                let mut base = 0.0;
                for &v in &variants {
                    let c = measure(p, v, size, warm, window);
                    if v == Variant::Baseline {
                        base = c.rx_pps;
                        if size == 64 && p.ns.is_none() {
                            baseline_64 = c.rx_pps;
                        }
                    }
                    let ratio = if base > 0.0 { c.rx_pps / base } else { 0.0 };
                    if v == default && !info {
                        min_ratio = min_ratio.min(ratio);
                    }
                    println!(
                        "| {} | {} | {}{} | {} | {:.3} | {:.2} | {:.0} | {:.1} | {:.2}x |",
                        p.name,
                        p.mtu,
                        size,
                        if info { " (info)" } else { "" },
                        v.name(),
                        c.rx_pps / 1e6,
                        c.gbps,
                        c.cpu_pct,
                        c.drops_pct,
                        ratio
                    );
                }
            }
        }
        drop(guards);
    }

    println!();
    println!("| cipher | payload B | seal GB/s (1 core) | open GB/s (1 core) |");
    println!("|---|---|---|---|");
    let cw = if args.quick {
        Duration::from_millis(120)
    } else {
        Duration::from_millis(500)
    };
    let mut aes_8k = 0.0;
    for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        for size in [64usize, 1024, 1400, 8192] {
            let (seal, open) = crypto_gbps(c, size, cw);
            if c == Cipher::Aes256Gcm && size == 8192 {
                aes_8k = seal;
            }
            println!("| {} | {} | {:.2} | {:.2} |", c.name(), size, seal, open);
        }
    }
    println!();
    println!("total time {:.1} s", started.elapsed().as_secs_f64());
    if !min_ratio.is_finite() {
        min_ratio = 0.0;
    }
    println!(
        "min_ratio={:.2} baseline_pps_64B={:.0} aes256gcm_8k_GBps={:.2}",
        min_ratio, baseline_64, aes_8k
    );
}
