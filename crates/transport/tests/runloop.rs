//! The run loop waits in one place for frames, doorbells, timers and
//! signals, on both engines.

mod common;

use std::time::{Duration, Instant};

use common::*;
use transport::{
    Dest, Handler, NodeId, RealtimePolicy, Received, RunLoop, RunLoopConfig, Source, Transport,
};

#[derive(Default)]
struct Seen {
    frames: Vec<Vec<u8>>,
    sources: Vec<Source>,
}

impl Handler for Seen {
    fn on_frame(&mut self, f: Received<'_>) {
        self.frames.push(f.payload.to_vec());
    }
    fn on_source(&mut self, s: Source) {
        self.sources.push(s);
    }
}

fn turn_until(l: &mut RunLoop, h: &mut Seen, done: impl Fn(&Seen) -> bool) {
    let end = Instant::now() + Duration::from_secs(10);
    while !done(h) && Instant::now() < end {
        l.turn(Some(Duration::from_millis(200)), h).unwrap();
    }
    assert!(done(h), "sources {:?} frames {}", h.sources, h.frames.len());
}

#[test]
fn one_waiting_place_for_frames_doorbells_timers_and_signals() {
    for e in engines() {
        if !available(e) {
            continue;
        }
        let m = [(NodeId(1), unique_lo(5405)), (NodeId(2), unique_lo(5405))];
        let o = Opts::new(e);
        let mut a = Transport::new(config(1, &m, &o)).unwrap();
        let b = Transport::new(config(2, &m, &o)).unwrap();
        let cfg = RunLoopConfig {
            spin_us: 20,
            ..Default::default()
        };
        let mut l = RunLoop::new(b, &cfg).unwrap();
        let bell = l.add_doorbell(7).unwrap();
        let timer = l.add_timer(3).unwrap();
        l.add_signals(&[libc::SIGUSR1]).unwrap();
        let mut h = Seen::default();

        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(50));
            bell.ring();
        });
        turn_until(&mut l, &mut h, |h| h.sources.contains(&Source::Doorbell(7)));
        t.join().unwrap();

        l.set_timer(timer, Some(Duration::from_millis(20))).unwrap();
        turn_until(&mut l, &mut h, |h| h.sources.contains(&Source::Timer(3)));

        // SAFETY: SIGUSR1 is blocked on this thread by add_signals, so the
        // thread-directed signal stays pending for the signalfd.
        unsafe { libc::raise(libc::SIGUSR1) };
        turn_until(&mut l, &mut h, |h| {
            h.sources.contains(&Source::Signal(libc::SIGUSR1))
        });

        a.send_batch(&[(Dest::Node(NodeId(2)), b"via loop".as_slice())])
            .unwrap();
        turn_until(&mut l, &mut h, |h| !h.frames.is_empty());
        assert_eq!(h.frames[0], b"via loop");
        // Each source was reported once per event, not repeatedly.
        assert_eq!(
            h.sources
                .iter()
                .filter(|s| **s == Source::Doorbell(7))
                .count(),
            1
        );
    }
}

#[test]
fn never_spins_under_realtime_priority() {
    let c = RunLoopConfig {
        spin_us: 100,
        realtime: Some(RealtimePolicy::Fifo(10)),
        pin_core: None,
    };
    assert!(c.effective_spin().is_zero());
    let c = RunLoopConfig {
        spin_us: 100,
        ..Default::default()
    };
    assert_eq!(c.effective_spin(), Duration::from_micros(100));
    // More daemons than cores: no pinning, no spinning.
    let many = RunLoopConfig::for_host(1024);
    assert!(many.pin_core.is_none() && many.spin_us == 0);
}

/// The CPUs the calling thread may run on.
fn own_affinity() -> Vec<usize> {
    // SAFETY: an all-zero cpu_set_t is a valid empty set; the call fills it.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `set` is live and sized as passed.
    let rc =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut set) };
    assert_eq!(rc, 0);
    // SAFETY: CPU_ISSET reads the live set.
    (0..libc::CPU_SETSIZE as usize)
        .filter(|&c| unsafe { libc::CPU_ISSET(c, &set) })
        .collect()
}

#[test]
fn pinning_and_realtime_priority_apply_to_the_protocol_thread() {
    // On a thread of its own: the settings stick to the calling thread.
    std::thread::spawn(|| {
        let m = [(NodeId(1), unique_lo(5405))];
        let t =
            Transport::new(config(1, &m, &Opts::new(transport::EngineChoice::Fallback))).unwrap();
        let core = *own_affinity().last().expect("some CPU");
        let cfg = RunLoopConfig {
            pin_core: Some(core),
            realtime: Some(RealtimePolicy::RoundRobin(5)),
            spin_us: 0,
        };
        let _l = RunLoop::new(t, &cfg).unwrap();
        assert_eq!(own_affinity(), vec![core], "pinned to CPU {core}");
        // SAFETY: plain queries of the calling thread.
        let (policy, prio) = unsafe {
            let mut p: libc::sched_param = std::mem::zeroed();
            (libc::sched_getscheduler(0), {
                libc::sched_getparam(0, &mut p);
                p.sched_priority
            })
        };
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            assert_eq!((policy, prio), (libc::SCHED_RR, 5));
        } else {
            eprintln!("not root: realtime priority not checked (policy {policy})");
        }
        // A CPU that does not exist is a clear error, not a panic.
        let m = [(NodeId(1), unique_lo(5405))];
        let t =
            Transport::new(config(1, &m, &Opts::new(transport::EngineChoice::Fallback))).unwrap();
        let bad = RunLoopConfig {
            pin_core: Some(100_000),
            ..Default::default()
        };
        let err = RunLoop::new(t, &bad).err().expect("no such CPU");
        assert!(err.to_string().contains("no such CPU"), "{err}");
    })
    .join()
    .unwrap();
}
