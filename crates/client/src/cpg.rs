//! Closed process groups: the Rust face of `libcpg`.
//!
//! A [`Cpg`] is one connection (one `cpg_handle_t`): it may join one group
//! at a time, multicast to it, and receives the group's messages and
//! membership changes through [`Cpg::dispatch`], which calls the
//! [`CpgCallbacks`] given at initialization in the calling thread.
//!
//! ```no_run
//! use std::sync::atomic::{AtomicUsize, Ordering};
//! use std::sync::Arc;
//! use corosync_rs::cpg::{Cpg, CpgHandlers};
//! use corosync_rs::{DispatchFlags, Guarantee};
//!
//! let seen = Arc::new(AtomicUsize::new(0));
//! let counter = Arc::clone(&seen);
//! let cpg = Cpg::initialize(
//!     CpgHandlers::new()
//!         .on_deliver(move |_cpg, _group, _nodeid, _pid, _msg| {
//!             counter.fetch_add(1, Ordering::Relaxed);
//!         })
//!         .on_confchg(|_cpg, group, members, left, joined| {
//!             println!("{:?}: {} members, {} left, {} joined",
//!                 String::from_utf8_lossy(group), members.len(), left.len(), joined.len());
//!         }),
//! )?;
//! cpg.join(b"workers")?;
//! cpg.mcast_joined(Guarantee::Agreed, &[b"job ".as_slice(), b"42".as_slice()])?;
//! while seen.load(Ordering::Relaxed) == 0 {
//!     cpg.dispatch(DispatchFlags::One)?;
//! }
//! cpg.finalize()?;
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::os::fd::RawFd;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;

use services::proto::cpg::{self as proto, EventMsg, Request};
use services::proto::{service, CsError};

use crate::conn::{Conn, Event};
use crate::{DispatchFlags, Guarantee};

pub use services::proto::cpg::Address;

/// `CPG_MAX_NAME_LENGTH`.
pub const MAX_NAME_LENGTH: usize = proto::MAX_NAME;
/// `CPG_MEMBERS_MAX`.
pub const MEMBERS_MAX: usize = proto::MAX_MEMBERS;
/// `CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`: deliver a totem confchg
/// right after initialization, not only on the next ring change.
pub const MODEL_V1_DELIVER_INITIAL_TOTEM_CONF: u32 = proto::model::V1_DELIVER_INITIAL_TOTEM_CONF;

/// `cpg_reason_t` values found in [`Address::reason`].
pub mod reason {
    pub use services::proto::cpg::reason::*;
}

/// `struct cpg_ring_id`: a Totem ring (representative node, sequence).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct RingId {
    pub nodeid: u32,
    pub seq: u64,
}

/// `cpg_flow_control_state_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FlowControl {
    /// New messages may be sent.
    Disabled = 0,
    /// New messages should not be sent.
    Enabled = 1,
}

/// `cpg_iteration_type_t`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IterationType {
    /// One entry per group (nodeid and pid are 0).
    NameOnly = 1,
    /// The members of one group.
    OneGroup = 2,
    /// Every member of every group.
    All = 3,
}

/// One entry of [`Cpg::iteration`] (`struct cpg_iteration_description_t`).
pub use services::proto::cpg::IterationEntry as IterationDescription;

/// What a [`Cpg`] calls from [`Cpg::dispatch`]. Methods take `&self`
/// (callbacks may run re-entrantly, from a dispatch inside a callback, or
/// from several dispatching threads); keep state behind a lock or atomic.
/// Every method has an empty default.
pub trait CpgCallbacks: Send + Sync {
    /// A message multicast to a joined group. `msg` is a private copy the
    /// callback may change in place (as libcpg allows for endian fix-ups).
    fn deliver(&self, cpg: &Cpg, group: &[u8], nodeid: u32, pid: u32, msg: &mut [u8]) {
        let _ = (cpg, group, nodeid, pid, msg);
    }

    /// The membership of a joined group changed.
    fn confchg(
        &self,
        cpg: &Cpg,
        group: &[u8],
        members: &[Address],
        left: &[Address],
        joined: &[Address],
    ) {
        let _ = (cpg, group, members, left, joined);
    }

    /// The Totem ring changed (model v1).
    fn totem_confchg(&self, cpg: &Cpg, ring_id: RingId, members: &[u32]) {
        let _ = (cpg, ring_id, members);
    }
}

