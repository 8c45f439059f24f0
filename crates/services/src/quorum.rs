//! The quorum service (id 10): what `libquorum` clients see — whether the
//! cluster is quorate, the quorum members (the ring's members) and the
//! ring id, with notifications to tracking connections (model V0:
//! quorate, ring seq and members; model V1: the ring id, plus a node list
//! with who joined and who left after every membership change).
//!
//! The provider is votequorum (`votequorum.rs`), which owns the shared
//! state; without a provider the quorum type is QUORUM_FREE and the
//! cluster is always quorate, as in Corosync.
//!
//! Error codes: an unknown model: CS_ERR_INVALID_PARAM; trackstart with
//! CHANGES or CHANGES_ONLY while tracking: CS_ERR_EXIST; trackstop while
//! not tracking: CS_ERR_NOT_EXIST.

use crate::cpg::decode_error_code;
use crate::proto::quorum::{kind, model, quorum_type, track, EventMsg, Request};
use crate::proto::{service, CsError, DecodeError, Writer};
use crate::service::{ConfChange, Creds, Ctx, Service};
use crate::votequorum::{lock, Core, QuorumConn, Shared};
use crate::{ConnId, Guarantee, NodeId, ReplyTo};

/// The quorum service; see the module docs.
pub struct Quorum {
    core: Shared,
}

impl Quorum {
    pub(crate) fn new(core: Shared) -> Quorum {
        Quorum { core }
    }
}

impl Core {
    /// Sends the notification(s) a quorum connection of `model` gets.
    pub(crate) fn quorum_send(
        &self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        model: u32,
        change: Option<(&[NodeId], &[NodeId])>,
    ) {
        // Model V1 gets the node list first, then the quorum notification,
        // as Corosync sends them (trackstart and membership changes).
        if model == model::V1 {
            let (joined, left) = change.unwrap_or((&[], &[]));
            let mut buf = Vec::new();
            let k = EventMsg::Nodelist {
                ring: self.ring(),
                members: self.members.clone(),
                joined: joined.to_vec(),
                left: left.to_vec(),
            }
            .encode(&mut buf);
            ctx.event(conn, service::QUORUM, k, &[&buf]);
        }
        let mut buf = Vec::new();
        let k = EventMsg::Notify {
            quorate: self.is_quorate(),
            ring: self.ring(),
            members: self.members.clone(),
        }
        .encode(&mut buf);
        ctx.event(conn, service::QUORUM, k, &[&buf]);
    }

    fn quorum_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        to: ReplyTo,
        req: Request,
    ) -> Result<Vec<u8>, CsError> {
        let mut body = Vec::new();
        let entry = self.quorum_conns.entry(conn).or_insert(QuorumConn {
            model: model::V0,
            tracking: false,
        });
        match req {
            Request::Init { model: m } => {
                if m != model::V0 && m != model::V1 {
                    return Err(CsError::InvalidParam);
                }
                entry.model = m;
                let t = if self.provider() {
                    quorum_type::SET
                } else {
                    quorum_type::FREE
                };
                Writer(&mut body).u32(t);
            }
            Request::GetQuorate => {
                Writer(&mut body).u32(u32::from(self.is_quorate()));
            }
            Request::TrackStart { flags } => {
                let changes = flags & (track::CHANGES | track::CHANGES_ONLY) != 0;
                if changes && entry.tracking {
                    return Err(CsError::Exist);
                }
                if changes {
                    entry.tracking = true;
                }
                let m = entry.model;
                ctx.respond(conn, to, CsError::Ok, &[]);
                if flags & (track::CURRENT | track::CHANGES) != 0 {
                    self.quorum_send(ctx, conn, m, None);
                }
                return Err(CsError::Ok);
            }
            Request::TrackStop => {
                if !entry.tracking {
                    return Err(CsError::NotExist);
                }
                entry.tracking = false;
            }
        }
        Ok(body)
    }
}

impl Service for Quorum {
    fn id(&self) -> u16 {
        service::QUORUM
    }

    fn name(&self) -> &'static str {
        "quorum"
    }

    fn needs_first_sync(&self, k: u16) -> bool {
        k == kind::INIT
    }

    fn lib_request(
        &mut self,
        ctx: &mut Ctx<'_>,
        conn: ConnId,
        _creds: Creds,
        to: ReplyTo,
        payload: &[u8],
    ) {
        let req = match Request::decode(to.kind, payload) {
            Ok(r) => r,
            Err(e) => {
                ctx.stats.bad_requests += 1;
                ctx.respond(conn, to, decode_error_code(&e), &[]);
                return;
            }
        };
        let mut core = lock(&self.core);
        match core.quorum_request(ctx, conn, to, req) {
            Ok(body) => ctx.respond(conn, to, CsError::Ok, &[&body]),
            Err(CsError::Ok) => {}
            Err(e) => ctx.respond(conn, to, e, &[]),
        }
    }

    fn lib_disconnect(&mut self, _ctx: &mut Ctx<'_>, conn: ConnId) {
        lock(&self.core).quorum_conns.remove(&conn);
    }

    fn exec_deliver(
        &mut self,
        _ctx: &mut Ctx<'_>,
        _sender: NodeId,
        _guarantee: Guarantee,
        k: u16,
        _body: &[u8],
    ) -> Result<(), DecodeError> {
        // The quorum service has no executive messages of its own.
        Err(DecodeError::UnknownKind(k))
    }

    fn confchg(&mut self, _ctx: &mut Ctx<'_>, _change: &ConfChange<'_>) {}
}
