//! Vote-based quorum: the Rust face of `libvotequorum`.
//!
//! [`Votequorum::getinfo`] reads a node's votes and the cluster's expected
//! votes, quorum and flags; [`Votequorum::setexpected`] and
//! [`Votequorum::setvotes`] change them cluster-wide; tracking reports
//! quorum, membership and expected-votes changes through
//! [`Votequorum::dispatch`]. Quorum device calls answer
//! `CsError::NotSupported`. Without the votequorum provider configured,
//! [`Votequorum::initialize`] fails with `CsError::NotSupported`.
//!
//! ```no_run
//! use corosync_rs::votequorum::{Votequorum, VotequorumHandlers, INFO_QUORATE};
//!
//! let vq = Votequorum::initialize(VotequorumHandlers::new())?;
//! let info = vq.getinfo(0)?;
//! println!("{} of {} expected votes, quorum {}, quorate {}",
//!     info.total_votes, info.node_expected_votes, info.quorum, info.flags & INFO_QUORATE != 0);
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::os::fd::RawFd;
use std::sync::Arc;

use services::proto::votequorum::{self as proto, EventMsg, Request};
use services::proto::{service, CsError};

use crate::conn::{Conn, Event};
use crate::DispatchFlags;

pub use services::proto::votequorum::info_flag::{
    ALLOW_DOWNSCALE as INFO_ALLOW_DOWNSCALE, AUTO_TIE_BREAKER as INFO_AUTO_TIE_BREAKER,
    LAST_MAN_STANDING as INFO_LAST_MAN_STANDING, QUORATE as INFO_QUORATE, TWONODE as INFO_TWONODE,
    WAIT_FOR_ALL as INFO_WAIT_FOR_ALL,
};
pub use services::proto::votequorum::nodestate;

/// `struct votequorum_info`.
pub type Info = proto::Info;
/// `votequorum_ring_id_t`.
pub type RingId = services::proto::quorum::Ring;

/// What a [`Votequorum`] calls from [`Votequorum::dispatch`]; `context` is
/// the value given to [`Votequorum::trackstart`].
pub trait VotequorumCallbacks: Send + Sync {
    /// Quorum state and every known node with its state
    /// ([`nodestate`]).
    fn quorum(&self, vq: &Votequorum, context: u64, quorate: bool, nodes: &[(u32, u32)]) {
        let _ = (vq, context, quorate, nodes);
    }
    /// The ring's members.
    fn nodelist(&self, vq: &Votequorum, context: u64, ring: RingId, members: &[u32]) {
        let _ = (vq, context, ring, members);
    }
    /// Expected votes changed.
    fn expected_votes(&self, vq: &Votequorum, context: u64, expected: u32) {
        let _ = (vq, context, expected);
    }
}

type QuorumFn = dyn Fn(&Votequorum, u64, bool, &[(u32, u32)]) + Send + Sync;
type NodelistFn = dyn Fn(&Votequorum, u64, RingId, &[u32]) + Send + Sync;
type ExpectedFn = dyn Fn(&Votequorum, u64, u32) + Send + Sync;

/// [`VotequorumCallbacks`] made of closures; unset ones do nothing.
#[derive(Default)]
pub struct VotequorumHandlers {
    quorum: Option<Box<QuorumFn>>,
    nodelist: Option<Box<NodelistFn>>,
    expected: Option<Box<ExpectedFn>>,
}

