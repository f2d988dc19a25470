//! permessage-deflate against plain frames, side by side: echo of 1 KiB
//! JSON-like text, and memory per connection.
//!
//! Run:    cargo bench --bench deflate
//! Knobs:  DEFLATE_BENCH_SECS=3 (per measurement), DEFLATE_BENCH_ROUNDS=3,
//!         DEFLATE_BENCH_IDLE=2000 (connections for the memory figure)
//!
//! Each measurement starts this crate's echo server in a child process (this
//! binary again, with DEFLATE_BENCH_ROLE=plain|deflate|fresh) with one actix
//! worker; the client is a single-threaded tokio runtime in this process that
//! compresses its messages, inflates every echo and checks it byte for byte.
//! `deflate` is `Compression::default()` (context takeover both ways, as
//! browsers do by default); `fresh` adds `server_no_context_takeover` and
//! `client_no_context_takeover`, and the client then resets its own streams
//! after each message as the RFC requires. Server CPU comes from
//! /proc/<pid>/stat; bytes on the wire are counted by the client (frames and
//! handshakes, both directions). Modes alternate plain, deflate, fresh,
//! plain, …; the table gives medians and ratios against plain.

use std::{
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
};

const TRAILER: [u8; 4] = [0, 0, 0xFF, 0xFF];

/// What the server offers, and so what the client negotiates.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// No permessage-deflate.
    Plain,
    /// permessage-deflate with context takeover both ways.
    Deflate,
    /// permessage-deflate, no context takeover either way.
    Fresh,
}

impl Mode {
    const ALL: [Mode; 3] = [Mode::Plain, Mode::Deflate, Mode::Fresh];

    fn name(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Deflate => "deflate",
            Mode::Fresh => "fresh",
        }
    }

    fn label(self) -> &'static str {
        match self {
            Mode::Plain => "plain",
            Mode::Deflate => "deflate, context takeover",
            Mode::Fresh => "deflate, no context takeover",
        }
    }
}

fn main() {
    match std::env::var("DEFLATE_BENCH_ROLE").as_deref() {
        Ok(role) => serve(
            Mode::ALL
                .into_iter()
                .find(|m| m.name() == role)
                .expect("role"),
        ),
        Err(_) => bench(),
    }
}

/// The server role: this crate's echo listener, one worker.
fn serve(mode: Mode) {
    use actix_web::{web, App, HttpServer};
    use actix_ws_listener::{Compression, Config, Listener, Message, Socket, WebSocketUpgrade};

    struct Echo;
    impl Listener for Echo {
        fn on_message(&mut self, socket: &Socket, message: Message) {
            let _ = socket.send(message);
        }
    }
    raise_fd_limit();
    actix_rt::System::new().block_on(async move {
        let mut config = Config::default();
        match mode {
            Mode::Plain => {}
            Mode::Deflate => config = config.compression(Compression::default()),
            Mode::Fresh => {
                config = config.compression(
                    Compression::default()
                        .server_no_context_takeover(true)
                        .client_no_context_takeover(true),
                )
            }
        }
        let server = HttpServer::new(move || {
            App::new().app_data(config.clone()).default_service(
                web::get().to(|upgrade: WebSocketUpgrade| async move { upgrade.listen(Echo) }),
            )
        })
        .workers(1)
        .disable_signals()
        .backlog(4096)
        .bind("127.0.0.1:0")
        .expect("bind");
        println!("PORT {}", server.addrs()[0].port());
        server.run().await.expect("server");
    });
}

fn raise_fd_limit() {
    let limit = libc::rlimit {
        rlim_cur: 65_536,
        rlim_max: 65_536,
    };
    // SAFETY: setrlimit reads a valid, initialised rlimit; failure only
    // lowers the number of idle connections the bench can open.
    #[allow(unsafe_code)]
    unsafe {
        libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
    }
}

struct Server {
    child: Child,
    port: u16,
}

impl Server {
    fn start(mode: Mode) -> Server {
        let mut child = Command::new(std::env::current_exe().expect("current exe"))
            .env("DEFLATE_BENCH_ROLE", mode.name())
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn server");
        let mut line = String::new();
        BufReader::new(child.stdout.take().expect("stdout"))
            .read_line(&mut line)
            .expect("server port");
        let port = line
            .trim()
            .trim_start_matches("PORT ")
            .parse()
            .expect("port");
        Server { child, port }
    }

    /// User + system CPU time of the server, in seconds.
    fn cpu(&self) -> f64 {
        let stat =
            std::fs::read_to_string(format!("/proc/{}/stat", self.child.id())).unwrap_or_default();
        let fields: Vec<&str> = stat
            .rsplit(')')
            .next()
            .unwrap_or("")
            .split_whitespace()
            .collect();
        let ticks: f64 = fields.get(11..13).map_or(0.0, |f| {
            f.iter().filter_map(|v| v.parse::<f64>().ok()).sum()
        });
        ticks / 100.0
    }

