//! The CPG verifier's message format, its log format and the checker that
//! reads the logs of every node after a real-fault run.
//!
//! # Messages (`cpg-verify` sends them, every node checks them)
//!
//! ```text
//! 0 magic u32 | 4 crc32 u32 | 8 len u32 | 12 kind u32 | 16 nodeid u32 | 20 pid u32
//! 24 incarnation u32 | 28 seq u64 | 36 padding (deterministic from the header) …
//! ```
//! Little-endian. `len` is the whole message; the CRC covers bytes 8..len.
//! `incarnation` counts the verifier's connections (it reconnects after its
//! daemon died); `seq` counts the messages of one incarnation that the
//! daemon accepted (CS_OK), from 0 — a TRY_AGAIN never uses a number up.
//!
//! # Logs (one text line per record, written by `cpg-verify`)
//!
//! ```text
//! I node pid inc slow      connected and joined (slow: 1 for a client that stops dispatching)
//! T rep seq m1,m2,…        totem configuration (model v1 totem confchg)
//! C members left joined    CPG configuration change; each a list node:pid:reason,… or -
//! D node pid inc seq len kind   a good message delivered
//! X node pid inc seq why   a bad message delivered (corrupt): a violation
//! S inc seq                the daemon accepted our message seq (CS_OK)
//! E inc error              the connection ended (daemon gone)
//! Z                        drained: every member's FIN delivered
//! Q                        quit cleanly
//! ```
//!
//! # What the checker verifies ([`check`])
//!
//! Logs are cut into *incarnations* (one connection of one verifier) and
//! each incarnation into *segments*, one per Totem ring (between two `T`
//! records). Then:
//! - corruption: every `X` record;
//! - configurations: every node reports the same members for a ring and
//!   is one of them; ring sequence numbers increase per node;
//! - no duplicate delivery, and per sender FIFO without gaps while the
//!   sender stays in the receiver's view (a gap is excused when the sender
//!   then leaves the view, as EVS allows in a transitional configuration);
//! - total order: two segments of the same ring never order two messages
//!   differently;
//! - agreement: two segments of the same ring that end the same way (the
//!   same next ring, or both a clean end) hold the same messages and CPG
//!   configuration changes, from the later of the two joins on;
//! - self-delivery and **lost**: a message the daemon accepted from a
//!   sender that stayed (its connection lived through two more ring
//!   changes, or ended cleanly) is delivered to the sender, and to every
//!   member of the configuration the sender delivered it in that went on
//!   to the same next configuration. Each message missing so is counted
//!   once as lost.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::{self, Write as _};

/// "CPVV" little-endian.
pub const MAGIC: u32 = u32::from_le_bytes(*b"CPVV");
pub const HEADER_LEN: usize = 36;
pub const KIND_DATA: u32 = 0;
/// The last message of a sender asked to stop.
pub const KIND_FIN: u32 = 1;

const CRC_TABLE: [u32; 256] = crc_table();

const fn crc_table() -> [u32; 256] {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                0xEDB8_8320 ^ (c >> 1)
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
}

/// CRC-32 (IEEE 802.3, as zlib).
pub fn crc32(bytes: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in bytes {
        c = CRC_TABLE[((c ^ u32::from(b)) & 0xff) as usize] ^ (c >> 8);
    }
    !c
}

/// Who sent a message and its number.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MsgId {
    pub node: u32,
    pub pid: u32,
    pub inc: u32,
    pub seq: u64,
}

impl fmt::Display for MsgId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "node {} pid {} inc {} seq {}",
            self.node, self.pid, self.inc, self.seq
        )
    }
}

/// A decoded message header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub id: MsgId,
    pub len: u32,
    pub kind: u32,
}

/// Writes the message for `h` (`h.len` bytes, at least [`HEADER_LEN`]).
pub fn encode(h: &Header, out: &mut Vec<u8>) {
    let len = (h.len as usize).max(HEADER_LEN);
    out.clear();
    out.extend_from_slice(&MAGIC.to_le_bytes());
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&h.kind.to_le_bytes());
    out.extend_from_slice(&h.id.node.to_le_bytes());
    out.extend_from_slice(&h.id.pid.to_le_bytes());
    out.extend_from_slice(&h.id.inc.to_le_bytes());
    out.extend_from_slice(&h.id.seq.to_le_bytes());
    let mut x = h.id.seq ^ (u64::from(h.id.node) << 32) ^ u64::from(h.id.pid) ^ 0x9E37_79B9;
    while out.len() < len {
        // xorshift64: padding that differs per message and per byte.
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push(x as u8);
    }
    let crc = crc32(&out[8..]);
    out[4..8].copy_from_slice(&crc.to_le_bytes());
}

/// Why a delivered message is bad; `id` is what could be read of its
/// header (zeros for a message too short to hold one).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BadMessage {
    pub id: MsgId,
    pub why: &'static str,
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().expect("4 bytes"))
}

