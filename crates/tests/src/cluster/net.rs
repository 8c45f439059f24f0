//! The test network: one namespace holding a bridge (the "switch") and one
//! namespace per node, joined to the bridge by a veth pair.
//!
//! ```text
//!   <prefix>-n0            <prefix>-br                 <prefix>-n1
//!   lo, <prefix>v0 ──veth── <prefix>p0 ┐
//!                                      ├─ <prefix>br ─ <prefix>p1 ──veth── <prefix>v1, lo
//!                                 ...  ┘
//! ```
//!
//! Node i has 10.213.<net>.<i+1>/24 and fd00:213:<net>::<i+1>/64 (`nodad`,
//! usable at once) on its veth, a route for 224.0.0.0/4 on it so multicast
//! leaves through the bridge, and `lo` up. The bridge floods multicast
//! (snooping off), so it needs no IGMP querier. Nothing is created in the
//! host's namespace: each veth is made inside its node's namespace with the
//! peer sent straight into the bridge namespace, so deleting the namespaces
//! removes everything.

use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::process::{Command, Stdio};

use super::{names, sys, Error, Result};

/// Runs `ip <args>`; a failure carries the command and its stderr.
pub fn ip(args: &[&str]) -> Result<String> {
    run("ip", args, None)
}

/// Runs a command, feeding `stdin` when given; returns its stdout.
pub fn run(program: &str, args: &[&str], stdin: Option<&str>) -> Result<String> {
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let what = || format!("{program} {}", args.join(" "));
    let mut child = cmd
        .spawn()
        .map_err(|e| Error::Setup(format!("cannot run {}: {e}", what())))?;
    if let Some(text) = stdin {
        let mut pipe = child.stdin.take().expect("piped stdin");
        pipe.write_all(text.as_bytes())
            .map_err(|e| Error::Setup(format!("{}: writing stdin: {e}", what())))?;
    }
    let out = child
        .wait_with_output()
        .map_err(|e| Error::Setup(format!("{}: {e}", what())))?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(Error::Setup(format!(
            "{} failed ({}): {}",
            what(),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}

/// True when `program --version`-like probing finds it runnable.
pub fn have_program(program: &str, probe_arg: &str) -> bool {
    Command::new(program)
        .arg(probe_arg)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// Addresses of node `i` on network number `net` (1..=250).
pub fn node_ipv4(net: u8, i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, net, host_octet(i))
}

pub fn node_ipv6(net: u8, i: usize) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x213,
        u16::from(net),
        0,
        0,
        0,
        0,
        u16::from(host_octet(i)),
    )
}

pub fn network_ipv4(net: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 213, net, 0)
}

fn host_octet(i: usize) -> u8 {
    u8::try_from(i + 1).expect("node index below 255")
}

/// The namespaces of one run. Dropping it kills whatever still runs in
/// them and deletes them (the veths and the bridge go with them).
pub struct Network {
    pub prefix: String,
    pub net: u8,
    /// Namespaces created so far, the bridge namespace first.
    created: Vec<String>,
}

impl Network {
    pub fn bridge_ns(&self) -> String {
        format!("{}-br", self.prefix)
    }
    pub fn node_ns(&self, i: usize) -> String {
        format!("{}-n{i}", self.prefix)
    }
    pub fn bridge_dev(&self) -> String {
        format!("{}br", self.prefix)
    }
    /// The node's end of its veth (inside the node namespace).
    pub fn node_dev(&self, i: usize) -> String {
        format!("{}v{i}", self.prefix)
    }
    /// The bridge's end of node i's veth (a bridge port).
    pub fn port_dev(&self, i: usize) -> String {
        format!("{}p{i}", self.prefix)
    }

