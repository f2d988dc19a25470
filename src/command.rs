//! What a socket asks its connection to do ([`Command`]), how `send_async`
//! reports back ([`Completion`]), and the [`Link`] every socket shares with
//! its connection: mailbox, open flag and the byte accounting that bounds
//! outbound memory (S9).
//!
//! This module is the one place both sides of the outbound path depend on:
//! [`Socket`](crate::Socket) builds commands and routes them here, the
//! outbound buffer applies them, and neither knows the other. A command is
//! routed straight into the connection's buffer when its own listener is
//! running on this thread and nothing sent earlier is still in the mailbox
//! (S6), and through the actor's mailbox otherwise. It must not encode
//! frames: it only knows how many bytes a frame will take.

use std::{
    any::Any,
    cell::Cell,
    collections::VecDeque,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering},
        Arc,
    },
    sync::{Mutex, MutexGuard},
    task::{Context, Poll},
};

use bytes::Bytes;
use futures::{task::AtomicWaker, Stream};

use crate::{
    deflate::CompressCache,
    frame::{self, MAX_CONTROL_PAYLOAD},
    CloseCode, Error, Message, SendError,
};

/// Bytes charged per queued command on top of its frame, for the mailbox
/// entry itself, so that even empty frames cannot grow a mailbox without bound.
const COMMAND_OVERHEAD: usize = 64;

static NEXT_ID: AtomicU64 = AtomicU64::new(1);

/// What a socket asks its connection to do.
pub(crate) enum Command {
    /// A message, its `send_async` callbacks, and the broadcast it belongs to.
    Send(Message, Option<Completion>, Option<SharedPayload>),
    Ping(Bytes),
    Pong(Bytes),
    Close(CloseCode, String),
    /// Fail the connection (backpressure under `BackpressurePolicy::Close`).
    Fail(Error),
    /// End the connection at once, without the close handshake.
    Disconnect,
}

impl Command {
    /// A ping or pong command, if `data` fits a control frame.
    pub(crate) fn control(pong: bool, data: Bytes) -> Result<Command, SendError> {
        if data.len() > MAX_CONTROL_PAYLOAD {
            return Err(SendError::ControlTooLong(data.len()));
        }
        Ok(if pong {
            Command::Pong(data)
        } else {
            Command::Ping(data)
        })
    }

    /// A close command, if `code` may be sent and `reason` fits.
    pub(crate) fn close(code: CloseCode, reason: String) -> Result<Command, SendError> {
        if !code.is_sendable() {
            return Err(SendError::InvalidCloseCode(code.as_u16()));
        }
        if reason.len() > MAX_CONTROL_PAYLOAD - 2 {
            return Err(SendError::ReasonTooLong(reason.len()));
        }
        Ok(Command::Close(code, reason))
    }

    /// Bytes this command will occupy once encoded as a frame.
    pub(crate) fn frame_len(&self) -> usize {
        match self {
            Command::Send(message, _, _) => frame::header_len(message.len()) + message.len(),
            Command::Ping(data) | Command::Pong(data) => 2 + data.len(),
            Command::Close(_, reason) => 4 + reason.len(),
            Command::Fail(_) | Command::Disconnect => 0,
        }
    }
}

/// The commands sent to one connection and not yet taken, in order.
///
/// Unbounded on purpose: the bytes counted in [`Link`] (frame plus
/// [`COMMAND_OVERHEAD`] per entry) are what bound it. It lives inside the
/// counters every socket already shares, so a connection pays for no
/// channel of its own.
#[derive(Default)]
struct Mailbox {
    queue: VecDeque<Command>,
    /// The connection is gone: nothing is queued any more.
    closed: bool,
}

impl Mailbox {
    /// The next command. An emptied queue that grew past a few entries
    /// gives its memory back, so that a connection that once got a burst of
    /// commands does not keep room for it while idle; the few entries of a
    /// steady trickle (one per broadcast) stay, to save an allocation each.
    fn pop(&mut self) -> Option<Command> {
        let command = self.queue.pop_front()?;
        if self.queue.is_empty() && self.queue.capacity() > 8 {
            self.queue = VecDeque::new();
        }
        Some(command)
    }
}

