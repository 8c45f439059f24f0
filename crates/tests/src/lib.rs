//! Test infrastructure shared by the tests, the benchmarks and the tools:
//! the deterministic simulator with one checker per EVS property, and an
//! in-memory ring driver without sockets.

pub mod chaos;
pub mod checker;
pub mod cluster;
pub mod mem_ring;
pub mod sim;
pub mod verify;
