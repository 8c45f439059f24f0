//! Where the daemon listens, who may connect, and the session limits.

use std::collections::BTreeSet;
use std::path::PathBuf;

use crate::ring::{RingSizes, MAX_RING, MIN_RING};

/// Default abstract socket name. Abstract sockets are scoped per network
/// namespace, so daemons in different namespaces never collide, and nothing
/// is left on a filesystem.
pub const DEFAULT_ENDPOINT: &str = "corosync-rs.ipc";
/// Environment variable that overrides the endpoint (daemon and clients):
/// a value starting with `/` is a filesystem path, anything else (an
/// optional leading `@` is dropped) an abstract name.
pub const ENDPOINT_ENV: &str = "COROSYNC_IPC_ENDPOINT";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    Abstract(String),
    Path(PathBuf),
}

impl Endpoint {
    pub fn parse(s: &str) -> Endpoint {
        if s.starts_with('/') {
            Endpoint::Path(PathBuf::from(s))
        } else {
            Endpoint::Abstract(s.strip_prefix('@').unwrap_or(s).to_owned())
        }
    }

    /// The endpoint in force: the environment variable, else the configured
    /// name (`configured`, e.g. from a config key), else the default.
    pub fn resolve(configured: Option<&str>) -> Endpoint {
        if let Ok(v) = std::env::var(ENDPOINT_ENV) {
            if !v.is_empty() {
                return Endpoint::parse(&v);
            }
        }
        Endpoint::parse(configured.unwrap_or(DEFAULT_ENDPOINT))
    }
}

impl Default for Endpoint {
    fn default() -> Self {
        Endpoint::resolve(None)
    }
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Endpoint::Abstract(n) => write!(f, "@{n}"),
            Endpoint::Path(p) => write!(f, "{}", p.display()),
        }
    }
}

/// One `uidgid { uid: … gid: … }` section: either field may be absent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UidGid {
    pub uid: Option<u32>,
    pub gid: Option<u32>,
}

/// Who may open a session: root (uid or gid 0, as Corosync) always;
/// otherwise a uid or gid allowed by configuration or by the runtime set
/// (which the daemon updates from cmap's `uidgid.*` keys through
/// `Server::authorization_mut`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Authorization {
    pub configured: Vec<UidGid>,
    pub runtime_uids: BTreeSet<u32>,
    pub runtime_gids: BTreeSet<u32>,
}

impl Authorization {
    pub fn allows(&self, uid: u32, gid: u32) -> bool {
        uid == 0
            || gid == 0
            || self.runtime_uids.contains(&uid)
            || self.runtime_gids.contains(&gid)
            || self
                .configured
                .iter()
                .any(|e| e.uid == Some(uid) || e.gid == Some(gid))
    }
}

/// Limits and defaults of a server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub endpoint: Endpoint,
    pub authorization: Authorization,
    /// Established sessions at most.
    pub max_sessions: usize,
    /// Connections still in set-up at most; past that the oldest is dropped.
    pub max_handshakes: usize,
    /// Ring capacities a client gets when it asks for none.
    pub default_sizes: RingSizes,
    /// Smallest and largest capacity a client may ask for (powers of two).
    pub min_ring: u32,
    pub max_ring: u32,
    /// Per session and per outgoing ring (response, event): frames and
    /// bytes that may wait when the ring is full before the client is
    /// disconnected as too slow.
    pub overflow_frames: usize,
    pub overflow_bytes: usize,
    /// Bytes that may wait in all sessions' overflow queues together; a
    /// client whose spill would pass it is disconnected as too slow (with
    /// the per-session bound alone, 256 clients that read nothing could
    /// make the daemon hold 256 of them).
    pub overflow_total_bytes: usize,
    /// Services a request may name (a bit per id below 64); a request for
    /// another is answered with `ERROR_UNKNOWN_SERVICE`.
    pub services: u64,
    /// Offer clients the plain-store request path (`REPLY_FLAG_LIGHT_REQUESTS`)
    /// where the kernel has membarrier's global expedited barrier. Off, the
    /// daemon fences per session and clients publish with a locked exchange.
    pub light_requests: bool,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            endpoint: Endpoint::default(),
            authorization: Authorization::default(),
            max_sessions: 256,
            max_handshakes: 16,
            default_sizes: RingSizes {
                request: 1 << 20,
                response: 1 << 20,
                event: 1 << 20,
            },
            min_ring: MIN_RING,
            max_ring: 8 << 20,
            overflow_frames: 1024,
            overflow_bytes: 4 << 20,
            overflow_total_bytes: 64 << 20,
            services: u64::MAX,
            light_requests: true,
        }
    }
}

impl ServerConfig {
    /// The capacity granted for a requested one: the default for 0,
    /// otherwise clamped to the limits and rounded up to a power of two.
    pub fn grant(&self, asked: u32, default: u32) -> u32 {
        let lo = self.min_ring.max(MIN_RING).next_power_of_two();
        let hi = self.max_ring.clamp(lo, MAX_RING);
        // The largest power of two not above `hi` (`hi >= lo`, itself one).
        let hi = 1u32 << (31 - hi.leading_zeros());
        let want = if asked == 0 { default } else { asked };
        want.clamp(lo, hi).next_power_of_two()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoint_parse() {
        assert_eq!(
            Endpoint::parse("/run/x.sock"),
            Endpoint::Path("/run/x.sock".into())
        );
        assert_eq!(Endpoint::parse("@abc"), Endpoint::Abstract("abc".into()));
        assert_eq!(Endpoint::parse("abc"), Endpoint::Abstract("abc".into()));
    }

    #[test]
    fn authorization_rules() {
        let mut a = Authorization::default();
        assert!(a.allows(0, 5));
        assert!(
            a.allows(5, 0),
            "gid 0 is root's group: allowed, as in Corosync"
        );
        assert!(!a.allows(1000, 1000));
        a.configured.push(UidGid {
            uid: None,
            gid: Some(1000),
        });
        assert!(a.allows(1001, 1000));
        assert!(!a.allows(1000, 1001));
        a.runtime_uids.insert(1000);
        assert!(a.allows(1000, 1001));
    }

    #[test]
    fn grant_clamps_to_powers_of_two() {
        let c = ServerConfig::default();
        assert_eq!(c.grant(0, 1 << 20), 1 << 20);
        assert_eq!(c.grant(5000, 1 << 20), 8192);
        assert_eq!(c.grant(1, 1 << 20), 4096);
        assert_eq!(c.grant(u32::MAX, 1 << 20), 8 << 20);
    }
}
