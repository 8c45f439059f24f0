//! The typed configuration: what [`Config::from_str`](super::Config::from_str) produces.
//!
//! Every field has its Corosync default applied; timings are in milliseconds.

use std::net::IpAddr;
use std::path::PathBuf;

/// Corosync's default token timeout (ms); Corosync 3.1 raised it from 1000 to 3000.
pub const DEFAULT_TOKEN: u32 = 3000;
/// Added to the token timeout per node above two when the nodelist has three or more nodes.
pub const DEFAULT_TOKEN_COEFFICIENT: u32 = 650;
/// Token retransmissions before the token is declared lost.
pub const DEFAULT_TOKEN_RETRANSMITS_BEFORE_LOSS_CONST: u32 = 4;
/// Percentage of the token timeout after which a "token not received" warning is logged.
pub const DEFAULT_TOKEN_WARNING: u32 = 75;
/// Join timeout (ms).
pub const DEFAULT_JOIN: u32 = 50;
/// Merge-detect timeout (ms).
pub const DEFAULT_MERGE: u32 = 200;
/// Downcheck timeout (ms).
pub const DEFAULT_DOWNCHECK: u32 = 1000;
/// Token rotations without receiving expected messages before a node declares itself failed.
pub const DEFAULT_FAIL_RECV_CONST: u32 = 2500;
/// Idle token rotations before the node that sent last (the
/// representative if none has) holds the token (Corosync: 30; see
/// `totem_ring::Config::seqno_unchanged_const`).
pub const DEFAULT_SEQNO_UNCHANGED_CONST: u32 = 4;
/// Sightings of a gap before it is added to the retransmit list.
pub const DEFAULT_MISS_COUNT_CONST: u32 = 5;
/// Frames multicast per token rotation, all nodes together (Corosync: 50;
/// see `totem_ring::Config::window_size`).
pub const DEFAULT_WINDOW_SIZE: u32 = 150;
/// Frames one node multicasts per token visit (Corosync: 17).
pub const DEFAULT_MAX_MESSAGES: u32 = 50;
/// The same with the Accelerated Ring on (and `max_messages` not written):
/// the next node works while this one sends, so a longer visit costs the
/// ring no idle time. On a 16-CPU machine at 3 nodes it moved 1.21–1.30×
/// the messages of 50 (`scripts/device-bench`, 2026-11-27, same run).
pub const DEFAULT_MAX_MESSAGES_ACCELERATED: u32 = 100;
/// Network MTU (bytes) on UDP.
pub const DEFAULT_NETMTU: u32 = 1500;
/// The first link's UDP port; link `n` uses `5405 + n` (`5405 + 2n` with broadcast).
pub const DEFAULT_PORT: u16 = 5405;
/// The smallest timeout. Corosync's is 30 ms (three 10 ms kernel ticks);
/// our timers are timerfds with microsecond precision, so the bound only
/// keeps a timeout from being shorter than a scheduling hiccup (the
/// low-latency profile runs token 20 ms).
pub const MINIMUM_TIMEOUT: u32 = 10;
/// The smallest hold timeout (Corosync's: 14 ms, `30 * 0.8 - 10`).
pub const MINIMUM_HOLD: u32 = 1;
/// Default `last_man_standing_window` (ms).
pub const DEFAULT_LAST_MAN_STANDING_WINDOW: u32 = 10_000;
/// Default state directory (the ring id file lives there).
pub const DEFAULT_STATE_DIR: &str = "/var/lib/corosync";
/// Most nodes in a nodelist (Corosync's PROCESSOR_COUNT_MAX).
pub const MAX_NODES: usize = 384;
/// Most links (Corosync 3's INTERFACE_MAX); link numbers are 0..MAX_LINKS.
pub const MAX_LINKS: u32 = 8;

