//! What the runtime adds to the service engine for cmap and cfg: the
//! `stats.*` snapshot (Totem, transport, IPC), token rotation timing, the
//! byte counters, and the configuration reload.
//!
//! Key names follow Corosync's where a counterpart exists
//! (`stats.srp.mcast_tx`, `stats.srp.orf_token_rx`, `stats.srp.mtt_rx_token`,
//! `stats.ipcs.global.active`…); the rest are ours (`stats.transport.*`,
//! `stats.srp.dropped.<reason>`, `stats.ipcs.conn.<id>.*`).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use ipc_shm::Server;
use services::proto::cmap::Value;
use services::Engine;
use totem_ring::Totem;
use transport::{Status, TransportStats};

/// How often the stats map is refreshed at most while nobody asks.
pub const REFRESH: Duration = Duration::from_secs(1);
/// A cmap request refreshes the snapshot when it is older than this.
pub const FRESH: Duration = Duration::from_millis(100);

const DROP_NAMES: [&str; totem_ring::DROP_REASONS] = [
    "truncated",
    "bad_magic",
    "bad_version",
    "bad_type",
    "malformed",
    "oversized",
    "forged",
    "foreign_ring",
    "stale_token",
    "stale_membership",
    "out_of_window",
    "too_many_members",
];

/// The runtime's extra state for cmap/cfg.
pub struct Extras {
    /// The file a reload re-reads (None: the built-in configuration).
    pub config_file: Option<PathBuf>,
    /// The icmap keys the configuration gave, as last loaded.
    pub keys: Vec<(String, Value)>,
    pub status: Status,
    pub transport: TransportStats,
    pub bytes_tx: u64,
    pub bytes_rx: u64,
    /// Receive back-pressure (a local client's events spilling): episodes
    /// and their total length in microseconds.
    pub backpressure_episodes: u64,
    pub backpressure_us: u64,
    /// The node list a reload read (node id, ring0 address, name), for the
    /// run loop to hand to the transport (it owns it).
    pub reloaded_nodes: Option<Vec<(u32, std::net::IpAddr, String)>>,
    /// Counter values at the last `clear`, subtracted in `snapshot`.
    baseline: std::collections::HashMap<String, u64>,
    last_refresh: Option<Instant>,
    /// A connection opened or closed since the snapshot (its
    /// `stats.ipcs.conn.*` keys are out of date).
    sessions_changed: bool,
    last_visit: Option<Instant>,
    rotation_last_us: u64,
    rotation_avg_us: u64,
    rotations: u64,
    /// Where the token's time in this daemon goes: from the first datagram
    /// of the run-loop turn that read the token to its handling (Totem's
    /// handling of the datagrams read ahead of it; summed over every token
    /// read), to
    /// its send being handed to the kernel, and that send itself (which,
    /// between namespaces on one machine, runs the receivers' side too;
    /// both summed over the visits timed, `stats.srp.token_timed`: those
    /// whose datagrams went out before the next turn). With the visits a
    /// second and the ring's size they split a hop: what is not here is
    /// the token's wait in the socket while the daemon was busy, the
    /// wake-up, and the wire.
    token_timed: u64,
    token_queued_ns: u64,
    token_held_ns: u64,
    token_send_ns: u64,
    /// The first datagram of the turn whose token visit is not sent yet.
    token_turn_at: Option<Instant>,
}

impl Extras {
    pub fn new(config_file: Option<PathBuf>, keys: Vec<(String, Value)>, status: Status) -> Extras {
        Extras {
            config_file,
            keys,
            status,
            transport: TransportStats::default(),
            bytes_tx: 0,
            bytes_rx: 0,
            backpressure_episodes: 0,
            backpressure_us: 0,
            reloaded_nodes: None,
            baseline: std::collections::HashMap::new(),
            last_refresh: None,
            sessions_changed: false,
            last_visit: None,
            rotation_last_us: 0,
            rotation_avg_us: 0,
            rotations: 0,
            token_timed: 0,
            token_queued_ns: 0,
            token_held_ns: 0,
            token_send_ns: 0,
            token_turn_at: None,
        }
    }

    /// A datagram just handled was a token; the run-loop turn that read it
    /// read its first datagram at `turn_at`.
    pub fn token_read(&mut self, turn_at: Instant) {
        self.token_turn_at = Some(turn_at);
        self.token_queued_ns += turn_at.elapsed().as_nanos() as u64;
    }

