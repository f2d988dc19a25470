//! The connection actor: one per upgraded WebSocket connection.
//!
//! Events in (inbound events pulled from the [`Inbound`] assembler,
//! commands from the mailbox, typed messages from other actors and the
//! listener's timers, S17), listener calls, commands out (to the
//! [`Outbound`] buffer that the response body drains). It owns the
//! lifecycle (S1) as one [`Phase`], the close handshake (S4), failing with
//! the right code (S7), panic isolation (S10), keepalive (S12) and demand
//! (S15, S16): it reads the next frame only when the queue to the client is
//! below its high-water mark and no async handler is pending. It is the only
//! module that knows actix's actor and payload types.

use std::{
    any::Any,
    cell::RefCell,
    collections::VecDeque,
    future::Future,
    panic::{catch_unwind, AssertUnwindSafe},
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{self, Poll},
    time::{Duration, Instant},
};

use actix::{
    dev::{MessageResponse, OneshotSender},
    Actor, ActorContext, ActorFuture, Addr, AsyncContext, Context, Handler, SpawnHandle,
};
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures::Stream;

use crate::{
    admission::Admission,
    budget::Hold,
    command::{enter_callback, CallbackScope, Command, Commands, Counters},
    deflate::Agreed,
    driver::{Call, Driver, Pending},
    inbound::{Event, Inbound, Limits},
    outbound::{BodyStream, Outbound},
    BackpressurePolicy, CloseCode, Config, Error, Handles, Socket,
};

/// Events handled in one go before the connection lets the other
/// connections of its thread run.
const EVENT_BUDGET: usize = 64;

/// Starts the actor for one upgraded connection; returns its address, its
/// socket and the body of its 101 response.
pub(crate) fn start<L, S>(
    driver: Box<dyn Driver<L>>,
    config: Config,
    admission: Admission,
    deflate: Option<Agreed>,
    payload: S,
) -> (Addr<Connection<L>>, Socket, BodyStream)
where
    L: 'static,
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let mut ctx = Context::<Connection<L>>::new();
    let address = ctx.address();
    let counters = Counters::new(
        Box::new(address.clone()),
        config.max_outbound_buffer,
        config.backpressure == BackpressurePolicy::Close,
    );
    let commands = Commands::new(Arc::clone(&counters));
    let out = Rc::new(RefCell::new(Outbound::new(
        Arc::clone(&counters),
        deflate.clone(),
        config.low_water_mark,
        config.idle_timeout.is_some(),
    )));
    let body = BodyStream(Rc::clone(&out));
    ctx.spawn(Reader {
        payload,
        commands,
        pace: None,
    });
    let connection = Connection {
        driver,
        socket: Socket::new(Arc::clone(&counters)),
        counters,
        out,
        inbound: Inbound::new(
            Limits::of(&config),
            deflate,
            Hold::new(admission.budget.clone()),
        ),
        settings: Settings::of(config),
        admission,
        phase: Phase::Open,
        pending: None,
        deferred: VecDeque::new(),
        timers: Vec::new(),
        last_seen: Instant::now(),
    };
    let socket = connection.socket.clone();
    ctx.run(connection);
    (address, socket, body)
}

/// The part of [`Config`] a running connection reads: kept instead of the
/// whole config, because every byte here is paid by every idle connection.
struct Settings {
    high_water_mark: usize,
    max_queued_messages: usize,
    close_timeout: Duration,
    keepalive: Option<Duration>,
    idle_timeout: Option<Duration>,
}

impl Settings {
    fn of(config: Config) -> Settings {
        Settings {
            high_water_mark: config.high_water_mark,
            max_queued_messages: config.max_queued_messages,
            close_timeout: config.close_timeout,
            keepalive: config.keepalive,
            idle_timeout: config.idle_timeout,
        }
    }
}

/// Where a connection is in its life (S1, S4).
enum Phase {
    /// Messages are read and delivered.
    Open,
    /// This side's close frame is out; messages are read and dropped while
    /// the timer gives the peer `close_timeout` to answer.
    Closing(SpawnHandle),
    /// The connection failed: `on_error` is running, `on_close` is next.
    Failing,
    /// `on_close` has run: nothing else runs.
    Done,
}

