//! Membership: Gather (joins with proc and fail sets, consensus), Commit
//! (the commit token's two passes), Recovery (old-ring frames re-broadcast
//! on the new ring) and the installation of the new configuration.

use crate::srp::{ConfigPending, DropReason, MemberState, Pending, Recovery, RingState, Timer};
use crate::wire::{self, CommitEntry, Token, UNFILLED};
use crate::{seq, ConfigKind, Destination, Instant, NodeId, RingId, Totem};

/// Ring seqs reserved by one stable-storage write (16 rounds of + 4).
const PERSIST_AHEAD: u64 = 64;

fn insert_sorted(v: &mut Vec<NodeId>, n: NodeId) -> bool {
    match v.binary_search(&n) {
        Ok(_) => false,
        Err(i) => {
            v.insert(i, n);
            true
        }
    }
}

fn minus(a: &[NodeId], b: &[NodeId]) -> Vec<NodeId> {
    a.iter().copied().filter(|n| !b.contains(n)).collect()
}

impl Totem {
    /// Starts (or restarts) a gather round believing `procs` alive and
    /// `fails` failed, announces it, and checks for consensus (a node that
    /// believes only itself alive forms its ring at once).
    pub(crate) fn enter_gather(&mut self, now: Instant, procs: &[NodeId], fails: &[NodeId]) {
        self.begin_gather(now, procs, fails);
        self.send_join();
        self.check_consensus(now);
    }

    /// The state change of [`Self::enter_gather`] without its join and its
    /// consensus check, for a caller that has more to merge first.
    fn begin_gather(&mut self, now: Instant, procs: &[NodeId], fails: &[NodeId]) {
        if self.state == MemberState::Recovery {
            self.abort_recovery();
        }
        self.cur.frozen = false;
        self.state = MemberState::Gather;
        self.proc_set.clear();
        self.fail_set.clear();
        insert_sorted(&mut self.proc_set, self.id);
        for &p in procs {
            insert_sorted(&mut self.proc_set, p);
        }
        for &f in fails {
            if f != self.id {
                insert_sorted(&mut self.proc_set, f);
                insert_sorted(&mut self.fail_set, f);
            }
        }
        self.joins.clear();
        self.pending_commit = None;
        self.commit = None;
        self.holding = false;
        for t in [
            Timer::TokenLoss,
            Timer::TokenRetransmit,
            Timer::Hold,
            Timer::Merge,
        ] {
            self.disarm(t);
        }
        self.arm(Timer::Join, now.plus_ms(self.cfg.join));
        self.arm(Timer::Consensus, now.plus_ms(self.cfg.consensus_ms()));
    }

    /// Recovery failed: go back to the previous ring's state, which still
    /// holds every old-ring frame (including those recovered meanwhile).
    fn abort_recovery(&mut self) {
        self.settle_refs();
        if let Some(old) = self.old.take() {
            let new = std::mem::replace(&mut self.cur, old);
            self.spare = Some(new);
        }
        self.recovery = Recovery::default();
        self.ring_members = match &self.installed {
            Some((_, m)) => m.clone(),
            None => vec![self.id],
        };
    }

    fn send_join(&mut self) {
        let j = wire::Join {
            sender: self.id,
            ring_seq: self.high_ring_seq,
            procs: self.proc_set.clone(),
            fails: self.fail_set.clone(),
        };
        let mut b = self.take_buf();
        wire::encode_join(&j, &mut b);
        self.txq.push_back((Destination::Multicast, b));
    }

