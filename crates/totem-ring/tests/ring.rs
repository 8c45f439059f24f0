//! Small end-to-end checks of the core on a perfect in-test network. The
//! simulator in the tests crate does the adversarial work; these pin down
//! the basic behaviour with readable scenarios.

use std::collections::VecDeque;

use totem_ring::{
    Config, ConfigKind, Destination, DropReason, Event, Guarantee, Instant, MemberState, NodeId,
    RingId, Totem,
};

#[derive(Debug, Clone, PartialEq)]
enum Seen {
    Deliver(NodeId, Vec<u8>, Guarantee),
    Conf(ConfigKind, Vec<NodeId>, RingId),
}

struct Net {
    nodes: Vec<Option<Totem>>,
    persisted: Vec<u64>,
    now: Instant,
    inflight: VecDeque<(NodeId, Option<NodeId>, Vec<u8>)>,
    seen: Vec<Vec<Seen>>,
    /// Links cut: (from, to).
    cut: Vec<(NodeId, NodeId)>,
    /// Drop one datagram in `loss` (0 = none), chosen by a fixed LCG.
    loss: u64,
    lcg: u64,
    /// Multicast frames never reach this node (tokens still do).
    deaf: Option<NodeId>,
    /// Lose the first try of every commit token this node sends (the
    /// first copy of each distinct datagram).
    lose_commit_first_tries: Option<NodeId>,
    commits_sent: u64,
    /// This many filled commit tokens get their last entry's `high` moved
    /// 2^31 - 16 ahead on the wire (a buggy peer's entry).
    corrupt_filled_commits: u32,
    commits_seen: Vec<(NodeId, Option<NodeId>, Vec<u8>)>,
    /// Every datagram put on the wire: sender, packet type, length.
    sent: Vec<(NodeId, totem_ring::wire::PacketType, usize)>,
    /// Every token visit: (new frames, the rotation's frames so far).
    visits: Vec<(u32, u32)>,
    /// Every token and multicast frame put on the wire: sender, whether it
    /// is the token, and its seq (the token's: the highest one assigned).
    seqs: Vec<(NodeId, bool, u32)>,
    /// `Event::Sent` reported, per node.
    sent_events: Vec<usize>,
    /// Deliveries that came as `Event::DeliverParts`, per node.
    parts_events: Vec<usize>,
    /// This node's events are not polled (its transmits still are).
    events_held: Option<usize>,
}

impl Net {
    fn new(n: u32, cfg: Config) -> Net {
        let now = Instant(1_000_000_000);
        let nodes = (1..=n)
            .map(|i| Some(Totem::new(i, cfg.clone(), 0, now).unwrap()))
            .collect();
        Net {
            nodes,
            persisted: vec![0; n as usize],
            now,
            inflight: VecDeque::new(),
            seen: vec![Vec::new(); n as usize],
            cut: Vec::new(),
            loss: 0,
            lcg: 12345,
            deaf: None,
            lose_commit_first_tries: None,
            commits_sent: 0,
            corrupt_filled_commits: 0,
            commits_seen: Vec::new(),
            sent: Vec::new(),
            visits: Vec::new(),
            seqs: Vec::new(),
            sent_events: vec![0; n as usize],
            parts_events: vec![0; n as usize],
            events_held: None,
        }
    }

    fn drain(&mut self, i: usize) {
        let id = i as NodeId + 1;
        let now = self.now;
        let Some(t) = self.nodes[i].as_mut() else {
            return;
        };
        // Even nodes take datagrams by reference, odd ones by swapping
        // buffers (the daemon's way): both paths run in every scenario.
        let mut swap_buf = Vec::new();
        loop {
            let (dest, bytes) = if id.is_multiple_of(2) {
                let Some(tx) = t.poll_transmit(now) else {
                    break;
                };
                (tx.dest, tx.bytes.to_vec())
            } else {
                let Some(dest) = t.poll_transmit_swap(now, &mut swap_buf) else {
                    break;
                };
                (dest, swap_buf.clone())
            };
            let to = match dest {
                Destination::Multicast => None,
                Destination::Unicast(n) => Some(n),
            };
            if let Ok((kind, _)) = totem_ring::wire::peek_header(&bytes) {
                self.sent.push((id, kind, bytes.len()));
            }
            match totem_ring::wire::decode(&bytes) {
                Ok(totem_ring::wire::Packet::Token(t)) => self.seqs.push((id, true, t.seq)),
                Ok(totem_ring::wire::Packet::Mcast(m)) => self.seqs.push((id, false, m.header.seq)),
                _ => {}
            }
            self.inflight.push_back((id, to, bytes));
        }
        let mut persist = Vec::new();
        while self.events_held != Some(i) {
            let Some(e) = t.poll_event() else { break };
            match e {
                Event::Deliver {
                    payload,
                    sender,
                    guarantee,
                    ..
                } => self.seen[i].push(Seen::Deliver(sender, payload.to_vec(), guarantee)),
                Event::ConfigChange {
                    kind,
                    members,
                    ring_id,
                    ..
                } => self.seen[i].push(Seen::Conf(kind, members.to_vec(), ring_id)),
                Event::PersistRingSeq(s) => persist.push(s),
                Event::TokenVisit {
                    new_frames,
                    rotation_frames,
                    ..
                } => self.visits.push((new_frames, rotation_frames)),
                Event::Sent { .. } => self.sent_events[i] += 1,
                Event::DeliverParts {
                    parts,
                    sender,
                    guarantee,
                    ..
                } => {
                    self.parts_events[i] += 1;
                    assert!(parts.iter().count() > 1, "a whole message comes as Deliver");
                    self.seen[i].push(Seen::Deliver(sender, parts.to_vec(), guarantee))
                }
            }
        }
        for s in persist {
            self.persisted[i] = s;
            t.handle_persisted(now, s);
        }
    }

