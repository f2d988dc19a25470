//! The [`Listener`] trait, Ring's `Listener` protocol, and [`FnListener`],
//! the closure-built listener that plays the part of a Ring listener map.
//!
//! This module owns the callback surface only. When and in which order the
//! callbacks run (S1) is the connection's business.

#![allow(async_fn_in_trait)] // `handle` runs on the connection's thread: no `Send` needed.

use bytes::Bytes;

use crate::{close::CloseCode, error::Error, message::Message, socket::Socket};

/// What happens on a WebSocket connection, one method per event: Ring's
/// `Listener` protocol.
///
/// Implement it on a plain struct whose fields are the connection's state;
/// every method has a default, so implement only the events you care about.
/// The connection's actor owns the listener and calls it with `&mut self`,
/// one event at a time, in this order: `on_open` exactly once and first, then
/// any number of `on_message` / `on_ping` / `on_pong`, then `on_error` when
/// the connection failed, then `on_close` exactly once and last. Nothing runs
/// after `on_close`.
///
/// A panic in a callback is caught: the connection is closed with 1011 after
/// `on_error(Error::ListenerPanic(..))` and `on_close`; the server and other
/// connections carry on.
///
/// ```no_run
/// use actix_ws_listener::{CloseCode, Listener, Message, Socket};
///
/// #[derive(Default)]
/// struct Counter {
///     received: usize,
/// }
///
/// impl Listener for Counter {
///     fn on_open(&mut self, socket: &Socket) {
///         if let Err(error) = socket.send("hello") {
///             log::debug!("ws {}: greeting not sent: {error}", socket.id());
///         }
///     }
///
///     fn on_message(&mut self, socket: &Socket, message: Message) {
///         self.received += 1;
///         let answer = format!("message #{}: {} bytes", self.received, message.len());
///         // Err: the client left (its on_close follows) or stopped reading.
///         if socket.send(answer).is_err() {
///             log::debug!("ws {}: answer not sent", socket.id());
///         }
///     }
///
///     fn on_close(&mut self, _socket: &Socket, code: CloseCode, reason: &str) {
///         log::info!("closed with {code} {reason:?} after {} messages", self.received);
///     }
/// }
/// ```
pub trait Listener: 'static {
    /// The connection is open. Runs once, before any other callback.
    fn on_open(&mut self, socket: &Socket) {
        let _ = socket;
    }

    /// A whole message arrived: fragments assembled, text validated as UTF-8.
    fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = (socket, message);
    }

    /// A ping arrived. The default answers with a pong carrying the same
    /// payload, as RFC 6455 requires; override it to answer differently.
    /// A ping that arrives while a typed message's handler awaits is
    /// answered by the connection with that default, without this call (S20).
    fn on_ping(&mut self, socket: &Socket, data: Bytes) {
        answer_ping(socket, data);
    }

    /// A pong arrived (an answer to our ping, or unsolicited).
    fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        let _ = (socket, data);
    }

    /// The connection failed; `on_close` follows with the code that was sent.
    fn on_error(&mut self, socket: &Socket, error: &Error) {
        let _ = (socket, error);
    }

    /// The connection is over. Runs once, last, for every connection that
    /// opened. `code` is the peer's code after a peer close
    /// ([`CloseCode::NO_STATUS`] if it sent none), the server's code after a
    /// server close or an error, and [`CloseCode::ABNORMAL`] (1006, empty
    /// reason) when the TCP connection dropped without a close frame.
    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        let _ = (socket, code, reason);
    }
}

/// The default `on_ping` of every kind of listener (S3): a pong with the
/// ping's payload. A pong that cannot go out means the connection is closing
/// or the client is not reading; the close or the backpressure already
/// deals with that, so it is only logged.
pub(crate) fn answer_ping(socket: &Socket, data: Bytes) {
    if let Err(error) = socket.pong_with(data) {
        log::debug!("ws {}: pong not sent: {error}", socket.id());
    }
}

