//! Process and namespace helpers for the daemon and the test harness:
//! who we are, signals, and entering a network namespace. Here because
//! `unsafe` lives only in transport, ipc-shm and the client's C ABI.

use std::io;
use std::os::fd::AsRawFd;

/// True when the process runs with effective uid 0.
pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Sends `sig` to process `pid`.
pub fn kill(pid: u32, sig: libc::c_int) -> io::Result<()> {
    let pid = libc::pid_t::try_from(pid).map_err(|_| io::Error::other("pid out of range"))?;
    // A pid of 0 or -1 would signal a whole group or every process.
    if pid <= 0 {
        return Err(io::Error::other("refusing to signal pid <= 0"));
    }
    // SAFETY: kill takes plain integers; the pid is positive, so it names
    // exactly one process.
    if unsafe { libc::kill(pid, sig) } == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// True while a process with this pid exists (zombies included).
pub fn pid_alive(pid: u32) -> bool {
    match kill(pid, 0) {
        Ok(()) => true,
        // EPERM: it exists but belongs to someone else.
        Err(e) => e.raw_os_error() == Some(libc::EPERM),
    }
}

/// Moves the calling thread (only this thread) into the network namespace
/// named `ns` (a file under /run/netns). Sockets it opens afterwards live
/// there.
pub fn enter_netns(ns: &str) -> io::Result<()> {
    let file = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: `file` is an open namespace descriptor that outlives the
    // call; CLONE_NEWNET makes setns change only this thread's network
    // namespace, which no other thread observes.
    let rc = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}
