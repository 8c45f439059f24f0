//! The one system call the client makes itself: waiting on two fds.
//!
//! Blocking dispatch must wait until an event arrives *without consuming
//! it* (so `CS_DISPATCH_ONE` takes exactly one and the pollable fd stays
//! truthful), and must also wake when another thread finalizes the
//! connection. std has no safe `poll`, hence this binding.

use std::io;
use std::os::fd::RawFd;

/// Which of the two fds became ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Ready {
    pub first: bool,
    pub second: bool,
}

/// Waits until `a` or `b` is readable (or hung up), up to `timeout_ms`
/// (-1: no limit). Retries on EINTR.
pub(crate) fn wait_readable(a: RawFd, b: RawFd, timeout_ms: i32) -> io::Result<Ready> {
    let ready = libc::POLLIN | libc::POLLHUP | libc::POLLERR | libc::POLLNVAL;
    let mut fds = [
        libc::pollfd {
            fd: a,
            events: libc::POLLIN,
            revents: 0,
        },
        libc::pollfd {
            fd: b,
            events: libc::POLLIN,
            revents: 0,
        },
    ];
    loop {
        // SAFETY: `fds` is a valid, writable array of two pollfd structs
        // that outlives the call; poll only reads and writes inside it.
        let n = unsafe { libc::poll(fds.as_mut_ptr(), fds.len() as libc::nfds_t, timeout_ms) };
        if n >= 0 {
            return Ok(Ready {
                first: fds[0].revents & ready != 0,
                second: fds[1].revents & ready != 0,
            });
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}
