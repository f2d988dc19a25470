//! The connection actor: one per upgraded WebSocket connection, and its
//! lifecycle (S1) as one [`Phase`].
//!
//! Events in (inbound events pulled from the [`Inbound`] assembler by the
//! [reader](reader), commands from the mailbox, [typed messages](typed)
//! from other actors and the listener's [timers](timers), S17), listener
//! calls, commands out (to the [`Outbound`] buffer that the response body
//! drains). This file owns the phase, the close handshake (S4), failing
//! with the right code (S7) and panic isolation (S10, through
//! [`contain`](crate::contain)); its submodules own reading and demand
//! (S15, S16, S20), typed messages and timers, handler calls and the
//! wiring at start. Only this module and
//! [`Address`](crate::Address) know actix's actor types.

mod calls;
mod engine;
mod reader;
mod timers;
mod typed;
mod wiring;

use std::{cell::RefCell, collections::VecDeque, rc::Rc, sync::Arc, task, time::Instant};

use actix::{Actor, ActorContext, AsyncContext, Context, Running, SpawnHandle};

pub(crate) use self::timers::{Timer, TimerQueue};
use self::typed::Waiting;
use self::wiring::Settings;
pub(crate) use self::wiring::{start, Edge};
use crate::{
    admission::Admission,
    close::CloseCode,
    command::{Command, Sink},
    contain::contain,
    driver::{Call, Driver, Pending},
    error::Error,
    inbound::{Event, Inbound},
    outbound::Outbound,
    socket::Socket,
};

/// Where a connection is in its life (S1, S4): the one record of it. The
/// outbound buffer knows which close frame went out; whether the connection
/// is closing is read here only.
enum Phase {
    /// Messages are read and delivered.
    Open,
    /// This side's close frame is out; messages are read and dropped while
    /// the timer gives the peer `close_timeout` to answer.
    Closing(SpawnHandle),
    /// The peer is gone (its close answered, or TCP ended) while a handler
    /// was pending (S20): nothing more is read, the handler's sends fail,
    /// and `on_close` runs with this code and reason when the handler is
    /// done or, at the latest, when the timer fires after `close_timeout`.
    Departing(SpawnHandle, CloseCode, String),
    /// The connection failed: `on_error` is running, `on_close` is next.
    Failing,
    /// `on_close` has run: nothing else runs.
    Done,
}

/// The actor of one connection whose listener is an `L`.
pub(crate) struct Connection<L: 'static> {
    driver: Box<dyn Driver<L>>,
    /// The connection's socket, and through it the counts and mailbox it
    /// shares with every clone (`Socket::link`).
    socket: Socket,
    out: Rc<RefCell<Outbound>>,
    inbound: Inbound,
    settings: Settings,
    /// The registries it joined.
    admission: Admission,
    phase: Phase,
    /// The async handler being awaited (S16).
    pending: Option<Pending>,
    /// What arrived while a handler was pending, in arrival order: typed
    /// messages and timer runs (at most `max_queued_messages`, S17) and the
    /// data frames read ahead of the handler (S20).
    waiting: VecDeque<Waiting<L>>,
    /// How many of `waiting` are typed messages or timer runs.
    waiting_work: usize,
    /// Bytes of the messages in `waiting`, for the read-ahead bound (S20).
    held_bytes: usize,
    /// Typed messages refused because the listener was done (S17).
    refused: u64,
    /// The listener's timers, by id, until they end or are cancelled.
    timers: Vec<(u64, SpawnHandle)>,
    /// Requests to start or cancel them, from its [`Address`](crate::Address).
    timers_in: Arc<TimerQueue<L>>,
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

    fn stopping(&mut self, _: &mut Context<Self>) -> Running {
        // On a socket of its own, the connection's frames go out through
        // its writer, which stops it once they are written (or the socket
        // failed, or `close_timeout` cut it off).
        if self.settings.owns_socket && !self.out.borrow().is_writer_gone() {
            Running::Continue
        } else {
            Running::Stop
        }
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Stopped from outside (arbiter shutdown): the listener still gets
        // its on_close.
        self.close_listener(CloseCode::GOING_AWAY, "server shutting down");
        self.out.borrow_mut().finish();
        log::debug!(
            "ws {}: stopped; {} typed messages refused",
            self.socket.id(),
            self.refused
        );
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
            Command::Disconnect => self.disconnect(ctx),
            command => {
                self.out.borrow_mut().apply(command);
                self.socket.link().took_from_mailbox();
                self.after_event(ctx);
            }
        }
    }
}

