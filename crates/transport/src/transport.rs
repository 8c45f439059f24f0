//! The public transport: framing + crypto over one of the two engines.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::os::fd::{AsRawFd, RawFd};
use std::time::Duration;

use socket2::{SockAddr, Socket};

use crate::config::{EngineChoice, Mode, TransportConfig};
use crate::crypto::Cipher;
use crate::fallback::Fallback;
use crate::frame::{FrameCodec, FrameStats};
use crate::probe::{probe_uring, UringProbe};
use crate::uring::Uring;
use crate::{NodeId, TransportError};

/// Largest UDP payload a GSO send may carry in total.
const GSO_MAX_BYTES: usize = 65_000;
/// Most segments per GSO send (the kernel's UDP_MAX_SEGMENTS is 64 on older kernels).
const GSO_MAX_SEGS: usize = 64;

/// Where a frame goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Dest {
    /// The multicast group, or every member in udpu mode.
    Multicast,
    /// One node (Totem's token, retransmits to one node).
    Node(NodeId),
}

/// One received frame, opened in place in the receive buffer. The buffer
/// goes back to the kernel when the callback returns.
pub struct Received<'a> {
    pub node: NodeId,
    pub from: SocketAddr,
    pub payload: &'a mut [u8],
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EngineKind {
    IoUring,
    Fallback,
}

/// What is running; the statistics map exposes it.
#[derive(Clone, Debug)]
pub struct Status {
    pub engine: EngineKind,
    pub gso: bool,
    pub gro: bool,
    pub cipher: Cipher,
    pub sqpoll: bool,
    pub send_zc: bool,
    /// The io_uring probe (None when the fallback was forced by config or
    /// environment and no probe ran).
    pub probe: Option<UringProbe>,
    /// Why the fallback runs, when it does.
    pub fallback_reason: Option<String>,
}

#[derive(Clone, Copy, Debug, Default)]
pub struct TransportStats {
    pub frames: FrameStats,
    pub frames_sent: u64,
    pub datagrams_sent: u64,
    pub gso_sends: u64,
    pub send_errors: u64,
    pub datagrams_received: u64,
    pub frames_received: u64,
    pub gro_datagrams: u64,
    pub unknown_source: u64,
    /// Frames addressed to a node whose address is unknown (dropped).
    pub unknown_dest: u64,
    /// Node addresses learned from received frames (multicast mode).
    pub learned_nodes: u64,
    pub recv_errors: u64,
    pub no_buffers: u64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SendReport {
    /// Frames sealed.
    pub frames: usize,
    /// Datagrams handed to the kernel successfully (a GSO send counts its
    /// segments).
    pub datagrams: usize,
    pub errors: usize,
}

/// One send operation: `iov_len` iovecs from `iov_start` to `addrs[addr]`
/// on socket `sock`, GSO-segmented at `gso` bytes when non-zero.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SendSpec {
    pub sock: usize,
    pub addr: usize,
    pub iov_start: usize,
    pub iov_len: usize,
    pub gso: u16,
}

/// Engine callback: socket index, source, datagram, GRO segment size,
/// truncated flag.
pub(crate) type RecvSink<'a> =
    dyn FnMut(usize, Option<SocketAddr>, &mut [u8], Option<u16>, bool) + 'a;

enum Engine {
    Uring(Box<Uring>),
    Fallback(Box<Fallback>),
}

pub struct Transport {
    // Field order matters: the engine (which may hold kernel references to
    // the send pool and sockets) is dropped before them.
    engine: Engine,
    codec: FrameCodec,
    node: NodeId,
    loop_to_self: bool,
    multicast: bool,
    addrs: Vec<SockAddr>,
    member_addr: HashMap<NodeId, usize>,
    /// This node's own entry in `addrs` (`member_addr[node]`), kept apart:
    /// every frame of a visit asks it once per peer, and the hash lookup
    /// was 1.5% of a daemon at 64 KiB on a 16-CPU machine.
    own_addr: Option<usize>,
    by_addr: HashMap<SocketAddr, NodeId>,
    send_batch: usize,
    slot: usize,
    pool: Vec<u8>,
    frame_len: Vec<usize>,
    iovs: Vec<libc::iovec>,
    specs: Vec<SendSpec>,
    results: Vec<i32>,
    gso: bool,
    gso_seg_limit: usize,
    stats: TransportStats,
    status: Status,
    sockets: Vec<Socket>,
    logged_send_error: bool,
    /// (node, source) pairs seen by the current `recv`, applied after it.
    learned: Vec<(NodeId, SocketAddr)>,
}

