//! The protocol thread: transport ⇄ totem-ring ⇄ services ⇄ ipc-shm.
//!
//! One place to wait: the transport's run loop (io_uring_enter, or
//! epoll_wait in the fallback engine). Registered there: the sockets, the
//! IPC server's epoll set (one fd for the listener and every session),
//! the ring-seq writer's completion doorbell, a stop doorbell and the
//! signals SIGTERM, SIGINT and SIGHUP. The wait is bounded by Totem's next
//! timer. Nothing else on this thread blocks: the ring seq is written by a
//! helper thread ([`crate::persist`]), log lines go to a writer thread
//! ([`crate::logging`]).
//!
//! Order inside one turn: datagrams are fed to Totem as they arrive and
//! what Totem then delivers goes straight to the service engine, which
//! writes events into the clients' rings; then timers, the IPC requests,
//! the multicasts the engine asked for (submitted while Totem's queue has
//! room, kept in order otherwise), and last the datagrams Totem wants sent,
//! in one batch.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use ipc_shm::{Event as IpcEvent, FrameHeader, PollLoop, Server, ServerConfig, SessionId};
use services::{ConnId, Control, Engine, EngineConfig, Output, ReplyTo, SendRoom};
use totem_ring::{ConfigKind, Destination, Event, Guarantee, Instant, Totem};
use transport::{
    Dest, Handler, Received, RunLoop, RunLoopConfig, Source, Transport, TransportConfig,
};

use crate::persist::{load_ring_seq, Persister};
use crate::reloader::Reloader;
use crate::stats_map::{self, Extras};

/// Everything the runtime needs, resolved from the configuration.
pub struct RuntimeConfig {
    pub nodeid: u32,
    pub transport: TransportConfig,
    pub totem: totem_ring::Config,
    /// Every known node (id, address, name) for the membership log lines.
    pub nodes: Vec<(u32, SocketAddr, String)>,
    pub state_dir: PathBuf,
    pub ipc: ServerConfig,
    pub run_loop: RunLoopConfig,
    /// The configuration as cmap keys, and the file a cfg reload re-reads
    /// (None: the built-in configuration).
    pub cmap_keys: Vec<(String, services::proto::cmap::Value)>,
    pub config_file: Option<PathBuf>,
    /// The quorum provider's settings (`quorum { }`).
    pub quorum: services::QuorumConfig,
}

/// Asks a running runtime to leave the ring and return (from any thread).
#[derive(Clone, Debug)]
pub struct StopHandle(transport::Doorbell);

impl StopHandle {
    pub fn stop(&self) {
        self.0.ring();
    }
}

#[derive(Debug, thiserror::Error)]
pub enum RuntimeError {
    #[error("transport: {0}")]
    Transport(#[from] transport::TransportError),
    #[error("IPC server on {endpoint}: {err}")]
    Ipc {
        endpoint: String,
        err: std::io::Error,
    },
    #[error("state directory: {0}")]
    State(String),
    #[error("totem configuration: {0}")]
    Totem(String),
}

const SRC_PERSIST: u32 = 1;
const SRC_STOP: u32 = 2;
const SRC_IPC: u32 = 3;
const SRC_RELOAD: u32 = 4;

/// How long a leaving node keeps running so its leave message goes out.
const LEAVE_GRACE: Duration = Duration::from_millis(200);
/// Multicasts the engine asked for that Totem could not take yet.
const PENDING_MAX: usize = 65_536;
/// IPC events handled per turn at most (then Totem gets its turn).
const IPC_BUDGET: usize = 256;
/// How long after this node last saw the token it counts on seeing it
/// again soon: meanwhile clients' request rings are read on every turn
/// of the run loop (and before the first frame a turn receives, so a
/// token finds them) instead of each request waking the daemon. A
/// multicast cannot leave before the token comes anyway. Doorbells come
/// back after this without a token, and at once when the ring is quiet
/// (`Totem::ring_quiet`).
const IPC_LAZY_WINDOW: Duration = Duration::from_millis(5);
/// The longest a local client that cannot keep up with its events holds
/// the senders back (local ones through paused requests, the other nodes'
/// through Totem's flow control); past that it is fed until its queue
/// overflows and it is disconnected as too slow, so a stuck client cannot
/// stop the cluster's traffic for good.
const BACKPRESSURE_MAX: Duration = Duration::from_secs(2);
/// Receive back-pressure ends sooner when the spilled events are not being
/// read for this long (see `State::refresh_backpressure`).
const BACKPRESSURE_STALL: Duration = Duration::from_millis(50);

/// Engine multicasts waiting for room in Totem's send queue.
#[derive(Default)]
struct Pending {
    q: VecDeque<(Guarantee, Vec<u8>)>,
    bytes: usize,
    free: Vec<Vec<u8>>,
    overflowed: u64,
    /// What services asked of the daemon (cfg), acted on after the turn.
    controls: Vec<Control>,
}

impl Pending {
    fn push(&mut self, g: Guarantee, parts: &[&[u8]]) {
        if self.q.len() >= PENDING_MAX {
            // The engine admits client messages only while Totem's queue
            // has room, so this needs a bug or a flood of internal
            // messages; say so loudly rather than grow without bound.
            self.overflowed += 1;
            tracing::error!(
                "{} multicasts already waiting for Totem; one dropped ({} so far)",
                self.q.len(),
                self.overflowed
            );
            return;
        }
        let mut v = self.free.pop().unwrap_or_default();
        v.clear();
        for p in parts {
            v.extend_from_slice(p);
        }
        self.bytes += v.len();
        self.q.push_back((g, v));
    }
}

/// The engine's view of the runtime.
struct Out<'a> {
    server: &'a mut Server,
    pending: &'a mut Pending,
    room: SendRoom,
    scratch: &'a mut Vec<u8>,
}

