//! The cluster harness: N `corosync` daemons on a private network, shared
//! by the multi-process tests, the fault tests and the cluster benchmark.
//!
//! ```no_run
//! use std::time::Duration;
//! use tests::cluster::{Cluster, Transport};
//!
//! let c = Cluster::builder().nodes(3).transport(Transport::Udpu).start()?;
//! c.wait_membership(&[0, 1, 2], Duration::from_secs(10))?;
//! c.partition(&[&[0, 1], &[2]])?;
//! c.wait_membership(&[0, 1], Duration::from_secs(10))?;
//! c.heal()?;
//! let out = c.exec_in(0, &["corosync-cpgtool"])?;
//! # Ok::<(), tests::cluster::Error>(())
//! ```
//!
//! Two modes ([`Mode`]):
//! - **Namespaces** (root and `ip` present): a bridge namespace plus one
//!   namespace per node (see [`net`] for the layout), IPv4 and IPv6
//!   addresses on each node, multicast across the bridge, and network
//!   faults at the bridge with nftables (see [`fault`]).
//! - **Loopback** (otherwise, or when asked for): one 127.a.b.(i+1) address
//!   per node on the host's loopback, udpu over IPv4 only, no faults.
//!
//! Every name a run creates carries its unique prefix (`crh<pid>-<tag>`,
//! see [`names`]): namespaces `<prefix>-br` and `<prefix>-n<i>`, links
//! `<prefix>br`, `<prefix>v<i>`, `<prefix>p<i>`, the temp dir
//! `$TMPDIR/corosync-rs-<prefix>/`, IPC endpoints
//! `corosync-rs-<prefix>-n<i>`. Dropping the [`Cluster`] (also during a
//! panic) kills the daemons and everything left in the namespaces and
//! deletes the namespaces; [`sweep_stale`] removes what runs of dead
//! processes left (the first `start` of each process calls it).
//!
//! Per node i, under the run's temp dir: `n<i>/corosync.conf`,
//! `n<i>/run/corosync.log` (the daemon's stdout and stderr, appended across
//! restarts, each start after a `[cluster harness] start #k` line) and
//! `n<i>/state/` (the config's `system { state_dir }`). The temp dir is
//! removed on a clean drop and kept (its path printed, with the tail of
//! every log) when the drop happens during a panic, or always when
//! `CORO_HARNESS_KEEP=1`.

pub mod config;
pub mod cprog;
pub mod fault;
pub mod names;
pub mod net;
mod node;
mod sys;

use std::ffi::OsString;
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output};
use std::sync::{Mutex, Once};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use fault::Faults;
use net::Network;
use node::{Node, NodeSpec};

pub use net::sweep_stale;

/// Overrides the daemon binary ([`Cluster::daemon_binary`]).
pub const DAEMON_BIN_ENV: &str = "CORO_DAEMON_BIN";
/// Set to 1 to keep every run's temp dir.
pub const KEEP_ENV: &str = "CORO_HARNESS_KEEP";
/// The daemon's and clients' IPC endpoint (an abstract socket name).
pub const ENDPOINT_ENV: &str = "COROSYNC_IPC_ENDPOINT";
pub const AUTHKEY_ENV: &str = "COROSYNC_TOTEM_AUTHKEY_FILE";
pub const MAIN_CONFIG_ENV: &str = "COROSYNC_MAIN_CONFIG_FILE";
/// The log line the daemon prints on every membership change, as
/// Corosync does: `Members[3]: 1 2 3`.
pub const MEMBERS_MARK: &str = "Members[";
/// The log line the daemon prints when synchronization completes.
pub const READY_LINE: &str = "Completed service synchronization, ready to provide service.";
/// Totem (and multicast) port.
pub const PORT: u16 = 5405;
/// Most nodes a cluster may have (link names stay within 15 characters).
pub const MAX_NODES: usize = 64;

const DIR_PREFIX: &str = "corosync-rs-";
const POLL: Duration = Duration::from_millis(10);
const TAIL_LINES: usize = 40;
const NFT_TABLE: &str = "crh_faults";

/// What went wrong. Every message says which node and command, and the
/// waits add the tail of the node's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Error {
    /// Not possible in this mode or on this machine (faults without
    /// namespaces or without `nft`, multicast or IPv6 on loopback, …).
    Unsupported(String),
    /// A command that builds or changes the network, or a spawn, failed.
    Setup(String),
    Io(String),
    /// The node is not in the state the operation needs.
    State(String),
    /// A wait ran out of time.
    Timeout(String),
    /// The daemon was not running (exited, or never started) while being
    /// waited on.
    Exited(String),
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let (kind, msg) = match self {
            Error::Unsupported(m) => ("unsupported", m),
            Error::Setup(m) => ("setup failed", m),
            Error::Io(m) => ("i/o error", m),
            Error::State(m) => ("wrong state", m),
            Error::Timeout(m) => ("timed out", m),
            Error::Exited(m) => ("daemon not running", m),
        };
        write!(f, "cluster harness: {kind}: {msg}")
    }
}

