//! The `corosync.conf` reader against real files (Corosync 3 as pcs writes them, Corosync 2,
//! the OpenAIS multicast form), every class of error with its exact `file:line`, warnings,
//! defaults and derived timings, the environment, and garbage that must never panic.

use std::collections::HashMap;
use std::net::IpAddr;
use std::path::Path;

use daemon::config::*;

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

fn parse(text: &str) -> (Config, Vec<Warning>) {
    match Config::from_str(text, "corosync.conf") {
        Ok(ok) => ok,
        Err(e) => panic!("unexpected error: {e}"),
    }
}

fn error(text: &str) -> String {
    match Config::from_str(text, "corosync.conf") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.to_string(),
    }
}

/// A udpu file listing `n` nodes, with `netmtu` written.
fn many_nodes(n: u32, netmtu: u32) -> String {
    let mut s = format!("totem {{\n netmtu: {netmtu}\n}}\nnodelist {{\n");
    for i in 1..=n {
        s += &format!(
            " node {{\n  ring0_addr: 10.0.{}.{}\n  nodeid: {i}\n }}\n",
            i / 200,
            i % 200 + 1
        );
    }
    s + "}\n"
}

/// Host names in `ringN_addr` (as `pcs` writes them) are looked up, the
/// family chosen by `ip_version`; a name that does not resolve, or has no
/// address of an allowed family, is an error at its line.
#[test]
fn host_names_in_ring_addrs_are_resolved() {
    let hosts = |name: &str| -> Result<Vec<IpAddr>, String> {
        match name {
            "node1" | "node_1" => Ok(vec![ip("10.0.0.1")]),
            "node2" => Ok(vec![ip("10.0.0.2"), ip("fd00::2")]),
            "v6only" => Ok(vec![ip("fd00::9")]),
            _ => Err("Name or service not known".into()),
        }
    };
    let file = |ip_version: &str, second: &str| {
        format!(
            "totem {{\n version: 2\n cluster_name: c\n{ip_version}}}\nnodelist {{\n node {{\n  ring0_addr: node1\n  name: node1\n  nodeid: 1\n }}\n node {{\n  ring0_addr: {second}\n  nodeid: 2\n }}\n}}\n"
        )
    };
    let (c, _) = Config::from_str_resolving(
        &file(" ip_version: ipv4\n", "node2"),
        "corosync.conf",
        &hosts,
    )
    .unwrap();
    assert_eq!(c.nodes[0].ring0_addr(), ip("10.0.0.1"));
    assert_eq!(c.nodes[1].ring0_addr(), ip("10.0.0.2"));
    // A hosts file's name with an underscore.
    let (c, _) = Config::from_str_resolving(
        &file(" ip_version: ipv4\n", "node2").replace("ring0_addr: node1", "ring0_addr: node_1"),
        "corosync.conf",
        &hosts,
    )
    .unwrap();
    assert_eq!(c.nodes[0].ring0_addr(), ip("10.0.0.1"));
    // ipv6-4 (udpu's default) prefers IPv6 where a name has both; node1
    // has IPv4 only, so the families differ and that is refused as ever.
    let e = Config::from_str_resolving(&file("", "node2"), "corosync.conf", &hosts).unwrap_err();
    assert!(
        e.to_string().contains("10.0.0.1") && e.to_string().contains("fd00::2"),
        "{e}"
    );
    let e = Config::from_str_resolving(
        &file(" ip_version: ipv4\n", "v6only"),
        "corosync.conf",
        &hosts,
    )
    .unwrap_err();
    assert_eq!(
        e.to_string(),
        "corosync.conf:13: ring0_addr: host name 'v6only' has no address allowed by ip_version ipv4 (found: fd00::9)"
    );
    let e = Config::from_str_resolving(&file("", "nosuch"), "corosync.conf", &hosts).unwrap_err();
    assert_eq!(
        e.to_string(),
        "corosync.conf:12: ring0_addr: cannot resolve 'nosuch': Name or service not known"
    );
}

