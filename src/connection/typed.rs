//! Typed messages from other actors (S17): the `Handler<M>` that hands them
//! to the listener, how their answer goes back ([`Reply`]), and the queue of
//! listener work that waits for a pending handler ([`Deferred`]).

use std::{cell::RefCell, rc::Rc};

use actix::{
    dev::{MessageResponse, OneshotSender},
    Context, Handler,
};

use super::Connection;
use crate::{contain::contain, listener::Handles, socket::Socket};

/// Listener work that waits for a pending async handler to finish: a
/// typed message or a timer's run (S17).
pub(super) type Deferred<L> = Box<dyn FnOnce(&mut L, &Socket)>;

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
        if !self.must_defer() {
            return match self
                .with_listener(ctx, |listener, socket| listener.handle(socket, message))
            {
                Some(result) => Reply::Now(result),
                None => Reply::Refused,
            };
        }
        let slot = Rc::new(RefCell::new(None::<OneshotSender<M::Result>>));
        let reply = Rc::clone(&slot);
        let work: Deferred<L> = Box::new(move |listener: &mut L, socket: &Socket| {
            let result = listener.handle(socket, message);
            if let Some(tx) = reply.borrow_mut().take() {
                // The sender may have stopped waiting: nothing to do.
                let _ = tx.send(result);
            }
        });
        if self.defer(work) {
            Reply::Later(slot)
        } else {
            Reply::Refused
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
                    // The sender may have stopped waiting: nothing to do.
                    let _ = tx.send(result);
                }
            }
            Reply::Later(slot) => *slot.borrow_mut() = tx,
            Reply::Refused => drop(tx),
        }
    }
}

impl<L: 'static> Connection<L> {
    /// Whether listener work must wait: an async handler is pending, or
    /// earlier work is already waiting (S16, S17).
    pub(super) fn must_defer(&self) -> bool {
        self.pending.is_some() || !self.deferred.is_empty()
    }

    /// Queues listener work behind the pending handler; `false` (and the
    /// work is dropped) when `max_queued_messages` are already waiting.
    pub(super) fn defer(&mut self, work: Deferred<L>) -> bool {
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
    pub(super) fn with_listener<R>(
        &mut self,
        ctx: &mut Context<Self>,
        f: impl FnOnce(&mut L, &Socket) -> R,
    ) -> Option<R> {
        if self.is_done() {
            return None;
        }
        let (id, sink) = (self.socket.id(), self.sink());
        let socket = &self.socket;
        let mut listener = self.driver.listener()?;
        let result = contain(id, sink, || f(&mut listener, socket));
        drop(listener);
        match result {
            Ok(result) => {
                self.after_event(ctx);
                Some(result)
            }
            Err(panic) => {
                self.on_panic(ctx, panic);
                None
            }
        }
    }

    /// Runs listener work now, or after the pending handler.
    pub(super) fn run_or_defer(&mut self, ctx: &mut Context<Self>, work: Deferred<L>) {
        if self.must_defer() {
            self.defer(work);
        } else {
            self.with_listener(ctx, work);
        }
    }
}
