//! The host's interface addresses (getifaddrs), for the daemon to find which
//! nodelist entry or bindnetaddr network is this node.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// One address of one interface.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LocalAddr {
    pub interface: String,
    pub addr: IpAddr,
    /// Prefix length of the interface's network (from its netmask).
    pub prefix: u8,
    /// IPv6 scope id (the interface index) for link-local addresses.
    pub scope_id: u32,
}

fn ip_of(sa: *const libc::sockaddr) -> Option<(IpAddr, u32)> {
    if sa.is_null() {
        return None;
    }
    // SAFETY: getifaddrs hands out either null (checked) or a pointer to a
    // sockaddr whose family field tells its real type; we read the family
    // first and only then the matching struct, which the kernel sized.
    unsafe {
        match i32::from((*sa).sa_family) {
            libc::AF_INET => {
                let s = &*(sa as *const libc::sockaddr_in);
                Some((
                    IpAddr::V4(Ipv4Addr::from(u32::from_be(s.sin_addr.s_addr))),
                    0,
                ))
            }
            libc::AF_INET6 => {
                let s = &*(sa as *const libc::sockaddr_in6);
                Some((
                    IpAddr::V6(Ipv6Addr::from(s.sin6_addr.s6_addr)),
                    s.sin6_scope_id,
                ))
            }
            _ => None,
        }
    }
}

fn prefix_of(mask: Option<(IpAddr, u32)>) -> u8 {
    match mask {
        Some((IpAddr::V4(m), _)) => u32::from(m).count_ones() as u8,
        Some((IpAddr::V6(m), _)) => u128::from(m).count_ones() as u8,
        None => 0,
    }
}

/// Every IPv4 and IPv6 address of every interface that is up.
pub fn local_addresses() -> io::Result<Vec<LocalAddr>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: `head` is a valid out-pointer; freed below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` walks the list getifaddrs built; each node stays
        // valid until freeifaddrs, and ifa_name is a NUL-terminated string.
        let ifa = unsafe { &*cur };
        let up = ifa.ifa_flags & libc::IFF_UP as libc::c_uint != 0;
        if let (true, Some((addr, scope_id))) = (up, ip_of(ifa.ifa_addr)) {
            // SAFETY: see above; ifa_name is non-null for every entry.
            let name = unsafe { std::ffi::CStr::from_ptr(ifa.ifa_name) };
            out.push(LocalAddr {
                interface: name.to_string_lossy().into_owned(),
                addr,
                prefix: prefix_of(ip_of(ifa.ifa_netmask)),
                scope_id,
            });
        }
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once; no
    // reference into the list outlives this point (names were copied).
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_is_listed() {
        let all = local_addresses().unwrap();
        assert!(
            all.iter()
                .any(|a| a.addr == IpAddr::V4(Ipv4Addr::LOCALHOST) && a.prefix == 8),
            "{all:?}"
        );
    }
}
