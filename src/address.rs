//! [`Address`]: the actix face of one connection's listener (S17).
//!
//! This module owns the typed way in from other actors: a `Recipient<M>`
//! for every message type the listener [`Handles`], and per-connection
//! timers that run on the listener. It sends to the connection's actor and
//! never touches its state.

use std::{
    fmt,
    future::Future,
    sync::atomic::{AtomicU64, Ordering},
    sync::Arc,
    time::Duration,
};

use actix::{dev::SendError, Addr, MailboxError, Recipient};

use crate::{
    connection::{Connection, Edge, Timer as TimerWork, TimerQueue},
    listener::Handles,
    socket::Socket,
};

static NEXT_TIMER: AtomicU64 = AtomicU64::new(1);

/// The address of one connection's listener of type `L`: what other actors
/// use to send it typed messages, and what schedules timers on it.
///
/// Cheap to clone, `Send + Sync`. Get it inside the listener with
/// [`Address::of`] (in `on_open`, to register with a room actor), or in the
/// handler that upgrades, from what
/// [`WebSocketUpgrade::listen`](crate::WebSocketUpgrade::listen) returns
/// ([`Listening::address`](crate::Listening::address), actix-web-actors'
/// `start_with_addr`). A [`Listener`](crate::Listener) and an
/// [`AsyncListener`](crate::AsyncListener) both have one.
///
/// ```no_run
/// use std::time::Duration;
/// use actix_ws_listener::{Address, Listener, Socket};
///
/// struct Clock;
///
/// impl Listener for Clock {
///     fn on_open(&mut self, socket: &Socket) {
///         let Ok(address) = Address::<Clock>::of(socket) else { return };
///         // Every second, on the listener, until the connection ends.
///         address.run_interval(Duration::from_secs(1), |_clock: &mut Clock, socket: &Socket| {
///             if socket.send("tick").is_err() {
///                 log::debug!("tick not sent");
///             }
///         });
///     }
/// }
/// ```
pub struct Address<L: 'static> {
    addr: Addr<Connection<L>>,
    timers: Arc<TimerQueue<L>>,
    socket: Socket,
}

/// One of a listener's timers, to cancel it with [`Address::cancel`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Timer(u64);

