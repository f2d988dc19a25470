//! Ring's WebSocket model — listeners and sockets — on actix-web.
//!
//! A handler upgrades a request and hands over a [`Listener`]: a plain
//! struct whose fields are the connection's state, or a set of closures
//! built with [`listener()`]. Each connection runs as an actix actor that
//! calls the listener, one event at a time. A [`Socket`] is a cheap,
//! cloneable, `Send` handle to the connection: keep it anywhere (another
//! actor, a task, a thread) and push to the client from there.
//!
//! # Quick start
//!
//! The echo server of Ring's documentation, in Rust:
//!
//! ```no_run
//! use actix_web::{web, App, HttpServer, Responder};
//! use actix_ws_listener::{run_with_graceful_shutdown, Listener, Message, Socket, WebSocketUpgrade};
//!
//! struct Echo;
//!
//! impl Listener for Echo {
//!     fn on_open(&mut self, socket: &Socket) {
//!         if let Err(error) = socket.send("I will echo your messages") {
//!             log::debug!("ws {}: greeting not sent: {error}", socket.id());
//!         }
//!     }
//!
//!     fn on_message(&mut self, socket: &Socket, message: Message) {
//!         let done = if message.as_text() == Some("exit") {
//!             socket.close()
//!         } else {
//!             socket.send(message)
//!         };
//!         // An error means the client left or stopped reading (`SendError`).
//!         if let Err(error) = done {
//!             log::debug!("ws {}: {error}", socket.id());
//!         }
//!     }
//! }
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> impl Responder {
//!     upgrade.listen(Echo)
//! }
//!
//! #[actix_web::main]
//! async fn main() -> std::io::Result<()> {
//!     let server = HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
//!         .disable_signals()
//!         .bind("127.0.0.1:8080")?
//!         .run();
//!     // On Ctrl-C or SIGTERM: close every WebSocket with 1001, stop gracefully.
//!     run_with_graceful_shutdown(server).await
//! }
//! ```
//!
//! # Ring → Rust
//!
//! | Ring (`ring.websocket`) | here |
//! |---|---|
//! | `websocket-request?` | [`is_websocket_request`] |
//! | `upgrade-request?` | [`is_upgrade_request`] |
//! | `request-protocols` | [`requested_protocols`] |
//! | `{::ws/listener L, ::ws/protocol P}` | [`WebSocketUpgrade`]`.protocol(P).listen(L)` (a [`Listener`] or an [`AsyncListener`]), or [`upgrade()`] |
//! | `Listener` protocol / a listener map | [`Listener`] on a struct / [`listener()`] with closures |
//! | `on-open`, `on-message`, `on-ping`, `on-pong`, `on-error`, `on-close` | [`Listener::on_open`] … [`Listener::on_close`] |
//! | `send`, `send` with `succeed`/`fail` | [`Socket::send`], [`Socket::send_async`], [`Socket::send_and_wait`] |
//! | `ping`, `pong` | [`Socket::ping`], [`Socket::ping_with`], [`Socket::pong`], [`Socket::pong_with`] |
//! | `close`, `close code reason` | [`Socket::close`], [`Socket::close_with`] |
//! | `open?` | [`Socket::is_open`] |
//! | keepalive middleware | [`Config::keepalive`], [`Config::idle_timeout`] |
//! | `CharSequence` / `ByteBuffer` messages | [`Message::Text`] / [`Message::Binary`] |
//!
//! # Beyond Ring
//!
//! - [`Group`]: a set of sockets that broadcasts one message to all its
//!   members, from any thread, sharing the payload; with presence
//!   ([`Group::track`], [`Group::members`]) and, opened with
//!   [`Group::with_history`], a [`History`] of offsets from which a
//!   returning client is given what it missed ([`Group::recover`]).
//! - [`Connections`]: the live-connection registry (a count an operator can
//!   read, `close_all` for shutdown).
//! - [`run_with_graceful_shutdown`]: runs the server and, on SIGINT or
//!   SIGTERM, stops it gracefully and closes every WebSocket with 1001. The
//!   crate installs no signal handler otherwise and never exits the process.
//! - [`Compression`]: permessage-deflate (RFC 7692), off by default, with
//!   inflation bounded by the message limits.
//! - [`AsyncListener`]: event methods that await (a database call), with
//!   `&mut self` state, one event at a time, in arrival order.
//! - `reuse_port_listener` (Unix): a `SO_REUSEPORT` listener for
//!   `HttpServer::listen` or `WsServer::listen`, so several server
//!   processes share one port.
//! - [`WsServer`]: actix-web's `HttpServer` for the same app, on which a
//!   WebSocket connection takes its TCP socket after the handshake: no HTTP
//!   buffers or second task per connection (an idle connection costs less
//!   than half the memory), reading, the listener and writing in one task.
//!
//! # Async listeners
//!
//! ```no_run
//! use std::time::Duration;
//! use actix_web::Responder;
//! use actix_ws_listener::{AsyncListener, Message, Socket, WebSocketUpgrade};
//!
//! struct Lookup;
//!
//! impl AsyncListener for Lookup {
//!     async fn on_message(&mut self, socket: &Socket, message: Message) {
//!         // A stand-in for `db.query(..).await`.
//!         actix_web::rt::time::sleep(Duration::from_millis(100)).await;
//!         if socket.send(message).is_err() {
//!             return; // the client left: nothing more to say
//!         }
//!     }
//! }
//!
//! async fn ws(upgrade: WebSocketUpgrade) -> impl Responder {
//!     upgrade.listen(Lookup)
//! }
//! ```
//!
//! While a handler awaits, the connection reads nothing more from its
//! client; see [`AsyncListener`] for what happens when the connection ends
//! meanwhile.
//!
//! # Guarantees
//!
//! - `on_open` runs once and first; `on_close` runs once and last, for every
//!   connection that opened, however it ended (1006 for a dropped TCP
//!   connection). Nothing runs after `on_close`.
//! - Messages arrive whole; text is checked as UTF-8 as it streams in and
//!   invalid text closes with 1007 at the first bad byte.
//! - Frame and message limits are checked when a frame header arrives,
//!   before its payload is buffered (1009).
//! - Nothing a listener sends in answer to what it receives is dropped for
//!   a slow client: the connection stops reading from a client while more
//!   than [`Config::high_water_mark`] bytes are queued for it, and TCP holds
//!   the client back (S15). Bytes queued for a connection are capped by
//!   [`Config::max_outbound_buffer`]; only pushes from elsewhere (other
//!   actors, broadcasts, timers) can reach it, and past it sends fail with
//!   [`SendError::Backpressure`]: this client is not reading fast enough to
//!   take what is pushed to it, and the message was not queued.
//! - A panic in a listener closes only its connection (1011).
//!
//! # Features
//!
//! - `test-util` (off by default): `test::TestServer` and
//!   `test::TestClient`, to test a listener over real TCP in a few lines.
//! - `json` (off by default): `Message::json`, `Message::parse_json` and
//!   `Socket::send_json` for typed messages with `serde`, and `JsonError`,
//!   which says what was wrong with a message.
//! - `redis` (off by default): `Cluster`, whose named groups are `Group`s
//!   that span processes through Redis pub/sub: a broadcast reaches every
//!   member on every node, one `PUBLISH` per broadcast (see `Cluster` for
//!   the wire format and the delivery guarantees); presence across nodes,
//!   and history in a Redis stream (`Cluster::group_with_history`).
// Denied, not forbidden: one measured hot path, the send path's read of
// the running callback (`command.rs`, `write_direct`), has an unsafe block.
#![deny(unsafe_code)]
#![deny(missing_docs, unreachable_pub)]
#![warn(rust_2018_idioms)]
#![cfg_attr(docsrs, feature(doc_cfg))]

mod address;
mod admission;
mod async_listener;
mod broadcast;
mod budget;
mod caps;
mod close;
#[cfg(feature = "redis")]
mod cluster;
#[cfg(feature = "redis")]
mod cluster_error;
mod command;
mod config;
mod connection;
mod contain;
mod deflate;
mod driver;
mod error;
#[cfg(feature = "redis")]
mod fanout;
mod frame;
mod group;
mod handoff;
mod history;
mod inbound;
#[cfg(feature = "json")]
mod json;
mod line;
mod listener;
mod listening;
mod message;
mod outbound;
mod presence;
mod rate;
mod registry;
#[cfg(unix)]
mod reuseport;
mod server;
mod shutdown;
mod socket;
mod stats;
#[cfg(feature = "test-util")]
mod test_frame;
#[cfg(feature = "test-util")]
mod test_util;
mod upgrade;
mod utf8;

pub use address::{Address, NotThisListener, Timer, TrySendError};
pub use async_listener::AsyncListener;
pub use broadcast::Broadcast;
pub use budget::{InboundBudget, DEFAULT_INBOUND_BUDGET};
pub use close::CloseCode;
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use cluster::{Cluster, ClusterConfig, ClusterStats};
#[cfg(feature = "redis")]
#[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
pub use cluster_error::ClusterError;
pub use config::{BackpressurePolicy, ClientAddress, Config};
pub use deflate::Compression;
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
pub use error::JsonError;
pub use error::{Error, ProtocolError, SendError};
pub use group::Group;
pub use history::{History, InvalidOffset, Offset};
pub use listener::{listener, FnListener, Handles, Listener};
pub use listening::{AsyncKind, Listen, Listening, SyncKind};
pub use message::Message;
pub use presence::{Member, PresenceEvent};
pub use registry::Connections;
#[cfg(unix)]
pub use reuseport::reuse_port_listener;
pub use server::WsServer;
pub use shutdown::run_with_graceful_shutdown;
pub use socket::Socket;
pub use stats::Stats;
pub use upgrade::{
    is_upgrade_request, is_websocket_request, requested_protocols, upgrade, UpgradeError,
    WebSocketUpgrade,
};

/// A kit for testing listeners over real TCP (feature `test-util`): a
/// server on a free port and a blocking client with timeouts.
#[cfg(feature = "test-util")]
#[cfg_attr(docsrs, doc(cfg(feature = "test-util")))]
pub mod test {
    pub use crate::test_frame::{opcode, Frame, DEFAULT_MASK};
    pub use crate::test_util::{Received, TestClient, TestServer, TIMEOUT};
}

pub use bytes::Bytes;
pub use bytestring::ByteString;

#[doc = include_str!("../README.md")]
#[cfg(doctest)]
pub struct ReadmeDoctests;
