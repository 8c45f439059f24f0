//! Safe decoding of kernel-written socket addresses and control messages,
//! and encoding of the UDP_SEGMENT control message.

use std::mem::size_of;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Room for one `UDP_SEGMENT`/`UDP_GRO` control message (`CMSG_SPACE(4)`
/// rounded up generously).
pub(crate) const CMSG_BUF: usize = 64;
pub(crate) const UDP_SEGMENT: libc::c_int = 103;
pub(crate) const UDP_GRO: libc::c_int = 104;

/// Decodes a `sockaddr_in` / `sockaddr_in6` from raw bytes.
pub(crate) fn decode(b: &[u8]) -> Option<SocketAddr> {
    if b.len() < 2 {
        return None;
    }
    let family = u16::from_ne_bytes([b[0], b[1]]) as libc::c_int;
    match family {
        libc::AF_INET if b.len() >= 8 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let ip = Ipv4Addr::new(b[4], b[5], b[6], b[7]);
            Some(SocketAddr::V4(SocketAddrV4::new(ip, port)))
        }
        libc::AF_INET6 if b.len() >= 28 => {
            let port = u16::from_be_bytes([b[2], b[3]]);
            let flow = u32::from_be_bytes([b[4], b[5], b[6], b[7]]);
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[8..24]);
            let scope = u32::from_ne_bytes([b[24], b[25], b[26], b[27]]);
            Some(SocketAddr::V6(SocketAddrV6::new(
                Ipv6Addr::from(a),
                port,
                flow,
                scope,
            )))
        }
        _ => None,
    }
}

fn cmsg_align(n: usize) -> usize {
    let a = size_of::<usize>();
    (n + a - 1) & !(a - 1)
}

/// Walks control messages in `ctl` and returns the UDP_GRO segment size
/// if present. Malformed control data yields `None`, never a panic.
pub(crate) fn gro_segment(ctl: &[u8]) -> Option<u16> {
    let hdr = size_of::<libc::cmsghdr>();
    let mut off = 0usize;
    while off + hdr <= ctl.len() {
        let mut lenb = [0u8; size_of::<usize>()];
        lenb.copy_from_slice(&ctl[off..off + size_of::<usize>()]);
        let len = usize::from_ne_bytes(lenb);
        let lo = off + size_of::<usize>();
        let level = i32::from_ne_bytes([ctl[lo], ctl[lo + 1], ctl[lo + 2], ctl[lo + 3]]);
        let ty = i32::from_ne_bytes([ctl[lo + 4], ctl[lo + 5], ctl[lo + 6], ctl[lo + 7]]);
        // The loop condition guarantees `off + hdr <= ctl.len()`.
        if len < hdr || len > ctl.len() - off {
            return None;
        }
        if level == libc::SOL_UDP && ty == UDP_GRO && len >= hdr + 4 {
            let d = off + cmsg_align(hdr);
            if d + 4 <= ctl.len() {
                let v = i32::from_ne_bytes([ctl[d], ctl[d + 1], ctl[d + 2], ctl[d + 3]]);
                return u16::try_from(v).ok().filter(|&s| s > 0);
            }
        }
        off += cmsg_align(len);
    }
    None
}

/// Writes a `UDP_SEGMENT` control message into `buf`; returns its length.
pub(crate) fn encode_gso(buf: &mut [u8; CMSG_BUF], seg: u16) -> usize {
    let hdr = size_of::<libc::cmsghdr>();
    let len = cmsg_align(hdr) + size_of::<u16>();
    let space = cmsg_align(len);
    buf[..space].fill(0);
    buf[..size_of::<usize>()].copy_from_slice(&len.to_ne_bytes());
    let lo = size_of::<usize>();
    buf[lo..lo + 4].copy_from_slice(&libc::SOL_UDP.to_ne_bytes());
    buf[lo + 4..lo + 8].copy_from_slice(&UDP_SEGMENT.to_ne_bytes());
    let d = cmsg_align(hdr);
    buf[d..d + 2].copy_from_slice(&seg.to_ne_bytes());
    space
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gso_cmsg_round_trip() {
        let mut b = [0u8; CMSG_BUF];
        let n = encode_gso(&mut b, 1400);
        // Reuse the GRO walker by patching the type.
        let lo = size_of::<usize>() + 4;
        b[lo..lo + 4].copy_from_slice(&UDP_GRO.to_ne_bytes());
        let d = cmsg_align(size_of::<libc::cmsghdr>());
        b[..size_of::<usize>()].copy_from_slice(&(d + 4).to_ne_bytes());
        b[d..d + 4].copy_from_slice(&1400i32.to_ne_bytes());
        assert_eq!(gro_segment(&b[..n.max(d + 4)]), Some(1400));
    }

    #[test]
    fn huge_cmsg_len_is_rejected() {
        let mut b = [0u8; 32];
        b[..size_of::<usize>()].copy_from_slice(&usize::MAX.to_ne_bytes());
        assert_eq!(gro_segment(&b), None);
    }

    #[test]
    fn garbage_never_panics() {
        for len in 0..80 {
            for fill in [0u8, 0xff, 0x11] {
                let v = vec![fill; len];
                let _ = gro_segment(&v);
                let _ = decode(&v);
            }
        }
    }
}
