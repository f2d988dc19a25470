//! A kit for testing listeners over real TCP: [`TestServer`] runs an
//! actix-web app on a free loopback port, [`TestClient`] is a small
//! blocking WebSocket client with timeouts. Feature `test-util`.
//!
//! This module owns only test plumbing; it uses the crate as a user would.
//!
//! ```no_run
//! use actix_ws_listener::{test::TestServer, Listener, Message, Socket};
//!
//! struct Echo;
//! impl Listener for Echo {
//!     fn on_message(&mut self, socket: &Socket, message: Message) {
//!         socket.send(message).expect("echo");
//!     }
//! }
//!
//! #[test]
//! fn echoes() -> std::io::Result<()> {
//!     let server = TestServer::listen(|| Echo);
//!     let mut client = server.client()?;
//!     client.send("hello")?;
//!     assert_eq!(client.recv_message()?, Message::text("hello"));
//!     client.close()
//! }
//! ```

use std::{
    fmt,
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    sync::{mpsc, Arc},
    thread,
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpResponse, HttpServer};
use bytes::Bytes;
use bytestring::ByteString;

use crate::test_frame::{self, Frame, Head};
use crate::{
    close::CloseCode, config::Config, listening::Listen, message::Message, server::WsServer,
    upgrade::WebSocketUpgrade,
};

/// Whether test servers run on [`WsServer`] (`ACTIX_WS_LISTENER_SERVER=ws`).
fn on_ws_server() -> bool {
    std::env::var("ACTIX_WS_LISTENER_SERVER").is_ok_and(|server| server == "ws")
}

/// How long [`TestServer`] waits for its server to start and
/// [`TestClient::recv`] waits for a frame.
pub const TIMEOUT: Duration = Duration::from_secs(10);

/// An actix-web app on `127.0.0.1:<free port>` with one worker, in its own
/// thread and actix system; stopped when dropped.
///
/// It runs on actix-web's `HttpServer`, or on [`WsServer`](crate::WsServer)
/// when the environment variable `ACTIX_WS_LISTENER_SERVER` is `ws`: the
/// same tests then check both ways of serving a connection.
pub struct TestServer {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl TestServer {
    /// Starts an app configured by `configure` (routes, `app_data`).
    ///
    /// # Panics
    /// If the server cannot bind a loopback port or does not start within
    /// [`TIMEOUT`]: the test cannot run.
    pub fn start<F>(configure: F) -> TestServer
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        TestServer::start_on(on_ws_server(), configure)
    }

    /// As [`TestServer::start`], always on [`WsServer`], whatever the
    /// environment says.
    ///
    /// # Panics
    /// As [`TestServer::start`].
    pub fn start_on_ws_server<F>(configure: F) -> TestServer
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        TestServer::start_on(true, configure)
    }

    fn start_on<F>(ws_server: bool, configure: F) -> TestServer
    where
        F: Fn(&mut web::ServiceConfig) + Send + Clone + 'static,
    {
        let (tx, rx) = mpsc::channel();
        thread::Builder::new()
            .name("actix-ws-listener-test-server".into())
            .spawn(move || {
                actix_rt::System::new().block_on(async move {
                    let app = move || App::new().configure(configure.clone());
                    let bound = if ws_server {
                        WsServer::new(app)
                            .workers(1)
                            .disable_signals()
                            .shutdown_timeout(1)
                            .bind("127.0.0.1:0")
                            .map(|server| (server.addrs()[0], server.run()))
                    } else {
                        HttpServer::new(app)
                            .workers(1)
                            .disable_signals()
                            .shutdown_timeout(1)
                            .bind("127.0.0.1:0")
                            .map(|server| (server.addrs()[0], server.run()))
                    };
                    let (addr, server) = match bound {
                        Ok(bound) => bound,
                        Err(error) => {
                            let _ = tx.send(Err(error));
                            return;
                        }
                    };
                    let _ = tx.send(Ok((addr, server.handle())));
                    if let Err(error) = server.await {
                        log::error!("test server on {addr}: {error}");
                    }
                })
            })
            .expect("spawn the test server's thread");
        let (addr, handle) = match rx.recv_timeout(TIMEOUT) {
            Ok(Ok(started)) => started,
            Ok(Err(error)) => panic!("test server could not bind 127.0.0.1:0: {error}"),
            Err(_) => panic!("test server did not start within {TIMEOUT:?}"),
        };
        TestServer { addr, handle }
    }

    /// Starts an app whose `GET /ws` runs a listener made by `make` (once
    /// per connection): a [`Listener`](crate::Listener) or an
    /// [`AsyncListener`](crate::AsyncListener), with the default [`Config`].
    pub fn listen<L, K, F>(make: F) -> TestServer
    where
        L: Listen<K>,
        F: Fn() -> L + Send + Sync + 'static,
    {
        TestServer::listen_with(Config::default(), make)
    }

    /// As [`TestServer::listen`], with `config`.
    pub fn listen_with<L, K, F>(config: Config, make: F) -> TestServer
    where
        L: Listen<K>,
        F: Fn() -> L + Send + Sync + 'static,
    {
        TestServer::serve_ws(config, move |upgrade| upgrade.listen(make()).into())
    }

    /// An app whose `GET /ws` answers with `start(upgrade)`.
    fn serve_ws<F>(config: Config, start: F) -> TestServer
    where
        F: Fn(WebSocketUpgrade) -> HttpResponse + Send + Sync + 'static,
    {
        let start = Arc::new(start);
        TestServer::start(move |cfg| {
            let start = Arc::clone(&start);
            cfg.app_data(config.clone()).route(
                "/ws",
                web::get().to(move |upgrade: WebSocketUpgrade| {
                    let response = start(upgrade);
                    async move { response }
                }),
            );
        })
    }

    /// The address the server listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `ws://127.0.0.1:<port><path>`.
    pub fn url(&self, path: &str) -> String {
        format!("ws://{}{}", self.addr, path)
    }

    /// A client connected to `/ws`.
    ///
    /// # Errors
    /// As [`TestClient::connect`].
    pub fn client(&self) -> io::Result<TestClient> {
        TestClient::connect(self.addr, "/ws")
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        // `stop` sends the command at once; its future only reports completion.
        drop(self.handle.stop(false));
    }
}