/// New addresses one `recv` call records at most.
const MAX_LEARN_PER_RECV: usize = 64;
/// Node addresses learned at most (Corosync allows 384 processors).
const MAX_LEARNED_NODES: usize = 1024;

// SAFETY: the raw pointers inside (msghdrs, iovecs, the buffer ring) all
// point into heap memory the transport itself owns, which does not move
// when the `Transport` value moves; the kernel's references are to that
// memory and to descriptors, not to a thread. The ring is set up without
// SINGLE_ISSUER, so submitting from the thread it moved to is allowed.
// `Transport` is not `Sync`: it is used from one thread at a time.
unsafe impl Send for Transport {}

impl Transport {
    pub fn new(cfg: TransportConfig) -> Result<Self, TransportError> {
        cfg.validate()?;
        let codec = FrameCodec::new(
            cfg.node_id,
            cfg.crypto.cipher,
            cfg.crypto.key.as_ref(),
            &cfg.crypto.cluster_name,
            cfg.max_frame,
        )?;
        let socks = crate::socket::open(&cfg)?;
        let multicast = matches!(cfg.mode, Mode::Multicast { .. });
        let mut addrs = Vec::new();
        let mut member_addr = HashMap::new();
        let mut by_addr = HashMap::new();
        for (id, a) in &cfg.members {
            member_addr.insert(*id, addrs.len());
            by_addr.insert(*a, *id);
            addrs.push(SockAddr::from(*a));
        }
        if let Mode::Multicast { group, .. } = cfg.mode {
            addrs.push(SockAddr::from(group));
        }
        let n_dests = addrs.len().max(1);
        let max_sends = cfg.send_batch * n_dests;
        let fds: Vec<RawFd> = socks.list.iter().map(|s| s.as_raw_fd()).collect();

        let choice = cfg.engine.effective()?;
        let mut fallback_reason = None;
        let mut probe = None;
        let engine = match choice {
            EngineChoice::Fallback => {
                fallback_reason = Some("forced by configuration or environment".to_string());
                None
            }
            EngineChoice::Auto | EngineChoice::IoUring => {
                let p = probe_uring();
                let zc = cfg.send_zc && p.op_send_zc;
                let r = if p.usable() {
                    Uring::new(
                        fds.clone(),
                        cfg.recv_buffers,
                        cfg.recv_buffer_size,
                        socks.gro,
                        max_sends,
                        cfg.sqpoll_idle_ms,
                        zc,
                    )
                    .map_err(|e| format!("io_uring set-up failed: {e}"))
                } else {
                    Err(p.reason.clone().unwrap_or_default())
                };
                probe = Some(p);
                match r {
                    Ok(u) => Some(Engine::Uring(Box::new(u))),
                    Err(why) if choice == EngineChoice::IoUring => {
                        return Err(TransportError::UringUnavailable(why));
                    }
                    Err(why) => {
                        tracing::warn!(
                            "io_uring unavailable ({why}); using the sendmmsg/recvmmsg fallback"
                        );
                        fallback_reason = Some(why);
                        None
                    }
                }
            }
        };
        let engine = match engine {
            Some(e) => e,
            None => Engine::Fallback(Box::new(
                Fallback::new(fds, 64, cfg.recv_buffer_size, socks.gro, max_sends)
                    .map_err(crate::error::sock_err("epoll"))?,
            )),
        };
        let kind = match engine {
            Engine::Uring(_) => EngineKind::IoUring,
            Engine::Fallback(_) => EngineKind::Fallback,
        };
        let status = Status {
            engine: kind,
            gso: socks.gso,
            gro: socks.gro,
            cipher: codec.cipher(),
            sqpoll: kind == EngineKind::IoUring && cfg.sqpoll_idle_ms.is_some(),
            send_zc: kind == EngineKind::IoUring
                && cfg.send_zc
                && probe.as_ref().is_some_and(|p| p.op_send_zc),
            probe,
            fallback_reason,
        };
        tracing::info!(?status, "transport started");
        let slot = (cfg.max_frame + codec.overhead() + 15) & !15;
        Ok(Self {
            engine,
            node: cfg.node_id,
            loop_to_self: cfg.loop_to_self,
            multicast,
            addrs,
            own_addr: member_addr.get(&cfg.node_id).copied(),
            member_addr,
            by_addr,
            send_batch: cfg.send_batch,
            slot,
            pool: vec![0u8; slot * cfg.send_batch],
            frame_len: vec![0; cfg.send_batch],
            iovs: Vec::with_capacity(max_sends),
            specs: Vec::with_capacity(max_sends),
            results: vec![0; max_sends],
            gso: socks.gso,
            gso_seg_limit: GSO_MAX_BYTES,
            stats: TransportStats::default(),
            status,
            sockets: socks.list,
            codec,
            logged_send_error: false,
            learned: Vec::new(),
        })
    }

