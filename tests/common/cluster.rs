//! Helpers for the S18 and S21 tests: a real `redis-server` on a free port
//! (killed by its PID on drop), an actix-web node whose `/ws` route joins a
//! clustered `Group`, an awc WebSocket client, and the chat example run as a
//! separate process.
//!
//! Every wait has the shared deadline ([`TIMEOUT`]) and fails with a
//! message saying what never happened; none is a timing assertion.

use std::{
    future::Future,
    io::{Read, Write},
    net::{Shutdown, SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        mpsc, Arc, Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpServer};
use actix_ws_listener::{CloseCode, Config, Group, Listener, Message, Socket, WebSocketUpgrade};
use futures_util::{SinkExt, StreamExt};

pub use super::{build_example, free_port, ExampleProcess, TIMEOUT};

/// Polls `attempt` until it gives `Some`, failing the test after
/// [`TIMEOUT`] with `what`.
pub async fn wait_for<T, F, Fut>(what: &str, attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    wait_for_within(TIMEOUT, what, attempt).await
}

/// [`wait_for`] with a deadline of `within` instead of [`TIMEOUT`], for a
/// wait whose bound is part of what is tested (presence after a SIGKILL).
pub async fn wait_for_within<T, F, Fut>(within: Duration, what: &str, mut attempt: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + within;
    loop {
        if let Some(value) = attempt().await {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        actix_rt::time::sleep(Duration::from_millis(10)).await;
    }
}

// ---------------------------------------------------------------------------
// Redis
// ---------------------------------------------------------------------------

/// A `redis-server` of this test alone, on a free port, no persistence;
/// killed (by its PID) when dropped.
pub struct Redis {
    port: u16,
    child: Option<Child>,
}

impl Redis {
    pub fn start() -> Redis {
        let mut redis = Redis {
            port: free_port(),
            child: None,
        };
        redis.start_again();
        redis
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    /// Kills the server (an outage).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and waits until it answers.
    pub fn start_again(&mut self) {
        self.stop();
        let port = self.port.to_string();
        let child = Command::new("redis-server")
            .args([
                "--port",
                &port,
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .spawn()
            .expect("redis-server on PATH (scripts/test.sh installs it)");
        self.child = Some(child);
        let deadline = Instant::now() + TIMEOUT;
        loop {
            let ping = redis::Client::open(self.url())
                .and_then(|client| client.get_connection())
                .and_then(|mut conn| redis::cmd("PING").query::<String>(&mut conn));
            if ping.is_ok() {
                return;
            }
            if let Some(Ok(Some(status))) = self.child.as_mut().map(Child::try_wait) {
                panic!("redis-server exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "redis-server did not answer: {ping:?}"
            );
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Runs one command on this server from a connection of its own, for
    /// tests that look at the keys the cluster leaves (`PTTL`, `EXISTS`).
    pub fn query<T: redis::FromRedisValue>(&self, args: &[&str]) -> T {
        let mut conn = redis::Client::open(self.url())
            .and_then(|client| client.get_connection())
            .expect("a connection to the test's redis-server");
        let mut command = redis::cmd(args[0]);
        for arg in &args[1..] {
            command.arg(*arg);
        }
        command
            .query(&mut conn)
            .unwrap_or_else(|error| panic!("{args:?}: {error}"))
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A TCP relay in front of a [`Redis`] whose answers arrive `delay` late
/// (a Redis in another zone), in order, with pipelining intact: a round
/// trip costs `delay` whatever it carries. The delay can change while
/// connections are open; everything stops when dropped.
pub struct SlowLink {
    port: u16,
    delay_ms: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
}

impl SlowLink {
    pub fn start(redis: &Redis) -> SlowLink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the slow link");
        listener.set_nonblocking(true).expect("nonblocking");
        let link = SlowLink {
            port: listener.local_addr().expect("addr").port(),
            delay_ms: Arc::new(AtomicU64::new(0)),
            stop: Arc::new(AtomicBool::new(false)),
            open: Arc::new(Mutex::new(Vec::new())),
        };
        let upstream = format!("127.0.0.1:{}", redis.port);
        let (delay_ms, stop, open) = (
            Arc::clone(&link.delay_ms),
            Arc::clone(&link.stop),
            Arc::clone(&link.open),
        );
        thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let client = match listener.accept() {
                    Ok((client, _)) => client,
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => {
                        thread::sleep(Duration::from_millis(5));
                        continue;
                    }
                    Err(error) => panic!("slow link: accept: {error}"),
                };
                client.set_nonblocking(false).expect("blocking");
                let server = TcpStream::connect(&upstream).expect("slow link: connect to redis");
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                {
                    let mut open = open.lock().expect("open");
                    open.push(client.try_clone().expect("clone"));
                    open.push(server.try_clone().expect("clone"));
                }
                relay(
                    client.try_clone().expect("clone"),
                    server.try_clone().expect("clone"),
                    None,
                );
                relay(server, client, Some(Arc::clone(&delay_ms)));
            }
        });
        link
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn set_delay(&self, delay: Duration) {
        self.delay_ms
            .store(delay.as_millis() as u64, Ordering::Relaxed);
    }
}

impl Drop for SlowLink {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for stream in self.open.lock().expect("open").drain(..) {
            let _ = stream.shutdown(Shutdown::Both);
        }
    }
}

/// Copies `from` to `to` until either ends; with `delay`, each chunk is
/// written that long after it was read, in order.
fn relay(mut from: TcpStream, mut to: TcpStream, delay_ms: Option<Arc<AtomicU64>>) {
    let (chunks, due) = mpsc::channel::<(Instant, Vec<u8>)>();
    thread::spawn(move || {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            let delay = delay_ms
                .as_ref()
                .map_or(0, |delay| delay.load(Ordering::Relaxed));
            if chunks
                .send((
                    Instant::now() + Duration::from_millis(delay),
                    buf[..n].to_vec(),
                ))
                .is_err()
            {
                break;
            }
        }
    });
    thread::spawn(move || {
        while let Ok((at, chunk)) = due.recv() {
            thread::sleep(at.saturating_duration_since(Instant::now()));
            if to.write_all(&chunk).is_err() {
                break;
            }
        }
        let _ = to.shutdown(Shutdown::Write);
    });
}

// ---------------------------------------------------------------------------
// A node: an actix-web server whose members join a Group
// ---------------------------------------------------------------------------

/// Joins the group on open and tracks the socket in its presence with
/// metadata `m<ID>` (then sends `joined`); relays each message with
/// `broadcast`, or `broadcast_except` the sender; leaves and untracks on
/// close.
struct Member {
    room: Group,
    except_sender: bool,
    /// `?since=OFFSET` on the URL: recover from there (S21).
    since: Option<String>,
}

impl Listener for Member {
    fn on_open(&mut self, socket: &Socket) {
        match &self.since {
            // The replay is a task of this thread: it starts after `joined`.
            Some(since) => {
                self.room.recover(socket, since);
            }
            None => {
                self.room.insert(socket);
            }
        }
        self.room.track(socket, format!("m{}", socket.id()));
        socket
            .send("joined")
            .expect("a new connection takes a message");
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if self.except_sender {
            self.room.broadcast_except(socket, message);
        } else {
            self.room.broadcast(message);
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.room.remove(socket);
        self.room.untrack(socket);
    }
}

/// A real actix-web server (two workers, so members of one node live on
/// different threads) in its own thread; stopped when dropped.
pub struct Node {
    addr: SocketAddr,
    handle: ServerHandle,
}

impl Node {
    pub fn start(room: Group) -> Node {
        Node::start_with(room, false)
    }

    pub fn start_with(room: Group, except_sender: bool) -> Node {
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            actix_rt::System::new().block_on(async move {
                let config = Config::default();
                let server = HttpServer::new(move || {
                    let room = room.clone();
                    App::new().app_data(config.clone()).route(
                        "/ws",
                        web::get().to(
                            move |request: actix_web::HttpRequest, upgrade: WebSocketUpgrade| {
                                let room = room.clone();
                                let since = request
                                    .query_string()
                                    .split('&')
                                    .find_map(|pair| pair.strip_prefix("since="))
                                    .map(str::to_owned);
                                async move {
                                    upgrade.listen(Member {
                                        room,
                                        except_sender,
                                        since,
                                    })
                                }
                            },
                        ),
                    )
                })
                .workers(2)
                .disable_signals()
                .shutdown_timeout(1)
                .bind("127.0.0.1:0")
                .expect("bind");
                let addr = server.addrs()[0];
                let server = server.run();
                tx.send((addr, server.handle())).expect("test gone");
                let _ = server.await;
            })
        });
        let (addr, handle) = rx.recv_timeout(TIMEOUT).expect("node did not start");
        Node { addr, handle }
    }

    /// A client connected to this node and confirmed a member.
    pub async fn join(&self) -> Client {
        let mut client = Client::connect(&format!("ws://{}/ws", self.addr)).await;
        assert_eq!(client.recv().await, Line::Text("joined".into()));
        client
    }

    /// A client that comes back with the offset of the last message it saw
    /// (S21): the node recovers it with [`Group::recover`].
    pub async fn rejoin(&self, since: &str) -> Client {
        let mut client = Client::connect(&format!("ws://{}/ws?since={since}", self.addr)).await;
        assert_eq!(client.recv().await, Line::Text("joined".into()));
        client
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

// ---------------------------------------------------------------------------
// Client
// ---------------------------------------------------------------------------

/// A message as a client reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Line {
    Text(String),
    Binary(Vec<u8>),
}

/// An awc WebSocket client.
pub struct Client {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl Client {
    /// Sends a close frame and waits for the server's, so that the
    /// server has run `on_close` when this returns.
    pub async fn close(mut self) {
        self.framed
            .send(awc::ws::Message::Close(None))
            .await
            .expect("send close");
        while let Some(Ok(frame)) = self.framed.next().await {
            if matches!(frame, awc::ws::Frame::Close(_)) {
                break;
            }
        }
    }

    /// The next text message, which must be one.
    pub async fn recv_text(&mut self) -> String {
        match self.recv().await {
            Line::Text(text) => text,
            other => panic!("text expected, got {other:?}"),
        }
    }

    pub async fn connect(url: &str) -> Client {
        let (_, framed) = awc::Client::new()
            .ws(url)
            .connect()
            .await
            .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
        Client { framed }
    }

    pub async fn send(&mut self, text: &str) {
        self.framed
            .send(awc::ws::Message::Text(text.to_owned().into()))
            .await
            .expect("send");
    }

    pub async fn send_binary(&mut self, bytes: &[u8]) {
        self.framed
            .send(awc::ws::Message::Binary(bytes.to_vec().into()))
            .await
            .expect("send");
    }

    /// The next text or binary message; fails the test after [`TIMEOUT`].
    pub async fn recv(&mut self) -> Line {
        self.try_recv(TIMEOUT)
            .await
            .expect("no message before the deadline")
    }

    /// The next text or binary message, if one comes within `wait`.
    pub async fn try_recv(&mut self, wait: Duration) -> Option<Line> {
        let deadline = tokio::time::Instant::now() + wait;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .ok()?;
            match frame {
                Some(Ok(awc::ws::Frame::Text(text))) => {
                    return Some(Line::Text(String::from_utf8(text.to_vec()).expect("UTF-8")))
                }
                Some(Ok(awc::ws::Frame::Binary(bytes))) => {
                    return Some(Line::Binary(bytes.to_vec()))
                }
                Some(Ok(awc::ws::Frame::Ping(_) | awc::ws::Frame::Pong(_))) => {}
                other => panic!("connection ended: {other:?}"),
            }
        }
    }
}

// ---------------------------------------------------------------------------
// The chat example as a process
// ---------------------------------------------------------------------------

/// One chat example process on a free port, sharing its room through
/// Redis; killed when dropped.
pub struct ChatProcess(ExampleProcess);

impl ChatProcess {
    /// Starts it and waits until it accepts connections (it opens its room,
    /// subscribed, before it binds).
    pub fn start(exe: &PathBuf, redis_url: &str) -> ChatProcess {
        ChatProcess(ExampleProcess::start(exe, &[("REDIS_URL", redis_url)]))
    }

    pub fn url(&self, name: &str) -> String {
        format!("ws://{}/ws?name={name}", self.0.addr)
    }

    /// The URL of the JSON mode.
    pub fn json_url(&self, name: &str) -> String {
        format!("ws://{}/ws?name={name}&format=json", self.0.addr)
    }

    /// Kills the process with SIGKILL: no close frame, no goodbye to Redis.
    pub fn kill(self) {
        drop(self.0);
    }
}
