//! `corosync-quorumtool`: quorum status, node list, monitoring, and
//! changing votes and expected votes.
//!
//! ```text
//! corosync-quorumtool [-s] [-l] [-m] [-p] [-H] [-i] [-o a|n|i]
//!                     [-v VOTES [-n NODEID]] [-e EXPECTED] [-f] [-h] [-V]
//! ```
//!
//! Output shapes as Corosync 3's (the "Quorum information", "Votequorum
//! information" and "Membership information" blocks). Exit status: `-s`
//! 0 when quorate, 2 when not; other commands 0 on success; 1 on error
//! (with a one-line reason on stderr), 2 on a bad argument.

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use corosync_rs::cfg::Cfg;
use corosync_rs::quorum::{
    Model, Quorum, QuorumHandlers, RingId, QUORUM_SET, TRACK_CHANGES, TRACK_CURRENT,
};
use corosync_rs::votequorum::{
    Info, Votequorum, VotequorumHandlers, INFO_ALLOW_DOWNSCALE, INFO_AUTO_TIE_BREAKER,
    INFO_LAST_MAN_STANDING, INFO_QUORATE, INFO_TWONODE, INFO_WAIT_FOR_ALL,
};
use corosync_rs::{CsError, DispatchFlags};

const EXIT_NOT_QUORATE: u8 = 2;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Command {
    Status,
    Nodes,
    Monitor,
    SetVotes(u32),
    SetExpected(u32),
    UnregisterQdevice,
    Help,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Sort {
    Addr,
    Id,
    Name,
}

struct Opts {
    cmd: Command,
    nodeid: Option<u32>,
    hex: bool,
    ip: bool,
    sort: Sort,
    parsable: bool,
}

const USAGE: &str = "usage: 
corosync-quorumtool <options>

  options:

  -s             show quorum status
  -m             constantly monitor quorum status
  -l             list nodes
  -p             when used with -s or -l, generates machine parsable output
  -v <votes>     change the number of votes for a node (*)
  -n <nodeid>    optional nodeid of node for -v
  -e <expected>  change expected votes for the cluster (*)
  -H             show nodeids in hexadecimal rather than decimal
  -i             show node IP addresses instead of the resolved name
  -o <a|n|i>     order by [a] IP address (default), [n] name, [i] nodeid
  -f             forcefully unregister a quorum device *DANGEROUS* (*)
  -h             show this help text
  -V             show version and exit

  (*) Starred items only work if votequorum is the quorum provider for corosync
";

/// A number as C's `strtol(…, 0)` reads it (decimal, 0x hex, 0 octal).
fn number(s: &str) -> Option<i64> {
    let s = s.trim();
    let (neg, t) = match s.strip_prefix('-') {
        Some(t) => (true, t),
        None => (false, s),
    };
    let v = if let Some(h) = t.strip_prefix("0x").or_else(|| t.strip_prefix("0X")) {
        i64::from_str_radix(h, 16).ok()?
    } else if t.len() > 1 && t.starts_with('0') {
        i64::from_str_radix(&t[1..], 8).ok()?
    } else {
        t.parse().ok()?
    };
    Some(if neg { -v } else { v })
}

fn parse(argv: &[String]) -> Result<Opts, (u8, String)> {
    let mut o = Opts {
        cmd: Command::Status,
        nodeid: None,
        hex: false,
        ip: false,
        sort: Sort::Addr,
        parsable: false,
    };
    let mut i = 0;
    let bad = |m: &str| (2u8, m.to_string());
    while i < argv.len() {
        let a = argv[i].as_str();
        let Some(flags) = a.strip_prefix('-').filter(|f| !f.is_empty()) else {
            return Err(bad(&format!("unexpected argument '{a}'")));
        };
        for (pos, c) in flags.char_indices() {
            let mut value = || -> Result<String, (u8, String)> {
                let rest = &flags[pos + 1..];
                if !rest.is_empty() {
                    return Ok(rest.to_string());
                }
                i += 1;
                argv.get(i)
                    .cloned()
                    .ok_or_else(|| bad(&format!("option requires an argument -- '{c}'")))
            };
            match c {
                's' => o.cmd = Command::Status,
                'm' => o.cmd = Command::Monitor,
                'l' => o.cmd = Command::Nodes,
                'p' => o.parsable = true,
                'H' => o.hex = true,
                'i' => o.ip = true,
                'f' => o.cmd = Command::UnregisterQdevice,
                'h' => o.cmd = Command::Help,
                'V' => o.cmd = Command::Help,
                'e' | 'v' | 'n' | 'o' => {
                    let v = value()?;
                    match c {
                        'e' => match number(&v) {
                            Some(n) if n > 0 && n <= i64::from(u32::MAX) => {
                                o.cmd = Command::SetExpected(n as u32)
                            }
                            _ => {
                                return Err(bad(
                                    "New expected votes value was not valid, try a positive number",
                                ))
                            }
                        },
                        'v' => match number(&v) {
                            Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => {
                                o.cmd = Command::SetVotes(n as u32)
                            }
                            _ => {
                                return Err(bad(
                                    "New votes value was not valid, try a positive number or zero",
                                ))
                            }
                        },
                        'n' => match number(&v) {
                            Some(n) if (0..=i64::from(u32::MAX)).contains(&n) => {
                                o.nodeid = Some(n as u32)
                            }
                            _ => return Err(bad("The nodeid was not valid, try a positive number")),
                        },
                        _ => {
                            o.sort = match v.chars().next() {
                                Some('a') => Sort::Addr,
                                Some('i') => Sort::Id,
                                Some('n') => Sort::Name,
                                _ => return Err(bad("Invalid ordering option. valid orders are a(address), i(node ID) or n(name)")),
                            }
                        }
                    }
                    break;
                }
                _ => {
                    o.cmd = Command::Help;
                }
            }
        }
        i += 1;
    }
    if argv.iter().any(|a| a == "-V") {
        println!("corosync-quorumtool version: {}", env!("CARGO_PKG_VERSION"));
        std::process::exit(0);
    }
    Ok(o)
}

/// What the quorum notification said.
#[derive(Clone, Default)]
struct View {
    quorate: bool,
    ring: RingId,
    members: Vec<u32>,
}

struct Tool {
    quorum: Quorum,
    quorum_type: u32,
    view: Arc<Mutex<Option<View>>>,
    vq: Option<Votequorum>,
    cfg: Option<Cfg>,
    our_nodeid: u32,
}

fn init() -> Result<Tool, String> {
    let view: Arc<Mutex<Option<View>>> = Arc::new(Mutex::new(None));
    let v = Arc::clone(&view);
    let handlers = QuorumHandlers::new().on_notify(move |_q, quorate, ring, members| {
        *v.lock().unwrap_or_else(|p| p.into_inner()) = Some(View {
            quorate,
            ring,
            members: members.to_vec(),
        });
    });
    let (quorum, quorum_type) = Quorum::initialize(Model::V1, handlers)
        .map_err(|_| "Cannot initialize QUORUM service".to_string())?;
    let cfg = Cfg::initialize(None).ok();
    let mut tool = Tool {
        quorum,
        quorum_type,
        view,
        vq: None,
        cfg,
        our_nodeid: 0,
    };
    if quorum_type == QUORUM_SET {
        let vq = Votequorum::initialize(VotequorumHandlers::new())
            .map_err(|_| "Cannot initialise VOTEQUORUM service".to_string())?;
        tool.our_nodeid = vq
            .getinfo(0)
            .map_err(|e| format!("Unable to retrieve this_node_id: {}", e.name()))?
            .node_id;
        tool.vq = Some(vq);
    } else if let Some(c) = &tool.cfg {
        tool.our_nodeid = c.local_get().unwrap_or(0);
    }
    Ok(tool)
}

/// `Thu Jan  1 00:00:00 1970` (UTC).
fn ctime_utc(secs: u64) -> String {
    const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{} {} {:2} {:02}:{:02}:{:02} {}",
        DAYS[(days % 7) as usize],
        MONTHS[(m - 1) as usize],
        d,
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        y
    )
}

