//! The shared segment and its single-producer single-consumer byte rings.
//!
//! Layout of a session's memfd (only offsets cross the process boundary):
//!
//! ```text
//! 0      segment header: magic, version, init-complete, closed, total length,
//!        and per ring (request, response, event) its header and data offsets
//!        and its capacity
//! 128    ring header 0 (request)    tail | consumer-waiting  /  head | producer-waiting
//! 256    ring header 1 (response)   (each field pair on its own cache line)
//! 384    ring header 2 (event)
//! 4096   request data  (capacity: a power of two, >= 4 KiB)
//! ...    response data, then event data
//! ```
//!
//! A ring holds chunks aligned to 16 bytes: a 16-byte header (payload length
//! u32, service u16, kind u16, request id u64, little-endian) and the payload
//! padded to 16. A chunk never wraps: a writer that reaches the end of the
//! data area writes a pad marker (length `PAD`) and starts again at 0, so a
//! payload is always contiguous. `head` and `tail` are free-running byte
//! counters; the position is the counter modulo the capacity.
//!
//! Whoever consumes or produces keeps its own index privately and only
//! publishes it; the daemon never reads back an index it owns, and validates
//! every index and chunk header the client wrote (`check_used`,
//! `check_head`, `decode_chunk`) before touching the bytes they describe.

use std::sync::atomic::{compiler_fence, fence, AtomicU32, AtomicU64, Ordering};

pub const SEGMENT_MAGIC: u32 = 0x4353_5249; // "IRSC"
pub const SEGMENT_VERSION: u32 = 1;
/// Bytes before the first data area (segment header and ring headers).
pub const SEGMENT_HEADER_LEN: usize = 4096;
pub const RING_HEADER_OFFSET: usize = 128;
pub const RING_HEADER_LEN: usize = 128;
pub const CHUNK_ALIGN: u64 = 16;
pub const CHUNK_HEADER_LEN: u64 = 16;
/// Length value marking padding to the end of the data area.
pub const PAD: u32 = u32::MAX;
pub const MIN_RING: u32 = 4096;
pub const MAX_RING: u32 = 1 << 28;

/// Ring indices within a segment.
pub const REQUEST: usize = 0;
pub const RESPONSE: usize = 1;
pub const EVENT: usize = 2;

/// The largest payload a ring of `cap` bytes carries: half the ring, so a
/// frame always fits once the ring drains, wherever the indices stand.
pub const fn max_payload(cap: u32) -> u32 {
    cap / 2 - CHUNK_HEADER_LEN as u32
}

/// The header of one frame (opaque to this crate beyond these fields).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FrameHeader {
    /// Which service the frame is for (requests) or from (responses, events).
    pub service: u16,
    /// Message type within the service.
    pub kind: u16,
    /// Chosen by the client for a request; echoed by the response.
    pub request_id: u64,
}

/// Why the daemon stopped trusting a ring a client writes or reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RingViolation {
    /// The producer index is more than a ring ahead of the consumer's, or behind it.
    TailOutOfRange { used: u64 },
    /// An index is not a multiple of the chunk alignment.
    Misaligned,
    /// The consumer index moved backwards or past what was written.
    HeadOutOfRange,
    /// A pad marker where none can be (at offset 0, or past the tail).
    BadPad,
    /// A chunk length larger than the ring allows.
    LengthTooLarge { len: u32 },
    /// A chunk that would run past the end of the data area or the tail.
    ChunkPastEnd,
}

impl std::fmt::Display for RingViolation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            RingViolation::TailOutOfRange { used } => {
                write!(f, "producer index {used} bytes ahead (out of range)")
            }
            RingViolation::Misaligned => write!(f, "misaligned ring index"),
            RingViolation::HeadOutOfRange => write!(f, "consumer index out of range"),
            RingViolation::BadPad => write!(f, "pad marker out of place"),
            RingViolation::LengthTooLarge { len } => write!(f, "chunk length {len} too large"),
            RingViolation::ChunkPastEnd => write!(f, "chunk runs past the written bytes"),
        }
    }
}

/// A decoded chunk header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Chunk {
    /// Padding up to the end of the data area: `skip` bytes.
    Pad { skip: u64 },
    /// A frame whose payload of `len` bytes follows its header; the chunk
    /// occupies `total` bytes.
    Frame {
        header: FrameHeader,
        len: u32,
        total: u64,
    },
}

