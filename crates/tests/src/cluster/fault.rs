//! Network faults, applied at the "switch": nftables rules on the forward
//! hook of the bridge namespace (family `bridge`, table `crh_faults`).
//!
//! Why the bridge and not the nodes: a drop in a node's output hook makes
//! the sender's `sendmsg` fail with EPERM, which no real network does, and
//! a node-side rule cannot drop one copy of a multicast frame without the
//! others. At the bridge every frame is seen once per output port, so
//! "i cannot reach j" is exactly `iifname <port i> oifname <port j> drop`,
//! for unicast, multicast, ARP and NDP alike, and both ends see silence.
//!
//! The whole table is rewritten atomically (`nft -f`) from [`Faults`] on
//! every change, so the rules are always exactly what the state says.

use std::collections::BTreeSet;
use std::fmt::Write;

/// The fault state of a cluster.
#[derive(Debug, Default, Clone)]
pub struct Faults {
    /// Partition group of each node; None when there is no partition.
    pub group: Option<Vec<usize>>,
    /// One-way blocks (from, to).
    pub blocked: BTreeSet<(usize, usize)>,
    /// Loss percentage per node (0 = none), applied to frames the node
    /// sends and to frames it receives.
    pub loss: Vec<u8>,
}

impl Faults {
    pub fn new(nodes: usize) -> Faults {
        Faults {
            group: None,
            blocked: BTreeSet::new(),
            loss: vec![0; nodes],
        }
    }

    /// Sets a partition: each node in `groups[k]` gets group k; a node in
    /// no group is alone in a group of its own.
    pub fn set_partition(&mut self, nodes: usize, groups: &[&[usize]]) -> Result<(), String> {
        let mut group = vec![usize::MAX; nodes];
        for (k, members) in groups.iter().enumerate() {
            for &i in *members {
                if i >= nodes {
                    return Err(format!("partition names node {i}, the cluster has {nodes}"));
                }
                if group[i] != usize::MAX {
                    return Err(format!("partition names node {i} twice"));
                }
                group[i] = k;
            }
        }
        let unnamed = group.iter_mut().filter(|g| **g == usize::MAX);
        for (alone, g) in (groups.len()..).zip(unnamed) {
            *g = alone;
        }
        self.group = Some(group);
        Ok(())
    }

    /// True when frames from `from` to `to` are dropped outright.
    pub fn cut(&self, from: usize, to: usize) -> bool {
        let split = self.group.as_ref().is_some_and(|g| g[from] != g[to]);
        split || self.blocked.contains(&(from, to))
    }

    /// The nft script that replaces the table with this state; `port(i)`
    /// names node i's bridge port.
    pub fn render(&self, port: impl Fn(usize) -> String) -> String {
        let n = self.loss.len();
        let mut s = String::new();
        // Declaring then deleting makes the delete succeed whether or not
        // the table exists; the whole script is one transaction.
        s.push_str("table bridge crh_faults\ndelete table bridge crh_faults\n");
        s.push_str("table bridge crh_faults {\n\tchain forward {\n");
        s.push_str("\t\ttype filter hook forward priority -300; policy accept;\n");
        for from in 0..n {
            for to in (0..n).filter(|&to| to != from && self.cut(from, to)) {
                let _ = writeln!(
                    s,
                    "\t\tiifname \"{}\" oifname \"{}\" drop",
                    port(from),
                    port(to)
                );
            }
        }
        for (i, &pct) in self.loss.iter().enumerate().filter(|(_, &p)| p > 0) {
            for dir in ["iifname", "oifname"] {
                let _ = writeln!(
                    s,
                    "\t\t{dir} \"{}\" numgen random mod 100 < {pct} drop",
                    port(i)
                );
            }
        }
        s.push_str("\t}\n}\n");
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn partition_rules_cut_both_ways_between_groups_only() {
        let mut f = Faults::new(4);
        f.set_partition(4, &[&[0, 1], &[2]]).unwrap();
        assert!(!f.cut(0, 1) && !f.cut(1, 0));
        assert!(f.cut(0, 2) && f.cut(2, 0));
        assert!(f.cut(3, 2) && f.cut(3, 0), "node 3 is alone");
        assert!(f.set_partition(4, &[&[0], &[0]]).is_err());
        assert!(f.set_partition(4, &[&[7]]).is_err());
        let s = f.render(|i| format!("p{i}"));
        assert!(s.contains("iifname \"p0\" oifname \"p2\" drop"), "{s}");
        assert!(!s.contains("iifname \"p0\" oifname \"p1\""), "{s}");
    }

    #[test]
    fn block_is_one_way_and_loss_both_directions() {
        let mut f = Faults::new(2);
        f.blocked.insert((0, 1));
        f.loss[1] = 30;
        let s = f.render(|i| format!("p{i}"));
        assert!(s.contains("iifname \"p0\" oifname \"p1\" drop"), "{s}");
        assert!(!s.contains("iifname \"p1\" oifname \"p0\""), "{s}");
        assert!(
            s.contains("iifname \"p1\" numgen random mod 100 < 30 drop"),
            "{s}"
        );
        assert!(
            s.contains("oifname \"p1\" numgen random mod 100 < 30 drop"),
            "{s}"
        );
    }
}
