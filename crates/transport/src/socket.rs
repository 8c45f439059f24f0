//! Socket set-up with socket2: the unicast socket (bound to the interface
//! address, sends everything, receives unicast) and, in multicast mode, a
//! receive socket bound to the group.

use std::io;
use std::mem::size_of;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

use crate::config::{Mode, TransportConfig};
use crate::error::sock_err;
use crate::sockaddr::{UDP_GRO, UDP_SEGMENT};
use crate::TransportError;

pub(crate) struct Sockets {
    /// Index 0: unicast (send + receive); index 1 (multicast mode): group.
    pub list: Vec<Socket>,
    pub gso: bool,
    pub gro: bool,
}

fn setsockopt_int(
    s: &Socket,
    level: libc::c_int,
    name: libc::c_int,
    v: libc::c_int,
) -> io::Result<()> {
    // SAFETY: `s` is an open socket; the option value is a live `c_int`
    // whose size is passed alongside; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            (&v as *const libc::c_int).cast(),
            size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn set_buffers(s: &Socket, cfg: &TransportConfig) -> Result<(), TransportError> {
    let clamp = |n: usize| n.min(i32::MAX as usize / 2) as libc::c_int;
    if let Some(n) = cfg.rcvbuf {
        if !is_root()
            || setsockopt_int(s, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, clamp(n)).is_err()
        {
            s.set_recv_buffer_size(n).map_err(sock_err("SO_RCVBUF"))?;
        }
    }
    if let Some(n) = cfg.sndbuf {
        if !is_root()
            || setsockopt_int(s, libc::SOL_SOCKET, libc::SO_SNDBUFFORCE, clamp(n)).is_err()
        {
            s.set_send_buffer_size(n).map_err(sock_err("SO_SNDBUF"))?;
        }
    }
    Ok(())
}

fn new_udp(addr: &SocketAddr) -> Result<Socket, TransportError> {
    let s = Socket::new(Domain::for_address(*addr), Type::DGRAM, Some(Protocol::UDP))
        .map_err(sock_err("socket"))?;
    s.set_nonblocking(true).map_err(sock_err("O_NONBLOCK"))?;
    s.set_cloexec(true).map_err(sock_err("FD_CLOEXEC"))?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(sock_err("IPV6_V6ONLY"))?;
    }
    Ok(s)
}

fn interface_index(bind: &SocketAddr) -> u32 {
    match bind {
        SocketAddr::V6(a) => a.scope_id(),
        SocketAddr::V4(_) => 0,
    }
}

pub(crate) fn open(cfg: &TransportConfig) -> Result<Sockets, TransportError> {
    let uni = new_udp(&cfg.bind)?;
    uni.set_reuse_address(true)
        .map_err(sock_err("SO_REUSEADDR"))?;
    set_buffers(&uni, cfg)?;
    if let Some(d) = cfg.dscp {
        let tos = u32::from(d) << 2;
        match cfg.bind {
            SocketAddr::V4(_) => uni.set_tos_v4(tos).map_err(sock_err("IP_TOS"))?,
            SocketAddr::V6(_) => uni.set_tclass_v6(tos).map_err(sock_err("IPV6_TCLASS"))?,
        }
    }
    uni.bind(&SockAddr::from(cfg.bind))
        .map_err(sock_err("bind"))?;
    let mut list = vec![uni];

    if let Mode::Multicast { group, ttl } = &cfg.mode {
        let uni = &list[0];
        match (group, cfg.bind) {
            (SocketAddr::V4(_), SocketAddr::V4(b)) => {
                uni.set_multicast_if_v4(b.ip())
                    .map_err(sock_err("IP_MULTICAST_IF"))?;
                uni.set_multicast_ttl_v4(*ttl)
                    .map_err(sock_err("IP_MULTICAST_TTL"))?;
                uni.set_multicast_loop_v4(cfg.loop_to_self)
                    .map_err(sock_err("IP_MULTICAST_LOOP"))?;
            }
            _ => {
                let ifx = interface_index(&cfg.bind);
                if ifx != 0 {
                    uni.set_multicast_if_v6(ifx)
                        .map_err(sock_err("IPV6_MULTICAST_IF"))?;
                }
                uni.set_multicast_hops_v6(*ttl)
                    .map_err(sock_err("IPV6_MULTICAST_HOPS"))?;
                uni.set_multicast_loop_v6(cfg.loop_to_self)
                    .map_err(sock_err("IPV6_MULTICAST_LOOP"))?;
            }
        }
        let m = new_udp(group)?;
        m.set_reuse_address(true)
            .map_err(sock_err("SO_REUSEADDR"))?;
        set_buffers(&m, cfg)?;
        match (group, cfg.bind) {
            (SocketAddr::V4(g), SocketAddr::V4(b)) => {
                m.join_multicast_v4(g.ip(), b.ip())
                    .map_err(sock_err("IP_ADD_MEMBERSHIP"))?;
                m.set_multicast_all_v4(false)
                    .map_err(sock_err("IP_MULTICAST_ALL"))?;
            }
            (SocketAddr::V6(g), _) => {
                m.join_multicast_v6(g.ip(), interface_index(&cfg.bind))
                    .map_err(sock_err("IPV6_JOIN_GROUP"))?;
            }
            _ => return Err(TransportError::Config("mcastaddr family".into())),
        }
        m.bind(&SockAddr::from(*group))
            .map_err(sock_err("bind mcast"))?;
        list.push(m);
    }

    // Probe, don't assume: the options are tried and the outcome reported.
    let gso = cfg.gso && setsockopt_int(&list[0], libc::SOL_UDP, UDP_SEGMENT, 0).is_ok();
    let gro = cfg.gro
        && cfg.recv_buffer_size >= crate::config::GRO_BUFFER_SIZE
        && list
            .iter()
            .all(|s| setsockopt_int(s, libc::SOL_UDP, UDP_GRO, 1).is_ok());
    if cfg.gro && !gro {
        for s in &list {
            let _ = setsockopt_int(s, libc::SOL_UDP, UDP_GRO, 0);
        }
    }
    Ok(Sockets { list, gso, gro })
}
