#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use transport::{
    Cipher, ClusterKey, CryptoConfig, EngineChoice, NodeId, Transport, TransportConfig,
};

static NEXT: AtomicU32 = AtomicU32::new(1);

/// A loopback address unique to this process and call (127.x.y.z), so
/// tests running in parallel never share a socket.
pub fn unique_lo(port: u16) -> SocketAddr {
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let pid = std::process::id();
    let a = 1 + (pid % 250) as u8;
    let b = (n / 250 % 250) as u8;
    let c = 1 + (n % 250) as u8;
    SocketAddr::from((Ipv4Addr::new(127, a, b, c), port))
}

pub struct Opts {
    pub engine: EngineChoice,
    pub cipher: Cipher,
    pub key: Option<ClusterKey>,
    pub cluster: String,
    pub gso: bool,
    pub gro: bool,
}

impl Opts {
    pub fn new(engine: EngineChoice) -> Self {
        Self {
            engine,
            cipher: Cipher::None,
            key: None,
            cluster: "test".into(),
            gso: true,
            gro: true,
        }
    }
}

pub fn config(id: u32, members: &[(NodeId, SocketAddr)], o: &Opts) -> TransportConfig {
    let bind = members.iter().find(|m| m.0 .0 == id).unwrap().1;
    let mut c = TransportConfig::new(NodeId(id), bind);
    c.members = members.to_vec();
    c.engine = o.engine;
    c.gso = o.gso;
    c.gro = o.gro;
    c.recv_buffers = 64;
    c.rcvbuf = Some(4 << 20);
    c.crypto = CryptoConfig {
        cipher: o.cipher,
        key: o.key.clone(),
        cluster_name: o.cluster.clone(),
    };
    c
}

/// Receives until `want` frames arrived or `limit` passed; returns them.
pub fn collect(t: &mut Transport, want: usize, limit: Duration) -> Vec<(NodeId, Vec<u8>)> {
    let mut out = Vec::new();
    let end = Instant::now() + limit;
    while out.len() < want && Instant::now() < end {
        t.recv(Some(Duration::from_millis(20)), |r| {
            out.push((r.node, r.payload.to_vec()))
        })
        .expect("recv");
    }
    out
}

/// Lets stragglers arrive, so a count of zero means zero.
pub fn settle(t: &mut Transport) -> Vec<(NodeId, Vec<u8>)> {
    collect(t, usize::MAX, Duration::from_millis(300))
}

pub fn engines() -> [EngineChoice; 2] {
    [EngineChoice::IoUring, EngineChoice::Fallback]
}

/// Prints a skip reason past libtest's output capture, so CI logs show it.
pub fn skip(reason: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr().lock(), "SKIP: {reason}");
}

/// io_uring where the kernel offers it; otherwise the test says why and
/// runs the fallback only.
pub fn available(e: EngineChoice) -> bool {
    if e == EngineChoice::IoUring {
        let p = transport::probe_uring();
        if !p.usable() {
            skip(&format!("io_uring engine not tested: {:?}", p.reason));
            return false;
        }
    }
    true
}
