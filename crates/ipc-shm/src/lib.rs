//! Client↔daemon IPC: session setup over a unix socket (peer credentials,
//! uid/gid authorization), memfd-backed request/response/event rings passed
//! by SCM_RIGHTS, eventfd/futex wakeups with needs-wakeup flags, flow
//! control and client-death cleanup. Server and client halves.
//!
//! Role (see `ARCHITECTURE.md`): moves opaque frames and knows nothing of
//! services. One of the three crates allowed `unsafe`, each block with a
//! `// SAFETY:` note.
//!
//! This crate is empty until the issue that builds it lands (issues 3–7
//! cover the crates after `totem-ring`).
