//! CMAP (service id 9): the node's key/value store, as Corosync's `cmap`
//! service over `icmap` and the statistics map.
//!
//! Two maps, chosen per connection by its INIT request (`cmap_initialize`
//! is the icmap, `cmap_initialize_map(CMAP_MAP_STATS)` the stats map):
//!
//! * **icmap**: the configuration's keys (`totem.*`, `nodelist.*`,
//!   `logging.*`, `quorum.*`…, given at start in
//!   [`EngineConfig::initial_keys`](crate::EngineConfig)), what this
//!   service publishes (`runtime.members.<id>.*` on every regular
//!   configuration) and whatever clients set. As in Corosync, the icmap is
//!   **per node**: a `cmap_set` changes this node's map only (it is not
//!   multicast); a configuration reload re-reads every node's own file.
//! * **stats**: read-only `stats.*` keys, a snapshot the runtime hands over
//!   with [`Engine::set_stats`](crate::Engine::set_stats). Tracking works
//!   on it too: changes are found by comparing successive snapshots.
//!
//! Error codes (as Corosync's `icmap`/`cmap`): a key name shorter than 3
//! or longer than 255 bytes, or with a character outside `[A-Za-z0-9._/:-]`:
//! NAME_TOO_LONG; a missing key: NOT_EXIST; a value whose length does not
//! fit its type or an unknown type: INVALID_PARAM; inc/dec of a non-integer:
//! INVALID_PARAM; writes under `internal_configuration.` or `uidgid.config.`: ACCESS; a write
//! to the stats map other than `stats.clear.{ipc,totem,knet,all}` (which
//! restarts those counters from zero): NOT_SUPPORTED; an unknown iterator or track handle:
//! BAD_HANDLE; iterating past the end: NO_SECTIONS; more than
//! [`MAX_HANDLES`] iterators or tracks on one connection, or more than
//! [`MAX_TRACKS`] tracks on all of them: NO_RESOURCES.

use std::collections::BTreeMap;

use crate::cpg::decode_error_code;
use crate::proto::cmap::{encode_iter_next, kind, map, track, Notify, Request, Value};
use crate::proto::cmap::{KEYNAME_MAXLEN, KEYNAME_MINLEN};
use crate::proto::{service, CsError, DecodeError, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service};
use crate::{ConfigKind, ConnId, Control, Guarantee, NodeId, ReplyTo};

/// Iterators, and tracks, one connection may hold at once.
pub const MAX_HANDLES: usize = 1024;
/// Tracks all connections together may hold: every changed key is matched
/// against each of them on the one thread that also runs Totem (a stats
/// snapshot changes hundreds of keys), so their number is what bounds that
/// work. Corosync's own users hold a few each.
pub const MAX_TRACKS: usize = 4096;
/// What `stats.clear.<what>` may name.
const CLEARABLE: [&str; 4] = ["ipc", "totem", "knet", "all"];
/// Keys under these prefixes are read-only to clients (the configuration's
/// own uid/gid entries as in Corosync: a client allows more with
/// `uidgid.uid.N` / `uidgid.gid.N`).
const READ_ONLY_PREFIXES: [&str; 2] = ["internal_configuration.", "uidgid.config."];
/// Keys that say who may connect (see [`Control::IpcAccess`]).
const UIDGID_PREFIX: &str = "uidgid.";

/// The key/value pairs of a map.
pub type Keys = Vec<(String, Value)>;

struct Iter {
    prefix: String,
    /// Last key returned; the next one is the first key after it (the
    /// iteration sees keys added or deleted meanwhile, never one twice).
    last: Option<String>,
}

struct Track {
    key: String,
    types: i32,
}

#[derive(Default)]
struct Conn {
    map: u32,
    iters: BTreeMap<u64, Iter>,
    tracks: BTreeMap<u64, Track>,
}

/// The most bytes the icmap's keys and values may take for a client's
/// write to be taken: clients could otherwise grow the daemon without end
/// (a value may be 1 MiB, and keys have no count limit in Corosync).
pub const MAX_ICMAP_BYTES: usize = 256 << 20;

/// What one icmap entry counts for: its key, its value's bytes, and what
/// the map spends on an entry besides (the key's and value's headers in a
/// B-tree node, the key's allocation: 120 bytes measured for a million
/// 12-byte keys with integer values, 2026-11-28), so that many small keys
/// are held to the budget as one large value is.
fn entry_bytes(key: &str, v: &Value) -> usize {
    let value = match v {
        Value::Str(s) => s.len(),
        Value::Binary(b) => b.len(),
        _ => 8,
    };
    key.len() + value + 128
}

/// The CMAP service.
pub struct Cmap {
    icmap: BTreeMap<String, Value>,
    /// Bytes the icmap's keys and values take (`entry_bytes`), kept so
    /// that client writes can be held to `MAX_ICMAP_BYTES`.
    icmap_bytes: usize,
    stats: BTreeMap<String, Value>,
    conns: BTreeMap<ConnId, Conn>,
    next_handle: u64,
    join_counts: BTreeMap<NodeId, u32>,
}