fn gather<'b>(scratch: &'b mut Vec<u8>, parts: &[&[u8]]) -> &'b [u8] {
    scratch.clear();
    for p in parts {
        scratch.extend_from_slice(p);
    }
    scratch
}

impl Output for Out<'_> {
    fn multicast(&mut self, guarantee: Guarantee, parts: &[&[u8]]) {
        self.pending.push(guarantee, parts);
    }

    fn respond(&mut self, conn: ConnId, to: ReplyTo, parts: &[&[u8]]) {
        let h = FrameHeader {
            service: to.service,
            kind: to.kind,
            request_id: to.request_id,
        };
        let payload = gather(self.scratch, parts);
        let session = SessionId::from_u64(conn.0);
        match self.server.respond(session, h, payload) {
            Ok(_) => {}
            // Larger than the client's response ring can ever hold: the
            // client gets CS_ERR_TOO_BIG (every response starts with its
            // error code) instead of waiting for an answer that cannot come.
            Err(ipc_shm::SendError::TooLarge) => {
                tracing::debug!(
                    "response of {} bytes to connection {} is larger than its ring",
                    payload.len(),
                    conn.0
                );
                let code = services::proto::CsError::TooBig.code().to_le_bytes();
                if let Err(e) = self.server.respond(session, h, &code) {
                    tracing::debug!("response to connection {}: {e}", conn.0);
                }
            }
            Err(e) => tracing::debug!("response to connection {}: {e}", conn.0),
        }
    }

    fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool {
        let h = FrameHeader {
            service,
            kind,
            request_id: 0,
        };
        // Published once per turn of the run loop (before it waits): a
        // token visit that delivers many messages wakes each client once.
        // The parts go straight into the client's event ring.
        let session = SessionId::from_u64(conn.0);
        match self.server.send_event_deferred(session, h, parts) {
            Ok(_) => true,
            // An event the client's event ring can never hold (a cmap
            // notification of two values near the icmap's limit to a client
            // with a small ring): dropping it would leave the client waiting
            // for it forever, so the client is disconnected, and says why.
            Err(ipc_shm::SendError::TooLarge) => {
                let len: usize = parts.iter().map(|p| p.len()).sum();
                tracing::warn!(
                    "event of {len} bytes (service {service}, kind {kind}) is larger than \
                     connection {}'s event ring; disconnecting it",
                    conn.0
                );
                self.server
                    .disconnect(session, "event larger than the client's event ring");
                false
            }
            Err(_) => false,
        }
    }

    fn disconnect(&mut self, conn: ConnId, why: &'static str) {
        self.server.disconnect(SessionId::from_u64(conn.0), why);
    }

    fn control(&mut self, req: Control) {
        self.pending.controls.push(req);
    }

    fn send_room(&self) -> SendRoom {
        let mut r = self.room;
        r.queued_msgs = r.queued_msgs.saturating_add(self.pending.q.len() as u32);
        r.queued_bytes = r.queued_bytes.saturating_add(self.pending.bytes as u32);
        r
    }
}

