//! Which node am I, and which address do I bind? Decided from the host's interface addresses,
//! which the daemon passes in, so that this stays pure and testable.

use std::net::IpAddr;

use super::build::nodeid_from_addr;
use super::types::{Config, Transport};
use super::ConfigError;

/// The local end of the ring, as [`Config::resolve_bind`] found it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalBinding {
    /// This node's id.
    pub nodeid: u32,
    /// The local address to bind (a host address, never a network address).
    pub bind_addr: IpAddr,
    /// The UDP port (link 0's `mcastport`).
    pub port: u16,
    /// The multicast group for transport udp; `None` for udpu.
    pub mcast_addr: Option<IpAddr>,
    /// Multicast TTL.
    pub ttl: u8,
    /// This node's index in [`Config::nodes`]; `None` in the multicast form.
    pub node_index: Option<usize>,
}

impl Config {
    /// Finds the local node and the address to bind, given the addresses of this host's
    /// interfaces (the daemon reads them with getifaddrs).
    ///
    /// * With a nodelist: the node whose `ring0_addr` is one of `local_addrs`; if none is, the
    ///   node whose id is `totem { nodeid }`. When both name a node they must agree.
    /// * Without (the multicast form): link 0's `bindnetaddr` is either a local address itself,
    ///   or a network address such as 192.168.1.0; then the local address inside that network
    ///   is used. As only addresses are passed in (no netmasks), the network is taken to be
    ///   the bind address with its trailing zero bits as the host part (192.168.1.0 → /24,
    ///   10.0.0.0 → /7); exactly one local address must lie in it. The node id is
    ///   `totem { nodeid }`, or the bound IPv4 address as a 32-bit number (bit 31 cleared with
    ///   `clear_node_high_bit`), as Corosync and OpenAIS derive it.
    pub fn resolve_bind(&self, local_addrs: &[IpAddr]) -> Result<LocalBinding, ConfigError> {
        let link0 = self.totem.link0().ok_or_else(|| {
            ConfigError::new(&self.file, self.totem.line, "no interface for link 0")
        })?;
        let mcast_addr = match self.totem.transport {
            Transport::Udp => link0.mcastaddr,
            Transport::Udpu => None,
        };
        let (nodeid, bind_addr, node_index) = if self.nodes.is_empty() {
            let (nodeid, addr) = self.resolve_multicast_form(local_addrs)?;
            (nodeid, addr, None)
        } else {
            let index = self.find_local_node(local_addrs)?;
            let node = &self.nodes[index];
            (node.nodeid, node.ring0_addr(), Some(index))
        };
        Ok(LocalBinding {
            nodeid,
            bind_addr,
            port: link0.mcastport,
            mcast_addr,
            ttl: link0.ttl,
            node_index,
        })
    }

    fn find_local_node(&self, local_addrs: &[IpAddr]) -> Result<usize, ConfigError> {
        let err = |line: u32, reason: String| ConfigError::new(&self.file, line, reason);
        let by_addr: Vec<usize> = (0..self.nodes.len())
            .filter(|&i| local_addrs.contains(&self.nodes[i].ring0_addr()))
            .collect();
        if by_addr.len() > 1 {
            let second = &self.nodes[by_addr[1]];
            return Err(err(
                second.line,
                format!(
                    "several nodelist entries have a local address ({} and {}); which node is this one?",
                    self.nodes[by_addr[0]].ring0_addr(),
                    second.ring0_addr()
                ),
            ));
        }
        let by_id = self
            .totem
            .nodeid
            .and_then(|id| self.nodes.iter().position(|n| n.nodeid == id));
        match (by_addr.first(), by_id, self.totem.nodeid) {
            (Some(&a), _, Some(id)) if self.nodes[a].nodeid != id => Err(err(
                self.nodes[a].line,
                format!(
                    "totem nodeid {id} does not match the nodelist entry for the local address {} (nodeid {})",
                    self.nodes[a].ring0_addr(),
                    self.nodes[a].nodeid
                ),
            )),
            (Some(&a), _, _) => Ok(a),
            (None, Some(i), _) => Ok(i),
            (None, None, Some(id)) => Err(err(
                self.totem.line,
                format!("totem nodeid {id} is not in the nodelist, and no nodelist address is local"),
            )),
            (None, None, None) => Err(err(
                self.nodelist_line,
                format!(
                    "none of the nodelist addresses is an address of this host (local addresses: {})",
                    list(local_addrs)
                ),
            )),
        }
    }

    fn resolve_multicast_form(&self, local_addrs: &[IpAddr]) -> Result<(u32, IpAddr), ConfigError> {
        let link0 = self.totem.link0().expect("checked by the caller");
        let err = |reason: String| ConfigError::new(&self.file, link0.line, reason);
        let bind = link0
            .bindnetaddr
            .ok_or_else(|| err("no bindnetaddr for link 0".to_string()))?;
        let addr = if local_addrs.contains(&bind) {
            bind
        } else {
            let inside: Vec<IpAddr> = local_addrs
                .iter()
                .copied()
                .filter(|&a| in_implied_network(bind, a))
                .collect();
            match inside.as_slice() {
                [one] => *one,
                [] => {
                    return Err(err(format!(
                        "no local address is in the network of bindnetaddr {bind} (local addresses: {})",
                        list(local_addrs)
                    )))
                }
                many => {
                    return Err(err(format!(
                        "several local addresses are in the network of bindnetaddr {bind} ({}); set bindnetaddr to the address to use",
                        list(many)
                    )))
                }
            }
        };
        let nodeid = match self.totem.nodeid {
            Some(id) => id,
            None => match nodeid_from_addr(addr, self.totem.clear_node_high_bit) {
                Some(0) | None => {
                    return Err(err(format!(
                        "cannot derive a node id from {addr}; set totem {{ nodeid }}"
                    )))
                }
                Some(id) => id,
            },
        };
        Ok((nodeid, addr))
    }
}

fn list(addrs: &[IpAddr]) -> String {
    if addrs.is_empty() {
        return "none".to_string();
    }
    addrs
        .iter()
        .map(|a| a.to_string())
        .collect::<Vec<_>>()
        .join(", ")
}

/// Whether `addr` lies in the network `net`, whose host part is its trailing zero bits.
fn in_implied_network(net: IpAddr, addr: IpAddr) -> bool {
    match (net, addr) {
        (IpAddr::V4(n), IpAddr::V4(a)) => {
            let (n, a) = (u32::from(n), u32::from(a));
            let host_bits = n.trailing_zeros(); // 32 for 0.0.0.0: everything matches
            host_bits >= 32 || (n >> host_bits) == (a >> host_bits)
        }
        (IpAddr::V6(n), IpAddr::V6(a)) => {
            let (n, a) = (u128::from(n), u128::from(a));
            let host_bits = n.trailing_zeros();
            host_bits >= 128 || (n >> host_bits) == (a >> host_bits)
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn implied_network() {
        assert!(in_implied_network(ip("192.168.1.0"), ip("192.168.1.77")));
        assert!(!in_implied_network(ip("192.168.1.0"), ip("192.168.2.77")));
        assert!(in_implied_network(ip("10.0.0.0"), ip("11.200.1.1")));
        assert!(!in_implied_network(ip("10.0.0.0"), ip("12.0.0.1")));
        assert!(in_implied_network(ip("0.0.0.0"), ip("1.2.3.4")));
        assert!(!in_implied_network(ip("192.168.1.0"), ip("fe80::1")));
        assert!(in_implied_network(ip("fd00:1::"), ip("fd00:1::5")));
    }
}
