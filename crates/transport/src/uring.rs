//! The io_uring engine: one multishot RecvMsg per socket into a registered
//! provided-buffer ring, and batched SendMsg with one submit per burst.
//!
//! Buffer ownership (the rule of STYLE item 8): a receive buffer belongs to
//! the kernel from the moment its id is published in the ring's tail until
//! a completion names it (IORING_CQE_F_BUFFER); then it belongs to us until
//! we push its id back, which happens as soon as its datagram has been
//! handed to the sink. A send's msghdr, iovecs, address and control data
//! belong to the kernel from submission until that send's completion;
//! `send` does not return before every one of its completions arrived.

use std::alloc::{self, Layout};
use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use io_uring::{cqueue, opcode, squeue, types, IoUring, Submitter};
use socket2::SockAddr;

use crate::sockaddr::{self, CMSG_BUF};
use crate::transport::{RecvSink, SendSpec};

const KIND_SHIFT: u64 = 32;
const RECV: u64 = 1;
const SEND: u64 = 2;
const CANCEL: u64 = 3;
const WATCH: u64 = 4;
const BGID: u16 = 7;
const NAME_LEN: u32 = 32;
const GRO_CTL_LEN: usize = 32;

fn tag(kind: u64, idx: usize) -> u64 {
    (kind << KIND_SHIFT) | idx as u64
}

/// A provided-buffer ring: `count` ring entries and `count` buffers of
/// `size` bytes, both allocated here and freed only when no longer
/// registered (see `Drop for Uring`).
pub(crate) struct BufRing {
    entries: *mut types::BufRingEntry,
    entries_layout: Layout,
    bufs: *mut u8,
    bufs_layout: Layout,
    count: u16,
    size: usize,
    tail: u16,
}

impl BufRing {
    pub(crate) fn new(count: u16, size: usize) -> io::Result<Self> {
        assert!(count.is_power_of_two() && count <= 32_768);
        let entries_layout =
            Layout::from_size_align(usize::from(count) * size_of::<types::BufRingEntry>(), 4096)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let bufs_layout = Layout::from_size_align(usize::from(count) * size, 4096)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        // SAFETY: both layouts have non-zero size (count >= 1, size >= 1).
        let (entries, bufs) = unsafe {
            (
                alloc::alloc_zeroed(entries_layout).cast::<types::BufRingEntry>(),
                alloc::alloc_zeroed(bufs_layout),
            )
        };
        if entries.is_null() || bufs.is_null() {
            return Err(io::Error::from(io::ErrorKind::OutOfMemory));
        }
        let mut r = Self {
            entries,
            entries_layout,
            bufs,
            bufs_layout,
            count,
            size,
            tail: 0,
        };
        for bid in 0..count {
            r.push(bid);
        }
        Ok(r)
    }

    /// Registers the ring with the kernel under `bgid` and publishes every
    /// buffer.
    ///
    /// # Safety
    /// `self` must outlive the registration: the caller unregisters it or
    /// tears the io_uring down (with no request still using it) before
    /// dropping `self`.
    pub(crate) unsafe fn register(&mut self, sub: &Submitter<'_>, bgid: u16) -> io::Result<()> {
        sub.register_buf_ring_with_flags(self.entries as u64, self.count, bgid, 0)?;
        self.publish();
        Ok(())
    }

    /// Hands buffer `bid` back to the kernel (visible after `publish`).
    fn push(&mut self, bid: u16) {
        assert!(bid < self.count);
        let mask = self.count - 1;
        // SAFETY: `tail & mask < count`, so the entry lies inside the
        // allocation; between publishes the kernel only reads entries below
        // the published tail, so writing the one at our local tail races
        // with nothing.
        let e = unsafe { &mut *self.entries.add(usize::from(self.tail & mask)) };
        // SAFETY: bid < count, so the buffer lies inside `bufs`.
        let addr = unsafe { self.bufs.add(usize::from(bid) * self.size) };
        e.set_addr(addr as u64);
        e.set_len(self.size as u32);
        e.set_bid(bid);
        self.tail = self.tail.wrapping_add(1);
    }