    pub fn status(&self) -> &Status {
        &self.status
    }

    pub fn stats(&self) -> TransportStats {
        let mut s = self.stats;
        s.frames = *self.codec.stats();
        match &self.engine {
            Engine::Uring(u) => {
                s.no_buffers = u.no_buffers;
                s.recv_errors = u.recv_errors;
            }
            Engine::Fallback(f) => s.recv_errors = f.recv_errors,
        }
        s
    }

    pub fn node_id(&self) -> NodeId {
        self.node
    }

    /// The address the unicast socket is bound to (port 0 resolved).
    pub fn local_addr(&self) -> Option<SocketAddr> {
        self.sockets.first()?.local_addr().ok()?.as_socket()
    }

    /// Largest payload `send_batch` accepts.
    pub fn max_payload(&self) -> usize {
        self.codec.max_payload()
    }

    /// Seals and sends frames, `send_batch` (config) at a time, each burst
    /// with one submission. Per destination, frames keep their order.
    pub fn send_batch(&mut self, msgs: &[(Dest, &[u8])]) -> Result<SendReport, TransportError> {
        let mut unknown = 0;
        for (d, p) in msgs {
            if p.len() > self.codec.max_payload() {
                return Err(TransportError::FrameTooLarge {
                    len: p.len(),
                    max: self.codec.max_payload(),
                });
            }
            if let Dest::Node(id) = d {
                if !self.member_addr.contains_key(id) {
                    unknown += 1;
                }
            }
        }
        if unknown > 0 {
            // A node whose address we don't know (yet: in multicast mode
            // addresses are learned from received frames). Dropping its
            // frames is what a lossy network does; the rest still go out.
            self.stats.unknown_dest += unknown;
            let known: Vec<(Dest, &[u8])> = msgs
                .iter()
                .filter(|(d, _)| match d {
                    Dest::Node(id) => self.member_addr.contains_key(id),
                    Dest::Multicast => true,
                })
                .copied()
                .collect();
            return self.send_known(&known);
        }
        self.send_known(msgs)
    }

    fn send_known(&mut self, msgs: &[(Dest, &[u8])]) -> Result<SendReport, TransportError> {
        let mut report = SendReport::default();
        for chunk in msgs.chunks(self.send_batch) {
            let r = self.send_chunk(chunk)?;
            report.frames += r.frames;
            report.datagrams += r.datagrams;
            report.errors += r.errors;
        }
        Ok(report)
    }

    fn send_chunk(&mut self, msgs: &[(Dest, &[u8])]) -> Result<SendReport, TransportError> {
        for (i, (_, p)) in msgs.iter().enumerate() {
            let slot = &mut self.pool[i * self.slot..(i + 1) * self.slot];
            self.frame_len[i] = self.codec.seal_into(slot, p)?;
        }
        self.plan(msgs);
        let mut report = SendReport {
            frames: msgs.len(),
            ..Default::default()
        };
        self.submit_planned(&mut report)?;
        self.stats.frames_sent += msgs.len() as u64;
        Ok(report)
    }