/// A boxed listener is a listener, so one handler can choose among several
/// kinds at run time. Every callback, `on_ping` included, goes to the boxed
/// listener.
///
/// ```no_run
/// use actix_web::{web, Responder};
/// use actix_ws_listener::{Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Echo;
/// impl Listener for Echo {
///     fn on_message(&mut self, socket: &Socket, message: Message) {
///         if let Err(error) = socket.send(message) {
///             log::debug!("ws {}: echo not sent: {error}", socket.id());
///         }
///     }
/// }
///
/// struct Silent;
/// impl Listener for Silent {}
///
/// async fn ws(upgrade: WebSocketUpgrade, path: web::Path<String>) -> impl Responder {
///     let listener: Box<dyn Listener> = match path.as_str() {
///         "echo" => Box::new(Echo),
///         _ => Box::new(Silent),
///     };
///     upgrade.listen(listener)
/// }
/// ```
impl<L: Listener + ?Sized> Listener for Box<L> {
    fn on_open(&mut self, socket: &Socket) {
        (**self).on_open(socket);
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        (**self).on_message(socket, message);
    }

    fn on_ping(&mut self, socket: &Socket, data: Bytes) {
        (**self).on_ping(socket, data);
    }

    fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        (**self).on_pong(socket, data);
    }

    fn on_error(&mut self, socket: &Socket, error: &Error) {
        (**self).on_error(socket, error);
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        (**self).on_close(socket, code, reason);
    }
}

type OnSocket = Box<dyn FnMut(&Socket)>;
type OnMessage = Box<dyn FnMut(&Socket, Message)>;
type OnData = Box<dyn FnMut(&Socket, Bytes)>;
type OnError = Box<dyn FnMut(&Socket, &Error)>;
type OnClose = Box<dyn FnMut(&Socket, CloseCode, &str)>;

/// Starts a listener built from closures: the counterpart of a Ring
/// listener map. Events without a closure behave as [`Listener`]'s defaults
/// (a ping is still answered with a pong).
///
/// ```no_run
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{listener, WebSocketUpgrade};
///
/// async fn echo(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(
///         listener()
///             .on_open(|socket| {
///                 if socket.send("I will echo your messages").is_err() {
///                     log::debug!("ws {}: greeting not sent", socket.id());
///                 }
///             })
///             .on_message(|socket, message| {
///                 // Err: the client left or stopped reading; nothing to do.
///                 socket.send(message).ok();
///             }),
///     )
/// }
/// ```
pub fn listener() -> FnListener {
    FnListener::default()
}

/// A [`Listener`] made of optional closures; see [`listener`].
///
/// State shared between the closures of one connection can live in an
/// `Rc<RefCell<_>>` they all capture: the closures run on the connection's
/// thread, one at a time, so they need not be `Send`.
#[derive(Default)]
pub struct FnListener {
    on_open: Option<OnSocket>,
    on_message: Option<OnMessage>,
    on_ping: Option<OnData>,
    on_pong: Option<OnData>,
    on_error: Option<OnError>,
    on_close: Option<OnClose>,
}

impl FnListener {
    /// Sets the `on_open` closure.
    #[must_use]
    pub fn on_open(mut self, f: impl FnMut(&Socket) + 'static) -> Self {
        self.on_open = Some(Box::new(f));
        self
    }

    /// Sets the `on_message` closure.
    #[must_use]
    pub fn on_message(mut self, f: impl FnMut(&Socket, Message) + 'static) -> Self {
        self.on_message = Some(Box::new(f));
        self
    }

    /// Sets the `on_ping` closure, replacing the automatic pong.
    #[must_use]
    pub fn on_ping(mut self, f: impl FnMut(&Socket, Bytes) + 'static) -> Self {
        self.on_ping = Some(Box::new(f));
        self
    }

