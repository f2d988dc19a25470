//! A raw WebSocket client over a blocking `TcpStream` that writes and reads
//! frames byte by byte, so tests can break every rule of RFC 6455; and plain
//! HTTP requests for upgrades that must be refused. Frames are encoded by
//! the test kit's [`FrameSpec`] (`actix_ws_listener::test::Frame`), the one
//! client frame encoder of the crate, its tests and its benches.

use std::{
    io::{self, Read, Write},
    net::{SocketAddr, TcpStream},
    time::Instant,
};

use super::TIMEOUT;

use actix_ws_listener::test::opcode;
pub use actix_ws_listener::test::Frame as FrameSpec;

pub const OP_CONTINUATION: u8 = opcode::CONTINUATION;
pub const OP_TEXT: u8 = opcode::TEXT;
pub const OP_BINARY: u8 = opcode::BINARY;
pub const OP_CLOSE: u8 = opcode::CLOSE;
pub const OP_PING: u8 = opcode::PING;
pub const OP_PONG: u8 = opcode::PONG;

/// The sample key of RFC 6455 §1.3 and its accept value.
pub const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
pub const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// A close frame payload: code (big endian) then reason.
pub fn close_payload(code: u16, reason: &str) -> Vec<u8> {
    FrameSpec::close(code, reason).payload().to_vec()
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

/// Opens a TCP connection and sends the handshake for `path` and a text
/// frame of `text` in one write, so that the frame is in the server's hands
/// before the connection has even started. Nothing is read: the stream is
/// handed back (its read timeout is the tests' deadline).
pub fn handshake_with_text(addr: SocketAddr, path: &str, text: &str) -> TcpStream {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    let mut bytes = handshake_request(addr, path, "").into_bytes();
    bytes.extend(FrameSpec::new(OP_TEXT, text).encode());
    stream.write_all(&bytes).unwrap();
    stream
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

    /// A second handle on the TCP stream, for writing from another thread
    /// while this one reads.
    pub fn writer(&self) -> TcpStream {
        self.stream.try_clone().expect("clone the TCP stream")
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