/// `Config::load` resolves with the system's resolver: `localhost` is in
/// every hosts file.
#[test]
fn load_resolves_host_names_with_the_system_resolver() {
    let dir = std::env::temp_dir().join(format!("corosync-rs-hostname-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("corosync.conf");
    std::fs::write(
        &path,
        "totem {\n version: 2\n cluster_name: c\n ip_version: ipv4\n}\nnodelist {\n node {\n  ring0_addr: localhost\n  nodeid: 1\n }\n}\n",
    )
    .unwrap();
    let (c, _) = Config::load(&path).unwrap();
    assert_eq!(c.nodes[0].ring0_addr(), ip("127.0.0.1"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_nodelist_must_fit_a_commit_token() {
    // 48 members fit a 1500-byte MTU (commit tokens carry an entry each);
    // more need a larger netmtu, as the error says.
    let (c, _) = parse(&many_nodes(48, 1500));
    assert_eq!(c.nodes.len(), 48);
    let (c, _) = parse(&many_nodes(200, 9000));
    assert_eq!(c.nodes.len(), 200);
}

fn warnings(w: &[Warning]) -> Vec<String> {
    w.iter().map(|w| w.to_string()).collect()
}

fn has_warning(w: &[Warning], line: u32, needle: &str) -> bool {
    w.iter()
        .any(|w| w.line == line && w.message.contains(needle))
}

/// Corosync 3 as `pcs cluster setup` writes it.
const PCS_THREE_NODES: &str = "\
totem {
    version: 2
    cluster_name: hacluster
    transport: knet
    crypto_cipher: aes256
    crypto_hash: sha256
}

nodelist {
    node {
        ring0_addr: 192.168.122.11
        name: node1
        nodeid: 1
    }

    node {
        ring0_addr: 192.168.122.12
        name: node2
        nodeid: 2
    }

    node {
        ring0_addr: 192.168.122.13
        name: node3
        nodeid: 3
    }
}

quorum {
    provider: corosync_votequorum
}

logging {
    to_logfile: yes
    logfile: /var/log/cluster/corosync.log
    to_syslog: yes
    timestamp: on
}
";

#[test]
fn corosync3_pcs_file() {
    let (c, w) = parse(PCS_THREE_NODES);
    assert_eq!(c.totem.transport, Transport::Udpu);
    assert!(has_warning(&w, 4, "knet"), "{:?}", warnings(&w));
    assert_eq!(w.len(), 1, "{:?}", warnings(&w));
    assert_eq!(c.totem.cluster_name.as_deref(), Some("hacluster"));
    assert_eq!(c.totem.ip_version, IpVersion::Ipv6Then4);
    assert_eq!(c.totem.crypto.cipher, Cipher::Aes256);
    assert_eq!(c.totem.crypto.hash, Hash::Sha256);
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.nodes[1].name.as_deref(), Some("node2"));
    assert_eq!(c.nodes[1].nodeid, 2);
    assert!(!c.nodes[1].nodeid_generated);
    assert_eq!(c.nodes[2].ring0_addr(), ip("192.168.122.13"));
    assert_eq!(c.nodes[2].line, 22);
    assert_eq!(c.quorum.provider, Some(QuorumProvider::Votequorum));
    assert!(c.logging.to_logfile && c.logging.to_syslog);
    assert_eq!(
        c.logging.logfile.as_deref(),
        Some(Path::new("/var/log/cluster/corosync.log"))
    );
    assert_eq!(c.logging.timestamp, Timestamp::On);

    // Three nodes: one coefficient on top of the 3000 ms default, and everything derived
    // from the effective token.
    let t = &c.totem.timings;
    assert_eq!(t.token_configured, 3000);
    assert_eq!(t.token, 3650);
    assert_eq!(t.consensus, 4380);
    assert_eq!(t.token_retransmit, 869); // 3650 / 4.2
    assert_eq!(t.hold, 685); // 869 * 0.8 - 10

    let local = c
        .resolve_bind(&[ip("127.0.0.1"), ip("192.168.122.12"), ip("fe80::1")])
        .unwrap();
    assert_eq!(local.nodeid, 2);
    assert_eq!(local.bind_addr, ip("192.168.122.12"));
    assert_eq!(local.port, 5405);
    assert_eq!(local.mcast_addr, None);
    assert_eq!(local.node_index, Some(1));

    let e = c.resolve_bind(&[ip("10.0.0.1")]).unwrap_err();
    assert_eq!(e.line, 9, "{e}");
    assert!(e.reason.contains("10.0.0.1"), "{e}");
}

/// Corosync 2: udpu, generated node ids, two_node, logger_subsys, uidgid.
const COROSYNC2_TWO_NODE: &str = "\
# Please read the corosync.conf.5 manual page
totem {
\tversion: 2
\tcluster_name: pair
\ttransport: udpu
\ttoken: 5000
\tclear_node_high_bit: yes
\tinterface {
\t\tringnumber: 0
\t\tbindnetaddr: 10.1.1.0
\t\tmcastport: 5407
\t}
}

nodelist {
\tnode {
\t\tring0_addr: 10.1.1.1
\t}
\tnode {
\t\tring0_addr: 10.1.1.2
\t}
}

quorum {
\tprovider: corosync_votequorum
\ttwo_node: 1
}

logging {
\tto_stderr: no
\tto_syslog: yes
\tdebug: trace
\tlogger_subsys {
\t\tsubsys: QUORUM
\t\tdebug: on
\t}
}

uidgid {
\tuid: hacluster
\tgid: haclient
}

uidgid {
\tgid: 189
}

system {
\tstate_dir: /run/corosync-test
\tpriority: -5
}
";

#[test]
fn corosync2_two_node_file() {
    let (c, w) = parse(COROSYNC2_TWO_NODE);
    // Corosync says the same: the nodelist wins over bindnetaddr.
    assert!(
        has_warning(&w, 8, "bindnetaddr is used together with a nodelist"),
        "{:?}",
        warnings(&w)
    );
    // Corosync renices to -5; corosync-rs doesn't.
    assert!(
        has_warning(&w, 50, "'system.priority: -5' ignored"),
        "{:?}",
        warnings(&w)
    );
    assert_eq!(w.len(), 2, "{:?}", warnings(&w));
    assert_eq!(c.totem.transport, Transport::Udpu);
    assert_eq!(c.nodes[0].nodeid, 0x0a01_0101);
    assert!(c.nodes[0].nodeid_generated);
    assert_eq!(c.nodes[1].nodeid, 0x0a01_0102);
    // Two nodes: no coefficient.
    assert_eq!(c.totem.timings.token, 5000);
    assert_eq!(c.totem.timings.consensus, 6000);
    assert!(c.quorum.two_node && c.quorum.wait_for_all);
    assert_eq!(c.logging.debug, DebugLevel::Trace);
    assert!(!c.logging.to_stderr);
    assert_eq!(c.logging.subsystems.len(), 1);
    assert_eq!(c.logging.subsystems[0].subsys, "QUORUM");
    assert_eq!(c.logging.subsystems[0].debug, Some(DebugLevel::On));
    assert_eq!(c.uidgid.len(), 2);
    assert_eq!(c.uidgid[0].uid, Some(Ident::Name("hacluster".into())));
    assert_eq!(c.uidgid[1].gid, Some(Ident::Id(189)));
    assert_eq!(c.uidgid[1].uid, None);
    assert_eq!(c.system.state_dir, Path::new("/run/corosync-test"));
    assert_eq!(c.system.priority, Priority::Nice(-5));

    let local = c.resolve_bind(&[ip("10.1.1.2")]).unwrap();
    assert_eq!((local.nodeid, local.port), (0x0a01_0102, 5407));
}

/// The OpenAIS / Corosync 1 multicast form.
const OPENAIS_MULTICAST: &str = "\
# Please read the openais.conf.5 manual page

totem {
\tversion: 2
\tsecauth: off
\tthreads: 0
\tinterface {
\t\tringnumber: 0
\t\tbindnetaddr: 192.168.1.0
\t\tmcastaddr: 226.94.1.1
\t\tmcastport: 5405
\t\tttl: 2
\t}
}

logging {
\tfileline: off
\tto_stderr: yes
\tto_file: no
\tdebug: off
\ttimestamp: on
\tlogger_subsys {
\t\tsubsys: AMF
\t\tdebug: off
\t}
}

amf {
\tmode: disabled
}
";

#[test]
fn openais_multicast_file() {
    let (c, w) = parse(OPENAIS_MULTICAST);
    assert_eq!(c.totem.transport, Transport::Udp);
    assert_eq!(c.totem.ip_version, IpVersion::Ipv4);
    assert!(c.nodes.is_empty());
    assert!(!c.totem.crypto.enabled());
    assert!(
        has_warning(&w, 6, "'totem.threads' is not used"),
        "{:?}",
        warnings(&w)
    );
    assert!(
        has_warning(&w, 19, "unknown key 'to_file'"),
        "{:?}",
        warnings(&w)
    );
    assert!(has_warning(&w, 28, "section 'amf'"), "{:?}", warnings(&w));
    assert_eq!(w.len(), 3, "{:?}", warnings(&w));
    let link0 = c.totem.link0().unwrap();
    assert_eq!(link0.mcastaddr, Some(ip("226.94.1.1")));
    assert_eq!(link0.ttl, 2);
    assert_eq!(c.totem.timings.token, 3000);

    // The bind address is the local address inside 192.168.1.0; the node id is that IPv4
    // address as a number.
    let local = c
        .resolve_bind(&[ip("127.0.0.1"), ip("10.9.9.9"), ip("192.168.1.20")])
        .unwrap();
    assert_eq!(local.bind_addr, ip("192.168.1.20"));
    assert_eq!(local.nodeid, 0xc0a8_0114);
    assert_eq!(local.mcast_addr, Some(ip("226.94.1.1")));
    assert_eq!((local.port, local.ttl, local.node_index), (5405, 2, None));

    let with_bit = OPENAIS_MULTICAST.replace("\tthreads: 0\n", "\tclear_node_high_bit: yes\n");
    let (c, _) = parse(&with_bit);
    let local = c.resolve_bind(&[ip("192.168.1.20")]).unwrap();
    assert_eq!(local.nodeid, 0x40a8_0114);

    // No local address in the network, or two: a clear error at the interface.
    let e = c.resolve_bind(&[ip("10.0.0.1")]).unwrap_err().to_string();
    assert!(e.starts_with("corosync.conf:7: no local address"), "{e}");
    let e = c
        .resolve_bind(&[ip("192.168.1.20"), ip("192.168.1.21")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("corosync.conf:7: several local addresses"),
        "{e}"
    );
    // An exact local bindnetaddr is used as is.
    let exact = OPENAIS_MULTICAST.replace("192.168.1.0", "192.168.1.21");
    let (c, _) = parse(&exact);
    let local = c
        .resolve_bind(&[ip("192.168.1.20"), ip("192.168.1.21")])
        .unwrap();
    assert_eq!(local.bind_addr, ip("192.168.1.21"));
}

#[test]
fn multicast_address_derived_from_cluster_name() {
    let text = "totem {\n cluster_name: ab\n transport: udp\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n";
    let (c, _) = parse(text);
    // cluster id of "ab" = 97 * 2 + 98 = 292 = 0x124: 239.192.1.(292 % 255).
    assert_eq!(c.totem.link0().unwrap().mcastaddr, Some(ip("239.192.1.37")));
    assert_eq!(derived_mcastaddr("ab", 1, true), ip("ff15::125"));
    let local = c.resolve_bind(&[ip("10.0.0.1")]).unwrap();
    assert_eq!(local.mcast_addr, Some(ip("239.192.1.37")));
    assert_eq!(local.bind_addr, ip("10.0.0.1"));

    let e =
        error("totem {\n transport: udp\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n");
    assert!(
        e.starts_with("corosync.conf:1: transport udp needs mcastaddr"),
        "{e}"
    );
}

#[test]
fn ipv6_multicast_needs_nodeid() {
    let without =
        "totem {\n version: 2\n interface {\n  bindnetaddr: fd00::5\n  mcastaddr: ff15::1\n }\n}\n";
    assert_eq!(
        error(without),
        "corosync.conf:3: an IPv6 network requires that a node ID be specified: set totem { nodeid }"
    );
    let with = without.replace(" version: 2\n", " version: 2\n nodeid: 7\n");
    let (c, _) = parse(&with);
    assert_eq!(c.totem.ip_version, IpVersion::Ipv6);
    let local = c.resolve_bind(&[ip("127.0.0.1"), ip("fd00::5")]).unwrap();
    assert_eq!((local.nodeid, local.bind_addr), (7, ip("fd00::5")));
    assert_eq!(local.mcast_addr, Some(ip("ff15::1")));
}

#[test]
fn ipv6_nodelist_needs_nodeids() {
    let without = "nodelist {\n node {\n  ring0_addr: fd00::1\n  nodeid: 1\n }\n node {\n  ring0_addr: fd00::2\n }\n}\n";
    assert_eq!(
        error(without),
        "corosync.conf:6: an IPv6 network requires that a node ID be specified for address 'fd00::2'"
    );
    let with = without.replace("fd00::2\n", "fd00::2\n  nodeid: 2\n");
    let (c, w) = parse(&with);
    assert!(w.is_empty(), "{:?}", warnings(&w));
    assert_eq!(c.totem.transport, Transport::Udpu);
    let local = c.resolve_bind(&[ip("fd00::2")]).unwrap();
    assert_eq!(local.nodeid, 2);
}

#[test]
fn local_node_by_totem_nodeid() {
    let text = "totem {\n nodeid: 2\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n node {\n  ring0_addr: 10.0.0.2\n  nodeid: 2\n }\n}\n";
    let (c, _) = parse(text);
    // No local address listed: totem { nodeid } picks the node.
    assert_eq!(c.resolve_bind(&[ip("127.0.0.1")]).unwrap().nodeid, 2);
    // Address and nodeid disagree: an error at the node found by address.
    let e = c.resolve_bind(&[ip("10.0.0.1")]).unwrap_err().to_string();
    assert!(
        e.starts_with("corosync.conf:5: totem nodeid 2 does not match"),
        "{e}"
    );
    // Both addresses local: ambiguous.
    let e = c
        .resolve_bind(&[ip("10.0.0.1"), ip("10.0.0.2")])
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("corosync.conf:9: several nodelist entries"),
        "{e}"
    );
}

#[test]
fn errors_name_file_line_and_reason() {
    let n = |body: &str| format!("nodelist {{\n node {{\n{body} }}\n}}\n");
    let cases: Vec<(String, &str)> = vec![
        // syntax
        ("totem {\n version: 2\n".into(), "corosync.conf:1: missing closing brace for section 'totem' opened here"),
        ("totem {\n}\n}\n".into(), "corosync.conf:3: unexpected closing brace '}' (no section is open)"),
        ("totem {\n version 2\n}\n".into(), "corosync.conf:2: expected 'key: value', 'name {' or '}', found 'version 2'"),
        ("quorum { provider: corosync_votequorum }\n".into(), "corosync.conf:1: unexpected text 'provider: corosync_votequorum }' after 'quorum {' (put each key and the closing '}' on its own line)"),
        // values
        ("totem {\n token: soon\n}\n".into(), "corosync.conf:2: value of 'token' must be an integer, but 'soon' was given"),
        ("totem {\n token: 3000 # ms\n}\n".into(), "corosync.conf:2: value of 'token' must be an integer, but '3000 # ms' was given (a comment must be on a line of its own)"),
        ("totem {\n token: -1\n}\n".into(), "corosync.conf:2: value of 'token' must be an integer, but '-1' was given"),
        ("totem {\n token: 99999999999999999999999\n}\n".into(), "corosync.conf:2: value of 'token' is too large: '99999999999999999999999'"),
        ("totem {\n token: 5\n}\n".into(), "corosync.conf:2: the token timeout (5 ms) may not be less than 10 ms"),
        ("totem {\n token: 100\n token_retransmits_before_loss_const: 10\n}\n".into(), "corosync.conf:3: token (100 ms) and token_retransmits_before_loss_const (10) give a token retransmit timeout of 9 ms, less than 10 ms"),
        ("totem {\n join: 100\n consensus: 60\n}\n".into(), "corosync.conf:3: the consensus timeout (60 ms) may not be less than the join timeout (100 ms)"),
        ("totem {\n window_size: 20\n max_messages: 30\n}\n".into(), "corosync.conf:3: max_messages (30) may not be more than window_size (20): a node's visit is part of the rotation's window"),
        ("totem {\n window_size: 1073741824\n}\n".into(), "corosync.conf:2: window_size (1073741824) may not be more than 4080: the retransmit store holds 16384 frames, four windows and some"),
        ("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n  quorum_votes: 4294967295\n }\n}\n".into(), "corosync.conf:5: value of 'quorum_votes' must be between 0 and 1000000, but 4294967295 was given"),
        (many_nodes(49, 1500), "corosync.conf:4: 49 nodes listed; with netmtu 1500 a ring's commit token holds at most 48 members (raise netmtu)"),
        ("totem {\n version: 1\n}\n".into(), "corosync.conf:2: totem version 1 is not supported; only version 2 configurations are"),
        ("totem {\n transport: ib\n}\n".into(), "corosync.conf:2: value of 'transport' must be one of udp, udpu, knet, but 'ib' was given"),
        ("totem {\n ip_version: ipv5\n}\n".into(), "corosync.conf:2: value of 'ip_version' must be one of ipv4, ipv6, ipv4-6, ipv6-4, but 'ipv5' was given"),
        ("totem {\n crypto_cipher: blowfish\n}\n".into(), "corosync.conf:2: value of 'crypto_cipher' must be one of none, aes256, aes192, aes128, but 'blowfish' was given"),
        ("totem {\n crypto_cipher: 3des\n}\n".into(), "corosync.conf:2: crypto_cipher 3des is not supported (Corosync 3 removed it); use aes256"),
        ("totem {\n crypto_cipher: aes128\n crypto_hash: none\n}\n".into(), "corosync.conf:2: crypto_cipher requires crypto_hash with a value other than none"),
        ("totem {\n crypto_hash: sha3\n}\n".into(), "corosync.conf:2: value of 'crypto_hash' must be one of none, md5, sha1, sha256, sha384, sha512, but 'sha3' was given"),
        ("totem {\n clear_node_high_bit: maybe\n}\n".into(), "corosync.conf:2: value of 'clear_node_high_bit' must be yes or no, but 'maybe' was given"),
        ("totem {\n nodeid: 0\n}\n".into(), "corosync.conf:2: nodeid 0 is reserved; use 1 or more"),
        ("totem {\n interface {\n  bindnetaddr: 10.0.0.0\n  mcastaddr: 10.0.0.1\n }\n}\n".into(), "corosync.conf:4: mcastaddr 10.0.0.1 is not a multicast address"),
        ("totem {\n interface {\n  bindnetaddr: 10.0.0.0\n  mcastaddr: 239.1.1.1\n  mcastport: 70000\n }\n}\n".into(), "corosync.conf:5: value of 'mcastport' must be between 1 and 65535, but 70000 was given"),
        ("totem {\n interface {\n  bindnetaddr: 10.0.0.0\n  mcastaddr: 239.1.1.1\n  ttl: 256\n }\n}\n".into(), "corosync.conf:5: value of 'ttl' must be between 0 and 255, but 256 was given"),
        ("totem {\n interface {\n  ringnumber: 8\n }\n}\n".into(), "corosync.conf:3: value of 'ringnumber' must be between 0 and 7, but 8 was given"),
        ("totem {\n interface {\n  bindnetaddr: 10.0.0.0\n  mcastaddr: 239.1.1.1\n }\n interface {\n  bindnetaddr: 10.0.0.0\n }\n}\n".into(), "corosync.conf:6: link 0 is configured twice (also at line 2)"),
        ("totem {\n interface {\n  bindnetaddr: 10.0.0.0.1\n }\n}\n".into(), "corosync.conf:3: value of 'bindnetaddr' must be a numeric IP address, but '10.0.0.0.1' was given"),
        ("totem {\n interface {\n  mcastaddr: 239.1.1.1\n }\n}\n".into(), "corosync.conf:2: without a nodelist, totem { interface { bindnetaddr } } is required"),
        ("totem {\n transport: udpu\n interface {\n  mcastport: 5000\n }\n}\n".into(), "corosync.conf:2: transport udpu needs a nodelist { node { ring0_addr: … } }"),
        ("".into(), "corosync.conf:1: no network is configured: add nodelist { node { ring0_addr, nodeid } } (or, for multicast, totem { interface { bindnetaddr, mcastaddr } })"),
        ("# only a comment\n\ntotem {\n transport: udpu\n}\n".into(), "corosync.conf:3: no network is configured: add nodelist { node { ring0_addr, nodeid } } (or, for multicast, totem { interface { bindnetaddr, mcastaddr } })"),
        ("totem {\n ip_version: ipv4\n}\n".to_string() + &n("  ring0_addr: fd00::1\n  nodeid: 1\n"), "corosync.conf:6: address fd00::1 is not allowed by ip_version ipv4"),
        // nodelist
        (n("  ring0_addr: node1.example.com\n"), "corosync.conf:3: ring0_addr: cannot resolve 'node1.example.com': host names are not looked up when parsing text (Config::from_str)"),
        (n("  ring0_addr: node_1!\n"), "corosync.conf:3: value of 'ring0_addr' must be an IP address or a host name, but 'node_1!' was given"),
        (n("  name: a\n"), "corosync.conf:2: no ring0_addr specified for node"),
        (n("  ring1_addr: 10.0.0.1\n"), "corosync.conf:2: no ring0_addr specified for node"),
        (n("  ring9_addr: 10.0.0.1\n"), "corosync.conf:3: ring9_addr: link number is bigger than the allowed maximum 7"),
        (n("  ring0_addr: 10.0.0.1\n  nodeid: x\n"), "corosync.conf:4: value of 'nodeid' must be an integer, but 'x' was given"),
        (n("  ring0_addr: 0.0.0.0\n"), "corosync.conf:2: the node id derived from 0.0.0.0 is 0 (reserved); set nodeid"),
        ("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 4\n }\n node {\n  ring0_addr: 10.0.0.2\n  nodeid: 4\n }\n}\n".into(), "corosync.conf:6: nodeid 4 appears twice (here; also the node at line 2)"),
        ("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n node {\n  ring0_addr: 10.0.0.2\n  nodeid: 167772161\n }\n}\n".into(), "corosync.conf:5: nodeid 167772161 appears twice (here; also the node at line 2, generated from 10.0.0.1)"),
        ("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 2\n }\n}\n".into(), "corosync.conf:6: ring0_addr 10.0.0.1 appears twice (also the node at line 2)"),
        ("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n node {\n  ring0_addr: fd00::1\n  nodeid: 2\n }\n}\n".into(), "corosync.conf:6: nodes for link 0 have different IP families (10.0.0.1 and fd00::1)"),
        // other sections
        ("logging {\n to_logfile: yes\n}\n".into(), "corosync.conf:2: to_logfile: yes needs logfile: <path>"),
        ("logging {\n debug: loud\n}\n".into(), "corosync.conf:2: value of 'debug' must be one of off, on, trace, no, yes, but 'loud' was given"),
        ("logging {\n logger_subsys {\n  debug: on\n }\n}\n".into(), "corosync.conf:2: no subsys key in logger_subsys section"),
        ("quorum {\n provider: corosync_quorum\n}\n".into(), "corosync.conf:2: unknown quorum provider 'corosync_quorum'; the provider is corosync_votequorum"),
        ("quorum {\n expected_votes: 0\n}\n".into(), "corosync.conf:2: value of 'expected_votes' must be between 1 and 4294967295, but 0 was given"),
        ("system {\n priority: 40\n}\n".into(), "corosync.conf:2: value of 'priority' must be max, min or a nice value -20 ..= 19, but '40' was given"),
        ("system {\n state_dir: var/lib\n}\n".into(), "corosync.conf:2: state_dir must be an absolute path, but 'var/lib' was given"),
        ("uidgid {\n uid: a b\n}\n".into(), "corosync.conf:2: value of 'uid' must be a user or group name or number, but 'a b' was given"),
        ("logging {\n syslog_facility: local8\n}\n".into(), "corosync.conf:2: value of 'syslog_facility' must be one of kern, user, mail, daemon, auth, syslog, lpr, news, uucp, cron, authpriv, ftp, local0, local1, local2, local3, local4, local5, local6, local7, but 'local8' was given"),
        // votequorum's start-up refusals, at the line to blame
        (format!("{MULTICAST}quorum {{\n provider: corosync_votequorum\n}}\n"), "corosync.conf:8: provider corosync_votequorum needs quorum { expected_votes }: there is no nodelist to count votes from (nodelist or quorum.expected_votes must be configured)"),
        (n("  ring0_addr: 10.0.0.1\n  nodeid: 1\n  quorum_votes: 0\n") + "quorum {\n provider: corosync_votequorum\n}\n", "corosync.conf:9: provider corosync_votequorum needs quorum { expected_votes }: the nodelist's quorum_votes add up to 0 (nodelist or quorum.expected_votes must be configured)"),
        (format!("{THREE}quorum {{\n provider: corosync_votequorum\n auto_tie_breaker: 1\n last_man_standing: 1\n}}\n"), "corosync.conf:18: auto_tie_breaker and last_man_standing are not available in an odd-sized cluster (3 expected votes) unless wait_for_all is set"),
        (format!("{THREE}quorum {{\n provider: corosync_votequorum\n last_man_standing: on\n expected_votes: 5\n auto_tie_breaker: on\n auto_tie_breaker_node: highest\n}}\n"), "corosync.conf:19: auto_tie_breaker and last_man_standing are not available in an odd-sized cluster (5 expected votes) unless wait_for_all is set"),
        ("corosync_rs {\n guarantee: total\n}\n".into(), "corosync.conf:2: value of 'guarantee' must be one of agreed, safe, but 'total' was given"),
        ("corosync_rs {\n spin_us: 2000000\n}\n".into(), "corosync.conf:2: value of 'spin_us' must be between 0 and 1000000, but 2000000 was given"),
        ("corosync_rs {\n sqpoll_ms: 10001\n}\n".into(), "corosync.conf:2: value of 'sqpoll_ms' must be between 0 and 10000, but 10001 was given"),
        ("corosync_rs {\n ipc_membarrier: sometimes\n}\n".into(), "corosync.conf:2: value of 'ipc_membarrier' must be yes or no, but 'sometimes' was given"),
    ];
    for (text, want) in cases {
        assert_eq!(error(&text), want, "for:\n{text}");
    }
}

/// The multicast form's network, 6 lines.
const MULTICAST: &str =
    "totem {\n interface {\n  bindnetaddr: 10.0.0.0\n  mcastaddr: 239.1.1.1\n }\n}\n";

/// Three nodes of one vote, 14 lines.
const THREE: &str = "nodelist {
 node {
  ring0_addr: 10.0.0.1
  nodeid: 1
 }
 node {
  ring0_addr: 10.0.0.2
  nodeid: 2
 }
 node {
  ring0_addr: 10.0.0.3
  nodeid: 3
 }
}
";

/// What votequorum accepts of the same settings: a vote count to expect, the tie breaker
/// with last_man_standing where wait_for_all is set or the count is even, and a tie breaker
/// node it can't read (it disables the tie breaker).
#[test]
fn votequorum_settings_it_starts_with() {
    let q = |text: &str| parse(text).0.quorum;
    let c = q(&format!(
        "{MULTICAST}quorum {{\n provider: corosync_votequorum\n expected_votes: 2\n}}\n"
    ));
    assert_eq!(c.expected_votes, Some(2));
    let both =
        "quorum {\n provider: corosync_votequorum\n auto_tie_breaker: 1\n last_man_standing: 1\n";
    for extra in [
        " wait_for_all: 1\n",
        " expected_votes: 4\n",
        " auto_tie_breaker_node: 1 x\n",
    ] {
        let c = q(&format!("{THREE}{both}{extra}}}\n"));
        assert!(c.auto_tie_breaker && c.last_man_standing, "{extra}");
    }
    let four = THREE.replace(
        "}\n}\n",
        "}\n node {\n  ring0_addr: 10.0.0.4\n  nodeid: 4\n }\n}\n",
    );
    assert!(q(&format!("{four}{both}}}\n")).auto_tie_breaker);
    // Without a provider nothing is checked (the settings are warned about instead).
    let (_, w) = parse(&format!(
        "{MULTICAST}quorum {{\n last_man_standing: 1\n}}\n"
    ));
    assert!(has_warning(&w, 7, "no effect without provider"));
}

/// Settings Corosync acts on and corosync-rs accepts without acting on them are warned
/// about at their line when they ask for something; written as what corosync-rs does anyway,
/// they are not.
#[test]
fn warnings_for_settings_without_effect() {
    let text = "\
logging {
    fileline: on
    function_name: yes
    logger_subsys {
        subsys: QUORUM
        debug: on
    }
}
system {
    move_to_root_cgroup: yes
    allow_knet_handle_fallback: yes
    priority: -10
}
nodelist {
    node {
        ring0_addr: 10.0.0.1
    }
}
";
    let (c, w) = parse(text);
    let all = warnings(&w);
    let expect = [
        (2, "log lines carry no source file, line or function"),
        (3, "log lines carry no source file, line or function"),
        (
            6,
            "'logging.logger_subsys.debug' for QUORUM ignored: corosync-rs has one debug level",
        ),
        (10, "'system.move_to_root_cgroup: yes' ignored"),
        (11, "'system.allow_knet_handle_fallback' ignored"),
        (
            12,
            "'system.priority: -10' ignored: the nice value -10 is not applied",
        ),
    ];
    for (line, needle) in expect {
        assert!(
            has_warning(&w, line, needle),
            "missing {line}: {needle} in {all:#?}"
        );
    }
    assert_eq!(w.len(), expect.len(), "{all:#?}");
    // The values are kept as written (cmap shows them).
    assert!(c.logging.fileline && c.logging.function_name);
    assert_eq!(c.logging.subsystems[0].debug, Some(DebugLevel::On));
    assert_eq!(c.system.move_to_root_cgroup, YesNoAuto::Yes);
    assert_eq!(c.system.priority, Priority::Nice(-10));

    // A subsystem that asks for less than the global level is not served either.
    let (_, w) = parse(
        &text
            .replace("fileline: on", "debug: on")
            .replace("        debug: on", "        debug: off"),
    );
    assert!(has_warning(
        &w,
        6,
        "'logging.logger_subsys.debug' for QUORUM ignored"
    ));
    // The priority only picks the SCHED_RR priority.
    let (_, w) = parse(&text.replace("    priority: -10", "    sched_rr: no\n    priority: max"));
    assert!(
        has_warning(
            &w,
            13,
            "'system.priority: max' ignored: with sched_rr: no it has no effect"
        ),
        "{:#?}",
        warnings(&w)
    );

    // As corosync-rs does anyway: no warnings (Debian's stock file has these).
    let quiet = "\
logging {
    fileline: off
    function_name: off
    debug: trace
    logger_subsys {
        subsys: QUORUM
        debug: on
    }
}
system {
    move_to_root_cgroup: no
    allow_knet_handle_fallback: no
    sched_rr: yes
    priority: min
}
nodelist {
    node {
        ring0_addr: 10.0.0.1
    }
}
";
    let (_, w) = parse(quiet);
    assert!(w.is_empty(), "{:#?}", warnings(&w));
}