impl std::error::Error for Error {}

pub type Result<T> = std::result::Result<T, Error>;

/// How the daemons talk (the `totem { transport }` of the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// Unicast to every node of the nodelist, IPv4.
    Udpu,
    /// IPv4 multicast (`interface { bindnetaddr mcastaddr }`, no nodelist;
    /// node ids derived from the addresses unless `explicit_nodeid`).
    /// Namespaces mode only.
    Udp,
    /// Unicast over IPv6 (`ip_version: ipv6`). Namespaces mode only.
    Udpu6,
}

impl Transport {
    fn config_name(self) -> &'static str {
        match self {
            Transport::Udpu | Transport::Udpu6 => "udpu",
            Transport::Udp => "udp",
        }
    }
}

/// Where the nodes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// One network namespace per node on a private bridge (needs root and
    /// `ip`).
    Namespaces,
    /// Distinct 127.x.y.z addresses on the host's loopback.
    Loopback,
}

impl Mode {
    /// Namespaces when running as root with `ip` available, else Loopback.
    pub fn detect() -> Mode {
        if sys::is_root() && net::have_program("ip", "-V") {
            Mode::Namespaces
        } else {
            Mode::Loopback
        }
    }
}

type ConfigEdit = Box<dyn Fn(usize, String) -> String + Send + Sync>;

/// Options of a cluster; [`ClusterBuilder::start`] makes it.
pub struct ClusterBuilder {
    nodes: usize,
    transport: Transport,
    token_ms: u32,
    totem_extra: String,
    config_extra: String,
    config_edit: Option<ConfigEdit>,
    authkey: Option<Vec<u8>>,
    daemon: Option<PathBuf>,
    daemon_args: Vec<String>,
    env: Vec<(String, String)>,
    mode: Option<Mode>,
    explicit_nodeid: bool,
    autostart: bool,
}

impl ClusterBuilder {
    /// Number of nodes (1..=64; default 3).
    pub fn nodes(mut self, n: usize) -> Self {
        self.nodes = n;
        self
    }
    /// Default [`Transport::Udpu`].
    pub fn transport(mut self, t: Transport) -> Self {
        self.transport = t;
        self
    }
    /// `totem { token }` in ms (default 1000).
    pub fn token(mut self, ms: u32) -> Self {
        self.token_ms = ms;
        self
    }
    /// Lines added inside `totem { }` (e.g. `window_size: 50`).
    pub fn totem_extra(mut self, text: &str) -> Self {
        self.totem_extra.push_str(text);
        self.totem_extra.push('\n');
        self
    }
    /// Text appended to the config (whole sections, e.g. `quorum { … }`).
    pub fn config_extra(mut self, text: &str) -> Self {
        self.config_extra.push_str(text);
        self.config_extra.push('\n');
        self
    }
    /// Last word on each node's config: `f(node index, generated text)`
    /// returns the text written.
    pub fn config_edit(
        mut self,
        f: impl Fn(usize, String) -> String + Send + Sync + 'static,
    ) -> Self {
        self.config_edit = Some(Box::new(f));
        self
    }
    /// Writes this key to `<run dir>/authkey` (mode 0600) and points
    /// COROSYNC_TOTEM_AUTHKEY_FILE of every node at it. Turning encryption
    /// on in the config is the caller's (`totem_extra`).
    pub fn authkey(mut self, key: &[u8]) -> Self {
        self.authkey = Some(key.to_vec());
        self
    }
    /// The daemon binary (default [`Cluster::daemon_binary`]).
    pub fn daemon_binary(mut self, path: impl Into<PathBuf>) -> Self {
        self.daemon = Some(path.into());
        self
    }
    /// Arguments after `-f -c <conf>`.
    pub fn daemon_arg(mut self, arg: &str) -> Self {
        self.daemon_args.push(arg.to_owned());
        self
    }
    /// An environment variable for the daemons and the clients.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }
    /// Forces a mode. Loopback works anywhere; Namespaces without root or
    /// `ip` makes `start` fail with [`Error::Unsupported`].
    pub fn mode(mut self, m: Mode) -> Self {
        self.mode = Some(m);
        self
    }
    /// For [`Transport::Udp`]: write `totem { nodeid: i+1 }` instead of
    /// letting the daemon derive the id from the IPv4 address.
    pub fn explicit_nodeid(mut self, yes: bool) -> Self {
        self.explicit_nodeid = yes;
        self
    }
    /// Start the daemons in `start` (default true); otherwise call
    /// [`Cluster::start_node`].
    pub fn autostart(mut self, yes: bool) -> Self {
        self.autostart = yes;
        self
    }

