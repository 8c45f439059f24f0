//! Extended virtual synchrony groups: the Rust face of `libevs`.
//!
//! An [`Evs`] connection joins any number of groups (32-byte keys); a
//! message multicast to a set of groups reaches every connection, on every
//! node, that joined one of them. Configuration changes are the ring's
//! (node ids).
//!
//! ```no_run
//! use corosync_rs::evs::{group, Evs, EvsHandlers};
//! use corosync_rs::{DispatchFlags, Guarantee};
//!
//! let evs = Evs::initialize(EvsHandlers::new().on_deliver(|_evs, nodeid, msg| {
//!     println!("node {nodeid}: {} bytes", msg.len());
//! }))?;
//! evs.join(&[group("alpha")])?;
//! evs.mcast_joined(Guarantee::Agreed, &[b"hello".as_slice()])?;
//! evs.mcast_groups(Guarantee::Agreed, &[group("beta")], &[b"to beta".as_slice()])?;
//! evs.dispatch(DispatchFlags::All)?;
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::os::fd::RawFd;
use std::sync::Arc;

use services::proto::evs::{self as proto, EventMsg, Request};
use services::proto::{service, CsError};

use crate::conn::{Conn, Event};
use crate::{DispatchFlags, Guarantee};

/// `struct evs_group`: a 32-byte key.
pub type Group = proto::Group;
/// `sizeof(struct evs_group)`.
pub const GROUP_LEN: usize = proto::GROUP_LEN;
/// Groups one call may name at most (`TooManyGroups` past it).
pub const MAX_GROUPS: usize = proto::MAX_GROUPS;

/// A group key from a name: its bytes, zero-padded (truncated at 32).
pub fn group(name: &str) -> Group {
    let mut g = [0u8; GROUP_LEN];
    let n = name.len().min(GROUP_LEN);
    g[..n].copy_from_slice(&name.as_bytes()[..n]);
    g
}

/// What an [`Evs`] calls from [`Evs::dispatch`] (see
/// [`crate::cpg::CpgCallbacks`] for the threading rules).
pub trait EvsCallbacks: Send + Sync {
    fn deliver(&self, evs: &Evs, nodeid: u32, msg: &[u8]) {
        let _ = (evs, nodeid, msg);
    }
    fn confchg(&self, evs: &Evs, members: &[u32], left: &[u32], joined: &[u32]) {
        let _ = (evs, members, left, joined);
    }
}

type DeliverFn = dyn Fn(&Evs, u32, &[u8]) + Send + Sync;
type ConfchgFn = dyn Fn(&Evs, &[u32], &[u32], &[u32]) + Send + Sync;

/// [`EvsCallbacks`] made of closures; unset ones do nothing.
#[derive(Default)]
pub struct EvsHandlers {
    deliver: Option<Box<DeliverFn>>,
    confchg: Option<Box<ConfchgFn>>,
}

