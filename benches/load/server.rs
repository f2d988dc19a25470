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
//! - B: the baseline users compare against: the canonical actix-web-actors
//!   actor (`WebsocketContext` + `StreamHandler`, continuation frames
//!   assembled by hand, 16 MiB frames).
//! - C: actix-ws 0.3, the upstream successor: a task per connection.
//! - R: not WebSocket at all after the handshake: a tokio task per
//!   connection copying bytes back. It shows what the load client can do.

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
use actix_ws_listener::{Bytes, CloseCode, Group, Listener, Message, Socket, WebSocketUpgrade};
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
    super::sys::raise_nofile(65_536);
    match role {
        "A" | "B" | "C" => actix_web::rt::System::new().block_on(run_actix(role.to_owned())),
        "R" => tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(raw::run()),
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
    let server = HttpServer::new(move || {
        let app = App::new()
            .app_data(web::Data::new(hub_a.clone()))
            .app_data(web::Data::new(hub_b.clone()))
            .app_data(web::Data::new(hub_c.clone()));
        match role.as_str() {
            "A" => app
                .route("/", web::get().to(echo_a))
                .route("/broadcast", web::get().to(broadcast_a)),
            "B" => app
                .route("/", web::get().to(echo_b))
                .route("/broadcast", web::get().to(broadcast_b)),
            _ => app
                .route("/", web::get().to(echo_c))
                .route("/broadcast", web::get().to(broadcast_c)),
        }
    })
    .workers(1)
    .backlog(4096)
    .max_connections(100_000)
    .disable_signals()
    .bind(("127.0.0.1", 0))?;
    let port = server.addrs().first().map_or(0, |a| a.port());
    let server = server.run();
    announce(port);
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

// ------------------------------------------------------- R: raw TCP echo

mod raw {
    use tokio::{
        io::{AsyncReadExt, AsyncWriteExt},
        net::{TcpListener, TcpStream},
    };

    pub(super) async fn run() -> std::io::Result<()> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        super::announce(listener.local_addr()?.port());
        loop {
            let (stream, _) = listener.accept().await?;
            tokio::spawn(async move {
                let _ = serve(stream).await;
            });
        }
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
