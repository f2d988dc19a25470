//! Shared helpers for the integration tests: a real actix-web server whose
//! route is built from a listener factory, a raw WebSocket client that
//! speaks frames byte by byte (so tests can break every rule of RFC 6455),
//! and an event recorder that tests wait on instead of sleeping.
//!
//! Every wait has a generous deadline ([`TIMEOUT`]) and fails the test with a
//! message saying what never happened; none of them is a timing assertion.

#![allow(dead_code)]

use std::{
    fmt,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{mpsc, Arc, Condvar, Mutex},
    thread,
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use actix_ws_listener::{
    Bytes, CloseCode, Config, Error, Listener, Message, Socket, WebSocketUpgrade,
};

/// How long any wait lasts before the test fails: generous, so that a loaded
/// 2-core machine never fails a correct test.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// The config every test server starts from: actix-web's signal handling is
/// off in tests (several servers share one process), so the crate's is too.
pub fn test_config() -> Config {
    Config::default()
}

// ---------------------------------------------------------------------------
// Server
// ---------------------------------------------------------------------------

/// A real actix-web server on 127.0.0.1:<ephemeral>, in its own thread and
/// actix system, stopped when dropped.
pub struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl TestServer {
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port><path>`, for awc.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A raw client connected and upgraded on `/ws`.
    pub fn connect(&self) -> RawClient {
        RawClient::connect(self.addr, "/ws")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends the command at once; the returned future only waits
        // for completion, which the test does not need.
        drop(self.handle.stop(false));
    }
}

/// Starts a server whose app is configured by `configure` (one worker, so
/// that every connection of a test shares one thread: the strictest setting
/// for isolation).
pub fn serve_app<F>(configure: F) -> TestServer
where
    F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
{
    let (tx, rx) = mpsc::channel();
    thread::Builder::new()
        .name("test-server".into())
        .spawn(move || {
            actix_rt::System::new().block_on(async move {
                let server = HttpServer::new(move || App::new().configure(configure.clone()))
                    .workers(1)
                    .disable_signals()
                    .shutdown_timeout(1)
                    .bind("127.0.0.1:0")
                    .expect("bind 127.0.0.1:0");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("test gone");
                let _ = server.await;
            })
        })
        .expect("spawn server thread");
    let (addr, handle) = rx.recv_timeout(TIMEOUT).expect("test server did not start");
    TestServer { addr, handle }
}

/// Starts a server with `GET /ws` upgrading every request to a listener made
/// by `make` (called once per connection, on the server's worker thread).
pub fn serve<L, F>(make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    serve_with(test_config(), make)
}

/// As [`serve`], with `config` for every connection.
pub fn serve_with<L, F>(config: Config, make: F) -> TestServer
where
    L: Listener,
    F: Fn() -> L + Send + Sync + 'static,
{
    let make = Arc::new(make);
    serve_app(move |cfg| {
        let make = Arc::clone(&make);
        cfg.app_data(config.clone()).route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = make();
                async move { upgrade.listen(listener) }
            }),
        );
    })
}

/// Starts an echo server whose connections are recorded in `events`.
pub fn serve_echo(events: &Events) -> TestServer {
    let events = events.clone();
    serve(move || events.record(Echo))
}

// ---------------------------------------------------------------------------
// Listeners
// ---------------------------------------------------------------------------

/// Echoes every message with its type.
pub struct Echo;

impl Listener for Echo {
    fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = socket.send(message);
    }
}

/// A listener that does nothing of its own (defaults only).
pub struct Quiet;

impl Listener for Quiet {}

// ---------------------------------------------------------------------------
// Event recorder
// ---------------------------------------------------------------------------

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

// ---------------------------------------------------------------------------
// Raw client
// ---------------------------------------------------------------------------

pub const OP_CONTINUATION: u8 = 0x0;
pub const OP_TEXT: u8 = 0x1;
pub const OP_BINARY: u8 = 0x2;
pub const OP_CLOSE: u8 = 0x8;
pub const OP_PING: u8 = 0x9;
pub const OP_PONG: u8 = 0xA;

/// The sample key of RFC 6455 §1.3 and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A client frame to encode: any opcode, FIN, RSV bits, declared length and
/// mask, so tests can write frames no well-behaved client would.
#[derive(Clone, Debug)]
pub struct FrameSpec {
    pub fin: bool,
    /// The three RSV bits, as `0b000`..`0b111` (RSV1 is `0b100`).
    pub rsv: u8,
    pub opcode: u8,
    pub payload: Vec<u8>,
    /// A payload length to declare instead of the real one.
    pub declared_len: Option<u64>,
    /// `None` writes an unmasked frame (a protocol error from a client).
    pub mask: Option<[u8; 4]>,
}

impl FrameSpec {
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> FrameSpec {
        FrameSpec {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            declared_len: None,
            mask: Some([0x37, 0xfa, 0x21, 0x3d]),
        }
    }

    pub fn fin(mut self, fin: bool) -> FrameSpec {
        self.fin = fin;
        self
    }

    pub fn rsv(mut self, rsv: u8) -> FrameSpec {
        self.rsv = rsv;
        self
    }

    pub fn declared_len(mut self, len: u64) -> FrameSpec {
        self.declared_len = Some(len);
        self
    }

    pub fn unmasked(mut self) -> FrameSpec {
        self.mask = None;
        self
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        out.push(((self.fin as u8) << 7) | ((self.rsv & 0b111) << 4) | (self.opcode & 0x0F));
        let mask_bit = if self.mask.is_some() { 0x80 } else { 0 };
        let len = self.declared_len.unwrap_or(self.payload.len() as u64);
        if len < 126 {
            out.push(mask_bit | len as u8);
        } else if len <= u64::from(u16::MAX) {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
        match self.mask {
            Some(mask) => {
                out.extend_from_slice(&mask);
                out.extend(
                    self.payload
                        .iter()
                        .enumerate()
                        .map(|(i, b)| b ^ mask[i % 4]),
                );
            }
            None => out.extend_from_slice(&self.payload),
        }
        out
    }
}

/// A close frame payload: code (big endian) then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    let mut payload = code.to_be_bytes().to_vec();
    payload.extend_from_slice(reason.as_bytes());
    payload
}

/// A frame from the server, as read off the wire.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// What the server sent, one message or control frame at a time.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong(Vec<u8>),
    /// The close frame's code (1005 when it had no payload) and reason.
    Close(u16, String),
}

/// The status line, headers and body of an HTTP response.
#[derive(Clone, Debug)]
pub struct HttpHead {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpHead {
    /// The first value of header `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// A WebSocket client over a blocking `TcpStream` that does the handshake
/// and the framing itself. Every read has a [`TIMEOUT`] deadline.
pub struct RawClient {
    stream: TcpStream,
    buf: Vec<u8>,
    pub response: HttpHead,
}

/// The handshake request of a well-behaved client, plus `extra` header lines
/// (each ending in `\r\n`).
pub fn handshake_request(addr: SocketAddr, path: &str, extra: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\n\
         Host: {addr}\r\n\
         Upgrade: websocket\r\n\
         Connection: Upgrade\r\n\
         Sec-WebSocket-Key: {KEY}\r\n\
         Sec-WebSocket-Version: 13\r\n\
         {extra}\r\n"
    )
}

fn open_stream(addr: SocketAddr) -> TcpStream {
    let stream = TcpStream::connect_timeout(&addr, TIMEOUT).expect("connect to test server");
    stream.set_nodelay(true).expect("nodelay");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    stream
        .set_write_timeout(Some(TIMEOUT))
        .expect("write timeout");
    stream
}

/// Reads an HTTP response head (and its body, by Content-Length) from
/// `stream`; bytes past it stay in `buf`.
fn read_http_response(stream: &mut TcpStream, buf: &mut Vec<u8>, expect_body: bool) -> HttpHead {
    let end = loop {
        if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        fill(stream, buf, "an HTTP response");
    };
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    buf.drain(..end + 4);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().unwrap_or_default();
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
    let headers: Vec<(String, String)> = lines
        .filter_map(|line| line.split_once(':'))
        .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()))
        .collect();
    let mut response = HttpHead {
        status,
        headers,
        body: Vec::new(),
    };
    if expect_body {
        let len: usize = response
            .header("content-length")
            .and_then(|v| v.parse().ok())
            .unwrap_or(0);
        while buf.len() < len {
            fill(stream, buf, "an HTTP response body");
        }
        response.body = buf.drain(..len).collect();
    }
    response
}

