//! The connection's reading loop ([`Reader`]) and what it may do next
//! ([`Demand`], S15, S16, S20): it pulls events from the inbound assembler
//! and bytes from the request payload only while the connection can take
//! them, so a client that sends faster than it reads, or than an async
//! listener answers, waits in TCP. While a handler is pending it reads on
//! through at most [`LOOKAHEAD`] bytes of data, so that the control frames
//! behind them are handled at once (S20).

use std::{
    future::Future,
    pin::Pin,
    task::{self, Poll, Waker},
    time::Instant,
};

use actix::{ActorFuture, Context};
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures::Stream;

use super::{typed::Waiting, Connection};
use crate::{
    command::{enter_callback, Commands},
    inbound::Event,
    listener::answer_ping,
};

/// Events handled in one go before the connection lets the other
/// connections of its thread run.
const EVENT_BUDGET: usize = 64;

/// Bytes of data a connection reads ahead of a pending handler to find the
/// control frames behind them (S20): what its assembler holds plus the
/// messages waiting for the handler. Past it, reading stops and TCP holds
/// the client back (S15). Small, because every pending connection may hold
/// it; a ping behind more data than this waits for the handler.
pub(super) const LOOKAHEAD: usize = 64 * 1024;

/// What the reader may do next.
pub(super) enum Demand {
    /// Read and handle the next event.
    Read,
    /// An async handler is pending: poll it, read nothing.
    Handler,
    /// Typed messages, timer runs or frames read ahead wait for the
    /// listener: run the next.
    Waiting,
    /// The queue to the client is above the high-water mark: wait for the
    /// writer to drain it.
    Full,
    /// The connection is over.
    Stop,
}

impl<L: 'static> Connection<L> {
    /// What the reader should do next (S15, S16).
    pub(super) fn demand(&self) -> Demand {
        if self.is_done() {
            Demand::Stop
        } else if self.pending.is_some() {
            Demand::Handler
        } else if !self.waiting.is_empty() {
            Demand::Waiting
        } else if self.is_full() {
            Demand::Full
        } else {
            Demand::Read
        }
    }

    /// Whether the queue to the client is above the high-water mark, so
    /// that nothing more may be read (S15). Once closing, reading goes on
    /// regardless: the peer's close frame may be behind the data it sent.
    /// Once the writer is gone, reading is how the end of the connection
    /// is found.
    fn is_full(&self) -> bool {
        self.socket.link().queued() > self.settings.high_water_mark
            && !self.is_closing()
            && !self.out.borrow().is_writer_gone()
    }
}

/// The connection's reading loop, run as a future on the actor.
pub(super) struct Reader<S> {
    pub(super) payload: S,
    /// The connection's mailbox, drained first at every turn: commands go
    /// out whether or not reading is paused.
    pub(super) commands: Commands,
    /// Wakes the reader when a rate-limited message is due (S19).
    pub(super) pace: Option<Pin<Box<actix_rt::time::Sleep>>>,
    /// For the payload, when the actor runs inside the response body
    /// ([`engine`](super::engine)): bytes fed by the dispatcher need not
    /// wake it.
    pub(super) payload_waker: Option<Waker>,
}

impl<S> Reader<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    /// Feeds the assembler the next chunk of the payload; `Pending` when
    /// there is none yet.
    fn read_chunk<L: 'static>(
        &mut self,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        let polled = match &self.payload_waker {
            Some(waker) => {
                Pin::new(&mut self.payload).poll_next(&mut task::Context::from_waker(waker))
            }
            None => Pin::new(&mut self.payload).poll_next(task),
        };
        match polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(Some(Ok(chunk))) => {
                if act.settings.idle_timeout.is_some() {
                    act.last_seen = Instant::now();
                }
                act.inbound.feed(chunk);
            }
            Poll::Ready(Some(Err(error))) => {
                log::debug!("ws {}: read error: {error}", act.socket.id());
                act.end_of_input(ctx);
            }
            Poll::Ready(None) => act.end_of_input(ctx),
        }
        Poll::Ready(())
    }

    /// Handles the next event, reading for it when the assembler has none.
    fn read_event<L: 'static>(
        &mut self,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        match act.inbound.next_event() {
            Err(error) => act.fail(ctx, error),
            Ok(Some(event)) => {
                act.on_event(ctx, task, event);
                // The listener returned: the message's bytes leave the
                // budget (S19). A pending async handler gives them back
                // when it completes.
                if act.pending.is_none() {
                    act.inbound.release_delivered();
                }
            }
            // Over the rate (S19): read nothing until the message is due;
            // TCP holds the client back.
            Ok(None) if act.inbound.paced_until().is_some() => {
                return self.wait(act.inbound.paced_until(), task);
            }
            Ok(None) => return self.read_chunk(act, ctx, task),
        }
        Poll::Ready(())
    }

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

