//! A stand-in daemon for the client tests: an `ipc-shm` server on its own
//! thread that answers the CPG and EVS protocols of `services::proto` for
//! one node (node id 1), delivering multicasts to the local joiners. It is
//! not the real service (no Totem, no sync); it exists so the client's
//! dispatch, callbacks, threads and C ABI run against real rings before
//! the daemon exists. Dropping it (or `kill`) ends every session, as a
//! daemon that dies.

use std::collections::{BTreeMap, BTreeSet};
use std::os::unix::fs::MetadataExt;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use ipc_shm::{Endpoint, Event, FrameHeader, PollLoop, Server, ServerConfig, SessionId};
use services::proto::cpg::{self, Address, IterationEntry};
use services::proto::evs;
use services::proto::{put_error, service, CsError};

pub const NODE: u32 = 1;
pub const MAX_ATOMIC: u32 = 1_000_000;

pub struct FakeDaemon {
    pub endpoint: String,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeDaemon {
    /// Listens on a fresh abstract name (returned in `endpoint`).
    pub fn start(tag: &str) -> FakeDaemon {
        let endpoint = format!("corosync-rs-fake-{tag}-{}", std::process::id());
        let mut cfg = ServerConfig {
            endpoint: Endpoint::Abstract(endpoint.clone()),
            ..ServerConfig::default()
        };
        let uid = std::fs::metadata("/proc/self")
            .map(|m| m.uid())
            .unwrap_or(0);
        cfg.authorization.runtime_uids.insert(uid);
        let server = Server::new(cfg).expect("fake daemon listens");
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let thread = std::thread::spawn(move || run(server, &flag));
        FakeDaemon {
            endpoint,
            stop,
            thread: Some(thread),
        }
    }

    /// Stops the daemon: every client sees its session end.
    pub fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.join().expect("fake daemon thread");
        }
    }
}

impl Drop for FakeDaemon {
    fn drop(&mut self) {
        self.kill();
    }
}

enum Owned {
    Connected(SessionId, u32),
    Request(SessionId, FrameHeader, Vec<u8>),
    Disconnected(SessionId),
}

#[derive(Default)]
struct State {
    pids: BTreeMap<SessionId, u32>,
    cpg_group: BTreeMap<SessionId, Vec<u8>>,
    evs_groups: BTreeMap<SessionId, BTreeSet<evs::Group>>,
}

fn run(mut server: Server, stop: &AtomicBool) {
    let mut pl = PollLoop::new().expect("epoll");
    let mut st = State::default();
    while !stop.load(Ordering::Relaxed) {
        pl.turn(&mut server, Some(Duration::from_millis(10)))
            .expect("poll");
        let mut evs = Vec::new();
        while let Some(ev) = server.next_event() {
            evs.push(match ev {
                Event::Connected { session, creds } => Owned::Connected(session, creds.pid as u32),
                Event::Request {
                    session,
                    header,
                    payload,
                } => Owned::Request(session, header, payload.to_vec()),
                Event::Disconnected { session, .. } => Owned::Disconnected(session),
            });
        }
        for ev in evs {
            match ev {
                Owned::Connected(s, pid) => {
                    st.pids.insert(s, pid);
                }
                Owned::Request(s, h, p) => {
                    let body = match h.service {
                        service::CPG => st.cpg(&mut server, s, h.kind, &p),
                        service::EVS => st.evs(&mut server, s, h.kind, &p),
                        _ => Err(CsError::NotSupported),
                    };
                    let mut out = Vec::new();
                    match body {
                        Ok(b) => {
                            put_error(&mut out, CsError::Ok);
                            out.extend_from_slice(&b);
                        }
                        Err(e) => put_error(&mut out, e),
                    }
                    let _ = server.respond(s, h, &out);
                }
                Owned::Disconnected(s) => {
                    st.cpg_leave(&mut server, s, cpg::reason::PROCDOWN);
                    st.evs_groups.remove(&s);
                    st.pids.remove(&s);
                }
            }
        }
    }
}

fn event(server: &mut Server, s: SessionId, service: u16, kind: u16, payload: &[u8]) {
    let h = FrameHeader {
        service,
        kind,
        request_id: 0,
    };
    let _ = server.send_event(s, h, payload);
}

impl State {
    fn addr(&self, s: SessionId, reason: u32) -> Address {
        Address {
            nodeid: NODE,
            pid: self.pids.get(&s).copied().unwrap_or(0),
            reason,
        }
    }

    fn members(&self, group: &[u8]) -> Vec<SessionId> {
        self.cpg_group
            .iter()
            .filter(|(_, g)| g.as_slice() == group)
            .map(|(s, _)| *s)
            .collect()
    }

    fn confchg(
        &self,
        server: &mut Server,
        group: &[u8],
        to: &[SessionId],
        left: Vec<Address>,
        joined: Vec<Address>,
    ) {
        let members: Vec<Address> = self
            .members(group)
            .iter()
            .map(|s| self.addr(*s, cpg::reason::JOIN))
            .collect();
        let mut p = Vec::new();
        let kind = cpg::EventMsg::Confchg {
            group,
            members,
            left,
            joined,
        }
        .encode(&mut p);
        for s in to {
            event(server, *s, service::CPG, kind, &p);
        }
    }