pub fn encode_chunk_header(len: u32, h: &FrameHeader) -> [u8; 16] {
    let mut b = [0u8; 16];
    b[0..4].copy_from_slice(&len.to_le_bytes());
    b[4..6].copy_from_slice(&h.service.to_le_bytes());
    b[6..8].copy_from_slice(&h.kind.to_le_bytes());
    b[8..16].copy_from_slice(&h.request_id.to_le_bytes());
    b
}

/// Bytes written but not yet consumed, validated: the producer's index can
/// be anything a hostile peer stored.
pub fn check_used(head: u64, tail: u64, cap: u64) -> Result<u64, RingViolation> {
    let used = tail.wrapping_sub(head);
    if used > cap {
        return Err(RingViolation::TailOutOfRange { used });
    }
    if !used.is_multiple_of(CHUNK_ALIGN) {
        return Err(RingViolation::Misaligned);
    }
    Ok(used)
}

/// Validates a consumer index read from shared memory against the last one
/// seen and the producer's own (private) tail: it may only move forward, by
/// whole chunks, up to the tail.
pub fn check_head(seen_head: u64, new_head: u64, tail: u64) -> Result<(), RingViolation> {
    let advanced = new_head.wrapping_sub(seen_head);
    let outstanding = tail.wrapping_sub(seen_head);
    if advanced > outstanding {
        return Err(RingViolation::HeadOutOfRange);
    }
    if !advanced.is_multiple_of(CHUNK_ALIGN) {
        return Err(RingViolation::Misaligned);
    }
    Ok(())
}

/// Decodes the chunk header found at `pos` (a multiple of 16 below `cap`)
/// with `used` bytes readable from there on; never trusts a field.
pub fn decode_chunk(
    raw: [u8; 16],
    pos: u64,
    used: u64,
    cap: u64,
    max_payload: u32,
) -> Result<Chunk, RingViolation> {
    debug_assert!(pos < cap && pos.is_multiple_of(CHUNK_ALIGN));
    let len = u32::from_le_bytes([raw[0], raw[1], raw[2], raw[3]]);
    let to_end = cap - pos;
    if len == PAD {
        if pos == 0 || to_end > used {
            return Err(RingViolation::BadPad);
        }
        return Ok(Chunk::Pad { skip: to_end });
    }
    if len > max_payload {
        return Err(RingViolation::LengthTooLarge { len });
    }
    let total = chunk_size(len);
    if total > to_end || total > used {
        return Err(RingViolation::ChunkPastEnd);
    }
    let header = FrameHeader {
        service: u16::from_le_bytes([raw[4], raw[5]]),
        kind: u16::from_le_bytes([raw[6], raw[7]]),
        request_id: u64::from_le_bytes(raw[8..16].try_into().expect("8 bytes")),
    };
    Ok(Chunk::Frame { header, len, total })
}

/// Space a frame of `len` payload bytes occupies in a ring.
pub const fn chunk_size(len: u32) -> u64 {
    CHUNK_HEADER_LEN + (len as u64).div_ceil(CHUNK_ALIGN) * CHUNK_ALIGN
}

/// One ring's control block in shared memory.
#[repr(C, align(64))]
pub(crate) struct RingHeader {
    /// Producer's free-running index (bytes written).
    pub tail: AtomicU64,
    /// Set by the consumer before it parks; the producer clears it and
    /// wakes the consumer.
    pub consumer_waiting: AtomicU32,
    _pad0: [u8; 52],
    /// Consumer's free-running index (bytes consumed).
    pub head: AtomicU64,
    /// Set by a producer that holds spilled frames; the consumer clears it
    /// and rings the producer's doorbell after freeing space.
    pub producer_waiting: AtomicU32,
    _pad1: [u8; 52],
}

const _: () = assert!(std::mem::size_of::<RingHeader>() == RING_HEADER_LEN);

#[repr(C)]
pub(crate) struct RingDesc {
    pub header_off: u64,
    pub data_off: u64,
    pub cap: u64,
}

