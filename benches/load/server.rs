//! The servers under test, each run in a child process of its own.
//!
//! Every actix server has one worker (`HttpServer::workers(1)`, a single
//! threaded runtime) and serves two routes: `/` echoes every message, and
//! `/broadcast` echoes too but answers the text message `broadcast` by
//! sending [`BROADCAST_PAYLOAD`] to every socket connected to that route
//! (A through its `Group`, B by `do_send` to every actor's address, C by
//! awaiting `Session::binary` on every session).
//!
//! - A: this crate, a `Listener` doing `let _ = socket.send(message)`.
//! - A2: this crate's async path, an `AsyncListener` with the same body (no
//!   await inside): what an `AsyncListener` costs against a `Listener`.
//! - B: the baseline users compare against: the canonical actix-web-actors
//!   actor (`WebsocketContext` + `StreamHandler`, continuation frames
//!   assembled by hand, 16 MiB frames).
//! - C: actix-ws 0.3, the upstream successor: a task per connection.
//! - T: tokio-tungstenite 0.30, its echo example (`read.forward(write)`)
//!   on a task per connection; broadcast through an unbounded channel per
//!   peer, as its chat example does.
//! - F: fastwebsockets 0.10 on hyper 1, its echo example (`read_frame`,
//!   `write_frame`, `FragmentCollector`); broadcast through a list of
//!   write halves (`unstable-split`), each written in turn.
//! - R: not WebSocket at all after the handshake: a tokio task per
//!   connection copying bytes back. It shows what the load client can do.
//! - X: the actix stack's ceiling: an actix-web handler that answers the
//!   upgrade (`actix_web_actors::ws::handshake`) and streams the request's
//!   payload back as the response body, with no WebSocket work at all (the
//!   client gets its own masked frames back, as from R). What A does on
//!   top of actix-http is A against X.

use std::{
    io::Write as _,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex,
    },
};

use actix::{Actor, ActorContext, Addr, AsyncContext, Handler, StreamHandler};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, Responder};
use actix_web_actors::ws;
use actix_ws_listener::{
    AsyncListener, Bytes, CloseCode, Group, Listener, Message, Socket, WebSocketUpgrade, WsServer,
};
use bytes::BytesMut;
use bytestring::ByteString;

/// The text message that asks a `/broadcast` server to broadcast.
pub const BROADCAST_COMMAND: &str = "broadcast";

/// What a broadcast sends: 128 bytes, binary.
pub static BROADCAST_PAYLOAD: [u8; 128] = {
    let mut payload = [0u8; 128];
    let mut i = 0;
    while i < 128 {
        payload[i] = (i as u8).wrapping_mul(37).wrapping_add(11);
        i += 1;
    }
    payload
};

/// Largest frame the baselines accept, as ours does by default.
const MAX_FRAME: usize = 16 << 20;
/// Largest assembled message, as ours does by default.
const MAX_MESSAGE: usize = 64 << 20;

/// Runs the server `role` until killed: pins itself to core 1, raises the
/// open-file limit, binds 127.0.0.1 on a free port and prints `PORT <n>`.
pub fn run(role: &str) -> std::io::Result<()> {
    super::sys::die_with_parent();
    super::sys::pin_to_core(1);
    super::sys::raise_nofile(super::sys::NOFILE_WANTED);
    let tokio = || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    };
    match role {
        "A" | "A2" | "B" | "C" | "X" | "W" => {
            actix_web::rt::System::new().block_on(run_actix(role.to_owned()))
        }
        "T" => tokio()?.block_on(tungstenite::run()),
        "F" => tokio()?.block_on(fast::run()),
        "R" => tokio()?.block_on(raw::run()),
        other => Err(std::io::Error::other(format!(
            "unknown server role {other:?}"
        ))),
    }
}

fn announce(port: u16) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "PORT {port}");
    let _ = out.flush();
}

