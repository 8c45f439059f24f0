//! The client half: thread-safe. Any number of threads may send and call
//! while one thread dispatches events (the SA Forum API requires it).

use std::collections::HashMap;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::linux::net::SocketAddrExt;
use std::os::unix::net::{SocketAddr, UnixStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::config::Endpoint;
use crate::proto::{self, Hello, Status, PROTOCOL_VERSION};
use crate::ring::{
    self, check_used, decode_chunk, max_payload, valid_cap, Chunk, FrameHeader, RingPtrs,
    RingSizes, CHUNK_HEADER_LEN, EVENT, REQUEST, RESPONSE,
};
use crate::send_lock::SendLock;
use crate::server::{ERROR_KIND, ERROR_UNKNOWN_SERVICE};
use crate::sys::{self, Drain, Mapping};

#[derive(Debug)]
pub enum ClientError {
    /// The request ring is full: try again later.
    TryAgain,
    /// The daemon is gone or ended the session; connect again.
    Disconnected,
    /// The daemon refused the session.
    Refused(Status),
    /// The payload exceeds what the ring carries.
    TooLarge,
    /// No answer within the time given.
    Timeout,
    /// The daemon answered that it has no such service.
    UnknownService,
    /// The daemon broke the protocol.
    Protocol(&'static str),
    Io(io::Error),
}

impl std::fmt::Display for ClientError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ClientError::TryAgain => write!(f, "try again: request ring full"),
            ClientError::Disconnected => write!(f, "disconnected from the daemon"),
            ClientError::Refused(s) => write!(f, "session refused: {s}"),
            ClientError::TooLarge => write!(f, "message too large"),
            ClientError::Timeout => write!(f, "timed out"),
            ClientError::UnknownService => write!(f, "unknown service"),
            ClientError::Protocol(w) => write!(f, "protocol error: {w}"),
            ClientError::Io(e) => write!(f, "i/o error: {e}"),
        }
    }
}

impl std::error::Error for ClientError {}

impl From<io::Error> for ClientError {
    fn from(e: io::Error) -> Self {
        ClientError::Io(e)
    }
}

#[derive(Debug, Clone)]
pub struct ClientConfig {
    pub endpoint: Endpoint,
    /// Capacities asked for (0: the daemon's default; it may round or clamp).
    pub sizes: RingSizes,
    pub connect_timeout: Duration,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            endpoint: Endpoint::default(),
            sizes: RingSizes {
                request: 0,
                response: 0,
                event: 0,
            },
            connect_timeout: Duration::from_secs(5),
        }
    }
}

/// How a caller waits for the daemon.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wait {
    /// Sleep in poll on the wake-up fd (the daemon writes it only when asked).
    Park,
    /// Spin on the ring without system calls.
    Spin,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DispatchMode {
    /// At most one event, without waiting.
    One,
    /// The events present now, without waiting.
    All,
    /// At most this many of the events present now, without waiting.
    Batch(usize),
    /// Wait (up to the timeout) for at least one, then those present.
    Blocking,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub header: FrameHeader,
    pub payload: Vec<u8>,
}

/// The event ring's reader side, and what the wake-up fds hold: `dispatch`
/// makes system calls only where a wake-up byte may actually wait, so a
/// dispatch that finds events in the ring costs none.
struct EventReader {
    /// Consumer index of the event ring: the next event to take.
    head: u64,
    /// The consumer index last published to the daemon: `head`, or the
    /// start of the oldest event still being handled in place, whichever
    /// comes first (the daemon must not overwrite an event in use).
    released: u64,
    /// Where the events handed out in place and not yet returned start
    /// (more than one when a handler dispatches, or threads do at once).
    in_place: Vec<u64>,
    /// We asked the daemon for a wake-up and have not seen it taken: while
    /// the ring's flag is still set, no wake-up byte was written since.
    armed: bool,
    /// We wrote the self wake-up (events remained) and have not read it.
    self_signalled: bool,
    /// The coarse clock's time when a dispatch that found nothing last
    /// read the wake-up pipe only to look for the daemon's end of file
    /// (see `hangup_check_due`); `None` before the first.
    hangup_checked: Option<u64>,
}

