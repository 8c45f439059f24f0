//! Engines on a deterministic in-memory total-order bus: sync, CPG and EVS
//! behaviour across nodes, membership changes, and bad input.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use proptest::prelude::*;
use services::proto::cpg as pc;
use services::proto::evs as pe;
use services::proto::{service, CsError};
use services::{
    ConfigKind, ConnId, Engine, EngineConfig, Guarantee, NodeId, Output, ReplyTo, RingId, SendRoom,
};

// ---------------------------------------------------------------- harness

#[derive(Default)]
struct Rec {
    room: SendRoom,
    queue: VecDeque<(Guarantee, Vec<u8>)>,
    sent: Vec<(Guarantee, Vec<u8>)>,
    responses: Vec<(ConnId, ReplyTo, Vec<u8>)>,
    events: Vec<(ConnId, u16, u16, Vec<u8>)>,
    disconnects: Vec<(ConnId, &'static str)>,
    refuse: BTreeSet<ConnId>,
}

impl Output for Rec {
    fn multicast(&mut self, guarantee: Guarantee, parts: &[&[u8]]) {
        let m = parts.concat();
        self.sent.push((guarantee, m.clone()));
        self.queue.push_back((guarantee, m));
    }
    fn respond(&mut self, conn: ConnId, to: ReplyTo, parts: &[&[u8]]) {
        self.responses.push((conn, to, parts.concat()));
    }
    fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool {
        if self.refuse.contains(&conn) {
            return false;
        }
        self.events.push((conn, service, kind, parts.concat()));
        true
    }
    fn disconnect(&mut self, conn: ConnId, why: &'static str) {
        self.disconnects.push((conn, why));
    }
    fn send_room(&self) -> SendRoom {
        self.room
    }
}

fn roomy() -> SendRoom {
    SendRoom {
        queued_msgs: 0,
        cap_msgs: 100,
        queued_bytes: 0,
        cap_bytes: 1 << 20,
    }
}

struct Node {
    eng: Engine,
    out: Rec,
    ring: Option<(RingId, Vec<NodeId>)>,
}

struct Cluster {
    nodes: BTreeMap<NodeId, Node>,
    comps: Vec<Vec<NodeId>>,
    seq: u64,
    /// Nodes whose queued messages are not sent for now.
    hold: BTreeSet<NodeId>,
}

fn node(id: NodeId) -> Node {
    let out = Rec {
        room: roomy(),
        ..Default::default()
    };
    Node {
        eng: Engine::new(EngineConfig::new(id)),
        out,
        ring: None,
    }
}

impl Cluster {
    fn new(ids: &[NodeId]) -> Cluster {
        Cluster {
            nodes: ids.iter().map(|&i| (i, node(i))).collect(),
            comps: Vec::new(),
            seq: 100,
            hold: BTreeSet::new(),
        }
    }

    /// Installs new components (rings) as Totem would: transitional (the
    /// members that come from the same previous ring) then regular.
    fn form(&mut self, comps: &[&[NodeId]]) {
        self.seq += 4;
        let prev: BTreeMap<NodeId, Option<(RingId, Vec<NodeId>)>> = self
            .nodes
            .iter()
            .map(|(&i, n)| (i, n.ring.clone()))
            .collect();
        for comp in comps {
            let ring = RingId {
                rep: *comp.iter().min().unwrap(),
                seq: self.seq,
            };
            for &n in comp.iter() {
                let node = self.nodes.get_mut(&n).unwrap();
                let Node { eng, out, .. } = node;
                match &prev[&n] {
                    Some((old_ring, old)) => {
                        let trans: Vec<NodeId> = comp
                            .iter()
                            .copied()
                            .filter(|m| prev[m].as_ref().map(|p| p.0) == Some(*old_ring))
                            .collect();
                        let left: Vec<NodeId> =
                            old.iter().copied().filter(|m| !trans.contains(m)).collect();
                        eng.config_change(ConfigKind::Transitional, &trans, &left, &[], ring, out);
                        let left: Vec<NodeId> =
                            old.iter().copied().filter(|m| !comp.contains(m)).collect();
                        let joined: Vec<NodeId> =
                            comp.iter().copied().filter(|m| !old.contains(m)).collect();
                        eng.config_change(ConfigKind::Regular, comp, &left, &joined, ring, out);
                    }
                    None => eng.config_change(ConfigKind::Regular, comp, &[], comp, ring, out),
                }
                node.ring = Some((ring, comp.to_vec()));
            }
        }
        self.comps = comps.iter().map(|c| c.to_vec()).collect();
    }

    /// One round: each node (not held) sends the head of its queue to its
    /// component. Returns whether anything moved.
    fn step(&mut self) -> bool {
        let mut any = false;
        for comp in self.comps.clone() {
            for &s in &comp {
                if self.hold.contains(&s) {
                    continue;
                }
                let Some((g, m)) = self.nodes.get_mut(&s).unwrap().out.queue.pop_front() else {
                    continue;
                };
                any = true;
                for &d in &comp {
                    let Node { eng, out, .. } = self.nodes.get_mut(&d).unwrap();
                    eng.deliver(s, g, &m, out);
                }
            }
        }
        any
    }

    fn run(&mut self) {
        for _ in 0..10_000 {
            if !self.step() {
                return;
            }
        }
        panic!("bus did not quiesce");
    }

    fn crash(&mut self, id: NodeId) {
        self.nodes.remove(&id);
        for c in &mut self.comps {
            c.retain(|&n| n != id);
        }
    }

    fn restart(&mut self, id: NodeId) {
        self.nodes.insert(id, node(id));
    }

    fn eng(&self, n: NodeId) -> &Engine {
        &self.nodes[&n].eng
    }

    fn out(&mut self, n: NodeId) -> &mut Rec {
        &mut self.nodes.get_mut(&n).unwrap().out
    }

    fn connect(&mut self, n: NodeId, conn: u64, pid: u32) {
        self.nodes
            .get_mut(&n)
            .unwrap()
            .eng
            .connect(ConnId(conn), pid, 0, 0);
    }

    fn disconnect(&mut self, n: NodeId, conn: u64) {
        let Node { eng, out, .. } = self.nodes.get_mut(&n).unwrap();
        eng.disconnect(ConnId(conn), out);
    }

