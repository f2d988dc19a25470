//! The load client: RFC 6455 from the client side, by hand, over tokio's
//! `TcpStream` on one thread.
//!
//! It performs the HTTP upgrade itself (random key, checked
//! `Sec-WebSocket-Accept`), masks every frame with a fresh pseudo-random
//! key, and checks every echoed byte against what it sent. Against the raw
//! TCP echo (server R) it gets its own masked frames back and unmasks them,
//! so it does the same work per message as against a WebSocket server.

use std::{
    cell::{Cell, RefCell},
    collections::VecDeque,
    io,
    net::SocketAddr,
    rc::Rc,
    time::{Duration, Instant},
};

use bytes::{Buf, BytesMut};
use tokio::{
    io::{AsyncRead, AsyncReadExt, AsyncWriteExt, Interest},
    net::{TcpSocket, TcpStream},
    sync::Notify,
};

use actix_ws_listener::test::Frame;

use super::server::{BROADCAST_COMMAND, BROADCAST_PAYLOAD};
use super::sys;

const OP_CONTINUATION: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;

fn err(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

/// xorshift64*: masks, keys and payload patterns. Not cryptographic, and
/// need not be: the mask only has to be unpredictable to nobody here.
#[derive(Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn mask(&mut self) -> [u8; 4] {
        ((self.next() >> 16) as u32).to_ne_bytes()
    }
}

/// XORs `data` with `mask`, starting at mask offset 0.
fn apply_mask(data: &mut [u8], mask: [u8; 4]) {
    let wide = u64::from_ne_bytes([
        mask[0], mask[1], mask[2], mask[3], mask[0], mask[1], mask[2], mask[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for chunk in &mut chunks {
        let mut word = [0u8; 8];
        word.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u64::from_ne_bytes(word) ^ wide).to_ne_bytes());
    }
    for (i, byte) in chunks.into_remainder().iter_mut().enumerate() {
        *byte ^= mask[i % 4];
    }
}

/// Appends one masked, final frame, through the test kit's encoder (the
/// one the crate's tests use), so the bench and the tests write the same
/// header and length bytes.
fn encode_frame(out: &mut Vec<u8>, opcode: u8, payload: &[u8], mask: [u8; 4]) {
    Frame::new(opcode, payload).mask(mask).encode_into(out);
}

/// A frame from the server, its payload unmasked in place.
struct ServerFrame {
    fin: bool,
    opcode: u8,
    payload: bytes::Bytes,
}

/// Takes the next whole frame off `buf`, if it is all there. Server frames
/// must be unmasked unless `raw` (the raw echo returns ours, masked).
fn next_frame(buf: &mut BytesMut, raw: bool) -> io::Result<Option<ServerFrame>> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let masked = b1 & 0x80 != 0;
    if masked != raw {
        return Err(err(format!("server frame mask bit is {masked}")));
    }
    let (len, mut header) = match b1 & 0x7F {
        126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
        127 if buf.len() >= 10 => {
            let mut len = [0u8; 8];
            len.copy_from_slice(&buf[2..10]);
            (u64::from_be_bytes(len) as usize, 10)
        }
        126 | 127 => return Ok(None),
        len => (len as usize, 2),
    };
    let mut mask = [0u8; 4];
    if masked {
        if buf.len() < header + 4 {
            return Ok(None);
        }
        mask.copy_from_slice(&buf[header..header + 4]);
        header += 4;
    }
    if buf.len() < header + len {
        buf.reserve(header + len - buf.len());
        return Ok(None);
    }
    buf.advance(header);
    let mut payload = buf.split_to(len);
    if masked {
        apply_mask(&mut payload, mask);
    }
    Ok(Some(ServerFrame {
        fin: b0 & 0x80 != 0,
        opcode: b0 & 0x0F,
        payload: payload.freeze(),
    }))
}

/// Whole messages out of frames: assembles fragments, refuses what an echo
/// server must never send.
#[derive(Default)]
struct Assembler {
    partial: Option<(u8, Vec<u8>)>,
}

