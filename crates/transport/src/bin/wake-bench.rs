//! wake-bench: what a parked wake-up costs by the place the woken thread
//! waits in. A child process writes its CLOCK_MONOTONIC time into an
//! eventfd; the parent, asleep, wakes and takes the difference. The parent
//! waits in one of five ways, rotated in alternating blocks so that the
//! machine's noise falls on all of them alike:
//!
//! - `read`: a blocking `read` of the eventfd (ipc-bench's bare baseline);
//! - `epoll`: `epoll_wait` on a set holding the eventfd, then `read` (how
//!   any server waiting for many clients waits; ipc-bench's parked path);
//! - `uring`: `io_uring_enter` waiting for a multishot poll on the eventfd,
//!   then `read`, on a ring set up with COOP_TASKRUN (how the daemon's run
//!   loop waits);
//! - `uring_defer`: the same on a ring set up with SINGLE_ISSUER and
//!   DEFER_TASKRUN (the completion work runs in the waiter's own
//!   `io_uring_enter` instead of as task work that interrupts it);
//! - `uring_read`: a one-shot io_uring `read` of the eventfd on a
//!   DEFER_TASKRUN ring, re-armed for every wake-up (no separate `read`).
//!
//! The last line is one summary of plain decimals:
//! `read_p50_ns=… epoll_p50_ns=… uring_p50_ns=… uring_defer_p50_ns=… uring_read_p50_ns=…
//!  epoll_over_read=… uring_over_read=… uring_defer_over_read=… uring_read_over_read=…`.

use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{opcode, types, IoUring};

#[derive(Parser)]
#[command(about = "one-way wake-up cost: blocking read vs epoll_wait vs io_uring (three set-ups)")]
struct Args {
    /// Wake-ups per method.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..))]
    n: u32,
    /// Wake-ups per block (blocks of the five methods alternate).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    block: u32,
    /// Microseconds the child waits between wake-ups, so that the parent
    /// is asleep when the next one comes.
    #[arg(long, default_value_t = 60)]
    gap_us: u64,
}

/// In `METHODS` order: a method's discriminant indexes its eventfd.
#[derive(Clone, Copy)]
enum Method {
    Read,
    Epoll,
    Uring,
    UringDefer,
    UringRead,
}

const METHODS: [Method; 5] = [
    Method::Read,
    Method::Epoll,
    Method::Uring,
    Method::UringDefer,
    Method::UringRead,
];

fn now_ns() -> u64 {
    let mut t = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `t` is a live timespec.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut t) };
    t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
}

fn write_u64(fd: i32, v: u64) {
    // SAFETY: writes 8 bytes from a live u64.
    let n = unsafe { libc::write(fd, (&v as *const u64).cast(), 8) };
    assert_eq!(n, 8, "eventfd write: {}", std::io::Error::last_os_error());
}

fn read_u64(fd: i32) -> u64 {
    let mut v = 0u64;
    // SAFETY: reads 8 bytes into a live u64.
    let n = unsafe { libc::read(fd, (&mut v as *mut u64).cast(), 8) };
    assert_eq!(n, 8, "eventfd read: {}", std::io::Error::last_os_error());
    v
}

fn eventfd() -> i32 {
    // SAFETY: plain syscall; blocking, inherited by the child.
    let fd = unsafe { libc::eventfd(0, 0) };
    assert!(fd >= 0, "eventfd: {}", std::io::Error::last_os_error());
    fd
}

/// The child: `blocks` blocks of `block` wake-ups, each after `gap` of
/// quiet and acknowledged by the parent before the next; block `b` pings
/// the eventfd of method `b % METHODS.len()`.
fn child(pings: &[i32; METHODS.len()], ack: i32, blocks: usize, block: usize, gap: Duration) -> ! {
    for b in 0..blocks {
        let ping = pings[b % METHODS.len()];
        for _ in 0..block {
            std::thread::sleep(gap);
            write_u64(ping, now_ns());
            read_u64(ack);
        }
    }
    // SAFETY: leaves the forked child without running the parent's exit
    // handlers or destructors twice.
    unsafe { libc::_exit(0) }
}

/// Each method waits on an eventfd of its own, so that a ping wakes only
/// the waiter being measured (a poll left armed on a shared eventfd would
/// queue work, and stale completions, behind every other method's pings).
struct Waiters {
    pings: [i32; METHODS.len()],
    epoll: i32,
    ring: IoUring,
    defer: IoUring,
    read_ring: IoUring,
    value: Box<u64>,
}

fn arm_poll(ring: &mut IoUring, ping: i32) {
    let poll = opcode::PollAdd::new(types::Fd(ping), libc::POLLIN as u32)
        .multi(true)
        .build();
    // SAFETY: the poll references only the fd, which outlives the ring.
    unsafe { ring.submission().push(&poll).expect("room") };
}

