//! Sends and deliveries: I1 integrity, I5 delivery inside the configuration,
//! I6 failure atomicity (digest per configuration), I7 self-delivery, I8
//! total order, I9 causal/FIFO order, I10 safe delivery.

use totem_ring::{seq, Guarantee, MsgHandle, NodeId, RingId};

use super::{mix, ring_str, Checker, ConfId, Cursor, SendInfo};
use crate::sim::payload::{self, MsgId};

impl Checker {
    /// `send(p, m, R, seq)`: p's message `id` (None: the handle was never
    /// returned by `submit`) got its place on `ring`.
    pub fn sent(&mut self, p: NodeId, handle: MsgHandle, id: Option<MsgId>, ring: RingId, sq: u32) {
        self.counts.sent += 1;
        self.hash_event(&[
            6,
            u64::from(p),
            handle.0,
            id.unwrap_or(u64::MAX),
            ring.rep.into(),
            ring.seq,
            sq.into(),
        ]);
        self.log(
            p,
            format_args!("send {handle:?} {id:?} ring {} seq {sq}", ring_str(ring)),
        );
        let Some(id) = id else {
            return self.fail("I1", p, format!("Sent event for unknown handle {handle:?}"));
        };
        if self.msgs.get(&id).is_some_and(|m| m.send.is_some()) {
            return self.fail("I1", p, format!("message {id:#x} sent twice"));
        }
        let frontier = match &self.node(p).cursor {
            c if c.ring == Some(ring) => c.prefix,
            _ => 0,
        };
        let info = self.rings.entry(ring).or_default();
        // I8: the ring's order is (seq, then per-sender handle order), and
        // one seq belongs to one frame of one origin.
        if let Some((ls, lp, lh)) = info.last_key {
            let ok = seq::gt(sq, ls) || (sq == ls && lp == p && handle.0 > lh);
            if !ok {
                let detail = format!(
                    "ring {} sequence: message at seq {sq} from {p} (handle {}) after seq {ls} from {lp} (handle {lh})",
                    ring_str(ring),
                    handle.0
                );
                return self.fail("I8", p, detail);
            }
        }
        info.last_key = Some((sq, p, handle.0));
        let rank = info.sent;
        info.sent += 1;
        let ord = info.per_sender.entry(p).or_insert(0);
        let ordinal = *ord;
        *ord += 1;
        if let Some(m) = self.msgs.get_mut(&id) {
            m.send = Some(SendInfo {
                ring,
                seq: sq,
                rank,
                ordinal,
                frontier,
            });
        }
        self.node(p).own_undelivered.insert(id, ring);
    }

    /// `deliver(p, m, C, seq, kind)`.
    pub fn deliver(
        &mut self,
        p: NodeId,
        data: &[u8],
        sender: NodeId,
        ring: RingId,
        sq: u32,
        g: Guarantee,
    ) {
        self.counts.delivered += 1;
        let parsed = payload::parse(data);
        let idw = *parsed.as_ref().unwrap_or(&u64::MAX);
        self.hash_event(&[
            7,
            u64::from(p),
            idw,
            sender.into(),
            ring.rep.into(),
            ring.seq,
            sq.into(),
            (g == Guarantee::Safe) as u64,
        ]);
        self.log(
            p,
            format_args!(
                "deliver {idw:#x} from {sender} ring {} seq {sq} {g:?}",
                ring_str(ring)
            ),
        );
        // I1 integrity.
        let id = match parsed {
            Ok(id) => id,
            Err(e) => {
                return self.fail(
                    "I1",
                    p,
                    format!(
                        "delivered a corrupt message from {sender} ({e}, {} bytes)",
                        data.len()
                    ),
                )
            }
        };
        if payload::id_sender(id) != sender {
            return self.fail(
                "I1",
                p,
                format!(
                    "message {id:#x} of node {} delivered as sent by {sender}",
                    payload::id_sender(id)
                ),
            );
        }
        let Some(m) = self.msgs.get(&id) else {
            return self.fail(
                "I1",
                p,
                format!("delivered message {id:#x} that was never submitted"),
            );
        };
        let Some(s) = m.send else {
            return self.fail(
                "I1",
                p,
                format!("delivered message {id:#x} before its send event"),
            );
        };
        if m.guarantee != g || m.len as usize != data.len() {
            let detail = format!(
                "message {id:#x} submitted as {:?}/{} bytes delivered as {g:?}/{} bytes",
                m.guarantee,
                m.len,
                data.len()
            );
            return self.fail("I1", p, detail);
        }
        if s.ring != ring || s.seq != sq {
            let detail = format!(
                "message {id:#x} sent at ring {} seq {} delivered as ring {} seq {sq}",
                ring_str(s.ring),
                s.seq,
                ring_str(ring)
            );
            return self.fail("I1", p, detail);
        }
        let inc = self.node(p).inc;
        if !self.delivered.insert((p, inc, id)) {
            return self.fail("I1", p, format!("delivered message {id:#x} twice"));
        }
        // I5: only in Regular(R) or the transitional right after R.
        let cur = self.node(p).cur;
        let regular = match cur {
            Some(ConfId::Regular(r)) if r == s.ring => true,
            Some(ConfId::Trans { old: Some(o), .. }) if o == s.ring => false,
            _ => {
                let detail = format!(
                    "message {id:#x} sent in ring {} delivered in {}",
                    ring_str(s.ring),
                    cur.map_or("no configuration".to_string(), |c| c.to_string())
                );
                return self.fail("I5", p, detail);
            }
        };
        self.order_check(p, id, s, regular);
        let n = self.node(p);
        n.digest.0 += 1;
        n.digest.1 = n.digest.1.wrapping_add(mix(id));
        if sender == p {
            n.own_undelivered.remove(&id);
        }
        if g == Guarantee::Safe && regular {
            self.safe_delivered(p, id, s.ring);
        }
    }

