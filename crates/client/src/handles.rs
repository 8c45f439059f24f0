//! Opaque `u64` handles for the C ABI.
//!
//! A handle packs a table tag (16 bits), a slot generation (24 bits) and a
//! slot index plus one (24 bits). A stale handle (its slot reused or
//! freed), a handle of another table, zero, or any garbage value resolves
//! to nothing, so the C functions answer `CS_ERR_BAD_HANDLE` instead of
//! touching freed memory. Lookups hand out an `Arc`, so a handle removed by
//! one thread stays valid for a call already running in another.
//!
//! The mutex and the `Arc` cost four locked instructions a call (8% of a
//! one-node `cpgbench` streaming 64-byte messages in `perf`). Tried and
//! measured slower (2026-11-28, `scripts/libcpg-ab`): the table under the
//! request ring's biased lock, with a pin count per slot instead of the
//! `Arc` (plain loads and stores for a single-threaded caller): 0.75× the
//! messages a second, 0.95× once the lock found its thread without a
//! `__tls_get_addr` call (a cdylib's thread-locals go through it) and the
//! unpin was inlined. The extra plain stores wait in the same store buffer
//! as the ring's.

use std::sync::{Arc, Mutex, MutexGuard};

use services::proto::CsError;

const INDEX_BITS: u32 = 24;
const GEN_BITS: u32 = 24;
const INDEX_MASK: u64 = (1 << INDEX_BITS) - 1;
const GEN_MASK: u64 = (1 << GEN_BITS) - 1;

/// Handles one table holds at most (`CS_ERR_NO_RESOURCES` past that).
pub(crate) const MAX_HANDLES: usize = 1 << 16;

struct Slot<T> {
    generation: u32,
    value: Option<Arc<T>>,
}

struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
}

pub(crate) struct HandleTable<T> {
    tag: u16,
    inner: Mutex<Slots<T>>,
}

