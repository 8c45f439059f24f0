//! A ring member that sends nonsense inside well-formed frames: message
//! sections whose fragment kinds come in any order (a last piece with no
//! first, a whole message in the middle of a fragmented one, pieces that
//! add up past the largest message), of any length, on the current ring,
//! at sequence numbers in and around the window, mixed with the real
//! traffic of a two-node ring. The receiving node delivers whatever it can
//! make of them, by copy and by reference into its store, with its events
//! polled at once or held for a while; it must never panic, and every
//! delivery it makes must be readable.
//!
//! Quick mode runs with `cargo test`. Long mode:
//! `FUZZ_CASES=10000000 cargo test -p totem-ring --release --test fuzz_fragments -- --ignored --nocapture`
//! (frames split across the available cores; the count is printed).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use totem_ring::wire::{self, FragKind, McastHeader, Packet};
use totem_ring::{Config, Event, Guarantee, Instant, MemberState, NodeId, Totem};

mod common;
use common::Gen;

/// Two nodes over a lossless in-memory network; node 1 is the one the
/// hostile frames go to.
struct Pair {
    nodes: [Totem; 2],
    now: Instant,
    inflight: VecDeque<(NodeId, Vec<u8>)>,
    /// The highest frame seq seen on the wire (tokens and frames).
    high: u32,
    /// Seqs skipped by frames sent ahead, to be sent later.
    gaps: Vec<u32>,
    /// The last hostile message section ended inside a fragmented message.
    in_frag: bool,
    /// Node 1 leaves its events in the queue while set.
    hold: bool,
    delivered: u64,
    parts: u64,
    cfg: Config,
}

impl Pair {
    fn new(cfg: Config) -> Pair {
        let now = Instant(1_000_000_000);
        Pair {
            nodes: [1, 2].map(|i| Totem::new(i, cfg.clone(), 0, now).unwrap()),
            now,
            inflight: VecDeque::new(),
            high: 0,
            gaps: Vec::new(),
            in_frag: false,
            hold: false,
            delivered: 0,
            parts: 0,
            cfg,
        }
    }

    fn drain(&mut self, i: usize) {
        let now = self.now;
        let t = &mut self.nodes[i];
        let (id, ring) = (t.id(), t.ring_id());
        // Each node hears every datagram of the other (the unicast token
        // too: there is no third node).
        while let Some(tx) = t.poll_transmit(now) {
            match wire::decode(tx.bytes) {
                Ok(Packet::Token(tok)) if tok.ring == ring => advance(&mut self.high, tok.seq),
                Ok(Packet::Mcast(m)) if m.header.ring == ring => {
                    advance(&mut self.high, m.header.seq)
                }
                _ => {}
            }
            self.inflight.push_back((id, tx.bytes.to_vec()));
        }
        if i == 0 && self.hold {
            return;
        }
        let mut persisted = None;
        while let Some(e) = t.poll_event() {
            match e {
                Event::Deliver { payload, .. } => {
                    assert!(payload.len() <= self.cfg.max_message_size as usize);
                    self.delivered += u64::from(i == 0);
                }
                Event::DeliverParts { parts, .. } => {
                    // Every piece is read: a reference to a released frame
                    // would stop the node here.
                    let n: usize = parts.iter().map(|p| p.len()).sum();
                    assert_eq!(n, parts.len());
                    assert!(n <= self.cfg.max_message_size as usize);
                    self.delivered += u64::from(i == 0);
                    self.parts += u64::from(i == 0);
                }
                Event::PersistRingSeq(s) => persisted = Some(s),
                _ => {}
            }
        }
        if let Some(s) = persisted {
            t.handle_persisted(now, s);
        }
    }