impl<L: 'static> Address<L> {
    pub(crate) fn new(edge: &Edge<L>, socket: Socket) -> Address<L> {
        Address {
            addr: edge.address.clone(),
            timers: Arc::clone(&edge.timers),
            socket,
        }
    }

    /// The address of `socket`'s listener, asked for as an `L`: the type
    /// given to `listen` (for `listen(Box::new(x) as Box<dyn Listener>)`
    /// that is `Box<dyn Listener>`, not `x`'s type).
    ///
    /// # Errors
    /// [`NotThisListener`], naming both types, when `socket`'s listener is
    /// not an `L`.
    pub fn of(socket: &Socket) -> Result<Address<L>, NotThisListener> {
        let found = socket.link().address();
        match found.get::<Edge<L>>() {
            Some(edge) => Ok(Address::new(edge, socket.clone())),
            None => Err(NotThisListener {
                asked: std::any::type_name::<L>(),
                found: found.listener(),
            }),
        }
    }

    /// The connection's socket.
    pub fn socket(&self) -> &Socket {
        &self.socket
    }

    /// A `Recipient<M>` for this listener: what an actix actor keeps to
    /// `do_send` or `send` it messages, beside recipients of any other
    /// actor.
    pub fn recipient<M>(&self) -> Recipient<M>
    where
        L: Handles<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        self.addr.clone().recipient()
    }

    /// Sends `message` to the listener, without waiting or a result.
    /// Dropped if the connection has ended.
    pub fn do_send<M>(&self, message: M)
    where
        L: Handles<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        self.addr.do_send(message);
    }

    /// Sends `message` to the listener unless its mailbox is full or closed.
    ///
    /// # Errors
    /// The message back ([`TrySendError`]), when the connection's mailbox
    /// is full or its actor has stopped.
    pub fn try_send<M>(&self, message: M) -> Result<(), TrySendError<M>>
    where
        L: Handles<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        self.addr.try_send(message).map_err(|error| match error {
            SendError::Full(message) => TrySendError::Full(message),
            SendError::Closed(message) => TrySendError::Closed(message),
        })
    }

    /// Sends `message` and resolves to the listener's answer.
    ///
    /// # Errors
    /// `MailboxError::Closed` when the connection ended before handling it
    /// (it is never handled after `on_close`).
    pub fn send<M>(&self, message: M) -> impl Future<Output = Result<M::Result, MailboxError>>
    where
        L: Handles<M>,
        M: actix::Message + Send + 'static,
        M::Result: Send,
    {
        self.addr.send(message)
    }

    /// Whether the connection's actor still runs (it stops right after
    /// `on_close`); [`Socket::is_open`] turns false earlier, at the close.
    pub fn is_connected(&self) -> bool {
        self.addr.connected()
    }

    /// Runs `f` on the listener once, after `delay`, in order with its
    /// other events; not at all if the connection ends first.
    pub fn run_later<F>(&self, delay: Duration, f: F) -> Timer
    where
        F: FnOnce(&mut L, &Socket) + Send + 'static,
    {
        let id = NEXT_TIMER.fetch_add(1, Ordering::Relaxed);
        self.submit(TimerWork::Later {
            id,
            delay,
            run: Box::new(f),
        });
        Timer(id)
    }

    /// Runs `f` on the listener every `period` until the timer is
    /// cancelled or the connection ends.
    pub fn run_interval<F>(&self, period: Duration, f: F) -> Timer
    where
        F: FnMut(&mut L, &Socket) + Send + 'static,
    {
        let id = NEXT_TIMER.fetch_add(1, Ordering::Relaxed);
        self.submit(TimerWork::Every {
            id,
            period,
            run: Box::new(f),
        });
        Timer(id)
    }

    /// Cancels a timer of this listener's; nothing happens if it already
    /// ran or the connection ended.
    pub fn cancel(&self, timer: Timer) {
        self.submit(TimerWork::Cancel(timer.0));
    }

    fn submit(&self, work: TimerWork<L>) {
        if !self.timers.push(self.socket.link(), work) {
            log::debug!("ws {}: timer for an ended connection", self.socket.id());
        }
    }
}

impl<L: 'static> Clone for Address<L> {
    fn clone(&self) -> Self {
        Address {
            addr: self.addr.clone(),
            timers: Arc::clone(&self.timers),
            socket: self.socket.clone(),
        }
    }
}

impl<L: 'static> fmt::Debug for Address<L> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Address")
            .field("id", &self.socket.id())
            .field("connected", &self.is_connected())
            .finish()
    }
}

/// Why [`Address::try_send`] refused a message, with the message handed
/// back (like `std::sync::mpsc::TrySendError`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TrySendError<M> {
    /// The connection's mailbox is full: retry later, or `send` and await.
    Full(M),
    /// The connection's actor has stopped: the message can never be handled.
    Closed(M),
}

impl<M> TrySendError<M> {
    /// The refused message.
    pub fn into_inner(self) -> M {
        match self {
            TrySendError::Full(message) | TrySendError::Closed(message) => message,
        }
    }
}

impl<M> fmt::Display for TrySendError<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TrySendError::Full(_) => f.write_str("the connection's mailbox is full"),
            TrySendError::Closed(_) => f.write_str("the connection has ended"),
        }
    }
}

impl<M: fmt::Debug> std::error::Error for TrySendError<M> {}

/// [`Address::of`] was asked for a listener type that is not the
/// connection's: both types are named.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NotThisListener {
    asked: &'static str,
    found: &'static str,
}

impl NotThisListener {
    /// The type asked for.
    pub fn asked(&self) -> &'static str {
        self.asked
    }

    /// The connection's listener type, as given to `listen`.
    pub fn found(&self) -> &'static str {
        self.found
    }
}

impl fmt::Display for NotThisListener {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "the connection's listener is a {}, not a {}",
            self.found, self.asked
        )
    }
}

impl std::error::Error for NotThisListener {}
