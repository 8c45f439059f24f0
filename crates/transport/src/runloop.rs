//! The pinned protocol thread's run loop: it owns the transport and is the
//! daemon's one place to wait. It parks only inside the engine (in
//! `io_uring_enter`, or `epoll_wait` in the fallback); IPC doorbells
//! (eventfds), timers (timerfds) and signals (a signalfd) are registered
//! there, so nothing else on the thread blocks.
//!
//! Adaptive busy-polling: after activity the loop keeps polling without
//! parking for `spin_us` (yielding the CPU after every empty poll), then
//! parks. It never spins under a realtime priority, and pinning and
//! spinning are off unless configured (they default off where more daemons
//! than cores share a machine).

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::transport::{Received, Transport};
use crate::TransportError;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RealtimePolicy {
    Fifo(i32),
    RoundRobin(i32),
}

#[derive(Clone, Debug, Default)]
pub struct RunLoopConfig {
    /// Pin the protocol thread to this CPU.
    pub pin_core: Option<usize>,
    /// SCHED_FIFO / SCHED_RR priority for the protocol thread.
    pub realtime: Option<RealtimePolicy>,
    /// Busy-poll budget after activity, in µs (0: park at once).
    pub spin_us: u32,
}

impl RunLoopConfig {
    /// Pinning and a 50 µs spin when this daemon can have a core of its
    /// own (`daemons_on_host` < cores); both off otherwise.
    pub fn for_host(daemons_on_host: usize) -> Self {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        if daemons_on_host < cores {
            Self {
                pin_core: Some(cores - 1 - (daemons_on_host.saturating_sub(1) % cores)),
                realtime: None,
                spin_us: 50,
            }
        } else {
            Self::default()
        }
    }

    /// The spin budget actually used: none under a realtime policy.
    pub fn effective_spin(&self) -> Duration {
        if self.realtime.is_some() {
            Duration::ZERO
        } else {
            Duration::from_micros(u64::from(self.spin_us))
        }
    }
}

/// Blocks `signals` in the calling thread and in every thread it creates
/// afterwards. Call it first thing in `main`, before any thread exists, so
/// that a process-directed signal stays pending until the run loop's
/// signalfd reads it instead of killing the process through a helper
/// thread that left it unblocked.
pub fn block_signals(signals: &[i32]) {
    // SAFETY: sigset manipulation on a local, zero-initialised set; the
    // old mask is not requested.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in signals {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

/// What a registered descriptor is, so the loop drains it correctly.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Source {
    Doorbell(u32),
    Timer(u32),
    Signal(i32),
    /// A descriptor registered with `add_fd`, readable; the loop does not
    /// read it (its owner drains it).
    Fd(u32),
}

/// Wakes the run loop from another thread (an eventfd write).
#[derive(Clone, Debug)]
pub struct Doorbell(Arc<OwnedFd>);

impl Doorbell {
    pub fn ring(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to an eventfd we own.
        let _ = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }
}

