//! Each checker fires on a hand-made trace that breaks its property, and a
//! well-behaved trace passes them all.

use totem_ring::{
    Config, ConfigKind, Guarantee, MemberState, MsgHandle, NodeId, QueueBounds, RingId,
};

use super::{Checker, FinalNode, Visit};
use crate::sim::payload;

const R1: RingId = RingId { rep: 1, seq: 4 };
const R2: RingId = RingId { rep: 1, seq: 8 };

struct T {
    c: Checker,
    next: u64,
    buf: Vec<u8>,
}

impl T {
    /// Nodes 1..=n started and in Regular(R1) with all of them.
    fn new(n: NodeId) -> T {
        // Corosync's windows (50 frames a rotation, 17 a visit): the flow
        // control cases below count frames against them.
        let cfg = Config {
            window_size: 50,
            max_messages: 17,
            window_per_member: 0,
            ..Config::default()
        };
        T::with(n, &cfg)
    }

    fn with(n: NodeId, cfg: &Config) -> T {
        let mut c = Checker::new(n, cfg, false);
        let all: Vec<NodeId> = (1..=n).collect();
        for p in 1..=n {
            c.restart(p);
            c.config_change(p, ConfigKind::Regular, &all, R1);
        }
        T {
            c,
            next: 0,
            buf: Vec::new(),
        }
    }

    /// p submits a message and it is sent on `ring` at `seq`.
    fn send(&mut self, p: NodeId, g: Guarantee, ring: RingId, seq: u32) -> u64 {
        self.next += 1;
        let id = payload::msg_id(p, self.next);
        self.c.submitted(p, id, g, 40);
        self.c.sent(p, MsgHandle(self.next), Some(id), ring, seq);
        id
    }

    fn deliver(&mut self, p: NodeId, id: u64, g: Guarantee, ring: RingId, seq: u32) {
        payload::build(id, 40, &mut self.buf);
        let data = std::mem::take(&mut self.buf);
        self.c
            .deliver(p, &data, payload::id_sender(id), ring, seq, g);
        self.buf = data;
    }

    fn conf(&mut self, p: NodeId, kind: ConfigKind, members: &[NodeId], ring: RingId) {
        self.c.config_change(p, kind, members, ring);
    }

    fn violated(&self) -> Option<&'static str> {
        self.c.violation().map(|v| v.invariant)
    }
}

const A: Guarantee = Guarantee::Agreed;
const S: Guarantee = Guarantee::Safe;
const TR: ConfigKind = ConfigKind::Transitional;
const RE: ConfigKind = ConfigKind::Regular;

#[test]
fn a_good_trace_passes() {
    let mut t = T::new(2);
    let m1 = t.send(1, A, R1, 1);
    let m2 = t.send(2, S, R1, 2);
    for p in [1, 2] {
        t.deliver(p, m1, A, R1, 1);
        t.deliver(p, m2, S, R1, 2);
    }
    t.c.token_visit(
        1,
        Visit {
            ring: R1,
            token_seq: 1,
            new_frames: 1,
            retransmits: 0,
            ring_size: 2,
            rotation_frames: 2,
        },
    );
    t.c.queue_bounds(
        1,
        QueueBounds {
            store_cap: 16384,
            send_queue_msgs_cap: 1,
            send_queue_bytes_cap: 1,
            ..QueueBounds::default()
        },
    );
    let m3 = t.send(1, A, R1, 3);
    for p in [1, 2] {
        t.conf(p, TR, &[1, 2], R2);
        t.deliver(p, m3, A, R1, 3);
        t.conf(p, RE, &[1, 2], R2);
    }
    let m4 = t.send(2, A, R2, 1);
    t.deliver(1, m4, A, R2, 1);
    t.deliver(2, m4, A, R2, 1);
    let fin = |id| FinalNode {
        id,
        state: MemberState::Operational,
        ring: R2,
        members: vec![1, 2],
        send_queue_msgs: 0,
    };
    t.c.finish(&[fin(1), fin(2)]);
    assert_eq!(t.c.violation(), None);
}