impl EventReader {
    /// A non-blocking dispatch that finds the ring empty while our wake-up
    /// request is still pending knows the daemon wrote no wake-up byte, so
    /// the pipe can hold only the end of file of a daemon that died. It
    /// reads the pipe to notice that once per tick of the coarse clock (1
    /// to 4 ms) rather than on every call: a client that dispatches after
    /// every send (cpgbench does) otherwise pays one failing `read` per
    /// message. The coarse clock, because the precise one cost as much
    /// as the rest of such a call on a 16-CPU VM (11% of a 64 B client's
    /// samples went to `clock_gettime`).
    fn hangup_check_due(&mut self) -> bool {
        let now = sys::coarse_monotonic_ns();
        let due = self.hangup_checked != Some(now);
        if due {
            self.hangup_checked = Some(now);
        }
        due
    }
}

/// Freed event-ring space is published to the daemon once this much has
/// gathered (or the dispatch call ends, or the daemon waits for room):
/// publishing the consumer index per event took a fenced store to a cache
/// line the daemon reads, 9% of a 64 B client's samples on a 16-CPU VM.
const EVENT_RELEASE_FRACTION: u64 = 16;

struct Responses {
    /// A thread is reading the response ring (the others wait on the condvar).
    reader: bool,
    /// Consumer index of the response ring (used by the reader).
    head: u64,
    outstanding: HashMap<u64, Option<Response>>,
    /// Responses nobody waited for (a caller that timed out).
    unmatched: u64,
    dead: bool,
}

pub struct Client {
    socket: UnixStream,
    session: u64,
    map: Mapping,
    rings: [RingPtrs; 3],
    sizes: RingSizes,
    resp_wake: OwnedFd,
    event_wake: OwnedFd,
    /// The doorbell the daemon waits on (an eventfd, or a pipe's write end
    /// on kernels without RWF_NOWAIT reads of eventfds).
    doorbell: OwnedFd,
    /// Keeps the pollable fd readable when events remain after a dispatch.
    self_wake: OwnedFd,
    /// The pollable fd: an epoll set over the event wake-up, the self
    /// wake-up and the socket, so it is readable on events and on hang-up.
    epoll: OwnedFd,
    /// Request ring producer state (see `send_lock` for why not a mutex).
    req: SendLock<Producer>,
    /// Requests are published with plain stores (`publish_tail_light`):
    /// the daemon offered it and this process registered for its barrier.
    light_requests: bool,
    resp: Mutex<Responses>,
    resp_cv: Condvar,
    events: Mutex<EventReader>,
    gone: AtomicBool,
}

/// The request ring producer's private state.
struct Producer {
    /// Bytes written (the ring's tail, published after each frame).
    tail: u64,
    /// The last consumer index seen: reloaded only when the ring looks
    /// full, so a busy sender does not pull the daemon's cache line on
    /// every message.
    cached_head: u64,
    /// The next request id.
    next_id: u64,
}

impl Producer {
    fn take_id(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1);
        id
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn connect_socket(endpoint: &Endpoint) -> io::Result<UnixStream> {
    match endpoint {
        Endpoint::Abstract(name) => {
            UnixStream::connect_addr(&SocketAddr::from_abstract_name(name.as_bytes())?)
        }
        Endpoint::Path(p) => UnixStream::connect(p),
    }
}

fn epoll_over(fds: &[RawFd]) -> io::Result<OwnedFd> {
    // SAFETY: plain syscall.
    let raw = sys::cvt(unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) })?;
    // SAFETY: just created, owned by nobody else.
    let ep = unsafe { OwnedFd::from_raw_fd(raw) };
    for &fd in fds {
        let mut ev = libc::epoll_event {
            events: (libc::EPOLLIN | libc::EPOLLRDHUP) as u32,
            u64: fd as u64,
        };
        // SAFETY: valid epoll fd, valid fd and event struct.
        sys::cvt(unsafe { libc::epoll_ctl(ep.as_raw_fd(), libc::EPOLL_CTL_ADD, fd, &mut ev) })?;
    }
    Ok(ep)
}

fn millis(deadline: Option<Instant>, cap_ms: i32) -> i32 {
    match deadline {
        None => cap_ms,
        Some(d) => {
            let left = d.saturating_duration_since(Instant::now());
            (left.as_millis().min(cap_ms as u128) as i32).max(if left.is_zero() { 0 } else { 1 })
        }
    }
}

