//! actix's canonical WebSocket chat server (a `ChatServer` actor holding a
//! `Recipient` per session, sessions handling typed messages) on this
//! crate: each session is a `Listener` that also `Handles<ChatLine>`.
//!
//! Text protocol, one command or line per message:
//! - on connect a session is named `guest-N` and is in room `main`;
//! - `/join NAME` moves it to room NAME; it receives `joined NAME`;
//! - `/name NAME` renames it; it receives `name NAME`;
//! - `/list` answers `rooms: ` and the rooms that have members, sorted,
//!   separated by single spaces;
//! - any other line goes to every *other* member of the sender's room as
//!   `SENDERNAME: line`.
//!
//! Rooms without members disappear. The server actor decides who gets what;
//! each session decides, with its own state, how to write it.
//!
//! Run:   cargo run --example rooms     (BIND=127.0.0.1:8080 by default)
//! Talk:  websocat ws://127.0.0.1:8080/ws

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    net::TcpListener,
    process::ExitCode,
    time::Duration,
};

use actix::{Actor, Addr, Context, Handler, Message, Recipient};
use actix_web::{web, App, HttpServer, Responder};
use actix_ws_listener::{
    run_with_graceful_shutdown, Address, CloseCode, Handles, Listener, Message as WsMessage,
    Socket, WebSocketUpgrade,
};

// --- messages: server → session --------------------------------------------------

/// A line for a session to write to its client.
#[derive(Message)]
#[rtype(result = "()")]
struct ChatLine(String);

// --- messages: session → server ----------------------------------------------------

/// A session opened; it starts as `guest-N` in `main`.
#[derive(Message)]
#[rtype(result = "()")]
struct Connect {
    id: u64,
    session: Recipient<ChatLine>,
}

/// A session ended.
#[derive(Message)]
#[rtype(result = "()")]
struct Disconnect {
    id: u64,
}

/// What a session's client asked for.
#[derive(Message)]
#[rtype(result = "()")]
struct Command {
    id: u64,
    command: Request,
}

enum Request {
    Join(String),
    Name(String),
    List,
    Say(String),
}

impl Request {
    /// Reads one line of the text protocol.
    fn parse(line: &str) -> Result<Request, &'static str> {
        let argument = |prefix: &str| {
            line.strip_prefix(prefix)
                .map(str::trim)
                .filter(|name| !name.is_empty() && !name.contains(char::is_whitespace))
                .map(str::to_owned)
        };
        if line == "/list" {
            Ok(Request::List)
        } else if line.starts_with("/join") {
            argument("/join ")
                .map(Request::Join)
                .ok_or("usage: /join NAME")
        } else if line.starts_with("/name") {
            argument("/name ")
                .map(Request::Name)
                .ok_or("usage: /name NAME")
        } else {
            Ok(Request::Say(line.to_owned()))
        }
    }
}

// --- the server actor ----------------------------------------------------------------

struct Member {
    name: String,
    room: String,
    session: Recipient<ChatLine>,
}

/// Who is where. Sessions of every worker thread talk to this one actor.
#[derive(Default)]
struct ChatServer {
    members: HashMap<u64, Member>,
    rooms: BTreeMap<String, BTreeSet<u64>>,
    guests: u64,
}

impl Actor for ChatServer {
    type Context = Context<Self>;
}

impl ChatServer {
    fn tell(&self, id: u64, line: String) {
        if let Some(member) = self.members.get(&id) {
            member.session.do_send(ChatLine(line));
        }
    }

    fn enter(&mut self, id: u64, room: &str) {
        self.rooms.entry(room.to_owned()).or_default().insert(id);
    }

    fn leave(&mut self, id: u64, room: &str) {
        if let Some(members) = self.rooms.get_mut(room) {
            members.remove(&id);
            if members.is_empty() {
                self.rooms.remove(room);
            }
        }
    }

    /// `line` to every member of `id`'s room but `id`.
    fn say(&self, id: u64, line: &str) {
        let Some(sender) = self.members.get(&id) else {
            return;
        };
        let text = format!("{}: {line}", sender.name);
        for other in self.rooms.get(&sender.room).into_iter().flatten() {
            if *other != id {
                self.tell(*other, text.clone());
            }
        }
    }
}