/// The whole configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    /// The file it was read from (as given to the reader), for messages.
    pub file: String,
    /// `totem { }`: the protocol, its timings and the network.
    pub totem: Totem,
    /// `nodelist { node { } }`, in file order; empty in the multicast form.
    pub nodes: Vec<Node>,
    /// Line of the first `nodelist {`, 0 when there is none.
    pub nodelist_line: u32,
    /// `logging { }`.
    pub logging: Logging,
    /// `system { }`.
    pub system: System,
    /// Every `uidgid { }` section, in file order, then those of the files in `uidgid.d`
    /// ([`Config::load`](super::Config::load) only), by file name: users and groups allowed
    /// to connect.
    pub uidgid: Vec<UidGid>,
    /// `quorum { }`.
    pub quorum: Quorum,
    /// `corosync_rs { }`: this implementation's own settings.
    pub extensions: Extensions,
}

/// How Totem frames travel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    /// IP multicast (`transport: udp`): one send reaches every node.
    Udp,
    /// Unicast to every member (`transport: udpu`, and `knet`, which is run as udpu).
    Udpu,
}

/// `totem.ip_version`: which address families may be used (and, for host names, tried first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpVersion {
    /// `ipv4`: IPv4 only (the default for udp).
    Ipv4,
    /// `ipv6`: IPv6 only.
    Ipv6,
    /// `ipv4-6`: either, IPv4 preferred.
    Ipv4Then6,
    /// `ipv6-4`: either, IPv6 preferred (the default for udpu and knet).
    Ipv6Then4,
}

impl IpVersion {
    /// Whether an address of this family is allowed.
    pub fn allows(self, addr: IpAddr) -> bool {
        match self {
            IpVersion::Ipv4 => addr.is_ipv4(),
            IpVersion::Ipv6 => addr.is_ipv6(),
            IpVersion::Ipv4Then6 | IpVersion::Ipv6Then4 => true,
        }
    }

    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            IpVersion::Ipv4 => "ipv4",
            IpVersion::Ipv6 => "ipv6",
            IpVersion::Ipv4Then6 => "ipv4-6",
            IpVersion::Ipv6Then4 => "ipv6-4",
        }
    }
}

/// `totem.crypto_cipher` (Corosync 3 dropped `3des`; so do we).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cipher {
    /// No encryption.
    None,
    /// AES with a 256-bit key.
    Aes256,
    /// AES with a 192-bit key.
    Aes192,
    /// AES with a 128-bit key.
    Aes128,
}

impl Cipher {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes256 => "aes256",
            Cipher::Aes192 => "aes192",
            Cipher::Aes128 => "aes128",
        }
    }
}

/// `totem.crypto_hash`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    /// No authentication.
    None,
    /// HMAC-MD5.
    Md5,
    /// HMAC-SHA1.
    Sha1,
    /// HMAC-SHA256.
    Sha256,
    /// HMAC-SHA384.
    Sha384,
    /// HMAC-SHA512.
    Sha512,
}

impl Hash {
    /// The name as written in the file.
    pub fn as_str(self) -> &'static str {
        match self {
            Hash::None => "none",
            Hash::Md5 => "md5",
            Hash::Sha1 => "sha1",
            Hash::Sha256 => "sha256",
            Hash::Sha384 => "sha384",
            Hash::Sha512 => "sha512",
        }
    }
}

/// Crypto settings: `crypto_cipher`, `crypto_hash`, or the old `secauth: on`
/// (= aes256 + sha256, as Corosync 3 maps it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Crypto {
    /// The cipher.
    pub cipher: Cipher,
    /// The hash (never `None` when the cipher isn't).
    pub hash: Hash,
}

impl Crypto {
    /// Whether frames are sealed at all.
    pub fn enabled(&self) -> bool {
        self.cipher != Cipher::None || self.hash != Hash::None
    }
}

