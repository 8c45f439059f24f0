//! Configuration changes: I2 self-inclusion, I3 alternation, I4 agreement on
//! configurations, and the bookkeeping at configuration boundaries that I6,
//! I7 and I10 need.

use totem_ring::{ConfigKind, NodeId, RingId};

use super::{ring_str, Checker, ConfId, Installer};

fn subset(a: &[NodeId], b: &[NodeId]) -> bool {
    a.iter().all(|x| b.contains(x))
}

impl Checker {
    /// `conf(p, kind, members, ring)`; for a transitional `ring` is the new ring.
    pub fn config_change(&mut self, p: NodeId, kind: ConfigKind, members: &[NodeId], ring: RingId) {
        let mut members = members.to_vec();
        members.sort_unstable();
        let before = members.len();
        members.dedup();
        let words: Vec<u64> = [
            5,
            u64::from(p),
            (kind == ConfigKind::Regular) as u64,
            ring.rep.into(),
            ring.seq,
        ]
        .into_iter()
        .chain(members.iter().map(|&m| u64::from(m)))
        .collect();
        self.hash_event(&words);
        self.log(
            p,
            format_args!("conf {kind:?} ring {} members {members:?}", ring_str(ring)),
        );
        if before != members.len() {
            self.fail(
                "I2",
                p,
                format!("{kind:?} configuration lists a member twice"),
            );
        }
        // I2 self-inclusion.
        if !members.contains(&p) {
            self.fail(
                "I2",
                p,
                format!(
                    "installs {kind:?} {} {members:?} without itself",
                    ring_str(ring)
                ),
            );
        }
        match kind {
            ConfigKind::Transitional => self.transitional(p, members, ring),
            ConfigKind::Regular => self.regular(p, members, ring),
        }
    }

    fn transitional(&mut self, p: NodeId, members: Vec<NodeId>, new: RingId) {
        self.counts.transitional_configs += 1;
        let n = self.node(p);
        let old = n.last_regular.as_ref().map(|(r, _)| *r);
        let old_members = n.last_regular.as_ref().map(|(_, m)| m.clone());
        let max_seq = n.max_ring_seq;
        // I3: a transitional configuration is followed by a regular one,
        // never by another transitional.
        if let Some((r, _)) = &n.pending_trans {
            let detail = format!(
                "transitional into {} right after the transitional into {}",
                ring_str(new),
                ring_str(*r)
            );
            return self.fail("I3", p, detail);
        }
        // I3: Trans ⊆ previous Regular (a node's implicit first configuration is {p}).
        match &old_members {
            Some(om) if !subset(&members, om) => self.fail(
                "I3",
                p,
                format!(
                    "transitional {members:?} into {} not within previous regular {om:?}",
                    ring_str(new)
                ),
            ),
            None if members != [p] => self.fail(
                "I3",
                p,
                format!("transitional {members:?} before any regular configuration is not {{{p}}}"),
            ),
            _ => {}
        }
        if max_seq.is_some_and(|s| new.seq <= s) {
            self.fail(
                "I3",
                p,
                format!(
                    "transitional into ring {} does not increase ring seq past {max_seq:?}",
                    ring_str(new)
                ),
            );
        }
        // I4: everyone moving from `old` to `new` reports the same set, and
        // that set is exactly who came to `new` from `old`.
        match self.trans_groups.get(&(new, old)) {
            Some(g) if *g != members => {
                let g = g.clone();
                self.fail(
                    "I4",
                    p,
                    format!(
                        "transitional ({:?} → {}) is {members:?}, another member reported {g:?}",
                        old.map(ring_str),
                        ring_str(new)
                    ),
                );
            }
            Some(_) => {}
            None => {
                let from = self.came_from.get(&new);
                let mut bad = None;
                for &m in &members {
                    if let Some(o) = from.and_then(|f| f.get(&m)) {
                        if *o != old {
                            bad = Some(format!(
                                "member {m} came to {} from {:?}, not {:?}",
                                ring_str(new),
                                o.map(ring_str),
                                old.map(ring_str)
                            ));
                        }
                    }
                }
                for (q, o) in from.into_iter().flatten() {
                    if *o == old && !members.contains(q) {
                        bad = Some(format!(
                            "omits {q}, which also came from {:?}",
                            old.map(ring_str)
                        ));
                    }
                }
                if let Some(b) = bad {
                    self.fail(
                        "I4",
                        p,
                        format!(
                            "transitional ({:?} → {}) {members:?}: {b}",
                            old.map(ring_str),
                            ring_str(new)
                        ),
                    );
                }
                self.trans_groups.insert((new, old), members.clone());
            }
        }
        self.came_to(p, new, old);
        let conf = ConfId::Trans { old, new };
        self.enter(p, conf);
        self.node(p).pending_trans = Some((new, members));
    }

