//! S14: a server run with `run_with_graceful_shutdown` stops gracefully on
//! SIGINT or SIGTERM: every open connection gets a close 1001 and its
//! `on_close`, the stop does not wait for actix-web's shutdown timeout, and
//! the process is not ended (these tests go on after the signal). A second
//! signal stops the server without waiting for connections.
//!
//! This file is its own test binary on purpose: it sends signals to its own
//! process, which would stop the servers of any other test sharing it. For
//! the same reason its cases run one after the other, in one test.

mod common;

use std::{
    sync::mpsc,
    thread::{self, JoinHandle},
    time::Duration,
};

use actix_web::{web, App, HttpServer};
use actix_ws_listener::{
    run_with_graceful_shutdown, CloseCode, Config, WebSocketUpgrade, WsServer,
};
use common::*;

/// Which signal handlers the server has besides `run_with_graceful_shutdown`'s.
#[derive(Clone, Copy, Debug)]
enum ActixSignals {
    On,
    Disabled,
}

/// A server run by `run_with_graceful_shutdown` in its own thread, with a
/// recorded listener and a `close_timeout` of `close_timeout`. The thread
/// ends when the function returns, with its result.
fn start(
    events: &Events,
    actix: ActixSignals,
    close_timeout: Duration,
) -> (std::net::SocketAddr, JoinHandle<std::io::Result<()>>) {
    let (addr_tx, addr_rx) = mpsc::channel();
    let events = events.clone();
    let server = thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let config = Config::default().close_timeout(close_timeout);
            let app = move || {
                let events = events.clone();
                App::new().app_data(config.clone()).route(
                    "/ws",
                    web::get().to(move |upgrade: WebSocketUpgrade| {
                        let listener = events.record(Quiet);
                        async move { upgrade.listen(listener) }
                    }),
                )
            };
            // On WsServer when the suite runs there (as TestServer does).
            let (addr, server) = if std::env::var("ACTIX_WS_LISTENER_SERVER").as_deref() == Ok("ws")
            {
                // Long on purpose: the stop must not wait for it.
                let server = WsServer::new(app).workers(1).shutdown_timeout(60);
                let server = match actix {
                    ActixSignals::On => server,
                    ActixSignals::Disabled => server.disable_signals(),
                }
                .bind("127.0.0.1:0")?;
                (server.addrs()[0], server.run())
            } else {
                let server = HttpServer::new(app).workers(1).shutdown_timeout(60);
                let server = match actix {
                    ActixSignals::On => server,
                    ActixSignals::Disabled => server.disable_signals(),
                }
                .bind("127.0.0.1:0")?;
                (server.addrs()[0], server.run())
            };
            addr_tx.send(addr).expect("test gone");
            run_with_graceful_shutdown(server).await
        })
    });
    let addr = addr_rx.recv_timeout(TIMEOUT).expect("server did not start");
    (addr, server)
}

fn send_signal(signal: &str) {
    let status = std::process::Command::new("kill")
        .args([&format!("-{signal}"), &std::process::id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -{signal} failed");
}

/// Opens `n` awc connections, sends `signal` once all are open, and checks
/// that each gets a close 1001; `answer` says whether the clients complete
/// the close handshake. Returns after the close frames arrived, with the
/// connections still held until `then` has run.
fn open_then_signal(
    addr: std::net::SocketAddr,
    events: &Events,
    n: usize,
    signal: &str,
    answer: bool,
    then: impl FnOnce(),
) {
    run_client(async move {
        let mut clients = Vec::new();
        for _ in 0..n {
            let (_, framed) = awc::Client::new()
                .ws(format!("ws://{addr}/ws"))
                .connect()
                .await
                .expect("connect");
            clients.push(framed);
        }
        events.wait_open_nth(n - 1);
        send_signal(signal);
        for framed in &mut clients {
            match awc_next(framed).await {
                awc::ws::Frame::Close(reason) => assert_eq!(awc_close_code(&reason), 1001),
                other => panic!("expected close 1001 after {signal}, got {other:?}"),
            }
            if answer {
                let _ = futures_util::SinkExt::send(framed, awc::ws::Message::Close(None)).await;
            }
        }
        then();
    });
}

/// The server thread ended on its own, without error.
fn assert_stopped(server: JoinHandle<std::io::Result<()>>) {
    // The server's shutdown_timeout is 60 s and TIMEOUT is 10 s: the stop did
    // not wait for it. A bound, not a timing.
    wait_until("the server to stop", || server.is_finished());
    server
        .join()
        .expect("server thread panicked")
        .expect("run_with_graceful_shutdown returned an error");
}

/// Every connection of `events` ended once, with on_close(1001).
fn assert_all_closed_with_1001(events: &Events, n: usize) {
    for i in 0..n {
        let socket = events.wait_open_nth(i);
        assert_eq!(events.wait_close(socket.id()).0, CloseCode::GOING_AWAY);
        events.assert_nothing_after_close(socket.id());
    }
}

fn graceful_stop_on(signal: &str, actix: ActixSignals) {
    let events = Events::new();
    let (addr, server) = start(&events, actix, Duration::from_secs(2));
    open_then_signal(addr, &events, 3, signal, true, || {});
    assert_stopped(server);
    assert_all_closed_with_1001(&events, 3);
}

#[test]
fn s14_a_shutdown_signal_closes_open_connections_with_1001_and_runs_on_close() {
    // Only run_with_graceful_shutdown handles the signal: Ctrl-C is graceful.
    graceful_stop_on("INT", ActixSignals::Disabled);
    // actix-web's handler stops the server gracefully on SIGTERM at the same
    // time; the WebSockets closing lets that stop finish.
    graceful_stop_on("TERM", ActixSignals::On);

    // A second signal does not wait for a client that never answers the
    // close (close_timeout 60 s): the server stops, on_close still runs.
    let events = Events::new();
    let (addr, server) = start(&events, ActixSignals::Disabled, Duration::from_secs(60));
    open_then_signal(addr, &events, 1, "TERM", false, || {
        send_signal("TERM");
        wait_until("the server to stop after a second signal", || {
            server.is_finished()
        });
    });
    assert_stopped(server);
    let socket = events.wait_open();
    events.wait_close(socket.id());
    events.assert_nothing_after_close(socket.id());
}