    pub(crate) fn on_join(&mut self, now: Instant, j: wire::Join) {
        // Refused before it moves us anywhere (out of the operational
        // state above all): a join that alone names more processors than a
        // ring can hold (`merge_join` also holds a gather round to that).
        let named: std::collections::BTreeSet<NodeId> = j
            .procs
            .iter()
            .chain(&j.fails)
            .chain(&self.ring_members)
            .chain(std::iter::once(&j.sender))
            .copied()
            .collect();
        if named.len() > self.cfg.max_ring_members() {
            return self.stats.drop(DropReason::TooManyMembers);
        }
        self.high_ring_seq = self.high_ring_seq.max(j.ring_seq);
        match self.state {
            MemberState::Left => {}
            MemberState::Operational => {
                // A join from before this ring was formed is stale.
                if j.ring_seq < self.cur.ring.seq {
                    return self.stats.drop(DropReason::StaleMembership);
                }
                // Its sender has given up on us and forms a ring without us.
                // If it is not on our ring, gathering would only give us
                // another ring without it, which is what we have: one new
                // ring per such join heard (Corosync's
                // `ignore_join_under_operational`). Merge detection brings us
                // together once it hears us again. A member that gives up on
                // us (one that failed to receive) leaves our ring: go on
                // without it now rather than at the token loss.
                if j.fails.contains(&self.id) && !self.ring_members.contains(&j.sender) {
                    return self.stats.drop(DropReason::StaleMembership);
                }
                let procs = self.ring_members.clone();
                self.gather_from_join(now, &procs, j);
            }
            MemberState::Commit | MemberState::Recovery => {
                let new_seq = self.commit.as_ref().map_or(0, |c| c.ring.seq);
                if j.ring_seq < new_seq {
                    return self.stats.drop(DropReason::StaleMembership);
                }
                let mut procs = self.proc_set.clone();
                procs.extend_from_slice(&self.ring_members);
                self.gather_from_join(now, &procs, j);
            }
            MemberState::Gather => {
                // A join from before our last ring was formed is stale too:
                // its sender had not heard of that ring. Its sets (above
                // all a fail set that names us, from the round that left us
                // out) describe a round that is over; acting on them failed
                // its sender, formed another ring of one at once, and, with
                // every such ring's traffic pulling the others into gather,
                // fed a storm of ~120,000 rings of one a second (sim seed
                // 105588). The sender learns our seq from our joins and its
                // next join counts.
                let installed = self.installed.as_ref().map_or(0, |(r, _)| r.seq);
                if j.ring_seq < installed {
                    return self.stats.drop(DropReason::StaleMembership);
                }
                self.gather_join(now, j)
            }
        }
    }

    /// A join moves us from another state into gather. As Corosync's
    /// `memb_join_process`, the join's sets are merged into ours *before*
    /// the round is announced and consensus is looked for. Checking first
    /// (what `enter_gather` does) was a livelock: a node alone on its ring
    /// starts the round with proc = {itself}, which is consensus at once, so
    /// every join it heard made it install yet another ring of one (and send
    /// a join naming the others, which did the same to them). Nine nodes
    /// started apart never formed a ring: ~55,000 one-node rings a second.
    fn gather_from_join(&mut self, now: Instant, procs: &[NodeId], j: wire::Join) {
        self.begin_gather(now, procs, &[]);
        self.merge_join(j);
        self.send_join();
        self.check_consensus(now);
    }

    fn gather_join(&mut self, now: Instant, j: wire::Join) {
        if self.merge_join(j) {
            self.pending_commit = None;
            self.send_join();
            self.arm(Timer::Consensus, now.plus_ms(self.cfg.consensus_ms()));
        }
        self.check_consensus(now);
    }

    /// Merges one join into our gather round (its sets, and whether its
    /// sender agrees with us); true when our sets grew.
    fn merge_join(&mut self, j: wire::Join) -> bool {
        let s = j.sender;
        if self.fail_set.contains(&s) {
            return false;
        }
        // A join that would take the processor set past what a ring can
        // hold is refused whole: taken, our own joins and the commit token
        // could no longer be sent, and the round could never end.
        let new_procs = j
            .procs
            .iter()
            .chain(&j.fails)
            .chain(std::iter::once(&s))
            .filter(|p| self.proc_set.binary_search(p).is_err())
            .collect::<std::collections::BTreeSet<_>>()
            .len();
        if self.proc_set.len() + new_procs > self.cfg.max_ring_members() {
            self.stats.drop(DropReason::TooManyMembers);
            return false;
        }
        let mut changed = false;
        if j.fails.contains(&self.id) || j.fails.contains(&s) {
            // The sender leaves, or has given up on us: go on without it.
            insert_sorted(&mut self.proc_set, s);
            changed |= insert_sorted(&mut self.fail_set, s);
            self.joins.retain(|x| x.sender != s);
        } else {
            for &p in &j.procs {
                changed |= insert_sorted(&mut self.proc_set, p);
            }
            // Whom the sender failed is taken on trust only from a member of
            // our own last ring, as Corosync's `memb_join_process` does.
            // Taken from anyone, one node's failures spread to all: every
            // node that adopts them sends them on, the failed nodes see
            // themselves failed and fail the senders in turn, and a cluster
            // with lossy links splinters into rings of one that re-merge and
            // splinter again (membership churn without end).
            let trusted = self.installed.as_ref().is_some_and(|(_, m)| m.contains(&s));
            for &f in &j.fails {
                if f != self.id {
                    changed |= insert_sorted(&mut self.proc_set, f);
                    if trusted {
                        changed |= insert_sorted(&mut self.fail_set, f);
                    }
                }
            }
            match self.joins.iter_mut().find(|x| x.sender == s) {
                Some(x) => *x = j,
                None => self.joins.push(j),
            }
        }
        changed
    }