/// Corosync's `icmap_check_key_name`.
pub fn valid_key(key: &[u8]) -> bool {
    (KEYNAME_MINLEN..=KEYNAME_MAXLEN).contains(&key.len())
        && key
            .iter()
            .all(|&c| c.is_ascii_alphanumeric() || b"._/-:".contains(&c))
}

fn key_str(key: &[u8]) -> Result<&str, CsError> {
    if !valid_key(key) {
        return Err(CsError::NameTooLong);
    }
    std::str::from_utf8(key).map_err(|_| CsError::NameTooLong)
}

fn track_matches(t: &Track, key: &str, event: i32) -> bool {
    let hit = if t.types & track::PREFIX != 0 {
        key.starts_with(&t.key)
    } else {
        key == t.key
    };
    hit && t.types & event != 0
}

impl Cmap {
    pub fn new(initial: &[(String, Value)]) -> Cmap {
        Cmap {
            icmap: initial.iter().cloned().collect(),
            icmap_bytes: initial.iter().map(|(k, v)| entry_bytes(k, v)).sum(),
            stats: BTreeMap::new(),
            conns: BTreeMap::new(),
            next_handle: 1,
            join_counts: BTreeMap::new(),
        }
    }

    /// The icmap as it is now (for tests and tools in-process).
    pub fn icmap(&self) -> &BTreeMap<String, Value> {
        &self.icmap
    }

    fn map_of(&self, m: u32) -> &BTreeMap<String, Value> {
        if m == map::STATS {
            &self.stats
        } else {
            &self.icmap
        }
    }

    /// Tells every connection tracking `key` on map `m` about a change.
    fn notify(
        &self,
        ctx: &mut Ctx<'_>,
        m: u32,
        key: &str,
        new: Option<&Value>,
        old: Option<&Value>,
    ) {
        let event = match (new, old) {
            (Some(_), None) => track::ADD,
            (None, Some(_)) => track::DELETE,
            (Some(n), Some(o)) if n != o => track::MODIFY,
            _ => return,
        };
        // Encoded once, at the first matching track: the values (up to
        // 1 MiB each) are not copied again for every other track.
        let mut buf = Vec::new();
        for (&conn, c) in &self.conns {
            if c.map != m {
                continue;
            }
            for (&id, t) in &c.tracks {
                if !track_matches(t, key, event) {
                    continue;
                }
                if buf.is_empty() {
                    Notify {
                        track: id,
                        event,
                        key: key.to_string(),
                        new: new.cloned(),
                        old: old.cloned(),
                    }
                    .encode(&mut buf);
                }
                buf[Notify::TRACK_AT].copy_from_slice(&id.to_le_bytes());
                if !ctx.event(conn, service::CMAP, kind::NOTIFY, &[&buf]) {
                    // The connection is gone or being dropped as too slow:
                    // its other tracks would only copy the values again.
                    break;
                }
            }
        }
    }

    /// Sets an icmap key from inside the daemon (no access check).
    pub fn set_local(&mut self, ctx: &mut Ctx<'_>, key: &str, v: Value) {
        self.icmap_bytes += entry_bytes(key, &v);
        let old = self.icmap.insert(key.to_string(), v.clone());
        if let Some(o) = &old {
            self.icmap_bytes -= entry_bytes(key, o);
        }
        self.notify(ctx, map::ICMAP, key, Some(&v), old.as_ref());
        if key.starts_with(UIDGID_PREFIX) {
            self.access_changed(ctx);
        }
    }

    fn delete_local(&mut self, ctx: &mut Ctx<'_>, key: &str) {
        if let Some(old) = self.icmap.remove(key) {
            self.icmap_bytes -= entry_bytes(key, &old);
            self.notify(ctx, map::ICMAP, key, None, Some(&old));
            if key.starts_with(UIDGID_PREFIX) {
                self.access_changed(ctx);
            }
        }
    }

    /// Tells the daemon every uid and gid the `uidgid.*` keys allow now.
    fn access_changed(&self, ctx: &mut Ctx<'_>) {
        let (mut uids, mut gids) = (Vec::new(), Vec::new());
        let keys = self.icmap.range(UIDGID_PREFIX.to_string()..);
        for (k, v) in keys.take_while(|(k, _)| k.starts_with(UIDGID_PREFIX)) {
            if *v != Value::U8(1) {
                continue;
            }
            let rest = &k[UIDGID_PREFIX.len()..];
            let rest = rest.strip_prefix("config.").unwrap_or(rest);
            let (list, id) = match (rest.strip_prefix("uid."), rest.strip_prefix("gid.")) {
                (Some(id), _) => (&mut uids, id),
                (_, Some(id)) => (&mut gids, id),
                _ => continue,
            };
            if let Ok(id) = id.parse::<u32>() {
                list.push(id);
            }
        }
        for l in [&mut uids, &mut gids] {
            l.sort_unstable();
            l.dedup();
        }
        ctx.out.control(Control::IpcAccess { uids, gids });
    }

