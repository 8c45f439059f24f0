//! The configuration and statistics map: the Rust face of `libcmap`.
//!
//! ```no_run
//! use corosync_rs::cmap::{Cmap, Map, Value};
//!
//! let cmap = Cmap::initialize(Map::Icmap)?;
//! let token = cmap.get("totem.token")?;
//! cmap.set("app.counter", &Value::U32(1))?;
//! cmap.inc("app.counter")?;
//! for (key, value) in cmap.dump("runtime.members.")? {
//!     println!("{key} = {value}");
//! }
//! # let _ = token;
//! # Ok::<(), corosync_rs::CsError>(())
//! ```

use std::collections::BTreeMap;
use std::os::fd::RawFd;
use std::sync::{Arc, Mutex};

use services::proto::cmap::{self as proto, decode_iter_next, Notify, Request};
use services::proto::{service, CsError, Reader};

use crate::conn::Conn;
use crate::DispatchFlags;

pub use services::proto::cmap::{
    track, value_type, Value, KEYNAME_MAXLEN, KEYNAME_MINLEN, MAX_VALUE_LEN,
};

/// Which map a connection works on (`cmap_map_t`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Map {
    /// `CMAP_MAP_ICMAP` (also `CMAP_MAP_DEFAULT`).
    Icmap = 0,
    /// `CMAP_MAP_STATS`.
    Stats = 1,
}

/// One change of a tracked key: `(cmap, track handle, event, key, new, old)`.
pub type NotifyFn = dyn Fn(&Cmap, u64, i32, &str, Option<&Value>, Option<&Value>) + Send + Sync;

/// A connection to the cmap service (`cmap_handle_t`). Thread-safe; drop
/// finalizes it.
pub struct Cmap {
    conn: Conn,
    tracks: Mutex<BTreeMap<u64, Arc<NotifyFn>>>,
}

impl std::fmt::Debug for Cmap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Cmap").field("fd", &self.fd()).finish()
    }
}

fn u64_body(b: &[u8]) -> Result<u64, CsError> {
    Reader(b).u64("handle").map_err(|_| CsError::Library)
}

impl Cmap {
    /// `cmap_initialize_map`; `CsError::Library` when no daemon runs.
    pub fn initialize(map: Map) -> Result<Cmap, CsError> {
        let cmap = Cmap {
            conn: Conn::connect(service::CMAP)?,
            tracks: Mutex::new(BTreeMap::new()),
        };
        cmap.request(&Request::Init { map: map as u32 })?;
        Ok(cmap)
    }

    fn request(&self, req: &Request<'_>) -> Result<Vec<u8>, CsError> {
        let mut payload = Vec::new();
        let kind = req.encode(&mut payload);
        self.conn.call(kind, &payload)
    }

    /// `cmap_fd_get`.
    pub fn fd(&self) -> RawFd {
        self.conn.fd()
    }

    /// `cmap_get`: the value of `key`.
    pub fn get(&self, key: &str) -> Result<Value, CsError> {
        let b = self.request(&Request::Get {
            key: key.as_bytes(),
        })?;
        Value::get(&mut Reader(&b)).map_err(|_| CsError::Library)
    }

    /// `cmap_set`.
    pub fn set(&self, key: &str, value: &Value) -> Result<(), CsError> {
        self.request(&Request::Set {
            key: key.as_bytes(),
            value: value.clone(),
        })
        .map(drop)
    }

    /// `cmap_delete`.
    pub fn delete(&self, key: &str) -> Result<(), CsError> {
        self.request(&Request::Delete {
            key: key.as_bytes(),
        })
        .map(drop)
    }

    /// `cmap_inc`.
    pub fn inc(&self, key: &str) -> Result<(), CsError> {
        self.request(&Request::Inc {
            key: key.as_bytes(),
        })
        .map(drop)
    }

    /// `cmap_dec`.
    pub fn dec(&self, key: &str) -> Result<(), CsError> {
        self.request(&Request::Dec {
            key: key.as_bytes(),
        })
        .map(drop)
    }

    /// `cmap_iter_init`: an iterator handle over keys starting with `prefix`.
    pub fn iter_init(&self, prefix: &str) -> Result<u64, CsError> {
        let b = self.request(&Request::IterInit {
            prefix: prefix.as_bytes(),
        })?;
        u64_body(&b)
    }

    /// `cmap_iter_next`: the next key, its type and its length
    /// (`CsError::NoSections` at the end).
    pub fn iter_next(&self, iter: u64) -> Result<(String, u32, usize), CsError> {
        let b = self.request(&Request::IterNext { iter })?;
        let (k, t, l) = decode_iter_next(&b).map_err(|_| CsError::Library)?;
        Ok((k, t, l as usize))
    }

    /// `cmap_iter_finalize`.
    pub fn iter_finalize(&self, iter: u64) -> Result<(), CsError> {
        self.request(&Request::IterFinalize { iter }).map(drop)
    }

    /// Every key under `prefix` with its value (a key deleted between the
    /// listing and the read is skipped).
    pub fn dump(&self, prefix: &str) -> Result<Vec<(String, Value)>, CsError> {
        let it = self.iter_init(prefix)?;
        let mut all = Vec::new();
        let end = loop {
            match self.iter_next(it) {
                Ok((k, _, _)) => match self.get(&k) {
                    Ok(v) => all.push((k, v)),
                    Err(CsError::NotExist) => {}
                    Err(e) => break Err(e),
                },
                Err(CsError::NoSections) => break Ok(()),
                Err(e) => break Err(e),
            }
        };
        let _ = self.iter_finalize(it);
        end.map(|()| all)
    }

    /// `cmap_track_add`: `notify` runs from [`Cmap::dispatch`] on changes
    /// of `key` (or of every key under it with `track::PREFIX`).
    pub fn track_add(
        &self,
        key: &str,
        track_type: i32,
        notify: impl Fn(&Cmap, u64, i32, &str, Option<&Value>, Option<&Value>) + Send + Sync + 'static,
    ) -> Result<u64, CsError> {
        let mut tracks = self.tracks.lock().unwrap_or_else(|p| p.into_inner());
        let b = self.request(&Request::TrackAdd {
            key: key.as_bytes(),
            track_type,
        })?;
        let h = u64_body(&b)?;
        tracks.insert(h, Arc::new(notify));
        Ok(h)
    }

    /// `cmap_track_delete`.
    pub fn track_delete(&self, track: u64) -> Result<(), CsError> {
        self.request(&Request::TrackDelete { track })?;
        self.tracks
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(&track);
        Ok(())
    }

    /// `cmap_dispatch`: runs the notify callbacks of waiting changes.
    pub fn dispatch(&self, flags: DispatchFlags) -> Result<(), CsError> {
        self.conn.dispatch(flags, |ev| {
            if ev.kind != proto::kind::NOTIFY {
                return Ok(());
            }
            let n = Notify::decode(ev.payload).map_err(|_| CsError::Library)?;
            let f = self
                .tracks
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(&n.track)
                .cloned();
            if let Some(f) = f {
                f(
                    self,
                    n.track,
                    n.event,
                    &n.key,
                    n.new.as_ref(),
                    n.old.as_ref(),
                );
            }
            Ok(())
        })
    }

    /// `cmap_finalize` (also done on drop).
    pub fn finalize(&self) -> Result<(), CsError> {
        self.conn.finalize(None)
    }
}

impl Drop for Cmap {
    fn drop(&mut self) {
        let _ = self.conn.finalize(None);
    }
}
