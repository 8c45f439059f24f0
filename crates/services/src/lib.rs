//! The service engine and every service: evs, cpg, clm, ckpt, evt, lck, msg,
//! tmr, amf, cfg, cmap and quorum/votequorum.
//!
//! Role (see `ARCHITECTURE.md`): dispatch of delivered messages and client
//! requests, and the post-membership sync protocol. Sans-IO like
//! `totem-ring`: a service sees delivered messages, configuration changes,
//! sync callbacks, timers and client requests tagged by an opaque
//! connection id, and answers with multicasts, replies, events and timer
//! requests. Depends on `totem-ring` for types only.
//!
//! [`proto`] is the client ⇄ daemon protocol, shared with the client
//! libraries.

pub mod proto;
