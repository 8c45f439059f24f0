//! The few system calls the harness makes directly (who we are, signals,
//! entering a network namespace) come from `transport::os`, where the
//! project's `unsafe` lives. Everything else goes through `ip`, `nft` and
//! `std::process`.

pub use transport::os::{enter_netns, is_root, kill, pid_alive};