/// Checks and decodes a delivered message. Never panics.
pub fn decode(b: &[u8]) -> Result<Header, BadMessage> {
    if b.len() < HEADER_LEN {
        return Err(BadMessage {
            id: MsgId {
                node: 0,
                pid: 0,
                inc: 0,
                seq: 0,
            },
            why: "short",
        });
    }
    let id = MsgId {
        node: u32_at(b, 16),
        pid: u32_at(b, 20),
        inc: u32_at(b, 24),
        seq: u64::from_le_bytes(b[28..36].try_into().expect("8 bytes")),
    };
    let bad = |why| Err(BadMessage { id, why });
    if u32_at(b, 0) != MAGIC {
        return bad("magic");
    }
    let len = u32_at(b, 8);
    if len as usize != b.len() {
        return bad("length");
    }
    if u32_at(b, 4) != crc32(&b[8..]) {
        return bad("crc");
    }
    Ok(Header {
        id,
        len,
        kind: u32_at(b, 12),
    })
}

/// A CPG address in a configuration change.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Addr {
    pub node: u32,
    pub pid: u32,
    pub reason: u32,
}

/// One log line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Rec {
    Init {
        node: u32,
        pid: u32,
        inc: u32,
        slow: bool,
    },
    Totem {
        rep: u32,
        seq: u64,
        members: Vec<u32>,
    },
    Conf {
        members: Vec<Addr>,
        left: Vec<Addr>,
        joined: Vec<Addr>,
    },
    Deliver {
        id: MsgId,
        len: u32,
        kind: u32,
    },
    Bad {
        id: MsgId,
        why: String,
    },
    Sent {
        inc: u32,
        seq: u64,
    },
    End {
        inc: u32,
        err: String,
    },
    Drained,
    Quit,
}

fn join_list<T>(items: &[T], f: impl Fn(&T) -> String) -> String {
    if items.is_empty() {
        "-".into()
    } else {
        items.iter().map(f).collect::<Vec<_>>().join(",")
    }
}

fn addrs(a: &[Addr]) -> String {
    join_list(a, |a| format!("{}:{}:{}", a.node, a.pid, a.reason))
}

impl fmt::Display for Rec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Rec::Init {
                node,
                pid,
                inc,
                slow,
            } => write!(f, "I {node} {pid} {inc} {}", u8::from(*slow)),
            Rec::Totem { rep, seq, members } => {
                write!(f, "T {rep} {seq} {}", join_list(members, u32::to_string))
            }
            Rec::Conf {
                members,
                left,
                joined,
            } => write!(f, "C {} {} {}", addrs(members), addrs(left), addrs(joined)),
            Rec::Deliver { id, len, kind } => write!(
                f,
                "D {} {} {} {} {len} {kind}",
                id.node, id.pid, id.inc, id.seq
            ),
            Rec::Bad { id, why } => {
                write!(f, "X {} {} {} {} {why}", id.node, id.pid, id.inc, id.seq)
            }
            Rec::Sent { inc, seq } => write!(f, "S {inc} {seq}"),
            Rec::End { inc, err } => write!(f, "E {inc} {err}"),
            Rec::Drained => f.write_str("Z"),
            Rec::Quit => f.write_str("Q"),
        }
    }
}

fn num<T: std::str::FromStr>(t: Option<&str>) -> Option<T> {
    t?.parse().ok()
}

fn parse_list<T>(t: Option<&str>, f: impl Fn(&str) -> Option<T>) -> Option<Vec<T>> {
    match t? {
        "-" => Some(Vec::new()),
        s => s.split(',').map(f).collect(),
    }
}

fn parse_addr(s: &str) -> Option<Addr> {
    let mut p = s.split(':');
    let a = Addr {
        node: num(p.next())?,
        pid: num(p.next())?,
        reason: num(p.next())?,
    };
    p.next().is_none().then_some(a)
}

fn parse_id<'a>(t: &mut impl Iterator<Item = &'a str>) -> Option<MsgId> {
    Some(MsgId {
        node: num(t.next())?,
        pid: num(t.next())?,
        inc: num(t.next())?,
        seq: num(t.next())?,
    })
}

impl Rec {
    /// Parses one line; None for anything malformed.
    pub fn parse(line: &str) -> Option<Rec> {
        let mut t = line.split(' ');
        let rec = match t.next()? {
            "I" => Rec::Init {
                node: num(t.next())?,
                pid: num(t.next())?,
                inc: num(t.next())?,
                slow: num::<u8>(t.next())? != 0,
            },
            "T" => Rec::Totem {
                rep: num(t.next())?,
                seq: num(t.next())?,
                members: parse_list(t.next(), |s| s.parse().ok())?,
            },
            "C" => Rec::Conf {
                members: parse_list(t.next(), parse_addr)?,
                left: parse_list(t.next(), parse_addr)?,
                joined: parse_list(t.next(), parse_addr)?,
            },
            "D" => Rec::Deliver {
                id: parse_id(&mut t)?,
                len: num(t.next())?,
                kind: num(t.next())?,
            },
            "X" => Rec::Bad {
                id: parse_id(&mut t)?,
                why: t.next()?.to_owned(),
            },
            "S" => Rec::Sent {
                inc: num(t.next())?,
                seq: num(t.next())?,
            },
            "E" => Rec::End {
                inc: num(t.next())?,
                err: t.next()?.to_owned(),
            },
            "Z" => Rec::Drained,
            "Q" => Rec::Quit,
            _ => return None,
        };
        t.next().is_none().then_some(rec)
    }
}

