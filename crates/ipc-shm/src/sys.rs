//! Thin wrappers over the system calls this crate needs: memfd with seals,
//! shared mappings, pipes, SCM_RIGHTS, SO_PEERCRED, poll. Every `unsafe`
//! block of the crate that talks to the kernel lives here.

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::ptr::NonNull;

pub(crate) fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn cvt_size(r: libc::ssize_t) -> io::Result<usize> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r as usize)
    }
}

/// An anonymous memory file of `len` bytes, sealed so that nobody holding it
/// (a hostile client included) can shrink it under a mapping (which would
/// turn the daemon's next access into SIGBUS) or grow it.
pub(crate) fn memfd_sealed(name: &CStr, len: usize) -> io::Result<OwnedFd> {
    // SAFETY: `name` is a valid NUL-terminated string; the flags are constants.
    let raw = cvt(unsafe {
        libc::memfd_create(name.as_ptr(), libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING)
    })?;
    // SAFETY: `raw` was just returned by memfd_create and is owned by nobody else.
    let fd = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: plain syscall on an fd we own.
    cvt(unsafe { libc::ftruncate(fd.as_raw_fd(), len as libc::off_t) })?;
    let seals = libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_SEAL;
    // SAFETY: plain fcntl on an fd we own.
    cvt(unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) })?;
    Ok(fd)
}

/// Whether `fd` is a memfd that can no longer shrink (so mapping it is safe
/// from SIGBUS), and its size.
pub(crate) fn sealed_size(fd: RawFd) -> io::Result<(bool, usize)> {
    // SAFETY: plain fcntl; an fd that is not a memfd answers EINVAL.
    let seals = unsafe { libc::fcntl(fd, libc::F_GET_SEALS) };
    // SAFETY: `st` is plain data the kernel fills in.
    let mut st: libc::stat = unsafe { std::mem::zeroed() };
    // SAFETY: `st` is a valid out pointer.
    cvt(unsafe { libc::fstat(fd, &mut st) })?;
    let sealed = seals >= 0 && seals & libc::F_SEAL_SHRINK != 0;
    Ok((sealed, st.st_size.max(0) as usize))
}

/// A shared read-write mapping, unmapped on drop.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: the mapping is plain memory; all access to it goes through raw
// pointers with atomics or explicit copies, so moving or sharing the handle
// between threads is sound.
unsafe impl Send for Mapping {}
// SAFETY: as above.
unsafe impl Sync for Mapping {}

impl Mapping {
    pub(crate) fn map(fd: RawFd, len: usize) -> io::Result<Mapping> {
        // SAFETY: a fresh shared mapping chosen by the kernel; no existing
        // memory is affected. The fd's size is at least `len` (checked by the
        // callers) and sealed against shrinking.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap gave null"))?;
        Ok(Mapping { ptr, len })
    }

    pub(crate) fn ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }

    pub(crate) fn len(&self) -> usize {
        self.len
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: `ptr`/`len` describe a mapping we created and nobody uses
        // after the owner is dropped.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// A non-blocking, close-on-exec pipe: (read end, write end). Its two ends
/// are separate open file descriptions, so a peer holding one end cannot
/// change the flags of the other.
pub(crate) fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0 as RawFd; 2];
    // SAFETY: `fds` is a valid two-element out array.
    cvt(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | libc::O_NONBLOCK) })?;
    // SAFETY: both fds were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A non-blocking eventfd.
pub(crate) fn eventfd() -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let raw = cvt(unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) })?;
    // SAFETY: just created, owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

pub(crate) fn eventfd_signal(fd: RawFd) {
    let one = 1u64;
    // SAFETY: writes 8 bytes from a valid u64; failure (EAGAIN when the
    // counter is saturated) means the fd is readable already.
    unsafe { libc::write(fd, (&one as *const u64).cast(), 8) };
}

/// Empties an eventfd the peer can also write (a doorbell) without ever
/// blocking, whatever its `O_NONBLOCK` flag says: that flag belongs to the
/// open file description both processes share, so a hostile peer may have
/// cleared it; `RWF_NOWAIT` is per call. `Empty` when it was not signalled
/// (or was just reset), `Closed` on an error that is not EAGAIN.
pub(crate) fn drain_doorbell(fd: RawFd) -> Drain {
    let mut v = 0u64;
    let iov = libc::iovec {
        iov_base: (&mut v as *mut u64).cast(),
        iov_len: 8,
    };
    loop {
        // SAFETY: one iovec over a valid local u64.
        let n = unsafe { libc::preadv2(fd, &iov, 1, -1, libc::RWF_NOWAIT) };
        if n >= 0 {
            return Drain::Empty;
        }
        match io::Error::last_os_error().raw_os_error() {
            Some(libc::EAGAIN) => return Drain::Empty,
            Some(libc::EINTR) => continue,
            _ => return Drain::Closed,
        }
    }
}

