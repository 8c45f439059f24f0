//! The simulated network: per-datagram loss (also per packet type),
//! duplication, random delay (reordering), symmetric and one-way partitions,
//! and clogged links that hold everything back for a while.

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
            drops: 0,
            dups: 0,
        }
    }

    /// Heals everything: no cuts, no clogs, no loss, no reordering.
    pub fn heal(&mut self) {
        self.cuts.clear();
        self.clogged_until.iter_mut().for_each(|c| *c = 0);
        self.params = NetParams::perfect(self.params.latency_ns);
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

    fn delay(&self, rng: &mut ChaCha8Rng, now: u64, link: usize) -> u64 {
        let jitter = if self.params.jitter_ns > 0 {
            rng.gen_range(0..=self.params.jitter_ns)
        } else {
            0
        };
        let at = now + self.params.latency_ns + jitter;
        let clog = self.clogged_until[link];
        if clog > now {
            at.max(clog + jitter)
        } else {
            at
        }
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
        let first = self.delay(rng, now, link);
        let second = if self.params.dup > 0.0 && rng.gen_bool(self.params.dup) {
            self.dups += 1;
            Some(self.delay(rng, now, link))
        } else {
            None
        };
        [Some(first), second]
    }
}
