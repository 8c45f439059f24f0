//! `cpg-verify`: a CPG client that sends numbered, checksummed messages at
//! a steady rate and records every delivery and configuration change, for
//! the real-fault cluster tests (the message and log formats, and the
//! checker that reads the logs, are in `tests::verify`).
//!
//! ```text
//! cpg-verify --log /tmp/n0.log [--group g] [--rate 100] [--min-size 64] [--max-size 1400]
//!            [--big-permille 20] [--slow-after-ms 1000] [--seed 1]
//! ```
//!
//! It connects through `COROSYNC_IPC_ENDPOINT` (model v1 with the initial
//! totem confchg), joins the group and sends until told otherwise on
//! stdin: `stop` sends a FIN message and, once every member's FIN is
//! delivered, logs `Z`; `quit` (or end of input) logs `Q` and exits. When
//! the daemon goes away it logs `E` and reconnects (a new incarnation).
//!
//! A slow client (`--slow-after-ms`) stops dispatching after that long and
//! keeps sending a little, until the daemon disconnects it; then it logs
//! `E` and exits.

use std::collections::{BTreeSet, HashSet};
use std::fs::File;
use std::io::{BufRead, BufWriter, Write};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use clap::Parser;
use corosync_rs::cpg::{Address, Cpg, CpgHandlers, RingId, MODEL_V1_DELIVER_INITIAL_TOTEM_CONF};
use corosync_rs::{CsError, DispatchFlags, Guarantee};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use tests::verify::{self, Addr, Header, MsgId, Rec, KIND_DATA, KIND_FIN};

#[derive(Parser, Debug)]
#[command(about = "CPG verifier client: numbered, checksummed messages and a delivery log")]
struct Args {
    /// Where the log goes (`-` for stdout).
    #[arg(long)]
    log: PathBuf,
    #[arg(long, default_value = "cpg-verify")]
    group: String,
    /// Messages per second (0: receive only).
    #[arg(long, default_value_t = 100)]
    rate: u32,
    #[arg(long, default_value_t = 64)]
    min_size: u32,
    #[arg(long, default_value_t = 1400)]
    max_size: u32,
    /// Messages per thousand that are large (2 KiB to 16 KiB: fragmented).
    #[arg(long, default_value_t = 20)]
    big_permille: u32,
    /// Stop dispatching this long after connecting.
    #[arg(long)]
    slow_after_ms: Option<u64>,
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

/// The log, shared by the sending and the dispatching thread.
struct Log(Mutex<Box<dyn Write + Send>>);

impl Log {
    fn rec(&self, r: &Rec) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = writeln!(w, "{r}");
    }
    fn flush(&self) {
        let mut w = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.flush();
    }
}

/// Orders from stdin.
#[derive(Default)]
struct Control {
    stop: AtomicBool,
    quit: AtomicBool,
}

/// What the dispatching thread tracks for one connection.
#[derive(Default)]
struct View {
    members: BTreeSet<(u32, u32)>,
    fins: HashSet<(u32, u32)>,
    fin_sent: bool,
    drained: bool,
}

struct Shared {
    log: Arc<Log>,
    view: Mutex<View>,
    gone: AtomicBool,
}

impl Shared {
    fn view(&self) -> std::sync::MutexGuard<'_, View> {
        self.view.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Logs `Z` once our FIN is out and every member's FIN is in.
    fn maybe_drained(&self) {
        let mut v = self.view();
        if v.fin_sent && !v.drained && v.members.iter().all(|m| v.fins.contains(m)) {
            v.drained = true;
            self.log.rec(&Rec::Drained);
        }
    }
}

fn addrs(list: &[Address]) -> Vec<Addr> {
    list.iter()
        .map(|a| Addr {
            node: a.nodeid,
            pid: a.pid,
            reason: a.reason,
        })
        .collect()
}