/// Reads more bytes into `buf`, failing the test on timeout or EOF.
fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>, what: &str) {
    let mut chunk = [0u8; 16 * 1024];
    match stream.read(&mut chunk) {
        Ok(0) => panic!("connection closed by the server while reading {what}"),
        Ok(n) => buf.extend_from_slice(&chunk[..n]),
        Err(e) if is_timeout(&e) => {
            panic!("timed out after {TIMEOUT:?} waiting for {what}")
        }
        Err(e) => panic!("read error while waiting for {what}: {e}"),
    }
}

fn is_timeout(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
    )
}

/// Sends `request` on a new connection and returns the response (not a
/// WebSocket: for requests that must be refused).
pub fn http_request(addr: SocketAddr, request: &str) -> HttpHead {
    let mut stream = open_stream(addr);
    stream.write_all(request.as_bytes()).expect("write request");
    let mut buf = Vec::new();
    read_http_response(&mut stream, &mut buf, true)
}

impl RawClient {
    /// Connects and upgrades `path`; fails the test unless the server
    /// answers 101 with the right accept key.
    pub fn connect(addr: SocketAddr, path: &str) -> RawClient {
        RawClient::connect_with(addr, path, "")
    }

    /// As [`RawClient::connect`], with `extra` header lines (each ending in `\r\n`).
    pub fn connect_with(addr: SocketAddr, path: &str, extra: &str) -> RawClient {
        let mut stream = open_stream(addr);
        stream
            .write_all(handshake_request(addr, path, extra).as_bytes())
            .expect("write handshake");
        let mut buf = Vec::new();
        let response = read_http_response(&mut stream, &mut buf, false);
        assert_eq!(
            response.status, 101,
            "expected 101 Switching Protocols, got {response:?}"
        );
        assert_eq!(
            response.header("sec-websocket-accept"),
            Some(ACCEPT),
            "wrong Sec-WebSocket-Accept in {response:?}"
        );
        RawClient {
            stream,
            buf,
            response,
        }
    }

