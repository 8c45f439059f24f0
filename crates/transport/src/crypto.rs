//! Cluster key, per-cipher keys by HKDF, AEAD sealing/opening in place, and
//! the nonce sequence (per-boot random prefix + counter, never repeated).

use std::collections::HashMap;
use std::fmt;
use std::path::Path;

use ring::aead::{self, Aad, LessSafeKey, Nonce, UnboundKey, NONCE_LEN};
use ring::digest;
use ring::hkdf;
use ring::rand::{SecureRandom, SystemRandom};

/// Smallest accepted key file (a Corosync 2.x authkey is 128 bytes).
pub const KEY_MIN: usize = 128;
/// Largest accepted key file (`corosync-keygen -s` maximum).
pub const KEY_MAX: usize = 4096;
/// AEAD tag length of both ciphers.
pub const TAG_LEN: usize = 16;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum CryptoError {
    #[error("cannot read key file {path}: {reason}")]
    KeyFile { path: String, reason: String },
    #[error("cluster key is {len} bytes; a key must be {KEY_MIN}..={KEY_MAX} bytes (corosync-keygen writes 256)")]
    KeyLength { len: usize },
    #[error("crypto is on (cipher {0}) but no cluster key was given (authkey file missing?)")]
    MissingKey(&'static str),
    #[error("unsupported crypto_cipher {cipher:?} / crypto_hash {hash:?}: {why}")]
    Unsupported {
        cipher: String,
        hash: String,
        why: &'static str,
    },
    #[error("AEAD sealing failed")]
    Seal,
    #[error("the system random generator failed")]
    Random,
}

/// The AEAD protecting packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Cipher {
    None,
    Aes256Gcm,
    ChaCha20Poly1305,
}

impl Cipher {
    /// Wire identifier, carried in every packet header.
    pub fn wire_id(self) -> u8 {
        match self {
            Cipher::None => 0,
            Cipher::Aes256Gcm => 1,
            Cipher::ChaCha20Poly1305 => 2,
        }
    }

    pub fn from_wire_id(id: u8) -> Option<Self> {
        match id {
            0 => Some(Cipher::None),
            1 => Some(Cipher::Aes256Gcm),
            2 => Some(Cipher::ChaCha20Poly1305),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Cipher::None => "none",
            Cipher::Aes256Gcm => "aes256-gcm",
            Cipher::ChaCha20Poly1305 => "chacha20-poly1305",
        }
    }

    fn algorithm(self) -> Option<&'static aead::Algorithm> {
        match self {
            Cipher::None => None,
            Cipher::Aes256Gcm => Some(&aead::AES_256_GCM),
            Cipher::ChaCha20Poly1305 => Some(&aead::CHACHA20_POLY1305),
        }
    }

    /// Maps `totem { crypto_cipher; crypto_hash }` as Corosync spells them.
    ///
    /// Both `none`: no crypto. Any AES cipher with a hash: AES-256-GCM (the
    /// AEAD authenticates, so the hash only says "authentication on"); a hash
    /// alone (Corosync's authenticate-only mode): AES-256-GCM as well.
    /// `chacha20-poly1305` is our extension. A cipher with hash `none` is
    /// rejected, as Corosync rejects it.
    pub fn from_corosync(cipher: &str, hash: &str) -> Result<Self, CryptoError> {
        let c = cipher.trim().to_ascii_lowercase();
        let h = hash.trim().to_ascii_lowercase();
        let unsupported = |why| CryptoError::Unsupported {
            cipher: cipher.to_string(),
            hash: hash.to_string(),
            why,
        };
        let hash_on = match h.as_str() {
            "" | "none" => false,
            "md5" | "sha1" | "sha256" | "sha384" | "sha512" => true,
            _ => {
                return Err(unsupported(
                    "crypto_hash must be none, md5, sha1, sha256, sha384 or sha512",
                ))
            }
        };
        match c.as_str() {
            "" | "none" => Ok(if hash_on {
                Cipher::Aes256Gcm
            } else {
                Cipher::None
            }),
            "aes256" | "aes192" | "aes128" | "aes256-gcm" | "aes256gcm" if hash_on => {
                Ok(Cipher::Aes256Gcm)
            }
            "chacha20-poly1305" | "chacha20poly1305" | "chacha20" if hash_on => {
                Ok(Cipher::ChaCha20Poly1305)
            }
            "aes256" | "aes192" | "aes128" | "aes256-gcm" | "aes256gcm" | "chacha20-poly1305"
            | "chacha20poly1305" | "chacha20" => Err(unsupported(
                "crypto_cipher requires crypto_hash other than none",
            )),
            "3des" => Err(unsupported("3des is not supported; use aes256")),
            _ => Err(unsupported(
                "crypto_cipher must be none, aes256 or chacha20-poly1305",
            )),
        }
    }
}

