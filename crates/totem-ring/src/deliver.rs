//! Ordered delivery: the regular configuration's gap-free prefix, the end
//! of an old ring at installation, and reassembly of fragmented messages.

use std::collections::VecDeque;

use crate::srp::Recovery;
use crate::srp::{Pending, RingState, SenderState, Stats};
use crate::store::Store;
use crate::wire::{self, FragKind};
use crate::{seq, Guarantee, RingId, Totem};

/// Where one piece of a delivered message lies: `len` bytes at `off` in
/// the current ring's stored frame `seq`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct FragRef {
    pub seq: u32,
    pub off: u32,
    pub len: u32,
}

impl FragRef {
    /// The bytes, from the store that holds the frame. Frames that queued
    /// deliveries or unfinished reassemblies point at are pinned (the store
    /// releases nothing from the lowest of them on) and the references are
    /// copied out before a store is reset or moved (`Totem::settle_refs`),
    /// so the frame is there: a miss is a bug in that bookkeeping, and the
    /// node stops rather than deliver something else.
    pub(crate) fn resolve<'s>(&self, store: &'s Store) -> &'s [u8] {
        let frame = store
            .get(self.seq)
            .expect("a frame a queued delivery points at is pinned in the store");
        &frame[self.off as usize..(self.off + self.len) as usize]
    }
}

/// A message delivered in the pieces it travelled in (`Event::DeliverParts`,
/// with `Config::deliver_parts_from`): its bytes are the pieces in order, read
/// where they lie in the retransmit store, with no copy made.
#[derive(Clone, Copy)]
pub struct Parts<'a> {
    pub(crate) store: &'a Store,
    pub(crate) refs: &'a [FragRef],
    pub(crate) len: usize,
}

impl<'a> Parts<'a> {
    /// The message's length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The pieces, in order.
    pub fn iter(&self) -> impl Iterator<Item = &'a [u8]> + 'a {
        let store = self.store;
        self.refs.iter().map(move |r| r.resolve(store))
    }

    /// The message as one buffer (a copy).
    pub fn to_vec(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(self.len);
        for p in self.iter() {
            v.extend_from_slice(p);
        }
        v
    }
}

impl std::fmt::Debug for Parts<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("len", &self.len)
            .field("pieces", &self.refs.len())
            .finish()
    }
}

/// How a frame is being delivered.
#[derive(Clone, Copy)]
enum Mode {
    /// In a regular configuration: safe frames wait for `safe_line`.
    Regular {
        safe_line: u32,
        safe_too_early: bool,
    },
    /// In a transitional configuration: a frame is delivered only if its
    /// origin's earlier frames were, and everything the origin had
    /// delivered when sending it lies before `first_gap`.
    Transitional { first_gap: u32 },
}

enum Outcome {
    Delivered,
    /// A safe frame not yet known to be everywhere.
    Blocked,
    Discarded,
}

struct Outbox<'a> {
    arena: &'a mut Vec<u8>,
    events: &'a mut VecDeque<Pending>,
    stats: &'a mut Stats,
    /// Set for the current ring's regular delivery with
    /// `Config::deliver_parts_from`: fragmented messages are reassembled
    /// and delivered where they lie.
    refs: Option<Refs<'a>>,
}

/// Delivery by reference into the current ring's store.
struct Refs<'a> {
    store: &'a Store,
    /// `Totem::frag_refs`: the pieces of the queued deliveries.
    list: &'a mut Vec<FragRef>,
    /// `Totem::refs_pin`: the lowest frame seq they point at.
    pin: &'a mut Option<u32>,
    /// A reassembly by reference whose pieces spread over more seqs than
    /// this goes on as a copy, so that no pin holds the store's window
    /// (which bounds the frames it accepts) for long.
    max_span: u32,
    /// Smaller messages are copied out once complete.
    from: u32,
}

