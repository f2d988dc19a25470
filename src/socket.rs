//! The [`Socket`] handle and the commands it sends to its connection.
//!
//! This module owns what a socket promises (S5, S6): operations never panic,
//! `is_open` turns false the moment `close` is called on any clone, sends are
//! counted against the outbound limit before they are queued, and every
//! `send_async` ends in exactly one of its two callbacks. It must not touch
//! frames or the actor's state beyond the shared counters and the outbound
//! buffer of the callback that is running.

use std::{
    cell::RefCell,
    fmt,
    future::Future,
    hash::{Hash, Hasher},
    panic::{catch_unwind, AssertUnwindSafe},
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
};

use actix::Recipient;
use bytes::Bytes;
use futures::channel::oneshot;

use crate::{
    deflate::CompressCache,
    frame::{self, MAX_CONTROL_PAYLOAD},
    outbound::Outbound,
    BackpressurePolicy, CloseCode, Error, Message, SendError,
};

/// Bytes charged per queued command on top of its frame, for the mailbox
/// entry itself, so that even empty frames cannot grow a mailbox without bound.
pub(crate) const COMMAND_OVERHEAD: usize = 64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a socket asks its connection to do.
pub(crate) enum Command {
    /// A message, its `send_async` callbacks, and the compression cache of
    /// the broadcast it belongs to.
    Send(Message, Option<Completion>, Option<Arc<CompressCache>>),
    Ping(Bytes),
    Pong(Bytes),
    Close(CloseCode, String),
    /// Fail the connection (backpressure under `BackpressurePolicy::Close`).
    Fail(Error),
}

impl Command {
    /// Bytes this command will occupy once encoded as a frame.
    pub(crate) fn frame_len(&self) -> usize {
        match self {
            Command::Send(message, _, _) => frame::header_len(message.len()) + message.len(),
            Command::Ping(data) | Command::Pong(data) => 2 + data.len(),
            Command::Close(_, reason) => 4 + reason.len(),
            Command::Fail(_) => 0,
        }
    }
}

/// A command in the connection's mailbox.
pub(crate) struct Envelope(pub(crate) Command);

impl actix::Message for Envelope {
    type Result = ();
}

type Succeed = Box<dyn FnOnce() + Send>;
type Fail = Box<dyn FnOnce(SendError) + Send>;

/// The two callbacks of a `send_async`: exactly one of them runs, once.
///
/// Dropping a completion that has not run calls `fail` with
/// [`SendError::Closed`]: that is how sends lost with a dead connection (in
/// its mailbox or its buffer) are reported.
pub(crate) struct Completion {
    succeed: Option<Succeed>,
    fail: Option<Fail>,
}

impl Completion {
    pub(crate) fn succeed(mut self) {
        self.fail = None;
        if let Some(succeed) = self.succeed.take() {
            if catch_unwind(AssertUnwindSafe(succeed)).is_err() {
                log::error!("send_async succeed callback panicked");
            }
        }
    }

    pub(crate) fn fail(mut self, error: SendError) {
        self.run_fail(error);
    }

    fn run_fail(&mut self, error: SendError) {
        self.succeed = None;
        if let Some(fail) = self.fail.take() {
            if catch_unwind(AssertUnwindSafe(move || fail(error))).is_err() {
                log::error!("send_async fail callback panicked");
            }
        }
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        self.run_fail(SendError::Closed);
    }
}

/// State shared by every clone of a socket and its connection.
pub(crate) struct Shared {
    id: u64,
    /// False from the moment a close is requested, or the connection ends.
    open: AtomicBool,
    /// Bytes queued and not yet handed to the HTTP writer: reserved by
    /// sockets, released by the body stream as it takes frames.
    pub(crate) queued: AtomicUsize,
    /// Commands sent through the mailbox and not yet handled. While any are
    /// in flight, operations from inside a callback go through the mailbox
    /// too, so they stay behind them (S6).
    pub(crate) in_mailbox: AtomicUsize,
    max_outbound: usize,
    policy: BackpressurePolicy,
    mailbox: Recipient<Envelope>,
}

impl Shared {
    pub(crate) fn mark_closed(&self) {
        self.open.store(false, Ordering::Release);
    }

    pub(crate) fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// Reserves `bytes` of outbound buffer, or reports backpressure.
    fn reserve(&self, bytes: usize) -> Result<(), SendError> {
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            // An empty queue takes any one frame, however large: a message
            // bigger than the limit could never be sent otherwise.
            if queued > 0 && queued.saturating_add(bytes) > self.max_outbound {
                return Err(SendError::Backpressure {
                    queued,
                    limit: self.max_outbound,
                });
            }
            match self.queued.compare_exchange_weak(
                queued,
                queued + bytes,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => queued = actual,
            }
        }
    }
}