    fn raw(
        &mut self,
        n: NodeId,
        conn: u64,
        svc: u16,
        kind: u16,
        payload: &[u8],
    ) -> (CsError, Vec<u8>) {
        let Node { eng, out, .. } = self.nodes.get_mut(&n).unwrap();
        let before = out.responses.len();
        eng.request(ConnId(conn), svc, kind, 7, payload, out);
        assert_eq!(out.responses.len(), before + 1, "exactly one response");
        let (c, to, body) = out.responses.last().unwrap().clone();
        assert_eq!(c, ConnId(conn));
        assert_eq!((to.service, to.kind, to.request_id), (svc, kind, 7));
        let code = u32::from_le_bytes(body[..4].try_into().unwrap());
        (CsError::from_code(code), body[4..].to_vec())
    }

    fn cpg(&mut self, n: NodeId, conn: u64, req: pc::Request<'_>) -> (CsError, Vec<u8>) {
        let mut v = Vec::new();
        let k = req.encode(&mut v);
        self.raw(n, conn, service::CPG, k, &v)
    }

    fn evs(&mut self, n: NodeId, conn: u64, req: pe::Request<'_>) -> (CsError, Vec<u8>) {
        let mut v = Vec::new();
        let k = req.encode(&mut v);
        self.raw(n, conn, service::EVS, k, &v)
    }

    /// Connects and INITs a CPG connection (model 0).
    fn cpg_open(&mut self, n: NodeId, conn: u64, pid: u32) {
        self.connect(n, conn, pid);
        let r = self.cpg(n, conn, pc::Request::Init { model: 0, flags: 0 });
        assert_eq!(r.0, CsError::Ok);
    }

    fn join(&mut self, n: NodeId, conn: u64, group: &[u8]) -> CsError {
        self.cpg(n, conn, pc::Request::Join { group }).0
    }

    /// Drains the CPG events of a connection.
    fn cpg_events(&mut self, n: NodeId, conn: u64) -> Vec<Ev> {
        let out = self.out(n);
        let mut got = Vec::new();
        out.events.retain(|(c, s, k, p)| {
            if *c == ConnId(conn) && *s == service::CPG {
                got.push(Ev::from(*k, p));
                false
            } else {
                true
            }
        });
        got
    }

    fn evs_events(&mut self, n: NodeId, conn: u64) -> Vec<(u16, Vec<u8>)> {
        let out = self.out(n);
        let mut got = Vec::new();
        out.events.retain(|(c, s, k, p)| {
            if *c == ConnId(conn) && *s == service::EVS {
                got.push((*k, p.clone()));
                false
            } else {
                true
            }
        });
        got
    }

    /// The messages EVS delivered to a connection (its other events go).
    fn evs_delivered(&mut self, n: NodeId, conn: u64) -> Vec<Vec<u8>> {
        self.evs_events(n, conn)
            .into_iter()
            .filter(|(k, _)| *k == pe::kind::DELIVER)
            .map(|(k, p)| match pe::EventMsg::decode(k, &p).unwrap() {
                pe::EventMsg::Deliver { msg, .. } => msg.to_vec(),
                _ => unreachable!(),
            })
            .collect()
    }

    fn membership(&mut self, n: NodeId, conn: u64, group: &[u8]) -> Vec<(u32, u32)> {
        let (e, body) = self.cpg(n, conn, pc::Request::MembershipGet { group });
        assert_eq!(e, CsError::Ok);
        pc::decode_membership(&body)
            .unwrap()
            .iter()
            .map(|a| (a.nodeid, a.pid))
            .collect()
    }
}

/// A CPG event, owned, for comparisons.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Ev {
    Deliver {
        group: Vec<u8>,
        from: (u32, u32),
        msg: Vec<u8>,
    },
    Conf {
        group: Vec<u8>,
        members: Vec<(u32, u32)>,
        left: Vec<(u32, u32, u32)>,
        joined: Vec<(u32, u32, u32)>,
    },
    Totem {
        ring: (u32, u64),
        members: Vec<u32>,
    },
    Partial {
        group: Vec<u8>,
        from: (u32, u32),
        part: u32,
        total: u32,
        msg: Vec<u8>,
    },
}

impl Ev {
    fn from(k: u16, p: &[u8]) -> Ev {
        let tri = |v: &[pc::Address]| v.iter().map(|a| (a.nodeid, a.pid, a.reason)).collect();
        match pc::EventMsg::decode(k, p).expect("events decode") {
            pc::EventMsg::Deliver {
                group,
                nodeid,
                pid,
                msg,
            } => Ev::Deliver {
                group: group.to_vec(),
                from: (nodeid, pid),
                msg: msg.to_vec(),
            },
            pc::EventMsg::Confchg {
                group,
                members,
                left,
                joined,
            } => Ev::Conf {
                group: group.to_vec(),
                members: members.iter().map(|a| (a.nodeid, a.pid)).collect(),
                left: tri(&left),
                joined: tri(&joined),
            },
            pc::EventMsg::TotemConfchg {
                ring_rep,
                ring_seq,
                members,
            } => Ev::Totem {
                ring: (ring_rep, ring_seq),
                members,
            },
            pc::EventMsg::PartialDeliver {
                group,
                nodeid,
                pid,
                part,
                total,
                msg,
            } => Ev::Partial {
                group: group.to_vec(),
                from: (nodeid, pid),
                part,
                total,
                msg: msg.to_vec(),
            },
        }
    }
}

fn conf_joined(e: &Ev) -> Vec<(u32, u32, u32)> {
    match e {
        Ev::Conf { joined, .. } => joined.clone(),
        _ => panic!("not a confchg: {e:?}"),
    }
}

fn conf_left(e: &Ev) -> Vec<(u32, u32, u32)> {
    match e {
        Ev::Conf { left, .. } => left.clone(),
        _ => panic!("not a confchg: {e:?}"),
    }
}

fn synced_cluster(ids: &[NodeId]) -> Cluster {
    let mut c = Cluster::new(ids);
    c.form(&[ids]);
    c.run();
    for &i in ids {
        assert!(c.eng(i).synced());
    }
    c
}

fn grp(s: &str) -> pe::Group {
    let mut g = [0u8; pe::GROUP_LEN];
    g[..s.len()].copy_from_slice(s.as_bytes());
    g
}

// ---------------------------------------------------------------- sync

