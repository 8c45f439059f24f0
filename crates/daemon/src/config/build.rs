//! From the syntax tree to [`Config`]: the top level, `totem` and `nodelist`.
//!
//! The other sections live in `sections.rs`. Order matters: the transport's default depends on
//! whether a nodelist exists, the ip_version default on the transport, node ids on
//! `clear_node_high_bit`, and the token timeout on the number of nodes.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use super::sections;
use super::syntax::{Entry, Section};
use super::types::*;
use super::values::{
    boolean, check_subsections, choice, integer, ip, node_addr, nonzero_or_default, u32_in, word,
    Ctx, Keys, Resolve,
};
use super::{ConfigError, Warning};

/// Totem keys Corosync knows that this daemon doesn't use (each read gives a warning).
const TOTEM_IGNORED: &[&str] = &[
    "threads",
    "vsftype",
    "rrp_problem_count_timeout",
    "rrp_problem_count_threshold",
    "rrp_problem_count_mcast_threshold",
    "rrp_token_expired_timeout",
    "rrp_autorecovery_check_timeout",
    "heartbeat_failures_allowed",
    "max_network_delay",
    "link_mode",
    "knet_pmtud_interval",
    "knet_mtu",
    "knet_compression_model",
    "knet_compression_threshold",
    "knet_compression_level",
    "crypto_model",
    "crypto_type",
    "block_unlisted_ips",
    "cancel_token_hold_on_retransmit",
    "key",
];

const INTERFACE_IGNORED: &[&str] = &[
    "knet_link_priority",
    "knet_ping_interval",
    "knet_ping_timeout",
    "knet_ping_precision",
    "knet_pong_count",
    "knet_transport",
];

/// Builds the typed configuration from the parsed file.
pub(crate) fn build(
    root: &Section,
    file: &str,
    resolve: Resolve<'_>,
) -> Result<(Config, Vec<Warning>), ConfigError> {
    let mut cx = Ctx::new(file, resolve);
    check_top_level(&mut cx, root);

    let totem_sections: Vec<&Section> = root.sections_named("totem").collect();
    let raw = read_totem(&mut cx, &totem_sections)?;
    let nodelist_sections: Vec<&Section> = root.sections_named("nodelist").collect();
    let nodelist_line = nodelist_sections.first().map_or(0, |s| s.line);
    let node_sections = node_sections(&mut cx, &nodelist_sections);

    let transport = choose_transport(&mut cx, &raw, !node_sections.is_empty());
    let ip_version = choose_ip_version(&raw, transport);
    let nodes = read_nodes(&mut cx, &node_sections, ip_version, raw.clear_node_high_bit)?;
    check_nodes(&cx, &nodes, nodelist_line)?;
    let fits = totem_ring::Config {
        netmtu: raw.netmtu,
        frame_overhead: crate::setup::FRAME_OVERHEAD,
        ..totem_ring::Config::default()
    }
    .max_ring_members();
    if nodes.len() > fits {
        return Err(cx.err(
            nodelist_line,
            format!(
                "{} nodes listed; with netmtu {} a ring's commit token holds at most {fits} \
                 members (raise netmtu)",
                nodes.len(),
                raw.netmtu
            ),
        ));
    }
    let timings = finish_timings(&mut cx, &raw, nodes.len())?;
    // The other sections before the whole-network checks, so that an error in a value is
    // reported at its line before "this file names no network".
    let logging = sections::logging(&mut cx, root)?;
    let system = sections::system(&mut cx, root)?;
    let uidgid = sections::uidgid(&mut cx, root)?;
    let quorum = sections::quorum(&mut cx, root, &nodes)?;
    let extensions = sections::extensions(&mut cx, root)?;
    if nodes.is_empty() && raw.interfaces.is_empty() {
        return Err(cx.err(
            raw.line.max(1),
            "no network is configured: add nodelist { node { ring0_addr, nodeid } } \
             (or, for multicast, totem { interface { bindnetaddr, mcastaddr } })",
        ));
    }
    let interfaces = finish_interfaces(&mut cx, &raw, transport, ip_version)?;
    check_network(&mut cx, &raw, transport, &nodes, &interfaces)?;

    let totem = Totem {
        version: raw.version,
        config_version: raw.config_version,
        cluster_name: raw.cluster_name.clone(),
        transport,
        ip_version,
        nodeid: raw.nodeid.map(|(id, _)| id),
        clear_node_high_bit: raw.clear_node_high_bit,
        crypto: raw.crypto,
        keyfile: raw.keyfile.clone(),
        netmtu: raw.netmtu,
        timings,
        interfaces,
        line: raw.line,
    };
    let config = Config {
        file: file.to_string(),
        totem,
        nodes,
        nodelist_line,
        logging,
        system,
        uidgid,
        quorum,
        extensions,
    };
    check_totem(&cx, &raw, &config)?;
    Ok((config, cx.warnings))
}

