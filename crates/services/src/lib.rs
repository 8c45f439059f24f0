//! The service engine and the services built so far: evs, cpg, cfg, cmap
//! and quorum/votequorum. The SA Forum AIS services (clm, ckpt, evt, lck,
//! msg, tmr, amf) have their service ids reserved in [`proto::service`] and
//! are not built: the engine answers their requests with NOT_SUPPORTED.
//!
//! Role (see `ARCHITECTURE.md`): dispatch of delivered messages and client
//! requests, and the post-membership sync protocol. Sans-IO like
//! `totem-ring`: a service sees delivered messages, configuration changes,
//! sync callbacks, timers and client requests tagged by an opaque
//! connection id, and answers with multicasts, replies, events and timer
//! requests. Depends on `totem-ring` for types only.
//!
//! [`proto`] is the client ⇄ daemon protocol, shared with the client
//! libraries. [`Engine`] is what the daemon drives; every service
//! implements [`Service`].
//!
//! # Totem message format
//!
//! Every payload the engine multicasts starts with a 4-byte header
//! (little endian): `u16 service id`, `u16 message kind`, then the body of
//! that service's executive message. The sync protocol's own messages use
//! the reserved service id [`wire::SYNC_SERVICE`] (`0xFFFE`). A delivered
//! payload that is too short, names an unknown service or kind, or whose
//! body does not decode is counted in [`EngineStats::malformed`] and
//! dropped; it never panics.
//!
//! # Ordering contract with the runtime
//!
//! The runtime must submit the engine's multicasts to Totem in the order
//! the engine emitted them (FIFO per node), queueing what Totem refuses.
//! CPG's sync relies on it: a node's join list is delivered after every
//! join/leave that node sent before it.
#![forbid(unsafe_code)]

pub mod cfg;
pub mod cmap;
pub mod cpg;
mod engine;
pub mod evs;
pub mod proto;
pub mod quorum;
mod service;
pub mod votequorum;
pub mod wire;

#[cfg(test)]
mod test_support;

pub use engine::{Engine, EngineConfig, EngineStats};
pub use service::{ConfChange, Creds, Ctx, Env, Service, SyncProgress, SyncRound, DELIVER_HEAD};
pub use totem_ring::Instant;
pub use totem_ring::{ConfigKind, Guarantee, NodeId, RingId};
pub use votequorum::{QuorumConfig, TieBreaker, MAX_VOTES};

/// Opaque id of a client connection, chosen by the runtime.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

/// Header of a reply frame the runtime sends back on the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ReplyTo {
    pub service: u16,
    pub kind: u16,
    pub request_id: u64,
}

/// How full Totem's send queue (plus the runtime's overflow queue) is.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendRoom {
    pub queued_msgs: u32,
    pub cap_msgs: u32,
    pub queued_bytes: u32,
    pub cap_bytes: u32,
}

impl SendRoom {
    /// Corosync's admission rule: refuse new client traffic once the queue
    /// is at least 75% full, in messages or in bytes. A zero capacity means
    /// the runtime does not bound that dimension (never congested by it).
    pub fn congested(&self) -> bool {
        fn over(q: u32, cap: u32) -> bool {
            cap != 0 && u64::from(q) * 4 >= u64::from(cap) * 3
        }
        over(self.queued_msgs, self.cap_msgs) || over(self.queued_bytes, self.cap_bytes)
    }
}

/// What the engine asks the runtime to do; implemented by the daemon (and
/// by the tests).
pub trait Output {
    /// Submit to Totem. Infallible from the engine's view (the runtime
    /// queues what Totem refuses, bounded by the engine's own admission
    /// control). `parts` are concatenated into one message.
    fn multicast(&mut self, guarantee: Guarantee, parts: &[&[u8]]);
    /// A response frame to a request (payload = parts concatenated, starts
    /// with the u32 CsError code).
    fn respond(&mut self, conn: ConnId, to: ReplyTo, parts: &[&[u8]]);
    /// An event frame (service, kind) to one connection. Returns false when
    /// the connection could not take it (gone, or disconnected as too
    /// slow); the engine then treats the connection as disconnecting (a
    /// `disconnect` call still follows from the runtime).
    fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool;
    /// Ask the runtime to drop a connection (protocol abuse).
    fn disconnect(&mut self, conn: ConnId, why: &'static str);
    /// How full Totem's send queue is right now (for TRY_AGAIN admission).
    fn send_room(&self) -> SendRoom;
    /// A service asks the daemon itself to act (cfg: kill, shutdown,
    /// reload, reopen logs). Ignored by default.
    fn control(&mut self, _req: Control) {}
}

/// What a service may ask of the daemon (see [`Output::control`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Control {
    /// Leave the ring and exit (kill node, shutdown).
    Exit { reason: String },
    /// Re-read the configuration file and hand its keys to
    /// [`Engine::config_reloaded`].
    ReloadConfig,
    /// Reopen the log files.
    ReopenLogFiles,
    /// Restart the stats map's counters from zero (`stats.clear.<what>`:
    /// `ipc`, `totem`, `knet` or `all`).
    ClearStats { what: String },
    /// Who may open an IPC session besides root changed (a `uidgid.*` key
    /// of the icmap was set, deleted or reloaded): every uid and gid
    /// allowed now, the whole set (cmap's `uidgid.uid.N`,
    /// `uidgid.config.uid.N`, `uidgid.gid.N`, `uidgid.config.gid.N` with
    /// the u8 value 1, as Corosync's connection check reads them).
    IpcAccess { uids: Vec<u32>, gids: Vec<u32> },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn congestion_threshold_is_75_percent() {
        let room = |m, b| SendRoom {
            queued_msgs: m,
            cap_msgs: 100,
            queued_bytes: b,
            cap_bytes: 1000,
        };
        assert!(!room(74, 0).congested());
        assert!(room(75, 0).congested());
        assert!(!room(0, 749).congested());
        assert!(room(0, 750).congested());
        assert!(!SendRoom::default().congested());
    }
}