impl Client {
    /// Opens a session. Errors: `Refused` with the daemon's reason,
    /// `Io` when nobody listens, `Timeout`, `Protocol`.
    pub fn connect(cfg: &ClientConfig) -> Result<Client, ClientError> {
        // The doorbell may be a pipe: writing it after the daemon died must not
        // kill a host that left SIGPIPE at its default.
        sys::ignore_sigpipe();
        let socket = connect_socket(&cfg.endpoint)?;
        let hello = proto::encode_hello(&Hello {
            version: PROTOCOL_VERSION,
            sizes: cfg.sizes,
        });
        // A daemon that refuses at accept time may have answered and closed
        // before the hello goes out: then the refusal is what counts.
        let sent = sys::send_with_fds(socket.as_raw_fd(), &hello, &[]);
        if !matches!(sent, Ok(n) if n == hello.len()) {
            let mut buf = [0u8; proto::REPLY_LEN];
            let mut fds = Vec::new();
            if let Ok(n) = sys::recv_with_fds(socket.as_raw_fd(), &mut buf, &mut fds) {
                if let Some(r) = proto::decode_reply(&buf[..n]) {
                    if r.status != Status::Ok {
                        return Err(ClientError::Refused(r.status));
                    }
                }
            }
            return Err(sent
                .err()
                .map_or(ClientError::Disconnected, ClientError::Io));
        }
        let timeout = cfg.connect_timeout.as_millis().min(i32::MAX as u128) as i32;
        if sys::poll_one(socket.as_raw_fd(), libc::POLLIN, timeout)? == 0 {
            return Err(ClientError::Timeout);
        }
        let mut buf = [0u8; proto::REPLY_LEN];
        let mut fds = Vec::new();
        let n = sys::recv_with_fds(socket.as_raw_fd(), &mut buf, &mut fds)?;
        if n == 0 {
            return Err(ClientError::Disconnected);
        }
        let reply = proto::decode_reply(&buf[..n]).ok_or(ClientError::Protocol("bad reply"))?;
        if reply.status != Status::Ok {
            return Err(ClientError::Refused(reply.status));
        }
        let sizes = reply.sizes;
        if fds.len() != proto::REPLY_FDS || !sizes.as_array().iter().all(|&c| valid_cap(c)) {
            return Err(ClientError::Protocol("bad session set-up"));
        }
        let mut fds = fds.into_iter();
        let memfd = fds.next().expect("counted");
        let resp_wake = fds.next().expect("counted");
        let event_wake = fds.next().expect("counted");
        let doorbell = fds.next().expect("counted");
        let len = sizes.segment_len();
        let (sealed, size) = sys::sealed_size(memfd.as_raw_fd())?;
        if !sealed || size < len {
            return Err(ClientError::Protocol("segment not sealed or too small"));
        }
        let map = Mapping::map(memfd.as_raw_fd(), len)?;
        drop(memfd);
        // SAFETY: `map` is a live mapping of `len >= SEGMENT_HEADER_LEN` bytes.
        unsafe { ring::validate_segment(map.ptr(), map.len(), &sizes) }
            .map_err(ClientError::Protocol)?;
        // SAFETY: validated above: the mapping holds the announced layout.
        let rings = unsafe { ring::ring_ptrs(map.ptr(), &sizes) };
        socket.set_nonblocking(true)?;
        let self_wake = sys::eventfd()?;
        let epoll = epoll_over(&[
            event_wake.as_raw_fd(),
            self_wake.as_raw_fd(),
            socket.as_raw_fd(),
        ])?;
        // Ask for a wake-up on the first event, so the pollable fd works
        // before the first dispatch.
        rings[EVENT].arm_consumer(0);
        Ok(Client {
            socket,
            session: reply.session,
            map,
            rings,
            sizes,
            resp_wake,
            event_wake,
            doorbell,
            self_wake,
            epoll,
            req: SendLock::new(
                Producer {
                    tail: 0,
                    cached_head: 0,
                    next_id: 1,
                },
                sys::register_for_private_barrier(),
            ),
            light_requests: reply.flags & proto::REPLY_FLAG_LIGHT_REQUESTS != 0
                && sys::register_for_global_barrier(),
            resp: Mutex::new(Responses {
                reader: false,
                head: 0,
                outstanding: HashMap::new(),
                unmatched: 0,
                dead: false,
            }),
            resp_cv: Condvar::new(),
            events: Mutex::new(EventReader {
                head: 0,
                released: 0,
                in_place: Vec::new(),
                armed: true,
                self_signalled: false,
                hangup_checked: None,
            }),
            gone: AtomicBool::new(false),
        })
    }

