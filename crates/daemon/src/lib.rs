//! The executive and the tools: configuration (`corosync.conf` format), the
//! run loop that wires transport ⇄ totem-ring ⇄ services ⇄ ipc-shm on a
//! pinned core, logging, signals, the state directory (ring id), and the
//! `corosync` binary (the tools `corosync-keygen`, `corosync-cfgtool`,
//! `corosync-cpgtool`, `corosync-cmapctl` and `corosync-quorumtool` come
//! with the tools issue).
//!
//! Role (see `ARCHITECTURE.md`): the only crate that depends on all the
//! others. No `unsafe` here: system calls live in transport and ipc-shm.

#![forbid(unsafe_code)]

pub mod args;
pub mod cmap_keys;
pub mod config;
pub mod logging;
pub mod persist;
pub mod reloader;
pub mod runtime;
pub mod setup;
pub mod stats_map;
