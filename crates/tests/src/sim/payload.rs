//! Workload messages that identify and verify themselves.
//!
//! Layout (little endian): sender u32, per-sender counter u64, total length
//! u32, checksum u64 of the body, then the body, a pattern derived from the
//! message id. A delivery can thus be traced back to its submission, and a
//! truncated, spliced or corrupted reassembly is detected.

use totem_ring::NodeId;

/// Globally unique message id: the sender and its counter (which the
/// simulator keeps across the sender's incarnations).
pub type MsgId = u64;

pub const HEADER_LEN: usize = 24;

pub fn msg_id(sender: NodeId, counter: u64) -> MsgId {
    debug_assert!(counter < 1 << 40);
    (u64::from(sender) << 40) | counter
}

pub fn id_sender(id: MsgId) -> NodeId {
    (id >> 40) as NodeId
}

pub fn id_counter(id: MsgId) -> u64 {
    id & ((1 << 40) - 1)
}

fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn checksum(body: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ body.len() as u64;
    let mut chunks = body.chunks_exact(8);
    for c in &mut chunks {
        let w = u64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]);
        h = (h ^ w).wrapping_mul(0x0000_0100_0000_01b3).rotate_left(29);
    }
    for &b in chunks.remainder() {
        h = (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Writes the message `id` of `len` bytes (at least [`HEADER_LEN`]) into `out`.
pub fn build(id: MsgId, len: usize, out: &mut Vec<u8>) {
    assert!(len >= HEADER_LEN);
    out.clear();
    out.extend_from_slice(&id_sender(id).to_le_bytes());
    out.extend_from_slice(&id_counter(id).to_le_bytes());
    out.extend_from_slice(&(len as u32).to_le_bytes());
    out.extend_from_slice(&[0; 8]);
    let mut state = id;
    while out.len() < len {
        let w = splitmix(&mut state).to_le_bytes();
        let take = (len - out.len()).min(8);
        out.extend_from_slice(&w[..take]);
    }
    let sum = checksum(&out[HEADER_LEN..]);
    out[16..24].copy_from_slice(&sum.to_le_bytes());
}

/// Identifies a delivered payload and verifies it; `Err` says what is wrong.
pub fn parse(payload: &[u8]) -> Result<MsgId, &'static str> {
    if payload.len() < HEADER_LEN {
        return Err("payload shorter than its header");
    }
    let u32_at =
        |i: usize| u32::from_le_bytes([payload[i], payload[i + 1], payload[i + 2], payload[i + 3]]);
    let u64_at = |i: usize| u64::from(u32_at(i)) | (u64::from(u32_at(i + 4)) << 32);
    let sender = u32_at(0);
    let counter = u64_at(4);
    if sender == 0 || counter >= 1 << 40 {
        return Err("payload header names no valid message");
    }
    if u32_at(12) as usize != payload.len() {
        return Err("payload length differs from the length it was sent with");
    }
    if u64_at(16) != checksum(&payload[HEADER_LEN..]) {
        return Err("payload checksum mismatch");
    }
    let id = msg_id(sender, counter);
    let mut state = id;
    let mut chunks = payload[HEADER_LEN..].chunks(8);
    if !chunks.all(|c| c == &splitmix(&mut state).to_le_bytes()[..c.len()]) {
        return Err("payload body is not the body of the message its header names");
    }
    Ok(id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_corruption() {
        let mut buf = Vec::new();
        for len in [HEADER_LEN, 25, 31, 32, 200, 5000] {
            let id = msg_id(7, 12345);
            build(id, len, &mut buf);
            assert_eq!(buf.len(), len);
            assert_eq!(parse(&buf), Ok(id));
            if len > HEADER_LEN {
                let mut bad = buf.clone();
                bad[len - 1] ^= 1;
                assert!(parse(&bad).is_err());
                assert!(parse(&buf[..len - 1]).is_err());
            }
        }
    }
}