#[test]
fn sync_completes_only_after_every_members_barriers() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.form(&[&[1, 2, 3]]);
    c.hold.insert(3);
    c.run();
    for i in [1, 2, 3] {
        assert!(
            !c.eng(i).synced(),
            "node {i} synced without node 3's barrier"
        );
        assert!(c.eng(i).syncing());
    }
    c.hold.clear();
    c.run();
    for i in [1, 2, 3] {
        assert!(c.eng(i).synced());
        assert!(!c.eng(i).syncing());
        assert_eq!(c.eng(i).stats().syncs_completed, 1);
    }
}

#[test]
fn config_change_during_sync_aborts_and_restarts_the_round() {
    let mut c = Cluster::new(&[1, 2, 3]);
    c.form(&[&[1, 2, 3]]);
    c.step();
    c.step();
    assert!(!c.eng(1).synced());
    c.crash(3);
    c.form(&[&[1, 2]]);
    for i in [1, 2] {
        assert_eq!(c.eng(i).stats().sync_aborts, 1);
    }
    c.run();
    for i in [1, 2] {
        assert!(c.eng(i).synced());
        assert_eq!(c.eng(i).stats().syncs_completed, 1);
        assert!(c.eng(i).stats().stale_barriers > 0 || c.eng(i).stats().syncs_completed == 1);
    }
}

#[test]
fn requests_get_try_again_before_first_sync() {
    let mut c = Cluster::new(&[1]);
    c.connect(1, 1, 100);
    let init = pc::Request::Init { model: 0, flags: 0 };
    assert_eq!(c.cpg(1, 1, init.clone()).0, CsError::TryAgain);
    assert_eq!(c.evs(1, 1, pe::Request::MembershipGet).0, CsError::TryAgain);
    c.form(&[&[1]]);
    assert_eq!(c.cpg(1, 1, init.clone()).0, CsError::TryAgain);
    c.run();
    assert!(c.eng(1).synced());
    assert_eq!(c.cpg(1, 1, init).0, CsError::Ok);
    let (e, body) = c.evs(1, 1, pe::Request::MembershipGet);
    assert_eq!(e, CsError::Ok);
    assert_eq!(pe::decode_membership(&body).unwrap(), (1, vec![1]));
    assert!(c.eng(1).stats().try_again >= 3);
}

// ---------------------------------------------------------------- cpg

#[test]
fn cpg_join_mcast_leave_procdown_with_self_delivery() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(1, 10, 100);
    c.cpg_open(2, 20, 200);
    assert_eq!(c.join(1, 10, b"g"), CsError::Ok);
    c.run();
    assert_eq!(c.join(2, 20, b"g"), CsError::Ok);
    c.run();
    let e1 = c.cpg_events(1, 10);
    assert_eq!(e1.len(), 2);
    assert_eq!(conf_joined(&e1[0]), vec![(1, 100, pc::reason::JOIN)]);
    assert_eq!(conf_joined(&e1[1]), vec![(2, 200, pc::reason::JOIN)]);
    let e2 = c.cpg_events(2, 20);
    assert_eq!(e2.len(), 1, "joiner sees its own join only: {e2:?}");
    assert_eq!(e2[0], e1[1]);
    if let Ev::Conf { members, .. } = &e2[0] {
        assert_eq!(members, &vec![(1, 100), (2, 200)]);
    }

    let r = c.cpg(
        1,
        10,
        pc::Request::Mcast {
            guarantee: pc::guarantee::AGREED,
            msg: b"hi",
        },
    );
    assert_eq!(r.0, CsError::Ok);
    c.run();
    let want = Ev::Deliver {
        group: b"g".to_vec(),
        from: (1, 100),
        msg: b"hi".to_vec(),
    };
    assert_eq!(c.cpg_events(1, 10), vec![want.clone()], "self-delivery");
    assert_eq!(c.cpg_events(2, 20), vec![want]);

    assert_eq!(
        c.cpg(2, 20, pc::Request::Leave { group: b"g" }).0,
        CsError::Ok
    );
    c.run();
    let e1 = c.cpg_events(1, 10);
    assert_eq!(conf_left(&e1[0]), vec![(2, 200, pc::reason::LEAVE)]);
    let e2 = c.cpg_events(2, 20);
    assert_eq!(
        conf_left(&e2[0]),
        vec![(2, 200, pc::reason::LEAVE)],
        "leaver sees its leave"
    );
    assert_eq!(
        c.cpg(2, 20, pc::Request::Leave { group: b"g" }).0,
        CsError::NotExist
    );

    c.cpg_open(2, 21, 201);
    assert_eq!(c.join(2, 21, b"g"), CsError::Ok);
    c.run();
    c.cpg_events(1, 10);
    c.disconnect(2, 21);
    c.run();
    let e1 = c.cpg_events(1, 10);
    assert_eq!(conf_left(&e1[0]), vec![(2, 201, pc::reason::PROCDOWN)]);
    assert_eq!(c.membership(1, 10, b"g"), vec![(1, 100)]);
    assert_eq!(c.membership(2, 20, b"g"), vec![(1, 100)]);

    // FINALIZE while joined leaves with PROCDOWN too.
    assert_eq!(c.cpg(1, 10, pc::Request::Finalize).0, CsError::Ok);
    c.run();
    assert_eq!(c.membership(2, 20, b"g"), vec![]);
    assert_eq!(c.cpg(1, 10, pc::Request::LocalGet).0, CsError::BadHandle);
}

