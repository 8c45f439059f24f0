//! Differential fuzz of the service engine: two engines of a one-node ring
//! get the same stream of client requests (valid requests of every service,
//! mutated ones and random bytes, from connections that come and go; odd
//! seeds with votequorum as the quorum provider, every third seed with a
//! connection that refuses its events and is then disconnected) and
//! the same deliveries (their own multicasts, mutated copies of them and
//! random ones from a node that is not a member); one engine gets every
//! delivery as one buffer (`Engine::deliver`), the other in random pieces
//! (`Engine::deliver_parts`, as Totem hands over large messages). Neither
//! may panic, and both must say exactly the same things to their clients
//! and to the ring, in the same order.
//!
//! Quick mode runs with `cargo test`. Long mode:
//! `FUZZ_CASES=10000000 cargo test -p services --release --test fuzz_engine -- --ignored --nocapture`
//! (operations split across the available cores; the count is printed).

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use services::proto::{
    cfg as pf, cmap as pm, cpg as pc, evs as pe, quorum as pq, service, votequorum as pv,
};
use services::{
    ConfigKind, ConnId, Control, Engine, EngineConfig, Guarantee, NodeId, Output, ReplyTo, RingId,
    SendRoom,
};

/// Everything an engine said, in order.
#[derive(Debug, PartialEq)]
enum Said {
    Multicast(Guarantee, Vec<u8>),
    Respond(ConnId, ReplyTo, Vec<u8>),
    Event(ConnId, u16, u16, Vec<u8>),
    Disconnect(ConnId, &'static str),
    Control(Control),
}

#[derive(Default)]
struct Rec {
    /// Multicasts not yet delivered back (the one-node ring's bus).
    queue: VecDeque<(Guarantee, Vec<u8>)>,
    said: Vec<Said>,
    /// Events to this connection are refused (as the runtime refuses them
    /// to a client too slow to take them), which the run loop answers with
    /// a disconnection, as the runtime does.
    refuse_to: Option<ConnId>,
    refused: Vec<ConnId>,
}

impl Output for Rec {
    fn multicast(&mut self, guarantee: Guarantee, parts: &[&[u8]]) {
        let m = parts.concat();
        self.said.push(Said::Multicast(guarantee, m.clone()));
        self.queue.push_back((guarantee, m));
    }
    fn respond(&mut self, conn: ConnId, to: ReplyTo, parts: &[&[u8]]) {
        self.said.push(Said::Respond(conn, to, parts.concat()));
    }
    fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool {
        self.said
            .push(Said::Event(conn, service, kind, parts.concat()));
        if self.refuse_to == Some(conn) {
            self.refused.push(conn);
            return false;
        }
        true
    }
    fn disconnect(&mut self, conn: ConnId, why: &'static str) {
        self.said.push(Said::Disconnect(conn, why));
    }
    fn send_room(&self) -> SendRoom {
        SendRoom {
            queued_msgs: self.queue.len() as u32,
            cap_msgs: 1000,
            queued_bytes: self.queue.iter().map(|(_, m)| m.len() as u32).sum(),
            cap_bytes: 1 << 24,
        }
    }
    fn control(&mut self, req: Control) {
        self.said.push(Said::Control(req));
    }
}

const ME: NodeId = 1;

/// Engine `whole` gets deliveries as one buffer, `pieces` in pieces.
struct Pair {
    whole: (Engine, Rec),
    pieces: (Engine, Rec),
    g: ChaCha8Rng,
    /// Multicasts seen, to deliver mutated copies of.
    seen: Vec<Vec<u8>>,
}

impl Pair {
    fn new(seed: u64) -> Pair {
        let ring = RingId { rep: ME, seq: 4 };
        // Odd seeds run votequorum as the quorum provider.
        let cfg = || {
            let mut c = EngineConfig::new(ME);
            c.quorum.votequorum = seed % 2 == 1;
            c
        };
        // Seeds 2, 5, 8, … refuse every event to connection 7.
        let rec = || Rec {
            refuse_to: (seed % 3 == 2).then_some(ConnId(7)),
            ..Rec::default()
        };
        let mut p = Pair {
            whole: (Engine::new(cfg()), rec()),
            pieces: (Engine::new(cfg()), rec()),
            g: ChaCha8Rng::seed_from_u64(seed),
            seen: Vec::new(),
        };
        for (eng, out) in [&mut p.whole, &mut p.pieces] {
            eng.config_change(ConfigKind::Regular, &[ME], &[], &[ME], ring, out);
        }
        p.settle();
        assert!(p.whole.0.synced() && p.pieces.0.synced());
        p
    }