impl Assembler {
    /// Returns (opcode, payload) once a data message is complete.
    fn push(&mut self, frame: ServerFrame) -> io::Result<Option<(u8, bytes::Bytes)>> {
        match (frame.opcode, frame.fin, &mut self.partial) {
            (OP_TEXT | OP_BINARY, true, None) => Ok(Some((frame.opcode, frame.payload))),
            (OP_TEXT | OP_BINARY, false, None) => {
                self.partial = Some((frame.opcode, frame.payload.to_vec()));
                Ok(None)
            }
            (OP_CONTINUATION, fin, Some((_, buf))) => {
                buf.extend_from_slice(&frame.payload);
                if !fin {
                    return Ok(None);
                }
                let (opcode, buf) = self.partial.take().unwrap_or_default();
                Ok(Some((opcode, buf.into())))
            }
            (OP_PING | 0xA, _, _) => Ok(None),
            (OP_CLOSE, _, _) => Err(err(format!("server closed: {:?}", frame.payload))),
            (opcode, fin, _) => Err(err(format!("unexpected frame opcode={opcode} fin={fin}"))),
        }
    }
}

/// One upgraded connection.
pub struct Conn {
    stream: TcpStream,
    rbuf: BytesMut,
    rng: Rng,
    raw: bool,
}

/// Connects to `addr` (from `local` where given), upgrades `path` and
/// checks the server's accept key.
pub async fn connect(
    addr: SocketAddr,
    local: Option<SocketAddr>,
    path: &str,
    seed: u64,
    raw: bool,
) -> io::Result<Conn> {
    const B64: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut rng = Rng::new(seed);
    // 16 random bytes in base64: 21 free characters, one whose low four bits
    // are zero, then the padding.
    let mut key: String = (0..21)
        .map(|_| B64[(rng.next() >> 58) as usize] as char)
        .collect();
    key.push(['A', 'Q', 'g', 'w'][(rng.next() >> 62) as usize]);
    key.push_str("==");
    let mut stream = match local {
        None => TcpStream::connect(addr).await?,
        Some(local) => {
            let socket = TcpSocket::new_v4()?;
            // A port whose last connection is in TIME_WAIT may be used again.
            socket.set_reuseaddr(true)?;
            socket.bind(local)?;
            socket.connect(addr).await?
        }
    };
    stream.set_nodelay(true)?;
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await?;
    let mut rbuf = BytesMut::with_capacity(4096);
    let end = loop {
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Err(err("server closed during the handshake"));
        }
        if let Some(end) = rbuf.windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if rbuf.len() > 16 << 10 {
            return Err(err("handshake response too long"));
        }
    };
    let head = String::from_utf8_lossy(&rbuf[..end]).into_owned();
    rbuf.advance(end);
    if !head.starts_with("HTTP/1.1 101") {
        return Err(err(format!("upgrade refused: {head}")));
    }
    let want = actix_http::ws::hash_key(key.as_bytes());
    let accepted = head.lines().any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept")
                && value.trim().as_bytes() == want
        })
    });
    if !accepted {
        return Err(err(format!("bad Sec-WebSocket-Accept in {head}")));
    }
    Ok(Conn {
        stream,
        rbuf,
        rng,
        raw,
    })
}

impl Conn {
    /// Sends one message and waits for its echo, byte for byte.
    pub async fn echo_once(&mut self, text: bool, payload: &[u8]) -> io::Result<()> {
        let opcode = if text { OP_TEXT } else { OP_BINARY };
        let mut out = Vec::with_capacity(payload.len() + 14);
        encode_frame(&mut out, opcode, payload, self.rng.mask());
        self.stream.write_all(&out).await?;
        let mut assembler = Assembler::default();
        loop {
            while let Some(frame) = next_frame(&mut self.rbuf, self.raw)? {
                if let Some((got_op, got)) = assembler.push(frame)? {
                    if got_op != opcode || got[..] != *payload {
                        return Err(err("echo differs from what was sent"));
                    }
                    return Ok(());
                }
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(err("server closed"));
            }
        }
    }
}