/// Everything but the run loop (which owns the transport): the loop's
/// handler.
struct State {
    origin: std::time::Instant,
    /// `Some` while the run loop's turn hands over frames and sources:
    /// then the first `now()` of the turn is taken and every later one in
    /// it returns the same (a clock read per received frame was 1–2% of a
    /// daemon at 1 KiB). Outside turns `now()` reads the clock, so time
    /// never goes backwards for Totem.
    turn_now: Option<Option<Instant>>,
    totem: Totem,
    engine: Engine,
    server: Server,
    ipc_poll: PollLoop,
    persister: Persister,
    /// Reads the file again for a reload, off this thread.
    reloader: Reloader,
    pending: Pending,
    scratch: Vec<u8>,
    /// The request being handled, swapped out of the IPC server's read
    /// buffer (`Server::take_request`).
    request_buf: Box<[u8]>,
    nodes: Vec<(u32, SocketAddr, String)>,
    /// Regular configuration changes to log after the turn.
    memberships_to_log: Vec<MembershipLog>,
    ipc_ready: bool,
    /// Receive back-pressure is on: a local client's events spill past its
    /// ring (`Server::events_backlogged`), for at most `BACKPRESSURE_MAX`.
    events_backlogged: bool,
    backlogged_since: Option<std::time::Instant>,
    /// When the current back-pressure episode began (for the statistics).
    backpressure_on_at: Option<std::time::Instant>,
    /// The overflow queues' bytes when last looked at, and when they last
    /// went down (a backlogged client reading): back-pressure holds only
    /// while that happens (`BACKPRESSURE_STALL`).
    overflow_seen: usize,
    drained_at: Option<std::time::Instant>,
    /// Request doorbells off: the token is moving (`IPC_LAZY_WINDOW`).
    ipc_lazy: bool,
    /// The request rings were read during this turn's frames.
    ipc_polled: bool,
    tokens_seen: u64,
    token_seen_at: std::time::Instant,
    leaving_since: Option<std::time::Instant>,
    syncs_logged: u64,
    tx_bufs: Vec<(Dest, Vec<u8>)>,
    tx_len: usize,
    extras: Extras,
}

impl State {
    fn now(&mut self) -> Instant {
        match self.turn_now {
            Some(Some(t)) => t,
            Some(None) => {
                let t = self.clock();
                self.turn_now = Some(Some(t));
                t
            }
            None => self.clock(),
        }
    }

    fn clock(&self) -> Instant {
        Instant(self.origin.elapsed().as_nanos() as u64)
    }

    fn room(&self) -> SendRoom {
        let cfg = self.totem.config();
        SendRoom {
            queued_msgs: self.totem.send_queue_msgs() as u32,
            cap_msgs: cfg.send_queue_messages,
            queued_bytes: self.totem.send_queue_bytes() as u32,
            cap_bytes: cfg.send_queue_bytes,
        }
    }

    /// Feeds what Totem has for the application to the engine.
    /// Moves the engine's clock and fires its due service timers.
    fn engine_timeout(&mut self, now: Instant) {
        let room = self.room();
        let mut out = Out {
            server: &mut self.server,
            pending: &mut self.pending,
            room,
            scratch: &mut self.scratch,
        };
        self.engine.handle_timeout(now, &mut out);
    }

    fn drain_totem(&mut self) {
        let room = self.room();
        let State {
            totem,
            engine,
            server,
            pending,
            scratch,
            persister,
            extras,
            memberships_to_log,
            ..
        } = self;
        while let Some(ev) = totem.poll_event() {
            let mut out = Out {
                server,
                pending,
                room,
                scratch,
            };
            match ev {
                Event::Deliver {
                    payload,
                    sender,
                    guarantee,
                    ..
                } => engine.deliver(sender, guarantee, payload, &mut out),
                Event::DeliverParts {
                    parts,
                    sender,
                    guarantee,
                    ..
                } => {
                    let pieces: Vec<&[u8]> = parts.iter().collect();
                    engine.deliver_parts(sender, guarantee, &pieces, &mut out);
                }
                Event::ConfigChange {
                    kind,
                    members,
                    left,
                    joined,
                    ring_id,
                } => {
                    if kind == ConfigKind::Transitional {
                        tracing::debug!(
                            "transitional membership towards ring {}.{:x}: {}",
                            ring_id.rep,
                            ring_id.seq,
                            names(members)
                        );
                    } else if memberships_to_log.len() < MAX_MEMBERSHIP_LOGS {
                        // Logged after the turn, where the transport can
                        // name the addresses it learned (multicast).
                        memberships_to_log.push(MembershipLog {
                            members: members.to_vec(),
                            left: left.to_vec(),
                            joined: joined.to_vec(),
                            ring: ring_id,
                        });
                    }
                    engine.config_change(kind, members, left, joined, ring_id, &mut out);
                }
                Event::PersistRingSeq(seq) => persister.request(seq),
                Event::TokenVisit { .. } => extras.token_visit(),
                Event::Sent { .. } => {}
            }
        }
        let done = engine.syncs_completed();
        if done > self.syncs_logged {
            self.syncs_logged = done;
            // Refused (TRY_AGAIN) until the first sync, as in Corosync;
            // taken before the line below is logged, so a client that
            // waits for that line finds the daemon taking connections.
            server.set_accepting(true);
            tracing::info!("Completed service synchronization, ready to provide service.");
        }
    }

    /// Hands the engine's multicasts to Totem while it has room.
    fn submit_pending(&mut self) {
        while let Some((g, msg)) = self.pending.q.front_mut() {
            // The message moves into Totem's queue; `msg` gets an empty
            // buffer back.
            let len = msg.len();
            match self.totem.submit_swap(msg, *g) {
                Ok(_) => {}
                Err(totem_ring::SubmitError::QueueFull) => break,
                Err(e) => {
                    tracing::warn!("multicast of {len} bytes refused by Totem: {e}");
                }
            }
            if let Some((_, v)) = self.pending.q.pop_front() {
                self.pending.bytes -= len;
                if self.pending.free.len() < 64 {
                    self.pending.free.push(v);
                }
            }
        }
    }

