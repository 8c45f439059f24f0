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
//!
//! Like the mutex it replaces, it must not be taken from a signal handler
//! (in biased mode that would alias the data rather than deadlock), and a
//! child forked while another thread is inside inherits a lock it cannot
//! take.

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

// SAFETY: `data` is only reached through a `SendGuard` (`lock`, `with`),
// which one thread at a time holds: the owner in biased mode (exclusive by
// the protocol above) or a holder of `mutex` once revoked; `T: Send` lets
// the data move between them.
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

/// Exclusive access to a [`SendLock`]'s data (neither `Send` nor `Sync`:
/// it stays with the thread that entered).
pub(crate) struct SendGuard<'a, T> {
    lock: &'a SendLock<T>,
    /// Dropped after the last use of `lock`'s data through this guard.
    _entered: Entered<'a>,
    _this_thread: std::marker::PhantomData<*const ()>,
}

impl<T> std::ops::Deref for SendGuard<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        // SAFETY: the guard's `Entered` makes this thread the only one
        // inside (see `SendLock::enter`) for the guard's lifetime.
        unsafe { &*self.lock.data.get() }
    }
}

impl<T> std::ops::DerefMut for SendGuard<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        // SAFETY: as for `deref`; `&mut self` makes this borrow unique.
        unsafe { &mut *self.lock.data.get() }
    }
}

/// Who is inside: the owner in biased mode, or a holder of the mutex
/// (each held for what its drop does).
#[allow(dead_code)]
enum Entered<'a> {
    Owner(Inside<'a>),
    Shared(std::sync::MutexGuard<'a, ()>),
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

    /// Exclusive access to the data until the guard is dropped. The
    /// holder must not take this lock again (it would deadlock on the
    /// mutex, and alias in biased mode).
    #[inline(always)]
    pub(crate) fn lock(&self) -> SendGuard<'_, T> {
        SendGuard {
            _entered: self.enter(),
            lock: self,
            _this_thread: std::marker::PhantomData,
        }
    }

    /// Runs `f` with exclusive access to the data.
    #[inline(always)]
    pub(crate) fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        f(&mut self.lock())
    }

    /// Enters the critical section: in biased mode as its owner when this
    /// thread owns the lock and has not seen it revoked (a revoker waits
    /// until the returned guard is dropped), otherwise holding the mutex
    /// with the bias revoked (the owner, if any, has left its last biased
    /// section).
    #[inline(always)]
    fn enter(&self) -> Entered<'_> {
        let me = thread_token();
        let owner = self.owner.load(Ordering::Relaxed);
        if owner == me {
            debug_assert_eq!(self.owner_inside.load(Ordering::Relaxed), 0, "re-entered");
            self.owner_inside.store(1, Ordering::Relaxed);
            // The light half of the asymmetric fence: the revoker's
            // membarrier orders this store before the load below.
            compiler_fence(Ordering::SeqCst);
            if self.owner.load(Ordering::Relaxed) == me {
                return Entered::Owner(Inside(&self.owner_inside));
            }
            self.owner_inside.store(0, Ordering::Release);
        }
        self.enter_slow(me)
    }

    #[cold]
    fn enter_slow(&self, me: usize) -> Entered<'_> {
        if self.owner.load(Ordering::Relaxed) == NO_OWNER
            && self
                .owner
                .compare_exchange(NO_OWNER, me, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        {
            return self.enter();
        }
        let held = self.mutex.lock().unwrap_or_else(|p| p.into_inner());
        if self.owner.load(Ordering::Relaxed) != SHARED {
            self.revoke();
        }
        Entered::Shared(held)
    }

    /// Ends biased mode (called once, holding the mutex).
    fn revoke(&self) {
        self.owner.store(SHARED, Ordering::Relaxed);
        // Without the barrier the owner could still be inside unseen: a
        // refusal (ENOMEM) is retried until the kernel has the memory.
        let mut failures = 0u64;
        while let Err(e) = sys::private_barrier() {
            failures += 1;
            if failures.is_power_of_two() {
                tracing::error!(
                    failures,
                    "ipc: membarrier(PRIVATE_EXPEDITED) failed: {e}; retrying"
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
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
