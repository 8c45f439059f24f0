//! `logging`, `system`, `uidgid`, `quorum` and `corosync_rs`.

use std::path::PathBuf;

use super::syntax::{Entry, Section};
use super::types::*;
use super::values::{boolean, check_subsections, choice, u32_in, word, Ctx, Keys};
use super::ConfigError;

/// `fileline: on` / `function_name: on`.
const NO_SOURCE_PLACE: &str =
    "log lines carry no source file, line or function in corosync-rs; ignored";

const LOGGING_IGNORED: &[&str] = &[
    "syslog_priority",
    "logfile_priority",
    "syslog_level",
    "tags",
    "blackbox",
];

fn debug_level(cx: &Ctx, e: &Entry) -> Result<DebugLevel, ConfigError> {
    Ok(match choice(cx, e, &["off", "on", "trace", "no", "yes"])? {
        "on" | "yes" => DebugLevel::On,
        "trace" => DebugLevel::Trace,
        _ => DebugLevel::Off,
    })
}

/// `logging { }` (several are merged) and its `logger_subsys { }` sections.
pub(crate) fn logging(cx: &mut Ctx, root: &Section) -> Result<Logging, ConfigError> {
    let sections: Vec<&Section> = root.sections_named("logging").collect();
    let mut k = Keys::new("logging", &sections);
    let mut l = Logging::default();
    let mut to_logfile_line = 0;
    if let Some(e) = k.take(cx, "to_stderr") {
        l.to_stderr = boolean(cx, e)?;
    }
    if let Some(e) = k.take(cx, "to_logfile") {
        l.to_logfile = boolean(cx, e)?;
        to_logfile_line = e.line;
    }
    if let Some(e) = k.take(cx, "logfile") {
        l.logfile = Some(PathBuf::from(word(cx, e)?));
    }
    if let Some(e) = k.take(cx, "to_syslog") {
        l.to_syslog = boolean(cx, e)?;
    }
    if let Some(e) = k.take(cx, "syslog_facility") {
        let names: Vec<&'static str> = SYSLOG_FACILITIES.iter().map(|&(n, _)| n).collect();
        l.syslog_facility = choice(cx, e, &names)?.to_string();
    }
    if let Some(e) = k.take(cx, "debug") {
        l.debug = debug_level(cx, e)?;
    }
    if let Some(e) = k.take(cx, "timestamp") {
        l.timestamp = match choice(cx, e, &["off", "on", "hires", "no", "yes"])? {
            "on" | "yes" => Timestamp::On,
            "hires" => Timestamp::Hires,
            _ => Timestamp::Off,
        };
    }
    // Kept as written (cmap shows them), but log lines carry no source place.
    if let Some(e) = k.take(cx, "fileline") {
        l.fileline = boolean(cx, e)?;
        if l.fileline {
            cx.warn(e.line, NO_SOURCE_PLACE);
        }
    }
    if let Some(e) = k.take(cx, "function_name") {
        l.function_name = boolean(cx, e)?;
        if l.function_name {
            cx.warn(e.line, NO_SOURCE_PLACE);
        }
    }
    k.finish(cx, LOGGING_IGNORED);
    if l.to_logfile && l.logfile.is_none() {
        return Err(cx.err(to_logfile_line, "to_logfile: yes needs logfile: <path>"));
    }
    check_subsections(
        cx,
        "logging",
        &sections,
        &["logger_subsys"],
        &[("logging_daemon", "not supported")],
    );
    for s in sections
        .iter()
        .flat_map(|s| s.sections_named("logger_subsys"))
    {
        l.subsystems.push(logger_subsys(cx, s, l.debug)?);
    }
    Ok(l)
}