/// The caller's reactions; called on the protocol thread.
pub trait Handler {
    fn on_frame(&mut self, frame: Received<'_>);
    fn on_source(&mut self, source: Source);
}

enum Kind {
    Eventfd(Arc<OwnedFd>, u32),
    Timerfd(OwnedFd, u32),
    Signalfd(OwnedFd),
    /// Someone else's descriptor (e.g. the IPC server's epoll set).
    Foreign(u32),
}

pub struct RunLoop {
    transport: Transport,
    spin: Duration,
    kinds: Vec<Kind>,
    ready: Vec<u32>,
    last_activity: Instant,
}

fn cvt(r: libc::c_int) -> io::Result<libc::c_int> {
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

impl RunLoop {
    /// Applies pinning and priority to the calling thread (which becomes
    /// the protocol thread) and takes ownership of the transport.
    pub fn new(transport: Transport, cfg: &RunLoopConfig) -> Result<Self, TransportError> {
        if let Some(core) = cfg.pin_core {
            let ids = core_affinity::get_core_ids().unwrap_or_default();
            let id = ids
                .into_iter()
                .find(|c| c.id == core)
                .ok_or_else(|| TransportError::Config(format!("pin_core {core}: no such CPU")))?;
            if !core_affinity::set_for_current(id) {
                return Err(TransportError::Config(format!("cannot pin to CPU {core}")));
            }
        }
        if let Some(rt) = cfg.realtime {
            let (policy, prio) = match rt {
                RealtimePolicy::Fifo(p) => (libc::SCHED_FIFO, p),
                RealtimePolicy::RoundRobin(p) => (libc::SCHED_RR, p),
            };
            let param = libc::sched_param {
                sched_priority: prio,
            };
            // SAFETY: `param` is a live sched_param; pid 0 is this thread.
            if let Err(e) = cvt(unsafe { libc::sched_setscheduler(0, policy, &param) }) {
                // As Corosync: without the privilege, run at normal priority.
                tracing::warn!("cannot set realtime scheduling ({rt:?}): {e}; running without it");
            }
        }
        Ok(Self {
            transport,
            spin: cfg.effective_spin(),
            kinds: Vec::new(),
            ready: Vec::with_capacity(64),
            last_activity: Instant::now(),
        })
    }

    pub fn transport(&mut self) -> &mut Transport {
        &mut self.transport
    }

    fn register(&mut self, fd: RawFd, kind: Kind) -> Result<(), TransportError> {
        let idx = self.transport.watch_fd(fd)?;
        assert_eq!(idx as usize, self.kinds.len(), "watch indices are dense");
        self.kinds.push(kind);
        Ok(())
    }

    /// A doorbell other threads ring; reported as `Source::Doorbell(id)`.
    pub fn add_doorbell(&mut self, id: u32) -> Result<Doorbell, TransportError> {
        // SAFETY: eventfd has no memory preconditions.
        let fd = cvt(unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) })
            .map_err(crate::error::sock_err("eventfd"))?;
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = Arc::new(unsafe { OwnedFd::from_raw_fd(fd) });
        self.register(fd.as_raw_fd(), Kind::Eventfd(fd.clone(), id))?;
        Ok(Doorbell(fd))
    }