thread_local! {
    /// The connection whose listener callback is running on this thread, if
    /// any: its socket operations are written straight into its outbound
    /// buffer instead of making a round trip through the mailbox.
    static IN_CALLBACK: RefCell<Option<(u64, Rc<RefCell<Outbound>>)>> = const { RefCell::new(None) };
}

/// Marks the connection `id` as running a callback on this thread until the
/// returned guard drops.
pub(crate) fn enter_callback(id: u64, outbound: Rc<RefCell<Outbound>>) -> CallbackScope {
    let previous = IN_CALLBACK.with(|slot| slot.replace(Some((id, outbound))));
    CallbackScope { previous }
}

pub(crate) struct CallbackScope {
    previous: Option<(u64, Rc<RefCell<Outbound>>)>,
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        let previous = self.previous.take();
        IN_CALLBACK.with(|slot| *slot.borrow_mut() = previous);
    }
}

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
    // A trait object rather than `Arc<Shared>`: clippy's `mutable_key_type`
    // looks through an `Arc<Shared>` at its atomics and would flag every
    // `HashSet<Socket>` in users' code, although `Hash` and `Eq` read only
    // the id, which never changes.
    shared: Arc<dyn SharedHandle>,
}

/// How a [`Socket`] reaches its connection's [`Shared`] state.
pub(crate) trait SharedHandle: Send + Sync {
    fn get(&self) -> &Shared;
}

impl SharedHandle for Shared {
    fn get(&self) -> &Shared {
        self
    }
}

impl Socket {
    pub(crate) fn new(
        mailbox: Recipient<Envelope>,
        max_outbound: usize,
        policy: BackpressurePolicy,
    ) -> Socket {
        Socket {
            shared: Arc::new(Shared {
                id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
                open: AtomicBool::new(true),
                queued: AtomicUsize::new(0),
                in_mailbox: AtomicUsize::new(0),
                max_outbound,
                policy,
                mailbox,
            }),
        }
    }

    pub(crate) fn shared(&self) -> &Shared {
        self.shared.get()
    }

    /// The connection's id, unique within the process.
    pub fn id(&self) -> u64 {
        self.shared().id
    }

    /// True until the connection starts closing: `false` right after
    /// `close`/`close_with` on any clone, after a close frame arrives, and
    /// after the connection ends. Ring's `open?`.
    pub fn is_open(&self) -> bool {
        self.shared().open.load(Ordering::Acquire)
    }

    /// Bytes queued for this connection and not yet handed to its HTTP writer.
    pub fn buffered_amount(&self) -> usize {
        self.shared().queued.load(Ordering::Acquire)
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
    /// queued for this connection past `max_outbound_buffer`.
    pub fn send(&self, message: impl Into<Message>) -> Result<(), SendError> {
        self.submit(Command::Send(message.into(), None, None))
    }

    /// [`Socket::send`] for one member of a broadcast: members without
    /// compression context takeover share one compressed payload.
    pub(crate) fn send_shared(
        &self,
        message: Message,
        cache: &Arc<CompressCache>,
    ) -> Result<(), SendError> {
        self.submit(Command::Send(message, None, Some(Arc::clone(cache))))
    }

    /// Queues a message and reports the outcome through exactly one of two
    /// callbacks, exactly once. Ring's `send` with `succeed` and `fail`.
    ///
    /// `succeed` runs when the whole frame has been handed to the
    /// connection's HTTP writer, after every frame queued before it. It does
    /// not promise that the bytes reached the peer's TCP stack, let alone
    /// the application: the connection may still die with them in the
    /// kernel's buffers. `fail` runs with the reason when the message cannot
    /// be queued, or when the connection ends before the frame is handed
    /// over. The callbacks may run on any thread, may call socket operations
    /// (chaining the next send from `succeed` is fine), and a panic in them is
    /// caught and logged.
    ///
    /// ```no_run
    /// # fn demo(socket: actix_ws_listener::Socket) {
    /// let next = socket.clone();
    /// socket.send_async(
    ///     "first",
    ///     move || { let _ = next.send("second"); },
    ///     |error| log::warn!("first was not sent: {error}"),
    /// );
    /// # }
    /// ```
    pub fn send_async<S, F>(&self, message: impl Into<Message>, succeed: S, fail: F)
    where
        S: FnOnce() + Send + 'static,
        F: FnOnce(SendError) + Send + 'static,
    {
        let completion = Completion {
            succeed: Some(Box::new(succeed)),
            fail: Some(Box::new(fail)),
        };
        // On refusal the command (and so the completion) comes back to us.
        if let Err((error, Command::Send(_, Some(completion), _))) =
            self.try_submit(Command::Send(message.into(), Some(completion), None))
        {
            completion.fail(error);
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
        async move { rx.await.unwrap_or(Err(SendError::Closed)) }
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
        let data = data.into();
        check_control(&data)?;
        self.submit(Command::Ping(data))
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
        let data = data.into();
        check_control(&data)?;
        self.submit(Command::Pong(data))
    }

    /// Starts the closing handshake with 1000 (normal closure) and no
    /// reason, as Ring does.
    ///
    /// # Errors
    /// [`SendError::Closed`] when the socket is already closing or closed.
    pub fn close(&self) -> Result<(), SendError> {
        self.close_with(CloseCode::NORMAL, "")
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
    /// let _ = socket.close_with(CloseCode::POLICY_VIOLATION, "slow down");
    /// let _ = socket.close_with(4000, "application-defined");
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
        let code = code.into();
        let reason = reason.into();
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(SendError::ReasonTooLong(reason.len()));
        }
        // Only the caller that flips `open` sends the close frame.
        if self
            .shared()
            .open
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            return Err(SendError::Closed);
        }
        let command = Command::Close(code, reason);
        let len = command.frame_len();
        // A close is never refused for backpressure: it is what frees the buffer.
        self.shared().queued.fetch_add(len, Ordering::AcqRel);
        self.dispatch(command, len);
        Ok(())
    }

