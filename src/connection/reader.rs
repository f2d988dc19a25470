//! The connection's reading loop ([`Reader`]) and what it may do next
//! ([`Demand`], S15, S16): it pulls events from the inbound assembler and
//! bytes from the request payload only while the connection can take them,
//! so a client that sends faster than it reads, or than an async listener
//! answers, waits in TCP.

use std::{
    pin::Pin,
    task::{self, Poll},
    time::Instant,
};

use actix::{ActorFuture, Context};
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures::Stream;

use super::Connection;
use crate::command::Commands;

/// Events handled in one go before the connection lets the other
/// connections of its thread run.
const EVENT_BUDGET: usize = 64;

/// What the reader may do next.
pub(super) enum Demand {
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

impl<L: 'static> Connection<L> {
    /// What the reader should do next (S15, S16).
    pub(super) fn demand(&self) -> Demand {
        if self.is_done() {
            Demand::Stop
        } else if self.pending.is_some() {
            Demand::Handler
        } else if !self.deferred.is_empty() {
            Demand::Deferred
        } else if self.link.queued() > self.settings.high_water_mark
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
}

/// The connection's reading loop, run as a future on the actor.
pub(super) struct Reader<S> {
    pub(super) payload: S,
    /// The connection's mailbox, drained first at every turn: commands go
    /// out whether or not reading is paused.
    pub(super) commands: Commands,
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
        match Pin::new(&mut self.payload).poll_next(task) {
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
            Ok(Some(event)) => act.on_event(ctx, task, event),
            Ok(None) => return self.read_chunk(act, ctx, task),
        }
        Poll::Ready(())
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
        while let Some(timer) = act.timers_in.pop(&act.link) {
            act.on_timer(ctx, timer);
        }
        for _ in 0..EVENT_BUDGET {
            let step = match act.demand() {
                Demand::Stop => return Poll::Ready(()),
                Demand::Handler => act.poll_pending(ctx, task),
                Demand::Deferred => {
                    if let Some(work) = act.deferred.pop_front() {
                        act.with_listener(ctx, work);
                    }
                    Poll::Ready(())
                }
                Demand::Full => {
                    // The writer wakes us when the queue is down to the
                    // low-water mark, or when it goes away.
                    act.out.borrow_mut().park_reader(task.waker());
                    Poll::Pending
                }
                Demand::Read => this.read_event(act, ctx, task),
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
