//! Issue 4: every connection's cost is bounded and every failure visible.
//! S9 (bounded outbound memory), S10 under load, S12 (keepalive and idle
//! timeout), S13 (origins) and the live-connections figure.

mod common;

use std::{
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc, Mutex,
    },
    time::Duration,
};

use actix_ws_listener::{
    BackpressurePolicy, CloseCode, Connections, Error, Listener, Message, SendError, Socket,
};
use common::*;

/// Pushes 64 KiB messages from on_open until the socket refuses one.
struct Flood {
    events: Events,
    refused: Arc<Mutex<Option<SendError>>>,
    peak: Arc<AtomicUsize>,
}

impl Listener for Flood {
    fn on_open(&mut self, socket: &Socket) {
        let chunk = Message::binary(vec![0u8; 64 * 1024]);
        let socket = socket.clone();
        let (refused, peak, events) =
            (self.refused.clone(), self.peak.clone(), self.events.clone());
        // From another thread, as a broadcaster would.
        std::thread::spawn(move || {
            for _ in 0..10_000 {
                match socket.send(chunk.clone()) {
                    Ok(()) => {
                        peak.fetch_max(socket.buffered_amount(), Ordering::Relaxed);
                    }
                    Err(error) => {
                        *refused.lock().unwrap() = Some(error);
                        events.note(&socket, "refused");
                        return;
                    }
                }
            }
            events.note(&socket, "never refused");
        });
    }
}

#[test]
fn s9_a_client_that_never_reads_gets_backpressure_not_unbounded_memory() {
    let events = Events::new();
    let refused = Arc::new(Mutex::new(None));
    let peak = Arc::new(AtomicUsize::new(0));
    let limit = 1 << 20;
    let server = serve_with(test_config().max_outbound_buffer(limit), {
        let (events, refused, peak) = (events.clone(), refused.clone(), peak.clone());
        move || Flood {
            events: events.clone(),
            refused: refused.clone(),
            peak: peak.clone(),
        }
    });
    // The client upgrades and then never reads.
    let client = server.connect();
    events.wait_note("refused");
    assert!(
        matches!(
            *refused.lock().unwrap(),
            Some(SendError::Backpressure { limit: 1048576, .. })
        ),
        "{:?}",
        refused.lock().unwrap()
    );
    let peak = peak.load(Ordering::Relaxed);
    assert!(
        peak <= limit + 64,
        "queued {peak} bytes with a limit of {limit}"
    );
    drop(client);
}

#[test]
fn s9_the_close_policy_closes_a_stalled_connection_with_1008() {
    let events = Events::new();
    let config = test_config()
        .max_outbound_buffer(256 * 1024)
        .backpressure(BackpressurePolicy::Close)
        .close_timeout(Duration::from_millis(200));
    let server = serve_recorded_with(config, &events, |events| Flood {
        events,
        refused: Arc::default(),
        peak: Arc::default(),
    });
    let _client = server.connect();
    let conn = events.wait_open().id();
    assert_eq!(events.wait_error(conn), Error::Backpressure);
    assert_eq!(events.wait_close(conn).0, CloseCode::POLICY_VIOLATION);
    events.assert_lifecycle(conn);
}

#[test]
fn s1_s9_two_thousand_abrupt_drops_each_match_one_on_open_with_one_on_close() {
    let opens = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let connections = Connections::new();
    struct Count(Arc<AtomicUsize>, Arc<AtomicUsize>);
    impl Listener for Count {
        fn on_open(&mut self, _: &Socket) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
        fn on_close(&mut self, _: &Socket, code: CloseCode, _: &str) {
            assert_eq!(code, CloseCode::ABNORMAL);
            self.1.fetch_add(1, Ordering::SeqCst);
        }
    }
    let server = serve_registered(test_config(), &connections, {
        let (opens, closes) = (opens.clone(), closes.clone());
        move || Count(opens.clone(), closes.clone())
    });
    for i in 0..2000 {
        let mut client = server.connect();
        if i % 2 == 1 {
            // Half a frame, then gone.
            client.write(&FrameSpec::new(OP_TEXT, "hello").encode()[..5]);
        }
        client.drop_tcp();
    }
    wait_until("2000 on_close and no live connection", || {
        closes.load(Ordering::SeqCst) >= 2000 && connections.is_empty()
    });
    assert_eq!(opens.load(Ordering::SeqCst), 2000);
    assert_eq!(closes.load(Ordering::SeqCst), 2000);
    assert_eq!(connections.total_opened(), 2000);
    // Normal service afterwards.
    let mut client = server.connect();
    client.send_close(1000, "");
    assert_eq!(client.recv_close().0, 1000);
}

