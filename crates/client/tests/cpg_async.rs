//! Pipelined `cpg_mcast_joined` against the real daemon: a burst of small
//! messages, sent as fast as the request ring takes them, all come back in
//! order, none lost, none twice. Prints the rate (not asserted).

mod common;

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::daemon::Daemon;
use corosync_rs::cpg::{Cpg, CpgHandlers};
use corosync_rs::{CsError, DispatchFlags, Guarantee};

#[test]
fn burst_of_async_mcasts_arrives_in_order_with_none_lost() {
    burst(64);
}

/// 20,000 × 1 KiB is five times the request ring: the sender meets
/// TRY_AGAIN whenever the daemon is behind or holds back.
#[test]
fn burst_larger_than_the_request_ring_arrives_in_order_with_none_lost() {
    burst(1024);
}

fn burst(size: usize) {
    const N: usize = 20_000;
    let d = Daemon::start();
    let got = Arc::new(AtomicUsize::new(0));
    let counter = Arc::clone(&got);
    let me = std::process::id();
    let cpg = Arc::new(
        d.connect(|| {
            Cpg::initialize(CpgHandlers::new().on_deliver(move |_, g, _, pid, m| {
                assert_eq!((g, pid, m.len()), (&b"burst"[..], me, size));
                let k = counter.load(Ordering::Relaxed);
                let stamp = u32::from_le_bytes(m[..4].try_into().unwrap());
                assert_eq!(stamp as usize, k, "out of order, lost or twice");
                counter.store(k + 1, Ordering::Relaxed);
            }))
        })
        .unwrap(),
    );
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[b"x"]),
        Err(CsError::NotExist),
        "not joined: refused by the client"
    );
    cpg.join(b"burst").unwrap();
    let start = Instant::now();
    let sender = {
        let cpg = Arc::clone(&cpg);
        std::thread::spawn(move || {
            let mut msg = vec![0x5au8; size];
            let (mut sent, mut try_again) = (0usize, 0usize);
            while sent < N {
                msg[..4].copy_from_slice(&(sent as u32).to_le_bytes());
                match cpg.mcast_joined(Guarantee::Agreed, &[&msg]) {
                    Ok(()) => sent += 1,
                    Err(CsError::TryAgain) => {
                        try_again += 1;
                        std::thread::yield_now();
                    }
                    Err(e) => panic!("mcast {sent}: {e}"),
                }
            }
            (start.elapsed(), try_again)
        })
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while got.load(Ordering::Relaxed) < N {
        assert!(
            Instant::now() < deadline,
            "only {} of {N} delivered",
            got.load(Ordering::Relaxed)
        );
        match cpg.dispatch(DispatchFlags::One) {
            Ok(()) | Err(CsError::TryAgain) => {}
            Err(e) => panic!("dispatch: {e}"),
        }
    }
    let all = start.elapsed();
    let (send_time, try_again) = sender.join().unwrap();
    eprintln!(
        "{N} x {size} B: sent in {send_time:?} ({:.0} msgs/s), all delivered in {all:?} \
         ({:.0} msgs/s), {try_again} TRY_AGAIN",
        N as f64 / send_time.as_secs_f64(),
        N as f64 / all.as_secs_f64()
    );
    assert_eq!(got.load(Ordering::Relaxed), N);
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(
        cpg.dispatch(DispatchFlags::OneNonblocking),
        Err(CsError::TryAgain),
        "nothing beyond the {N}"
    );
    assert_eq!(got.load(Ordering::Relaxed), N);
    cpg.leave(b"burst").unwrap();
    assert_eq!(
        cpg.mcast_joined(Guarantee::Agreed, &[b"x"]),
        Err(CsError::NotExist),
        "after leave: refused by the client"
    );
}