/// Listener work that waits for a pending async handler to finish: a
/// typed message or a timer's run (S17).
type Deferred<L> = Box<dyn FnOnce(&mut L, &Socket)>;

/// The actor of one connection whose listener is an `L`.
pub(crate) struct Connection<L: 'static> {
    driver: Box<dyn Driver<L>>,
    socket: Socket,
    counters: Arc<Counters>,
    out: Rc<RefCell<Outbound>>,
    inbound: Inbound,
    settings: Settings,
    /// The registries it joined.
    admission: Admission,
    phase: Phase,
    /// The async handler being awaited (S16).
    pending: Option<Pending>,
    /// Typed messages and timer runs that arrived while a handler was
    /// pending, in arrival order; at most `max_queued_messages` (S17).
    deferred: VecDeque<Deferred<L>>,
    /// The listener's timers, by id, until they end or are cancelled.
    timers: Vec<(u64, SpawnHandle)>,
    /// When the peer last sent anything (S12).
    last_seen: Instant,
}

impl<L: 'static> Actor for Connection<L> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::debug!("ws {}: open", self.socket.id());
        self.admission.join(&self.socket);
        self.start_timers(ctx);
        self.call(ctx, Call::Open, None);
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Stopped from outside (arbiter shutdown): the listener still gets
        // its on_close.
        self.close_listener(CloseCode::GOING_AWAY, "server shutting down");
        self.out.borrow_mut().finish();
        log::debug!("ws {}: stopped", self.socket.id());
    }
}

impl<L: 'static> Drop for Connection<L> {
    fn drop(&mut self) {
        // The runtime dropped the actor without stopping it (a forced
        // server shutdown): on_close still runs, once (S1).
        self.close_listener(CloseCode::ABNORMAL, "");
    }
}

impl<L: 'static> Connection<L> {
    /// A command from a socket (or an [`Address`](crate::Address)) that
    /// came through the mailbox.
    fn on_command(&mut self, ctx: &mut Context<Self>, command: Command) {
        match command {
            Command::Fail(error) => self.fail(ctx, error),
            Command::Listener(work) => {
                self.counters.took_from_mailbox();
                match work.downcast::<Timer<L>>() {
                    Ok(timer) => self.on_timer(ctx, *timer),
                    Err(_) => log::error!("ws {}: work for another listener", self.socket.id()),
                }
            }
            command => {
                self.out.borrow_mut().apply(command);
                self.counters.took_from_mailbox();
                self.after_event(ctx);
            }
        }
    }
}

/// A typed message from another actor (S17): handled now, after the
/// pending async handler, or refused once `on_close` has run.
impl<L, M> Handler<M> for Connection<L>
where
    L: Handles<M> + 'static,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    type Result = Reply<M::Result>;

    fn handle(&mut self, message: M, ctx: &mut Context<Self>) -> Reply<M::Result> {
        if self.is_done() {
            log::debug!("ws {}: message after close refused", self.socket.id());
            return Reply::Refused;
        }
        if self.must_defer() {
            let slot = Rc::new(RefCell::new(None::<OneshotSender<M::Result>>));
            let reply = Rc::clone(&slot);
            let deferred = self.defer(Box::new(move |listener: &mut L, socket: &Socket| {
                let result = listener.handle(socket, message);
                if let Some(tx) = reply.borrow_mut().take() {
                    // The sender may have stopped waiting: nothing to do.
                    let _ = tx.send(result);
                }
            }));
            return if deferred {
                Reply::Later(slot)
            } else {
                Reply::Refused
            };
        }
        match self.with_listener(ctx, |listener, socket| listener.handle(socket, message)) {
            Some(result) => Reply::Now(result),
            None => Reply::Refused,
        }
    }
}

/// How a typed message is answered: at once, later (it waited for a
/// pending handler), or not at all, which the sender's `send` sees as
/// `MailboxError::Closed`.
pub(crate) enum Reply<R> {
    Now(R),
    Later(Rc<RefCell<Option<OneshotSender<R>>>>),
    Refused,
}