    /// This node forwarded the token: the time since the previous visit
    /// is one rotation.
    pub fn token_visit(&mut self) {
        let now = Instant::now();
        if let Some(prev) = self.last_visit.replace(now) {
            let us = now.duration_since(prev).as_micros() as u64;
            self.rotation_last_us = us;
            self.rotation_avg_us = if self.rotations == 0 {
                us
            } else {
                (self.rotation_avg_us * 7 + us) / 8
            };
            self.rotations += 1;
        }
    }

    /// A new run-loop turn begins: a visit whose datagrams did not go out
    /// before it (an idle token held) is not timed.
    pub fn turn_begins(&mut self) {
        self.token_turn_at = None;
    }

    /// Whether a token visit waits to be sent: then the caller times the
    /// send (`sending` just before, `sent` just after) for
    /// [`Extras::token_sent`].
    pub fn token_unsent(&self) -> bool {
        self.token_turn_at.is_some()
    }

    /// The send of the last visit's datagrams began at `sending` and
    /// returned at `sent`.
    pub fn token_sent(&mut self, sending: Instant, sent: Instant) {
        if let Some(t0) = self.token_turn_at.take() {
            self.token_timed += 1;
            self.token_held_ns += sending.saturating_duration_since(t0).as_nanos() as u64;
            self.token_send_ns += sent.saturating_duration_since(sending).as_nanos() as u64;
        }
    }

    /// Whether the snapshot is older than `age`.
    pub fn older_than(&self, age: Duration) -> bool {
        self.last_refresh.is_none_or(|t| t.elapsed() >= age)
    }

    /// Whether a cmap request must see a new snapshot: the old one is
    /// older than [`FRESH`] or misses a connection opened or closed since
    /// (a client listing the stats map finds its own connection there).
    pub fn stale_for_request(&self) -> bool {
        self.sessions_changed || self.older_than(FRESH)
    }

    /// A connection opened or closed.
    pub fn sessions_changed(&mut self) {
        self.sessions_changed = true;
    }

    /// The stats map as of now (for [`Engine::set_stats`]), counters
    /// counted from their last `clear`.
    pub fn snapshot(
        &mut self,
        totem: &Totem,
        server: &Server,
        engine: &Engine,
    ) -> Vec<(String, Value)> {
        self.last_refresh = Some(Instant::now());
        self.sessions_changed = false;
        let mut k = self.raw_snapshot(totem, server, engine);
        for (name, v) in k.iter_mut() {
            if let (Value::U64(x), Some(base)) = (v, self.baseline.get(name.as_str())) {
                *x = x.saturating_sub(*base);
            }
        }
        k
    }

    /// `corosync-cmapctl -C WHAT` (a set of `stats.clear.WHAT`): the
    /// counters of `totem` (`stats.srp.*`), `knet` (our transport's
    /// `stats.transport.*`), `ipc` (`stats.ipcs.global.*`, `stats.service.*`)
    /// or `all` start again from zero. Gauges (rotation times, active
    /// connections) and the per-connection keys are not counters and stay.
    pub fn clear(&mut self, what: &str, totem: &Totem, server: &Server, engine: &Engine) {
        for (name, v) in self.raw_snapshot(totem, server, engine) {
            if let Value::U64(x) = v {
                if clears(what, &name) {
                    self.baseline.insert(name, x);
                }
            }
        }
        self.last_refresh = None;
    }

