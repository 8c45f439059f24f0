//! The wire codec: round trips for every packet type, fixed sizes, and
//! rejection of malformed input.

use proptest::prelude::*;
use totem_ring::wire::{self, CommitEntry, FragKind, McastHeader, Packet, Token};
use totem_ring::RingId;

fn ring() -> impl Strategy<Value = RingId> {
    (1u32.., 0..=wire::MAX_RING_SEQ).prop_map(|(rep, seq)| RingId { rep, seq })
}

fn nodes() -> impl Strategy<Value = Vec<u32>> {
    proptest::collection::btree_set(1u32.., 0..20).prop_map(|s| s.into_iter().collect())
}

fn token() -> impl Strategy<Value = Token> {
    (
        (
            1u32..,
            any::<u32>(),
            ring(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
        ),
        (
            any::<u32>(),
            any::<u32>(),
            any::<u32>(),
            any::<bool>(),
            any::<u32>(),
        ),
        proptest::collection::vec(any::<u32>(), 0..=wire::MAX_RTR),
    )
        .prop_map(
            |(
                (sender, target, ring, token_seq, seq, aru, aru_addr),
                (fcc, fcc_bytes, backlog, flg, raddr),
                rtr,
            )| {
                let mut t = Token::new(sender, ring, seq);
                t.target = target;
                t.token_seq = token_seq;
                t.aru = aru;
                t.aru_addr = aru_addr;
                t.fcc = fcc;
                t.fcc_bytes = fcc_bytes;
                t.backlog = backlog;
                t.retrans_flg = flg;
                t.retrans_addr = raddr;
                t.rtr_len = rtr.len() as u8;
                t.rtr[..rtr.len()].copy_from_slice(&rtr);
                t
            },
        )
}

fn messages() -> impl Strategy<Value = Vec<(u8, Vec<u8>)>> {
    proptest::collection::vec(
        (0u8..4, proptest::collection::vec(any::<u8>(), 0..300)),
        1..8,
    )
}

fn kind(k: u8) -> FragKind {
    match k {
        0 => FragKind::Whole,
        1 => FragKind::First,
        2 => FragKind::Middle,
        _ => FragKind::Last,
    }
}

fn mcast_bytes(h: &McastHeader, msgs: &[(u8, Vec<u8>)]) -> Vec<u8> {
    let mut b = Vec::new();
    wire::encode_mcast_header(h, &mut b);
    let at = b.len();
    b.extend_from_slice(&0u16.to_le_bytes());
    for (k, d) in msgs {
        wire::push_message(&mut b, at, kind(*k), d);
    }
    b
}

fn header() -> impl Strategy<Value = McastHeader> {
    (
        1u32..,
        ring(),
        any::<u32>(),
        1u32..,
        0u8..8,
        any::<u32>(),
        any::<u32>(),
    )
        .prop_map(
            |(sender, ring, seq, origin, flags, prev_own, delivered_upto)| McastHeader {
                sender,
                ring,
                seq,
                origin,
                flags: flags & !wire::MCAST_ENCAPSULATED,
                prev_own,
                delivered_upto,
            },
        )
}

proptest! {
    #[test]
    fn token_round_trip(t in token()) {
        let mut b = Vec::new();
        wire::encode_token(&t, &mut b);
        prop_assert_eq!(b.len(), wire::TOKEN_FIXED_LEN + 4 * t.rtr_len as usize);
        let mut back = Token::new(1, RingId::default(), 0);
        wire::decode_token_into(&b, &mut back).unwrap();
        prop_assert_eq!(&back, &t);
        prop_assert_eq!(wire::decode(&b).unwrap(), Packet::Token(Box::new(t)));
    }

    #[test]
    fn mcast_round_trip(h in header(), msgs in messages()) {
        let b = mcast_bytes(&h, &msgs);
        let m = wire::decode_mcast(&b).unwrap();
        prop_assert_eq!(m.header, h);
        let back: Vec<(FragKind, Vec<u8>)> =
            wire::Messages::new(m.payload).unwrap().map(|r| r.map(|(k, d)| (k, d.to_vec()))).collect::<Result<_, _>>().unwrap();
        let want: Vec<(FragKind, Vec<u8>)> = msgs.iter().map(|(k, d)| (kind(*k), d.clone())).collect();
        prop_assert_eq!(back, want);
        let size: usize = msgs.iter().map(|(_, d)| wire::MSG_HEADER_LEN + d.len()).sum();
        prop_assert_eq!(b.len(), wire::MCAST_HEADER_LEN + wire::PAYLOAD_COUNT_LEN + size);
    }

    #[test]
    fn padded_mcast_decodes_to_the_same_messages(h in header(), msgs in messages(), pad in 1usize..200, junk in 1u8..=255) {
        let plain = mcast_bytes(&h, &msgs);
        let mut b = plain.clone();
        wire::pad_payload(&mut b, plain.len() + pad);
        prop_assert_eq!(b.len(), plain.len() + pad);
        let decoded = |bytes: &[u8]| -> Result<Vec<(FragKind, Vec<u8>)>, wire::DecodeError> {
            let m = wire::decode_mcast(bytes)?;
            wire::Messages::new(m.payload)?.map(|r| r.map(|(k, d)| (k, d.to_vec()))).collect()
        };
        prop_assert_eq!(decoded(&b).unwrap(), decoded(&plain).unwrap());
        // Padding is zeros; anything else after the last message is malformed.
        let at = plain.len() + (pad - 1) / 2;
        b[at] = junk;
        prop_assert_eq!(wire::decode_mcast(&b).err(), Some(wire::DecodeError::Malformed));
    }

    #[test]
    fn encapsulated_round_trip(outer in header(), inner in header(), msgs in messages()) {
        let inner_bytes = mcast_bytes(&inner, &msgs);
        let mut o = outer;
        o.flags = wire::MCAST_ENCAPSULATED;
        let mut b = Vec::new();
        wire::encode_mcast_header(&o, &mut b);
        b.extend_from_slice(&inner_bytes);
        let m = wire::decode_mcast(&b).unwrap();
        prop_assert_eq!(m.header, o);
        prop_assert_eq!(m.payload, &inner_bytes[..]);
        prop_assert_eq!(wire::decode_mcast(m.payload).unwrap().header, inner);
    }

    #[test]
    fn join_round_trip(sender in 1u32.., ring_seq in 0..=wire::MAX_RING_SEQ, procs in nodes(), fails in nodes()) {
        let p = Packet::Join(wire::Join { sender, ring_seq, procs: procs.clone(), fails: fails.clone() });
        let mut b = Vec::new();
        wire::encode(&p, &mut b);
        prop_assert_eq!(b.len(), wire::JOIN_FIXED_LEN + 4 * (procs.len() + fails.len()));
        prop_assert_eq!(wire::decode(&b).unwrap(), p);
    }

    #[test]
    fn ring_seqs_past_the_limit_are_malformed(sender in 1u32.., over in 1..=u64::MAX - wire::MAX_RING_SEQ, rep in 1u32..) {
        let seq = wire::MAX_RING_SEQ + over;
        let mut b = Vec::new();
        wire::encode(&Packet::Join(wire::Join { sender, ring_seq: seq, procs: vec![sender], fails: vec![] }), &mut b);
        prop_assert_eq!(wire::decode(&b), Err(wire::DecodeError::Malformed));
        b.clear();
        wire::encode_ring_packet(wire::PacketType::MergeDetect, sender, RingId { rep, seq }, &mut b);
        prop_assert_eq!(wire::decode(&b), Err(wire::DecodeError::Malformed));
    }

    #[test]
    fn commit_round_trip(sender in 1u32.., r in ring(), pass in 1u8..=2, members in nodes(), vals in proptest::collection::vec((ring(), any::<u32>(), any::<u32>(), any::<u32>()), 20)) {
        prop_assume!(!members.is_empty());
        let entries: Vec<CommitEntry> = members.iter().zip(vals).map(|(&node, (old_ring, aru, high, safe_line))| CommitEntry { node, old_ring, aru, high, safe_line }).collect();
        let p = Packet::Commit(wire::Commit { sender, ring: r, pass, entries: entries.clone() });
        let mut b = Vec::new();
        wire::encode(&p, &mut b);
        prop_assert_eq!(b.len(), wire::COMMIT_FIXED_LEN + wire::COMMIT_ENTRY_LEN * entries.len());
        prop_assert_eq!(wire::decode(&b).unwrap(), p);
    }

    #[test]
    fn ring_packets_round_trip(sender in 1u32.., r in ring(), hold in any::<bool>()) {
        let p = if hold { Packet::HoldCancel { sender, ring: r } } else { Packet::MergeDetect { sender, ring: r } };
        let mut b = Vec::new();
        wire::encode(&p, &mut b);
        prop_assert_eq!(b.len(), wire::RING_PACKET_LEN);
        prop_assert_eq!(wire::decode(&b).unwrap(), p);
    }

    #[test]
    fn every_truncation_is_an_error(t in token(), cut in 0usize..200) {
        let mut b = Vec::new();
        wire::encode_token(&t, &mut b);
        let cut = cut % b.len();
        prop_assert!(wire::decode(&b[..cut]).is_err());
    }
}

#[test]
fn fixed_sizes() {
    assert_eq!(wire::HEADER_LEN, 8);
    assert_eq!(wire::TOKEN_FIXED_LEN, 58);
    assert_eq!(wire::MCAST_HEADER_LEN, 37);
    assert_eq!(wire::JOIN_FIXED_LEN, 20);
    assert_eq!(wire::COMMIT_FIXED_LEN, 23);
    assert_eq!(wire::COMMIT_ENTRY_LEN, 28);
    assert_eq!(wire::RING_PACKET_LEN, 20);
}

#[test]
fn header_errors_are_named() {
    use wire::DecodeError::*;
    assert_eq!(wire::decode(&[]), Err(Truncated));
    assert_eq!(wire::decode(&[0, 0, 1, 1, 1, 0, 0, 0]), Err(BadMagic));
    assert_eq!(
        wire::decode(&[0x5e, 0xc0, 9, 1, 1, 0, 0, 0]),
        Err(BadVersion)
    );
    assert_eq!(wire::decode(&[0x5e, 0xc0, 1, 77, 1, 0, 0, 0]), Err(BadType));
    assert_eq!(
        wire::decode(&[0x5e, 0xc0, 1, 5, 0, 0, 0, 0]),
        Err(Malformed)
    );
    assert_eq!(wire::decode(&vec![0u8; 70_000]), Err(Oversized));
}