async fn run_actix(role: String) -> std::io::Result<()> {
    let hub_a = Group::new();
    let hub_b: HubB = Arc::default();
    let hub_c: HubC = Arc::default();
    let on_ws_server = role == "W";
    let app = move || {
        let app = App::new()
            .app_data(web::Data::new(hub_a.clone()))
            .app_data(web::Data::new(hub_b.clone()))
            .app_data(web::Data::new(hub_c.clone()));
        match role.as_str() {
            "A" | "W" => app
                .route("/", web::get().to(echo_a))
                .route("/broadcast", web::get().to(broadcast_a)),
            "A2" => app.route("/", web::get().to(echo_a2)),
            "X" => app.route("/", web::get().to(echo_x)),
            "B" => app
                .route("/", web::get().to(echo_b))
                .route("/broadcast", web::get().to(broadcast_b)),
            _ => app
                .route("/", web::get().to(echo_c))
                .route("/broadcast", web::get().to(broadcast_c)),
        }
    };
    // W: the same app as A, on WsServer (the connection owns its socket).
    let (addrs, server) = if on_ws_server {
        let server = WsServer::new(app)
            .workers(1)
            .backlog(4096)
            .max_connections(1 << 20)
            .disable_signals()
            .bind(("127.0.0.1", 0))?;
        (server.addrs(), server.run())
    } else {
        let server = HttpServer::new(app)
            .workers(1)
            .backlog(4096)
            .max_connections(1 << 20)
            .disable_signals()
            .bind(("127.0.0.1", 0))?;
        (server.addrs(), server.run())
    };
    announce(addrs.first().map_or(0, |a| a.port()));
    server.await
}

// ---------------------------------------------------------------- A: ours

struct EchoA;

impl Listener for EchoA {
    fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = socket.send(message);
    }
}

async fn echo_a(upgrade: WebSocketUpgrade) -> impl Responder {
    upgrade.listen(EchoA)
}

struct EchoA2;

impl AsyncListener for EchoA2 {
    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = socket.send(message);
    }
}

async fn echo_a2(upgrade: WebSocketUpgrade) -> impl Responder {
    upgrade.listen(EchoA2)
}

/// The crate's own broadcast set: one `Group` shared by every connection.
type HubA = Group;

struct BroadcastA {
    group: Group,
}

impl Listener for BroadcastA {
    fn on_open(&mut self, socket: &Socket) {
        self.group.insert(socket);
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if message.as_text() == Some(BROADCAST_COMMAND) {
            self.group
                .broadcast(Message::binary(Bytes::from_static(&BROADCAST_PAYLOAD)));
        } else {
            let _ = socket.send(message);
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.group.remove(socket);
    }
}

async fn broadcast_a(upgrade: WebSocketUpgrade, group: web::Data<HubA>) -> impl Responder {
    upgrade.listen(BroadcastA {
        group: group.get_ref().clone(),
    })
}

fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

// ------------------------------------------- B: actix-web-actors baseline

type HubB = Arc<Mutex<Vec<Addr<EchoB>>>>;

/// The echo actor as actix-web-actors users write it.
struct EchoB {
    /// A fragmented message being assembled: is it text, and its bytes.
    partial: Option<(bool, BytesMut)>,
    hub: Option<HubB>,
}

impl Actor for EchoB {
    type Context = ws::WebsocketContext<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        if let Some(hub) = &self.hub {
            lock(hub).push(ctx.address());
        }
    }

    fn stopped(&mut self, ctx: &mut Self::Context) {
        if let Some(hub) = &self.hub {
            let me = ctx.address();
            lock(hub).retain(|peer| *peer != me);
        }
    }
}

/// A message pushed to an actor from outside its connection.
struct Broadcast(Bytes);

impl actix::Message for Broadcast {
    type Result = ();
}

impl Handler<Broadcast> for EchoB {
    type Result = ();

    fn handle(&mut self, Broadcast(payload): Broadcast, ctx: &mut Self::Context) {
        ctx.binary(payload);
    }
}

impl StreamHandler<Result<ws::Message, ws::ProtocolError>> for EchoB {
    fn handle(&mut self, item: Result<ws::Message, ws::ProtocolError>, ctx: &mut Self::Context) {
        match item {
            Ok(ws::Message::Text(text)) => {
                if let (Some(hub), true) = (&self.hub, text == BROADCAST_COMMAND) {
                    let payload = Bytes::from_static(&BROADCAST_PAYLOAD);
                    for peer in lock(hub).iter() {
                        peer.do_send(Broadcast(payload.clone()));
                    }
                } else {
                    ctx.text(text);
                }
            }
            Ok(ws::Message::Binary(data)) => ctx.binary(data),
            Ok(ws::Message::Continuation(item)) => self.continuation(item, ctx),
            Ok(ws::Message::Ping(data)) => ctx.pong(&data),
            Ok(ws::Message::Pong(_) | ws::Message::Nop) => {}
            Ok(ws::Message::Close(reason)) => {
                ctx.close(reason);
                ctx.stop();
            }
            Err(_) => ctx.stop(),
        }
    }
}

