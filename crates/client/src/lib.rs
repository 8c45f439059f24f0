//! The client libraries: a typed Rust API per service, and the C ABI
//! (`cdylib` + `staticlib`) with headers source-compatible with Corosync's
//! (`corosync/cpg.h`, `corotypes.h`, cfg, cmap, quorum, votequorum, evs) and
//! the SA Forum's (`saAis.h`, `saClm.h`, `saCkpt.h`, `saEvt.h`, `saLck.h`,
//! `saMsg.h`, `saTmr.h`, `saAmf.h`), plus pkg-config files.
//!
//! Role (see `ARCHITECTURE.md`): talks to the daemon through `ipc-shm` and
//! uses the message types of `services`.
//!
//! This crate is empty until the issue that builds it lands (issues 3–7
//! cover the crates after `totem-ring`).
