//! Nothing a client sends can crash the daemon: a real `corosync` on
//! loopback gets tens of thousands of random requests (random service,
//! kind and payload, and mutated valid CPG and EVS requests) over real
//! shared-memory sessions. Every request gets an answer; afterwards the
//! daemon still serves a well-formed client.

use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use ipc_shm::{Client, ClientConfig, ClientError, Endpoint, RingSizes, Wait};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use services::proto::{cpg, evs, service, CsError};

struct Daemon {
    child: Child,
    dir: std::path::PathBuf,
    endpoint: String,
}

impl Daemon {
    fn start() -> Daemon {
        // Tests run in parallel in one process: each daemon gets its own
        // directory, endpoint and port.
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let id = std::process::id() * 4 + n;
        let dir = std::env::temp_dir().join(format!("corosync-rs-hostile-{id}"));
        std::fs::create_dir_all(dir.join("state")).unwrap();
        let port = 30_000 + (id % 20_000) as u16;
        let conf = format!(
            "totem {{\n version: 2\n cluster_name: hostile\n transport: udpu\n token: 1000\n \
             interface {{\n linknumber: 0\n mcastport: {port}\n }}\n}}\n\
             nodelist {{\n node {{\n nodeid: 1\n ring0_addr: 127.0.0.1\n }}\n}}\n\
             system {{\n state_dir: {}\n sched_rr: no\n}}\n\
             logging {{\n to_stderr: yes\n to_syslog: no\n}}\n",
            dir.join("state").display()
        );
        std::fs::write(dir.join("corosync.conf"), conf).unwrap();
        let endpoint = format!("corosync-rs-hostile-{id}");
        let log = std::fs::File::create(dir.join("log")).unwrap();
        let child = Command::new(env!("CARGO_BIN_EXE_corosync"))
            .args(["-f", "-c"])
            .arg(dir.join("corosync.conf"))
            .env("COROSYNC_IPC_ENDPOINT", &endpoint)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Daemon {
            child,
            dir,
            endpoint,
        };
        let t0 = Instant::now();
        while !d.log().contains("ready to provide service") {
            assert!(t0.elapsed() < Duration::from_secs(20), "{}", d.log());
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    fn log(&self) -> String {
        let mut s = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.join("log")) {
            let _ = f.read_to_string(&mut s);
        }
        s
    }

    fn connect(&self) -> Client {
        let cfg = ClientConfig {
            endpoint: Endpoint::parse(&self.endpoint),
            sizes: RingSizes {
                request: 1 << 20,
                response: 1 << 20,
                event: 1 << 20,
            },
            ..ClientConfig::default()
        };
        Client::connect(&cfg).expect("connect")
    }

    fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A random request: half the time a valid CPG/EVS request with some bytes
/// flipped or cut, otherwise random service, kind and bytes.
fn random_request(rng: &mut ChaCha8Rng) -> (u16, u16, Vec<u8>) {
    let mut payload = Vec::new();
    if rng.gen_bool(0.5) {
        let (svc, kind) = if rng.gen_bool(0.5) {
            let req = match rng.gen_range(0..6) {
                0 => cpg::Request::Init {
                    model: rng.gen_range(0..3),
                    flags: rng.gen(),
                },
                1 => cpg::Request::Join { group: b"hostile" },
                2 => cpg::Request::Mcast {
                    guarantee: rng.gen_range(0..5),
                    msg: b"payload",
                },
                3 => cpg::Request::Iteration {
                    kind: rng.gen_range(0..5),
                    group: b"g",
                },
                4 => cpg::Request::Leave { group: b"hostile" },
                _ => cpg::Request::MembershipGet { group: b"x" },
            };
            (service::CPG, req.encode(&mut payload))
        } else {
            let g = [rng.gen::<u8>(); evs::GROUP_LEN];
            let req = match rng.gen_range(0..3) {
                0 => evs::Request::Join { groups: vec![g] },
                1 => evs::Request::McastGroups {
                    guarantee: rng.gen_range(0..5),
                    groups: vec![g, g],
                    msg: b"m",
                },
                _ => evs::Request::MembershipGet,
            };
            (service::EVS, req.encode(&mut payload))
        };
        for _ in 0..rng.gen_range(0..4) {
            if !payload.is_empty() {
                let i = rng.gen_range(0..payload.len());
                payload[i] ^= rng.gen::<u8>() | 1;
            }
        }
        if rng.gen_bool(0.2) {
            payload.truncate(rng.gen_range(0..=payload.len()));
        }
        (svc, kind, payload)
    } else {
        let len = rng.gen_range(0..300);
        payload.resize(len, 0);
        rng.fill(&mut payload[..]);
        let svc = if rng.gen_bool(0.7) {
            rng.gen_range(0..20)
        } else {
            rng.gen()
        };
        (svc, rng.gen_range(0..20), payload)
    }
}

#[test]
fn random_requests_never_crash_the_daemon() {
    let mut d = Daemon::start();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut answered = 0u64;
    for session in 0..20 {
        let c = d.connect();
        for _ in 0..1500 {
            let (svc, kind, payload) = random_request(&mut rng);
            match c.call(
                svc,
                kind,
                &payload,
                Wait::Park,
                Some(Duration::from_secs(5)),
            ) {
                Ok(_) | Err(ClientError::UnknownService) => answered += 1,
                // A request the daemon must not answer (a multicast the
                // daemon accepted is answered too; nothing times out).
                Err(ClientError::Disconnected) => break,
                Err(e) => panic!("session {session}: {e}\n{}", d.log()),
            }
        }
        assert!(d.alive(), "daemon died:\n{}", d.log());
    }
    assert!(answered > 10_000, "{answered}");
    // Still serving: a clean CPG session works.
    let c = d.connect();
    let mut p = Vec::new();
    let k = cpg::Request::Init { model: 0, flags: 0 }.encode(&mut p);
    let r = c
        .call(
            service::CPG,
            k,
            &p,
            Wait::Park,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(r.payload[..4], CsError::Ok.code().to_le_bytes());
    p.clear();
    let k = cpg::Request::LocalGet.encode(&mut p);
    let r = c
        .call(
            service::CPG,
            k,
            &p,
            Wait::Park,
            Some(Duration::from_secs(5)),
        )
        .unwrap();
    assert_eq!(cpg::decode_u32(&r.payload[4..]), Ok(1));
    assert!(d.alive());
}

/// A client that writes random bytes over its own shared segment (the
/// ring indices, flags and data the daemon reads) while its CPG session
/// is busy is disconnected when the daemon finds a header it cannot
/// trust; the daemon never crashes and serves the next client.
#[test]
fn a_client_scribbling_over_its_rings_is_dropped_and_the_daemon_serves_on() {
    let mut d = Daemon::start();
    let mut rng = ChaCha8Rng::seed_from_u64(0x5c21b);
    let call = |c: &Client, kind: u16, p: &[u8]| {
        c.call(
            service::CPG,
            kind,
            p,
            Wait::Park,
            Some(Duration::from_secs(5)),
        )
    };
    let rounds = 60;
    let mut dropped = 0;
    for round in 0..rounds {
        let c = d.connect();
        // An honest session first: init, join, a few multicasts (whose
        // deliveries fill the event ring), so the indices are not zero.
        let mut p = Vec::new();
        let k = cpg::Request::Init { model: 0, flags: 0 }.encode(&mut p);
        call(&c, k, &p).expect("init");
        p.clear();
        let k = cpg::Request::Join { group: b"scribble" }.encode(&mut p);
        call(&c, k, &p).expect("join");
        for i in 0..(round % 5) {
            p.clear();
            let msg = [i as u8; 40];
            let k = cpg::Request::Mcast {
                guarantee: 1,
                msg: &msg,
            }
            .encode(&mut p);
            let _ = call(&c, k, &p);
        }
        // Everywhere, the control page only (indices and flags), or a
        // few single words, as the ipc-shm hostile tests do.
        let (base, len) = c.segment_for_tests();
        let (from, to) = match round % 3 {
            0 => (0, len),
            1 => (0, 4096.min(len)),
            _ => (0, 0),
        };
        let write = |at: usize, v: u64| {
            // SAFETY: `at + 8 <= len` inside the live mapping of this
            // client's segment; racing the daemon's reads is the point.
            unsafe { std::ptr::write_volatile(base.add(at).cast::<u64>(), v) }
        };
        for at in (from..to).step_by(8) {
            write(at, rng.gen());
        }
        if round % 3 == 2 {
            for _ in 0..8 {
                let at = rng.gen_range(0..len / 8) * 8;
                write(at, rng.gen());
            }
        }
        // Give the daemon something to read: it answers, or drops the
        // session; a reply the scribbled rings lost times out.
        p.clear();
        let k = cpg::Request::LocalGet.encode(&mut p);
        if let Err(ClientError::Disconnected) = call(&c, k, &p) {
            dropped += 1;
        }
        assert!(d.alive(), "round {round}: the daemon died:\n{}", d.log());
    }
    eprintln!("{dropped} of {rounds} scribbling clients dropped");
    assert!(
        dropped > rounds / 3,
        "only {dropped} of {rounds} scribbling clients were dropped"
    );
    assert!(
        d.log().contains("ring"),
        "no disconnect reason in the log:\n{}",
        d.log()
    );
    // Still serving a clean client.
    let c = d.connect();
    let mut p = Vec::new();
    let k = cpg::Request::Init { model: 0, flags: 0 }.encode(&mut p);
    let r = call(&c, k, &p).expect("a clean client is answered");
    assert_eq!(r.payload[..4], CsError::Ok.code().to_le_bytes());
}

/// An answer larger than the client's response ring can ever hold (a
/// client that asked for the smallest ring, then a cmap get of a 64 KiB
/// value) comes back as CS_ERR_TOO_BIG instead of never.
#[test]
fn a_response_too_large_for_the_ring_is_an_error_not_a_hang() {
    use services::proto::cmap;
    let d = Daemon::start();
    let cfg = ClientConfig {
        endpoint: Endpoint::parse(&d.endpoint),
        sizes: RingSizes {
            request: 1 << 20,
            response: 4096,
            event: 4096,
        },
        ..ClientConfig::default()
    };
    let c = Client::connect(&cfg).expect("connect");
    let call = |kind: u16, p: &[u8]| {
        c.call(
            service::CMAP,
            kind,
            p,
            Wait::Park,
            Some(Duration::from_secs(5)),
        )
        .expect("answered")
    };
    let mut p = Vec::new();
    let k = cmap::Request::Init { map: 0 }.encode(&mut p);
    assert_eq!(call(k, &p).payload[..4], CsError::Ok.code().to_le_bytes());
    p.clear();
    let k = cmap::Request::Set {
        key: b"test.big",
        value: cmap::Value::Str("x".repeat(64 << 10)),
    }
    .encode(&mut p);
    assert_eq!(call(k, &p).payload[..4], CsError::Ok.code().to_le_bytes());
    p.clear();
    let k = cmap::Request::Get { key: b"test.big" }.encode(&mut p);
    let r = call(k, &p);
    assert_eq!(r.payload, CsError::TooBig.code().to_le_bytes());
    // The session goes on: a small answer still comes.
    p.clear();
    let k = cmap::Request::Get {
        key: b"totem.cluster_name",
    }
    .encode(&mut p);
    assert_eq!(call(k, &p).payload[..4], CsError::Ok.code().to_le_bytes());
}