fn pad(s: &str) -> String {
    format!("{s:>10} ")
}

impl Tool {
    /// Asks for the current state and waits for the notification.
    fn current(&self) -> Result<View, String> {
        *self.view.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.quorum
            .trackstart(TRACK_CURRENT)
            .map_err(|e| format!("Unable to start quorum status tracking: {}", e.name()))?;
        self.wait_view()
    }

    fn wait_view(&self) -> Result<View, String> {
        loop {
            if let Some(v) = self.view.lock().unwrap_or_else(|p| p.into_inner()).take() {
                return Ok(v);
            }
            self.quorum
                .dispatch(DispatchFlags::One)
                .map_err(|e| format!("Unable to dispatch quorum status: {}", e.name()))?;
        }
    }

    fn name(&self, nodeid: u32) -> String {
        self.cfg
            .as_ref()
            .and_then(|c| c.get_node_addrs(nodeid).ok())
            .and_then(|a| a.into_iter().next())
            .unwrap_or_default()
    }

    fn node_id(&self, id: u32, hex: bool) -> String {
        if hex {
            format!("0x{id:08x} ")
        } else {
            pad(&id.to_string())
        }
    }

    fn print_nodes(&self, view: &View, o: &Opts) {
        let mut rows: Vec<(u32, String, Option<Info>)> = view
            .members
            .iter()
            .map(|&id| {
                let info = self.vq.as_ref().map(|vq| match vq.getinfo(id) {
                    Ok(i) => i,
                    Err(_) => {
                        println!("Unable to get node {id} info");
                        Info::default()
                    }
                });
                (id, self.name(id), info)
            })
            .collect();
        match o.sort {
            Sort::Id => rows.sort_by_key(|r| r.0),
            Sort::Name => rows.sort_by(|a, b| a.1.cmp(&b.1)),
            Sort::Addr => {}
        }
        println!("\nMembership information");
        println!("----------------------");
        let mut head = pad("Nodeid");
        if self.vq.is_some() {
            head.push_str(&pad("Votes"));
            if o.parsable {
                head.push_str(&pad("Qdevice"));
            }
        }
        println!("{head}Name");
        for (id, name, info) in rows {
            let mut line = self.node_id(id, o.hex);
            if let Some(i) = &info {
                line.push_str(&pad(&i.node_votes.to_string()));
                if o.parsable {
                    line.push_str(&pad("NR"));
                }
            }
            line.push_str(&name);
            if id == self.our_nodeid {
                line.push_str(" (local)");
            }
            println!("{line}");
        }
    }