impl Outbox<'_> {
    /// Queues the delivery of a message made of `pieces` (in the store).
    fn emit_refs(
        &mut self,
        pieces: &[FragRef],
        sender: u32,
        ring: RingId,
        seq: u32,
        guarantee: Guarantee,
    ) {
        let r = self.refs.as_mut().expect("only in delivery by reference");
        let start = r.list.len() as u32;
        r.list.extend_from_slice(pieces);
        let len: u32 = pieces.iter().map(|p| p.len).sum();
        let first = pieces[0].seq;
        *r.pin = Some(r.pin.map_or(first, |p| seq::min(p, first)));
        let ev = Pending::DeliverRefs {
            start,
            count: pieces.len() as u32,
            len,
            sender,
            ring,
            seq,
            guarantee,
        };
        self.queue(ev, len as usize);
    }

    /// Queues a delivery of `len` bytes and counts it.
    #[inline]
    fn queue(&mut self, ev: Pending, len: usize) {
        self.events.push_back(ev);
        self.stats.messages_delivered += 1;
        self.stats.bytes_delivered += len as u64;
    }

    fn emit(&mut self, data: &[u8], sender: u32, ring: RingId, seq: u32, guarantee: Guarantee) {
        let off = self.arena.len();
        self.arena.extend_from_slice(data);
        let ev = Pending::Deliver {
            off,
            len: data.len(),
            sender,
            ring,
            seq,
            guarantee,
        };
        self.queue(ev, data.len());
    }

    /// `emit` of a reassembled message, which `data` gives up (left
    /// empty): into an empty arena it moves instead of being copied.
    fn emit_reassembled(
        &mut self,
        data: &mut Vec<u8>,
        sender: u32,
        ring: RingId,
        seq: u32,
        guarantee: Guarantee,
    ) {
        if self.arena.is_empty() {
            std::mem::swap(self.arena, data);
            data.clear();
            let len = self.arena.len();
            let ev = Pending::Deliver {
                off: 0,
                len,
                sender,
                ring,
                seq,
                guarantee,
            };
            self.queue(ev, len);
        } else {
            self.emit(data, sender, ring, seq, guarantee);
            data.clear();
        }
    }
}

fn sender_of(senders: &mut Vec<SenderState>, origin: u32) -> &mut SenderState {
    let i = match senders.iter().position(|s| s.origin == origin) {
        Some(i) => i,
        None => {
            senders.push(SenderState {
                origin,
                last_own: None,
                reasm: Vec::new(),
                reasm_refs: Vec::new(),
                reasm_len: 0,
                in_frag: false,
                broken: false,
            });
            senders.len() - 1
        }
    };
    &mut senders[i]
}

fn deliver_frame(
    frame: &[u8],
    frame_seq: u32,
    ring: RingId,
    senders: &mut Vec<SenderState>,
    out: &mut Outbox<'_>,
    mode: Mode,
    max_msg: usize,
) -> Outcome {
    // Frames were validated when they were stored: only the header is
    // read again.
    let Ok(m) = wire::decode_mcast_header(frame) else {
        return Outcome::Discarded;
    };
    let h = m.header;
    if h.encapsulated() {
        return Outcome::Delivered;
    }
    let st = sender_of(senders, h.origin);
    match mode {
        Mode::Regular {
            safe_line,
            safe_too_early,
        } => {
            if h.safe() && seq::gt(h.seq, safe_line) && !safe_too_early {
                return Outcome::Blocked;
            }
        }
        Mode::Transitional { first_gap } => {
            let chain_ok =
                !st.broken && h.prev() == st.last_own && seq::lt(h.delivered_upto, first_gap);
            if !chain_ok {
                st.broken = true;
                st.reasm.clear();
                st.reasm_refs.clear();
                st.in_frag = false;
                out.stats.trans_discarded += 1;
                return Outcome::Discarded;
            }
        }
    }
    st.last_own = Some(h.seq);
    let g = if h.safe() {
        Guarantee::Safe
    } else {
        Guarantee::Agreed
    };
    let Ok(msgs) = wire::Messages::new(m.payload) else {
        return Outcome::Discarded;
    };
    for item in msgs {
        let Ok((kind, data)) = item else { break };
        // Where `data` lies in the stored frame (it is a piece of `frame`).
        let piece = || FragRef {
            seq: frame_seq,
            off: (data.as_ptr() as usize - frame.as_ptr() as usize) as u32,
            len: data.len() as u32,
        };
        match kind {
            FragKind::Whole => {
                st.in_frag = false;
                st.reasm.clear();
                st.reasm_refs.clear();
                out.emit(data, h.origin, ring, h.seq, g);
            }
            FragKind::First => {
                st.reasm.clear();
                st.reasm_refs.clear();
                // Copied until the message reaches `from` bytes, and noted
                // where it lies too: a small one is then delivered as the
                // copy it always was, a large one in its pieces.
                st.reasm.extend_from_slice(data);
                if out.refs.is_some() {
                    st.reasm_refs.push(piece());
                }
                st.reasm_len = data.len();
                st.in_frag = true;
            }
            FragKind::Middle | FragKind::Last => {
                if !st.in_frag {
                    continue;
                }
                if st.reasm_len + data.len() > max_msg {
                    st.in_frag = false;
                    st.reasm.clear();
                    st.reasm_refs.clear();
                    continue;
                }
                let copied = st.reasm.len() == st.reasm_len;
                st.reasm_len += data.len();
                let by_ref = match (&out.refs, st.reasm_refs.first()) {
                    (Some(r), Some(first)) => seq::dist(first.seq, frame_seq) < r.max_span,
                    _ => false,
                };
                if by_ref {
                    st.reasm_refs.push(piece());
                    if copied {
                        if st.reasm_len < out.refs.as_ref().map_or(0, |r| r.from as usize) {
                            st.reasm.extend_from_slice(data);
                        } else {
                            // Large enough: the pieces from here on.
                            st.reasm.clear();
                        }
                    }
                } else {
                    if !copied {
                        // A reassembly by reference whose pieces spread too
                        // far: they become a copy.
                        if let Some(r) = &out.refs {
                            for p in &st.reasm_refs {
                                st.reasm.extend_from_slice(p.resolve(r.store));
                            }
                        }
                    }
                    st.reasm_refs.clear();
                    st.reasm.extend_from_slice(data);
                }
                if kind == FragKind::Last {
                    st.in_frag = false;
                    if st.reasm.is_empty() && !st.reasm_refs.is_empty() {
                        out.emit_refs(&st.reasm_refs, h.origin, ring, h.seq, g);
                    } else {
                        out.emit_reassembled(&mut st.reasm, h.origin, ring, h.seq, g);
                    }
                    st.reasm_refs.clear();
                }
            }
        }
    }
    Outcome::Delivered
}