    fn dest_includes(&self, d: Dest, addr: usize) -> bool {
        match d {
            Dest::Node(id) => self.member_addr.get(&id) == Some(&addr),
            Dest::Multicast if self.multicast => addr == self.addrs.len() - 1,
            Dest::Multicast => self.loop_to_self || self.own_addr != Some(addr),
        }
    }

    /// Builds iovecs and send specs: per destination, runs of equal-length
    /// frames become one GSO send when GSO is on.
    fn plan(&mut self, msgs: &[(Dest, &[u8])]) {
        self.iovs.clear();
        self.specs.clear();
        let base = self.pool.as_mut_ptr();
        for addr in 0..self.addrs.len() {
            let mut i = 0;
            while i < msgs.len() {
                if !self.dest_includes(msgs[i].0, addr) {
                    i += 1;
                    continue;
                }
                let seg = self.frame_len[i];
                // Zero-copy pins each iovec's pages as separate skb frags
                // (at most 17): fewer segments per send, or EMSGSIZE.
                let max_segs = if self.status.send_zc {
                    (16 / (seg / 4096 + 2)).max(1)
                } else {
                    GSO_MAX_SEGS
                };
                let start = self.iovs.len();
                let mut total = 0;
                let mut j = i;
                while j < msgs.len() {
                    if !self.dest_includes(msgs[j].0, addr) {
                        j += 1;
                        continue;
                    }
                    let len = self.frame_len[j];
                    let n = self.iovs.len() - start;
                    let can_join = n == 0
                        || (self.gso
                            && seg <= self.gso_seg_limit
                            && n < max_segs
                            && total + len <= GSO_MAX_BYTES
                            && len <= seg
                            && self.frame_len_of_last(start) == seg);
                    if !can_join {
                        break;
                    }
                    self.iovs.push(libc::iovec {
                        // The pool outlives the send (it is only reused by
                        // the next call, after every completion).
                        iov_base: base.wrapping_add(j * self.slot).cast(),
                        iov_len: len,
                    });
                    total += len;
                    j += 1;
                }
                let n = self.iovs.len() - start;
                self.specs.push(SendSpec {
                    sock: 0,
                    addr,
                    iov_start: start,
                    iov_len: n,
                    gso: if n > 1 { seg as u16 } else { 0 },
                });
                i = j;
            }
        }
    }

    fn frame_len_of_last(&self, start: usize) -> usize {
        self.iovs[start..].last().map_or(0, |v| v.iov_len)
    }

    fn submit_planned(&mut self, report: &mut SendReport) -> Result<(), TransportError> {
        let specs = std::mem::take(&mut self.specs);
        let mut retry = Vec::new();
        let r = self.submit_specs(&specs, report, &mut retry);
        self.specs = specs;
        r?;
        if !retry.is_empty() {
            // One frame each, no GSO: nothing is queued for another retry.
            self.submit_specs(&retry, report, &mut Vec::new())?;
        }
        Ok(())
    }