#[test]
fn warnings_for_unknown_and_ignored_things() {
    let text = "\
stray: 1
totem {
    version: 2
    tokn: 3000
    token: 4000
    token: 5000
    cluster_name: \"my cluster\"
    rrp_mode: passive
    join: 0
    interface {
        linknumber: 1
        knet_link_priority: 2
    }
}
nodelist {
    node {
        ring0_addr: 10.0.0.1
        ring1_addr: 10.1.0.1
        nodeid: 1
        colour: blue
    }
}
quorum {
    two_node: 1
    device {
        model: net
    }
}
mystery {
}
";
    let (c, w) = parse(text);
    let all = warnings(&w);
    let expect = [
        (1, "key 'stray' outside any section"),
        (29, "unknown section 'mystery'"),
        (4, "unknown key 'tokn' in totem"),
        (
            5,
            "'totem.token' is set again at line 6; the later value is used",
        ),
        (7, "the quotes are part of the value of 'cluster_name'"),
        (8, "rrp_mode: passive ignored"),
        (9, "'join: 0' means the default (50)"),
        (12, "'totem.interface.knet_link_priority' is not used"),
        (16, "ring1_addr and higher links are not used"),
        (20, "unknown key 'colour' in nodelist.node"),
        (10, "link 1 ignored"),
        (25, "section 'quorum.device' ignored"),
        (23, "quorum settings have no effect without provider"),
    ];
    for (line, needle) in expect {
        assert!(
            has_warning(&w, line, needle),
            "missing {line}: {needle} in {all:#?}"
        );
    }
    assert_eq!(w.len(), expect.len(), "{all:#?}");
    assert!(w.iter().all(|w| w.file == "corosync.conf"));
    assert_eq!(c.totem.timings.token, 5000);
    assert_eq!(c.totem.timings.join, 50);
    assert_eq!(c.totem.cluster_name.as_deref(), Some("\"my cluster\""));
    assert_eq!(c.nodes[0].addrs.len(), 2);
    assert_eq!(c.nodes[0].addrs[1].addr, ip("10.1.0.1"));
    // Link 1 was configured, link 0 is implied.
    assert_eq!(c.totem.interfaces.len(), 2);
    assert_eq!(c.totem.link0().unwrap().mcastport, 5405);
    assert_eq!(c.totem.interfaces[1].mcastport, 5406);
}