    fn agreed(&self, p: NodeId) -> bool {
        self.joins
            .iter()
            .any(|j| j.sender == p && j.procs == self.proc_set && j.fails == self.fail_set)
    }

    fn gather_members(&self) -> Vec<NodeId> {
        minus(&self.proc_set, &self.fail_set)
    }

    fn check_consensus(&mut self, now: Instant) {
        if self.state != MemberState::Gather || self.pending_commit.is_some() {
            return;
        }
        let members = self.gather_members();
        if members.iter().all(|&p| p == self.id || self.agreed(p)) && members[0] == self.id {
            self.start_commit(now, members);
        }
    }

    pub(crate) fn on_join_timer(&mut self, now: Instant) {
        if self.state == MemberState::Gather {
            // While a commit token waits for our disk, we have agreed:
            // more joins would only make the others doubt it.
            if self.pending_commit.is_none() {
                self.send_join();
            }
            self.arm(Timer::Join, now.plus_ms(self.cfg.join));
        }
    }

    /// Members that did not agree in time are declared failed. If all
    /// agreed but no commit token has come yet, consensus starts over, as
    /// Corosync's `memb_state_consensus_timeout_expired` does: every member
    /// must agree again (their joins repeat on the join timer) before the
    /// next timeout, and one that does not — a representative that died
    /// after agreeing — is failed then. Failing the representative at once
    /// cut every ring whose commit token was slow (retransmitted on a lossy
    /// link): the members downstream failed it while the token was on its
    /// way, and it formed a ring without them, which they failed in turn.
    pub(crate) fn on_consensus_timeout(&mut self, now: Instant) {
        if self.state != MemberState::Gather {
            return;
        }
        self.pending_commit = None;
        let members = self.gather_members();
        let failed: Vec<NodeId> = members
            .iter()
            .copied()
            .filter(|&p| p != self.id && !self.agreed(p))
            .collect();
        if failed.is_empty() && members[0] != self.id {
            self.joins.clear();
        }
        if !failed.is_empty() {
            for f in failed {
                insert_sorted(&mut self.fail_set, f);
                self.joins.retain(|x| x.sender != f);
            }
            self.send_join();
        }
        self.arm(Timer::Consensus, now.plus_ms(self.cfg.consensus_ms()));
        self.check_consensus(now);
    }

    /// Asks for `seq` to be made durable. The write reserves a few rounds
    /// ahead, so that the membership rounds that usually follow one another
    /// (a failed attempt, a merge) don't each wait for the disk.
    fn request_persist(&mut self, seq: u64) {
        if seq > self.persist_requested {
            self.persist_requested = seq + PERSIST_AHEAD;
            self.push_event(Pending::Persist(self.persist_requested));
        }
    }

    /// As representative: propose the new ring once its seq is on disk.
    fn start_commit(&mut self, now: Instant, members: Vec<NodeId>) {
        let mut s = self.high_ring_seq;
        for j in &self.joins {
            if members.contains(&j.sender) {
                s = s.max(j.ring_seq);
            }
        }
        let new_seq = s + 4;
        self.high_ring_seq = new_seq;
        let entries = members.iter().map(|&n| unfilled(n)).collect();
        let c = wire::Commit {
            sender: self.id,
            ring: RingId {
                rep: self.id,
                seq: new_seq,
            },
            pass: 1,
            entries,
        };
        self.pending_commit = Some(c);
        if new_seq > self.persisted {
            self.request_persist(new_seq);
        } else {
            self.resume_commit(now);
        }
    }