impl<L, M> MessageResponse<Connection<L>, M> for Reply<M::Result>
where
    L: 'static,
    M: actix::Message,
{
    fn handle(self, _: &mut Context<Connection<L>>, tx: Option<OneshotSender<M::Result>>) {
        match self {
            Reply::Now(result) => {
                if let Some(tx) = tx {
                    let _ = tx.send(result);
                }
            }
            Reply::Later(slot) => *slot.borrow_mut() = tx,
            Reply::Refused => drop(tx),
        }
    }
}

type RunOnce<L> = Box<dyn FnOnce(&mut L, &Socket) + Send>;
type RunEvery<L> = Box<dyn FnMut(&mut L, &Socket) + Send>;

/// A timer of the listener's, from [`Address`](crate::Address).
pub(crate) enum Timer<L> {
    Later {
        id: u64,
        delay: Duration,
        run: RunOnce<L>,
    },
    Every {
        id: u64,
        period: Duration,
        run: RunEvery<L>,
    },
    Cancel(u64),
}

impl<L: 'static> Connection<L> {
    fn is_closing(&self) -> bool {
        self.out.borrow().close_sent().is_some()
    }

    fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    fn start_timers(&mut self, ctx: &mut Context<Self>) {
        if let Some(period) = self.settings.keepalive {
            ctx.run_interval(period, |act, _| {
                if !act.is_closing() {
                    if let Err(error) = act.socket.ping() {
                        log::debug!("ws {}: keepalive ping not sent: {error}", act.socket.id());
                    }
                }
            });
        }
        if let Some(timeout) = self.settings.idle_timeout {
            let check = (timeout / 4).max(Duration::from_millis(10));
            ctx.run_interval(check, move |act, ctx| {
                if act
                    .idle_since()
                    .is_some_and(|since| since.elapsed() >= timeout)
                {
                    act.fail(ctx, Error::Timeout);
                }
            });
        }
    }

    /// Since when the connection has been waiting on the peer, for the idle
    /// timeout (S12): not while an async handler is pending, and while
    /// reading is paused for a slow reader, the writer's progress counts.
    fn idle_since(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        if self.counters.queued() > self.settings.high_water_mark {
            let drained = self.out.borrow().last_drain().unwrap_or(self.last_seen);
            return Some(self.last_seen.max(drained));
        }
        Some(self.last_seen)
    }

    /// Marks the connection as running its listener on this thread: its
    /// socket's operations go straight into the outbound buffer (S6).
    fn scope(&self) -> CallbackScope {
        enter_callback(self.socket.id(), Rc::clone(&self.out) as _)
    }

    /// Calls the listener with panics contained (S10); an async call that
    /// has to wait becomes the pending handler. With the reader's `task`,
    /// an async call is polled once at once, in the same scope: a handler
    /// that finishes without waiting costs no second pass.
    fn call(&mut self, ctx: &mut Context<Self>, call: Call, task: Option<&mut task::Context<'_>>) {
        if self.is_done() {
            return;
        }
        let result = {
            let _scope = self.scope();
            let (driver, socket) = (&mut self.driver, &self.socket);
            catch_unwind(AssertUnwindSafe(|| {
                let mut pending = driver.call(socket, call)?;
                let done = task.is_some_and(|task| pending.as_mut().poll(task).is_ready());
                (!done).then_some(pending)
            }))
        };
        match result {
            Ok(None) => self.after_event(ctx),
            Ok(Some(pending)) => self.pending = Some(pending),
            Err(panic) => self.on_panic(ctx, &*panic),
        }
    }

    /// Polls the pending async handler, if any; `Ready` once there is none.
    fn poll_pending(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) -> Poll<()> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(());
        };
        let _scope = enter_callback(self.socket.id(), Rc::clone(&self.out) as _);
        let result = catch_unwind(AssertUnwindSafe(|| pending.as_mut().poll(task)));
        drop(_scope);
        match result {
            Ok(Poll::Pending) => return Poll::Pending,
            Ok(Poll::Ready(())) => {
                self.pending = None;
                // The handler is done with its message (S19).
                self.inbound.release_delivered();
                // The idle clock stood still while the handler ran.
                if self.settings.idle_timeout.is_some() {
                    self.last_seen = Instant::now();
                }
                self.after_event(ctx);
            }
            Err(panic) => {
                self.pending = None;
                self.on_panic(ctx, &*panic);
            }
        }
        Poll::Ready(())
    }

    /// Whether listener work must wait: an async handler is pending, or
    /// earlier work is already waiting (S16, S17).
    fn must_defer(&self) -> bool {
        self.pending.is_some() || !self.deferred.is_empty()
    }

    /// Queues listener work behind the pending handler; `false` (and the
    /// work is dropped) when `max_queued_messages` are already waiting.
    fn defer(&mut self, work: Deferred<L>) -> bool {
        if self.deferred.len() >= self.settings.max_queued_messages {
            log::warn!(
                "ws {}: {} messages already wait for the listener; one more refused",
                self.socket.id(),
                self.deferred.len()
            );
            return false;
        }
        self.deferred.push_back(work);
        true
    }

    /// Runs `f` on the listener now, with panics contained (S10); `None`
    /// when the connection is over or `f` panicked.
    fn with_listener<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut L, &Socket) -> R,
    ) -> Option<R> {
        if self.is_done() {
            return None;
        }
        let result = {
            let _scope = self.scope();
            let socket = &self.socket;
            let mut listener = self.driver.listener()?;
            catch_unwind(AssertUnwindSafe(|| f(&mut listener, socket)))
        };
        match result {
            Ok(result) => {
                self.after_event(ctx);
                Some(result)
            }
            Err(panic) => {
                self.on_panic(ctx, &*panic);
                None
            }
        }
    }

    /// Runs listener work now, or after the pending handler.
    fn run_or_defer(&mut self, ctx: &mut Context<Self>, work: Deferred<L>) {
        if self.must_defer() {
            self.defer(work);
        } else {
            self.with_listener(ctx, work);
        }
    }

    /// Starts or cancels one of the listener's timers (S17); they all end
    /// with the connection.
    fn on_timer(&mut self, ctx: &mut Context<Self>, timer: Timer<L>) {
        if self.is_done() {
            return;
        }
        match timer {
            Timer::Later { id, delay, run } => {
                let handle = ctx.run_later(delay, move |act, ctx| {
                    act.timers.retain(|(timer, _)| *timer != id);
                    act.run_or_defer(ctx, Box::new(move |listener, socket| run(listener, socket)));
                });
                self.timers.push((id, handle));
            }
            Timer::Every { id, period, run } => {
                let run = Rc::new(RefCell::new(run));
                let handle = ctx.run_interval(period, move |act, ctx| {
                    let run = Rc::clone(&run);
                    act.run_or_defer(
                        ctx,
                        Box::new(move |listener, socket| (run.borrow_mut())(listener, socket)),
                    );
                });
                self.timers.push((id, handle));
            }
            Timer::Cancel(id) => {
                if let Some(at) = self.timers.iter().position(|(timer, _)| *timer == id) {
                    let (_, handle) = self.timers.swap_remove(at);
                    ctx.cancel_future(handle);
                }
            }
        }
    }

    fn on_panic(&mut self, ctx: &mut Context<Self>, panic: &(dyn Any + Send)) {
        let message = panic_message(panic);
        log::error!("ws {}: listener panicked: {message}", self.socket.id());
        self.fail(ctx, Error::ListenerPanic(message));
    }

    /// Reacts to what a callback or command did: a close frame sent starts
    /// the wait for the peer's, bounded by `close_timeout` (S4).
    fn after_event(&mut self, ctx: &mut Context<Self>) {
        if !matches!(self.phase, Phase::Open) || !self.is_closing() {
            return;
        }
        log::debug!(
            "ws {}: close sent, waiting for the peer's",
            self.socket.id()
        );
        let timer = ctx.run_later(self.settings.close_timeout, |act, ctx| {
            log::debug!("ws {}: close timeout", act.socket.id());
            let (code, reason) = act.sent_close();
            act.finish(ctx, code, &reason);
        });
        self.phase = Phase::Closing(timer);
    }

    fn sent_close(&self) -> (CloseCode, String) {
        match self.out.borrow().close_sent() {
            Some((code, reason)) => (code, reason.to_owned()),
            None => (CloseCode::ABNORMAL, String::new()),
        }
    }

    /// What the reader should do next (S15, S16).
    fn demand(&self) -> Demand {
        if self.is_done() {
            Demand::Stop
        } else if self.pending.is_some() {
            Demand::Handler
        } else if !self.deferred.is_empty() {
            Demand::Deferred
        } else if self.counters.queued() > self.settings.high_water_mark
            && !self.is_closing()
            && !self.out.borrow().is_writer_gone()
        {
            // Once closing, reading goes on regardless: the peer's close
            // frame may be behind the data it sent. Once the writer is gone,
            // reading is how the end of the connection is found.
            Demand::Full
        } else {
            Demand::Read
        }
    }

    /// One inbound event (S2, S3, S4), read by the reader whose `task` it is.
    fn on_event(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>, event: Event) {
        log::trace!("ws {}: {event:?}", self.socket.id());
        // After the server's close, messages are read but not delivered (S4).
        let call = match event {
            Event::Close(code, reason) => return self.on_peer_close(ctx, code, &reason),
            _ if self.is_closing() => return,
            Event::Message(message) => Call::Message(message),
            Event::Ping(data) => Call::Ping(data),
            Event::Pong(data) => Call::Pong(data),
        };
        self.call(ctx, call, Some(task));
    }

    /// The peer's close frame (S4): answer it (unless this side closed
    /// first), run `on_close`, end the connection.
    fn on_peer_close(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.is_closing() {
            let (code, reason) = self.sent_close();
            return self.finish(ctx, code, &reason);
        }
        let echo = if code == CloseCode::NO_STATUS {
            CloseCode::NORMAL
        } else {
            code
        };
        self.out.borrow_mut().close(echo, "");
        self.finish(ctx, code, reason);
    }

    /// The request payload ended: the TCP connection is gone (or half
    /// closed). Without a close handshake that is 1006 (S1).
    fn end_of_input(&mut self, ctx: &mut Context<Self>) {
        let (code, reason) = self.sent_close();
        self.finish(ctx, code, &reason);
    }

    /// Fails the connection (S7): close frame with the error's code,
    /// `on_error`, then `on_close`, then the TCP connection ends. A pending
    /// async handler is dropped first.
    fn fail(&mut self, ctx: &mut Context<Self>, error: Error) {
        if matches!(self.phase, Phase::Failing | Phase::Done) {
            return;
        }
        self.phase = Phase::Failing;
        self.pending = None;
        log::debug!("ws {}: failing: {error}", self.socket.id());
        self.out
            .borrow_mut()
            .close(error.close_code(), &error.close_reason());
        let result = {
            let _scope = self.scope();
            let (driver, socket) = (&mut self.driver, &self.socket);
            catch_unwind(AssertUnwindSafe(|| driver.on_error(socket, &error)))
        };
        if let Err(panic) = result {
            log::error!(
                "ws {}: on_error panicked: {}",
                self.socket.id(),
                panic_message(&*panic)
            );
        }
        let (code, reason) = self.sent_close();
        self.finish(ctx, code, &reason);
    }

    /// Runs `on_close` once and ends the connection once the buffered
    /// frames are written.
    fn finish(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.is_done() {
            return;
        }
        if let Phase::Closing(timer) = self.phase {
            ctx.cancel_future(timer);
        }
        self.close_listener(code, reason);
        self.out.borrow_mut().finish();
        // A peer that does not read would keep the connection (and what is
        // buffered for it) forever: give it close_timeout, then cut it off.
        // Weak: once the writer has drained the buffer and dropped the body,
        // the buffer must not live on until the timer fires.
        let out = Rc::downgrade(&self.out);
        let timeout = self.settings.close_timeout;
        actix_rt::spawn(async move {
            actix_rt::time::sleep(timeout).await;
            if let Some(out) = out.upgrade() {
                out.borrow_mut().abort();
            }
        });
        self.inbound.clear();
        ctx.stop();
    }

    /// Runs `on_close`, unless it ran: drops a pending handler first, so
    /// that nothing of the listener runs after it (S1, S16).
    fn close_listener(&mut self, code: CloseCode, reason: &str) {
        if self.is_done() {
            return;
        }
        self.phase = Phase::Done;
        self.pending = None;
        // Messages that waited for the pending handler are refused: their
        // senders' `send` resolves to `MailboxError::Closed`.
        self.deferred.clear();
        self.socket_closed();
        log::debug!("ws {}: closed with {code} {reason:?}", self.socket.id());
        let _scope = self.scope();
        let (driver, socket) = (&mut self.driver, &self.socket);
        if let Err(panic) = catch_unwind(AssertUnwindSafe(|| driver.on_close(socket, code, reason)))
        {
            log::error!(
                "ws {}: on_close panicked: {}",
                self.socket.id(),
                panic_message(&*panic)
            );
        }
    }

    fn socket_closed(&mut self) {
        self.counters.mark_closed();
        self.admission.leave(&self.socket);
    }
}