type DeliverFn = dyn Fn(&Cpg, &[u8], u32, u32, &mut [u8]) + Send + Sync;
type ConfchgFn = dyn Fn(&Cpg, &[u8], &[Address], &[Address], &[Address]) + Send + Sync;
type TotemConfchgFn = dyn Fn(&Cpg, RingId, &[u32]) + Send + Sync;

/// [`CpgCallbacks`] made of closures; unset ones do nothing.
#[derive(Default)]
pub struct CpgHandlers {
    deliver: Option<Box<DeliverFn>>,
    confchg: Option<Box<ConfchgFn>>,
    totem_confchg: Option<Box<TotemConfchgFn>>,
}

impl CpgHandlers {
    pub fn new() -> Self {
        Self::default()
    }

    /// `(cpg, group, nodeid, pid, msg)`.
    pub fn on_deliver(
        mut self,
        f: impl Fn(&Cpg, &[u8], u32, u32, &mut [u8]) + Send + Sync + 'static,
    ) -> Self {
        self.deliver = Some(Box::new(f));
        self
    }

    /// `(cpg, group, members, left, joined)`.
    pub fn on_confchg(
        mut self,
        f: impl Fn(&Cpg, &[u8], &[Address], &[Address], &[Address]) + Send + Sync + 'static,
    ) -> Self {
        self.confchg = Some(Box::new(f));
        self
    }

    /// `(cpg, ring_id, members)`.
    pub fn on_totem_confchg(
        mut self,
        f: impl Fn(&Cpg, RingId, &[u32]) + Send + Sync + 'static,
    ) -> Self {
        self.totem_confchg = Some(Box::new(f));
        self
    }
}

impl CpgCallbacks for CpgHandlers {
    fn deliver(&self, cpg: &Cpg, group: &[u8], nodeid: u32, pid: u32, msg: &mut [u8]) {
        if let Some(f) = &self.deliver {
            f(cpg, group, nodeid, pid, msg)
        }
    }
    fn confchg(&self, cpg: &Cpg, g: &[u8], m: &[Address], l: &[Address], j: &[Address]) {
        if let Some(f) = &self.confchg {
            f(cpg, g, m, l, j)
        }
    }
    fn totem_confchg(&self, cpg: &Cpg, ring_id: RingId, members: &[u32]) {
        if let Some(f) = &self.totem_confchg {
            f(cpg, ring_id, members)
        }
    }
}

/// A connection to the CPG service (`cpg_handle_t`). Thread-safe; drop
/// finalizes it.
pub struct Cpg {
    conn: Conn,
    callbacks: Arc<dyn CpgCallbacks>,
    /// A join succeeded and no leave followed: what the daemon checks
    /// before an mcast, known here so `mcast_joined` needs no answer.
    joined: AtomicBool,
    /// `max_atomic_msgsize` as the daemon said (0: not asked yet).
    max_atomic: AtomicU32,
    /// Messages arriving in pieces, by sender `(nodeid, pid)`: the bytes
    /// so far and the announced total (at most
    /// `proto::MAX_PARTIAL_TOTAL` each).
    assembly: std::sync::Mutex<Assembly>,
}

/// Messages arriving in pieces: `(nodeid, pid)` → (bytes so far, total).
type Assembly = std::collections::HashMap<(u32, u32), (Vec<u8>, u32)>;

impl std::fmt::Debug for Cpg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cpg").field("fd", &self.fd()).finish()
    }
}

fn check_name(group: &[u8]) -> Result<(), CsError> {
    if group.len() > MAX_NAME_LENGTH {
        Err(CsError::NameTooLong)
    } else {
        Ok(())
    }
}

fn decode_u32(body: &[u8]) -> Result<u32, CsError> {
    proto::decode_u32(body).map_err(|_| CsError::Library)
}

impl Cpg {
    /// `cpg_initialize`: connects without the model-v1 extras.
    /// `CsError::Library` when no daemon runs; `TryAgain` while it starts.
    pub fn initialize(callbacks: impl CpgCallbacks + 'static) -> Result<Cpg, CsError> {
        Cpg::connect(0, 0, Arc::new(callbacks))
    }

    /// `cpg_model_initialize` with `CPG_MODEL_V1`: `flags` may hold
    /// [`MODEL_V1_DELIVER_INITIAL_TOTEM_CONF`]; other bits are
    /// `InvalidParam`.
    pub fn model_initialize(
        flags: u32,
        callbacks: impl CpgCallbacks + 'static,
    ) -> Result<Cpg, CsError> {
        Cpg::model_initialize_shared(flags, Arc::new(callbacks))
    }

