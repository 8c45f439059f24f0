//! From a read configuration to a runnable [`RuntimeConfig`]: which node
//! this is (from the host's interface addresses), the cluster key, the
//! transport and Totem settings, logging, realtime scheduling and who may
//! connect. Every failure is a message naming what is wrong.

use std::net::{IpAddr, SocketAddr};
use std::path::Path;

use ipc_shm::{Authorization, Endpoint, ServerConfig, UidGid};
use transport::{
    Cipher, ClusterKey, CryptoConfig, Mode, NodeId, RealtimePolicy, RunLoopConfig, TransportConfig,
};

use crate::config::{self, Config, ConfigSource, Ident};
use crate::logging::LogTargets;
use crate::runtime::RuntimeConfig;

/// Realtime scheduling as the command line asked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Realtime {
    /// `-p`: never.
    Off,
    /// `-P` (or `-r`, at 99): SCHED_RR at this priority.
    On(i32),
    /// Neither: `system { sched_rr }` decides (Corosync's default: yes).
    FromConfig,
}

/// Highest SCHED_RR priority on Linux (`sched_get_priority_max`).
const RT_MAX: i32 = 99;

/// `-P` values: `max`, `min` or a number in 1..=99.
pub fn parse_rt_priority(s: &str) -> Result<Realtime, String> {
    match s {
        "max" => Ok(Realtime::On(RT_MAX)),
        "min" => Ok(Realtime::On(1)),
        n => match n.parse::<i32>() {
            Ok(p) if (1..=RT_MAX).contains(&p) => Ok(Realtime::On(p)),
            _ => Err("expected max, min or a number from 1 to 99".into()),
        },
    }
}

/// The protocol thread's scheduling: the command line's choice, else `system { sched_rr,
/// priority }` (`min` is SCHED_RR priority 1, anything else 99).
fn realtime_policy(rt: Realtime, system: &config::System) -> Option<RealtimePolicy> {
    match rt {
        Realtime::Off => None,
        Realtime::On(p) => Some(RealtimePolicy::RoundRobin(p)),
        Realtime::FromConfig if system.sched_rr => match system.priority {
            config::Priority::Min => Some(RealtimePolicy::RoundRobin(1)),
            _ => Some(RealtimePolicy::RoundRobin(RT_MAX)),
        },
        Realtime::FromConfig => None,
    }
}

/// What `corosync` runs.
pub struct Plan {
    pub runtime: RuntimeConfig,
    pub logging: LogTargets,
    /// Lines to log at start-up.
    pub notes: Vec<String>,
}

/// Events queued per client beyond its event ring before it is
/// disconnected as too slow.
const OVERFLOW_FRAMES: usize = 16_384;
const OVERFLOW_BYTES: usize = 64 << 20;
/// The same for all clients together: four such clients' worth (so that
/// clients that read nothing cannot make the daemon hold 256 × 64 MiB).
const OVERFLOW_TOTAL_BYTES: usize = 4 * OVERFLOW_BYTES;

/// Room for IP (IPv6: 40) + UDP (8) headers and the transport's frame
/// header, nonce and tag, so a sealed Totem frame fits `netmtu`.
pub(crate) const FRAME_OVERHEAD: u32 = 48 + 64;

pub(crate) fn totem_config(cfg: &Config, max_message: usize) -> totem_ring::Config {
    totem_config_on(cfg, max_message, cpus())
}

/// Whether this machine runs the Accelerated Ring with `cfg`.
pub(crate) fn accelerated(cfg: &Config) -> bool {
    config::accelerated_for(cfg.extensions.accelerated_ring)
}

