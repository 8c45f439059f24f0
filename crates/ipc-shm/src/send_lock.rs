//! The lock over a client's request-ring producer state.
//!
//! Any locked instruction on the send path (a mutex's acquire or release,
//! an atomic exchange) makes the sender wait until the previous frame's
//! stores have reached the daemon's cache: one cross-core round trip per
//! message, about half of a 64-byte send here. Most clients send from one
//! thread, so the lock is biased to the first thread that takes it: that
//! thread enters with plain stores and loads. The first time another thread
//! takes it, ownership is revoked for good and every thread, the first
//! included, goes through a mutex from then on.
//!
//! Owner and revoker meet in an asymmetric Dekker pattern: the owner stores
//! `owner_inside`, then (with only a compiler fence between) loads `owner`;
//! the revoker stores `owner`, then makes every CPU running a thread of this
//! process execute a full barrier (membarrier's `PRIVATE_EXPEDITED`), then
//! loads `owner_inside`. Either the owner sees the revocation or the revoker
//! sees the owner inside and waits for it to leave. Where the kernel refuses
//! the registration the lock starts revoked (a plain mutex).

use std::cell::UnsafeCell;
use std::sync::atomic::{compiler_fence, AtomicU32, AtomicUsize, Ordering};
use std::sync::Mutex;

use crate::sys;

/// `owner` before any thread took the lock.
const NO_OWNER: usize = 0;
/// `owner` once revoked: everyone takes the mutex.
const SHARED: usize = usize::MAX;

pub(crate) struct SendLock<T> {
    /// `NO_OWNER`, the owning thread's token, or `SHARED`.
    owner: AtomicUsize,
    /// 1 while the owner runs a critical section in its biased mode.
    owner_inside: AtomicU32,
    mutex: Mutex<()>,
    data: UnsafeCell<T>,
}

// SAFETY: `data` is only reached inside `with`, which gives one thread at a
// time a `&mut T`: the owner in biased mode (exclusive by the protocol above)
// or a holder of `mutex` once revoked; `T: Send` lets it move between them.
unsafe impl<T: Send> Sync for SendLock<T> {}

/// A number that tells the live threads apart: the address of a
/// thread-local (a new thread may reuse a dead one's, which is harmless:
/// the dead one is inside no critical section).
fn thread_token() -> usize {
    thread_local! {
        static TOKEN: u8 = const { 0 };
    }
    TOKEN.with(|t| t as *const u8 as usize)
}

/// Clears `owner_inside` when the owner's critical section ends, also by
/// unwinding.
struct Inside<'a>(&'a AtomicU32);

impl Drop for Inside<'_> {
    fn drop(&mut self) {
        // Release: a revoker that reads 0 sees what the section wrote.
        self.0.store(0, Ordering::Release);
    }
}

impl<T> SendLock<T> {
    /// `biased`: whether this process registered for membarrier's private
    /// expedited barrier (`sys::register_for_private_barrier`); without it
    /// the lock is a plain mutex.
    pub(crate) fn new(data: T, biased: bool) -> Self {
        SendLock {
            owner: AtomicUsize::new(if biased { NO_OWNER } else { SHARED }),
            owner_inside: AtomicU32::new(0),
            mutex: Mutex::new(()),
            data: UnsafeCell::new(data),
        }
    }