    /// The pending commit token may go on once its ring seq is persisted.
    pub(crate) fn resume_commit(&mut self, now: Instant) {
        let Some(c) = self.pending_commit.as_ref() else {
            return;
        };
        if c.ring.seq > self.persisted || self.state != MemberState::Gather {
            return;
        }
        let mut c = self.pending_commit.take().expect("checked");
        let mine = CommitEntry {
            node: self.id,
            old_ring: self
                .installed
                .as_ref()
                .map_or(RingId::default(), |(r, _)| *r),
            aru: self.cur.my_aru,
            high: self.cur.high,
            safe_line: self.cur.safe_line,
        };
        let Some(e) = c.entries.iter_mut().find(|e| e.node == self.id) else {
            return;
        };
        *e = mine;
        self.state = MemberState::Commit;
        self.cur.frozen = true;
        self.disarm(Timer::Join);
        self.disarm(Timer::Consensus);
        self.arm(Timer::TokenLoss, now.plus_ms(self.cfg.token));
        self.send_commit(now, c);
    }

    fn send_commit(&mut self, now: Instant, mut c: wire::Commit) {
        c.sender = self.id;
        let i = c
            .entries
            .iter()
            .position(|e| e.node == self.id)
            .unwrap_or(0);
        let to = c.entries[(i + 1) % c.entries.len()].node;
        // Kept as the token to retransmit until the next token (commit or
        // regular) shows it arrived, as Corosync does: a commit token
        // passes every member twice, so without retransmission a lossy link
        // makes a large ring unreachable (16 nodes at 24% loss: one commit
        // in 5,000 got round, and the cluster churned through gather rounds
        // for ever — simulator seed 108023).
        let mut lt = std::mem::take(&mut self.last_token);
        wire::encode_commit(&c, &mut lt);
        self.last_token = lt;
        self.last_token_target = to;
        self.commit = Some(c);
        let mut b = self.take_buf();
        b.extend_from_slice(&self.last_token);
        self.send_unicast(to, b);
        if to != self.id {
            self.arm(
                Timer::TokenRetransmit,
                now.plus_ms(self.cfg.token_retransmit_ms()),
            );
        } else {
            self.disarm(Timer::TokenRetransmit);
        }
    }

    pub(crate) fn on_commit(&mut self, now: Instant, c: wire::Commit) {
        let filled = c.entries.iter().all(|e| e.old_ring.rep != UNFILLED);
        let Some(me) = c.entries.iter().find(|e| e.node == self.id) else {
            return self.stats.drop(DropReason::StaleMembership);
        };
        let same_ring = self.commit.as_ref().is_some_and(|x| x.ring == c.ring);
        let i_am_rep = c.ring.rep == self.id;
        if c.ring.rep != c.entries[0].node {
            return self.stats.drop(DropReason::StaleMembership);
        }
        match (c.pass, self.state) {
            (1, MemberState::Gather) if !i_am_rep && me.old_ring.rep == UNFILLED => {
                let nodes: Vec<NodeId> = c.entries.iter().map(|e| e.node).collect();
                let newer = self
                    .installed
                    .as_ref()
                    .is_none_or(|(r, _)| c.ring.seq > r.seq);
                if nodes != self.gather_members() && newer && self.pending_commit.is_none() {
                    // A ring we are named in but will not join. Its
                    // representative waits in the commit state and takes
                    // joins only of that ring's seq or later (older ones may
                    // be from the round it ended): our joins now carry it,
                    // and one goes at once, so it returns to gather now
                    // rather than after a token timeout, in which it sends
                    // nothing and the others' consensus timers fail it. With
                    // timeouts like these (sim seed 21530572479360885: 7
                    // nodes, token 155 ms, consensus 186) that kept one node
                    // out of every ring for seconds. Not while a commit we
                    // took waits for the disk: our joins stay back then.
                    self.high_ring_seq = self.high_ring_seq.max(c.ring.seq);
                    self.send_join();
                }
                if nodes != self.gather_members() || !newer {
                    return self.stats.drop(DropReason::StaleMembership);
                }
                let seq = c.ring.seq;
                // Only a commit token we take part in raises our ring seq: a
                // rejected one must not make our joins look newer than it.
                self.high_ring_seq = self.high_ring_seq.max(seq);
                self.pending_commit = Some(c);
                if seq > self.persisted {
                    self.request_persist(seq);
                } else {
                    self.resume_commit(now);
                }
            }
            (1 | 2, MemberState::Commit)
                if (c.pass == 1) == i_am_rep
                    && same_ring
                    && filled
                    && !recovery_ranges_fit(&c, self.cfg.retransmit_queue) =>
            {
                // A commit every member sees alike, so every member drops
                // it: the ring then forms again from a new gather.
                self.stats.drop(DropReason::Malformed)
            }
            (1, MemberState::Commit) if i_am_rep && same_ring && filled => {
                let mut c = c;
                c.pass = 2;
                self.enter_recovery(now, &c);
                self.send_commit(now, c);
            }
            (2, MemberState::Commit) if !i_am_rep && same_ring && filled => {
                self.enter_recovery(now, &c);
                self.send_commit(now, c);
            }
            (2, MemberState::Recovery)
                if i_am_rep && self.cur.ring == c.ring && !self.recovery.token_started =>
            {
                self.recovery.token_started = true;
                let mut tok = Token::new(self.id, c.ring, self.cfg.initial_seq);
                // token_seq starts where message seqs do, so tests near
                // wraparound exercise both.
                tok.token_seq = self.cfg.initial_seq;
                tok.target = self.id;
                self.token_visit(now, &mut tok);
            }
            _ => self.stats.drop(DropReason::StaleMembership),
        }
    }

