//! actix's `websockets/chat` session ported to an [`AsyncListener`] (S17,
//! S16, S20): it takes its id from `Connect` and answers `/list` by
//! awaiting `ListRooms`, as the original does with `ctx.wait`, without a
//! spawned task or a helper message; its heartbeat drops a silent client
//! with `Socket::disconnect`, as the original's `ctx.stop()`.
//!
//! The chat server actor here speaks the original's messages with their
//! meaning (`Connect` → id, `Disconnect`, `ClientMessage`, `ListRooms` →
//! room names, `Join`, the same announcements); it is written for this
//! test, with sequential ids instead of random ones.

mod common;

use std::{
    collections::{BTreeMap, BTreeSet},
    io,
    time::{Duration, Instant},
};

use actix::{Actor, Addr, Context, Handler, MessageResult, Recipient};
use actix_web::web;
use actix_ws_listener::{
    test::{Received, TestClient, TestServer},
    Address, AsyncListener, Handles, Message, Socket, WebSocketUpgrade,
};

const HEARTBEAT_INTERVAL: Duration = Duration::from_millis(200);
// Generous: a loaded test machine must not make an answering client look silent.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(3);

mod server {
    use super::*;

    /// A line for one session.
    #[derive(actix::Message)]
    #[rtype(result = "()")]
    pub struct Line(pub String);

    /// A new session; answered with its id.
    #[derive(actix::Message)]
    #[rtype(result = "u64")]
    pub struct Connect {
        pub addr: Recipient<Line>,
    }

    #[derive(actix::Message)]
    #[rtype(result = "()")]
    pub struct Disconnect {
        pub id: u64,
    }

    /// A line from session `id` for its room.
    #[derive(actix::Message)]
    #[rtype(result = "()")]
    pub struct ClientMessage {
        pub id: u64,
        pub msg: String,
        pub room: String,
    }

    pub struct ListRooms;

    impl actix::Message for ListRooms {
        type Result = Vec<String>;
    }

    /// Session `id` moves to room `name` (created if new).
    #[derive(actix::Message)]
    #[rtype(result = "()")]
    pub struct Join {
        pub id: u64,
        pub name: String,
    }

    pub struct ChatServer {
        sessions: BTreeMap<u64, Recipient<Line>>,
        rooms: BTreeMap<String, BTreeSet<u64>>,
        next_id: u64,
        visitors: usize,
    }

    impl ChatServer {
        pub fn new() -> ChatServer {
            let rooms = BTreeMap::from([("main".to_owned(), BTreeSet::new())]);
            ChatServer {
                sessions: BTreeMap::new(),
                rooms,
                next_id: 1,
                visitors: 0,
            }
        }

        fn announce(&self, room: &str, line: &str, skip: u64) {
            let members = self.rooms.get(room).into_iter().flatten();
            for id in members.filter(|id| **id != skip) {
                if let Some(session) = self.sessions.get(id) {
                    session.do_send(Line(line.to_owned()));
                }
            }
        }

        /// Takes `id` out of every room, telling each room's others.
        fn leave_rooms(&mut self, id: u64) {
            let left: Vec<String> = self
                .rooms
                .iter_mut()
                .filter_map(|(name, members)| members.remove(&id).then(|| name.clone()))
                .collect();
            for room in left {
                self.announce(&room, "Someone disconnected", 0);
            }
        }
    }

    impl Actor for ChatServer {
        type Context = Context<Self>;
    }

    impl Handler<Connect> for ChatServer {
        type Result = u64;

        fn handle(&mut self, Connect { addr }: Connect, _: &mut Context<Self>) -> u64 {
            self.announce("main", "Someone joined", 0);
            let id = self.next_id;
            self.next_id += 1;
            self.sessions.insert(id, addr);
            self.rooms.entry("main".to_owned()).or_default().insert(id);
            self.visitors += 1;
            self.announce("main", &format!("Total visitors {}", self.visitors), 0);
            id
        }
    }