    /// Reads no IPC requests while the engine cannot admit client traffic
    /// (sync running, or Totem's queue with our pending multicasts ≥ 75%
    /// full): they wait in the clients' request rings, which fill, so
    /// pipelined senders (CPG MCAST_ASYNC) get TRY_AGAIN — back-pressure
    /// end to end, nothing refused then dropped. Connections and
    /// disconnections are still handled.
    fn update_ipc_pause(&mut self) {
        let mut room = self.room();
        room.queued_msgs = room.queued_msgs.saturating_add(self.pending.q.len() as u32);
        room.queued_bytes = room.queued_bytes.saturating_add(self.pending.bytes as u32);
        // A local client whose events spill past its ring, and reads them,
        // slows the local senders down rather than being fed until it is
        // disconnected as too slow (Corosync queues its events without
        // bound instead).
        let congested = self.engine.syncing() || room.congested() || self.events_backlogged;
        self.server.set_requests_paused(congested);
    }

    /// Receive back-pressure from local clients whose events spill: on
    /// while it lasts and the spilled events are being read (their bytes
    /// went down within `BACKPRESSURE_STALL`), for at most
    /// `BACKPRESSURE_MAX` per episode. Holding everyone back helps a
    /// client that reads slowly catch up; one that reads nothing (say a
    /// program that retries its sends on TRY_AGAIN and dispatches only
    /// after) gains nothing from it, and its own sends stalled for the
    /// whole `BACKPRESSURE_MAX` each time.
    fn refresh_backpressure(&mut self) {
        let backlogged = self.server.events_backlogged();
        let now = std::time::Instant::now();
        let since = match (backlogged, self.backlogged_since) {
            (false, _) => None,
            (true, None) => Some(now),
            (true, s) => s,
        };
        self.backlogged_since = since;
        let overflow = self.server.overflow_bytes();
        self.drained_at = match (since, self.drained_at) {
            (None, _) => None,
            (Some(_), None) => Some(now),
            (Some(_), Some(_)) if overflow < self.overflow_seen => Some(now),
            (Some(_), d) => d,
        };
        self.overflow_seen = overflow;
        let on = since.is_some_and(|t| t.elapsed() < BACKPRESSURE_MAX)
            && self
                .drained_at
                .is_some_and(|t| now.duration_since(t) < BACKPRESSURE_STALL);
        if on != self.events_backlogged {
            tracing::debug!("receive back-pressure {}", if on { "on" } else { "off" });
            let now = std::time::Instant::now();
            if on {
                self.extras.backpressure_episodes += 1;
                self.backpressure_on_at = Some(now);
            } else if let Some(t) = self.backpressure_on_at.take() {
                self.extras.backpressure_us += now.duration_since(t).as_micros() as u64;
            }
        }
        self.events_backlogged = on;
        self.totem.set_receive_congested(on);
    }

    /// Turns request doorbells off while the token circulates with new
    /// frames, and back on once the ring is quiet (the token may stop at
    /// the representative: a request made then would wait for the lazy
    /// window's end, up to 5 ms, as 1–3% of them did at 1000 msgs/s on a
    /// 16-CPU machine) or the token has not been seen for
    /// `IPC_LAZY_WINDOW`; returns how long the run loop may wait before
    /// that changes.
    fn update_ipc_lazy(&mut self) -> Option<Duration> {
        let tokens = self.totem.stats().tokens_received;
        let now = std::time::Instant::now();
        if tokens != self.tokens_seen {
            self.tokens_seen = tokens;
            self.token_seen_at = now;
        }
        let since = now.saturating_duration_since(self.token_seen_at);
        let lazy = self.totem.state() == totem_ring::MemberState::Operational
            && self.totem.members().len() > 1
            && self.leaving_since.is_none()
            && !self.totem.ring_quiet()
            && since < IPC_LAZY_WINDOW;
        if lazy != self.ipc_lazy {
            self.ipc_lazy = lazy;
            self.server.set_busy_poll(lazy);
        }
        if lazy {
            self.server.poll_busy();
            Some(IPC_LAZY_WINDOW - since)
        } else {
            None
        }
    }