    pub(crate) fn model_initialize_shared(
        flags: u32,
        callbacks: Arc<dyn CpgCallbacks>,
    ) -> Result<Cpg, CsError> {
        if flags & !MODEL_V1_DELIVER_INITIAL_TOTEM_CONF != 0 {
            return Err(CsError::InvalidParam);
        }
        Cpg::connect(proto::model::V1, flags, callbacks)
    }

    fn connect(model: u32, flags: u32, callbacks: Arc<dyn CpgCallbacks>) -> Result<Cpg, CsError> {
        let conn = Conn::connect(service::CPG)?;
        let cpg = Cpg {
            conn,
            callbacks,
            joined: AtomicBool::new(false),
            max_atomic: AtomicU32::new(0),
            assembly: std::sync::Mutex::new(std::collections::HashMap::new()),
        };
        // A refused INIT drops the connection (Drop does not finalize a
        // session the daemon never accepted).
        if let Err(e) = cpg.request(&Request::Init { model, flags }) {
            let _ = cpg.conn.finalize(None);
            return Err(e);
        }
        Ok(cpg)
    }

    fn request(&self, req: &Request<'_>) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    /// `cpg_fd_get`: readable when events wait for [`dispatch`](Self::dispatch)
    /// and when the daemon went away.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// Sends a join or leave, asking again while the daemon answers BUSY
    /// (this connection's previous leave or join is not delivered yet), as
    /// Corosync's libcpg does: callers never see BUSY.
    fn request_until_not_busy(&self, req: &Request<'_>) -> Result<Vec<u8>, CsError> {
        loop {
            match self.request(req) {
                Err(CsError::Busy) => std::thread::sleep(std::time::Duration::from_micros(200)),
                other => return other,
            }
        }
    }

    /// `cpg_join`. `NameTooLong` past [`MAX_NAME_LENGTH`] bytes. While
    /// this connection's leave is on its way, waits for it.
    pub fn join(&self, group: &[u8]) -> Result<(), CsError> {
        check_name(group)?;
        self.request_until_not_busy(&Request::Join { group })?;
        self.joined.store(true, Ordering::Release);
        // Asked now so the first mcast does not wait for it.
        let _ = self.atomic_limit();
        Ok(())
    }

    /// `cpg_leave`. While this connection's join is on its way, waits
    /// for it.
    pub fn leave(&self, group: &[u8]) -> Result<(), CsError> {
        check_name(group)?;
        self.request_until_not_busy(&Request::Leave { group })?;
        self.joined.store(false, Ordering::Release);
        Ok(())
    }

    /// The daemon's `max_atomic_msgsize`, asked once.
    fn atomic_limit(&self) -> Result<usize, CsError> {
        match self.max_atomic.load(Ordering::Relaxed) {
            0 => {
                let v = self.max_atomic_msgsize()?;
                self.max_atomic.store(v, Ordering::Relaxed);
                Ok(v as usize)
            }
            v => Ok(v as usize),
        }
    }

    /// `cpg_mcast_joined`: the concatenation of `parts`, to the joined
    /// group, pipelined: `Ok` once the message is in the request ring (the
    /// daemon answers nothing; it multicasts it in order). What the daemon
    /// would refuse is checked here: `NotExist` when not joined, `TooBig`
    /// past `max_atomic_msgsize`. `TryAgain` when the request ring is full
    /// (the daemon stops reading requests while it applies flow control);
    /// `Library` when the daemon is gone.
    pub fn mcast_joined<B: AsRef<[u8]>>(
        &self,
        guarantee: Guarantee,
        parts: &[B],
    ) -> Result<(), CsError> {
        if self.conn.is_finalized() {
            return Err(CsError::BadHandle);
        }
        if !self.joined.load(Ordering::Acquire) {
            return Err(CsError::NotExist);
        }
        let len: usize = parts.iter().map(|p| p.as_ref().len()).sum();
        let atomic = self.atomic_limit()?;
        if len > atomic {
            return self.mcast_in_pieces(guarantee, parts, len, atomic);
        }
        if len.saturating_add(4) > self.conn.max_request() {
            return Err(CsError::TooBig);
        }
        let g = (guarantee as u32).to_le_bytes();
        // Written straight into the request ring; up to 8 parts without
        // allocating (libcpg callers pass an iovec array, usually short).
        let mut small: [&[u8]; 9] = [&[]; 9];
        let mut big: Vec<&[u8]> = Vec::new();
        let all: &[&[u8]] = if parts.len() < small.len() {
            small[0] = &g;
            for (s, p) in small[1..].iter_mut().zip(parts) {
                *s = p.as_ref();
            }
            &small[..parts.len() + 1]
        } else {
            big.push(&g);
            big.extend(parts.iter().map(|p| p.as_ref()));
            &big
        };
        self.conn.send_parts(proto::kind::MCAST_ASYNC, all)
    }

    /// A message longer than `max_atomic_msgsize`, sent as libcpg does: in
    /// pieces of at most that size (FIRST, CONTINUED…, LAST) that the
    /// receiving libraries put together again. `TryAgain` only before the
    /// first piece went; once it has, a full request ring is waited out
    /// here (the pieces of one message must all go). `TooBig` past
    /// `proto::MAX_PARTIAL_TOTAL`.
    fn mcast_in_pieces<B: AsRef<[u8]>>(
        &self,
        guarantee: Guarantee,
        parts: &[B],
        len: usize,
        atomic: usize,
    ) -> Result<(), CsError> {
        if len > proto::MAX_PARTIAL_TOTAL as usize {
            return Err(CsError::TooBig);
        }
        // A piece travels with 8 bytes more than a whole message (its type
        // and the total), within the same limit.
        let piece_max = atomic
            .saturating_sub(8)
            .min(self.conn.max_request().saturating_sub(16));
        if piece_max == 0 {
            return Err(CsError::TooBig);
        }
        let whole: Vec<u8> = parts.iter().flat_map(|p| p.as_ref()).copied().collect();
        let total = (len as u32).to_le_bytes();
        let g = (guarantee as u32).to_le_bytes();
        let pieces = whole.chunks(piece_max);
        let n = pieces.len();
        for (i, piece) in pieces.enumerate() {
            let part = if i == 0 {
                proto::partial::FIRST
            } else if i + 1 == n {
                proto::partial::LAST
            } else {
                proto::partial::CONTINUED
            }
            .to_le_bytes();
            loop {
                match self.conn.send_parts(
                    proto::kind::MCAST_PARTIAL_ASYNC,
                    &[&g, &part, &total, piece],
                ) {
                    Err(CsError::TryAgain) if i > 0 => {
                        std::thread::sleep(std::time::Duration::from_micros(200))
                    }
                    other => {
                        other?;
                        break;
                    }
                }
            }
        }
        Ok(())
    }

    /// `cpg_membership_get`: the members of `group`.
    pub fn membership_get(&self, group: &[u8]) -> Result<Vec<Address>, CsError> {
        check_name(group)?;
        let body = self.request(&Request::MembershipGet { group })?;
        proto::decode_membership(&body).map_err(|_| CsError::Library)
    }

    /// `cpg_local_get`: this node's id.
    pub fn local_get(&self) -> Result<u32, CsError> {
        decode_u32(&self.request(&Request::LocalGet)?)
    }

    /// `cpg_max_atomic_msgsize_get`: the largest message sent without
    /// fragmentation.
    pub fn max_atomic_msgsize(&self) -> Result<u32, CsError> {
        decode_u32(&self.request(&Request::MaxAtomicMsgsize)?)
    }

    /// `cpg_flow_control_state_get`, answered here without a round trip
    /// (as libcpg does; Corosync 2 and 3 always say disabled): enabled
    /// while the request ring is more than half full, i.e. the daemon is
    /// behind or holding requests back, and sends will soon get TRY_AGAIN.
    pub fn flow_control_state_get(&self) -> Result<FlowControl, CsError> {
        let (used, cap) = self.conn.request_backlog()?;
        Ok(if used > cap / 2 {
            FlowControl::Enabled
        } else {
            FlowControl::Disabled
        })
    }

    /// `cpg_iteration_initialize` + `_next` in one: every entry at once.
    /// `group` is needed for [`IterationType::OneGroup`] only.
    pub fn iteration(
        &self,
        kind: IterationType,
        group: Option<&[u8]>,
    ) -> Result<Vec<IterationDescription>, CsError> {
        // A group only with OneGroup, as Corosync's libcpg insists.
        let group = match (kind, group) {
            (IterationType::OneGroup, Some(g)) => g,
            (IterationType::OneGroup, None) | (_, Some(_)) => return Err(CsError::InvalidParam),
            (_, None) => &[],
        };
        check_name(group)?;
        let body = self.request(&Request::Iteration {
            kind: kind as u32,
            group,
        })?;
        proto::decode_iteration(&body).map_err(|_| CsError::Library)
    }

    /// `cpg_dispatch` with the callbacks given at initialization.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        let callbacks = Arc::clone(&self.callbacks);
        self.dispatch_with(flags, &*callbacks)
    }