/// One verifier's log, named for the reports (e.g. `n2` or `n2-slow`).
#[derive(Clone, Debug)]
pub struct NodeLog {
    pub name: String,
    pub recs: Vec<Rec>,
    /// Malformed lines other than a torn last line.
    pub malformed: Vec<String>,
}

impl NodeLog {
    /// Parses a log's text. A last line without its newline (the writer was
    /// killed mid-line) is dropped; any other malformed line is kept in
    /// `malformed` and reported as a violation.
    pub fn parse(name: &str, text: &str) -> NodeLog {
        let complete = match text.rfind('\n') {
            Some(at) => &text[..at],
            None => "",
        };
        let mut recs = Vec::new();
        let mut malformed = Vec::new();
        for line in complete.lines().filter(|l| !l.is_empty()) {
            match Rec::parse(line) {
                Some(r) => recs.push(r),
                None => malformed.push(line.to_owned()),
            }
        }
        NodeLog {
            name: name.to_owned(),
            recs,
            malformed,
        }
    }

    pub fn from_recs(name: &str, recs: Vec<Rec>) -> NodeLog {
        NodeLog {
            name: name.to_owned(),
            recs,
            malformed: Vec::new(),
        }
    }
}

/// What the checker found.
#[derive(Clone, Debug, Default)]
pub struct Report {
    /// One line per violation (capped at [`Report::MAX_LISTED`] listed;
    /// `violations` counts all).
    pub listed: Vec<String>,
    pub violations: u64,
    /// Accepted messages some member that should have delivered never did.
    pub lost: u64,
    pub lost_listed: Vec<String>,
    /// Deliveries recorded, all logs together.
    pub delivered: u64,
    /// Messages the daemons accepted (CS_OK), all senders together.
    pub sent: u64,
}

impl Report {
    pub const MAX_LISTED: usize = 40;

    fn violation(&mut self, what: String) {
        self.violations += 1;
        if self.listed.len() < Self::MAX_LISTED {
            self.listed.push(what);
        }
    }

    fn lost(&mut self, what: String) {
        self.lost += 1;
        if self.lost_listed.len() < Self::MAX_LISTED {
            self.lost_listed.push(what);
        }
    }

    pub fn ok(&self) -> bool {
        self.violations == 0 && self.lost == 0
    }

    /// A human summary with the listed violations and losses.
    pub fn describe(&self) -> String {
        let mut s = format!(
            "violations={} lost={} delivered={} sent={}\n",
            self.violations, self.lost, self.delivered, self.sent
        );
        for v in &self.listed {
            let _ = writeln!(s, "  violation: {v}");
        }
        for l in &self.lost_listed {
            let _ = writeln!(s, "  lost: {l}");
        }
        s
    }
}

type Ring = (u32, u64);
type Proc = (u32, u32);
type ConfKey = (Vec<Addr>, Vec<Addr>, Vec<Addr>);

/// What starts a segment: a totem configuration (model v1 totem confchg)
/// or a CPG configuration change. Both are the same on every node that
/// sees them, so (ring, start, occurrence) names a view across nodes.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Start {
    Totem(Ring),
    Conf(ConfKey),
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Next {
    At(Start),
    /// Drained: the history ends complete.
    Clean,
    /// The connection ended (daemon gone, or the log stops).
    Cut,
}

/// The messages one process delivered in one view.
struct Segment {
    ring: Ring,
    start: Start,
    occurrence: u32,
    /// The process was a group member (its own join delivered).
    member: bool,
    msgs: Vec<MsgId>,
    next: Next,
}

type SegKey = (Ring, Start, u32);

impl Segment {
    fn key(&self) -> SegKey {
        (self.ring, self.start.clone(), self.occurrence)
    }
}

/// The flat history of one connection, for the FIFO check.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Totem,
    Msg(MsgId),
    Conf(Vec<Addr>, Vec<Addr>),
}

/// One connection of one verifier.
struct Inc {
    name: String,
    node: u32,
    pid: u32,
    inc: u32,
    slow: bool,
    clean: bool,
    /// Its own join was delivered.
    joined: bool,
    ring: Option<Ring>,
    seen: HashMap<(Ring, Start), u32>,
    segments: Vec<Segment>,
    evs: Vec<Ev>,
    /// Accepted seqs with the number of `T` records logged before each.
    sent: Vec<(u64, usize)>,
    totems_total: usize,
    delivered: HashSet<MsgId>,
}

