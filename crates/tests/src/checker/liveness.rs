//! I14: at the end of the healed phase every live node is in the same
//! regular configuration, made of all live nodes; once the send queues have
//! had time to drain on the perfect network, they are empty, each node has
//! delivered every message it submitted, and every message sent on the
//! final ring was delivered by every member.

use totem_ring::{MemberState, NodeId, RingId};

use super::{ring_str, Checker, ConfId};

/// A live node's state at the end of a run.
#[derive(Clone, Debug)]
pub struct FinalNode {
    pub id: NodeId,
    pub state: MemberState,
    pub ring: RingId,
    pub members: Vec<NodeId>,
    pub send_queue_msgs: u32,
}

impl Checker {
    /// End of the healed phase: one regular configuration of all live nodes.
    pub fn converged(&mut self, live: &[FinalNode]) {
        if self.converged_check(live, false) {
            self.converged_ring = live.first().map(|n| n.ring);
        }
    }

    /// End of the run: still converged on the same ring (nothing changes
    /// membership on a perfect network), queues drained, everything delivered.
    pub fn finish(&mut self, live: &[FinalNode]) {
        if !self.converged_check(live, true) {
            return;
        }
        if let (Some(was), Some(n)) = (self.converged_ring, live.first()) {
            if n.ring != was {
                let detail = format!(
                    "membership changed on the healed network: ring {} became {}",
                    ring_str(was),
                    ring_str(n.ring)
                );
                return self.fail("I14", n.id, detail);
            }
        }
        self.delivered_everything(live);
    }

    fn converged_check(&mut self, live: &[FinalNode], drained: bool) -> bool {
        let ids: Vec<NodeId> = live.iter().map(|n| n.id).collect();
        let Some(first) = live.first() else {
            return true;
        };
        for n in live {
            let mut members = n.members.clone();
            members.sort_unstable();
            let installed = self.nodes[n.id as usize - 1].cur;
            let problem = if n.state != MemberState::Operational {
                Some(format!("in state {:?}", n.state))
            } else if n.ring != first.ring {
                Some(format!(
                    "on ring {} while node {} is on {}",
                    ring_str(n.ring),
                    first.id,
                    ring_str(first.ring)
                ))
            } else if members != ids {
                Some(format!("has members {members:?}, live nodes are {ids:?}"))
            } else if installed != Some(ConfId::Regular(n.ring)) {
                Some(format!(
                    "last installed {}, core says ring {}",
                    installed.map_or("nothing".into(), |c| c.to_string()),
                    ring_str(n.ring)
                ))
            } else if drained && n.send_queue_msgs != 0 {
                Some(format!(
                    "still has {} messages in its send queue",
                    n.send_queue_msgs
                ))
            } else {
                None
            };
            if let Some(what) = problem {
                let when = if drained {
                    "after draining"
                } else {
                    "after the healed phase"
                };
                self.fail("I14", n.id, format!("not converged {when}: {what}"));
                return false;
            }
        }
        true
    }

    fn delivered_everything(&mut self, live: &[FinalNode]) {
        let Some(first) = live.first() else { return };
        let ring = first.ring;
        let sent = self.rings.get(&ring).map_or(0, |r| r.sent);
        for p in live.iter().map(|n| n.id) {
            let n = &self.nodes[p as usize - 1];
            let own_missing = n
                .accepted
                .iter()
                .find(|&&id| !self.delivered.contains(&(p, n.inc, id)))
                .copied();
            let got = if n.cursor.ring == Some(ring) {
                n.cursor.count
            } else {
                0
            };
            if let Some(id) = own_missing {
                return self.fail("I14", p, format!("never delivered its own message {id:#x}"));
            }
            if got != sent {
                let detail = format!(
                    "delivered {got} of the {sent} messages sent on the final ring {}",
                    ring_str(ring)
                );
                return self.fail("I14", p, detail);
            }
        }
    }
}