/// What Totem itself refuses of the configuration the daemon would give it
/// (`totem_ring::Config::validate`: the hold below the token retransmit
/// timeout below the token, the frame a `netmtu` makes, a visit larger than
/// the window can grow to), at the line of the key to blame, where the
/// checks above did not already name it; without this those values were
/// refused only when the daemon started, without a line.
fn check_totem(cx: &Ctx, raw: &RawTotem, config: &Config) -> Result<(), ConfigError> {
    let totem = crate::setup::totem_config(config, 0);
    let Err(e) = totem.validate() else {
        return Ok(());
    };
    let t = &raw.timing;
    let line = |w: Written| w.map(|(_, l)| l);
    let blamed = match e.key {
        "token" => line(t.token),
        "token_retransmits_before_loss_const" => line(t.retransmits_before_loss),
        "token_retransmit" => line(t.token_retransmit)
            .or(line(t.retransmits_before_loss))
            .or(line(t.token)),
        "hold" => line(t.hold)
            .or(line(t.token_retransmit))
            .or(line(t.retransmits_before_loss))
            .or(line(t.token)),
        "join" => line(t.join),
        "consensus" => line(t.consensus).or(line(t.join)).or(line(t.token)),
        "merge" => line(t.merge),
        "window_size" | "retransmit_queue" => line(t.window_size).or(line(t.max_messages)),
        "max_messages" => line(t.max_messages).or(line(t.window_size)),
        "fail_recv_const" => line(t.fail_recv_const).or(line(t.miss_count_const)),
        "netmtu" => (raw.netmtu_line > 0).then_some(raw.netmtu_line),
        _ => None,
    };
    let window = if totem.window_per_member > 0 {
        format!(
            "{}, growing with the ring to at most {}",
            totem.window_size,
            totem.retransmit_queue.saturating_sub(64) / 4
        )
    } else {
        totem.window_size.to_string()
    };
    Err(cx.err(
        blamed.unwrap_or(raw.line.max(1)),
        format!(
            "{e} (in effect: token {} ms, token_retransmit {} ms, hold {} ms, join {} ms, \
             consensus {} ms, window_size {window}, max_messages {}, netmtu {}: frames of \
             {} bytes)",
            totem.token,
            totem.token_retransmit_ms(),
            totem.hold_ms(),
            totem.join,
            totem.consensus_ms(),
            totem.max_messages,
            totem.netmtu,
            totem.max_frame()
        ),
    ))
}

fn check_top_level(cx: &mut Ctx, root: &Section) {
    for e in &root.entries {
        cx.warn(
            e.line,
            format!("key '{}' outside any section; ignored", e.key),
        );
    }
    for s in &root.sections {
        match s.name.as_str() {
            "totem" | "nodelist" | "logging" | "quorum" | "system" | "uidgid" | "corosync_rs" => {}
            "resources" | "nozzle" | "qb" | "amf" | "aisexec" | "event" | "service" | "pload"
            | "qdevice" => cx.warn(
                s.line,
                format!("section '{}' is not used by corosync-rs; ignored", s.name),
            ),
            other => cx.warn(s.line, format!("unknown section '{other}'; ignored")),
        }
    }
}