#[test]
fn s1_peers_that_vanish_while_the_server_writes_to_them_each_get_one_on_close() {
    // Every client goes without a close frame while the server is writing
    // to it: echoes of a burst, a large echo, a push from another thread,
    // frames sent with the handshake. Its TCP then resets the connection,
    // and the server meets the reset in a read or in a write, whichever
    // comes first. Four clients at a time, so that the connections of one
    // server thread race each other too.
    const PER_CLIENT: usize = 100;
    const CLIENTS: usize = 4;
    struct Gone {
        opens: Arc<AtomicUsize>,
        closes: Arc<AtomicUsize>,
    }
    impl Listener for Gone {
        fn on_open(&mut self, _: &Socket) {
            self.opens.fetch_add(1, Ordering::SeqCst);
        }
        fn on_message(&mut self, socket: &Socket, message: Message) {
            if message.as_text() == Some("push") {
                let socket = socket.clone();
                std::thread::spawn(move || {
                    let chunk = Message::binary(vec![7u8; 16 * 1024]);
                    while !matches!(socket.send(chunk.clone()), Err(SendError::Closed(_))) {
                        std::thread::sleep(Duration::from_micros(200));
                    }
                });
            } else {
                let _ = socket.send(message);
            }
        }
        fn on_close(&mut self, _: &Socket, _: CloseCode, _: &str) {
            self.closes.fetch_add(1, Ordering::SeqCst);
        }
    }
    let opens = Arc::new(AtomicUsize::new(0));
    let closes = Arc::new(AtomicUsize::new(0));
    let connections = Connections::new();
    let server = serve_registered(test_config(), &connections, {
        let (opens, closes) = (opens.clone(), closes.clone());
        move || Gone {
            opens: opens.clone(),
            closes: closes.clone(),
        }
    });
    let addr = server.addr();
    let clients: Vec<_> = (0..CLIENTS)
        .map(|_| {
            std::thread::spawn(move || {
                for i in 0..PER_CLIENT {
                    match i % 4 {
                        0 => {
                            let mut client = RawClient::connect(addr, "/ws");
                            let mut burst = Vec::new();
                            for _ in 0..20 {
                                burst.extend(FrameSpec::new(OP_TEXT, "x".repeat(1024)).encode());
                            }
                            client.write(&burst);
                            client.drop_tcp();
                        }
                        1 => {
                            let mut client = RawClient::connect(addr, "/ws");
                            client.send_binary(&vec![1u8; 256 * 1024]);
                            client.drop_tcp();
                        }
                        2 => {
                            let mut client = RawClient::connect(addr, "/ws");
                            client.send_text("push");
                            // Some of the push arrives, then the client goes.
                            assert_eq!(client.recv_binary().len(), 16 * 1024);
                            client.drop_tcp();
                        }
                        _ => {
                            drop(handshake_with_text(addr, "/ws", "gone"));
                        }
                    }
                }
            })
        })
        .collect();
    for client in clients {
        client.join().expect("a client thread failed");
    }
    let total = CLIENTS * PER_CLIENT;
    wait_until("each on_close, no live connection", || {
        opens.load(Ordering::SeqCst) == total
            && closes.load(Ordering::SeqCst) >= total
            && connections.is_empty()
    });
    assert_eq!(closes.load(Ordering::SeqCst), total, "one on_close each");
    // Normal service afterwards.
    let mut client = server.connect();
    client.send_text("still serving");
    assert_eq!(client.recv_text(), "still serving");
}