    /// Creates the network, the files and (unless `autostart(false)`) the
    /// daemons. On error, whatever was created is removed again.
    pub fn start(self) -> Result<Cluster> {
        static SWEEP: Once = Once::new();
        SWEEP.call_once(|| {
            if let Err(e) = sweep_stale() {
                eprintln!("cluster harness: sweeping stale runs: {e}");
            }
        });
        Cluster::create(self)
    }
}

/// A running cluster. Every method takes `&self`, so it can be shared
/// between threads (a thread injecting faults while others wait on logs).
/// Node indexes run from 0; an index out of range is a bug and panics.
pub struct Cluster {
    prefix: String,
    mode: Mode,
    transport: Transport,
    dir: PathBuf,
    net: Option<Network>,
    nodes: Vec<Node>,
    daemon: PathBuf,
    daemon_args: Vec<String>,
    mcast: (Ipv4Addr, u16),
    faults: Mutex<Faults>,
}

impl Cluster {
    pub fn builder() -> ClusterBuilder {
        ClusterBuilder {
            nodes: 3,
            transport: Transport::Udpu,
            token_ms: 1000,
            totem_extra: String::new(),
            config_extra: String::new(),
            config_edit: None,
            authkey: None,
            daemon: None,
            daemon_args: Vec::new(),
            env: Vec::new(),
            mode: None,
            explicit_nodeid: false,
            autostart: true,
        }
    }

    /// The mode a cluster started now would get ([`Mode::detect`]).
    pub fn host_mode() -> Mode {
        Mode::detect()
    }

    /// `$CORO_DAEMON_BIN` if set, else `corosync` in the cargo target
    /// profile dir of the running executable.
    pub fn daemon_binary() -> PathBuf {
        let exe = std::env::current_exe().unwrap_or_default();
        daemon_binary_from(std::env::var_os(DAEMON_BIN_ENV), &exe)
    }

    fn create(b: ClusterBuilder) -> Result<Cluster> {
        let mode = b.mode.unwrap_or_else(Mode::detect);
        check_options(&b, mode)?;
        let prefix = names::new_prefix();
        let r = names::random_u64();
        let net_no = 1 + (r % 250) as u8;
        let dir = std::env::temp_dir().join(format!("{DIR_PREFIX}{prefix}"));
        std::fs::create_dir_all(&dir).map_err(|e| Error::Io(format!("{}: {e}", dir.display())))?;
        let mut c = Cluster {
            prefix: prefix.clone(),
            mode,
            transport: b.transport,
            dir,
            net: None,
            nodes: Vec::new(),
            daemon: b.daemon.clone().unwrap_or_else(Cluster::daemon_binary),
            daemon_args: b.daemon_args.clone(),
            mcast: (Ipv4Addr::new(239, 213, net_no, 1), PORT),
            faults: Mutex::new(Faults::new(b.nodes)),
        };
        // From here on an early return drops `c`, which tears down
        // whatever exists so far.
        if mode == Mode::Namespaces {
            c.net = Some(Network::create(&prefix, net_no, b.nodes)?);
        }
        let authkey = match &b.authkey {
            Some(key) => Some(write_file(&c.dir.join("authkey"), key, 0o600)?),
            None => None,
        };
        // Loopback addresses 127.<a>.<b>.<i+1>, a in 1..=250: apart from
        // 127.0.0.x and from other runs with high probability.
        let lo = (1 + ((r >> 8) % 250) as u8, ((r >> 16) % 256) as u8);
        for i in 0..b.nodes {
            let node = c.make_node(&b, i, lo, net_no, authkey.as_deref());
            std::fs::create_dir_all(&node.run_dir).map_err(io_err)?;
            std::fs::create_dir_all(&node.state_dir).map_err(io_err)?;
            c.nodes.push(node);
        }
        c.write_configs(&b, net_no)?;
        if b.autostart {
            for i in 0..c.nodes.len() {
                c.start_node(i)?;
            }
        }
        Ok(c)
    }