/// The connection's end of its mailbox: a stream of commands that never
/// ends while the connection runs. Dropping it closes the mailbox and drops
/// what is still in it (their completions fail).
pub(crate) struct Commands(Arc<Link>);

impl Commands {
    pub(crate) fn new(counters: Arc<Link>) -> Commands {
        Commands(counters)
    }
}

impl Stream for Commands {
    type Item = Command;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Command>> {
        let counters = &self.0;
        // Registered before the look, so a command pushed right after it
        // still wakes us: one lock per poll, on the reader's every turn.
        counters.waker.register(cx.waker());
        match counters.lock_mailbox().pop() {
            Some(command) => Poll::Ready(Some(command)),
            None => Poll::Pending,
        }
    }
}

impl Drop for Commands {
    fn drop(&mut self) {
        let left = {
            let mut mailbox = self.0.lock_mailbox();
            mailbox.closed = true;
            std::mem::take(&mut mailbox.queue)
        };
        // Outside the lock: failing a completion runs user code.
        drop(left);
    }
}

/// What the members of one broadcast share: the compressed payload, for
/// those that compress without context takeover. Opaque to sockets.
#[derive(Clone, Default)]
pub(crate) struct SharedPayload(Arc<CompressCache>);

impl SharedPayload {
    pub(crate) fn cache(&self) -> &CompressCache {
        &self.0
    }
}

type Succeed = Box<dyn FnOnce() + Send>;
type Fail = Box<dyn FnOnce(SendError) + Send>;

/// The two callbacks of a `send_async`: exactly one of them runs, once.
///
/// Dropping a completion that has not run calls `fail` with
/// [`SendError::Closed`] (without the message, long since framed): that is
/// how sends lost with a dead connection (in
/// its mailbox or its buffer) are reported.
pub(crate) struct Completion {
    succeed: Option<Succeed>,
    fail: Option<Fail>,
}

impl Completion {
    pub(crate) fn new(succeed: Succeed, fail: Fail) -> Completion {
        Completion {
            succeed: Some(succeed),
            fail: Some(fail),
        }
    }

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
        self.run_fail(SendError::Closed(None));
    }
}

/// What every socket of a connection shares with the connection, the link
/// between them: its id, whether it is open, its mailbox of commands, its
/// actor's address, and the S9 byte count.
///
/// `queued` counts the bytes of every frame reserved by a socket (or written
/// by the connection itself) and not yet handed to the HTTP writer, plus
/// [`COMMAND_OVERHEAD`] per command still in the mailbox. Sockets
/// [`reserve`](Link::reserve); the outbound buffer
/// [`release`](Link::release)s as the writer takes bytes.
pub(crate) struct Link {
    id: u64,
    /// False from the moment a close is requested, or the connection ends.
    open: AtomicBool,
    queued: AtomicUsize,
    /// Commands sent through the mailbox and not yet applied. While any are
    /// in flight, commands from inside a callback go through the mailbox
    /// too, so they stay behind them (S6).
    in_mailbox: AtomicUsize,
    max_outbound: usize,
    /// `BackpressurePolicy::Close`: a refused send fails the connection.
    close_on_backpressure: bool,
    mailbox: Mutex<Mailbox>,
    /// The connection's [`Commands`] stream, waiting for a command.
    waker: AtomicWaker,
    /// The connection's actor address, for
    /// [`Address::of`](crate::Address::of).
    address: ActorAddress,
}

/// A connection's actor address as its sockets carry it. Its type names
/// the listener, and a socket does not (it is one type for every listener),
/// so the address is erased here and recovered by the one caller that asks
/// for a listener type: [`Address::of`](crate::Address::of), which reports
/// the type it found when it is not the one asked for.
pub(crate) struct ActorAddress {
    address: Box<dyn Any + Send + Sync>,
    /// `std::any::type_name` of the connection's listener.
    listener: &'static str,
}

impl ActorAddress {
    /// The address of a connection whose listener's type is named `listener`.
    pub(crate) fn new<A: Any + Send + Sync>(address: A, listener: &'static str) -> ActorAddress {
        ActorAddress {
            address: Box::new(address),
            listener,
        }
    }

