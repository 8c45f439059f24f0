//! wake-bench: what a parked wake-up costs by the place the woken thread
//! waits in. A child process writes its CLOCK_MONOTONIC time into an
//! eventfd; the parent, asleep, wakes and takes the difference. The parent
//! waits in one of three ways, rotated in alternating blocks so that the
//! machine's noise falls on all three alike:
//!
//! - `read`: a blocking `read` of the eventfd (ipc-bench's bare baseline);
//! - `epoll`: `epoll_wait` on a set holding the eventfd, then `read` (how
//!   any server waiting for many clients waits; ipc-bench's parked path);
//! - `uring`: `io_uring_enter` waiting for a multishot poll on the eventfd,
//!   then `read` (how the daemon's run loop waits).
//!
//! The last line is one summary of plain decimals:
//! `read_p50_ns=… epoll_p50_ns=… uring_p50_ns=… epoll_over_read=… uring_over_read=…`.

use std::time::{Duration, Instant};

use clap::Parser;
use io_uring::{opcode, types, IoUring};

#[derive(Parser)]
#[command(about = "one-way wake-up cost: blocking read vs epoll_wait vs io_uring")]
struct Args {
    /// Wake-ups per method.
    #[arg(long, default_value_t = 30_000, value_parser = clap::value_parser!(u32).range(1..))]
    n: u32,
    /// Wake-ups per block (blocks of the three methods alternate).
    #[arg(long, default_value_t = 1_000, value_parser = clap::value_parser!(u32).range(1..))]
    block: u32,
    /// Microseconds the child waits between wake-ups, so that the parent
    /// is asleep when the next one comes.
    #[arg(long, default_value_t = 60)]
    gap_us: u64,
}

#[derive(Clone, Copy)]
enum Method {
    Read,
    Epoll,
    Uring,
}

const METHODS: [Method; 3] = [Method::Read, Method::Epoll, Method::Uring];

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

/// The child: `rounds` wake-ups, each after `gap` of quiet, each
/// acknowledged by the parent before the next.
fn child(ping: i32, ack: i32, rounds: usize, gap: Duration) -> ! {
    for _ in 0..rounds {
        std::thread::sleep(gap);
        write_u64(ping, now_ns());
        read_u64(ack);
    }
    // SAFETY: leaves the forked child without running the parent's exit
    // handlers or destructors twice.
    unsafe { libc::_exit(0) }
}

struct Waiters {
    epoll: i32,
    ring: IoUring,
}

impl Waiters {
    fn new(ping: i32) -> Waiters {
        // SAFETY: plain syscall.
        let epoll = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        assert!(epoll >= 0, "epoll_create1");
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: 0,
        };
        // SAFETY: both fds are open; `ev` is a live epoll_event.
        let r = unsafe { libc::epoll_ctl(epoll, libc::EPOLL_CTL_ADD, ping, &mut ev) };
        assert_eq!(r, 0, "epoll_ctl");
        let mut ring = IoUring::new(8).expect("io_uring");
        let poll = opcode::PollAdd::new(types::Fd(ping), libc::POLLIN as u32)
            .multi(true)
            .build();
        // SAFETY: the poll references only the fd, which outlives the ring.
        unsafe { ring.submission().push(&poll).expect("room") };
        ring.submit().expect("submit");
        Waiters { epoll, ring }
    }

    /// Waits for the next ping by `m`; returns its timestamp.
    fn wait(&mut self, m: Method, ping: i32) -> u64 {
        match m {
            Method::Read => {}
            Method::Epoll => {
                let mut ev = libc::epoll_event { events: 0, u64: 0 };
                // SAFETY: one live epoll_event.
                while unsafe { libc::epoll_wait(self.epoll, &mut ev, 1, -1) } != 1 {}
            }
            Method::Uring => {
                self.ring.submit_and_wait(1).expect("io_uring_enter");
                let more = self.ring.completion().next().map(|c| c.flags());
                let more = more.is_some_and(io_uring::cqueue::more);
                if !more {
                    let poll = opcode::PollAdd::new(types::Fd(ping), libc::POLLIN as u32)
                        .multi(true)
                        .build();
                    // SAFETY: as in `new`.
                    unsafe { self.ring.submission().push(&poll).expect("room") };
                }
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
    let rounds = blocks * block * METHODS.len();
    let (ping, ack) = (eventfd(), eventfd());
    // SAFETY: the process is single-threaded here; the child only calls
    // async-signal-safe functions and sleeps before it exits with _exit.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork: {}", std::io::Error::last_os_error());
    if pid == 0 {
        child(ping, ack, rounds, Duration::from_micros(a.gap_us));
    }
    let mut w = Waiters::new(ping);
    let mut samples: [Vec<u64>; 3] = Default::default();
    let started = Instant::now();
    for b in 0..blocks * METHODS.len() {
        let (i, m) = (b % METHODS.len(), METHODS[b % METHODS.len()]);
        for _ in 0..block {
            let sent = w.wait(m, ping);
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
    let mut p = [0u64; 3];
    for (i, name) in ["read", "epoll", "uring"].iter().enumerate() {
        p[i] = p50(&mut samples[i]);
        println!(
            "{name:>5}: p50 {} ns, p99 {} ns ({} wake-ups)",
            p[i],
            pct(&samples[i], 0.99),
            samples[i].len()
        );
    }
    println!("({:.1} s)", started.elapsed().as_secs_f64());
    println!(
        "read_p50_ns={} epoll_p50_ns={} uring_p50_ns={} epoll_over_read={:.3} uring_over_read={:.3}",
        p[0],
        p[1],
        p[2],
        p[1] as f64 / p[0] as f64,
        p[2] as f64 / p[0] as f64
    );
}