    fn publish(&self) {
        // SAFETY: `entries` is the first entry of the registered ring; its
        // tail field is a u16 the kernel reads atomically; the release store
        // orders the entry writes in `push` before it.
        unsafe {
            let tail = types::BufRingEntry::tail(self.entries) as *const AtomicU16;
            (*tail).store(self.tail, Ordering::Release);
        }
    }

    /// The buffer `bid`, which the caller must own (a completion named it
    /// and it has not been pushed back).
    ///
    /// # Safety
    /// `bid` came from a completion and has not been pushed back since; no
    /// other reference to it is alive.
    unsafe fn buf_mut(&mut self, bid: u16, len: usize) -> &mut [u8] {
        assert!(bid < self.count && len <= self.size);
        std::slice::from_raw_parts_mut(self.bufs.add(usize::from(bid) * self.size), len)
    }
}

impl Drop for BufRing {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with these layouts; the owner
        // guarantees the kernel no longer uses them (see `register`).
        unsafe {
            alloc::dealloc(self.entries.cast(), self.entries_layout);
            alloc::dealloc(self.bufs, self.bufs_layout);
        }
    }
}

/// A completion set aside while `send` waited for its own completions.
#[derive(Clone, Copy)]
struct Stashed {
    sock: usize,
    res: i32,
    flags: u32,
}

pub(crate) struct Uring {
    ring: IoUring,
    bufs: Option<BufRing>,
    fds: Vec<RawFd>,
    /// Templates of the armed RecvMsg requests; the vector is never
    /// resized after construction, so their addresses stay stable while the
    /// kernel holds pointers to them.
    recv_hdrs: Vec<libc::msghdr>,
    armed: Vec<bool>,
    stash: Vec<Stashed>,
    send_hdrs: Vec<libc::msghdr>,
    send_ctls: Vec<[u8; CMSG_BUF]>,
    send_res: Vec<i32>,
    /// Notifications still owed per send (SENDMSG_ZC): the kernel may read
    /// the frame until its notification arrives.
    send_notif: Vec<bool>,
    zero_copy: bool,
    max_sends: usize,
    /// Extra descriptors polled in the same ring (doorbells, timers,
    /// signals): fd and whether its multishot poll is armed.
    watches: Vec<(RawFd, bool)>,
    pub(crate) ready: Vec<u32>,
    /// Set when sends could not be reaped; the engine refuses more work.
    pub(crate) poisoned: bool,
    pub(crate) no_buffers: u64,
    pub(crate) recv_errors: u64,
    logged_recv_error: bool,
}

impl Uring {
    pub(crate) fn new(
        fds: Vec<RawFd>,
        recv_buffers: u16,
        recv_buffer_size: usize,
        gro: bool,
        max_sends: usize,
        sqpoll_idle_ms: Option<u32>,
        zero_copy: bool,
    ) -> io::Result<Self> {
        let sq = (max_sends.min(4096) as u32).next_power_of_two().max(64);
        let cq = (sq * 2)
            .max(u32::from(recv_buffers) * 2)
            .next_power_of_two();
        let mut b = IoUring::builder();
        b.setup_cqsize(cq);
        if let Some(ms) = sqpoll_idle_ms {
            b.setup_sqpoll(ms);
        }
        // COOP_TASKRUN (5.19): completions are posted at our next kernel
        // entry instead of interrupting the thread; we enter once per turn
        // anyway. Fall back to a plain ring where it is refused.
        let mut coop = b.clone();
        coop.setup_coop_taskrun();
        let ring: IoUring = match coop.build(sq) {
            Ok(r) => r,
            Err(_) => b.build(sq)?,
        };
        let mut bufs = BufRing::new(recv_buffers, recv_buffer_size)?;
        // SAFETY: `bufs` is stored in `self.bufs` and only dropped in
        // `Drop for Uring` after every armed request has terminated (or is
        // leaked when that cannot be confirmed).
        unsafe { bufs.register(&ring.submitter(), BGID)? };
        let recv_hdrs = fds
            .iter()
            .map(|_| {
                // SAFETY: all-zero is a valid msghdr.
                let mut h: libc::msghdr = unsafe { std::mem::zeroed() };
                h.msg_namelen = NAME_LEN;
                h.msg_controllen = if gro { GRO_CTL_LEN } else { 0 };
                h
            })
            .collect();
        let n = fds.len();
        let mut u = Self {
            ring,
            bufs: Some(bufs),
            fds,
            recv_hdrs,
            armed: vec![false; n],
            stash: Vec::with_capacity(cq as usize),
            // SAFETY: all-zero is a valid msghdr.
            send_hdrs: vec![unsafe { std::mem::zeroed() }; max_sends],
            send_ctls: vec![[0u8; CMSG_BUF]; max_sends],
            send_res: vec![0; max_sends],
            send_notif: vec![false; max_sends],
            zero_copy,
            max_sends,
            watches: Vec::new(),
            ready: Vec::new(),
            poisoned: false,
            no_buffers: 0,
            recv_errors: 0,
            logged_recv_error: false,
        };
        for i in 0..n {
            u.arm(i)?;
        }
        u.ring.submit()?;
        Ok(u)
    }