#[test]
fn defaults_and_derived_timings() {
    let (c, w) = parse("nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n");
    assert!(w.is_empty());
    let t = &c.totem.timings;
    assert_eq!(t.token, DEFAULT_TOKEN);
    assert_eq!(t.token_coefficient, 650);
    assert_eq!(t.token_retransmits_before_loss_const, 4);
    assert_eq!(t.token_retransmit, 714); // 3000 / 4.2
    assert_eq!(t.hold, 561); // 714 * 0.8 - 10
    assert_eq!(t.consensus, 3600);
    assert_eq!(t.token_warning, 75);
    assert_eq!(
        (t.join, t.send_join, t.merge, t.downcheck),
        (50, 0, 200, 1000)
    );
    assert_eq!(t.fail_recv_const, 2500);
    assert_eq!(t.seqno_unchanged_const, 4, "ours; Corosync's is 30");
    assert_eq!(t.miss_count_const, 5);
    assert_eq!((t.window_size, t.max_messages), (150, 50));
    // The default window grows with the ring; a written one is fixed.
    assert!(!t.window_fixed);
    // A window below the default visit (a Corosync-era `window_size: 30`)
    // takes the visit down with it.
    let (c, _) = parse("totem {\n window_size: 30\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n");
    let t = &c.totem.timings;
    assert_eq!((t.window_size, t.max_messages), (30, 30));
    assert!(t.window_fixed);
    assert_eq!(c.totem.netmtu, 1500);
    assert_eq!(c.totem.version, 2);
    assert_eq!(c.system.state_dir, Path::new("/var/lib/corosync"));
    assert!(c.system.sched_rr);
    assert_eq!(c.system.priority, Priority::Max);
    assert_eq!(c.quorum.provider, None);
    assert!(c.logging.to_stderr && c.logging.to_syslog && !c.logging.to_logfile);
    assert_eq!(c.logging.syslog_facility, "daemon");
    assert_eq!(c.extensions, Extensions::default());

    // Explicit values win over derivation; the coefficient counts nodes above two.
    let mut text = String::from("totem {\n token: 1000\n token_coefficient: 100\n consensus: 5000\n token_retransmit: 200\n hold: 100\n}\nnodelist {\n");
    for i in 1..=5 {
        text.push_str(&format!(" node {{\n  ring0_addr: 10.0.0.{i}\n }}\n"));
    }
    text.push_str("}\n");
    let (c, _) = parse(&text);
    let t = &c.totem.timings;
    assert_eq!((t.token_configured, t.token), (1000, 1300));
    assert_eq!((t.consensus, t.token_retransmit, t.hold), (5000, 200, 100));

    // token_coefficient 0 switches the per-node increase off.
    let (c, _) = parse(&text.replace("token_coefficient: 100", "token_coefficient: 0"));
    assert_eq!(c.totem.timings.token, 1000);
    assert_eq!(c.totem.timings.consensus, 5000);
}