    fn step(&mut self) {
        for i in 0..self.nodes.len() {
            for _ in 0..4 {
                self.drain(i);
            }
        }
        if let Some((from, to, mut bytes)) = self.inflight.pop_front() {
            let now = self.now;
            if self.corrupt_filled_commits > 0 {
                if let Ok(totem_ring::wire::Packet::Commit(mut c)) =
                    totem_ring::wire::decode(&bytes)
                {
                    let filled = c
                        .entries
                        .iter()
                        .all(|e| e.old_ring.rep != totem_ring::wire::UNFILLED);
                    if filled {
                        let last = c.entries.last_mut().expect("non-empty");
                        last.high = last.high.wrapping_add(0x7fff_fff0);
                        bytes.clear();
                        totem_ring::wire::encode_commit(&c, &mut bytes);
                        self.corrupt_filled_commits -= 1;
                    }
                }
            }
            if totem_ring::wire::peek_header(&bytes)
                .is_ok_and(|(t, _)| t == totem_ring::wire::PacketType::Commit)
            {
                self.commits_sent += 1;
                let hop = (from, to, bytes.clone());
                if self.lose_commit_first_tries == Some(from) && !self.commits_seen.contains(&hop) {
                    self.commits_seen.push(hop);
                    return;
                }
            }
            if std::env::var("NETLOG").is_ok() {
                let p = totem_ring::wire::decode(&bytes);
                let d = match &p {
                    Ok(totem_ring::wire::Packet::Token(t)) => format!(
                        "TOKEN ring={:?} tseq={} seq={} aru={} rtr={:?}",
                        t.ring,
                        t.token_seq,
                        t.seq,
                        t.aru,
                        t.rtr()
                    ),
                    Ok(totem_ring::wire::Packet::Mcast(m)) => format!(
                        "MCAST ring={:?} seq={} enc={}",
                        m.header.ring,
                        m.header.seq,
                        m.header.encapsulated()
                    ),
                    other => format!("{:?}", other),
                };
                let st: Vec<String> = self
                    .nodes
                    .iter()
                    .flatten()
                    .map(|t| format!("{}:{:?}", t.id(), t.state()))
                    .collect();
                eprintln!(
                    "t={} {}->{:?} {} | {:?}",
                    now.0 / 1_000_000,
                    from,
                    to,
                    d,
                    st
                );
            }
            for (i, slot) in self.nodes.iter_mut().enumerate() {
                let id = i as NodeId + 1;
                let hit = match to {
                    Some(t) => t == id,
                    None => id != from,
                };
                self.lcg = self
                    .lcg
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                let lost = self.loss > 0 && (self.lcg >> 33).is_multiple_of(self.loss);
                let deaf = self.deaf == Some(id)
                    && totem_ring::wire::peek_header(&bytes)
                        .is_ok_and(|(t, _)| t == totem_ring::wire::PacketType::Mcast);
                if hit && !lost && !deaf && !self.cut.contains(&(from, id)) {
                    if let Some(t) = slot.as_mut() {
                        t.handle_datagram(now, Some(from), &bytes);
                    }
                }
            }
            return;
        }
        let next = self
            .nodes
            .iter()
            .flatten()
            .filter_map(|t| t.poll_timeout())
            .min();
        if let Some(at) = next {
            self.now = self.now.max(at);
            let now = self.now;
            for t in self.nodes.iter_mut().flatten() {
                if t.poll_timeout().is_some_and(|d| d <= now) {
                    t.handle_timeout(now);
                }
            }
        }
    }

    fn run_until(&mut self, mut f: impl FnMut(&Net) -> bool, max_steps: usize) -> bool {
        for _ in 0..max_steps {
            if f(self) {
                break;
            }
            self.step();
        }
        for i in 0..self.nodes.len() {
            self.drain(i);
        }
        f(self)
    }

    /// Runs until nothing is in flight: the idle ring's token is held.
    fn until_held(&mut self) {
        let n = self.nodes.len();
        let held = (0..400_000).any(|_| {
            self.step();
            (0..n).for_each(|i| self.drain(i));
            self.inflight.is_empty()
        });
        assert!(held, "an idle ring's token is held");
    }

    fn all_operational_with(&self, members: &[NodeId]) -> bool {
        members.iter().all(|&m| {
            self.nodes[m as usize - 1]
                .as_ref()
                .is_some_and(|t| t.state() == MemberState::Operational && t.members() == members)
        })
    }

    /// On a ring of two: node 1 submits `msgs` (agreed); both nodes
    /// deliver exactly them, in order.
    fn node1_sends_to_pair(&mut self, msgs: &[Vec<u8>]) {
        for m in msgs {
            self.nodes[0]
                .as_mut()
                .unwrap()
                .submit(m, Guarantee::Agreed)
                .unwrap();
        }
        assert!(self.run_until(|n| n.delivered(1).len() == msgs.len(), 200_000));
        let want: Vec<(NodeId, Vec<u8>)> = msgs.iter().map(|m| (1, m.clone())).collect();
        assert_eq!(self.delivered(0), want);
        assert_eq!(self.delivered(1), want);
    }

    fn delivered(&self, i: usize) -> Vec<(NodeId, Vec<u8>)> {
        self.seen[i]
            .iter()
            .filter_map(|s| match s {
                Seen::Deliver(n, p, _) => Some((*n, p.clone())),
                _ => None,
            })
            .collect()
    }
}

fn fast() -> Config {
    Config {
        token: 200,
        join: 10,
        merge: 50,
        ..Config::default()
    }
}

#[test]
fn single_node_forms_and_delivers_to_itself() {
    let mut net = Net::new(1, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1]), 10_000));
    let t = net.nodes[0].as_mut().unwrap();
    t.submit(b"hello", Guarantee::Agreed).unwrap();
    t.submit(b"safe", Guarantee::Safe).unwrap();
    // The copy-free submit moves the message out and hands back an empty
    // buffer; a refused one stays with the caller.
    let mut moved = b"moved".to_vec();
    t.submit_swap(&mut moved, Guarantee::Agreed).unwrap();
    assert!(moved.is_empty());
    let mut empty = Vec::new();
    assert!(t.submit_swap(&mut empty, Guarantee::Agreed).is_err());
    assert!(net.run_until(|n| n.delivered(0).len() == 3, 10_000));
    assert_eq!(
        net.delivered(0),
        vec![
            (1, b"hello".to_vec()),
            (1, b"safe".to_vec()),
            (1, b"moved".to_vec())
        ]
    );
    assert!(net.persisted[0] > 0, "ring seq persisted before use");
}

#[test]
fn three_nodes_merge_and_agree_on_order() {
    let mut net = Net::new(3, fast());
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000),
        "ring of 3 forms"
    );
    for round in 0..50u32 {
        for i in 0..3 {
            let msg = format!("{i}:{round}").into_bytes();
            let g = if round % 3 == 0 {
                Guarantee::Safe
            } else {
                Guarantee::Agreed
            };
            net.nodes[i].as_mut().unwrap().submit(&msg, g).unwrap();
        }
    }
    assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == 150), 500_000));
    let d0 = net.delivered(0);
    assert_eq!(d0, net.delivered(1));
    assert_eq!(d0, net.delivered(2));
}

#[test]
fn large_message_is_fragmented_and_reassembled() {
    let mut net = Net::new(2, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 7 + 3) as u8).collect();
    net.nodes[0]
        .as_mut()
        .unwrap()
        .submit(&big, Guarantee::Agreed)
        .unwrap();
    net.nodes[1]
        .as_mut()
        .unwrap()
        .submit(b"after", Guarantee::Agreed)
        .unwrap();
    assert!(net.run_until(|n| (0..2).all(|i| n.delivered(i).len() == 2), 2_000_000));
    for i in 0..2 {
        let d = net.delivered(i);
        assert!(d.contains(&(1, big.clone())));
        assert!(d.contains(&(2, b"after".to_vec())));
    }
    assert_eq!(net.delivered(0), net.delivered(1));
}

