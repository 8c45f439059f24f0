//! Start-up probe of every io_uring opcode and feature the engine uses.

use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::Duration;

use io_uring::{cqueue, opcode, register::Probe, types, IoUring};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// What the running kernel offers; `usable()` says whether the io_uring
/// engine can run, `reason` why not.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UringProbe {
    pub ring_setup: bool,
    pub op_recvmsg: bool,
    pub op_sendmsg: bool,
    pub op_async_cancel: bool,
    pub op_send_zc: bool,
    pub feat_ext_arg: bool,
    pub feat_nodrop: bool,
    pub feat_fast_poll: bool,
    pub buf_ring: bool,
    pub multishot_recvmsg: bool,
    pub reason: Option<String>,
}

impl UringProbe {
    pub fn usable(&self) -> bool {
        self.ring_setup
            && self.op_recvmsg
            && self.op_sendmsg
            && self.op_async_cancel
            && self.feat_ext_arg
            && self.buf_ring
            && self.multishot_recvmsg
    }
}

const PROBE_BGID: u16 = 1;

/// Probes io_uring without network traffic: opcodes through the kernel's
/// probe, features from the set-up parameters, the buffer ring by
/// registering one, and multishot RecvMsg by arming it on an unbound-to-peer
/// UDP socket and cancelling it (an old kernel answers -EINVAL instead).
pub fn probe_uring() -> UringProbe {
    let mut p = UringProbe::default();
    let ring: IoUring = match IoUring::builder().build(8) {
        Ok(r) => r,
        Err(e) => {
            p.reason = Some(format!("io_uring_setup refused: {e}"));
            return p;
        }
    };
    p.ring_setup = true;
    let params = ring.params();
    p.feat_ext_arg = params.is_feature_ext_arg();
    p.feat_nodrop = params.is_feature_nodrop();
    p.feat_fast_poll = params.is_feature_fast_poll();
    let mut probe = Probe::new();
    if let Err(e) = ring.submitter().register_probe(&mut probe) {
        p.reason = Some(format!("IORING_REGISTER_PROBE refused: {e}"));
        return p;
    }
    p.op_recvmsg = probe.is_supported(opcode::RecvMsg::CODE);
    p.op_sendmsg = probe.is_supported(opcode::SendMsg::CODE);
    p.op_async_cancel = probe.is_supported(opcode::AsyncCancel::CODE);
    p.op_send_zc = probe.is_supported(opcode::SendZc::CODE);
    if let Err(e) = probe_multishot(ring, &mut p) {
        p.reason.get_or_insert(e);
    }
    if !p.usable() && p.reason.is_none() {
        p.reason = Some(format!("missing io_uring support: {p:?}"));
    }
    p
}

fn probe_multishot(mut ring: IoUring, p: &mut UringProbe) -> Result<(), String> {
    let mut br = crate::uring::BufRing::new(2, 256).map_err(|e| format!("buffer ring: {e}"))?;
    // SAFETY: `br` outlives every use of the registration: this function
    // returns only after the armed request's terminal completion was
    // reaped, or it leaks `br` (see the end), so no request can touch the
    // memory after it is freed.
    let reg = unsafe { br.register(&ring.submitter(), PROBE_BGID) };
    if let Err(e) = reg {
        return Err(format!("IORING_REGISTER_PBUF_RING refused: {e}"));
    }
    p.buf_ring = true;
    if !p.feat_ext_arg {
        return Ok(());
    }
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| format!("probe socket: {e}"))?;
    sock.bind(&SockAddr::from(SocketAddr::from((
        Ipv4Addr::UNSPECIFIED,
        0,
    ))))
    .map_err(|e| format!("probe bind: {e}"))?;
    // SAFETY: all-zero is a valid msghdr.
    let mut hdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
    hdr.msg_namelen = 32;
    let arm = opcode::RecvMsgMulti::new(types::Fd(sock.as_raw_fd()), &*hdr, PROBE_BGID)
        .build()
        .user_data(1);
    let cancel = opcode::AsyncCancel::new(1).build().user_data(2);
    // SAFETY: the SQE points at `hdr`, which (with `br`) stays alive until
    // the request's terminal completion is reaped below, or is leaked.
    unsafe {
        let mut sq = ring.submission();
        sq.push(&arm).map_err(|_| "probe SQ full".to_string())?;
    }
    ring.submit().map_err(|e| format!("probe submit: {e}"))?;
    // SAFETY: the cancel SQE holds no pointers.
    unsafe {
        ring.submission()
            .push(&cancel)
            .map_err(|_| "probe SQ full".to_string())?;
    }
    let ts = types::Timespec::from(Duration::from_millis(200));
    let args = types::SubmitArgs::new().timespec(&ts);
    let mut recv_res = None;
    for _ in 0..4 {
        let _ = ring.submitter().submit_with_args(1, &args);
        for cqe in ring.completion() {
            if cqe.user_data() == 1 && !cqueue::more(cqe.flags()) {
                recv_res = Some(cqe.result());
            }
        }
        if recv_res.is_some() {
            break;
        }
    }
    match recv_res {
        Some(r) if r == -libc::ECANCELED || r >= 0 || r == -libc::ENOBUFS => {
            p.multishot_recvmsg = true;
            Ok(())
        }
        Some(r) => Err(format!(
            "multishot RecvMsg refused: {}",
            std::io::Error::from_raw_os_error(-r)
        )),
        None => {
            // The request is still armed: keep its memory alive for good
            // rather than risk the kernel writing into freed memory.
            std::mem::forget(hdr);
            std::mem::forget(br);
            Err("multishot RecvMsg probe did not complete".into())
        }
    }
}
