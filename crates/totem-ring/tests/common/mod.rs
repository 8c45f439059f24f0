//! What the fuzz harnesses of this crate share: a seeded input generator
//! and the long mode's split of `FUZZ_CASES` across the available cores.

use rand::{RngCore, SeedableRng};

/// A seeded generator for the input stream (determinism is what matters).
pub struct Gen(rand_chacha::ChaCha8Rng);

impl Gen {
    pub fn new(seed: u64) -> Gen {
        Gen(rand_chacha::ChaCha8Rng::seed_from_u64(seed))
    }
    pub fn next(&mut self) -> u64 {
        self.0.next_u64()
    }
    pub fn below(&mut self, n: u64) -> u64 {
        self.next() % n.max(1)
    }
}

/// Long mode: `FUZZ_CASES` (default 10,000,000) cases split across the
/// available cores; `work(thread, cases)` runs one thread's share. Returns
/// the cases run.
pub fn long_mode(work: impl Fn(u64, u64) + Sync) -> u64 {
    let cases: u64 = std::env::var("FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(10_000_000);
    let threads = std::thread::available_parallelism()
        .map(|n| n.get() as u64)
        .unwrap_or(1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let work = &work;
            s.spawn(move || work(t, cases / threads + u64::from(t < cases % threads)));
        }
    });
    cases
}