#[test]
fn every_frame_of_a_burst_but_the_last_is_full_length() {
    // Equal lengths let the transport send a burst as one GSO send; the
    // sizes here make the packing end frames at ever-changing offsets, and
    // a small max_messages spreads them over several visits.
    let cfg = Config {
        max_messages: 17,
        ..fast()
    };
    let full = totem_ring::wire::MCAST_HEADER_LEN + cfg.max_payload();
    let mut net = Net::new(2, cfg);
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
    net.sent.clear();
    let msgs: Vec<Vec<u8>> = (0..120u32)
        .map(|k| vec![k as u8; [1000, 333, 64, 1400, 7][k as usize % 5]])
        .collect();
    net.node1_sends_to_pair(&msgs);
    // Node 1's bursts: the multicast frames between two of its tokens.
    let mut bursts: Vec<Vec<usize>> = vec![Vec::new()];
    for &(from, kind, len) in &net.sent {
        match kind {
            totem_ring::wire::PacketType::Mcast if from == 1 => {
                bursts.last_mut().unwrap().push(len)
            }
            totem_ring::wire::PacketType::Token if from == 1 => bursts.push(Vec::new()),
            _ => {}
        }
    }
    let frames: usize = bursts.iter().map(Vec::len).sum();
    assert!(frames > msgs.len() / 3, "the messages took {frames} frames");
    assert!(
        bursts.iter().filter(|b| b.len() > 1).count() >= 2,
        "{bursts:?}"
    );
    for b in &bursts {
        if let Some((_, head)) = b.split_last() {
            assert!(
                head.iter().all(|&l| l == full),
                "burst {b:?}, full frame {full}"
            );
        }
    }
}

#[test]
fn crash_of_a_member_gives_transitional_then_regular() {
    let mut net = Net::new(3, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    net.nodes[2] = None;
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2]), 500_000),
        "survivors re-form"
    );
    for i in 0..2 {
        let confs: Vec<&Seen> = net.seen[i]
            .iter()
            .filter(|s| matches!(s, Seen::Conf(..)))
            .collect();
        let n = confs.len();
        assert!(n >= 3, "{confs:?}");
        assert!(
            matches!(confs[n - 2], Seen::Conf(ConfigKind::Transitional, m, _) if m == &vec![1, 2])
        );
        assert!(matches!(confs[n - 1], Seen::Conf(ConfigKind::Regular, m, _) if m == &vec![1, 2]));
    }
}

#[test]
fn graceful_leave_reforms_without_token_loss() {
    let mut net = Net::new(
        3,
        Config {
            token: 100_000,
            consensus: Some(100_000),
            ..fast()
        },
    );
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    let start = net.now;
    let now = net.now;
    net.nodes[2].as_mut().unwrap().leave(now);
    net.drain(2);
    net.nodes[2] = None;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 500_000));
    // Far less than the 100 s token timeout.
    assert!(
        net.now.0 - start.0 < 5_000_000_000,
        "took {} ns",
        net.now.0 - start.0
    );
}

/// A message of `len` bytes that shows where every byte belongs.
fn patterned(len: usize, salt: u8) -> Vec<u8> {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31) ^ salt ^ (i >> 8) as u8)
        .collect()
}

#[test]
fn delivery_where_messages_lie_matches_delivery_by_copy() {
    // Small frames, so that most messages are cut into pieces; agreed and
    // safe; copies and references must deliver the same bytes in the same
    // order on every node.
    let mut runs = Vec::new();
    for by_ref in [false, true] {
        let mut net = Net::new(
            3,
            Config {
                netmtu: 400,
                deliver_parts_from: if by_ref { 1 } else { 0 },
                ..fast()
            },
        );
        assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
        let sizes = [1usize, 200, 350, 351, 900, 5000, 20_000, 64, 3000];
        let mut want = 0;
        for (k, &len) in sizes.iter().enumerate() {
            for i in 0..3 {
                let g = if k % 3 == 2 {
                    Guarantee::Safe
                } else {
                    Guarantee::Agreed
                };
                let t = net.nodes[i].as_mut().unwrap();
                t.submit(&patterned(len, (k * 3 + i) as u8), g).unwrap();
                want += 1;
            }
        }
        assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == want), 2_000_000));
        let d0 = net.delivered(0);
        assert_eq!(d0, net.delivered(1));
        assert_eq!(d0, net.delivered(2));
        if by_ref {
            assert!(
                net.parts_events.iter().all(|&n| n > 0),
                "{:?}",
                net.parts_events
            );
        } else {
            assert_eq!(net.parts_events, vec![0, 0, 0]);
        }
        let mut sorted: Vec<_> = d0.iter().map(|(s, p)| (*s, p.clone())).collect();
        sorted.sort();
        runs.push(sorted);
    }
    // The same messages either way (the order may differ with timing).
    assert_eq!(runs[0], runs[1]);
}

