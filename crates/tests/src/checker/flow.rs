//! Token and resources: I11 token order, I12 flow control, I13 bounded memory.

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
        // Per rotation: the frames of the last ring_size visits, summed here.
        let (last, sum) = self.rotations.entry(v.ring).or_default();
        last.push_back(burst as u32);
        *sum += burst;
        while last.len() > v.ring_size.max(1) as usize {
            *sum -= u64::from(last.pop_front().unwrap_or(0));
        }
        let window = self.flow.window_for(v.ring_size.max(1) as usize);
        if *sum > u64::from(window) {
            let detail = format!(
                "{} frames in one token rotation of {} visits (window {}; the token said {})",
                sum,
                last.len(),
                window,
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
