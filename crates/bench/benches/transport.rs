//! Criterion benches for the hot functions: sealing and opening frames.

use std::net::SocketAddr;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use transport::crypto::Aead;
use transport::{open_datagram, Cipher, ClusterKey, FrameCodec, NodeId};

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

criterion_group!(benches, seal, open, receive_path);
criterion_main!(benches);
