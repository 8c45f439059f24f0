//! The transport's frame: a small header, the payload, and (with crypto)
//! the AEAD tag. Sealing and opening happen in place in the caller's
//! buffer; decoding untrusted bytes never panics.
//!
//! ```text
//! 0..2   magic 0xC0 0x5E
//! 2      version (1)
//! 3      cipher id (0 none, 1 AES-256-GCM, 2 ChaCha20-Poly1305)
//! 4..8   sender node id, little-endian
//! 8..20  nonce (only when the cipher is not none)
//! ...    payload (ciphertext with crypto)
//! +16    tag (only with crypto)
//! ```

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use ring::aead::NONCE_LEN;

use crate::crypto::{Aead, Cipher, ClusterKey, CryptoError, ReplayGuard, ReplayVerdict};
use crate::NodeId;

pub const MAGIC: [u8; 2] = [0xC0, 0x5E];
pub const VERSION: u8 = 1;
pub const BASE_HEADER: usize = 8;
/// Senders tracked by the replay guard (Corosync allows 384 nodes).
pub const MAX_SENDERS: usize = 4096;
const AUTH_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Why a received datagram was dropped.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DropReason {
    TooShort,
    BadMagic,
    BadVersion,
    UnknownCipher,
    CipherMismatch,
    AuthFailed,
    Replayed,
    TooManySenders,
    Truncated,
    Oversize,
}

/// Counters of the codec; the statistics map exposes them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FrameStats {
    pub sealed: u64,
    pub opened: u64,
    pub too_short: u64,
    pub bad_magic: u64,
    pub bad_version: u64,
    pub unknown_cipher: u64,
    pub cipher_mismatch: u64,
    pub auth_failed: u64,
    pub replayed: u64,
    pub too_many_senders: u64,
    pub truncated: u64,
    pub oversize: u64,
}

impl FrameStats {
    pub fn dropped(&self) -> u64 {
        self.too_short
            + self.bad_magic
            + self.bad_version
            + self.unknown_cipher
            + self.cipher_mismatch
            + self.auth_failed
            + self.replayed
            + self.too_many_senders
            + self.truncated
            + self.oversize
    }

    pub fn count(&mut self, r: DropReason) {
        let c = match r {
            DropReason::TooShort => &mut self.too_short,
            DropReason::BadMagic => &mut self.bad_magic,
            DropReason::BadVersion => &mut self.bad_version,
            DropReason::UnknownCipher => &mut self.unknown_cipher,
            DropReason::CipherMismatch => &mut self.cipher_mismatch,
            DropReason::AuthFailed => &mut self.auth_failed,
            DropReason::Replayed => &mut self.replayed,
            DropReason::TooManySenders => &mut self.too_many_senders,
            DropReason::Truncated => &mut self.truncated,
            DropReason::Oversize => &mut self.oversize,
        };
        *c += 1;
    }
}

/// Frames payloads for one node and opens frames from the others.
pub struct FrameCodec {
    aead: Aead,
    replay: ReplayGuard,
    node: NodeId,
    max_payload: usize,
    stats: FrameStats,
    auth_log_at: Option<Instant>,
    auth_fail_unlogged: u64,
}

impl FrameCodec {
    pub fn new(
        node: NodeId,
        cipher: Cipher,
        key: Option<&ClusterKey>,
        cluster_name: &str,
        max_payload: usize,
    ) -> Result<Self, CryptoError> {
        Ok(Self {
            aead: Aead::new(cipher, key, cluster_name)?,
            replay: ReplayGuard::new(MAX_SENDERS),
            node,
            max_payload,
            stats: FrameStats::default(),
            auth_log_at: None,
            auth_fail_unlogged: 0,
        })
    }

    pub fn cipher(&self) -> Cipher {
        self.aead.cipher()
    }

    pub fn header_len(&self) -> usize {
        if self.aead.cipher() == Cipher::None {
            BASE_HEADER
        } else {
            BASE_HEADER + NONCE_LEN
        }
    }

    /// Header plus tag.
    pub fn overhead(&self) -> usize {
        self.header_len() + self.aead.tag_len()
    }

    pub fn max_payload(&self) -> usize {
        self.max_payload
    }

    pub fn stats(&self) -> &FrameStats {
        &self.stats
    }