/// The shared cluster key (a Corosync `authkey`), wiped on drop.
#[derive(Clone)]
pub struct ClusterKey(Vec<u8>);

impl fmt::Debug for ClusterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ClusterKey({} bytes)", self.0.len())
    }
}

impl Drop for ClusterKey {
    fn drop(&mut self) {
        for b in self.0.iter_mut() {
            // SAFETY: `b` is a valid, aligned, exclusive reference; the
            // volatile write only stops the compiler from eliding the wipe.
            unsafe { std::ptr::write_volatile(b, 0) };
        }
    }
}

impl ClusterKey {
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, CryptoError> {
        if !(KEY_MIN..=KEY_MAX).contains(&bytes.len()) {
            return Err(CryptoError::KeyLength { len: bytes.len() });
        }
        Ok(Self(bytes.to_vec()))
    }

    /// Reads a key file; the whole file is the key, as in Corosync.
    pub fn load(path: &Path) -> Result<Self, CryptoError> {
        let err = |reason: String| CryptoError::KeyFile {
            path: path.display().to_string(),
            reason,
        };
        let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
        if meta.len() > KEY_MAX as u64 {
            return Err(CryptoError::KeyLength {
                len: meta.len() as usize,
            });
        }
        let bytes = std::fs::read(path).map_err(|e| err(e.to_string()))?;
        let key = Self::from_bytes(&bytes);
        let mut bytes = bytes;
        bytes.iter_mut().for_each(|b| *b = 0);
        key
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// A fresh random key of `len` bytes (tests, benchmarks, keygen).
    pub fn generate(len: usize) -> Result<Self, CryptoError> {
        let mut v = vec![0u8; len];
        SystemRandom::new()
            .fill(&mut v)
            .map_err(|_| CryptoError::Random)?;
        Self::from_bytes(&v)
    }
}

const HKDF_SALT: &[u8] = b"corosync-rs transport v1";

/// Derives the AEAD key for `cipher` from the cluster key (HKDF-SHA256,
/// the cipher's name as info, so each cipher gets an independent key).
fn derive_key(key: &ClusterKey, cipher: Cipher) -> Option<LessSafeKey> {
    let alg = cipher.algorithm()?;
    let info = [b"corosync-rs/".as_slice(), cipher.name().as_bytes()];
    let prk = hkdf::Salt::new(hkdf::HKDF_SHA256, HKDF_SALT).extract(&key.0);
    let okm = prk.expand(&info, alg).ok()?;
    Some(LessSafeKey::new(UnboundKey::from(okm)))
}

/// Nonces: an 8-byte random prefix drawn at start (and again whenever the
/// 32-bit counter is exhausted) followed by the counter, big-endian.
pub struct NonceSeq {
    rng: SystemRandom,
    prefix: [u8; 8],
    counter: u32,
    epochs: u64,
}

impl NonceSeq {
    pub fn new() -> Result<Self, CryptoError> {
        Self::starting_at(0)
    }

    /// A sequence whose counter starts at `counter` (tests of the wrap).
    pub fn starting_at(counter: u32) -> Result<Self, CryptoError> {
        let rng = SystemRandom::new();
        let mut prefix = [0u8; 8];
        rng.fill(&mut prefix).map_err(|_| CryptoError::Random)?;
        Ok(Self {
            rng,
            prefix,
            counter,
            epochs: 0,
        })
    }

    pub fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], CryptoError> {
        let mut n = [0u8; NONCE_LEN];
        n[..8].copy_from_slice(&self.prefix);
        n[8..].copy_from_slice(&self.counter.to_be_bytes());
        if self.counter == u32::MAX {
            self.new_prefix()?;
        } else {
            self.counter += 1;
        }
        Ok(n)
    }