impl Totem {
    /// Delivers the current ring's frames up to our aru (safe ones up to the
    /// stable line), in the current regular configuration.
    pub(crate) fn deliver_regular(&mut self) {
        let past_gap = crate::mutant!(self, DeliverPastGap);
        let safe_too_early = crate::mutant!(self, SafeTooEarly);
        let dup = crate::mutant!(self, DeliverDuplicates);
        let max_msg = self.cfg.max_message_size as usize;
        let RingState {
            ring,
            store,
            senders,
            delivered,
            my_aru,
            high,
            safe_line,
            ..
        } = &mut self.cur;
        let limit = if past_gap { *high } else { *my_aru };
        let from = self.cfg.deliver_parts_from;
        let refs = (from > 0).then(|| Refs {
            store,
            list: &mut self.frag_refs,
            pin: &mut self.refs_pin,
            max_span: store.capacity() / 4,
            from,
        });
        let mut out = Outbox {
            arena: &mut self.arena,
            events: &mut self.events,
            stats: &mut self.stats,
            refs,
        };
        let mode = Mode::Regular {
            safe_line: *safe_line,
            safe_too_early,
        };
        while seq::lt(*delivered, limit) {
            let s = delivered.wrapping_add(1);
            match store.get(s) {
                None if past_gap => {}
                None => break,
                Some(frame) => {
                    if let Outcome::Blocked =
                        deliver_frame(frame, s, *ring, senders, &mut out, mode, max_msg)
                    {
                        break;
                    }
                    if dup && s % 5 == 0 {
                        for st in senders.iter_mut() {
                            st.last_own = None;
                        }
                        deliver_frame(frame, s, *ring, senders, &mut out, mode, max_msg);
                    }
                }
            }
            *delivered = s;
        }
    }

    /// At installation: the old ring's gap-free prefix, in the old regular
    /// configuration. Safe frames go only as far as some member of the
    /// transitional group knew them stable.
    pub(crate) fn finish_old_regular(&mut self, old: &mut RingState, rec: &Recovery) {
        let max_msg = self.cfg.max_message_size as usize;
        let RingState {
            ring,
            store,
            senders,
            delivered,
            safe_line,
            ..
        } = old;
        let mut out = Outbox {
            arena: &mut self.arena,
            events: &mut self.events,
            stats: &mut self.stats,
            refs: None,
        };
        let mode = Mode::Regular {
            safe_line: seq::max(rec.max_safe, *safe_line),
            safe_too_early: false,
        };
        while seq::lt(*delivered, rec.high) {
            let s = delivered.wrapping_add(1);
            let Some(frame) = store.get(s) else { break };
            if let Outcome::Blocked =
                deliver_frame(frame, s, *ring, senders, &mut out, mode, max_msg)
            {
                break;
            }
            *delivered = s;
        }
    }

    /// At installation, after the transitional configuration: every other
    /// old-ring frame that does not depend on one lost with a failed node.
    pub(crate) fn finish_old_transitional(&mut self, old: &mut RingState, rec: &Recovery) {
        let max_msg = self.cfg.max_message_size as usize;
        let RingState {
            ring,
            store,
            senders,
            delivered,
            ..
        } = old;
        let mut first_gap = delivered.wrapping_add(1);
        while seq::le(first_gap, rec.high) && store.has(first_gap) {
            first_gap = first_gap.wrapping_add(1);
        }
        let mut out = Outbox {
            arena: &mut self.arena,
            events: &mut self.events,
            stats: &mut self.stats,
            refs: None,
        };
        let mode = Mode::Transitional { first_gap };
        while seq::lt(*delivered, rec.high) {
            let s = delivered.wrapping_add(1);
            if let Some(frame) = store.get(s) {
                deliver_frame(frame, s, *ring, senders, &mut out, mode, max_msg);
            }
            *delivered = s;
        }
    }
}