/// The totem keys as written, before defaults that depend on other sections.
struct RawTotem {
    line: u32,
    version: u32,
    config_version: u64,
    cluster_name: Option<String>,
    /// The transport as written, and its line.
    transport: Option<(&'static str, u32)>,
    ip_version: Option<(IpVersion, u32)>,
    nodeid: Option<(u32, u32)>,
    clear_node_high_bit: bool,
    crypto: Crypto,
    keyfile: Option<PathBuf>,
    netmtu: u32,
    /// Where `netmtu` is written (0: not written).
    netmtu_line: u32,
    timing: RawTimings,
    interfaces: Vec<RawInterface>,
}

/// A value as written, with its line; `None` means "use the default".
type Written = Option<(u32, u32)>;

/// Each timing as written.
#[derive(Default)]
struct RawTimings {
    token: Written,
    token_coefficient: Written,
    retransmits_before_loss: Written,
    token_retransmit: Written,
    hold: Written,
    token_warning: Written,
    join: Written,
    send_join: Written,
    consensus: Written,
    merge: Written,
    downcheck: Written,
    fail_recv_const: Written,
    seqno_unchanged_const: Written,
    miss_count_const: Written,
    window_size: Written,
    max_messages: Written,
}

struct RawInterface {
    line: u32,
    linknumber: u32,
    bindnetaddr: Option<(IpAddr, u32)>,
    mcastaddr: Option<(IpAddr, u32)>,
    mcastport: Option<u16>,
    ttl: Option<(u8, u32)>,
    broadcast: Option<(bool, u32)>,
}

fn read_totem(cx: &mut Ctx, sections: &[&Section]) -> Result<RawTotem, ConfigError> {
    let mut k = Keys::new("totem", sections);
    let line = sections.first().map_or(0, |s| s.line);

    let version = match k.take(cx, "version") {
        Some(e) => {
            let v = u32_in(cx, e, 0, u32::MAX)?;
            if v != 2 {
                return Err(cx.err(
                    e.line,
                    format!(
                        "totem version {v} is not supported; only version 2 configurations are"
                    ),
                ));
            }
            v
        }
        None => 2,
    };
    let config_version = match k.take(cx, "config_version") {
        Some(e) => integer(cx, e)?,
        None => 0,
    };
    let cluster_name = match k.take(cx, "cluster_name") {
        Some(e) => Some(word(cx, e)?),
        None => None,
    };
    let transport = match k.take(cx, "transport") {
        Some(e) => Some((choice(cx, e, &["udp", "udpu", "knet"])?, e.line)),
        None => None,
    };
    let ip_version = match k.take(cx, "ip_version") {
        Some(e) => {
            let v = match choice(cx, e, &["ipv4", "ipv6", "ipv4-6", "ipv6-4"])? {
                "ipv4" => IpVersion::Ipv4,
                "ipv6" => IpVersion::Ipv6,
                "ipv4-6" => IpVersion::Ipv4Then6,
                _ => IpVersion::Ipv6Then4,
            };
            Some((v, e.line))
        }
        None => None,
    };
    let nodeid = match k.take(cx, "nodeid") {
        Some(e) => Some((nodeid_value(cx, e)?, e.line)),
        None => None,
    };
    let clear_node_high_bit = match k.take(cx, "clear_node_high_bit") {
        Some(e) => boolean(cx, e)?,
        None => false,
    };
    let crypto = read_crypto(cx, &mut k)?;
    let keyfile = match k.take(cx, "keyfile") {
        Some(e) => Some(PathBuf::from(word(cx, e)?)),
        None => None,
    };
    let (netmtu, netmtu_line) = match k.take(cx, "netmtu") {
        Some(e) => (u32_in(cx, e, 576, 65535)?, e.line),
        None => (DEFAULT_NETMTU, 0),
    };
    if let Some(e) = k.take(cx, "rrp_mode") {
        let mode = choice(cx, e, &["none", "active", "passive"])?;
        if mode != "none" {
            cx.warn(
                e.line,
                format!("rrp_mode: {mode} ignored: corosync-rs runs one ring (link 0)"),
            );
        }
    }
    let timing = read_timings(cx, &mut k)?;
    k.finish(cx, TOTEM_IGNORED);

    check_subsections(cx, "totem", sections, &["interface"], &[]);
    let mut interfaces = Vec::new();
    for s in sections.iter().flat_map(|s| s.sections_named("interface")) {
        let iface = read_interface(cx, s)?;
        if let Some(other) = interfaces
            .iter()
            .find(|i: &&RawInterface| i.linknumber == iface.linknumber)
        {
            return Err(cx.err(
                iface.line,
                format!(
                    "link {} is configured twice (also at line {})",
                    iface.linknumber, other.line
                ),
            ));
        }
        interfaces.push(iface);
    }
    interfaces.sort_by_key(|i| i.linknumber);

    Ok(RawTotem {
        line,
        version,
        config_version,
        cluster_name,
        transport,
        ip_version,
        nodeid,
        clear_node_high_bit,
        crypto,
        keyfile,
        netmtu,
        netmtu_line,
        timing,
        interfaces,
    })
}

fn nodeid_value(cx: &Ctx, e: &Entry) -> Result<u32, ConfigError> {
    let id = u32_in(cx, e, 0, u32::MAX)?;
    if id == 0 {
        return Err(cx.err(e.line, "nodeid 0 is reserved; use 1 or more"));
    }
    Ok(id)
}

fn read_crypto(cx: &mut Ctx, k: &mut Keys) -> Result<Crypto, ConfigError> {
    let mut crypto = Crypto {
        cipher: Cipher::None,
        hash: Hash::None,
    };
    if let Some(e) = k.take(cx, "secauth") {
        if boolean(cx, e)? {
            crypto = Crypto {
                cipher: Cipher::Aes256,
                hash: Hash::Sha256,
            };
        }
    }
    let cipher_entry = k.take(cx, "crypto_cipher");
    if let Some(e) = cipher_entry {
        if e.value == "3des" {
            return Err(cx.err(
                e.line,
                "crypto_cipher 3des is not supported (Corosync 3 removed it); use aes256",
            ));
        }
        crypto.cipher = match choice(cx, e, &["none", "aes256", "aes192", "aes128"])? {
            "aes256" => Cipher::Aes256,
            "aes192" => Cipher::Aes192,
            "aes128" => Cipher::Aes128,
            _ => Cipher::None,
        };
    }
    if let Some(e) = k.take(cx, "crypto_hash") {
        crypto.hash = match choice(
            cx,
            e,
            &["none", "md5", "sha1", "sha256", "sha384", "sha512"],
        )? {
            "md5" => Hash::Md5,
            "sha1" => Hash::Sha1,
            "sha256" => Hash::Sha256,
            "sha384" => Hash::Sha384,
            "sha512" => Hash::Sha512,
            _ => Hash::None,
        };
    }
    if crypto.cipher != Cipher::None && crypto.hash == Hash::None {
        let line = cipher_entry.map_or(0, |e| e.line);
        return Err(cx.err(
            line,
            "crypto_cipher requires crypto_hash with a value other than none",
        ));
    }
    Ok(crypto)
}

fn read_timings(cx: &mut Ctx, k: &mut Keys) -> Result<RawTimings, ConfigError> {
    let mut t = RawTimings::default();
    let fields: [(&str, &mut Written, u32); 16] = [
        ("token", &mut t.token, DEFAULT_TOKEN),
        ("token_coefficient", &mut t.token_coefficient, u32::MAX),
        (
            "token_retransmits_before_loss_const",
            &mut t.retransmits_before_loss,
            DEFAULT_TOKEN_RETRANSMITS_BEFORE_LOSS_CONST,
        ),
        ("token_retransmit", &mut t.token_retransmit, u32::MAX),
        ("hold", &mut t.hold, u32::MAX),
        ("token_warning", &mut t.token_warning, u32::MAX),
        ("join", &mut t.join, DEFAULT_JOIN),
        ("send_join", &mut t.send_join, u32::MAX),
        ("consensus", &mut t.consensus, u32::MAX),
        ("merge", &mut t.merge, DEFAULT_MERGE),
        ("downcheck", &mut t.downcheck, DEFAULT_DOWNCHECK),
        (
            "fail_recv_const",
            &mut t.fail_recv_const,
            DEFAULT_FAIL_RECV_CONST,
        ),
        (
            "seqno_unchanged_const",
            &mut t.seqno_unchanged_const,
            DEFAULT_SEQNO_UNCHANGED_CONST,
        ),
        (
            "miss_count_const",
            &mut t.miss_count_const,
            DEFAULT_MISS_COUNT_CONST,
        ),
        ("window_size", &mut t.window_size, DEFAULT_WINDOW_SIZE),
        ("max_messages", &mut t.max_messages, DEFAULT_MAX_MESSAGES),
    ];
    // A default of u32::MAX marks keys where 0 is a legal value (or, for the derived ones,
    // where 0 means "derive it", handled in finish_timings).
    for (key, slot, default) in fields {
        if let Some(e) = k.take(cx, key) {
            let v = if default == u32::MAX {
                u32_in(cx, e, 0, u32::MAX)?
            } else {
                nonzero_or_default(cx, e, default)?
            };
            *slot = Some((v, e.line));
        }
    }
    Ok(t)
}

fn read_interface(cx: &mut Ctx, s: &Section) -> Result<RawInterface, ConfigError> {
    let mut k = Keys::new("totem.interface", &[s]);
    let linknumber = match k.take_any(cx, &["ringnumber", "linknumber"]) {
        Some(e) => u32_in(cx, e, 0, MAX_LINKS - 1)?,
        None => 0,
    };
    let bindnetaddr = match k.take(cx, "bindnetaddr") {
        Some(e) => Some((ip(cx, e)?, e.line)),
        None => None,
    };
    let mcastaddr = match k.take(cx, "mcastaddr") {
        Some(e) => Some((ip(cx, e)?, e.line)),
        None => None,
    };
    let mcastport = match k.take(cx, "mcastport") {
        Some(e) => Some(u32_in(cx, e, 1, 65535)? as u16),
        None => None,
    };
    let ttl = match k.take(cx, "ttl") {
        Some(e) => Some((u32_in(cx, e, 0, 255)? as u8, e.line)),
        None => None,
    };
    let broadcast = match k.take(cx, "broadcast") {
        Some(e) => Some((boolean(cx, e)?, e.line)),
        None => None,
    };
    k.finish(cx, INTERFACE_IGNORED);
    check_subsections(
        cx,
        "totem.interface",
        &[s],
        &[],
        &[(
            "member",
            "member lists are not supported; use nodelist { node { ring0_addr } }",
        )],
    );
    Ok(RawInterface {
        line: s.line,
        linknumber,
        bindnetaddr,
        mcastaddr,
        mcastport,
        ttl,
        broadcast,
    })
}

/// Every `node { }` of every `nodelist { }`, warning about anything else in there.
fn node_sections<'a>(cx: &mut Ctx, nodelists: &[&'a Section]) -> Vec<&'a Section> {
    for list in nodelists {
        for e in &list.entries {
            cx.warn(
                e.line,
                format!("unknown key '{}' in nodelist; ignored", e.key),
            );
        }
    }
    check_subsections(cx, "nodelist", nodelists, &["node"], &[]);
    let nodes: Vec<&Section> = nodelists
        .iter()
        .flat_map(|l| l.sections_named("node"))
        .collect();
    if nodes.is_empty() {
        if let Some(list) = nodelists.first() {
            cx.warn(list.line, "nodelist has no node { } sections; ignored");
        }
    }
    nodes
}

