//! Shared helpers for the integration tests: unique endpoints, an owned
//! view of server events, a pump with a deadline, and an echo server thread.
#![allow(dead_code)]

use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ipc_shm::{
    Client, ClientConfig, DisconnectReason, Endpoint, Event, FrameHeader, PollLoop, RingSizes,
    Server, ServerConfig, SessionId,
};

pub const KIND_ECHO: u16 = 1;
/// Payload: u32 count; the server sends that many 64-byte events, then responds.
pub const KIND_EVENTS: u16 = 2;
pub const KIND_ONE_WAY: u16 = 3;

pub fn endpoint(tag: &str) -> Endpoint {
    static N: AtomicU32 = AtomicU32::new(0);
    Endpoint::Abstract(format!(
        "ipc-shm-test-{}-{tag}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ))
}

pub fn server_config(tag: &str) -> ServerConfig {
    ServerConfig {
        endpoint: endpoint(tag),
        ..ServerConfig::default()
    }
}

pub fn client_config(endpoint: &Endpoint) -> ClientConfig {
    ClientConfig {
        endpoint: endpoint.clone(),
        ..ClientConfig::default()
    }
}

/// A server that grants 4 KiB rings, its poll loop, and a client
/// configuration that asks for them (rings that fill and wrap quickly).
pub fn small_rings(tag: &str) -> (Server, PollLoop, ClientConfig) {
    let mut cfg = server_config(tag);
    cfg.min_ring = 4096;
    let server = Server::new(cfg).unwrap();
    let pl = PollLoop::new().unwrap();
    let mut ccfg = client_config(server.endpoint());
    ccfg.sizes = RingSizes {
        request: 4096,
        response: 4096,
        event: 4096,
    };
    (server, pl, ccfg)
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ev {
    Connected(SessionId),
    Request(SessionId, FrameHeader, Vec<u8>),
    Disconnected(SessionId, DisconnectReason),
}

pub fn next(server: &mut Server) -> Option<Ev> {
    Some(match server.next_event()? {
        Event::Connected { session, .. } => Ev::Connected(session),
        Event::Request {
            session,
            header,
            payload,
        } => Ev::Request(session, header, payload.to_vec()),
        Event::Disconnected { session, reason } => Ev::Disconnected(session, reason),
    })
}

/// Runs the server until `f` returns `Some`; panics after `limit`.
pub fn pump<T>(
    server: &mut Server,
    pl: &mut PollLoop,
    limit: Duration,
    mut f: impl FnMut(&mut Server, Ev) -> Option<T>,
) -> T {
    let end = Instant::now() + limit;
    loop {
        assert!(
            Instant::now() < end,
            "pump: condition not reached in {limit:?}"
        );
        pl.turn(server, Some(Duration::from_millis(10))).unwrap();
        while let Some(ev) = next(server) {
            if let Some(t) = f(server, ev) {
                return t;
            }
        }
    }
}

/// Connects on a helper thread while the server runs here; returns the
/// client and its session id.
pub fn connect(server: &mut Server, pl: &mut PollLoop, cfg: ClientConfig) -> (Client, SessionId) {
    let t = std::thread::spawn(move || Client::connect(&cfg));
    let id = pump(server, pl, Duration::from_secs(20), |_, ev| match ev {
        Ev::Connected(id) => Some(id),
        other => panic!("unexpected {other:?}"),
    });
    (t.join().unwrap().unwrap(), id)
}

pub struct EchoServer {
    pub endpoint: Endpoint,
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<Vec<Ev>>>,
}

impl EchoServer {
    pub fn start(cfg: ServerConfig) -> EchoServer {
        let endpoint = cfg.endpoint.clone();
        let mut server = Server::new(cfg).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::spawn(move || {
            let mut pl = PollLoop::new().unwrap();
            let mut log = Vec::new();
            while !s.load(Ordering::Relaxed) {
                pl.turn(&mut server, Some(Duration::from_millis(5)))
                    .unwrap();
                while let Some(ev) = next(&mut server) {
                    echo(&mut server, &ev);
                    if !matches!(ev, Ev::Request(..)) {
                        log.push(ev);
                    }
                }
            }
            log
        });
        EchoServer {
            endpoint,
            stop,
            handle: Some(handle),
        }
    }

    /// Stops the server thread; returns its connect/disconnect log.
    pub fn stop(mut self) -> Vec<Ev> {
        self.stop.store(true, Ordering::Relaxed);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for EchoServer {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

pub fn echo(server: &mut Server, ev: &Ev) {
    let Ev::Request(id, h, p) = ev else { return };
    match h.kind {
        KIND_ECHO => {
            server.respond(*id, *h, p).unwrap();
        }
        KIND_EVENTS => {
            let n = u32::from_le_bytes(p[..4].try_into().unwrap());
            for i in 0..n as u64 {
                let eh = FrameHeader {
                    service: h.service,
                    kind: 7,
                    request_id: i,
                };
                // Events carry their sequence number so receivers can check order.
                let mut body = [0u8; 64];
                body[..8].copy_from_slice(&i.to_le_bytes());
                server.send_event(*id, eh, &body).unwrap();
            }
            server.respond(*id, *h, &[]).unwrap();
        }
        _ => {}
    }
}

/// A child process that is killed (and reaped) when dropped.
pub struct Child(pub std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Re-executes this test binary to run `child_entry` with `role`.
pub fn spawn_child(role: &str, endpoint: &Endpoint) -> Child {
    let exe = std::env::current_exe().unwrap();
    let ep = match endpoint {
        Endpoint::Abstract(n) => format!("@{n}"),
        Endpoint::Path(p) => p.display().to_string(),
    };
    Child(
        std::process::Command::new(exe)
            .args(["--exact", "child_entry", "--nocapture", "--test-threads=1"])
            .env("IPC_SHM_CHILD", role)
            .env(ipc_shm::ENDPOINT_ENV, ep)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// Reads the child's stdout until a line containing `prefix`; returns it from there.
pub fn wait_line(child: &mut Child, prefix: &str) -> String {
    use std::io::BufRead;
    let out = child.0.stdout.as_mut().unwrap();
    let mut r = std::io::BufReader::new(out);
    let mut line = String::new();
    loop {
        line.clear();
        if r.read_line(&mut line).unwrap() == 0 {
            panic!("child ended before printing {prefix}");
        }
        // The harness prints "test child_entry ... " before the child's output.
        if let Some(at) = line.find(prefix) {
            return line[at..].trim_end().to_owned();
        }
    }
}