#[test]
fn only_messages_of_the_threshold_or_more_come_in_pieces() {
    let mut net = Net::new(
        2,
        Config {
            netmtu: 400,
            deliver_parts_from: 3000,
            ..fast()
        },
    );
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
    let msgs = [2999usize, 3000, 200, 5000, 1000];
    for (k, &len) in msgs.iter().enumerate() {
        let t = net.nodes[0].as_mut().unwrap();
        t.submit(&patterned(len, k as u8), Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(
        |n| (0..2).all(|i| n.delivered(i).len() == msgs.len()),
        500_000
    ));
    let want: Vec<_> = msgs
        .iter()
        .enumerate()
        .map(|(k, &len)| (1, patterned(len, k as u8)))
        .collect();
    assert_eq!(net.delivered(0), want);
    assert_eq!(net.delivered(1), want);
    assert_eq!(
        net.parts_events,
        vec![2, 2],
        "3000 and 5000 bytes, on each node"
    );
}

#[test]
fn frames_that_unpolled_deliveries_point_at_stay_in_the_store() {
    // Node 3 polls no events while the ring delivers, makes every frame
    // stable and releases what it may; its deliveries, polled afterwards,
    // still read their frames (a released frame would stop the node).
    let mut net = Net::new(
        3,
        Config {
            netmtu: 400,
            deliver_parts_from: 1,
            ..fast()
        },
    );
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    net.events_held = Some(2);
    let msgs: Vec<Vec<u8>> = (0..12).map(|k| patterned(100 + 700 * k, k as u8)).collect();
    for (k, m) in msgs.iter().enumerate() {
        net.nodes[k % 2]
            .as_mut()
            .unwrap()
            .submit(m, Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(|n| n.delivered(0).len() == msgs.len(), 2_000_000));
    // Many more rotations: the stable line passes every frame.
    for _ in 0..20_000 {
        net.step();
    }
    net.events_held = None;
    net.drain(2);
    assert_eq!(net.delivered(2), net.delivered(0));
    assert_eq!(net.delivered(2).len(), msgs.len());
}

#[test]
fn sent_events_come_only_when_asked_for() {
    for on in [true, false] {
        let mut net = Net::new(
            2,
            Config {
                sent_events: on,
                ..fast()
            },
        );
        assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
        for k in 0..10u8 {
            let t = net.nodes[0].as_mut().unwrap();
            t.submit(&[k; 40], Guarantee::Agreed).unwrap();
        }
        assert!(net.run_until(|n| (0..2).all(|i| n.delivered(i).len() == 10), 200_000));
        assert_eq!(
            net.sent_events,
            vec![if on { 10 } else { 0 }, 0],
            "sent_events {on}"
        );
    }
}

#[test]
fn sequence_numbers_wrap() {
    let mut net = Net::new(
        2,
        Config {
            initial_seq: 0xffff_ffe0,
            ..fast()
        },
    );
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
    for k in 0..200u32 {
        net.nodes[(k % 2) as usize]
            .as_mut()
            .unwrap()
            .submit(&[k as u8; 700], Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(|n| (0..2).all(|i| n.delivered(i).len() == 200), 500_000));
    assert_eq!(net.delivered(0), net.delivered(1));
}

#[test]
fn bad_datagrams_are_counted_not_fatal() {
    let mut t = Totem::new(1, fast(), 0, Instant(0)).unwrap();
    let junk: [&[u8]; 4] = [
        b"",
        b"\x5e\xc0\x01\x01",
        &[0xff; 40],
        &[0x5e, 0xc0, 0x01, 0x09, 1, 0, 0, 0],
    ];
    for j in junk {
        t.handle_datagram(Instant(1), None, j);
    }
    assert_eq!(t.stats().drops_total, 4);
}

#[test]
fn loss_is_repaired_by_retransmission() {
    let mut net = Net::new(3, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    net.loss = 20;
    for k in 0..600u32 {
        let g = if k % 5 == 0 {
            Guarantee::Safe
        } else {
            Guarantee::Agreed
        };
        let size = [20usize, 200, 3000][(k % 3) as usize];
        net.nodes[(k % 3) as usize]
            .as_mut()
            .unwrap()
            .submit(&vec![k as u8; size], g)
            .unwrap();
    }
    assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() >= 600), 3_000_000));
    // Membership may have changed under loss; whoever delivered in the same
    // configurations delivered the same sequence.
    let d0 = net.delivered(0);
    assert_eq!(d0.len(), 600);
    assert_eq!(d0, net.delivered(1));
    assert_eq!(d0, net.delivered(2));
}

/// The commit token passes every member twice; here node 3 loses the first
/// try of every one it sends, so a ring forms only because it retransmits
/// (as Corosync does, on the token retransmit timer). Without that, one
/// lost commit token cost a whole gather round, and a large ring on a
/// lossy link never formed (simulator seed 108,023: 16 nodes, 24% loss).
#[test]
fn lost_commit_tokens_are_retransmitted() {
    let mut net = Net::new(5, fast());
    net.lose_commit_first_tries = Some(3);
    let all = [1, 2, 3, 4, 5];
    assert!(net.run_until(|n| n.all_operational_with(&all), 400_000));
    assert!(!net.commits_seen.is_empty());
    // One ring, formed once: no gather round was lost to a dropped token.
    let rings: Vec<RingId> = net.seen[0]
        .iter()
        .filter_map(|s| match s {
            Seen::Conf(ConfigKind::Regular, m, r) if m.len() == 5 => Some(*r),
            _ => None,
        })
        .collect();
    assert_eq!(rings.len(), 1, "{rings:?}");
    let retransmits: u64 = net
        .nodes
        .iter()
        .flatten()
        .map(|t| t.stats().token_retransmits)
        .sum();
    assert!(retransmits >= 2, "{retransmits} retransmissions");
}

/// A commit token whose entry names 2^31 frames of the old ring (a buggy
/// peer's) is dropped by the node that would start recovery from it: every
/// member would otherwise walk that range one seq at a time, in recovery and
/// again in the transitional delivery, for seconds on the protocol thread.
/// The ring forms on the next try, with what the old ring delivered intact.
#[test]
fn a_commit_naming_more_frames_than_a_store_holds_is_dropped() {
    let mut net = Net::new(3, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    for i in 0..20u8 {
        net.nodes[0]
            .as_mut()
            .unwrap()
            .submit(&[i; 100], Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == 20), 200_000));
    let malformed = |n: &Net, i: usize| {
        n.nodes[i].as_ref().unwrap().stats().drops[DropReason::Malformed as usize]
    };
    let before = [malformed(&net, 0), malformed(&net, 1)];
    net.corrupt_filled_commits = 1;
    net.nodes[2] = None;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 1_000_000));
    assert_eq!(net.corrupt_filled_commits, 0, "a filled commit went by");
    let dropped = (malformed(&net, 0) - before[0]) + (malformed(&net, 1) - before[1]);
    assert_eq!(
        dropped, 1,
        "the corrupted commit is dropped where recovery would start"
    );
    for i in 0..2 {
        let want: Vec<(NodeId, Vec<u8>)> = (0..20u8).map(|k| (1, vec![k; 100])).collect();
        assert_eq!(net.delivered(i), want, "node {}", i + 1);
    }
    // The new ring carries messages.
    net.nodes[1]
        .as_mut()
        .unwrap()
        .submit(b"after", Guarantee::Agreed)
        .unwrap();
    assert!(net.run_until(|n| (0..2).all(|i| n.delivered(i).len() == 21), 200_000));
}

#[test]
fn message_cut_by_a_ring_change_is_delivered_whole_once() {
    let mut net = Net::new(3, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    let big: Vec<u8> = (0..(1u32 << 20)).map(|i| (i * 13 + 1) as u8).collect();
    net.nodes[0]
        .as_mut()
        .unwrap()
        .submit(&big, Guarantee::Agreed)
        .unwrap();
    // Let part of it go out, then take node 3 away mid-message.
    let mut sent_some = false;
    for _ in 0..200_000 {
        net.step();
        if net.nodes[0].as_ref().unwrap().stats().frames_sent > 100 {
            sent_some = true;
            break;
        }
    }
    assert!(sent_some, "the message started on the first ring");
    net.nodes[2] = None;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 1_000_000));
    assert!(net.run_until(|n| (0..2).all(|i| !n.delivered(i).is_empty()), 2_000_000));
    for i in 0..2 {
        assert_eq!(net.delivered(i), vec![(1, big.clone())], "node {}", i + 1);
    }
}

/// Virtual time, so deterministic: with the low-latency profile the
/// survivors install the new ring within token + consensus of a crash.
#[test]
fn low_latency_profile_fails_over_within_token_plus_consensus() {
    let cfg = Config::low_latency();
    let bound_ns = (cfg.token + cfg.consensus_ms() + cfg.join) * 1_000_000;
    let mut net = Net::new(3, cfg);
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    // Let the ring run a while, then crash node 3.
    let settle = net.now.plus_ms(500);
    net.run_until(|n| n.now >= settle, 1_000_000);
    net.nodes[2] = None;
    let crashed_at = net.now;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 1_000_000));
    let took = net.now.0 - crashed_at.0;
    println!(
        "low-latency failover: {:.1} ms (virtual)",
        took as f64 / 1e6
    );
    assert!(
        took <= bound_ns,
        "failover took {took} ns, bound {bound_ns} ns"
    );
}

