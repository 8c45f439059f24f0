//! The configuration as cmap keys (Corosync's names: `totem.token`,
//! `nodelist.node.0.ring0_addr`, `logging.to_syslog`, `quorum.provider`…)
//! plus `runtime.config.totem.*`, the timings in effect, `uidgid.config.uid.N`
//! / `uidgid.config.gid.N` for who may connect, and the runtime
//! reload rules: which keys a reload applies and which need a restart.
//!
//! Types follow Corosync's `coroparse`: ids, timings, counts and votes are
//! `u32`, `mcastport` `u16`, `ttl` `u8`, `config_version` `u64`; yes/no
//! options and names are strings as written.

use services::proto::cmap::Value;

use crate::config::{Config, DebugLevel, Ident, QuorumProvider, Timestamp, Transport};

fn yes_no(b: bool) -> Value {
    Value::Str(if b { "yes" } else { "no" }.into())
}

fn s(v: impl Into<String>) -> Value {
    Value::Str(v.into())
}

/// Every key the configuration gives the icmap.
pub fn keys(cfg: &Config) -> Vec<(String, Value)> {
    let mut k: Vec<(String, Value)> = Vec::new();
    let mut put = |name: &str, v: Value| k.push((name.to_string(), v));
    let t = &cfg.totem;
    put("totem.version", Value::U32(t.version));
    put("totem.config_version", Value::U64(t.config_version));
    if let Some(n) = &t.cluster_name {
        put("totem.cluster_name", s(n.clone()));
    }
    put(
        "totem.transport",
        s(match t.transport {
            Transport::Udp => "udp",
            Transport::Udpu => "udpu",
        }),
    );
    put("totem.ip_version", s(t.ip_version.as_str()));
    if let Some(id) = t.nodeid {
        put("totem.nodeid", Value::U32(id));
    }
    put("totem.crypto_cipher", s(t.crypto.cipher.as_str()));
    put("totem.crypto_hash", s(t.crypto.hash.as_str()));
    if let Some(f) = &t.keyfile {
        put("totem.keyfile", s(f.display().to_string()));
    }
    put("totem.netmtu", Value::U32(t.netmtu));
    let tm = &t.timings;
    for (name, v) in timings(cfg) {
        if name != "token" {
            put(&format!("totem.{name}"), Value::U32(v));
        }
        put(&format!("runtime.config.totem.{name}"), Value::U32(v));
    }
    put("totem.token", Value::U32(tm.token_configured));
    put("totem.token_coefficient", Value::U32(tm.token_coefficient));
    for i in &t.interfaces {
        let p = format!("totem.interface.{}", i.linknumber);
        if let Some(a) = i.bindnetaddr {
            put(&format!("{p}.bindnetaddr"), s(a.to_string()));
        }
        if let Some(a) = i.mcastaddr {
            put(&format!("{p}.mcastaddr"), s(a.to_string()));
        }
        put(&format!("{p}.mcastport"), Value::U16(i.mcastport));
        put(&format!("{p}.ttl"), Value::U8(i.ttl));
    }
    for (idx, n) in cfg.nodes.iter().enumerate() {
        let p = format!("nodelist.node.{idx}");
        put(&format!("{p}.nodeid"), Value::U32(n.nodeid));
        if let Some(name) = &n.name {
            put(&format!("{p}.name"), s(name.clone()));
        }
        for a in &n.addrs {
            put(&format!("{p}.ring{}_addr", a.link), s(a.addr.to_string()));
        }
        put(&format!("{p}.quorum_votes"), Value::U32(n.quorum_votes));
    }
    let l = &cfg.logging;
    put("logging.to_stderr", yes_no(l.to_stderr));
    put("logging.to_logfile", yes_no(l.to_logfile));
    if let Some(f) = &l.logfile {
        put("logging.logfile", s(f.display().to_string()));
    }
    put("logging.to_syslog", yes_no(l.to_syslog));
    put("logging.syslog_facility", s(l.syslog_facility.clone()));
    put(
        "logging.debug",
        s(match l.debug {
            DebugLevel::Off => "off",
            DebugLevel::On => "on",
            DebugLevel::Trace => "trace",
        }),
    );
    put(
        "logging.timestamp",
        s(match l.timestamp {
            Timestamp::Off => "off",
            Timestamp::On => "on",
            Timestamp::Hires => "hires",
        }),
    );
    put("logging.fileline", yes_no(l.fileline));
    put("logging.function_name", yes_no(l.function_name));
    for sub in &l.subsystems {
        let p = format!("logging.logger_subsys.{}", sub.subsys);
        put(&format!("{p}.subsys"), s(sub.subsys.clone()));
        if let Some(d) = sub.debug {
            let d = match d {
                DebugLevel::Off => "off",
                DebugLevel::On => "on",
                DebugLevel::Trace => "trace",
            };
            put(&format!("{p}.debug"), s(d));
        }
    }
    let q = &cfg.quorum;
    if let Some(QuorumProvider::Votequorum) = q.provider {
        put("quorum.provider", s("corosync_votequorum"));
    }
    if let Some(e) = q.expected_votes {
        put("quorum.expected_votes", Value::U32(e));
    }
    put("quorum.two_node", Value::U8(q.two_node as u8));
    put("quorum.wait_for_all", Value::U8(q.wait_for_all as u8));
    put(
        "quorum.last_man_standing",
        Value::U8(q.last_man_standing as u8),
    );
    put(
        "quorum.last_man_standing_window",
        Value::U32(q.last_man_standing_window),
    );
    put(
        "quorum.auto_tie_breaker",
        Value::U8(q.auto_tie_breaker as u8),
    );
    if let Some(n) = &q.auto_tie_breaker_node {
        put("quorum.auto_tie_breaker_node", s(n.clone()));
    }
    put("system.sched_rr", yes_no(cfg.system.sched_rr));
    put(
        "system.state_dir",
        s(cfg.system.state_dir.display().to_string()),
    );
    // Who may connect besides root, as Corosync keeps it: one key per id,
    // value 1 (names are ids once `Config::load` looked them up; a name
    // still here was never looked up and gives no key).
    for u in &cfg.uidgid {
        if let Some(Ident::Id(id)) = u.uid {
            put(&format!("uidgid.config.uid.{id}"), Value::U8(1));
        }
        if let Some(Ident::Id(id)) = u.gid {
            put(&format!("uidgid.config.gid.{id}"), Value::U8(1));
        }
    }
    k.sort_by(|a, b| a.0.cmp(&b.0));
    k.dedup_by(|a, b| a.0 == b.0);
    k
}

