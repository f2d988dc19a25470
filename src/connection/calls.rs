//! How the connection runs its listener's handlers: a call, polled once at
//! once, and the pending handler it may leave (S16), with panics contained
//! (S10).

use std::{
    rc::Rc,
    task::{self, Poll},
    time::Instant,
};

use actix::Context;

use super::Connection;
use crate::{
    contain::{catch, contain},
    driver::{Call, Driver, Pending},
    socket::Socket,
};

impl<L: 'static> Connection<L> {
    /// Calls the listener with panics contained (S10); an async call that
    /// has to wait becomes the pending handler. With the reader's `task`,
    /// an async call is polled once at once, in the same scope: a handler
    /// that finishes without waiting costs no second pass. Only the reader
    /// passes a `task`, and it holds the callback scope for its turn.
    pub(super) fn call(
        &mut self,
        ctx: &mut Context<Self>,
        call: Call,
        task: Option<&mut task::Context<'_>>,
    ) {
        self.begin(ctx, task, |driver, socket| driver.call(socket, call));
    }

    /// Runs `start` on the listener with panics contained (S10) and polls
    /// what it returns once at once (with the reader's `task` if there is
    /// one; otherwise the reader polls it again at its next turn): what is
    /// not done becomes the pending handler (S16).
    pub(super) fn begin(
        &mut self,
        ctx: &mut Context<Self>,
        task: Option<&mut task::Context<'_>>,
        start: impl FnOnce(&mut dyn Driver<L>, &Socket) -> Option<Pending>,
    ) {
        if self.is_done() {
            return;
        }
        let (driver, socket, out) = (&mut *self.driver, &self.socket, &self.out);
        let run = |task: &mut task::Context<'_>| {
            let mut pending = start(driver, socket)?;
            let done = pending.as_mut().poll(task).is_ready();
            (!done).then_some(pending)
        };
        let result = match task {
            // The reader calls with its task, inside the callback scope it
            // holds for its turn.
            Some(task) => catch(|| run(task)),
            None => contain(socket.id(), Rc::clone(out) as _, || {
                run(&mut task::Context::from_waker(
                    futures::task::noop_waker_ref(),
                ))
            }),
        };
        match result {
            Ok(pending) => {
                self.pending = pending;
                self.after_event(ctx);
            }
            Err(panic) => self.on_panic(ctx, panic),
        }
    }

    /// Polls the pending async handler, if any; `Ready` once there is none.
    pub(super) fn poll_pending(
        &mut self,
        ctx: &mut Context<Self>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        let Some(pending) = self.pending.as_mut() else {
            return Poll::Ready(());
        };
        // Only the reader polls it, inside the scope it holds.
        let result = catch(|| pending.as_mut().poll(task));
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
                self.end_departure(ctx);
            }
            Err(panic) => {
                self.pending = None;
                self.on_panic(ctx, panic);
            }
        }
        Poll::Ready(())
    }
}