    /// Sets the `on_pong` closure.
    #[must_use]
    pub fn on_pong(mut self, f: impl FnMut(&Socket, Bytes) + 'static) -> Self {
        self.on_pong = Some(Box::new(f));
        self
    }

    /// Sets the `on_error` closure.
    #[must_use]
    pub fn on_error(mut self, f: impl FnMut(&Socket, &Error) + 'static) -> Self {
        self.on_error = Some(Box::new(f));
        self
    }

    /// Sets the `on_close` closure.
    #[must_use]
    pub fn on_close(mut self, f: impl FnMut(&Socket, CloseCode, &str) + 'static) -> Self {
        self.on_close = Some(Box::new(f));
        self
    }
}

impl Listener for FnListener {
    fn on_open(&mut self, socket: &Socket) {
        if let Some(f) = &mut self.on_open {
            f(socket);
        }
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if let Some(f) = &mut self.on_message {
            f(socket, message);
        }
    }

    fn on_ping(&mut self, socket: &Socket, data: Bytes) {
        match &mut self.on_ping {
            Some(f) => f(socket, data),
            None => answer_ping(socket, data),
        }
    }

    fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        if let Some(f) = &mut self.on_pong {
            f(socket, data);
        }
    }

    fn on_error(&mut self, socket: &Socket, error: &Error) {
        if let Some(f) = &mut self.on_error {
            f(socket, error);
        }
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        if let Some(f) = &mut self.on_close {
            f(socket, code, reason);
        }
    }
}

/// A listener that handles typed messages of type `M` from other actors
/// (S17): the way an actix-web-actors session implements `Handler<M>`.
///
/// Other actors reach the listener through a `Recipient<M>` (from
/// [`Address::recipient`](crate::Address::recipient)) and `do_send` or
/// `send` to it. The message is handled on the connection's actor, with
/// `&mut self` and the connection's socket, one event at a time and in one
/// order with frames (after a pending handler). `handle` is an `async fn`:
/// a handler that awaits (another actor's answer, a database call) holds
/// back the listener's other events until it is done, as actix's
/// `ctx.wait` does, while pings are still answered (S20). That is also how
/// a plain [`Listener`] takes one awaited step without spawning a task:
/// send itself a message through its [`Address`](crate::Address). A message that reaches the connection after
/// `on_close` is never handled: `send` resolves to
/// `Err(MailboxError::Closed)`, and once the connection's actor has stopped
/// `try_send` and `do_send` are refused by its mailbox. A panic in `handle`
/// is contained like one in any callback (1011).
///
/// ```no_run
/// use actix::Message;
/// use actix_ws_listener::{Address, Handles, Listener, Socket};
///
/// /// A line of chat for one session.
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct ChatLine(String);
///
/// struct Session {
///     muted: bool,
/// }
///
/// impl Listener for Session {
///     fn on_open(&mut self, socket: &Socket) {
///         // Give a room actor the session's recipient.
///         if let Ok(address) = Address::<Session>::of(socket) {
///             let recipient: actix::Recipient<ChatLine> = address.recipient();
///             // room.do_send(Join(recipient));
///             # drop(recipient);
///         }
///     }
/// }
///
/// impl Handles<ChatLine> for Session {
///     async fn handle(&mut self, socket: &Socket, ChatLine(line): ChatLine) {
///         // The session decides, with its own state, what to write.
///         if !self.muted {
///             if let Err(error) = socket.send(line) {
///                 log::debug!("line not sent: {error}");
///             }
///         }
///     }
/// }
/// ```
pub trait Handles<M: actix::Message> {
    /// Handles one message; the result goes back to a sender that used
    /// `send`. It may await (another actor's answer, a database call): the
    /// connection then handles nothing else of this listener until it is
    /// done, and reads only control frames meanwhile (S16, S20); a handler
    /// that never awaits costs no more than a plain function.
    async fn handle(&mut self, socket: &Socket, message: M) -> M::Result;
}