/// Totem timings and constants with defaults applied and derived values computed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Timings {
    /// The effective token timeout (ms): `token_configured`, plus `token_coefficient` per
    /// node above two when the nodelist has three or more nodes.
    pub token: u32,
    /// `token` as written (or [`DEFAULT_TOKEN`]).
    pub token_configured: u32,
    /// `token_coefficient` (ms per node above two).
    pub token_coefficient: u32,
    /// `token_retransmits_before_loss_const`.
    pub token_retransmits_before_loss_const: u32,
    /// `token_retransmit` (ms): as written, or `token / (retransmits_before_loss + 0.2)`.
    pub token_retransmit: u32,
    /// `hold` (ms): as written, or `token_retransmit * 0.8 - 10`.
    pub hold: u32,
    /// `token_warning` (percent of `token`, 0 disables).
    pub token_warning: u32,
    /// `join` (ms).
    pub join: u32,
    /// `send_join` (ms, 0 = send at once).
    pub send_join: u32,
    /// `consensus` (ms): as written, or `1.2 * token`.
    pub consensus: u32,
    /// `merge` (ms).
    pub merge: u32,
    /// `downcheck` (ms).
    pub downcheck: u32,
    /// `fail_recv_const` (token rotations).
    pub fail_recv_const: u32,
    /// `seqno_unchanged_const` (token rotations).
    pub seqno_unchanged_const: u32,
    /// `miss_count_const` (sightings).
    pub miss_count_const: u32,
    /// `window_size` (frames per rotation).
    pub window_size: u32,
    /// `max_messages` (frames per token visit) as written, or the default
    /// without the Accelerated Ring: see [`Timings::max_messages_in_effect`].
    pub max_messages: u32,
    /// `max_messages` was written.
    pub max_messages_written: bool,
    /// `window_size` was written: the window stays that size whatever the
    /// ring's size, as in Corosync (otherwise it grows by
    /// `max_messages` frames per member; `totem_ring::Config::window_per_member`).
    pub window_fixed: bool,
    /// `seqno_unchanged_const` was written: the idle token is held after
    /// that many rotations whatever the ring's size, as in Corosync
    /// (otherwise larger rings hold it sooner;
    /// `totem_ring::Config::hold_after_idle_hops`).
    pub seqno_unchanged_written: bool,
}

impl Timings {
    /// Frames per token visit Totem runs with: as written, else
    /// [`DEFAULT_MAX_MESSAGES_ACCELERATED`] with the Accelerated Ring on
    /// (never more than a window) and [`DEFAULT_MAX_MESSAGES`] without it.
    pub fn max_messages_in_effect(&self, accelerated: bool) -> u32 {
        if accelerated && !self.max_messages_written {
            DEFAULT_MAX_MESSAGES_ACCELERATED.min(self.window_size)
        } else {
            self.max_messages
        }
    }
}

/// One `totem { interface { } }` section (a link; only link 0 is used by this daemon).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Interface {
    /// `linknumber` (or the older `ringnumber`), 0 by default.
    pub linknumber: u32,
    /// `bindnetaddr`: a local address or the network it lies in (multicast form).
    pub bindnetaddr: Option<IpAddr>,
    /// The multicast group: `mcastaddr`, or derived from `cluster_name` (udp), or
    /// 255.255.255.255 with `broadcast: yes`. `None` for udpu.
    pub mcastaddr: Option<IpAddr>,
    /// `mcastport`: the UDP port (default 5405 + link number).
    pub mcastport: u16,
    /// `ttl` of multicast frames (default 1).
    pub ttl: u8,
    /// `broadcast: yes` (udp only).
    pub broadcast: bool,
    /// Line of the `interface {`.
    pub line: u32,
}

/// `totem { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Totem {
    /// `version` (must be 2; 2 when missing).
    pub version: u32,
    /// `config_version`, 0 when missing.
    pub config_version: u64,
    /// `cluster_name`.
    pub cluster_name: Option<String>,
    /// `transport` (udp, udpu; knet runs as udpu). Missing: udpu with a nodelist, udp without.
    pub transport: Transport,
    /// `ip_version` (default ipv4 for udp, ipv6-4 otherwise).
    pub ip_version: IpVersion,
    /// `nodeid`: this node's id when the nodelist doesn't say (required for IPv6 multicast).
    pub nodeid: Option<u32>,
    /// `clear_node_high_bit`: clear bit 31 of node ids derived from IPv4 addresses.
    pub clear_node_high_bit: bool,
    /// `crypto_cipher`, `crypto_hash`, `secauth`.
    pub crypto: Crypto,
    /// `keyfile`: the shared key's path (overrides `COROSYNC_TOTEM_AUTHKEY_FILE`).
    pub keyfile: Option<PathBuf>,
    /// `netmtu` (bytes).
    pub netmtu: u32,
    /// Timings and constants.
    pub timings: Timings,
    /// Every `interface { }`, sorted by link number.
    pub interfaces: Vec<Interface>,
    /// Line of the first `totem {`, 0 when there is none.
    pub line: u32,
}

