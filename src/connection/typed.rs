//! Typed messages from other actors (S17): the `Handler<M>` that hands them
//! to the listener, whose handler may await (`async fn handle`), how their
//! answer goes back ([`Reply`]), and the queue of what waits for a pending
//! handler ([`Waiting`]): typed messages, timer runs and the frames read
//! ahead of it (S20), in arrival order.

use std::{cell::RefCell, rc::Rc};

use actix::{
    dev::{MessageResponse, OneshotSender},
    Context, Handler,
};

use super::Connection;
use crate::{contain::contain, inbound::Event, listener::Handles, socket::Socket};

/// Work for the connection that waits for a pending handler to finish.
pub(super) type Deferred<L> = Box<dyn FnOnce(&mut Connection<L>, &mut Context<Connection<L>>)>;

/// A run of one of the listener's timers, on the listener.
pub(super) type ListenerWork<L> = Box<dyn FnOnce(&mut L, &Socket)>;

/// What waits for a pending handler, in arrival order.
pub(super) enum Waiting<L: 'static> {
    /// A typed message or a timer's run (S17).
    Work(Deferred<L>),
    /// A message or a pong read ahead of the handler (S20).
    Event(Event),
}

/// A typed message from another actor (S17): handled now, after the
/// pending handler, or refused once `on_close` has run.
impl<L, M> Handler<M> for Connection<L>
where
    L: Handles<M> + 'static,
    M: actix::Message + Send + 'static,
    M::Result: Send,
{
    type Result = Reply<M::Result>;

    fn handle(&mut self, message: M, ctx: &mut Context<Self>) -> Reply<M::Result> {
        if self.is_done() {
            return self.refuse();
        }
        let outcome = Rc::new(RefCell::new(Outcome::default()));
        if self.must_defer() {
            let slot = Rc::clone(&outcome);
            let work: Deferred<L> = Box::new(move |act, ctx| act.handle_typed(ctx, message, slot));
            return if self.defer(work) {
                Reply::Later(outcome)
            } else {
                self.refuse()
            };
        }
        self.handle_typed(ctx, message, Rc::clone(&outcome));
        let result = outcome.borrow_mut().result.take();
        match result {
            Some(result) => Reply::Now(result),
            // It awaits: the answer goes back when it is done. A panic
            // dropped it: the sender sees the connection gone.
            None if self.pending.is_some() => Reply::Later(outcome),
            None => Reply::Refused,
        }
    }
}

/// The answer to one typed message, or the sender waiting for it.
pub(crate) struct Outcome<R> {
    result: Option<R>,
    tx: Option<OneshotSender<R>>,
}

impl<R> Default for Outcome<R> {
    fn default() -> Self {
        Outcome {
            result: None,
            tx: None,
        }
    }
}

impl<R> Outcome<R> {
    fn deliver(&mut self, result: R) {
        match self.tx.take() {
            // The sender may have stopped waiting: nothing to do.
            Some(tx) => drop(tx.send(result)),
            None => self.result = Some(result),
        }
    }
}

/// How a typed message is answered: at once, later (it awaits, or waited
/// for a pending handler), or not at all, which the sender's `send` sees as
/// `MailboxError::Closed`.
pub(crate) enum Reply<R> {
    Now(R),
    Later(Rc<RefCell<Outcome<R>>>),
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
                    drop(tx.send(result));
                }
            }
            Reply::Later(slot) => {
                let mut outcome = slot.borrow_mut();
                match (outcome.result.take(), tx) {
                    (Some(result), Some(tx)) => drop(tx.send(result)),
                    (_, tx) => outcome.tx = tx,
                }
            }
            Reply::Refused => drop(tx),
        }
    }
}

impl<L: 'static> Connection<L> {
    /// Starts the listener's handler for `message`; its answer goes to
    /// `outcome` when it is done, now or after its awaits (S17, S16).
    fn handle_typed<M>(
        &mut self,
        ctx: &mut Context<Self>,
        message: M,
        outcome: Rc<RefCell<Outcome<M::Result>>>,
    ) where
        L: Handles<M>,
        M: actix::Message + 'static,
    {
        let listener = Rc::clone(self.driver.shared());
        let socket = self.socket.clone();
        // The borrow is held across the handler's awaits on purpose: it is
        // what gives it `&mut self`; nothing else runs on the listener
        // until it is done (S16).
        #[allow(clippy::await_holding_refcell_ref)]
        let handler = async move {
            let Ok(mut listener) = listener.try_borrow_mut() else {
                log::error!("ws {}: listener busy, message dropped", socket.id());
                return;
            };
            let result = listener.handle(&socket, message).await;
            outcome.borrow_mut().deliver(result);
        };
        self.begin(ctx, None, |_, _| Some(Box::pin(handler)));
    }

    /// A typed message that cannot be handled: counted, and the sender is
    /// told (its `send` resolves to `MailboxError::Closed`).
    pub(super) fn refuse<R>(&mut self) -> Reply<R> {
        self.refused += 1;
        log::debug!(
            "ws {}: message refused ({} so far)",
            self.socket.id(),
            self.refused
        );
        Reply::Refused
    }

    /// Whether listener work must wait: a handler is pending, or earlier
    /// work is already waiting (S16, S17).
    pub(super) fn must_defer(&self) -> bool {
        self.pending.is_some() || !self.waiting.is_empty()
    }

    /// Queues work behind the pending handler; `false` (and the work is
    /// dropped) when `max_queued_messages` are already waiting.
    pub(super) fn defer(&mut self, work: Deferred<L>) -> bool {
        if self.waiting_work >= self.settings.max_queued_messages {
            log::warn!(
                "ws {}: {} messages already wait for the listener; one more refused",
                self.socket.id(),
                self.waiting_work
            );
            return false;
        }
        self.waiting_work += 1;
        self.waiting.push_back(Waiting::Work(work));
        true
    }

    /// Runs `f` on the listener now, with panics contained (S10); `None`
    /// when the connection is over, the listener is busy or `f` panicked.
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
        let mut listener = self.driver.shared().try_borrow_mut().ok()?;
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
    pub(super) fn run_or_defer(&mut self, ctx: &mut Context<Self>, work: ListenerWork<L>) {
        if self.must_defer() {
            self.defer(Box::new(move |act, ctx| {
                act.with_listener(ctx, work);
            }));
        } else {
            self.with_listener(ctx, work);
        }
    }
}