/// [`totem_config`] on a machine with `cpus` CPUs.
fn totem_config_on(cfg: &Config, max_message: usize, cpus: usize) -> totem_ring::Config {
    let t = &cfg.totem.timings;
    let accelerated = config::accelerated_for(cfg.extensions.accelerated_ring);
    let mut c = totem_ring::Config::default();
    c.token = u64::from(t.token);
    // The configuration reader has applied the coefficient already.
    c.token_coefficient = 0;
    c.token_retransmits_before_loss_const = t.token_retransmits_before_loss_const;
    c.token_retransmit = Some(u64::from(t.token_retransmit));
    c.hold = Some(u64::from(t.hold));
    c.join = u64::from(t.join);
    c.consensus = Some(u64::from(t.consensus));
    c.merge = u64::from(t.merge);
    c.downcheck = u64::from(t.downcheck);
    c.fail_recv_const = t.fail_recv_const;
    c.seqno_unchanged_const = t.seqno_unchanged_const;
    // A count named in corosync.conf is rotations, as in Corosync; the
    // default also holds after the same number of idle hops on larger rings.
    c.hold_after_idle_hops = if t.seqno_unchanged_written {
        0
    } else {
        totem_ring::Config::default().hold_after_idle_hops
    };
    // The run loop has no use for them.
    c.sent_events = false;
    // A large message goes from Totem's store to the clients' event rings
    // in its pieces, without being reassembled into a buffer first.
    c.deliver_parts_from = 8192;
    c.miss_count_const = t.miss_count_const;
    c.window_size = t.window_size;
    c.max_messages = t.max_messages_in_effect(accelerated);
    // A window named in corosync.conf is the whole ring's, as in Corosync;
    // the default grows with the ring by one visit's frames per member.
    c.window_per_member = if t.window_fixed { 0 } else { c.max_messages };
    c.netmtu = cfg.totem.netmtu;
    c.frame_overhead = FRAME_OVERHEAD;
    c.max_message_size = c.max_message_size.max(max_message as u32);
    c.accelerated = accelerated;
    c.accelerate_from_frames =
        config::accelerate_from_frames(cfg.extensions.accelerated_ring, cpus, c.max_messages);
    c
}

/// Users and groups from `/etc/passwd` and `/etc/group` (no NSS: names
/// served only by LDAP and the like must be given as numbers).
/// Who may connect: root, and the uids and gids of the `uidgid` entries (names looked up in
/// /etc/passwd and /etc/group when the configuration was not read by [`Config::load`], which
/// does that itself).
fn authorization(cfg: &Config) -> Result<Authorization, String> {
    let mut entries = cfg.uidgid.clone();
    config::resolve_uidgid_names(
        &mut entries,
        Path::new(config::PASSWD_FILE),
        Path::new(config::GROUP_FILE),
    )
    .map_err(|e| e.to_string())?;
    let id = |i: &Option<Ident>| match i {
        Some(Ident::Id(n)) => Some(*n),
        _ => None,
    };
    let mut a = Authorization::default();
    for u in &entries {
        a.configured.push(UidGid {
            uid: id(&u.uid),
            gid: id(&u.gid),
        });
    }
    Ok(a)
}

pub(crate) fn logging(cfg: &Config) -> LogTargets {
    let l = &cfg.logging;
    LogTargets {
        to_stderr: l.to_stderr,
        logfile: if l.to_logfile {
            l.logfile.clone()
        } else {
            None
        },
        to_syslog: l.to_syslog,
        syslog_facility: syslog_facility(&l.syslog_facility),
        debug: l.debug != config::DebugLevel::Off,
        // Corosync's default is no timestamp; ours always has one on
        // stderr and in files, as the issue asks (syslog adds its own).
        timestamp: true,
    }
}

/// The facility number of `name`; the reader accepts only the names it knows, so the
/// fallback (daemon, 3) serves only a [`Config`] built by hand.
fn syslog_facility(name: &str) -> u8 {
    config::syslog_facility_number(name).unwrap_or(3)
}

fn cipher(cfg: &Config) -> Result<Cipher, String> {
    let c = &cfg.totem.crypto;
    Cipher::from_corosync(c.cipher.as_str(), c.hash.as_str())
        .map_err(|e| format!("{}: crypto_cipher/crypto_hash: {e}", cfg.file))
}