    /// Creates the bridge namespace and `nodes` node namespaces. On error
    /// the partial network is torn down by Drop before returning.
    pub fn create(prefix: &str, net: u8, nodes: usize) -> Result<Network> {
        let mut me = Network {
            prefix: prefix.to_owned(),
            net,
            created: Vec::new(),
        };
        let (br_ns, br) = (me.bridge_ns(), me.bridge_dev());
        me.add_netns(&br_ns)?;
        ip(&[
            "-n",
            &br_ns,
            "link",
            "add",
            &br,
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        ip(&["-n", &br_ns, "link", "set", &br, "up"])?;
        for i in 0..nodes {
            me.add_node(i)?;
        }
        Ok(me)
    }

    fn add_netns(&mut self, ns: &str) -> Result<()> {
        ip(&["netns", "add", ns])?;
        self.created.push(ns.to_owned());
        ip(&["-n", ns, "link", "set", "lo", "up"])?;
        Ok(())
    }

    fn add_node(&mut self, i: usize) -> Result<()> {
        let (ns, dev, port) = (self.node_ns(i), self.node_dev(i), self.port_dev(i));
        let (br_ns, br) = (self.bridge_ns(), self.bridge_dev());
        self.add_netns(&ns)?;
        ip(&[
            "-n", &ns, "link", "add", &dev, "type", "veth", "peer", "name", &port, "netns", &br_ns,
        ])?;
        ip(&["-n", &br_ns, "link", "set", &port, "master", &br, "up"])?;
        let v4 = format!("{}/24", node_ipv4(self.net, i));
        let v6 = format!("{}/64", node_ipv6(self.net, i));
        ip(&["-n", &ns, "addr", "add", &v4, "dev", &dev])?;
        ip(&["-n", &ns, "addr", "add", &v6, "dev", &dev, "nodad"])?;
        ip(&["-n", &ns, "link", "set", &dev, "up"])?;
        ip(&["-n", &ns, "route", "add", "224.0.0.0/4", "dev", &dev])?;
        Ok(())
    }
}

impl Drop for Network {
    fn drop(&mut self) {
        // Nodes first, the bridge last: the reverse of creation.
        for ns in self.created.iter().rev() {
            if let Err(e) = remove_netns(ns) {
                eprintln!("cluster harness teardown: {e}");
            }
        }
    }
}

/// Kills every process inside namespace `ns`, then deletes it (a namespace
/// with a process still inside would outlive its name, veth included). A
/// namespace that is already gone is no error.
pub fn remove_netns(ns: &str) -> Result<()> {
    for _ in 0..3 {
        let pids = ip(&["netns", "pids", ns]).unwrap_or_default();
        let pids: Vec<u32> = pids
            .split_whitespace()
            .filter_map(|p| p.parse().ok())
            .collect();
        if pids.is_empty() {
            break;
        }
        for pid in pids {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    match ip(&["netns", "del", ns]) {
        // Another sweep (a concurrent test process) got there first.
        Err(_) if !list_netns()?.iter().any(|n| n == ns) => Ok(()),
        other => other.map(|_| ()),
    }
}

/// Names of the namespaces `ip netns list` shows.
pub fn list_netns() -> Result<Vec<String>> {
    let out = ip(&["netns", "list"])?;
    // Lines look like "name" or "name (id: 3)".
    Ok(out
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .map(str::to_owned)
        .collect())
}

/// Removes the namespaces (and what runs in them) of harness runs whose
/// process is gone, kills their loopback-mode daemons, and removes their
/// temp dirs once an hour old; returns the namespaces removed.
/// Runs of live processes, this one included, are never touched.
pub fn sweep_stale() -> Result<Vec<String>> {
    let mut removed = Vec::new();
    if sys::is_root() && have_program("ip", "-V") {
        for ns in list_netns()? {
            let Some(pid) = names::pid_of_netns(&ns) else {
                continue;
            };
            if pid == std::process::id() || sys::pid_alive(pid) {
                continue;
            }
            remove_netns(&ns)?;
            removed.push(ns);
        }
    }
    sweep_stale_dirs();
    Ok(removed)
}

/// Temp dirs `corosync-rs-<prefix>` of dead runs: daemons of a dead
/// loopback-mode run are found by their IPC endpoint in /proc and killed,
/// and dirs older than an hour are removed.
fn sweep_stale_dirs() {
    let Ok(entries) = std::fs::read_dir(std::env::temp_dir()) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(prefix) = name.strip_prefix(super::DIR_PREFIX) else {
            continue;
        };
        let Some(pid) = names::pid_of_netns(&format!("{prefix}-br")) else {
            continue;
        };
        if pid == std::process::id() || sys::pid_alive(pid) {
            continue;
        }
        kill_by_environ(&format!(
            "{}={}",
            super::ENDPOINT_ENV,
            super::endpoint_base(prefix)
        ));
        // A failed run keeps its dir for a look at the logs; an hour later
        // it goes.
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > std::time::Duration::from_secs(3600));
        if old {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Kills processes whose environment has an entry starting with `entry`.
pub fn kill_by_environ(entry: &str) {
    let Ok(procs) = std::fs::read_dir("/proc") else {
        return;
    };
    for p in procs.flatten() {
        let Ok(pid) = p.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(env) = std::fs::read(p.path().join("environ")) else {
            continue;
        };
        if env
            .split(|&b| b == 0)
            .any(|kv| kv.starts_with(entry.as_bytes()))
        {
            let _ = sys::kill(pid, libc::SIGKILL);
        }
    }
}