impl<S> Reader<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    /// While a handler is pending (S20): handles the next control frame,
    /// keeps the next message for after the handler, or reads on while the
    /// data held stays under [`LOOKAHEAD`]. `Pending` when it can do no more
    /// until the handler finishes (which wakes the reader) or bytes arrive.
    fn read_ahead<L: 'static>(
        &mut self,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        if act.is_departing() {
            // The peer is gone: nothing more to read.
            return Poll::Pending;
        }
        match act.inbound.next_event() {
            Err(error) => act.fail(ctx, error),
            Ok(Some(event)) => act.on_event_while_pending(ctx, event),
            // Past the high-water mark the lookahead stops too (S15): the
            // client is not reading, and what it sends waits in TCP.
            Ok(None) if act.inbound.buffered() + act.held_bytes < LOOKAHEAD && !act.is_full() => {
                return self.read_chunk(act, ctx, task);
            }
            Ok(None) => return Poll::Pending,
        }
        Poll::Ready(())
    }
}

impl<L: 'static> Connection<L> {
    /// An event read while a handler is pending (S20). A ping is answered
    /// at once by the connection (the default pong: the listener, busy, is
    /// not asked); a close is answered at once and ends the connection,
    /// which drops the pending handler; a message or a pong waits for the
    /// handler, in order.
    fn on_event_while_pending(&mut self, ctx: &mut Context<Self>, event: Event) {
        log::trace!(
            "ws {}: {event:?} while a handler is pending",
            self.socket.id()
        );
        match event {
            Event::Close(code, reason) => self.on_peer_close(ctx, code, &reason),
            Event::Ping(data) if !self.is_closing() => answer_ping(&self.socket, data),
            Event::Ping(_) => {}
            Event::Message(message) => {
                self.held_bytes += message.len();
                self.waiting
                    .push_back(Waiting::Event(Event::Message(message)));
            }
            pong @ Event::Pong(_) => self.waiting.push_back(Waiting::Event(pong)),
        }
    }

    /// Runs the first thing that waited for the handler.
    fn run_waiting(&mut self, ctx: &mut Context<Self>, task: &mut task::Context<'_>) {
        match self.waiting.pop_front() {
            Some(Waiting::Work(work)) => {
                self.waiting_work -= 1;
                work(self, ctx);
            }
            Some(Waiting::Event(event)) => {
                if let Event::Message(message) = &event {
                    self.held_bytes -= message.len();
                }
                self.on_event(ctx, task, event);
            }
            None => {}
        }
    }
}

impl<S> Reader<S>
where
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    /// One turn of the reader: the mailbox, the timer requests, then up to
    /// [`EVENT_BUDGET`] events.
    fn turn<L: 'static>(
        &mut self,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        while let Poll::Ready(Some(command)) = Pin::new(&mut self.commands).poll_next(task) {
            act.on_command(ctx, command);
        }
        while let Some(timer) = act.timers_in.pop(act.socket.link()) {
            act.on_timer(ctx, timer);
        }
        for _ in 0..EVENT_BUDGET {
            let step = match act.demand() {
                Demand::Stop => return Poll::Ready(()),
                Demand::Handler => match act.poll_pending(ctx, task) {
                    Poll::Ready(()) => Poll::Ready(()),
                    Poll::Pending => self.read_ahead(act, ctx, task),
                },
                Demand::Waiting => {
                    act.run_waiting(ctx, task);
                    Poll::Ready(())
                }
                Demand::Full => {
                    // The writer wakes us when the queue is down to the
                    // low-water mark, or when it goes away.
                    act.out.borrow_mut().park_reader(task.waker());
                    Poll::Pending
                }
                Demand::Read => self.read_event(act, ctx, task),
            };
            if step.is_pending() {
                return Poll::Pending;
            }
        }
        // Other connections on this thread get their turn.
        task.waker().wake_by_ref();
        Poll::Pending
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
        // One callback scope for the whole turn (S6): the listener's calls
        // below run inside it without entering it each.
        if act.settings.owns_socket {
            // Its `LineWriter` comes after this future in the actor's
            // items: it takes what this turn writes in the same poll.
            act.out.borrow_mut().writer_follows();
        }
        let scope = enter_callback(act.socket.id(), act.sink());
        let poll = self.get_mut().turn(act, ctx, task);
        drop(scope);
        if act.settings.owns_socket {
            // The chunk is a view of the thread's read buffer: what this
            // turn did not read is copied out, so that the buffer is free
            // for the next read in place.
            act.inbound.keep_unread();
        }
        // What the listener was done with during the turn goes back to the
        // budget once per turn (S19), not once per message.
        act.inbound.settle_budget();
        poll
    }
}
