//! S15 and S16: the connection reads the next frame only when it can take
//! it. A client that sends faster than it reads, or faster than an async
//! listener answers, is held back by TCP: nothing it is owed is dropped and
//! the server's queue for it stays under the high-water mark.

mod common;

use std::{
    io::Write,
    sync::{
        atomic::{AtomicUsize, Ordering},
        Arc,
    },
    thread,
    time::Duration,
};

use actix_ws_listener::{AsyncListener, CloseCode, Compression, Config, Error, Message, Socket};
use common::*;

/// Size of each numbered message: the size of the outside check.
const SIZE: usize = 64 * 1024;
/// A 64 KiB binary frame from the server: header of 10 bytes.
const FRAME: usize = SIZE + 10;

/// Message `i`: its number, then filler that changes with it.
fn numbered(i: usize) -> Vec<u8> {
    let mut message = vec![(i % 251) as u8; SIZE];
    message[..4].copy_from_slice(&(i as u32).to_be_bytes());
    message
}

/// Writes `count` numbered binary messages from another thread (blocking
/// whenever TCP pushes back), counting the messages fully written.
fn flood(client: &RawClient, count: usize, frame: fn(usize) -> FrameSpec) -> Flood {
    flood_counting(client, count, frame, Arc::new(AtomicUsize::new(0)))
}

/// As [`flood`], counting into `written`.
fn flood_counting(
    client: &RawClient,
    count: usize,
    frame: fn(usize) -> FrameSpec,
    written: Arc<AtomicUsize>,
) -> Flood {
    let mut stream = client.writer();
    let counter = Arc::clone(&written);
    let thread = thread::spawn(move || {
        for i in 0..count {
            if stream.write_all(&frame(i).encode()).is_err() {
                return;
            }
            counter.fetch_add(1, Ordering::SeqCst);
        }
    });
    Flood { written, thread }
}

struct Flood {
    written: Arc<AtomicUsize>,
    thread: thread::JoinHandle<()>,
}

/// A recorded echo server with `config`, a raw client on it, and the
/// server's socket for that client.
fn recorded_echo(config: &Config) -> (TestServer, Events, RawClient, Socket) {
    let events = Events::new();
    let server = serve_recorded_with(config.clone(), &events, |_| Echo);
    let client = server.connect();
    let socket = events.wait_open();
    (server, events, client, socket)
}

/// Waits until the server's queue for the client passes the high-water
/// mark: reading is paused (S15).
fn wait_paused(socket: &Socket, config: &Config) {
    wait_until(
        "the server's queue for the client reaches the high-water mark",
        || socket.buffered_amount() > config.high_water_mark,
    );
}

fn binary_frame(i: usize) -> FrameSpec {
    FrameSpec::new(OP_BINARY, numbered(i))
}

/// The most a paused connection may have queued: the high-water mark plus
/// the one echo that took it over.
fn queue_bound(config: &Config) -> usize {
    config.high_water_mark + 2 * FRAME
}

/// Reads `count` numbered echoes in order, checking the server's queue for
/// this client as it goes.
fn read_numbered(client: &mut RawClient, count: usize, socket: &Socket, bound: usize) {
    for i in 0..count {
        assert_eq!(client.recv_binary(), numbered(i), "echo {i} out of order");
        let queued = socket.buffered_amount();
        assert!(queued <= bound, "S15: {queued} bytes queued, bound {bound}");
    }
}

#[test]
fn s15_a_client_that_reads_nothing_gets_every_echo_back_in_order() {
    let config = test_config();
    let (_server, events, mut client, socket) = recorded_echo(&config);
    let flood = flood(&client, 1024, binary_frame);
    wait_paused(&socket, &config);
    // Paused: the 64 MiB flood is held back in TCP, not read into memory.
    assert!(socket.buffered_amount() <= queue_bound(&config));
    assert!(flood.written.load(Ordering::SeqCst) < 1024);
    read_numbered(&mut client, 1024, &socket, queue_bound(&config));
    flood.thread.join().expect("writer thread");
    assert!(events
        .of(socket.id())
        .iter()
        .all(|e| !matches!(e, Event::Error(_))));
}

