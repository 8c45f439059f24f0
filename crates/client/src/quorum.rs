//! Cluster quorum: the Rust face of `libquorum`.
//!
//! A [`Quorum`] connection answers whether the cluster is quorate and, once
//! tracking, reports every change through [`Quorum::dispatch`]: model V0
//! calls [`QuorumCallbacks::notify`]; model V1 also calls
//! [`QuorumCallbacks::nodelist`] with who joined and who left.
//!
//! ```no_run
//! use corosync_rs::quorum::{Model, Quorum, QuorumHandlers, TRACK_CHANGES};
//! use corosync_rs::DispatchFlags;
//!
//! let (q, _quorum_type) = Quorum::initialize(
//!     Model::V1,
//!     QuorumHandlers::new().on_notify(|_q, quorate, ring, members| {
//!         println!("quorate={quorate} ring={}/{} members={members:?}", ring.nodeid, ring.seq);
//!     }),
//! )?;
//! println!("quorate now: {}", q.getquorate()?);
//! q.trackstart(TRACK_CHANGES)?;
//! q.dispatch(DispatchFlags::One)?;
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::os::fd::RawFd;
use std::sync::Arc;

use services::proto::quorum::{self as proto, decode_u32, EventMsg, Request};
use services::proto::{service, CsError};

use crate::conn::{Conn, Event};
use crate::DispatchFlags;

/// `quorum_ring_id`: the ring (representative node, sequence).
pub type RingId = proto::Ring;

/// `CS_TRACK_CURRENT`, `CS_TRACK_CHANGES`, `CS_TRACK_CHANGES_ONLY`.
pub const TRACK_CURRENT: u32 = proto::track::CURRENT;
pub const TRACK_CHANGES: u32 = proto::track::CHANGES;
pub const TRACK_CHANGES_ONLY: u32 = proto::track::CHANGES_ONLY;

/// `QUORUM_FREE` / `QUORUM_SET`, as `initialize` returns them.
pub const QUORUM_FREE: u32 = proto::quorum_type::FREE;
pub const QUORUM_SET: u32 = proto::quorum_type::SET;

/// `quorum_model_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Model {
    V0 = 0,
    V1 = 1,
}

/// What a [`Quorum`] calls from [`Quorum::dispatch`] (see
/// [`crate::cpg::CpgCallbacks`] for the threading rules).
pub trait QuorumCallbacks: Send + Sync {
    /// Quorum state and the quorum members (V0 gets `ring.seq` only).
    fn notify(&self, q: &Quorum, quorate: bool, ring: RingId, members: &[u32]) {
        let _ = (q, quorate, ring, members);
    }
    /// Model V1: the membership with who joined and who left.
    fn nodelist(&self, q: &Quorum, ring: RingId, members: &[u32], joined: &[u32], left: &[u32]) {
        let _ = (q, ring, members, joined, left);
    }
}

type NotifyFn = dyn Fn(&Quorum, bool, RingId, &[u32]) + Send + Sync;
type NodelistFn = dyn Fn(&Quorum, RingId, &[u32], &[u32], &[u32]) + Send + Sync;

/// [`QuorumCallbacks`] made of closures; unset ones do nothing.
#[derive(Default)]
pub struct QuorumHandlers {
    notify: Option<Box<NotifyFn>>,
    nodelist: Option<Box<NodelistFn>>,
}

