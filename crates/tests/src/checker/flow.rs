//! Token and resources: I11 token order, I12 flow control, I13 bounded memory.

use std::collections::BTreeMap;

use totem_ring::{seq, NodeId, QueueBounds, RingId};

use super::{ring_str, Checker};

/// A `TokenVisit` event.
#[derive(Clone, Copy, Debug)]
pub struct Visit {
    pub ring: RingId,
    pub token_seq: u32,
    pub new_frames: u32,
    pub retransmits: u32,
    pub ring_size: u32,
    pub rotation_frames: u32,
}

/// The token visits reported on one ring, by token_seq (one per hop), so
/// that a rotation is the visits of `ring_size` consecutive hops whatever
/// order their events come in: a node that leaves its events unpolled
/// reports its visits late (the simulator's holders), and a node that
/// crashes never reports some.
#[derive(Default)]
pub(super) struct Rotations {
    /// Frames broadcast, by token_seq counted on from the first one seen
    /// (so that a wrap of the 32-bit token_seq keeps the order).
    bursts: BTreeMap<u64, u32>,
    /// The highest token_seq seen, as reported and as counted here.
    top: Option<(u32, u64)>,
}

/// Visits further back than this behind the newest are forgotten.
const ROTATION_HORIZON: u64 = 1 << 16;

impl Rotations {
    /// Records a visit and returns the sum and the visit count of a
    /// rotation through it that broadcast more than `window` frames.
    fn record(
        &mut self,
        token_seq: u32,
        burst: u32,
        size: u32,
        window: u32,
    ) -> Option<(u64, usize)> {
        let at = match self.top {
            None => 1u64 << 40,
            Some((t, at)) => at.wrapping_add_signed(i64::from(token_seq.wrapping_sub(t) as i32)),
        };
        if self.top.is_none_or(|(_, top)| at > top) {
            self.top = Some((token_seq, at));
        }
        self.bursts.insert(at, burst);
        let top = self.top.map_or(at, |(_, t)| t);
        while let Some((&k, _)) = self.bursts.first_key_value() {
            if k + ROTATION_HORIZON >= top {
                break;
            }
            self.bursts.pop_first();
        }
        // Every rotation that holds this visit: ending at it or at one of
        // the size - 1 hops after it.
        let size = u64::from(size);
        (at..at + size).find_map(|end| {
            let visits = self.bursts.range(end + 1 - size..=end);
            let count = visits.clone().count();
            let sum: u64 = visits.map(|(_, &b)| u64::from(b)).sum();
            (sum > u64::from(window)).then_some((sum, count))
        })
    }
}

impl Checker {
    pub fn token_visit(&mut self, p: NodeId, v: Visit) {
        self.counts.token_visits += 1;
        let words = [
            8,
            u64::from(p),
            v.ring.rep.into(),
            v.ring.seq,
            v.token_seq.into(),
            v.new_frames.into(),
            v.retransmits.into(),
        ];
        self.hash_event(&words);
        // I11: token_seq strictly increases per ring at each node.
        let n = self.node(p);
        if let Some((r, s)) = n.token.replace((v.ring, v.token_seq)) {
            if r == v.ring && !seq::gt(v.token_seq, s) {
                let detail = format!(
                    "token_seq {} after {s} on ring {}",
                    v.token_seq,
                    ring_str(v.ring)
                );
                return self.fail("I11", p, detail);
            }
        }
        // I12: per visit ≤ max_messages, per rotation ≤ the ring's window
        // (window_size, or more on a large ring: Config::window_for).
        let burst = u64::from(v.new_frames) + u64::from(v.retransmits);
        if burst > u64::from(self.max_messages) {
            let detail = format!(
                "broadcast {} new + {} retransmitted frames in one token visit (max_messages {})",
                v.new_frames, v.retransmits, self.max_messages
            );
            return self.fail("I12", p, detail);
        }
        // Per rotation: the frames of any ring_size consecutive visits.
        let size = v.ring_size.max(1);
        let window = self.flow.window_for(size as usize);
        let r = self.rotations.entry(v.ring).or_default();
        if let Some((sum, visits)) = r.record(v.token_seq, burst as u32, size, window) {
            let detail = format!(
                "{sum} frames in one token rotation of {size} visits ({visits} of them reported; window {window}; the token said {})",
                v.rotation_frames
            );
            self.fail("I12", p, detail);
        }
    }

    /// I13: every bounded queue within its bound (after each input of p).
    pub fn queue_bounds(&mut self, p: NodeId, q: QueueBounds) {
        // One partial message per origin, on the current and the previous ring.
        let reassembly = u64::from(self.max_message_size) * 2 * self.nodes.len() as u64;
        let checks = [
            (
                "receive/retransmit store",
                u64::from(q.store_len),
                u64::from(self.retransmit_queue),
            ),
            (
                "previous ring's store",
                u64::from(q.old_store_len),
                u64::from(self.retransmit_queue),
            ),
            (
                "send queue (messages)",
                u64::from(q.send_queue_msgs),
                u64::from(self.send_queue_messages),
            ),
            (
                "send queue (bytes)",
                u64::from(q.send_queue_bytes),
                u64::from(self.send_queue_bytes),
            ),
            (
                "reassembly buffers (bytes)",
                u64::from(q.reassembly_bytes),
                reassembly,
            ),
        ];
        if let Some((what, len, cap)) = checks.into_iter().find(|(_, len, cap)| len > cap) {
            self.fail("I13", p, format!("{what} holds {len}, bound {cap}"));
        }
    }
}