    /// Runs `f` with exclusive access to the data. `f` must not take this
    /// lock again (it would deadlock on the mutex, and alias in biased mode).
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let me = thread_token();
        let mut owner = self.owner.load(Ordering::Relaxed);
        if owner == NO_OWNER {
            owner = match self.owner.compare_exchange(
                NO_OWNER,
                me,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => me,
                Err(now) => now,
            };
        }
        if owner == me {
            debug_assert_eq!(self.owner_inside.load(Ordering::Relaxed), 0, "re-entered");
            self.owner_inside.store(1, Ordering::Relaxed);
            // The light half of the asymmetric fence: the revoker's
            // membarrier orders this store before the load below.
            compiler_fence(Ordering::SeqCst);
            if self.owner.load(Ordering::Relaxed) == me {
                let _inside = Inside(&self.owner_inside);
                // SAFETY: biased mode: we own the lock and no revocation has
                // been seen; a revoker waits until `_inside` is dropped.
                return f(unsafe { &mut *self.data.get() });
            }
            self.owner_inside.store(0, Ordering::Release);
        }
        let _held = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        if self.owner.load(Ordering::Relaxed) != SHARED {
            self.revoke();
        }
        // SAFETY: shared mode, and we hold the mutex; the owner, if any,
        // has left its last biased section (`revoke`).
        f(unsafe { &mut *self.data.get() })
    }

    /// Ends biased mode (called once, holding the mutex).
    fn revoke(&self) {
        self.owner.store(SHARED, Ordering::Relaxed);
        if let Err(e) = sys::private_barrier() {
            // Registered at connect, so the kernel does not refuse now;
            // should it, say so loudly.
            tracing::error!("ipc: membarrier(PRIVATE_EXPEDITED) failed: {e}");
            std::sync::atomic::fence(Ordering::SeqCst);
        }
        let mut spins = 0u32;
        while self.owner_inside.load(Ordering::Acquire) != 0 {
            spins += 1;
            if spins < 1000 {
                std::hint::spin_loop();
            } else {
                std::thread::yield_now();
            }
        }
    }

    /// Whether the lock is still biased to one thread (tests).
    #[cfg(test)]
    fn biased(&self) -> bool {
        self.owner.load(Ordering::Relaxed) != SHARED
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[test]
    fn one_thread_keeps_the_bias_and_a_second_revokes_it() {
        let lock = Arc::new(SendLock::new(0u64, sys::register_for_private_barrier()));
        if !lock.biased() {
            eprintln!("membarrier refused here: the lock is a plain mutex");
        }
        for _ in 0..1000 {
            lock.with(|n| *n += 1);
        }
        let was_biased = lock.biased();
        let other = Arc::clone(&lock);
        std::thread::spawn(move || other.with(|n| *n += 1))
            .join()
            .unwrap();
        assert!(!lock.biased(), "a second thread ends the bias");
        lock.with(|n| *n += 1);
        assert_eq!(lock.with(|n| *n), 1002);
        // One thread alone never revokes.
        assert_eq!(was_biased, sys::register_for_private_barrier());
    }

    /// Longer than a membarrier takes to return here (1–20 µs), so that
    /// a revoker finds the owner still inside and must wait for it.
    fn hold_for_a_while(v: &u64) {
        let start = std::time::Instant::now();
        while start.elapsed() < std::time::Duration::from_micros(40) {
            std::hint::black_box(v);
        }
    }

    /// Non-atomic read-modify-writes of a two-word value from several
    /// threads, the first of them the owner, revoked while it is busy: a
    /// lost update or a torn pair means two threads were inside at once.
    #[test]
    fn revoking_a_busy_owner_loses_no_update() {
        for round in 0..30 {
            let lock = Arc::new(SendLock::new(
                (0u64, 0u64),
                sys::register_for_private_barrier(),
            ));
            let per_thread = 300u64;
            let started = Arc::new(AtomicU32::new(0));
            let owner = {
                let lock = Arc::clone(&lock);
                let started = Arc::clone(&started);
                std::thread::spawn(move || {
                    for _ in 0..per_thread {
                        started.store(1, Ordering::Relaxed);
                        lock.with(|(a, b)| {
                            let v = *a;
                            hold_for_a_while(&v);
                            *a = v + 1;
                            *b = (*b).wrapping_add(v + 1);
                        });
                    }
                })
            };
            // Let the owner take the lock first in half the rounds.
            while started.load(Ordering::Relaxed) == 0 && round % 2 == 0 {
                std::hint::spin_loop();
            }
            let others: Vec<_> = (0..3)
                .map(|_| {
                    let lock = Arc::clone(&lock);
                    std::thread::spawn(move || {
                        for _ in 0..per_thread {
                            lock.with(|(a, b)| {
                                let v = *a;
                                hold_for_a_while(&v);
                                *a = v + 1;
                                *b = (*b).wrapping_add(v + 1);
                            });
                        }
                    })
                })
                .collect();
            owner.join().unwrap();
            for t in others {
                t.join().unwrap();
            }
            let n = 4 * per_thread;
            assert_eq!(lock.with(|&mut (a, b)| (a, b)), (n, n * (n + 1) / 2));
        }
    }
}