    /// Copies `payload` into `slot` behind the header and seals it there;
    /// returns the frame length. `slot` must hold `payload + overhead()`.
    pub fn seal_into(&mut self, slot: &mut [u8], payload: &[u8]) -> Result<usize, CryptoError> {
        let h = self.header_len();
        slot[h..h + payload.len()].copy_from_slice(payload);
        self.seal_in_place(slot, payload.len())
    }

    /// Seals a payload already written at `slot[header_len()..]`.
    pub fn seal_in_place(
        &mut self,
        slot: &mut [u8],
        payload_len: usize,
    ) -> Result<usize, CryptoError> {
        let h = self.header_len();
        let total = h + payload_len + self.aead.tag_len();
        assert!(slot.len() >= total, "send slot smaller than frame");
        slot[0..2].copy_from_slice(&MAGIC);
        slot[2] = VERSION;
        slot[3] = self.aead.cipher().wire_id();
        slot[4..8].copy_from_slice(&self.node.0.to_le_bytes());
        if self.aead.cipher() != Cipher::None {
            let nonce = self.aead.next_nonce()?;
            slot[BASE_HEADER..h].copy_from_slice(&nonce);
            let (header, rest) = slot.split_at_mut(h);
            let (payload, tag) = rest.split_at_mut(payload_len);
            self.aead.seal(nonce, header, payload, tag)?;
        }
        self.stats.sealed += 1;
        Ok(total)
    }

    /// Counts a datagram the kernel truncated (it is never opened).
    pub fn count_truncated(&mut self) {
        self.stats.count(DropReason::Truncated);
    }

    /// Checks and opens one frame in place. On success returns the sender's
    /// node id and the plaintext; on failure the reason, already counted.
    pub fn open<'a>(
        &mut self,
        from: SocketAddr,
        pkt: &'a mut [u8],
    ) -> Result<(NodeId, &'a mut [u8]), DropReason> {
        match self.open_inner(pkt) {
            Ok((node, start, len)) => {
                self.stats.opened += 1;
                Ok((node, &mut pkt[start..start + len]))
            }
            Err(r) => {
                self.stats.count(r);
                if r == DropReason::AuthFailed {
                    self.log_auth_failure(from);
                }
                Err(r)
            }
        }
    }

    fn open_inner(&mut self, pkt: &mut [u8]) -> Result<(NodeId, usize, usize), DropReason> {
        if pkt.len() < BASE_HEADER {
            return Err(DropReason::TooShort);
        }
        if pkt[0..2] != MAGIC {
            return Err(DropReason::BadMagic);
        }
        if pkt[2] != VERSION {
            return Err(DropReason::BadVersion);
        }
        let cipher = Cipher::from_wire_id(pkt[3]).ok_or(DropReason::UnknownCipher)?;
        if cipher != self.aead.cipher() {
            return Err(DropReason::CipherMismatch);
        }
        let node = NodeId(u32::from_le_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]));
        let h = self.header_len();
        let tag = self.aead.tag_len();
        if pkt.len() < h + tag {
            return Err(DropReason::TooShort);
        }
        if pkt.len() - h - tag > self.max_payload {
            return Err(DropReason::Oversize);
        }
        if cipher == Cipher::None {
            return Ok((node, h, pkt.len() - h));
        }
        let mut nonce = [0u8; NONCE_LEN];
        nonce.copy_from_slice(&pkt[BASE_HEADER..h]);
        let (header, body) = pkt.split_at_mut(h);
        let len = self
            .aead
            .open(nonce, header, body)
            .ok_or(DropReason::AuthFailed)?;
        match self.replay.check(node.0, &nonce) {
            ReplayVerdict::Fresh => Ok((node, h, len)),
            ReplayVerdict::Replayed => Err(DropReason::Replayed),
            ReplayVerdict::TooManySenders => Err(DropReason::TooManySenders),
        }
    }

    fn log_auth_failure(&mut self, from: SocketAddr) {
        self.auth_fail_unlogged += 1;
        let now = Instant::now();
        let due = self
            .auth_log_at
            .is_none_or(|t| now.duration_since(t) >= AUTH_LOG_INTERVAL);
        if due {
            tracing::warn!(
                source = %from,
                dropped = self.auth_fail_unlogged,
                "dropped packet(s) that failed authentication from {from}; \
                 the cluster keys (authkey) or cluster names probably differ between nodes"
            );
            self.auth_log_at = Some(now);
            self.auth_fail_unlogged = 0;
        }
    }
}
