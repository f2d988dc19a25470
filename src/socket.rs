//! The [`Socket`] handle: Ring's `Socket`.
//!
//! This module owns what a socket promises to its caller (S5, S6):
//! operations never panic, `is_open` turns false the moment `close` is
//! called on any clone, and every `send_async` ends in exactly one of its two
//! callbacks. It builds commands and hands them to the connection's
//! [`Link`]; it never frames bytes and never sees the outbound buffer.

use std::{
    fmt,
    future::Future,
    hash::{Hash, Hasher},
    sync::Arc,
};

use bytes::Bytes;
use futures::channel::oneshot;

use crate::{
    command::{Command, Completion, Link, SharedPayload},
    CloseCode, Message, SendError,
};

/// A handle to one WebSocket connection: Ring's `Socket`.
///
/// Cheap to clone (one reference count), `Send + Sync + 'static`: keep it in
/// another actor, a spawned task or a plain thread and push to the client
/// from there. Equality, hashing and `Debug` go by [`Socket::id`].
///
/// Every operation is a message to the connection's actor and returns at
/// once; none of them panics. Operations made through one socket by one
/// caller reach the wire in the order they were made (S6). Inside a listener
/// callback, operations on the connection's own socket are written straight
/// into its outbound buffer when nothing sent earlier is still in the
/// mailbox, which keeps that order and saves the round trip.
///
/// ```no_run
/// use actix_ws_listener::{Listener, Message, Socket};
///
/// struct Shout;
///
/// impl Listener for Shout {
///     fn on_message(&mut self, socket: &Socket, message: Message) {
///         if let Some(text) = message.as_text() {
///             // A full outbound buffer or a closed socket is an Err, never a panic.
///             if socket.send(text.to_uppercase()).is_err() {
///                 log::debug!("client {} is gone or not reading", socket.id());
///             }
///         }
///     }
/// }
/// ```
#[derive(Clone)]
pub struct Socket {
    // A trait object rather than `Arc<Link>`: clippy's `mutable_key_type`
    // looks through an `Arc<Link>` at its atomics and would flag every
    // `HashSet<Socket>` in users' code, although `Hash` and `Eq` read only
    // the id, which never changes.
    link: Arc<dyn LinkHandle>,
}

/// How a [`Socket`] reaches its connection's [`Link`].
trait LinkHandle: Send + Sync {
    fn get(&self) -> &Link;
}

impl LinkHandle for Link {
    fn get(&self) -> &Link {
        self
    }
}

impl Socket {
    pub(crate) fn new(link: Arc<Link>) -> Socket {
        Socket { link }
    }

    pub(crate) fn link(&self) -> &Link {
        self.link.get()
    }

    /// The connection's id, unique within the process.
    pub fn id(&self) -> u64 {
        self.link().id()
    }

    /// True until the connection starts closing: `false` right after
    /// `close`/`close_with` on any clone, after a close frame arrives, and
    /// after the connection ends. Ring's `open?`.
    pub fn is_open(&self) -> bool {
        self.link().is_open()
    }

    /// Bytes queued for this connection and not yet handed to its HTTP
    /// writer (on [`WsServer`](crate::WsServer): not yet written to its
    /// socket).
    pub fn buffered_amount(&self) -> usize {
        self.link().queued()
    }

