//! A chat room: one `Listener` struct per connection holding the user's
//! name, and one `Group` of every connected socket that each message is
//! broadcast to. Shows per-connection state in a listener, `Group::broadcast`
//! (everyone, the sender too), `Group::broadcast_except` (everyone else),
//! per-route settings (`WebSocketUpgrade::configure`) that keep chat
//! messages small and slow clients bounded, and a graceful shutdown: Ctrl-C
//! says goodbye (1001) to everyone before the server stops.
//!
//! Protocol, all text frames:
//! - the client sends a line; every client gets `NAME: line`;
//! - `/name NEW` renames you: the others get `* OLD is now NEW`, you get
//!   `* you are now NEW`;
//! - when someone connects the others get `* NAME joined` and the newcomer
//!   gets `* welcome, NAME (N online)`; when someone leaves, `* NAME left`.
//!
//! The name comes from the `?name=` query parameter of the WebSocket URL
//! (`guest-ID` without one).
//!
//! Run:   cargo run --release --example chat      (BIND=127.0.0.1:8080 by default)
//! Scale out: with `REDIS_URL` set, the room is a `ClusterGroup` shared
//!        through Redis (examples build with the crate's `redis` feature), so
//!        chat processes on several ports (or machines) are one room;
//!        `N online` counts this process. No Redis at `REDIS_URL`: the chat
//!        says so in one line and exits with status 1:
//!        REDIS_URL=redis://127.0.0.1:6379/ BIND=127.0.0.1:8080 cargo run --release --example chat
//!        REDIS_URL=redis://127.0.0.1:6379/ BIND=127.0.0.1:8081 cargo run --release --example chat
//!        (a build without the feature ignores REDIS_URL with a warning).
//! Talk:  open http://127.0.0.1:8080/ in two browser tabs (the page is
//!        examples/chat/index.html, compiled into the binary: no build step,
//!        works offline), or from a terminal:
//!        websocat 'ws://127.0.0.1:8080/ws?name=alice'

use std::{process::ExitCode, time::Duration};

use actix_web::{middleware::Logger, web, App, HttpResponse, HttpServer, Responder};
#[cfg(feature = "redis")]
use actix_ws_listener::Cluster;
use actix_ws_listener::{
    run_with_graceful_shutdown, CloseCode, Compression, Group, Listener, Message, Socket,
    WebSocketUpgrade,
};
use serde::Deserialize;

/// The page, served at `/`.
const INDEX_HTML: &str = include_str!("chat/index.html");

/// Longest name kept, in characters.
const MAX_NAME: usize = 24;

/// One connection's state: who is talking, and the room they talk in.
struct Chatter {
    name: String,
    room: Group,
}

/// The room of this process: with `REDIS_URL` (and the `redis` feature,
/// which the examples build with) a group named `chat` shared through
/// Redis with every other chat process, otherwise a group of this process
/// alone. Either way a `Group`: the rest of the program does not care.
async fn open_room() -> Result<Group, String> {
    match std::env::var("REDIS_URL") {
        Ok(url) => shared_room(&url).await,
        Err(_) => Ok(Group::new()),
    }
}

#[cfg(feature = "redis")]
async fn shared_room(url: &str) -> Result<Group, String> {
    let advice = |error| format!("{error}; start redis-server there or unset REDIS_URL");
    let cluster = Cluster::connect(url).await.map_err(advice)?;
    let room = cluster.group("chat").await.map_err(advice)?;
    log::info!(
        "room shared through Redis (node {:032x})",
        cluster.node_id()
    );
    Ok(room)
}

#[cfg(not(feature = "redis"))]
async fn shared_room(url: &str) -> Result<Group, String> {
    log::warn!(
        "REDIS_URL={url} is ignored: this build has no `redis` feature (add --features redis); the room stays in this process"
    );
    Ok(Group::new())
}

/// Everyone, or everyone but `skip`; returns how many of this process's
/// members missed the line because they are not reading. For a shared room,
/// warns when Redis did not take the line (only this process heard it).
fn say(room: &Group, skip: Option<&Socket>, line: String) -> usize {
    let report = match skip {
        Some(skip) => room.broadcast_except(skip, line),
        None => room.broadcast(line),
    };
    let missed = report.backpressured;
    #[cfg(feature = "redis")]
    if room.name().is_some() {
        actix_web::rt::spawn(async move {
            if let Err(error) = report.published().await {
                log::warn!("a line reached only this process: {error}");
            }
        });
    }
    missed
}

