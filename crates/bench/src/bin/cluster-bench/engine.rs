//! The engines under test: how each gets its daemon, its client build and
//! its `corosync.conf`, and how a cluster of it is started and torn down.

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use tests::cluster::Cluster;

/// Corosync's daemon as the Debian package installs it.
pub const COROSYNC_BIN: &str = "/usr/sbin/corosync";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Variant {
    /// corosync-rs over udpu; `accel` writes `corosync_rs { accelerated_ring }`
    /// (`None`: its default, `auto`).
    Ours { accel: Option<bool> },
    /// Corosync 3.1.7 with the anchor's configuration.
    Corosync { knet: bool },
}

impl Variant {
    pub fn name(self) -> &'static str {
        match self {
            Variant::Ours { accel: None } => "ours",
            Variant::Ours { accel: Some(true) } => "ours+accel",
            Variant::Ours { accel: Some(false) } => "ours-accel",
            Variant::Corosync { knet: false } => "corosync-udpu",
            Variant::Corosync { knet: true } => "corosync-knet",
        }
    }
    pub fn is_ours(self) -> bool {
        matches!(self, Variant::Ours { .. })
    }
    /// Runs latency and failover too (the Accelerated Ring written on or
    /// off is a throughput comparison only).
    pub fn full_suite(self) -> bool {
        !matches!(self, Variant::Ours { accel: Some(_) })
    }
}

/// Which timeouts a cluster runs with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timing {
    /// The engine's defaults (the anchor's throughput configuration).
    Default,
    /// The failover configuration: Corosync `token: 200`,
    /// `token_coefficient: 0`; ours the low-latency profile.
    Failover,
}

/// A client binary built against one engine's libcpg.
#[derive(Debug, Clone)]
pub struct ClientBuild {
    pub bin: PathBuf,
    /// For LD_LIBRARY_PATH (ours); None for the system library.
    pub lib_dir: Option<PathBuf>,
}

/// Our low-latency profile as corosync.conf keys: token 20 ms with one
/// retransmit before loss (a retransmit after 16 ms), consensus 24, join
/// 10, merge 50. Failover takes about token + consensus. The config's
/// lower bound (10 ms for every timeout, Corosync's 30 ms being three
/// kernel ticks) admits it.
pub const OURS_FAILOVER_TOTEM: &str = "token: 20\ntoken_coefficient: 0\n\
token_retransmits_before_loss_const: 1\nconsensus: 24\njoin: 10\nmerge: 50";
pub const COROSYNC_FAILOVER_TOTEM: &str = "token: 200\ntoken_coefficient: 0";

/// The text the anchor's setup.sh writes (../shared/anchors/corosync/),
/// for node `i` of `addrs`; ours logs to stderr (the harness's log, where
/// its transport line is read) and gets its `corosync_rs` section.
pub fn config_text(
    v: Variant,
    timing: Timing,
    i: usize,
    addrs: &[Ipv4Addr],
    node_dir: &Path,
) -> String {
    let mut s = String::from("totem {\n    version: 2\n    cluster_name: corobench\n");
    let transport = match v {
        Variant::Corosync { knet: true } => "knet",
        _ => "udpu",
    };
    s += &format!("    transport: {transport}\n");
    s += "    crypto_cipher: none\n    crypto_hash: none\n";
    if v.is_ours() {
        // Extra totem lines for ours, ';'-separated (tuning experiments).
        if let Ok(extra) = std::env::var("CLUSTER_BENCH_OURS_TOTEM") {
            for l in extra.split(';').filter(|l| !l.trim().is_empty()) {
                s += &format!("    {}\n", l.trim());
            }
        }
    }
    if timing == Timing::Failover {
        let extra = if v.is_ours() {
            OURS_FAILOVER_TOTEM
        } else {
            COROSYNC_FAILOVER_TOTEM
        };
        for l in extra.lines() {
            s += &format!("    {l}\n");
        }
    }
    s += "}\nnodelist {\n";
    for (j, a) in addrs.iter().enumerate() {
        s += &format!(
            "    node {{\n        ring0_addr: {a}\n        nodeid: {}\n        name: host{}\n    }}\n",
            j + 1,
            j + 1
        );
    }
    s += "}\nlogging {\n";
    if v.is_ours() {
        s += "    to_stderr: yes\n    to_syslog: no\n    to_logfile: no\n";
    } else {
        s += &format!(
            "    to_stderr: no\n    to_syslog: no\n    to_logfile: yes\n    logfile: {}\n",
            node_dir.join("corosync-file.log").display()
        );
    }
    s += "    timestamp: hires\n    debug: off\n}\n";
    s += &format!(
        "system {{\n    state_dir: {}\n}}\n",
        node_dir.join("state").display()
    );
    if let Variant::Ours { accel: Some(accel) } = v {
        s += &format!(
            "corosync_rs {{\n    accelerated_ring: {}\n}}\n",
            if accel { "yes" } else { "no" }
        );
    }
    if v.is_ours() {
        // Whole sections for ours (tuning experiments, e.g.
        // `corosync_rs { ipc_membarrier: no }` for the default variant).
        if let Ok(extra) = std::env::var("CLUSTER_BENCH_OURS_CONF") {
            s += &extra;
            s += "\n";
        }
    }
    let _ = i;
    s
}