/// One `logger_subsys { }`. Its `debug` is not applied (one level serves every subsystem),
/// so a value that asks for more or less than `global` gives is warned about.
fn logger_subsys(
    cx: &mut Ctx,
    s: &Section,
    global: DebugLevel,
) -> Result<LoggerSubsys, ConfigError> {
    let mut k = Keys::new("logging.logger_subsys", &[s]);
    let subsys = match k.take(cx, "subsys") {
        Some(e) => word(cx, e)?,
        None => return Err(cx.err(s.line, "no subsys key in logger_subsys section")),
    };
    let debug = match k.take(cx, "debug") {
        Some(e) => {
            let level = debug_level(cx, e)?;
            // on and trace both turn debug lines on (LogTargets::debug).
            if (level == DebugLevel::Off) != (global == DebugLevel::Off) {
                cx.warn(
                    e.line,
                    format!(
                        "'logging.logger_subsys.debug' for {subsys} ignored: corosync-rs has one \
                         debug level for every subsystem (logging {{ debug }})"
                    ),
                );
            }
            Some(level)
        }
        None => None,
    };
    // Corosync accepts per-subsystem destinations too; they are logged as ignored.
    let mut ignored = vec![
        "to_stderr",
        "to_logfile",
        "to_syslog",
        "logfile",
        "timestamp",
    ];
    ignored.extend_from_slice(LOGGING_IGNORED);
    k.finish(cx, &ignored);
    check_subsections(cx, "logging.logger_subsys", &[s], &[], &[]);
    Ok(LoggerSubsys {
        subsys,
        debug,
        line: s.line,
    })
}

/// `system { }`.
pub(crate) fn system(cx: &mut Ctx, root: &Section) -> Result<System, ConfigError> {
    let sections: Vec<&Section> = root.sections_named("system").collect();
    let mut k = Keys::new("system", &sections);
    let mut s = System::default();
    if let Some(e) = k.take(cx, "sched_rr") {
        s.sched_rr = boolean(cx, e)?;
    }
    let priority = k.take(cx, "priority");
    if let Some(e) = priority {
        s.priority = match e.value.as_str() {
            "max" => Priority::Max,
            "min" => Priority::Min,
            v => match v.parse::<i32>() {
                Ok(n) if (-20..=19).contains(&n) => Priority::Nice(n),
                _ => {
                    return Err(cx.err(
                        e.line,
                        format!("value of 'priority' must be max, min or a nice value -20 ..= 19, but '{v}' was given"),
                    ))
                }
            },
        };
    }
    if let Some(e) = priority {
        priority_in_effect(cx, e, &s);
    }
    if let Some(e) = k.take(cx, "state_dir") {
        let dir = word(cx, e)?;
        if !dir.starts_with('/') {
            return Err(cx.err(
                e.line,
                format!("state_dir must be an absolute path, but '{dir}' was given"),
            ));
        }
        s.state_dir = PathBuf::from(dir);
    }
    if let Some(e) = k.take(cx, "move_to_root_cgroup") {
        s.move_to_root_cgroup = match choice(cx, e, &["yes", "no", "auto"])? {
            "yes" => YesNoAuto::Yes,
            "no" => YesNoAuto::No,
            _ => YesNoAuto::Auto,
        };
        if s.move_to_root_cgroup != YesNoAuto::No {
            cx.warn(
                e.line,
                format!(
                    "'system.move_to_root_cgroup: {}' ignored: corosync-rs does not move itself \
                     between cgroups (with CONFIG_RT_GROUP_SCHED, SCHED_RR may then be refused)",
                    e.value
                ),
            );
        }
    }
    if let Some(e) = k.take(cx, "allow_knet_handle_fallback") {
        s.allow_knet_handle_fallback = boolean(cx, e)?;
        if s.allow_knet_handle_fallback {
            cx.warn(
                e.line,
                "'system.allow_knet_handle_fallback' ignored: corosync-rs has no knet handle",
            );
        }
    }
    k.finish(cx, &["qb_ipc_type"]);
    check_subsections(cx, "system", &sections, &[], &[]);
    Ok(s)
}

/// Warns when `priority` (entry `e`) does nothing: only `max` and `min` with `sched_rr` are
/// applied (as the SCHED_RR priority); Corosync's nice value and its non-realtime priorities
/// are not.
fn priority_in_effect(cx: &mut Ctx, e: &Entry, s: &System) {
    let why = match s.priority {
        Priority::Nice(n) => format!("the nice value {n} is not applied"),
        Priority::Max | Priority::Min if !s.sched_rr => {
            "with sched_rr: no it has no effect (it only picks the SCHED_RR priority)".to_string()
        }
        Priority::Max | Priority::Min => return,
    };
    cx.warn(
        e.line,
        format!("'system.priority: {}' ignored: {why}", e.value),
    );
}

fn ident(cx: &Ctx, e: &Entry) -> Result<Ident, ConfigError> {
    let v = word(cx, e)?;
    if v.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Ident::Id(u32_in(cx, e, 0, u32::MAX)?));
    }
    if v.contains(|c: char| c.is_whitespace() || c == ':') {
        return Err(cx.err(
            e.line,
            format!(
                "value of '{}' must be a user or group name or number, but '{v}' was given",
                e.key
            ),
        ));
    }
    Ok(Ident::Name(v))
}

