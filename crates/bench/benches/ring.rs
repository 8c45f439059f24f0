//! Throughput of the Totem core over the in-memory ring (no sockets): how
//! many messages per second a ring of N cores totally orders and delivers
//! on every node. One element = one message delivered on all N nodes; all
//! N cores run on the one benchmark thread, so the figure is the cores'
//! combined cost, not a network's.

use bench::warm_ring;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use totem_ring::Guarantee;

const SIZES: [usize; 3] = [64, 1024, 64 * 1024];

/// Messages per measured iteration: enough token rotations to average over.
fn batch(size: usize) -> u64 {
    match size {
        s if s <= 64 => 10_000,
        s if s <= 1024 => 5_000,
        _ => 200,
    }
}

fn ring(c: &mut Criterion) {
    let mut group = c.benchmark_group("ring");
    group.sample_size(10);
    for nodes in [3usize, 5] {
        for size in SIZES {
            let batch = batch(size);
            group.throughput(Throughput::Elements(batch));
            let id = BenchmarkId::new(format!("{nodes}-nodes"), format!("{size}B"));
            let mut ring = warm_ring(nodes, size, batch);
            group.bench_function(id, |b| {
                b.iter(|| {
                    ring.round_robin(batch, size, Guarantee::Agreed)
                        .expect("delivers")
                })
            });
            assert!(ring.agree(), "nodes delivered different sequences");
        }
    }
    group.finish();
}

criterion_group!(benches, ring);
criterion_main!(benches);