/// Corosync's runtime-changeable timings: a running ring takes a shorter
/// token and consensus (a reload), fails over within the new bound, and a
/// set that does not validate changes nothing.
#[test]
fn timings_change_on_a_running_ring() {
    let slow = Config {
        token: 3000,
        join: 50,
        ..Config::default()
    };
    let mut net = Net::new(3, slow.clone());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    let bad = Config {
        consensus: Some(10),
        ..slow.clone()
    };
    let t = net.nodes[0].as_mut().unwrap();
    let err = t.set_timings(&bad).unwrap_err();
    assert_eq!(err.key, "consensus");
    assert_eq!(t.config(), &slow);
    let fast = Config {
        token: 100,
        join: 20,
        consensus: Some(150),
        max_messages: 7,
        netmtu: 9000,
        ..slow.clone()
    };
    for t in net.nodes.iter_mut().flatten() {
        t.set_timings(&fast).unwrap();
        assert_eq!(t.config().token, 100);
        assert_eq!(t.config().max_messages, 7);
        assert_eq!(t.config().netmtu, slow.netmtu, "sizes are not timings");
    }
    // Let every timer armed with the old values fire or be re-armed.
    let settle = net.now.plus_ms(4000);
    net.run_until(|n| n.now >= settle, 2_000_000);
    assert!(net.all_operational_with(&[1, 2, 3]));
    net.nodes[2] = None;
    let crashed_at = net.now;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 1_000_000));
    let took_ms = (net.now.0 - crashed_at.0) / 1_000_000;
    assert!(took_ms <= 100 + 150 + 20, "failover took {took_ms} ms");
}

#[test]
fn a_node_that_cannot_receive_leaves_cleanly_and_returns() {
    let mut net = Net::new(
        3,
        Config {
            fail_recv_const: 20,
            ..fast()
        },
    );
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    net.deaf = Some(3);
    for k in 0..400u32 {
        net.nodes[(k % 2) as usize]
            .as_mut()
            .unwrap()
            .submit(&[k as u8; 100], Guarantee::Agreed)
            .unwrap();
    }
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2]), 2_000_000),
        "1 and 2 go on without 3"
    );
    assert_eq!(net.nodes[2].as_ref().unwrap().stats().failed_to_receive, 1);
    assert!(
        net.run_until(|n| n.all_operational_with(&[3]), 2_000_000),
        "3 forms a ring of its own"
    );
    net.deaf = None;
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 2_000_000),
        "and merges back"
    );
    assert!(net.run_until(|n| (0..2).all(|i| n.delivered(i).len() == 400), 2_000_000));
    assert_eq!(net.delivered(0), net.delivered(1));
}

/// One core driven by hand: node `id` alone, brought to its ring of one.
struct Lone {
    t: Totem,
    now: Instant,
    /// Joins it multicast since the last `take_joins`.
    joins: Vec<totem_ring::wire::Join>,
    configs: Vec<(ConfigKind, Vec<NodeId>, RingId)>,
}

impl Lone {
    fn new(id: NodeId) -> Lone {
        let now = Instant(1_000_000_000);
        let mut l = Lone {
            t: Totem::new(id, fast(), 0, now).unwrap(),
            now,
            joins: Vec::new(),
            configs: Vec::new(),
        };
        l.drain();
        assert_eq!(l.t.state(), MemberState::Operational, "a lone node forms");
        assert_eq!(l.t.members(), &[id]);
        l.joins.clear();
        l.configs.clear();
        l
    }

    /// Takes outputs; disk writes complete at once.
    fn drain(&mut self) {
        loop {
            let mut any = false;
            while let Some(tx) = self.t.poll_transmit(self.now) {
                any = true;
                if let Ok(totem_ring::wire::Packet::Join(j)) = totem_ring::wire::decode(tx.bytes) {
                    self.joins.push(j);
                }
            }
            let mut persist = Vec::new();
            while let Some(e) = self.t.poll_event() {
                any = true;
                match e {
                    Event::ConfigChange {
                        kind,
                        members,
                        ring_id,
                        ..
                    } => self.configs.push((kind, members.to_vec(), ring_id)),
                    Event::PersistRingSeq(s) => persist.push(s),
                    _ => {}
                }
            }
            for s in persist {
                self.t.handle_persisted(self.now, s);
            }
            if !any {
                break;
            }
        }
    }

    fn hear_join(&mut self, sender: NodeId, procs: &[NodeId], fails: &[NodeId]) {
        let j = totem_ring::wire::Join {
            sender,
            ring_seq: self.t.ring_id().seq,
            procs: procs.to_vec(),
            fails: fails.to_vec(),
        };
        let mut b = Vec::new();
        totem_ring::wire::encode_join(&j, &mut b);
        self.t.handle_datagram(self.now, Some(sender), &b);
        self.drain();
    }
}

/// Regression (sim seed 100374, 9 nodes: ~55,000 rings of one a second, no
/// ring of two ever formed): a node alone on its ring that hears a join
/// entered gather with proc = {itself}, found consensus at once, and
/// installed another ring of one before it looked at the join.
#[test]
fn a_lone_node_hearing_a_join_gathers_with_its_sender() {
    let mut l = Lone::new(1);
    let ring = l.t.ring_id();
    l.hear_join(2, &[2], &[]);
    assert_eq!(l.configs, vec![], "no new ring without node 2");
    assert_eq!(l.t.state(), MemberState::Gather);
    assert_eq!(l.t.ring_id(), ring);
    let last = l.joins.last().expect("it announces the round");
    assert_eq!(last.procs, vec![1, 2]);
    assert_eq!(last.fails, Vec::<NodeId>::new());
    // And the two agree: node 1 (the smaller id) proposes the ring.
    l.hear_join(2, &[1, 2], &[]);
    assert_eq!(l.t.state(), MemberState::Commit);
}

/// Regression: a join whose sender has failed us does not make an operational
/// node gather (it would only form another ring without the sender, once per
/// such join it hears).
#[test]
fn an_operational_node_ignores_a_join_that_fails_it() {
    let mut l = Lone::new(1);
    let ring = l.t.ring_id();
    l.hear_join(2, &[1, 2, 3], &[1]);
    assert_eq!(l.configs, vec![]);
    assert_eq!(l.t.state(), MemberState::Operational);
    assert_eq!(l.t.ring_id(), ring);
    assert!(l.joins.is_empty());
}