    fn make_node(
        &self,
        b: &ClusterBuilder,
        i: usize,
        lo: (u8, u8),
        net_no: u8,
        authkey: Option<&Path>,
    ) -> Node {
        let index_octet = u8::try_from(i + 1).expect("checked node count");
        let (ns, dev, ipv4, ipv6) = match &self.net {
            Some(n) => (
                Some(n.node_ns(i)),
                Some(n.node_dev(i)),
                net::node_ipv4(net_no, i),
                Some(net::node_ipv6(net_no, i)),
            ),
            None => (
                None,
                None,
                Ipv4Addr::new(127, lo.0, lo.1, index_octet),
                None,
            ),
        };
        let ring_addr: IpAddr = match (b.transport, ipv6) {
            (Transport::Udpu6, Some(v6)) => v6.into(),
            _ => ipv4.into(),
        };
        let id = match b.transport {
            Transport::Udp if !b.explicit_nodeid => u32::from(ipv4),
            _ => i as u32 + 1,
        };
        let dir = self.dir.join(format!("n{i}"));
        let endpoint = format!("{}n{i}", endpoint_base(&self.prefix));
        let mut env = vec![
            (ENDPOINT_ENV.to_owned(), endpoint.clone()),
            (
                MAIN_CONFIG_ENV.to_owned(),
                dir.join("corosync.conf").display().to_string(),
            ),
        ];
        if let Some(k) = authkey {
            env.push((AUTHKEY_ENV.to_owned(), k.display().to_string()));
        }
        env.extend(b.env.iter().cloned());
        Node::new(NodeSpec {
            index: i,
            id,
            ns,
            dev,
            ipv4,
            ipv6,
            ring_addr,
            dir,
            endpoint,
            env,
        })
    }

    fn write_configs(&self, b: &ClusterBuilder, net_no: u8) -> Result<()> {
        let ring_addrs: Vec<IpAddr> = self.nodes.iter().map(|n| n.ring_addr).collect();
        let node_ids = self.node_ids();
        for (i, node) in self.nodes.iter().enumerate() {
            let mut text = config::render(&config::ConfigInput {
                cluster_name: &self.prefix,
                transport: b.transport,
                token_ms: b.token_ms,
                ring_addrs: &ring_addrs,
                node_ids: &node_ids,
                index: i,
                bindnetaddr: net::network_ipv4(net_no),
                mcast: self.mcast,
                explicit_nodeid: b.explicit_nodeid,
                state_dir: &node.state_dir,
                totem_extra: &b.totem_extra,
                config_extra: &b.config_extra,
            });
            if let Some(edit) = &b.config_edit {
                text = edit(i, text);
            }
            write_file(&node.conf, text.as_bytes(), 0o644)?;
        }
        Ok(())
    }

    // ----- what the cluster is -----

    /// The run's unique prefix (`crh<pid>-<tag>`); also the cluster_name.
    pub fn prefix(&self) -> &str {
        &self.prefix
    }
    pub fn mode(&self) -> Mode {
        self.mode
    }
    pub fn transport(&self) -> Transport {
        self.transport
    }
    pub fn len(&self) -> usize {
        self.nodes.len()
    }
    pub fn is_empty(&self) -> bool {
        self.nodes.is_empty()
    }
    /// The run's temp dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }
    /// Node i's id: i+1, or for udp without `explicit_nodeid` its IPv4
    /// address as a big-endian u32, as Corosync derives it.
    pub fn node_id(&self, i: usize) -> u32 {
        self.node(i).id
    }
    pub fn node_ids(&self) -> Vec<u32> {
        self.nodes.iter().map(|n| n.id).collect()
    }
    /// The address in the config (ring0_addr): IPv4, or IPv6 for Udpu6.
    pub fn addr(&self, i: usize) -> IpAddr {
        self.node(i).ring_addr
    }
    pub fn ipv4(&self, i: usize) -> Ipv4Addr {
        self.node(i).ipv4
    }
    /// None in loopback mode.
    pub fn ipv6(&self, i: usize) -> Option<Ipv6Addr> {
        self.node(i).ipv6
    }
    /// The multicast group and port (used by the config for udp).
    pub fn mcast(&self) -> (Ipv4Addr, u16) {
        self.mcast
    }
    /// Node i's namespace (None in loopback mode).
    pub fn netns(&self, i: usize) -> Option<&str> {
        self.node(i).ns.as_deref()
    }
    /// The namespace holding the bridge (None in loopback mode).
    pub fn bridge_netns(&self) -> Option<String> {
        self.net.as_ref().map(Network::bridge_ns)
    }
    /// Node i's network interface (None in loopback mode).
    pub fn interface(&self, i: usize) -> Option<&str> {
        self.node(i).dev.as_deref()
    }
    pub fn ipc_endpoint(&self, i: usize) -> &str {
        &self.node(i).endpoint
    }
    pub fn config_path(&self, i: usize) -> &Path {
        &self.node(i).conf
    }
    pub fn run_dir(&self, i: usize) -> &Path {
        &self.node(i).run_dir
    }
    pub fn state_dir(&self, i: usize) -> &Path {
        &self.node(i).state_dir
    }
    pub fn log_path(&self, i: usize) -> &Path {
        &self.node(i).log
    }
    /// The environment node i's processes get.
    pub fn env(&self, i: usize) -> &[(String, String)] {
        &self.node(i).env
    }