#[test]
fn cpg_error_codes() {
    let mut c = synced_cluster(&[1]);
    c.connect(1, 1, 5);
    assert_eq!(c.join(1, 1, b"g"), CsError::BadHandle, "before INIT");
    let init = pc::Request::Init { model: 0, flags: 0 };
    assert_eq!(c.cpg(1, 1, init.clone()).0, CsError::Ok);
    assert_eq!(c.cpg(1, 1, init).0, CsError::Exist);
    let mcast = pc::Request::Mcast {
        guarantee: 2,
        msg: b"x",
    };
    assert_eq!(c.cpg(1, 1, mcast.clone()).0, CsError::NotExist);
    assert_eq!(
        c.cpg(1, 1, pc::Request::Leave { group: b"g" }).0,
        CsError::NotExist
    );
    assert_eq!(c.join(1, 1, b""), CsError::InvalidParam);
    let mut long = Vec::new();
    services::proto::Writer(&mut long).bytes(&[b'x'; 129]);
    assert_eq!(
        c.raw(1, 1, service::CPG, pc::kind::JOIN, &long).0,
        CsError::NameTooLong
    );
    assert_eq!(c.join(1, 1, b"g"), CsError::Ok);
    assert_eq!(c.join(1, 1, b"g"), CsError::Exist);
    assert_eq!(
        c.cpg(1, 1, pc::Request::Leave { group: b"g" }).0,
        CsError::Busy
    );
    c.connect(1, 2, 5);
    c.cpg(1, 2, pc::Request::Init { model: 0, flags: 0 });
    assert_eq!(c.join(1, 2, b"g"), CsError::Exist, "same pid, same group");
    c.run();
    assert_eq!(
        c.cpg(1, 1, pc::Request::Leave { group: b"h" }).0,
        CsError::NotExist
    );
    assert_eq!(
        c.raw(1, 1, service::CPG, pc::kind::MCAST, &[9, 0, 0, 0]).0,
        CsError::InvalidParam
    );
    assert_eq!(c.raw(1, 1, service::CPG, 55, &[]).0, CsError::NotSupported);
    assert_eq!(c.raw(1, 1, 77, 0, &[]).0, CsError::NotSupported);
    assert_eq!(c.raw(1, 99, service::CPG, 0, &[]).0, CsError::BadHandle);
    let (e, body) = c.cpg(1, 1, pc::Request::MaxAtomicMsgsize);
    assert_eq!(e, CsError::Ok);
    let max = pc::decode_u32(&body).unwrap();
    assert_eq!(max, 1 << 20);
    let big = vec![0u8; max as usize + 1];
    let r = c.cpg(
        1,
        1,
        pc::Request::Mcast {
            guarantee: 2,
            msg: &big,
        },
    );
    assert_eq!(r.0, CsError::TooBig);
    let ok = vec![0u8; max as usize];
    assert_eq!(
        c.cpg(
            1,
            1,
            pc::Request::Mcast {
                guarantee: 2,
                msg: &ok
            }
        )
        .0,
        CsError::Ok
    );
    let (e, body) = c.cpg(1, 1, pc::Request::LocalGet);
    assert_eq!((e, pc::decode_u32(&body).unwrap()), (CsError::Ok, 1));
}

#[test]
fn safe_maps_to_totem_safe_and_others_to_agreed() {
    let mut c = synced_cluster(&[1]);
    c.cpg_open(1, 1, 5);
    c.join(1, 1, b"g");
    c.run();
    for (g, want) in [
        (pc::guarantee::SAFE, Guarantee::Safe),
        (pc::guarantee::AGREED, Guarantee::Agreed),
        (pc::guarantee::FIFO, Guarantee::Agreed),
        (pc::guarantee::UNORDERED, Guarantee::Agreed),
    ] {
        assert_eq!(
            c.cpg(
                1,
                1,
                pc::Request::Mcast {
                    guarantee: g,
                    msg: b"m"
                }
            )
            .0,
            CsError::Ok
        );
        assert_eq!(c.out(1).sent.last().unwrap().0, want);
    }
}

#[test]
fn try_again_and_flow_control_follow_the_queue_and_sync() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(1, 1, 5);
    c.join(1, 1, b"g");
    c.run();
    let flow = |c: &mut Cluster| {
        let (e, b) = c.cpg(1, 1, pc::Request::FlowControlState);
        assert_eq!(e, CsError::Ok);
        pc::decode_u32(&b).unwrap()
    };
    let mcast = pc::Request::Mcast {
        guarantee: 2,
        msg: b"m",
    };
    assert_eq!(flow(&mut c), pc::flow::DISABLED);
    c.out(1).room.queued_msgs = 75;
    assert_eq!(c.cpg(1, 1, mcast.clone()).0, CsError::TryAgain);
    assert_eq!(flow(&mut c), pc::flow::ENABLED);
    c.out(1).room.queued_msgs = 74;
    assert_eq!(flow(&mut c), pc::flow::DISABLED);
    c.out(1).room.queued_bytes = (1 << 20) * 3 / 4;
    assert_eq!(c.cpg(1, 1, mcast.clone()).0, CsError::TryAgain);
    c.out(1).room = roomy();
    let sent = c.out(1).sent.len();
    assert_eq!(c.cpg(1, 1, mcast.clone()).0, CsError::Ok);
    assert_eq!(c.out(1).sent.len(), sent + 1, "accepted means sent");
    c.run();
    // During a sync: TRY_AGAIN and flow control ENABLED.
    c.form(&[&[1, 2]]);
    assert_eq!(c.cpg(1, 1, mcast.clone()).0, CsError::TryAgain);
    assert_eq!(flow(&mut c), pc::flow::ENABLED);
    c.run();
    assert_eq!(c.cpg(1, 1, mcast).0, CsError::Ok);
    assert_eq!(flow(&mut c), pc::flow::DISABLED);
}