    fn new_prefix(&mut self) -> Result<(), CryptoError> {
        let old = self.prefix;
        while self.prefix == old {
            self.rng
                .fill(&mut self.prefix)
                .map_err(|_| CryptoError::Random)?;
        }
        self.counter = 0;
        self.epochs += 1;
        Ok(())
    }

    /// How many times the prefix was redrawn after counter exhaustion.
    pub fn epochs(&self) -> u64 {
        self.epochs
    }
}

/// Associated data: SHA-256 of the cluster name followed by the header.
pub const AAD_MAX: usize = 32 + 32;

/// Seals and opens packets for one cipher under one derived key.
pub struct Aead {
    cipher: Cipher,
    key: Option<LessSafeKey>,
    cluster_digest: [u8; 32],
    nonces: NonceSeq,
}

impl Aead {
    pub fn new(
        cipher: Cipher,
        key: Option<&ClusterKey>,
        cluster_name: &str,
    ) -> Result<Self, CryptoError> {
        let key = match (cipher, key) {
            (Cipher::None, _) => None,
            (c, None) => return Err(CryptoError::MissingKey(c.name())),
            (c, Some(k)) => {
                if !(KEY_MIN..=KEY_MAX).contains(&k.len()) {
                    return Err(CryptoError::KeyLength { len: k.len() });
                }
                derive_key(k, c)
            }
        };
        let mut cluster_digest = [0u8; 32];
        cluster_digest
            .copy_from_slice(digest::digest(&digest::SHA256, cluster_name.as_bytes()).as_ref());
        Ok(Self {
            cipher,
            key,
            cluster_digest,
            nonces: NonceSeq::new()?,
        })
    }

    pub fn cipher(&self) -> Cipher {
        self.cipher
    }

    /// Bytes added after the payload.
    pub fn tag_len(&self) -> usize {
        if self.key.is_some() {
            TAG_LEN
        } else {
            0
        }
    }

    pub fn next_nonce(&mut self) -> Result<[u8; NONCE_LEN], CryptoError> {
        self.nonces.next_nonce()
    }

    fn aad<'a>(&self, header: &[u8], buf: &'a mut [u8; AAD_MAX]) -> &'a [u8] {
        debug_assert!(header.len() <= AAD_MAX - 32);
        let n = header.len().min(AAD_MAX - 32);
        buf[..32].copy_from_slice(&self.cluster_digest);
        buf[32..32 + n].copy_from_slice(&header[..n]);
        &buf[..32 + n]
    }

    /// Encrypts `payload` in place and writes the tag into `tag_out`.
    pub fn seal(
        &self,
        nonce: [u8; NONCE_LEN],
        header: &[u8],
        payload: &mut [u8],
        tag_out: &mut [u8],
    ) -> Result<(), CryptoError> {
        let Some(key) = &self.key else { return Ok(()) };
        let mut aad_buf = [0u8; AAD_MAX];
        let aad = self.aad(header, &mut aad_buf);
        let tag = key
            .seal_in_place_separate_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(aad),
                payload,
            )
            .map_err(|_| CryptoError::Seal)?;
        tag_out[..TAG_LEN].copy_from_slice(tag.as_ref());
        Ok(())
    }

    /// Authenticates and decrypts `ciphertext || tag` in place; returns the
    /// plaintext length, or `None` when authentication fails.
    pub fn open(&self, nonce: [u8; NONCE_LEN], header: &[u8], in_out: &mut [u8]) -> Option<usize> {
        let Some(key) = &self.key else {
            return Some(in_out.len());
        };
        let mut aad_buf = [0u8; AAD_MAX];
        let aad = self.aad(header, &mut aad_buf);
        key.open_in_place(Nonce::assume_unique_for_key(nonce), Aad::from(aad), in_out)
            .ok()
            .map(|p| p.len())
    }
}

/// Rejects replays of authenticated packets: per sender, the newest nonce
/// prefix and a 64-packet window below its highest counter. A new prefix
/// (the sender restarted or wrapped its counter) resets the window.
/// Bounded: at most `cap` senders are tracked; packets from further senders
/// are dropped as replays would be, and counted by the caller.
pub struct ReplayGuard {
    senders: HashMap<u32, Window>,
    cap: usize,
}