impl Inc {
    fn label(&self) -> String {
        format!(
            "{} ({}:{} inc {})",
            self.name, self.node, self.pid, self.inc
        )
    }

    fn open(&mut self, ring: Ring, start: Start) {
        if let Some(last) = self.segments.last_mut() {
            last.next = Next::At(start.clone());
        }
        let n = self.seen.entry((ring, start.clone())).or_insert(0);
        *n += 1;
        self.segments.push(Segment {
            ring,
            start,
            occurrence: *n,
            member: self.joined,
            msgs: Vec::new(),
            next: Next::Cut,
        });
    }
}

fn split(logs: &[NodeLog], r: &mut Report) -> Vec<Inc> {
    let mut incs = Vec::new();
    for log in logs {
        for m in &log.malformed {
            r.violation(format!("{}: malformed log line {m:?}", log.name));
        }
        let mut cur: Option<Inc> = None;
        // A connection's first CPG confchg (its own join) comes before the
        // initial Totem confchg that CPG_MODEL_V1_DELIVER_INITIAL_TOTEM_CONF
        // asks for (as in Corosync): that Totem record, which names the
        // ring the join was made in, is taken first. The sender thread's
        // records (`S`, `E`) may fall between the two; they name no ring.
        let mut held: Option<&Rec> = None;
        for rec in &log.recs {
            if let Some(c) = cur.as_mut() {
                if c.ring.is_none() && held.is_none() && matches!(rec, Rec::Conf { .. }) {
                    held = Some(rec);
                    continue;
                }
                if held.is_some() && matches!(rec, Rec::Sent { .. } | Rec::End { .. }) {
                    add_rec(c, rec, r);
                    continue;
                }
                if let Some(h) = held.take() {
                    if matches!(rec, Rec::Totem { .. }) {
                        add_rec(c, rec, r);
                        add_rec(c, h, r);
                        continue;
                    }
                    add_rec(c, h, r);
                }
            }
            if let Rec::Init {
                node,
                pid,
                inc,
                slow,
            } = rec
            {
                incs.extend(cur.take().map(finish_inc));
                cur = Some(Inc {
                    name: log.name.clone(),
                    node: *node,
                    pid: *pid,
                    inc: *inc,
                    slow: *slow,
                    clean: false,
                    joined: false,
                    ring: None,
                    seen: HashMap::new(),
                    segments: Vec::new(),
                    evs: Vec::new(),
                    sent: Vec::new(),
                    totems_total: 0,
                    delivered: HashSet::new(),
                });
                continue;
            }
            let Some(c) = cur.as_mut() else {
                r.violation(format!("{}: record before any I: {rec}", log.name));
                continue;
            };
            add_rec(c, rec, r);
        }
        if let (Some(c), Some(h)) = (cur.as_mut(), held.take()) {
            add_rec(c, h, r);
        }
        incs.extend(cur.take().map(finish_inc));
    }
    incs
}

fn finish_inc(mut c: Inc) -> Inc {
    if let Some(last) = c.segments.last_mut() {
        if c.clean {
            last.next = Next::Clean;
        }
    }
    c
}

fn add_rec(c: &mut Inc, rec: &Rec, r: &mut Report) {
    match rec {
        Rec::Init { .. } => unreachable!("handled by split"),
        Rec::Totem { rep, seq, .. } => {
            let ring = (*rep, *seq);
            c.ring = Some(ring);
            c.open(ring, Start::Totem(ring));
            c.evs.push(Ev::Totem);
            c.totems_total += 1;
        }
        Rec::Conf {
            members,
            left,
            joined,
        } => {
            if joined.iter().any(|a| (a.node, a.pid) == (c.node, c.pid)) {
                c.joined = true;
            }
            let Some(ring) = c.ring else {
                r.violation(format!("{}: CPG confchg before any ring", c.label()));
                return;
            };
            c.open(
                ring,
                Start::Conf((members.clone(), left.clone(), joined.clone())),
            );
            c.evs.push(Ev::Conf(left.clone(), joined.clone()));
        }
        Rec::Deliver { id, .. } => {
            r.delivered += 1;
            if !c.delivered.insert(*id) {
                r.violation(format!("{}: duplicate delivery of {id}", c.label()));
            }
            c.evs.push(Ev::Msg(*id));
            match c.segments.last_mut() {
                Some(s) if s.member => s.msgs.push(*id),
                Some(_) => {
                    r.violation(format!("{}: delivered {id} before its own join", c.label()))
                }
                None => r.violation(format!("{}: delivery before any ring", c.label())),
            }
        }
        Rec::Bad { id, why } => r.violation(format!(
            "{}: corrupt message ({why}) from node {} pid {} seq {}",
            c.label(),
            id.node,
            id.pid,
            id.seq
        )),
        Rec::Sent { seq, .. } => {
            r.sent += 1;
            c.sent.push((*seq, c.totems_total));
        }
        Rec::End { .. } => {}
        Rec::Drained | Rec::Quit => c.clean = true,
    }
}

