//! Criterion benches for the hot functions (sealing and opening frames)
//! and for the engines: one datagram sent by one `Transport` and received
//! by another on 127.0.0.1, with the io_uring engine and the fallback.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use transport::crypto::Aead;
use transport::{
    open_datagram, Cipher, ClusterKey, Dest, EngineChoice, EngineKind, FrameCodec, NodeId,
    Transport, TransportConfig, TransportError, ENGINE_ENV_VAR,
};

const SIZES: [usize; 4] = [64, 1024, 1400, 8192];

fn seal(c: &mut Criterion) {
    let key = ClusterKey::generate(256).unwrap();
    let mut g = c.benchmark_group("seal_frame");
    for cipher in [Cipher::None, Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        for size in SIZES {
            let mut codec = FrameCodec::new(NodeId(1), cipher, Some(&key), "bench", 9000).unwrap();
            let payload = vec![7u8; size];
            let mut slot = vec![0u8; size + 64];
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(cipher.name(), size), &size, |b, _| {
                b.iter(|| codec.seal_into(&mut slot, &payload).unwrap())
            });
        }
    }
    g.finish();
}

fn open(c: &mut Criterion) {
    let key = ClusterKey::generate(256).unwrap();
    let mut g = c.benchmark_group("open_aead");
    for cipher in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        let aead = Aead::new(cipher, Some(&key), "bench").unwrap();
        for size in SIZES {
            let mut sealed = vec![9u8; size + 16];
            let (p, t) = sealed.split_at_mut(size);
            aead.seal([1; 12], b"h", p, t).unwrap();
            let mut work = sealed.clone();
            g.throughput(Throughput::Bytes(size as u64));
            g.bench_with_input(BenchmarkId::new(cipher.name(), size), &size, |b, _| {
                b.iter(|| {
                    work.copy_from_slice(&sealed);
                    aead.open([1; 12], b"h", &mut work).unwrap()
                })
            });
        }
    }
    g.finish();
}

fn receive_path(c: &mut Criterion) {
    let from: SocketAddr = "127.0.0.1:5405".parse().unwrap();
    let mut tx = FrameCodec::new(NodeId(1), Cipher::None, None, "bench", 9000).unwrap();
    let mut rx = FrameCodec::new(NodeId(2), Cipher::None, None, "bench", 9000).unwrap();
    let mut g = c.benchmark_group("open_datagram_plain_gro64");
    // 64 frames of 1400 B coalesced as GRO would deliver them.
    let mut slot = vec![0u8; 1500];
    let n = tx.seal_into(&mut slot, &[3u8; 1400]).unwrap();
    let mut sup: Vec<u8> = Vec::new();
    for _ in 0..46 {
        sup.extend_from_slice(&slot[..n]);
    }
    g.throughput(Throughput::Elements(46));
    g.bench_function("1400x46", |b| {
        b.iter(|| open_datagram(&mut rx, from, &mut sup, Some(n as u16), &mut |_| {}))
    });
    g.finish();
}

/// Two free UDP ports on 127.0.0.1: both sockets are held until both
/// ports are known, so the two differ.
fn two_free_ports() -> std::io::Result<(SocketAddr, SocketAddr)> {
    let a = UdpSocket::bind("127.0.0.1:0")?;
    let b = UdpSocket::bind("127.0.0.1:0")?;
    Ok((a.local_addr()?, b.local_addr()?))
}

/// Node 1 (the sender) and node 2 (the receiver) on loopback, udpu, the
/// transport's defaults (GSO/GRO where the kernel has them) with `engine`.
fn loopback_pair(engine: EngineChoice) -> Result<(Transport, Transport), TransportError> {
    let (a, b) = two_free_ports()
        .map_err(|e| TransportError::Config(format!("no free port on 127.0.0.1: {e}")))?;
    let cfg = |id: u32, me: SocketAddr| {
        let mut c = TransportConfig::new(NodeId(id), me);
        c.members = vec![(NodeId(1), a), (NodeId(2), b)];
        c.engine = engine;
        c
    };
    Ok((Transport::new(cfg(1, a))?, Transport::new(cfg(2, b))?))
}

/// How long the receiver waits for the one datagram before the bench
/// calls it lost (loopback does not drop one datagram in flight).
const LOST_AFTER: Duration = Duration::from_secs(2);

/// Sends `msg` from `tx` and waits until `rx` has received it.
fn one_datagram(tx: &mut Transport, rx: &mut Transport, msg: &[(Dest, &[u8])]) {
    let sent = tx.send_batch(msg).expect("send_batch on 127.0.0.1");
    assert_eq!(sent.datagrams, 1, "send_batch: {sent:?}");
    let mut waiting_since = None;
    loop {
        let got = rx
            .recv(Some(LOST_AFTER), |r| {
                std::hint::black_box(&r.payload);
            })
            .expect("recv on 127.0.0.1");
        if got > 0 {
            assert_eq!(got, 1, "received {got} frames for one datagram");
            return;
        }
        // Woken without a frame (a completion that carried none): wait on,
        // up to LOST_AFTER in all.
        let t0 = *waiting_since.get_or_insert_with(Instant::now);
        if t0.elapsed() >= LOST_AFTER {
            panic!(
                "no datagram within {LOST_AFTER:?} on 127.0.0.1: {:?}",
                rx.stats()
            );
        }
    }
}

/// The engines that open on this machine, each with its pair, named by
/// what actually runs; the io_uring engine's absence is printed, not an
/// error.
fn engines() -> Vec<(&'static str, Transport, Transport)> {
    let mut out = Vec::new();
    for (choice, wanted) in [
        (EngineChoice::IoUring, "io_uring"),
        (EngineChoice::Fallback, "fallback"),
    ] {
        match loopback_pair(choice) {
            Ok((tx, rx)) => {
                let name = match tx.status().engine {
                    EngineKind::IoUring => "io_uring",
                    EngineKind::Fallback => "fallback",
                };
                if name == wanted {
                    out.push((name, tx, rx));
                } else {
                    eprintln!(
                        "transport bench: {wanted} engine not benched: {ENGINE_ENV_VAR} \
                         turns it into {name}"
                    );
                }
            }
            Err(e) if choice == EngineChoice::IoUring => eprintln!(
                "transport bench: io_uring engine unavailable ({e}); benching the fallback only"
            ),
            Err(e) => panic!("the fallback engine did not open on 127.0.0.1: {e}"),
        }
    }
    for (name, tx, _) in &out {
        let st = tx.status();
        eprintln!(
            "transport bench: engine {name} runs (gso {}, gro {})",
            st.gso, st.gro
        );
    }
    out
}

fn engine_one_datagram(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine_one_datagram_loopback");
    for (name, mut tx, mut rx) in engines() {
        for size in [64usize, 1400] {
            let payload = vec![0x5au8; size];
            let msg = [(Dest::Node(NodeId(2)), payload.as_slice())];
            g.throughput(Throughput::Elements(1));
            g.bench_with_input(BenchmarkId::new(name, size), &size, |b, _| {
                b.iter(|| one_datagram(&mut tx, &mut rx, &msg))
            });
        }
    }
    g.finish();
}

criterion_group!(benches, seal, open, receive_path, engine_one_datagram);
criterion_main!(benches);
