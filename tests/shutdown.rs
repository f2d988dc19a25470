//! S14: when the actix-web server stops gracefully on SIGTERM, every open
//! connection gets a close 1001 and its `on_close`, and the stop does not
//! wait for actix-web's shutdown timeout.
//!
//! This file is its own test binary on purpose: it sends SIGTERM to its own
//! process, which would close the connections of any other test sharing it.

use std::{
    sync::{mpsc, Arc, Mutex},
    time::{Duration, Instant},
};

use actix_web::{web, App, HttpServer};
use actix_ws_listener::{CloseCode, Config, Connections, Listener, Socket, WebSocketUpgrade};
use futures_util::StreamExt;

struct Recorder {
    closes: Arc<Mutex<Vec<CloseCode>>>,
}

impl Listener for Recorder {
    fn on_close(&mut self, _: &Socket, code: CloseCode, _: &str) {
        self.closes.lock().unwrap().push(code);
    }
}

#[test]
fn s14_sigterm_closes_open_connections_with_1001_and_runs_on_close() {
    let closes = Arc::new(Mutex::new(Vec::new()));
    let connections = Connections::new();
    let (addr_tx, addr_rx) = mpsc::channel();
    let (closes_srv, connections_srv) = (closes.clone(), connections.clone());
    let server = std::thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let config = Config::default()
                .close_timeout(Duration::from_secs(2))
                .connections(connections_srv);
            let server = HttpServer::new(move || {
                let closes = closes_srv.clone();
                App::new().app_data(config.clone()).route(
                    "/ws",
                    web::get().to(move |upgrade: WebSocketUpgrade| {
                        let closes = closes.clone();
                        async move { upgrade.listen(Recorder { closes }) }
                    }),
                )
            })
            .workers(1)
            // Long on purpose: the stop must not wait for it.
            .shutdown_timeout(60)
            .bind("127.0.0.1:0")
            .unwrap();
            addr_tx.send(server.addrs()[0]).unwrap();
            server.run().await
        })
    });
    let addr = addr_rx.recv_timeout(Duration::from_secs(10)).unwrap();

    let live = connections.clone();
    actix_rt::System::new().block_on(async move {
        let mut clients = Vec::new();
        for _ in 0..3 {
            let (_, framed) = awc::Client::new()
                .ws(format!("ws://{addr}/ws"))
                .connect()
                .await
                .unwrap();
            clients.push(framed);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while live.len() < 3 {
            assert!(Instant::now() < deadline, "connections never opened");
            actix_rt::time::sleep(Duration::from_millis(10)).await;
        }

        let status = std::process::Command::new("kill")
            .args(["-TERM", &std::process::id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());

        for mut framed in clients {
            let frame = actix_rt::time::timeout(Duration::from_secs(10), framed.next())
                .await
                .expect("no close frame after SIGTERM");
            match frame {
                Some(Ok(awc::ws::Frame::Close(Some(reason)))) => {
                    assert_eq!(u16::from(reason.code), 1001)
                }
                other => panic!("expected close 1001, got {other:?}"),
            }
            // Answer, as a well-behaved client does.
            let _ = futures_util::SinkExt::send(&mut framed, awc::ws::Message::Close(None)).await;
        }
    });

    // The server's shutdown_timeout is 60 s; closing the sockets lets it stop
    // as soon as the handshakes finish. 30 s is a generous bound, not a timing.
    let deadline = Instant::now() + Duration::from_secs(30);
    while !server.is_finished() {
        assert!(
            Instant::now() < deadline,
            "server still running 30 s after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    server
        .join()
        .expect("server thread panicked")
        .expect("server failed");
    let closes = closes.lock().unwrap();
    assert_eq!(*closes, vec![CloseCode::GOING_AWAY; 3], "on_close codes");
    assert_eq!(connections.len(), 0, "live connections after shutdown");
}