// Used by benches/scale.rs, not by the load bench.
#[allow(dead_code)]
impl Conn {
    /// Sends one text message and does not wait for anything back.
    pub async fn send_text(&mut self, text: &str) -> io::Result<()> {
        let mut out = Vec::with_capacity(text.len() + 14);
        encode_frame(&mut out, OP_TEXT, text.as_bytes(), self.rng.mask());
        self.stream.write_all(&out).await
    }

    /// Waits for the next data message and checks that it is
    /// [`BROADCAST_PAYLOAD`], binary.
    pub async fn recv_broadcast(&mut self) -> io::Result<()> {
        let mut assembler = Assembler::default();
        loop {
            while let Some(frame) = next_frame(&mut self.rbuf, self.raw)? {
                if let Some((opcode, payload)) = assembler.push(frame)? {
                    if opcode != OP_BINARY || payload[..] != BROADCAST_PAYLOAD[..] {
                        return Err(err("broadcast payload differs"));
                    }
                    return Ok(());
                }
            }
            if self.stream.read_buf(&mut self.rbuf).await? == 0 {
                return Err(err("server closed"));
            }
        }
    }

    /// Gives back the read buffer's spare capacity (4 KiB after the
    /// handshake), so that many idle connections cost the client little.
    pub fn shrink(&mut self) {
        if self.rbuf.is_empty() {
            self.rbuf = BytesMut::new();
        }
    }
}

/// Above this many connections, [`connect_many`] binds each one to a source
/// address of its own choosing: one source address has only the ephemeral
/// port range (28,232 ports by default, shared with every other program)
/// towards one server address.
const ONE_SOURCE_MAX: usize = 16_384;
/// Source ports used per loopback address (10000–59999) when binding.
const PORTS_PER_SOURCE: usize = 50_000;

/// Source address number `k` when binding: 127.0.0.2:10000, …, then
/// 127.0.0.3:10000, …
fn source(k: usize) -> Option<SocketAddr> {
    let host = u8::try_from(2 + k / PORTS_PER_SOURCE).ok()?;
    let port = 10_000 + (k % PORTS_PER_SOURCE) as u16;
    Some(SocketAddr::from(([127, 0, 0, host], port)))
}

/// Opens `n` connections to `path`, `parallel` handshakes at a time; each
/// does one 16-byte echo so that it is past its first message. Past
/// [`ONE_SOURCE_MAX`] connections each binds a source address of its own
/// (127.0.0.2 and up), skipping ports that are taken.
pub async fn connect_many(
    addr: SocketAddr,
    path: &str,
    n: usize,
    parallel: usize,
    raw: bool,
) -> io::Result<Vec<Conn>> {
    let next = Rc::new(Cell::new(0usize));
    let next_source = Rc::new(Cell::new(0usize));
    let conns = Rc::new(RefCell::new(Vec::with_capacity(n)));
    let mut workers = Vec::new();
    for _ in 0..parallel.min(n) {
        let (next, next_source, conns, path) = (
            next.clone(),
            next_source.clone(),
            conns.clone(),
            path.to_owned(),
        );
        workers.push(tokio::task::spawn_local(async move {
            loop {
                let i = next.get();
                if i >= n {
                    return Ok::<(), io::Error>(());
                }
                next.set(i + 1);
                let mut conn = loop {
                    let local = if n > ONE_SOURCE_MAX {
                        let k = next_source.get();
                        next_source.set(k + 1);
                        Some(source(k).ok_or_else(|| err("out of source addresses"))?)
                    } else {
                        None
                    };
                    match connect(addr, local, &path, i as u64 + 1, raw).await {
                        Err(e) if local.is_some() && e.kind() == io::ErrorKind::AddrInUse => {}
                        other => break other?,
                    }
                };
                conn.echo_once(true, b"idle-but-alive!!").await?;
                conns.borrow_mut().push(conn);
            }
        }));
    }
    for worker in workers {
        worker.await.map_err(|e| err(e.to_string()))??;
    }
    let conns = std::mem::take(&mut *conns.borrow_mut());
    Ok(conns)
}