fn handlers(sh: &Arc<Shared>, slow: bool) -> CpgHandlers {
    let (d, c, t) = (Arc::clone(sh), Arc::clone(sh), Arc::clone(sh));
    CpgHandlers::new()
        .on_deliver(move |_cpg, _group, nodeid, pid, msg| {
            // After the drain the history is complete: what follows (the
            // others quitting) is not part of it.
            if slow || d.view().drained {
                return;
            }
            let rec = match verify::decode(msg) {
                Ok(h) if (h.id.node, h.id.pid) != (nodeid, pid) => Rec::Bad {
                    id: h.id,
                    why: format!("sender-{nodeid}:{pid}"),
                },
                Ok(h) => {
                    if h.kind == KIND_FIN {
                        d.view().fins.insert((nodeid, pid));
                    }
                    Rec::Deliver {
                        id: h.id,
                        len: h.len,
                        kind: h.kind,
                    }
                }
                Err(bad) => {
                    let mut id = bad.id;
                    if bad.why == "short" {
                        (id.node, id.pid) = (nodeid, pid);
                    }
                    Rec::Bad {
                        id,
                        why: bad.why.to_owned(),
                    }
                }
            };
            d.log.rec(&rec);
            d.maybe_drained();
        })
        .on_confchg(move |_cpg, _group, members, left, joined| {
            if slow || c.view().drained {
                return;
            }
            c.log.rec(&Rec::Conf {
                members: addrs(members),
                left: addrs(left),
                joined: addrs(joined),
            });
            c.view().members = members.iter().map(|a| (a.nodeid, a.pid)).collect();
            c.maybe_drained();
        })
        .on_totem_confchg(move |_cpg, ring: RingId, members| {
            if slow || t.view().drained {
                return;
            }
            t.log.rec(&Rec::Totem {
                rep: ring.nodeid,
                seq: ring.seq,
                members: members.to_vec(),
            });
        })
}