/// Every `uidgid { }`; each is one entry.
pub(crate) fn uidgid(cx: &mut Ctx, root: &Section) -> Result<Vec<UidGid>, ConfigError> {
    let mut out = Vec::new();
    for s in root.sections_named("uidgid") {
        let mut k = Keys::new("uidgid", &[s]);
        let uid = match k.take(cx, "uid") {
            Some(e) => Some(ident(cx, e)?),
            None => None,
        };
        let gid = match k.take(cx, "gid") {
            Some(e) => Some(ident(cx, e)?),
            None => None,
        };
        k.finish(cx, &[]);
        check_subsections(cx, "uidgid", &[s], &[], &[]);
        if uid.is_none() && gid.is_none() {
            cx.warn(s.line, "uidgid section without uid or gid; ignored");
            continue;
        }
        out.push(UidGid {
            uid,
            gid,
            file: cx.file.to_string(),
            line: s.line,
        });
    }
    Ok(out)
}

/// A file of `uidgid.d`: its `uidgid { }` sections; anything else in it is warned about and
/// ignored (Corosync refuses it).
pub(crate) fn uidgid_file(cx: &mut Ctx, root: &Section) -> Result<Vec<UidGid>, ConfigError> {
    for e in &root.entries {
        cx.warn(
            e.line,
            format!(
                "key '{}' outside a uidgid section; ignored (a uidgid.d file holds only uidgid \
                 sections)",
                e.key
            ),
        );
    }
    for s in root.sections.iter().filter(|s| s.name != "uidgid") {
        cx.warn(
            s.line,
            format!(
                "section '{}' ignored: a uidgid.d file holds only uidgid sections",
                s.name
            ),
        );
    }
    uidgid(cx, root)
}

/// `quorum { }`, checked against the nodelist's votes (`nodes`) as votequorum checks it at
/// start-up.
pub(crate) fn quorum(cx: &mut Ctx, root: &Section, nodes: &[Node]) -> Result<Quorum, ConfigError> {
    let sections: Vec<&Section> = root.sections_named("quorum").collect();
    let mut k = Keys::new("quorum", &sections);
    let mut q = Quorum::default();
    let provider = k.take(cx, "provider");
    if let Some(e) = provider {
        if e.value != "corosync_votequorum" {
            return Err(cx.err(
                e.line,
                format!(
                    "unknown quorum provider '{}'; the provider is corosync_votequorum",
                    e.value
                ),
            ));
        }
        q.provider = Some(QuorumProvider::Votequorum);
    }
    if let Some(e) = k.take(cx, "expected_votes") {
        q.expected_votes = Some(u32_in(cx, e, 1, u32::MAX)?);
    }
    if let Some(e) = k.take(cx, "two_node") {
        q.two_node = boolean(cx, e)?;
    }
    q.wait_for_all = match k.take(cx, "wait_for_all") {
        Some(e) => boolean(cx, e)?,
        None => q.two_node,
    };
    let last_man_standing = k.take(cx, "last_man_standing");
    if let Some(e) = last_man_standing {
        q.last_man_standing = boolean(cx, e)?;
    }
    if let Some(e) = k.take(cx, "last_man_standing_window") {
        q.last_man_standing_window = u32_in(cx, e, 1, u32::MAX)?;
    }
    let auto_tie_breaker = k.take(cx, "auto_tie_breaker");
    if let Some(e) = auto_tie_breaker {
        q.auto_tie_breaker = boolean(cx, e)?;
    }
    if let Some(e) = k.take(cx, "auto_tie_breaker_node") {
        q.auto_tie_breaker_node = Some(word(cx, e)?);
    }
    k.finish(
        cx,
        &[
            "allow_downscale",
            "leaving_timeout",
            "votes",
            "expected_votes_tracking",
        ],
    );
    check_subsections(
        cx,
        "quorum",
        &sections,
        &[],
        &[("device", "quorum devices (qdevice) are not supported")],
    );
    let has_keys = sections.iter().any(|s| !s.entries.is_empty());
    if q.provider.is_none() && has_keys {
        cx.warn(
            sections[0].line,
            "quorum settings have no effect without provider: corosync_votequorum",
        );
    }
    if let Some(provider) = provider {
        let lines = QuorumLines {
            provider: provider.line,
            last_man_standing: last_man_standing.map_or(0, |e| e.line),
            auto_tie_breaker: auto_tie_breaker.map_or(0, |e| e.line),
        };
        check_votequorum(cx, &q, nodes, lines)?;
    }
    Ok(q)
}

