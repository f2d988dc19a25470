//! On actix-web, the connection's actor runs inside the body of its 101
//! response: the HTTP dispatcher that reads the socket and feeds the
//! request payload then polls the body, which runs the actor, which reads
//! the payload, calls the listener and queues the answer, which the body
//! hands back at once. One task, one turn per message, where an actor of
//! its own took three (the dispatcher wakes the actor, which wakes the
//! dispatcher, at the back of the run queue each time).
//!
//! The dispatcher stops polling the body while its own write buffer is full
//! (a client that does not read). The actor must still run then: timers,
//! the close handshake, typed messages and shutdown do not wait for the
//! client (S15). So a helper task drives it too whenever the body may not
//! be polled: from the moment the body hands out a chunk until it next
//! finds nothing to hand out, and for good once the body has ended or is
//! dropped. In between, everything that wakes the actor wakes the
//! dispatcher, which polls the body; and bytes fed into the payload need no
//! wake at all, as the dispatcher polls the body right after feeding it.

use std::{
    cell::RefCell,
    future::Future,
    pin::Pin,
    rc::Rc,
    sync::{
        atomic::{AtomicBool, Ordering},
        Arc,
    },
    task::{self, Poll, Waker},
};

use actix::{dev::ContextFut, Context};
use futures::task::{waker, ArcWake, AtomicWaker};

use super::Connection;
use crate::outbound::Drive;

/// Who to wake when the actor has work.
pub(crate) struct Wakers {
    /// The task that polls the body: the HTTP dispatcher.
    body: AtomicWaker,
    /// The helper task.
    helper: AtomicWaker,
    /// The body may not be polled soon: the helper runs the actor.
    stalled: AtomicBool,
}

impl Wakers {
    pub(crate) fn new() -> Arc<Wakers> {
        Arc::new(Wakers {
            body: AtomicWaker::new(),
            helper: AtomicWaker::new(),
            // Until the dispatcher first polls the body.
            stalled: AtomicBool::new(true),
        })
    }

    /// The waker for bytes fed into the request payload: the dispatcher
    /// that feeds them polls the body next, unless it is stalled.
    pub(crate) fn payload_waker(self: &Arc<Self>) -> Waker {
        waker(Arc::new(PayloadWake(Arc::clone(self))))
    }

    fn wake_helper_if_stalled(&self) {
        if self.stalled.load(Ordering::Acquire) {
            self.helper.wake();
        }
    }
}

impl ArcWake for Wakers {
    fn wake_by_ref(wakers: &Arc<Self>) {
        wakers.body.wake();
        wakers.wake_helper_if_stalled();
    }
}

struct PayloadWake(Arc<Wakers>);

impl ArcWake for PayloadWake {
    fn wake_by_ref(wake: &Arc<Self>) {
        wake.0.wake_helper_if_stalled();
    }
}

/// The connection actor's future, as `Context::run` would spawn it.
type Actor<L> = ContextFut<Connection<L>, Context<Connection<L>>>;

/// The actor's future, driven by the body and the helper.
pub(crate) struct Engine<L: 'static> {
    actor: RefCell<Option<Actor<L>>>,
    wakers: Arc<Wakers>,
    /// [`Wakers`] as a waker, made once.
    waker: Waker,
}

impl<L: 'static> Engine<L> {
    /// Takes over the actor: returns the engine for the body, and spawns
    /// the helper task on the current thread.
    pub(crate) fn start(actor: Actor<L>, wakers: Arc<Wakers>) -> Rc<Engine<L>> {
        let engine = Rc::new(Engine {
            actor: RefCell::new(Some(actor)),
            waker: waker(Arc::clone(&wakers)),
            wakers,
        });
        actix_rt::spawn(Helper(Rc::clone(&engine)));
        engine
    }

    /// Polls the actor; `true` once it has ended.
    fn run(&self) -> bool {
        let Ok(mut actor) = self.actor.try_borrow_mut() else {
            // Polled from within its own poll: the outer poll goes on.
            return false;
        };
        let Some(future) = actor.as_mut() else {
            return true;
        };
        let mut cx = task::Context::from_waker(&self.waker);
        if Pin::new(future).poll(&mut cx).is_ready() {
            *actor = None;
            return true;
        }
        false
    }
}

impl<L: 'static> Drive for Engine<L> {
    fn drive(&self, body: &Waker) {
        self.wakers.body.register(body);
        self.run();
    }

    fn answered(&self, pending: bool) {
        self.wakers.stalled.store(!pending, Ordering::Release);
    }

    fn body_gone(&self) {
        self.wakers.stalled.store(true, Ordering::Release);
        self.wakers.helper.wake();
    }
}

/// The helper task: runs the actor when woken, until it ends.
struct Helper<L: 'static>(Rc<Engine<L>>);

impl<L: 'static> Future for Helper<L> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<()> {
        self.0.wakers.helper.register(cx.waker());
        if self.0.run() {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    }
}