    fn rss_kib(&self) -> f64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default()
            .lines()
            .find(|l| l.starts_with("VmRSS:"))
            .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
            .unwrap_or(0.0)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One client connection, with its own compression contexts.
struct Conn {
    stream: TcpStream,
    buf: Vec<u8>,
    deflate: bool,
    compress: Compress,
    decompress: Decompress,
    /// The server asked for `client_no_context_takeover`.
    reset_compress: bool,
    /// The server announced `server_no_context_takeover`.
    reset_decompress: bool,
    wire: u64,
}

impl Conn {
    async fn open(port: u16, mode: Mode) -> Conn {
        let deflate = mode != Mode::Plain;
        let mut stream = TcpStream::connect(("127.0.0.1", port))
            .await
            .expect("connect");
        stream.set_nodelay(true).expect("nodelay");
        let extension = if deflate {
            "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n"
        } else {
            ""
        };
        let request = format!(
            "GET / HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n{extension}\r\n"
        );
        stream
            .write_all(request.as_bytes())
            .await
            .expect("handshake");
        let mut buf = Vec::new();
        let end = loop {
            if let Some(pos) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break pos + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = stream.read(&mut chunk).await.expect("read handshake");
            assert!(n > 0, "server closed during the handshake");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..end]).to_ascii_lowercase();
        assert!(head.starts_with("http/1.1 101"), "{head}");
        assert_eq!(head.contains("permessage-deflate"), deflate, "{head}");
        let wire = (request.len() + end) as u64;
        buf.drain(..end);
        Conn {
            stream,
            buf,
            deflate,
            compress: Compress::new(flate2::Compression::new(1), false),
            decompress: Decompress::new(false),
            reset_compress: head.contains("client_no_context_takeover"),
            reset_decompress: head.contains("server_no_context_takeover"),
            wire,
        }
    }

    async fn send(&mut self, text: &[u8]) {
        let (payload, b0) = if self.deflate {
            let mut out = Vec::with_capacity(text.len() + 64);
            let start = self.compress.total_in();
            loop {
                let done = (self.compress.total_in() - start) as usize;
                self.compress
                    .compress_vec(&text[done..], &mut out, FlushCompress::Sync)
                    .expect("compress");
                if (self.compress.total_in() - start) as usize == text.len()
                    && out.len() < out.capacity()
                {
                    break;
                }
                out.reserve(out.capacity());
            }
            out.truncate(out.len() - TRAILER.len());
            if self.reset_compress {
                self.compress.reset();
            }
            (out, 0xC1)
        } else {
            (text.to_vec(), 0x81)
        };
        let mut frame = vec![b0];
        if payload.len() < 126 {
            frame.push(0x80 | payload.len() as u8);
        } else {
            frame.push(0x80 | 126);
            frame.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        let mask = [0x37, 0xFA, 0x21, 0x3D];
        frame.extend_from_slice(&mask);
        frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        self.wire += frame.len() as u64;
        self.stream.write_all(&frame).await.expect("write");
    }

    async fn recv(&mut self) -> Vec<u8> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1] & 0x7F);
                let (len, offset) = match b1 {
                    126 if self.buf.len() >= 4 => {
                        (u16::from_be_bytes([self.buf[2], self.buf[3]]) as usize, 4)
                    }
                    127 if self.buf.len() >= 10 => (
                        u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes")) as usize,
                        10,
                    ),
                    126 | 127 => (usize::MAX, 0),
                    n => (n as usize, 2),
                };
                if len != usize::MAX && self.buf.len() >= offset + len {
                    assert_eq!(b0 & 0x0F, 1, "expected a text frame");
                    let payload: Vec<u8> = self.buf.drain(..offset + len).skip(offset).collect();
                    self.wire += (offset + len) as u64;
                    if b0 & 0x40 == 0 {
                        return payload;
                    }
                    let mut input = payload;
                    input.extend_from_slice(&TRAILER);
                    let mut out = Vec::with_capacity(4096);
                    self.decompress
                        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                        .expect("inflate");
                    if self.reset_decompress {
                        self.decompress.reset(false);
                    }
                    return out;
                }
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = self.stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "server closed the connection");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }
}

/// 1 KiB of JSON-like chat traffic, different for every message.
fn message(conn: usize, seq: u64) -> Vec<u8> {
    let mut text = format!(
        r#"{{"type":"chat","room":"general","conn":{conn},"seq":{seq},"user":{{"id":{},"name":"user-{}","roles":["member","reader"]}},"messages":["#,
        conn * 7919 % 1000,
        conn
    );
    let mut i = 0;
    while text.len() < 1000 {
        text.push_str(&format!(
            r#"{{"id":{},"text":"message number {} in this batch","ts":{}}},"#,
            seq * 10 + i,
            i,
            1_700_000_000 + seq + i
        ));
        i += 1;
    }
    text.truncate(1021);
    text.push_str("\"]}");
    text.into_bytes()
}

struct Sample {
    rate: f64,
    cpu_us: f64,
    wire_per_msg: f64,
}