/// Where the keys [`check_votequorum`] blames are.
struct QuorumLines {
    provider: u32,
    last_man_standing: u32,
    auto_tie_breaker: u32,
}

/// Votequorum's start-up refusals (`services::QuorumConfig::check`), here where the lines
/// are known: no votes to expect, and the tie breaker with last_man_standing in an odd-sized
/// cluster without wait_for_all.
fn check_votequorum(
    cx: &Ctx,
    q: &Quorum,
    nodes: &[Node],
    at: QuorumLines,
) -> Result<(), ConfigError> {
    let nodelist_votes = nodes
        .iter()
        .fold(0u32, |t, n| t.saturating_add(n.quorum_votes));
    let expected = q.expected_votes.unwrap_or(nodelist_votes);
    if expected == 0 {
        let why = if nodes.is_empty() {
            "there is no nodelist to count votes from"
        } else {
            "the nodelist's quorum_votes add up to 0"
        };
        return Err(cx.err(
            at.provider,
            format!(
                "provider corosync_votequorum needs quorum {{ expected_votes }}: {why} \
                 (nodelist or quorum.expected_votes must be configured)"
            ),
        ));
    }
    // An auto_tie_breaker_node votequorum can't read disables the tie breaker instead.
    let tie_breaker = q.auto_tie_breaker
        && q.auto_tie_breaker_node
            .as_deref()
            .is_none_or(|s| services::TieBreaker::parse(s).is_some());
    if tie_breaker && q.last_man_standing && expected % 2 == 1 && !q.wait_for_all {
        return Err(cx.err(
            at.auto_tie_breaker.max(at.last_man_standing),
            format!(
                "auto_tie_breaker and last_man_standing are not available in an odd-sized \
                 cluster ({expected} expected votes) unless wait_for_all is set"
            ),
        ));
    }
    Ok(())
}

/// `corosync_rs { }`: see [`Extensions`].
pub(crate) fn extensions(cx: &mut Ctx, root: &Section) -> Result<Extensions, ConfigError> {
    let sections: Vec<&Section> = root.sections_named("corosync_rs").collect();
    let mut k = Keys::new("corosync_rs", &sections);
    let mut x = Extensions::default();
    if let Some(e) = k.take(cx, "guarantee") {
        x.guarantee = match choice(cx, e, &["agreed", "safe"])? {
            "safe" => Guarantee::Safe,
            _ => Guarantee::Agreed,
        };
    }
    if let Some(e) = k.take(cx, "accelerated_ring") {
        // yes / no in any of the boolean spellings, or auto.
        x.accelerated_ring = match e.value.as_str() {
            "auto" => YesNoAuto::Auto,
            _ => match boolean(cx, e) {
                Ok(true) => YesNoAuto::Yes,
                Ok(false) => YesNoAuto::No,
                Err(_) => {
                    return Err(cx.err(
                        e.line,
                        format!(
                            "value of 'accelerated_ring' must be one of yes, no, auto, but '{}' was given",
                            e.value
                        ),
                    ))
                }
            },
        };
    }
    if let Some(e) = k.take(cx, "pin_core") {
        x.pin_core = match e.value.as_str() {
            "none" => None,
            _ => Some(u32_in(cx, e, 0, 65535)?),
        };
    }
    if let Some(e) = k.take(cx, "spin_us") {
        x.spin_us = u32_in(cx, e, 0, 1_000_000)?;
    }
    if let Some(e) = k.take(cx, "sqpoll_ms") {
        x.sqpoll_ms = u32_in(cx, e, 0, 10_000)?;
    }
    if let Some(e) = k.take(cx, "ipc_socket") {
        x.ipc_socket = Some(PathBuf::from(word(cx, e)?));
    }
    if let Some(e) = k.take(cx, "ipc_membarrier") {
        x.ipc_membarrier = boolean(cx, e)?;
    }
    k.finish(cx, &[]);
    check_subsections(cx, "corosync_rs", &sections, &[], &[]);
    Ok(x)
}
