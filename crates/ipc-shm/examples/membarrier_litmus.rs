//! Does `membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED)` order a registered
//! process's plain store and load on every CPU? The light request path
//! rests on it (a client publishes with a store and loads the daemon's
//! wake-up request; the daemon stores the request, issues the barrier and
//! loads the index). This runs that pattern as a litmus test:
//!
//! ```text
//!   registered process, CPU 1          other process, CPU 0
//!   x = 1                              y = 1
//!   compiler fence                     membarrier(GLOBAL_EXPEDITED)
//!   r1 = y                             r2 = x
//! ```
//!
//! `r1 == 0 && r2 == 0` is what the barrier forbids. Three ways:
//! `none` (no barrier, no registration: the control, showing that the
//! harness races), `running` (registered while a thread of the process
//! runs on CPU 1) and `idle` (registered while CPU 1 idles after running
//! the process, then the thread wakes there); and `private_idle`, the
//! same with `PRIVATE_EXPEDITED` issued by a thread of the process (the
//! send lock's revocation). On this VM's kernel (6.18) `idle` shows
//! forbidden outcomes and `running` none (README, IPC measurements).
//!
//! `cargo run --release -p ipc-shm --example membarrier_litmus -- [runs] [rounds]`
//! (default 20 runs of 300000 rounds per way; needs two CPUs, 0 and 1).

use std::sync::atomic::{compiler_fence, fence, AtomicBool, AtomicI64, Ordering};
use std::sync::Arc;

const MEMBARRIER_CMD_GLOBAL_EXPEDITED: libc::c_int = 1 << 1;
const MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED: libc::c_int = 1 << 2;
const MEMBARRIER_CMD_PRIVATE_EXPEDITED: libc::c_int = 1 << 3;
const MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED: libc::c_int = 1 << 4;

#[repr(C)]
struct Shared {
    x: AtomicI64,
    y: AtomicI64,
    round: AtomicI64,
    done: AtomicI64,
    r1: AtomicI64,
    ready: AtomicI64,
    violations: AtomicI64,
}

#[derive(Clone, Copy, PartialEq, Debug)]
enum Way {
    None,
    Running,
    Idle,
    /// `PRIVATE_EXPEDITED` from a thread of the same process (what the
    /// send lock's revocation uses), registered as in `Idle`.
    PrivateIdle,
}

fn membarrier(cmd: libc::c_int) -> libc::c_long {
    // SAFETY: membarrier takes two integers and touches no memory of ours.
    unsafe { libc::syscall(libc::SYS_membarrier, cmd, 0, 0) }
}

fn pin(cpu: usize) {
    // SAFETY: a zeroed cpu_set_t is the empty set; the calls only read it.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_SET(cpu, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set);
    }
}