    // ----- daemons -----

    /// Starts node i's daemon (`<daemon> -f -c <conf>` in its namespace).
    pub fn start_node(&self, i: usize) -> Result<()> {
        if !self.daemon.is_file() {
            return Err(Error::Setup(format!(
                "daemon binary {} not found: build it (cargo build --release -p daemon) \
                 or set {DAEMON_BIN_ENV}",
                self.daemon.display()
            )));
        }
        self.node(i).start(&self.daemon, &self.daemon_args)
    }
    /// SIGKILL and reap (no-op when not running).
    pub fn kill9(&self, i: usize) -> Result<()> {
        self.node(i).kill9()
    }
    /// SIGTERM; [`Cluster::wait_exit`] waits for the exit.
    pub fn sigterm(&self, i: usize) -> Result<()> {
        self.node(i).signal(libc::SIGTERM)
    }
    pub fn sigstop(&self, i: usize) -> Result<()> {
        self.node(i).signal(libc::SIGSTOP)
    }
    pub fn sigcont(&self, i: usize) -> Result<()> {
        self.node(i).signal(libc::SIGCONT)
    }
    /// Kill -9 (if running) and start again with the same config and
    /// state dir. The waits then look at the new daemon's output only.
    pub fn restart(&self, i: usize) -> Result<()> {
        self.kill9(i)?;
        self.start_node(i)
    }
    /// True while the daemon process exists (a stopped one included).
    pub fn is_running(&self, i: usize) -> bool {
        self.node(i).is_running()
    }
    pub fn pid(&self, i: usize) -> Option<u32> {
        self.node(i).pid()
    }
    pub fn wait_exit(&self, i: usize, timeout: Duration) -> Result<ExitStatus> {
        self.node(i).wait_exit(timeout)
    }

    // ----- clients -----

    /// A command running `program` inside node i's namespace with node i's
    /// environment (IPC endpoint, authkey, config path); add arguments and
    /// spawn it. Its pid is the program's.
    pub fn command_in(&self, i: usize, program: impl AsRef<Path>) -> Command {
        self.node(i).command(program.as_ref())
    }
    /// Runs `argv` inside node i's namespace to completion; its output,
    /// whatever its exit status.
    pub fn exec_in(&self, i: usize, argv: &[&str]) -> Result<Output> {
        let (program, args) = argv
            .split_first()
            .ok_or_else(|| Error::State("exec_in needs a program".into()))?;
        let mut cmd = self.command_in(i, program);
        cmd.args(args);
        cmd.output()
            .map_err(|e| Error::Io(format!("node {i}: {cmd:?}: {e}")))
    }
    /// Runs `f` on a new thread inside node i's network namespace (sockets
    /// it opens live there); in loopback mode, on a plain thread.
    pub fn in_node<T: Send + 'static>(
        &self,
        i: usize,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> JoinHandle<T> {
        let ns = self.node(i).ns.clone();
        std::thread::spawn(move || {
            if let Some(ns) = ns {
                if let Err(e) = sys::enter_netns(&ns) {
                    panic!("cannot enter namespace {ns}: {e}");
                }
            }
            f()
        })
    }

    // ----- logs -----

    /// Node i's whole log (every start).
    pub fn log(&self, i: usize) -> String {
        self.node(i).log_from(0)
    }
    /// The output of node i's current (or last) daemon only.
    pub fn current_log(&self, i: usize) -> String {
        let n = self.node(i);
        n.log_from(n.log_start())
    }
    /// The log's length now: pass it to [`Cluster::wait_log_since`] to
    /// wait for something printed after this point.
    pub fn log_offset(&self, i: usize) -> u64 {
        std::fs::metadata(&self.node(i).log).map_or(0, |m| m.len())
    }
    /// The last `lines` lines of node i's log, framed.
    pub fn log_tail(&self, i: usize, lines: usize) -> String {
        self.node(i).log_tail(lines)
    }