impl Handler<Connect> for ChatServer {
    type Result = ();

    fn handle(&mut self, Connect { id, session }: Connect, _: &mut Context<Self>) {
        self.guests += 1;
        let name = format!("guest-{}", self.guests);
        log::info!("{name} connected");
        let room = "main".to_owned();
        self.enter(id, &room);
        self.members.insert(
            id,
            Member {
                name,
                room,
                session,
            },
        );
    }
}

impl Handler<Disconnect> for ChatServer {
    type Result = ();

    fn handle(&mut self, Disconnect { id }: Disconnect, _: &mut Context<Self>) {
        if let Some(member) = self.members.remove(&id) {
            log::info!("{} disconnected", member.name);
            self.leave(id, &member.room);
        }
    }
}

impl Handler<Command> for ChatServer {
    type Result = ();

    fn handle(&mut self, Command { id, command }: Command, _: &mut Context<Self>) {
        match command {
            Request::Join(room) => {
                let Some(member) = self.members.get_mut(&id) else {
                    return;
                };
                let old = std::mem::replace(&mut member.room, room.clone());
                self.leave(id, &old);
                self.enter(id, &room);
                self.tell(id, format!("joined {room}"));
            }
            Request::Name(name) => {
                if let Some(member) = self.members.get_mut(&id) {
                    member.name = name.clone();
                    self.tell(id, format!("name {name}"));
                }
            }
            Request::List => {
                let rooms: Vec<&str> = self.rooms.keys().map(String::as_str).collect();
                self.tell(id, format!("rooms: {}", rooms.join(" ")));
            }
            Request::Say(line) => self.say(id, &line),
        }
    }
}

// --- the session: a listener ----------------------------------------------------------

struct Session {
    server: Addr<ChatServer>,
}

impl Listener for Session {
    fn on_open(&mut self, socket: &Socket) {
        // Register with the server, the way an actix-web-actors session
        // does in `started`.
        let Ok(address) = Address::<Session>::of(socket) else {
            return;
        };
        self.server.do_send(Connect {
            id: socket.id(),
            session: address.recipient(),
        });
    }

    fn on_message(&mut self, socket: &Socket, message: WsMessage) {
        let Some(line) = message.as_text() else {
            write(socket, "only text is understood here".to_owned());
            return;
        };
        match Request::parse(line.trim()) {
            Ok(command) => self.server.do_send(Command {
                id: socket.id(),
                command,
            }),
            Err(usage) => write(socket, usage.to_owned()),
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.server.do_send(Disconnect { id: socket.id() });
    }
}

impl Handles<ChatLine> for Session {
    async fn handle(&mut self, socket: &Socket, ChatLine(line): ChatLine) {
        write(socket, line);
    }
}

/// Writes a line, or says why it could not: the client left (its
/// `on_close` is on the way) or does not read fast enough to take it.
fn write(socket: &Socket, line: String) {
    if let Err(error) = socket.send(line) {
        log::debug!("ws {}: line not sent: {error}", socket.id());
    }
}

async fn ws(upgrade: WebSocketUpgrade, server: web::Data<Addr<ChatServer>>) -> impl Responder {
    upgrade.listen(Session {
        server: server.get_ref().clone(),
    })
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit. The port is taken before any actor
    // starts: an actor started and never run would panic as the system
    // drops it.
    let listener = match TcpListener::bind(&bind) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("rooms: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    let server = web::Data::new(ChatServer::default().start());
    let http = HttpServer::new(move || {
        App::new()
            .app_data(server.clone())
            .route("/ws", web::get().to(ws))
    })
    .client_disconnect_timeout(Duration::ZERO)
    .disable_signals();
    let http = match http.listen(listener) {
        Ok(http) => http,
        Err(error) => {
            eprintln!("rooms: cannot listen on {bind}: {error}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("rooms on ws://{bind}/ws");
    match run_with_graceful_shutdown(http.run()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("rooms: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
