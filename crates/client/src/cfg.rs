//! Configuration and administration: the Rust face of `libcfg`.
//!
//! ```no_run
//! use corosync_rs::cfg::Cfg;
//!
//! let cfg = Cfg::initialize(None)?;
//! let me = cfg.local_get()?;
//! let status = cfg.node_status_get(me)?;
//! println!("node {me}: reachable {}", status.reachable);
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::os::fd::RawFd;
use std::sync::Arc;

use services::proto::cfg::{decode_strings, kind, Request, NODE_STATUS_V1};
use services::proto::{service, CsError, Reader};

use crate::conn::Conn;
use crate::DispatchFlags;

pub use services::proto::cfg::{
    shutdown_flags, shutdown_reply, LinkStatus, NodeStatus, MAX_HOST_LEN, MAX_LINKS,
};

/// The shutdown callback: `(cfg, flags)`; answer with
/// [`Cfg::replyto_shutdown`].
pub type ShutdownFn = dyn Fn(&Cfg, u32) + Send + Sync;

/// A connection to the cfg service (`corosync_cfg_handle_t`). Thread-safe;
/// drop finalizes it.
pub struct Cfg {
    conn: Conn,
    shutdown: Option<Arc<ShutdownFn>>,
}

impl std::fmt::Debug for Cfg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cfg").field("fd", &self.fd()).finish()
    }
}

impl Cfg {
    /// `corosync_cfg_initialize`.
    pub fn initialize(shutdown: Option<Arc<ShutdownFn>>) -> Result<Cfg, CsError> {
        Ok(Cfg {
            conn: Conn::connect(service::CFG)?,
            shutdown,
        })
    }

    fn request(&self, req: &Request<'_>) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    /// `corosync_cfg_fd_get`.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// `corosync_cfg_local_get`.
    pub fn local_get(&self) -> Result<u32, CsError> {
        let b = self.request(&Request::LocalGet)?;
        Reader(&b).u32("nodeid").map_err(|_| CsError::Library)
    }

    /// `corosync_cfg_node_status_get` (`CFG_NODE_STATUS_V1`).
    pub fn node_status_get(&self, nodeid: u32) -> Result<NodeStatus, CsError> {
        let b = self.request(&Request::NodeStatusGet {
            nodeid,
            version: NODE_STATUS_V1,
        })?;
        NodeStatus::decode(&b).map_err(|_| CsError::Library)
    }

    /// `corosync_cfg_ring_status_get`: (interface names, statuses).
    pub fn ring_status_get(&self) -> Result<(Vec<String>, Vec<String>), CsError> {
        let b = self.request(&Request::RingStatusGet)?;
        let mut r = Reader(&b);
        let names = decode_strings(&mut r).map_err(|_| CsError::Library)?;
        let status = decode_strings(&mut r).map_err(|_| CsError::Library)?;
        Ok((names, status))
    }

    /// `corosync_cfg_get_node_addrs`: the node's addresses, link order.
    pub fn get_node_addrs(&self, nodeid: u32) -> Result<Vec<String>, CsError> {
        let b = self.request(&Request::GetNodeAddrs { nodeid })?;
        decode_strings(&mut Reader(&b)).map_err(|_| CsError::Library)
    }

    /// `corosync_cfg_kill_node`.
    pub fn kill_node(&self, nodeid: u32, reason: &str) -> Result<(), CsError> {
        self.request(&Request::KillNode {
            nodeid,
            reason: reason.as_bytes(),
        })
        .map(drop)
    }

    /// `corosync_cfg_try_shutdown` (`shutdown_flags::*`). Waits while
    /// shutdown callbacks are consulted (up to 5 s).
    pub fn try_shutdown(&self, flags: u32) -> Result<(), CsError> {
        self.request(&Request::TryShutdown { flags }).map(drop)
    }

    /// `corosync_cfg_replyto_shutdown` (`shutdown_reply::*`).
    pub fn replyto_shutdown(&self, reply: u32) -> Result<(), CsError> {
        self.request(&Request::ReplytoShutdown { reply }).map(drop)
    }

    /// `corosync_cfg_reload_config`: every node re-reads its corosync.conf.
    pub fn reload_config(&self) -> Result<(), CsError> {
        self.request(&Request::ReloadConfig).map(drop)
    }

    /// `corosync_cfg_reopen_log_files`.
    pub fn reopen_log_files(&self) -> Result<(), CsError> {
        self.request(&Request::ReopenLogFiles).map(drop)
    }

    /// `corosync_cfg_trackstart`: this connection gets shutdown callbacks.
    pub fn trackstart(&self, flags: u8) -> Result<(), CsError> {
        self.request(&Request::Trackstart {
            flags: u32::from(flags),
        })
        .map(drop)
    }

    /// `corosync_cfg_trackstop`.
    pub fn trackstop(&self) -> Result<(), CsError> {
        self.request(&Request::Trackstop).map(drop)
    }

    /// `corosync_cfg_ring_reenable` (nothing to re-enable: CS_OK).
    pub fn ring_reenable(&self) -> Result<(), CsError> {
        self.request(&Request::RingReenable).map(drop)
    }

    /// `corosync_cfg_dispatch`: runs the shutdown callback.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        self.conn.dispatch(flags, |ev| {
            if ev.kind == kind::SHUTDOWN {
                let fl = Reader(ev.payload).u32("flags").unwrap_or(0);
                if let Some(f) = &self.shutdown {
                    f(self, fl);
                }
            }
            Ok(())
        })
    }

    /// `corosync_cfg_finalize` (also done on drop).
    pub fn finalize(&self) -> Result<(), CsError> {
        self.conn.finalize(None)
    }
}

impl Drop for Cfg {
    fn drop(&mut self) {
        let _ = self.conn.finalize(None);
    }
}