impl<L: 'static> Connection<L> {
    /// Whether this side has closed, or is past it: messages are no
    /// longer delivered (S4).
    fn is_closing(&self) -> bool {
        !matches!(self.phase, Phase::Open)
    }

    /// Whether the peer is gone and only a pending handler is left (S20).
    fn is_departing(&self) -> bool {
        matches!(self.phase, Phase::Departing(..))
    }

    /// Whether `on_close` has run: once its frames are written, the
    /// connection stops.
    pub(crate) fn is_done(&self) -> bool {
        matches!(self.phase, Phase::Done)
    }

    /// The connection's id, for logs.
    pub(crate) fn id(&self) -> u64 {
        self.socket.id()
    }

    /// Where the listener's socket writes while it runs (S6).
    fn sink(&self) -> Rc<dyn Sink> {
        Rc::clone(&self.out) as _
    }

    fn on_panic(&mut self, ctx: &mut Context<Self>, message: String) {
        log::error!("ws {}: listener panicked: {message}", self.socket.id());
        self.fail(ctx, Error::ListenerPanic(message));
    }

    /// Reacts to what a callback or command did: a close frame sent moves
    /// the phase to closing and starts the wait for the peer's, bounded by
    /// `close_timeout` (S4).
    fn after_event(&mut self, ctx: &mut Context<Self>) {
        if self.is_closing() || self.out.borrow().close_sent().is_none() {
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
            return self.depart(ctx, code, &reason);
        }
        let echo = if code == CloseCode::NO_STATUS {
            CloseCode::NORMAL
        } else {
            code
        };
        self.out.borrow_mut().close(echo, "");
        self.depart(ctx, code, reason);
    }

    /// The request payload ended: the TCP connection is gone (or half
    /// closed). Without a close handshake that is 1006 (S1).
    fn end_of_input(&mut self, ctx: &mut Context<Self>) {
        let (code, reason) = self.sent_close();
        self.depart(ctx, code, &reason);
    }

    /// The peer is gone (S20): without a pending handler the connection
    /// finishes now. With one, the handler may finish its work, but its
    /// sends fail, and it gets `close_timeout` at most: a handler that never
    /// completes does not keep a departed peer's connection alive.
    fn depart(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.pending.is_none() || matches!(self.phase, Phase::Departing(..) | Phase::Done) {
            return self.finish(ctx, code, reason);
        }
        log::debug!(
            "ws {}: peer gone while a handler is pending; it has {:?} to finish",
            self.socket.id(),
            self.settings.close_timeout
        );
        if let Phase::Closing(timer) = self.phase {
            ctx.cancel_future(timer);
        }
        // The close frame (if any) goes out and TCP ends now; nothing that
        // waited for the handler can reach the peer any more.
        self.out.borrow_mut().finish();
        self.refused += self.waiting_work as u64;
        self.waiting.clear();
        self.waiting_work = 0;
        self.held_bytes = 0;
        let timer = ctx.run_later(self.settings.close_timeout, |act, ctx| {
            log::debug!("ws {}: pending handler dropped", act.socket.id());
            act.end_departure(ctx);
        });
        self.phase = Phase::Departing(timer, code, reason.to_owned());
    }

    /// The departed peer's pending handler is done (or out of time): the
    /// connection finishes with the code the departure recorded.
    fn end_departure(&mut self, ctx: &mut Context<Self>) {
        if let Phase::Departing(_, code, reason) = &self.phase {
            let (code, reason) = (*code, reason.clone());
            self.finish(ctx, code, &reason);
        }
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
        let (id, sink) = (self.socket.id(), self.sink());
        let (driver, socket) = (&mut self.driver, &self.socket);
        if let Err(panic) = contain(id, sink, || driver.on_error(socket, &error)) {
            log::error!("ws {id}: on_error panicked: {panic}");
        }
        let (code, reason) = self.sent_close();
        self.finish(ctx, code, &reason);
    }

    /// Ends the connection at once, without the close handshake (S20): the
    /// response body fails, so actix-http drops TCP; what was buffered is
    /// dropped; `on_close` gets 1006 and an empty reason, as for a peer
    /// that vanished.
    fn disconnect(&mut self, ctx: &mut Context<Self>) {
        if self.is_done() {
            return;
        }
        log::debug!("ws {}: disconnected by the server", self.socket.id());
        match self.phase {
            Phase::Closing(timer) | Phase::Departing(timer, ..) => {
                ctx.cancel_future(timer);
            }
            _ => {}
        }
        self.out.borrow_mut().abort();
        self.close_listener(CloseCode::ABNORMAL, "");
        self.inbound.clear();
        ctx.stop();
    }

    /// Runs `on_close` once and ends the connection once the buffered
    /// frames are written.
    fn finish(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.is_done() {
            return;
        }
        match self.phase {
            Phase::Closing(timer) | Phase::Departing(timer, ..) => {
                ctx.cancel_future(timer);
            }
            _ => {}
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
        self.refused += self.waiting_work as u64;
        self.waiting.clear();
        self.waiting_work = 0;
        self.held_bytes = 0;
        self.socket_closed();
        log::debug!("ws {}: closed with {code} {reason:?}", self.socket.id());
        let (id, sink) = (self.socket.id(), self.sink());
        let (driver, socket) = (&mut self.driver, &self.socket);
        if let Err(panic) = contain(id, sink, || driver.on_close(socket, code, reason)) {
            log::error!("ws {id}: on_close panicked: {panic}");
        }
    }

    fn socket_closed(&mut self) {
        self.socket.link().mark_closed();
        self.timers_in.close(self.socket.link());
        self.admission.leave(&self.socket);
    }
}