/// The Totem timings in effect (after the token coefficient).
fn timings(cfg: &Config) -> Vec<(&'static str, u32)> {
    let t = &cfg.totem.timings;
    vec![
        ("token", t.token),
        ("token_retransmit", t.token_retransmit),
        ("hold", t.hold),
        (
            "token_retransmits_before_loss_const",
            t.token_retransmits_before_loss_const,
        ),
        ("join", t.join),
        ("send_join", t.send_join),
        ("consensus", t.consensus),
        ("merge", t.merge),
        ("downcheck", t.downcheck),
        ("fail_recv_const", t.fail_recv_const),
        ("seqno_unchanged_const", t.seqno_unchanged_const),
        ("miss_count_const", t.miss_count_const),
        ("window_size", t.window_size),
        (
            "max_messages",
            t.max_messages_in_effect(crate::setup::accelerated(cfg)),
        ),
    ]
}

/// Key prefixes whose new values a reload applies at once (logging, but
/// for its timestamp setting) or that only inform (the icmap gets every
/// new key either way).
const APPLIED_AT_RELOAD: [&str; 3] = ["logging.", "totem.config_version", "uidgid."];

/// The `totem.*` keys a running Totem takes (`Totem::set_timings`):
/// Corosync's runtime-changeable ("volatile") totem keys.
pub const TOTEM_AT_RELOAD: [&str; 14] = [
    "totem.token",
    "totem.token_coefficient",
    "totem.token_retransmit",
    "totem.hold",
    "totem.token_retransmits_before_loss_const",
    "totem.join",
    "totem.consensus",
    "totem.merge",
    "totem.downcheck",
    "totem.fail_recv_const",
    "totem.seqno_unchanged_const",
    "totem.miss_count_const",
    "totem.window_size",
    "totem.max_messages",
];