impl<T> HandleTable<T> {
    pub(crate) const fn new(tag: u16) -> Self {
        HandleTable {
            tag,
            inner: Mutex::new(Slots {
                slots: Vec::new(),
                free: Vec::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Slots<T>> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn encode(&self, index: u32, generation: u32) -> u64 {
        (u64::from(self.tag) << (INDEX_BITS + GEN_BITS))
            | ((u64::from(generation) & GEN_MASK) << INDEX_BITS)
            | (u64::from(index) + 1)
    }

    /// The slot index of a handle of this table, if it is one at all.
    fn decode(&self, handle: u64) -> Option<(usize, u32)> {
        if (handle >> (INDEX_BITS + GEN_BITS)) != u64::from(self.tag) {
            return None;
        }
        let index = (handle & INDEX_MASK).checked_sub(1)?;
        let generation = ((handle >> INDEX_BITS) & GEN_MASK) as u32;
        Some((index as usize, generation))
    }

    pub(crate) fn insert(&self, value: T) -> Result<u64, CsError> {
        let mut t = self.lock();
        let index = match t.free.pop() {
            Some(i) => i,
            None => {
                if t.slots.len() >= MAX_HANDLES {
                    return Err(CsError::NoResources);
                }
                t.slots.push(Slot {
                    generation: 1,
                    value: None,
                });
                (t.slots.len() - 1) as u32
            }
        };
        let slot = &mut t.slots[index as usize];
        debug_assert!(slot.value.is_none());
        slot.value = Some(Arc::new(value));
        let generation = slot.generation;
        Ok(self.encode(index, generation))
    }

    pub(crate) fn get(&self, handle: u64) -> Result<Arc<T>, CsError> {
        let (index, generation) = self.decode(handle).ok_or(CsError::BadHandle)?;
        let t = self.lock();
        match t.slots.get(index) {
            Some(Slot {
                generation: g,
                value: Some(v),
            }) if *g == generation => Ok(Arc::clone(v)),
            _ => Err(CsError::BadHandle),
        }
    }

    /// Removes a handle; its slot's generation moves on so the old value
    /// never resolves again.
    pub(crate) fn remove(&self, handle: u64) -> Result<Arc<T>, CsError> {
        let (index, generation) = self.decode(handle).ok_or(CsError::BadHandle)?;
        let mut t = self.lock();
        let slot = t.slots.get_mut(index).ok_or(CsError::BadHandle)?;
        if slot.generation != generation || slot.value.is_none() {
            return Err(CsError::BadHandle);
        }
        let v = slot.value.take().expect("checked");
        slot.generation = (slot.generation + 1) & GEN_MASK as u32;
        if slot.generation == 0 {
            slot.generation = 1;
        }
        t.free.push(index as u32);
        Ok(v)
    }

    /// Removes every handle whose value matches `pred`.
    pub(crate) fn remove_where(&self, pred: impl Fn(&T) -> bool) {
        let handles: Vec<u64> = {
            let t = self.lock();
            t.slots
                .iter()
                .enumerate()
                .filter(|(_, s)| s.value.as_deref().is_some_and(&pred))
                .map(|(i, s)| self.encode(i as u32, s.generation))
                .collect()
        };
        for h in handles {
            let _ = self.remove(h);
        }
    }

    #[cfg(test)]
    fn len(&self) -> usize {
        self.lock()
            .slots
            .iter()
            .filter(|s| s.value.is_some())
            .count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_garbage_handles_are_bad() {
        let t = HandleTable::new(0xC9A0);
        let a = t.insert(1u32).unwrap();
        assert_eq!(*t.get(a).unwrap(), 1);
        assert_eq!(t.get(0).err(), Some(CsError::BadHandle));
        assert_eq!(t.get(a ^ 1).err(), Some(CsError::BadHandle));
        assert_eq!(t.get(u64::MAX).err(), Some(CsError::BadHandle));
        assert_eq!(t.get(0xdead_beef).err(), Some(CsError::BadHandle));
        assert_eq!(*t.remove(a).unwrap(), 1);
        assert_eq!(t.get(a).err(), Some(CsError::BadHandle));
        assert_eq!(t.remove(a).err(), Some(CsError::BadHandle));
        // The slot is reused under a new generation: the old handle stays dead.
        let b = t.insert(2u32).unwrap();
        assert_ne!(a, b);
        assert_eq!(a & INDEX_MASK, b & INDEX_MASK);
        assert_eq!(t.get(a).err(), Some(CsError::BadHandle));
        assert_eq!(*t.get(b).unwrap(), 2);
    }

    #[test]
    fn tables_do_not_accept_each_others_handles() {
        let cpg = HandleTable::new(1);
        let evs = HandleTable::new(2);
        let h = cpg.insert(()).unwrap();
        assert!(evs.get(h).is_err());
        evs.insert(()).unwrap();
        assert!(evs.get(h).is_err());
    }

    #[test]
    fn removed_value_outlives_its_handle_while_in_use() {
        let t = HandleTable::new(3);
        let h = t.insert(String::from("x")).unwrap();
        let held = t.get(h).unwrap();
        t.remove(h).unwrap();
        assert_eq!(held.as_str(), "x");
    }

    #[test]
    fn remove_where_and_bound() {
        let t = HandleTable::new(4);
        let hs: Vec<u64> = (0..10u32).map(|i| t.insert(i).unwrap()).collect();
        t.remove_where(|v| v % 2 == 0);
        assert_eq!(t.len(), 5);
        assert!(t.get(hs[0]).is_err());
        assert!(t.get(hs[1]).is_ok());
        let big = HandleTable::new(5);
        for _ in 0..MAX_HANDLES {
            big.insert(()).unwrap();
        }
        assert_eq!(big.insert(()).err(), Some(CsError::NoResources));
    }

    #[test]
    fn concurrent_use() {
        let t = Arc::new(HandleTable::new(6));
        let threads: Vec<_> = (0..4)
            .map(|k| {
                let t = Arc::clone(&t);
                std::thread::spawn(move || {
                    for i in 0..1000u32 {
                        let h = t.insert(i + k).unwrap();
                        assert_eq!(*t.get(h).unwrap(), i + k);
                        t.remove(h).unwrap();
                        assert!(t.get(h).is_err());
                    }
                })
            })
            .collect();
        for th in threads {
            th.join().unwrap();
        }
        assert_eq!(t.len(), 0);
    }
}