impl QuorumHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(quorum, quorate, ring, members)`.
    pub fn on_notify(
        mut self,
        f: impl Fn(&Quorum, bool, RingId, &[u32]) + Send + Sync + 'static,
    ) -> Self {
        self.notify = Some(Box::new(f));
        self
    }

    /// `(quorum, ring, members, joined, left)`.
    pub fn on_nodelist(
        mut self,
        f: impl Fn(&Quorum, RingId, &[u32], &[u32], &[u32]) + Send + Sync + 'static,
    ) -> Self {
        self.nodelist = Some(Box::new(f));
        self
    }
}

impl QuorumCallbacks for QuorumHandlers {
    fn notify(&self, q: &Quorum, quorate: bool, ring: RingId, members: &[u32]) {
        if let Some(f) = &self.notify {
            f(q, quorate, ring, members)
        }
    }
    fn nodelist(&self, q: &Quorum, ring: RingId, members: &[u32], joined: &[u32], left: &[u32]) {
        if let Some(f) = &self.nodelist {
            f(q, ring, members, joined, left)
        }
    }
}

/// A connection to the quorum service (`quorum_handle_t`). Thread-safe;
/// drop finalizes it.
pub struct Quorum {
    conn: Conn,
    callbacks: Arc<dyn QuorumCallbacks>,
    model: Model,
}

impl std::fmt::Debug for Quorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Quorum")
            .field("fd", &self.fd())
            .field("model", &self.model)
            .finish()
    }
}

impl Quorum {
    /// `quorum_model_initialize` (`quorum_initialize` is model V0).
    /// Returns the connection and the quorum type ([`QUORUM_SET`] with a
    /// provider, [`QUORUM_FREE`] without: always quorate).
    pub fn initialize(
        model: Model,
        callbacks: impl QuorumCallbacks + 'static,
    ) -> Result<(Quorum, u32), CsError> {
        Quorum::initialize_shared(model, Arc::new(callbacks))
    }

    pub(crate) fn initialize_shared(
        model: Model,
        callbacks: Arc<dyn QuorumCallbacks>,
    ) -> Result<(Quorum, u32), CsError> {
        let q = Quorum {
            conn: Conn::connect(service::QUORUM)?,
            callbacks,
            model,
        };
        let body = q.request(&Request::Init {
            model: model as u32,
        })?;
        let t = decode_u32(&body).map_err(|_| CsError::Library)?;
        Ok((q, t))
    }

    fn request(&self, req: &Request) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    pub fn model(&self) -> Model {
        self.model
    }

    /// `quorum_fd_get`.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// `quorum_getquorate`.
    pub fn getquorate(&self) -> Result<bool, CsError> {
        let body = self.request(&Request::GetQuorate)?;
        Ok(decode_u32(&body).map_err(|_| CsError::Library)? != 0)
    }

    /// `quorum_trackstart` with `CS_TRACK_*` flags.
    pub fn trackstart(&self, flags: u32) -> Result<(), CsError> {
        self.request(&Request::TrackStart { flags }).map(drop)
    }

    /// `quorum_trackstop`.
    pub fn trackstop(&self) -> Result<(), CsError> {
        self.request(&Request::TrackStop).map(drop)
    }

    /// `quorum_dispatch` with the callbacks given at initialization.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        let callbacks = Arc::clone(&self.callbacks);
        self.dispatch_with(flags, &*callbacks)
    }

    /// `quorum_dispatch` with other callbacks.
    pub fn dispatch_with(
        &self,
        flags: DispatchFlags,
        callbacks: &dyn QuorumCallbacks,
    ) -> Result<(), CsError> {
        self.conn
            .dispatch(flags, |ev| self.deliver_event(ev, callbacks))
    }

    fn deliver_event(&self, ev: &mut Event<'_>, cb: &dyn QuorumCallbacks) -> Result<(), CsError> {
        match EventMsg::decode(ev.kind, ev.payload).map_err(|_| CsError::Library)? {
            EventMsg::Notify {
                quorate,
                ring,
                members,
            } => cb.notify(self, quorate, ring, &members),
            EventMsg::Nodelist {
                ring,
                members,
                joined,
                left,
            } => cb.nodelist(self, ring, &members, &joined, &left),
        }
        Ok(())
    }

    /// `quorum_finalize`.
    pub fn finalize(self) -> Result<(), CsError> {
        self.finalize_shared()
    }

    pub(crate) fn finalize_shared(&self) -> Result<(), CsError> {
        self.conn.finalize(None)
    }
}

impl Drop for Quorum {
    fn drop(&mut self) {
        if !self.conn.is_finalized() {
            let _ = self.finalize_shared();
        }
    }
}