    /// Second pass of the commit token: switch to the new ring and plan which
    /// old-ring frames to re-broadcast.
    fn enter_recovery(&mut self, now: Instant, c: &wire::Commit) {
        let mut rec = Recovery::default();
        if let Some((old_ring, _)) = &self.installed {
            let group: Vec<&CommitEntry> = c
                .entries
                .iter()
                .filter(|e| e.old_ring == *old_ring)
                .collect();
            rec.trans_members = group.iter().map(|e| e.node).collect();
            rec.low = group.iter().map(|e| e.aru).fold(self.cur.my_aru, seq::min);
            rec.high = group.iter().map(|e| e.high).fold(self.cur.high, seq::max);
            rec.max_safe = group
                .iter()
                .map(|e| e.safe_line)
                .fold(self.cur.safe_line, seq::max);
            rec.next = rec.low.wrapping_add(1);
            rec.active = !crate::mutant!(self, NoRecovery);
        }
        let mut fresh = self
            .spare
            .take()
            .unwrap_or_else(|| RingState::new(self.cfg.retransmit_queue));
        fresh.reset(c.ring, self.cfg.initial_seq);
        self.settle_refs();
        let mut old = std::mem::replace(&mut self.cur, fresh);
        old.frozen = true;
        // Every member of the old ring holds every frame up to its stable
        // line, and this node has delivered them: with nothing pointing into
        // the store any more, they go, as the next token visit would have
        // released them, so that the window reaches the frames the recovery
        // brings (a node whose events waited kept frames behind the line).
        old.store
            .release_upto(seq::min(old.safe_line, old.delivered));
        self.old = Some(old);
        self.ring_members = c.entries.iter().map(|e| e.node).collect();
        self.commit = Some(c.clone());
        self.recovery = rec;
        self.state = MemberState::Recovery;
        // A message cut into fragments on the old ring starts over on the
        // new one, whole: its remaining fragments would have nothing to join.
        self.head_offset = 0;
        let start = self.cfg.initial_seq;
        self.my_last_fcc = 0;
        self.my_last_fcc_bytes = 0;
        self.my_last_backlog = 0;
        self.seq_unchanged = 0;
        self.last_seen_seq = start;
        self.prev_token_seq_seen = start;
        self.last_fwd_seq = start;
        self.last_visit_aru = start;
        self.fail_recv_count = 0;
        self.last_token.clear();
        self.holding = false;
        self.arm(Timer::TokenLoss, now.plus_ms(self.cfg.token));
    }

