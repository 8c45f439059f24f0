//! The fallback engine: `recvmmsg`/`sendmmsg` in batches, waiting in
//! `epoll_wait`. Used where io_uring is refused (seccomp) or when forced.

use std::io;
use std::mem::size_of;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::Duration;

use socket2::SockAddr;

use crate::sockaddr::{self, CMSG_BUF};
use crate::transport::{RecvSink, SendSpec};

/// Batches one socket may drain per `recv` call before the next socket
/// gets its turn (bounds the time spent in one call).
const MAX_BATCHES_PER_CALL: usize = 4;
const WATCH_BIT: u64 = 1 << 32;

pub(crate) struct Fallback {
    epfd: OwnedFd,
    fds: Vec<RawFd>,
    batch: usize,
    buf_size: usize,
    bufs: Vec<u8>,
    names: Vec<libc::sockaddr_storage>,
    ctls: Vec<[u8; CMSG_BUF]>,
    iovs: Vec<libc::iovec>,
    hdrs: Vec<libc::mmsghdr>,
    send_hdrs: Vec<libc::mmsghdr>,
    send_ctls: Vec<[u8; CMSG_BUF]>,
    gro: bool,
    watches: u32,
    pub(crate) ready: Vec<u32>,
    pub(crate) recv_errors: u64,
    logged_recv_error: bool,
}