    /// Writes raw bytes (anything: half a frame, two frames, garbage).
    pub fn write(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).expect("write to server");
        self.stream.flush().expect("flush");
    }

    /// Writes `bytes` in pieces of `piece` bytes, one write each.
    pub fn write_split(&mut self, bytes: &[u8], piece: usize) {
        for chunk in bytes.chunks(piece.max(1)) {
            self.write(chunk);
        }
    }

    /// Writes `bytes`, ignoring errors (for writes racing a server that is
    /// closing the connection).
    pub fn try_write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.stream.write_all(bytes)
    }

    pub fn send(&mut self, frame: FrameSpec) {
        let bytes = frame.encode();
        self.write(&bytes);
    }

    pub fn send_text(&mut self, text: &str) {
        self.send(FrameSpec::new(OP_TEXT, text));
    }

    pub fn send_binary(&mut self, data: &[u8]) {
        self.send(FrameSpec::new(OP_BINARY, data));
    }

    pub fn send_ping(&mut self, data: &[u8]) {
        self.send(FrameSpec::new(OP_PING, data));
    }

    pub fn send_pong(&mut self, data: &[u8]) {
        self.send(FrameSpec::new(OP_PONG, data));
    }

    pub fn send_close(&mut self, code: u16, reason: &str) {
        self.send(FrameSpec::new(OP_CLOSE, close_payload(code, reason)));
    }

    pub fn send_close_empty(&mut self) {
        self.send(FrameSpec::new(OP_CLOSE, Vec::new()));
    }

    /// Ends the TCP connection without a close frame (an abrupt drop).
    pub fn drop_tcp(self) {
        drop(self.stream);
    }

    /// Shuts down only the sending half (the server sees EOF).
    pub fn shutdown_write(&self) {
        let _ = self.stream.shutdown(std::net::Shutdown::Write);
    }

    fn need(&mut self, n: usize, what: &str) {
        while self.buf.len() < n {
            fill(&mut self.stream, &mut self.buf, what);
        }
    }

    /// Reads the next frame; fails the test on timeout or EOF.
    pub fn read_frame(&mut self) -> Frame {
        let what = "a frame from the server";
        self.need(2, what);
        let (b0, b1) = (self.buf[0], self.buf[1]);
        let masked = b1 & 0x80 != 0;
        let (len, mut offset) = match b1 & 0x7F {
            126 => {
                self.need(4, what);
                (u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]])), 4)
            }
            127 => {
                self.need(10, what);
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.buf[2..10]);
                (u64::from_be_bytes(len), 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = if masked {
            self.need(offset + 4, what);
            let mut mask = [0u8; 4];
            mask.copy_from_slice(&self.buf[offset..offset + 4]);
            offset += 4;
            Some(mask)
        } else {
            None
        };
        let len = usize::try_from(len).expect("frame length fits in memory");
        self.need(offset + len, what);
        let mut payload: Vec<u8> = self.buf[offset..offset + len].to_vec();
        if let Some(mask) = mask {
            for (i, b) in payload.iter_mut().enumerate() {
                *b ^= mask[i % 4];
            }
        }
        self.buf.drain(..offset + len);
        Frame {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0b111,
            opcode: b0 & 0x0F,
            masked,
            payload,
        }
    }

    /// Reads the next message or control frame, assembling fragments and
    /// checking that the server never masks (RFC 6455 §5.1).
    pub fn recv(&mut self) -> Incoming {
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let frame = self.read_frame();
            assert!(!frame.masked, "server frames must not be masked: {frame:?}");
            assert_eq!(
                frame.rsv, 0,
                "unexpected RSV bits from the server: {frame:?}"
            );
            match frame.opcode {
                OP_PING => return Incoming::Ping(frame.payload),
                OP_PONG => return Incoming::Pong(frame.payload),
                OP_CLOSE => {
                    return match frame.payload.len() {
                        0 => Incoming::Close(1005, String::new()),
                        1 => panic!("server sent a 1-byte close payload"),
                        _ => Incoming::Close(
                            u16::from_be_bytes([frame.payload[0], frame.payload[1]]),
                            String::from_utf8(frame.payload[2..].to_vec())
                                .expect("server close reason is UTF-8"),
                        ),
                    }
                }
                OP_TEXT | OP_BINARY => {
                    assert!(message.is_none(), "new message inside a fragmented one");
                    message = Some((frame.opcode, frame.payload));
                }
                OP_CONTINUATION => match &mut message {
                    Some((_, data)) => data.extend_from_slice(&frame.payload),
                    None => panic!("continuation frame without a message: {frame:?}"),
                },
                other => panic!("server sent reserved opcode {other:#x}"),
            }
            if frame.fin {
                if let Some((opcode, data)) = message.take() {
                    return if opcode == OP_TEXT {
                        Incoming::Text(String::from_utf8(data).expect("server text is UTF-8"))
                    } else {
                        Incoming::Binary(data)
                    };
                }
            }
        }
    }

    /// Reads the next message, which must be text.
    pub fn recv_text(&mut self) -> String {
        match self.recv() {
            Incoming::Text(text) => text,
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// Reads the next message, which must be binary.
    pub fn recv_binary(&mut self) -> Vec<u8> {
        match self.recv() {
            Incoming::Binary(data) => data,
            other => panic!("expected a binary message, got {other:?}"),
        }
    }

    /// Reads frames until a close frame and returns its code (1005 for an
    /// empty payload) and reason, with everything received before it.
    pub fn recv_until_close(&mut self) -> (u16, String, Vec<Incoming>) {
        let mut before = Vec::new();
        loop {
            match self.recv() {
                Incoming::Close(code, reason) => return (code, reason, before),
                other => before.push(other),
            }
        }
    }

    /// Reads the next frame, which must be a close frame; returns its code
    /// (1005 for an empty payload) and reason.
    pub fn recv_close(&mut self) -> (u16, String) {
        match self.recv() {
            Incoming::Close(code, reason) => (code, reason),
            other => panic!("expected a close frame, got {other:?}"),
        }
    }

    /// Waits for the server to end the TCP connection (EOF or reset),
    /// skipping any frames still in flight; fails after [`TIMEOUT`].
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + TIMEOUT;
        let mut chunk = [0u8; 16 * 1024];
        loop {
            match self.stream.read(&mut chunk) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if is_timeout(&e) => {
                    panic!("server did not end the TCP connection within {TIMEOUT:?}")
                }
                Err(_) => return,
            }
            assert!(
                Instant::now() < deadline,
                "server did not end the TCP connection within {TIMEOUT:?}"
            );
        }
    }

    /// Completes the close handshake from the client side after the
    /// server's close frame, answering with `code`. Errors are ignored: the
    /// server may already have ended the connection.
    pub fn answer_close(&mut self, code: u16) {
        let _ = self.try_write(&FrameSpec::new(OP_CLOSE, close_payload(code, "")).encode());
    }
}

// ---------------------------------------------------------------------------
// awc
// ---------------------------------------------------------------------------

/// Runs an async client body (awc) on its own actix system, on this thread.
pub fn run_client<F: std::future::Future>(future: F) -> F::Output {
    actix_rt::System::new().block_on(future)
}

/// The code of an awc close frame (1005 when it had none).
pub fn awc_close_code(reason: &Option<awc::ws::CloseReason>) -> u16 {
    reason.as_ref().map_or(1005, |r| u16::from(r.code))
}

/// The next frame from an awc connection; fails the test on timeout, end of
/// stream or protocol error.
pub async fn awc_next<S>(framed: &mut S) -> awc::ws::Frame
where
    S: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin,
{
    use futures_util::StreamExt;
    match actix_rt::time::timeout(TIMEOUT, framed.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(e))) => panic!("awc protocol error: {e}"),
        Ok(None) => panic!("awc connection ended without a frame"),
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for a frame (awc)"),
    }
}
