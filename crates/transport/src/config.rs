use std::net::SocketAddr;

use crate::crypto::{Cipher, ClusterKey};
use crate::TransportError;

/// The environment variable that forces an engine: `fallback` or `io_uring`.
pub const ENGINE_ENV_VAR: &str = "COROSYNC_RS_TRANSPORT";

/// A Totem node id as it appears in `corosync.conf` (`nodeid`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

/// How a multicast destination is reached.
#[derive(Clone, Debug)]
pub enum Mode {
    /// `transport: udp`: one send to `group` (mcastaddr:mcastport).
    Multicast { group: SocketAddr, ttl: u32 },
    /// `transport: udpu`: one send per member of the member list.
    Udpu,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineChoice {
    /// io_uring when the probe passes, otherwise the fallback.
    Auto,
    /// io_uring or a start-up error.
    IoUring,
    /// `sendmmsg`/`recvmmsg` with `epoll`.
    Fallback,
}

impl EngineChoice {
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "auto" | "" => Some(Self::Auto),
            "io_uring" | "iouring" | "uring" => Some(Self::IoUring),
            "fallback" | "sendmmsg" => Some(Self::Fallback),
            _ => None,
        }
    }

    /// The configured choice, overridden by [`ENGINE_ENV_VAR`] when set.
    pub fn effective(self) -> Result<Self, TransportError> {
        match std::env::var(ENGINE_ENV_VAR) {
            Ok(v) => Self::parse(&v).ok_or_else(|| {
                TransportError::Config(format!(
                    "{ENGINE_ENV_VAR}={v:?}: expected fallback, io_uring or auto"
                ))
            }),
            Err(_) => Ok(self),
        }
    }
}

#[derive(Clone, Debug)]
pub struct CryptoConfig {
    pub cipher: Cipher,
    /// Required when `cipher` is not [`Cipher::None`].
    pub key: Option<ClusterKey>,
    /// Authenticated as associated data: clusters with different names
    /// never accept each other's packets even under one key.
    pub cluster_name: String,
}

impl Default for CryptoConfig {
    fn default() -> Self {
        Self {
            cipher: Cipher::None,
            key: None,
            cluster_name: String::new(),
        }
    }
}

#[derive(Clone, Debug)]
pub struct TransportConfig {
    pub node_id: NodeId,
    /// Interface address and port (mcastport) this node binds to.
    pub bind: SocketAddr,
    pub mode: Mode,
    /// Every node's interface address, the local one included (udpu member
    /// list; in multicast mode the targets of unicast sends).
    pub members: Vec<(NodeId, SocketAddr)>,
    pub engine: EngineChoice,
    /// Deliver our own multicasts back to us (IP_MULTICAST_LOOP; in udpu
    /// mode, a send to the local member).
    pub loop_to_self: bool,
    /// SO_RCVBUF / SO_SNDBUF in bytes, forced when privileged.
    pub rcvbuf: Option<usize>,
    pub sndbuf: Option<usize>,
    /// DSCP code point (0..=63) written into TOS / traffic class.
    pub dscp: Option<u8>,
    /// Largest payload a caller may send (before framing overhead).
    pub max_frame: usize,
    /// Most frames one `send_batch` call seals before submitting.
    pub send_batch: usize,
    /// Receive buffers (io_uring buffer ring entries; power of two).
    pub recv_buffers: u16,
    /// Size of one receive buffer. UDP GRO needs 64 KiB plus headers.
    pub recv_buffer_size: usize,
    /// Coalesce equal-sized frames to one destination with UDP_SEGMENT.
    pub gso: bool,
    /// Ask for coalesced receives with UDP_GRO (needs large buffers).
    pub gro: bool,
    /// io_uring SENDMSG_ZC instead of SENDMSG. Off by default: inside one
    /// host the kernel copies anyway and it measured 10-25% slower; turn it
    /// on only where the benchmark shows it faster (NIC with zero-copy TX).
    pub send_zc: bool,
    /// Kernel SQ polling thread idle time in ms (io_uring only).
    pub sqpoll_idle_ms: Option<u32>,
    pub crypto: CryptoConfig,
}

/// Receive buffer size that holds a full GRO super-packet.
pub const GRO_BUFFER_SIZE: usize = 65_536 + 256;

impl TransportConfig {
    /// Defaults for one node; the caller fills in members and mode.
    pub fn new(node_id: NodeId, bind: SocketAddr) -> Self {
        Self {
            node_id,
            bind,
            mode: Mode::Udpu,
            members: Vec::new(),
            engine: EngineChoice::Auto,
            loop_to_self: true,
            rcvbuf: Some(16 << 20),
            sndbuf: Some(4 << 20),
            dscp: None,
            max_frame: 8_972,
            send_batch: 64,
            // 64 x 64 KiB: each GRO buffer holds up to 46 MTU-sized
            // frames; a larger ring only cycles through cache-cold memory
            // (measured: 1024 buffers ran ~25% slower than 64).
            recv_buffers: 64,
            recv_buffer_size: GRO_BUFFER_SIZE,
            gso: true,
            gro: true,
            send_zc: false,
            sqpoll_idle_ms: None,
            crypto: CryptoConfig::default(),
        }
    }

    pub(crate) fn validate(&self) -> Result<(), TransportError> {
        let bad = |m: String| Err(TransportError::Config(m));
        if self.max_frame == 0 || self.max_frame > 65_000 {
            return bad(format!("max_frame {} not in 1..=65000", self.max_frame));
        }
        if self.send_batch == 0 || self.send_batch > 1024 {
            return bad(format!("send_batch {} not in 1..=1024", self.send_batch));
        }
        if !self.recv_buffers.is_power_of_two() || self.recv_buffers > 32_768 {
            return bad(format!(
                "recv_buffers {} must be a power of two <= 32768",
                self.recv_buffers
            ));
        }
        if self.recv_buffer_size < 512 || self.recv_buffer_size > (1 << 20) {
            return bad(format!(
                "recv_buffer_size {} not in 512..=1048576",
                self.recv_buffer_size
            ));
        }
        if let Some(d) = self.dscp {
            if d > 63 {
                return bad(format!("dscp {d} > 63"));
            }
        }
        if let Mode::Multicast { group, .. } = &self.mode {
            if !group.ip().is_multicast() {
                return bad(format!("{group} is not a multicast address"));
            }
            if group.is_ipv4() != self.bind.is_ipv4() {
                return bad("mcastaddr and bind address differ in family".into());
            }
        }
        for (id, a) in &self.members {
            if a.is_ipv4() != self.bind.is_ipv4() {
                return bad(format!("member {id:?} {a} differs in family from bind"));
            }
        }
        Ok(())
    }
}