    /// I8 total order and I9 FIFO/causal order of p's deliveries on a ring.
    fn order_check(&mut self, p: NodeId, id: MsgId, s: SendInfo, regular: bool) {
        let sender = payload::id_sender(id);
        let c = &mut self.node(p).cursor;
        if c.ring != Some(s.ring) {
            *c = Cursor {
                ring: Some(s.ring),
                ..Cursor::default()
            };
        }
        let (prefix, last, from_sender) = (
            c.prefix,
            c.last_rank,
            c.per_sender.get(&sender).copied().unwrap_or(0),
        );
        c.count += 1;
        if s.rank == c.prefix && c.count == c.prefix + 1 {
            c.prefix += 1;
        }
        c.last_rank = Some(s.rank);
        *c.per_sender.entry(sender).or_insert(0) += 1;
        let r = ring_str(s.ring);
        if regular && s.rank != prefix {
            let detail = format!(
                "in regular {r} delivered message {id:#x} at position {} (seq {}) after only the first {prefix} messages of the ring",
                s.rank, s.seq
            );
            self.fail("I8", p, detail);
        } else if last.is_some_and(|l| s.rank <= l) {
            let detail = format!(
                "on ring {r} delivered message {id:#x} at position {} after position {last:?}",
                s.rank
            );
            self.fail("I8", p, detail);
        } else if s.ordinal != from_sender {
            let detail = format!(
                "on ring {r} delivered {sender}'s message #{} ({id:#x}) after only {from_sender} earlier ones of {sender}",
                s.ordinal
            );
            self.fail("I9", p, detail);
        } else if s.frontier > prefix {
            let detail = format!(
                "on ring {r} delivered {id:#x}, which {sender} sent after delivering the first {} messages of the ring, having delivered only the first {prefix}",
                s.frontier
            );
            self.fail("I9", p, detail);
        }
    }

    /// I10: m was delivered as safe in Regular(ring): every member that
    /// installed the ring and is already done with it must have delivered it.
    fn safe_delivered(&mut self, p: NodeId, id: MsgId, ring: RingId) {
        let m = self.msgs.get_mut(&id).expect("checked by the caller");
        if std::mem::replace(&mut m.safe_in_regular, true) {
            return;
        }
        let info = self.rings.get_mut(&ring).expect("sent on it");
        info.safe_msgs.push(id);
        let missing = info
            .installers
            .iter()
            .find(|i| i.finished && !self.delivered.contains(&(i.node, i.inc, id)))
            .map(|i| i.node);
        if let Some(q) = missing {
            let detail = format!(
                "safe message {id:#x} delivered in regular {}, but member {q} moved on without it",
                ring_str(ring)
            );
            self.fail("I10", p, detail);
        }
    }

    /// I10: p (incarnation `inc`) is done with `ring`: it must have delivered
    /// every message anyone delivered as safe in Regular(ring).
    pub(super) fn finish_ring(&mut self, p: NodeId, inc: u32, ring: RingId) {
        let Some(info) = self.rings.get_mut(&ring) else {
            return;
        };
        if let Some(i) = info
            .installers
            .iter_mut()
            .find(|i| i.node == p && i.inc == inc)
        {
            i.finished = true;
        }
        let missing = info
            .safe_msgs
            .iter()
            .find(|&&id| !self.delivered.contains(&(p, inc, id)))
            .copied();
        if let Some(id) = missing {
            let detail = format!("moved on from regular {} without safe message {id:#x} that another member delivered there", ring_str(ring));
            self.fail("I10", p, detail);
        }
    }

    /// I7: on installing Regular(`next`), p has delivered every message it
    /// sent on earlier rings.
    pub(super) fn own_delivered_check(&mut self, p: NodeId, next: RingId) {
        let stale = self
            .node(p)
            .own_undelivered
            .iter()
            .find(|(_, &r)| r != next)
            .map(|(&id, &r)| (id, r));
        if let Some((id, r)) = stale {
            let detail = format!("installs regular {} without having delivered its own message {id:#x} sent in ring {}", ring_str(next), ring_str(r));
            self.fail("I7", p, detail);
        }
    }
}
