//! A small CPG program: joins a group, prints every membership change and
//! message, and multicasts each line typed on standard input.
//!
//! ```sh
//! cargo run --release -p client --example cpg_chat -- my-group
//! ```
//!
//! Run it on two nodes (or twice on one) and type: every member prints
//! every line in the same order. `COROSYNC_IPC_ENDPOINT` picks the daemon
//! when several run on one host.

use std::io::BufRead;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use corosync_rs::cpg::{Address, Cpg, CpgHandlers, MODEL_V1_DELIVER_INITIAL_TOTEM_CONF};
use corosync_rs::{CsError, DispatchFlags, Guarantee};

fn list(addrs: &[Address]) -> String {
    let v: Vec<String> = addrs
        .iter()
        .map(|a| format!("{}/{} (reason {})", a.nodeid, a.pid, a.reason))
        .collect();
    v.join(", ")
}

fn main() -> Result<(), CsError> {
    let group = std::env::args().nth(1).unwrap_or_else(|| "cpg-chat".into());
    let handlers = || {
        CpgHandlers::new()
            .on_deliver(|_, _, nodeid, pid, msg| {
                println!("[{nodeid}/{pid}] {}", String::from_utf8_lossy(msg));
            })
            .on_confchg(|_, group, members, left, joined| {
                println!(
                    "group {}: {} members; left: [{}]; joined: [{}]",
                    String::from_utf8_lossy(group),
                    members.len(),
                    list(left),
                    list(joined)
                );
            })
            .on_totem_confchg(|_, ring, members| {
                println!("ring {:x}.{:x}: nodes {members:?}", ring.nodeid, ring.seq);
            })
    };
    // The daemon answers TRY_AGAIN until its first synchronization.
    let cpg = loop {
        match Cpg::model_initialize(MODEL_V1_DELIVER_INITIAL_TOTEM_CONF, handlers()) {
            Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(100)),
            other => break Arc::new(other?),
        }
    };
    cpg.join(group.as_bytes())?;
    println!(
        "node {} joined {group}; type lines to send",
        cpg.local_get()?
    );

    // One thread dispatches while this one sends. It stops after the
    // event that our own leave brings (the group's confchg).
    let stop = Arc::new(AtomicBool::new(false));
    let dispatcher = {
        let (cpg, stop) = (Arc::clone(&cpg), Arc::clone(&stop));
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                cpg.dispatch(DispatchFlags::One)?;
            }
            Ok::<(), CsError>(())
        })
    };
    for line in std::io::stdin().lock().lines() {
        let Ok(line) = line else { break };
        loop {
            match cpg.mcast_joined(Guarantee::Agreed, &[line.as_bytes()]) {
                Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(1)),
                other => break other?,
            }
        }
    }
    stop.store(true, Ordering::Release);
    cpg.leave(group.as_bytes())?;
    dispatcher.join().expect("dispatcher thread")?;
    match Arc::try_unwrap(cpg) {
        Ok(cpg) => cpg.finalize(),
        Err(_) => unreachable!("the dispatcher thread has ended"),
    }
}
