//! S17: other actors reach a listener the actix way, with typed messages
//! through a `Recipient<M>`, handled on the connection's actor in one order
//! with frames and async handlers; nothing reaches it after `on_close`; its
//! timers run on it and end with it.

mod common;

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use actix::MailboxError;
use actix_web::web;
use actix_ws_listener::{
    Address, AsyncListener, CloseCode, Handles, Listener, Message, Socket, WebSocketUpgrade,
};
use common::*;

/// A typed message for a session: a numbered line.
#[derive(actix::Message)]
#[rtype(result = "usize")]
struct Say(usize);

/// Where the test finds the address a route handed out.
type Slot<L> = Arc<Mutex<Option<Address<L>>>>;

fn take<L>(slot: &Slot<L>) -> Address<L> {
    let mut found = None;
    wait_until("the connection's address is handed out", || {
        found = slot.lock().unwrap_or_else(|e| e.into_inner()).take();
        found.is_some()
    });
    found.expect("address")
}

/// Answers every frame with "frame N" and every `Say(n)` with "say n",
/// recording both; `Say` returns how many messages it has seen.
struct Session {
    events: Events,
    seen: usize,
}

impl Listener for Session {
    fn on_open(&mut self, socket: &Socket) {
        self.events.push(socket.id(), Event::Open(socket.clone()));
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        self.seen += 1;
        let text = message.as_text().unwrap_or_default().to_owned();
        socket
            .send(format!("frame {text}"))
            .expect("answer a frame");
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        self.events
            .push(socket.id(), Event::Close(code, reason.to_owned()));
    }
}

impl Handles<Say> for Session {
    async fn handle(&mut self, socket: &Socket, Say(n): Say) -> usize {
        self.seen += 1;
        self.events.note(socket, format!("say {n}"));
        if let Err(error) = socket.send(format!("say {n}")) {
            self.events
                .note(socket, format!("say {n} not sent: {error}"));
        }
        self.seen
    }
}

/// A server whose `/ws` starts a `Session` and hands its address out
/// through `slot`, the way actix-web-actors' `start_with_addr` does.
fn serve_sessions(events: &Events, slot: &Slot<Session>) -> TestServer {
    let (events, slot) = (events.clone(), slot.clone());
    serve_app(move |cfg| {
        let (events, slot) = (events.clone(), slot.clone());
        cfg.route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let (events, slot) = (events.clone(), slot.clone());
                async move {
                    let session = Session { events, seen: 0 };
                    let (response, address) = upgrade.listen(session).into_parts();
                    *slot.lock().unwrap_or_else(|e| e.into_inner()) = address;
                    response
                }
            }),
        );
    })
}

#[test]
fn s17_typed_messages_and_frames_each_keep_their_order() {
    let events = Events::new();
    let slot = Slot::default();
    let server = serve_sessions(&events, &slot);
    let mut client = server.connect();
    let address = take(&slot);
    let recipient = address.recipient::<Say>();
    // 200 frames from the client and 200 typed messages from this thread,
    // at the same time: each stream keeps its order, whatever the mix.
    let writer = {
        let mut stream = client.writer();
        std::thread::spawn(move || {
            for i in 0..200 {
                let frame = FrameSpec::new(OP_TEXT, i.to_string()).encode();
                std::io::Write::write_all(&mut stream, &frame).expect("write");
            }
        })
    };
    for i in 0..200 {
        recipient.do_send(Say(i));
    }
    let (mut frames, mut says) = (0, 0);
    for _ in 0..400 {
        let text = client.recv_text();
        if let Some(n) = text.strip_prefix("frame ") {
            assert_eq!(n, frames.to_string(), "frames out of order");
            frames += 1;
        } else if let Some(n) = text.strip_prefix("say ") {
            assert_eq!(n, says.to_string(), "typed messages out of order");
            says += 1;
        } else {
            panic!("unexpected {text:?}");
        }
    }
    writer.join().expect("writer");
    // `send` gets the listener's answer: 401 events seen, this one included.
    let seen = run_client(address.send(Say(200))).expect("answered");
    assert_eq!(seen, 401);
}

#[test]
fn s17_a_message_after_close_is_refused_and_never_handled() {
    let events = Events::new();
    let slot = Slot::default();
    let server = serve_sessions(&events, &slot);
    let mut client = server.connect();
    let address = take(&slot);
    let socket = events.wait_open();
    client.send_close(1000, "bye");
    events.wait_close(socket.id());
    client.expect_eof();
    // The connection ended: send is refused, try_send too once the actor
    // is gone, and the listener never sees either.
    assert_eq!(run_client(address.send(Say(1))), Err(MailboxError::Closed));
    wait_until("the connection's actor stops", || !address.is_connected());
    assert!(address.try_send(Say(2)).is_err());
    address.do_send(Say(3));
    assert!(
        events.notes(socket.id()).is_empty(),
        "{:?}",
        events.of(socket.id())
    );
    events.assert_nothing_after_close(socket.id());
}