    fn handle_ipc(&mut self) {
        self.refresh_backpressure();
        for _ in 0..IPC_BUDGET {
            self.update_ipc_pause();
            let room = self.room();
            let State {
                server,
                engine,
                pending,
                scratch,
                request_buf,
                extras,
                totem,
                ..
            } = self;
            let Some(ev) = server.next_event() else {
                break;
            };
            match ev {
                IpcEvent::Connected { session, creds } => {
                    tracing::debug!(
                        "IPC connection {session} from pid {} uid {} gid {}",
                        creds.pid,
                        creds.uid,
                        creds.gid
                    );
                    extras.sessions_changed();
                    engine.connect(
                        ConnId(session.as_u64()),
                        creds.pid as u32,
                        creds.uid,
                        creds.gid,
                    );
                }
                IpcEvent::Request {
                    session,
                    header,
                    payload,
                } => {
                    // The payload lies in the server's read buffer; the
                    // engine answers through the server, so the buffer is
                    // swapped out first (no copy).
                    let len = payload.len();
                    if request_buf.len() != server.request_buffer_len() {
                        *request_buf = vec![0u8; server.request_buffer_len()].into_boxed_slice();
                    }
                    server.take_request(request_buf);
                    let request = &request_buf[..len];
                    // cmap answers from a fresh statistics snapshot.
                    let stats = (header.service == services::proto::service::CMAP
                        && extras.stale_for_request())
                    .then(|| extras.snapshot(totem, server, engine));
                    let mut out = Out {
                        server,
                        pending,
                        room,
                        scratch,
                    };
                    if let Some(keys) = stats {
                        engine.set_stats(keys, &mut out);
                    }
                    engine.request(
                        ConnId(session.as_u64()),
                        header.service,
                        header.kind,
                        header.request_id,
                        request,
                        &mut out,
                    );
                }
                IpcEvent::Disconnected { session, reason } => {
                    tracing::debug!("IPC connection {session} closed: {reason}");
                    let mut out = Out {
                        server,
                        pending,
                        room,
                        scratch,
                    };
                    extras.sessions_changed();
                    engine.disconnect(ConnId(session.as_u64()), &mut out);
                }
            }
            self.submit_pending();
        }
    }

    fn poll_ipc_fds(&mut self) {
        loop {
            match self.ipc_poll.turn(&mut self.server, Some(Duration::ZERO)) {
                Ok(n) if n >= self.ipc_poll.batch() => continue,
                Ok(_) => break,
                Err(e) => {
                    tracing::error!("IPC poll: {e}");
                    break;
                }
            }
        }
    }

    fn refresh_stats(&mut self) {
        // Requests refused without an answer to carry the error (e.g. a
        // CPG MCAST_ASYNC from a connection that is not a member) are
        // client bugs: logged here, at most once per refresh.
        static BAD_LOGGED: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
        let bad = self.engine.stats().bad_requests;
        let logged = BAD_LOGGED.swap(bad, std::sync::atomic::Ordering::Relaxed);
        if bad > logged {
            tracing::warn!(
                "{} bad IPC requests (malformed, unknown, or a CPG mcast from a connection \
                 not in a group); {bad} since start",
                bad - logged
            );
        }
        let room = self.room();
        let keys = self
            .extras
            .snapshot(&self.totem, &self.server, &self.engine);
        let mut out = Out {
            server: &mut self.server,
            pending: &mut self.pending,
            room,
            scratch: &mut self.scratch,
        };
        self.engine.set_stats(keys, &mut out);
    }

    /// Acts on what the services asked (cfg, cmap): exit, reload, reopen
    /// logs, clear statistics, who may connect.
    fn act_on_controls(&mut self) {
        for c in std::mem::take(&mut self.pending.controls) {
            match c {
                Control::Exit { reason } => self.begin_leave(&reason),
                // Applied when the read is done (`on_source`, SRC_RELOAD).
                Control::ReloadConfig => self.reloader.request(),
                Control::ClearStats { what } => {
                    self.extras
                        .clear(&what, &self.totem, &self.server, &self.engine);
                    tracing::info!("statistics cleared: {what}");
                }
                Control::ReopenLogFiles => match crate::logging::reopen() {
                    Ok(()) => tracing::info!("log files reopened"),
                    Err(e) => tracing::error!("reopening log files: {e}"),
                },
                // cmap's `uidgid.*` keys are the whole rule from now on
                // (the configuration's entries are among them).
                Control::IpcAccess { uids, gids } => {
                    let a = self.server.authorization_mut();
                    let (u, g) = (uids.into_iter().collect(), gids.into_iter().collect());
                    if a.runtime_uids != u || a.runtime_gids != g || !a.configured.is_empty() {
                        // The lists come from client-writable keys: long
                        // ones are logged as counts.
                        if u.len() + g.len() <= 32 {
                            tracing::info!("IPC access now: uids {u:?}, gids {g:?} (and root)");
                        } else {
                            tracing::info!(
                                "IPC access now: {} uids, {} gids (and root)",
                                u.len(),
                                g.len()
                            );
                        }
                    }
                    a.configured.clear();
                    a.runtime_uids = u;
                    a.runtime_gids = g;
                }
            }
        }
    }