    /// Waits until the current daemon of node i has printed a line
    /// containing `needle`; that line. Polls every 10 ms; fails at once
    /// with [`Error::Exited`] when the daemon is not running, and with
    /// [`Error::Timeout`] after `timeout`, both with the log's tail.
    pub fn wait_log(&self, i: usize, needle: &str, timeout: Duration) -> Result<String> {
        self.wait_log_since(i, self.node(i).log_start(), needle, timeout)
    }
    /// As [`Cluster::wait_log`], counting only output after byte `offset`
    /// (from [`Cluster::log_offset`]).
    pub fn wait_log_since(
        &self,
        i: usize,
        offset: u64,
        needle: &str,
        timeout: Duration,
    ) -> Result<String> {
        self.wait_for(i, offset, timeout, &format!("{needle:?}"), |text| {
            text.lines().find(|l| l.contains(needle)).map(str::to_owned)
        })
    }
    /// Waits until the current daemon of node i has printed at least
    /// `count` lines containing `needle`; the number seen.
    pub fn wait_log_count(
        &self,
        i: usize,
        needle: &str,
        count: usize,
        timeout: Duration,
    ) -> Result<usize> {
        let what = format!("{count} lines with {needle:?}");
        self.wait_for(i, self.node(i).log_start(), timeout, &what, |text| {
            let seen = text.lines().filter(|l| l.contains(needle)).count();
            (seen >= count).then_some(seen)
        })
    }
    /// The members listed by the latest `Members[N]: …` line of node i's
    /// current daemon.
    pub fn latest_members(&self, i: usize) -> Option<Vec<u32>> {
        latest_members(&self.current_log(i))
    }
    /// Waits until the latest `Members[` line of node i's current daemon
    /// lists exactly `n` members; their ids, as printed.
    pub fn wait_members(&self, i: usize, n: usize, timeout: Duration) -> Result<Vec<u32>> {
        let what = format!("a latest {MEMBERS_MARK}{n}] line");
        self.wait_for(i, self.node(i).log_start(), timeout, &what, |text| {
            latest_members(text).filter(|m| m.len() == n)
        })
    }
    /// Waits until every node in `nodes` reports exactly the ids of
    /// `nodes` as its latest membership (order ignored); one deadline for
    /// all.
    pub fn wait_membership(&self, nodes: &[usize], timeout: Duration) -> Result<()> {
        let end = Instant::now() + timeout;
        let mut want: Vec<u32> = nodes.iter().map(|&i| self.node_id(i)).collect();
        want.sort_unstable();
        for &i in nodes {
            let left = end.saturating_duration_since(Instant::now());
            let what = format!("membership {want:?}");
            self.wait_for(i, self.node(i).log_start(), left, &what, |text| {
                let mut got = latest_members(text)?;
                got.sort_unstable();
                (got == want).then_some(())
            })?;
        }
        Ok(())
    }
    /// Waits for [`READY_LINE`] from node i's current daemon.
    pub fn wait_ready(&self, i: usize, timeout: Duration) -> Result<String> {
        self.wait_log(i, READY_LINE, timeout)
    }

    fn wait_for<T>(
        &self,
        i: usize,
        offset: u64,
        timeout: Duration,
        what: &str,
        mut found: impl FnMut(&str) -> Option<T>,
    ) -> Result<T> {
        let node = self.node(i);
        let end = Instant::now() + timeout;
        loop {
            if let Some(v) = found(&node.log_from(offset)) {
                return Ok(v);
            }
            if !node.is_running() {
                // It may have printed the line on its way out.
                if let Some(v) = found(&node.log_from(offset)) {
                    return Ok(v);
                }
                return Err(Error::Exited(format!(
                    "node {i} not running while waiting for {what}\n{}",
                    node.log_tail(TAIL_LINES)
                )));
            }
            if Instant::now() >= end {
                return Err(Error::Timeout(format!(
                    "node {i}: no {what} within {timeout:?}\n{}",
                    node.log_tail(TAIL_LINES)
                )));
            }
            std::thread::sleep(POLL);
        }
    }

    // ----- network faults (namespaces mode, needs `nft`) -----

    /// Splits the network: nodes in different groups cannot reach each
    /// other (both ways); a node named in no group is cut off alone.
    /// Replaces any earlier partition; blocks and losses stay.
    pub fn partition(&self, groups: &[&[usize]]) -> Result<()> {
        self.change_faults(|f, n| f.set_partition(n, groups).map_err(Error::State))
    }
    /// Drops every frame from node `from` to node `to` (one way).
    pub fn block(&self, from: usize, to: usize) -> Result<()> {
        self.change_faults(|f, n| {
            if from >= n || to >= n || from == to {
                return Err(Error::State(format!(
                    "block({from}, {to}) in a {n}-node cluster"
                )));
            }
            f.blocked.insert((from, to));
            Ok(())
        })
    }
    /// Drops `percent`% of the frames node i sends and of those it
    /// receives, each independently (0 removes it).
    pub fn loss(&self, i: usize, percent: u8) -> Result<()> {
        self.change_faults(|f, n| {
            if i >= n || percent > 100 {
                return Err(Error::State(format!(
                    "loss({i}, {percent}) in a {n}-node cluster"
                )));
            }
            f.loss[i] = percent;
            Ok(())
        })
    }
    /// Removes every fault: partition, blocks and losses.
    pub fn heal(&self) -> Result<()> {
        self.change_faults(|f, n| {
            *f = Faults::new(n);
            Ok(())
        })
    }