    pub(crate) fn on_token_loss(&mut self, now: Instant) {
        if !matches!(
            self.state,
            MemberState::Operational | MemberState::Recovery | MemberState::Commit
        ) {
            return;
        }
        self.stats.token_lost += 1;
        let mut procs = self.ring_members.clone();
        procs.extend_from_slice(&self.proc_set);
        if let Some((_, m)) = &self.installed {
            procs.extend_from_slice(m);
        }
        if let Some(c) = &self.commit {
            procs.extend(c.entries.iter().map(|e| e.node));
        }
        self.enter_gather(now, &procs, &[]);
    }

    pub(crate) fn on_merge_detect(&mut self, now: Instant, sender: NodeId, ring: RingId) {
        self.high_ring_seq = self.high_ring_seq.max(ring.seq);
        if self.state == MemberState::Operational
            && ring != self.cur.ring
            && !self.ring_members.contains(&sender)
        {
            let mut procs = self.ring_members.clone();
            procs.push(sender);
            self.enter_gather(now, &procs, &[]);
        }
    }

    /// Recovery is complete everywhere: deliver what is left of the old ring
    /// (its regular configuration, then the transitional one), then install
    /// the new regular configuration.
    pub(crate) fn install(&mut self, now: Instant) {
        let mut old = self.old.take().expect("install happens in recovery");
        let rec = std::mem::take(&mut self.recovery);
        let prev = self.installed.take();
        let members = self.ring_members.clone();
        let late_old = crate::mutant!(self, OldMessagesInNewRegular);
        if let Some((_, old_members)) = &prev {
            self.finish_old_regular(&mut old, &rec);
            if !crate::mutant!(self, SkipTransitional) {
                let trans = if crate::mutant!(self, WrongTransitional) {
                    members.clone()
                } else {
                    rec.trans_members.clone()
                };
                self.stats.config_changes += 1;
                self.push_event(Pending::Config(Box::new(ConfigPending {
                    kind: ConfigKind::Transitional,
                    left: minus(old_members, &trans),
                    members: trans,
                    joined: Vec::new(),
                    ring: self.cur.ring,
                })));
            }
            if !late_old {
                self.finish_old_transitional(&mut old, &rec);
            }
        }
        let prev_members = prev.as_ref().map_or(&[][..], |(_, m)| m.as_slice());
        self.stats.config_changes += 1;
        self.push_event(Pending::Config(Box::new(ConfigPending {
            kind: ConfigKind::Regular,
            left: minus(prev_members, &members),
            joined: minus(&members, prev_members),
            members: members.clone(),
            ring: self.cur.ring,
        })));
        if late_old && prev.is_some() {
            self.finish_old_transitional(&mut old, &rec);
        }
        self.installed = Some((self.cur.ring, members));
        self.spare = Some(old);
        self.state = MemberState::Operational;
        // Everything on the new ring so far is recovery traffic.
        self.cur.delivered = self.cur.my_aru;
        self.fail_recv_count = 0;
        self.last_visit_aru = self.cur.my_aru;
        self.commit = None;
        if self.cur.ring.rep == self.id {
            self.arm(Timer::Merge, now.plus_ms(self.cfg.merge));
        }
    }
}

fn unfilled(node: NodeId) -> CommitEntry {
    CommitEntry {
        node,
        old_ring: RingId {
            rep: UNFILLED,
            seq: 0,
        },
        aru: 0,
        high: 0,
        safe_line: 0,
    }
}

/// Whether every old ring named in a filled commit token spans, from its
/// members' lowest aru to their highest seq, no more than one retransmit
/// store. Frames go out only within half a store of the token's aru, which
/// no member's aru is below, so a correct ring spans less; a buggy peer's
/// entry could name 2^31 sequence numbers, which recovery and the
/// transitional delivery would each walk one by one on the protocol thread,
/// for seconds (and frames past the store could never be taken in
/// recovery: see `old_frame_beyond_store`).
fn recovery_ranges_fit(c: &wire::Commit, store: u32) -> bool {
    let limit = store;
    c.entries.iter().all(|e| {
        let group = c.entries.iter().filter(|x| x.old_ring == e.old_ring);
        let low = group.clone().map(|x| x.aru).fold(e.aru, seq::min);
        let high = group.map(|x| x.high).fold(e.high, seq::max);
        seq::le(low, high) && seq::dist(low, high) <= limit
    })
}
