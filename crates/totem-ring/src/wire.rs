//! The one codec for every Totem packet. Fixed little-endian layout; decoding
//! untrusted bytes returns an error and never panics.
//!
//! Every packet starts with the common header:
//!
//! | bytes | field |
//! |---|---|
//! | 2 | magic `0xC05E` |
//! | 1 | version (1) |
//! | 1 | packet type |
//! | 4 | sender: the node that put this datagram on the wire |

use crate::{NodeId, RingId};

pub const MAGIC: u16 = 0xC05E;
pub const VERSION: u8 = 1;
/// Hard upper bound of token retransmission-list entries on the wire.
pub const MAX_RTR: usize = 64;
/// Most members a commit token or join may list.
pub const MAX_MEMBERS: usize = 1024;
/// Ring seqs above this are refused as malformed. A ring seq grows by 4 a
/// membership round, so no real ring comes near it in any lifetime; one
/// near `u64::MAX` (a hostile or corrupt packet) would otherwise wrap the
/// next ring's seq below the installed one, after which no commit could
/// ever be accepted again, and spread to every node through the joins.
pub const MAX_RING_SEQ: u64 = 1 << 62;

pub const HEADER_LEN: usize = 8;
const RING_LEN: usize = 12;
pub const TOKEN_FIXED_LEN: usize = HEADER_LEN + 4 + RING_LEN + 4 * 7 + 1 + 4 + 1;
pub const MCAST_HEADER_LEN: usize = HEADER_LEN + RING_LEN + 4 + 4 + 1 + 4 + 4;
/// Bytes in front of each message packed into a multicast frame.
pub const MSG_HEADER_LEN: usize = 3;
/// Bytes of the message count at the start of a multicast payload.
pub const PAYLOAD_COUNT_LEN: usize = 2;
pub const JOIN_FIXED_LEN: usize = HEADER_LEN + 8 + 2 + 2;
pub const COMMIT_FIXED_LEN: usize = HEADER_LEN + RING_LEN + 1 + 2;
pub const COMMIT_ENTRY_LEN: usize = 4 + RING_LEN + 4 * 3;
pub const RING_PACKET_LEN: usize = HEADER_LEN + RING_LEN;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum PacketType {
    Token = 1,
    Mcast = 2,
    Join = 3,
    Commit = 4,
    MergeDetect = 5,
    HoldCancel = 6,
}

/// Why bytes were not a Totem packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    Truncated,
    BadMagic,
    BadVersion,
    BadType,
    /// A length, count or flag that contradicts the rest of the packet.
    Malformed,
    Oversized,
}

/// The circulating token of the operational (and recovery) ring.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Token {
    pub sender: NodeId,
    pub target: NodeId,
    pub ring: RingId,
    pub token_seq: u32,
    pub seq: u32,
    pub aru: u32,
    /// Node that last lowered `aru`; 0 = none.
    pub aru_addr: NodeId,
    /// Frames broadcast during the last rotation.
    pub fcc: u32,
    /// Payload bytes broadcast during the last rotation.
    pub fcc_bytes: u32,
    /// Sum of every node's send-queue backlog (frames).
    pub backlog: u32,
    pub retrans_flg: bool,
    /// Node that last set `retrans_flg`; 0 = none.
    pub retrans_addr: NodeId,
    pub rtr_len: u8,
    pub rtr: [u32; MAX_RTR],
}

impl Token {
    pub fn new(sender: NodeId, ring: RingId, start: u32) -> Token {
        Token {
            sender,
            target: 0,
            ring,
            token_seq: 0,
            seq: start,
            aru: start,
            aru_addr: 0,
            fcc: 0,
            fcc_bytes: 0,
            backlog: 0,
            retrans_flg: false,
            retrans_addr: 0,
            rtr_len: 0,
            rtr: [0; MAX_RTR],
        }
    }

    pub fn rtr(&self) -> &[u32] {
        &self.rtr[..self.rtr_len as usize]
    }
}

pub const MCAST_ENCAPSULATED: u8 = 1;
pub const MCAST_SAFE: u8 = 2;
pub const MCAST_HAS_PREV: u8 = 4;
const MCAST_FLAGS: u8 = MCAST_ENCAPSULATED | MCAST_SAFE | MCAST_HAS_PREV;