#[derive(Clone, Copy)]
struct Window {
    prefix: u64,
    top: u32,
    seen: u64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReplayVerdict {
    Fresh,
    Replayed,
    TooManySenders,
}

impl ReplayGuard {
    pub fn new(cap: usize) -> Self {
        Self {
            senders: HashMap::with_capacity(cap),
            cap,
        }
    }

    pub fn check(&mut self, sender: u32, nonce: &[u8; NONCE_LEN]) -> ReplayVerdict {
        let mut p = [0u8; 8];
        p.copy_from_slice(&nonce[..8]);
        let prefix = u64::from_be_bytes(p);
        let mut c = [0u8; 4];
        c.copy_from_slice(&nonce[8..]);
        let ctr = u32::from_be_bytes(c);
        let fresh = Window {
            prefix,
            top: ctr,
            seen: 1,
        };
        if !self.senders.contains_key(&sender) && self.senders.len() >= self.cap {
            return ReplayVerdict::TooManySenders;
        }
        let Some(w) = self.senders.get_mut(&sender) else {
            self.senders.insert(sender, fresh);
            return ReplayVerdict::Fresh;
        };
        if w.prefix != prefix {
            *w = fresh;
            return ReplayVerdict::Fresh;
        }
        if ctr > w.top {
            let shift = ctr - w.top;
            w.seen = if shift >= 64 {
                1
            } else {
                (w.seen << shift) | 1
            };
            w.top = ctr;
            return ReplayVerdict::Fresh;
        }
        let back = w.top - ctr;
        if back >= 64 {
            return ReplayVerdict::Replayed;
        }
        let bit = 1u64 << back;
        if w.seen & bit != 0 {
            return ReplayVerdict::Replayed;
        }
        w.seen |= bit;
        ReplayVerdict::Fresh
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn corosync_spellings() {
        assert_eq!(Cipher::from_corosync("none", "none"), Ok(Cipher::None));
        assert_eq!(
            Cipher::from_corosync("aes256", "sha256"),
            Ok(Cipher::Aes256Gcm)
        );
        assert_eq!(
            Cipher::from_corosync("AES128", "sha1"),
            Ok(Cipher::Aes256Gcm)
        );
        assert_eq!(
            Cipher::from_corosync("none", "sha512"),
            Ok(Cipher::Aes256Gcm)
        );
        assert_eq!(
            Cipher::from_corosync("chacha20-poly1305", "sha256"),
            Ok(Cipher::ChaCha20Poly1305)
        );
        assert!(Cipher::from_corosync("aes256", "none").is_err());
        assert!(Cipher::from_corosync("3des", "sha1").is_err());
        assert!(Cipher::from_corosync("rot13", "sha1").is_err());
        assert!(Cipher::from_corosync("aes256", "crc32").is_err());
    }

    #[test]
    fn replay_window() {
        let mut g = ReplayGuard::new(2);
        let n = |p: u64, c: u32| {
            let mut n = [0u8; 12];
            n[..8].copy_from_slice(&p.to_be_bytes());
            n[8..].copy_from_slice(&c.to_be_bytes());
            n
        };
        assert_eq!(g.check(1, &n(7, 10)), ReplayVerdict::Fresh);
        assert_eq!(g.check(1, &n(7, 10)), ReplayVerdict::Replayed);
        assert_eq!(g.check(1, &n(7, 8)), ReplayVerdict::Fresh);
        assert_eq!(g.check(1, &n(7, 8)), ReplayVerdict::Replayed);
        assert_eq!(g.check(1, &n(7, 100)), ReplayVerdict::Fresh);
        assert_eq!(g.check(1, &n(7, 10)), ReplayVerdict::Replayed);
        assert_eq!(g.check(1, &n(7, 99)), ReplayVerdict::Fresh);
        assert_eq!(g.check(1, &n(9, 0)), ReplayVerdict::Fresh);
        assert_eq!(g.check(2, &n(9, 0)), ReplayVerdict::Fresh);
        assert_eq!(g.check(3, &n(9, 0)), ReplayVerdict::TooManySenders);
    }
}
