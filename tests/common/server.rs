//! The test server: a real actix-web server on 127.0.0.1, in its own thread
//! and actix system, whose route is built from a listener factory.

use std::{
    net::SocketAddr,
    sync::{mpsc, Arc},
    thread,
};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use actix_ws_listener::{Config, Listener, WebSocketUpgrade};

use super::{Echo, Events, RawClient, TIMEOUT};

/// The config every test server starts from (the crate's defaults).
pub fn test_config() -> Config {
    Config::default()
}

/// A real actix-web server on 127.0.0.1:<ephemeral>, in its own thread and
/// actix system, stopped when dropped.
pub struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port><path>`, for awc.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A raw client connected and upgraded on `/ws`.
    pub fn connect(&self) -> RawClient {
        RawClient::connect(self.addr, "/ws")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits
        // for completion, which the test does not need.
        drop(self.handle.stop(false));
    }
}

/// Starts a server whose app is configured by `configure` (one worker, so
/// that every connection of a test shares one thread: the strictest setting
/// for isolation).
pub fn serve_app<F>(configure: F) -> TestServer
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("test-server".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind("127.0.0.1:0")
                    .expect("bind 127.0.0.1:0");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("test gone");
                let _ = server.await;
            })
        })
        .expect("spawn server thread");
    let (addr, handle) = rx.recv_timeout(TIMEOUT).expect("test server did not start");
    TestServer { addr, handle }
}

/// Starts a server with `GET /ws` upgrading every request to a listener made
/// by `make` (called once per connection, on the server's worker thread).
pub fn serve<L, F>(make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    serve_with(test_config(), make)
}

/// As [`serve`], with `config` for every connection.
pub fn serve_with<L, F>(config: Config, make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    let make = Arc::new(make);
    serve_app(move |cfg| {
        let make = Arc::clone(&make);
        cfg.app_data(config.clone()).route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = make();
                async move { upgrade.listen(listener) }
            }),
        );
    })
}

/// Starts an echo server whose connections are recorded in `events`.
pub fn serve_echo(events: &Events) -> TestServer {
    let events = events.clone();
    serve(move || events.record(Echo))
}