fn check_rings(logs: &[NodeLog], r: &mut Report) {
    let mut members: HashMap<Ring, (Vec<u32>, String)> = HashMap::new();
    for log in logs {
        let mut node = None;
        let mut last_seq: Option<u64> = None;
        for rec in &log.recs {
            match rec {
                Rec::Init { node: n, .. } => node = Some(*n),
                Rec::Totem {
                    rep,
                    seq,
                    members: m,
                } => {
                    let mut m = m.clone();
                    m.sort_unstable();
                    if let Some(n) = node.filter(|n| !m.contains(n)) {
                        r.violation(format!(
                            "{}: ring {rep}/{seq} {m:?} without itself ({n})",
                            log.name
                        ));
                    }
                    match members.get(&(*rep, *seq)) {
                        Some((seen, who)) if *seen != m => r.violation(format!(
                            "ring {rep}/{seq}: {} reports {m:?}, {who} reported {seen:?}",
                            log.name
                        )),
                        Some(_) => {}
                        None => {
                            members.insert((*rep, *seq), (m, log.name.clone()));
                        }
                    }
                    if last_seq.is_some_and(|prev| *seq <= prev) {
                        r.violation(format!(
                            "{}: ring seq {seq} after {} (ring ids must increase)",
                            log.name,
                            last_seq.unwrap_or_default()
                        ));
                    }
                    last_seq = Some(*seq);
                }
                _ => {}
            }
        }
    }
}

/// FIFO without gaps from a sender that stays in the view: a gap is
/// excused when the sender then leaves the receiver's view before the
/// next ring, and when the receiver's connection ends first.
fn check_fifo(inc: &Inc, r: &mut Report) {
    let mut last: HashMap<(u32, u32, u32), u64> = HashMap::new();
    let mut gaps: Vec<(Proc, String)> = Vec::new();
    for ev in &inc.evs {
        match ev {
            Ev::Msg(id) => {
                let key = (id.node, id.pid, id.inc);
                if let Some(&prev) = last.get(&key) {
                    let from = format!(
                        "{}: from node {} pid {} inc {}: seq {} after {prev}",
                        inc.label(),
                        id.node,
                        id.pid,
                        id.inc,
                        id.seq
                    );
                    if id.seq <= prev {
                        r.violation(format!("{from} (reordered)"));
                    } else if id.seq > prev + 1 {
                        gaps.push(((id.node, id.pid), format!("{from} (gap)")));
                    }
                }
                let e = last.entry(key).or_insert(id.seq);
                *e = (*e).max(id.seq);
            }
            Ev::Conf(left, joined) => {
                for a in left {
                    gaps.retain(|(p, _)| *p != (a.node, a.pid));
                }
                for a in left.iter().chain(joined) {
                    last.retain(|k, _| (k.0, k.1) != (a.node, a.pid));
                }
            }
            Ev::Totem => {
                for (_, g) in gaps.drain(..) {
                    r.violation(g);
                }
            }
        }
    }
    if inc.clean {
        for (_, g) in gaps {
            r.violation(g);
        }
    }
}

/// Segments of members (not slow clients), by view.
fn by_view(incs: &[Inc]) -> BTreeMap<String, Vec<(usize, usize)>> {
    let mut by: BTreeMap<String, Vec<(usize, usize)>> = BTreeMap::new();
    for (ii, inc) in incs.iter().enumerate().filter(|(_, i)| !i.slow) {
        for (si, seg) in inc.segments.iter().enumerate().filter(|(_, s)| s.member) {
            by.entry(format!("{:?}", seg.key()))
                .or_default()
                .push((ii, si));
        }
    }
    by
}

fn view_name(seg: &Segment) -> String {
    let start = match &seg.start {
        Start::Totem(_) => "totem confchg".to_owned(),
        Start::Conf((m, l, j)) => format!(
            "confchg members {} left {} joined {}",
            addrs(m),
            addrs(l),
            addrs(j)
        ),
    };
    format!(
        "ring {}/{} view from {start} (#{})",
        seg.ring.0, seg.ring.1, seg.occurrence
    )
}

