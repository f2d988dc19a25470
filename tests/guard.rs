//! S19: the server-wide inbound budget and the per-connection message rate,
//! against a real server over real TCP. (The connection caps, which count
//! every connection of the process, have their own binary: `tests/caps.rs`.)

mod common;

use std::sync::Arc;

use actix_web::web;
use actix_ws_listener::{Config, Error, InboundBudget, WebSocketUpgrade};
use common::*;
use flate2::{Compress, FlushCompress};

/// An echo server whose connections draw from `budget` (not the global
/// one, which other tests of this binary share) and are recorded.
fn budget_server(budget: &InboundBudget, events: &Events, config: Config) -> TestServer {
    let (budget, events) = (budget.clone(), events.clone());
    serve_app(move |cfg| {
        let events = events.clone();
        cfg.app_data(config.clone()).app_data(budget.clone()).route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = events.record(Echo);
                async move { upgrade.listen(listener) }
            }),
        );
    })
}

/// Connections whose `on_error` got `BudgetExhausted`.
fn closed_for_budget(events: &Events) -> Vec<u64> {
    events
        .snapshot()
        .iter()
        .filter(|r| matches!(r.event, Event::Error(Error::BudgetExhausted { .. })))
        .map(|r| r.conn)
        .collect()
}

const FRAGMENT: usize = 256 << 10;

#[test]
fn s19_unfinished_large_messages_stay_under_the_budget_while_a_small_client_is_served() {
    let budget = InboundBudget::new(4 << 20);
    let events = Events::new();
    let server = budget_server(&budget, &events, test_config());
    // Eight attackers each stream an unfinished 2 MiB message: 16 MiB asked
    // of a 4 MiB budget.
    let attackers: Vec<RawClient> = (0..8).map(|_| server.connect()).collect();
    for attacker in &attackers {
        // From threads: a connection closed for the budget reads no more,
        // and its writer fails (or stalls until the server drops TCP).
        let mut writer = attacker.writer();
        std::thread::spawn(move || {
            use std::io::Write;
            let first = FrameSpec::new(OP_BINARY, vec![1; FRAGMENT]).fin(false);
            if writer.write_all(&first.encode()).is_err() {
                return;
            }
            for _ in 1..8 {
                let more = FrameSpec::new(OP_CONTINUATION, vec![2; FRAGMENT]).fin(false);
                if writer.write_all(&more.encode()).is_err() {
                    return;
                }
            }
        });
    }
    events.wait_for("an attacker closed for the budget", |log| {
        log.iter()
            .any(|r| matches!(r.event, Event::Error(Error::BudgetExhausted { .. })))
            .then_some(())
    });
    assert!(budget.in_use() <= budget.limit(), "{budget:?}");
    // While the budget is exhausted by the others, a small client is served.
    let mut small = server.connect();
    small.send_text("still served");
    assert_eq!(small.recv_text(), "still served");
    assert!(budget.in_use() <= budget.limit(), "{budget:?}");

    // Each closed attacker was told why, with 1013 and the sizes.
    for conn in closed_for_budget(&events) {
        let (code, reason) = events.wait_close(conn);
        assert_eq!(code.as_u16(), 1013, "{reason}");
        assert!(
            reason.starts_with("Inbound budget exhausted: asked "),
            "{reason}"
        );
    }

    // They leave: the budget frees, and a second wave fits again.
    for attacker in attackers {
        attacker.drop_tcp();
    }
    wait_until("the budget to be given back", || budget.in_use() == 0);
    let before = closed_for_budget(&events).len();
    for round in 0..3u8 {
        let mut client = server.connect();
        client.send(FrameSpec::new(OP_BINARY, vec![round; FRAGMENT]).fin(false));
        for _ in 1..4 {
            client.send(FrameSpec::new(OP_CONTINUATION, vec![round; FRAGMENT]).fin(false));
        }
        client.send(FrameSpec::new(OP_CONTINUATION, Vec::new()));
        assert_eq!(client.recv_binary(), vec![round; 4 * FRAGMENT]);
    }
    assert_eq!(closed_for_budget(&events).len(), before);
    small.send_close(1000, "");
    assert_eq!(small.recv_close().0, 1000);
    wait_until("everything given back", || budget.in_use() == 0);
}

/// Deflates `data` as a permessage-deflate message (trailer stripped).
fn deflate(data: &[u8]) -> Vec<u8> {
    let mut compress = Compress::new(flate2::Compression::best(), false);
    let mut out = Vec::with_capacity(data.len() / 100 + 1024);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    out.truncate(out.len() - 4);
    out
}