/// udp and udpu as written; knet as udpu with a warning; none written: udpu with a nodelist
/// (Corosync 2+), udp without (the multicast form, Corosync 1 / OpenAIS's default).
fn choose_transport(cx: &mut Ctx, raw: &RawTotem, has_nodelist: bool) -> Transport {
    match raw.transport {
        Some(("udp", _)) => Transport::Udp,
        Some(("udpu", _)) => Transport::Udpu,
        Some((_, line)) => {
            cx.warn(
                line,
                "transport knet is not available in corosync-rs; running as udpu (same nodelist, one link)",
            );
            Transport::Udpu
        }
        None if has_nodelist => Transport::Udpu,
        None => Transport::Udp,
    }
}

/// As written; otherwise ipv6-4 for unicast (Corosync 3), and for udp the family of the link 0
/// bind or multicast address, IPv4 when neither is given.
fn choose_ip_version(raw: &RawTotem, transport: Transport) -> IpVersion {
    if let Some((v, _)) = raw.ip_version {
        return v;
    }
    if transport == Transport::Udpu {
        return IpVersion::Ipv6Then4;
    }
    let link0 = raw.interfaces.iter().find(|i| i.linknumber == 0);
    let addr = link0.and_then(|i| i.bindnetaddr.or(i.mcastaddr));
    match addr {
        Some((IpAddr::V6(_), _)) => IpVersion::Ipv6,
        _ => IpVersion::Ipv4,
    }
}