    /// Sets node i's interface down, as a pulled cable: nothing passes
    /// either way and the node's own sends fail (no route). Partition,
    /// blocks and losses are independent of it; [`Cluster::heal`] does not
    /// bring the link back, [`Cluster::link_up`] does.
    pub fn link_down(&self, i: usize) -> Result<()> {
        let (ns, dev) = self.link_of(i)?;
        net::ip(&["-n", &ns, "link", "set", &dev, "down"]).map(drop)
    }

    /// Sets node i's interface up again and puts back what the kernel
    /// removed with the link: the IPv6 address (unless the system keeps
    /// addresses on down) and the multicast route.
    pub fn link_up(&self, i: usize) -> Result<()> {
        let (ns, dev) = self.link_of(i)?;
        let node = self.node(i);
        net::ip(&["-n", &ns, "link", "set", &dev, "up"])?;
        let v4 = format!("{}/24", node.ipv4);
        net::ip(&["-n", &ns, "addr", "replace", &v4, "dev", &dev])?;
        if let Some(v6) = node.ipv6 {
            let v6 = format!("{v6}/64");
            net::ip(&["-n", &ns, "addr", "replace", &v6, "dev", &dev, "nodad"])?;
        }
        net::ip(&["-n", &ns, "route", "replace", "224.0.0.0/4", "dev", &dev]).map(drop)
    }

    /// True while node i's interface is administratively up.
    pub fn link_is_up(&self, i: usize) -> Result<bool> {
        let (ns, dev) = self.link_of(i)?;
        let out = net::ip(&["-n", &ns, "-o", "link", "show", "dev", &dev])?;
        let flags = out.split('<').nth(1).and_then(|s| s.split('>').next());
        Ok(flags.is_some_and(|f| f.split(',').any(|x| x == "UP")))
    }

    fn link_of(&self, i: usize) -> Result<(String, String)> {
        let node = self.node(i);
        match (&node.ns, &node.dev) {
            (Some(ns), Some(dev)) => Ok((ns.clone(), dev.clone())),
            _ => Err(Error::Unsupported(
                "link down/up needs namespaces mode (root and ip)".into(),
            )),
        }
    }

    fn change_faults(&self, change: impl FnOnce(&mut Faults, usize) -> Result<()>) -> Result<()> {
        let net = self.net.as_ref().ok_or_else(|| {
            Error::Unsupported("network faults need namespaces mode (root and ip)".into())
        })?;
        if !have_nft() {
            return Err(Error::Unsupported(
                "network faults need nftables' `nft` (apt-get install nftables)".into(),
            ));
        }
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = faults.clone();
        change(&mut next, self.nodes.len())?;
        let script = next.render(|i| net.port_dev(i));
        let br = net.bridge_ns();
        net::run(
            "ip",
            &["netns", "exec", &br, "nft", "-f", "-"],
            Some(&script),
        )?;
        *faults = next;
        Ok(())
    }

    /// The fault rules now in force (the nft table's listing), for
    /// debugging; empty when none were ever set.
    pub fn fault_rules(&self) -> Result<String> {
        let Some(net) = &self.net else {
            return Ok(String::new());
        };
        let br = net.bridge_ns();
        let listed = net::run(
            "ip",
            &[
                "netns", "exec", &br, "nft", "list", "table", "bridge", NFT_TABLE,
            ],
            None,
        );
        Ok(listed.unwrap_or_default())
    }

    fn node(&self, i: usize) -> &Node {
        self.nodes.get(i).unwrap_or_else(|| {
            panic!(
                "node {i} out of range: the cluster has {}",
                self.nodes.len()
            )
        })
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let panicking = std::thread::panicking();
        for n in &self.nodes {
            if let Err(e) = n.kill9() {
                eprintln!("cluster harness teardown: node {}: {e}", n.index);
            }
        }
        if panicking {
            for n in &self.nodes {
                eprintln!(
                    "node {} ({}):\n{}",
                    n.index,
                    n.ring_addr,
                    n.log_tail(TAIL_LINES)
                );
            }
        }
        // Namespaces go with whatever still runs in them; loopback-mode
        // clients are found by their endpoint.
        self.net = None;
        if self.mode == Mode::Loopback {
            net::kill_by_environ(&format!("{ENDPOINT_ENV}={}", endpoint_base(&self.prefix)));
        }
        let keep = std::env::var(KEEP_ENV).is_ok_and(|v| v == "1");
        if panicking || keep {
            eprintln!("cluster harness: kept {}", self.dir.display());
        } else if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            eprintln!("cluster harness teardown: {}: {e}", self.dir.display());
        }
    }
}