#[test]
fn secauth_and_extensions() {
    let (c, _) =
        parse("totem {\n secauth: on\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n");
    assert_eq!(
        c.totem.crypto,
        Crypto {
            cipher: Cipher::Aes256,
            hash: Hash::Sha256
        }
    );
    let (c, _) = parse("totem {\n secauth: on\n crypto_hash: sha512\n keyfile: /etc/k\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n");
    assert_eq!(c.totem.crypto.hash, Hash::Sha512);
    assert_eq!(c.totem.keyfile.as_deref(), Some(Path::new("/etc/k")));

    let text = "corosync_rs {\n guarantee: safe\n accelerated_ring: yes\n pin_core: 3\n spin_us: 50\n sqpoll_ms: 2\n ipc_socket: /run/c.sock\n ipc_membarrier: no\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n";
    let (c, w) = parse(text);
    assert!(w.is_empty(), "{:?}", warnings(&w));
    assert_eq!(
        c.extensions,
        Extensions {
            guarantee: Guarantee::Safe,
            accelerated_ring: YesNoAuto::Yes,
            pin_core: Some(3),
            spin_us: 50,
            sqpoll_ms: 2,
            ipc_socket: Some("/run/c.sock".into()),
            ipc_membarrier: false,
        }
    );
    // The Accelerated Ring: auto (the default) is on, ahead of every visit
    // where there are CPUs for the next node to work on while this one
    // sends, and ahead of the long visits only below 4 CPUs.
    let ring = |v: &str| {
        let text = format!("corosync_rs {{\n accelerated_ring: {v}\n}}\nnodelist {{\n node {{\n  ring0_addr: 10.0.0.1\n }}\n}}\n");
        parse(&text).0.extensions.accelerated_ring
    };
    assert_eq!(ring("auto"), YesNoAuto::Auto);
    assert_eq!(ring("no"), YesNoAuto::No);
    assert_eq!(ring("on"), YesNoAuto::Yes);
    assert_eq!(Extensions::default().accelerated_ring, YesNoAuto::Auto);
    assert!(accelerated_for(YesNoAuto::Auto) && accelerated_for(YesNoAuto::Yes));
    assert!(!accelerated_for(YesNoAuto::No));
    assert_eq!(accelerate_from_frames(YesNoAuto::Auto, 2, 100), 50);
    assert_eq!(accelerate_from_frames(YesNoAuto::Auto, 4, 100), 0);
    assert_eq!(accelerate_from_frames(YesNoAuto::Yes, 2, 100), 0);
    assert_eq!(
        error("corosync_rs {\n accelerated_ring: sometimes\n}\n"),
        "corosync.conf:2: value of 'accelerated_ring' must be one of yes, no, auto, but 'sometimes' was given"
    );
}