fn check_family(cx: &Ctx, v: IpVersion, addr: IpAddr, line: u32) -> Result<(), ConfigError> {
    if v.allows(addr) {
        return Ok(());
    }
    Err(cx.err(
        line,
        format!("address {addr} is not allowed by ip_version {}", v.as_str()),
    ))
}

/// The node id Corosync derives from an IPv4 address: the address as a big-endian u32, with
/// bit 31 cleared when `clear_node_high_bit` is set. `None` for IPv6.
pub fn nodeid_from_addr(addr: IpAddr, clear_node_high_bit: bool) -> Option<u32> {
    match addr {
        IpAddr::V4(v4) => {
            let id = u32::from(v4);
            Some(if clear_node_high_bit {
                id & 0x7fff_ffff
            } else {
                id
            })
        }
        IpAddr::V6(_) => None,
    }
}

fn read_nodes(
    cx: &mut Ctx,
    sections: &[&Section],
    ip_version: IpVersion,
    clear_node_high_bit: bool,
) -> Result<Vec<Node>, ConfigError> {
    let mut nodes = Vec::with_capacity(sections.len());
    let mut extra_links_warned = false;
    for s in sections {
        let node = read_node(cx, s, ip_version, clear_node_high_bit)?;
        if node.addrs.len() > 1 && !extra_links_warned {
            extra_links_warned = true;
            cx.warn(
                s.line,
                "ring1_addr and higher links are not used: corosync-rs runs one ring (link 0)",
            );
        }
        nodes.push(node);
    }
    Ok(nodes)
}

/// `ringN_addr` → N.
fn ring_key_link(key: &str) -> Option<&str> {
    let n = key.strip_prefix("ring")?.strip_suffix("_addr")?;
    (!n.is_empty() && n.bytes().all(|b| b.is_ascii_digit())).then_some(n)
}

fn read_node(
    cx: &mut Ctx,
    s: &Section,
    ip_version: IpVersion,
    clear_node_high_bit: bool,
) -> Result<Node, ConfigError> {
    let mut k = Keys::new("nodelist.node", &[s]);
    let nodeid = match k.take(cx, "nodeid") {
        Some(e) => Some(nodeid_value(cx, e)?),
        None => None,
    };
    let name = match k.take(cx, "name") {
        Some(e) => Some(word(cx, e)?),
        None => None,
    };
    let quorum_votes = match k.take(cx, "quorum_votes") {
        Some(e) => u32_in(cx, e, 0, services::MAX_VOTES)?,
        None => 1,
    };
    let mut ring_keys: Vec<&str> = s
        .entries
        .iter()
        .filter(|e| ring_key_link(&e.key).is_some())
        .map(|e| e.key.as_str())
        .collect();
    ring_keys.sort_unstable();
    ring_keys.dedup();
    let mut addrs = Vec::new();
    for key in ring_keys {
        let Some(e) = k.take(cx, key) else { continue };
        let link = ring_key_link(key).and_then(|n| n.parse::<u32>().ok());
        let link = match link {
            Some(l) if l < MAX_LINKS => l,
            _ => {
                return Err(cx.err(
                    e.line,
                    format!(
                        "{key}: link number is bigger than the allowed maximum {}",
                        MAX_LINKS - 1
                    ),
                ))
            }
        };
        let addr = node_addr(cx, e, ip_version)?;
        check_family(cx, ip_version, addr, e.line)?;
        addrs.push(RingAddr { link, addr });
    }
    k.finish(cx, &[]);
    check_subsections(cx, "nodelist.node", &[s], &[], &[]);
    addrs.sort_by_key(|a| a.link);
    if addrs.first().map(|a| a.link) != Some(0) {
        return Err(cx.err(s.line, "no ring0_addr specified for node"));
    }
    let ring0 = addrs[0].addr;
    let (nodeid, nodeid_generated) = match nodeid {
        Some(id) => (id, false),
        None => match nodeid_from_addr(ring0, clear_node_high_bit) {
            Some(0) => {
                return Err(cx.err(
                    s.line,
                    format!("the node id derived from {ring0} is 0 (reserved); set nodeid"),
                ))
            }
            Some(id) => (id, true),
            None => {
                return Err(cx.err(
                    s.line,
                    format!(
                    "an IPv6 network requires that a node ID be specified for address '{ring0}'"
                ),
                ))
            }
        },
    };
    Ok(Node {
        nodeid,
        nodeid_generated,
        name,
        addrs,
        quorum_votes,
        line: s.line,
    })
}