    fn raw_snapshot(
        &mut self,
        totem: &Totem,
        server: &Server,
        engine: &Engine,
    ) -> Vec<(String, Value)> {
        let mut k: Vec<(String, Value)> = Vec::with_capacity(96);
        let mut u64k = |name: &str, v: u64| k.push((format!("stats.{name}"), Value::U64(v)));
        let t = totem.stats();
        u64k("srp.orf_token_rx", t.tokens_received);
        u64k("srp.orf_token_tx", self.rotations);
        u64k("srp.token_retransmits", t.token_retransmits);
        u64k("srp.mcast_tx", t.frames_sent);
        u64k("srp.mcast_retx", t.frames_retransmitted);
        u64k("srp.mcast_rx", t.frames_received);
        u64k("srp.duplicate_frames", t.duplicate_frames);
        u64k("srp.msgs_delivered", t.messages_delivered);
        u64k("srp.bytes_delivered", t.bytes_delivered);
        u64k("srp.datagrams_rx", t.datagrams_received);
        u64k("srp.membership_changes", t.config_changes);
        u64k("srp.operational_token_lost", t.token_lost);
        u64k("srp.failed_to_receive", t.failed_to_receive);
        u64k("srp.trans_discarded", t.trans_discarded);
        u64k("srp.held_token_revisits", t.held_token_revisits);
        u64k("srp.refs_copied", t.refs_copied);
        u64k("srp.rx_msg_dropped", t.drops_total);
        for (name, n) in DROP_NAMES.iter().zip(t.drops.iter()) {
            u64k(&format!("srp.dropped.{name}"), *n);
        }
        u64k("srp.mtt_rx_token", self.rotation_avg_us / 1000);
        u64k("srp.token_rotation_us", self.rotation_last_us);
        u64k("srp.token_rotation_avg_us", self.rotation_avg_us);
        u64k("srp.token_timed", self.token_timed);
        u64k("srp.token_queued_ns", self.token_queued_ns);
        u64k("srp.token_held_ns", self.token_held_ns);
        u64k("srp.token_send_ns", self.token_send_ns);
        let x = &self.transport;
        u64k("transport.bytes_tx", self.bytes_tx);
        u64k("transport.bytes_rx", self.bytes_rx);
        u64k("transport.frames_tx", x.frames_sent);
        u64k("transport.frames_rx", x.frames_received);
        u64k("transport.datagrams_tx", x.datagrams_sent);
        u64k("transport.datagrams_rx", x.datagrams_received);
        u64k("transport.gso_sends", x.gso_sends);
        u64k("transport.gro_datagrams", x.gro_datagrams);
        u64k("transport.send_errors", x.send_errors);
        u64k("transport.recv_errors", x.recv_errors);
        u64k("transport.no_buffers", x.no_buffers);
        let f = &x.frames;
        u64k(
            "transport.dropped.total",
            f.dropped() + x.unknown_source + x.unknown_dest,
        );
        u64k("transport.dropped.auth_failed", f.auth_failed);
        u64k("transport.dropped.replayed", f.replayed);
        u64k("transport.dropped.bad_magic", f.bad_magic);
        u64k("transport.dropped.bad_version", f.bad_version);
        u64k("transport.dropped.cipher_mismatch", f.cipher_mismatch);
        u64k("transport.dropped.unknown_cipher", f.unknown_cipher);
        u64k("transport.dropped.too_short", f.too_short + f.truncated);
        u64k("transport.dropped.oversize", f.oversize);
        u64k("transport.dropped.unknown_source", x.unknown_source);
        u64k("transport.dropped.unknown_dest", x.unknown_dest);
        let ss = server.stats();
        u64k("ipcs.global.accepted", ss.accepted);
        u64k("ipcs.global.refused", ss.refused);
        u64k("ipcs.global.requests", ss.requests);
        u64k("ipcs.global.closed", ss.disconnected);
        u64k("ipcs.global.barriers", ss.barriers);
        u64k("ipcs.global.barrier_failures", ss.barrier_failures);
        u64k("ipcs.global.lost_wakeups", ss.lost_wakeups);
        let es = engine.stats();
        u64k("ipcs.global.try_again", es.try_again);
        u64k(
            "ipcs.global.backpressure_episodes",
            self.backpressure_episodes,
        );
        u64k("ipcs.global.backpressure_us", self.backpressure_us);
        u64k("service.syncs_completed", es.syncs_completed);
        u64k("service.events_refused", es.events_refused);
        let st = &self.status;
        let engine_name = match st.engine {
            transport::EngineKind::IoUring => "io_uring",
            transport::EngineKind::Fallback => "fallback",
        };
        k.push((
            "stats.transport.engine".into(),
            Value::Str(engine_name.into()),
        ));
        k.push(("stats.transport.gso".into(), Value::U8(st.gso as u8)));
        k.push(("stats.transport.gro".into(), Value::U8(st.gro as u8)));
        k.push(("stats.transport.sqpoll".into(), Value::U8(st.sqpoll as u8)));
        k.push((
            "stats.transport.send_zc".into(),
            Value::U8(st.send_zc as u8),
        ));
        let cipher = format!("{:?}", st.cipher).to_lowercase();
        k.push(("stats.transport.cipher".into(), Value::Str(cipher)));
        if let Some(r) = &st.fallback_reason {
            k.push((
                "stats.transport.fallback_reason".into(),
                Value::Str(r.clone()),
            ));
        }
        let mut active = 0u64;
        for s in server.session_info() {
            active += 1;
            let p = format!("stats.ipcs.conn.{}", s.id.as_u64());
            let flow = u32::from(s.event_overflow_frames > 0);
            k.push((format!("{p}.pid"), Value::U32(s.creds.pid as u32)));
            k.push((format!("{p}.uid"), Value::U32(s.creds.uid)));
            k.push((format!("{p}.requests"), Value::U64(s.requests)));
            k.push((format!("{p}.responses"), Value::U64(s.responses)));
            k.push((format!("{p}.dispatched"), Value::U64(s.events)));
            k.push((format!("{p}.queue_size"), Value::U64(s.event_ring_bytes)));
            k.push((
                format!("{p}.overflow_frames"),
                Value::U64(s.event_overflow_frames as u64),
            ));
            k.push((format!("{p}.flow_control"), Value::U32(flow)));
        }
        k.push(("stats.ipcs.global.active".into(), Value::U64(active)));
        k
    }
}