impl EchoB {
    fn continuation(&mut self, item: actix_http::ws::Item, ctx: &mut ws::WebsocketContext<Self>) {
        use actix_http::ws::Item;
        match item {
            Item::FirstText(data) => self.partial = Some((true, BytesMut::from(&data[..]))),
            Item::FirstBinary(data) => self.partial = Some((false, BytesMut::from(&data[..]))),
            Item::Continue(data) => self.extend(&data, ctx),
            Item::Last(data) => {
                self.extend(&data, ctx);
                if let Some((text, buf)) = self.partial.take() {
                    if !text {
                        ctx.binary(buf.freeze());
                    } else if let Ok(text) = ByteString::try_from(buf.freeze()) {
                        ctx.text(text);
                    } else {
                        ctx.close(Some(ws::CloseCode::Invalid.into()));
                        ctx.stop();
                    }
                }
            }
        }
    }

    fn extend(&mut self, data: &[u8], ctx: &mut ws::WebsocketContext<Self>) {
        match &mut self.partial {
            Some((_, buf)) if buf.len() + data.len() <= MAX_MESSAGE => buf.extend_from_slice(data),
            Some(_) => {
                ctx.close(Some(ws::CloseCode::Size.into()));
                ctx.stop();
            }
            None => {
                ctx.close(Some(ws::CloseCode::Protocol.into()));
                ctx.stop();
            }
        }
    }
}

fn start_b(
    req: &HttpRequest,
    payload: web::Payload,
    hub: Option<HubB>,
) -> Result<HttpResponse, actix_web::Error> {
    let actor = EchoB { partial: None, hub };
    ws::WsResponseBuilder::new(actor, req, payload)
        .frame_size(MAX_FRAME)
        .start()
}

async fn echo_b(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    start_b(&req, payload, None)
}

async fn broadcast_b(
    req: HttpRequest,
    payload: web::Payload,
    hub: web::Data<HubB>,
) -> Result<HttpResponse, actix_web::Error> {
    start_b(&req, payload, Some(hub.get_ref().clone()))
}

// ------------------------------------------------ X: actix-http's ceiling

/// Upgrades and hands the raw payload stream back as the body: actix-http
/// reads, buffers and writes, and nothing parses, unmasks or frames.
async fn echo_x(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    Ok(ws::handshake(&req)?.streaming(payload))
}

// ------------------------------------------------------------ C: actix-ws

type HubC = Arc<Mutex<Vec<(u64, actix_ws::Session)>>>;

static NEXT_C: AtomicU64 = AtomicU64::new(0);

fn start_c(
    req: &HttpRequest,
    payload: web::Payload,
    hub: Option<HubC>,
) -> Result<HttpResponse, actix_web::Error> {
    use actix_ws::AggregatedMessage;

    let (response, mut session, stream) = actix_ws::handle(req, payload)?;
    let mut stream = stream
        .max_frame_size(MAX_FRAME)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE);
    let id = NEXT_C.fetch_add(1, Ordering::Relaxed);
    if let Some(hub) = &hub {
        lock(hub).push((id, session.clone()));
    }
    actix_web::rt::spawn(async move {
        let mut close = None;
        while let Some(item) = stream.recv().await {
            let sent = match item {
                Ok(AggregatedMessage::Text(text)) => match &hub {
                    Some(hub) if text == BROADCAST_COMMAND => {
                        let peers: Vec<_> = lock(hub).iter().map(|(_, s)| s.clone()).collect();
                        let payload = Bytes::from_static(&BROADCAST_PAYLOAD);
                        for mut peer in peers {
                            let _ = peer.binary(payload.clone()).await;
                        }
                        Ok(())
                    }
                    _ => session.text(text).await,
                },
                Ok(AggregatedMessage::Binary(data)) => session.binary(data).await,
                Ok(AggregatedMessage::Ping(data)) => session.pong(&data).await,
                Ok(AggregatedMessage::Pong(_)) => Ok(()),
                Ok(AggregatedMessage::Close(reason)) => {
                    close = reason;
                    break;
                }
                Err(_) => break,
            };
            if sent.is_err() {
                break;
            }
        }
        if let Some(hub) = &hub {
            lock(hub).retain(|(peer, _)| *peer != id);
        }
        let _ = session.close(close).await;
    });
    Ok(response)
}

async fn echo_c(req: HttpRequest, payload: web::Payload) -> Result<HttpResponse, actix_web::Error> {
    start_c(&req, payload, None)
}