fn check_pair(a: (&Inc, &Segment), b: (&Inc, &Segment), r: &mut Report) {
    // Total order on the messages both delivered.
    let pos: HashMap<MsgId, usize> =
        a.1.msgs
            .iter()
            .enumerate()
            .map(|(i, id)| (*id, i))
            .collect();
    let mut prev: Option<(usize, MsgId)> = None;
    for id in &b.1.msgs {
        let Some(&p) = pos.get(id) else { continue };
        if let Some((q, pid)) = prev {
            if p < q {
                r.violation(format!(
                    "{}: {} delivered {pid} before {id}, {} the other way",
                    view_name(a.1),
                    b.0.label(),
                    a.0.label()
                ));
                return;
            }
        }
        prev = Some((p, *id));
    }
    // Agreement: the same next view, the same messages.
    if a.1.next != b.1.next || a.1.next == Next::Cut || a.1.msgs == b.1.msgs {
        return;
    }
    let k = (0..)
        .find(|&k| a.1.msgs.get(k) != b.1.msgs.get(k))
        .unwrap_or(0);
    r.violation(format!(
        "{}, both then {:?}: {} delivered {} messages, {} {}; first difference at {k}: {:?} vs {:?}",
        view_name(a.1),
        a.1.next,
        a.0.label(),
        a.1.msgs.len(),
        b.0.label(),
        b.1.msgs.len(),
        a.1.msgs.get(k),
        b.1.msgs.get(k)
    ));
}

fn check_order_and_agreement(incs: &[Inc], r: &mut Report) {
    for segs in by_view(incs).values() {
        for (x, &(ia, sa)) in segs.iter().enumerate() {
            for &(ib, sb) in &segs[x + 1..] {
                let a = (&incs[ia], &incs[ia].segments[sa]);
                let b = (&incs[ib], &incs[ib].segments[sb]);
                check_pair(a, b, r);
            }
        }
    }
}

/// Self-delivery and lost messages.
fn check_lost(incs: &[Inc], r: &mut Report) {
    let views = by_view(incs);
    for (si, s) in incs.iter().enumerate().filter(|(_, i)| !i.slow) {
        let mut seg_of: HashMap<u64, usize> = HashMap::new();
        for (k, seg) in s.segments.iter().enumerate() {
            for id in seg
                .msgs
                .iter()
                .filter(|id| (id.node, id.pid, id.inc) == (s.node, s.pid, s.inc))
            {
                seg_of.insert(id.seq, k);
            }
        }
        for &(seq, totems_before) in &s.sent {
            let id = MsgId {
                node: s.node,
                pid: s.pid,
                inc: s.inc,
                seq,
            };
            let Some(&k) = seg_of.get(&seq) else {
                // Stayed: its connection outlived two more ring changes
                // (one may be in flight when the send returns), or ended
                // cleanly.
                if s.clean || s.totems_total >= totems_before + 2 {
                    r.violation(format!("{}: never delivered its own {id}", s.label()));
                    r.lost(format!("{id}: accepted, never delivered to its sender"));
                }
                continue;
            };
            let seg = &s.segments[k];
            if seg.next == Next::Cut {
                continue;
            }
            let peers = views
                .get(&format!("{:?}", seg.key()))
                .map_or(&[][..], Vec::as_slice);
            let missing: Vec<String> = peers
                .iter()
                .filter(|&&(qi, qs)| {
                    let q = &incs[qi];
                    qi != si && q.segments[qs].next == seg.next && !q.delivered.contains(&id)
                })
                .map(|&(qi, _)| incs[qi].label())
                .collect();
            if !missing.is_empty() {
                r.lost(format!(
                    "{id}: delivered by its sender in {}, never by {}",
                    view_name(seg),
                    missing.join(", ")
                ));
            }
        }
    }
}