/// An echo workload: connections, messages in flight per connection,
/// message size and type.
#[derive(Clone, Copy, Debug)]
pub struct EchoSpec {
    pub conns: usize,
    /// Messages a connection keeps outstanding; with `rate`, the most it
    /// lets pile up when the server falls behind.
    pub inflight: usize,
    pub size: usize,
    pub text: bool,
    pub latency: bool,
    /// Open loop: each connection sends this many messages a second on a
    /// schedule, whether or not the echoes are back, so that every server
    /// gets the same load (a closed loop gives the faster server smaller
    /// batches and more idle wake-ups, and charges it for them).
    pub rate: Option<f64>,
}

/// What an echo run measured, over the measurement window only.
pub struct EchoOutcome {
    pub msgs: u64,
    /// Every echo received, warm-up and drain included.
    pub total: u64,
    pub elapsed: Duration,
    /// Round-trip times in nanoseconds, when the spec asks for them.
    pub latencies: Vec<u64>,
    pub server_cpu: Duration,
    pub client_cpu: Duration,
    /// Busy time of all cores not used by the server or this client, and
    /// time stolen by the hypervisor, over the window.
    pub other_cpu: Duration,
    pub steal: Duration,
}

struct EchoState {
    spec: EchoSpec,
    raw: bool,
    /// Payload of message `seq`: `pattern[seq % 251..][..size]`.
    pattern: Vec<u8>,
    measuring: Cell<bool>,
    stop: Cell<bool>,
    count: Cell<u64>,
    total: Cell<u64>,
    latencies: RefCell<Vec<u64>>,
}

impl EchoState {
    fn payload(&self, seq: u64) -> &[u8] {
        &self.pattern[(seq % 251) as usize..][..self.spec.size]
    }
}

fn pattern(size: usize, text: bool, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..size + 251)
        .map(|_| {
            let r = rng.next() >> 56;
            if text {
                b' ' + (r % 95) as u8
            } else {
                r as u8
            }
        })
        .collect()
}

/// Runs an echo workload against `addr`: connects, warms up, measures for
/// `measure`, then lets every connection drain its messages in flight.
pub async fn echo_load(
    addr: SocketAddr,
    spec: EchoSpec,
    raw: bool,
    server_pid: u32,
    warmup: Duration,
    measure: Duration,
) -> io::Result<EchoOutcome> {
    let state = Rc::new(EchoState {
        spec,
        raw,
        pattern: pattern(spec.size, spec.text, 42),
        measuring: Cell::new(false),
        stop: Cell::new(false),
        count: Cell::new(0),
        total: Cell::new(0),
        latencies: RefCell::new(Vec::new()),
    });
    let mut conns = Vec::with_capacity(spec.conns);
    for i in 0..spec.conns {
        conns.push(connect(addr, None, "/", 1000 + i as u64, raw).await?);
    }
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::task::spawn_local(run_echo_conn(conn, state.clone())))
        .collect();

    tokio::time::sleep(warmup).await;
    let cores0 = sys::core_times();
    let (cpu0, own0, t0) = (
        sys::cpu_time(server_pid),
        sys::own_cpu_time(),
        Instant::now(),
    );
    state.count.set(0);
    state.measuring.set(true);
    tokio::time::sleep(measure).await;
    state.measuring.set(false);
    let msgs = state.count.get();
    let (cpu1, own1, t1) = (
        sys::cpu_time(server_pid),
        sys::own_cpu_time(),
        Instant::now(),
    );
    let cores1 = sys::core_times();
    state.stop.set(true);
    for task in tasks {
        match tokio::time::timeout(Duration::from_secs(30), task).await {
            Ok(Ok(Ok(()))) => {}
            Ok(Ok(Err(e))) => return Err(e),
            Ok(Err(e)) => return Err(err(e.to_string())),
            Err(_) => return Err(err("a connection did not drain in 30 s")),
        }
    }
    let latencies = std::mem::take(&mut *state.latencies.borrow_mut());
    Ok(EchoOutcome {
        msgs,
        total: state.total.get(),
        elapsed: t1 - t0,
        latencies,
        server_cpu: cpu1.saturating_sub(cpu0),
        client_cpu: own1.saturating_sub(own0),
        other_cpu: (cores1.busy.saturating_sub(cores0.busy))
            .saturating_sub(cpu1.saturating_sub(cpu0))
            .saturating_sub(own1.saturating_sub(own0)),
        steal: cores1.steal.saturating_sub(cores0.steal),
    })
}