/// The IPC server's settings from the file.
fn ipc_config(cfg: &Config) -> Result<ServerConfig, String> {
    Ok(ServerConfig {
        endpoint: Endpoint::resolve(cfg.extensions.ipc_socket.as_ref().and_then(|p| p.to_str())),
        authorization: authorization(cfg)?,
        // Totem cannot slow the senders of other nodes down for one local
        // reader, so a client that falls behind for a moment has its
        // events queued: room for a burst of 1 MiB messages (Corosync's
        // queue here is unbounded; ours ends in a "too slow" disconnect).
        overflow_frames: OVERFLOW_FRAMES,
        overflow_bytes: OVERFLOW_BYTES,
        overflow_total_bytes: OVERFLOW_TOTAL_BYTES,
        light_requests: cfg.extensions.ipc_membarrier,
        ..ServerConfig::default()
    })
}

/// Resolves everything `corosync` needs from `cfg`.
pub fn plan(cfg: &Config, src: &ConfigSource, rt: Realtime) -> Result<Plan, String> {
    let mut notes = src.notes.clone();
    let local: Vec<IpAddr> = transport::local_addresses()
        .map_err(|e| format!("cannot list the host's interface addresses: {e}"))?
        .into_iter()
        .map(|a| a.addr)
        .collect();
    let b = cfg.resolve_bind(&local).map_err(|e| e.to_string())?;
    let bind = SocketAddr::new(b.bind_addr, b.port);
    let mut tc = TransportConfig::new(NodeId(b.nodeid), bind);
    tc.loop_to_self = false;
    tc.max_frame = (cfg.totem.netmtu.saturating_sub(FRAME_OVERHEAD) as usize).max(512);
    tc.members = cfg
        .nodes
        .iter()
        .map(|n| (NodeId(n.nodeid), SocketAddr::new(n.ring0_addr(), b.port)))
        .collect();
    if let Some(group) = b.mcast_addr {
        tc.mode = Mode::Multicast {
            group: SocketAddr::new(group, b.port),
            ttl: u32::from(b.ttl),
        };
        if tc.members.is_empty() {
            tc.members.push((NodeId(b.nodeid), bind));
        }
    } else {
        tc.mode = Mode::Udpu;
    }
    tc.sqpoll_idle_ms = (cfg.extensions.sqpoll_ms > 0).then_some(cfg.extensions.sqpoll_ms);
    let cipher = cipher(cfg)?;
    let key = if cipher == Cipher::None {
        // The built-in configuration's note says so already.
        if !matches!(src.main, config::MainConfig::BuiltIn) {
            notes.push("running without a cluster key (crypto_cipher: none)".into());
        }
        None
    } else {
        let path = src.authkey_path(cfg);
        Some(ClusterKey::load(&path).map_err(|e| format!("authkey {}: {e}", path.display()))?)
    };
    tc.crypto = CryptoConfig {
        cipher,
        key,
        cluster_name: cfg.totem.cluster_name.clone().unwrap_or_default(),
    };
    let engine = services::EngineConfig::new(b.nodeid);
    let quorum = quorum_config(cfg, b.nodeid, &mut notes)?;
    let totem = totem_config(cfg, engine.max_message + 1024);
    let ipc = ipc_config(cfg)?;
    let run_loop = RunLoopConfig {
        pin_core: cfg.extensions.pin_core.map(|c| c as usize),
        realtime: realtime_policy(rt, &cfg.system),
        spin_us: cfg.extensions.spin_us,
    };
    let nodes = cfg
        .nodes
        .iter()
        .map(|n| {
            (
                n.nodeid,
                SocketAddr::new(n.ring0_addr(), b.port),
                n.name.clone().unwrap_or_default(),
            )
        })
        .collect();
    notes.push(format!(
        "accelerated ring: {} ({:?}, {} CPUs)",
        match (totem.accelerated, totem.accelerate_from_frames) {
            (false, _) => "off".to_string(),
            (true, 0) => "on".to_string(),
            (true, n) => format!("on for visits of {n} frames or more"),
        },
        cfg.extensions.accelerated_ring,
        cpus()
    ));
    notes.push(format!(
        "node {} bound to {bind} ({}), token {} ms, consensus {} ms",
        b.nodeid,
        match b.mcast_addr {
            Some(g) => format!("multicast {g} ttl {}", b.ttl),
            None => format!("udpu, {} members", cfg.nodes.len()),
        },
        cfg.totem.timings.token,
        cfg.totem.timings.consensus
    ));
    Ok(Plan {
        runtime: RuntimeConfig {
            nodeid: b.nodeid,
            transport: tc,
            totem,
            nodes,
            state_dir: cfg.system.state_dir.clone(),
            ipc,
            run_loop,
            cmap_keys: crate::cmap_keys::keys(cfg),
            config_file: match &src.main {
                config::MainConfig::File { path, .. } => Some(path.clone()),
                config::MainConfig::BuiltIn => None,
            },
            quorum,
        },
        logging: logging(cfg),
        notes,
    })
}

