//! [`AsyncListener`]: a listener whose event methods may await (S16).
//!
//! This module owns the async callback surface only. The connection runs
//! one event at a time, in arrival order, and reads nothing more while an
//! event is pending (S15); see the trait's documentation for what that
//! promises.

#![allow(async_fn_in_trait)] // The futures run on the connection's thread: no `Send` needed.

use bytes::Bytes;

use crate::{
    close::CloseCode, error::Error, listener::answer_ping, message::Message, socket::Socket,
};

/// A listener that can await inside its event methods: a database call, a
/// request to another service, a rate limiter. Start it as a plain one, with
/// [`WebSocketUpgrade::listen`](crate::WebSocketUpgrade::listen) or
/// [`upgrade`](crate::upgrade()).
///
/// The connection calls it exactly as it calls a [`Listener`](crate::Listener)
/// (`on_open` once and first, `on_close` once and last) and handles **one
/// event at a time, in arrival order**: while `on_message` is awaiting, the
/// next message waits. A client that sends faster than the listener answers
/// is held back by TCP, not by server memory. State lives in `&mut self`,
/// as with a plain listener; no `Arc<Mutex<_>>` is needed. It has an
/// [`Address`](crate::Address) and takes typed messages
/// ([`Handles`](crate::Handles), whose `handle` may await too), in one
/// order with its frames.
///
/// - **Control frames first (S20).** While an event is pending, the
///   connection reads on through a small lookahead of data (64 KiB) so
///   that control frames behind it are seen at once: a ping is answered
///   within milliseconds by the connection itself (with the default pong;
///   `on_ping` is not called for it, the listener being busy), a pong
///   waits and reaches `on_pong` in order after the pending event, and a
///   peer's close is answered at once. Messages read ahead wait for the
///   pending event, in order; past the lookahead, reading stops.
/// - **Order.** Socket operations made while an event is being handled
///   (before and after its awaits) reach the wire in the order they were
///   made, after everything the listener sent earlier (S6). `send_async`'s
///   callbacks run when the writer takes the frame, as always;
///   [`Socket::send_and_wait`] awaits the same moment.
/// - **`on_error` and `on_close` are plain functions.** They run when the
///   connection ends, possibly while the server shuts down, when there is
///   nothing left to await on; spawn a task for async clean-up.
/// - **When the connection ends while an event is pending.** If the peer
///   leaves (its close is answered at once, or TCP ends), the pending event
///   may finish its work, but its sends fail with
///   [`SendError::Closed`](crate::SendError::Closed), and it gets
///   `close_timeout` at most: then it is dropped at its current await. A
///   handler that never completes does not keep a departed peer's
///   connection alive. `on_close` runs when it is done (or dropped) with
///   the peer's code, or 1006 when TCP just ended. If the server ends the
///   connection (a close that the peer did not answer within
///   `close_timeout`, [`BackpressurePolicy::Close`](crate::BackpressurePolicy::Close),
///   server shutdown, [`Socket::disconnect`]), the pending future is
///   dropped at its current await, then `on_close` runs. Either way
///   `on_close` runs exactly once, and nothing runs after it.
/// - **Panics.** A panic inside an event method, before or after an
///   await, is caught as in a plain listener: `on_error` with
///   [`Error::ListenerPanic`], close 1011, `on_close`; other connections
///   are unaffected.
/// - **Idle timeout.** The `idle_timeout` clock stops while an event is
///   pending: the client is not the one keeping the connection quiet. Its
///   pongs keep arriving meanwhile.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{AsyncListener, Message, Socket, WebSocketUpgrade};
///
/// struct SlowEcho {
///     answered: u64,
/// }
///
/// impl AsyncListener for SlowEcho {
///     async fn on_message(&mut self, socket: &Socket, message: Message) {
///         // A stand-in for a database call.
///         actix_web::rt::time::sleep(Duration::from_millis(100)).await;
///         self.answered += 1;
///         if socket.send(message).is_err() {
///             // The client left, or is far behind: nothing more to say.
///             log::debug!("client {} gone after {} answers", socket.id(), self.answered);
///         }
///     }
/// }
///
/// async fn ws(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(SlowEcho { answered: 0 })
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
///         .bind("127.0.0.1:8080")?
///         .run()
///         .await
/// }
/// ```
pub trait AsyncListener: 'static {
    /// The connection is open. Runs once, before any other callback; no
    /// message is read until it finishes.
    async fn on_open(&mut self, socket: &Socket) {
        let _ = socket;
    }

    /// A whole message arrived: fragments assembled, text validated as UTF-8.
    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = (socket, message);
    }

    /// A ping arrived. The default answers with a pong carrying the same
    /// payload, as RFC 6455 requires.
    async fn on_ping(&mut self, socket: &Socket, data: Bytes) {
        answer_ping(socket, data);
    }

    /// A pong arrived.
    async fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        let _ = (socket, data);
    }

    /// The connection failed; `on_close` follows with the code that was sent.
    fn on_error(&mut self, socket: &Socket, error: &Error) {
        let _ = (socket, error);
    }

    /// The connection is over. Runs once, last, as
    /// [`Listener::on_close`](crate::Listener::on_close).
    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        let _ = (socket, code, reason);
    }
}
