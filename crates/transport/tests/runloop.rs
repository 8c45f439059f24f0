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