impl Totem {
    /// The interface for link 0, if configured.
    pub fn link0(&self) -> Option<&Interface> {
        self.interfaces.iter().find(|i| i.linknumber == 0)
    }
}

/// One `ringN_addr` of a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingAddr {
    /// N in `ringN_addr`.
    pub link: u32,
    /// The address.
    pub addr: IpAddr,
}

/// One `nodelist { node { } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// `nodeid`, or derived from the IPv4 `ring0_addr` (see `nodeid_generated`).
    pub nodeid: u32,
    /// Whether `nodeid` was derived from the address rather than written.
    pub nodeid_generated: bool,
    /// `name`.
    pub name: Option<String>,
    /// `ring0_addr`, `ring1_addr`, … sorted by link; `ring0_addr` is always present and first.
    pub addrs: Vec<RingAddr>,
    /// `quorum_votes` (default 1).
    pub quorum_votes: u32,
    /// Line of the `node {`.
    pub line: u32,
}

impl Node {
    /// The link 0 address.
    ///
    /// # Panics
    ///
    /// If `addrs` is empty, which the reader never produces (`ring0_addr` is required).
    pub fn ring0_addr(&self) -> IpAddr {
        self.addrs[0].addr
    }
}

/// `logging.syslog_facility`: the names Corosync accepts (libqb's `qb_log_facility2int`, as
/// on Linux) and their syslog facility numbers (`LOG_DAEMON >> 3` = 3, …).
pub const SYSLOG_FACILITIES: &[(&str, u8)] = &[
    ("kern", 0),
    ("user", 1),
    ("mail", 2),
    ("daemon", 3),
    ("auth", 4),
    ("syslog", 5),
    ("lpr", 6),
    ("news", 7),
    ("uucp", 8),
    ("cron", 9),
    ("authpriv", 10),
    ("ftp", 11),
    ("local0", 16),
    ("local1", 17),
    ("local2", 18),
    ("local3", 19),
    ("local4", 20),
    ("local5", 21),
    ("local6", 22),
    ("local7", 23),
];

/// The facility number of a `syslog_facility` name, `None` for a name Corosync refuses.
pub fn syslog_facility_number(name: &str) -> Option<u8> {
    SYSLOG_FACILITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|&(_, number)| number)
}

/// `logging.debug`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DebugLevel {
    /// `off` (default).
    Off,
    /// `on`.
    On,
    /// `trace`: everything, including per-message traces.
    Trace,
}

/// `logging.timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timestamp {
    /// `off` (default).
    Off,
    /// `on`: seconds.
    On,
    /// `hires`: milliseconds.
    Hires,
}

/// One `logging { logger_subsys { } }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoggerSubsys {
    /// `subsys` (required): TOTEM, CPG, QUORUM, …
    pub subsys: String,
    /// `debug` for this subsystem, as written; `None` follows the global level. Not applied
    /// (one level for all subsystems): a value other than the global one is warned about.
    pub debug: Option<DebugLevel>,
    /// Line of the `logger_subsys {`.
    pub line: u32,
}