#[test]
fn mcast_async_gets_no_response_and_is_delivered_in_order() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(1, 1, 5);
    c.cpg_open(2, 2, 6);
    assert_eq!(c.join(1, 1, b"g"), CsError::Ok);
    assert_eq!(c.join(2, 2, b"g"), CsError::Ok);
    c.run();
    c.cpg_events(1, 1);
    c.cpg_events(2, 2);
    let send = |c: &mut Cluster, conn: u64, msg: &[u8]| {
        let mut v = Vec::new();
        let k = pc::Request::McastAsync {
            guarantee: pc::guarantee::AGREED,
            msg,
        }
        .encode(&mut v);
        assert_eq!(k, pc::kind::MCAST_ASYNC);
        let Node { eng, out, .. } = c.nodes.get_mut(&1).unwrap();
        let before = out.responses.len();
        eng.request(ConnId(conn), service::CPG, k, 9, &v, out);
        assert_eq!(out.responses.len(), before, "no response to MCAST_ASYNC");
    };
    const N: u32 = 500;
    for i in 0..N {
        send(&mut c, 1, &i.to_le_bytes());
        // Admission is the runtime's: even a congested queue takes a
        // member's message rather than dropping it.
        if i == N / 2 {
            c.out(1).room.queued_msgs = 90;
        }
    }
    c.out(1).room = roomy();
    c.run();
    let want: Vec<Ev> = (0..N)
        .map(|i| Ev::Deliver {
            group: b"g".to_vec(),
            from: (1, 5),
            msg: i.to_le_bytes().to_vec(),
        })
        .collect();
    assert_eq!(c.cpg_events(1, 1), want, "self-delivery, in order");
    assert_eq!(c.cpg_events(2, 2), want, "in order at the other node");
    // Interleaved with a call: still in order, and only the call answers.
    send(&mut c, 1, b"a");
    let (e, _) = c.cpg(1, 1, pc::Request::LocalGet);
    assert_eq!(e, CsError::Ok);
    send(&mut c, 1, b"b");
    c.run();
    let got: Vec<Ev> = c.cpg_events(2, 2);
    assert_eq!(got.len(), 2);
    // Not a member (after its own leave) or too big: counted, not sent,
    // no response.
    assert_eq!(
        c.cpg(1, 1, pc::Request::Leave { group: b"g" }).0,
        CsError::Ok
    );
    c.run();
    c.cpg_events(1, 1);
    c.cpg_events(2, 2);
    let bad = c.eng(1).stats().bad_requests;
    let sent = c.out(1).sent.len();
    send(&mut c, 1, b"late");
    c.cpg_open(1, 3, 7);
    send(&mut c, 3, b"never joined");
    assert_eq!(c.join(1, 3, b"g"), CsError::Ok);
    let sent = sent + 1;
    let big = vec![0u8; (1 << 20) + 1];
    send(&mut c, 3, &big);
    assert_eq!(c.out(1).sent.len(), sent, "nothing multicast");
    assert_eq!(
        c.eng(1).stats().bad_requests,
        bad + 3,
        "every refusal counted"
    );
    c.run();
    assert!(c
        .cpg_events(2, 2)
        .iter()
        .all(|e| !matches!(e, Ev::Deliver { .. })));
}

#[test]
fn node_loss_reports_nodedown_at_survivors() {
    let mut c = synced_cluster(&[1, 2, 3]);
    for n in [1, 2, 3] {
        c.cpg_open(n, 1, 10 * n);
        c.join(n, 1, b"g");
    }
    c.run();
    c.cpg_events(1, 1);
    c.cpg_events(2, 1);
    c.crash(3);
    c.form(&[&[1, 2]]);
    c.run();
    for n in [1, 2] {
        let ev = c.cpg_events(n, 1);
        let confs: Vec<_> = ev.iter().filter(|e| matches!(e, Ev::Conf { .. })).collect();
        assert_eq!(confs.len(), 1, "{ev:?}");
        assert_eq!(conf_left(confs[0]), vec![(3, 30, pc::reason::NODEDOWN)]);
        assert_eq!(c.membership(n, 1, b"g"), vec![(1, 10), (2, 20)]);
    }
}

#[test]
fn partition_and_merge_report_nodeup_and_converge() {
    let mut c = synced_cluster(&[1, 2, 3]);
    c.form(&[&[1, 2], &[3]]);
    c.run();
    c.cpg_open(1, 1, 11);
    c.cpg_open(2, 1, 21);
    c.cpg_open(3, 1, 31);
    for n in [1, 2, 3] {
        assert_eq!(c.join(n, 1, b"g"), CsError::Ok);
    }
    c.run();
    assert_eq!(c.membership(1, 1, b"g"), vec![(1, 11), (2, 21)]);
    assert_eq!(c.membership(3, 1, b"g"), vec![(3, 31)]);
    for n in [1, 2, 3] {
        c.cpg_events(n, 1);
    }
    c.form(&[&[1, 2, 3]]);
    c.run();
    let e1 = c.cpg_events(1, 1);
    assert_eq!(conf_joined(&e1[0]), vec![(3, 31, pc::reason::NODEUP)]);
    assert_eq!(c.cpg_events(2, 1), e1, "nodes of one partition agree");
    let e3 = c.cpg_events(3, 1);
    assert_eq!(
        conf_joined(&e3[0]),
        vec![(1, 11, pc::reason::NODEUP), (2, 21, pc::reason::NODEUP)]
    );
    let it = |c: &mut Cluster, n| {
        let (e, b) = c.cpg(
            n,
            1,
            pc::Request::Iteration {
                kind: pc::iteration::ALL,
                group: b"",
            },
        );
        assert_eq!(e, CsError::Ok);
        pc::decode_iteration(&b).unwrap()
    };
    let all = it(&mut c, 1);
    assert_eq!(all.len(), 3);
    for n in [2, 3] {
        assert_eq!(it(&mut c, n), all);
    }
    // After the merge, data flows to everyone.
    c.cpg(
        3,
        1,
        pc::Request::Mcast {
            guarantee: 2,
            msg: b"x",
        },
    );
    c.run();
    for n in [1, 2, 3] {
        let ev = c.cpg_events(n, 1);
        assert_eq!(ev.len(), 1, "node {n}: {ev:?}");
    }
}

#[test]
fn restarted_node_processes_leave_and_come_back() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(1, 1, 11);
    c.cpg_open(2, 1, 21);
    c.join(1, 1, b"g");
    c.join(2, 1, b"g");
    c.run();
    c.cpg_events(1, 1);
    // Node 2 dies and comes back before anyone noticed a ring without it.
    c.crash(2);
    c.restart(2);
    c.form(&[&[1, 2]]);
    c.run();
    let e1 = c.cpg_events(1, 1);
    assert_eq!(conf_left(&e1[0]), vec![(2, 21, pc::reason::NODEDOWN)]);
    assert_eq!(c.membership(1, 1, b"g"), vec![(1, 11)]);
    c.cpg_open(2, 1, 22);
    c.join(2, 1, b"g");
    c.run();
    let e1 = c.cpg_events(1, 1);
    assert_eq!(conf_joined(&e1[0]), vec![(2, 22, pc::reason::JOIN)]);
    assert_eq!(c.membership(2, 1, b"g"), vec![(1, 11), (2, 22)]);
}