#[test]
fn s19_a_compressed_connection_inflating_a_bomb_counts_against_the_same_budget() {
    let budget = InboundBudget::new(2 << 20);
    let events = Events::new();
    // The message limit (64 MiB by default) would let the bomb through.
    let config = test_config().compression(Default::default());
    let server = budget_server(&budget, &events, config);
    let offer = "Sec-WebSocket-Extensions: permessage-deflate\r\n";
    let mut bomb = RawClient::connect_with(server.addr(), "/ws", offer);
    let conn = events.wait_open().id();
    // 32 MiB of zeros in a few dozen KiB.
    let compressed = deflate(&vec![0u8; 32 << 20]);
    assert!(compressed.len() < 256 << 10, "{}", compressed.len());
    bomb.send(FrameSpec::new(OP_TEXT, compressed).rsv(0b100));
    let (code, reason) = bomb.recv_close();
    assert_eq!(code, 1013, "{reason}");
    assert!(
        matches!(events.wait_error(conn), Error::BudgetExhausted { .. }),
        "{events:?}"
    );
    wait_until("the inflate buffer to be given back", || {
        budget.in_use() == 0
    });
    // A small compressed message still goes through on a new connection.
    let mut client = RawClient::connect_with(server.addr(), "/ws", offer);
    client.send(FrameSpec::new(OP_TEXT, deflate(b"small")).rsv(0b100));
    let frame = client.read_frame();
    assert_eq!(frame.opcode, OP_TEXT);
}

#[test]
fn s19_the_rate_limit_paces_a_flooding_client_and_echoes_every_message_in_order() {
    let events = Events::new();
    let server = serve_recorded_with(
        test_config().max_messages_per_second(100, 5),
        &events,
        |_| Echo,
    );
    let mut client = server.connect();
    let conn = events.wait_open().id();
    // 300 messages at once, far faster than 100 a second.
    let flood: Vec<u8> = (0..300)
        .flat_map(|i| FrameSpec::new(OP_TEXT, format!("{i}")).encode())
        .collect();
    client.write(&flood);
    // A ping behind them is answered too, in its turn.
    client.send_ping(b"still there?");
    for i in 0..300 {
        assert_eq!(client.recv_text(), format!("{i}"));
    }
    assert_eq!(
        client.recv(),
        Incoming::Pong(b"still there?".to_vec()),
        "the connection is open and answers"
    );
    let received: Vec<String> = events
        .wait_messages(conn, 300)
        .iter()
        .map(|m| m.as_text().unwrap_or_default().to_owned())
        .collect();
    let expected: Vec<String> = (0..300).map(|i| format!("{i}")).collect();
    assert_eq!(received, expected, "every message, once, in order");
    client.send_close(1000, "");
    assert_eq!(client.recv_close().0, 1000);
    assert!(
        !events.of(conn).iter().any(|e| matches!(e, Event::Error(_))),
        "paced, never failed"
    );
}

/// The rate limit holds the listener to the rate: never more messages
/// handled than the burst plus the rate times the time taken (the
/// connection's own clock, read by the listener, not a timing of the test).
#[test]
fn s19_a_paced_listener_never_sees_more_than_burst_plus_rate_times_elapsed() {
    use std::{sync::Mutex, time::Instant};
    let seen: Arc<Mutex<Vec<Instant>>> = Arc::default();
    let server = serve_with(test_config().max_messages_per_second(200, 10), {
        let seen = Arc::clone(&seen);
        move || {
            let seen = Arc::clone(&seen);
            actix_ws_listener::listener().on_message(move |socket, message| {
                seen.lock().unwrap().push(Instant::now());
                if let Err(error) = socket.send(message) {
                    panic!("echo refused: {error}");
                }
            })
        }
    });
    let mut client = server.connect();
    let flood: Vec<u8> = (0..600)
        .flat_map(|i| FrameSpec::new(OP_TEXT, format!("{i}")).encode())
        .collect();
    client.write(&flood);
    for i in 0..600 {
        assert_eq!(client.recv_text(), format!("{i}"));
    }
    let seen = seen.lock().unwrap();
    assert_eq!(seen.len(), 600);
    let first = seen[0];
    for (n, at) in seen.iter().enumerate() {
        let allowed = 10.0 + 200.0 * at.duration_since(first).as_secs_f64();
        assert!(
            (n as f64) < allowed + 1.0,
            "message {n} handled {:?} after the first: over the rate",
            at.duration_since(first)
        );
    }
}