    /// The daemon's id for this session.
    pub fn session(&self) -> u64 {
        self.session
    }

    pub fn sizes(&self) -> RingSizes {
        self.sizes
    }

    /// The largest request payload.
    pub fn max_request(&self) -> usize {
        max_payload(self.sizes.request) as usize
    }

    /// Bytes of requests the daemon has not consumed yet, and the request
    /// ring's capacity: how far behind the daemon is (or how long it has
    /// been pausing requests), without asking it.
    pub fn request_backlog(&self) -> (u64, u64) {
        let ring = &self.rings[REQUEST];
        // The published tail: taking the send lock here would end its bias
        // when another thread asks.
        let tail = ring.hdr().tail.load(Ordering::Acquire);
        let head = ring.hdr().head.load(Ordering::Acquire);
        (tail.wrapping_sub(head).min(ring.cap), ring.cap)
    }

    /// Whether requests go out with plain stores (the daemon offered it and
    /// this process registered for its membarrier), not a locked exchange.
    pub fn light_requests(&self) -> bool {
        self.light_requests
    }

    /// The pollable fd (selection object): readable when events wait, and
    /// when the session broke or the daemon died. Reset by `dispatch`.
    pub fn fd(&self) -> RawFd {
        self.epoll.as_raw_fd()
    }

    /// Responses that arrived for nobody (their caller had timed out).
    pub fn unmatched_responses(&self) -> u64 {
        lock(&self.resp).unmatched
    }

    fn closed_flag(&self) -> bool {
        // SAFETY: the mapping lives as long as `self`.
        let closed = unsafe { ring::segment_closed(self.map.ptr()) };
        // SAFETY: points at an atomic in the live mapping.
        unsafe { (*closed).load(Ordering::Acquire) != 0 }
    }

    /// Whether the daemon ended the session or died (a system call unless
    /// known already; used on slow paths only).
    pub fn is_gone(&self) -> bool {
        if self.gone.load(Ordering::Relaxed) || self.closed_flag() {
            self.gone.store(true, Ordering::Relaxed);
            return true;
        }
        let ev = libc::POLLRDHUP;
        let r = sys::poll_one(self.socket.as_raw_fd(), ev, 0).unwrap_or(libc::POLLHUP);
        if r & (libc::POLLHUP | libc::POLLRDHUP | libc::POLLERR) != 0 {
            self.gone.store(true, Ordering::Relaxed);
            return true;
        }
        false
    }

    /// An eventfd write (8 bytes, which a pipe doorbell takes as well): far
    /// cheaper than a byte on the socket, which matters on the parked path.
    /// A pipe doorbell whose daemon died leaves EPIPE (SIGPIPE is ignored,
    /// see `connect`).
    fn ring_doorbell(&self) {
        sys::eventfd_signal(self.doorbell.as_raw_fd());
    }

    /// Sends a request that expects no response; returns its request id.
    /// `TryAgain` when the request ring is full.
    pub fn send(&self, service: u16, kind: u16, payload: &[u8]) -> Result<u64, ClientError> {
        self.send_parts(service, kind, &[payload])
    }

    /// Like `send`, with the payload given as parts written one after the
    /// other (no copy into a buffer of its own first).
    pub fn send_parts(&self, service: u16, kind: u16, parts: &[&[u8]]) -> Result<u64, ClientError> {
        self.push(service, kind, None, parts)
    }