#[test]
fn every_node_reports_the_same_group_history() {
    let mut c = synced_cluster(&[1, 2, 3]);
    // Observers on every node join first.
    for n in [1, 2, 3] {
        c.cpg_open(n, 100, 1000 + n);
        c.join(n, 100, b"g");
    }
    c.run();
    for n in [1, 2, 3] {
        c.cpg_events(n, 100);
    }
    // Interleaved traffic from several processes.
    let mut conn = 0u64;
    for round in 0..4u32 {
        for n in [1, 2, 3] {
            conn += 1;
            c.cpg_open(n, conn, conn as u32);
            c.join(n, conn, b"g");
            c.cpg(
                n,
                100,
                pc::Request::Mcast {
                    guarantee: 2,
                    msg: &round.to_le_bytes(),
                },
            );
        }
        c.step();
        for n in [1, 2, 3] {
            if round % 2 == 0 {
                c.disconnect(n, conn - 2);
            } else {
                c.cpg(
                    n,
                    conn,
                    pc::Request::Mcast {
                        guarantee: 3,
                        msg: b"s",
                    },
                );
            }
        }
        c.step();
    }
    c.run();
    // A node fails in the middle of traffic.
    for n in [1, 2, 3] {
        c.cpg(
            n,
            100,
            pc::Request::Mcast {
                guarantee: 2,
                msg: b"late",
            },
        );
    }
    c.step();
    c.crash(3);
    c.form(&[&[1, 2]]);
    c.run();
    let h1 = c.cpg_events(1, 100);
    let h2 = c.cpg_events(2, 100);
    assert!(h1.len() > 20);
    assert_eq!(h1, h2);
    assert_eq!(c.membership(1, 100, b"g"), c.membership(2, 100, b"g"));
}

#[test]
fn model_v1_gets_totem_confchg_after_its_join_and_every_sync() {
    let mut c = synced_cluster(&[1, 2]);
    c.connect(1, 1, 5);
    let init = pc::Request::Init {
        model: pc::model::V1,
        flags: pc::model::V1_DELIVER_INITIAL_TOTEM_CONF,
    };
    assert_eq!(c.cpg(1, 1, init).0, CsError::Ok);
    // As in Corosync: nothing until the connection joins, then its join's
    // confchg and after it the initial totem confchg, once.
    c.run();
    assert_eq!(c.cpg_events(1, 1), vec![], "no totem confchg before a join");
    assert_eq!(c.join(1, 1, b"g"), CsError::Ok);
    c.run();
    let ev = c.cpg_events(1, 1);
    let ring = c.nodes[&1].ring.clone().unwrap().0;
    assert_eq!(ev.len(), 2, "{ev:?}");
    assert!(matches!(&ev[0], Ev::Conf { .. }), "{ev:?}");
    assert_eq!(
        ev[1],
        Ev::Totem {
            ring: (ring.rep, ring.seq),
            members: vec![1, 2]
        }
    );
    assert_eq!(
        c.cpg(1, 1, pc::Request::Leave { group: b"g" }).0,
        CsError::Ok
    );
    c.run();
    assert_eq!(c.join(1, 1, b"g"), CsError::Ok);
    c.run();
    let ev = c.cpg_events(1, 1);
    assert!(
        ev.iter().all(|e| matches!(e, Ev::Conf { .. })),
        "the initial totem confchg comes once: {ev:?}"
    );
    c.connect(1, 2, 6);
    c.cpg(1, 2, pc::Request::Init { model: 0, flags: 0 });
    c.crash(2);
    c.form(&[&[1]]);
    c.run();
    let ring = c.nodes[&1].ring.clone().unwrap().0;
    assert_eq!(
        c.cpg_events(1, 1),
        vec![Ev::Totem {
            ring: (ring.rep, ring.seq),
            members: vec![1]
        }]
    );
    assert_eq!(c.cpg_events(1, 2), vec![], "model 0 gets no totem confchg");
}

/// The pieces of a message longer than the atomic limit travel as they
/// came, in order, to every member of the group, each with its type and
/// the total; a non-member's piece goes nowhere.
#[test]
fn pieces_of_a_long_message_reach_every_member_in_order() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(1, 1, 5);
    c.cpg_open(2, 1, 6);
    c.cpg_open(2, 2, 7);
    c.join(1, 1, b"g");
    c.join(2, 1, b"g");
    c.run();
    let _ = (c.cpg_events(1, 1), c.cpg_events(2, 1));
    let pieces = [
        (pc::partial::FIRST, b"abc".as_slice()),
        (pc::partial::CONTINUED, b"def".as_slice()),
        (pc::partial::LAST, b"g".as_slice()),
    ];
    // No answer to these (pipelined, as MCAST_ASYNC).
    let send = |c: &mut Cluster, n: NodeId, conn: u64, part: u32, total: u32, msg: &[u8]| {
        let mut v = Vec::new();
        let k = pc::Request::McastPartialAsync {
            guarantee: pc::guarantee::AGREED,
            part,
            total,
            msg,
        }
        .encode(&mut v);
        assert_eq!(k, pc::kind::MCAST_PARTIAL_ASYNC);
        let Node { eng, out, .. } = c.nodes.get_mut(&n).unwrap();
        let before = out.responses.len();
        eng.request(ConnId(conn), service::CPG, k, 9, &v, out);
        assert_eq!(out.responses.len(), before, "no response");
    };
    for (part, msg) in pieces {
        send(&mut c, 1, 1, part, 7, msg);
    }
    // Connection 2 on node 2 joined nothing: its piece is not sent.
    send(&mut c, 2, 2, pc::partial::FIRST, 3, b"xyz");
    c.run();
    let want: Vec<Ev> = pieces
        .iter()
        .map(|&(part, msg)| Ev::Partial {
            group: b"g".to_vec(),
            from: (1, 5),
            part,
            total: 7,
            msg: msg.to_vec(),
        })
        .collect();
    assert_eq!(c.cpg_events(1, 1), want);
    assert_eq!(c.cpg_events(2, 1), want);
    assert_eq!(c.cpg_events(2, 2), vec![]);
}

#[test]
fn refused_event_marks_connection_dying() {
    let mut c = synced_cluster(&[1]);
    c.cpg_open(1, 1, 5);
    c.cpg_open(1, 2, 6);
    c.join(1, 1, b"g");
    c.join(1, 2, b"g");
    c.run();
    c.out(1).refuse.insert(ConnId(2));
    c.cpg(
        1,
        1,
        pc::Request::Mcast {
            guarantee: 2,
            msg: b"a",
        },
    );
    c.cpg(
        1,
        1,
        pc::Request::Mcast {
            guarantee: 2,
            msg: b"b",
        },
    );
    c.run();
    assert_eq!(
        c.eng(1).stats().events_refused,
        1,
        "no more tries after a refusal"
    );
    c.disconnect(1, 2);
    c.run();
    assert_eq!(c.membership(1, 1, b"g"), vec![(1, 5)]);
}

