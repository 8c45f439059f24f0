//! Benchmarks for every layer (see `ARCHITECTURE.md`). Today: the Totem ring
//! over the in-memory driver (`benches/ring.rs`, criterion) and the fixed
//! workload `ring-work` that `callgrind-ring.sh` counts instructions over.
//! The cluster benchmark against a real Corosync comes with the daemon.

use tests::mem_ring::MemRing;
use totem_ring::Guarantee;

/// A formed ring of `nodes` nodes with the in-memory driver's fast timers,
/// warmed by `warm` messages of `size` bytes so that every pool and queue
/// has reached its steady size.
pub fn warm_ring(nodes: usize, size: usize, warm: u64) -> MemRing {
    let mut ring = MemRing::new(nodes, MemRing::fast_config()).expect("valid config");
    ring.form().expect("ring forms");
    if warm > 0 {
        ring.round_robin(warm, size, Guarantee::Agreed)
            .expect("warm-up delivers");
    }
    ring
}