/// Header of a multicast frame. The payload that follows is either packed
/// messages (see [`Messages`]) or, when `encapsulated`, one complete
/// multicast frame of the sender's previous ring, re-broadcast in recovery.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct McastHeader {
    pub sender: NodeId,
    pub ring: RingId,
    pub seq: u32,
    /// Node that originated this frame (differs from `sender` on retransmission).
    pub origin: NodeId,
    pub flags: u8,
    /// Origin's previous own frame on this ring (valid with `MCAST_HAS_PREV`).
    pub prev_own: u32,
    /// Highest seq the origin had delivered on this ring when it sent this frame.
    pub delivered_upto: u32,
}

impl McastHeader {
    pub fn encapsulated(&self) -> bool {
        self.flags & MCAST_ENCAPSULATED != 0
    }
    pub fn safe(&self) -> bool {
        self.flags & MCAST_SAFE != 0
    }
    pub fn prev(&self) -> Option<u32> {
        (self.flags & MCAST_HAS_PREV != 0).then_some(self.prev_own)
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Mcast<'a> {
    pub header: McastHeader,
    pub payload: &'a [u8],
}

/// How a message sits in a frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum FragKind {
    Whole = 0,
    First = 1,
    Middle = 2,
    Last = 3,
}

impl FragKind {
    fn from_u8(v: u8) -> Option<FragKind> {
        Some(match v {
            0 => FragKind::Whole,
            1 => FragKind::First,
            2 => FragKind::Middle,
            3 => FragKind::Last,
            _ => return None,
        })
    }
}

/// Join message of the gather phase; a leave is a join whose sender is in
/// its own failed set.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Join {
    pub sender: NodeId,
    /// Highest ring seq the sender has seen.
    pub ring_seq: u64,
    pub procs: Vec<NodeId>,
    pub fails: Vec<NodeId>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CommitEntry {
    pub node: NodeId,
    /// The last regular ring this member installed (rep 0 = none).
    pub old_ring: RingId,
    pub aru: u32,
    pub high: u32,
    pub safe_line: u32,
}

/// Commit token of the membership protocol (two passes round the new ring).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Commit {
    pub sender: NodeId,
    pub ring: RingId,
    pub pass: u8,
    /// Entries in ring order (sorted by node id); an entry whose `old_ring.rep`
    /// is `u32::MAX` has not been filled in yet.
    pub entries: Vec<CommitEntry>,
}

pub const UNFILLED: u32 = u32::MAX;

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Packet<'a> {
    Token(Box<Token>),
    Mcast(Mcast<'a>),
    Join(Join),
    Commit(Commit),
    MergeDetect { sender: NodeId, ring: RingId },
    HoldCancel { sender: NodeId, ring: RingId },
}

// ---- reading ----

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        let end = self.pos.checked_add(n).ok_or(DecodeError::Truncated)?;
        let s = self.buf.get(self.pos..end).ok_or(DecodeError::Truncated)?;
        self.pos = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, DecodeError> {
        let b = self.take(2)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }
    fn u32(&mut self) -> Result<u32, DecodeError> {
        let b = self.take(4)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> Result<u64, DecodeError> {
        let b = self.take(8)?;
        let mut a = [0u8; 8];
        a.copy_from_slice(b);
        Ok(u64::from_le_bytes(a))
    }
    fn ring(&mut self) -> Result<RingId, DecodeError> {
        Ok(RingId {
            rep: self.u32()?,
            seq: self.ring_seq()?,
        })
    }
    fn ring_seq(&mut self) -> Result<u64, DecodeError> {
        match self.u64()? {
            s if s > MAX_RING_SEQ => Err(DecodeError::Malformed),
            s => Ok(s),
        }
    }
    fn rest(&mut self) -> &'a [u8] {
        let s = &self.buf[self.pos..];
        self.pos = self.buf.len();
        s
    }
    fn end(&self) -> Result<(), DecodeError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(DecodeError::Malformed)
        }
    }
    fn nodes(&mut self, n: usize) -> Result<Vec<NodeId>, DecodeError> {
        if n > MAX_MEMBERS {
            return Err(DecodeError::Oversized);
        }
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(self.u32()?);
        }
        if v.windows(2).any(|w| w[0] >= w[1]) || v.contains(&0) {
            return Err(DecodeError::Malformed);
        }
        Ok(v)
    }
}