/// No two nodes share an id or a link 0 address; link 0 uses one family; not too many nodes.
fn check_nodes(cx: &Ctx, nodes: &[Node], nodelist_line: u32) -> Result<(), ConfigError> {
    if nodes.len() > MAX_NODES {
        return Err(cx.err(
            nodelist_line,
            format!(
                "{} nodes listed; at most {MAX_NODES} are supported",
                nodes.len()
            ),
        ));
    }
    for (i, node) in nodes.iter().enumerate() {
        for earlier in &nodes[..i] {
            if earlier.nodeid == node.nodeid {
                let how = |n: &Node| {
                    if n.nodeid_generated {
                        format!(", generated from {}", n.ring0_addr())
                    } else {
                        String::new()
                    }
                };
                return Err(cx.err(
                    node.line,
                    format!(
                        "nodeid {} appears twice (here{}; also the node at line {}{})",
                        node.nodeid,
                        how(node),
                        earlier.line,
                        how(earlier)
                    ),
                ));
            }
            if earlier.ring0_addr() == node.ring0_addr() {
                return Err(cx.err(
                    node.line,
                    format!(
                        "ring0_addr {} appears twice (also the node at line {})",
                        node.ring0_addr(),
                        earlier.line
                    ),
                ));
            }
        }
        if let Some(first) = nodes.first() {
            if first.ring0_addr().is_ipv4() != node.ring0_addr().is_ipv4() {
                return Err(cx.err(
                    node.line,
                    format!(
                        "nodes for link 0 have different IP families ({} and {})",
                        first.ring0_addr(),
                        node.ring0_addr()
                    ),
                ));
            }
        }
    }
    Ok(())
}

/// Corosync's cluster id: a shift-and-add hash of the name's bytes (as C `char`s, signed on
/// x86), truncated to 16 bits.
fn cluster_id(name: &str) -> u16 {
    let mut value: i32 = 0;
    for &b in name.as_bytes() {
        value = value.wrapping_shl(1).wrapping_add(i32::from(b as i8));
    }
    (value & 0xffff) as u16
}

/// The multicast group Corosync 3 derives from the cluster name for a udp link without
/// `mcastaddr`: 239.192.(id >> 8).(id % 255) for IPv4 (the `% 255` is Corosync's), ff15::id
/// for IPv6, where id = cluster id + link number.
pub fn derived_mcastaddr(cluster_name: &str, linknumber: u32, ipv6: bool) -> IpAddr {
    let id = cluster_id(cluster_name).wrapping_add(linknumber as u16);
    if ipv6 {
        IpAddr::V6(Ipv6Addr::new(0xff15, 0, 0, 0, 0, 0, 0, id))
    } else {
        IpAddr::V4(Ipv4Addr::new(239, 192, (id >> 8) as u8, (id % 0xff) as u8))
    }
}

fn finish_interfaces(
    cx: &mut Ctx,
    raw: &RawTotem,
    transport: Transport,
    ip_version: IpVersion,
) -> Result<Vec<Interface>, ConfigError> {
    let mut out = Vec::new();
    let has_link0 = raw.interfaces.iter().any(|i| i.linknumber == 0);
    let implicit = RawInterface {
        line: raw.line.max(1),
        linknumber: 0,
        bindnetaddr: None,
        mcastaddr: None,
        mcastport: None,
        ttl: None,
        broadcast: None,
    };
    let all = raw
        .interfaces
        .iter()
        .chain((!has_link0).then_some(&implicit));
    for r in all {
        if r.linknumber > 0 {
            cx.warn(
                r.line,
                format!(
                    "link {} ignored: corosync-rs runs one ring (link 0)",
                    r.linknumber
                ),
            );
        }
        out.push(finish_interface(cx, raw, r, transport, ip_version)?);
    }
    out.sort_by_key(|i| i.linknumber);
    Ok(out)
}

fn finish_interface(
    cx: &mut Ctx,
    raw: &RawTotem,
    r: &RawInterface,
    transport: Transport,
    ip_version: IpVersion,
) -> Result<Interface, ConfigError> {
    if let Some((addr, line)) = r.bindnetaddr {
        check_family(cx, ip_version, addr, line)?;
    }
    let mut broadcast = r.broadcast.is_some_and(|(b, _)| b);
    let mut ttl = r.ttl.map_or(1, |(t, _)| t);
    let mcastaddr = match transport {
        Transport::Udp => Some(udp_group(cx, raw, r, broadcast, ip_version)?),
        Transport::Udpu => {
            if let Some((_, line)) = r.mcastaddr {
                cx.warn(line, "mcastaddr is not used with transport udpu; ignored");
            }
            if let Some((true, line)) = r.broadcast {
                cx.warn(line, "broadcast is not used with transport udpu; ignored");
                broadcast = false;
            }
            if let Some((t, line)) = r.ttl {
                if t != 1 {
                    cx.warn(line, "ttl only applies to transport udp; ignored");
                    ttl = 1;
                }
            }
            None
        }
    };
    let step = if broadcast { 2 } else { 1 };
    let default_port = u32::from(DEFAULT_PORT) + step * r.linknumber;
    Ok(Interface {
        linknumber: r.linknumber,
        bindnetaddr: r.bindnetaddr.map(|(a, _)| a),
        mcastaddr,
        mcastport: r.mcastport.unwrap_or(default_port as u16),
        ttl,
        broadcast,
        line: r.line,
    })
}