/// Corosync hard-codes its lock file under /run: each instance gets a
/// private mount namespace with a per-node directory over /run, as the
/// anchor's setup.sh does. Every step execs, so the harness's pid is the
/// daemon's.
pub fn write_corosync_wrapper(dir: &Path) -> std::io::Result<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join("corosync-in-own-run.sh");
    let text = format!(
        "#!/bin/sh\n# {COROSYNC_BIN} -f -c CONF with a private /run (its pid file is fixed)\n\
         conf=\"$3\"\nd=\"$(dirname \"$conf\")/crun\"\nmkdir -p \"$d\"\n\
         exec unshare -m --propagation private sh -c \
         'mount --bind \"$0\" /run && exec {COROSYNC_BIN} \"$@\"' \"$d\" \"$@\"\n"
    );
    std::fs::write(&path, text)?;
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755))?;
    Ok(path)
}

const APT_INSTALL: [&str; 5] = [
    "install",
    "-y",
    "corosync",
    "libcpg-dev",
    "libcorosync-common-dev",
];

/// Installs Corosync and its headers with apt-get when they are missing.
/// A failed install (on a fresh image the package lists are empty:
/// "Unable to locate package") is retried once after `apt-get update`.
pub fn ensure_corosync() -> Result<(), String> {
    let have = |p: &str| Path::new(p).exists();
    if have(COROSYNC_BIN) && have("/usr/include/corosync/cpg.h") {
        return Ok(());
    }
    eprintln!("cluster-bench: installing corosync with apt-get (missing)");
    let installed = apt_get(&APT_INSTALL).or_else(|e| {
        eprintln!("cluster-bench: {e}; running apt-get update and trying again");
        apt_get(&["update"]).map_err(|u| format!("{e}; then {u}"))?;
        apt_get(&APT_INSTALL).map_err(|again| format!("{e}; after apt-get update: {again}"))
    });
    installed?;
    if !have(COROSYNC_BIN) {
        return Err(format!(
            "apt-get install corosync succeeded but {COROSYNC_BIN} is missing"
        ));
    }
    Ok(())
}

/// Runs `apt-get ARGS` non-interactively; the error names the command and
/// its last line of stderr.
fn apt_get(args: &[&str]) -> Result<(), String> {
    let o = Command::new("apt-get")
        .args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .map_err(|e| format!("apt-get {}: {e}", args.join(" ")))?;
    if o.status.success() {
        return Ok(());
    }
    let err = String::from_utf8_lossy(&o.stderr);
    let last = err.lines().last().unwrap_or("no output");
    Err(format!(
        "apt-get {} failed ({}): {last}",
        args.join(" "),
        o.status
    ))
}

/// The first line of `corosync -v`, e.g. "Corosync Cluster Engine,
/// version '3.1.7'".
pub fn corosync_version() -> Result<String, String> {
    let o = Command::new(COROSYNC_BIN)
        .arg("-v")
        .output()
        .map_err(|e| format!("{COROSYNC_BIN} -v: {e}"))?;
    let text = String::from_utf8_lossy(&o.stdout);
    match text.lines().next().map(str::trim) {
        Some(l) if o.status.success() && !l.is_empty() => Ok(l.to_owned()),
        _ => Err(format!(
            "{COROSYNC_BIN} -v ({}) printed no version: {}",
            o.status,
            String::from_utf8_lossy(&o.stderr).trim()
        )),
    }
}