    /// Hands `specs` to the engine, at most as many per call as it was
    /// sized for (the member list may have grown since: `set_members`).
    fn submit_specs(
        &mut self,
        specs: &[SendSpec],
        report: &mut SendReport,
        retry: &mut Vec<SendSpec>,
    ) -> Result<(), TransportError> {
        let max = self.results.len();
        for chunk in specs.chunks(max) {
            let r = match &mut self.engine {
                Engine::Uring(u) => u.send(&self.addrs, &self.iovs, chunk, &mut self.results),
                Engine::Fallback(f) => f.send(&self.addrs, &self.iovs, chunk, &mut self.results),
            };
            r.map_err(TransportError::Fatal)?;
            for (i, sp) in chunk.iter().enumerate() {
                let res = self.results[i];
                if res >= 0 {
                    report.datagrams += sp.iov_len;
                    self.stats.datagrams_sent += sp.iov_len as u64;
                    if sp.gso > 0 {
                        self.stats.gso_sends += 1;
                    }
                } else if sp.gso > 0
                    && (res == -libc::EINVAL || res == -libc::EIO || res == -libc::EMSGSIZE)
                {
                    // The path refuses this segment size (MTU, no checksum
                    // offload): never try it again; resend one by one. The
                    // resent frames may arrive after later frames of this
                    // burst to the same node (only on the first such burst;
                    // Totem orders by sequence number anyway).
                    self.gso_seg_limit = self.gso_seg_limit.min(usize::from(sp.gso) - 1);
                    for k in 0..sp.iov_len {
                        retry.push(SendSpec {
                            iov_start: sp.iov_start + k,
                            iov_len: 1,
                            gso: 0,
                            ..*sp
                        });
                    }
                } else {
                    report.errors += 1;
                    self.note_send_error(res);
                }
            }
        }
        Ok(())
    }

    /// Replaces the member list (udpu: whom a multicast goes to, and whose
    /// frames are accepted), e.g. after a configuration reload added or
    /// removed nodes. In multicast mode addresses are learned from
    /// received frames instead, and this changes nothing. No send is in
    /// flight here (sends complete inside `send_batch`).
    pub fn set_members(&mut self, members: &[(NodeId, SocketAddr)]) {
        if self.multicast {
            return;
        }
        self.addrs.clear();
        self.member_addr.clear();
        self.by_addr.clear();
        for (id, a) in members {
            self.member_addr.insert(*id, self.addrs.len());
            self.by_addr.insert(*a, *id);
            self.addrs.push(SockAddr::from(*a));
        }
        self.own_addr = self.member_addr.get(&self.node).copied();
    }

    fn note_send_error(&mut self, res: i32) {
        self.stats.send_errors += 1;
        if !self.logged_send_error {
            self.logged_send_error = true;
            tracing::error!(
                "UDP send failed: {}; dropping and continuing (logged once)",
                std::io::Error::from_raw_os_error(-res)
            );
        }
    }