    /// Writes and publishes a request with the id `id`, or the next one.
    /// Returns the id it went with. (The header is built in here from
    /// scalars: copying in a header the caller just stored field by field
    /// would be a load the store buffer cannot forward, which waits for
    /// every earlier store, the last frame's included, to reach the cache.)
    #[inline(always)]
    fn push(
        &self,
        service: u16,
        kind: u16,
        id: Option<u64>,
        parts: &[&[u8]],
    ) -> Result<u64, ClientError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len > self.max_request() {
            return Err(ClientError::TooLarge);
        }
        if self.gone.load(Ordering::Relaxed) || self.closed_flag() {
            return Err(ClientError::Disconnected);
        }
        let written = self.push_locked(&mut self.req.lock(), service, kind, id, parts)?;
        if let Some(id) = written {
            Ok(id)
        } else if self.is_gone() {
            Err(ClientError::Disconnected)
        } else {
            // The daemon may read no requests because this client's events
            // wait in its overflow queue for room (receive back-pressure):
            // give it the room freed so far, unless a dispatch of this
            // thread or another holds the events lock (a callback of
            // `dispatch` sending, say).
            let st = match self.events.try_lock() {
                Ok(st) => Some(st),
                Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
                Err(std::sync::TryLockError::WouldBlock) => None,
            };
            if let Some(mut st) = st {
                self.release_events(&mut st);
            }
            Err(ClientError::TryAgain)
        }
    }

    /// `push` inside the send lock: writes the frame if it fits (looking
    /// at the daemon's consumer index only when the ring seems full) and
    /// publishes it. `Ok(None)`: no room.
    #[inline(always)]
    fn push_locked(
        &self,
        p: &mut Producer,
        service: u16,
        kind: u16,
        id: Option<u64>,
        parts: &[&[u8]],
    ) -> Result<Option<u64>, ClientError> {
        let ring = &self.rings[REQUEST];
        let header = FrameHeader {
            service,
            kind,
            request_id: id.unwrap_or(p.next_id),
        };
        let mut reloaded = false;
        // One call site of the (inlined) writer: twice at most.
        while !ring.write_frame(&mut p.tail, p.cached_head, &header, parts) {
            if reloaded {
                return Ok(None);
            }
            let head = ring.hdr().head.load(Ordering::Acquire);
            if p.tail.wrapping_sub(head) > ring.cap {
                return Err(ClientError::Protocol("request ring index out of range"));
            }
            p.cached_head = head;
            reloaded = true;
        }
        if id.is_none() {
            p.take_id();
        }
        let wake = if self.light_requests {
            ring.publish_tail_light(p.tail)
        } else {
            ring.publish_tail(p.tail)
        };
        if wake {
            self.ring_doorbell();
        }
        Ok(Some(header.request_id))
    }

    /// Sends a request and waits for its response.
    pub fn call(
        &self,
        service: u16,
        kind: u16,
        payload: &[u8],
        wait: Wait,
        timeout: Option<Duration>,
    ) -> Result<Response, ClientError> {
        let request_id = self.req.with(Producer::take_id);
        lock(&self.resp).outstanding.insert(request_id, None);
        // The clock is read after the request went out: on the parked path
        // every nanosecond before the doorbell is latency.
        let result = self
            .push(service, kind, Some(request_id), &[payload])
            .and_then(|_| {
                let deadline = timeout.map(|t| Instant::now() + t);
                self.wait_response(request_id, wait, deadline)
            });
        if result.is_err() {
            lock(&self.resp).outstanding.remove(&request_id);
        }
        let r = result?;
        if r.header.kind == ERROR_KIND {
            let code = r
                .payload
                .get(..4)
                .map(|b| u32::from_le_bytes(b.try_into().expect("4")));
            return Err(if code == Some(ERROR_UNKNOWN_SERVICE) {
                ClientError::UnknownService
            } else {
                ClientError::Protocol("error response")
            });
        }
        Ok(r)
    }

    fn wait_response(
        &self,
        id: u64,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<Response, ClientError> {
        let mut st = lock(&self.resp);
        let mut got = Vec::new();
        loop {
            if let Some(Some(_)) = st.outstanding.get(&id) {
                return Ok(st.outstanding.remove(&id).flatten().expect("checked"));
            }
            if st.dead {
                return Err(ClientError::Disconnected);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Err(ClientError::Timeout);
            }
            if st.reader {
                let ms = millis(deadline, 50) as u64;
                st = self
                    .resp_cv
                    .wait_timeout(st, Duration::from_millis(ms.max(1)))
                    .unwrap_or_else(|p| p.into_inner())
                    .0;
                continue;
            }
            st.reader = true;
            let mut head = st.head;
            drop(st);
            let res = self.read_responses(&mut head, &mut got, wait, deadline);
            st = lock(&self.resp);
            st.head = head;
            st.reader = false;
            for r in got.drain(..) {
                match st.outstanding.get_mut(&r.header.request_id) {
                    Some(slot) => *slot = Some(r),
                    None => st.unmatched += 1,
                }
            }
            if let Err(e) = res {
                st.dead = true;
                self.resp_cv.notify_all();
                if let Some(Some(_)) = st.outstanding.get(&id) {
                    continue;
                }
                return Err(e);
            }
            self.resp_cv.notify_all();
        }
    }

    /// Reads what the response ring holds; when it is empty, waits (spins
    /// or parks) until something arrives or the deadline passes.
    fn read_responses(
        &self,
        head: &mut u64,
        got: &mut Vec<Response>,
        wait: Wait,
        deadline: Option<Instant>,
    ) -> Result<(), ClientError> {
        let ring = &self.rings[RESPONSE];
        let mut spins = 0u32;
        loop {
            self.consume(RESPONSE, head, usize::MAX, true, &mut |header, p, len| {
                got.push(Response {
                    header,
                    // SAFETY: `consume` hands out a payload inside the
                    // mapping that the daemon leaves alone until the head
                    // is published, after this callback.
                    payload: unsafe { std::slice::from_raw_parts(p, len) }.to_vec(),
                })
            })?;
            if !got.is_empty() {
                return Ok(());
            }
            match wait {
                Wait::Spin => {
                    std::hint::spin_loop();
                    spins = spins.wrapping_add(1);
                    if spins.is_multiple_of(4096) {
                        if deadline.is_some_and(|d| Instant::now() >= d) {
                            return Ok(());
                        }
                        if spins.is_multiple_of(1 << 16) && self.is_gone() {
                            return Err(ClientError::Disconnected);
                        }
                    }
                }
                Wait::Park => {
                    if ring.arm_consumer(*head) {
                        continue;
                    }
                    let ms = millis(deadline, 1000);
                    let r = sys::poll_one(self.resp_wake.as_raw_fd(), libc::POLLIN, ms)?;
                    let drained = sys::drain(self.resp_wake.as_raw_fd(), 4, false);
                    if r & libc::POLLHUP != 0 || drained == Drain::Closed {
                        // Read what was left before reporting the end.
                        self.consume(RESPONSE, head, usize::MAX, true, &mut |header, p, len| {
                            got.push(Response {
                                header,
                                // SAFETY: as above.
                                payload: unsafe { std::slice::from_raw_parts(p, len) }.to_vec(),
                            })
                        })?;
                        self.gone.store(true, Ordering::Relaxed);
                        return if got.is_empty() {
                            Err(ClientError::Disconnected)
                        } else {
                            Ok(())
                        };
                    }
                    if r == 0 && (deadline.is_some_and(|d| Instant::now() >= d) || self.is_gone()) {
                        return if self.is_gone() {
                            Err(ClientError::Disconnected)
                        } else {
                            Ok(())
                        };
                    }
                }
            }
        }
    }

    /// Consumes up to `max` frames present now from a daemon-written ring,
    /// handing each payload (in shared memory, at most `len` bytes from the
    /// pointer) to `f`. Publishes the new consumer index when `publish`;
    /// the event ring's caller publishes (`release_events`).
    fn consume(
        &self,
        which: usize,
        head: &mut u64,
        max: usize,
        publish: bool,
        f: &mut dyn FnMut(FrameHeader, *mut u8, usize),
    ) -> Result<usize, ClientError> {
        let ring = &self.rings[which];
        let cap = ring.cap;
        let maxp = max_payload(cap as u32);
        let tail = ring.hdr().tail.load(Ordering::Acquire);
        let start = *head;
        let mut n = 0;
        while n < max {
            let used = check_used(*head, tail, cap)
                .map_err(|_| ClientError::Protocol("daemon ring index out of range"))?;
            if used == 0 {
                break;
            }
            let pos = *head % cap;
            match decode_chunk(ring.read_raw(pos), pos, used, cap, maxp)
                .map_err(|_| ClientError::Protocol("bad frame from the daemon"))?
            {
                Chunk::Pad { skip } => *head = head.wrapping_add(skip),
                Chunk::Frame { header, len, total } => {
                    // SAFETY: the decoder checked `pos + total <= cap`, so the
                    // payload lies inside the data area of the live mapping.
                    let payload = unsafe { ring.data.add((pos + CHUNK_HEADER_LEN) as usize) };
                    f(header, payload, len as usize);
                    *head = head.wrapping_add(total);
                    n += 1;
                }
            }
        }
        if publish && *head != start && ring.publish_head(*head) {
            // The daemon holds spilled frames and waits for room.
            self.ring_doorbell();
        }
        Ok(n)
    }

    /// Delivers events to `f`. Resets the pollable fd; with `Blocking`,
    /// waits up to `timeout` (forever with `None`) for the first event.
    /// `Disconnected` once the ring is empty and the session is over.
    ///
    /// System calls: none when events wait and no wake-up byte does; one
    /// read when the call finds nothing (a stale wake-up byte or a hang-up
    /// may be what made the fd readable; the read tells); one write and one
    /// read per run of `One` calls that leave events behind.
    pub fn dispatch(
        &self,
        mode: DispatchMode,
        timeout: Option<Duration>,
        mut f: impl FnMut(FrameHeader, &[u8]),
    ) -> Result<usize, ClientError> {
        let st = lock(&self.events);
        let (mut st, n) = self.dispatch_locked(st, mode, timeout, &mut |h, p, len| {
            // SAFETY: `consume` hands out a payload inside the mapping; the
            // daemon leaves it alone until `release_events` publishes a
            // consumer index past it, after this callback.
            f(h, unsafe { std::slice::from_raw_parts(p, len) })
        });
        self.release_events(&mut st);
        n
    }

    /// Hands the next event, if one waits, to `f` where it lies in shared
    /// memory (no copy; `f` may modify it), without waiting and with no
    /// lock held: `f` may call anything on this client, `dispatch` and
    /// this method included, and other threads may dispatch meanwhile (they
    /// take the events after it). The event's ring space, and the space of
    /// every event after it, goes back to the daemon once `f` returns:
    /// meanwhile the daemon writes only into the room the ring had left,
    /// and what does not fit waits in the daemon (as for a slow reader).
    /// Resets the pollable fd as `dispatch` does.
    /// `Ok(None)` when no event waits; `Disconnected` once the ring is
    /// empty and the session is over.
    pub fn dispatch_in_place<R>(
        &self,
        f: impl FnOnce(FrameHeader, &mut [u8]) -> R,
    ) -> Result<Option<R>, ClientError> {
        let st = lock(&self.events);
        let start = st.head;
        let mut taken = None;
        // `One` never waits, so the lock is held throughout: the frame
        // taken is the first at or after `start`.
        let (mut st, r) = self.dispatch_locked(st, DispatchMode::One, None, &mut |h, p, len| {
            taken = Some((h, p, len));
        });
        let taken = r.map(|_| taken);
        let Ok(Some((header, p, len))) = taken else {
            self.release_events(&mut st);
            return taken.map(|_| None);
        };
        // Held back from the daemon until `f` is done with it (also if `f`
        // unwinds: the guard gives it back).
        st.in_place.push(start);
        drop(st);
        struct GiveBack<'a>(&'a Client, u64);
        impl Drop for GiveBack<'_> {
            fn drop(&mut self) {
                let mut st = lock(&self.0.events);
                if let Some(i) = st.in_place.iter().position(|&s| s == self.1) {
                    st.in_place.swap_remove(i);
                }
                // Published in batches: the call that finds the ring
                // empty (or `release_dispatched`) publishes the rest.
                self.0.release_events_batched(&mut st);
            }
        }
        let _give_back = GiveBack(self, start);
        // SAFETY: `consume` checked that the payload lies inside the event
        // ring's data area of the live mapping (which lives as long as
        // `self`). Nobody else touches these bytes while `f` runs: the
        // daemon writes only past the published consumer index, which
        // `in_place` holds at or before `start`; other dispatchers take
        // only events after `st.head`, which is past this one.
        let payload = unsafe { std::slice::from_raw_parts_mut(p, len) };
        Ok(Some(f(header, payload)))
    }

    /// Publishes the event ring's consumer index: `head`, held back to the
    /// oldest event still handled in place. Wakes the daemon if it waits
    /// for room.
    fn release_events(&self, st: &mut EventReader) {
        self.release_events_if(st, |_| true);
    }

    /// `release_events` once a sixteenth of the ring has been freed since
    /// the last time, or when the daemon waits for room.
    fn release_events_batched(&self, st: &mut EventReader) {
        let ring = &self.rings[EVENT];
        self.release_events_if(st, |freed| {
            freed >= ring.cap / EVENT_RELEASE_FRACTION || ring.producer_waits()
        });
    }

    /// Publishes the event space freed by in-place dispatches that has not
    /// been published yet. A dispatch loop calls it when it returns with
    /// the ring not yet found empty (the call that finds it empty does it
    /// itself).
    pub fn release_dispatched(&self) {
        let mut st = lock(&self.events);
        self.release_events(&mut st);
    }

    fn release_events_if(&self, st: &mut EventReader, due: impl FnOnce(u64) -> bool) {
        let released = st.released;
        let upto = st
            .in_place
            .iter()
            .copied()
            .chain(std::iter::once(st.head))
            .min_by_key(|&s| s.wrapping_sub(released))
            .expect("head is always there");
        if upto != st.released && due(upto.wrapping_sub(released)) {
            st.released = upto;
            if self.rings[EVENT].publish_head(upto) {
                // The daemon holds spilled events and waits for room.
                self.ring_doorbell();
            }
        }
    }

    /// `dispatch` with the events lock held, except while `Blocking` waits
    /// (a thread giving back an event handled in place needs the lock to
    /// let the daemon have its room: holding it while waiting for the
    /// daemon could wait forever). `f` gets each payload as a pointer into
    /// the event ring and its length. Gives the lock back with the result;
    /// the caller publishes the consumer index (`release_events`).
    fn dispatch_locked<'a>(
        &'a self,
        mut st: MutexGuard<'a, EventReader>,
        mode: DispatchMode,
        timeout: Option<Duration>,
        f: &mut dyn FnMut(FrameHeader, *mut u8, usize),
    ) -> (MutexGuard<'a, EventReader>, Result<usize, ClientError>) {
        let ring = &self.rings[EVENT];
        let wake = self.event_wake.as_raw_fd();
        let deadline = timeout.map(|t| Instant::now() + t);
        let mut hangup = false;
        let max = match mode {
            DispatchMode::One => 1,
            DispatchMode::Batch(n) => n.max(1),
            DispatchMode::All | DispatchMode::Blocking => usize::MAX,
        };
        let n = loop {
            // The daemon clears the flag and then writes one byte: read it
            // so the pollable fd does not stay readable.
            if st.armed && !ring.consumer_armed() {
                st.armed = false;
                hangup |= sys::drain(wake, 4, false) == Drain::Closed;
            }
            let n = match self.consume(EVENT, &mut st.head, max, false, f) {
                Ok(n) => n,
                Err(e) => return (st, Err(e)),
            };
            if n > 0 || hangup {
                break n;
            }
            let quiet = st.armed && ring.consumer_armed() && mode != DispatchMode::Blocking;
            if !quiet || st.hangup_check_due() {
                hangup |= sys::drain(wake, 4, false) == Drain::Closed;
            }
            if mode != DispatchMode::Blocking || hangup {
                break 0;
            }
            st.armed = true;
            if ring.arm_consumer(st.head) {
                continue;
            }
            drop(st);
            let r = sys::poll_one(wake, libc::POLLIN, millis(deadline, 1000));
            st = lock(&self.events);
            let r = match r {
                Ok(r) => r,
                Err(e) => return (st, Err(e.into())),
            };
            hangup |= r & libc::POLLHUP != 0;
            if r == 0 && deadline.is_some_and(|d| Instant::now() >= d) {
                break 0;
            }
            if r == 0 && self.is_gone() {
                hangup = true;
            }
        };
        // Leave the pollable fd readable exactly when events remain: the
        // self wake-up while the ring holds more, else the daemon's
        // wake-up, asked for now.
        if ring.hdr().tail.load(Ordering::Acquire) != st.head {
            if !st.self_signalled {
                sys::eventfd_signal(self.self_wake.as_raw_fd());
                st.self_signalled = true;
            }
        } else {
            if st.self_signalled {
                sys::drain(self.self_wake.as_raw_fd(), 1, false);
                st.self_signalled = false;
            }
            if !st.armed {
                st.armed = true;
                if ring.arm_consumer(st.head) {
                    sys::eventfd_signal(self.self_wake.as_raw_fd());
                    st.self_signalled = true;
                }
            }
        }
        if n == 0 && (hangup || self.closed_flag()) {
            self.gone.store(true, Ordering::Relaxed);
            return (st, Err(ClientError::Disconnected));
        }
        (st, Ok(n))
    }

    /// Raw access to the shared segment, for tests that play a hostile
    /// client (scribbling over the rings).
    #[doc(hidden)]
    pub fn segment_for_tests(&self) -> (*mut u8, usize) {
        (self.map.ptr(), self.map.len())
    }

    /// The client's end of its doorbell, for tests that play a hostile
    /// client (changing its flags, emptying it).
    #[doc(hidden)]
    pub fn doorbell_for_tests(&self) -> RawFd {
        self.doorbell.as_raw_fd()
    }
}