    fn cpg_leave(&mut self, server: &mut Server, s: SessionId, reason: u32) {
        if let Some(group) = self.cpg_group.remove(&s) {
            let mut to = self.members(&group);
            if reason == cpg::reason::LEAVE {
                to.push(s);
            }
            self.confchg(server, &group, &to, vec![self.addr(s, reason)], vec![]);
        }
    }

    fn cpg(
        &mut self,
        server: &mut Server,
        s: SessionId,
        kind: u16,
        p: &[u8],
    ) -> Result<Vec<u8>, CsError> {
        let req = cpg::Request::decode(kind, p).map_err(|_| CsError::InvalidParam)?;
        let mut out = Vec::new();
        match req {
            cpg::Request::Init { model, flags } => {
                if model == cpg::model::V1 && flags & cpg::model::V1_DELIVER_INITIAL_TOTEM_CONF != 0
                {
                    let mut e = Vec::new();
                    let k = cpg::EventMsg::TotemConfchg {
                        ring_rep: NODE,
                        ring_seq: 4,
                        members: vec![NODE],
                    }
                    .encode(&mut e);
                    event(server, s, service::CPG, k, &e);
                }
            }
            cpg::Request::Join { group } => {
                if self.cpg_group.contains_key(&s) {
                    return Err(CsError::Exist);
                }
                self.cpg_group.insert(s, group.to_vec());
                let to = self.members(group);
                let joined = vec![self.addr(s, cpg::reason::JOIN)];
                self.confchg(server, group, &to, vec![], joined);
            }
            cpg::Request::Leave { group } => {
                if self.cpg_group.get(&s).map(Vec::as_slice) != Some(group) {
                    return Err(CsError::NotExist);
                }
                self.cpg_leave(server, s, cpg::reason::LEAVE);
            }
            cpg::Request::Mcast { msg, .. } => {
                let group = self.cpg_group.get(&s).ok_or(CsError::NotExist)?.clone();
                let pid = self.pids.get(&s).copied().unwrap_or(0);
                let mut e = Vec::new();
                let k = cpg::EventMsg::Deliver {
                    group: &group,
                    nodeid: NODE,
                    pid,
                    msg,
                }
                .encode(&mut e);
                for to in self.members(&group) {
                    event(server, to, service::CPG, k, &e);
                }
            }
            cpg::Request::MembershipGet { group } => {
                let m: Vec<Address> = self
                    .members(group)
                    .iter()
                    .map(|s| self.addr(*s, cpg::reason::JOIN))
                    .collect();
                cpg::encode_membership(&mut out, &m);
            }
            cpg::Request::LocalGet => out.extend_from_slice(&NODE.to_le_bytes()),
            cpg::Request::MaxAtomicMsgsize => out.extend_from_slice(&MAX_ATOMIC.to_le_bytes()),
            cpg::Request::FlowControlState => out.extend_from_slice(&0u32.to_le_bytes()),
            cpg::Request::Iteration { kind, group } => {
                let entries: Vec<IterationEntry> = self
                    .cpg_group
                    .iter()
                    .filter(|(_, g)| kind != cpg::iteration::ONE_GROUP || g.as_slice() == group)
                    .map(|(s, g)| IterationEntry {
                        group: g.clone(),
                        nodeid: NODE,
                        pid: self.pids.get(s).copied().unwrap_or(0),
                    })
                    .collect();
                cpg::encode_iteration(&mut out, &entries);
            }
            cpg::Request::Finalize => self.cpg_leave(server, s, cpg::reason::PROCDOWN),
        }
        Ok(out)
    }

    fn evs(
        &mut self,
        server: &mut Server,
        s: SessionId,
        kind: u16,
        p: &[u8],
    ) -> Result<Vec<u8>, CsError> {
        let req = evs::Request::decode(kind, p).map_err(|_| CsError::InvalidParam)?;
        let mut out = Vec::new();
        let deliver = |st: &State, server: &mut Server, to: &BTreeSet<evs::Group>, msg: &[u8]| {
            let mut e = Vec::new();
            let k = evs::EventMsg::Deliver { nodeid: NODE, msg }.encode(&mut e);
            for (dest, joined) in &st.evs_groups {
                if !joined.is_disjoint(to) {
                    event(server, *dest, service::EVS, k, &e);
                }
            }
        };
        match req {
            evs::Request::Join { groups } => {
                self.evs_groups.entry(s).or_default().extend(groups);
            }
            evs::Request::Leave { groups } => {
                let g = self.evs_groups.entry(s).or_default();
                for x in groups {
                    g.remove(&x);
                }
            }
            evs::Request::McastJoined { msg, .. } => {
                let to = self.evs_groups.get(&s).cloned().unwrap_or_default();
                deliver(self, server, &to, msg);
            }
            evs::Request::McastGroups { groups, msg, .. } => {
                let to: BTreeSet<evs::Group> = groups.into_iter().collect();
                deliver(self, server, &to, msg);
            }
            evs::Request::MembershipGet => evs::encode_membership(&mut out, NODE, &[NODE]),
        }
        Ok(out)
    }
}