/// The group a udp link sends to: broadcast, `mcastaddr`, or derived from `cluster_name`.
fn udp_group(
    cx: &Ctx,
    raw: &RawTotem,
    r: &RawInterface,
    broadcast: bool,
    ip_version: IpVersion,
) -> Result<IpAddr, ConfigError> {
    if broadcast {
        return Ok(IpAddr::V4(Ipv4Addr::BROADCAST));
    }
    let Some((addr, line)) = r.mcastaddr else {
        let Some(name) = &raw.cluster_name else {
            return Err(cx.err(
                r.line,
                format!(
                    "transport udp needs mcastaddr for link {} (or a cluster_name to derive it from)",
                    r.linknumber
                ),
            ));
        };
        let ipv6 = match r.bindnetaddr {
            Some((a, _)) => a.is_ipv6(),
            None => ip_version == IpVersion::Ipv6,
        };
        return Ok(derived_mcastaddr(name, r.linknumber, ipv6));
    };
    check_family(cx, ip_version, addr, line)?;
    if !addr.is_multicast() {
        return Err(cx.err(line, format!("mcastaddr {addr} is not a multicast address")));
    }
    if let Some((bind, _)) = r.bindnetaddr {
        if bind.is_ipv4() != addr.is_ipv4() {
            return Err(cx.err(
                line,
                format!(
                    "multicast address {addr} and bind address {bind} are of different families"
                ),
            ));
        }
    }
    Ok(addr)
}

/// What the chosen form of naming the network requires.
fn check_network(
    cx: &mut Ctx,
    raw: &RawTotem,
    transport: Transport,
    nodes: &[Node],
    interfaces: &[Interface],
) -> Result<(), ConfigError> {
    let transport_line = raw.transport.map_or(raw.line.max(1), |(_, l)| l);
    if transport == Transport::Udpu && nodes.is_empty() {
        return Err(cx.err(
            transport_line,
            "transport udpu needs a nodelist { node { ring0_addr: … } }",
        ));
    }
    if !nodes.is_empty() {
        if let Some(link0) = interfaces.iter().find(|i| i.bindnetaddr.is_some()) {
            cx.warn(
                link0.line,
                "bindnetaddr is used together with a nodelist; the nodelist addresses are used",
            );
        }
        return Ok(());
    }
    // The multicast form: link 0's bindnetaddr names the local network.
    let link0 = interfaces
        .iter()
        .find(|i| i.linknumber == 0)
        .expect("finish_interfaces always yields link 0");
    let Some(bind) = link0.bindnetaddr else {
        return Err(cx.err(
            link0.line,
            "without a nodelist, totem { interface { bindnetaddr } } is required",
        ));
    };
    let ipv6 = bind.is_ipv6() || link0.mcastaddr.is_some_and(|a| a.is_ipv6());
    if ipv6 && raw.nodeid.is_none() {
        return Err(cx.err(
            link0.line,
            "an IPv6 network requires that a node ID be specified: set totem { nodeid }",
        ));
    }
    Ok(())
}

fn finish_timings(cx: &mut Ctx, raw: &RawTotem, nodes: usize) -> Result<Timings, ConfigError> {
    let t = &raw.timing;
    let at = |v: Written| v.map_or(raw.line.max(1), |(_, l)| l);
    let val = |v: Written, d: u32| v.map_or(d, |(x, _)| x);

    let token_configured = val(t.token, DEFAULT_TOKEN);
    let token_coefficient = val(t.token_coefficient, DEFAULT_TOKEN_COEFFICIENT);
    let extra = if nodes >= 3 {
        (nodes as u64 - 2) * u64::from(token_coefficient)
    } else {
        0
    };
    let token = u32::try_from(u64::from(token_configured) + extra).map_err(|_| {
        cx.err(
            at(t.token_coefficient.or(t.token)),
            "token + token_coefficient per node is too large",
        )
    })?;
    let retransmits = val(
        t.retransmits_before_loss,
        DEFAULT_TOKEN_RETRANSMITS_BEFORE_LOSS_CONST,
    );
    // token / (retransmits + 0.2), exactly, in integers.
    let derived_retransmit = (u64::from(token) * 5 / (u64::from(retransmits) * 5 + 1)) as u32;
    let token_retransmit = match t.token_retransmit {
        Some((v, _)) if v > 0 => v,
        _ => derived_retransmit,
    };
    // token_retransmit * 0.8 - 10 (Corosync's HZ is 100), may go below zero for tiny tokens.
    let derived_hold = (i64::from(token_retransmit) * 4 / 5 - 10).max(0) as u32;
    let hold = match t.hold {
        Some((v, _)) if v > 0 => v,
        _ => derived_hold,
    };
    // 1.2 * token, exactly.
    let derived_consensus = u32::try_from(u64::from(token) * 6 / 5).map_err(|_| {
        cx.err(
            at(t.token),
            "token is too large to derive consensus (1.2 * token)",
        )
    })?;
    let consensus = match t.consensus {
        Some((v, _)) if v > 0 => v,
        _ => derived_consensus,
    };
    let timings = Timings {
        token,
        token_configured,
        token_coefficient,
        token_retransmits_before_loss_const: retransmits,
        token_retransmit,
        hold,
        token_warning: val(t.token_warning, DEFAULT_TOKEN_WARNING),
        join: val(t.join, DEFAULT_JOIN),
        send_join: val(t.send_join, 0),
        consensus,
        merge: val(t.merge, DEFAULT_MERGE),
        downcheck: val(t.downcheck, DEFAULT_DOWNCHECK),
        fail_recv_const: val(t.fail_recv_const, DEFAULT_FAIL_RECV_CONST),
        seqno_unchanged_const: val(t.seqno_unchanged_const, DEFAULT_SEQNO_UNCHANGED_CONST),
        miss_count_const: val(t.miss_count_const, DEFAULT_MISS_COUNT_CONST),
        window_size: val(t.window_size, DEFAULT_WINDOW_SIZE),
        // A window smaller than the default visit keeps working: the visit
        // shrinks to it unless max_messages is given.
        max_messages: val(
            t.max_messages,
            DEFAULT_MAX_MESSAGES.min(val(t.window_size, DEFAULT_WINDOW_SIZE)),
        ),
        max_messages_written: t.max_messages.is_some(),
        window_fixed: t.window_size.is_some(),
        seqno_unchanged_written: t.seqno_unchanged_const.is_some(),
    };
    check_timings(cx, t, &timings, at)?;
    Ok(timings)
}

