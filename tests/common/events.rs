//! The event recorder: a listener wrapper that logs every callback, with
//! blocking waits on the log, and checks of the lifecycle rules (S1).

use std::{
    fmt,
    sync::{Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use actix_ws_listener::{Bytes, CloseCode, Error, Listener, Message, Socket};

use super::TIMEOUT;

/// One listener callback (or a note a test listener made).
#[derive(Clone, Debug)]
pub enum Event {
    Open(Socket),
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    Error(Error),
    Close(CloseCode, String),
    /// Something a test's listener wants to report (a value it observed).
    Note(String),
    /// A lifecycle rule (S1) was broken; recorded by [`Recorded`].
    Violation(String),
}

/// An event and the connection it happened on.
#[derive(Clone, Debug)]
pub struct Record {
    pub conn: u64,
    pub event: Event,
}

/// Thread-safe log of listener events with blocking waits.
#[derive(Clone, Default)]
pub struct Events {
    inner: Arc<(Mutex<Vec<Record>>, Condvar)>,
}

impl fmt::Debug for Events {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(self.snapshot()).finish()
    }
}

impl Events {
    pub fn new() -> Events {
        Events::default()
    }

    /// Wraps `listener` so that every callback is recorded here before it
    /// runs, and lifecycle violations (S1) are recorded as such.
    pub fn record<L: Listener>(&self, listener: L) -> Recorded<L> {
        Recorded {
            events: self.clone(),
            inner: listener,
            opened: false,
            closed: false,
        }
    }

    pub fn push(&self, conn: u64, event: Event) {
        let (log, changed) = &*self.inner;
        log.lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Record { conn, event });
        changed.notify_all();
    }

    pub fn note(&self, socket: &Socket, text: impl Into<String>) {
        self.push(socket.id(), Event::Note(text.into()));
    }

    pub fn snapshot(&self) -> Vec<Record> {
        self.inner
            .0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone()
    }

    /// Events of one connection, in order.
    pub fn of(&self, conn: u64) -> Vec<Event> {
        self.snapshot()
            .into_iter()
            .filter(|r| r.conn == conn)
            .map(|r| r.event)
            .collect()
    }

    /// Waits until `check` (run on the whole log each time an event is
    /// recorded) returns `Some`; fails the test after [`TIMEOUT`] saying
    /// `what` never happened. Only events wake it: conditions on anything
    /// else need their own channel.
    pub fn wait_for<T>(&self, what: &str, mut check: impl FnMut(&[Record]) -> Option<T>) -> T {
        let deadline = Instant::now() + TIMEOUT;
        let (log, changed) = &*self.inner;
        let mut guard = log.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(found) = check(&guard) {
                return found;
            }
            let now = Instant::now();
            if now >= deadline {
                panic!(
                    "timed out after {TIMEOUT:?} waiting for {what}; events so far: {:#?}",
                    *guard
                );
            }
            guard = changed
                .wait_timeout(guard, deadline - now)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// The socket of the `n`-th connection to open (0-based).
    pub fn wait_open_nth(&self, n: usize) -> Socket {
        self.wait_for(&format!("on_open of connection #{n}"), |log| {
            log.iter()
                .filter_map(|r| match &r.event {
                    Event::Open(socket) => Some(socket.clone()),
                    _ => None,
                })
                .nth(n)
        })
    }

    /// The socket of the first connection to open.
    pub fn wait_open(&self) -> Socket {
        self.wait_open_nth(0)
    }

    /// Waits for `on_close` of `conn` and returns its code and reason.
    pub fn wait_close(&self, conn: u64) -> (CloseCode, String) {
        self.wait_for(&format!("on_close of connection {conn}"), |log| {
            log.iter().find_map(|r| match &r.event {
                Event::Close(code, reason) if r.conn == conn => Some((*code, reason.clone())),
                _ => None,
            })
        })
    }

    /// Waits for `on_error` of `conn`.
    pub fn wait_error(&self, conn: u64) -> Error {
        self.wait_for(&format!("on_error of connection {conn}"), |log| {
            log.iter().find_map(|r| match &r.event {
                Event::Error(error) if r.conn == conn => Some(error.clone()),
                _ => None,
            })
        })
    }

    /// Waits for `n` messages on `conn` and returns them.
    pub fn wait_messages(&self, conn: u64, n: usize) -> Vec<Message> {
        self.wait_for(&format!("{n} messages on connection {conn}"), |log| {
            let messages: Vec<Message> = log
                .iter()
                .filter(|r| r.conn == conn)
                .filter_map(|r| match &r.event {
                    Event::Message(m) => Some(m.clone()),
                    _ => None,
                })
                .collect();
            (messages.len() >= n).then_some(messages)
        })
    }

    /// Waits for a note equal to `text` on any connection.
    pub fn wait_note(&self, text: &str) {
        self.wait_for(&format!("note {text:?}"), |log| {
            log.iter()
                .any(|r| matches!(&r.event, Event::Note(n) if n == text))
                .then_some(())
        })
    }

    /// Notes recorded for `conn`, in order.
    pub fn notes(&self, conn: u64) -> Vec<String> {
        self.of(conn)
            .into_iter()
            .filter_map(|e| match e {
                Event::Note(n) => Some(n),
                _ => None,
            })
            .collect()
    }

    /// S1 for one finished connection: `on_open` exactly once and first,
    /// `on_close` exactly once and last, no violation recorded.
    pub fn assert_lifecycle(&self, conn: u64) {
        let events = self.of(conn);
        let callbacks: Vec<&Event> = events
            .iter()
            .filter(|e| !matches!(e, Event::Note(_)))
            .collect();
        let violations: Vec<&Event> = events
            .iter()
            .filter(|e| matches!(e, Event::Violation(_)))
            .collect();
        assert!(violations.is_empty(), "S1 violated: {violations:#?}");
        let opens = callbacks
            .iter()
            .filter(|e| matches!(e, Event::Open(_)))
            .count();
        let closes = callbacks
            .iter()
            .filter(|e| matches!(e, Event::Close(..)))
            .count();
        assert_eq!(opens, 1, "S1: on_open must run exactly once: {events:#?}");
        assert_eq!(closes, 1, "S1: on_close must run exactly once: {events:#?}");
        assert!(
            matches!(callbacks.first(), Some(Event::Open(_))),
            "S1: on_open must run first: {events:#?}"
        );
        assert!(
            matches!(callbacks.last(), Some(Event::Close(..))),
            "S1: on_close must run last: {events:#?}"
        );
    }

    /// Waits for `conn`'s `on_close`, checks that it got `code` and
    /// `reason`, then that nothing ran after it
    /// ([`Events::assert_nothing_after_close`]).
    pub fn assert_closed(&self, conn: u64, code: CloseCode, reason: &str) {
        assert_eq!(self.wait_close(conn), (code, reason.to_owned()));
        self.assert_nothing_after_close(conn);
    }

    /// Checks, after a short pause, that nothing more happened on `conn`
    /// after its `on_close` and that S1 holds.
    ///
    /// The pause is the one sleep these tests use: it cannot stand in for
    /// synchronisation, because it only gives a buggy library the chance to
    /// run a callback it must never run. A correct library passes however
    /// short it is.
    pub fn assert_nothing_after_close(&self, conn: u64) {
        self.wait_close(conn);
        thread::sleep(Duration::from_millis(200));
        self.assert_lifecycle(conn);
    }
}

/// A listener wrapper that records every callback in [`Events`] (before
/// running the inner listener, so a callback that panics is still recorded)
/// and records a [`Event::Violation`] when a callback runs before `on_open`,
/// a second `on_open` runs, or anything runs after `on_close`.
pub struct Recorded<L> {
    events: Events,
    inner: L,
    opened: bool,
    closed: bool,
}

impl<L> Recorded<L> {
    fn check(&mut self, socket: &Socket, callback: &str) {
        if !self.opened {
            self.events.push(
                socket.id(),
                Event::Violation(format!("{callback} before on_open")),
            );
        }
        if self.closed {
            self.events.push(
                socket.id(),
                Event::Violation(format!("{callback} after on_close")),
            );
        }
    }
}

impl<L: Listener> Listener for Recorded<L> {
    fn on_open(&mut self, socket: &Socket) {
        if self.opened || self.closed {
            self.events.push(
                socket.id(),
                Event::Violation("on_open ran more than once".into()),
            );
        }
        self.opened = true;
        self.events.push(socket.id(), Event::Open(socket.clone()));
        self.inner.on_open(socket);
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        self.check(socket, "on_message");
        self.events
            .push(socket.id(), Event::Message(message.clone()));
        self.inner.on_message(socket, message);
    }

    fn on_ping(&mut self, socket: &Socket, data: Bytes) {
        self.check(socket, "on_ping");
        self.events.push(socket.id(), Event::Ping(data.clone()));
        self.inner.on_ping(socket, data);
    }

    fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        self.check(socket, "on_pong");
        self.events.push(socket.id(), Event::Pong(data.clone()));
        self.inner.on_pong(socket, data);
    }

    fn on_error(&mut self, socket: &Socket, error: &Error) {
        self.check(socket, "on_error");
        self.events.push(socket.id(), Event::Error(error.clone()));
        self.inner.on_error(socket, error);
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        self.check(socket, "on_close");
        self.closed = true;
        self.events
            .push(socket.id(), Event::Close(code, reason.to_owned()));
        self.inner.on_close(socket, code, reason);
    }
}