/// `logging { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Logging {
    /// `to_stderr` (default yes).
    pub to_stderr: bool,
    /// `to_logfile` (default no; needs `logfile`).
    pub to_logfile: bool,
    /// `logfile`.
    pub logfile: Option<PathBuf>,
    /// `to_syslog` (default yes).
    pub to_syslog: bool,
    /// `syslog_facility` (default daemon): one of [`SYSLOG_FACILITIES`].
    pub syslog_facility: String,
    /// `debug` (default off).
    pub debug: DebugLevel,
    /// `timestamp` (default off).
    pub timestamp: Timestamp,
    /// `fileline` (default off; accepted, `on` is warned about: lines carry no source place).
    pub fileline: bool,
    /// `function_name` (default off; accepted, `on` is warned about).
    pub function_name: bool,
    /// Every `logger_subsys { }`.
    pub subsystems: Vec<LoggerSubsys>,
}

/// `system.priority`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Priority {
    /// `max` (default): the highest non-realtime priority.
    Max,
    /// `min`.
    Min,
    /// A nice value, -20 ..= 19.
    Nice(i32),
}

/// A yes / no / auto setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum YesNoAuto {
    /// `yes`.
    Yes,
    /// `no`.
    No,
    /// `auto`.
    Auto,
}

/// `system { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct System {
    /// `sched_rr` (default yes): ask for SCHED_RR (the runtime decides whether it may spin).
    pub sched_rr: bool,
    /// `priority` (default max): with `sched_rr`, `min` asks for SCHED_RR priority 1 and
    /// `max` for 99. A nice value, or any value with `sched_rr: no`, is not applied (warned).
    pub priority: Priority,
    /// `state_dir` (default /var/lib/corosync).
    pub state_dir: PathBuf,
    /// `move_to_root_cgroup` (default auto; accepted, not acted on: `yes` or `auto` written
    /// is warned about).
    pub move_to_root_cgroup: YesNoAuto,
    /// `allow_knet_handle_fallback` (default no; accepted for compatibility, no effect:
    /// `yes` is warned about).
    pub allow_knet_handle_fallback: bool,
}

/// A user or group as written: a number, or a name the daemon resolves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ident {
    /// A numeric id.
    Id(u32),
    /// A name to look up (getpwnam / getgrnam).
    Name(String),
}

/// One `uidgid { uid, gid }`, from the configuration file or a file of its `uidgid.d`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UidGid {
    /// `uid`.
    pub uid: Option<Ident>,
    /// `gid`.
    pub gid: Option<Ident>,
    /// The file it is in, as given to the reader (for messages).
    pub file: String,
    /// Line of the `uidgid {`.
    pub line: u32,
}

/// `quorum.provider`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum QuorumProvider {
    /// `corosync_votequorum`, the only provider Corosync 2 and 3 have.
    Votequorum,
}

/// `quorum { }`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Quorum {
    /// `provider`; `None` means no quorum service (always quorate).
    pub provider: Option<QuorumProvider>,
    /// `expected_votes`; `None` means computed from the nodelist votes.
    pub expected_votes: Option<u32>,
    /// `two_node`.
    pub two_node: bool,
    /// `wait_for_all` (default: the value of `two_node`).
    pub wait_for_all: bool,
    /// `last_man_standing`.
    pub last_man_standing: bool,
    /// `last_man_standing_window` (ms).
    pub last_man_standing_window: u32,
    /// `auto_tie_breaker`.
    pub auto_tie_breaker: bool,
    /// `auto_tie_breaker_node`: `lowest`, `highest` or a list of node ids, as written.
    pub auto_tie_breaker_node: Option<String>,
}

/// Which delivery the daemon guarantees to clients that don't ask.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Guarantee {
    /// Agreed order (Corosync's only guarantee; default).
    Agreed,
    /// Safe: delivered once every member has the message.
    Safe,
}