/// What the reader may do next.
enum Demand {
    /// Read and handle the next event.
    Read,
    /// An async handler is pending: poll it, read nothing.
    Handler,
    /// Typed messages or timer runs wait for the listener: run the next.
    Deferred,
    /// The queue to the client is above the high-water mark: wait for the
    /// writer to drain it.
    Full,
    /// The connection is over.
    Stop,
}

/// The connection's reading loop, run as a future on the actor: it pulls
/// events from the assembler and bytes from the request payload only while
/// the connection can take them (S15), so a client that sends faster than
/// it reads, or than an async listener answers, waits in TCP.
struct Reader<S> {
    payload: S,
    /// The connection's mailbox, drained first at every turn: commands go
    /// out whether or not reading is paused.
    commands: Commands,
    /// Wakes the reader when a rate-limited message is due (S19).
    pace: Option<Pin<Box<actix_rt::time::Sleep>>>,
}

impl<S> Reader<S> {
    /// `Ready` once `due` has come; until then the timer wakes the task.
    fn wait(&mut self, due: Option<Instant>, task: &mut task::Context<'_>) -> Poll<()> {
        let Some(due) = due else {
            return Poll::Ready(());
        };
        let sleep = self
            .pace
            .get_or_insert_with(|| Box::pin(actix_rt::time::sleep_until(due.into())));
        sleep.as_mut().reset(due.into());
        sleep.as_mut().poll(task)
    }
}