impl Listener for Chatter {
    fn on_open(&mut self, socket: &Socket) {
        if self.name.is_empty() {
            self.name = format!("guest-{}", socket.id());
        }
        self.room.insert(socket);
        log::info!("{} joined ({} online)", self.name, self.room.len());
        say(&self.room, Some(socket), format!("* {} joined", self.name));
        tell(
            socket,
            format!("* welcome, {} ({} online)", self.name, self.room.len()),
        );
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        let Some(text) = message.as_text() else {
            tell(socket, "* only text messages are understood here");
            return;
        };
        let text = text.trim();
        if text.is_empty() {
            return;
        }
        if let Some(new_name) = text.strip_prefix("/name ") {
            self.rename(socket, new_name);
        } else if text == "/name" {
            self.rename(socket, "");
        } else if text.starts_with('/') {
            tell(socket, "* unknown command; try /name NEW");
        } else {
            // One String for everyone: the group shares it, it is not copied per member.
            let missed = say(&self.room, None, format!("{}: {text}", self.name));
            if missed > 0 {
                log::warn!("{missed} slow clients missed a message");
            }
        }
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, _reason: &str) {
        self.room.remove(socket);
        log::info!(
            "{} left with {code} ({} online)",
            self.name,
            self.room.len()
        );
        say(&self.room, None, format!("* {} left", self.name));
    }
}

impl Chatter {
    fn rename(&mut self, socket: &Socket, requested: &str) {
        match clean_name(requested) {
            Some(name) if name != self.name => {
                let old = std::mem::replace(&mut self.name, name);
                say(
                    &self.room,
                    Some(socket),
                    format!("* {old} is now {}", self.name),
                );
                tell(socket, format!("* you are now {}", self.name));
            }
            Some(_) => {
                tell(socket, format!("* you are already {}", self.name));
            }
            None => {
                tell(
                    socket,
                    "* usage: /name NEW (letters, digits, - _ . and spaces)",
                );
            }
        }
    }
}

/// Sends `text` to this client alone. It fails only when the client has
/// left (its `on_close` is on the way) or is not reading (its outbound
/// buffer is full): nobody is listening, so note it and go on.
fn tell(socket: &Socket, text: impl Into<Message>) {
    if let Err(error) = socket.send(text) {
        log::debug!("ws {}: not told: {error}", socket.id());
    }
}

/// Keeps letters, digits, `-`, `_`, `.` and inner spaces, at most
/// [`MAX_NAME`] characters; `None` if nothing is left. No `:` can get in,
/// so `NAME: text` always splits at the first `: `.
fn clean_name(raw: &str) -> Option<String> {
    let kept: String = raw
        .chars()
        .filter(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ' '))
        .collect();
    let name: String = kept.trim().chars().take(MAX_NAME).collect();
    let name = name.trim_end();
    (!name.is_empty()).then(|| name.to_owned())
}

#[derive(Deserialize)]
struct JoinQuery {
    name: Option<String>,
}

async fn ws(
    upgrade: WebSocketUpgrade,
    query: web::Query<JoinQuery>,
    room: web::Data<Group>,
) -> impl Responder {
    let name = query
        .name
        .as_deref()
        .and_then(clean_name)
        .unwrap_or_default();
    upgrade
        // Starts from the app's settings (none here, but an app-wide
        // `allowed_origins` would still apply) and tunes them for chat.
        .configure(|config| {
            config
                // A chat line is small; anything bigger is an abuse (closes with 1009).
                .max_message_size(16 * 1024)
                // A client that stops reading holds at most this much of the room's traffic.
                .max_outbound_buffer(256 * 1024)
                // Keeps idle connections alive through proxies that drop silent ones.
                .keepalive(Duration::from_secs(30))
                // Browsers offer permessage-deflate; lines of 128 bytes or
                // more go out compressed.
                .compression(Compression::default())
        })
        .listen(Chatter {
            name,
            room: room.get_ref().clone(),
        })
}

async fn index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(INDEX_HTML)
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit.
    let room = match open_room().await {
        Ok(room) => web::Data::new(room),
        Err(why) => {
            eprintln!("chat: {why}");
            return ExitCode::FAILURE;
        }
    };
    let server = HttpServer::new(move || {
        App::new()
            .wrap(Logger::default())
            .app_data(room.clone())
            .route("/", web::get().to(index))
            .route("/ws", web::get().to(ws))
    })
    // Close TCP as soon as a close handshake is done, instead of lingering
    // up to actix-web's default 1 s for the client to close first.
    .client_disconnect_timeout(Duration::ZERO)
    // run_with_graceful_shutdown takes SIGINT and SIGTERM: on either, every
    // WebSocket is closed with 1001 (and gets its on_close), then the server stops.
    .disable_signals();
    let server = match server.bind(&bind) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("chat: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("chat on http://{bind}/ (WebSocket at ws://{bind}/ws?name=NAME)");
    match run_with_graceful_shutdown(server.run()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