/// The packet type and sender of a datagram, after checking the common header.
pub fn peek_header(buf: &[u8]) -> Result<(PacketType, NodeId), DecodeError> {
    if buf.len() < HEADER_LEN {
        return Err(DecodeError::Truncated);
    }
    if buf.len() > u16::MAX as usize {
        return Err(DecodeError::Oversized);
    }
    if u16::from_le_bytes([buf[0], buf[1]]) != MAGIC {
        return Err(DecodeError::BadMagic);
    }
    if buf[2] != VERSION {
        return Err(DecodeError::BadVersion);
    }
    let t = match buf[3] {
        1 => PacketType::Token,
        2 => PacketType::Mcast,
        3 => PacketType::Join,
        4 => PacketType::Commit,
        5 => PacketType::MergeDetect,
        6 => PacketType::HoldCancel,
        _ => return Err(DecodeError::BadType),
    };
    let sender = u32::from_le_bytes([buf[4], buf[5], buf[6], buf[7]]);
    if sender == 0 {
        return Err(DecodeError::Malformed);
    }
    Ok((t, sender))
}

/// Decodes a token into `out` without allocating.
pub fn decode_token_into(buf: &[u8], out: &mut Token) -> Result<(), DecodeError> {
    let (t, sender) = peek_header(buf)?;
    if t != PacketType::Token {
        return Err(DecodeError::BadType);
    }
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    out.sender = sender;
    out.target = r.u32()?;
    out.ring = r.ring()?;
    out.token_seq = r.u32()?;
    out.seq = r.u32()?;
    out.aru = r.u32()?;
    out.aru_addr = r.u32()?;
    out.fcc = r.u32()?;
    out.fcc_bytes = r.u32()?;
    out.backlog = r.u32()?;
    out.retrans_flg = match r.u8()? {
        0 => false,
        1 => true,
        _ => return Err(DecodeError::Malformed),
    };
    out.retrans_addr = r.u32()?;
    let n = r.u8()? as usize;
    if n > MAX_RTR {
        return Err(DecodeError::Oversized);
    }
    for i in 0..n {
        out.rtr[i] = r.u32()?;
    }
    out.rtr_len = n as u8;
    r.end()
}

/// Decodes a multicast frame's header; the payload is returned unparsed.
pub fn decode_mcast(buf: &[u8]) -> Result<Mcast<'_>, DecodeError> {
    let m = decode_mcast_header(buf)?;
    if m.header.encapsulated() {
        // The inner frame must itself be a plain multicast frame.
        let inner = decode_mcast(m.payload)?;
        if inner.header.encapsulated() {
            return Err(DecodeError::Malformed);
        }
    } else {
        validate_messages(m.payload)?;
    }
    Ok(m)
}

/// `decode_mcast` without walking the packed messages: for frames that
/// were validated when they were stored (delivery reads each stored frame
/// once more, and its message iterator still stops at anything malformed).
pub fn decode_mcast_header(buf: &[u8]) -> Result<Mcast<'_>, DecodeError> {
    let (t, sender) = peek_header(buf)?;
    if t != PacketType::Mcast {
        return Err(DecodeError::BadType);
    }
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    let ring = r.ring()?;
    let seq = r.u32()?;
    let origin = r.u32()?;
    let flags = r.u8()?;
    if flags & !MCAST_FLAGS != 0 || origin == 0 {
        return Err(DecodeError::Malformed);
    }
    let prev_own = r.u32()?;
    let delivered_upto = r.u32()?;
    let header = McastHeader {
        sender,
        ring,
        seq,
        origin,
        flags,
        prev_own,
        delivered_upto,
    };
    let payload = r.rest();
    Ok(Mcast { header, payload })
}

fn validate_messages(payload: &[u8]) -> Result<(), DecodeError> {
    let mut it = Messages::new(payload)?;
    for m in &mut it {
        m?;
    }
    Ok(())
}

/// Iterator over the messages packed into a multicast payload.
pub struct Messages<'a> {
    r: Reader<'a>,
    left: u16,
}

