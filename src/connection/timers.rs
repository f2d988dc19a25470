//! The connection's clocks: keepalive pings and the idle timeout (S12), and
//! the listener's own timers from [`Address`](crate::Address) (S17), which
//! all end with the connection.

use std::{
    cell::RefCell,
    collections::VecDeque,
    rc::Rc,
    sync::{Mutex, MutexGuard},
    time::{Duration, Instant},
};

use actix::{AsyncContext, Context};

use super::Connection;
use crate::{command::Link, error::Error, socket::Socket};

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

/// The listener's timer requests on their way to its connection, typed by
/// the listener: [`Address`](crate::Address) pushes, the reader takes. Each
/// entry is charged to the connection's S9 count like a mailbox entry, so
/// requests cannot pile up without bound while the connection is busy.
pub(crate) struct TimerQueue<L> {
    /// `None` once the connection is over: requests are refused.
    queue: Mutex<Option<VecDeque<Timer<L>>>>,
}

impl<L> TimerQueue<L> {
    pub(crate) fn new() -> TimerQueue<L> {
        TimerQueue {
            queue: Mutex::new(Some(VecDeque::new())),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Option<VecDeque<Timer<L>>>> {
        // Nothing that can panic runs under this lock.
        self.queue.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Queues `timer` for the connection of `link`; `false` when it is over.
    pub(crate) fn push(&self, link: &Link, timer: Timer<L>) -> bool {
        {
            let mut queue = self.lock();
            let Some(queue) = queue.as_mut() else {
                return false;
            };
            link.charge(Link::ENTRY);
            queue.push_back(timer);
        }
        link.wake();
        true
    }

    /// The next request, its entry released from `link`'s count.
    pub(super) fn pop(&self, link: &Link) -> Option<Timer<L>> {
        let timer = self.lock().as_mut()?.pop_front()?;
        link.release(Link::ENTRY);
        Some(timer)
    }

    /// The connection is over: what waits is dropped, nothing more is taken.
    pub(super) fn close(&self, link: &Link) {
        let left = self.lock().take().unwrap_or_default();
        link.release(left.len() * Link::ENTRY);
    }
}

impl<L: 'static> Connection<L> {
    /// Starts the keepalive ping and the idle check, as configured.
    pub(super) fn start_timers(&mut self, ctx: &mut Context<Self>) {
        if let Some(period) = self.settings.keepalive {
            ctx.run_interval(period, |act, _| act.keepalive_ping());
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

    fn keepalive_ping(&self) {
        if self.is_closing() {
            return;
        }
        if let Err(error) = self.socket.ping() {
            log::debug!("ws {}: keepalive ping not sent: {error}", self.socket.id());
        }
    }

    /// Since when the connection has been waiting on the peer, for the idle
    /// timeout (S12): not while an async handler is pending, and while
    /// reading is paused for a slow reader, the writer's progress counts.
    fn idle_since(&self) -> Option<Instant> {
        if self.pending.is_some() {
            return None;
        }
        if self.socket.link().queued() > self.settings.high_water_mark {
            let drained = self.out.borrow().last_drain().unwrap_or(self.last_seen);
            return Some(self.last_seen.max(drained));
        }
        Some(self.last_seen)
    }

    /// Starts or cancels one of the listener's timers (S17); they all end
    /// with the connection.
    pub(super) fn on_timer(&mut self, ctx: &mut Context<Self>, timer: Timer<L>) {
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
                    let work = Box::new(move |listener: &mut L, socket: &Socket| {
                        (run.borrow_mut())(listener, socket)
                    });
                    act.run_or_defer(ctx, work);
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
}