    /// Queues a text or binary message. Ring's `send`.
    ///
    /// `Ok` means the message is queued in order; it is not a promise that
    /// the peer received it (see [`Socket::send_async`] for a callback when
    /// it is handed to the writer).
    ///
    /// # Errors
    /// [`SendError::Closed`] once the socket is closing or closed;
    /// [`SendError::Backpressure`] when the message would take the bytes
    /// queued for this connection past `max_outbound_buffer`. Both hand the
    /// message back ([`SendError::into_message`]).
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.submit(Command::Send(message.into(), None, None))
    }

    /// [`Socket::send`] for one member of a broadcast: members without
    /// compression context takeover share one compressed payload.
    pub(crate) fn send_shared(
        &self,
        message: Message,
        payload: &SharedPayload,
    ) -> Result<(), SendError> {
        self.submit(Command::Send(message, None, Some(payload.clone())))
    }

    /// Queues a message and reports the outcome through exactly one of two
    /// callbacks, exactly once. Ring's `send` with `succeed` and `fail`.
    ///
    /// `succeed` runs when the whole frame has been handed to the
    /// connection's HTTP writer (on [`WsServer`](crate::WsServer): written
    /// to the socket), after every frame queued before it. It does not
    /// promise that the bytes reached the peer's TCP stack, let alone the
    /// application: the connection may still die with them in the kernel's
    /// buffers. `fail` runs with the reason when the message cannot be
    /// queued (the error hands the message back), or when the connection
    /// ends before the frame is handed over (`SendError::Closed(None)`).
    /// The callbacks may run on any thread, may call socket operations
    /// (chaining the next send from `succeed` is fine), and a panic in them is
    /// caught and logged.
    ///
    /// ```no_run
    /// # fn demo(socket: actix_ws_listener::Socket) {
    /// let next = socket.clone();
    /// socket.send_async(
    ///     "first",
    ///     move || {
    ///         if let Err(error) = next.send("second") {
    ///             log::debug!("second was not sent: {error}");
    ///         }
    ///     },
    ///     |error| log::warn!("first was not sent: {error}"),
    /// );
    /// # }
    /// ```
    pub fn send_async<S, F>(&self, message: impl Into<Message>, succeed: S, fail: F)
    where
        S: FnOnce() + Send + 'static,
        F: FnOnce(SendError) + Send + 'static,
    {
        let completion = Completion::new(Box::new(succeed), Box::new(fail));
        // On refusal the command (and so the completion) comes back to us.
        if let Err((error, Command::Send(message, Some(completion), _))) = self
            .link()
            .submit(Command::Send(message.into(), Some(completion), None))
        {
            completion.fail(error.with_message(Some(message)));
        }
    }

    /// Queues a message and resolves when it has been handed to the HTTP
    /// writer (the moment `send_async` would call `succeed`): the awaitable
    /// form for async code.
    ///
    /// # Errors
    /// As [`Socket::send`], plus [`SendError::Closed`] when the connection
    /// ends before the frame is handed over.
    pub fn send_and_wait(
        &self,
        message: impl Into<Message>,
    ) -> impl Future<Output = Result<(), SendError>> + Send + 'static {
        let (tx, rx) = oneshot::channel();
        let tx = Arc::new(std::sync::Mutex::new(Some(tx)));
        let tx_fail = Arc::clone(&tx);
        self.send_async(
            message,
            move || {
                if let Some(tx) = tx.lock().ok().and_then(|mut slot| slot.take()) {
                    let _ = tx.send(Ok(()));
                }
            },
            move |error| {
                if let Some(tx) = tx_fail.lock().ok().and_then(|mut slot| slot.take()) {
                    let _ = tx.send(Err(error));
                }
            },
        );
        async move { rx.await.unwrap_or(Err(SendError::Closed(None))) }
    }

    /// Sends a ping with an empty payload.
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub fn ping(&self) -> Result<(), SendError> {
        self.ping_with(Bytes::new())
    }

    /// Sends a ping carrying `data` (at most 125 bytes).
    ///
    /// # Errors
    /// [`SendError::ControlTooLong`] past 125 bytes; otherwise as [`Socket::send`].
    pub fn ping_with(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.submit(Command::control(false, data.into())?)
    }

    /// Sends an unsolicited pong with an empty payload.
    ///
    /// # Errors
    /// As [`Socket::send`].
    pub fn pong(&self) -> Result<(), SendError> {
        self.pong_with(Bytes::new())
    }

    /// Sends a pong carrying `data` (at most 125 bytes).
    ///
    /// # Errors
    /// [`SendError::ControlTooLong`] past 125 bytes; otherwise as [`Socket::send`].
    pub fn pong_with(&self, data: impl Into<Bytes>) -> Result<(), SendError> {
        self.submit(Command::control(true, data.into())?)
    }

    /// Starts the closing handshake with 1000 and the reason "Normal
    /// Closure", as Ring's `close` does.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the socket is already closing or closed.
    pub fn close(&self) -> Result<(), SendError> {
        self.close_with(CloseCode::NORMAL, "Normal Closure")
    }

    /// Starts the closing handshake with `code` and `reason`.
    ///
    /// From this call on, `is_open` is false on every clone and sends fail;
    /// frames queued before it still go out, then the close frame. The
    /// connection waits up to `close_timeout` for the peer's close, then
    /// ends; `on_close` receives `code` and `reason`.
    ///
    /// ```no_run
    /// # fn demo(socket: actix_ws_listener::Socket) {
    /// use actix_ws_listener::CloseCode;
    /// // An Err here means the connection is already closing: nothing to do.
    /// if socket.close_with(CloseCode::POLICY_VIOLATION, "slow down").is_err() {
    ///     log::debug!("ws {}: already closing", socket.id());
    /// }
    /// // Application codes (4000-4999) are plain numbers.
    /// if let Err(error) = socket.close_with(4000, "application-defined") {
    ///     log::debug!("ws {}: {error}", socket.id());
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`SendError::InvalidCloseCode`] for codes that may not be sent (see
    /// [`CloseCode::is_sendable`]), [`SendError::ReasonTooLong`] past 123
    /// bytes, [`SendError::Closed`] when already closing or closed.
    pub fn close_with(
        &self,
        code: impl Into<CloseCode>,
        reason: impl Into<String>,
    ) -> Result<(), SendError> {
        self.link()
            .submit_close(Command::close(code.into(), reason.into())?)
    }

    /// Ends the connection at once, without the close handshake: Jetty's
    /// `disconnect`, actix's `ctx.stop()`. For a peer that is gone or will
    /// not answer (a heartbeat found it silent): a close would wait
    /// `close_timeout` for a close frame that never comes.
    ///
    /// The TCP connection is dropped; what is still queued for the client
    /// is dropped too (`send_async` calls `fail`); `on_close` runs with
    /// [`CloseCode::ABNORMAL`] (1006) and an empty reason, as when the peer
    /// vanishes. `is_open` is false from this call on. Nothing happens if
    /// the connection has already ended.
    ///
    /// ```no_run
    /// # fn demo(socket: actix_ws_listener::Socket, silent_for: std::time::Duration) {
    /// if silent_for > std::time::Duration::from_secs(10) {
    ///     log::info!("ws {}: heartbeat failed, disconnecting", socket.id());
    ///     socket.disconnect();
    /// }
    /// # }
    /// ```
    pub fn disconnect(&self) {
        if !self.link().disconnect() {
            log::debug!("ws {}: disconnect after the end", self.id());
        }
    }

    #[inline]
    fn submit(&self, command: Command) -> Result<(), SendError> {
        self.link()
            .submit(command)
            .map_err(|(error, command)| match command {
                Command::Send(message, ..) => error.with_message(Some(message)),
                _ => error,
            })
    }
}

impl PartialEq for Socket {
    fn eq(&self, other: &Socket) -> bool {
        self.id() == other.id()
    }
}

impl Eq for Socket {}

impl Hash for Socket {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.id().hash(state);
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.id())
            .field("open", &self.is_open())
            .finish()
    }
}