async fn load(port: u16, mode: Mode, conns: usize, depth: usize, secs: f64) -> (u64, u64) {
    let deadline = Instant::now() + Duration::from_secs_f64(secs);
    let mut tasks = Vec::new();
    for c in 0..conns {
        tasks.push(tokio::task::spawn_local(async move {
            let mut conn = Conn::open(port, mode).await;
            let (mut sent, mut done) = (0u64, 0u64);
            let mut expected = std::collections::VecDeque::new();
            while Instant::now() < deadline {
                while expected.len() < depth {
                    let text = message(c, sent);
                    conn.send(&text).await;
                    expected.push_back(text);
                    sent += 1;
                }
                let echo = conn.recv().await;
                assert_eq!(Some(&echo), expected.front(), "wrong echo");
                expected.pop_front();
                done += 1;
            }
            while let Some(text) = expected.pop_front() {
                assert_eq!(conn.recv().await, text, "wrong echo");
            }
            (done, conn.wire)
        }));
    }
    let mut total = (0, 0);
    for task in tasks {
        let (done, wire) = task.await.expect("client task");
        total.0 += done;
        total.1 += wire;
    }
    total
}

/// Runs the client on one thread, where its connection tasks live.
fn run_local<F: std::future::Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    tokio::task::LocalSet::new().block_on(&runtime, future)
}

fn measure(mode: Mode, conns: usize, depth: usize, secs: f64) -> Sample {
    let server = Server::start(mode);
    let cpu0 = server.cpu();
    let started = Instant::now();
    let (done, wire) = run_local(load(server.port, mode, conns, depth, secs));
    let elapsed = started.elapsed().as_secs_f64();
    let cpu = server.cpu() - cpu0;
    Sample {
        rate: done as f64 / elapsed,
        cpu_us: cpu * 1e6 / done as f64,
        wire_per_msg: wire as f64 / done as f64,
    }
}

/// KiB of server RSS per connection: idle, then after one message each way.
fn memory(mode: Mode, conns: usize) -> (f64, f64) {
    let server = Server::start(mode);
    std::thread::sleep(Duration::from_millis(200));
    let base = server.rss_kib();
    run_local(async {
        let mut open = Vec::new();
        for _ in 0..conns {
            open.push(Conn::open(server.port, mode).await);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = server.rss_kib();
        for (i, conn) in open.iter_mut().enumerate() {
            let text = message(i, 0);
            conn.send(&text).await;
            assert_eq!(conn.recv().await, text);
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let used = server.rss_kib();
        ((idle - base) / conns as f64, (used - base) / conns as f64)
    })
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values[values.len() / 2]
}

fn bench() {
    raise_fd_limit();
    let num = |name: &str, default: f64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let secs = num("DEFLATE_BENCH_SECS", 3.0);
    let rounds = num("DEFLATE_BENCH_ROUNDS", 3.0) as usize;
    let idle = num("DEFLATE_BENCH_IDLE", 2000.0) as usize;
    let mut report = String::from(
        "| workload | mode | msgs/s | server CPU/msg | wire bytes/msg (both ways) | msgs/s ×plain | CPU/msg ×plain | wire ×plain |\n|---|---|---|---|---|---|---|---|\n",
    );
    for (name, conns, depth) in [
        ("64 conns × 1 in flight", 64, 1),
        ("64 conns × 32 in flight", 64, 32),
    ] {
        let mut samples: [Vec<Sample>; 3] = Default::default();
        for _ in 0..rounds {
            for (i, mode) in Mode::ALL.into_iter().enumerate() {
                samples[i].push(measure(mode, conns, depth, secs));
            }
        }
        let stat = |i: usize, f: fn(&Sample) -> f64| median(samples[i].iter().map(f).collect());
        for (i, mode) in Mode::ALL.into_iter().enumerate() {
            let ratio = |f: fn(&Sample) -> f64| {
                if i == 0 {
                    String::new()
                } else {
                    format!("{:.3}", stat(i, f) / stat(0, f))
                }
            };
            report.push_str(&format!(
                "| {name}, 1 KiB JSON text | {} | {:.0} | {:.2} µs | {:.0} | {} | {} | {} |\n",
                mode.label(),
                stat(i, |s| s.rate),
                stat(i, |s| s.cpu_us),
                stat(i, |s| s.wire_per_msg),
                ratio(|s| s.rate),
                ratio(|s| s.cpu_us),
                ratio(|s| s.wire_per_msg),
            ));
        }
    }
    report.push_str(&format!(
        "\n| memory, {idle} connections | idle KiB/conn | KiB/conn after one message each way |\n|---|---|---|\n"
    ));
    for mode in Mode::ALL {
        let (idle_kib, used_kib) = memory(mode, idle);
        report.push_str(&format!(
            "| {} | {idle_kib:.1} | {used_kib:.1} |\n",
            mode.label()
        ));
    }
    println!(
        "\n{rounds} rounds of {secs} s per measurement, medians; one server worker; client at level 1.\n\n{report}"
    );
    let _ = std::fs::create_dir_all("target/bench");
    let _ = std::fs::write("target/bench/deflate.md", &report);
}