impl fmt::Debug for TestServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestServer")
            .field("addr", &self.addr)
            .finish()
    }
}

/// What a [`TestClient`] received: a whole message or a control frame.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Received {
    /// A text or binary message, fragments assembled.
    Message(Message),
    /// A ping (the client does not answer it by itself).
    Ping(Bytes),
    /// A pong.
    Pong(Bytes),
    /// A close frame: its code ([`CloseCode::NO_STATUS`] when it had none)
    /// and reason.
    Close(CloseCode, String),
}

/// A blocking WebSocket client for tests: masks what it sends, checks what
/// it receives, and gives up after a timeout instead of hanging a test.
pub struct TestClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// State of the masking keys' generator.
    seed: u64,
    /// Answer pings with pongs inside `recv` instead of returning them.
    answer_pings: bool,
    /// Pings answered that way.
    pings_answered: u64,
}

impl TestClient {
    /// Connects to `addr` and upgrades `path`.
    ///
    /// # Errors
    /// The I/O error, or `InvalidData` when the server does not answer
    /// `101 Switching Protocols` with the right `Sec-WebSocket-Accept`.
    pub fn connect(addr: SocketAddr, path: &str) -> io::Result<TestClient> {
        let mut stream = TcpStream::connect(addr)?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(TIMEOUT))?;
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )?;
        let mut client = TestClient {
            stream,
            buf: Vec::new(),
            seed: 0x9E37_79B9_7F4A_7C15 ^ u64::from(addr.port()),
            answer_pings: false,
            pings_answered: 0,
        };
        let head = client.read_head()?;
        let accept = actix_http::ws::hash_key(key.as_bytes());
        let expected = format!("sec-websocket-accept: {}", String::from_utf8_lossy(&accept));
        let lower = head.to_ascii_lowercase();
        if !lower.starts_with("http/1.1 101") || !lower.contains(&expected.to_ascii_lowercase()) {
            return Err(invalid(format!("not a WebSocket upgrade: {head}")));
        }
        Ok(client)
    }

    /// Sends a text or binary message in one frame.
    ///
    /// # Errors
    /// The I/O error.
    pub fn send(&mut self, message: impl Into<Message>) -> io::Result<()> {
        let message = message.into();
        let opcode = if message.is_text() { 0x1 } else { 0x2 };
        self.write_frame(opcode, message.as_bytes())
    }

    /// Sends a ping carrying `data` (at most 125 bytes).
    ///
    /// # Errors
    /// The I/O error, or `InvalidInput` past 125 bytes.
    pub fn ping(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > 125 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ping payload over 125 bytes",
            ));
        }
        self.write_frame(0x9, data)
    }

    /// Sends a pong carrying `data` (at most 125 bytes): an answer to a
    /// ping, or unsolicited.
    ///
    /// # Errors
    /// The I/O error, or `InvalidInput` past 125 bytes.
    pub fn pong(&mut self, data: &[u8]) -> io::Result<()> {
        if data.len() > 125 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "pong payload over 125 bytes",
            ));
        }
        self.write_frame(0xA, data)
    }

    /// Sends a close frame with any code, valid or not (1005, 1006, 999,
    /// 5000…), and `reason`, without waiting: for testing how the server
    /// answers codes a well-behaved client never sends.
    ///
    /// # Errors
    /// The I/O error.
    pub fn close_with_code(&mut self, code: u16, reason: &str) -> io::Result<()> {
        self.send_frame(&Frame::close(code, reason))
    }

    /// Writes `frame` as it is: fragments, reserved bits or opcodes, wrong
    /// lengths, unmasked frames (see [`Frame`]).
    ///
    /// # Errors
    /// The I/O error.
    pub fn send_frame(&mut self, frame: &Frame) -> io::Result<()> {
        self.stream.write_all(&frame.encode())
    }

    /// From now on, `recv` answers every ping with a pong carrying its
    /// payload and goes on waiting, as a browser does; pings are no longer
    /// returned. For listeners with a heartbeat.
    pub fn answer_pings(&mut self, answer: bool) {
        self.answer_pings = answer;
    }

    /// How many pings `recv` has answered by itself.
    pub fn pings_answered(&self) -> u64 {
        self.pings_answered
    }

    /// Starts the closing handshake with 1000 and waits for the server's
    /// close frame (skipping what arrives before it).
    ///
    /// # Errors
    /// The I/O error, or a timeout when no close frame comes.
    pub fn close(&mut self) -> io::Result<()> {
        self.close_with(CloseCode::NORMAL, "")?;
        loop {
            if let Received::Close(..) = self.recv()? {
                return Ok(());
            }
        }
    }

    /// Sends a close frame with `code` and `reason`, without waiting.
    ///
    /// # Errors
    /// The I/O error.
    pub fn close_with(&mut self, code: CloseCode, reason: &str) -> io::Result<()> {
        let mut payload = code.as_u16().to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        self.write_frame(0x8, &payload)
    }

    /// The next message or control frame, waiting up to [`TIMEOUT`].
    ///
    /// # Errors
    /// `TimedOut`, `UnexpectedEof` when the server ended the connection,
    /// `InvalidData` when it broke RFC 6455 (masked or reserved frames,
    /// invalid UTF-8 in a text message).
    pub fn recv(&mut self) -> io::Result<Received> {
        self.recv_timeout(TIMEOUT)
    }

    /// [`TestClient::recv`] with another timeout.
    ///
    /// # Errors
    /// As [`TestClient::recv`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> io::Result<Received> {
        let deadline = Instant::now() + timeout;
        let mut message: Option<(u8, Vec<u8>)> = None;
        loop {
            let (fin, opcode, payload) = self.read_frame(deadline)?;
            let received = match opcode {
                0x9 if self.answer_pings => {
                    self.write_frame(0xA, &payload)?;
                    self.pings_answered += 1;
                    continue;
                }
                0x9 => Received::Ping(Bytes::from(payload)),
                0xA => Received::Pong(Bytes::from(payload)),
                0x8 => close_frame(&payload)?,
                0x1 | 0x2 if message.is_none() => {
                    message = Some((opcode, payload));
                    if !fin {
                        continue;
                    }
                    whole(message.take())?
                }
                0x0 => {
                    let Some((_, buf)) = &mut message else {
                        return Err(invalid("continuation without a message"));
                    };
                    buf.extend_from_slice(&payload);
                    if !fin {
                        continue;
                    }
                    whole(message.take())?
                }
                other => return Err(invalid(format!("unexpected opcode {other:#x}"))),
            };
            return Ok(received);
        }
    }

    /// The next text or binary message, skipping pings and pongs.
    ///
    /// # Errors
    /// As [`TestClient::recv`], and `ConnectionAborted` when a close frame
    /// comes instead (its code and reason in the message).
    pub fn recv_message(&mut self) -> io::Result<Message> {
        loop {
            match self.recv()? {
                Received::Message(message) => return Ok(message),
                Received::Close(code, reason) => {
                    return Err(io::Error::new(
                        io::ErrorKind::ConnectionAborted,
                        format!("closed with {code} {reason:?}"),
                    ))
                }
                Received::Ping(_) | Received::Pong(_) => {}
            }
        }
    }

    fn write_frame(&mut self, opcode: u8, payload: &[u8]) -> io::Result<()> {
        // xorshift: masks need not be secret here, only varied.
        self.seed ^= self.seed << 13;
        self.seed ^= self.seed >> 7;
        self.seed ^= self.seed << 17;
        let head = Head {
            fin: true,
            rsv: 0,
            opcode,
            len: payload.len() as u64,
            mask: Some((self.seed as u32).to_be_bytes()),
        };
        let mut frame = Vec::with_capacity(payload.len() + 14);
        test_frame::encode(head, payload, &mut frame);
        self.stream.write_all(&frame)
    }

    /// Reads the HTTP response head; what follows it stays in `buf`.
    fn read_head(&mut self) -> io::Result<String> {
        let deadline = Instant::now() + TIMEOUT;
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                return Ok(head);
            }
            self.fill(deadline)?;
        }
    }

    fn fill(&mut self, deadline: Instant) -> io::Result<()> {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "no frame from the server in time",
            ));
        }
        self.stream.set_read_timeout(Some(left))?;
        let mut chunk = [0u8; 16 * 1024];
        let read = self
            .stream
            .read(&mut chunk)
            .map_err(|error| match error.kind() {
                // What a socket read timeout looks like on Unix.
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
                    io::Error::new(io::ErrorKind::TimedOut, "no frame from the server in time")
                }
                _ => error,
            })?;
        match read {
            0 => Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "the server ended the connection",
            )),
            n => {
                self.buf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
        }
    }

    /// One frame: FIN, opcode, payload.
    fn read_frame(&mut self, deadline: Instant) -> io::Result<(bool, u8, Vec<u8>)> {
        while self.buf.len() < 2 {
            self.fill(deadline)?;
        }
        let (b0, b1) = (self.buf[0], self.buf[1]);
        if b1 & 0x80 != 0 {
            return Err(invalid("the server masked a frame"));
        }
        if b0 & 0x70 != 0 {
            return Err(invalid(
                "a reserved bit is set (this client negotiates no extension)",
            ));
        }
        let (len, offset) = match b1 & 0x7F {
            126 => {
                while self.buf.len() < 4 {
                    self.fill(deadline)?;
                }
                (
                    usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]])),
                    4,
                )
            }
            127 => {
                while self.buf.len() < 10 {
                    self.fill(deadline)?;
                }
                let mut len = [0u8; 8];
                len.copy_from_slice(&self.buf[2..10]);
                let len = usize::try_from(u64::from_be_bytes(len))
                    .map_err(|_| invalid("frame longer than memory"))?;
                (len, 10)
            }
            len => (usize::from(len), 2),
        };
        while self.buf.len() < offset + len {
            self.fill(deadline)?;
        }
        let payload = self.buf[offset..offset + len].to_vec();
        self.buf.drain(..offset + len);
        Ok((b0 & 0x80 != 0, b0 & 0x0F, payload))
    }
}

impl fmt::Debug for TestClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TestClient")
            .field("peer", &self.stream.peer_addr().ok())
            .finish()
    }
}

fn invalid(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

fn whole(message: Option<(u8, Vec<u8>)>) -> io::Result<Received> {
    match message {
        Some((0x1, text)) => ByteString::try_from(Bytes::from(text))
            .map(|text| Received::Message(Message::Text(text)))
            .map_err(|_| invalid("text message is not valid UTF-8")),
        Some((_, data)) => Ok(Received::Message(Message::Binary(Bytes::from(data)))),
        None => Err(invalid("no message to finish")),
    }
}

fn close_frame(payload: &[u8]) -> io::Result<Received> {
    match payload {
        [] => Ok(Received::Close(CloseCode::NO_STATUS, String::new())),
        [_] => Err(invalid("close frame with a 1-byte payload")),
        [hi, lo, reason @ ..] => {
            let reason =
                std::str::from_utf8(reason).map_err(|_| invalid("close reason is not UTF-8"))?;
            Ok(Received::Close(
                CloseCode(u16::from_be_bytes([*hi, *lo])),
                reason.to_owned(),
            ))
        }
    }
}