/// How often an open-loop connection sends what is due: the timer's
/// resolution, so that each connection writes a batch per tick as a busy
/// client would, rather than a frame whenever it wakes.
const OPEN_LOOP_TICK: Duration = Duration::from_millis(1);

/// One connection's loop: keeps `inflight` messages outstanding, writes
/// without blocking its reads, checks every echo in order.
async fn run_echo_conn(mut conn: Conn, state: Rc<EchoState>) -> io::Result<()> {
    let spec = state.spec;
    let opcode = if spec.text { OP_TEXT } else { OP_BINARY };
    let mut wbuf: Vec<u8> = Vec::with_capacity(spec.inflight * (spec.size + 14));
    let mut wpos = 0;
    let mut sent_at: VecDeque<Instant> = VecDeque::with_capacity(spec.inflight);
    let (mut next_send, mut next_recv) = (0u64, 0u64);
    let mut assembler = Assembler::default();
    conn.rbuf.reserve((spec.size + 14) * spec.inflight.min(4));
    let start = Instant::now();
    let mut tick = start;
    loop {
        let inflight = (next_send - next_recv) as usize;
        // Closed loop: as many as the window has room for. Open loop: at
        // each tick, the messages due by then, in one write, within the
        // window; nothing between ticks.
        let due = match spec.rate {
            None => spec.inflight - inflight,
            Some(rate) => {
                let now = Instant::now();
                if now < tick {
                    0
                } else {
                    while tick <= now {
                        tick += OPEN_LOOP_TICK;
                    }
                    let by_now = ((now - start).as_secs_f64() * rate) as u64;
                    (by_now.saturating_sub(next_send) as usize).min(spec.inflight - inflight)
                }
            }
        };
        if state.stop.get() {
            if inflight == 0 {
                return Ok(());
            }
        } else if due > 0 {
            if wpos == wbuf.len() {
                wbuf.clear();
                wpos = 0;
            }
            let now = Instant::now();
            for _ in 0..due {
                encode_frame(&mut wbuf, opcode, state.payload(next_send), conn.rng.mask());
                if spec.latency {
                    sent_at.push_back(now);
                }
                next_send += 1;
            }
        }
        let interest = if wpos < wbuf.len() {
            Interest::READABLE | Interest::WRITABLE
        } else {
            Interest::READABLE
        };
        let ready = match spec.rate {
            Some(_) if !state.stop.get() => {
                // Wake at the next tick, if nothing comes first.
                match tokio::time::timeout_at(tick.into(), conn.stream.ready(interest)).await {
                    Ok(ready) => ready?,
                    Err(_) => continue,
                }
            }
            _ => conn.stream.ready(interest).await?,
        };
        if ready.is_writable() && wpos < wbuf.len() {
            match conn.stream.try_write(&wbuf[wpos..]) {
                Ok(n) => wpos += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
        }
        if ready.is_readable() {
            let room = conn.rbuf.capacity() - conn.rbuf.len();
            match conn.stream.try_read_buf(&mut conn.rbuf) {
                Ok(0) => return Err(err("server closed the connection")),
                // A short read drained the socket: forget the readiness now
                // rather than pay a read that says EAGAIN. tokio keeps it if
                // a new edge arrived meanwhile, so no wake-up is lost.
                Ok(n) if n < room => {
                    let _ = conn.stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::Error::from(io::ErrorKind::WouldBlock))
                    });
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                Err(e) => return Err(e),
            }
            while let Some(frame) = next_frame(&mut conn.rbuf, state.raw)? {
                let Some((got_op, got)) = assembler.push(frame)? else {
                    continue;
                };
                if next_recv >= next_send {
                    return Err(err("echo of a message never sent"));
                }
                if got_op != opcode || got[..] != *state.payload(next_recv) {
                    return Err(err(format!("echo {next_recv} differs from what was sent")));
                }
                next_recv += 1;
                state.total.set(state.total.get() + 1);
                let sent = if spec.latency {
                    sent_at.pop_front()
                } else {
                    None
                };
                if state.measuring.get() {
                    state.count.set(state.count.get() + 1);
                    if let Some(sent) = sent {
                        state
                            .latencies
                            .borrow_mut()
                            .push(sent.elapsed().as_nanos() as u64);
                    }
                }
            }
            if conn.rbuf.capacity() - conn.rbuf.len() < 4096 {
                conn.rbuf.reserve(spec.size.max(4096));
            }
        }
    }
}