#[test]
fn s15_demand_holds_for_permessage_deflate_connections() {
    let events = Events::new();
    let config = test_config().compression(Compression::default());
    let server = serve_recorded_with(config.clone(), &events, |_| Echo);
    let mut client = RawClient::connect_with(
        server.addr(),
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate\r\n",
    );
    assert!(client.response.header("sec-websocket-extensions").is_some());
    let socket = events.wait_open();
    // Incompressible payloads: the server's echoes stay uncompressed (it
    // only compresses what gets smaller), so this client reads them as is.
    fn noisy(i: usize) -> FrameSpec {
        let mut state = i as u64 + 1;
        let mut message = numbered(i);
        for byte in &mut message[4..] {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            *byte = state as u8;
        }
        FrameSpec::new(OP_BINARY, message)
    }
    let flood = flood(&client, 512, noisy);
    wait_paused(&socket, &config);
    let mut decompress = flate2::Decompress::new(false);
    for i in 0..512 {
        let frame = client.read_frame();
        assert_eq!(frame.opcode, OP_BINARY);
        // RSV1: the echo went out compressed.
        let payload = if frame.rsv == 0b100 {
            inflate(&mut decompress, &frame.payload)
        } else {
            frame.payload
        };
        assert_eq!(payload, noisy(i).payload(), "echo {i}");
        assert!(socket.buffered_amount() <= queue_bound(&config));
    }
    flood.thread.join().expect("writer thread");
}

/// Inflates one permessage-deflate message (RFC 7692 §7.2.2) with the
/// connection's decompressor (the server keeps its context).
fn inflate(decompress: &mut flate2::Decompress, data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut out = Vec::with_capacity(2 * SIZE);
    decompress
        .decompress_vec(&input, &mut out, flate2::FlushDecompress::Sync)
        .expect("valid deflate data from the server");
    out
}

// --- async listeners ------------------------------------------------------------

/// Starts a server whose `/ws` runs the async listener `make` builds.
fn serve_async<L, F>(config: Config, make: F) -> TestServer
where
    L: AsyncListener,
    F: Fn() -> L + Send + Sync + 'static,
{
    TestServer::listen_with(config, make)
}

/// As [`serve_async`], with `make` given a handle on `events` for each
/// connection (async listeners here record their own events).
fn serve_async_noting<L, F>(config: Config, events: &Events, make: F) -> TestServer
where
    L: AsyncListener,
    F: Fn(&Events) -> L + Send + Sync + 'static,
{
    let events = events.clone();
    serve_async(config, move || make(&events))
}

type OnHandle = Box<dyn FnMut(usize, &Socket)>;

/// An async echo that records its events and awaits `delay(n)` before
/// answering message `n`.
struct SlowEcho {
    events: Events,
    delay: fn(usize) -> Duration,
    handled: usize,
    /// Called with the message number as each one is handled.
    on_handle: Option<OnHandle>,
}

impl SlowEcho {
    fn new(events: &Events, delay: fn(usize) -> Duration) -> SlowEcho {
        SlowEcho {
            events: events.clone(),
            delay,
            handled: 0,
            on_handle: None,
        }
    }
}

impl AsyncListener for SlowEcho {
    async fn on_open(&mut self, socket: &Socket) {
        self.events.push(socket.id(), Event::Open(socket.clone()));
    }

    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let n = self.handled;
        self.handled += 1;
        if let Some(on_handle) = &mut self.on_handle {
            on_handle(n, socket);
        }
        self.events.note(socket, format!("started {n}"));
        actix_rt::time::sleep((self.delay)(n)).await;
        let sent = socket.send(message);
        self.events.note(socket, format!("finished {n}: {sent:?}"));
    }

    fn on_error(&mut self, socket: &Socket, error: &Error) {
        self.events.push(socket.id(), Event::Error(error.clone()));
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        self.events
            .push(socket.id(), Event::Close(code, reason.to_owned()));
    }
}