#[test]
fn i1_duplicate_and_corrupt_deliveries() {
    let mut t = T::new(2);
    let m = t.send(1, A, R1, 1);
    t.deliver(2, m, A, R1, 1);
    t.deliver(2, m, A, R1, 1);
    assert_eq!(t.violated(), Some("I1"));

    let mut t = T::new(2);
    let m = t.send(1, A, R1, 1);
    payload::build(m, 40, &mut t.buf);
    t.buf[30] ^= 0xff;
    let data = t.buf.clone();
    t.c.deliver(2, &data, 1, R1, 1, A);
    assert_eq!(t.violated(), Some("I1"));
}

#[test]
fn i2_self_inclusion() {
    let mut t = T::new(2);
    t.conf(1, TR, &[2], R2);
    assert_eq!(t.violated(), Some("I2"));
}

#[test]
fn i3_missing_transitional_and_reused_ring_seq() {
    let mut t = T::new(2);
    t.conf(1, RE, &[1, 2], R2);
    assert_eq!(t.violated(), Some("I3"));

    let mut t = T::new(2);
    t.c.crash(1, false);
    t.c.restart(1);
    t.conf(1, RE, &[1], RingId { rep: 1, seq: 4 });
    assert_eq!(t.violated(), Some("I3"));
}

#[test]
fn i4_disagreement_on_members() {
    let mut t = T::new(3);
    t.conf(1, TR, &[1, 2], R2);
    t.conf(1, RE, &[1, 2, 3], R2);
    t.conf(2, TR, &[2], R2);
    assert_eq!(t.violated(), Some("I4"));
}

#[test]
fn i5_old_message_in_new_regular() {
    let mut t = T::new(2);
    let m = t.send(2, A, R1, 1);
    t.conf(1, TR, &[1, 2], R2);
    t.conf(1, RE, &[1, 2], R2);
    t.deliver(1, m, A, R1, 1);
    assert_eq!(t.violated(), Some("I5"));
}

#[test]
fn i6_different_sets_before_the_same_transition() {
    let mut t = T::new(2);
    let m = t.send(1, A, R1, 1);
    t.deliver(1, m, A, R1, 1);
    t.conf(1, TR, &[1, 2], R2);
    t.conf(2, TR, &[1, 2], R2);
    assert_eq!(t.violated(), Some("I6"));
}

#[test]
fn i7_own_message_lost() {
    let mut t = T::new(1);
    t.send(1, A, R1, 1);
    t.conf(1, TR, &[1], R2);
    t.conf(1, RE, &[1], R2);
    assert_eq!(t.violated(), Some("I7"));
}

#[test]
fn i8_gap_in_regular_but_not_in_transitional() {
    let mut t = T::new(3);
    let _m1 = t.send(3, A, R1, 1);
    let m2 = t.send(2, A, R1, 2);
    t.deliver(1, m2, A, R1, 2);
    assert_eq!(t.violated(), Some("I8"));

    let mut t = T::new(3);
    let _m1 = t.send(3, A, R1, 1);
    let m2 = t.send(2, A, R1, 2);
    t.conf(1, TR, &[1, 2], R2);
    t.deliver(1, m2, A, R1, 2);
    assert_eq!(
        t.violated(),
        None,
        "gaps are allowed in a transitional configuration"
    );
}

#[test]
fn i9_fifo_in_transitional() {
    let mut t = T::new(2);
    let _m1 = t.send(2, A, R1, 1);
    let m2 = t.send(2, A, R1, 2);
    t.conf(1, TR, &[1], R2);
    t.deliver(1, m2, A, R1, 2);
    assert_eq!(t.violated(), Some("I9"));
}

#[test]
fn i9_causal_in_transitional() {
    let mut t = T::new(3);
    let m1 = t.send(3, A, R1, 1);
    t.deliver(2, m1, A, R1, 1);
    let m2 = t.send(2, A, R1, 2);
    t.conf(1, TR, &[1, 2], R2);
    t.deliver(1, m2, A, R1, 2);
    assert_eq!(t.violated(), Some("I9"));
}

#[test]
fn i10_safe_message_missing_at_a_member() {
    let mut t = T::new(2);
    let m = t.send(1, S, R1, 1);
    t.deliver(1, m, S, R1, 1);
    t.conf(2, TR, &[2], R2);
    t.conf(2, RE, &[2], R2);
    assert_eq!(t.violated(), Some("I10"));
}