/// Corosync's lower bounds, with its wording.
fn check_timings(
    cx: &Ctx,
    t: &RawTimings,
    v: &Timings,
    at: impl Fn(Written) -> u32,
) -> Result<(), ConfigError> {
    let min = MINIMUM_TIMEOUT;
    let checks: [(bool, u32, String); 11] = [
        (
            v.token < min,
            at(t.token),
            format!(
                "the token timeout ({} ms) may not be less than {min} ms",
                v.token
            ),
        ),
        (
            v.token_warning > 100,
            at(t.token_warning),
            format!(
                "token_warning ({}%) must be between 0 (disabled) and 100",
                v.token_warning
            ),
        ),
        (
            v.token_retransmit < min,
            at(t.token_retransmit.or(t.retransmits_before_loss).or(t.token)),
            if t.token_retransmit.is_some_and(|(x, _)| x > 0) {
                format!(
                    "the token retransmit timeout ({} ms) may not be less than {min} ms",
                    v.token_retransmit
                )
            } else {
                format!(
                    "token ({} ms) and token_retransmits_before_loss_const ({}) give a token retransmit timeout of {} ms, less than {min} ms",
                    v.token, v.token_retransmits_before_loss_const, v.token_retransmit
                )
            },
        ),
        (
            v.hold < MINIMUM_HOLD,
            at(t.hold.or(t.token_retransmit).or(t.token)),
            format!(
                "the token hold timeout ({} ms) may not be less than {MINIMUM_HOLD} ms",
                v.hold
            ),
        ),
        (
            v.join < min,
            at(t.join),
            format!(
                "the join timeout ({} ms) may not be less than {min} ms",
                v.join
            ),
        ),
        (
            v.consensus < min,
            at(t.consensus),
            format!(
                "the consensus timeout ({} ms) may not be less than {min} ms",
                v.consensus
            ),
        ),
        (
            v.consensus < v.join,
            at(t.consensus.or(t.join)),
            format!(
                "the consensus timeout ({} ms) may not be less than the join timeout ({} ms)",
                v.consensus, v.join
            ),
        ),
        (
            v.merge < min,
            at(t.merge),
            format!(
                "the merge timeout ({} ms) may not be less than {min} ms",
                v.merge
            ),
        ),
        (
            v.downcheck < min,
            at(t.downcheck),
            format!(
                "the downcheck timeout ({} ms) may not be less than {min} ms",
                v.downcheck
            ),
        ),
        (
            v.window_size > max_window_size(),
            at(t.window_size),
            format!(
                "window_size ({}) may not be more than {}: the retransmit store holds {} frames, \
                 four windows and some",
                v.window_size,
                max_window_size(),
                totem_ring::Config::default().retransmit_queue
            ),
        ),
        (
            // Unless written, the window grows with the ring by a visit's
            // frames per member, so it always holds one visit.
            v.window_fixed && v.max_messages > v.window_size,
            at(t.max_messages.or(t.window_size)),
            format!(
                "max_messages ({}) may not be more than window_size ({}): a node's \
                 visit is part of the rotation's window",
                v.max_messages, v.window_size
            ),
        ),
    ];
    for (bad, line, reason) in checks {
        if bad {
            return Err(cx.err(line, reason));
        }
    }
    Ok(())
}

/// The largest `window_size` Totem's retransmit store (its default size,
/// which the daemon keeps) accepts: four windows and 64 frames.
fn max_window_size() -> u32 {
    (totem_ring::Config::default().retransmit_queue - 64) / 4
}