#[repr(C)]
pub(crate) struct SegmentHeader {
    pub magic: u32,
    pub version: u32,
    pub init_complete: AtomicU32,
    /// Set by the daemon when it ends the session.
    pub closed: AtomicU32,
    pub total_len: u64,
    pub rings: [RingDesc; 3],
}

const _: () = assert!(std::mem::size_of::<SegmentHeader>() <= RING_HEADER_OFFSET);

/// Capacities of the three rings of a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RingSizes {
    pub request: u32,
    pub response: u32,
    pub event: u32,
}

impl RingSizes {
    pub fn as_array(&self) -> [u32; 3] {
        [self.request, self.response, self.event]
    }

    pub fn segment_len(&self) -> usize {
        SEGMENT_HEADER_LEN + self.as_array().iter().map(|&c| c as usize).sum::<usize>()
    }
}

/// Raw pointers to one ring inside a mapped segment.
#[derive(Clone, Copy)]
pub(crate) struct RingPtrs {
    pub hdr: *const RingHeader,
    pub data: *mut u8,
    pub cap: u64,
}

// SAFETY: the pointers refer to a shared mapping that the owner keeps alive;
// all access goes through atomics or explicit copies.
unsafe impl Send for RingPtrs {}
// SAFETY: as above.
unsafe impl Sync for RingPtrs {}

impl RingPtrs {
    pub(crate) fn hdr(&self) -> &RingHeader {
        // SAFETY: `hdr` points into a live mapping, 64-byte aligned (segment
        // offsets are multiples of 128 from a page-aligned base) and the
        // fields are atomics, so a shared reference is sound even while the
        // peer writes them.
        unsafe { &*self.hdr }
    }

    /// Reads the 16 bytes at `pos`. The peer may be writing them; we copy
    /// and validate the copy.
    pub(crate) fn read_raw(&self, pos: u64) -> [u8; 16] {
        debug_assert!(pos + 16 <= self.cap);
        // SAFETY: `pos + 16 <= cap` (pos is a multiple of 16 below cap), so
        // the pointer and the 16 bytes after it stay within the data area of
        // the live mapping.
        let p = unsafe { self.data.add(pos as usize) };
        if p.cast::<u64>().is_aligned() {
            // SAFETY: the 16 bytes are in bounds (above) and `p` is 8-byte
            // aligned (always so in a segment: data areas start on pages and
            // `pos` is a multiple of 16), so two word-sized volatile reads
            // cover them. A volatile read of plain data tolerates concurrent
            // modification (we only get garbage, which is validated).
            let (a, b) = unsafe {
                (
                    std::ptr::read_volatile(p.cast::<u64>()),
                    std::ptr::read_volatile(p.add(8).cast::<u64>()),
                )
            };
            let mut raw = [0u8; 16];
            raw[..8].copy_from_slice(&a.to_ne_bytes());
            raw[8..].copy_from_slice(&b.to_ne_bytes());
            return raw;
        }
        // SAFETY: as above; a byte array has no alignment requirement.
        unsafe { std::ptr::read_volatile(p.cast::<[u8; 16]>()) }
    }

    /// Copies `out.len()` bytes starting at `pos` (bounds validated by the caller).
    pub(crate) fn copy_out(&self, pos: u64, out: &mut [u8]) {
        assert!(pos + out.len() as u64 <= self.cap);
        // SAFETY: the range is within the data area (asserted); `out` is a
        // distinct private buffer. Concurrent writes by the peer can only
        // change the bytes we copy, never their bounds.
        unsafe {
            std::ptr::copy_nonoverlapping(self.data.add(pos as usize), out.as_mut_ptr(), out.len())
        };
    }

    /// Writes a frame whose payload is `parts` concatenated at the private
    /// `tail` if it fits given the consumer's `head`; returns whether it was
    /// written. Publishes nothing: the caller stores the new tail.
    #[inline(always)]
    pub(crate) fn write_frame(
        &self,
        tail: &mut u64,
        head: u64,
        header: &FrameHeader,
        parts: &[&[u8]],
    ) -> bool {
        let len = parts.iter().map(|p| p.len()).sum::<usize>() as u32;
        let need = chunk_size(len);
        let free = self.cap - tail.wrapping_sub(head);
        let pos = *tail & (self.cap - 1);
        let to_end = self.cap - pos;
        let pad = if need > to_end { to_end } else { 0 };
        if pad + need > free {
            return false;
        }
        if pad > 0 {
            let raw = encode_chunk_header(PAD, &FrameHeader::default());
            self.write_bytes(pos, &raw);
            *tail = tail.wrapping_add(pad);
        }
        let pos = *tail & (self.cap - 1);
        assert!(pos + need <= self.cap);
        self.write_chunk_header(pos, len, header);
        let mut at = pos + CHUNK_HEADER_LEN;
        for p in parts {
            self.write_bytes(at, p);
            at += p.len() as u64;
        }
        *tail = tail.wrapping_add(need);
        true
    }

