//! The real daemon for the client tests: `target/<profile>/corosync -f -c
//! <tempdir>/corosync.conf` with a generated one-node configuration on
//! loopback (its own UDP port and state directory) and its own abstract
//! IPC endpoint (`COROSYNC_IPC_ENDPOINT`), logging to a file in the temp
//! dir. [`Daemon::start`] returns once the daemon logged that it provides
//! service; dropping it stops the daemon (SIGTERM, SIGKILL after 2 s) and
//! removes the temp dir.
//!
//! The Rust API finds the daemon through the process-wide
//! `COROSYNC_IPC_ENDPOINT`, read when a connection is made: tests running
//! in parallel connect through [`Daemon::connect`], which sets the
//! variable under a process-wide lock for the duration of the connect
//! only. Child processes get the endpoint in their own environment
//! ([`Daemon::endpoint`]).

use std::io::Read;
use std::net::UdpSocket;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// What the daemon logs once clients may connect.
pub const READY: &str = "Completed service synchronization, ready to provide service.";
/// How long the daemon gets to become ready.
const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a stopping daemon gets between SIGTERM and SIGKILL.
const TERM_GRACE: Duration = Duration::from_secs(2);
/// The node id of the one-node cluster.
pub const NODE: u32 = 1;

/// Distinguishes the daemons of one test process (ports, endpoints, dirs).
static COUNTER: AtomicU32 = AtomicU32::new(0);
/// Held while `COROSYNC_IPC_ENDPOINT` points at one daemon for a connect.
static ENV_LOCK: Mutex<()> = Mutex::new(());

pub struct Daemon {
    /// The abstract socket name the daemon serves clients on.
    pub endpoint: String,
    /// The daemon's UDP port on 127.0.0.1.
    pub port: u16,
    /// The temp dir: `corosync.conf`, `corosync.log`, `state/`.
    pub dir: PathBuf,
    child: Option<Child>,
}

/// `target/<profile>/corosync`, or a failure saying how to build it.
pub fn binary() -> PathBuf {
    let bin = super::profile_dir().join("corosync");
    assert!(
        bin.exists(),
        "{} is missing: build the daemon first with `cargo build --release -p daemon` \
         (or `cargo build -p daemon` for a debug test run); the workspace's \
         `cargo test --release` builds it because the daemon crate has integration tests",
        bin.display()
    );
    bin
}

fn config(port: u16, state_dir: &Path, totem_extra: &str, sections: &str) -> String {
    format!(
        "totem {{
    version: 2
    cluster_name: clienttest
    transport: udpu
    token: 1000
{totem_extra}    interface {{
        linknumber: 0
        mcastport: {port}
    }}
}}
nodelist {{
    node {{
        nodeid: {NODE}
        ring0_addr: 127.0.0.1
    }}
}}
system {{
    state_dir: {}
    sched_rr: no
}}
logging {{
    to_stderr: yes
    to_syslog: no
    timestamp: on
}}
{sections}",
        state_dir.display()
    )
}

/// A port in 20000..40000 for this process's `n`-th daemon: distinct for
/// every `n` of one process (n < 20000), spread across processes by pid.
fn port_for(n: u32) -> u16 {
    let pid = std::process::id();
    (20000 + (pid.wrapping_mul(7).wrapping_add(n)) % 20000) as u16
}

