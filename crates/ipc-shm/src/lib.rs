//! Client↔daemon IPC: session set-up over a unix socket (peer credentials,
//! uid/gid authorization), memfd-backed request/response/event rings passed
//! by SCM_RIGHTS, wake-ups only when a peer asked for one (needs-wakeup
//! flags), bounded flow control, and client-death cleanup. Server and
//! client halves.
//!
//! Role (see `ARCHITECTURE.md`): moves opaque frames (a small header with
//! service, kind and request id) and knows nothing of services. One of the
//! three crates allowed `unsafe`, each block with a `// SAFETY:` note.
//!
//! Wake-up channels. The client rings the daemon by writing its doorbell,
//! an eventfd the daemon also holds (a pipe on kernels whose eventfds
//! ignore `RWF_NOWAIT`); the daemon also waits on the session socket, which
//! reports the client's death. Both are registered under the session's
//! token and drained only once the request ring is empty, so a woken
//! request is read first. An eventfd handed to a peer is one open file
//! description whose `O_NONBLOCK` flag and counter the peer controls, so
//! the daemon only ever reads it with `RWF_NOWAIT` (per call, never
//! blocks) and never writes it. The daemon wakes the client through two
//! pipes whose read ends the client holds (response and event): the
//! daemon writes those, and a pipe's two ends are separate descriptions
//! (a client cannot make the daemon's write block), and a dead daemon
//! leaves them hung up. The client's pollable fd is an epoll set over its
//! event pipe, a private eventfd and the socket: readable when events wait
//! and when the daemon dies.
//!
//! The request path has no locked instruction: a client publishes its
//! ring's tail with a plain store and reads the daemon's wake-up flag
//! after a compiler fence; the daemon, once it has asked the empty rings
//! for wake-ups, issues one membarrier (`GLOBAL_EXPEDITED`) before it
//! trusts their tails again (`REPLY_FLAG_LIGHT_REQUESTS`, where the kernel
//! has it; otherwise a locked exchange and a fence). The client's send lock
//! is biased to the first sending thread (`send_lock`).
//!
//! The server never blocks: the run loop registers the fds it hands out
//! (`Server::take_fd_change`), reports readiness (`Server::handle_ready`)
//! and pulls events (`Server::next_event`). `PollLoop` is a small epoll run
//! loop over those fds: tests and tools wait in it; the daemon adds its
//! epoll fd to its own run loop and only turns it without waiting.

mod client;
mod config;
mod poll_loop;
pub mod proto;
pub mod ring;
mod send_lock;
mod server;
mod sys;

pub use client::{Client, ClientConfig, ClientError, DispatchMode, Response, Wait};
pub use config::{Authorization, Endpoint, ServerConfig, UidGid, DEFAULT_ENDPOINT, ENDPOINT_ENV};
pub use poll_loop::PollLoop;
pub use ring::{FrameHeader, RingSizes, RingViolation};
pub use server::{
    Credentials, Delivery, DisconnectReason, Event, FdChange, SendError, Server, ServerStats,
    SessionId, SessionInfo, Token, ERROR_KIND, ERROR_UNKNOWN_SERVICE, PARKED_RECHECK,
};
pub use sys::monotonic_ns;