    fn print_status(&self, view: &View, o: &Opts) -> Result<(), String> {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        println!("Quorum information");
        println!("------------------");
        println!("Date:             {}", ctime_utc(now));
        let provider = if self.quorum_type == QUORUM_SET {
            "corosync_votequorum"
        } else {
            "Not configured"
        };
        println!("Quorum provider:  {provider}");
        println!("Nodes:            {}", view.members.len());
        if o.hex {
            println!("Node ID:          0x{:08x}", self.our_nodeid);
        } else {
            println!("Node ID:          {}", self.our_nodeid);
        }
        println!(
            "Ring ID:          {:x}.{:x}",
            view.ring.nodeid, view.ring.seq
        );
        println!(
            "Quorate:          {}",
            if view.quorate { "Yes" } else { "No" }
        );
        if let Some(vq) = &self.vq {
            let info = vq
                .getinfo(self.our_nodeid)
                .map_err(|e| format!("Unable to get node info: {}", e.name()))?;
            println!("\nVotequorum information");
            println!("----------------------");
            println!("Expected votes:   {}", info.node_expected_votes);
            println!("Highest expected: {}", info.highest_expected);
            println!("Total votes:      {}", info.total_votes);
            println!(
                "Quorum:           {} {}",
                info.quorum,
                if info.flags & INFO_QUORATE != 0 {
                    " "
                } else {
                    "Activity blocked"
                }
            );
            let mut flags = String::new();
            for (bit, name) in [
                (INFO_TWONODE, "2Node "),
                (INFO_QUORATE, "Quorate "),
                (INFO_WAIT_FOR_ALL, "WaitForAll "),
                (INFO_LAST_MAN_STANDING, "LastManStanding "),
                (INFO_AUTO_TIE_BREAKER, "AutoTieBreaker "),
                (INFO_ALLOW_DOWNSCALE, "AllowDownscale "),
            ] {
                if info.flags & bit != 0 {
                    flags.push_str(name);
                }
            }
            println!("Flags:            {flags}");
        }
        self.print_nodes(view, o);
        Ok(())
    }