    /// A client's write of `v` at `key` within `MAX_ICMAP_BYTES` (what it
    /// replaces counted out); past it, CS_ERR_NO_RESOURCES.
    fn room_for(&self, key: &str, v: &Value) -> Result<(), CsError> {
        let old = self.icmap.get(key).map_or(0, |o| entry_bytes(key, o));
        if self.icmap_bytes - old + entry_bytes(key, v) > MAX_ICMAP_BYTES {
            Err(CsError::NoResources)
        } else {
            Ok(())
        }
    }

    fn writable(&self, m: u32, key: &str) -> Result<(), CsError> {
        if m == map::STATS {
            Err(CsError::NotSupported)
        } else if READ_ONLY_PREFIXES.iter().any(|p| key.starts_with(p)) {
            Err(CsError::Access)
        } else {
            Ok(())
        }
    }

    fn new_handle(&mut self) -> u64 {
        let h = self.next_handle;
        self.next_handle += 1;
        h
    }

    fn request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        req: Request<'_>,
    ) -> Result<Vec<u8>, CsError> {
        let m = self.conns.get(&conn).map_or(map::ICMAP, |c| c.map);
        let mut body = Vec::new();
        match req {
            Request::Init { map: want } => {
                if want != map::ICMAP && want != map::STATS {
                    return Err(CsError::InvalidParam);
                }
                self.conns.entry(conn).or_default().map = want;
            }
            Request::Get { key } => {
                let key = key_str(key)?;
                let v = self.map_of(m).get(key).ok_or(CsError::NotExist)?;
                v.put(&mut Writer(&mut body));
            }
            Request::Set { key, value } => {
                let key = key_str(key)?;
                if m == map::STATS {
                    // The one write the stats map takes, as Corosync's:
                    // `stats.clear.{ipc,totem,knet,all}` (any value).
                    let what = key
                        .strip_prefix("stats.clear.")
                        .filter(|w| CLEARABLE.contains(w))
                        .ok_or(CsError::NotSupported)?;
                    ctx.out.control(Control::ClearStats {
                        what: what.to_string(),
                    });
                } else {
                    self.writable(m, key)?;
                    self.room_for(key, &value)?;
                    self.set_local(ctx, key, value);
                }
            }
            Request::Delete { key } => {
                let key = key_str(key)?;
                self.writable(m, key)?;
                if !self.icmap.contains_key(key) {
                    return Err(CsError::NotExist);
                }
                self.delete_local(ctx, key);
            }
            Request::Inc { key } | Request::Dec { key } => {
                let delta = if matches!(req, Request::Inc { .. }) {
                    1
                } else {
                    -1
                };
                let key = key_str(key)?;
                self.writable(m, key)?;
                let v = self.icmap.get(key).ok_or(CsError::NotExist)?;
                let new = v.adjust(delta)?;
                self.set_local(ctx, key, new);
            }
            Request::IterInit { prefix } => {
                let prefix = std::str::from_utf8(prefix).map_err(|_| CsError::InvalidParam)?;
                if prefix.len() > KEYNAME_MAXLEN {
                    return Err(CsError::NameTooLong);
                }
                let h = self.new_handle();
                let c = self.conns.entry(conn).or_default();
                if c.iters.len() >= MAX_HANDLES {
                    return Err(CsError::NoResources);
                }
                c.iters.insert(
                    h,
                    Iter {
                        prefix: prefix.to_string(),
                        last: None,
                    },
                );
                Writer(&mut body).u64(h);
            }
            Request::IterNext { iter } => {
                let map = if m == map::STATS {
                    &self.stats
                } else {
                    &self.icmap
                };
                let c = self.conns.get_mut(&conn).ok_or(CsError::BadHandle)?;
                let it = c.iters.get_mut(&iter).ok_or(CsError::BadHandle)?;
                let next = match &it.last {
                    None => map.range(it.prefix.clone()..).next(),
                    Some(last) => map
                        .range::<String, _>((
                            std::ops::Bound::Excluded(last),
                            std::ops::Bound::Unbounded,
                        ))
                        .next(),
                };
                match next {
                    Some((k, v)) if k.starts_with(&it.prefix) => {
                        encode_iter_next(&mut body, k, v);
                        it.last = Some(k.clone());
                    }
                    _ => return Err(CsError::NoSections),
                }
            }
            Request::IterFinalize { iter } => {
                let c = self.conns.get_mut(&conn).ok_or(CsError::BadHandle)?;
                c.iters.remove(&iter).ok_or(CsError::BadHandle)?;
            }
            Request::TrackAdd { key, track_type } => {
                if track_type & !track::ALL != 0 || track_type & !track::PREFIX == 0 {
                    return Err(CsError::InvalidParam);
                }
                let key = std::str::from_utf8(key).map_err(|_| CsError::InvalidParam)?;
                if key.len() > KEYNAME_MAXLEN {
                    return Err(CsError::NameTooLong);
                }
                let total: usize = self.conns.values().map(|c| c.tracks.len()).sum();
                if total >= MAX_TRACKS {
                    return Err(CsError::NoResources);
                }
                let h = self.new_handle();
                let c = self.conns.entry(conn).or_default();
                if c.tracks.len() >= MAX_HANDLES {
                    return Err(CsError::NoResources);
                }
                c.tracks.insert(
                    h,
                    Track {
                        key: key.to_string(),
                        types: track_type,
                    },
                );
                Writer(&mut body).u64(h);
            }
            Request::TrackDelete { track: t } => {
                let c = self.conns.get_mut(&conn).ok_or(CsError::BadHandle)?;
                c.tracks.remove(&t).ok_or(CsError::BadHandle)?;
            }
        }
        Ok(body)
    }

    /// Replaces the stats map, telling trackers what changed.
    fn replace_stats(&mut self, ctx: &mut Ctx<'_>, keys: &[(String, Value)]) {
        let new: BTreeMap<String, Value> = keys.iter().cloned().collect();
        let old = std::mem::replace(&mut self.stats, new);
        let tracked = self
            .conns
            .values()
            .any(|c| c.map == map::STATS && !c.tracks.is_empty());
        if !tracked {
            return;
        }
        for (k, v) in &self.stats {
            self.notify(ctx, map::STATS, k, Some(v), old.get(k));
        }
        for (k, v) in &old {
            if !self.stats.contains_key(k) {
                self.notify(ctx, map::STATS, k, None, Some(v));
            }
        }
    }

    fn member_ip(&self, node: NodeId) -> String {
        let id = Value::U32(node);
        let idx = self.icmap.iter().find_map(|(k, v)| {
            let rest = k.strip_prefix("nodelist.node.")?;
            let (i, field) = rest.split_once('.')?;
            (field == "nodeid" && *v == id).then(|| i.to_string())
        });
        let addr = idx.and_then(|i| self.icmap.get(&format!("nodelist.node.{i}.ring0_addr")));
        match addr {
            Some(Value::Str(a)) => format!("r(0) ip({a}) "),
            _ => String::new(),
        }
    }
}

