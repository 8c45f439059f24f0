//! UDP transport over io_uring: multicast and unicast-to-all (udpu),
//! IPv4/IPv6, multishot receive into a registered provided-buffer ring,
//! batched sends, zero-copy send for large frames, AEAD with the cluster
//! key, kernel feature probing with a batched-syscall fallback (and a switch
//! that forces it), and core pinning.
//!
//! Role (see `ARCHITECTURE.md`): the only crate that touches io_uring; one
//! of the three crates allowed `unsafe`, each block with a `// SAFETY:` note.
//!
//! This crate is empty until the issue that builds it lands (issues 3–7
//! cover the crates after `totem-ring`).