    fn submit(&self, command: Command) -> Result<(), SendError> {
        self.try_submit(command).map_err(|(error, _)| error)
    }

    fn try_submit(&self, command: Command) -> Result<(), (SendError, Command)> {
        if !self.is_open() {
            return Err((SendError::Closed, command));
        }
        let len = command.frame_len();
        let shared = self.shared();
        if let Err(error) = shared.reserve(len) {
            if shared.policy == BackpressurePolicy::Close {
                // Not counted: it is what frees the buffer.
                shared
                    .mailbox
                    .do_send(Envelope(Command::Fail(Error::Backpressure)));
            }
            return Err((error, command));
        }
        self.dispatch(command, len);
        Ok(())
    }

    /// Hands a command, whose `len` bytes are already reserved, to the
    /// connection: straight into its buffer from inside its own callback,
    /// through the mailbox otherwise.
    fn dispatch(&self, command: Command, len: usize) {
        let command = match self.write_direct(command) {
            None => return,
            Some(command) => command,
        };
        let shared = self.shared();
        if !shared.mailbox.connected() {
            // The connection is gone: nothing will release what we reserved,
            // and dropping the command fails its completion, if any.
            shared.release(len);
            shared.mark_closed();
            return;
        }
        shared.queued.fetch_add(COMMAND_OVERHEAD, Ordering::AcqRel);
        shared.in_mailbox.fetch_add(1, Ordering::AcqRel);
        // `do_send` ignores the mailbox capacity on purpose: the bytes
        // reserved above (frame plus COMMAND_OVERHEAD per entry) are what
        // bound the mailbox. If the connection stops before handling it, the
        // command is dropped and its completion fails.
        shared.mailbox.do_send(Envelope(command));
    }

    fn write_direct(&self, command: Command) -> Option<Command> {
        let shared = self.shared();
        if shared.in_mailbox.load(Ordering::Acquire) != 0 {
            return Some(command);
        }
        IN_CALLBACK.with(|slot| {
            let slot = slot.borrow();
            match &*slot {
                Some((id, outbound)) if *id == shared.id => match outbound.try_borrow_mut() {
                    Ok(mut outbound) => {
                        outbound.apply(command);
                        None
                    }
                    Err(_) => Some(command),
                },
                _ => Some(command),
            }
        })
    }
}

fn check_control(data: &Bytes) -> Result<(), SendError> {
    if data.len() > MAX_CONTROL_PAYLOAD {
        return Err(SendError::ControlTooLong(data.len()));
    }
    Ok(())
}

impl PartialEq for Socket {
    fn eq(&self, other: &Socket) -> bool {
        self.shared().id == other.shared().id
    }
}

impl Eq for Socket {}

impl Hash for Socket {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.shared().id.hash(state);
    }
}

impl fmt::Debug for Socket {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Socket")
            .field("id", &self.shared().id)
            .field("open", &self.is_open())
            .finish()
    }
}