    /// Writes a chunk header as two aligned words straight from registers
    /// (the layout of `encode_chunk_header`): bytes assembled on the stack
    /// and copied would be read back before their stores reach the cache,
    /// which x86 cannot forward, and that read waits for every older
    /// store, the previous frame's included.
    #[inline(always)]
    fn write_chunk_header(&self, pos: u64, len: u32, h: &FrameHeader) {
        assert!(pos + CHUNK_HEADER_LEN <= self.cap && pos.is_multiple_of(CHUNK_ALIGN));
        let w0 = u64::from(len) | u64::from(h.service) << 32 | u64::from(h.kind) << 48;
        // SAFETY: in bounds (asserted) and 16-aligned within the data area,
        // which starts page-aligned; the producer owns it until the tail is
        // published.
        unsafe {
            let at = self.data.add(pos as usize).cast::<u64>();
            at.write(w0.to_le());
            at.add(1).write(h.request_id.to_le());
        }
    }

    #[inline(always)]
    fn write_bytes(&self, pos: u64, bytes: &[u8]) {
        assert!(pos + bytes.len() as u64 <= self.cap);
        // SAFETY: the range is within the data area (asserted) and belongs to
        // the producer until the tail is published.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), self.data.add(pos as usize), bytes.len())
        };
    }

    /// Publishes the producer index and says whether the consumer asked to
    /// be woken (clearing the request: one wake-up per park).
    ///
    /// The index goes out with one sequentially consistent exchange rather
    /// than a store and a full fence (cheaper on x86: one locked operation);
    /// it pairs with the consumer's store, fence and load in `arm_consumer`,
    /// so a park and a publish cannot both miss each other.
    pub(crate) fn publish_tail(&self, tail: u64) -> bool {
        let h = self.hdr();
        h.tail.swap(tail, Ordering::SeqCst);
        h.consumer_waiting.load(Ordering::SeqCst) != 0
            && h.consumer_waiting.swap(0, Ordering::AcqRel) != 0
    }

    /// Like `publish_tail`, with plain instructions only: a store, a
    /// compiler fence and a load. Only for a producer whose process
    /// registered for the consumer's `membarrier` (`sys::global_barrier`),
    /// issued between the consumer's `request_wakeup` and its `has_data`:
    /// that barrier orders this store before this load wherever this thread
    /// runs, so again a park and a publish cannot both miss each other.
    #[inline(always)]
    pub(crate) fn publish_tail_light(&self, tail: u64) -> bool {
        let h = self.hdr();
        h.tail.store(tail, Ordering::Release);
        compiler_fence(Ordering::SeqCst);
        h.consumer_waiting.load(Ordering::Relaxed) != 0
            && h.consumer_waiting.swap(0, Ordering::AcqRel) != 0
    }

    /// Publishes the consumer index and says whether the producer holds
    /// spilled frames and asked to hear about freed space.
    pub(crate) fn publish_head(&self, head: u64) -> bool {
        let h = self.hdr();
        h.head.store(head, Ordering::Release);
        fence(Ordering::SeqCst);
        h.producer_waiting.load(Ordering::Relaxed) != 0
            && h.producer_waiting.swap(0, Ordering::AcqRel) != 0
    }

    /// Whether the producer holds spilled frames and waits for room (a
    /// plain load: the flag shares the consumer's own cache line).
    pub(crate) fn producer_waits(&self) -> bool {
        self.hdr().producer_waiting.load(Ordering::Relaxed) != 0
    }

    /// Whether the consumer's wake-up request is still pending (the
    /// producer has not taken it).
    pub(crate) fn consumer_armed(&self) -> bool {
        self.hdr().consumer_waiting.load(Ordering::Acquire) != 0
    }

    /// The first half of `arm_consumer` for a consumer that orders it
    /// against `has_data` with a `sys::global_barrier` (one for many rings).
    pub(crate) fn request_wakeup(&self) {
        self.hdr().consumer_waiting.store(1, Ordering::Relaxed);
    }

    /// Whether the producer published past `head`.
    pub(crate) fn has_data(&self, head: u64) -> bool {
        self.hdr().tail.load(Ordering::Acquire) != head
    }

    /// Asks the producer for a wake-up, then says whether data arrived
    /// meanwhile (in which case the caller must not park).
    pub(crate) fn arm_consumer(&self, head: u64) -> bool {
        let h = self.hdr();
        h.consumer_waiting.store(1, Ordering::SeqCst);
        fence(Ordering::SeqCst);
        h.tail.load(Ordering::SeqCst) != head
    }
}