    /// A reloaded node list: members added or removed (udpu: whom frames
    /// go to and whose are heard; the addresses keep the current port).
    /// Totem notices a removed node as a failed one and an added one as a
    /// joining one, as for any membership change.
    fn apply_node_list(
        &mut self,
        transport: &mut transport::Transport,
        list: Vec<(u32, std::net::IpAddr, String)>,
    ) {
        let Some(port) = transport.local_addr().map(|a| a.port()) else {
            return;
        };
        if list.is_empty() {
            return; // multicast without a node list: addresses are learned
        }
        let me = self.totem.id();
        if !list.iter().any(|n| n.0 == me) {
            tracing::error!(
                "configuration reload: node {me} is not in the new node list; node list not changed"
            );
            return;
        }
        let nodes: Vec<(u32, SocketAddr, String)> = list
            .into_iter()
            .map(|(id, ip, name)| (id, SocketAddr::new(ip, port), name))
            .collect();
        if nodes == self.nodes {
            return;
        }
        let members: Vec<(transport::NodeId, SocketAddr)> = nodes
            .iter()
            .map(|(id, a, _)| (transport::NodeId(*id), *a))
            .collect();
        transport.set_members(&members);
        let ids: Vec<String> = nodes.iter().map(|n| n.0.to_string()).collect();
        tracing::info!("node list now: {}", ids.join(" "));
        self.nodes = nodes;
    }

    fn begin_leave(&mut self, why: &str) {
        if self.leaving_since.is_none() {
            tracing::info!("{why}: leaving the ring");
            let now = self.now();
            self.totem.leave(now);
            self.leaving_since = Some(std::time::Instant::now());
        }
    }

    /// Sends what Totem queued, in one batch.
    fn flush_transmits(&mut self, rl: &mut RunLoop) {
        self.collect_transmits();
        if self.tx_len == 0 {
            return;
        }
        let batch: Vec<(Dest, &[u8])> = self.tx_bufs[..self.tx_len]
            .iter()
            .map(|(d, b)| (*d, b.as_slice()))
            .collect();
        self.extras.bytes_tx += batch.iter().map(|(_, b)| b.len() as u64).sum::<u64>();
        let timed = self.extras.token_unsent().then(std::time::Instant::now);
        if let Err(e) = rl.transport().send_batch(&batch) {
            tracing::warn!("send: {e}");
        }
        if let Some(sending) = timed {
            self.extras.token_sent(sending, std::time::Instant::now());
        }
    }

    /// Moves Totem's datagrams into the send batch.
    fn collect_transmits(&mut self) {
        let now = self.now();
        self.tx_len = 0;
        loop {
            if self.tx_len == self.tx_bufs.len() {
                self.tx_bufs.push((Dest::Multicast, Vec::new()));
            }
            let slot = &mut self.tx_bufs[self.tx_len];
            // The datagram's buffer moves into the slot (no copy).
            let Some(d) = self.totem.poll_transmit_swap(now, &mut slot.1) else {
                break;
            };
            slot.0 = match d {
                Destination::Multicast => Dest::Multicast,
                Destination::Unicast(n) => Dest::Node(transport::NodeId(n)),
            };
            self.tx_len += 1;
        }
    }
}

impl Handler for State {
    fn on_frame(&mut self, f: Received<'_>) {
        self.extras.bytes_rx += f.payload.len() as u64;
        if self.ipc_lazy && !self.ipc_polled {
            // No doorbell announced what clients queued since the last
            // turn: read it before this frame (perhaps the token) is
            // handled.
            self.ipc_polled = true;
            self.server.poll_busy();
            self.handle_ipc();
        }
        // `now` is when this turn read its first datagram: a token visit's
        // time in the daemon is counted from there.
        let now = self.now();
        let tokens = self.totem.stats().tokens_received;
        self.totem.handle_datagram(now, Some(f.node.0), f.payload);
        if self.totem.stats().tokens_received != tokens {
            self.extras
                .token_read(self.origin + Duration::from_nanos(now.0));
        }
        // What the datagram made deliverable waits in Totem's queue until
        // the turn has read all it got (the run loop drains it after the
        // turn, a saturated visit's token sent first): a token read behind
        // a burst no longer waits for the engine's deliveries of the burst,
        // only for Totem's handling of its frames (Totem stores them and
        // delivers into its own event queue as it receives). 3 nodes here, all sending, 3 alternating
        // rounds each (`crates/bench/cpu-per-msg.sh`): 64 KiB 8.2 k against
        // 7.0 k msgs/s (token visits 1,404 against 1,167 a second), 1 KiB
        // +3% and +13%, 64 B unchanged. The queue is bounded by what one
        // turn receives (the buffer ring).
    }

