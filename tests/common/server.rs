//! The test server: the crate's own test kit ([`TestServer`], feature
//! `test-util`), with routes built from listener factories, and the raw
//! client of [`super::raw`] to connect to it.

use std::sync::Arc;

use actix_web::web;
use actix_ws_listener::{Config, Connections, Listener, WebSocketUpgrade};

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

/// As [`serve_with`], with `registry` in the app's `app_data`: every
/// connection joins it besides the global one.
pub fn serve_registered<L, F>(config: Config, registry: &Connections, make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    let (make, registry) = (Arc::new(make), registry.clone());
    serve_app(move |cfg| {
        let make = Arc::clone(&make);
        cfg.app_data(config.clone())
            .app_data(registry.clone())
            .route(
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
    serve_recorded(events, |_| Echo)
}

/// As [`serve`], with every connection's callbacks recorded in `events`:
/// `make` gets its own handle on `events` (for listeners that note what
/// they observe) and its listener is wrapped by [`Events::record`].
pub fn serve_recorded<L, F>(events: &Events, make: F) -> TestServer
where
    L: Listener,
    F: Fn(Events) -> L + Send + Sync + 'static,
{
    serve_recorded_with(test_config(), events, make)
}

/// As [`serve_recorded`], with `config` for every connection.
pub fn serve_recorded_with<L, F>(config: Config, events: &Events, make: F) -> TestServer
where
    L: Listener,
    F: Fn(Events) -> L + Send + Sync + 'static,
{
    let events = events.clone();
    serve_with(config, move || events.record(make(events.clone())))
}

/// As [`serve`], with `make` given its own handle on `events`, for
/// listeners that note what they observe but must not be wrapped (an
/// `Address::<L>::of` needs the listener type itself).
pub fn serve_noting<L, F>(events: &Events, make: F) -> TestServer
where
    L: Listener,
    F: Fn(Events) -> L + Send + Sync + 'static,
{
    let events = events.clone();
    serve(move || make(events.clone()))
}
