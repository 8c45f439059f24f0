//! `corosync-cfgtool`: link and node status, reload, kill, shutdown.
//!
//! ```text
//! corosync-cfgtool [-i IP] [-b] -s   link status of this node (-b: one digit per node)
//! corosync-cfgtool -n                status of the reachable nodes and their links
//! corosync-cfgtool -R                every node re-reads its corosync.conf
//! corosync-cfgtool -L                reopen the log files
//! corosync-cfgtool -k NODEID         make a node leave and exit
//! corosync-cfgtool -a NODEID         addresses of a node
//! corosync-cfgtool -H [--force]      shut this node down (--force: despite vetoes)
//! ```
//!
//! Output shapes as Corosync 3's. Errors: one line on stderr, exit 1.

use std::process::ExitCode;

use corosync_rs::cfg::{shutdown_flags, Cfg, NodeStatus};
use corosync_rs::cmap::{Cmap, Map, Value};
use corosync_rs::CsError;

enum Action {
    LinkStatus { brief: bool, iface: Option<String> },
    NodeStatus,
    Reload,
    ReopenLogs,
    Kill(u32),
    ShowAddr(u32),
    Shutdown { force: bool },
}

fn usage() {
    println!("corosync-cfgtool [[-i <interface ip>] [-b] -s] [-R] [-L] [-k nodeid] [-a nodeid] [-h] [-H]\n");
    println!("A tool for displaying and configuring active parameters within corosync.");
    println!("options:");
    println!("\t-i\tFinds only information about the specified interface IP address or link id when used with -s..");
    println!("\t-s\tDisplays the status of the current links on this node.");
    println!("\t-n\tDisplays the status of the connected nodes and their links.");
    println!(
        "\t-b\tDisplays the brief status of the current links on this node when used with -s."
    );
    println!("\t-R\tTell all instances of corosync in this cluster to reload corosync.conf.");
    println!("\t-L\tTell corosync to reopen all logging files.");
    println!("\t-k\tKill a node identified by node id.");
    println!("\t-a\tDisplay the IP address(es) of a node");
    println!("\t-h\tPrint basic usage.");
    println!("\t-H\tShutdown corosync cleanly on this node.");
    println!("\t\t--force will shut down corosync regardless of daemon vetos");
}

fn nodeid_arg(v: Option<&String>, opt: char) -> Result<u32, String> {
    let v = v.ok_or_else(|| format!("option requires an argument -- '{opt}'"))?;
    v.parse::<u32>()
        .ok()
        .filter(|&n| n != 0)
        .ok_or_else(|| format!("The nodeid was not valid, try a positive number: {v}"))
}

fn parse(argv: &[String]) -> Result<Option<Action>, String> {
    let mut action = None;
    let (mut brief, mut iface, mut force) = (false, None, false);
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-h" => {
                usage();
                return Ok(None);
            }
            "-s" => action = action.or(Some('s')),
            "-n" => action = Some('n'),
            "-b" => brief = true,
            "-R" => action = Some('R'),
            "-L" => action = Some('L'),
            "-H" => action = Some('H'),
            "--force" => force = true,
            "-i" => {
                i += 1;
                iface = Some(
                    argv.get(i)
                        .cloned()
                        .ok_or("option requires an argument -- 'i'")?,
                );
            }
            "-k" | "-a" => {
                let c = argv[i].chars().nth(1).unwrap_or('k');
                i += 1;
                let id = nodeid_arg(argv.get(i), c)?;
                return Ok(Some(if c == 'k' {
                    Action::Kill(id)
                } else {
                    Action::ShowAddr(id)
                }));
            }
            other => return Err(format!("invalid option -- '{other}'")),
        }
        i += 1;
    }
    Ok(Some(match action {
        None | Some('s') => Action::LinkStatus { brief, iface },
        Some('n') => Action::NodeStatus,
        Some('R') => Action::Reload,
        Some('L') => Action::ReopenLogs,
        _ => Action::Shutdown { force },
    }))
}

fn cfg() -> Result<Cfg, String> {
    Cfg::initialize(None).map_err(|e| {
        format!(
            "Could not initialize corosync configuration API error {}",
            e.code()
        )
    })
}

/// The node ids of the nodelist (sorted), and the transport name.
fn nodelist() -> Result<(Vec<u32>, String), String> {
    let cmap = Cmap::initialize(Map::Icmap)
        .map_err(|e| format!("Could not initialize corosync cmap API error {}", e.code()))?;
    let transport = match cmap.get("totem.transport") {
        Ok(Value::Str(s)) => s,
        _ => "knet".into(),
    };
    let keys = cmap
        .dump("nodelist.node.")
        .map_err(|e| format!("Could not get nodelist from cmap. error {}", e.code()))?;
    let mut ids: Vec<u32> = keys
        .iter()
        .filter(|(k, _)| k.ends_with(".nodeid") && k.matches('.').count() == 3)
        .filter_map(|(_, v)| match v {
            Value::U32(n) => Some(*n),
            _ => None,
        })
        .collect();
    if ids.is_empty() {
        // The multicast form has no nodelist: the current members.
        if let Ok(Value::Str(m)) = cmap.get("runtime.totem.members") {
            ids = m
                .split_whitespace()
                .filter_map(|s| s.parse().ok())
                .collect();
        }
    }
    if ids.is_empty() {
        return Err("No nodes found in nodelist".into());
    }
    ids.sort_unstable();
    Ok((ids, transport))
}

