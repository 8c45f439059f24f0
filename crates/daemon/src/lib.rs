//! The executive and the tools: configuration (`corosync.conf` format), the
//! run loop that wires transport ⇄ totem-ring ⇄ services ⇄ ipc-shm on a
//! pinned core, logging, signals, the state directory (ring id), and the
//! `corosync`, `corosync-keygen`, `corosync-cfgtool`, `corosync-cpgtool`,
//! `corosync-cmapctl` and `corosync-quorumtool` binaries.
//!
//! Role (see `ARCHITECTURE.md`): the only crate that depends on all the
//! others.
//!
//! This crate is empty until the issue that builds it lands (issues 3–7
//! cover the crates after `totem-ring`).