    /// The address, if it is an `A`.
    pub(crate) fn get<A: Any>(&self) -> Option<&A> {
        self.address.downcast_ref()
    }

    /// The name of the connection's listener type.
    pub(crate) fn listener(&self) -> &'static str {
        self.listener
    }
}

impl Link {
    /// Link of a new connection whose actor address is `address`; its
    /// commands come out of [`Commands::new`] on them.
    pub(crate) fn new(
        address: ActorAddress,
        max_outbound: usize,
        close_on_backpressure: bool,
    ) -> Arc<Link> {
        Arc::new(Link {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            open: AtomicBool::new(true),
            queued: AtomicUsize::new(0),
            in_mailbox: AtomicUsize::new(0),
            max_outbound,
            close_on_backpressure,
            mailbox: Mutex::default(),
            waker: AtomicWaker::new(),
            address,
        })
    }

    fn lock_mailbox(&self) -> MutexGuard<'_, Mailbox> {
        // Nothing that can panic runs under this lock.
        self.mailbox.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `command` for the connection, or hands it back when the
    /// connection is gone.
    fn post(&self, command: Command) -> Result<(), Command> {
        {
            let mut mailbox = self.lock_mailbox();
            if mailbox.closed {
                return Err(command);
            }
            mailbox.queue.push_back(command);
        }
        self.waker.wake();
        Ok(())
    }

    /// The connection's actor address, as given to [`Link::new`].
    pub(crate) fn address(&self) -> &ActorAddress {
        &self.address
    }

    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    #[inline]
    pub(crate) fn is_open(&self) -> bool {
        self.open.load(Ordering::Acquire)
    }

    pub(crate) fn mark_closed(&self) {
        self.open.store(false, Ordering::Release);
    }

