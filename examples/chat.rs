//! A chat room: one `Listener` struct per connection holding the user's
//! name, and one `Group` of every connected socket that each message is
//! broadcast to. Shows per-connection state in a listener, `Group::broadcast`
//! (everyone, the sender too), `Group::broadcast_except` (everyone else),
//! per-route settings (`WebSocketUpgrade::configure`) that keep chat
//! messages small and slow clients bounded, and a graceful shutdown: Ctrl-C
//! says goodbye (1001) to everyone before the server stops.
//!
//! Protocol, all text frames. The client always sends plain text lines
//! and commands; the server answers in one of two formats.
//!
//! Text (the default):
//! - the client sends a line; every client gets `NAME: line`;
//! - `/name NEW` renames you: the others get `* OLD is now NEW`, you get
//!   `* you are now NEW`;
//! - when someone connects the others get `* NAME joined` and the newcomer
//!   gets `* welcome, NAME (N online)`; when someone leaves, `* NAME left`;
//! - `/who` answers `* online: A, B, ...` (sorted).
//!
//! JSON (`?format=json`), one object per text frame:
//! `{"type":"welcome","name":N,"online":K}` first, then
//! `{"type":"line","id":ID,"name":N,"text":T}`, `{"type":"join","name":N}`,
//! `{"type":"leave","name":N}`, `{"type":"rename","id":ID,"from":A,"to":B}`,
//! and `{"type":"who","names":[...]}` (sorted) in answer to `/who`.
//!
//! History: the JSON room keeps its last 1,000 lines and renames, none
//! older than 5 minutes (`Group::with_history`, or in Redis with
//! `Cluster::group_with_history`). `ID` is an opaque string, the line's
//! offset: a client that comes back with `&since=ID` (the last `ID` it saw)
//! gets, after the welcome, exactly the lines and renames it missed, in
//! order, then live ones, each once; or `{"type":"gap"}` when `ID` is too
//! old (or from before a restart of the history), then live ones. The page
//! at `/` does this by itself when its connection drops.
//!
//! `N online`, `K` and `/who` count every member of the room, on every chat
//! process sharing it (presence, `Group::track`); a process that dies
//! without a word leaves them within 15 s, with leave lines for its users.
//!
//! The name comes from the `?name=` query parameter of the WebSocket URL
//! (`guest-ID` without one).
//!
//! Run:   cargo run --release --example chat      (BIND=127.0.0.1:8080 by default;
//!        SERVER=ws serves it on `WsServer` instead of actix-web's `HttpServer`)
//! Scale out: with `REDIS_URL` set, the room is a `Group` shared through
//!        Redis (examples build with the crate's `redis` feature), so chat
//!        processes on several ports (or machines) are one room. No Redis at
//!        `REDIS_URL`: the chat says so in one line and exits with status 1:
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
    run_with_graceful_shutdown, CloseCode, Compression, Group, History, Listener, Message, Offset,
    PresenceEvent, Socket, WebSocketUpgrade, WsServer,
};
use serde::Deserialize;

/// The page, served at `/`.
const INDEX_HTML: &str = include_str!("chat/index.html");

/// Longest name kept, in characters.
const MAX_NAME: usize = 24;

