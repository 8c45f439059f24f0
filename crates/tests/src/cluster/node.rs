//! One node: its files, its environment, and its daemon process.

use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use super::{sys, Error, Result};

pub struct Node {
    pub index: usize,
    pub id: u32,
    /// Network namespace (None in loopback mode).
    pub ns: Option<String>,
    /// The node's end of its veth (None in loopback mode).
    pub dev: Option<String>,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    /// The address in the config (ring0_addr).
    pub ring_addr: IpAddr,
    pub run_dir: PathBuf,
    pub state_dir: PathBuf,
    pub conf: PathBuf,
    pub log: PathBuf,
    pub endpoint: String,
    /// Variables every process of this node gets (daemon and clients).
    pub env: Vec<(String, String)>,
    proc: Mutex<Proc>,
}

#[derive(Default)]
struct Proc {
    child: Option<Child>,
    /// Byte offset in the log where the current (or last) daemon's output
    /// begins.
    log_start: u64,
    starts: u32,
}

/// The fields of a node other than its process state.
pub struct NodeSpec {
    pub index: usize,
    pub id: u32,
    pub ns: Option<String>,
    pub dev: Option<String>,
    pub ipv4: Ipv4Addr,
    pub ipv6: Option<Ipv6Addr>,
    pub ring_addr: IpAddr,
    pub dir: PathBuf,
    pub endpoint: String,
    pub env: Vec<(String, String)>,
}

impl Node {
    pub fn new(s: NodeSpec) -> Node {
        Node {
            index: s.index,
            id: s.id,
            ns: s.ns,
            dev: s.dev,
            ipv4: s.ipv4,
            ipv6: s.ipv6,
            ring_addr: s.ring_addr,
            run_dir: s.dir.join("run"),
            state_dir: s.dir.join("state"),
            conf: s.dir.join("corosync.conf"),
            log: s.dir.join("run").join("corosync.log"),
            endpoint: s.endpoint,
            env: s.env,
            proc: Mutex::new(Proc::default()),
        }
    }

    /// The process state; a panic while it was held (a failed assertion
    /// elsewhere) leaves it usable.
    fn proc(&self) -> MutexGuard<'_, Proc> {
        self.proc.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// `program` run inside the node's namespace (`ip netns exec`, which
    /// execs it in place: the child's pid is the program's) with the
    /// node's environment.
    pub fn command(&self, program: &Path) -> Command {
        let mut cmd = match &self.ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(program);
                c
            }
            None => Command::new(program),
        };
        cmd.envs(self.env.iter().map(|(k, v)| (k, v)));
        cmd
    }

    /// Starts the daemon: `<daemon> -f -c <conf> <extra args>`, stdout and
    /// stderr appended to the log after a marker line.
    pub fn start(&self, daemon: &Path, extra_args: &[String]) -> Result<()> {
        let mut p = self.proc();
        if let Some(child) = p.child.as_mut() {
            if child.try_wait().map_err(io_err)?.is_none() {
                return Err(Error::State(format!(
                    "node {} is already running",
                    self.index
                )));
            }
        }
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log)
            .map_err(|e| Error::Io(format!("{}: {e}", self.log.display())))?;
        let mut cmd = self.command(daemon);
        cmd.arg("-f").arg("-c").arg(&self.conf).args(extra_args);
        p.starts += 1;
        let _ = writeln!(
            log,
            "[cluster harness] start #{} of node {}: {:?}",
            p.starts, self.index, cmd
        );
        p.log_start = log.metadata().map_err(io_err)?.len();
        let out = log.try_clone().map_err(io_err)?;
        cmd.stdin(Stdio::null()).stdout(out).stderr(log);
        let child = cmd
            .spawn()
            .map_err(|e| Error::Setup(format!("node {}: spawning {cmd:?}: {e}", self.index)))?;
        p.child = Some(child);
        Ok(())
    }

    /// The daemon's pid while it runs (stopped counts as running).
    pub fn pid(&self) -> Option<u32> {
        let mut p = self.proc();
        let child = p.child.as_mut()?;
        match child.try_wait() {
            Ok(None) => Some(child.id()),
            _ => None,
        }
    }

    pub fn is_running(&self) -> bool {
        self.pid().is_some()
    }

    pub fn signal(&self, sig: libc::c_int) -> Result<()> {
        let pid = self
            .pid()
            .ok_or_else(|| Error::State(format!("node {} is not running", self.index)))?;
        sys::kill(pid, sig).map_err(io_err)
    }

    /// SIGKILL and reap; a node that is not running is left as it is.
    pub fn kill9(&self) -> Result<()> {
        let mut p = self.proc();
        if let Some(child) = p.child.as_mut() {
            if child.try_wait().map_err(io_err)?.is_none() {
                child.kill().map_err(io_err)?;
                child.wait().map_err(io_err)?;
            }
        }
        Ok(())
    }

    /// Waits for the daemon to exit; its status.
    pub fn wait_exit(&self, timeout: Duration) -> Result<ExitStatus> {
        let end = Instant::now() + timeout;
        loop {
            {
                let mut p = self.proc();
                let child = p.child.as_mut().ok_or_else(|| {
                    Error::State(format!("node {} was never started", self.index))
                })?;
                if let Some(status) = child.try_wait().map_err(io_err)? {
                    return Ok(status);
                }
            }
            if Instant::now() >= end {
                return Err(Error::Timeout(format!(
                    "node {} still running after {timeout:?}\n{}",
                    self.index,
                    self.log_tail(super::TAIL_LINES)
                )));
            }
            std::thread::sleep(super::POLL);
        }
    }

    /// Where the current (or last) daemon's output begins in the log.
    pub fn log_start(&self) -> u64 {
        self.proc().log_start
    }

    /// The log from byte `from` on ("" when the file does not exist yet).
    pub fn log_from(&self, from: u64) -> String {
        let bytes = std::fs::read(&self.log).unwrap_or_default();
        let from = usize::try_from(from).unwrap_or(usize::MAX).min(bytes.len());
        String::from_utf8_lossy(&bytes[from..]).into_owned()
    }

    pub fn log_tail(&self, lines: usize) -> String {
        let all = self.log_from(0);
        let v: Vec<&str> = all.lines().collect();
        let tail = v[v.len().saturating_sub(lines)..].join("\n");
        format!(
            "--- last {} lines of {} ---\n{tail}\n--- end of log ---",
            lines.min(v.len()),
            self.log.display()
        )
    }
}

fn io_err(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}