/// Connects and joins, retrying while the daemon is absent or starting.
fn connect(args: &Args, sh: &Arc<Shared>, ctl: &Control) -> Option<(Arc<Cpg>, u32)> {
    let slow = args.slow_after_ms.is_some();
    loop {
        if ctl.quit.load(Ordering::Relaxed) {
            return None;
        }
        let cpg =
            match Cpg::model_initialize(MODEL_V1_DELIVER_INITIAL_TOTEM_CONF, handlers(sh, slow)) {
                Ok(c) => c,
                Err(_) => {
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
        let joined = loop {
            match cpg.join(args.group.as_bytes()) {
                Err(CsError::TryAgain) => std::thread::sleep(Duration::from_millis(20)),
                other => break other,
            }
        };
        let local = cpg.local_get();
        match (joined, local) {
            (Ok(()), Ok(node)) => return Some((Arc::new(cpg), node)),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    }
}

fn spawn_dispatch(
    cpg: &Arc<Cpg>,
    sh: &Arc<Shared>,
    slow_after: Option<Duration>,
) -> JoinHandle<()> {
    let (cpg, sh) = (Arc::clone(cpg), Arc::clone(sh));
    std::thread::spawn(move || {
        let t0 = Instant::now();
        loop {
            if slow_after.is_some_and(|d| t0.elapsed() >= d) {
                // A client that stopped reading: it never dispatches again.
                while !sh.gone.load(Ordering::Relaxed) {
                    std::thread::sleep(Duration::from_millis(50));
                }
                return;
            }
            let flags = if slow_after.is_some() {
                DispatchFlags::All
            } else {
                DispatchFlags::Blocking
            };
            match cpg.dispatch(flags) {
                Ok(()) if slow_after.is_some() => std::thread::sleep(Duration::from_millis(5)),
                Ok(()) => {}
                Err(_) => {
                    sh.gone.store(true, Ordering::Relaxed);
                    return;
                }
            }
        }
    })
}

/// Sends one message, retrying on TRY_AGAIN (flow control: the message is
/// not sent, the number not used). Err ends the connection.
fn send(cpg: &Cpg, buf: &[u8], sh: &Shared, ctl: &Control) -> Result<(), CsError> {
    loop {
        match cpg.mcast_joined(Guarantee::Agreed, &[buf]) {
            Err(CsError::TryAgain) => {
                if sh.gone.load(Ordering::Relaxed) || ctl.quit.load(Ordering::Relaxed) {
                    return Err(CsError::TryAgain);
                }
                std::thread::sleep(Duration::from_millis(2));
            }
            other => return other,
        }
    }
}

struct Sender {
    node: u32,
    pid: u32,
    inc: u32,
    seq: u64,
    rng: ChaCha8Rng,
    buf: Vec<u8>,
}

impl Sender {
    fn size(&mut self, a: &Args) -> u32 {
        if a.big_permille > 0 && self.rng.gen_range(0..1000) < a.big_permille {
            self.rng.gen_range(2048..=16384)
        } else {
            self.rng
                .gen_range(a.min_size.max(36)..=a.max_size.max(a.min_size).max(36))
        }
    }

    fn message(&mut self, kind: u32, len: u32) -> &[u8] {
        let h = Header {
            id: MsgId {
                node: self.node,
                pid: self.pid,
                inc: self.inc,
                seq: self.seq,
            },
            len,
            kind,
        };
        verify::encode(&h, &mut self.buf);
        &self.buf
    }
}

/// Sends at the rate until the connection ends or `quit`. Returns the
/// error that ended it (None on quit).
fn run_connection(
    a: &Args,
    cpg: &Cpg,
    sh: &Shared,
    ctl: &Control,
    s: &mut Sender,
) -> Option<CsError> {
    let period = (a.rate > 0).then(|| Duration::from_secs_f64(1.0 / f64::from(a.rate)));
    let mut next = Instant::now();
    loop {
        if ctl.quit.load(Ordering::Relaxed) {
            return None;
        }
        if sh.gone.load(Ordering::Relaxed) {
            return Some(CsError::Library);
        }
        let stop = ctl.stop.load(Ordering::Relaxed);
        let fin_due = stop && !sh.view().fin_sent;
        let now = Instant::now();
        let due = period.is_some() && now >= next && !stop;
        if !fin_due && !due {
            let wait = if stop || period.is_none() {
                Duration::from_millis(20)
            } else {
                next.saturating_duration_since(now)
                    .min(Duration::from_millis(20))
            };
            std::thread::sleep(wait);
            continue;
        }
        let (kind, len) = if fin_due {
            (KIND_FIN, 64)
        } else {
            (KIND_DATA, s.size(a))
        };
        let msg = s.message(kind, len).to_vec();
        match send(cpg, &msg, sh, ctl) {
            Ok(()) => {
                sh.log.rec(&Rec::Sent {
                    inc: s.inc,
                    seq: s.seq,
                });
                s.seq += 1;
                if fin_due {
                    sh.view().fin_sent = true;
                    sh.maybe_drained();
                }
            }
            Err(CsError::TryAgain) => continue,
            Err(e) => return Some(e),
        }
        if let Some(p) = period {
            next += p;
            // After a stall, go on at the rate rather than in a burst.
            if next + Duration::from_millis(200) < Instant::now() {
                next = Instant::now();
            }
        }
    }
}

fn open_log(path: &PathBuf) -> std::io::Result<Box<dyn Write + Send>> {
    if path.as_os_str() == "-" {
        return Ok(Box::new(BufWriter::new(std::io::stdout())));
    }
    Ok(Box::new(BufWriter::with_capacity(
        64 << 10,
        File::create(path)?,
    )))
}

fn main() {
    let a = Args::parse();
    let log = match open_log(&a.log) {
        Ok(w) => Arc::new(Log(Mutex::new(w))),
        Err(e) => {
            eprintln!("cpg-verify: {}: {e}", a.log.display());
            std::process::exit(2);
        }
    };
    let ctl = Arc::new(Control::default());
    {
        let ctl = Arc::clone(&ctl);
        std::thread::spawn(move || {
            for line in std::io::stdin().lock().lines() {
                match line.as_deref().map(str::trim) {
                    Ok("stop") => ctl.stop.store(true, Ordering::Relaxed),
                    Ok("quit") | Err(_) => break,
                    Ok(_) => {}
                }
            }
            ctl.quit.store(true, Ordering::Relaxed);
        });
    }
    {
        let log = Arc::clone(&log);
        std::thread::spawn(move || loop {
            std::thread::sleep(Duration::from_millis(50));
            log.flush();
        });
    }
    let slow_after = a.slow_after_ms.map(Duration::from_millis);
    let mut sender = Sender {
        node: 0,
        pid: std::process::id(),
        inc: 0,
        seq: 0,
        rng: ChaCha8Rng::seed_from_u64(a.seed ^ u64::from(std::process::id())),
        buf: Vec::new(),
    };
    let code = loop {
        let sh = Arc::new(Shared {
            log: Arc::clone(&log),
            view: Mutex::new(View::default()),
            gone: AtomicBool::new(false),
        });
        let Some((cpg, node)) = connect(&a, &sh, &ctl) else {
            break 0;
        };
        sender.node = node;
        sender.inc += 1;
        sender.seq = 0;
        log.rec(&Rec::Init {
            node,
            pid: sender.pid,
            inc: sender.inc,
            slow: slow_after.is_some(),
        });
        let dispatcher = spawn_dispatch(&cpg, &sh, slow_after);
        let Some(err) = run_connection(&a, &cpg, &sh, &ctl, &mut sender) else {
            break 0;
        };
        // The dispatcher sees the daemon's end too (its ring drained
        // first), so its records all precede the `E`.
        if err == CsError::Library {
            sh.gone.store(true, Ordering::Relaxed);
            let _ = dispatcher.join();
        }
        log.rec(&Rec::End {
            inc: sender.inc,
            err: format!("{err:?}"),
        });
        if err != CsError::Library {
            log.flush();
            eprintln!("cpg-verify: unexpected error {err:?}");
            break 3;
        }
        if slow_after.is_some() {
            break 0;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    if code == 0 {
        log.rec(&Rec::Quit);
    }
    log.flush();
    std::process::exit(code);
}