/// Whether this kernel reads an eventfd with `RWF_NOWAIT` (needed for
/// eventfd doorbells; without it the doorbell stays a pipe). Probed once.
pub(crate) fn eventfd_nowait_works() -> bool {
    static WORKS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *WORKS.get_or_init(|| {
        // SAFETY: plain syscall; the fd is closed below.
        let raw = unsafe { libc::eventfd(1, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if raw < 0 {
            return false;
        }
        // SAFETY: just created, owned by nobody else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut v = 0u64;
        let iov = libc::iovec {
            iov_base: (&mut v as *mut u64).cast(),
            iov_len: 8,
        };
        // SAFETY: one iovec over a valid local u64. A kernel whose eventfd
        // does not honour RWF_NOWAIT refuses the flag (EOPNOTSUPP).
        let n = unsafe { libc::preadv2(fd.as_raw_fd(), &iov, 1, -1, libc::RWF_NOWAIT) };
        n == 8 && v == 1
    })
}

/// Writes one byte to a non-blocking pipe. A full pipe means the reader has
/// a wake-up pending already, so EAGAIN is success; EPIPE (reader gone) is
/// noticed elsewhere.
pub(crate) fn poke(fd: RawFd) {
    let b = 1u8;
    // SAFETY: writes one byte from a valid local.
    unsafe { libc::write(fd, (&b as *const u8).cast(), 1) };
}

/// What draining a non-blocking fd found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Drain {
    /// Nothing more to read now (possibly after reading some bytes).
    Empty,
    /// The peer end is closed (EOF).
    Closed,
    /// Bytes remain after the bounded number of reads.
    More,
}

/// Reads and discards what is pending on a non-blocking fd, at most
/// `rounds` reads of 256 bytes.
pub(crate) fn drain(fd: RawFd, rounds: usize, socket: bool) -> Drain {
    let mut buf = [0u8; 256];
    for _ in 0..rounds {
        // SAFETY: reads into a valid local buffer of the given size.
        let n = unsafe {
            if socket {
                libc::recv(fd, buf.as_mut_ptr().cast(), buf.len(), libc::MSG_DONTWAIT)
            } else {
                libc::read(fd, buf.as_mut_ptr().cast(), buf.len())
            }
        };
        if n == 0 {
            return Drain::Closed;
        }
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.raw_os_error() {
                Some(libc::EAGAIN) => Drain::Empty,
                Some(libc::EINTR) => continue,
                _ => Drain::Closed,
            };
        }
        if (n as usize) < buf.len() && !socket {
            return Drain::Empty;
        }
    }
    Drain::More
}

/// Peer credentials of a connected unix socket.
pub(crate) fn peer_cred(fd: RawFd) -> io::Result<libc::ucred> {
    let mut cred = libc::ucred {
        pid: 0,
        uid: u32::MAX,
        gid: u32::MAX,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: `cred` and `len` are valid out pointers of the right size.
    cvt(unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    })?;
    Ok(cred)
}

/// Room for up to eight fds of control data, suitably aligned.
#[repr(C, align(8))]
struct CmsgBuf([u8; 64]);

pub(crate) const MAX_FDS: usize = 8;

/// Sends `data` with `fds` attached, without blocking and without SIGPIPE.
pub(crate) fn send_with_fds(sock: RawFd, data: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    assert!(fds.len() <= MAX_FDS);
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: data.as_ptr() as *mut libc::c_void,
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid "no fields set" value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        let bytes = std::mem::size_of_val(fds);
        // SAFETY: CMSG_SPACE is a pure size computation.
        let space = unsafe { libc::CMSG_SPACE(bytes as u32) } as usize;
        assert!(space <= cbuf.0.len());
        msg.msg_control = cbuf.0.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: msg_control points at `space` valid, aligned bytes, so the
        // first header and its data (CMSG_LEN(bytes) <= space) are in bounds.
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(bytes as u32) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr().cast::<u8>(), libc::CMSG_DATA(cmsg), bytes);
        }
    }
    // SAFETY: `msg` points at valid iovec and control buffers that outlive the call.
    cvt_size(unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL | libc::MSG_DONTWAIT) })
}

/// Receives into `data` and takes ownership of every fd that came with it
/// (extra ones included, so nothing leaks).
pub(crate) fn recv_with_fds(
    sock: RawFd,
    data: &mut [u8],
    fds: &mut Vec<OwnedFd>,
) -> io::Result<usize> {
    let mut cbuf = CmsgBuf([0; 64]);
    let mut iov = libc::iovec {
        iov_base: data.as_mut_ptr().cast(),
        iov_len: data.len(),
    };
    // SAFETY: msghdr is plain data; zero is a valid "no fields set" value.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = cbuf.0.as_mut_ptr().cast();
    msg.msg_controllen = cbuf.0.len() as _;
    // SAFETY: `msg` points at valid buffers that outlive the call.
    let n = cvt_size(unsafe {
        libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_DONTWAIT)
    })?;
    // SAFETY: the kernel filled msg_control with well-formed headers within
    // msg_controllen; the CMSG_* macros walk them within those bounds.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data_len = (*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize;
                let count = data_len / std::mem::size_of::<RawFd>();
                let p = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                for i in 0..count {
                    let raw = std::ptr::read_unaligned(p.add(i));
                    fds.push(OwnedFd::from_raw_fd(raw));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if msg.msg_flags & libc::MSG_CTRUNC != 0 {
        return Err(io::Error::other("control data truncated"));
    }
    Ok(n)
}