/// Regression: the failures a join reports are adopted only from a member of
/// our last ring. Adopted from anyone, they spread through the whole cluster
/// and splinter it into rings of one.
#[test]
fn failures_are_adopted_only_from_members_of_our_ring() {
    let mut l = Lone::new(1);
    l.hear_join(2, &[1, 2, 3], &[3]);
    assert_eq!(l.t.state(), MemberState::Gather);
    let last = l.joins.last().expect("it announces the round");
    assert_eq!(last.procs, vec![1, 2, 3]);
    assert_eq!(
        last.fails,
        Vec::<NodeId>::new(),
        "3 is not failed on 2's word"
    );
}

#[test]
fn a_receive_congested_node_holds_the_other_senders_back_without_a_ring_change() {
    let mut net = Net::new(3, fast());
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000),
        "ring of 3 forms"
    );
    let ring = net.nodes[0].as_ref().unwrap().ring_id();
    net.nodes[2].as_mut().unwrap().set_receive_congested(true);
    // Let node 3 visit the token at least once with its claim.
    net.run_until(|_| false, 2_000);
    // Node 3's own messages wait too: they would be delivered to its
    // reader as well.
    for i in 0..3 {
        for k in 0..20u32 {
            let msg = format!("{i}:{k}").into_bytes();
            net.nodes[i]
                .as_mut()
                .unwrap()
                .submit(&msg, Guarantee::Agreed)
                .unwrap();
        }
    }
    let tokens_before = net.nodes[0].as_ref().unwrap().stats().tokens_received;
    let t0 = net.now;
    net.run_until(|_| false, 20_000);
    let tokens_after = net.nodes[0].as_ref().unwrap().stats().tokens_received;
    assert!(
        tokens_after >= tokens_before + 10,
        "the token keeps circulating ({tokens_before} -> {tokens_after})"
    );
    // Node 3 holds each token it can add nothing to for a millisecond
    // rather than sending it round empty at once (this network has no
    // latency: without the hold, no time would pass at all).
    let rotations = tokens_after - tokens_before;
    let elapsed_ms = (net.now.0 - t0.0) / 1_000_000;
    assert!(
        elapsed_ms + 1 >= rotations,
        "{rotations} rotations in {elapsed_ms} ms while node 3 was congested"
    );
    for i in 0..3 {
        assert!(
            net.delivered(i).is_empty(),
            "node {} delivered while node 3 was congested",
            i + 1
        );
        let t = net.nodes[i].as_ref().unwrap();
        assert_eq!(t.state(), MemberState::Operational);
        assert_eq!(t.ring_id(), ring, "no ring change");
    }
    net.nodes[2].as_mut().unwrap().set_receive_congested(false);
    assert!(
        net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == 60), 200_000),
        "everything is delivered once node 3 has caught up"
    );
    let d0 = net.delivered(0);
    assert_eq!(d0, net.delivered(1));
    assert_eq!(d0, net.delivered(2));
    assert_eq!(net.nodes[0].as_ref().unwrap().ring_id(), ring);
}

/// Alone in its ring, a congested node still sends its own messages: the
/// token comes straight back to it, and holding them back would keep it
/// circulating without end.
#[test]
fn a_receive_congested_node_alone_in_its_ring_still_sends() {
    let mut net = Net::new(1, fast());
    assert!(
        net.run_until(|n| n.all_operational_with(&[1]), 200_000),
        "ring of 1 forms"
    );
    net.nodes[0].as_mut().unwrap().set_receive_congested(true);
    for k in 0..5u32 {
        net.nodes[0]
            .as_mut()
            .unwrap()
            .submit(&k.to_le_bytes(), Guarantee::Agreed)
            .unwrap();
    }
    assert!(
        net.run_until(|n| n.delivered(0).len() == 5, 200_000),
        "a congested node alone delivers its own messages"
    );
}

/// `ring_quiet` tells a driver when the token may stop: not while every
/// rotation brings new frames, but once a visit finds nothing new, and at
/// the representative while it holds the idle token.
#[test]
fn the_ring_is_quiet_once_the_token_brings_nothing_new() {
    let cfg = Config {
        max_messages: 4,
        ..fast()
    };
    let mut net = Net::new(3, cfg);
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000),
        "ring of 3 forms"
    );
    let quiet = |n: &Net, i: usize| n.nodes[i].as_ref().unwrap().ring_quiet();
    assert!(
        net.run_until(|n| (0..3).all(|i| quiet(n, i)), 200_000),
        "an idle ring is quiet everywhere"
    );
    // 40 one-frame messages from node 3, 4 frames a visit: ten rotations
    // with new frames.
    for k in 0..40u8 {
        net.nodes[2]
            .as_mut()
            .unwrap()
            .submit(&[k; 1000], Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(|n| n.delivered(0).len() >= 20, 200_000));
    assert!(net.delivered(0).len() < 32, "in the middle of the burst");
    for i in 0..3 {
        assert!(
            !quiet(&net, i),
            "node {} quiet while the ring is busy",
            i + 1
        );
    }
    assert!(
        net.run_until(
            |n| n.delivered(0).len() == 40 && (0..3).all(|i| quiet(n, i)),
            200_000
        ),
        "quiet again once the burst is delivered"
    );
}

/// The representative holding the idle token sends what a local client
/// submits at once, in a second visit, instead of forwarding the token as
/// it was held and sending one rotation later.
#[test]
fn a_held_token_carries_the_holders_new_message_at_once() {
    let mut net = Net::new(3, fast());
    assert!(
        net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000),
        "ring of 3 forms"
    );
    // Idle until the token stops: once every node has been drained,
    // nothing is in flight.
    let mut held = false;
    for _ in 0..200_000 {
        net.step();
        for i in 0..3 {
            net.drain(i);
        }
        if net.inflight.is_empty() {
            held = true;
            break;
        }
    }
    assert!(held, "an idle ring's token is held");
    let mark = net.sent.len();
    net.nodes[0]
        .as_mut()
        .unwrap()
        .submit(b"now", Guarantee::Agreed)
        .unwrap();
    assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == 1), 200_000));
    let tokens_before_mcast = net.sent[mark..]
        .iter()
        .take_while(|(_, kind, _)| *kind != totem_ring::wire::PacketType::Mcast)
        .filter(|(_, kind, _)| *kind == totem_ring::wire::PacketType::Token)
        .count();
    assert_eq!(
        tokens_before_mcast, 0,
        "no token hop before the message leaves"
    );
    assert_eq!(net.delivered(1), vec![(1, b"now".to_vec())]);
    let revisits = |i: usize| net.nodes[i].as_ref().unwrap().stats().held_token_revisits;
    assert_eq!((revisits(0), revisits(1), revisits(2)), (1, 0, 0));
}

