//! Fuzz harness on the stable toolchain for every decoder the daemon applies
//! to client bytes: the set-up hello, ring indices (request ring producer
//! index, response/event ring consumer indices), chunk headers, and the
//! whole request-ring reader over random ring contents. Nothing may panic,
//! and what a decoder accepts must stay within bounds.
//!
//! Quick mode runs with `cargo test`. Long mode:
//! `FUZZ_CASES=10000000 cargo test -p ipc-shm --release --test fuzz_decode -- --ignored --nocapture`
//! (inputs are split across the available cores; the count is printed).

use std::sync::atomic::{AtomicU64, Ordering};

use ipc_shm::proto;
use ipc_shm::ring::{
    self, check_head, check_used, decode_chunk, encode_chunk_header, max_payload, Chunk,
    FrameHeader,
};
use ipc_shm::RingSizes;

use rand::{RngCore, SeedableRng};

struct Gen(rand_chacha::ChaCha8Rng);

impl Gen {
    fn new(seed: u64) -> Gen {
        Gen(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }
    fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
    /// Mostly small or boundary values, sometimes anything.
    fn index(&mut self, near: u64) -> u64 {
        match self.below(4) {
            0 => self.next(),
            1 => near.wrapping_add(self.below(64) * 16),
            2 => near.wrapping_sub(self.below(64)),
            _ => near.wrapping_add(self.below(1 << 16)),
        }
    }
}

fn one_hello(g: &mut Gen) {
    let mut b = proto::encode_hello(&proto::Hello {
        version: proto::PROTOCOL_VERSION,
        sizes: RingSizes {
            request: g.next() as u32,
            response: g.next() as u32,
            event: g.next() as u32,
        },
    })
    .to_vec();
    for _ in 0..g.below(4) {
        let i = g.below(b.len() as u64) as usize;
        b[i] = g.next() as u8;
    }
    if g.below(8) == 0 {
        b.truncate(g.below(40) as usize);
    }
    if g.below(8) == 0 {
        b = (0..g.below(40)).map(|_| g.next() as u8).collect();
    }
    if let Ok(h) = proto::decode_hello(&b) {
        assert_eq!(proto::encode_hello(&h).as_slice(), b.as_slice());
    }
}

fn one_chunk(g: &mut Gen) {
    let cap = 4096u64 << g.below(8);
    let max = max_payload(cap as u32);
    let pos = g.below(cap / 16) * 16;
    let used = if g.below(2) == 0 {
        g.below(cap + 1)
    } else {
        g.below(cap / 16 + 1) * 16
    };
    let len = match g.below(4) {
        0 => g.next() as u32,
        1 => ring::PAD,
        2 => g.below(max as u64 + 64) as u32,
        _ => g.below(64) as u32,
    };
    let h = FrameHeader {
        service: g.next() as u16,
        kind: g.next() as u16,
        request_id: g.next(),
    };
    let raw = encode_chunk_header(len, &h);
    match decode_chunk(raw, pos, used, cap, max) {
        Ok(Chunk::Pad { skip }) => assert!(pos > 0 && pos + skip == cap && skip <= used),
        Ok(Chunk::Frame { header, len, total }) => {
            assert_eq!(header, h);
            assert!(len <= max && total <= used && pos + total <= cap);
        }
        Err(_) => {}
    }
    let head = g.next();
    let tail = g.index(head);
    if let Ok(used) = check_used(head, tail, cap) {
        assert!(used <= cap && used % 16 == 0);
    }
    let seen = g.next();
    let t = g.index(seen);
    let new = g.index(seen);
    if check_head(seen, new, t).is_ok() {
        assert!(new.wrapping_sub(seen) <= t.wrapping_sub(seen));
    }
}

/// The daemon's reader over random ring contents: random bytes, or honest
/// frames with some bytes flipped.
fn one_ring(g: &mut Gen, buf: &mut [u8]) {
    if g.below(2) == 0 {
        for w in buf.chunks_mut(8) {
            w.copy_from_slice(&g.next().to_le_bytes());
        }
    } else {
        buf.fill(0);
        let mut pos = 0usize;
        while pos + 16 <= buf.len() {
            let len = g.below(200) as u32;
            let total = ring::chunk_size(len) as usize;
            if pos + total > buf.len() {
                buf[pos..pos + 16]
                    .copy_from_slice(&encode_chunk_header(ring::PAD, &FrameHeader::default()));
                break;
            }
            buf[pos..pos + 16].copy_from_slice(&encode_chunk_header(len, &FrameHeader::default()));
            pos += total;
        }
        for _ in 0..g.below(6) {
            let i = g.below(buf.len() as u64) as usize;
            buf[i] = g.next() as u8;
        }
    }
    let head = g.next() & !15;
    let head = if g.below(2) == 0 {
        head
    } else {
        head | g.below(16)
    };
    let tail = g.index(head);
    let _ = ring::fuzz_consume(buf, head, tail);
}

fn run(cases: u64, seed: u64) {
    let mut g = Gen::new(seed);
    let mut buf = vec![0u8; 4096];
    for i in 0..cases {
        match i % 8 {
            0..=2 => one_hello(&mut g),
            3..=6 => one_chunk(&mut g),
            _ => one_ring(&mut g, &mut buf),
        }
    }
}

#[test]
fn fuzz_quick() {
    run(200_000, 1);
}

#[test]
#[ignore = "long mode: FUZZ_CASES=10000000"]
fn fuzz_long() {
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get()) as u64;
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let done = &done;
            s.spawn(move || {
                let n = cases / threads + u64::from(t < cases % threads);
                run(n, 0xF00D + t);
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    println!(
        "fuzz_decode: {} inputs, no panic",
        done.load(Ordering::Relaxed)
    );
}