/// An async session: each frame's handler awaits before answering; typed
/// messages that arrive meanwhile wait for it (S16, S17).
struct SlowSession {
    events: Events,
}

impl AsyncListener for SlowSession {
    async fn on_open(&mut self, socket: &Socket) {
        self.events.push(socket.id(), Event::Open(socket.clone()));
    }

    async fn on_message(&mut self, socket: &Socket, _: Message) {
        self.events.note(socket, "handler started");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
        socket.send("handler done").expect("send");
    }
}

impl Handles<Say> for SlowSession {
    async fn handle(&mut self, socket: &Socket, Say(n): Say) -> usize {
        socket.send(format!("say {n}")).expect("send");
        n
    }
}

#[test]
fn s17_typed_messages_wait_for_a_pending_async_handler() {
    let events = Events::new();
    let server = serve_app({
        let events = events.clone();
        move |cfg| {
            let events = events.clone();
            cfg.route(
                "/ws",
                web::get().to(move |upgrade: WebSocketUpgrade| {
                    let events = events.clone();
                    async move { upgrade.listen(SlowSession { events }) }
                }),
            );
        }
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    let address = Address::<SlowSession>::of(&socket).expect("an async session's address");
    client.send_text("slow");
    events.wait_note("handler started");
    // Sent while the handler awaits: answered after it, in order.
    let answer = address.send(Say(7));
    address.do_send(Say(8));
    assert_eq!(client.recv_text(), "handler done");
    assert_eq!(client.recv_text(), "say 7");
    assert_eq!(client.recv_text(), "say 8");
    assert_eq!(run_client(answer), Ok(7));
}

/// Ticks on an interval and counts the ticks; a one-shot timer notes it ran.
struct Ticker {
    events: Events,
    ticks: usize,
}

impl Listener for Ticker {
    fn on_open(&mut self, socket: &Socket) {
        self.events.push(socket.id(), Event::Open(socket.clone()));
        let Ok(address) = Address::<Ticker>::of(socket) else {
            panic!("a listener finds its own address in on_open");
        };
        address.run_interval(Duration::from_millis(10), |ticker: &mut Ticker, socket| {
            ticker.ticks += 1;
            ticker.events.note(socket, format!("tick {}", ticker.ticks));
        });
        // Cancelled before it is due: it never runs.
        let cancelled =
            address.run_later(Duration::from_millis(30), |ticker: &mut Ticker, socket| {
                ticker.events.note(socket, "cancelled timer ran");
            });
        address.cancel(cancelled);
        address.run_later(Duration::from_millis(60), |ticker: &mut Ticker, socket| {
            ticker.events.note(socket, "later");
        });
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        self.events
            .push(socket.id(), Event::Close(code, reason.to_owned()));
    }
}

#[test]
fn s17_timers_run_on_the_listener_and_end_with_the_connection() {
    let events = Events::new();
    // Not wrapped by `Events::record`: `Address::<Ticker>::of` needs the
    // listener itself.
    let server = serve_noting(&events, |events| Ticker { events, ticks: 0 });
    let mut client = server.connect();
    let socket = events.wait_open();
    events.wait_note("tick 3");
    events.wait_note("later");
    assert!(!events
        .notes(socket.id())
        .iter()
        .any(|n| n == "cancelled timer ran"));
    client.send_close(1000, "");
    events.wait_close(socket.id());
    let ticks_at_close = events.notes(socket.id()).len();
    // Several periods later, nothing more has run: the interval ended with
    // the connection. (A check that something does not happen needs time
    // to pass; 10 periods is plenty.)
    std::thread::sleep(Duration::from_millis(100));
    assert_eq!(events.notes(socket.id()).len(), ticks_at_close);
    events.assert_nothing_after_close(socket.id());
}

/// Panics on one typed message.
struct Fragile;

impl Listener for Fragile {}

impl Handles<Say> for Fragile {
    async fn handle(&mut self, _: &Socket, Say(n): Say) -> usize {
        assert_ne!(n, 13, "typed message handler panicked on purpose");
        n
    }
}

#[test]
fn s17_a_panic_in_a_typed_message_handler_closes_its_connection_with_1011() {
    let server = serve(|| Fragile);
    let events = Events::new();
    let other_server = serve_echo(&events);
    let mut victim = server.connect();
    let mut other = other_server.connect();
    // The victim's address, through its socket in the global registry.
    let mut address = None;
    wait_until("the victim is registered", || {
        address = actix_ws_listener::Connections::global()
            .sockets()
            .iter()
            .find_map(|socket| Address::<Fragile>::of(socket).ok());
        address.is_some()
    });
    let address = address.expect("address");
    assert_eq!(run_client(address.send(Say(1))), Ok(1));
    assert_eq!(run_client(address.send(Say(13))), Err(MailboxError::Closed));
    assert_eq!(victim.recv_close(), (1011, "Internal error".to_owned()));
    other.send_text("still fine");
    assert_eq!(other.recv_text(), "still fine");
}