#[test]
fn i11_i12_i13() {
    let v = |token_seq, new_frames, rotation_frames| Visit {
        ring: R1,
        token_seq,
        new_frames,
        retransmits: 0,
        ring_size: 2,
        rotation_frames,
    };
    let mut t = T::new(2);
    t.c.token_visit(1, v(5, 1, 1));
    t.c.token_visit(1, v(5, 1, 1));
    assert_eq!(t.violated(), Some("I11"));
    let mut t = T::new(2);
    t.c.token_visit(1, v(5, 18, 18));
    assert_eq!(t.violated(), Some("I12"));
    // Two visits of a two-node ring: 15 + 15 + 15 frames stay within a
    // window of 50 only while the oldest visit drops out of the rotation.
    let mut t = T::new(2);
    t.c.token_visit(1, v(5, 15, 15));
    t.c.token_visit(2, v(6, 15, 30));
    t.c.token_visit(1, v(7, 15, 30));
    assert_eq!(t.violated(), None);
    let mut t = T::new(3);
    let v3 = |token_seq, new_frames| Visit {
        ring_size: 3,
        ..v(token_seq, new_frames, 0)
    };
    t.c.token_visit(1, v3(5, 17));
    t.c.token_visit(2, v3(6, 17));
    t.c.token_visit(3, v3(7, 17));
    assert_eq!(
        t.violated(),
        Some("I12"),
        "51 frames in one rotation, counted by the checker"
    );
    // A window that grows with the ring (20 frames a member: 60 for three)
    // admits those 51 frames, and no more than 60.
    let scaled = Config {
        window_size: 50,
        max_messages: 17,
        window_per_member: 20,
        ..Config::default()
    };
    let mut t = T::with(3, &scaled);
    for (i, p) in [1, 2, 3].into_iter().enumerate() {
        t.c.token_visit(p, v3(5 + i as u32, 17));
    }
    assert_eq!(t.violated(), None, "51 frames within a window of 3 × 20");
    t.c.token_visit(1, v3(8, 17));
    t.c.token_visit(2, v3(9, 17));
    t.c.token_visit(3, v3(10, 17));
    assert_eq!(
        t.violated(),
        None,
        "each rotation of 51 frames is within 60"
    );
    // 16 a member: a 4-node ring's window is 64 frames; 68 are too many.
    let per16 = Config {
        window_per_member: 16,
        ..scaled
    };
    let v4 = |token_seq, new_frames| Visit {
        ring_size: 4,
        ..v(token_seq, new_frames, 0)
    };
    let mut t = T::with(4, &per16);
    for (i, p) in [1, 2, 3, 4].into_iter().enumerate() {
        t.c.token_visit(p, v4(5 + i as u32, 16));
    }
    assert_eq!(t.violated(), None, "64 frames within 4 × 16");
    let mut t = T::with(4, &per16);
    for (i, p) in [1, 2, 3, 4].into_iter().enumerate() {
        t.c.token_visit(p, v4(5 + i as u32, 17));
    }
    assert_eq!(
        t.violated(),
        Some("I12"),
        "68 frames in a rotation of a 4-node ring over its window of 4 × 16"
    );
    let mut t = T::new(2);
    let cfg = totem_ring::Config::default();
    t.c.queue_bounds(
        1,
        QueueBounds {
            send_queue_msgs: cfg.send_queue_messages + 1,
            ..QueueBounds::default()
        },
    );
    assert_eq!(t.violated(), Some("I13"));
}

#[test]
fn i14_not_converged_or_undelivered() {
    let fin = |id, members: Vec<NodeId>| FinalNode {
        id,
        state: MemberState::Operational,
        ring: R1,
        members,
        send_queue_msgs: 0,
    };
    let mut t = T::new(2);
    t.c.finish(&[fin(1, vec![1, 2]), fin(2, vec![2])]);
    assert_eq!(t.violated(), Some("I14"));

    let mut t = T::new(2);
    let m = t.send(1, A, R1, 1);
    t.deliver(1, m, A, R1, 1);
    t.c.finish(&[fin(1, vec![1, 2]), fin(2, vec![1, 2])]);
    assert_eq!(t.violated(), Some("I14"));
}
