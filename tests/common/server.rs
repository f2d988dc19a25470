//! The test server: the crate's own test kit ([`TestServer`], feature
//! `test-util`), with routes built from listener factories, and the raw
//! client of [`super::raw`] to connect to it.

use actix_web::web;
use actix_ws_listener::{Config, Listener};

pub use actix_ws_listener::test::TestServer;

use super::{Echo, Events, RawClient};

/// The config every test server starts from (the crate's defaults).
pub fn test_config() -> Config {
    Config::default()
}

/// A raw client connected to a test server.
pub trait Connect {
    /// A raw client connected and upgraded on `/ws`.
    fn connect(&self) -> RawClient;
}

impl Connect for TestServer {
    fn connect(&self) -> RawClient {
        RawClient::connect(self.addr(), "/ws")
    }
}

/// Starts a server whose app is configured by `configure` (one worker, so
/// that every connection of a test shares one thread: the strictest setting
/// for isolation).
pub fn serve_app<F>(configure: F) -> TestServer
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    TestServer::start(configure)
}

/// Starts a server with `GET /ws` upgrading every request to a listener made
/// by `make` (called once per connection, on the server's worker thread).
pub fn serve<L, F>(make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    TestServer::listen(make)
}

/// As [`serve`], with `config` for every connection.
pub fn serve_with<L, F>(config: Config, make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    TestServer::listen_with(config, make)
}

/// Starts an echo server whose connections are recorded in `events`.
pub fn serve_echo(events: &Events) -> TestServer {
    let events = events.clone();
    serve(move || events.record(Echo))
}
