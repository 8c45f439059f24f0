//! Key files, key derivation, sealing/opening in place, wrong keys and
//! nonce uniqueness.

use std::collections::HashSet;
use std::net::SocketAddr;

use transport::crypto::{Aead, NonceSeq, KEY_MAX, KEY_MIN};
use transport::{Cipher, ClusterKey, CryptoError, FrameCodec, NodeId};

fn from() -> SocketAddr {
    "192.0.2.1:5405".parse().unwrap()
}

fn tmp_file(name: &str, bytes: &[u8]) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("transport-test-{}-{name}", std::process::id()));
    std::fs::write(&p, bytes).unwrap();
    p
}

#[test]
fn key_file_sizes_as_corosync_writes_them() {
    for (len, ok) in [
        (0, false),
        (127, false),
        (128, true),
        (256, true),
        (4096, true),
        (4097, false),
    ] {
        let p = tmp_file(&format!("k{len}"), &vec![0x5a; len]);
        let r = ClusterKey::load(&p);
        std::fs::remove_file(&p).unwrap();
        assert_eq!(r.is_ok(), ok, "{len} bytes: {r:?}");
        if !ok {
            assert!(matches!(r, Err(CryptoError::KeyLength { .. })));
        }
    }
    let missing = ClusterKey::load(std::path::Path::new("/nonexistent/authkey"));
    assert!(matches!(missing, Err(CryptoError::KeyFile { .. })));
    assert_eq!((KEY_MIN, KEY_MAX), (128, 4096));
}

#[test]
fn crypto_off_needs_no_key_and_on_requires_one() {
    assert!(Aead::new(Cipher::None, None, "c").is_ok());
    assert!(matches!(
        Aead::new(Cipher::Aes256Gcm, None, "c"),
        Err(CryptoError::MissingKey(_))
    ));
}

fn codec(c: Cipher, key: &ClusterKey, node: u32) -> FrameCodec {
    FrameCodec::new(NodeId(node), c, Some(key), "cluster", 9000).unwrap()
}

#[test]
fn seal_open_in_place_both_ciphers_and_every_bit_flip_rejected() {
    let key = ClusterKey::generate(256).unwrap();
    for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        let mut tx = codec(c, &key, 1);
        let mut rx = codec(c, &key, 2);
        let payload = b"totem frame payload";
        let mut slot = vec![0u8; 256];
        let n = tx.seal_into(&mut slot, payload).unwrap();
        assert_eq!(n, payload.len() + tx.overhead());
        assert_ne!(
            &slot[tx.header_len()..tx.header_len() + payload.len()],
            payload
        );
        for bit in 0..n * 8 {
            let mut bad = slot[..n].to_vec();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(
                rx.open(from(), &mut bad).is_err(),
                "{c:?} flip {bit} accepted"
            );
        }
        let mut good = slot[..n].to_vec();
        let (node, p) = rx.open(from(), &mut good).unwrap();
        assert_eq!((node, &*p), (NodeId(1), payload.as_slice()));
    }
}

#[test]
fn per_cipher_keys_are_derived_not_the_raw_key() {
    // Same key, same nonce, same plaintext: AES-GCM under the raw key's
    // first 32 bytes must differ from ours (HKDF ran).
    let raw = [0x42u8; 256];
    let key = ClusterKey::from_bytes(&raw).unwrap();
    let aead = Aead::new(Cipher::Aes256Gcm, Some(&key), "c").unwrap();
    let nonce = [1u8; 12];
    let mut ours = [0u8; 32];
    let mut tag = [0u8; 16];
    aead.seal(nonce, b"h", &mut ours, &mut tag).unwrap();
    let rk = ring::aead::LessSafeKey::new(
        ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &raw[..32]).unwrap(),
    );
    let mut theirs = [0u8; 32];
    let _ = rk
        .seal_in_place_separate_tag(
            ring::aead::Nonce::assume_unique_for_key(nonce),
            ring::aead::Aad::from(b"h"),
            &mut theirs,
        )
        .unwrap();
    assert_ne!(ours, theirs);
}

#[test]
fn wrong_key_rejected_100_percent() {
    for c in [Cipher::Aes256Gcm, Cipher::ChaCha20Poly1305] {
        let mut tx = codec(c, &ClusterKey::generate(256).unwrap(), 1);
        let mut rx = codec(c, &ClusterKey::generate(256).unwrap(), 2);
        let mut slot = vec![0u8; 2048];
        for i in 0..20_000usize {
            let n = tx.seal_into(&mut slot, &vec![i as u8; i % 1400]).unwrap();
            assert!(rx.open(from(), &mut slot[..n]).is_err());
        }
        assert_eq!(rx.stats().auth_failed, 20_000);
        assert_eq!(rx.stats().opened, 0);
    }
}

fn nonce_of(frame: &[u8]) -> (u64, u32) {
    let mut p = [0u8; 8];
    p.copy_from_slice(&frame[8..16]);
    let mut c = [0u8; 4];
    c.copy_from_slice(&frame[16..20]);
    (u64::from_be_bytes(p), u32::from_be_bytes(c))
}

/// 10 M sealed frames: within one prefix the counter strictly increases,
/// and no prefix is ever used twice, so no nonce repeats.
#[test]
fn nonce_never_repeats_over_10m_packets() {
    let key = ClusterKey::generate(256).unwrap();
    let mut tx = codec(Cipher::Aes256Gcm, &key, 1);
    let mut slot = [0u8; 64];
    let mut prefixes = HashSet::new();
    let mut last: Option<(u64, u32)> = None;
    // 10 M in release (CI); fewer in an unoptimised build.
    let n = if cfg!(debug_assertions) {
        500_000
    } else {
        10_000_000u32
    };
    for _ in 0..n {
        let n = tx.seal_into(&mut slot, &[]).unwrap();
        let (p, c) = nonce_of(&slot[..n]);
        match last {
            Some((lp, lc)) if lp == p => assert!(c > lc, "counter did not advance"),
            _ => assert!(prefixes.insert(p), "prefix reused"),
        }
        last = Some((p, c));
    }
}

#[test]
fn nonce_prefix_is_redrawn_when_the_counter_wraps() {
    let mut seq = NonceSeq::starting_at(u32::MAX - 1_000).unwrap();
    let mut seen = HashSet::new();
    for _ in 0..1_000_000 {
        assert!(seen.insert(seq.next_nonce().unwrap()), "nonce repeated");
    }
    assert_eq!(seq.epochs(), 1);
    // Two "boots" draw different prefixes.
    let a = NonceSeq::new().unwrap().next_nonce().unwrap();
    let b = NonceSeq::new().unwrap().next_nonce().unwrap();
    assert_ne!(a[..8], b[..8]);
}