impl Fallback {
    pub(crate) fn new(
        fds: Vec<RawFd>,
        batch: usize,
        buf_size: usize,
        gro: bool,
        max_sends: usize,
    ) -> io::Result<Self> {
        // SAFETY: epoll_create1 has no memory preconditions.
        let ep = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if ep < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `ep` is a fresh descriptor we own.
        let epfd = unsafe { OwnedFd::from_raw_fd(ep) };
        for (i, &fd) in fds.iter().enumerate() {
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: i as u64,
            };
            // SAFETY: `ev` is a live epoll_event; both fds are open.
            if unsafe { libc::epoll_ctl(ep, libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        // SAFETY: all-zero is a valid value of these plain C structs.
        let zero_storage: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
        // SAFETY: as above.
        let zero_mmsg: libc::mmsghdr = unsafe { std::mem::zeroed() };
        Ok(Self {
            epfd,
            fds,
            batch,
            buf_size,
            bufs: vec![0u8; batch * buf_size],
            names: vec![zero_storage; batch],
            ctls: vec![[0u8; CMSG_BUF]; batch],
            iovs: vec![
                libc::iovec {
                    iov_base: std::ptr::null_mut(),
                    iov_len: 0
                };
                batch
            ],
            hdrs: vec![zero_mmsg; batch],
            send_hdrs: vec![zero_mmsg; max_sends],
            send_ctls: vec![[0u8; CMSG_BUF]; max_sends],
            gro,
            watches: 0,
            ready: Vec::new(),
            recv_errors: 0,
            logged_recv_error: false,
        })
    }

    fn recv_batch(&mut self, sock: usize, sink: &mut RecvSink<'_>) -> io::Result<usize> {
        let base = self.bufs.as_mut_ptr();
        for i in 0..self.batch {
            // SAFETY: i < batch, so the buffer lies inside `bufs`.
            self.iovs[i].iov_base = unsafe { base.add(i * self.buf_size) }.cast();
            self.iovs[i].iov_len = self.buf_size;
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = (&mut self.names[i] as *mut libc::sockaddr_storage).cast();
            h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = if self.gro {
                self.ctls[i].as_mut_ptr().cast()
            } else {
                std::ptr::null_mut()
            };
            h.msg_controllen = if self.gro { CMSG_BUF } else { 0 };
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
        // SAFETY: every header points at live buffers owned by `self`
        // (names, iovecs, buffers, control) of the sizes given; the kernel
        // writes only within them during the call.
        let n = unsafe {
            libc::recvmmsg(
                self.fds[sock],
                self.hdrs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        for i in 0..n {
            let h = self.hdrs[i].msg_hdr;
            let len = (self.hdrs[i].msg_len as usize).min(self.buf_size);
            // SAFETY: the kernel wrote `msg_namelen` bytes (at most the
            // storage size) of the sockaddr; viewing it as bytes is sound.
            let name = unsafe {
                std::slice::from_raw_parts(
                    (&self.names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                    (h.msg_namelen as usize).min(size_of::<libc::sockaddr_storage>()),
                )
            };
            let from = sockaddr::decode(name);
            let ctl_len = h.msg_controllen.min(CMSG_BUF);
            let gro = if self.gro {
                sockaddr::gro_segment(&self.ctls[i][..ctl_len])
            } else {
                None
            };
            let truncated = h.msg_flags & libc::MSG_TRUNC != 0;
            let buf = &mut self.bufs[i * self.buf_size..i * self.buf_size + len];
            sink(sock, from, buf, gro, truncated);
        }
        Ok(n)
    }

    fn drain(&mut self, sink: &mut RecvSink<'_>) -> usize {
        let mut total = 0;
        for sock in 0..self.fds.len() {
            for _ in 0..MAX_BATCHES_PER_CALL {
                match self.recv_batch(sock, sink) {
                    Ok(n) => {
                        total += n;
                        if n < self.batch {
                            break;
                        }
                    }
                    Err(e) => {
                        self.recv_errors += 1;
                        if !self.logged_recv_error {
                            self.logged_recv_error = true;
                            tracing::error!("recvmmsg on socket {sock} failed: {e}; continuing");
                        }
                        break;
                    }
                }
            }
        }
        total
    }

    /// Adds `fd` to the epoll set; `ready` reports its index when readable.
    pub(crate) fn watch(&mut self, fd: RawFd) -> io::Result<u32> {
        let i = self.watches;
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: WATCH_BIT | u64::from(i),
        };
        // SAFETY: `ev` is a live epoll_event; both descriptors are open.
        if unsafe { libc::epoll_ctl(self.epfd.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) } < 0 {
            return Err(io::Error::last_os_error());
        }
        self.watches += 1;
        Ok(i)
    }

    /// One epoll_wait; records ready watches. The only place it parks.
    fn wait(&mut self, ms: i32) -> io::Result<()> {
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 16];
        // SAFETY: `evs` is a live array of the length passed.
        let r = unsafe { libc::epoll_wait(self.epfd.as_raw_fd(), evs.as_mut_ptr(), 16, ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            return if e.raw_os_error() == Some(libc::EINTR) {
                Ok(())
            } else {
                Err(e)
            };
        }
        for ev in &evs[..r as usize] {
            let data = ev.u64;
            if data & WATCH_BIT != 0 {
                let i = (data & 0xffff_ffff) as u32;
                if !self.ready.contains(&i) {
                    self.ready.push(i);
                }
            }
        }
        Ok(())
    }

    pub(crate) fn recv(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut RecvSink<'_>,
    ) -> io::Result<usize> {
        let n = self.drain(sink);
        if self.watches > 0 {
            // Level-triggered: a doorbell rung under load is still seen.
            self.wait(0)?;
        }
        if n > 0 || !self.ready.is_empty() || timeout == Some(Duration::ZERO) {
            return Ok(n);
        }
        let ms = match timeout {
            None => -1,
            Some(t) => t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32,
        };
        self.wait(ms)?;
        Ok(self.drain(sink))
    }

    /// Sends every spec with `sendmmsg`, per socket in order; `results[i]`
    /// receives bytes sent or `-errno`.
    pub(crate) fn send(
        &mut self,
        addrs: &[SockAddr],
        iovs: &[libc::iovec],
        specs: &[SendSpec],
        results: &mut [i32],
    ) -> io::Result<()> {
        assert!(specs.len() <= self.send_hdrs.len() && results.len() >= specs.len());
        for (i, sp) in specs.iter().enumerate() {
            let a = &addrs[sp.addr];
            let iov = &iovs[sp.iov_start..sp.iov_start + sp.iov_len];
            let h = &mut self.send_hdrs[i].msg_hdr;
            h.msg_name = a.as_ptr() as *mut libc::c_void;
            h.msg_namelen = a.len();
            h.msg_iov = iov.as_ptr() as *mut libc::iovec;
            h.msg_iovlen = iov.len();
            if sp.gso > 0 {
                let n = sockaddr::encode_gso(&mut self.send_ctls[i], sp.gso);
                h.msg_control = self.send_ctls[i].as_mut_ptr().cast();
                h.msg_controllen = n;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
        }
        let mut i = 0;
        while i < specs.len() {
            // Consecutive specs on one socket go in one sendmmsg call.
            let sock = specs[i].sock;
            let mut j = i;
            while j < specs.len() && specs[j].sock == sock {
                j += 1;
            }
            let fd = self.fds[sock];
            let mut k = i;
            let mut eagain = 0;
            while k < j {
                // SAFETY: headers k..j point at addresses, iovecs and control
                // data that the caller and `self` keep alive for this call.
                let r = unsafe {
                    libc::sendmmsg(
                        fd,
                        self.send_hdrs.as_mut_ptr().add(k),
                        (j - k) as libc::c_uint,
                        libc::MSG_DONTWAIT,
                    )
                };
                if r > 0 {
                    let done = results.iter_mut().zip(&self.send_hdrs).skip(k);
                    for (res, h) in done.take(r as usize) {
                        *res = h.msg_len as i32;
                    }
                    k += r as usize;
                    continue;
                }
                let err = io::Error::last_os_error()
                    .raw_os_error()
                    .unwrap_or(libc::EIO);
                if err == libc::EINTR {
                    continue;
                }
                if err == libc::EAGAIN && eagain < 3 {
                    // Socket buffer full: wait briefly for room, bounded.
                    eagain += 1;
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLOUT,
                        revents: 0,
                    };
                    // SAFETY: `p` is a live pollfd.
                    unsafe { libc::poll(&mut p, 1, 1) };
                    continue;
                }
                results[k] = -err;
                k += 1;
            }
            i = j;
        }
        Ok(())
    }
}