    fn vq(&self, what: &str) -> Result<&Votequorum, (u8, String)> {
        self.vq.as_ref().ok_or_else(|| {
            (
                2,
                format!("You cannot {what}, corosync is not using votequorum"),
            )
        })
    }
}

fn run(o: &Opts) -> Result<u8, (u8, String)> {
    let tool = init().map_err(|e| (1, e))?;
    let err = |e: String| (1u8, e);
    match o.cmd {
        Command::Help => unreachable!("handled before init"),
        Command::Status => {
            let view = tool.current().map_err(err)?;
            tool.print_status(&view, o).map_err(err)?;
            Ok(if view.quorate { 0 } else { EXIT_NOT_QUORATE })
        }
        Command::Nodes => {
            let view = tool.current().map_err(err)?;
            tool.print_nodes(&view, o);
            Ok(0)
        }
        Command::Monitor => {
            if tool.quorum_type != QUORUM_SET {
                println!("\nQuorum is not configured - cannot monitor");
                let view = tool.current().map_err(err)?;
                tool.print_status(&view, o).map_err(err)?;
                return Ok(if view.quorate { 0 } else { EXIT_NOT_QUORATE });
            }
            tool.quorum.trackstart(TRACK_CHANGES).map_err(|e| {
                err(format!(
                    "Unable to start quorum status tracking: {}",
                    e.name()
                ))
            })?;
            loop {
                let view = tool.wait_view().map_err(err)?;
                tool.print_status(&view, o).map_err(err)?;
                println!();
            }
        }
        Command::SetVotes(votes) => {
            let vq = tool.vq("change node votes")?;
            let nodeid = o.nodeid.unwrap_or(tool.our_nodeid);
            vq.setvotes(nodeid, votes).map_err(|e: CsError| {
                err(format!(
                    "Unable to set votes {votes} for nodeid: {nodeid}: {}",
                    e.name()
                ))
            })?;
            Ok(0)
        }
        Command::SetExpected(expected) => {
            let vq = tool.vq("change expected votes")?;
            vq.setexpected(expected)
                .map_err(|e| err(format!("Unable to set expected votes: {}", e.name())))?;
            Ok(0)
        }
        Command::UnregisterQdevice => {
            tool.vq("unregister quorum device")?;
            // No quorum device can be registered: nothing to do.
            Ok(0)
        }
    }
}

fn main() -> ExitCode {
    let argv = match daemon::args::utf8_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("corosync-quorumtool: {e}");
            return ExitCode::FAILURE;
        }
    };
    let o = match parse(&argv) {
        Ok(o) => o,
        Err((code, msg)) => {
            eprintln!("{msg}");
            return ExitCode::from(code);
        }
    };
    if o.cmd == Command::Help {
        print!("{USAGE}");
        return ExitCode::from(if argv.iter().any(|a| a == "-h") { 0 } else { 1 });
    }
    match run(&o) {
        Ok(code) => ExitCode::from(code),
        Err((code, msg)) => {
            eprintln!("{msg}");
            ExitCode::from(code)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ctime_matches_c() {
        assert_eq!(ctime_utc(0), "Thu Jan  1 00:00:00 1970");
        assert_eq!(ctime_utc(1_700_000_000), "Tue Nov 14 22:13:20 2023");
    }

    #[test]
    fn numbers_as_strtol() {
        assert_eq!(number("10"), Some(10));
        assert_eq!(number("0x10"), Some(16));
        assert_eq!(number("010"), Some(8));
        assert_eq!(number("-1"), Some(-1));
        assert_eq!(number("x"), None);
    }

    #[test]
    fn bad_arguments_exit_2() {
        let args = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(matches!(parse(&args(&["-e", "0"])), Err((2, _))));
        assert!(matches!(parse(&args(&["-v", "x"])), Err((2, _))));
        assert!(matches!(parse(&args(&["-o", "z"])), Err((2, _))));
        assert!(matches!(parse(&args(&["-e"])), Err((2, _))));
        let o = parse(&args(&["-v", "2", "-n", "3"])).ok().unwrap();
        assert!(o.cmd == Command::SetVotes(2) && o.nodeid == Some(3));
        let o = parse(&args(&["-li"])).ok().unwrap();
        assert!(o.cmd == Command::Nodes && o.ip);
    }
}