/// The keys whose value changed between `old` and `new` but which the
/// running daemon cannot take without a restart (network, crypto, frame
/// sizes, system): for the reload's log line. The Totem
/// timings of [`TOTEM_AT_RELOAD`] are taken at once when `totem_applied`.
pub fn needing_restart(
    old: &[(String, Value)],
    new: &[(String, Value)],
    totem_applied: bool,
) -> Vec<String> {
    let mut changed: Vec<String> = Vec::new();
    let get = |list: &[(String, Value)], k: &str| {
        list.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    };
    for (k, v) in new {
        if get(old, k).as_ref() != Some(v) {
            changed.push(k.clone());
        }
    }
    for (k, _) in old {
        if get(new, k).is_none() {
            changed.push(k.clone());
        }
    }
    changed.retain(|k| {
        // The timestamp setting is fixed in the formatter at start.
        let applied = (APPLIED_AT_RELOAD.iter().any(|p| k.starts_with(p))
            && k != "logging.timestamp")
            || (totem_applied && TOTEM_AT_RELOAD.contains(&k.as_str()))
            || k.starts_with("runtime.")
            // votequorum re-reads these (the other quorum options, as in
            // Corosync, only at start).
            || ["quorum.expected_votes", "quorum.votes", "quorum.two_node"].contains(&k.as_str())
            // Members added or removed (the transport's peer list).
            || k.starts_with("nodelist.");
        !applied
    });
    changed.sort();
    changed
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONF: &str = "totem {\n version: 2\n cluster_name: test\n token: 2000\n crypto_cipher: none\n crypto_hash: none\n interface {\n  linknumber: 0\n  mcastport: 5405\n }\n}\nnodelist {\n node {\n  nodeid: 1\n  ring0_addr: 10.0.0.1\n }\n node {\n  nodeid: 2\n  ring0_addr: 10.0.0.2\n }\n}\nlogging {\n to_stderr: yes\n}\n";

    #[test]
    fn uidgid_entries_become_read_only_config_keys() {
        let text = format!("{CONF}uidgid {{\n uid: 1000\n gid: 50\n}}\nuidgid {{\n gid: 60\n}}\n");
        let (cfg, _) = Config::from_str(&text, "t").unwrap();
        let got: Vec<(String, Value)> = keys(&cfg)
            .into_iter()
            .filter(|(k, _)| k.starts_with("uidgid."))
            .collect();
        let want: Vec<(String, Value)> = [
            "uidgid.config.gid.50",
            "uidgid.config.gid.60",
            "uidgid.config.uid.1000",
        ]
        .iter()
        .map(|k| (k.to_string(), Value::U8(1)))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn config_becomes_corosync_keys() {
        let (cfg, _) = Config::from_str(CONF, "t").unwrap();
        let k = keys(&cfg);
        let get = |n: &str| k.iter().find(|(x, _)| x == n).map(|(_, v)| v.clone());
        assert_eq!(get("totem.token"), Some(Value::U32(2000)));
        assert_eq!(get("totem.cluster_name"), Some(Value::Str("test".into())));
        assert_eq!(get("nodelist.node.1.nodeid"), Some(Value::U32(2)));
        assert_eq!(
            get("nodelist.node.1.ring0_addr"),
            Some(Value::Str("10.0.0.2".into()))
        );
        assert_eq!(get("totem.interface.0.mcastport"), Some(Value::U16(5405)));
        assert_eq!(get("logging.to_stderr"), Some(Value::Str("yes".into())));
        assert!(get("runtime.config.totem.consensus").is_some());
        let (cfg2, _) = Config::from_str(&CONF.replace("token: 2000", "token: 3000"), "t").unwrap();
        let diff = needing_restart(&k, &keys(&cfg2), false);
        assert!(diff.contains(&"totem.token".to_string()), "{diff:?}");
        assert!(needing_restart(&k, &keys(&cfg2), true).is_empty());
        let (cfg4, _) = Config::from_str(&CONF.replace("5405", "5407"), "t").unwrap();
        assert_eq!(
            needing_restart(&k, &keys(&cfg4), true),
            vec!["totem.interface.0.mcastport".to_string()]
        );
        let (cfg3, _) =
            Config::from_str(&CONF.replace("to_stderr: yes", "to_stderr: no"), "t").unwrap();
        assert!(needing_restart(&k, &keys(&cfg3), true).is_empty());
    }
}
