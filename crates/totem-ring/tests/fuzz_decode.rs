//! Fuzz harness on the stable toolchain: arbitrary and mutated datagrams go
//! through the decoder and through a live node; nothing may panic.
//!
//! Quick mode runs with `cargo test`. Long mode:
//! `FUZZ_CASES=10000000 cargo test -p totem-ring --release --test fuzz_decode -- --ignored --nocapture`
//! (inputs are split across the available cores; the count is printed).

use totem_ring::wire::{self, Packet, Token};
use totem_ring::{Config, Guarantee, Instant, RingId, Totem};

mod common;
use common::Gen;

/// Valid packets of every type, to mutate.
fn seeds() -> Vec<Vec<u8>> {
    let ring = RingId { rep: 1, seq: 8 };
    let mut out = Vec::new();
    let mut t = Token::new(2, ring, 5);
    t.target = 1;
    t.rtr_len = 3;
    t.rtr[..3].copy_from_slice(&[1, 2, 3]);
    let packets = vec![
        Packet::Token(Box::new(t)),
        Packet::Join(wire::Join {
            sender: 2,
            ring_seq: 9,
            procs: vec![1, 2, 3],
            fails: vec![3],
        }),
        Packet::Commit(wire::Commit {
            sender: 2,
            ring,
            pass: 1,
            entries: vec![wire::CommitEntry {
                node: 1,
                old_ring: ring,
                aru: 1,
                high: 2,
                safe_line: 0,
            }],
        }),
        Packet::MergeDetect { sender: 2, ring },
        Packet::HoldCancel { sender: 2, ring },
    ];
    for p in packets {
        let mut b = Vec::new();
        wire::encode(&p, &mut b);
        out.push(b);
    }
    let h = wire::McastHeader {
        sender: 2,
        ring,
        seq: 1,
        origin: 2,
        flags: 0,
        prev_own: 0,
        delivered_upto: 0,
    };
    let mut b = Vec::new();
    wire::encode_mcast_header(&h, &mut b);
    b.extend_from_slice(&0u16.to_le_bytes());
    wire::push_message(
        &mut b,
        wire::MCAST_HEADER_LEN,
        wire::FragKind::Whole,
        b"hello",
    );
    wire::push_message(
        &mut b,
        wire::MCAST_HEADER_LEN,
        wire::FragKind::First,
        b"frag",
    );
    out.push(b.clone());
    let mut e = Vec::new();
    let mut eh = h;
    eh.flags = wire::MCAST_ENCAPSULATED;
    wire::encode_mcast_header(&eh, &mut e);
    e.extend_from_slice(&b);
    out.push(e);
    out
}

fn input(g: &mut Gen, seeds: &[Vec<u8>], buf: &mut Vec<u8>) {
    buf.clear();
    if g.below(4) == 0 {
        let n = g.below(200) as usize;
        buf.extend((0..n).map(|_| g.next() as u8));
        return;
    }
    buf.extend_from_slice(&seeds[g.below(seeds.len() as u64) as usize]);
    for _ in 0..=g.below(4) {
        match g.below(4) {
            0 if !buf.is_empty() => {
                let i = g.below(buf.len() as u64) as usize;
                buf[i] = g.next() as u8;
            }
            1 if !buf.is_empty() => {
                let cut = g.below(buf.len() as u64) as usize;
                buf.truncate(cut);
            }
            2 => {
                let n = g.below(16) as usize;
                buf.extend((0..n).map(|_| g.next() as u8));
            }
            _ if buf.len() > 8 => {
                // Keep a valid header so the body decoders get exercised.
                let i = 8 + g.below(buf.len() as u64 - 8) as usize;
                buf[i] ^= 1 << g.below(8);
            }
            _ => {}
        }
    }
}

fn run(cases: u64, seed: u64) -> (u64, bool) {
    let seeds = seeds();
    let mut g = Gen::new(seed);
    let mut buf = Vec::new();
    let cfg = Config {
        token: 200,
        ..Config::default()
    };
    let mut node = Totem::new(1, cfg.clone(), 0, Instant(0)).unwrap();
    let mut errors = 0;
    let mut operational = false;
    for i in 0..cases {
        input(&mut g, &seeds, &mut buf);
        if wire::decode(&buf).is_err() {
            errors += 1;
        }
        let now = Instant(i * 1000);
        node.handle_datagram(now, None, &buf);
        if i % 64 == 0 {
            node.handle_timeout(now);
            let _ = node.submit(b"x", Guarantee::Agreed);
        }
        while node.poll_transmit(now).is_some() {}
        let mut persist = None;
        while let Some(e) = node.poll_event() {
            if let totem_ring::Event::PersistRingSeq(s) = e {
                persist = Some(s);
            }
        }
        if let Some(s) = persist {
            // Acknowledged so the node reaches the operational paths.
            node.handle_persisted(now, s);
        }
        operational |= node.state() == totem_ring::MemberState::Operational;
        if i % 100_000 == 99_999 {
            node = Totem::new(1, cfg.clone(), 0, now).unwrap();
        }
    }
    (errors, operational)
}

#[test]
fn decoder_and_node_survive_garbage() {
    let (errors, operational) = run(200_000, 7);
    assert!(errors > 0, "the fuzz stream must contain invalid packets");
    assert!(operational, "the node must reach the operational paths");
}

#[test]
#[ignore = "long mode: set FUZZ_CASES"]
fn fuzz_long() {
    let n = common::long_mode(|t, n| {
        run(n, 0x5eed + t);
    });
    println!("fuzz_inputs={n}");
}