/// Votequorum's settings from `quorum { }` and the nodelist, as Corosync
/// reads them: this node's votes from its nodelist entry (default 1);
/// expected votes from `quorum.expected_votes`, else the nodelist's sum.
fn quorum_config(
    cfg: &Config,
    nodeid: u32,
    notes: &mut Vec<String>,
) -> Result<services::QuorumConfig, String> {
    let q = &cfg.quorum;
    if q.provider.is_none() {
        return Ok(services::QuorumConfig::default());
    }
    let me = cfg.nodes.iter().find(|n| n.nodeid == nodeid);
    let nodelist_votes = cfg
        .nodes
        .iter()
        .fold(0u32, |t, n| t.saturating_add(n.quorum_votes));
    let auto_tie_breaker = if q.auto_tie_breaker {
        match q.auto_tie_breaker_node.as_deref() {
            None => Some(services::TieBreaker::Lowest),
            Some(s) => {
                let t = services::TieBreaker::parse(s);
                if t.is_none() {
                    notes.push("auto_tie_breaker_node is not valid. It must be 'lowest', 'highest' or a space-separated list of node IDs. auto_tie_breaker is disabled".into());
                }
                t
            }
        }
    } else {
        None
    };
    let mut qc = services::QuorumConfig {
        votequorum: true,
        votes: me.map_or(1, |n| n.quorum_votes),
        expected_votes: q.expected_votes.unwrap_or(nodelist_votes),
        two_node: q.two_node,
        wait_for_all: q.wait_for_all,
        last_man_standing: q.last_man_standing,
        last_man_standing_window_ms: q.last_man_standing_window,
        auto_tie_breaker,
    };
    // The reader has refused what check() refuses, at the line to blame; this keeps the
    // adjustments and notes (and a Config built by hand from starting votequorum wrongly).
    let more = qc
        .check()
        .map_err(|e| format!("{}: quorum: {e}", cfg.file))?;
    notes.extend(more);
    Ok(qc)
}

/// Starts `corosync -f` with the same arguments in a new process group,
/// detached from the terminal, and returns (the caller exits).
pub fn detach() -> std::io::Result<()> {
    use std::os::unix::process::CommandExt;
    let exe = std::env::current_exe()?;
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().skip(1).collect();
    args.push("-f".into());
    std::process::Command::new(exe)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .spawn()
        .map(|_| ())
}