    fn on_source(&mut self, s: Source) {
        match s {
            Source::Doorbell(SRC_PERSIST) => {
                if let Some(seq) = self.persister.take_completed() {
                    let now = self.now();
                    self.totem.handle_persisted(now, seq);
                }
            }
            Source::Doorbell(SRC_RELOAD) => {
                if let Some((read, covers)) = self.reloader.take() {
                    let keys = stats_map::reload(&mut self.extras, &mut self.totem, read);
                    if let Err(e) = &keys {
                        tracing::error!("configuration reload failed: {e}");
                    }
                    let room = self.room();
                    let mut out = Out {
                        server: &mut self.server,
                        pending: &mut self.pending,
                        room,
                        scratch: &mut self.scratch,
                    };
                    self.engine.config_reloaded(keys, covers, &mut out);
                }
            }
            Source::Doorbell(SRC_STOP) => self.begin_leave("stop requested"),
            Source::Fd(SRC_IPC) => self.ipc_ready = true,
            Source::Signal(sig) if sig == libc::SIGTERM || sig == libc::SIGINT => {
                self.begin_leave(if sig == libc::SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                })
            }
            Source::Signal(sig) => tracing::info!("signal {sig} ignored"),
            other => tracing::debug!("unexpected source {other:?}"),
        }
    }
}

