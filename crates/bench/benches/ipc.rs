//! Criterion benches of the shared-memory path within one process: one
//! client-API call per message and the server's validated read of it (no
//! cross-core traffic; `ipc-bench` measures two processes).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use ipc_shm::{Client, ClientConfig, Endpoint, Event, PollLoop, RingSizes, Server, ServerConfig};

fn setup(tag: &str) -> (Server, PollLoop, Client) {
    let endpoint = Endpoint::Abstract(format!("ipc-shm-bench-{}-{tag}", std::process::id()));
    let mut server = Server::new(ServerConfig {
        endpoint: endpoint.clone(),
        ..ServerConfig::default()
    })
    .unwrap();
    let mut pl = PollLoop::new().unwrap();
    let cfg = ClientConfig {
        endpoint,
        sizes: RingSizes {
            request: 1 << 20,
            response: 1 << 16,
            event: 1 << 16,
        },
        ..ClientConfig::default()
    };
    let t = std::thread::spawn(move || Client::connect(&cfg).unwrap());
    while !t.is_finished() {
        pl.turn(&mut server, Some(Duration::from_millis(1)))
            .unwrap();
        while server.next_event().is_some() {}
    }
    let client = t.join().unwrap();
    server.set_busy_poll(true);
    (server, pl, client)
}

fn send_and_read(c: &mut Criterion) {
    let mut g = c.benchmark_group("ipc_send_validated_read");
    for size in [64usize, 1024, 65536] {
        let (mut server, _pl, client) = setup(&format!("s{size}"));
        let payload = vec![7u8; size];
        g.throughput(Throughput::Bytes(size as u64));
        g.bench_with_input(BenchmarkId::from_parameter(size), &size, |b, _| {
            b.iter(|| {
                client.send(1, 1, &payload).unwrap();
                server.poll_busy();
                match server.next_event() {
                    Some(Event::Request { payload, .. }) => assert_eq!(payload.len(), size),
                    other => panic!("{other:?}"),
                }
            })
        });
    }
    g.finish();
}

fn event_round(c: &mut Criterion) {
    let (mut server, _pl, client) = setup("events");
    let mut session = None;
    client.send(1, 1, b"hi").unwrap();
    server.poll_busy();
    if let Some(Event::Request { session: s, .. }) = server.next_event() {
        session = Some(s);
    }
    let session = session.unwrap();
    let h = ipc_shm::FrameHeader::default();
    c.bench_function("ipc_event_send_dispatch_64B", |b| {
        b.iter(|| {
            server.send_event(session, h, &[1u8; 64]).unwrap();
            let n = client
                .dispatch(ipc_shm::DispatchMode::One, None, |_, p| {
                    assert_eq!(p.len(), 64)
                })
                .unwrap();
            assert_eq!(n, 1);
        })
    });
}

criterion_group!(benches, send_and_read, event_round);
criterion_main!(benches);