/// One run in a fresh pair of processes; returns the forbidden outcomes.
fn run(way: Way, rounds: i64) -> i64 {
    // SAFETY: an anonymous shared mapping of one page, checked below; it
    // outlives both processes' use (unmapped at exit).
    let shared = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            4096,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED | libc::MAP_ANONYMOUS,
            -1,
            0,
        )
    };
    assert_ne!(shared, libc::MAP_FAILED, "mmap failed");
    // SAFETY: zero-filled page, properly aligned for these atomics.
    let s: &'static Shared = unsafe { &*(shared as *const Shared) };
    let barrier_side = move || {
        pin(0);
        while s.ready.load(Ordering::Acquire) == 0 {
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        let mut violations = 0;
        for k in 1..=rounds {
            s.x.store(0, Ordering::Relaxed);
            s.y.store(0, Ordering::Relaxed);
            s.r1.store(-1, Ordering::Relaxed);
            fence(Ordering::SeqCst);
            s.round.store(k, Ordering::Release);
            for _ in 0..(k * 7) % 13 {
                std::hint::spin_loop();
            }
            s.y.store(1, Ordering::Relaxed);
            match way {
                Way::None => fence(Ordering::SeqCst),
                Way::PrivateIdle => {
                    membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED);
                }
                Way::Running | Way::Idle => {
                    membarrier(MEMBARRIER_CMD_GLOBAL_EXPEDITED);
                }
            }
            let r2 = s.x.load(Ordering::Relaxed);
            while s.done.load(Ordering::Acquire) != k {
                std::hint::spin_loop();
            }
            if s.r1.load(Ordering::Relaxed) == 0 && r2 == 0 {
                violations += 1;
            }
        }
        s.violations.store(violations, Ordering::Release);
    };
    // The barrier side runs in a process of its own, except for the
    // private barrier, which only reaches this process's threads.
    let mut child = 0;
    let mut side_thread = None;
    if way == Way::PrivateIdle {
        side_thread = Some(barrier_side);
    } else {
        // SAFETY: the child only spins on shared memory, issues membarrier
        // and exits with _exit; this process has no other threads yet.
        child = unsafe { libc::fork() };
        assert!(child >= 0, "fork failed");
        if child == 0 {
            barrier_side();
            // SAFETY: ends the child without running the parent's destructors.
            unsafe { libc::_exit(0) };
        }
    }
    pin(0);
    let (wake_tx, wake_rx) = std::sync::mpsc::channel::<()>();
    let spinning = Arc::new(AtomicBool::new(false));
    let bg = {
        let spinning = spinning.clone();
        std::thread::spawn(move || {
            pin(1);
            // Run here a while, so that CPU 1 holds this address space.
            let t = std::time::Instant::now();
            while t.elapsed() < std::time::Duration::from_millis(20) {
                std::hint::spin_loop();
            }
            if matches!(way, Way::Idle | Way::PrivateIdle) {
                // Blocked: CPU 1 idles with this address space loaded.
                let _ = wake_rx.recv();
            } else {
                spinning.store(true, Ordering::Release);
            }
            while s.ready.load(Ordering::Acquire) == 0 {
                std::hint::spin_loop();
            }
            for k in 1..=rounds {
                while s.round.load(Ordering::Acquire) != k {
                    std::hint::spin_loop();
                }
                s.x.store(1, Ordering::Relaxed);
                compiler_fence(Ordering::SeqCst);
                let r1 = s.y.load(Ordering::Relaxed);
                s.r1.store(r1, Ordering::Relaxed);
                s.done.store(k, Ordering::Release);
            }
        })
    };
    if matches!(way, Way::Idle | Way::PrivateIdle) {
        std::thread::sleep(std::time::Duration::from_millis(100));
    } else {
        while !spinning.load(Ordering::Acquire) {
            std::hint::spin_loop();
        }
    }
    let register = match way {
        Way::None => None,
        Way::PrivateIdle => Some(MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED),
        Way::Running | Way::Idle => Some(MEMBARRIER_CMD_REGISTER_GLOBAL_EXPEDITED),
    };
    if let Some(cmd) = register {
        assert_eq!(membarrier(cmd), 0, "membarrier registration refused");
    }
    let side_thread = side_thread.map(std::thread::spawn);
    drop(wake_tx);
    std::thread::sleep(std::time::Duration::from_millis(200));
    s.ready.store(1, Ordering::Release);
    bg.join().unwrap();
    if let Some(t) = side_thread {
        t.join().unwrap();
    } else {
        let mut status = 0;
        // SAFETY: waits for our own child.
        unsafe { libc::waitpid(child, &mut status, 0) };
    }
    let v = s.violations.load(Ordering::Acquire);
    // SAFETY: the mapping from above; nothing refers to it any more.
    unsafe { libc::munmap(shared, 4096) };
    v
}

fn main() {
    let mut args = std::env::args().skip(1);
    let runs: usize = args.next().map_or(20, |a| a.parse().expect("runs"));
    let rounds: i64 = args.next().map_or(300_000, |a| a.parse().expect("rounds"));
    // Each run forks; run each way in a child of its own so that the
    // parent stays unregistered (registration is per address space and
    // outlives the run).
    for way in [Way::None, Way::Running, Way::Idle, Way::PrivateIdle] {
        let (mut total, mut hit) = (0i64, 0usize);
        for _ in 0..runs {
            // SAFETY: as above; the child runs one litmus run and exits.
            let pid = unsafe { libc::fork() };
            assert!(pid >= 0, "fork failed");
            if pid == 0 {
                let v = run(way, rounds);
                // SAFETY: the exit code carries the count (capped).
                unsafe { libc::_exit(v.min(250) as i32) };
            }
            let mut status = 0;
            // SAFETY: waits for our own child.
            unsafe { libc::waitpid(pid, &mut status, 0) };
            let v = libc::WEXITSTATUS(status) as i64;
            total += v;
            hit += (v > 0) as usize;
        }
        println!(
            "way={:?} runs={runs} rounds={rounds} forbidden={total} runs_with_forbidden={hit}",
            way
        );
    }
}