    /// One delivery to both engines: whole to one, in random pieces to
    /// the other.
    fn deliver(&mut self, from: NodeId, g: Guarantee, m: &[u8]) {
        let (eng, out) = &mut self.whole;
        eng.deliver(from, g, m, out);
        let mut parts: Vec<&[u8]> = Vec::new();
        let mut rest = m;
        while !rest.is_empty() {
            let n = match self.g.gen_range(0..4) {
                0 => 1,
                1 => self.g.gen_range(1..=300),
                _ => self.g.gen_range(1..=4000),
            }
            .min(rest.len());
            parts.push(&rest[..n]);
            rest = &rest[n..];
            if self.g.gen_bool(0.05) {
                parts.push(&[]);
            }
        }
        let (eng, out) = &mut self.pieces;
        eng.deliver_parts(from, g, &parts, out);
    }

    /// Delivers every queued multicast back (both engines must have queued
    /// the same ones: what they said is compared after every step).
    fn settle(&mut self) {
        for _ in 0..10_000 {
            let Some((g, m)) = self.whole.1.queue.pop_front() else {
                assert!(self.pieces.1.queue.is_empty());
                return;
            };
            let (g2, m2) = self
                .pieces
                .1
                .queue
                .pop_front()
                .expect("the same multicasts");
            assert_eq!((g, &m), (g2, &m2));
            if self.seen.len() < 64 {
                self.seen.push(m.clone());
            } else {
                let i = self.g.gen_range(0..self.seen.len());
                self.seen[i] = m.clone();
            }
            self.deliver(ME, g, &m);
            self.compare();
        }
        panic!("the engines kept multicasting");
    }

    fn compare(&mut self) {
        assert_eq!(self.whole.1.said, self.pieces.1.said);
        self.whole.1.said.clear();
        self.pieces.1.said.clear();
    }