// ---------------------------------------------------------------- evs

#[test]
fn evs_delivers_by_group_and_reports_confchg() {
    let mut c = synced_cluster(&[1, 2]);
    for (n, conn) in [(1, 1), (1, 2), (2, 3)] {
        c.connect(n, conn, 9);
    }
    let j = |c: &mut Cluster, n, conn, gs: &[&str]| {
        let groups = gs.iter().map(|s| grp(s)).collect();
        c.evs(n, conn, pe::Request::Join { groups }).0
    };
    assert_eq!(j(&mut c, 1, 1, &["a"]), CsError::Ok);
    assert_eq!(j(&mut c, 1, 2, &["b", "c"]), CsError::Ok);
    assert_eq!(j(&mut c, 2, 3, &["c"]), CsError::Ok);
    for (n, conn) in [(1, 1), (1, 2), (2, 3)] {
        let ev = c.evs_events(n, conn);
        assert_eq!(ev.len(), 1, "initial confchg");
        assert_eq!(ev[0].0, pe::kind::CONFCHG);
    }
    let r = c.evs(
        1,
        1,
        pe::Request::McastGroups {
            guarantee: 2,
            groups: vec![grp("c")],
            msg: b"to-c",
        },
    );
    assert_eq!(r.0, CsError::Ok);
    let r = c.evs(
        2,
        3,
        pe::Request::McastJoined {
            guarantee: 3,
            msg: b"from-3",
        },
    );
    assert_eq!(r.0, CsError::Ok);
    assert_eq!(c.out(2).sent.last().unwrap().0, Guarantee::Safe);
    c.run();
    let msgs = |c: &mut Cluster, n, conn| c.evs_delivered(n, conn);
    assert_eq!(msgs(&mut c, 1, 1), Vec::<Vec<u8>>::new());
    assert_eq!(
        msgs(&mut c, 1, 2),
        vec![b"to-c".to_vec(), b"from-3".to_vec()]
    );
    assert_eq!(
        msgs(&mut c, 2, 3),
        vec![b"to-c".to_vec(), b"from-3".to_vec()]
    );
    assert_eq!(
        c.evs(
            1,
            1,
            pe::Request::Leave {
                groups: vec![grp("zz")]
            }
        )
        .0,
        CsError::NotExist
    );
    c.out(1).room.queued_msgs = 80;
    let r = c.evs(
        1,
        1,
        pe::Request::McastJoined {
            guarantee: 2,
            msg: b"x",
        },
    );
    assert_eq!(r.0, CsError::TryAgain);
    c.out(1).room = roomy();
    c.crash(2);
    c.form(&[&[1]]);
    let ev = c.evs_events(1, 2);
    assert_eq!(
        pe::EventMsg::decode(ev[0].0, &ev[0].1).unwrap(),
        pe::EventMsg::Confchg {
            members: vec![1],
            left: vec![2],
            joined: vec![]
        }
    );
}

/// A connection in several of the groups a message names gets it once;
/// leaving a group and going away take it out of later deliveries.
#[test]
fn evs_delivers_once_per_connection_and_forgets_who_left() {
    let mut c = synced_cluster(&[1]);
    for conn in 1..=3 {
        c.connect(1, conn, 9);
    }
    let j = |c: &mut Cluster, conn, gs: &[&str]| {
        let groups = gs.iter().map(|s| grp(s)).collect();
        c.evs(1, conn, pe::Request::Join { groups }).0
    };
    assert_eq!(j(&mut c, 1, &["a", "b", "c"]), CsError::Ok);
    assert_eq!(j(&mut c, 2, &["b"]), CsError::Ok);
    assert_eq!(j(&mut c, 3, &["z"]), CsError::Ok);
    let send = |c: &mut Cluster, msg: &'static [u8]| {
        let r = c.evs(
            1,
            3,
            pe::Request::McastGroups {
                guarantee: 2,
                groups: vec![grp("a"), grp("b"), grp("c"), grp("b")],
                msg,
            },
        );
        assert_eq!(r.0, CsError::Ok);
        c.run();
    };
    let msgs = |c: &mut Cluster, conn| c.evs_delivered(1, conn);
    send(&mut c, b"one");
    assert_eq!(
        msgs(&mut c, 1),
        vec![b"one".to_vec()],
        "once, not three times"
    );
    assert_eq!(msgs(&mut c, 2), vec![b"one".to_vec()]);
    assert_eq!(msgs(&mut c, 3), Vec::<Vec<u8>>::new());
    // Connection 2 leaves "b", connection 1 keeps "c" only.
    let leave = |c: &mut Cluster, conn, gs: &[&str]| {
        let groups = gs.iter().map(|s| grp(s)).collect();
        c.evs(1, conn, pe::Request::Leave { groups }).0
    };
    assert_eq!(leave(&mut c, 2, &["b"]), CsError::Ok);
    assert_eq!(leave(&mut c, 1, &["a", "b"]), CsError::Ok);
    send(&mut c, b"two");
    assert_eq!(msgs(&mut c, 1), vec![b"two".to_vec()]);
    assert_eq!(msgs(&mut c, 2), Vec::<Vec<u8>>::new());
    // Gone: nothing more, and a new connection in "c" gets the next one.
    c.disconnect(1, 1);
    c.connect(1, 4, 9);
    assert_eq!(j(&mut c, 4, &["c"]), CsError::Ok);
    send(&mut c, b"three");
    assert_eq!(msgs(&mut c, 4), vec![b"three".to_vec()]);
    assert_eq!(msgs(&mut c, 1), Vec::<Vec<u8>>::new());
}

// ---------------------------------------------------------------- bad input

#[test]
fn malformed_deliveries_are_counted_and_dropped() {
    let mut c = synced_cluster(&[1]);
    let Node { eng, out, .. } = c.nodes.get_mut(&1).unwrap();
    let before = eng.stats().malformed;
    for p in [
        &[][..],
        &[8, 0],
        &[8, 0, 2, 0],
        &[8, 0, 77, 0, 1],
        &[0xFE, 0xFF, 0, 0, 1],
        &[0, 0, 0, 0, 255, 255, 255, 255],
        &[99, 0, 0, 0],
    ] {
        eng.deliver(1, Guarantee::Agreed, p, out);
    }
    assert_eq!(eng.stats().malformed, before + 7);
}