/// What the JSON room keeps for clients that come back (`&since=ID`).
fn history() -> History {
    History::new(1_000, Duration::from_secs(300))
        .render(with_id)
        .gap(r#"{"type":"gap"}"#)
}

/// A recorded JSON object, `{"type":"KIND",...}`, as members see it: with
/// its offset as `"id"` right after the type.
fn with_id(offset: &Offset, message: &Message) -> Message {
    let recorded = message.as_text().unwrap_or_default();
    let id = json(&offset.to_string());
    match recorded.find("\",") {
        Some(end) => {
            let (kind, rest) = recorded.split_at(end + 2);
            Message::from(format!(r#"{kind}"id":{id},{rest}"#))
        }
        None => message.clone(),
    }
}

/// The room: the members who read text, the members who read JSON (two
/// groups, as each line goes out in two formats), and one presence, kept by
/// the text group, that counts both.
#[derive(Clone)]
struct Room {
    text: Group,
    json: Group,
}

/// What a client reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Format {
    Text,
    Json,
}

/// One connection's state: who is talking, in which format, and where.
struct Chatter {
    name: String,
    format: Format,
    /// `Some` when the client came back with `&since=ID`.
    since: Option<String>,
    room: Room,
}

impl Room {
    /// The room of this process: with `REDIS_URL` (and the `redis` feature,
    /// which the examples build with) groups shared through Redis with
    /// every other chat process, otherwise groups of this process alone.
    /// Either way `Group`s: the rest of the program does not care.
    async fn open() -> Result<Room, String> {
        let (text, json) = match std::env::var("REDIS_URL") {
            Ok(url) => shared_groups(&url).await?,
            Err(_) => (Group::new(), Group::with_history(history())),
        };
        let room = Room { text, json };
        // Every process gets every join and leave (a dead process's too,
        // from the presence sweep): each tells its own members.
        let here = room.clone();
        room.text.on_presence(move |event| here.announce(event));
        Ok(room)
    }

    /// Tells this process's members about a join or a leave.
    fn announce(&self, event: &PresenceEvent) {
        let (member, verb, kind) = match event {
            PresenceEvent::Join(member) => (member, "joined", "join"),
            PresenceEvent::Leave(member) => (member, "left", "leave"),
            // A rename: the renamed member's process says it in both formats.
            _ => return,
        };
        let skip = member.local_socket;
        self.text
            .broadcast_here(skip, format!("* {} {verb}", member.meta));
        self.json.broadcast_here(
            skip,
            format!(r#"{{"type":"{kind}","name":{}}}"#, json(&member.meta)),
        );
    }

    /// Everyone in both formats, or everyone but `skip`; returns how many of
    /// this process's members missed it because they are not reading.
    fn say(&self, skip: Option<&Socket>, text: String, json: String) -> usize {
        say(&self.text, skip, text) + say(&self.json, skip, json)
    }

    fn group(&self, format: Format) -> &Group {
        match format {
            Format::Text => &self.text,
            Format::Json => &self.json,
        }
    }
}

#[cfg(feature = "redis")]
async fn shared_groups(url: &str) -> Result<(Group, Group), String> {
    let advice = |error| format!("{error}; start redis-server there or unset REDIS_URL");
    let cluster = Cluster::connect(url).await.map_err(advice)?;
    let text = cluster.group("chat").await.map_err(advice)?;
    let json = cluster
        .group_with_history("chat.json", history())
        .await
        .map_err(advice)?;
    log::info!(
        "room shared through Redis (node {:032x})",
        cluster.node_id()
    );
    Ok((text, json))
}

#[cfg(not(feature = "redis"))]
async fn shared_groups(url: &str) -> Result<(Group, Group), String> {
    log::warn!(
        "REDIS_URL={url} is ignored: this build has no `redis` feature (add --features redis); the room stays in this process"
    );
    Ok((Group::new(), Group::with_history(history())))
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

/// `text` as a JSON string literal.
fn json(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if u32::from(c) < 0x20 => out.push_str(&format!("\\u{:04x}", u32::from(c))),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

impl Listener for Chatter {
    fn on_open(&mut self, socket: &Socket) {
        if self.name.is_empty() {
            self.name = format!("guest-{}", socket.id());
        }
        // Tracked first, so the count includes the newcomer; welcomed before
        // joining the delivery group, so the welcome is the first message
        // (a replay of what a returning client missed comes right after it).
        // The join line reaches everyone else from the presence event.
        self.room.text.track(socket, self.name.clone());
        let online = self.room.text.member_count();
        log::info!("{} joined ({online} online)", self.name);
        match self.format {
            Format::Text => tell(
                socket,
                format!("* welcome, {} ({online} online)", self.name),
            ),
            Format::Json => {
                tell(
                    socket,
                    format!(
                        r#"{{"type":"welcome","name":{},"online":{online}}}"#,
                        json(&self.name)
                    ),
                );
                if let Some(since) = &self.since {
                    // What came after `since`, then live; or a gap.
                    self.room.json.recover(socket, since);
                    return;
                }
            }
        }
        self.room.group(self.format).insert(socket);
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
        } else if text == "/who" {
            self.who(socket);
        } else if text.starts_with('/') {
            tell(socket, "* unknown command; try /name NEW or /who");
        } else {
            // One String per format for everyone: the group shares it, it is
            // not copied per member.
            let missed = self.room.say(
                None,
                format!("{}: {text}", self.name),
                // Recorded; members get it with its "id" (`with_id`).
                format!(
                    r#"{{"type":"line","name":{},"text":{}}}"#,
                    json(&self.name),
                    json(text)
                ),
            );
            if missed > 0 {
                log::warn!("{missed} slow clients missed a message");
            }
        }
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, _reason: &str) {
        self.room.group(self.format).remove(socket);
        // The leave line reaches everyone from the presence event.
        self.room.text.untrack(socket);
        log::info!("{} left with {code}", self.name);
    }
}

impl Chatter {
    fn rename(&mut self, socket: &Socket, requested: &str) {
        match clean_name(requested) {
            Some(name) if name != self.name => {
                let old = std::mem::replace(&mut self.name, name);
                self.room.text.update(socket, self.name.clone());
                self.room.say(
                    Some(socket),
                    format!("* {old} is now {}", self.name),
                    format!(
                        r#"{{"type":"rename","from":{},"to":{}}}"#,
                        json(&old),
                        json(&self.name)
                    ),
                );
                self.tell_own(
                    socket,
                    format!("* you are now {}", self.name),
                    format!(
                        r#"{{"type":"rename","from":{},"to":{}}}"#,
                        json(&old),
                        json(&self.name)
                    ),
                );
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

    /// Who is in the room on every process, sorted.
    fn who(&self, socket: &Socket) {
        let mut names: Vec<String> = self
            .room
            .text
            .members()
            .into_iter()
            .map(|member| member.meta)
            .collect();
        names.sort();
        let listed: Vec<String> = names.iter().map(|name| json(name)).collect();
        self.tell_own(
            socket,
            format!("* online: {}", names.join(", ")),
            format!(r#"{{"type":"who","names":[{}]}}"#, listed.join(",")),
        );
    }

    /// Sends this client the line in its format.
    fn tell_own(&self, socket: &Socket, text: String, json: String) {
        match self.format {
            Format::Text => tell(socket, text),
            Format::Json => tell(socket, json),
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
    format: Option<String>,
    since: Option<String>,
}

async fn ws(
    upgrade: WebSocketUpgrade,
    query: web::Query<JoinQuery>,
    room: web::Data<Room>,
) -> impl Responder {
    let name = query
        .name
        .as_deref()
        .and_then(clean_name)
        .unwrap_or_default();
    let format = match query.format.as_deref() {
        Some("json") => Format::Json,
        _ => Format::Text,
    };
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
            format,
            since: query.since.clone(),
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
    let room = match Room::open().await {
        Ok(room) => web::Data::new(room),
        Err(why) => {
            eprintln!("chat: {why}");
            return ExitCode::FAILURE;
        }
    };
    let app = move || {
        App::new()
            .wrap(Logger::default())
            .app_data(room.clone())
            .route("/", web::get().to(index))
            .route("/ws", web::get().to(ws))
    };
    // run_with_graceful_shutdown takes SIGINT and SIGTERM: on either, every
    // WebSocket is closed with 1001 (and gets its on_close), then the server
    // stops. SERVER=ws serves the same app on WsServer (each WebSocket owns
    // its socket: less memory per connection).
    let bound = if std::env::var("SERVER").as_deref() == Ok("ws") {
        WsServer::new(app)
            .disable_signals()
            .bind(&bind)
            .map(WsServer::run)
    } else {
        HttpServer::new(app)
            // Close TCP as soon as a close handshake is done, instead of
            // lingering up to actix-web's default 1 s for the client to
            // close first.
            .client_disconnect_timeout(Duration::ZERO)
            .disable_signals()
            .bind(&bind)
            .map(HttpServer::run)
    };
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit.
    let server = match bound {
        Ok(server) => server,
        Err(error) => {
            eprintln!("chat: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("chat on http://{bind}/ (WebSocket at ws://{bind}/ws?name=NAME)");
    match run_with_graceful_shutdown(server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("chat: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