    /// One step: every node's output and events, then one datagram, or
    /// the time moved on to the next timer.
    fn step(&mut self) {
        self.drain(0);
        self.drain(1);
        if let Some((from, bytes)) = self.inflight.pop_front() {
            let to = if from == 1 { 1 } else { 0 };
            let now = self.now;
            self.nodes[to].handle_datagram(now, Some(from), &bytes);
            return;
        }
        let next = self.nodes.iter().filter_map(|t| t.poll_timeout()).min();
        if let Some(at) = next {
            self.now = self.now.max(at);
            let now = self.now;
            for t in &mut self.nodes {
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
        }
    }

    fn formed(&self) -> bool {
        self.nodes
            .iter()
            .all(|t| t.state() == MemberState::Operational && t.members() == [1, 2])
    }
}

/// Moves `high` forward to `seq` (sequence numbers wrap).
fn advance(high: &mut u32, seq: u32) {
    if (seq.wrapping_sub(*high) as i32) > 0 {
        *high = seq;
    }
}

/// A well-formed frame from node 2 on node 1's current ring whose message
/// section is nonsense.
fn hostile_frame(g: &mut Gen, p: &mut Pair, out: &mut Vec<u8>) {
    let max_payload = p.cfg.max_payload();
    // Mostly the next seq; sometimes one behind (a duplicate, or out of
    // the window), sometimes one ahead, whose gap is filled later (or the
    // node could deliver nothing more).
    let seq = match g.below(16) {
        0 => p.high.wrapping_sub(g.below(40) as u32),
        1 => {
            let ahead = 2 + g.below(3) as u32;
            p.gaps.extend((1..ahead).map(|k| p.high.wrapping_add(k)));
            p.high.wrapping_add(ahead)
        }
        2..=9 if !p.gaps.is_empty() => {
            let i = g.below(p.gaps.len() as u64) as usize;
            p.gaps.swap_remove(i)
        }
        _ => p.high.wrapping_add(1),
    };
    let mut flags = 0;
    if g.below(16) == 0 {
        flags |= wire::MCAST_SAFE;
    }
    if g.below(2) == 0 {
        flags |= wire::MCAST_HAS_PREV;
    }
    let h = McastHeader {
        sender: 2,
        ring: p.nodes[0].ring_id(),
        seq,
        origin: 2,
        flags,
        prev_own: seq.wrapping_sub(1 + g.below(3) as u32),
        delivered_upto: p.high.wrapping_sub(g.below(8) as u32),
    };
    out.clear();
    wire::encode_mcast_header(&h, out);
    let count_at = out.len();
    out.extend_from_slice(&0u16.to_le_bytes());
    let limit = wire::MCAST_HEADER_LEN + max_payload;
    for _ in 0..1 + g.below(6) {
        let room = limit.saturating_sub(out.len() + wire::MSG_HEADER_LEN);
        if room == 0 {
            break;
        }
        let len = match g.below(4) {
            0 => 0,
            1 => room,
            _ => g.below(room as u64 + 1) as usize,
        };
        // Half of the time what an honest sender would send next (so
        // that messages in pieces complete), else any kind at all.
        let kind = match (g.below(2), p.in_frag, g.below(4)) {
            (0, false, 0 | 1) => FragKind::Whole,
            (0, false, _) => FragKind::First,
            (0, true, 0) => FragKind::Last,
            (0, true, _) => FragKind::Middle,
            (_, _, 0) => FragKind::Whole,
            (_, _, 1) => FragKind::First,
            (_, _, 2) => FragKind::Middle,
            _ => FragKind::Last,
        };
        p.in_frag = matches!(kind, FragKind::First | FragKind::Middle);
        let body: Vec<u8> = (0..len).map(|_| g.next() as u8).collect();
        wire::push_message(out, count_at, kind, &body);
    }
}

/// Runs `frames` hostile frames into a formed pair; returns (deliveries,
/// of them in pieces) at node 1.
fn run(frames: u64, seed: u64, parts_from: u32) -> (u64, u64) {
    let cfg = Config {
        token: 200,
        join: 10,
        merge: 50,
        netmtu: 400,
        max_message_size: 20_000,
        deliver_parts_from: parts_from,
        ..Config::default()
    };
    let mut g = Gen::new(seed);
    // Half the runs with the smallest store the window allows (512
    // frames), where holding events pins a good part of it.
    let cfg = if g.below(2) == 0 {
        Config {
            window_size: 50,
            retransmit_queue: 512,
            ..cfg
        }
    } else {
        cfg
    };
    let mut p = Pair::new(cfg);
    let mut buf = Vec::new();
    let mut sent = 0;
    let mut steps = 0u64;
    let mut hold_until = 0u64;
    while sent < frames {
        steps += 1;
        assert!(
            steps < frames * 400 + 1_000_000,
            "the pair stopped making progress"
        );
        p.step();
        if !p.formed() {
            continue;
        }
        // Events held now and then, sometimes for long enough that what
        // they point at falls a quarter of the store's window behind.
        if steps >= hold_until {
            p.hold = false;
            if g.below(64) == 0 {
                p.hold = true;
                hold_until = steps + g.below(3000);
            }
        }
        if g.below(8) == 0 {
            let i = g.below(2) as usize;
            let big = g.below(4) == 0;
            let len = 1 + g.below(if big { 6000 } else { 300 }) as usize;
            let msg: Vec<u8> = (0..len).map(|k| k as u8).collect();
            let _ = p.nodes[i].submit(&msg, Guarantee::Agreed);
        }
        if g.below(3) == 0 {
            hostile_frame(&mut g, &mut p, &mut buf);
            let now = p.now;
            p.nodes[0].handle_datagram(now, Some(2), &buf);
            // What node 1 stored counts as seen: the next ones go past it.
            advance(
                &mut p.high,
                wire::decode_mcast(&buf).expect("well-formed").header.seq,
            );
            sent += 1;
        }
    }
    p.hold = false;
    for _ in 0..10_000 {
        p.step();
    }
    (p.delivered, p.parts)
}

#[test]
fn a_member_sending_nonsense_fragments_never_stops_a_node() {
    for (k, parts_from) in [0u32, 1, 8192].into_iter().enumerate() {
        let (delivered, parts) = run(3_000, 11 + k as u64, parts_from);
        assert!(delivered > 0, "threshold {parts_from}: nothing delivered");
        if parts_from == 1 {
            assert!(
                parts > 0,
                "no delivery in pieces: the path was not exercised"
            );
        } else if parts_from == 0 {
            assert_eq!(parts, 0);
        }
    }
}

#[test]
#[ignore = "long mode: set FUZZ_CASES"]
fn fuzz_long() {
    let delivered = AtomicU64::new(0);
    let in_parts = AtomicU64::new(0);
    let n = common::long_mode(|t, n| {
        // Fresh pairs now and then, each threshold in turn.
        let mut left = n;
        let mut round = 0u64;
        while left > 0 {
            let k = left.min(50_000);
            let from = [0u32, 1, 8192][(round % 3) as usize];
            let (d, p) = run(k, 0xf4a9 + t * 1_000_003 + round, from);
            delivered.fetch_add(d, Ordering::Relaxed);
            in_parts.fetch_add(p, Ordering::Relaxed);
            left -= k;
            round += 1;
        }
    });
    println!(
        "fuzz_frames={n} delivered={} in_parts={}",
        delivered.load(Ordering::Relaxed),
        in_parts.load(Ordering::Relaxed)
    );
}