fn clears(what: &str, key: &str) -> bool {
    const GAUGES: [&str; 4] = [
        ".mtt_rx_token",
        ".token_rotation_us",
        ".token_rotation_avg_us",
        ".active",
    ];
    if GAUGES.iter().any(|g| key.ends_with(g)) || key.starts_with("stats.ipcs.conn.") {
        return false;
    }
    match what {
        "totem" => key.starts_with("stats.srp."),
        "knet" => key.starts_with("stats.transport."),
        "ipc" => key.starts_with("stats.ipcs.") || key.starts_with("stats.service."),
        "all" => true,
        _ => false,
    }
}

/// Applies a configuration read again after a cfg reload request
/// ([`crate::reloader`] reads it off the protocol thread): the new keys
/// (logged: which changes need a restart), or why it failed.
pub fn reload(
    extras: &mut Extras,
    totem: &mut Totem,
    read: crate::reloader::ReadResult,
) -> Result<Vec<(String, Value)>, String> {
    let cfg = read?;
    // Logging first, so that what the reload says goes to the new targets.
    if let Err(e) = crate::logging::reconfigure(&crate::setup::logging(&cfg)) {
        tracing::error!("configuration reload: logging not changed: {e}");
    }
    let keys = crate::cmap_keys::keys(&cfg);
    extras.reloaded_nodes = Some(
        cfg.nodes
            .iter()
            .map(|n| (n.nodeid, n.ring0_addr(), n.name.clone().unwrap_or_default()))
            .collect(),
    );
    // Totem's runtime-changeable timings; the message size limit is not
    // one of them (set_timings ignores it).
    let timings = crate::setup::totem_config(&cfg, 0);
    let before = totem.config().clone();
    let totem_applied = match totem.set_timings(&timings) {
        Ok(()) => {
            if *totem.config() != before {
                let c = totem.config();
                tracing::info!(
                    "totem timings now: token {} ms, token_retransmit {} ms, hold {} ms, \
                     join {} ms, consensus {} ms, merge {} ms, window_size {}, max_messages {}",
                    c.token,
                    c.token_retransmit_ms(),
                    c.hold_ms(),
                    c.join,
                    c.consensus_ms(),
                    c.merge,
                    c.window_size,
                    c.max_messages
                );
            }
            true
        }
        Err(e) => {
            tracing::error!("configuration reload: totem timings not changed: {e}");
            false
        }
    };
    let mut keys = keys;
    if !totem_applied {
        // runtime.config.totem.* are the values Totem runs with: still the old ones.
        for (k, v) in keys.iter_mut() {
            if k.starts_with("runtime.config.totem.") {
                if let Some((_, old)) = extras.keys.iter().find(|(o, _)| o == k) {
                    *v = old.clone();
                }
            }
        }
    }
    let restart = crate::cmap_keys::needing_restart(&extras.keys, &keys, totem_applied);
    if restart.is_empty() {
        tracing::info!("configuration reloaded");
    } else {
        tracing::warn!(
            "configuration reloaded; these changes take effect at the next restart: {}",
            restart.join(", ")
        );
    }
    extras.keys = keys.clone();
    Ok(keys)
}