    /// Marks the connection closing; true for the one caller that did it,
    /// which is the one that sends the close frame.
    fn claim_close(&self) -> bool {
        self.open
            .compare_exchange(true, false, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Bytes queued and not yet handed to the writer.
    pub(crate) fn queued(&self) -> usize {
        self.queued.load(Ordering::Acquire)
    }

    /// Reserves `bytes` of outbound buffer, or reports backpressure.
    #[inline]
    fn reserve(&self, bytes: usize) -> Result<(), SendError> {
        let mut queued = self.queued.load(Ordering::Acquire);
        loop {
            // An empty queue takes any one frame, however large: a message
            // bigger than the limit could never be sent otherwise.
            if queued > 0 && queued.saturating_add(bytes) > self.max_outbound {
                return Err(SendError::Backpressure {
                    message: None,
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

    /// Counts `bytes` whatever the limit: frames the connection writes on
    /// its own behalf, and close frames, which are what frees the buffer.
    pub(crate) fn charge(&self, bytes: usize) {
        self.queued.fetch_add(bytes, Ordering::AcqRel);
    }

    /// `bytes` were handed to the writer, or dropped.
    pub(crate) fn release(&self, bytes: usize) {
        self.queued.fetch_sub(bytes, Ordering::AcqRel);
    }

    /// A frame reserved as `reserved` bytes took `actual` (compression).
    pub(crate) fn settle(&self, reserved: usize, actual: usize) {
        if actual < reserved {
            self.release(reserved - actual);
        } else if actual > reserved {
            self.charge(actual - reserved);
        }
    }

    /// A command left the mailbox: its entry no longer counts.
    pub(crate) fn took_from_mailbox(&self) {
        self.release(COMMAND_OVERHEAD);
        self.in_mailbox.fetch_sub(1, Ordering::AcqRel);
    }

    /// Asks the connection to fail with `error` (not counted: it is what
    /// frees the buffer).
    pub(crate) fn fail_connection(&self, error: Error) {
        // Refused when the connection is gone: nothing left to fail.
        let _ = self.post(Command::Fail(error));
    }

    /// Asks the connection to end at once, without the close handshake;
    /// `false` when it has already ended.
    pub(crate) fn disconnect(&self) -> bool {
        self.mark_closed();
        self.post(Command::Disconnect).is_ok()
    }

    /// Queues a data or control command: refused when closed or over the
    /// limit, and then handed back.
    #[allow(
        clippy::result_large_err,
        reason = "crate-internal and inlined into Socket's methods: the refused command comes back by value, as a box would cost an allocation per refusal"
    )]
    #[inline]
    pub(crate) fn submit(&self, command: Command) -> Result<(), (SendError, Command)> {
        if !self.is_open() {
            return Err((SendError::Closed(None), command));
        }
        let len = command.frame_len();
        if let Err(error) = self.reserve(len) {
            if self.close_on_backpressure {
                self.fail_connection(Error::Backpressure);
            }
            return Err((error, command));
        }
        self.route(command, len);
        Ok(())
    }

    /// Wakes the connection's reader: work for it arrived outside the
    /// mailbox (a timer of its listener's).
    pub(crate) fn wake(&self) {
        self.waker.wake();
    }

    /// Bytes charged for one entry of listener work waiting for the
    /// connection, as for a command in the mailbox.
    pub(crate) const ENTRY: usize = COMMAND_OVERHEAD;

    /// Queues a close command; only the first close of a connection is sent.
    pub(crate) fn submit_close(&self, command: Command) -> Result<(), SendError> {
        if !self.claim_close() {
            return Err(SendError::Closed(None));
        }
        let len = command.frame_len();
        self.charge(len);
        self.route(command, len);
        Ok(())
    }

    /// Hands a command, whose `len` bytes are already counted, to the
    /// connection: straight into its buffer from inside its own callback,
    /// through the mailbox otherwise.
    #[inline]
    fn route(&self, command: Command, len: usize) {
        let command = match self.write_direct(command) {
            None => return,
            Some(command) => command,
        };
        self.charge(COMMAND_OVERHEAD);
        self.in_mailbox.fetch_add(1, Ordering::AcqRel);
        if let Err(refused) = self.post(command) {
            // The connection is gone: nothing will release what we counted,
            // and dropping the command fails its completion, if any.
            self.release(len + COMMAND_OVERHEAD);
            self.in_mailbox.fetch_sub(1, Ordering::AcqRel);
            self.mark_closed();
            drop(refused);
        }
    }

    #[allow(
        unsafe_code,
        reason = "the one unsafe block of the crate: see IN_CALLBACK"
    )]
    #[inline]
    fn write_direct(&self, command: Command) -> Option<Command> {
        if self.in_mailbox.load(Ordering::Acquire) != 0 {
            return Some(command);
        }
        match IN_CALLBACK.get() {
            // SAFETY: a pointer in IN_CALLBACK is that of the sink the
            // innermost live `CallbackScope` of this thread holds an `Rc`
            // to (see `enter_callback`), so it points to a live sink.
            Some((id, sink)) if id == self.id => unsafe { &*sink }.apply_now(command).err(),
            _ => Some(command),
        }
    }
}

/// Where commands go when they skip the mailbox: the outbound buffer of the
/// connection whose listener is running.
pub(crate) trait Sink {
    /// Applies `command` now, or hands it back when the buffer is busy.
    fn apply_now(&self, command: Command) -> Result<(), Command>;
}

/// The sink of the connection whose listener is running on this thread.
/// A raw pointer, so that the slot is `Copy` and needs no destructor: the
/// send path reads it once per message, and a thread-local with drop glue
/// costs a registration check on every read.
type Running = Option<(u64, *const (dyn Sink + 'static))>;

thread_local! {
    /// The connection whose listener is running on this thread, if any.
    static IN_CALLBACK: Cell<Running> = const { Cell::new(None) };
}

/// Marks the connection `id` as running its listener on this thread until
/// the returned guard drops: its socket's commands go straight to `sink`.
pub(crate) fn enter_callback(id: u64, sink: Rc<dyn Sink>) -> CallbackScope {
    let previous = IN_CALLBACK.replace(Some((id, Rc::as_ptr(&sink))));
    CallbackScope {
        previous,
        _sink: sink,
    }
}

/// While it lives, the sink it holds is the one `IN_CALLBACK` names (the
/// scopes of one thread nest, each restoring the one before it), and the
/// `Rc` it holds keeps that sink alive.
pub(crate) struct CallbackScope {
    previous: Running,
    _sink: Rc<dyn Sink>,
}

impl Drop for CallbackScope {
    fn drop(&mut self) {
        IN_CALLBACK.set(self.previous);
    }
}

#[cfg(test)]
impl Link {
    /// Link whose connection never runs: for unit tests of the
    /// outbound side, which must not need an actor.
    pub(crate) fn detached(max_outbound: usize) -> Arc<Link> {
        Link::new(ActorAddress::new((), "()"), max_outbound, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservations_stop_at_the_limit_but_an_empty_queue_takes_one_frame() {
        let counters = Link::detached(100);
        assert_eq!(counters.reserve(500), Ok(()));
        assert_eq!(
            counters.reserve(1),
            Err(SendError::Backpressure {
                message: None,
                queued: 500,
                limit: 100
            })
        );
        counters.release(500);
        assert_eq!(counters.reserve(60), Ok(()));
        counters.settle(60, 40);
        assert_eq!(counters.queued(), 40);
        counters.settle(40, 70);
        assert_eq!(counters.queued(), 70);
    }

    /// A sink that counts what it took.
    #[derive(Default)]
    struct Counting(Cell<usize>);

    impl Sink for Counting {
        fn apply_now(&self, _command: Command) -> Result<(), Command> {
            self.0.set(self.0.get() + 1);
            Ok(())
        }
    }

    fn ping() -> Command {
        Command::Ping(Bytes::new())
    }

    #[test]
    fn nested_callback_scopes_route_to_the_innermost_and_restore_the_outer() {
        let (outer_link, inner_link) = (Link::detached(1 << 20), Link::detached(1 << 20));
        let (outer, inner) = (Rc::new(Counting::default()), Rc::new(Counting::default()));
        {
            let _outer = enter_callback(outer_link.id(), outer.clone());
            assert!(outer_link.submit(ping()).is_ok());
            {
                let _inner = enter_callback(inner_link.id(), inner.clone());
                assert!(inner_link.submit(ping()).is_ok());
                // Not the running connection: through its mailbox.
                assert!(outer_link.submit(ping()).is_ok());
            }
            assert_eq!(outer_link.lock_mailbox().queue.len(), 1);
            // Behind the mailbox entry now (S6), so through it as well.
            assert!(outer_link.submit(ping()).is_ok());
            assert!(inner_link.submit(ping()).is_ok());
        }
        assert_eq!((outer.0.get(), inner.0.get()), (1, 1));
        assert_eq!(outer_link.lock_mailbox().queue.len(), 2);
        assert_eq!(inner_link.lock_mailbox().queue.len(), 1);
        assert_eq!(IN_CALLBACK.get().map(|(id, _)| id), None);
        // The scopes held the only other references to their sinks.
        assert_eq!((Rc::strong_count(&outer), Rc::strong_count(&inner)), (1, 1));
    }

    #[test]
    fn only_the_first_close_is_sent() {
        let counters = Link::detached(100);
        let close = || Command::close(CloseCode::NORMAL, String::new()).unwrap();
        assert_eq!(counters.submit_close(close()), Ok(()));
        assert!(!counters.is_open());
        assert_eq!(counters.submit_close(close()), Err(SendError::Closed(None)));
    }

    #[test]
    fn control_and_close_commands_are_checked() {
        assert!(Command::control(false, Bytes::from(vec![0; 125])).is_ok());
        assert_eq!(
            Command::control(true, Bytes::from(vec![0; 126])).err(),
            Some(SendError::ControlTooLong(126))
        );
        assert_eq!(
            Command::close(CloseCode::ABNORMAL, String::new()).err(),
            Some(SendError::InvalidCloseCode(1006))
        );
        assert_eq!(
            Command::close(CloseCode::NORMAL, "x".repeat(124)).err(),
            Some(SendError::ReasonTooLong(124))
        );
    }

    #[test]
    fn frame_lengths_include_the_header() {
        assert_eq!(
            Command::Send(Message::from("hi"), None, None).frame_len(),
            4
        );
        let big = Message::from(vec![0u8; 200]);
        assert_eq!(Command::Send(big, None, None).frame_len(), 204);
        assert_eq!(
            Command::Close(CloseCode::NORMAL, "ok".into()).frame_len(),
            6
        );
    }
}