/// Compiles `c/cpgbench.c` with cc against the given include/lib dirs.
pub fn build_client(out: &Path, prefix: Option<&Path>) -> Result<ClientBuild, String> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("c/cpgbench.c");
    let mut cmd = Command::new("cc");
    cmd.args(["-O2", "-Wall", "-o"]).arg(out).arg(&src);
    if let Some(p) = prefix {
        cmd.arg(format!("-I{}", p.join("include").display()));
        cmd.arg(format!("-L{}", p.join("lib").display()));
    }
    cmd.arg("-lcpg");
    let o = cmd.output().map_err(|e| format!("cc: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "cc {}: {}",
            src.display(),
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    Ok(ClientBuild {
        bin: out.to_path_buf(),
        lib_dir: prefix.map(|p| p.join("lib")),
    })
}

/// Installs ours into `prefix` (scripts/install.sh, from what is built
/// beside the daemon binary) and builds the client against it.
pub fn prepare_ours(results: &Path, daemon: &Path) -> Result<ClientBuild, String> {
    if !daemon.is_file() {
        return Err(format!(
            "{} not found: cargo build --release -p daemon -p client",
            daemon.display()
        ));
    }
    let artifacts = daemon.parent().unwrap_or(Path::new("."));
    let prefix = results.join("ours-prefix");
    let _ = std::fs::remove_dir_all(&prefix);
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = Command::new("sh")
        .arg(root.join("scripts/install.sh"))
        .arg(&prefix)
        .env("COROSYNC_RS_SKIP_BUILD", "1")
        .env("COROSYNC_RS_ARTIFACTS", artifacts)
        .output()
        .map_err(|e| format!("install.sh: {e}"))?;
    if !o.status.success() {
        return Err(format!(
            "install.sh: {}",
            String::from_utf8_lossy(&o.stderr).trim()
        ));
    }
    build_client(&results.join("cpgbench-ours"), Some(&prefix))
}

/// Starts `nodes` daemons of `v` and waits (with the client's `waitring`)
/// until every node sees all of them.
pub fn start_cluster(
    v: Variant,
    timing: Timing,
    nodes: usize,
    daemon: &Path,
    client: &ClientBuild,
) -> Result<Cluster, String> {
    let builder = Cluster::builder()
        .nodes(nodes)
        .mode(tests::cluster::Mode::Namespaces)
        .daemon_binary(daemon)
        .autostart(false);
    let c = builder.start().map_err(|e| e.to_string())?;
    let addrs: Vec<Ipv4Addr> = (0..nodes).map(|i| c.ipv4(i)).collect();
    for i in 0..nodes {
        let node_dir = c
            .config_path(i)
            .parent()
            .unwrap_or(Path::new("/"))
            .to_owned();
        let text = config_text(v, timing, i, &addrs, &node_dir);
        std::fs::write(c.config_path(i), text).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(node_dir.join("state")).map_err(|e| e.to_string())?;
    }
    for i in 0..nodes {
        c.start_node(i).map_err(|e| e.to_string())?;
    }
    for i in 0..nodes {
        let mut cmd = client_command(&c, i, client);
        cmd.args([
            "waitring",
            "--members",
            &nodes.to_string(),
            "--timeout",
            "30",
        ]);
        let o = cmd.output().map_err(|e| e.to_string())?;
        if !o.status.success() || !c.is_running(i) {
            return Err(format!(
                "node {i} did not see a ring of {nodes}: {}\n{}",
                String::from_utf8_lossy(&o.stderr).trim(),
                daemon_log_tail(v, &c, i)
            ));
        }
    }
    // Let the last sync settle before the first measurement; knet also
    // finds its path MTU meanwhile (the anchor's run.sh waits 1 s for it).
    let settle = match v {
        Variant::Corosync { knet: true } => Duration::from_secs(1),
        _ => Duration::from_millis(300),
    };
    std::thread::sleep(settle);
    Ok(c)
}

/// The client run inside node i's namespace at nice -20 (as the anchor).
pub fn client_command(c: &Cluster, i: usize, client: &ClientBuild) -> Command {
    let mut cmd = c.command_in(i, "nice");
    cmd.args(["-n", "-20"]).arg(&client.bin);
    if let Some(lib) = &client.lib_dir {
        cmd.env("LD_LIBRARY_PATH", lib);
    }
    cmd
}

pub fn daemon_log_tail(v: Variant, c: &Cluster, i: usize) -> String {
    let mut s = c.log_tail(i, 15);
    if !v.is_ours() {
        let f = c
            .config_path(i)
            .parent()
            .unwrap_or(Path::new("/"))
            .join("corosync-file.log");
        let text = std::fs::read_to_string(&f).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        s += "\n";
        s += &lines[lines.len().saturating_sub(15)..].join("\n");
    }
    s
}

/// The transport line of our daemon's log, as `IoUring+gso+gro` (or the
/// fallback's name), None when it has not printed one.
pub fn our_engine(c: &Cluster) -> Option<(String, String)> {
    let log = c.current_log(0);
    let line = log
        .lines()
        .find(|l| l.contains("transport: ") && l.contains(" engine ("))?;
    let rest = &line[line.find("transport: ")? + "transport: ".len()..];
    let name = rest.split_whitespace().next()?.to_owned();
    let mut short = name.clone();
    if rest.contains("gso true") {
        short += "+gso";
    }
    if rest.contains("gro true") {
        short += "+gro";
    }
    Some((short, rest.to_owned()))
}

/// Removes the /dev/shm files a SIGKILLed Corosync (libqb) left behind:
/// only those whose names carry one of `pids`.
pub fn clean_qb_shm(pids: &[u32]) {
    let Ok(rd) = std::fs::read_dir("/dev/shm") else {
        return;
    };
    for e in rd.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let ours = pids.iter().any(|p| {
            name.starts_with(&format!("qb-{p}-")) || name.contains(&format!("-corosync-{p}-"))
        });
        if ours {
            let p = e.path();
            let _ = if p.is_dir() {
                std::fs::remove_dir_all(&p)
            } else {
                std::fs::remove_file(&p)
            };
        }
    }
}
