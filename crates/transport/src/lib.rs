//! UDP transport for corosync-rs: multicast and unicast-to-all (udpu),
//! IPv4/IPv6, an io_uring engine (multishot receive into a registered
//! provided-buffer ring, batched sends, UDP GSO/GRO) and a batched-syscall
//! fallback (`sendmmsg`/`recvmmsg`), with AEAD sealing under the cluster key.
//!
//! The transport knows bytes and node addresses only; Totem lives elsewhere.
//!
//! ```no_run
//! use transport::{Cipher, ClusterKey, Dest, NodeId, Transport, TransportConfig};
//!
//! let me = "10.0.0.1:5405".parse().unwrap();
//! let mut cfg = TransportConfig::new(NodeId(1), me);
//! cfg.members = vec![(NodeId(1), me), (NodeId(2), "10.0.0.2:5405".parse().unwrap())];
//! cfg.crypto.cipher = Cipher::from_corosync("aes256", "sha256").unwrap();
//! cfg.crypto.key = Some(ClusterKey::load("/etc/corosync/authkey".as_ref()).unwrap());
//! cfg.crypto.cluster_name = "mycluster".into();
//! let mut t = Transport::new(cfg).unwrap();
//! println!("{:?}", t.status()); // engine, GSO/GRO, cipher
//! t.send_batch(&[(Dest::Multicast, b"frame".as_slice())]).unwrap();
//! t.recv(Some(std::time::Duration::from_millis(10)), |r| {
//!     // r.payload was opened in place in the receive buffer.
//!     let _ = (r.node, r.from, &r.payload);
//! })
//! .unwrap();
//! ```
//!
//! The engine is chosen by `TransportConfig::engine` (auto, io_uring,
//! fallback) and overridden by `COROSYNC_RS_TRANSPORT=fallback|io_uring`.
//! `unsafe` is confined to the engines, the socket helpers and the buffer
//! ring; every block carries a `// SAFETY:` note.

mod config;
pub mod crypto;
mod error;
mod fallback;
pub mod frame;
mod ifaddrs;
pub mod os;
mod probe;
pub mod runloop;
mod sockaddr;
mod socket;
mod transport;
mod uring;

pub use config::{CryptoConfig, EngineChoice, Mode, NodeId, TransportConfig, ENGINE_ENV_VAR};
pub use crypto::{Cipher, ClusterKey, CryptoError};
pub use error::TransportError;
pub use frame::{DropReason, FrameCodec, FrameStats};
pub use ifaddrs::{local_addresses, LocalAddr};
pub use probe::{probe_uring, UringProbe};
pub use runloop::{
    block_signals, Doorbell, Handler, RealtimePolicy, RunLoop, RunLoopConfig, Source,
};
pub use transport::{
    open_datagram, Dest, EngineKind, Received, SendReport, Status, Transport, TransportStats,
};