    /// A timer, armed with `set_timer`; reported as `Source::Timer(id)`.
    pub fn add_timer(&mut self, id: u32) -> Result<usize, TransportError> {
        // SAFETY: timerfd_create has no memory preconditions.
        let fd = cvt(unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        })
        .map_err(crate::error::sock_err("timerfd_create"))?;
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        let slot = self.kinds.len();
        self.register(raw, Kind::Timerfd(fd, id))?;
        Ok(slot)
    }

    /// Arms (or with `None` disarms) the timer `slot` from `add_timer`.
    pub fn set_timer(
        &mut self,
        slot: usize,
        after: Option<Duration>,
    ) -> Result<(), TransportError> {
        let Some(Kind::Timerfd(fd, _)) = self.kinds.get(slot) else {
            return Err(TransportError::Config(format!("{slot} is not a timer")));
        };
        let d = after
            .map(|d| d.max(Duration::from_nanos(1)))
            .unwrap_or_default();
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: libc::timespec {
                tv_sec: d.as_secs() as libc::time_t,
                tv_nsec: libc::c_long::from(d.subsec_nanos() as i32),
            },
        };
        // SAFETY: `spec` is a live itimerspec; old value not requested.
        cvt(unsafe { libc::timerfd_settime(fd.as_raw_fd(), 0, &spec, std::ptr::null_mut()) })
            .map_err(crate::error::sock_err("timerfd_settime"))?;
        Ok(())
    }

    /// Watches `fd`, owned by the caller who keeps it open for the life of
    /// the loop; reported as `Source::Fd(id)` whenever it becomes readable.
    /// The loop never reads it: the owner drains it completely on every
    /// report (readiness is reported on change, as with an edge-triggered
    /// poll). An epoll set of the caller's own fds fits: the loop still
    /// waits in one place.
    pub fn add_fd(&mut self, fd: RawFd, id: u32) -> Result<(), TransportError> {
        self.register(fd, Kind::Foreign(id))
    }

    /// Blocks `signals` for this thread and delivers them through the loop
    /// as `Source::Signal(signo)`. (Other threads should block them too.)
    pub fn add_signals(&mut self, signals: &[i32]) -> Result<(), TransportError> {
        // SAFETY: sigset manipulation on a local, zero-initialised set.
        let fd = unsafe {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            for &s in signals {
                libc::sigaddset(&mut set, s);
            }
            libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            libc::signalfd(-1, &set, libc::SFD_NONBLOCK | libc::SFD_CLOEXEC)
        };
        let fd = cvt(fd).map_err(crate::error::sock_err("signalfd"))?;
        // SAFETY: `fd` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let raw = fd.as_raw_fd();
        self.register(raw, Kind::Signalfd(fd))
    }

    /// Reads a ready descriptor empty and reports what it was.
    fn drain_source(&mut self, idx: u32, h: &mut impl Handler) {
        let mut buf = [0u8; 128];
        let Some(kind) = self.kinds.get(idx as usize) else {
            return;
        };
        let (fd, chunk) = match kind {
            Kind::Foreign(id) => {
                h.on_source(Source::Fd(*id));
                return;
            }
            Kind::Eventfd(fd, _) => (fd.as_raw_fd(), 8),
            Kind::Timerfd(fd, _) => (fd.as_raw_fd(), 8),
            Kind::Signalfd(fd) => (fd.as_raw_fd(), 128),
        };
        loop {
            // SAFETY: reads at most `chunk` <= 128 bytes into `buf`.
            let n = unsafe { libc::read(fd, buf.as_mut_ptr().cast(), chunk) };
            if n < chunk as isize {
                break;
            }
            match kind {
                Kind::Eventfd(_, id) => {
                    h.on_source(Source::Doorbell(*id));
                    break;
                }
                Kind::Timerfd(_, id) => {
                    h.on_source(Source::Timer(*id));
                    break;
                }
                Kind::Foreign(..) => break,
                Kind::Signalfd(_) => {
                    let signo = i32::from_ne_bytes([buf[0], buf[1], buf[2], buf[3]]);
                    h.on_source(Source::Signal(signo));
                }
            }
        }
    }

    /// One turn: receive what is ready, serve ready sources; park (up to
    /// `max_wait`) only when the spin budget since the last activity is
    /// spent. Returns the number of events handled.
    pub fn turn(
        &mut self,
        max_wait: Option<Duration>,
        h: &mut impl Handler,
    ) -> Result<usize, TransportError> {
        let spinning = !self.spin.is_zero() && self.last_activity.elapsed() < self.spin;
        let wait = if spinning {
            Some(Duration::ZERO)
        } else {
            max_wait
        };
        let mut n = self.transport.recv(wait, |f| h.on_frame(f))?;
        self.transport.drain_ready(&mut self.ready);
        let ready = std::mem::take(&mut self.ready);
        for &i in &ready {
            self.drain_source(i, h);
        }
        n += ready.len();
        self.ready = ready;
        self.ready.clear();
        if n > 0 {
            self.last_activity = Instant::now();
        } else if spinning {
            // An empty spin turn gives the CPU to whatever else is
            // runnable: where daemons and clients outnumber CPUs, a spinner
            // that never yields keeps its CPU for a whole time slice
            // (milliseconds) while the thread it waits for cannot run.
            // With the CPU to itself, this returns at once.
            // SAFETY: sched_yield has no preconditions.
            unsafe { libc::sched_yield() };
        }
        Ok(n)
    }
}