/// An idle token rests with the node that sent last, not with the
/// representative: a node sending alone finds it there for its next
/// message (no hold-cancel, no token hop first); another node's message
/// takes a hold-cancel to get it going.
#[test]
fn an_idle_token_rests_with_the_last_sender() {
    let kinds = |net: &Net, mark: usize| -> Vec<(NodeId, totem_ring::wire::PacketType)> {
        net.sent[mark..].iter().map(|&(n, k, _)| (n, k)).collect()
    };
    use totem_ring::wire::PacketType::{HoldCancel, Mcast, Token};
    // The default, and the shortest idle count (the others then ask from
    // zero idle visits).
    for unchanged in [Config::default().seqno_unchanged_const, 1] {
        let cfg = Config {
            seqno_unchanged_const: unchanged,
            ..fast()
        };
        let mut net = Net::new(3, cfg.clone());
        assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
        for (k, msg) in [b"one", b"two"].iter().enumerate() {
            net.until_held();
            let mark = net.sent.len();
            net.nodes[2]
                .as_mut()
                .unwrap()
                .submit(*msg, Guarantee::Agreed)
                .unwrap();
            assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == k + 1), 200_000));
            let sent = kinds(&net, mark);
            let first_mcast = sent.iter().position(|&(_, t)| t == Mcast).unwrap();
            if k == 1 {
                // Node 3 sent last, so the idle token waited with it.
                assert_eq!(sent[first_mcast].0, 3, "{sent:?}");
                assert!(
                    sent[..first_mcast]
                        .iter()
                        .all(|&(_, t)| t != Token && t != HoldCancel),
                    "node 3's second message leaves at once: {sent:?}"
                );
            }
        }
        let revisits =
            |net: &Net, i: usize| net.nodes[i].as_ref().unwrap().stats().held_token_revisits;
        assert_eq!(revisits(&net, 2), 1, "the held token was visited again");
        // Node 2's message: a hold-cancel sets the token going, long before
        // the hold timer would have.
        net.until_held();
        let mark = net.sent.len();
        let t0 = net.now;
        net.nodes[1]
            .as_mut()
            .unwrap()
            .submit(b"three", Guarantee::Agreed)
            .unwrap();
        assert!(net.run_until(|n| (0..3).all(|i| n.delivered(i).len() == 3), 200_000));
        let sent = kinds(&net, mark);
        assert_eq!(sent.first(), Some(&(2, HoldCancel)), "{sent:?}");
        let hold_ns = cfg.hold_ms() * 1_000_000;
        assert!(
            net.now.0 - t0.0 < hold_ns / 4,
            "took {} ns",
            net.now.0 - t0.0
        );
        for i in 0..3 {
            let got: Vec<Vec<u8>> = net.delivered(i).into_iter().map(|(_, m)| m).collect();
            assert_eq!(
                got,
                vec![b"one".to_vec(), b"two".to_vec(), b"three".to_vec()]
            );
        }
    }
}

/// On a larger ring the idle token comes to rest after about the same
/// number of idle hops as on 3 nodes (`hold_after_idle_hops`), not after
/// the same number of rotations: 12 nodes hold it after one idle rotation
/// where Corosync's counting takes four (two more with the Accelerated
/// Ring, whose token reaches the next node ahead of the last frame and so
/// leaves the stable line behind for a rotation). The holder, the last
/// sender, is visited again at once for its next message; a message from
/// a node that does not hold it leaves by a hold-cancel.
#[test]
fn a_larger_ring_holds_the_idle_token_after_as_many_hops() {
    use totem_ring::wire::PacketType::{HoldCancel, Mcast, Token};
    // Node `from` sends; returns the packets sent until all delivered it.
    fn send(net: &mut Net, from: usize, k: usize) -> Vec<(NodeId, totem_ring::wire::PacketType)> {
        let mark = net.sent.len();
        net.nodes[from]
            .as_mut()
            .unwrap()
            .submit(b"m", Guarantee::Agreed)
            .unwrap();
        let n = net.nodes.len();
        assert!(net.run_until(|net| (0..n).all(|i| net.delivered(i).len() == k), 400_000));
        net.sent[mark..].iter().map(|s| (s.0, s.1)).collect()
    }
    // Token hops from node 1's first message until the token rests.
    fn hops_to_rest(nodes: u32, cfg: Config) -> (usize, Net) {
        let members: Vec<NodeId> = (1..=nodes).collect();
        let mut net = Net::new(nodes, cfg);
        assert!(net.run_until(|n| n.all_operational_with(&members), 400_000));
        send(&mut net, 0, 1);
        let mark = net.sent.len();
        net.until_held();
        let hops = net.sent[mark..].iter().filter(|s| s.1 == Token).count();
        (hops, net)
    }
    for accelerated in [false, true] {
        for nodes in [6, 12] {
            let by_hops = Config {
                accelerated,
                ..fast()
            };
            let rotations = Config {
                hold_after_idle_hops: 0,
                ..by_hops.clone()
            };
            assert_eq!(rotations.idle_visits_before_hold(nodes as usize), 4);
            let (few, mut net) = hops_to_rest(nodes, by_hops.clone());
            let (many, _) = hops_to_rest(nodes, rotations);
            let n = nodes as usize;
            let visits = by_hops.idle_visits_before_hold(n) as usize;
            assert!(visits < 4, "{nodes} nodes hold after {visits} idle visits");
            let most = if accelerated { visits + 2 } else { visits };
            assert!(
                few <= most * n && few < many && many >= 3 * n,
                "{nodes} nodes, accelerated {accelerated}: {few} hops to rest by hops, {many} by rotations"
            );
            // The holder's next message leaves at once: its own token
            // revisit (sent ahead with the Accelerated Ring), no hop.
            let sent = send(&mut net, 0, 2);
            let first_mcast = sent.iter().position(|&(_, t)| t == Mcast).unwrap();
            assert!(
                sent[..first_mcast].iter().all(|&(from, _)| from == 1),
                "{sent:?}"
            );
            let revisits = net.nodes[0].as_ref().unwrap().stats().held_token_revisits;
            assert_eq!(revisits, 1, "{nodes} nodes, accelerated {accelerated}");
            // A node that does not hold it asks for it.
            net.until_held();
            let t0 = net.now;
            let sent = send(&mut net, n / 2, 3);
            assert_eq!(sent.first(), Some(&(nodes / 2 + 1, HoldCancel)));
            assert!(net.now.0 - t0.0 < by_hops.hold_ms() * 1_000_000 / 4);
        }
    }
}