/// Checks the logs of one run (every verifier of every node).
pub fn check(logs: &[NodeLog]) -> Report {
    let mut r = Report::default();
    let incs = split(logs, &mut r);
    check_rings(logs, &mut r);
    for inc in incs.iter().filter(|i| !i.slow) {
        check_fifo(inc, &mut r);
    }
    check_order_and_agreement(&incs, &mut r);
    check_lost(&incs, &mut r);
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(node: u32, seq: u64) -> MsgId {
        MsgId {
            node,
            pid: 100 + node,
            inc: 1,
            seq,
        }
    }

    fn addr(node: u32, reason: u32) -> Addr {
        Addr {
            node,
            pid: 100 + node,
            reason,
        }
    }

    /// A log of node `me` in a ring of `nodes`: init, ring 1/5, the join
    /// of everyone, then `msgs` (sender node, seq), sends by `me`, clean end.
    fn log(me: u32, nodes: &[u32], msgs: &[(u32, u64)], sent: u64) -> Vec<Rec> {
        let mut v = vec![
            Rec::Init {
                node: me,
                pid: 100 + me,
                inc: 1,
                slow: false,
            },
            Rec::Totem {
                rep: 1,
                seq: 5,
                members: nodes.to_vec(),
            },
            Rec::Conf {
                members: nodes.iter().map(|&n| addr(n, 0)).collect(),
                left: vec![],
                joined: nodes.iter().map(|&n| addr(n, 1)).collect(),
            },
        ];
        for &(n, s) in msgs {
            v.push(Rec::Deliver {
                id: id(n, s),
                len: 100,
                kind: KIND_DATA,
            });
        }
        for s in 0..sent {
            v.push(Rec::Sent { inc: 1, seq: s });
        }
        v.push(Rec::Drained);
        v.push(Rec::Quit);
        v
    }

    fn good() -> Vec<(u32, u64)> {
        vec![(1, 0), (2, 0), (1, 1), (2, 1), (1, 2)]
    }

    fn run(a: Vec<Rec>, b: Vec<Rec>) -> Report {
        check(&[NodeLog::from_recs("n0", a), NodeLog::from_recs("n1", b)])
    }

    #[test]
    fn crc32_matches_the_standard_check_value() {
        assert_eq!(crc32(b"123456789"), 0xCBF4_3926);
        assert_eq!(crc32(b""), 0);
    }

    #[test]
    fn messages_round_trip_and_corruption_is_named() {
        let h = Header {
            id: MsgId {
                node: 3,
                pid: 77,
                inc: 2,
                seq: 9,
            },
            len: 200,
            kind: KIND_DATA,
        };
        let mut b = Vec::new();
        encode(&h, &mut b);
        assert_eq!(b.len(), 200);
        assert_eq!(decode(&b), Ok(h));
        let mut flipped = b.clone();
        flipped[150] ^= 1;
        assert_eq!(
            decode(&flipped).unwrap_err(),
            BadMessage {
                id: h.id,
                why: "crc"
            }
        );
        let e = decode(&b[..120]).unwrap_err();
        assert_eq!((e.id.seq, e.why), (9, "length"));
        assert_eq!(decode(&b[..10]).unwrap_err().why, "short");
        let mut m = b.clone();
        m[0] = 0;
        assert_eq!(decode(&m).unwrap_err().why, "magic");
        // Nothing a peer can send makes decode panic.
        for n in 0..64 {
            let _ = decode(&vec![0xA5; n]);
        }
    }

    #[test]
    fn log_lines_round_trip() {
        let recs = vec![
            Rec::Init {
                node: 1,
                pid: 2,
                inc: 3,
                slow: true,
            },
            Rec::Totem {
                rep: 1,
                seq: 8,
                members: vec![1, 2, 3],
            },
            Rec::Conf {
                members: vec![addr(1, 0), addr(2, 0)],
                left: vec![],
                joined: vec![addr(2, 1)],
            },
            Rec::Deliver {
                id: id(2, 4),
                len: 99,
                kind: KIND_FIN,
            },
            Rec::Bad {
                id: id(2, 5),
                why: "crc".into(),
            },
            Rec::Sent { inc: 3, seq: 4 },
            Rec::End {
                inc: 3,
                err: "Library".into(),
            },
            Rec::Drained,
            Rec::Quit,
        ];
        let text: String = recs.iter().map(|r| format!("{r}\n")).collect();
        let parsed = NodeLog::parse("n", &format!("{text}D 1 2"));
        assert_eq!(parsed.recs, recs);
        assert!(parsed.malformed.is_empty(), "a torn last line is dropped");
        assert_eq!(
            NodeLog::parse("n", "Q\nbogus\nZ\n").malformed,
            vec!["bogus"]
        );
    }

    #[test]
    fn identical_logs_pass() {
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &good(), 2));
        assert!(r.ok(), "{}", r.describe());
        assert_eq!(r.delivered, 10);
        assert_eq!(r.sent, 5);
    }

    /// The daemon sends the initial Totem confchg after the connection's
    /// own join confchg (as Corosync does); the verifier reads the pair in
    /// ring order, and a confchg with no ring after it is still a violation.
    #[test]
    fn the_initial_totem_confchg_may_follow_the_join() {
        let mut a = log(1, &[1, 2], &good(), 3);
        a.swap(1, 2);
        // The sender thread's record between the two (moved from later).
        let first_sent = Rec::Sent { inc: 1, seq: 0 };
        a.retain(|r| *r != first_sent);
        a.insert(2, first_sent);
        let r = run(a, log(2, &[1, 2], &good(), 2));
        assert!(r.ok(), "{}", r.describe());
        let mut a = log(1, &[1, 2], &good(), 3);
        a.remove(1);
        let r = run(a, log(2, &[1, 2], &good(), 2));
        assert!(
            r.describe().contains("CPG confchg before any ring"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn a_gap_is_detected() {
        let mut m = good();
        m.remove(2); // node 1's seq 1
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &m, 2));
        assert!(
            r.listed
                .iter()
                .any(|v| v.contains("from node 1") && v.ends_with("(gap)")),
            "{}",
            r.describe()
        );
        assert_eq!(r.lost, 1, "{}", r.describe());
    }

    #[test]
    fn a_gap_from_a_sender_that_then_left_is_excused() {
        let mut b = log(2, &[1, 2], &[(1, 0), (2, 0), (1, 2)], 1);
        // Node 1 leaves (NODEDOWN) and the ring changes.
        let at = b.len() - 2;
        b.insert(
            at,
            Rec::Conf {
                members: vec![addr(2, 0)],
                left: vec![addr(1, 3)],
                joined: vec![],
            },
        );
        b.insert(
            at + 1,
            Rec::Totem {
                rep: 2,
                seq: 9,
                members: vec![2],
            },
        );
        let r = check(&[NodeLog::from_recs("n1", b)]);
        assert!(r.ok(), "{}", r.describe());
    }

    #[test]
    fn a_duplicate_is_detected() {
        let mut m = good();
        m.push((2, 1));
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &m, 2));
        assert!(
            r.listed.iter().any(|v| v.contains("duplicate delivery")),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn a_reorder_is_detected() {
        let mut m = good();
        m.swap(0, 1); // same per-sender order, another total order
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &m, 2));
        assert!(
            r.listed.iter().any(|v| v.contains("the other way")),
            "{}",
            r.describe()
        );
        let mut fifo = good();
        fifo.swap(0, 2); // node 1's seq 1 before its seq 0
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &fifo, 2));
        assert!(
            r.listed.iter().any(|v| v.contains("reordered")),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn a_loss_at_the_end_is_detected() {
        let mut m = good();
        m.pop(); // node 1's seq 2 never reaches node 2
        let r = run(log(1, &[1, 2], &good(), 3), log(2, &[1, 2], &m, 2));
        assert_eq!(r.lost, 1, "{}", r.describe());
        assert!(r.lost_listed[0].contains("seq 2"), "{}", r.describe());
    }

    #[test]
    fn an_undelivered_own_message_is_lost() {
        // Node 1 got CS_OK for seq 3 and ended cleanly without it.
        let r = run(log(1, &[1, 2], &good(), 4), log(2, &[1, 2], &good(), 2));
        assert_eq!(r.lost, 1, "{}", r.describe());
        assert!(r
            .listed
            .iter()
            .any(|v| v.contains("never delivered its own")));
    }

    #[test]
    fn an_undelivered_message_of_a_crashed_sender_is_not_lost() {
        let mut a = log(1, &[1, 2], &good(), 4);
        a.truncate(a.len() - 2); // no clean end: the daemon died
        a.push(Rec::End {
            inc: 1,
            err: "Library".into(),
        });
        let r = run(a, log(2, &[1, 2], &good(), 2));
        assert!(r.ok(), "{}", r.describe());
    }

    #[test]
    fn corruption_is_a_violation_naming_sender_and_seq() {
        let mut b = log(2, &[1, 2], &good(), 2);
        b.insert(
            4,
            Rec::Bad {
                id: id(1, 7),
                why: "crc".into(),
            },
        );
        let r = run(log(1, &[1, 2], &good(), 3), b);
        assert_eq!(r.violations, 1, "{}", r.describe());
        assert!(
            r.listed[0].contains("node 1 pid 101 seq 7"),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn disagreeing_configurations_are_detected() {
        let mut b = log(2, &[1, 2], &good(), 2);
        b[1] = Rec::Totem {
            rep: 1,
            seq: 5,
            members: vec![1, 2, 3],
        };
        let r = run(log(1, &[1, 2], &good(), 3), b);
        assert!(
            r.listed.iter().any(|v| v.contains("reported")),
            "{}",
            r.describe()
        );
    }

    #[test]
    fn a_late_joiner_is_compared_from_its_join_on() {
        // Node 2 joins after node 1's seq 0 and 1.
        let mut a = log(1, &[1], &[(1, 0), (1, 1)], 4);
        let at = a.len() - 2 - 4;
        a.insert(
            at,
            Rec::Conf {
                members: vec![addr(1, 0), addr(2, 0)],
                left: vec![],
                joined: vec![addr(2, 1)],
            },
        );
        for (k, s) in [2u64, 3].iter().enumerate() {
            a.insert(
                at + 1 + k,
                Rec::Deliver {
                    id: id(1, *s),
                    len: 1,
                    kind: 0,
                },
            );
        }
        let mut b = vec![
            Rec::Init {
                node: 2,
                pid: 102,
                inc: 1,
                slow: false,
            },
            Rec::Totem {
                rep: 1,
                seq: 5,
                members: vec![1, 2],
            },
            Rec::Conf {
                members: vec![addr(1, 0), addr(2, 0)],
                left: vec![],
                joined: vec![addr(2, 1)],
            },
        ];
        for s in [2, 3] {
            b.push(Rec::Deliver {
                id: id(1, s),
                len: 1,
                kind: 0,
            });
        }
        b.push(Rec::Drained);
        if let Rec::Totem { members, .. } = &mut a[1] {
            *members = vec![1, 2];
        }
        let r = run(a.clone(), b.clone());
        assert!(r.ok(), "{}", r.describe());
        b.remove(4); // node 2 misses seq 3
        let r = run(a, b);
        assert_eq!(r.lost, 1, "{}", r.describe());
    }
}