/// Reads the next frame of a ring a peer writes into `scratch` (at least
/// `max_payload` bytes), validating the peer's index and chunk header first;
/// advances the private `head` (publishing it is the caller's business). At
/// most one pad is skipped per call.
///
/// `tail` caches the producer index last loaded and validated: the shared
/// one is read again only once `head` has caught up with it, so a reader
/// draining a backlog does not pull the producer's cache line per frame.
/// Every chunk header is still decoded and checked against the cached
/// (validated) tail before its bytes are touched.
#[inline]
pub(crate) fn consume_frame(
    ring: &RingPtrs,
    head: &mut u64,
    tail: &mut u64,
    max_payload: u32,
    scratch: &mut [u8],
) -> Result<Option<(FrameHeader, usize)>, RingViolation> {
    let cap = ring.cap;
    debug_assert!(cap.is_power_of_two());
    for _ in 0..2 {
        if *head == *tail {
            let t = ring.hdr().tail.load(Ordering::Acquire);
            check_used(*head, t, cap)?;
            *tail = t;
        }
        let used = check_used(*head, *tail, cap)?;
        if used == 0 {
            return Ok(None);
        }
        let pos = *head & (cap - 1);
        match decode_chunk(ring.read_raw(pos), pos, used, cap, max_payload)? {
            Chunk::Pad { skip } => *head = head.wrapping_add(skip),
            Chunk::Frame { header, len, total } => {
                let len = len as usize;
                ring.copy_out(pos + CHUNK_HEADER_LEN, &mut scratch[..len]);
                *head = head.wrapping_add(total);
                return Ok(Some((header, len)));
            }
        }
    }
    // The decoder rejects a pad at offset 0, so two in a row cannot happen.
    Err(RingViolation::BadPad)
}

/// Runs the daemon's request-ring reader over `data` (a ring of
/// `data.len()` bytes, a power of two >= 4096) whose producer index is
/// `tail`, starting at `head`, until it reports empty or a violation.
/// Returns the frames read. For the fuzz harness.
#[doc(hidden)]
pub fn fuzz_consume(data: &mut [u8], head: u64, tail: u64) -> Result<usize, RingViolation> {
    let cap = data.len();
    assert!(valid_cap(cap as u32));
    let hdr = RingHeader {
        tail: AtomicU64::new(tail),
        consumer_waiting: AtomicU32::new(0),
        _pad0: [0; 52],
        head: AtomicU64::new(head),
        producer_waiting: AtomicU32::new(0),
        _pad1: [0; 52],
    };
    let ring = RingPtrs {
        hdr: &hdr,
        data: data.as_mut_ptr(),
        cap: cap as u64,
    };
    let max = max_payload(cap as u32);
    let mut scratch = vec![0u8; max as usize];
    let mut head = head;
    let mut cached_tail = head;
    let mut n = 0;
    while let Some((_, len)) = consume_frame(&ring, &mut head, &mut cached_tail, max, &mut scratch)?
    {
        assert!(len <= max as usize);
        n += 1;
    }
    Ok(n)
}

/// Layout of a segment for the given capacities: per ring (header offset,
/// data offset).
pub(crate) fn layout(sizes: &RingSizes) -> [(u64, u64); 3] {
    let mut data = SEGMENT_HEADER_LEN as u64;
    let mut out = [(0u64, 0u64); 3];
    for (i, cap) in sizes.as_array().iter().enumerate() {
        out[i] = ((RING_HEADER_OFFSET + i * RING_HEADER_LEN) as u64, data);
        data += *cap as u64;
    }
    out
}