impl EvsHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(evs, nodeid, msg)`.
    pub fn on_deliver(mut self, f: impl Fn(&Evs, u32, &[u8]) + Send + Sync + 'static) -> Self {
        self.deliver = Some(Box::new(f));
        self
    }

    /// `(evs, members, left, joined)`.
    pub fn on_confchg(
        mut self,
        f: impl Fn(&Evs, &[u32], &[u32], &[u32]) + Send + Sync + 'static,
    ) -> Self {
        self.confchg = Some(Box::new(f));
        self
    }
}

impl EvsCallbacks for EvsHandlers {
    fn deliver(&self, evs: &Evs, nodeid: u32, msg: &[u8]) {
        if let Some(f) = &self.deliver {
            f(evs, nodeid, msg)
        }
    }
    fn confchg(&self, evs: &Evs, members: &[u32], left: &[u32], joined: &[u32]) {
        if let Some(f) = &self.confchg {
            f(evs, members, left, joined)
        }
    }
}

/// A connection to the EVS service (`evs_handle_t`). Thread-safe; drop
/// finalizes it.
pub struct Evs {
    conn: Conn,
    callbacks: Arc<dyn EvsCallbacks>,
}

impl std::fmt::Debug for Evs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Evs").field("fd", &self.fd()).finish()
    }
}

fn check_groups(groups: &[Group]) -> Result<(), CsError> {
    if groups.len() > MAX_GROUPS {
        Err(CsError::TooManyGroups)
    } else {
        Ok(())
    }
}

impl Evs {
    /// `evs_initialize`. `CsError::Library` when no daemon runs.
    pub fn initialize(callbacks: impl EvsCallbacks + 'static) -> Result<Evs, CsError> {
        Evs::initialize_shared(Arc::new(callbacks))
    }

    pub(crate) fn initialize_shared(callbacks: Arc<dyn EvsCallbacks>) -> Result<Evs, CsError> {
        Ok(Evs {
            conn: Conn::connect(service::EVS)?,
            callbacks,
        })
    }

    fn request(&self, req: &Request<'_>) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    /// `evs_fd_get`.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// `evs_join`.
    pub fn join(&self, groups: &[Group]) -> Result<(), CsError> {
        check_groups(groups)?;
        self.request(&Request::Join {
            groups: groups.to_vec(),
        })
        .map(drop)
    }

    /// `evs_leave`.
    pub fn leave(&self, groups: &[Group]) -> Result<(), CsError> {
        check_groups(groups)?;
        self.request(&Request::Leave {
            groups: groups.to_vec(),
        })
        .map(drop)
    }

    fn mcast(&self, req_head: &[u8], kind: u16, parts: &[&[u8]]) -> Result<(), CsError> {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len.saturating_add(req_head.len()) > self.conn.max_request() {
            return Err(CsError::TooBig);
        }
        let mut payload = Vec::with_capacity(req_head.len() + len);
        payload.extend_from_slice(req_head);
        for p in parts {
            payload.extend_from_slice(p);
        }
        self.conn.call(kind, &payload).map(drop)
    }

    /// `evs_mcast_joined`: the concatenation of `parts`, to the groups
    /// this connection joined.
    pub fn mcast_joined<B: AsRef<[u8]>>(
        &self,
        guarantee: Guarantee,
        parts: &[B],
    ) -> Result<(), CsError> {
        let parts: Vec<&[u8]> = parts.iter().map(AsRef::as_ref).collect();
        let head = (guarantee as u32).to_le_bytes();
        self.mcast(&head, proto::kind::MCAST_JOINED, &parts)
    }

    /// `evs_mcast_groups`: to `groups`, joined or not.
    pub fn mcast_groups<B: AsRef<[u8]>>(
        &self,
        guarantee: Guarantee,
        groups: &[Group],
        parts: &[B],
    ) -> Result<(), CsError> {
        check_groups(groups)?;
        let parts: Vec<&[u8]> = parts.iter().map(AsRef::as_ref).collect();
        // The request is guarantee, group list, then the message bytes.
        let mut head = Vec::new();
        Request::McastGroups {
            guarantee: guarantee as u32,
            groups: groups.to_vec(),
            msg: &[],
        }
        .encode(&mut head);
        self.mcast(&head, proto::kind::MCAST_GROUPS, &parts)
    }

    /// `evs_membership_get`: this node's id and the ring's members.
    pub fn membership_get(&self) -> Result<(u32, Vec<u32>), CsError> {
        let body = self.request(&Request::MembershipGet)?;
        proto::decode_membership(&body).map_err(|_| CsError::Library)
    }

    /// `evs_dispatch` with the callbacks given at initialization.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        let callbacks = Arc::clone(&self.callbacks);
        self.dispatch_with(flags, &*callbacks)
    }

    /// `evs_dispatch` with other callbacks.
    pub fn dispatch_with(
        &self,
        flags: DispatchFlags,
        callbacks: &dyn EvsCallbacks,
    ) -> Result<(), CsError> {
        self.conn
            .dispatch(flags, |ev| self.deliver_event(ev, callbacks))
    }

    fn deliver_event(&self, ev: &mut Event<'_>, cb: &dyn EvsCallbacks) -> Result<(), CsError> {
        match EventMsg::decode(ev.kind, ev.payload).map_err(|_| CsError::Library)? {
            EventMsg::Deliver { nodeid, msg } => cb.deliver(self, nodeid, msg),
            EventMsg::Confchg {
                members,
                left,
                joined,
            } => cb.confchg(self, &members, &left, &joined),
        }
        Ok(())
    }

    /// `evs_finalize`.
    pub fn finalize(self) -> Result<(), CsError> {
        self.finalize_shared()
    }

    pub(crate) fn finalize_shared(&self) -> Result<(), CsError> {
        self.conn.finalize(None)
    }
}

impl Drop for Evs {
    fn drop(&mut self) {
        if !self.conn.is_finalized() {
            let _ = self.finalize_shared();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_keys_pad_and_truncate() {
        let g = group("ab");
        assert_eq!(&g[..3], b"ab\0");
        let long = "x".repeat(40);
        assert_eq!(group(&long), [b'x'; GROUP_LEN]);
    }

    #[test]
    fn mcast_groups_head_then_message_matches_the_protocol() {
        let mut head = Vec::new();
        Request::McastGroups {
            guarantee: 2,
            groups: vec![group("g")],
            msg: &[],
        }
        .encode(&mut head);
        head.extend_from_slice(b"payload");
        assert_eq!(
            Request::decode(proto::kind::MCAST_GROUPS, &head),
            Ok(Request::McastGroups {
                guarantee: 2,
                groups: vec![group("g")],
                msg: b"payload",
            })
        );
    }
}