impl<'a> Messages<'a> {
    pub fn new(payload: &'a [u8]) -> Result<Messages<'a>, DecodeError> {
        let mut r = Reader {
            buf: payload,
            pos: 0,
        };
        let left = r.u16()?;
        if left == 0 {
            return Err(DecodeError::Malformed);
        }
        Ok(Messages { r, left })
    }
}

impl<'a> Iterator for Messages<'a> {
    type Item = Result<(FragKind, &'a [u8]), DecodeError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            // Zero bytes after the last message are padding (`pad_payload`).
            let tail = &self.r.buf[self.r.pos..];
            return if tail.iter().all(|&b| b == 0) {
                self.r.pos = self.r.buf.len();
                None
            } else {
                self.r.pos = self.r.buf.len();
                Some(Err(DecodeError::Malformed))
            };
        }
        self.left -= 1;
        let item = (|| {
            let kind = FragKind::from_u8(self.r.u8()?).ok_or(DecodeError::Malformed)?;
            let len = self.r.u16()? as usize;
            Ok((kind, self.r.take(len)?))
        })();
        if item.is_err() {
            self.left = 0;
            self.r.pos = self.r.buf.len();
        }
        Some(item)
    }
}

/// Decodes any packet. Tokens are boxed here; the hot path uses
/// [`decode_token_into`] instead.
pub fn decode(buf: &[u8]) -> Result<Packet<'_>, DecodeError> {
    let (t, sender) = peek_header(buf)?;
    let mut r = Reader {
        buf,
        pos: HEADER_LEN,
    };
    match t {
        PacketType::Token => {
            let mut tok = Box::new(Token::new(sender, RingId::default(), 0));
            decode_token_into(buf, &mut tok)?;
            Ok(Packet::Token(tok))
        }
        PacketType::Mcast => Ok(Packet::Mcast(decode_mcast(buf)?)),
        PacketType::Join => {
            let ring_seq = r.ring_seq()?;
            let np = r.u16()? as usize;
            let nf = r.u16()? as usize;
            let procs = r.nodes(np)?;
            let fails = r.nodes(nf)?;
            r.end()?;
            Ok(Packet::Join(Join {
                sender,
                ring_seq,
                procs,
                fails,
            }))
        }
        PacketType::Commit => {
            let ring = r.ring()?;
            let pass = r.u8()?;
            if pass != 1 && pass != 2 {
                return Err(DecodeError::Malformed);
            }
            let n = r.u16()? as usize;
            if n == 0 || n > MAX_MEMBERS {
                return Err(DecodeError::Malformed);
            }
            let mut entries = Vec::with_capacity(n);
            for _ in 0..n {
                entries.push(CommitEntry {
                    node: r.u32()?,
                    old_ring: r.ring()?,
                    aru: r.u32()?,
                    high: r.u32()?,
                    safe_line: r.u32()?,
                });
            }
            if entries.windows(2).any(|w| w[0].node >= w[1].node) || entries[0].node == 0 {
                return Err(DecodeError::Malformed);
            }
            r.end()?;
            Ok(Packet::Commit(Commit {
                sender,
                ring,
                pass,
                entries,
            }))
        }
        PacketType::MergeDetect | PacketType::HoldCancel => {
            let ring = r.ring()?;
            r.end()?;
            Ok(if t == PacketType::MergeDetect {
                Packet::MergeDetect { sender, ring }
            } else {
                Packet::HoldCancel { sender, ring }
            })
        }
    }
}

// ---- writing ----

fn header(out: &mut Vec<u8>, t: PacketType, sender: NodeId) {
    out.clear();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.push(VERSION);
    out.push(t as u8);
    out.extend_from_slice(&sender.to_le_bytes());
}

fn put_ring(out: &mut Vec<u8>, ring: RingId) {
    out.extend_from_slice(&ring.rep.to_le_bytes());
    out.extend_from_slice(&ring.seq.to_le_bytes());
}

fn put_u32(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_le_bytes());
}

/// Overwrites the sender of an encoded packet (used when a node
/// retransmits a frame another node originated).
pub fn set_sender(buf: &mut [u8], sender: NodeId) {
    buf[4..8].copy_from_slice(&sender.to_le_bytes());
}

