//! The simulated network: per-datagram loss (also per packet type),
//! duplication, random delay (reordering), symmetric and one-way partitions,
//! and clogged links that hold everything back for a while.
//!
//! Links have a bandwidth: each directed link carries one datagram at a time
//! (`NetParams::ps_per_byte`), so a burst crosses it in the time its bytes
//! take, as on a real wire. Without it a node that drained a full send queue
//! at once (a ring of one, whose token never leaves it, rotates in no time)
//! put megabytes on the wire in zero time and every other node received
//! all of it at the same nanosecond: 29,434 frames from eight such rings,
//! 334,519 deliveries at one instant in sim seed 100525.

use rand::Rng;
use rand_chacha::ChaCha8Rng;
use totem_ring::wire::{peek_header, PacketType};

use super::swarm::NetParams;

/// Directed links cut by one partition (index `from * n + to`).
struct Cut {
    id: u64,
    blocked: Vec<bool>,
}

pub struct Net {
    n: usize,
    params: NetParams,
    cuts: Vec<Cut>,
    /// Per directed link: held back until this time.
    clogged_until: Vec<u64>,
    /// Per directed link: busy carrying earlier datagrams until this time
    /// (picoseconds, so that short datagrams do not round to nothing).
    busy_until_ps: Vec<u64>,
    pub drops: u64,
    pub dups: u64,
}

impl Net {
    pub fn new(n: usize, params: NetParams) -> Net {
        Net {
            n,
            params,
            cuts: Vec::new(),
            clogged_until: vec![0; n * n],
            busy_until_ps: vec![0; n * n],
            drops: 0,
            dups: 0,
        }
    }

    /// Heals everything: no cuts, no clogs, no loss, no reordering (the
    /// links keep their latency and bandwidth).
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.clogged_until.iter_mut().for_each(|c| *c = 0);
        self.params = NetParams::perfect(self.params.latency_ns, self.params.ps_per_byte);
    }

    pub fn add_cut(&mut self, id: u64, blocked: Vec<bool>) {
        debug_assert_eq!(blocked.len(), self.n * self.n);
        self.cuts.push(Cut { id, blocked });
    }

    pub fn remove_cut(&mut self, id: u64) {
        self.cuts.retain(|c| c.id != id);
    }

    pub fn clog(&mut self, from: usize, to: usize, until: u64) {
        let c = &mut self.clogged_until[from * self.n + to];
        *c = (*c).max(until);
    }

    fn loss(&self, bytes: &[u8]) -> f64 {
        let p = &self.params;
        let extra = match peek_header(bytes) {
            Ok((PacketType::Token, _)) => p.loss_token,
            Ok((PacketType::Commit, _)) => p.loss_commit,
            Ok((PacketType::Join, _)) => p.loss_join,
            Ok((PacketType::Mcast, _)) => p.loss_mcast,
            _ => 0.0,
        };
        (p.loss + extra).min(1.0)
    }

    /// Arrival time of one datagram of `len` bytes put on `link` at `now`:
    /// it waits for the link (busy with earlier datagrams, or clogged), takes
    /// its bytes' time to cross, then the latency and any jitter.
    fn delay(&mut self, rng: &mut ChaCha8Rng, now: u64, link: usize, len: usize) -> u64 {
        let jitter = if self.params.jitter_ns > 0 {
            rng.gen_range(0..=self.params.jitter_ns)
        } else {
            0
        };
        let start_ps = (now.max(self.clogged_until[link]) * 1_000).max(self.busy_until_ps[link]);
        let done_ps = start_ps + len as u64 * self.params.ps_per_byte;
        self.busy_until_ps[link] = done_ps;
        done_ps.div_ceil(1_000) + self.params.latency_ns + jitter
    }

    /// Arrival times of one datagram from `from` to `to` sent at `now`:
    /// none (dropped), one, or two (duplicated).
    pub fn route(
        &mut self,
        rng: &mut ChaCha8Rng,
        now: u64,
        from: usize,
        to: usize,
        bytes: &[u8],
    ) -> [Option<u64>; 2] {
        let link = from * self.n + to;
        if self.cuts.iter().any(|c| c.blocked[link]) {
            self.drops += 1;
            return [None, None];
        }
        let loss = self.loss(bytes);
        if loss > 0.0 && rng.gen_bool(loss) {
            self.drops += 1;
            return [None, None];
        }
        let first = self.delay(rng, now, link, bytes.len());
        let second = if self.params.dup > 0.0 && rng.gen_bool(self.params.dup) {
            self.dups += 1;
            Some(self.delay(rng, now, link, bytes.len()))
        } else {
            None
        };
        [Some(first), second]
    }
}

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;
    use crate::sim::swarm::LINK_PS_PER_BYTE;

    const LATENCY: u64 = 100_000;
    /// 367 bytes at 1 Gbit/s.
    const FRAME_NS: u64 = 2_936;

    fn net(n: usize) -> (Net, ChaCha8Rng) {
        let params = NetParams::perfect(LATENCY, LINK_PS_PER_BYTE);
        (Net::new(n, params), ChaCha8Rng::seed_from_u64(1))
    }

    fn arrival(net: &mut Net, rng: &mut ChaCha8Rng, now: u64, to: usize) -> u64 {
        net.route(rng, now, 0, to, &[0; 367])[0].expect("a perfect network delivers")
    }

    /// A ring of one that drains a full send queue puts thousands of frames
    /// on the wire at one instant (sim seed 100525: eight such rings, 29,434
    /// frames). They cross a link one after another, not all at the same
    /// nanosecond.
    #[test]
    fn a_burst_crosses_a_link_one_datagram_at_a_time() {
        let (mut net, mut rng) = net(3);
        let burst: Vec<u64> = (0..5_000)
            .map(|_| arrival(&mut net, &mut rng, 1_000, 1))
            .collect();
        assert_eq!(burst[0], 1_000 + FRAME_NS + LATENCY);
        assert!(burst.windows(2).all(|w| w[1] - w[0] == FRAME_NS));
        // Another link is not behind that burst.
        assert_eq!(
            arrival(&mut net, &mut rng, 1_000, 2),
            1_000 + FRAME_NS + LATENCY
        );
        // Once the burst has crossed, the link is free again.
        let later = burst[4_999] - LATENCY + 1;
        assert_eq!(
            arrival(&mut net, &mut rng, later, 1),
            later + FRAME_NS + LATENCY
        );
    }

    /// What a clogged link held back crosses it at link speed once it
    /// clears, not all at the instant it clears.
    #[test]
    fn a_clogged_link_releases_its_backlog_at_link_speed() {
        let (mut net, mut rng) = net(2);
        net.clog(0, 1, 50_000_000);
        let held: Vec<u64> = (0..100)
            .map(|i| arrival(&mut net, &mut rng, 1_000 + i, 1))
            .collect();
        assert_eq!(held[0], 50_000_000 + FRAME_NS + LATENCY);
        assert!(held.windows(2).all(|w| w[1] - w[0] == FRAME_NS));
    }
}