proptest! {
    #[test]
    fn random_requests_and_deliveries_never_panic(
        ops in proptest::collection::vec(
            (0u8..3, 0u16..12, proptest::collection::vec(any::<u8>(), 0..64)),
            1..40,
        )
    ) {
        let mut c = synced_cluster(&[1, 2]);
        c.cpg_open(1, 1, 5);
        c.join(1, 1, b"g");
        c.connect(1, 2, 6);
        c.run();
        for (what, kind, bytes) in ops {
            match what {
                0 => {
                    let svc = [service::CPG, service::EVS, 42][usize::from(kind) % 3];
                    let conn = 1 + u64::from(kind % 2);
                    let Node { eng, out, .. } = c.nodes.get_mut(&1).unwrap();
                    let n = out.responses.len();
                    eng.request(ConnId(conn), svc, kind, 1, &bytes, out);
                    prop_assert_eq!(out.responses.len(), n + 1);
                }
                1 => {
                    let svc: u16 = [service::CPG, service::EVS, 0xFFFE][usize::from(kind) % 3];
                    let mut p = svc.to_le_bytes().to_vec();
                    p.extend_from_slice(&(kind % 5).to_le_bytes());
                    p.extend_from_slice(&bytes);
                    let Node { eng, out, .. } = c.nodes.get_mut(&2).unwrap();
                    eng.deliver(2, Guarantee::Agreed, &p, out);
                }
                _ => {
                    let Node { eng, out, .. } = c.nodes.get_mut(&1).unwrap();
                    eng.deliver(2, Guarantee::Safe, &bytes, out);
                }
            }
        }
        c.run();
    }
}

#[test]
fn old_ring_message_sent_during_merge_sync_respects_views() {
    let mut c = synced_cluster(&[1, 2, 3]);
    c.form(&[&[1, 2], &[3]]);
    c.run();
    c.cpg_open(1, 1, 11);
    c.cpg_open(3, 1, 31);
    c.join(1, 1, b"g");
    c.join(3, 1, b"g");
    c.run();
    c.cpg_events(1, 1);
    c.cpg_events(3, 1);
    // Accepted on node 3's old ring, still queued when the rings merge: it
    // is delivered in the new ring, during the sync.
    assert_eq!(
        c.cpg(
            3,
            1,
            pc::Request::Mcast {
                guarantee: 2,
                msg: b"old"
            }
        )
        .0,
        CsError::Ok
    );
    c.form(&[&[1, 2, 3]]);
    c.run();
    let e1 = c.cpg_events(1, 1);
    assert_eq!(
        e1.len(),
        1,
        "node 1 does not know 31 yet when `old` arrives: {e1:?}"
    );
    assert_eq!(conf_joined(&e1[0]), vec![(3, 31, pc::reason::NODEUP)]);
    let e3 = c.cpg_events(3, 1);
    assert_eq!(e3.len(), 2, "{e3:?}");
    assert!(matches!(&e3[0], Ev::Deliver { msg, .. } if msg == b"old"));
    assert_eq!(conf_joined(&e3[1]), vec![(1, 11, pc::reason::NODEUP)]);
    assert!(c.eng(1).stats().dropped >= 1);
}

/// Deliveries remember where the last sender's messages to a group went
/// (`Route` in cpg.rs); a join, a leave or a disconnect between two
/// messages of one sender must still change who gets the next one.
#[test]
fn receivers_change_between_messages_of_one_sender() {
    let mut c = synced_cluster(&[1, 2]);
    c.cpg_open(2, 20, 200);
    c.join(2, 20, b"g");
    c.cpg_open(1, 10, 100);
    c.join(1, 10, b"g");
    c.run();
    let mcast = |c: &mut Cluster, msg: &'static [u8]| {
        let r = c.cpg(
            2,
            20,
            pc::Request::Mcast {
                guarantee: pc::guarantee::AGREED,
                msg,
            },
        );
        assert_eq!(r.0, CsError::Ok);
        c.run();
    };
    let delivered = |c: &mut Cluster, conn: u64| -> Vec<Vec<u8>> {
        c.cpg_events(1, conn)
            .into_iter()
            .filter_map(|e| match e {
                Ev::Deliver { msg, from, .. } => {
                    assert_eq!(from, (2, 200));
                    Some(msg)
                }
                _ => None,
            })
            .collect()
    };
    mcast(&mut c, b"m1");
    mcast(&mut c, b"m2");
    assert_eq!(delivered(&mut c, 10), vec![b"m1".to_vec(), b"m2".to_vec()]);
    // A second local receiver joins between two messages of the sender,
    // and m3 is ordered between its join request and the join's delivery
    // (node 1 held back for a round): m3 is not for it, m4 is.
    c.cpg_open(1, 11, 101);
    c.join(1, 11, b"g");
    c.hold.insert(1);
    c.cpg(
        2,
        20,
        pc::Request::Mcast {
            guarantee: pc::guarantee::AGREED,
            msg: b"m3",
        },
    );
    c.step();
    c.hold.remove(&1);
    c.run();
    mcast(&mut c, b"m4");
    assert_eq!(delivered(&mut c, 10), vec![b"m3".to_vec(), b"m4".to_vec()]);
    assert_eq!(delivered(&mut c, 11), vec![b"m4".to_vec()]);
    // The first one leaves, then the second disconnects.
    assert_eq!(
        c.cpg(1, 10, pc::Request::Leave { group: b"g" }).0,
        CsError::Ok
    );
    c.run();
    mcast(&mut c, b"m5");
    assert_eq!(delivered(&mut c, 10), Vec::<Vec<u8>>::new());
    assert_eq!(delivered(&mut c, 11), vec![b"m5".to_vec()]);
    c.disconnect(1, 11);
    c.run();
    mcast(&mut c, b"m6");
    assert_eq!(delivered(&mut c, 10), Vec::<Vec<u8>>::new());
    assert_eq!(delivered(&mut c, 11), Vec::<Vec<u8>>::new());
    // The sender's own node still delivers to it.
    let own: Vec<_> = c
        .cpg_events(2, 20)
        .into_iter()
        .filter(|e| matches!(e, Ev::Deliver { .. }))
        .collect();
    assert_eq!(own.len(), 6);
}