    impl Handler<Disconnect> for ChatServer {
        type Result = ();

        fn handle(&mut self, Disconnect { id }: Disconnect, _: &mut Context<Self>) {
            if self.sessions.remove(&id).is_some() {
                self.leave_rooms(id);
            }
        }
    }

    impl Handler<ClientMessage> for ChatServer {
        type Result = ();

        fn handle(&mut self, message: ClientMessage, _: &mut Context<Self>) {
            self.announce(&message.room, &message.msg, message.id);
        }
    }

    impl Handler<ListRooms> for ChatServer {
        type Result = MessageResult<ListRooms>;

        fn handle(&mut self, _: ListRooms, _: &mut Context<Self>) -> Self::Result {
            MessageResult(self.rooms.keys().cloned().collect())
        }
    }

    impl Handler<Join> for ChatServer {
        type Result = ();

        fn handle(&mut self, Join { id, name }: Join, _: &mut Context<Self>) {
            self.leave_rooms(id);
            self.rooms.entry(name.clone()).or_default().insert(id);
            self.announce(&name, "Someone connected", id);
        }
    }
}

/// The session, as an async listener.
struct ChatSession {
    id: u64,
    hb: Instant,
    room: String,
    name: Option<String>,
    server: Addr<server::ChatServer>,
}

impl AsyncListener for ChatSession {
    async fn on_open(&mut self, socket: &Socket) {
        let Ok(address) = Address::<ChatSession>::of(socket) else {
            return;
        };
        address.run_interval(
            HEARTBEAT_INTERVAL,
            |session: &mut ChatSession, socket: &Socket| {
                if session.hb.elapsed() > CLIENT_TIMEOUT {
                    session
                        .server
                        .do_send(server::Disconnect { id: session.id });
                    socket.disconnect();
                } else if socket.ping().is_err() {
                    log::debug!("ws {}: heartbeat ping not sent", socket.id());
                }
            },
        );
        // Awaited here, like the original's `ctx.wait`: no line is read (and
        // none goes out under id 0) until the id is known.
        let connect = server::Connect {
            addr: address.recipient(),
        };
        match self.server.send(connect).await {
            Ok(id) => self.id = id,
            Err(_) => socket.disconnect(),
        }
    }

    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let Some(text) = message.as_text() else {
            return;
        };
        let line = text.trim();
        let (command, argument) = match line.split_once(' ') {
            Some((command, argument)) => (command, Some(argument)),
            None => (line, None),
        };
        let answer = match (command, argument) {
            ("/list", _) => {
                // Awaited: the session handles nothing else meanwhile.
                let rooms = self
                    .server
                    .send(server::ListRooms)
                    .await
                    .unwrap_or_default();
                for room in rooms {
                    if socket.send(room).is_err() {
                        return;
                    }
                }
                return;
            }
            ("/join", Some(room)) => {
                self.room = room.to_owned();
                self.server.do_send(server::Join {
                    id: self.id,
                    name: self.room.clone(),
                });
                "joined".to_owned()
            }
            ("/join", None) => "!!! room name is required".to_owned(),
            ("/name", Some(name)) => {
                self.name = Some(name.to_owned());
                return;
            }
            ("/name", None) => "!!! name is required".to_owned(),
            _ if line.starts_with('/') => format!("!!! unknown command: {line:?}"),
            _ => {
                let msg = match &self.name {
                    Some(name) => format!("{name}: {line}"),
                    None => line.to_owned(),
                };
                self.server.do_send(server::ClientMessage {
                    id: self.id,
                    msg,
                    room: self.room.clone(),
                });
                return;
            }
        };
        if socket.send(answer).is_err() {
            log::debug!("ws {}: the client left", socket.id());
        }
    }

    async fn on_ping(&mut self, socket: &Socket, data: actix_ws_listener::Bytes) {
        self.hb = Instant::now();
        if socket.pong_with(data).is_err() {
            log::debug!("ws {}: pong not sent", socket.id());
        }
    }

    async fn on_pong(&mut self, _: &Socket, _: actix_ws_listener::Bytes) {
        self.hb = Instant::now();
    }

    fn on_close(&mut self, _: &Socket, _: actix_ws_listener::CloseCode, _: &str) {
        self.server.do_send(server::Disconnect { id: self.id });
    }
}