/// Fills in a fresh (zeroed) segment and marks it initialised.
///
/// # Safety
/// `base` must point at a writable mapping of at least `sizes.segment_len()`
/// bytes that nobody else accesses yet.
pub(crate) unsafe fn init_segment(base: *mut u8, sizes: &RingSizes) {
    let seg = base.cast::<SegmentHeader>();
    let lay = layout(sizes);
    // SAFETY: the caller guarantees the mapping is large enough and private
    // for now; the header fits in the first 128 bytes (asserted above).
    unsafe {
        (*seg).magic = SEGMENT_MAGIC;
        (*seg).version = SEGMENT_VERSION;
        (*seg).total_len = sizes.segment_len() as u64;
        for (i, cap) in sizes.as_array().iter().enumerate() {
            (*seg).rings[i] = RingDesc {
                header_off: lay[i].0,
                data_off: lay[i].1,
                cap: *cap as u64,
            };
        }
        (*seg).init_complete.store(1, Ordering::Release);
    }
}

/// Pointers to the three rings of a mapped segment whose layout was
/// validated (or created) by the caller.
///
/// # Safety
/// `base` must point at a live mapping of at least `sizes.segment_len()` bytes.
pub(crate) unsafe fn ring_ptrs(base: *mut u8, sizes: &RingSizes) -> [RingPtrs; 3] {
    let lay = layout(sizes);
    let caps = sizes.as_array();
    // SAFETY: offsets from `layout` are within the mapping the caller vouches for.
    std::array::from_fn(|i| unsafe {
        RingPtrs {
            hdr: base.add(lay[i].0 as usize).cast::<RingHeader>(),
            data: base.add(lay[i].1 as usize),
            cap: caps[i] as u64,
        }
    })
}

/// Checks a segment header read from a mapping of `map_len` bytes against
/// the capacities the handshake announced (client side: the daemon is
/// trusted, but a mismatch must be an error, not a wild pointer).
///
/// # Safety
/// `base` must point at a live mapping of at least `map_len` bytes, and
/// `map_len >= SEGMENT_HEADER_LEN`.
pub(crate) unsafe fn validate_segment(
    base: *const u8,
    map_len: usize,
    sizes: &RingSizes,
) -> Result<(), &'static str> {
    assert!(map_len >= SEGMENT_HEADER_LEN);
    let seg = base.cast::<SegmentHeader>();
    // SAFETY: the header lies within the first page of the live mapping.
    let (magic, version, init, total) = unsafe {
        (
            std::ptr::read_volatile(&(*seg).magic),
            std::ptr::read_volatile(&(*seg).version),
            (*seg).init_complete.load(Ordering::Acquire),
            std::ptr::read_volatile(&(*seg).total_len),
        )
    };
    if magic != SEGMENT_MAGIC {
        return Err("bad segment magic");
    }
    if version != SEGMENT_VERSION {
        return Err("unsupported segment version");
    }
    if init != 1 {
        return Err("segment not initialised");
    }
    if total != sizes.segment_len() as u64 || total as usize > map_len {
        return Err("segment length mismatch");
    }
    let lay = layout(sizes);
    for (i, cap) in sizes.as_array().iter().enumerate() {
        // SAFETY: as above.
        let d = unsafe { std::ptr::read_volatile(&(*seg).rings[i]) };
        if d.header_off != lay[i].0 || d.data_off != lay[i].1 || d.cap != *cap as u64 {
            return Err("ring layout mismatch");
        }
    }
    Ok(())
}

/// # Safety
/// `base` must point at a live mapping holding a segment header.
pub(crate) unsafe fn segment_closed(base: *mut u8) -> *const AtomicU32 {
    // SAFETY: the header is at offset 0 of the live mapping; only the
    // field's address is computed here.
    unsafe { std::ptr::addr_of!((*base.cast::<SegmentHeader>()).closed) }
}

