//! How the connection calls a listener, whichever kind it is: a
//! [`Listener`] runs each callback to the end; an [`AsyncListener`] may
//! return a future the connection polls before it takes the next event
//! (S16).
//!
//! This module owns the adaptation only. It does not catch panics, order
//! events or decide when a connection ends: the connection does.

use std::{cell::RefCell, future::Future, pin::Pin, rc::Rc};

use bytes::Bytes;

use crate::{
    async_listener::AsyncListener, close::CloseCode, error::Error, listener::Listener,
    message::Message, socket::Socket,
};

/// An event for the listener's event methods.
pub(crate) enum Call {
    Open,
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
}

/// An async handler that has not finished: the connection reads nothing
/// more until it has.
pub(crate) type Pending = Pin<Box<dyn Future<Output = ()>>>;

/// A listener of type `L` as the connection sees it. The connection holds
/// it as a trait object, so its type names the listener only, whichever
/// kind it is: that is what lets [`Address<L>`](crate::Address) reach it.
pub(crate) trait Driver<L>: 'static {
    /// Runs the callback for `call`: `None` when it is done, the rest of
    /// it when it has to wait.
    fn call(&mut self, socket: &Socket, call: Call) -> Option<Pending>;

    /// `on_error`; never while a call is pending.
    fn on_error(&mut self, socket: &Socket, error: &Error);

    /// `on_close`; never while a call is pending.
    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str);

    /// The listener itself, shared with what runs on it: typed messages
    /// and timers, which may await while holding it (S17).
    fn shared(&self) -> &Rc<RefCell<L>>;
}

/// A synchronous [`Listener`]: every call is done when it returns. Shared
/// like an async listener's, because a typed message may await on it.
pub(crate) struct SyncDriver<L>(Rc<RefCell<L>>);

impl<L: Listener> SyncDriver<L> {
    pub(crate) fn new(listener: L) -> Self {
        SyncDriver(Rc::new(RefCell::new(listener)))
    }
}

impl<L: Listener> Driver<L> for SyncDriver<L> {
    fn call(&mut self, socket: &Socket, call: Call) -> Option<Pending> {
        let Ok(mut listener) = self.0.try_borrow_mut() else {
            log::error!("ws {}: listener busy, event dropped", socket.id());
            return None;
        };
        match call {
            Call::Open => listener.on_open(socket),
            Call::Message(message) => listener.on_message(socket, message),
            Call::Ping(data) => listener.on_ping(socket, data),
            Call::Pong(data) => listener.on_pong(socket, data),
        }
        None
    }

    // The listener is free by then: the connection drops a pending call
    // before it ends.
    fn on_error(&mut self, socket: &Socket, error: &Error) {
        match self.0.try_borrow_mut() {
            Ok(mut listener) => listener.on_error(socket, error),
            Err(_) => log::error!("ws {}: listener busy at on_error", socket.id()),
        }
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        match self.0.try_borrow_mut() {
            Ok(mut listener) => listener.on_close(socket, code, reason),
            Err(_) => log::error!("ws {}: listener busy at close", socket.id()),
        }
    }

    fn shared(&self) -> &Rc<RefCell<L>> {
        &self.0
    }
}

/// An [`AsyncListener`]: each call is a future that owns a borrow of the
/// listener until it finishes, so the listener is shared with it.
pub(crate) struct AsyncDriver<L>(Rc<RefCell<L>>);

impl<L: AsyncListener> AsyncDriver<L> {
    pub(crate) fn new(listener: L) -> Self {
        AsyncDriver(Rc::new(RefCell::new(listener)))
    }
}

impl<L: AsyncListener> Driver<L> for AsyncDriver<L> {
    // The borrow is held across the listener's awaits on purpose: it is
    // what gives the handler `&mut self`. Nothing else borrows meanwhile:
    // the connection makes one call at a time and calls `on_error` and
    // `on_close` only once the pending call is dropped.
    #[allow(clippy::await_holding_refcell_ref)]
    fn call(&mut self, socket: &Socket, call: Call) -> Option<Pending> {
        let listener = Rc::clone(&self.0);
        let socket = socket.clone();
        Some(Box::pin(async move {
            let Ok(mut listener) = listener.try_borrow_mut() else {
                log::error!("ws {}: listener busy, event dropped", socket.id());
                return;
            };
            match call {
                Call::Open => listener.on_open(&socket).await,
                Call::Message(message) => listener.on_message(&socket, message).await,
                Call::Ping(data) => listener.on_ping(&socket, data).await,
                Call::Pong(data) => listener.on_pong(&socket, data).await,
            }
        }))
    }

    // The listener is free by then: the connection drops a pending call
    // before it ends.
    fn on_error(&mut self, socket: &Socket, error: &Error) {
        match self.0.try_borrow_mut() {
            Ok(mut listener) => listener.on_error(socket, error),
            Err(_) => log::error!("ws {}: listener busy at on_error", socket.id()),
        }
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        match self.0.try_borrow_mut() {
            Ok(mut listener) => listener.on_close(socket, code, reason),
            Err(_) => log::error!("ws {}: listener busy at close", socket.id()),
        }
    }

    fn shared(&self) -> &Rc<RefCell<L>> {
        &self.0
    }
}