/// The common start of every IPC endpoint name of a run.
fn endpoint_base(prefix: &str) -> String {
    format!("corosync-rs-{prefix}-")
}

/// [`Cluster::daemon_binary`] from its inputs: the variable if set, else
/// `corosync` in the profile dir (`target/<profile>/`) of `exe`, which is
/// `target/<profile>/deps/<test>` for tests and benches.
pub fn daemon_binary_from(var: Option<OsString>, exe: &Path) -> PathBuf {
    if let Some(v) = var.filter(|v| !v.is_empty()) {
        return PathBuf::from(v);
    }
    let mut dir = exe.parent().unwrap_or(Path::new(".")).to_path_buf();
    if dir.file_name().is_some_and(|n| n == "deps") {
        dir.pop();
    }
    dir.join("corosync")
}

/// The ids of the last `Members[N]: id id …` line in `text`.
pub fn latest_members(text: &str) -> Option<Vec<u32>> {
    text.lines().rev().find_map(parse_members)
}

/// Parses `… Members[N]: id id …` (anything may precede it); None when
/// the line has no such list or N disagrees with the ids.
pub fn parse_members(line: &str) -> Option<Vec<u32>> {
    let at = line.find(MEMBERS_MARK)? + MEMBERS_MARK.len();
    let rest = &line[at..];
    let close = rest.find(']')?;
    let n: usize = rest[..close].trim().parse().ok()?;
    let ids = rest[close + 1..].strip_prefix(':')?;
    let ids: Vec<u32> = ids
        .split_whitespace()
        .map_while(|t| t.parse().ok())
        .collect();
    (ids.len() == n).then_some(ids)
}

fn check_options(b: &ClusterBuilder, mode: Mode) -> Result<()> {
    if b.nodes == 0 || b.nodes > MAX_NODES {
        return Err(Error::State(format!(
            "{} nodes: 1..={MAX_NODES} allowed",
            b.nodes
        )));
    }
    match mode {
        Mode::Namespaces if !sys::is_root() => {
            Err(Error::Unsupported("namespaces mode needs root".into()))
        }
        Mode::Namespaces if !net::have_program("ip", "-V") => Err(Error::Unsupported(
            "namespaces mode needs iproute2's `ip`".into(),
        )),
        Mode::Loopback if b.transport != Transport::Udpu => Err(Error::Unsupported(format!(
            "{:?} needs namespaces mode; loopback mode runs udpu over IPv4 only",
            b.transport
        ))),
        _ => Ok(()),
    }
}

fn have_nft() -> bool {
    static HAVE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HAVE.get_or_init(|| net::have_program("nft", "--version"))
}

fn write_file(path: &Path, bytes: &[u8], mode: u32) -> Result<PathBuf> {
    let mut f = OpenOptions::new()
        .create(true)
        .write(true)
        .truncate(true)
        .mode(mode)
        .open(path)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    f.write_all(bytes)
        .map_err(|e| Error::Io(format!("{}: {e}", path.display())))?;
    Ok(path.to_path_buf())
}

fn io_err(e: std::io::Error) -> Error {
    Error::Io(e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cluster_can_be_shared_between_threads() {
        fn shareable<T: Send + Sync>() {}
        shareable::<Cluster>();
    }

    #[test]
    fn members_lines_parse() {
        assert_eq!(parse_members("Members[3]: 1 2 3"), Some(vec![1, 2, 3]));
        assert_eq!(
            parse_members("Jan 01 12:00:00.000 [QUORUM] Members[1]: 7"),
            Some(vec![7])
        );
        assert_eq!(parse_members("Members[2]: 1"), None);
        assert_eq!(parse_members("no members here"), None);
        let log = "Members[1]: 1\nother\nMembers[2]: 1 2\nx Members[9] y\n";
        assert_eq!(latest_members(log), Some(vec![1, 2]));
    }

    #[test]
    fn daemon_binary_is_beside_the_profile_dir() {
        let exe = Path::new("/w/target/release/deps/cluster_harness-abc");
        assert_eq!(
            daemon_binary_from(None, exe),
            Path::new("/w/target/release/corosync")
        );
        let exe = Path::new("/w/target/release/bench");
        assert_eq!(
            daemon_binary_from(None, exe),
            Path::new("/w/target/release/corosync")
        );
        let var = Some(OsString::from("/x/corosync"));
        assert_eq!(daemon_binary_from(var, exe), Path::new("/x/corosync"));
        assert_eq!(
            daemon_binary_from(Some(OsString::new()), exe),
            Path::new("/w/target/release/corosync")
        );
    }
}