fn link_status(brief: bool, iface: Option<&str>) -> Result<(), String> {
    let cfg = cfg()?;
    let local = cfg.local_get().map_err(|e| {
        format!(
            "Could not get the local node id, the error is: {}",
            e.code()
        )
    })?;
    let (ids, transport) = nodelist()?;
    println!("Local node ID {local}, transport {transport}");
    let mut infos: Vec<NodeStatus> = Vec::new();
    for &id in &ids {
        match cfg.node_status_get(id) {
            Ok(s) => infos.push(s),
            Err(e) => {
                eprintln!(
                    "Could not get the node status for nodeid {id}, the error is: {}",
                    e.code()
                );
                infos.push(NodeStatus {
                    nodeid: id,
                    ..NodeStatus::default()
                });
            }
        }
    }
    let other = ids.iter().position(|&n| n != local).unwrap_or(0);
    let nlinks = infos.iter().map(|s| s.links.len()).max().unwrap_or(0);
    for l in 0..nlinks {
        let Some(link) = infos[other].links.get(l).filter(|k| k.enabled) else {
            continue;
        };
        if let Some(want) = iface {
            if want != link.src && want != l.to_string() {
                continue;
            }
        }
        println!("LINK ID {l} ");
        println!("\taddr\t= {}", link.src);
        if brief {
            let digits: String = infos
                .iter()
                .map(|s| {
                    if s.nodeid == local {
                        return 'n';
                    }
                    let k = s.links.get(l).cloned().unwrap_or_default();
                    char::from(b'0' + (k.enabled as u8 | ((k.connected as u8) << 1)))
                })
                .collect();
            println!("\tstatus\t= {digits}");
        } else {
            println!("\tstatus:");
            for s in &infos {
                let state = if s.nodeid == local {
                    "localhost"
                } else if s.links.get(l).is_some_and(|k| k.connected) {
                    "connected"
                } else {
                    "disconnected"
                };
                println!("\t\tnodeid: {:>10}:\t{state}", s.nodeid);
            }
        }
    }
    Ok(())
}

fn node_status() -> Result<(), String> {
    let cfg = cfg()?;
    let local = cfg.local_get().map_err(|e| {
        format!(
            "Could not get the local node id, the error is: {}",
            e.code()
        )
    })?;
    let (ids, transport) = nodelist()?;
    println!("Local node ID {local}, transport {transport}");
    for id in ids {
        let Ok(s) = cfg.node_status_get(id) else {
            continue;
        };
        if !s.reachable || s.nodeid == local {
            continue;
        }
        println!("nodeid: {} reachable", s.nodeid);
        for (j, l) in s.links.iter().enumerate().filter(|(_, l)| l.enabled) {
            let mut flags = String::from(" enabled");
            if l.connected {
                flags.push_str(" connected");
            }
            if l.dynconnected {
                flags.push_str(" dynconnected");
            }
            println!("   LINK: {j}  ({}->{}){flags} mtu: {}", l.src, l.dst, l.mtu);
        }
        println!();
    }
    Ok(())
}

fn reload() -> Result<(), String> {
    println!("Reloading corosync.conf...");
    let cfg = cfg()?;
    cfg.reload_config()
        .map_err(|e| format!("Could not reload configuration. Error {e}"))?;
    println!("Done");
    let cmap = Cmap::initialize(Map::Icmap)
        .map_err(|e| format!("Could not initialize corosync cmap API error {}", e.code()))?;
    // The answer comes once the daemon applied the file it read again.
    if let Ok(Value::Str(msg)) = cmap.get("config.reload_error_message") {
        println!("ERROR from reload: {msg} - see syslog for more information");
        return Err(
            "Errors in appying config, corosync.conf might not match the running system".into(),
        );
    }
    Ok(())
}

fn retry(mut f: impl FnMut() -> Result<(), CsError>) -> Result<(), CsError> {
    for _ in 0..30 {
        match f() {
            Err(CsError::TryAgain) => std::thread::sleep(std::time::Duration::from_secs(1)),
            r => return r,
        }
    }
    f()
}

fn run(a: Action) -> Result<(), String> {
    match a {
        Action::LinkStatus { brief, iface } => link_status(brief, iface.as_deref()),
        Action::NodeStatus => node_status(),
        Action::Reload => reload(),
        Action::ReopenLogs => cfg()?
            .reopen_log_files()
            .map_err(|e| format!("Could not reopen corosync logging files. Error {e}")),
        Action::Kill(id) => {
            println!("Killing node {id}");
            let cfg = cfg()?;
            retry(|| cfg.kill_node(id, "Killed by corosync-cfgtool"))
                .map_err(|e| format!("Could not kill node (error = {e})"))
        }
        Action::ShowAddr(id) => {
            let addrs = cfg()?
                .get_node_addrs(id)
                .map_err(|_| format!("Could not get node address for nodeid {id}"))?;
            println!("{}", addrs.join(" "));
            Ok(())
        }
        Action::Shutdown { force } => {
            let cfg = cfg()?;
            println!("Shutting down corosync");
            let flag = if force {
                shutdown_flags::REGARDLESS
            } else {
                shutdown_flags::REQUEST
            };
            retry(|| cfg.try_shutdown(flag))
                .map_err(|e| format!("Could not shutdown (error = {})", e.code()))
        }
    }
}

fn main() -> ExitCode {
    let argv = match daemon::args::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corosync-cfgtool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let action = match parse(&argv) {
        Ok(Some(a)) => a,
        Ok(None) => return ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("corosync-cfgtool: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(action) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