/// The Accelerated Ring passes the token ahead of a visit's frames: of
/// every visit, or (`accelerate_from_frames`, the daemon's `auto` on 2
/// CPUs) only of one with at least that many frames, a shorter one sending
/// its frames first. Delivery is the same either way.
#[test]
fn the_accelerated_ring_passes_the_token_ahead_of_long_visits() {
    // Node 1's visits, in order: for each of its tokens, how many of the
    // frames it announces (seq at most the token's) were still unsent
    // when it left.
    fn ahead_per_visit(net: &Net) -> Vec<usize> {
        let mine: Vec<(bool, u32)> = net
            .seqs
            .iter()
            .filter(|e| e.0 == 1)
            .map(|e| (e.1, e.2))
            .collect();
        let mut out = Vec::new();
        for (i, &(is_token, seq)) in mine.iter().enumerate() {
            if is_token {
                let later = mine[i + 1..]
                    .iter()
                    .take_while(|e| !e.0)
                    .filter(|e| totem_ring::seq::le(e.1, seq))
                    .count();
                out.push(later);
            }
        }
        out
    }
    for (accelerated, from) in [(false, 0), (true, 0), (true, 10)] {
        let cfg = Config {
            max_messages: 10,
            accelerated,
            accelerate_from_frames: from,
            ..fast()
        };
        let mut net = Net::new(2, cfg);
        assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 200_000));
        net.seqs.clear();
        // About 26 frames: visits of 10, 10 and the rest.
        let msgs: Vec<Vec<u8>> = (0..35u8).map(|k| vec![k; 1000]).collect();
        net.node1_sends_to_pair(&msgs);
        let frames = net.seqs.iter().filter(|e| e.0 == 1 && !e.1).count();
        assert!((21..30).contains(&frames), "{frames} frames");
        let want = match (accelerated, from) {
            (false, _) => vec![0, 0, 0],
            (true, 0) => vec![10, 10, frames - 20],
            _ => vec![10, 10, 0],
        };
        let ahead = ahead_per_visit(&net);
        assert_eq!(
            ahead[..3],
            want[..],
            "accelerated {accelerated}, from {from} frames: {ahead:?}"
        );
    }
}

/// With every member backlogged, a fixed window is shared out: 8 nodes
/// together send at most 24 frames a rotation. The window that grows with
/// the ring lets each one send up to a full visit (`max_messages`).
/// Everything is delivered, in the same order everywhere, either way.
#[test]
fn the_window_grows_with_the_ring_unless_fixed() {
    for per_member in [0, 12] {
        let cfg = Config {
            window_size: 24,
            max_messages: 12,
            window_per_member: per_member,
            ..fast()
        };
        assert_eq!(cfg.window_for(8), if per_member == 0 { 24 } else { 96 });
        let mut net = Net::new(8, cfg);
        let all: Vec<NodeId> = (1..=8).collect();
        assert!(
            net.run_until(|n| n.all_operational_with(&all), 400_000),
            "ring of 8 forms"
        );
        net.visits.clear();
        // 40 one-frame messages queued at each node.
        for i in 0..8usize {
            for k in 0..40usize {
                let msg = vec![(i * 40 + k) as u8; 1000];
                net.nodes[i]
                    .as_mut()
                    .unwrap()
                    .submit(&msg, Guarantee::Agreed)
                    .unwrap();
            }
        }
        assert!(net.run_until(|n| (0..8).all(|i| n.delivered(i).len() == 320), 2_000_000));
        let d0 = net.delivered(0);
        assert!((1..8).all(|i| net.delivered(i) == d0));
        let busiest_visit = net.visits.iter().map(|v| v.0).max().unwrap();
        let busiest_rotation = net.visits.iter().map(|v| v.1).max().unwrap();
        assert_eq!(busiest_visit, 12, "never more than max_messages a visit");
        if per_member == 0 {
            assert!(busiest_rotation <= 24, "a fixed window: {busiest_rotation}");
        } else {
            assert!(
                busiest_rotation > 24 && busiest_rotation <= 96,
                "a window of 8 × 12: {busiest_rotation}"
            );
        }
    }
}

#[test]
fn a_ring_seq_near_the_top_is_refused_and_rings_still_form() {
    // A join, a merge-detect and a frame claiming a ring seq near u64::MAX
    // (a corrupt or hostile sender) are refused as malformed. Taken, the
    // next ring's seq wrapped below the installed one, so that no commit
    // was ever accepted again, and the joins spread it to every node.
    let mut net = Net::new(3, fast());
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    let old = net.nodes[0].as_ref().unwrap().ring_id();
    let top = totem_ring::wire::MAX_RING_SEQ + 1;
    let mut join = Vec::new();
    totem_ring::wire::encode_join(
        &totem_ring::wire::Join {
            sender: 3,
            ring_seq: u64::MAX - 1,
            procs: vec![1, 2, 3],
            fails: vec![],
        },
        &mut join,
    );
    let mut merge = Vec::new();
    totem_ring::wire::encode_ring_packet(
        totem_ring::wire::PacketType::MergeDetect,
        3,
        RingId { rep: 3, seq: top },
        &mut merge,
    );
    let now = net.now;
    let t = net.nodes[0].as_mut().unwrap();
    let before = t.stats().drops[DropReason::Malformed as usize];
    t.handle_datagram(now, Some(3), &join);
    t.handle_datagram(now, Some(3), &merge);
    assert_eq!(t.stats().drops[DropReason::Malformed as usize], before + 2);
    // A real change still makes a ring, with a seq above the old one.
    net.nodes[2] = None;
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2]), 500_000));
    let new = net.nodes[0].as_ref().unwrap().ring_id();
    assert!(
        new.seq > old.seq && new.seq < old.seq + 1_000,
        "{old:?} -> {new:?}"
    );
    // Stable storage that holds such a seq is refused at start.
    let e = Totem::new(1, fast(), top, Instant(0))
        .err()
        .expect("refused");
    assert!(e.to_string().contains("ring seq"), "{e}");
}

#[test]
fn a_join_naming_more_members_than_a_frame_holds_is_refused() {
    // Taken, it would grow the processor set until our own joins and the
    // commit token no longer fit a frame, and the round could not end.
    let cfg = fast();
    let cap = cfg.max_ring_members();
    assert_eq!(
        cap, 49,
        "commit tokens in a 1500-byte MTU less 92 bytes of overhead"
    );
    let mut net = Net::new(3, cfg);
    assert!(net.run_until(|n| n.all_operational_with(&[1, 2, 3]), 200_000));
    let mut join = Vec::new();
    totem_ring::wire::encode_join(
        &totem_ring::wire::Join {
            sender: 3,
            ring_seq: net.nodes[0].as_ref().unwrap().ring_id().seq,
            procs: (1..=cap as u32 + 1).collect(),
            fails: vec![],
        },
        &mut join,
    );
    let now = net.now;
    let t = net.nodes[0].as_mut().unwrap();
    let ring = t.ring_id();
    t.handle_datagram(now, Some(3), &join);
    assert_eq!(t.stats().drops[DropReason::TooManyMembers as usize], 1);
    // Refused before it could start a membership round.
    assert_eq!(t.state(), MemberState::Operational);
    assert_eq!(t.ring_id(), ring);
    // The ring goes on (the refused join left nothing behind).
    for k in 0..10u8 {
        net.nodes[0]
            .as_mut()
            .unwrap()
            .submit(&[k; 100], Guarantee::Agreed)
            .unwrap();
    }
    assert!(net.run_until(
        |n| (0..3).all(|i| n.delivered(i).len() == 10) && n.all_operational_with(&[1, 2, 3]),
        500_000
    ));
    assert_eq!(net.nodes[0].as_ref().unwrap().ring_id(), ring);
}
