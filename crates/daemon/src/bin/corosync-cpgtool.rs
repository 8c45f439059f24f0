//! `corosync-cpgtool`: the CPG groups of the cluster and their members.
//!
//! ```text
//! corosync-cpgtool [-d DELIMITER] [-e] [-n] [-h]
//! ```
//!
//! `-n` lists group names only, `-d` separates fields with DELIMITER (one
//! line per member: `GRP_NAME<d>PID<d>NODEID`), `-e` prints group names
//! unescaped. Output shapes as Corosync's. Errors: one line, exit 1.

use std::process::ExitCode;

use corosync_rs::cfg::Cfg;
use corosync_rs::cpg::{Cpg, CpgHandlers, IterationType};

fn group_text(g: &[u8], escape: bool) -> String {
    let mut s = String::new();
    for &c in g {
        match c {
            _ if !escape => s.push(c as char),
            b'\\' => s.push_str("\\\\"),
            b' '..=0x7e => s.push(c as char),
            _ => s.push_str(&format!("\\x{c:02X}")),
        }
    }
    s
}

fn run(argv: &[String]) -> Result<(), String> {
    let (mut delim, mut escape, mut names_only) = (None::<char>, true, false);
    let mut i = 0;
    while i < argv.len() {
        match argv[i].as_str() {
            "-h" => {
                println!("corosync-cpgtool [-d delimiter] [-e] [-n] [-h]\n");
                println!("A tool for displaying cpg groups and members.");
                println!("options:");
                println!("\t-d\tDelimiter between fields.");
                println!("\t-e\tDon't escape unprintable characters in group name.");
                println!("\t-n\tDisplay only all existing group names.");
                println!("\t-h\tDisplay this help.");
                return Ok(());
            }
            "-n" => names_only = true,
            "-e" => escape = false,
            "-d" => {
                i += 1;
                let d = argv.get(i).ok_or("option requires an argument -- 'd'")?;
                delim = d.chars().next();
            }
            d if d.starts_with("-d") => delim = d[2..].chars().next(),
            other => return Err(format!("invalid option -- '{other}'")),
        }
        i += 1;
    }
    let cpg = Cpg::initialize(CpgHandlers::new())
        .map_err(|e| format!("Could not initialize corosync cpg API error {}", e.code()))?;
    let cfg = Cfg::initialize(None).map_err(|e| {
        format!(
            "Could not initialize corosync configuration API error {}",
            e.code()
        )
    })?;
    if names_only {
        let list = cpg
            .iteration(IterationType::NameOnly, None)
            .map_err(|e| format!("Cannot initialize cpg iterator error {}", e.code()))?;
        for d in &list {
            print!("{}{}", group_text(&d.group, escape), delim.unwrap_or('\n'));
        }
        if delim.is_some() {
            println!();
        }
        return Ok(());
    }
    let list = cpg
        .iteration(IterationType::All, None)
        .map_err(|e| format!("Cannot initialize cpg iterator error {}", e.code()))?;
    match delim {
        Some(d) => println!("GRP_NAME{d}PID{d}NODEID"),
        None => println!("Group Name\t{:>10}\t{:>10}", "PID", "Node ID"),
    }
    let mut last: Option<&[u8]> = None;
    for e in &list {
        let name = group_text(&e.group, escape);
        match delim {
            Some(d) => println!("{name}{d}{}{d}{}", e.pid, e.nodeid),
            None => {
                if last != Some(&e.group[..]) {
                    println!("{name}");
                    last = Some(&e.group[..]);
                }
                let addrs = cfg.get_node_addrs(e.nodeid).unwrap_or_default().join(" ");
                println!("\t\t{:>10}\t{:>10} ({addrs})", e.pid, e.nodeid);
            }
        }
    }
    Ok(())
}

fn main() -> ExitCode {
    let argv = match daemon::args::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corosync-cpgtool: {e}");
            return ExitCode::FAILURE;
        }
    };
    match run(&argv) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("{e}");
            ExitCode::FAILURE
        }
    }
}