#[test]
fn built_in_default_is_one_node_on_loopback() {
    let (c, w) = Config::from_str(DEFAULT_ONE_NODE_CONF, BUILT_IN_NAME).unwrap();
    assert!(w.is_empty(), "{:?}", warnings(&w));
    assert_eq!(c, Config::default_one_node());
    assert_eq!(c.totem.transport, Transport::Udpu);
    assert!(!c.totem.crypto.enabled());
    assert_eq!(c.nodes.len(), 1);
    assert_eq!(
        (c.nodes[0].nodeid, c.nodes[0].ring0_addr()),
        (1, ip("127.0.0.1"))
    );
    let local = c.resolve_bind(&[ip("127.0.0.1")]).unwrap();
    assert_eq!(
        (local.nodeid, local.bind_addr, local.port),
        (1, ip("127.0.0.1"), 5405)
    );
    // Even when the host's list lacks loopback, totem { nodeid: 1 } finds the node.
    assert_eq!(c.resolve_bind(&[]).unwrap().bind_addr, ip("127.0.0.1"));
    let source = ConfigSource {
        main: MainConfig::BuiltIn,
        reader: Reader::CorosyncParser,
        authkey: DEFAULT_AUTHKEY_FILE.into(),
        authkey_origin: PathOrigin::Default,
        amf_config_file: None,
        notes: vec![],
    };
    assert_eq!(Config::load_source(&source).unwrap().0, c);
}

fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    move |k| map.get(k).cloned()
}

fn files(existing: &[&str]) -> impl Fn(&Path) -> bool {
    let set: Vec<String> = existing.iter().map(|s| s.to_string()).collect();
    move |p| set.iter().any(|s| Path::new(s) == p)
}

/// The note for the built-in configuration says what it runs: the files looked for, the
/// node, and that there is no cluster key.
#[test]
fn the_built_in_note_describes_the_built_in_configuration() {
    let c = Config::default_one_node();
    assert!(BUILT_IN_NOTE.contains(&format!(
        "no {DEFAULT_CONFIG_FILE} or {OPENAIS_CONFIG_FILE}: "
    )));
    let node = &c.nodes[0];
    let port = c.totem.link0().unwrap().mcastport;
    assert!(BUILT_IN_NOTE.contains(&format!(
        "node {} on {}, port {port}",
        node.nodeid,
        node.ring0_addr()
    )));
    assert!(!c.totem.crypto.enabled());
    assert!(BUILT_IN_NOTE.ends_with("without a cluster key"));
}