impl<L, S> ActorFuture<Connection<L>> for Reader<S>
where
    L: 'static,
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        while let Poll::Ready(Some(command)) = Pin::new(&mut this.commands).poll_next(task) {
            act.on_command(ctx, command);
        }
        for _ in 0..EVENT_BUDGET {
            match act.demand() {
                Demand::Stop => return Poll::Ready(()),
                Demand::Handler => {
                    if act.poll_pending(ctx, task).is_pending() {
                        return Poll::Pending;
                    }
                }
                Demand::Deferred => {
                    if let Some(work) = act.deferred.pop_front() {
                        act.with_listener(ctx, work);
                    }
                }
                Demand::Full => {
                    // The writer wakes us when the queue is down to the
                    // low-water mark, or when it goes away.
                    act.out.borrow_mut().park_reader(task.waker());
                    return Poll::Pending;
                }
                Demand::Read => match act.inbound.next_event() {
                    Err(error) => act.fail(ctx, error),
                    Ok(Some(event)) => {
                        act.on_event(ctx, task, event);
                        // The listener returned (or its async handler did):
                        // the message's bytes leave the budget (S19). A
                        // pending handler gives them back when it completes.
                        if act.pending.is_none() {
                            act.inbound.release_delivered();
                        }
                    }
                    Ok(None) if act.inbound.paced_until().is_some() => {
                        // Over the rate (S19): read nothing until the
                        // message is due; TCP holds the client back.
                        if this.wait(act.inbound.paced_until(), task).is_pending() {
                            return Poll::Pending;
                        }
                    }
                    Ok(None) => match Pin::new(&mut this.payload).poll_next(task) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Some(Ok(chunk))) => {
                            if act.settings.idle_timeout.is_some() {
                                act.last_seen = Instant::now();
                            }
                            act.inbound.feed(&chunk);
                        }
                        Poll::Ready(Some(Err(error))) => {
                            log::debug!("ws {}: read error: {error}", act.socket.id());
                            act.end_of_input(ctx);
                        }
                        Poll::Ready(None) => act.end_of_input(ctx),
                    },
                },
            }
        }
        // Other connections on this thread get their turn.
        task.waker().wake_by_ref();
        Poll::Pending
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}