#[test]
fn s10_a_panicking_listener_under_load_only_closes_its_own_connections() {
    struct Touchy;
    impl Listener for Touchy {
        fn on_message(&mut self, socket: &Socket, message: Message) {
            if message.as_text() == Some("boom") {
                panic!("listener bug");
            }
            let _ = socket.send(message);
        }
    }
    let connections = Connections::new();
    let server = serve_registered(test_config(), &connections, || Touchy);
    let mut clients: Vec<RawClient> = (0..200).map(|_| server.connect()).collect();
    for round in 0..5 {
        for (i, client) in clients.iter_mut().enumerate() {
            if i % 10 == 0 && round == 2 {
                client.send_text("boom");
            } else if i % 10 != 0 || round < 2 {
                client.send_text(&format!("{i}:{round}"));
            }
            // Clients whose connection failed in round 2 write nothing more:
            // the server may have ended their TCP connections already.
        }
        for (i, client) in clients.iter_mut().enumerate() {
            if i % 10 == 0 && round >= 2 {
                if round == 2 {
                    assert_eq!(client.recv_until_close().0, 1011, "client {i}");
                }
                continue;
            }
            assert_eq!(client.recv_text(), format!("{i}:{round}"), "client {i}");
        }
    }
    assert_eq!(connections.len(), 180);
}

#[test]
fn s12_keepalive_pings_each_connection_every_period() {
    let events = Events::new();
    let server = serve_recorded_with(
        test_config().keepalive(Duration::from_millis(50)),
        &events,
        |_| Quiet,
    );
    let mut client = server.connect();
    let conn = events.wait_open().id();
    for _ in 0..3 {
        assert_eq!(client.recv(), Incoming::Ping(Vec::new()));
        client.send_pong(b"");
    }
    events.wait_for("three pongs", |log| {
        (log.iter()
            .filter(|r| r.conn == conn && matches!(r.event, Event::Pong(_)))
            .count()
            >= 3)
            .then_some(())
    });
}

#[test]
fn s12_idle_timeout_closes_a_silent_client_with_on_error_then_on_close() {
    let events = Events::new();
    let config = test_config()
        .idle_timeout(Duration::from_millis(200))
        .close_timeout(Duration::from_millis(200));
    let server = serve_recorded_with(config, &events, |_| Quiet);
    let mut client = server.connect();
    let conn = events.wait_open().id();
    assert_eq!(client.recv_close().0, 1001);
    assert_eq!(events.wait_error(conn), Error::Timeout);
    assert_eq!(events.wait_close(conn).0, CloseCode::GOING_AWAY);
    events.assert_lifecycle(conn);
}

#[test]
fn s12_traffic_and_pongs_keep_a_connection_alive() {
    let events = Events::new();
    let config = test_config()
        .keepalive(Duration::from_millis(40))
        .idle_timeout(Duration::from_millis(300));
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = server.connect();
    // Answering pings for well over the idle timeout keeps it open.
    let mut pings = 0;
    while pings < 25 {
        match client.recv() {
            Incoming::Ping(data) => {
                client.send_pong(&data);
                pings += 1;
            }
            other => panic!("expected only pings, got {other:?}"),
        }
    }
    client.send_text("still here");
    loop {
        match client.recv() {
            Incoming::Ping(_) => {}
            Incoming::Text(text) => break assert_eq!(text, "still here"),
            other => panic!("unexpected {other:?}"),
        }
    }
}

#[test]
fn s13_an_upgrade_from_a_foreign_origin_gets_403_and_starts_nothing() {
    let events = Events::new();
    let config = test_config().allowed_origins(["https://chat.example"]);
    let server = serve_recorded_with(config, &events, |_| Quiet);
    let evil = http_request(
        server.addr(),
        &handshake_request(server.addr(), "/ws", "Origin: https://evil.example\r\n"),
    );
    assert_eq!(evil.status, 403);
    assert!(evil.body_text().contains("origin"), "{}", evil.body_text());
    let none = http_request(server.addr(), &handshake_request(server.addr(), "/ws", ""));
    assert_eq!(none.status, 403);
    let mut good =
        RawClient::connect_with(server.addr(), "/ws", "Origin: https://chat.example\r\n");
    events.wait_open();
    good.send_close(1000, "");
    assert_eq!(good.recv_close().0, 1000);
    assert_eq!(
        events
            .snapshot()
            .iter()
            .filter(|r| matches!(r.event, Event::Open(_)))
            .count(),
        1,
        "only the allowed origin opened a connection"
    );
}