/// poll(2) on one fd; returns the revents (0 on timeout).
pub(crate) fn poll_one(fd: RawFd, events: libc::c_short, timeout_ms: i32) -> io::Result<i16> {
    let mut p = libc::pollfd {
        fd,
        events,
        revents: 0,
    };
    loop {
        // SAFETY: one valid pollfd.
        let r = unsafe { libc::poll(&mut p, 1, timeout_ms) };
        if r < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() == Some(libc::EINTR) {
                continue;
            }
            return Err(e);
        }
        return Ok(if r == 0 { 0 } else { p.revents });
    }
}

/// Makes sure SIGPIPE does not kill the process when a peer closes its end of
/// a wake-up pipe (Rust programs ignore it already; a C host might not).
pub(crate) fn ignore_sigpipe() {
    // SAFETY: queries then, if it is the default action, sets the
    // disposition of SIGPIPE; both structs are valid for the calls.
    unsafe {
        let mut old: libc::sigaction = std::mem::zeroed();
        if libc::sigaction(libc::SIGPIPE, std::ptr::null(), &mut old) == 0
            && old.sa_sigaction == libc::SIG_DFL
        {
            let mut new: libc::sigaction = std::mem::zeroed();
            new.sa_sigaction = libc::SIG_IGN;
            libc::sigaction(libc::SIGPIPE, &new, std::ptr::null_mut());
        }
    }
}

/// CLOCK_MONOTONIC in nanoseconds (comparable across processes).
pub fn monotonic_ns() -> u64 {
    // SAFETY: `ts` is a valid out pointer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC_COARSE in nanoseconds: the time of the last clock tick
/// (1 to 4 ms old), read from the vDSO without the clock source itself,
/// for checks that only need "has a tick passed".
pub fn coarse_monotonic_ns() -> u64 {
    // SAFETY: `ts` is a valid out pointer.
    let mut ts: libc::timespec = unsafe { std::mem::zeroed() };
    // SAFETY: as above.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC_COARSE, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

// membarrier(2) commands (include/uapi/linux/membarrier.h).
const MEMBARRIER_CMD_QUERY: libc::c_int = 0;
const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
}

/// Whether this kernel offers `cmd` (and its registration, `register`).
fn membarrier_offers(cmd: libc::c_int, register: libc::c_int) -> bool {
    static QUERY: std::sync::OnceLock<libc::c_long> = std::sync::OnceLock::new();
    let mask = *QUERY.get_or_init(|| membarrier(MEMBARRIER_CMD_QUERY));
    mask > 0 && mask & libc::c_long::from(cmd | register) == libc::c_long::from(cmd | register)
}

/// Whether [`global_barrier`] works here: the daemon offers clients the
/// plain-store request path only then.
pub(crate) fn global_barrier_available() -> bool {
    membarrier_offers(
        MEMBARRIER_CMD_GLOBAL_EXPEDITED,
        MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED,
    )
}

/// Makes this process's threads take part in [`global_barrier`]s issued by
/// any process (the daemon's); false where the kernel refuses. It lasts for
/// the life of the process (until exec) and is idempotent, so every new
/// session asks again (a forked child included).
pub(crate) fn register_for_global_barrier() -> bool {
    global_barrier_available() && membarrier(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED) == 0
}

/// A memory barrier on every CPU that runs a thread of a registered
/// process, issued from here: once it returns, each store such a thread made
/// before its next load is visible to us. The heavy half of an asymmetric
/// fence (the light half is a compiler fence, see `RingPtrs::publish_tail`).
/// Costs about 1 µs here, 11 µs when it must interrupt a running client.
/// It can fail at run time (ENOMEM: the kernel allocates a CPU mask per
/// call); the caller must then not trust what it reads next.
pub(crate) fn global_barrier() -> io::Result<()> {
    fenced_membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)
}

/// `membarrier(cmd)` between two full fences of our own, so that our side
/// is ordered without relying on the system call's (and pairs with a peer
/// that uses a locked exchange instead of the light half).
fn fenced_membarrier(cmd: libc::c_int) -> io::Result<()> {
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    let r = membarrier(cmd);
    std::sync::atomic::fence(std::sync::atomic::Ordering::SeqCst);
    if r != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Makes [`private_barrier`] usable in this process; false where refused.
pub(crate) fn register_for_private_barrier() -> bool {
    membarrier_offers(
        MEMBARRIER_CMD_PRIVATE_EXPEDITED,
        MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED,
    ) && membarrier(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED) == 0
}

/// A memory barrier on every CPU running a thread of this process (after
/// [`register_for_private_barrier`] succeeded): the heavy half of the send
/// lock's asymmetric fence. May fail at run time (ENOMEM), like
/// [`global_barrier`].
pub(crate) fn private_barrier() -> io::Result<()> {
    fenced_membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED)
}
