//! The client libraries of corosync-rs: a typed Rust API per service and
//! the C ABI, source-compatible with Corosync's `libcpg` and `libevs`.
//!
//! * [`cpg::Cpg`] — closed process groups (`cpg_*`).
//! * [`evs::Evs`] — extended virtual synchrony groups (`evs_*`).
//!
//! Both talk to the daemon over `ipc-shm` shared-memory rings using the
//! message types of `services::proto`; errors are Corosync's `cs_error_t`
//! values ([`CsError`]). A connection is thread-safe: any thread may send
//! while another dispatches, and callbacks run in the thread that calls
//! `dispatch`.
//!
//! The same crate builds `libcorosync_rs.so` and `libcorosync_rs.a`, which
//! export the C functions declared by the headers under `include/corosync/`
//! (`corotypes.h`, `cpg.h`, `evs.h`); `scripts/install.sh` lays them out
//! with `libcpg`/`libevs` names and pkg-config files.
//!
//! The daemon is found through `COROSYNC_IPC_ENDPOINT`, else the default
//! abstract socket name (see `ipc_shm::Endpoint`).
//!
//! ```no_run
//! use corosync_rs::cpg::{Cpg, CpgHandlers};
//! use corosync_rs::{DispatchFlags, Guarantee};
//!
//! let handlers = CpgHandlers::new().on_deliver(|_cpg, group, nodeid, pid, msg| {
//!     println!("{}: {nodeid}/{pid} sent {} bytes", String::from_utf8_lossy(group), msg.len());
//! });
//! let cpg = Cpg::initialize(handlers)?;
//! cpg.join(b"my-group")?;
//! cpg.mcast_joined(Guarantee::Agreed, &[b"hello".as_slice()])?;
//! cpg.dispatch(DispatchFlags::One)?;
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

pub mod cfg;
pub mod cmap;
mod conn;
pub mod cpg;
pub mod evs;
mod ffi;
mod handles;
pub mod quorum;
mod sys;
pub mod votequorum;

pub use services::proto::CsError;

/// How much `dispatch` does (`cs_dispatch_flags_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DispatchFlags {
    /// `CS_DISPATCH_ONE`: wait for one event and dispatch it.
    One = 1,
    /// `CS_DISPATCH_ALL`: dispatch the events waiting now, without waiting.
    All = 2,
    /// `CS_DISPATCH_BLOCKING`: dispatch events until the connection is
    /// finalized (`BadHandle`) or the daemon goes away (`Library`).
    Blocking = 3,
    /// `CS_DISPATCH_ONE_NONBLOCKING`: dispatch one waiting event, or
    /// return `TryAgain` when none waits.
    OneNonblocking = 4,
}

impl DispatchFlags {
    /// The flags for a `cs_dispatch_flags_t` value.
    pub fn from_raw(v: u32) -> Option<DispatchFlags> {
        Some(match v {
            1 => DispatchFlags::One,
            2 => DispatchFlags::All,
            3 => DispatchFlags::Blocking,
            4 => DispatchFlags::OneNonblocking,
            _ => return None,
        })
    }
}

/// Delivery guarantee of a multicast (`cpg_guarantee_t`, `evs_guarantee_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Guarantee {
    Unordered = 0,
    Fifo = 1,
    Agreed = 2,
    Safe = 3,
}

impl Guarantee {
    pub fn from_raw(v: u32) -> Option<Guarantee> {
        Some(match v {
            0 => Guarantee::Unordered,
            1 => Guarantee::Fifo,
            2 => Guarantee::Agreed,
            3 => Guarantee::Safe,
            _ => return None,
        })
    }
}