/// What a broadcast run measured.
pub struct BroadcastOutcome {
    /// Time from sending the command until the last connection had the
    /// message, one per broadcast.
    pub times: Vec<Duration>,
    pub deliveries: u64,
    pub server_cpu: Duration,
}

struct BroadcastState {
    got: Cell<usize>,
    want: Cell<usize>,
    last_at: Cell<Option<Instant>>,
    done: Notify,
}

/// Broadcast workload on connections already open to `/broadcast`: the first
/// one sends the command, every one must receive the payload.
pub async fn broadcast_load(
    conns: Vec<Conn>,
    server_pid: u32,
    warmup_rounds: usize,
    rounds: usize,
) -> io::Result<BroadcastOutcome> {
    let n = conns.len();
    let state = Rc::new(BroadcastState {
        got: Cell::new(0),
        want: Cell::new(n),
        last_at: Cell::new(None),
        done: Notify::new(),
    });
    let mut conns = conns.into_iter();
    let Some(first) = conns.next() else {
        return Err(err("no connections"));
    };
    let mut rng = first.rng.clone();
    let (read_half, mut trigger) = first.stream.into_split();
    let mut readers = vec![tokio::task::spawn_local(read_broadcasts(
        read_half,
        first.rbuf,
        state.clone(),
    ))];
    for conn in conns {
        readers.push(tokio::task::spawn_local(read_broadcasts(
            conn.stream,
            conn.rbuf,
            state.clone(),
        )));
    }
    let mut times = Vec::new();
    let mut cpu = Duration::ZERO;
    for round in 0..warmup_rounds + rounds {
        tokio::time::sleep(Duration::from_millis(100)).await;
        state.got.set(0);
        state.want.set(n);
        let mut frame = Vec::new();
        encode_frame(
            &mut frame,
            OP_TEXT,
            BROADCAST_COMMAND.as_bytes(),
            rng.mask(),
        );
        let cpu0 = sys::cpu_time(server_pid);
        let t0 = Instant::now();
        trigger.write_all(&frame).await?;
        let waited = tokio::time::timeout(Duration::from_secs(60), state.done.notified()).await;
        let cpu1 = sys::cpu_time(server_pid);
        if waited.is_err() {
            for reader in &readers {
                reader.abort();
            }
            return Err(err(format!(
                "broadcast reached {} of {n} connections in 60 s",
                state.got.get()
            )));
        }
        if readers.iter().any(|r| r.is_finished()) {
            return Err(err("a broadcast reader failed"));
        }
        if round >= warmup_rounds {
            times.push(state.last_at.get().map_or(Duration::ZERO, |at| at - t0));
            cpu += cpu1.saturating_sub(cpu0);
        }
    }
    for reader in &readers {
        reader.abort();
    }
    Ok(BroadcastOutcome {
        times,
        deliveries: (n * rounds) as u64,
        server_cpu: cpu,
    })
}

async fn read_broadcasts<R: AsyncRead + Unpin>(
    mut stream: R,
    mut rbuf: BytesMut,
    state: Rc<BroadcastState>,
) -> io::Result<()> {
    let mut assembler = Assembler::default();
    loop {
        while let Some(frame) = next_frame(&mut rbuf, false)? {
            let Some((opcode, payload)) = assembler.push(frame)? else {
                continue;
            };
            if opcode != OP_BINARY || payload[..] != BROADCAST_PAYLOAD[..] {
                return Err(err("broadcast payload differs"));
            }
            let got = state.got.get() + 1;
            state.got.set(got);
            if got == state.want.get() {
                state.last_at.set(Some(Instant::now()));
                state.done.notify_one();
            }
        }
        if stream.read_buf(&mut rbuf).await? == 0 {
            return Err(err("server closed"));
        }
    }
}