/// CPUs this process may run on.
fn cpus() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totem_of(text: &str) -> totem_ring::Config {
        totem_on(text, 2)
    }

    fn totem_on(text: &str, cpus: usize) -> totem_ring::Config {
        let (cfg, _) = Config::from_str(text, "corosync.conf").expect("parses");
        totem_config_on(&cfg, 0, cpus)
    }

    const NODES: &str = "nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n";

    #[test]
    fn every_syslog_facility_corosync_accepts_is_the_one_syslog_h_names() {
        // libqb's facility names (Corosync's qb_log_facility2int) on Linux.
        let want = [
            ("kern", libc::LOG_KERN),
            ("user", libc::LOG_USER),
            ("mail", libc::LOG_MAIL),
            ("daemon", libc::LOG_DAEMON),
            ("auth", libc::LOG_AUTH),
            ("syslog", libc::LOG_SYSLOG),
            ("lpr", libc::LOG_LPR),
            ("news", libc::LOG_NEWS),
            ("uucp", libc::LOG_UUCP),
            ("cron", libc::LOG_CRON),
            ("authpriv", libc::LOG_AUTHPRIV),
            ("ftp", libc::LOG_FTP),
            ("local0", libc::LOG_LOCAL0),
            ("local1", libc::LOG_LOCAL1),
            ("local2", libc::LOG_LOCAL2),
            ("local3", libc::LOG_LOCAL3),
            ("local4", libc::LOG_LOCAL4),
            ("local5", libc::LOG_LOCAL5),
            ("local6", libc::LOG_LOCAL6),
            ("local7", libc::LOG_LOCAL7),
        ];
        for (name, facility) in want {
            let text = format!("logging {{\n syslog_facility: {name}\n}}\n{NODES}");
            let (cfg, w) = Config::from_str(&text, "corosync.conf").expect(name);
            assert!(w.is_empty(), "{name}: {w:?}");
            assert_eq!(
                i32::from(logging(&cfg).syslog_facility),
                facility >> 3,
                "{name}"
            );
        }
        assert_eq!(config::SYSLOG_FACILITIES.len(), want.len());
        for bad in ["local8", "DAEMON", "security", "mark"] {
            let text = format!("logging {{\n syslog_facility: {bad}\n}}\n{NODES}");
            let e = Config::from_str(&text, "corosync.conf").unwrap_err();
            assert!(
                e.to_string().starts_with(&format!(
                    "corosync.conf:2: value of 'syslog_facility' must be one of kern, user, \
                     mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0, \
                     local1, local2, local3, local4, local5, local6, local7, but '{bad}'"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn ipc_membarrier_decides_whether_clients_are_offered_plain_store_requests() {
        let ipc = |text: &str| {
            let (cfg, _) = Config::from_str(&format!("{text}{NODES}"), "corosync.conf").unwrap();
            ipc_config(&cfg).unwrap().light_requests
        };
        assert!(ipc(""));
        assert!(ipc("corosync_rs {\n ipc_membarrier: yes\n}\n"));
        assert!(!ipc("corosync_rs {\n ipc_membarrier: no\n}\n"));
    }

    #[test]
    fn the_command_line_decides_realtime_before_the_file() {
        let rr = RealtimePolicy::RoundRobin;
        let file = |text: &str| {
            let (cfg, _) = Config::from_str(&format!("{text}{NODES}"), "corosync.conf").unwrap();
            cfg.system
        };
        let default = file("");
        let min = file("system {\n priority: min\n}\n");
        let off = file("system {\n sched_rr: no\n}\n");
        // -p: no realtime policy, whatever the file asks.
        for system in [&default, &min, &off] {
            assert_eq!(realtime_policy(Realtime::Off, system), None);
        }
        // -P (and -P max), -P min, -P N: SCHED_RR at that priority, even with sched_rr: no.
        assert_eq!(parse_rt_priority("max"), Ok(Realtime::On(99)));
        assert_eq!(parse_rt_priority("min"), Ok(Realtime::On(1)));
        assert_eq!(parse_rt_priority("42"), Ok(Realtime::On(42)));
        for bad in ["0", "100", "-1", "maximum", ""] {
            assert!(parse_rt_priority(bad).is_err(), "{bad:?}");
        }
        for p in [1, 42, 99] {
            assert_eq!(realtime_policy(Realtime::On(p), &off), Some(rr(p)));
            assert_eq!(realtime_policy(Realtime::On(p), &min), Some(rr(p)));
        }
        // Neither: system { sched_rr, priority }.
        assert_eq!(
            realtime_policy(Realtime::FromConfig, &default),
            Some(rr(99))
        );
        assert_eq!(realtime_policy(Realtime::FromConfig, &min), Some(rr(1)));
        assert_eq!(realtime_policy(Realtime::FromConfig, &off), None);
    }

    #[test]
    fn the_accelerated_ring_takes_longer_visits_unless_max_messages_is_written() {
        let t = totem_on(NODES, 16);
        assert!(t.accelerated, "auto: on with 16 CPUs");
        assert_eq!(t.accelerate_from_frames, 0, "every visit with 16 CPUs");
        assert_eq!((t.max_messages, t.window_per_member), (100, 100));
        assert_eq!(t.window_for(3), 300);
        let t = totem_on(NODES, 2);
        assert!(t.accelerated, "auto: on with 2 CPUs");
        assert_eq!(t.accelerate_from_frames, 50, "full visits only with 2 CPUs");
        assert_eq!((t.max_messages, t.window_per_member), (100, 100));
        let on = format!("corosync_rs {{\n accelerated_ring: yes\n}}\n{NODES}");
        let t = totem_on(&on, 2);
        assert_eq!((t.max_messages, t.accelerate_from_frames), (100, 0));
        let off = format!("corosync_rs {{\n accelerated_ring: no\n}}\n{NODES}");
        let t = totem_on(&off, 16);
        assert!(!t.accelerated, "off");
        assert_eq!((t.max_messages, t.window_per_member), (50, 50));
        let written = format!("totem {{\n max_messages: 50\n}}\n{NODES}");
        assert_eq!(totem_on(&written, 16).max_messages, 50, "as written");
        let small = format!("totem {{\n window_size: 80\n}}\n{NODES}");
        let t = totem_on(&small, 16);
        assert_eq!(
            (t.max_messages, t.window_for(3)),
            (80, 80),
            "never more than the window"
        );
        t.validate().expect("valid");
    }

    #[test]
    fn the_default_window_grows_with_the_ring_and_a_written_one_does_not() {
        let nodes = NODES;
        let t = totem_of(nodes);
        // `auto` runs the Accelerated Ring, so visits of 100 frames.
        assert_eq!((t.window_size, t.window_per_member), (150, 100));
        assert_eq!((t.window_for(3), t.window_for(12)), (300, 1200));
        let t = totem_of(&format!("totem {{\n max_messages: 20\n}}\n{nodes}"));
        assert_eq!(t.window_for(12), 240, "a visit's frames per member");
        let t = totem_of(&format!("totem {{\n window_size: 150\n}}\n{nodes}"));
        assert_eq!(t.window_per_member, 0);
        assert_eq!(t.window_for(12), 150, "as written, as in Corosync");
    }

    #[test]
    fn a_visit_longer_than_the_default_window_is_fine_where_the_window_grows() {
        let t = totem_of(&format!("totem {{\n max_messages: 200\n}}\n{NODES}"));
        assert_eq!((t.max_messages, t.window_per_member), (200, 200));
        assert_eq!((t.window_for(1), t.window_for(12)), (200, 2400));
        t.validate().expect("valid");
        let fixed = format!("totem {{\n window_size: 150\n max_messages: 200\n}}\n{NODES}");
        let Err(e) = Config::from_str(&fixed, "corosync.conf") else {
            panic!("a visit longer than a written window is refused");
        };
        assert!(
            e.to_string()
                .starts_with("corosync.conf:3: max_messages (200)"),
            "{e}"
        );
    }

    #[test]
    fn the_default_idle_hold_comes_sooner_on_larger_rings_and_a_written_one_does_not() {
        let t = totem_of(NODES);
        let visits: Vec<u32> = [2, 3, 6, 12, 16]
            .iter()
            .map(|&n| t.idle_visits_before_hold(n))
            .collect();
        assert_eq!(visits, [4, 4, 2, 1, 1], "12 idle hops, at most 4 rotations");
        let t = totem_of(&format!(
            "totem {{
 seqno_unchanged_const: 4
}}
{NODES}"
        ));
        assert_eq!(t.hold_after_idle_hops, 0);
        assert_eq!(
            t.idle_visits_before_hold(12),
            4,
            "rotations, as in Corosync"
        );
    }
}