    fn push_sqe(&mut self, e: &squeue::Entry) -> io::Result<()> {
        loop {
            // SAFETY: every pointer inside `e` (msghdr, iovecs, address,
            // control) stays valid until its completion, per the module's
            // ownership rule.
            if unsafe { self.ring.submission().push(e) }.is_ok() {
                return Ok(());
            }
            self.ring.submit()?;
        }
    }

    fn arm(&mut self, sock: usize) -> io::Result<()> {
        let hdr: *const libc::msghdr = &self.recv_hdrs[sock];
        let e = opcode::RecvMsgMulti::new(types::Fd(self.fds[sock]), hdr, BGID)
            .build()
            .user_data(tag(RECV, sock));
        self.push_sqe(&e)?;
        self.armed[sock] = true;
        Ok(())
    }

    /// Polls `fd` for input in this ring (multishot); returns its index,
    /// which `ready` reports when the descriptor becomes readable.
    pub(crate) fn watch(&mut self, fd: RawFd) -> io::Result<u32> {
        let i = self.watches.len();
        self.watches.push((fd, false));
        self.arm_watch(i)?;
        self.ring.submit()?;
        Ok(i as u32)
    }

    fn arm_watch(&mut self, i: usize) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(self.watches[i].0), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(tag(WATCH, i));
        self.push_sqe(&e)?;
        self.watches[i].1 = true;
        Ok(())
    }

    fn on_watch(&mut self, ud: u64, res: i32, flags: u32) {
        let i = (ud & 0xffff_ffff) as usize;
        if i >= self.watches.len() {
            return;
        }
        if res >= 0 && !self.ready.contains(&(i as u32)) {
            self.ready.push(i as u32);
        }
        if !cqueue::more(flags) {
            self.watches[i].1 = false;
        }
    }

    /// Handles one receive completion; returns 1 when a datagram reached
    /// the sink.
    fn on_recv(&mut self, s: Stashed, sink: &mut RecvSink<'_>) -> usize {
        let mut delivered = 0;
        if let Some(bid) = cqueue::buffer_select(s.flags) {
            let len = usize::try_from(s.res).unwrap_or(0);
            let hdr = self.recv_hdrs[s.sock];
            let bufs = self.bufs.as_mut().expect("buffer ring present");
            // SAFETY: the completion names `bid`, so the kernel handed it to
            // us; it is pushed back below before any other use.
            let buf = unsafe { bufs.buf_mut(bid, len.min(bufs.size)) };
            if let Ok(out) = types::RecvMsgOut::parse(buf, &hdr) {
                let from = sockaddr::decode(out.name_data());
                let gro = sockaddr::gro_segment(out.control_data());
                let truncated = out.is_payload_truncated();
                let start = out.payload_data().as_ptr() as usize - buf.as_ptr() as usize;
                let plen = out.payload_data().len();
                sink(s.sock, from, &mut buf[start..start + plen], gro, truncated);
                delivered = 1;
            } else {
                self.recv_errors += 1;
            }
            bufs.push(bid);
        } else if s.res < 0 {
            if s.res == -libc::ENOBUFS {
                self.no_buffers += 1;
            } else if s.res != -libc::ECANCELED {
                self.recv_errors += 1;
                if !self.logged_recv_error {
                    self.logged_recv_error = true;
                    tracing::error!(
                        "io_uring receive on socket {} failed: {}; re-arming",
                        s.sock,
                        io::Error::from_raw_os_error(-s.res)
                    );
                }
            }
        }
        if !cqueue::more(s.flags) {
            self.armed[s.sock] = false;
        }
        delivered
    }

    /// Processes stashed and ready completions, hands buffers back and
    /// re-arms terminated receives.
    fn drain(&mut self, sink: &mut RecvSink<'_>) -> io::Result<usize> {
        let mut n = 0;
        let stash = std::mem::take(&mut self.stash);
        for s in &stash {
            n += self.on_recv(*s, sink);
        }
        self.stash = stash;
        self.stash.clear();
        loop {
            let Some(cqe) = self.ring.completion().next() else {
                break;
            };
            let ud = cqe.user_data();
            if ud >> KIND_SHIFT == RECV {
                let s = Stashed {
                    sock: (ud & 0xffff_ffff) as usize,
                    res: cqe.result(),
                    flags: cqe.flags(),
                };
                if s.sock < self.fds.len() {
                    n += self.on_recv(s, sink);
                }
            } else if ud >> KIND_SHIFT == WATCH {
                self.on_watch(ud, cqe.result(), cqe.flags());
            }
        }
        if let Some(b) = &self.bufs {
            b.publish();
        }
        for i in 0..self.fds.len() {
            if !self.armed[i] {
                self.arm(i)?;
            }
        }
        for i in 0..self.watches.len() {
            if !self.watches[i].1 {
                self.arm_watch(i)?;
            }
        }
        Ok(n)
    }

    pub(crate) fn recv(
        &mut self,
        timeout: Option<Duration>,
        sink: &mut RecvSink<'_>,
    ) -> io::Result<usize> {
        let n = self.drain(sink)?;
        if n > 0 || !self.ready.is_empty() || timeout == Some(Duration::ZERO) {
            self.ring.submit()?;
            return Ok(n);
        }
        let r = match timeout {
            Some(t) => {
                let ts = types::Timespec::from(t);
                let args = types::SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
            None => self.ring.submit_and_wait(1),
        };
        match r {
            Ok(_) => {}
            Err(e) if matches!(e.raw_os_error(), Some(libc::ETIME) | Some(libc::EINTR)) => {}
            Err(e) => return Err(e),
        }
        self.drain(sink)
    }

    /// Submits every spec in one go and waits for all their completions.
    /// `results[i]` receives bytes sent or `-errno`.
    pub(crate) fn send(
        &mut self,
        addrs: &[SockAddr],
        iovs: &[libc::iovec],
        specs: &[SendSpec],
        results: &mut [i32],
    ) -> io::Result<()> {
        assert!(specs.len() <= self.max_sends && results.len() >= specs.len());
        if self.poisoned {
            return Err(io::Error::other("io_uring engine failed earlier"));
        }
        for (i, sp) in specs.iter().enumerate() {
            let a = &addrs[sp.addr];
            let iov = &iovs[sp.iov_start..sp.iov_start + sp.iov_len];
            let h = &mut self.send_hdrs[i];
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
            self.send_res[i] = i32::MIN;
            self.send_notif[i] = false;
        }
        // Sends are hard-linked so they run in order (an independent SQE
        // could overtake one that found the socket buffer full and went
        // async); a hard link, unlike IO_LINK, does not cancel the rest of
        // the chain when one send fails. Chains break where the SQ is full,
        // which is where `push_sqe` submits.
        if !self.ring.submission().is_empty() {
            self.ring.submit()?;
        }
        let cap = self.ring.submission().capacity();
        for (i, sp) in specs.iter().enumerate() {
            let hdr: *const libc::msghdr = &self.send_hdrs[i];
            let fd = types::Fd(self.fds[sp.sock]);
            let e = if self.zero_copy {
                opcode::SendMsgZc::new(fd, hdr).build()
            } else {
                opcode::SendMsg::new(fd, hdr).build()
            };
            let chain_end = i + 1 == specs.len() || (i + 1) % cap == 0;
            let e = if chain_end {
                e
            } else {
                e.flags(squeue::Flags::IO_HARDLINK)
            };
            self.push_sqe(&e.user_data(tag(SEND, i)))?;
        }
        // Every send owes one result; a zero-copy send whose result carries
        // F_MORE also owes a notification before its memory is free again.
        let mut outstanding = specs.len();
        let mut failures = 0u32;
        while outstanding > 0 {
            match self.ring.submit_and_wait(1) {
                Ok(_) => failures = 0,
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR | libc::EBUSY | libc::EAGAIN)
                    ) => {}
                Err(e) => {
                    // Submitted sends still point at our memory; keep
                    // waiting a while, then give up for good.
                    failures += 1;
                    if failures > 1000 {
                        self.poisoned = true;
                        return Err(e);
                    }
                }
            }
            loop {
                let Some(cqe) = self.ring.completion().next() else {
                    break;
                };
                let ud = cqe.user_data();
                match ud >> KIND_SHIFT {
                    SEND => {
                        let i = (ud & 0xffff_ffff) as usize;
                        let notif = cqueue::notif(cqe.flags());
                        if i < specs.len() && notif && self.send_notif[i] {
                            self.send_notif[i] = false;
                            outstanding -= 1;
                        } else if i < specs.len() && !notif && self.send_res[i] == i32::MIN {
                            self.send_res[i] = cqe.result();
                            outstanding -= 1;
                            if cqueue::more(cqe.flags()) {
                                self.send_notif[i] = true;
                                outstanding += 1;
                            }
                        }
                    }
                    RECV => self.stash.push(Stashed {
                        sock: (ud & 0xffff_ffff) as usize,
                        res: cqe.result(),
                        flags: cqe.flags(),
                    }),
                    WATCH => self.on_watch(ud, cqe.result(), cqe.flags()),
                    _ => {}
                }
            }
        }
        results[..specs.len()].copy_from_slice(&self.send_res[..specs.len()]);
        Ok(())
    }

    /// Cancels every armed receive and waits (bounded) for the terminal
    /// completions; true when none is left in flight.
    fn quiesce(&mut self) -> bool {
        for i in 0..self.fds.len() {
            if self.armed[i] {
                let e = opcode::AsyncCancel::new(tag(RECV, i))
                    .build()
                    .user_data(tag(CANCEL, i));
                if self.push_sqe(&e).is_err() {
                    return false;
                }
            }
        }
        let ts = types::Timespec::from(Duration::from_millis(50));
        for _ in 0..40 {
            if !self.armed.iter().any(|&a| a) {
                return true;
            }
            let args = types::SubmitArgs::new().timespec(&ts);
            let _ = self.ring.submitter().submit_with_args(1, &args);
            while let Some(cqe) = self.ring.completion().next() {
                let ud = cqe.user_data();
                if ud >> KIND_SHIFT == RECV && !cqueue::more(cqe.flags()) {
                    let i = (ud & 0xffff_ffff) as usize;
                    if i < self.armed.len() {
                        self.armed[i] = false;
                    }
                }
            }
        }
        !self.armed.iter().any(|&a| a)
    }
}

impl Drop for Uring {
    fn drop(&mut self) {
        if !self.poisoned && self.quiesce() {
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        } else {
            // A receive may still be armed: leak its buffers and headers
            // rather than let the kernel write into freed memory.
            tracing::error!("io_uring receive did not cancel; leaking its buffers");
            std::mem::forget(self.bufs.take());
            std::mem::forget(std::mem::take(&mut self.recv_hdrs));
            std::mem::forget(std::mem::take(&mut self.send_hdrs));
        }
    }
}