#[test]
fn environment_and_file_selection() {
    // Nothing exists: the built-in one-node configuration.
    let s = config_path(env_of(&[]), files(&[])).unwrap();
    assert_eq!(s.main, MainConfig::BuiltIn);
    assert_eq!(s.reader, Reader::CorosyncParser);
    assert_eq!(s.authkey, Path::new("/etc/corosync/authkey"));
    // One line says so, the one `corosync` logs (and prints with -t).
    assert_eq!(s.notes, [BUILT_IN_NOTE]);

    // Corosync's file wins over OpenAIS's; OpenAIS's is the fallback, key included.
    let s = config_path(
        env_of(&[]),
        files(&[DEFAULT_CONFIG_FILE, OPENAIS_CONFIG_FILE]),
    )
    .unwrap();
    assert_eq!(
        s.main,
        MainConfig::File {
            path: DEFAULT_CONFIG_FILE.into(),
            origin: PathOrigin::Default
        }
    );
    let s = config_path(
        env_of(&[]),
        files(&[OPENAIS_CONFIG_FILE, OPENAIS_AUTHKEY_FILE]),
    )
    .unwrap();
    assert_eq!(
        s.main,
        MainConfig::File {
            path: OPENAIS_CONFIG_FILE.into(),
            origin: PathOrigin::OpenAis
        }
    );
    assert_eq!(
        (s.authkey.as_path(), s.authkey_origin),
        (Path::new(OPENAIS_AUTHKEY_FILE), PathOrigin::OpenAis)
    );
    let s = config_path(
        env_of(&[]),
        files(&[DEFAULT_AUTHKEY_FILE, OPENAIS_AUTHKEY_FILE]),
    )
    .unwrap();
    assert_eq!(s.authkey, Path::new(DEFAULT_AUTHKEY_FILE));

    // The variables override, even when the file doesn't exist (reading it then fails).
    let s = config_path(
        env_of(&[
            (MAIN_CONFIG_ENV, "/tmp/c.conf"),
            (AUTHKEY_ENV, "/tmp/key"),
            (AMF_CONFIG_ENV, "/etc/ais/amf.conf"),
        ]),
        files(&[DEFAULT_CONFIG_FILE]),
    )
    .unwrap();
    assert_eq!(
        s.main,
        MainConfig::File {
            path: "/tmp/c.conf".into(),
            origin: PathOrigin::Environment
        }
    );
    assert_eq!(
        (s.authkey.as_path(), s.authkey_origin),
        (Path::new("/tmp/key"), PathOrigin::Environment)
    );
    assert_eq!(
        s.amf_config_file.as_deref(),
        Some(Path::new("/etc/ais/amf.conf"))
    );
    assert!(s.notes.iter().any(|n| n.contains("AMF")));
    // An empty variable counts as unset.
    let s = config_path(
        env_of(&[(MAIN_CONFIG_ENV, "")]),
        files(&[DEFAULT_CONFIG_FILE]),
    )
    .unwrap();
    assert!(matches!(
        s.main,
        MainConfig::File {
            origin: PathOrigin::Default,
            ..
        }
    ));

    // totem { keyfile } wins over the variable.
    let (c, _) = parse(
        "totem {\n keyfile: /srv/key\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n",
    );
    assert_eq!(s.authkey_path(&c), Path::new("/srv/key"));
    assert_eq!(
        s.authkey_path(&Config::default_one_node()),
        Path::new(DEFAULT_AUTHKEY_FILE)
    );

    // Readers, by Corosync's and OpenAIS's names.
    for (value, reader) in [
        ("corosync_parser", Reader::CorosyncParser),
        ("aisparser", Reader::CorosyncParser),
        ("openaisparser", Reader::OpenAisParser),
        (
            "openaisserviceenableexperimental:corosync_parser",
            Reader::CorosyncParser,
        ),
        ("openaisserviceenable", Reader::CorosyncParser),
    ] {
        let s = config_path(env_of(&[(CONFIG_IFACE_ENV, value)]), files(&[])).unwrap();
        assert_eq!(s.reader, reader, "{value}");
    }
    // openaisparser looks for openais.conf first.
    let s = config_path(
        env_of(&[(CONFIG_IFACE_ENV, "openaisparser")]),
        files(&[DEFAULT_CONFIG_FILE, OPENAIS_CONFIG_FILE]),
    )
    .unwrap();
    assert!(matches!(
        s.main,
        MainConfig::File {
            origin: PathOrigin::OpenAis,
            ..
        }
    ));
    let e = config_path(
        env_of(&[(CONFIG_IFACE_ENV, "corosync_parser:xmlconfig")]),
        files(&[]),
    )
    .unwrap_err();
    assert_eq!(e, SourceError::UnknownReader("xmlconfig".into()));
    assert!(e
        .to_string()
        .starts_with("COROSYNC_DEFAULT_CONFIG_IFACE: unknown configuration reader 'xmlconfig'"));
}

#[test]
fn load_reads_files_and_reports_their_path() {
    let dir = std::env::temp_dir().join(format!("corosync-rs-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let good = dir.join("corosync.conf");
    std::fs::write(&good, PCS_THREE_NODES).unwrap();
    let (c, w) = Config::load(&good).unwrap();
    assert_eq!(c.nodes.len(), 3);
    assert_eq!(c.file, good.display().to_string());
    assert_eq!(w[0].file, good.display().to_string());

    let bad = dir.join("bad.conf");
    std::fs::write(&bad, "totem {\n token: x\n}\n").unwrap();
    let e = Config::load(&bad).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:2: value of 'token' must be an integer, but 'x' was given",
            bad.display()
        )
    );

    let binary = dir.join("binary.conf");
    std::fs::write(&binary, b"totem {\n\n cluster_name: \xff\xfe\n}\n").unwrap();
    let e = Config::load(&binary).unwrap_err();
    assert_eq!(
        (e.line, e.reason.as_str()),
        (3, "the file is not valid UTF-8")
    );

    let e = Config::load(&dir.join("missing.conf")).unwrap_err();
    assert_eq!(e.line, 0);
    assert!(e.reason.starts_with("cannot open"), "{e}");

    let source = config_path(
        env_of(&[(MAIN_CONFIG_ENV, good.to_str().unwrap())]),
        files(&[]),
    )
    .unwrap();
    assert_eq!(Config::load_source(&source).unwrap().0.nodes.len(), 3);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `uidgid.d` beside the file: the `uidgid` sections of its regular files, by name, after
/// the file's own; hidden files, editors' backups and directories are skipped; other things in
/// those files are warned about at their line; errors name the file and line.
/// `Config::from_str` reads no directory.
#[test]
fn load_reads_uidgid_sections_from_uidgid_d() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-uidgid-d");
    let _ = std::fs::remove_dir_all(&dir);
    let d = dir.join("uidgid.d");
    std::fs::create_dir_all(d.join("subdir")).unwrap();
    let main = dir.join("corosync.conf");
    let text = "uidgid {\n uid: 1000\n}\nnodelist {\n node {\n  ring0_addr: 10.0.0.1\n }\n}\n";
    std::fs::write(&main, text).unwrap();
    std::fs::write(d.join("pacemaker"), "uidgid {\n uid: root\n gid: root\n}\n").unwrap();
    std::fs::write(
        d.join("00-ops"),
        "# operators\nowner: me\nuidgid {\n gid: 2000\n mode: 0600\n}\ntotem {\n token: 1\n}\n",
    )
    .unwrap();
    for skipped in [".hidden", "pacemaker~"] {
        std::fs::write(d.join(skipped), "not a config {{{\n").unwrap();
    }
    std::fs::write(d.join("subdir/x"), "uidgid {\n uid: 7\n}\n").unwrap();

    let (c, w) = Config::load(&main).unwrap();
    let got: Vec<(Option<Ident>, Option<Ident>, String, u32)> = c
        .uidgid
        .iter()
        .map(|u| (u.uid.clone(), u.gid.clone(), u.file.clone(), u.line))
        .collect();
    let ops = d.join("00-ops").display().to_string();
    let pacemaker = d.join("pacemaker").display().to_string();
    assert_eq!(
        got,
        [
            (Some(Ident::Id(1000)), None, main.display().to_string(), 1),
            (None, Some(Ident::Id(2000)), ops.clone(), 3),
            // Names are looked up in /etc/passwd and /etc/group.
            (Some(Ident::Id(0)), Some(Ident::Id(0)), pacemaker, 1),
        ]
    );
    let all = warnings(&w);
    for (line, needle) in [
        (2, "key 'owner' outside a uidgid section; ignored"),
        (5, "unknown key 'mode' in uidgid"),
        (
            7,
            "section 'totem' ignored: a uidgid.d file holds only uidgid sections",
        ),
    ] {
        assert!(
            w.iter()
                .any(|w| w.file == ops && w.line == line && w.message.contains(needle)),
            "missing {ops}:{line}: {needle} in {all:#?}"
        );
    }
    assert_eq!(w.len(), 3, "{all:#?}");
    // The text alone: no directory is read.
    assert_eq!(
        Config::from_str(text, "corosync.conf")
            .unwrap()
            .0
            .uidgid
            .len(),
        1
    );

    // An error in one names that file and line.
    std::fs::write(d.join("10-bad"), "\nuidgid {\n gid: a:b\n}\n").unwrap();
    let e = Config::load(&main).unwrap_err();
    assert_eq!(
        e.to_string(),
        format!(
            "{}:3: value of 'gid' must be a user or group name or number, but 'a:b' was given",
            d.join("10-bad").display()
        )
    );
    std::fs::write(d.join("10-bad"), "uidgid {\n").unwrap();
    let e = Config::load(&main).unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.line),
        (d.join("10-bad").to_str().unwrap(), 1)
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

