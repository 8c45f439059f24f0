//! Probes the machine (io_uring features, CPUs, MTU), sweeps core pinning,
//! ring/batch sizes and window_size/max_messages, runs short measurements,
//! and writes a recommended configuration with a report and plot.
//!
//! Role (see `ARCHITECTURE.md`): built on `transport` and `bench`.
//!
//! This crate is empty until the issue that builds it lands (issues 3–7
//! cover the crates after `totem-ring`).