    /// Receives what is ready (waiting up to `timeout`, `None` = forever)
    /// and calls `f` for every frame that opens; returns frames delivered.
    /// Bad datagrams are dropped and counted in `stats()`.
    pub fn recv<F: FnMut(Received<'_>)>(
        &mut self,
        timeout: Option<Duration>,
        mut f: F,
    ) -> Result<usize, TransportError> {
        let codec = &mut self.codec;
        let stats = &mut self.stats;
        let mut delivered = 0usize;
        let multicast = self.multicast;
        let by_addr = &self.by_addr;
        let member_addr = &self.member_addr;
        let learned = &mut self.learned;
        let mut not_members = 0u64;
        // The last sender found on the member list: a burst's frames come
        // from one node, so most frames skip the lookup.
        let mut last_member = None;
        let mut f = |r: Received<'_>| {
            // udpu: the member list is the node list; a node not on it
            // (removed by a reload, or never configured) is not heard.
            if !multicast && last_member != Some(r.node) {
                if !member_addr.contains_key(&r.node) {
                    not_members += 1;
                    return;
                }
                last_member = Some(r.node);
            }
            // Multicast mode without a complete member list: remember where
            // each sender is, so the token can be unicast to it.
            if multicast
                && by_addr.get(&r.from) != Some(&r.node)
                && learned.len() < MAX_LEARN_PER_RECV
                && !learned.contains(&(r.node, r.from))
            {
                learned.push((r.node, r.from));
            }
            f(r)
        };
        let mut sink = |_sock: usize,
                        from: Option<SocketAddr>,
                        buf: &mut [u8],
                        gro: Option<u16>,
                        trunc: bool| {
            stats.datagrams_received += 1;
            let Some(from) = from else {
                stats.unknown_source += 1;
                return;
            };
            if trunc {
                codec.count_truncated();
                return;
            }
            if matches!(gro, Some(s) if usize::from(s) < buf.len()) {
                stats.gro_datagrams += 1;
            }
            let n = open_datagram(codec, from, buf, gro, &mut f);
            stats.frames_received += n as u64;
            delivered += n;
        };
        match &mut self.engine {
            Engine::Uring(u) => u.recv(timeout, &mut sink),
            Engine::Fallback(e) => e.recv(timeout, &mut sink),
        }
        .map_err(TransportError::Fatal)?;
        self.stats.unknown_source += not_members;
        self.learn();
        Ok(delivered.saturating_sub(not_members as usize))
    }

    /// Registers `fd` (an eventfd, timerfd or signalfd) with the engine's
    /// one waiting place; `drain_ready` reports the returned index when it
    /// is readable. The caller keeps `fd` open while registered.
    pub fn watch_fd(&mut self, fd: RawFd) -> Result<u32, TransportError> {
        match &mut self.engine {
            Engine::Uring(u) => u.watch(fd),
            Engine::Fallback(f) => f.watch(fd),
        }
        .map_err(TransportError::Fatal)
    }

    /// Moves the indices of watched descriptors found readable into `out`.
    pub fn drain_ready(&mut self, out: &mut Vec<u32>) {
        let r = match &mut self.engine {
            Engine::Uring(u) => &mut u.ready,
            Engine::Fallback(f) => &mut f.ready,
        };
        out.append(r);
    }

    /// Adds or updates the addresses found by `recv` (multicast mode). The
    /// group address stays last in `addrs`; no send is in flight here
    /// (sends complete inside `send_batch`), so `addrs` may grow.
    fn learn(&mut self) {
        for (node, from) in std::mem::take(&mut self.learned) {
            if node == self.node {
                continue;
            }
            match self.member_addr.get(&node) {
                Some(&i) => {
                    // The node moved (restarted on another address).
                    if let Some(old) = self.addrs[i].as_socket() {
                        self.by_addr.remove(&old);
                    }
                    self.addrs[i] = SockAddr::from(from);
                }
                None => {
                    if self.member_addr.len() >= MAX_LEARNED_NODES {
                        continue;
                    }
                    let at = self.addrs.len().saturating_sub(1);
                    self.addrs.insert(at, SockAddr::from(from));
                    self.member_addr.insert(node, at);
                }
            }
            self.by_addr.insert(from, node);
            self.stats.learned_nodes += 1;
        }
    }

    /// Raw descriptors of the sockets (for a run loop that polls them).
    pub fn socket_fds(&self) -> Vec<RawFd> {
        self.sockets.iter().map(|s| s.as_raw_fd()).collect()
    }

    /// The member a source address belongs to, if any.
    pub fn node_of(&self, addr: &SocketAddr) -> Option<NodeId> {
        self.by_addr.get(addr).copied()
    }

    /// The address `node` sends from: configured (udpu), learned from its
    /// frames (multicast), or ours for our own id.
    pub fn addr_of(&self, node: NodeId) -> Option<SocketAddr> {
        if node == self.node {
            return self.local_addr();
        }
        let i = *self.member_addr.get(&node)?;
        self.addrs.get(i)?.as_socket()
    }
}

/// The receive path after the engine: splits a GRO super-datagram into its
/// segments, opens each frame in place and hands the good ones to `f`.
/// Returns the frames delivered. Public so the fuzz harness drives exactly
/// this code; never panics on any input.
pub fn open_datagram<F: FnMut(Received<'_>)>(
    codec: &mut FrameCodec,
    from: SocketAddr,
    buf: &mut [u8],
    gro_segment: Option<u16>,
    f: &mut F,
) -> usize {
    if buf.is_empty() {
        let _ = codec.open(from, buf);
        return 0;
    }
    let seg = match gro_segment {
        Some(s) if s > 0 && usize::from(s) < buf.len() => usize::from(s),
        _ => buf.len(),
    };
    let mut n = 0;
    for chunk in buf.chunks_mut(seg) {
        if let Ok((node, payload)) = codec.open(from, chunk) {
            n += 1;
            f(Received {
                node,
                from,
                payload,
            });
        }
    }
    n
}