/// `corosync_rs { }`: our own settings; Corosync would warn about the unknown section and
/// ignore it, so a file that has one still works with Corosync.
///
/// ```text
/// corosync_rs {
///     guarantee: agreed | safe      # default agreed
///     accelerated_ring: yes | no | auto   # default auto: pass the token before the burst's
///                                   # tail; auto = yes with 4 CPUs or more
///     pin_core: none | <cpu>        # default none: the protocol thread's core
///     spin_us: <microseconds>       # default 0: busy-poll before sleeping (0 ..= 1000000)
///     sqpoll_ms: <milliseconds>     # default 0 (off): a kernel thread submits the io_uring
///                                   # sends and runs their completions, polling this long
///                                   # after the last before it sleeps (0 ..= 10000)
///     ipc_socket: <path>            # default: the runtime's choice
///     ipc_membarrier: yes | no      # default yes: clients publish requests with plain
///                                   # stores and the daemon, before it sleeps, has the
///                                   # kernel fence the CPUs running clients (membarrier,
///                                   # an interrupt to each); no: a locked instruction
///                                   # per request instead
/// }
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Extensions {
    /// `guarantee`.
    pub guarantee: Guarantee,
    /// `accelerated_ring` (see [`accelerated_for`]).
    pub accelerated_ring: YesNoAuto,
    /// `pin_core`.
    pub pin_core: Option<u32>,
    /// `spin_us`.
    pub spin_us: u32,
    /// `sqpoll_ms` (0 = off): io_uring submission-queue polling, which
    /// moves the kernel's send and receive work off the protocol thread
    /// onto a kernel thread of its own (one more busy CPU per daemon while
    /// traffic flows; for machines with CPUs to spare).
    pub sqpoll_ms: u32,
    /// `ipc_socket`.
    pub ipc_socket: Option<PathBuf>,
    /// `ipc_membarrier` (ipc-shm's `ServerConfig::light_requests`).
    pub ipc_membarrier: bool,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            to_stderr: true,
            to_logfile: false,
            logfile: None,
            to_syslog: true,
            syslog_facility: "daemon".to_string(),
            debug: DebugLevel::Off,
            timestamp: Timestamp::Off,
            fileline: false,
            function_name: false,
            subsystems: Vec::new(),
        }
    }
}

impl Default for System {
    fn default() -> Self {
        System {
            sched_rr: true,
            priority: Priority::Max,
            state_dir: PathBuf::from(DEFAULT_STATE_DIR),
            move_to_root_cgroup: YesNoAuto::Auto,
            allow_knet_handle_fallback: false,
        }
    }
}

impl Default for Quorum {
    fn default() -> Self {
        Quorum {
            provider: None,
            expected_votes: None,
            two_node: false,
            wait_for_all: false,
            last_man_standing: false,
            last_man_standing_window: DEFAULT_LAST_MAN_STANDING_WINDOW,
            auto_tie_breaker: false,
            auto_tie_breaker_node: None,
        }
    }
}

impl Default for Extensions {
    fn default() -> Self {
        Extensions {
            guarantee: Guarantee::Agreed,
            accelerated_ring: YesNoAuto::Auto,
            pin_core: None,
            spin_us: 0,
            sqpoll_ms: 0,
            ipc_socket: None,
            ipc_membarrier: true,
        }
    }
}

/// Whether the Accelerated Ring runs with `setting`: `auto` is on
/// everywhere, every visit passing the token ahead of its burst from 4 CPUs
/// up and only a full one below (see [`accelerate_from_frames`]).
pub fn accelerated_for(setting: YesNoAuto) -> bool {
    match setting {
        YesNoAuto::Yes | YesNoAuto::Auto => true,
        YesNoAuto::No => false,
    }
}

/// The fewest frames a visit's burst needs for the token to go out ahead
/// of it (0: every visit). Passing the token first lets the next node work
/// while this one sends, which pays where the nodes have cores to do it
/// on: +23–45% throughput at 3 nodes on a 16-CPU machine
/// (`scripts/device-bench`). With 3 daemons and their clients on 2 CPUs it
/// paid only for long visits (16 KiB to 1 MiB messages: +20–35%) and cost
/// up to 10–20% at 64 B, where a visit carries about 5 frames: there
/// `auto` accelerates the visits that take at least half of `max_messages`.
pub fn accelerate_from_frames(setting: YesNoAuto, cpus: usize, max_messages: u32) -> u32 {
    match setting {
        YesNoAuto::Auto if cpus < 4 => max_messages / 2,
        _ => 0,
    }
}
