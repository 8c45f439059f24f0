//! Ordered delivery: the regular configuration's gap-free prefix, the end
//! of an old ring at installation, and reassembly of fragmented messages.

use std::collections::VecDeque;

use crate::srp::Recovery;
use crate::srp::{Pending, RingState, SenderState, Stats};
use crate::wire::{self, FragKind};
use crate::{seq, Guarantee, RingId, Totem};

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
}

impl Outbox<'_> {
    fn emit(&mut self, data: &[u8], sender: u32, ring: RingId, seq: u32, guarantee: Guarantee) {
        let off = self.arena.len();
        self.arena.extend_from_slice(data);
        self.events.push_back(Pending::Deliver {
            off,
            len: data.len(),
            sender,
            ring,
            seq,
            guarantee,
        });
        self.stats.messages_delivered += 1;
        self.stats.bytes_delivered += data.len() as u64;
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
            self.events.push_back(Pending::Deliver {
                off: 0,
                len,
                sender,
                ring,
                seq,
                guarantee,
            });
            self.stats.messages_delivered += 1;
            self.stats.bytes_delivered += len as u64;
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
        match kind {
            FragKind::Whole => {
                st.in_frag = false;
                st.reasm.clear();
                out.emit(data, h.origin, ring, h.seq, g);
            }
            FragKind::First => {
                st.reasm.clear();
                st.reasm.extend_from_slice(data);
                st.in_frag = true;
            }
            FragKind::Middle | FragKind::Last => {
                if !st.in_frag {
                    continue;
                }
                if st.reasm.len() + data.len() > max_msg {
                    st.in_frag = false;
                    st.reasm.clear();
                    continue;
                }
                st.reasm.extend_from_slice(data);
                if kind == FragKind::Last {
                    st.in_frag = false;
                    out.emit_reassembled(&mut st.reasm, h.origin, ring, h.seq, g);
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
        let mut out = Outbox {
            arena: &mut self.arena,
            events: &mut self.events,
            stats: &mut self.stats,
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
                        deliver_frame(frame, *ring, senders, &mut out, mode, max_msg)
                    {
                        break;
                    }
                    if dup && s % 5 == 0 {
                        for st in senders.iter_mut() {
                            st.last_own = None;
                        }
                        deliver_frame(frame, *ring, senders, &mut out, mode, max_msg);
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
        };
        let mode = Mode::Regular {
            safe_line: seq::max(rec.max_safe, *safe_line),
            safe_too_early: false,
        };
        while seq::lt(*delivered, rec.high) {
            let s = delivered.wrapping_add(1);
            let Some(frame) = store.get(s) else { break };
            if let Outcome::Blocked = deliver_frame(frame, *ring, senders, &mut out, mode, max_msg)
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
        };
        let mode = Mode::Transitional { first_gap };
        while seq::lt(*delivered, rec.high) {
            let s = delivered.wrapping_add(1);
            if let Some(frame) = store.get(s) {
                deliver_frame(frame, *ring, senders, &mut out, mode, max_msg);
            }
            *delivered = s;
        }
    }
}