/// The last `lines` lines of a log file.
pub fn tail(path: &Path, lines: usize) -> String {
    let mut text = String::new();
    if let Ok(mut f) = std::fs::File::open(path) {
        let _ = f.read_to_string(&mut text);
    }
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

impl Daemon {
    /// Starts a daemon and waits until it is ready (at most 20 s).
    pub fn start() -> Daemon {
        Daemon::start_with(&[])
    }

    /// As [`start`](Self::start), with more `key: value` lines in the
    /// `totem` section.
    pub fn start_with(totem: &[&str]) -> Daemon {
        Daemon::start_with_sections(totem, "")
    }

    /// As [`start_with`](Self::start_with), with `sections` (whole
    /// sections, e.g. `uidgid { uid: 1000 }`) at the end of the file.
    pub fn start_with_sections(totem: &[&str], sections: &str) -> Daemon {
        let bin = binary();
        let extra: String = totem.iter().map(|l| format!("    {l}\n")).collect();
        // A port another process holds (another test run on this machine)
        // is skipped; one taken between the check and the daemon's bind
        // makes the daemon exit, and the next port is tried.
        for _ in 0..5 {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let port = port_for(n);
            if UdpSocket::bind(("127.0.0.1", port)).is_err() {
                continue;
            }
            match Daemon::try_start(&bin, n, port, &extra, sections) {
                Ok(d) => return d,
                Err(log) if log.contains("in use") => continue,
                Err(log) => panic!("the daemon did not start:\n{log}"),
            }
        }
        panic!("no free UDP port for the daemon after 5 tries");
    }

    fn try_start(
        bin: &Path,
        n: u32,
        port: u16,
        totem_extra: &str,
        sections: &str,
    ) -> Result<Daemon, String> {
        let pid = std::process::id();
        // Per daemon of this process; the next run replaces it.
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("client-daemon-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("daemon temp dir");
        let conf = dir.join("corosync.conf");
        std::fs::write(
            &conf,
            config(port, &dir.join("state"), totem_extra, sections),
        )
        .expect("corosync.conf");
        let log_path = dir.join("corosync.log");
        let log = std::fs::File::create(&log_path).expect("log file");
        let endpoint = format!("corosync-rs-clienttest-{pid}-{n}");
        let child = Command::new(bin)
            .arg("-f")
            .arg("-c")
            .arg(&conf)
            .env("COROSYNC_IPC_ENDPOINT", &endpoint)
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("{}: {e}", bin.display()));
        let mut d = Daemon {
            endpoint,
            port,
            dir,
            child: Some(child),
        };
        let deadline = Instant::now() + READY_TIMEOUT;
        loop {
            if std::fs::read_to_string(&log_path).is_ok_and(|t| t.contains(READY)) {
                return Ok(d);
            }
            let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if let Some(status) = exited {
                // Drop removes the dir: keep the log's text.
                return Err(format!("exited ({status}); log:\n{}", tail(&log_path, 40)));
            }
            assert!(
                Instant::now() < deadline,
                "the daemon was not ready after {READY_TIMEOUT:?}; log tail:\n{}",
                tail(&log_path, 40)
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// The configuration file the daemon was started with.
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("corosync.conf")
    }

    pub fn log_path(&self) -> PathBuf {
        self.dir.join("corosync.log")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    /// The daemon's process id (while it runs).
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// Runs `f` (which connects: `Cpg::initialize`, `Evs::initialize`, …)
    /// with `COROSYNC_IPC_ENDPOINT` pointing at this daemon, under the
    /// process-wide lock that keeps other tests' connects out meanwhile.
    pub fn connect<T>(&self, f: impl FnOnce() -> T) -> T {
        let _guard = ENV_LOCK.lock().unwrap_or_else(|p| p.into_inner());
        std::env::set_var("COROSYNC_IPC_ENDPOINT", &self.endpoint);
        let r = f();
        std::env::remove_var("COROSYNC_IPC_ENDPOINT");
        r
    }

    /// Kills the daemon at once (SIGKILL), as a daemon that dies.
    pub fn kill(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// Stops the daemon: SIGTERM, then SIGKILL if it has not exited after
    /// 2 s. Returns its exit status when it exited on SIGTERM.
    pub fn stop(&mut self) -> Option<std::process::ExitStatus> {
        let mut c = self.child.take()?;
        // SAFETY: kill(2) on our own child's pid (not yet reaped).
        unsafe { libc::kill(c.id() as libc::pid_t, libc::SIGTERM) };
        let deadline = Instant::now() + TERM_GRACE;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = c.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        let _ = c.kill();
        let _ = c.wait();
        None
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.stop();
        if std::thread::panicking() {
            eprintln!(
                "daemon log ({}), last lines:\n{}",
                self.log_path().display(),
                tail(&self.log_path(), 40)
            );
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