impl VotequorumHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(vq, context, quorate, nodes)`.
    pub fn on_quorum(
        mut self,
        f: impl Fn(&Votequorum, u64, bool, &[(u32, u32)]) + Send + Sync + 'static,
    ) -> Self {
        self.quorum = Some(Box::new(f));
        self
    }

    /// `(vq, context, ring, members)`.
    pub fn on_nodelist(
        mut self,
        f: impl Fn(&Votequorum, u64, RingId, &[u32]) + Send + Sync + 'static,
    ) -> Self {
        self.nodelist = Some(Box::new(f));
        self
    }

    /// `(vq, context, expected_votes)`.
    pub fn on_expected_votes(
        mut self,
        f: impl Fn(&Votequorum, u64, u32) + Send + Sync + 'static,
    ) -> Self {
        self.expected = Some(Box::new(f));
        self
    }
}

impl VotequorumCallbacks for VotequorumHandlers {
    fn quorum(&self, vq: &Votequorum, context: u64, quorate: bool, nodes: &[(u32, u32)]) {
        if let Some(f) = &self.quorum {
            f(vq, context, quorate, nodes)
        }
    }
    fn nodelist(&self, vq: &Votequorum, context: u64, ring: RingId, members: &[u32]) {
        if let Some(f) = &self.nodelist {
            f(vq, context, ring, members)
        }
    }
    fn expected_votes(&self, vq: &Votequorum, context: u64, expected: u32) {
        if let Some(f) = &self.expected {
            f(vq, context, expected)
        }
    }
}

/// A connection to the votequorum service (`votequorum_handle_t`).
/// Thread-safe; drop finalizes it.
pub struct Votequorum {
    conn: Conn,
    callbacks: Arc<dyn VotequorumCallbacks>,
}

impl std::fmt::Debug for Votequorum {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Votequorum")
            .field("fd", &self.fd())
            .finish()
    }
}

impl Votequorum {
    /// `votequorum_initialize`.
    pub fn initialize(
        callbacks: impl VotequorumCallbacks + 'static,
    ) -> Result<Votequorum, CsError> {
        Votequorum::initialize_shared(Arc::new(callbacks))
    }

    pub(crate) fn initialize_shared(
        callbacks: Arc<dyn VotequorumCallbacks>,
    ) -> Result<Votequorum, CsError> {
        let vq = Votequorum {
            conn: Conn::connect(service::VOTEQUORUM)?,
            callbacks,
        };
        vq.request(&Request::Init)?;
        Ok(vq)
    }

    fn request(&self, req: &Request) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    /// `votequorum_fd_get`.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// `votequorum_getinfo`; `nodeid` 0 is this node.
    pub fn getinfo(&self, nodeid: u32) -> Result<Info, CsError> {
        let body = self.request(&Request::GetInfo { nodeid })?;
        Info::decode(&body).map_err(|_| CsError::Library)
    }

    /// `votequorum_setexpected`.
    pub fn setexpected(&self, expected: u32) -> Result<(), CsError> {
        self.request(&Request::SetExpected { expected }).map(drop)
    }

    /// `votequorum_setvotes`; `nodeid` 0 is this node.
    pub fn setvotes(&self, nodeid: u32, votes: u32) -> Result<(), CsError> {
        self.request(&Request::SetVotes { nodeid, votes }).map(drop)
    }

    /// `votequorum_trackstart` with `CS_TRACK_*` flags.
    pub fn trackstart(&self, context: u64, flags: u32) -> Result<(), CsError> {
        self.request(&Request::TrackStart { context, flags })
            .map(drop)
    }

    /// `votequorum_trackstop`.
    pub fn trackstop(&self) -> Result<(), CsError> {
        self.request(&Request::TrackStop).map(drop)
    }

    /// The quorum device calls (`votequorum_qdevice_*`): not supported.
    pub fn qdevice_register(&self, _name: &str) -> Result<(), CsError> {
        Err(CsError::NotSupported)
    }

    /// `votequorum_dispatch` with the callbacks given at initialization.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        let callbacks = Arc::clone(&self.callbacks);
        self.dispatch_with(flags, &*callbacks)
    }

    /// `votequorum_dispatch` with other callbacks.
    pub fn dispatch_with(
        &self,
        flags: DispatchFlags,
        callbacks: &dyn VotequorumCallbacks,
    ) -> Result<(), CsError> {
        self.conn
            .dispatch(flags, |ev| self.deliver_event(ev, callbacks))
    }

    fn deliver_event(
        &self,
        ev: &mut Event<'_>,
        cb: &dyn VotequorumCallbacks,
    ) -> Result<(), CsError> {
        match EventMsg::decode(ev.kind, ev.payload).map_err(|_| CsError::Library)? {
            EventMsg::Quorum {
                context,
                quorate,
                nodes,
            } => cb.quorum(self, context, quorate, &nodes),
            EventMsg::Nodelist {
                context,
                ring,
                members,
            } => cb.nodelist(self, context, ring, &members),
            EventMsg::Expected { context, expected } => cb.expected_votes(self, context, expected),
        }
        Ok(())
    }

    /// `votequorum_finalize`.
    pub fn finalize(self) -> Result<(), CsError> {
        self.finalize_shared()
    }

    pub(crate) fn finalize_shared(&self) -> Result<(), CsError> {
        self.conn.finalize(None)
    }
}

impl Drop for Votequorum {
    fn drop(&mut self) {
        if !self.conn.is_finalized() {
            let _ = self.finalize_shared();
        }
    }
}