async fn broadcast_c(
    req: HttpRequest,
    payload: web::Payload,
    hub: web::Data<HubC>,
) -> Result<HttpResponse, actix_web::Error> {
    start_c(&req, payload, Some(hub.get_ref().clone()))
}

/// Binds 127.0.0.1 on a free port, says which, and hands every accepted
/// connection to `serve` on a task of its own (tokio-based servers).
async fn accept_loop<F, Fut>(serve: F) -> std::io::Result<()>
where
    F: Fn(tokio::net::TcpStream) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    announce(listener.local_addr()?.port());
    loop {
        let (stream, _) = listener.accept().await?;
        tokio::spawn(serve(stream));
    }
}

// -------------------------------------------------- T: tokio-tungstenite

mod tungstenite {
    use std::sync::{Arc, Mutex};

    use futures::channel::mpsc::{unbounded, UnboundedSender};
    use futures_util::{future, StreamExt, TryStreamExt};
    use tokio::net::TcpStream;
    use tokio_tungstenite::tungstenite::{handshake::server, Message};

    use super::{lock, BROADCAST_COMMAND, BROADCAST_PAYLOAD};

    /// Every `/broadcast` peer's sender, by connection number.
    type Hub = Arc<Mutex<Vec<(u64, UnboundedSender<Message>)>>>;

    pub(super) async fn run() -> std::io::Result<()> {
        let hub = Hub::default();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        super::accept_loop(move |stream| {
            let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            serve(stream, hub.clone(), id)
        })
        .await
    }

    async fn serve(stream: TcpStream, hub: Hub, id: u64) {
        let _ = stream.set_nodelay(true);
        let mut broadcast = false;
        // The callback's signature is tungstenite's (its error is a response).
        #[allow(clippy::result_large_err)]
        let path = |request: &server::Request, response: server::Response| {
            broadcast = request.uri().path() == "/broadcast";
            Ok(response)
        };
        // tungstenite's defaults are 16 MiB frames and 64 MiB messages, as ours.
        let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, path).await else {
            return;
        };
        let (write, read) = ws.split();
        if !broadcast {
            // tokio-tungstenite's echo example.
            let _ = read
                .try_filter(|m| future::ready(m.is_text() || m.is_binary()))
                .forward(write)
                .await;
            return;
        }
        // Its chat example: a channel per peer, drained into the socket.
        let (tx, rx) = unbounded();
        lock(&hub).push((id, tx.clone()));
        let writer = tokio::spawn(rx.map(Ok).forward(write));
        let _ = read
            .try_for_each(|message| {
                if message.to_text().ok() == Some(BROADCAST_COMMAND) {
                    let payload = Message::binary(&BROADCAST_PAYLOAD[..]);
                    for (_, peer) in lock(&hub).iter() {
                        let _ = peer.unbounded_send(payload.clone());
                    }
                } else if message.is_text() || message.is_binary() {
                    let _ = tx.unbounded_send(message);
                }
                future::ok(())
            })
            .await;
        lock(&hub).retain(|(peer, _)| *peer != id);
        writer.abort();
    }
}

// ------------------------------------------------ F: fastwebsockets 0.10

mod fast {
    use std::{
        convert::Infallible,
        sync::{Arc, Mutex},
    };

    use fastwebsockets::{
        upgrade, FragmentCollector, FragmentCollectorRead, Frame, OpCode, Payload, WebSocketError,
        WebSocketWrite,
    };
    use http_body_util::Empty;
    use hyper::{
        body::{Bytes, Incoming},
        server::conn::http1,
        service::service_fn,
        upgrade::Upgraded,
        Request, Response, StatusCode,
    };
    use hyper_util::rt::TokioIo;
    use tokio::io::WriteHalf;

    use super::{lock, BROADCAST_COMMAND, BROADCAST_PAYLOAD};

    type Writer = Arc<tokio::sync::Mutex<WebSocketWrite<WriteHalf<TokioIo<Upgraded>>>>>;
    /// Every `/broadcast` peer's write half, by connection number.
    type Hub = Arc<Mutex<Vec<(u64, Writer)>>>;

    pub(super) async fn run() -> std::io::Result<()> {
        let hub = Hub::default();
        let next = Arc::new(std::sync::atomic::AtomicU64::new(0));
        super::accept_loop(move |stream| {
            let (hub, next) = (hub.clone(), next.clone());
            async move {
                let _ = stream.set_nodelay(true);
                let service = service_fn(move |request| {
                    let id = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    std::future::ready(handshake(request, hub.clone(), id))
                });
                let _ = http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            }
        })
        .await
    }