fn defer_ring() -> IoUring {
    IoUring::builder()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .build(8)
        .expect("io_uring with DEFER_TASKRUN")
}

impl Waiters {
    fn new(pings: [i32; METHODS.len()]) -> Waiters {
        // SAFETY: plain syscall.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0, "epoll_create1");
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; `ev` is a live epoll_event.
        let r = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, pings[1], &mut ev) };
        assert_eq!(r, 0, "epoll_ctl");
        let mut ring = IoUring::builder()
            .setup_coop_taskrun()
            .build(8)
            .expect("io_uring with COOP_TASKRUN");
        arm_poll(&mut ring, pings[2]);
        ring.submit().expect("submit");
        let mut defer = defer_ring();
        arm_poll(&mut defer, pings[3]);
        defer.submit().expect("submit");
        Waiters {
            pings,
            epoll,
            ring,
            defer,
            read_ring: defer_ring(),
            value: Box::new(0),
        }
    }

    /// Waits for the next ping by `m`; returns its timestamp.
    fn wait(&mut self, m: Method) -> u64 {
        let ping = self.pings[m as usize];
        match m {
            Method::Read => {}
            Method::Epoll => {
                let mut ev = libc::epoll_event { events: 0, u64: 0 };
                // SAFETY: one live epoll_event.
                while unsafe { libc::epoll_wait(self.epoll, &mut ev, 1, -1) } != 1 {}
            }
            Method::Uring | Method::UringDefer => {
                let ring = match m {
                    Method::Uring => &mut self.ring,
                    _ => &mut self.defer,
                };
                ring.submit_and_wait(1).expect("io_uring_enter");
                let more = ring.completion().next().map(|c| c.flags());
                if !more.is_some_and(io_uring::cqueue::more) {
                    arm_poll(ring, ping);
                }
            }
            Method::UringRead => {
                let read =
                    opcode::Read::new(types::Fd(ping), (&mut *self.value as *mut u64).cast(), 8)
                        .build();
                // SAFETY: `value` is boxed and outlives the request, which
                // completes before this function returns.
                unsafe { self.read_ring.submission().push(&read).expect("room") };
                self.read_ring.submit_and_wait(1).expect("io_uring_enter");
                let res = self.read_ring.completion().next().map(|c| c.result());
                assert_eq!(res, Some(8), "io_uring eventfd read");
                return *self.value;
            }
        }
        read_u64(ping)
    }
}

fn p50(v: &mut [u64]) -> u64 {
    v.sort_unstable();
    v[v.len() / 2]
}

fn pct(v: &[u64], q: f64) -> u64 {
    v[((v.len() - 1) as f64 * q) as usize]
}

fn main() {
    let a = Args::parse();
    let (n, block) = (a.n as usize, a.block as usize);
    // One warm-up block per method, then enough blocks for `n` samples.
    let blocks = n.div_ceil(block) + 1;
    let pings: [i32; METHODS.len()] = std::array::from_fn(|_| eventfd());
    let ack = eventfd();
    // SAFETY: the process is single-threaded here; the child only calls
    // async-signal-safe functions and sleeps before it exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child(
            &pings,
            ack,
            blocks * METHODS.len(),
            block,
            Duration::from_micros(a.gap_us),
        );
    }
    let mut w = Waiters::new(pings);
    let mut samples: [Vec<u64>; METHODS.len()] = Default::default();
    let started = Instant::now();
    for b in 0..blocks * METHODS.len() {
        let (i, m) = (b % METHODS.len(), METHODS[b % METHODS.len()]);
        for _ in 0..block {
            let sent = w.wait(m);
            let d = now_ns().saturating_sub(sent);
            // The first block of each method warms it up.
            if b >= METHODS.len() {
                samples[i].push(d);
            }
            write_u64(ack, 1);
        }
    }
    let mut status = 0;
    // SAFETY: reaps our own child.
    unsafe { libc::waitpid(pid, &mut status, 0) };
    let mut p = [0u64; METHODS.len()];
    for (i, name) in ["read", "epoll", "uring", "uring_defer", "uring_read"]
        .iter()
        .enumerate()
    {
        p[i] = p50(&mut samples[i]);
        println!(
            "{name:>11}: p50 {} ns, p99 {} ns ({} wake-ups)",
            p[i],
            pct(&samples[i], 0.99),
            samples[i].len()
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    println!(
        "read_p50_ns={} epoll_p50_ns={} uring_p50_ns={} uring_defer_p50_ns={} uring_read_p50_ns={} epoll_over_read={:.3} uring_over_read={:.3} uring_defer_over_read={:.3} uring_read_over_read={:.3}",
        p[0],
        p[1],
        p[2],
        p[3],
        p[4],
        p[1] as f64 / p[0] as f64,
        p[2] as f64 / p[0] as f64,
        p[3] as f64 / p[0] as f64,
        p[4] as f64 / p[0] as f64
    );
}