/// Whether a capacity is acceptable for a ring.
pub fn valid_cap(cap: u32) -> bool {
    cap.is_power_of_two() && (MIN_RING..=MAX_RING).contains(&cap)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_header_round_trip() {
        let h = FrameHeader {
            service: 3,
            kind: 9,
            request_id: 0x0102_0304_0506_0708,
        };
        let raw = encode_chunk_header(20, &h);
        let c = decode_chunk(raw, 16, 64, 4096, max_payload(4096)).unwrap();
        assert_eq!(
            c,
            Chunk::Frame {
                header: h,
                len: 20,
                total: 48
            }
        );
    }

    #[test]
    fn decoder_rejects_hostile_fields() {
        let h = FrameHeader::default();
        let too_big = encode_chunk_header(4096, &h);
        assert!(matches!(
            decode_chunk(too_big, 0, 4096, 4096, max_payload(4096)),
            Err(RingViolation::LengthTooLarge { .. })
        ));
        let past_tail = encode_chunk_header(100, &h);
        assert_eq!(
            decode_chunk(past_tail, 0, 32, 4096, max_payload(4096)),
            Err(RingViolation::ChunkPastEnd)
        );
        let pad = encode_chunk_header(PAD, &h);
        assert_eq!(
            decode_chunk(pad, 0, 4096, 4096, 2032),
            Err(RingViolation::BadPad)
        );
        assert_eq!(
            decode_chunk(pad, 4080, 16, 4096, 2032),
            Ok(Chunk::Pad { skip: 16 })
        );
        assert!(check_used(0, 4097, 4096).is_err());
        assert!(check_used(10, 2, 4096).is_err());
        assert!(check_used(0, 8, 4096).is_err());
        assert!(check_head(16, 8, 64).is_err());
        assert!(check_head(16, 96, 64).is_err());
        assert!(check_head(16, 64, 64).is_ok());
    }

    #[test]
    fn sizes_and_layout() {
        assert_eq!(chunk_size(0), 16);
        assert_eq!(chunk_size(1), 32);
        assert_eq!(chunk_size(16), 32);
        let s = RingSizes {
            request: 4096,
            response: 8192,
            event: 4096,
        };
        let l = layout(&s);
        assert_eq!(l[0], (128, 4096));
        assert_eq!(l[1], (256, 8192));
        assert_eq!(l[2], (384, 16384));
        assert_eq!(s.segment_len(), 4096 + 16384);
    }

    /// What a client checks in the segment a daemon hands it: every field
    /// of the header, each change alone refused with its reason.
    #[test]
    fn a_segment_header_that_is_not_ours_is_refused() {
        let s = RingSizes {
            request: 4096,
            response: 4096,
            event: 4096,
        };
        let len = s.segment_len();
        // u64 words: the header's fields are at most 8-byte aligned.
        let fresh = || {
            let mut mem = vec![0u64; len / 8];
            // SAFETY: `mem` is `len` bytes, private to this test.
            unsafe { init_segment(mem.as_mut_ptr().cast(), &s) };
            mem
        };
        let check = |mem: &[u64], map_len: usize| {
            // SAFETY: `mem` holds `len` >= `map_len` bytes.
            unsafe { validate_segment(mem.as_ptr().cast(), map_len, &s) }
        };
        assert_eq!(check(&fresh(), len), Ok(()));
        type Edit = fn(&mut SegmentHeader);
        let cases: [(Edit, &str); 6] = [
            (|h| h.magic ^= 1, "bad segment magic"),
            (|h| h.version += 1, "unsupported segment version"),
            (
                |h| h.init_complete.store(0, Ordering::Relaxed),
                "segment not initialised",
            ),
            (|h| h.total_len += 4096, "segment length mismatch"),
            (|h| h.rings[1].cap *= 2, "ring layout mismatch"),
            (|h| h.rings[2].data_off += 64, "ring layout mismatch"),
        ];
        for (edit, why) in cases {
            let mut mem = fresh();
            // SAFETY: the header is at the start of the segment, which is
            // aligned for it (a u64 buffer) and not otherwise borrowed.
            edit(unsafe { &mut *mem.as_mut_ptr().cast::<SegmentHeader>() });
            assert_eq!(check(&mem, len), Err(why));
        }
        // A mapping shorter than the length the header claims.
        assert_eq!(check(&fresh(), len - 4096), Err("segment length mismatch"));
    }
}