#[test]
fn s16_a_flooding_client_is_held_back_by_tcp_while_handlers_are_pending() {
    let events = Events::new();
    let written = Arc::new(AtomicUsize::new(0));
    let seen_at_100 = Arc::new(AtomicUsize::new(usize::MAX));
    let config = test_config();
    let server = serve_async(config.clone(), {
        let (events, written, seen) = (events.clone(), written.clone(), seen_at_100.clone());
        move || {
            let mut echo = SlowEcho::new(&events, |_| Duration::from_millis(1));
            let (written, seen) = (written.clone(), seen.clone());
            echo.on_handle = Some(Box::new(move |n, _| {
                if n == 100 {
                    seen.store(written.load(Ordering::SeqCst), Ordering::SeqCst);
                }
            }));
            echo
        }
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    let flood = flood_counting(&client, 1024, binary_frame, written);
    read_numbered(&mut client, 1024, &socket, queue_bound(&config));
    flood.thread.join().expect("writer thread");
    // When the 100th message was handled (100 ms of handlers at least),
    // the 64 MiB flood was still waiting in TCP: the server had not read
    // it ahead into memory.
    let seen = seen_at_100.load(Ordering::SeqCst);
    assert!(seen < 1024, "S16: the whole flood was read ahead ({seen})");
}

#[test]
fn s16_1000_messages_through_an_async_handler_with_random_delays_keep_their_order() {
    let events = Events::new();
    // 0–2 ms, scrambled by message number.
    let server = serve_async_noting(test_config(), &events, |events| {
        SlowEcho::new(events, |n| Duration::from_micros((n as u64 * 7919) % 2000))
    });
    let mut client = server.connect();
    events.wait_open();
    let writer = {
        let mut stream = client.writer();
        thread::spawn(move || {
            for i in 0..1000 {
                let frame = FrameSpec::new(OP_TEXT, format!("message {i}")).encode();
                stream.write_all(&frame).expect("write");
            }
        })
    };
    for i in 0..1000 {
        assert_eq!(client.recv_text(), format!("message {i}"));
    }
    writer.join().expect("writer thread");
}

#[test]
fn s16_a_client_that_leaves_during_a_pending_handler_gets_one_on_close_after_it() {
    let events = Events::new();
    let server = serve_async_noting(test_config(), &events, |events| {
        SlowEcho::new(events, |_| Duration::from_millis(300))
    });
    let mut client = server.connect();
    let conn = events.wait_open().id();
    client.send_text("slow");
    events.wait_note("started 0");
    client.drop_tcp();
    assert_eq!(
        events.wait_close(conn),
        (CloseCode::ABNORMAL, String::new())
    );
    // The handler ran to its end before on_close, and nothing ran after.
    let log = events.of(conn);
    let finished = log
        .iter()
        .position(|e| matches!(e, Event::Note(n) if n.starts_with("finished 0")));
    let closed = log.iter().position(|e| matches!(e, Event::Close(..)));
    assert!(finished.is_some() && finished < closed, "{log:#?}");
    events.assert_lifecycle(conn);
}

#[test]
fn s16_a_server_close_during_a_pending_handler_drops_it_at_close_timeout() {
    let events = Events::new();
    let config = test_config().close_timeout(Duration::from_millis(200));
    let server = serve_async_noting(config, &events, |events| {
        SlowEcho::new(events, |_| Duration::from_secs(60))
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_text("never answered");
    events.wait_note("started 0");
    // From another thread, while the handler awaits: the close frame goes
    // out at once, reading stays paused, and close_timeout ends it.
    socket.close_with(4000, "server closing").expect("close");
    assert_eq!(client.recv_close(), (4000, "server closing".to_owned()));
    client.answer_close(4000);
    events.assert_closed(socket.id(), CloseCode(4000), "server closing");
    client.expect_eof();
    assert!(
        !events
            .notes(socket.id())
            .iter()
            .any(|n| n.starts_with("finished")),
        "S16: the dropped handler must not resume"
    );
}

#[test]
fn s16_a_panic_after_an_await_closes_only_its_connection_with_1011() {
    struct PanicsLater;
    impl AsyncListener for PanicsLater {
        async fn on_message(&mut self, socket: &Socket, message: Message) {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            if message.as_text() == Some("panic") {
                panic!("async listener panicked on purpose");
            }
            socket.send(message).expect("echo");
        }
    }
    let server = serve_async(test_config(), || PanicsLater);
    let mut victim = server.connect();
    let mut other = server.connect();
    victim.send_text("panic");
    assert_eq!(victim.recv_close(), (1011, "Internal error".to_owned()));
    other.send_text("still here");
    assert_eq!(other.recv_text(), "still here");
}

#[test]
fn s16_on_error_then_on_close_after_a_panic_in_an_async_handler() {
    struct Recording(SlowEcho);
    impl AsyncListener for Recording {
        async fn on_open(&mut self, socket: &Socket) {
            self.0.on_open(socket).await;
        }
        async fn on_message(&mut self, _: &Socket, _: Message) {
            actix_rt::time::sleep(Duration::from_millis(5)).await;
            panic!("boom");
        }
        fn on_error(&mut self, socket: &Socket, error: &Error) {
            self.0.on_error(socket, error);
        }
        fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
            self.0.on_close(socket, code, reason);
        }
    }
    let events = Events::new();
    let server = serve_async_noting(test_config(), &events, |events| {
        Recording(SlowEcho::new(events, |_| Duration::ZERO))
    });
    let mut client = server.connect();
    let conn = events.wait_open().id();
    client.send_text("go");
    assert_eq!(client.recv_close().0, 1011);
    assert_eq!(
        events.wait_error(conn),
        Error::ListenerPanic("boom".to_owned())
    );
    assert_eq!(events.wait_close(conn).0, CloseCode::INTERNAL_ERROR);
    events.assert_lifecycle(conn);
}

#[test]
fn s15_keepalive_pings_go_out_while_reading_is_paused() {
    let config = test_config().keepalive(Duration::from_millis(10));
    let (_server, _events, mut client, socket) = recorded_echo(&config);
    let flood = flood(&client, 1024, binary_frame);
    wait_paused(&socket, &config);
    // While reading is paused no echo is produced and the kernel's buffers
    // are full, so the queue for the client can only grow by what the
    // keepalive timer adds: wait until it has grown by five pings. A ping
    // counts 2 bytes in the buffer and up to 2 + 64 (the mailbox's
    // per-command charge) on its way there, so growing by five times that
    // means at least five pings were queued while paused. They reach the
    // client as a run with no echo between them.
    const PING_CHARGE: usize = 2 + 64;
    let mut lowest = socket.buffered_amount();
    wait_until(
        "five keepalive pings queued while reading is paused",
        || {
            let queued = socket.buffered_amount();
            lowest = lowest.min(queued);
            queued - lowest >= 5 * PING_CHARGE
        },
    );
    let (mut echoes, mut run, mut longest_run) = (0, 0, 0);
    while echoes < 1024 {
        match client.recv() {
            Incoming::Binary(message) => {
                assert_eq!(message, numbered(echoes), "echo {echoes}");
                echoes += 1;
                run = 0;
            }
            Incoming::Ping(_) => {
                run += 1;
                longest_run = longest_run.max(run);
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert!(
        longest_run >= 5,
        "S15: no keepalive while paused ({longest_run} pings in a row)"
    );
    flood.thread.join().expect("writer thread");
}

#[test]
fn s15_idle_timeout_and_close_timeout_fire_while_reading_is_paused() {
    let config = test_config()
        .idle_timeout(Duration::from_millis(500))
        .close_timeout(Duration::from_millis(200));
    let (_server, events, mut client, socket) = recorded_echo(&config);
    let flood = flood(&client, 1024, binary_frame);
    // The client neither reads nor gets its frames read: the idle timeout
    // counts the writer's (absent) progress and fails the connection.
    assert_eq!(events.wait_error(socket.id()), Error::Timeout);
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::GOING_AWAY);
    events.assert_lifecycle(socket.id());
    // close_timeout then cuts the connection off with its buffer.
    client.expect_eof();
    flood.thread.join().expect("writer thread");
}

/// While the client reads nothing, actix-http stops asking the connection
/// for frames (its write buffer is full). A close from another thread must
/// still reach the connection: it sends its close frame, waits
/// `close_timeout` for the client's, then cuts the client off and calls
/// `on_close` (S4, S15), without anything from the client.
#[test]
fn s15_a_close_from_another_thread_ends_a_connection_whose_client_reads_nothing() {
    let config = test_config().close_timeout(Duration::from_millis(300));
    let (_server, events, mut client, socket) = recorded_echo(&config);
    let flood = flood(&client, 1024, binary_frame);
    wait_paused(&socket, &config);
    let other = socket.clone();
    thread::spawn(move || other.close())
        .join()
        .expect("closing thread")
        .expect("an open socket takes a close");
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::NORMAL);
    events.assert_lifecycle(socket.id());
    client.expect_eof();
    flood.thread.join().expect("writer thread");
}