impl Service for Cmap {
    fn id(&self) -> u16 {
        service::CMAP
    }

    fn name(&self) -> &'static str {
        "cmap"
    }

    fn needs_first_sync(&self, _kind: u16) -> bool {
        false
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        self.conns.entry(conn).or_default();
        match Request::decode(to.kind, payload) {
            Ok(req) => match self.request(ctx, conn, req) {
                Ok(body) => ctx.respond(conn, to, CsError::Ok, &[&body]),
                Err(e) => ctx.respond(conn, to, e, &[]),
            },
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
            }
        }
    }

    fn lib_disconnect(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId) {
        self.conns.remove(&conn);
    }

    fn exec_deliver(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _sender: NodeId,
        _guarantee: Guarantee,
        kind: u16,
        _body: &[u8],
    ) -> Result<(), DecodeError> {
        // Writes are local (as Corosync's cmap): nothing is multicast.
        Err(DecodeError::UnknownKind(kind))
    }

    fn confchg(&mut self, ctx: &mut Ctx<'_>, change: &ConfChange<'_>) {
        if change.kind != ConfigKind::Regular {
            return;
        }
        for &n in change.joined {
            let count = {
                let c = self.join_counts.entry(n).or_insert(0);
                *c += 1;
                *c
            };
            let p = format!("runtime.members.{n}.");
            let ip = self.member_ip(n);
            self.set_local(ctx, &format!("{p}ip"), Value::Str(ip));
            self.set_local(ctx, &format!("{p}join_count"), Value::U32(count));
            self.set_local(ctx, &format!("{p}status"), Value::Str("joined".into()));
            if !self.icmap.contains_key(&format!("{p}config_version")) {
                self.set_local(ctx, &format!("{p}config_version"), Value::U64(0));
            }
        }
        for &n in change.left {
            let p = format!("runtime.members.{n}.status");
            self.set_local(ctx, &p, Value::Str("left".into()));
        }
        let ring = format!("{}.{:x}", change.ring.rep, change.ring.seq);
        self.set_local(ctx, "runtime.totem.ring_id", Value::Str(ring));
        let members: Vec<String> = change.members.iter().map(|m| m.to_string()).collect();
        self.set_local(ctx, "runtime.totem.members", Value::Str(members.join(" ")));
    }

    fn stats_snapshot(&mut self, ctx: &mut Ctx<'_>, keys: &[(String, Value)]) {
        self.replace_stats(ctx, keys);
    }

    fn config_reloaded(&mut self, ctx: &mut Ctx<'_>, keys: &Result<Keys, String>) {
        match keys {
            Ok(keys) => {
                // Keys of the sections a file sets, replaced as a whole: a
                // key removed from the file disappears from the icmap.
                // Of `uidgid.` only the file's own entries: the runtime
                // `uidgid.uid.N` / `uidgid.gid.N` stay (as in Corosync).
                const FROM_FILE: [&str; 7] = [
                    "totem.",
                    "nodelist.",
                    "logging.",
                    "quorum.",
                    "system.",
                    "uidgid.config.",
                    "resources.",
                ];
                let stale: Vec<String> = self
                    .icmap
                    .keys()
                    .filter(|k| FROM_FILE.iter().any(|p| k.starts_with(p)))
                    .filter(|k| !keys.iter().any(|(n, _)| n == *k))
                    .cloned()
                    .collect();
                for k in stale {
                    self.delete_local(ctx, &k);
                }
                for (k, v) in keys {
                    if self.icmap.get(k) != Some(v) {
                        self.set_local(ctx, k, v.clone());
                    }
                }
                self.delete_local(ctx, "config.reload_error_message");
            }
            Err(why) => {
                let v = Value::Str(why.clone());
                self.set_local(ctx, "config.reload_error_message", v);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto::cmap::{decode_iter_next, value_type};
    use crate::proto::Reader;
    use crate::test_support::{Recorder, Sent};
    use crate::{Engine, EngineConfig, RingId};

    fn engine() -> (Engine, Recorder) {
        let mut cfg = EngineConfig::new(1);
        cfg.initial_keys = vec![
            ("totem.token".into(), Value::U32(3000)),
            ("totem.cluster_name".into(), Value::Str("c".into())),
            ("nodelist.node.0.nodeid".into(), Value::U32(1)),
            (
                "nodelist.node.0.ring0_addr".into(),
                Value::Str("10.0.0.1".into()),
            ),
        ];
        let mut e = Engine::new(cfg);
        let mut out = Recorder::default();
        e.connect(ConnId(1), 100, 0, 0);
        e.connect(ConnId(2), 101, 0, 0);
        call(&mut e, &mut out, 1, &Request::Init { map: map::ICMAP });
        call(&mut e, &mut out, 2, &Request::Init { map: map::ICMAP });
        (e, out)
    }

    fn call(
        e: &mut Engine,
        out: &mut Recorder,
        conn: u64,
        req: &Request<'_>,
    ) -> (CsError, Vec<u8>) {
        let mut p = Vec::new();
        let k = req.encode(&mut p);
        e.request(ConnId(conn), service::CMAP, k, 7, &p, out);
        match out.sent.pop() {
            Some(Sent::Respond { payload, .. }) => {
                let code = u32::from_le_bytes(payload[..4].try_into().unwrap());
                (CsError::from_code(code), payload[4..].to_vec())
            }
            other => panic!("expected a response, got {other:?}"),
        }
    }

    fn get(e: &mut Engine, out: &mut Recorder, key: &str) -> Result<Value, CsError> {
        match call(
            e,
            out,
            1,
            &Request::Get {
                key: key.as_bytes(),
            },
        ) {
            (CsError::Ok, body) => Ok(Value::get(&mut Reader(&body)).unwrap()),
            (err, _) => Err(err),
        }
    }

    fn events(out: &mut Recorder) -> Vec<(u64, Notify)> {
        let evs = out
            .sent
            .iter()
            .filter_map(|s| match s {
                Sent::Event {
                    conn,
                    kind: k,
                    payload,
                    ..
                } if *k == kind::NOTIFY => Some((conn.0, Notify::decode(payload).unwrap())),
                _ => None,
            })
            .collect();
        out.sent.clear();
        evs
    }

    #[test]
    fn get_set_inc_dec_delete() {
        let (mut e, mut out) = engine();
        assert_eq!(get(&mut e, &mut out, "totem.token"), Ok(Value::U32(3000)));
        assert_eq!(get(&mut e, &mut out, "no.such"), Err(CsError::NotExist));
        let set = Request::Set {
            key: b"a.counter",
            value: Value::U8(255),
        };
        assert_eq!(call(&mut e, &mut out, 1, &set).0, CsError::Ok);
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Inc { key: b"a.counter" }).0,
            CsError::Ok
        );
        assert_eq!(get(&mut e, &mut out, "a.counter"), Ok(Value::U8(0)));
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Dec { key: b"a.counter" }).0,
            CsError::Ok
        );
        assert_eq!(get(&mut e, &mut out, "a.counter"), Ok(Value::U8(255)));
        let inc_str = Request::Inc {
            key: b"totem.cluster_name",
        };
        assert_eq!(call(&mut e, &mut out, 1, &inc_str).0, CsError::InvalidParam);
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Inc { key: b"nope" }).0,
            CsError::NotExist
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Delete { key: b"a.counter" }).0,
            CsError::Ok
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Delete { key: b"a.counter" }).0,
            CsError::NotExist
        );
        // Changing a key's type is allowed, as in icmap.
        let retype = Request::Set {
            key: b"totem.token",
            value: Value::Str("x".into()),
        };
        assert_eq!(call(&mut e, &mut out, 1, &retype).0, CsError::Ok);
    }

    #[test]
    fn bad_input_gets_corosyncs_codes() {
        let (mut e, mut out) = engine();
        let long = vec![b'a'; 256];
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Get { key: &long }).0,
            CsError::NameTooLong
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Get { key: b"ab" }).0,
            CsError::NameTooLong
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Get { key: b"a b c" }).0,
            CsError::NameTooLong
        );
        let ro = Request::Set {
            key: b"internal_configuration.x",
            value: Value::U8(1),
        };
        assert_eq!(call(&mut e, &mut out, 1, &ro).0, CsError::Access);
        // A value whose length does not match its type.
        let mut p = Vec::new();
        Writer(&mut p)
            .bytes(b"a.b.c")
            .u32(value_type::UINT32)
            .bytes(&[1, 2]);
        e.request(ConnId(1), service::CMAP, kind::SET, 1, &p, &mut out);
        let Some(Sent::Respond { payload, .. }) = out.sent.pop() else {
            panic!()
        };
        assert_eq!(payload[..4], CsError::InvalidParam.code().to_le_bytes());
        // A string that is not UTF-8 (Latin-1 `café`): refused, not stored
        // changed; as BINARY the same bytes are kept as they are.
        let mut p = Vec::new();
        Writer(&mut p)
            .bytes(b"a.latin1")
            .u32(value_type::STRING)
            .bytes(b"caf\xe9");
        e.request(ConnId(1), service::CMAP, kind::SET, 1, &p, &mut out);
        let Some(Sent::Respond { payload, .. }) = out.sent.pop() else {
            panic!()
        };
        assert_eq!(payload[..4], CsError::InvalidParam.code().to_le_bytes());
        assert_eq!(get(&mut e, &mut out, "a.latin1"), Err(CsError::NotExist));
        let binary = Request::Set {
            key: b"a.latin1",
            value: Value::Binary(b"caf\xe9".to_vec()),
        };
        assert_eq!(call(&mut e, &mut out, 1, &binary).0, CsError::Ok);
        assert_eq!(
            get(&mut e, &mut out, "a.latin1"),
            Ok(Value::Binary(b"caf\xe9".to_vec()))
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::IterNext { iter: 99 }).0,
            CsError::BadHandle
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::TrackDelete { track: 99 }).0,
            CsError::BadHandle
        );
        let bad_track = Request::TrackAdd {
            key: b"a",
            track_type: 64,
        };
        assert_eq!(
            call(&mut e, &mut out, 1, &bad_track).0,
            CsError::InvalidParam
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::Init { map: 5 }).0,
            CsError::InvalidParam
        );
    }

    #[test]
    fn prefix_iteration_sees_each_key_once() {
        let (mut e, mut out) = engine();
        let (err, body) = call(
            &mut e,
            &mut out,
            1,
            &Request::IterInit { prefix: b"totem." },
        );
        assert_eq!(err, CsError::Ok);
        let it = u64::from_le_bytes(body[..8].try_into().unwrap());
        let mut keys = Vec::new();
        loop {
            match call(&mut e, &mut out, 1, &Request::IterNext { iter: it }) {
                (CsError::Ok, b) => keys.push(decode_iter_next(&b).unwrap()),
                (CsError::NoSections, _) => break,
                other => panic!("{other:?}"),
            }
        }
        assert_eq!(
            keys,
            vec![
                ("totem.cluster_name".to_string(), value_type::STRING, 2),
                ("totem.token".to_string(), value_type::UINT32, 4)
            ]
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::IterFinalize { iter: it }).0,
            CsError::Ok
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::IterFinalize { iter: it }).0,
            CsError::BadHandle
        );
        // Another connection's iterator is not ours.
        let (_, body) = call(&mut e, &mut out, 2, &Request::IterInit { prefix: b"" });
        let other = u64::from_le_bytes(body[..8].try_into().unwrap());
        assert_eq!(
            call(&mut e, &mut out, 1, &Request::IterNext { iter: other }).0,
            CsError::BadHandle
        );
    }

    #[test]
    fn tracks_are_limited_per_connection_and_in_all() {
        let (mut e, mut out) = engine();
        let add = Request::TrackAdd {
            key: b"app.",
            track_type: track::ADD | track::PREFIX,
        };
        let per = MAX_HANDLES as u64;
        let conns = (MAX_TRACKS / MAX_HANDLES) as u64 + 1;
        for conn in 3..=conns + 2 {
            e.connect(ConnId(conn), 100 + conn as u32, 0, 0);
            call(&mut e, &mut out, conn, &Request::Init { map: map::ICMAP });
        }
        for conn in 3..=conns + 1 {
            for _ in 0..per {
                assert_eq!(call(&mut e, &mut out, conn, &add).0, CsError::Ok);
            }
            assert_eq!(
                call(&mut e, &mut out, conn, &add).0,
                CsError::NoResources,
                "one connection's limit"
            );
        }
        let last = conns + 2;
        assert_eq!(
            call(&mut e, &mut out, last, &add).0,
            CsError::NoResources,
            "the limit of all connections together"
        );
        // A connection that goes gives its tracks back.
        e.disconnect(ConnId(3), &mut out);
        assert_eq!(call(&mut e, &mut out, last, &add).0, CsError::Ok);
    }

    #[test]
    fn tracking_reports_add_modify_delete() {
        let (mut e, mut out) = engine();
        let add = Request::TrackAdd {
            key: b"app.",
            track_type: track::ADD | track::MODIFY | track::DELETE | track::PREFIX,
        };
        let (err, body) = call(&mut e, &mut out, 2, &add);
        assert_eq!(err, CsError::Ok);
        let th = u64::from_le_bytes(body[..8].try_into().unwrap());
        let exact = Request::TrackAdd {
            key: b"app.x",
            track_type: track::DELETE,
        };
        let (_, body) = call(&mut e, &mut out, 1, &exact);
        let th1 = u64::from_le_bytes(body[..8].try_into().unwrap());
        out.sent.clear();
        let set = |v| Request::Set {
            key: b"app.x",
            value: Value::I32(v),
        };
        call(&mut e, &mut out, 1, &set(1));
        call(&mut e, &mut out, 1, &set(1)); // unchanged: no event
        call(&mut e, &mut out, 1, &set(2));
        call(&mut e, &mut out, 1, &Request::Delete { key: b"app.x" });
        call(
            &mut e,
            &mut out,
            1,
            &Request::Set {
                key: b"other",
                value: Value::U8(1),
            },
        );
        let evs = events(&mut out);
        let kinds: Vec<(u64, u64, i32)> = evs.iter().map(|(c, n)| (*c, n.track, n.event)).collect();
        assert_eq!(
            kinds,
            vec![
                (2, th, track::ADD),
                (2, th, track::MODIFY),
                (1, th1, track::DELETE),
                (2, th, track::DELETE)
            ]
        );
        assert_eq!(evs[1].1.new, Some(Value::I32(2)));
        assert_eq!(evs[1].1.old, Some(Value::I32(1)));
        assert_eq!(
            call(&mut e, &mut out, 2, &Request::TrackDelete { track: th }).0,
            CsError::Ok
        );
        call(&mut e, &mut out, 1, &set(3));
        assert!(events(&mut out).is_empty());
    }

    #[test]
    fn client_writes_are_held_to_the_icmap_budget() {
        let (mut e, mut out) = engine();
        let mib = vec![7u8; 1 << 20];
        fn set<'a>(k: &'a str, v: &[u8]) -> Request<'a> {
            Request::Set {
                key: k.as_bytes(),
                value: Value::Binary(v.to_vec()),
            }
        }
        let mut taken = 0;
        let err = loop {
            let key = format!("app.blob{taken}");
            match call(&mut e, &mut out, 1, &set(&key, &mib)).0 {
                CsError::Ok => taken += 1,
                err => break err,
            }
            assert!(taken <= 256, "no limit");
        };
        assert_eq!(err, CsError::NoResources);
        assert_eq!(taken, MAX_ICMAP_BYTES / (1 << 20) - 1);
        // Replacing a value by one of the same size still fits, and room
        // freed by a delete is taken again.
        assert_eq!(
            call(&mut e, &mut out, 1, &set("app.blob0", &mib)).0,
            CsError::Ok
        );
        let del = Request::Delete { key: b"app.blob1" };
        assert_eq!(call(&mut e, &mut out, 1, &del).0, CsError::Ok);
        assert_eq!(
            call(&mut e, &mut out, 1, &set("app.new", &mib)).0,
            CsError::Ok
        );
        assert_eq!(
            call(&mut e, &mut out, 1, &set("app.more", &mib)).0,
            CsError::NoResources
        );
    }

    #[test]
    fn stats_map_is_read_only_and_tracked_by_snapshot() {
        let (mut e, mut out) = engine();
        e.connect(ConnId(3), 102, 0, 0);
        call(&mut e, &mut out, 3, &Request::Init { map: map::STATS });
        e.set_stats(vec![("stats.srp.mcast_tx".into(), Value::U64(1))], &mut out);
        let (err, body) = call(
            &mut e,
            &mut out,
            3,
            &Request::Get {
                key: b"stats.srp.mcast_tx",
            },
        );
        assert_eq!(err, CsError::Ok);
        assert_eq!(Value::get(&mut Reader(&body)), Ok(Value::U64(1)));
        let set = Request::Set {
            key: b"stats.srp.mcast_tx",
            value: Value::U64(9),
        };
        assert_eq!(call(&mut e, &mut out, 3, &set).0, CsError::NotSupported);
        // The one write it takes: clearing counters, handed to the daemon.
        let clear = Request::Set {
            key: b"stats.clear.totem",
            value: Value::U32(1),
        };
        assert_eq!(call(&mut e, &mut out, 3, &clear).0, CsError::Ok);
        assert_eq!(
            out.controls.last(),
            Some(&Control::ClearStats {
                what: "totem".into()
            })
        );
        let bogus = Request::Set {
            key: b"stats.clear.disk",
            value: Value::U32(1),
        };
        assert_eq!(call(&mut e, &mut out, 3, &bogus).0, CsError::NotSupported);
        assert_eq!(
            call(
                &mut e,
                &mut out,
                3,
                &Request::Delete {
                    key: b"stats.srp.mcast_tx"
                }
            )
            .0,
            CsError::NotSupported
        );
        // icmap connections do not see stats keys.
        assert_eq!(
            get(&mut e, &mut out, "stats.srp.mcast_tx"),
            Err(CsError::NotExist)
        );
        let tr = Request::TrackAdd {
            key: b"stats.srp.",
            track_type: track::MODIFY | track::PREFIX,
        };
        call(&mut e, &mut out, 3, &tr);
        e.set_stats(vec![("stats.srp.mcast_tx".into(), Value::U64(5))], &mut out);
        let evs = events(&mut out);
        assert_eq!(evs.len(), 1);
        assert_eq!(evs[0].1.new, Some(Value::U64(5)));
    }

    #[test]
    fn membership_is_published_under_runtime_members() {
        let (mut e, mut out) = engine();
        let ring = RingId { rep: 1, seq: 4 };
        e.config_change(ConfigKind::Regular, &[1, 2], &[], &[1, 2], ring, &mut out);
        assert_eq!(
            get(&mut e, &mut out, "runtime.members.1.status"),
            Ok(Value::Str("joined".into()))
        );
        assert_eq!(
            get(&mut e, &mut out, "runtime.members.1.ip"),
            Ok(Value::Str("r(0) ip(10.0.0.1) ".into()))
        );
        assert_eq!(
            get(&mut e, &mut out, "runtime.members.2.join_count"),
            Ok(Value::U32(1))
        );
        e.config_change(ConfigKind::Regular, &[1], &[2], &[], ring, &mut out);
        assert_eq!(
            get(&mut e, &mut out, "runtime.members.2.status"),
            Ok(Value::Str("left".into()))
        );
    }

    #[test]
    fn reload_replaces_file_keys_and_records_errors() {
        let (mut e, mut out) = engine();
        let keys = vec![("totem.token".to_string(), Value::U32(5000))];
        e.config_reloaded(Ok(keys), 0, &mut out);
        assert_eq!(get(&mut e, &mut out, "totem.token"), Ok(Value::U32(5000)));
        assert_eq!(
            get(&mut e, &mut out, "totem.cluster_name"),
            Err(CsError::NotExist)
        );
        e.config_reloaded(Err("bad line".into()), 0, &mut out);
        assert_eq!(
            get(&mut e, &mut out, "config.reload_error_message"),
            Ok(Value::Str("bad line".into()))
        );
    }

    /// The last [`Control::IpcAccess`] said, as (uids, gids).
    fn last_access(out: &mut Recorder) -> Option<(Vec<u32>, Vec<u32>)> {
        let last = out.controls.iter().rev().find_map(|c| match c {
            Control::IpcAccess { uids, gids } => Some((uids.clone(), gids.clone())),
            _ => None,
        });
        out.controls.clear();
        last
    }

    #[test]
    fn uidgid_keys_say_who_may_connect() {
        let (mut e, mut out) = engine();
        let set = |key: &'static str, v: u8| Request::Set {
            key: key.as_bytes(),
            value: Value::U8(v),
        };
        assert_eq!(
            call(&mut e, &mut out, 1, &set("uidgid.uid.1000", 1)).0,
            CsError::Ok
        );
        assert_eq!(last_access(&mut out), Some((vec![1000], vec![])));
        // Only the value 1 allows; other keys under uidgid. are not ids.
        call(&mut e, &mut out, 1, &set("uidgid.gid.7", 2));
        assert_eq!(last_access(&mut out), Some((vec![1000], vec![])));
        call(&mut e, &mut out, 1, &set("uidgid.gid.x", 1));
        call(&mut e, &mut out, 1, &set("uidgid.gid.8", 1));
        assert_eq!(last_access(&mut out), Some((vec![1000], vec![8])));
        // The configuration's entries are read-only to clients.
        let r = call(&mut e, &mut out, 1, &set("uidgid.config.uid.5", 1));
        assert_eq!(r.0, CsError::Access);
        assert_eq!(last_access(&mut out), None);
        // A reload brings its entries and keeps the run-time keys.
        let keys = vec![("uidgid.config.uid.5".to_string(), Value::U8(1))];
        e.config_reloaded(Ok(keys), 0, &mut out);
        assert_eq!(last_access(&mut out), Some((vec![5, 1000], vec![8])));
        e.config_reloaded(Ok(Vec::new()), 0, &mut out);
        assert_eq!(last_access(&mut out), Some((vec![1000], vec![8])));
        let del = Request::Delete {
            key: b"uidgid.uid.1000",
        };
        call(&mut e, &mut out, 1, &del);
        assert_eq!(last_access(&mut out), Some((vec![], vec![8])));
        // Other keys say nothing about access.
        call(&mut e, &mut out, 1, &set("a.b.c", 1));
        assert_eq!(last_access(&mut out), None);
    }
}