    fn regular(&mut self, p: NodeId, members: Vec<NodeId>, ring: RingId) {
        self.counts.regular_configs += 1;
        let n = self.node(p);
        let inc = n.inc;
        let old = n.last_regular.as_ref().map(|(r, _)| *r);
        let pending = n.pending_trans.take();
        let max_seq = n.max_ring_seq;
        // I3 alternation.
        match (&old, &pending) {
            (Some(o), None) => self.fail(
                "I3",
                p,
                format!(
                    "regular {} after regular {} without a transitional configuration",
                    ring_str(ring),
                    ring_str(*o)
                ),
            ),
            (_, Some((tnew, tm))) => {
                if *tnew != ring {
                    self.fail(
                        "I3",
                        p,
                        format!(
                            "transitional into {} followed by regular {}",
                            ring_str(*tnew),
                            ring_str(ring)
                        ),
                    );
                } else if !subset(tm, &members) {
                    self.fail(
                        "I3",
                        p,
                        format!("transitional {tm:?} not within next regular {members:?}"),
                    );
                }
            }
            (None, None) => {}
        }
        if let Some(s) = max_seq {
            if ring.seq <= s {
                self.fail(
                    "I3",
                    p,
                    format!("installs ring {} after ring seq {s} (ring seqs must increase, also across restarts)", ring_str(ring)),
                );
            }
        }
        // I4: one membership per ring.
        let info = self.rings.entry(ring).or_default();
        info.installers.push(Installer {
            node: p,
            inc,
            finished: false,
        });
        let other = info.members.get_or_insert_with(|| members.clone());
        if *other != members {
            let m = other.clone();
            self.fail(
                "I4",
                p,
                format!(
                    "regular {} is {members:?} here, {m:?} elsewhere",
                    ring_str(ring)
                ),
            );
        }
        // A node that came to `ring` without a transitional (its first
        // regular configuration) is in no one's transitional into `ring`.
        if pending.is_none() {
            self.came_to(p, ring, old);
        }
        // I7 and I10 for the regular configuration p is done with.
        self.own_delivered_check(p, ring);
        if let Some(o) = old {
            self.finish_ring(p, inc, o);
        }
        self.enter(p, ConfId::Regular(ring));
        let n = self.node(p);
        n.last_regular = Some((ring, members));
        n.max_ring_seq = Some(ring.seq);
    }

    /// I6 bookkeeping: p leaves its current configuration for `next`.
    fn enter(&mut self, p: NodeId, next: ConfId) {
        let n = self.node(p);
        let prev = n.cur.replace(next);
        let (count, sum) = std::mem::take(&mut n.digest);
        let Some(prev) = prev else { return };
        match self.transitions.get(&(prev, next)) {
            None => {
                self.transitions.insert((prev, next), (count, sum, p));
            }
            Some(&(c, s, q)) if (c, s) != (count, sum) => self.fail(
                "I6",
                p,
                format!("delivered {count} messages in {prev} before {next}; node {q} delivered {c} (or a different set)"),
            ),
            Some(_) => {}
        }
    }

    /// I4: p came to ring `new` from regular ring `old`; p is in exactly
    /// the transitional configurations into `new` whose old ring is `old`.
    fn came_to(&mut self, p: NodeId, new: RingId, old: Option<RingId>) {
        let bad: Vec<_> = self
            .trans_groups
            .range((new, None)..)
            .take_while(|((r, _), _)| *r == new)
            .filter(|((_, o), m)| (*o == old) != m.contains(&p))
            .map(|((_, o), m)| (*o, m.clone()))
            .collect();
        for (o, m) in bad {
            self.fail(
                "I4",
                p,
                format!(
                    "came to {} from {:?}, but the transitional from {:?} is {m:?}",
                    ring_str(new),
                    old.map(ring_str),
                    o.map(ring_str)
                ),
            );
        }
        self.came_from.entry(new).or_default().insert(p, old);
    }
}
