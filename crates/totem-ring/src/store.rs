//! The receive/retransmit store of one ring: a fixed ring of slots indexed
//! by sequence number, sized at start-up. Released frames give their buffer
//! back to a pool that later frames reuse, so a warm store does not allocate.

use crate::seq;

struct Slot {
    seq: u32,
    present: bool,
    /// Token visits this seq has been seen missing (for miss_count_const).
    misses: u32,
    frame: Vec<u8>,
}

pub(crate) enum Insert {
    New,
    Duplicate,
    /// Outside the window (base, base + capacity]: too old or too far ahead.
    OutOfWindow,
}

/// Buffers kept for reuse beyond those in use; enough for a window's worth
/// of frames in flight.
const POOL_KEEP: usize = 2048;

pub(crate) struct Store {
    slots: Vec<Slot>,
    pool: Vec<Vec<u8>>,
    mask: u32,
    /// Every seq ≤ base is released (or was never part of the ring).
    base: u32,
    len: u32,
}

impl Store {
    pub fn new(capacity: u32, base: u32) -> Store {
        assert!(
            capacity.is_power_of_two(),
            "store capacity must be a power of two"
        );
        let slots = (0..capacity)
            .map(|_| Slot {
                seq: 0,
                present: false,
                misses: 0,
                frame: Vec::new(),
            })
            .collect();
        Store {
            slots,
            pool: Vec::new(),
            mask: capacity - 1,
            base,
            len: 0,
        }
    }

    pub fn capacity(&self) -> u32 {
        self.mask + 1
    }

    pub fn len(&self) -> u32 {
        self.len
    }

    /// Empties the store for a new ring whose first frame is `base + 1`.
    pub fn reset(&mut self, base: u32) {
        for s in &mut self.slots {
            s.present = false;
            s.misses = 0;
            if s.frame.capacity() > 0 && self.pool.len() < POOL_KEEP {
                self.pool.push(std::mem::take(&mut s.frame));
            } else {
                s.frame = Vec::new();
            }
        }
        self.base = base;
        self.len = 0;
    }

    pub fn in_window(&self, seq: u32) -> bool {
        seq::gt(seq, self.base) && seq::dist(self.base, seq) <= self.capacity()
    }

    /// Whether `seq` lies past the window's far end (`base + capacity`).
    pub fn beyond_window(&self, seq: u32) -> bool {
        seq::gt(seq, self.base.wrapping_add(self.capacity()))
    }

    fn slot(&self, seq: u32) -> &Slot {
        &self.slots[(seq & self.mask) as usize]
    }

    fn slot_mut(&mut self, seq: u32) -> &mut Slot {
        &mut self.slots[(seq & self.mask) as usize]
    }

    pub fn has(&self, seq: u32) -> bool {
        self.in_window(seq) && {
            let s = self.slot(seq);
            s.present && s.seq == seq
        }
    }

    pub fn get(&self, seq: u32) -> Option<&[u8]> {
        self.has(seq).then(|| self.slot(seq).frame.as_slice())
    }

    pub fn insert(&mut self, seq: u32, frame: &[u8]) -> Insert {
        if !self.in_window(seq) {
            return Insert::OutOfWindow;
        }
        if self.has(seq) {
            return Insert::Duplicate;
        }
        let i = (seq & self.mask) as usize;
        if self.slots[i].frame.capacity() == 0 {
            if let Some(b) = self.pool.pop() {
                self.slots[i].frame = b;
            }
        }
        let s = &mut self.slots[i];
        s.seq = seq;
        s.present = true;
        s.misses = 0;
        s.frame.clear();
        s.frame.extend_from_slice(frame);
        self.len += 1;
        Insert::New
    }

    /// Counts one more sighting of `seq` as missing and returns the count.
    pub fn bump_miss(&mut self, seq: u32) -> u32 {
        if !self.in_window(seq) || self.has(seq) {
            return 0;
        }
        let s = self.slot_mut(seq);
        if s.seq != seq {
            s.seq = seq;
            s.misses = 0;
        }
        s.misses += 1;
        s.misses
    }

    /// Releases every frame with seq ≤ `upto`.
    pub fn release_upto(&mut self, upto: u32) {
        let mut n = 0u32;
        while seq::lt(self.base, upto) && n <= self.mask {
            let next = self.base.wrapping_add(1);
            let i = (next & self.mask) as usize;
            let s = &mut self.slots[i];
            let was = s.present && s.seq == next;
            s.present = false;
            s.misses = 0;
            if was {
                self.len -= 1;
                if self.pool.len() < POOL_KEEP {
                    let b = std::mem::take(&mut s.frame);
                    self.pool.push(b);
                }
            }
            self.base = next;
            n += 1;
        }
        if seq::lt(self.base, upto) {
            // Jumped more than a whole window: nothing left inside it.
            self.base = upto;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_and_wrap() {
        let mut s = Store::new(8, 0xffff_fffd);
        assert!(matches!(s.insert(0xffff_fffe, b"a"), Insert::New));
        assert!(matches!(s.insert(0xffff_fffe, b"a"), Insert::Duplicate));
        assert!(matches!(s.insert(2, b"b"), Insert::New));
        assert!(matches!(s.insert(0xffff_fffd, b"x"), Insert::OutOfWindow));
        assert!(matches!(s.insert(6, b"x"), Insert::OutOfWindow));
        assert_eq!(s.get(2), Some(&b"b"[..]));
        assert_eq!(s.len(), 2);
        assert_eq!(s.bump_miss(0xffff_ffff), 1);
        assert_eq!(s.bump_miss(0xffff_ffff), 2);
        s.release_upto(0);
        assert_eq!(s.len(), 1);
        assert!(!s.has(0xffff_fffe));
        assert!(s.has(2));
        assert!(matches!(s.insert(6, b"x"), Insert::New));
    }
}