    /// `cpg_dispatch` with other callbacks (the C ABI passes its own).
    pub fn dispatch_with(
        &self,
        flags: DispatchFlags,
        callbacks: &dyn CpgCallbacks,
    ) -> Result<(), CsError> {
        self.conn
            .dispatch(flags, |ev| self.deliver_event(ev, callbacks))
    }

    fn deliver_event(&self, ev: &mut Event<'_>, cb: &dyn CpgCallbacks) -> Result<(), CsError> {
        let msg = EventMsg::decode(ev.kind, ev.payload).map_err(|_| CsError::Library)?;
        match msg {
            EventMsg::Deliver {
                group,
                nodeid,
                pid,
                msg,
            } => {
                // The message is the payload's tail: the callback gets it
                // mutable in place (no second copy), so the group name is
                // copied out first.
                let mut name = [0u8; MAX_NAME_LENGTH];
                name[..group.len()].copy_from_slice(group);
                let name_len = group.len();
                let offset = msg.as_ptr() as usize - ev.payload.as_ptr() as usize;
                let msg = &mut ev.payload[offset..];
                cb.deliver(self, &name[..name_len], nodeid, pid, msg);
            }
            EventMsg::PartialDeliver {
                group,
                nodeid,
                pid,
                part,
                total,
                msg,
            } => {
                let done = {
                    let mut asm = self.assembly.lock().unwrap_or_else(|p| p.into_inner());
                    let key = (nodeid, pid);
                    if part == proto::partial::FIRST {
                        // A new message from this sender: whatever was
                        // half-assembled from it is gone (it left or died).
                        asm.insert(key, (Vec::with_capacity(total as usize), total));
                    }
                    match asm.get_mut(&key) {
                        // Pieces of a message whose first piece was not
                        // seen (joined in the middle of it) are skipped.
                        None => None,
                        Some((buf, t)) if *t != total || buf.len() + msg.len() > *t as usize => {
                            asm.remove(&key);
                            None
                        }
                        Some((buf, _)) => {
                            buf.extend_from_slice(msg);
                            if part == proto::partial::LAST {
                                asm.remove(&key)
                                    .filter(|(buf, t)| buf.len() == *t as usize)
                                    .map(|(buf, _)| buf)
                            } else {
                                None
                            }
                        }
                    }
                };
                if let Some(mut whole) = done {
                    cb.deliver(self, group, nodeid, pid, &mut whole);
                }
            }
            EventMsg::Confchg {
                group,
                members,
                left,
                joined,
            } => {
                if !left.is_empty() {
                    // A sender that left takes its half-assembled message.
                    let mut asm = self.assembly.lock().unwrap_or_else(|p| p.into_inner());
                    for a in &left {
                        asm.remove(&(a.nodeid, a.pid));
                    }
                }
                cb.confchg(self, group, &members, &left, &joined)
            }
            EventMsg::TotemConfchg {
                ring_rep,
                ring_seq,
                members,
            } => cb.totem_confchg(
                self,
                RingId {
                    nodeid: ring_rep,
                    seq: ring_seq,
                },
                &members,
            ),
        }
        Ok(())
    }

    /// `cpg_finalize`: leaves the group and closes the connection.
    pub fn finalize(self) -> Result<(), CsError> {
        self.finalize_shared()
    }

    /// Finalizes through a shared reference (the C ABI's `cpg_finalize`,
    /// possibly from inside a callback or while another thread dispatches:
    /// that dispatch then returns `BadHandle`). A second call is `BadHandle`.
    pub(crate) fn finalize_shared(&self) -> Result<(), CsError> {
        self.conn.finalize(Some(proto::kind::FINALIZE))
    }

    /// The largest request payload the connection's request ring carries.
    pub(crate) fn max_request(&self) -> usize {
        self.conn.max_request()
    }
}

impl Drop for Cpg {
    fn drop(&mut self) {
        if !self.conn.is_finalized() {
            let _ = self.finalize_shared();
        }
    }
}