fn names(ids: &[u32]) -> String {
    ids.iter()
        .map(|i| i.to_string())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A regular configuration change, logged once the turn is over.
struct MembershipLog {
    members: Vec<u32>,
    left: Vec<u32>,
    joined: Vec<u32>,
    ring: totem_ring::RingId,
}

/// At most this many changes wait to be logged (one turn sees one or two).
const MAX_MEMBERSHIP_LOGS: usize = 16;

/// Corosync's lines for a new ring: the ring, who joined and left, and
/// every member with its id and address (from the nodelist, else as the
/// transport learned it from the member's frames).
fn log_membership(
    m: &MembershipLog,
    nodes: &[(u32, SocketAddr, String)],
    transport: &transport::Transport,
) {
    tracing::info!(
        "A new membership ({}.{:x}) was formed. Members joined: {} left: {}",
        m.ring.rep,
        m.ring.seq,
        names(&m.joined),
        names(&m.left)
    );
    tracing::info!("Members[{}]: {}", m.members.len(), names(&m.members));
    for &id in &m.members {
        match nodes.iter().find(|n| n.0 == id) {
            Some((_, addr, name)) if !name.is_empty() => {
                tracing::info!("  processor {id} ({name}) at {}", addr.ip())
            }
            Some((_, addr, _)) => tracing::info!("  processor {id} at {}", addr.ip()),
            None => match transport.addr_of(transport::NodeId(id)) {
                Some(addr) => tracing::info!("  processor {id} at {}", addr.ip()),
                None => tracing::info!("  processor {id} (address not known yet)"),
            },
        }
    }
}

/// Runs the daemon on the calling thread (which becomes the pinned
/// protocol thread) until it has left the ring. `ready` gets a handle
/// that stops it, once everything is set up.
pub fn run(cfg: RuntimeConfig, ready: impl FnOnce(StopHandle)) -> Result<(), RuntimeError> {
    let loaded = load_ring_seq(&cfg.state_dir, cfg.nodeid).map_err(RuntimeError::State)?;
    let endpoint = format!("{:?}", cfg.ipc.endpoint);
    let transport = Transport::new(cfg.transport)?;
    {
        let st = transport.status();
        tracing::info!(
            "transport: {:?} engine (gso {}, gro {}, cipher {:?}){}",
            st.engine,
            st.gso,
            st.gro,
            st.cipher,
            st.fallback_reason
                .as_ref()
                .map(|r| format!("; fallback because {r}"))
                .unwrap_or_default()
        );
    }
    let mut rl = RunLoop::new(transport, &cfg.run_loop)?;
    rl.add_signals(&[libc::SIGTERM, libc::SIGINT, libc::SIGHUP])?;
    let persist_bell = rl.add_doorbell(SRC_PERSIST)?;
    let stop = StopHandle(rl.add_doorbell(SRC_STOP)?);
    let reload_bell = rl.add_doorbell(SRC_RELOAD)?;
    let persister = Persister::start(cfg.state_dir.clone(), cfg.nodeid, persist_bell)
        .map_err(|e| RuntimeError::State(format!("{}: {e}", cfg.state_dir.display())))?;
    let mut server = Server::new(cfg.ipc).map_err(|err| RuntimeError::Ipc {
        endpoint: endpoint.clone(),
        err,
    })?;
    tracing::info!(
        "ipc: clients publish requests {}",
        if server.light_requests() {
            "with plain stores (membarrier before the daemon sleeps)"
        } else {
            "with a locked instruction each"
        }
    );
    let mut ipc_poll = PollLoop::new().map_err(|err| RuntimeError::Ipc {
        endpoint: endpoint.clone(),
        err,
    })?;
    // Registers the listener before the first wait.
    ipc_poll
        .sync(&mut server)
        .map_err(|err| RuntimeError::Ipc {
            endpoint: endpoint.clone(),
            err,
        })?;
    rl.add_fd(ipc_poll.fd(), SRC_IPC)?;
    // Clients are told to try again until the first sync completes (as
    // Corosync refuses them): no service can answer before its state is
    // known.
    server.set_accepting(false);
    let origin = std::time::Instant::now();
    let totem = Totem::new(cfg.nodeid, cfg.totem, loaded, Instant(0))
        .map_err(|e| RuntimeError::Totem(e.to_string()))?;
    let mut state = State {
        origin,
        totem,
        engine: Engine::new(EngineConfig {
            initial_keys: cfg.cmap_keys.clone(),
            quorum: cfg.quorum.clone(),
            ..EngineConfig::new(cfg.nodeid)
        }),
        server,
        ipc_poll,
        persister,
        reloader: Reloader::new(cfg.config_file.clone(), move || reload_bell.ring()),
        pending: Pending::default(),
        scratch: Vec::new(),
        request_buf: Box::default(),
        nodes: cfg.nodes,
        memberships_to_log: Vec::new(),
        ipc_ready: true,
        ipc_lazy: false,
        events_backlogged: false,
        backlogged_since: None,
        backpressure_on_at: None,
        overflow_seen: 0,
        drained_at: None,
        ipc_polled: false,
        turn_now: None,
        tokens_seen: 0,
        token_seen_at: std::time::Instant::now(),
        leaving_since: None,
        syncs_logged: 0,
        tx_bufs: Vec::new(),
        tx_len: 0,
        extras: Extras::new(
            cfg.config_file,
            cfg.cmap_keys,
            rl.transport().status().clone(),
        ),
    };
    tracing::info!(
        "node {} started (ring seq {loaded} loaded from {}); IPC at {endpoint}",
        cfg.nodeid,
        cfg.state_dir.display()
    );
    ready(stop);
    loop {
        if state.ipc_ready {
            state.ipc_ready = false;
            state.poll_ipc_fds();
        }
        // The safety net under the clients' wake-ups (at most once per
        // `ipc_shm::PARKED_RECHECK`; the wait below ends in time for it).
        state.server.recheck_parked(std::time::Instant::now());
        let lazy_for = state.update_ipc_lazy();
        state.handle_ipc();
        let now = state.now();
        if state.totem.poll_timeout().is_some_and(|t| t <= now) {
            state.totem.handle_timeout(now);
        }
        state.engine_timeout(now);
        state.drain_totem();
        state.submit_pending();
        // The clients' events go out before the turn's datagrams: a
        // delivering node's client then waits for no UDP send of ours (each
        // 17-20 us here, the peer's receive and wake-up included).
        // Remote p50 at 1000 msgs/s 227 against 244 us (6 alternating
        // `cluster-bench --quick` rounds), 64 B throughput unchanged.
        state.server.publish_events();
        state.flush_transmits(&mut rl);
        state.extras.transport = rl.transport().stats();
        if state.extras.older_than(stats_map::REFRESH) {
            state.refresh_stats();
        }
        state.act_on_controls();
        for m in std::mem::take(&mut state.memberships_to_log) {
            log_membership(&m, &state.nodes, rl.transport());
        }
        if let Some(list) = state.extras.reloaded_nodes.take() {
            state.apply_node_list(rl.transport(), list);
        }
        if let Some(since) = state.leaving_since {
            if state.totem.state() == totem_ring::MemberState::Left
                && since.elapsed() >= LEAVE_GRACE
            {
                break;
            }
            if since.elapsed() >= LEAVE_GRACE * 5 {
                break;
            }
        }
        let now = state.now();
        let next = match (state.totem.poll_timeout(), state.engine.poll_timeout()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let mut wait = match next {
            Some(t) if t <= now => Duration::ZERO,
            Some(t) => Duration::from_nanos(t.0 - now.0),
            None => Duration::from_secs(1),
        };
        state.refresh_backpressure();
        state.update_ipc_pause();
        if state.server.has_work() || state.ipc_ready {
            wait = Duration::ZERO;
        }
        if state.leaving_since.is_some() {
            wait = wait.min(Duration::from_millis(10));
        }
        if let Some(d) = lazy_for {
            wait = wait.min(d);
        }
        if let Some(d) = state.server.recheck_in(std::time::Instant::now()) {
            wait = wait.min(d);
        }
        if state.events_backlogged {
            // Wakes to end the back-pressure once the spill is not read.
            wait = wait.min(BACKPRESSURE_STALL);
        }
        state.server.publish_events();
        state.ipc_polled = false;
        state.turn_now = Some(None);
        state.extras.turn_begins();
        let turned = rl.turn(Some(wait), &mut state);
        state.turn_now = None;
        turned?;
        // A visit that left messages queued (it sent all the window and
        // `max_messages` allowed: the ring is saturated) forwards the token
        // now, before client requests are read (a 1 MiB request is copied
        // twice) and the turn's other work: the token's round trip is then
        // what bounds throughput. A visit that sent everything keeps the
        // old order: the token leaves a little later and the next visits
        // carry more messages each (with 64-byte messages that batching is
        // worth more than the shorter rotation).
        if state.totem.send_queue_msgs() > 0 {
            state.flush_transmits(&mut rl);
        }
    }
    state.server.publish_events();
    tracing::info!("node {} left the ring; exiting", state.totem.id());
    Ok(())
}