pub fn encode_token(t: &Token, out: &mut Vec<u8>) {
    header(out, PacketType::Token, t.sender);
    put_u32(out, t.target);
    put_ring(out, t.ring);
    for v in [
        t.token_seq,
        t.seq,
        t.aru,
        t.aru_addr,
        t.fcc,
        t.fcc_bytes,
        t.backlog,
    ] {
        put_u32(out, v);
    }
    out.push(t.retrans_flg as u8);
    put_u32(out, t.retrans_addr);
    out.push(t.rtr_len);
    for &s in t.rtr() {
        put_u32(out, s);
    }
    debug_assert_eq!(out.len(), TOKEN_FIXED_LEN + 4 * t.rtr_len as usize);
}

/// Writes a multicast header; the caller appends the payload.
pub fn encode_mcast_header(h: &McastHeader, out: &mut Vec<u8>) {
    header(out, PacketType::Mcast, h.sender);
    put_ring(out, h.ring);
    put_u32(out, h.seq);
    put_u32(out, h.origin);
    out.push(h.flags);
    put_u32(out, h.prev_own);
    put_u32(out, h.delivered_upto);
    debug_assert_eq!(out.len(), MCAST_HEADER_LEN);
}

/// Appends one message (or fragment) to a payload under construction.
/// The payload starts with a u16 count at `count_at`, bumped here.
pub fn push_message(out: &mut Vec<u8>, count_at: usize, kind: FragKind, data: &[u8]) {
    debug_assert!(data.len() <= u16::MAX as usize);
    out.push(kind as u8);
    out.extend_from_slice(&(data.len() as u16).to_le_bytes());
    out.extend_from_slice(data);
    let c = u16::from_le_bytes([out[count_at], out[count_at + 1]]) + 1;
    out[count_at..count_at + 2].copy_from_slice(&c.to_le_bytes());
}

/// Pads a frame under construction with zeros up to `len` bytes. A sender
/// pads every frame of a burst but its last to the same length, so the
/// transport can send the burst as one GSO send (equal segments).
pub fn pad_payload(out: &mut Vec<u8>, len: usize) {
    if out.len() < len {
        out.resize(len, 0);
    }
}

pub fn encode_join(j: &Join, out: &mut Vec<u8>) {
    header(out, PacketType::Join, j.sender);
    out.extend_from_slice(&j.ring_seq.to_le_bytes());
    out.extend_from_slice(&(j.procs.len() as u16).to_le_bytes());
    out.extend_from_slice(&(j.fails.len() as u16).to_le_bytes());
    for &p in j.procs.iter().chain(j.fails.iter()) {
        put_u32(out, p);
    }
}

pub fn encode_commit(c: &Commit, out: &mut Vec<u8>) {
    header(out, PacketType::Commit, c.sender);
    put_ring(out, c.ring);
    out.push(c.pass);
    out.extend_from_slice(&(c.entries.len() as u16).to_le_bytes());
    for e in &c.entries {
        put_u32(out, e.node);
        put_ring(out, e.old_ring);
        put_u32(out, e.aru);
        put_u32(out, e.high);
        put_u32(out, e.safe_line);
    }
}

pub fn encode_ring_packet(t: PacketType, sender: NodeId, ring: RingId, out: &mut Vec<u8>) {
    debug_assert!(matches!(
        t,
        PacketType::MergeDetect | PacketType::HoldCancel
    ));
    header(out, t, sender);
    put_ring(out, ring);
}

/// Encodes any packet (tests and tools; the core uses the typed encoders).
pub fn encode(p: &Packet<'_>, out: &mut Vec<u8>) {
    match p {
        Packet::Token(t) => encode_token(t, out),
        Packet::Mcast(m) => {
            encode_mcast_header(&m.header, out);
            out.extend_from_slice(m.payload);
        }
        Packet::Join(j) => encode_join(j, out),
        Packet::Commit(c) => encode_commit(c, out),
        Packet::MergeDetect { sender, ring } => {
            encode_ring_packet(PacketType::MergeDetect, *sender, *ring, out)
        }
        Packet::HoldCancel { sender, ring } => {
            encode_ring_packet(PacketType::HoldCancel, *sender, *ring, out)
        }
    }
}
