//! A small epoll-based run loop over a server's fds. Tests, benchmarks and
//! tools wait in it; the daemon never waits in it: it registers the loop's
//! epoll fd in its own single place to wait (the transport's run loop) and
//! turns this loop with a zero timeout when that fd is readable.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use crate::server::{FdChange, Server, Token};
use crate::sys;

pub struct PollLoop {
    epoll: OwnedFd,
    events: Vec<libc::epoll_event>,
}

impl PollLoop {
    pub fn new() -> io::Result<PollLoop> {
        // SAFETY: plain syscall.
        let raw = sys::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
        Ok(PollLoop {
            // SAFETY: just created, owned by nobody else.
            epoll: unsafe { OwnedFd::from_raw_fd(raw) },
            events: vec![libc::epoll_event { events: 0, u64: 0 }; 64],
        })
    }

    /// The epoll set itself: readable when one of the server's fds is, so
    /// a run loop with its own place to wait can watch this one fd and call
    /// `turn` with a zero timeout when it fires.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Readiness reports one `turn` takes at most: a `turn` that returns
    /// this many may have left more behind.
    pub fn batch(&self) -> usize {
        self.events.len()
    }

    /// Applies the server's pending fd registration changes.
    pub fn sync(&mut self, server: &mut Server) -> io::Result<()> {
        while let Some(change) = server.take_fd_change() {
            let (op, fd, Token(token)) = match change {
                FdChange::Add { fd, token } => (libc::EPOLL_CTL_ADD, fd, token),
                FdChange::Remove { fd, token } => (libc::EPOLL_CTL_DEL, fd, token),
            };
            let mut ev = libc::epoll_event {
                events: libc::EPOLLIN as u32,
                u64: token,
            };
            // SAFETY: valid epoll fd and event struct; the fd is still open
            // (the server closes retired fds only after this drain).
            let r = unsafe { libc::epoll_ctl(self.epoll.as_raw_fd(), op, fd, &mut ev) };
            if r < 0 && op == libc::EPOLL_CTL_ADD {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }

    /// Waits up to `timeout` (not at all if the server has work, and no
    /// longer than its re-check of parked sessions allows) and tells the
    /// server what became ready. Then call `server.next_event()` until it
    /// returns `None`. Returns the readiness reports handled.
    pub fn turn(&mut self, server: &mut Server, timeout: Option<Duration>) -> io::Result<usize> {
        self.sync(server)?;
        let timeout = match (timeout, server.recheck_in(Instant::now())) {
            (Some(t), Some(r)) => Some(t.min(r)),
            (t, r) => t.or(r),
        };
        let ms = if server.has_work() {
            0
        } else {
            // Rounded up: a wait rounded down to 0 ms would spin.
            timeout.map_or(-1, |t| {
                t.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32
            })
        };
        // SAFETY: the buffer holds `events.len()` entries.
        let n = unsafe {
            libc::epoll_wait(
                self.epoll.as_raw_fd(),
                self.events.as_mut_ptr(),
                self.events.len() as i32,
                ms,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        for i in 0..n as usize {
            let token = self.events[i].u64;
            server.handle_ready(Token(token));
        }
        server.recheck_parked(Instant::now());
        self.sync(server)?;
        Ok(n as usize)
    }
}
