//! An [`Output`] that records everything, for the services' unit tests.

use crate::{ConnId, Control, Guarantee, Output, ReplyTo, SendRoom};

#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Sent {
    Multicast(Vec<u8>),
    Respond {
        conn: ConnId,
        to: ReplyTo,
        payload: Vec<u8>,
    },
    Event {
        conn: ConnId,
        service: u16,
        kind: u16,
        payload: Vec<u8>,
    },
    Disconnect(ConnId),
}

#[derive(Default)]
pub(crate) struct Recorder {
    pub sent: Vec<Sent>,
    pub controls: Vec<Control>,
}

impl Output for Recorder {
    fn multicast(&mut self, _g: Guarantee, parts: &[&[u8]]) {
        self.sent.push(Sent::Multicast(parts.concat()));
    }
    fn respond(&mut self, conn: ConnId, to: ReplyTo, parts: &[&[u8]]) {
        self.sent.push(Sent::Respond {
            conn,
            to,
            payload: parts.concat(),
        });
    }
    fn event(&mut self, conn: ConnId, service: u16, kind: u16, parts: &[&[u8]]) -> bool {
        self.sent.push(Sent::Event {
            conn,
            service,
            kind,
            payload: parts.concat(),
        });
        true
    }
    fn disconnect(&mut self, conn: ConnId, _why: &'static str) {
        self.sent.push(Sent::Disconnect(conn));
    }
    fn send_room(&self) -> SendRoom {
        SendRoom::default()
    }
    fn control(&mut self, req: Control) {
        self.controls.push(req);
    }
}
