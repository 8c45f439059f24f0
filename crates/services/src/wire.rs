//! The engine's framing of Totem payloads, and the sync protocol's own
//! messages.
//!
//! ```text
//! every payload:  u16 service | u16 kind | body …            (little endian)
//! sync barrier:   service 0xFFFE, kind 0: u32 ring rep | u64 ring seq | u16 step
//! ```
//!
//! Step 0 of a round is the announce barrier; step `i ≥ 1` is the barrier
//! that ends the `i`-th syncing service's process phase.

use crate::proto::{DecodeError, Reader, Writer};
use crate::RingId;

/// Reserved service id of the sync protocol.
pub const SYNC_SERVICE: u16 = 0xFFFE;
/// Size of the service/kind header on every Totem payload.
pub const HEADER_LEN: usize = 4;

/// Sync message kinds.
pub mod sync_kind {
    pub const BARRIER: u16 = 0;
}

/// The service/kind header.
pub fn header(service: u16, kind: u16) -> [u8; HEADER_LEN] {
    let s = service.to_le_bytes();
    let k = kind.to_le_bytes();
    [s[0], s[1], k[0], k[1]]
}

/// Splits a delivered payload into (service, kind, body).
pub fn split(payload: &[u8]) -> Result<(u16, u16, &[u8]), DecodeError> {
    let mut r = Reader(payload);
    let service = r.u16("service id")?;
    let kind = r.u16("message kind")?;
    Ok((service, kind, r.rest()))
}

/// A sync barrier: `sender` finished `step` of the round on `ring`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Barrier {
    pub ring: RingId,
    pub step: u16,
}

impl Barrier {
    pub const LEN: usize = 14;

    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut v = Vec::with_capacity(Self::LEN);
        Writer(&mut v)
            .u32(self.ring.rep)
            .u64(self.ring.seq)
            .u16(self.step);
        let mut a = [0u8; Self::LEN];
        a.copy_from_slice(&v);
        a
    }

    pub fn decode(body: &[u8]) -> Result<Barrier, DecodeError> {
        let mut r = Reader(body);
        let rep = r.u32("barrier ring rep")?;
        let seq = r.u64("barrier ring seq")?;
        let step = r.u16("barrier step")?;
        r.finish()?;
        Ok(Barrier {
            ring: RingId { rep, seq },
            step,
        })
    }
}

/// Writes a ring id (u32 rep, u64 seq).
pub fn put_ring(w: &mut Writer<'_>, ring: RingId) {
    w.u32(ring.rep).u64(ring.seq);
}

/// Reads a ring id written by [`put_ring`].
pub fn get_ring(r: &mut Reader<'_>) -> Result<RingId, DecodeError> {
    Ok(RingId {
        rep: r.u32("ring rep")?,
        seq: r.u64("ring seq")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn barrier_round_trips_and_header_splits() {
        let b = Barrier {
            ring: RingId {
                rep: 3,
                seq: 1 << 40,
            },
            step: 7,
        };
        assert_eq!(Barrier::decode(&b.encode()), Ok(b));
        assert!(Barrier::decode(&b.encode()[..13]).is_err());
        let h = header(SYNC_SERVICE, 9);
        assert_eq!(split(&h), Ok((SYNC_SERVICE, 9, &[][..])));
        assert!(split(&h[..3]).is_err());
    }
}