    fn handshake(
        mut request: Request<Incoming>,
        hub: Hub,
        id: u64,
    ) -> Result<Response<Empty<Bytes>>, Infallible> {
        let broadcast = request.uri().path() == "/broadcast";
        let Ok((response, upgrade)) = upgrade::upgrade(&mut request) else {
            let mut refused = Response::new(Empty::new());
            *refused.status_mut() = StatusCode::BAD_REQUEST;
            return Ok(refused);
        };
        // As fastwebsockets' echo example; its default message limit is
        // 64 MiB, as ours.
        tokio::spawn(tokio::task::unconstrained(async move {
            let Ok(ws) = upgrade.await else { return };
            if broadcast {
                let _ = serve_broadcast(ws, hub, id).await;
            } else {
                let _ = echo(FragmentCollector::new(ws)).await;
            }
        }));
        Ok(response)
    }

    async fn echo(mut ws: FragmentCollector<TokioIo<Upgraded>>) -> Result<(), WebSocketError> {
        loop {
            let frame = ws.read_frame().await?;
            match frame.opcode {
                OpCode::Close => return Ok(()),
                OpCode::Text | OpCode::Binary => ws.write_frame(frame).await?,
                _ => {}
            }
        }
    }

    async fn serve_broadcast(
        ws: fastwebsockets::WebSocket<TokioIo<Upgraded>>,
        hub: Hub,
        id: u64,
    ) -> Result<(), WebSocketError> {
        let (read, write) = ws.split(tokio::io::split);
        let mut read = FragmentCollectorRead::new(read);
        let writer: Writer = Arc::new(tokio::sync::Mutex::new(write));
        lock(&hub).push((id, writer.clone()));
        let result = async {
            loop {
                let mut obligated = |frame: Frame<'static>| {
                    let writer = writer.clone();
                    async move { writer.lock().await.write_frame(frame).await }
                };
                let frame = read.read_frame(&mut obligated).await?;
                match frame.opcode {
                    OpCode::Close => return Ok(()),
                    OpCode::Text if &frame.payload[..] == BROADCAST_COMMAND.as_bytes() => {
                        let peers: Vec<Writer> =
                            lock(&hub).iter().map(|(_, w)| w.clone()).collect();
                        for peer in peers {
                            let payload = Payload::Borrowed(&BROADCAST_PAYLOAD);
                            let _ = peer.lock().await.write_frame(Frame::binary(payload)).await;
                        }
                    }
                    OpCode::Text | OpCode::Binary => writer.lock().await.write_frame(frame).await?,
                    _ => {}
                }
            }
        }
        .await;
        lock(&hub).retain(|(peer, _)| *peer != id);
        result
    }
}

// ------------------------------------------------------- R: raw TCP echo

mod raw {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::TcpStream,
    };

    pub(super) async fn run() -> std::io::Result<()> {
        super::accept_loop(|stream| async move {
            let _ = serve(stream).await;
        })
        .await
    }

    /// Answers the upgrade, then copies every byte back: the client sees its
    /// own masked frames and unmasks them.
    async fn serve(mut stream: TcpStream) -> std::io::Result<()> {
        let mut buf = vec![0u8; 256 << 10];
        let mut filled = 0;
        let end = loop {
            let n = stream.read(&mut buf[filled..]).await?;
            if n == 0 {
                return Ok(());
            }
            filled += n;
            if let Some(end) = buf[..filled].windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if filled == buf.len() {
                return Ok(());
            }
        };
        let head = String::from_utf8_lossy(&buf[..end]);
        let key = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("sec-websocket-key")
                    .then(|| value.trim().to_owned())
            })
            .unwrap_or_default();
        let accept = actix_http::ws::hash_key(key.as_bytes());
        let response = format!(
            "HTTP/1.1 101 Switching Protocols\r\nupgrade: websocket\r\nconnection: Upgrade\r\n\
             sec-websocket-accept: {}\r\n\r\n",
            String::from_utf8_lossy(&accept)
        );
        stream.write_all(response.as_bytes()).await?;
        stream.write_all(&buf[end..filled]).await?;
        loop {
            let n = stream.read(&mut buf).await?;
            if n == 0 {
                return Ok(());
            }
            stream.write_all(&buf[..n]).await?;
        }
    }
}
