//! The hot path does not allocate: after a warm-up, a 3-node in-memory ring
//! delivers 100,000 messages with (almost) no heap allocation in the cores or
//! the driver.
//!
//! Allocations are counted per thread, so tests running beside each other in
//! this binary (and the harness's own threads) don't disturb the count.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

use tests::mem_ring::MemRing;
use totem_ring::Guarantee;

struct CountingAlloc;

thread_local! {
    // Const-initialised and without a destructor, so reading it from inside
    // the allocator never allocates or registers anything.
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

fn count_one() {
    // `try_with` fails only during thread teardown; such allocations don't matter here.
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: every method forwards to `System` unchanged; the counter is a
// thread-local `Cell` that neither allocates nor panics.
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_one();
        // SAFETY: same contract as ours, passed through.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as ours, passed through.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: CountingAlloc = CountingAlloc;

fn allocations() -> u64 {
    ALLOCATIONS.with(Cell::get)
}

const NODES: usize = 3;
const WARM_MESSAGES: u64 = 20_000;
const MEASURED_MESSAGES: u64 = 100_000;
/// "Close to nothing": a handful of late, one-off growths are tolerated,
/// one allocation per message (or per frame) is not.
const MAX_ALLOCATIONS: u64 = 100;

fn steady_state_allocations(size: usize) -> u64 {
    let mut ring = MemRing::new(NODES, MemRing::fast_config()).expect("config");
    ring.form().expect("ring forms");
    ring.round_robin(WARM_MESSAGES, size, Guarantee::Agreed)
        .expect("warm-up");

    // The instrument itself: a fresh allocation on this thread is counted.
    let probe = allocations();
    drop(std::hint::black_box(Vec::<u8>::with_capacity(64)));
    assert_eq!(
        allocations(),
        probe + 1,
        "the counting allocator does not count"
    );

    let before = allocations();
    ring.round_robin(MEASURED_MESSAGES, size, Guarantee::Agreed)
        .expect("measured run");
    let count = allocations() - before;

    assert!(ring.agree(), "nodes delivered different sequences");
    for id in 1..=NODES as u32 {
        assert!(ring.delivered(id) >= WARM_MESSAGES + MEASURED_MESSAGES);
    }
    println!(
        "allocations while delivering {MEASURED_MESSAGES} messages of {size} B on {NODES} nodes: {count}"
    );
    count
}

#[test]
fn no_allocation_per_message_64b() {
    let count = steady_state_allocations(64);
    assert!(
        count <= MAX_ALLOCATIONS,
        "{count} allocations for {MEASURED_MESSAGES} messages of 64 B"
    );
}

#[test]
fn no_allocation_per_message_1kib() {
    let count = steady_state_allocations(1024);
    assert!(
        count <= MAX_ALLOCATIONS,
        "{count} allocations for {MEASURED_MESSAGES} messages of 1 KiB"
    );
}