/// xorshift64*: the fuzz loop's only randomness, from one seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

const FRAGMENTS: &[&str] = &[
    "{",
    "}",
    ":",
    "#",
    "\n",
    " ",
    "\t",
    "\r",
    "0",
    "4294967296",
    "-1",
    "fd00::1",
    "10.0.0.1",
    "totem {\n",
    "nodelist {\n node {\n",
    "ring0_addr: ",
    "nodeid: ",
    "token: ",
    "interface {\n",
    "bindnetaddr: ",
    "mcastaddr: ",
    "transport: udp\n",
    "transport: udpu\n",
    "}\n",
    "\u{e9}",
    "ring7_addr: 10.9.9.9\n",
    "ip_version: ipv6\n",
    "clear_node_high_bit: yes\n",
    "\"",
];

fn mutate(rng: &mut Rng, base: &str) -> String {
    let mut s: Vec<char> = base.chars().collect();
    for _ in 0..1 + rng.below(6) {
        let at = rng.below(s.len() + 1);
        match rng.below(5) {
            0 if !s.is_empty() => {
                let end = (at + rng.below(40)).min(s.len());
                s.drain(at.min(s.len())..end);
            }
            1 => {
                let frag = FRAGMENTS[rng.below(FRAGMENTS.len())];
                s.splice(at..at, frag.chars());
            }
            2 if !s.is_empty() => {
                let i = at.min(s.len() - 1);
                s[i] = char::from_u32(rng.below(0x80) as u32).unwrap_or('x');
            }
            3 if !s.is_empty() => {
                let from = rng.below(s.len());
                let end = (from + rng.below(80)).min(s.len());
                let copy: Vec<char> = s[from..end].to_vec();
                s.splice(at..at, copy);
            }
            _ => {
                let len = rng.below(30);
                let junk: Vec<char> = (0..len)
                    .map(|_| char::from_u32(rng.below(0x300) as u32).unwrap_or('?'))
                    .collect();
                s.splice(at..at, junk);
            }
        }
    }
    s.into_iter().collect()
}

#[test]
fn garbage_and_mutated_files_never_panic() {
    let seed: u64 = std::env::var("CONFIG_FUZZ_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0x00c0_5e4c_0f16);
    let corpus = [
        PCS_THREE_NODES,
        COROSYNC2_TWO_NODE,
        OPENAIS_MULTICAST,
        DEFAULT_ONE_NODE_CONF,
        "",
    ];
    let locals = [
        ip("127.0.0.1"),
        ip("10.0.0.1"),
        ip("192.168.1.20"),
        ip("fd00::1"),
    ];
    let mut rng = Rng(seed | 1);
    let (mut accepted, mut rejected) = (0, 0);
    for i in 0..20_000 {
        let text = if i % 10 == 0 {
            let len = rng.below(400);
            (0..len)
                .map(|_| char::from_u32(rng.below(0x180) as u32).unwrap_or('?'))
                .collect()
        } else {
            let base = corpus[rng.below(corpus.len())];
            mutate(&mut rng, base)
        };
        let outcome = std::panic::catch_unwind(|| match Config::from_str(&text, "fuzz.conf") {
            Ok((c, _)) => {
                let _ = c.resolve_bind(&locals);
                let _ = c.resolve_bind(&[]);
                true
            }
            Err(e) => {
                assert!(e.line >= 1, "error without a line: {e}");
                assert!(e.to_string().starts_with("fuzz.conf:"));
                false
            }
        });
        match outcome {
            Ok(true) => accepted += 1,
            Ok(false) => rejected += 1,
            Err(_) => panic!("panicked (CONFIG_FUZZ_SEED={seed}, iteration {i}) on:\n{text:?}"),
        }
    }
    // The mutations must exercise both outcomes, or the loop tests little.
    assert!(
        accepted > 500 && rejected > 500,
        "accepted {accepted}, rejected {rejected}"
    );
}

#[test]
fn uidgid_names_become_ids_and_an_unknown_name_is_an_error_at_its_line() {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("config-uidgid-names");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let (passwd, group) = (dir.join("passwd"), dir.join("group"));
    std::fs::write(
        &passwd,
        "root:x:0:0::/root:/bin/sh\nalice:x:1234:99::/:/bin/sh\n",
    )
    .unwrap();
    std::fs::write(&group, "root:x:0:\nops:x:4321:alice\n").unwrap();
    let net = "nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n";
    let text = format!("uidgid {{\n uid: alice\n gid: ops\n}}\nuidgid {{\n uid: 7\n}}\n{net}");
    let (c, _) = Config::from_str(&text, "c.conf").unwrap();
    let mut entries = c.uidgid.clone();
    resolve_uidgid_names(&mut entries, &passwd, &group).unwrap();
    let ids: Vec<_> = entries
        .iter()
        .map(|e| (e.uid.clone(), e.gid.clone()))
        .collect();
    assert_eq!(
        ids,
        [
            (Some(Ident::Id(1234)), Some(Ident::Id(4321))),
            (Some(Ident::Id(7)), None)
        ]
    );
    let text = format!("totem {{\n version: 2\n}}\nuidgid {{\n gid: nosuchgroup\n}}\n{net}");
    let (c, _) = Config::from_str(&text, "c.conf").unwrap();
    let mut entries = c.uidgid.clone();
    let e = resolve_uidgid_names(&mut entries, &passwd, &group).unwrap_err();
    assert_eq!((e.file.as_str(), e.line), ("c.conf", 4));
    assert!(e.reason.contains("group 'nosuchgroup' not found in"), "{e}");
}

/// What Totem itself refuses (timings tied together, the frame a netmtu
/// makes, a visit larger than the window can grow to) is an error of the
/// file at the line to blame, with the values in effect, not a start-up
/// failure without a line.
#[test]
fn what_totem_refuses_is_an_error_at_its_line() {
    let node = "nodelist {\n node {\n  ring0_addr: 10.0.0.1\n  nodeid: 1\n }\n}\n";
    let cases = [
        // the default token (3000 ms) retransmits after 714 ms
        ("totem {\n hold: 800\n}\n", "corosync.conf:2: totem.hold: must be < token_retransmit (in effect: token 3000 ms, token_retransmit 714 ms, hold 800 ms"),
        ("totem {\n token: 3000\n token_retransmit: 5000\n}\n", "corosync.conf:3: totem.token_retransmit: must be > 0 and < token (in effect: token 3000 ms, token_retransmit 5000 ms"),
        ("totem {\n netmtu: 65535\n}\n", "corosync.conf:2: totem.netmtu: leaves a frame outside 64 + headers ..= 65000 bytes"),
        ("totem {\n max_messages: 5000\n}\n", "corosync.conf:2: totem.max_messages: must be ≤ window_size"),
    ];
    for (totem, want) in cases {
        let text = format!("{totem}{node}");
        let e = error(&text);
        assert!(e.starts_with(want), "for:\n{text}\ngot: {e}\nwant: {want}…");
    }
    // The edges themselves are accepted.
    for totem in [
        "totem {\n hold: 713\n}\n",
        "totem {\n token: 3000\n token_retransmit: 2999\n}\n",
        "totem {\n max_messages: 4080\n}\n",
    ] {
        parse(&format!("{totem}{node}"));
    }
}