impl Handles<server::Line> for ChatSession {
    async fn handle(&mut self, socket: &Socket, server::Line(line): server::Line) {
        if socket.send(line).is_err() {
            log::debug!("ws {}: line not sent", socket.id());
        }
    }
}

fn chat_server() -> TestServer {
    TestServer::start(|cfg| {
        cfg.route(
            "/ws",
            web::get().to(
                |upgrade: WebSocketUpgrade, server: web::Data<Addr<server::ChatServer>>| async move {
                    upgrade.listen(ChatSession {
                        id: 0,
                        hb: Instant::now(),
                        room: "main".to_owned(),
                        name: None,
                        server: server.get_ref().clone(),
                    })
                },
            ),
        );
        cfg.app_data(web::Data::new(shared_server()));
    })
}

/// One chat server per test server: started on the test server's system
/// the first time a worker asks.
fn shared_server() -> Addr<server::ChatServer> {
    thread_local! {
        static SERVER: Addr<server::ChatServer> = server::ChatServer::new().start();
    }
    SERVER.with(Clone::clone)
}

/// A client that answers the heartbeat, as a browser does.
fn join(server: &TestServer) -> io::Result<TestClient> {
    let mut client = server.client()?;
    client.answer_pings(true);
    Ok(client)
}

/// Reads lines until `line`; returns the ones before it.
fn until(client: &mut TestClient, line: &str) -> io::Result<Vec<String>> {
    let mut before = Vec::new();
    loop {
        match client.recv()? {
            Received::Message(message) => {
                let text = message.as_text().unwrap_or_default().to_owned();
                if text == line {
                    return Ok(before);
                }
                before.push(text);
            }
            Received::Close(..) => return Err(io::Error::other("closed")),
            _ => {}
        }
    }
}

#[test]
fn chat_port_delivers_announces_lists_rooms_and_drops_a_silent_client() -> io::Result<()> {
    let server = chat_server();
    let mut alice = join(&server)?;
    until(&mut alice, "Total visitors 1")?;
    let mut bob = join(&server)?;
    until(&mut alice, "Someone joined")?;
    until(&mut alice, "Total visitors 2")?;
    until(&mut bob, "Total visitors 2")?;

    // Delivery in the room, not back to the sender.
    bob.send("/name bob")?;
    bob.send("hello")?;
    until(&mut alice, "bob: hello")?;

    // Rooms: /join, then /list answered by awaiting ListRooms.
    bob.send("/join side")?;
    until(&mut bob, "joined")?;
    until(&mut alice, "Someone disconnected")?;
    bob.send("/list")?;
    let mut rooms = vec![until(&mut bob, "main").map(|_| "main")?];
    rooms.push(until(&mut bob, "side").map(|_| "side")?);
    assert_eq!(rooms, ["main", "side"]);
    alice.send("/join side")?;
    until(&mut alice, "joined")?;
    until(&mut bob, "Someone connected")?;
    alice.send("in side")?;
    until(&mut bob, "in side")?;

    // A client that stops answering the heartbeat is dropped at once,
    // without a close handshake, and the room hears of it.
    alice.answer_pings(false);
    let gone = loop {
        match alice.recv() {
            Ok(_) => continue,
            Err(error) => break error,
        }
    };
    assert!(
        matches!(
            gone.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ),
        "{gone:?}"
    );
    until(&mut bob, "Someone disconnected")?;
    bob.close()
}