    fn both(&mut self, f: impl Fn(&mut Engine, &mut Rec)) {
        for (eng, out) in [&mut self.whole, &mut self.pieces] {
            f(eng, out);
        }
        self.compare();
    }
}

fn bytes(g: &mut ChaCha8Rng, max: usize) -> Vec<u8> {
    let n = if g.gen_bool(0.1) {
        g.gen_range(0..=max)
    } else {
        g.gen_range(0..=max.min(48))
    };
    (0..n).map(|_| g.gen()).collect()
}

/// A valid request of some service (its service id, kind and payload).
fn request(g: &mut ChaCha8Rng) -> (u16, u16, Vec<u8>) {
    let mut v = Vec::new();
    let names: [&[u8]; 3] = [b"g", b"other", b""];
    let name = names[g.gen_range(0..3)];
    let msg = bytes(g, 20_000);
    let (svc, kind) = match g.gen_range(0..7) {
        6 => {
            if g.gen_bool(0.5) {
                let r = match g.gen_range(0..6) {
                    0 => pv::Request::Init,
                    1 => pv::Request::GetInfo {
                        nodeid: g.gen_range(0..3),
                    },
                    2 => pv::Request::SetExpected {
                        expected: [0, 1, 2, u32::MAX][g.gen_range(0..4)],
                    },
                    3 => pv::Request::SetVotes {
                        nodeid: g.gen_range(0..3),
                        votes: [0, 1, 2, u32::MAX][g.gen_range(0..4)],
                    },
                    4 => pv::Request::TrackStart {
                        context: g.gen(),
                        flags: g.gen_range(0..4),
                    },
                    _ => pv::Request::TrackStop,
                };
                (service::VOTEQUORUM, r.encode(&mut v))
            } else {
                let r = match g.gen_range(0..4) {
                    0 => pq::Request::Init {
                        model: g.gen_range(0..2),
                    },
                    1 => pq::Request::GetQuorate,
                    2 => pq::Request::TrackStart {
                        flags: g.gen_range(0..4),
                    },
                    _ => pq::Request::TrackStop,
                };
                (service::QUORUM, r.encode(&mut v))
            }
        }
        0..=2 => {
            let r = match g.gen_range(0..13) {
                12 => {
                    let total = g.gen_range(msg.len() as u32..=msg.len() as u32 + 64);
                    pc::Request::McastPartialAsync {
                        guarantee: g.gen_range(0..4),
                        part: g.gen_range(1..=3),
                        total,
                        msg: &msg,
                    }
                }
                0 => pc::Request::Init {
                    model: g.gen_range(0..3),
                    flags: g.gen_range(0..2),
                },
                1 => pc::Request::Join { group: name },
                2 => pc::Request::Leave { group: name },
                3..=5 => pc::Request::Mcast {
                    guarantee: g.gen_range(0..4),
                    msg: &msg,
                },
                6 => pc::Request::McastAsync {
                    guarantee: g.gen_range(0..4),
                    msg: &msg,
                },
                7 => pc::Request::MembershipGet { group: name },
                8 => pc::Request::Iteration {
                    kind: g.gen_range(0..4),
                    group: name,
                },
                9 => pc::Request::LocalGet,
                10 => pc::Request::FlowControlState,
                _ => pc::Request::Finalize,
            };
            (service::CPG, r.encode(&mut v))
        }
        3 => {
            let grp = [g.gen_range(0..3u8); pe::GROUP_LEN];
            let r = match g.gen_range(0..5) {
                0 => pe::Request::Join { groups: vec![grp] },
                1 => pe::Request::Leave { groups: vec![grp] },
                2 => pe::Request::McastJoined {
                    guarantee: g.gen_range(0..4),
                    msg: &msg,
                },
                3 => pe::Request::McastGroups {
                    guarantee: g.gen_range(0..4),
                    groups: vec![grp, [7; pe::GROUP_LEN]],
                    msg: &msg,
                },
                _ => pe::Request::MembershipGet,
            };
            (service::EVS, r.encode(&mut v))
        }
        4 => {
            let keys: [&[u8]; 3] = [b"fuzz.a", b"totem.token", b"runtime.x"];
            let key = keys[g.gen_range(0..3)];
            let bytes: Vec<u8> = (0..g.gen_range(0..40)).map(|_| g.gen()).collect();
            let r = match g.gen_range(0..12) {
                10 => pm::Request::Set {
                    key,
                    value: pm::Value::Binary(bytes.clone()),
                },
                11 => pm::Request::Dec { key },
                0 => pm::Request::Init {
                    map: g.gen_range(0..2),
                },
                1 => pm::Request::Get { key },
                2 => pm::Request::Set {
                    key,
                    value: pm::Value::U32(g.gen()),
                },
                3 => pm::Request::Set {
                    key,
                    value: pm::Value::Str("v".repeat(g.gen_range(0..40))),
                },
                4 => pm::Request::Delete { key },
                5 => pm::Request::Inc { key },
                6 => pm::Request::IterInit { prefix: key },
                7 => pm::Request::IterNext {
                    iter: g.gen_range(0..4),
                },
                8 => pm::Request::TrackAdd {
                    key,
                    track_type: g.gen_range(0..8),
                },
                _ => pm::Request::TrackDelete {
                    track: g.gen_range(0..4),
                },
            };
            (service::CMAP, r.encode(&mut v))
        }
        _ => {
            let reason: Vec<u8> = (0..g.gen_range(0..600)).map(|_| g.gen()).collect();
            let r = match g.gen_range(0..12) {
                6 => pf::Request::KillNode {
                    nodeid: g.gen_range(0..3),
                    reason: &reason,
                },
                7 => pf::Request::TryShutdown {
                    flags: g.gen_range(0..3),
                },
                8 => pf::Request::ReplytoShutdown {
                    reply: g.gen_range(0..3),
                },
                9 => pf::Request::ReloadConfig,
                10 => pf::Request::ReopenLogFiles,
                11 => pf::Request::RingReenable,
                0 => pf::Request::RingStatusGet,
                1 => pf::Request::LocalGet,
                2 => pf::Request::NodeStatusGet {
                    nodeid: g.gen_range(0..3),
                    version: g.gen_range(0..2),
                },
                3 => pf::Request::GetNodeAddrs {
                    nodeid: g.gen_range(0..3),
                },
                4 => pf::Request::Trackstart {
                    flags: g.gen_range(0..2),
                },
                _ => pf::Request::Trackstop,
            };
            (service::CFG, r.encode(&mut v))
        }
    };
    (svc, kind, v)
}

fn mutate(g: &mut ChaCha8Rng, v: &mut Vec<u8>) {
    for _ in 0..g.gen_range(1..4) {
        match g.gen_range(0..3) {
            0 if !v.is_empty() => {
                let i = g.gen_range(0..v.len());
                v[i] ^= g.gen::<u8>() | 1;
            }
            1 => v.truncate(g.gen_range(0..=v.len())),
            _ => v.extend((0..g.gen_range(1..16)).map(|_| g.gen::<u8>())),
        }
    }
}

/// Disconnections for refused events, over all runs (long mode prints it).
static REFUSED: AtomicU64 = AtomicU64::new(0);

/// `ops` random operations on a fresh pair.
fn run(ops: u64, seed: u64) {
    let mut p = Pair::new(seed);
    let mut open: Vec<u64> = Vec::new();
    for _ in 0..ops {
        match p.g.gen_range(0..20) {
            0 => {
                let conn = p.g.gen_range(1..8);
                if !open.contains(&conn) {
                    open.push(conn);
                    let pid = p.g.gen_range(1..4);
                    p.both(|e, _| e.connect(ConnId(conn), pid, 0, 0));
                    // Most connections open CPG and join the group at once
                    // (else few multicasts would find a member to go to).
                    if p.g.gen_bool(0.7) {
                        let mut v = Vec::new();
                        let k = pc::Request::Init { model: 0, flags: 0 }.encode(&mut v);
                        p.both(|e, o| e.request(ConnId(conn), service::CPG, k, 1, &v, o));
                        v.clear();
                        let k = pc::Request::Join { group: b"g" }.encode(&mut v);
                        p.both(|e, o| e.request(ConnId(conn), service::CPG, k, 2, &v, o));
                        p.settle();
                    }
                }
            }
            1 if !open.is_empty() => {
                let conn = open.swap_remove(p.g.gen_range(0..open.len()));
                p.both(|e, o| e.disconnect(ConnId(conn), o));
            }
            2 | 3 => {
                // A member's message, or one from a node that is not one,
                // mutated or not.
                let from = if p.g.gen_bool(0.7) { ME } else { 2 };
                let mut m = if !p.seen.is_empty() && p.g.gen_bool(0.8) {
                    p.seen[p.g.gen_range(0..p.seen.len())].clone()
                } else {
                    bytes(&mut p.g, 600)
                };
                if p.g.gen_bool(0.5) {
                    mutate(&mut p.g, &mut m);
                }
                let g = if p.g.gen_bool(0.5) {
                    Guarantee::Agreed
                } else {
                    Guarantee::Safe
                };
                p.deliver(from, g, &m);
                p.compare();
            }
            _ => {
                let conn = if !open.is_empty() && p.g.gen_bool(0.9) {
                    open[p.g.gen_range(0..open.len())]
                } else {
                    p.g.gen_range(1..8)
                };
                let (mut svc, mut kind, mut payload) = request(&mut p.g);
                match p.g.gen_range(0..10) {
                    0 => {
                        svc = p.g.gen_range(0..16);
                        kind = p.g.gen_range(0..16);
                        payload = bytes(&mut p.g, 300);
                    }
                    1..=3 => mutate(&mut p.g, &mut payload),
                    _ => {}
                }
                let id = p.g.gen();
                p.both(|e, o| e.request(ConnId(conn), svc, kind, id, &payload, o));
            }
        }
        p.settle();
        // A connection that refused an event is disconnected.
        let mut refused = std::mem::take(&mut p.whole.1.refused);
        assert_eq!(refused, std::mem::take(&mut p.pieces.1.refused));
        refused.dedup();
        REFUSED.fetch_add(refused.len() as u64, Ordering::Relaxed);
        for conn in refused {
            open.retain(|&c| c != conn.0);
            p.both(|e, o| e.disconnect(conn, o));
            p.settle();
        }
    }
}

#[test]
fn deliveries_in_pieces_say_what_deliveries_whole_say_and_nothing_panics() {
    for seed in 0..4 {
        run(3_000, seed);
    }
}

#[test]
#[ignore = "long mode: set FUZZ_CASES"]
fn fuzz_long() {
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    let done = AtomicU64::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let done = &done;
            s.spawn(move || {
                let n = cases / threads + u64::from(t < cases % threads);
                let mut left = n;
                let mut round = 0;
                while left > 0 {
                    let k = left.min(20_000);
                    run(k, 0xe9 + t * 1_000_003 + round);
                    left -= k;
                    round += 1;
                }
                done.fetch_add(n, Ordering::Relaxed);
            });
        }
    });
    println!(
        "fuzz_ops={} refused_disconnects={}",
        done.load(Ordering::Relaxed),
        REFUSED.load(Ordering::Relaxed)
    );
}
