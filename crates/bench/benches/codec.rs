//! Criterion benches of the Totem wire codec: the token (encoded and
//! decoded once per visit on every node) and multicast frames packed with
//! small messages (built once, validated and iterated on every receiver).

use criterion::{black_box, criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use totem_ring::wire::{
    decode_mcast, decode_token_into, encode_mcast_header, encode_token, push_message, FragKind,
    McastHeader, Messages, Token,
};
use totem_ring::RingId;

const RING: RingId = RingId { rep: 1, seq: 4 };

fn token(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_token");
    for rtr in [0usize, 30] {
        let mut t = Token::new(1, RING, 1000);
        t.backlog = 17;
        t.fcc = 40;
        for k in 0..rtr {
            t.rtr[k] = 900 + k as u32;
        }
        t.rtr_len = rtr as u8;
        let mut buf = Vec::with_capacity(512);
        g.bench_with_input(BenchmarkId::new("encode", rtr), &rtr, |b, _| {
            b.iter(|| {
                buf.clear();
                encode_token(black_box(&t), &mut buf);
                buf.len()
            })
        });
        buf.clear();
        encode_token(&t, &mut buf);
        let mut out = Token::new(0, RING, 0);
        g.bench_with_input(BenchmarkId::new("decode", rtr), &rtr, |b, _| {
            b.iter(|| decode_token_into(black_box(&buf), &mut out).unwrap())
        });
    }
    g.finish();
}

/// One 1400-byte frame holding as many `size`-byte messages as fit.
fn frame(size: usize) -> (Vec<u8>, usize) {
    let h = McastHeader {
        sender: 2,
        ring: RING,
        seq: 77,
        origin: 2,
        flags: 0,
        prev_own: 0,
        delivered_upto: 70,
    };
    let mut out = Vec::with_capacity(1500);
    encode_mcast_header(&h, &mut out);
    let count_at = out.len();
    out.extend_from_slice(&0u16.to_le_bytes());
    let msg = vec![5u8; size];
    let mut n = 0;
    while out.len() + 3 + size <= 1400 || n == 0 {
        push_message(&mut out, count_at, FragKind::Whole, &msg);
        n += 1;
    }
    (out, n)
}

fn mcast(c: &mut Criterion) {
    let mut g = c.benchmark_group("codec_mcast_frame");
    for size in [64usize, 1024] {
        let (f, n) = frame(size);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_with_input(BenchmarkId::new("pack", size), &size, |b, _| {
            let msg = vec![5u8; size];
            let mut out = Vec::with_capacity(1500);
            b.iter(|| {
                out.clear();
                out.extend_from_slice(&f[..f.len() - n * (3 + size) - 2]);
                let at = out.len();
                out.extend_from_slice(&0u16.to_le_bytes());
                for _ in 0..n {
                    push_message(&mut out, at, FragKind::Whole, black_box(&msg));
                }
                out.len()
            })
        });
        g.bench_with_input(BenchmarkId::new("decode_iterate", size), &size, |b, _| {
            b.iter(|| {
                let m = decode_mcast(black_box(&f)).unwrap();
                let mut bytes = 0;
                for x in Messages::new(m.payload).unwrap() {
                    bytes += x.unwrap().1.len();
                }
                bytes
            })
        });
    }
    g.finish();
}

criterion_group!(benches, token, mcast);
criterion_main!(benches);
