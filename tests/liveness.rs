//! S20 (control frames first, departed peers released, disconnect) and
//! S17 with S16 (typed messages to an async listener, in one order with
//! frames), over real TCP with the crate's test kit.

mod common;

use std::{
    io,
    sync::{
        atomic::{AtomicBool, Ordering},
        mpsc, Arc, Mutex,
    },
    time::Duration,
};

use actix_ws_listener::{
    test::{Received, TestClient, TestServer, TIMEOUT},
    Address, AsyncListener, Bytes, CloseCode, Handles, Listener, Message, Socket,
};
use common::{test_config, wait_until};

/// What a listener saw, in order, as text: "open", "message a",
/// "pong p", "close 1000", notes of its own.
#[derive(Clone)]
struct Log {
    tx: mpsc::Sender<(u64, String)>,
}

impl Log {
    fn new() -> (Log, Seen) {
        let (tx, rx) = mpsc::channel();
        (
            Log { tx },
            Seen {
                rx: Mutex::new(rx),
                all: Mutex::new(Vec::new()),
            },
        )
    }

    fn note(&self, socket: &Socket, what: impl Into<String>) {
        // The test may have finished listening: nothing to do then.
        self.tx.send((socket.id(), what.into())).ok();
    }
}

/// The test's end of a [`Log`].
struct Seen {
    rx: Mutex<mpsc::Receiver<(u64, String)>>,
    all: Mutex<Vec<(u64, String)>>,
}

impl Seen {
    /// Waits until `what` has been seen; returns its connection's id.
    fn wait(&self, what: &str) -> u64 {
        if let Some((id, _)) = self.all.lock().unwrap().iter().find(|(_, w)| w == what) {
            return *id;
        }
        let rx = self.rx.lock().unwrap();
        loop {
            match rx.recv_timeout(TIMEOUT) {
                Ok((id, seen)) => {
                    let found = seen == what;
                    self.all.lock().unwrap().push((id, seen));
                    if found {
                        return id;
                    }
                }
                Err(_) => panic!("never saw {what:?}; saw {:?}", self.all.lock().unwrap()),
            }
        }
    }

    /// Everything seen so far (after `wait`ing for the last of it).
    fn all(&self) -> Vec<String> {
        let rx = self.rx.lock().unwrap();
        let mut all = self.all.lock().unwrap();
        all.extend(rx.try_iter());
        all.iter().map(|(_, w)| w.clone()).collect()
    }
}

/// An async listener whose handler for "slow" awaits until `release` is
/// set (or forever), and whose handler for "wait 2s" sleeps 2 s.
struct Slow {
    log: Log,
    release: Arc<AtomicBool>,
    done: Arc<AtomicBool>,
}

impl AsyncListener for Slow {
    async fn on_open(&mut self, socket: &Socket) {
        self.log.note(socket, "open");
    }

    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let text = message.as_text().unwrap_or_default().to_owned();
        self.log.note(socket, format!("message {text}"));
        match text.as_str() {
            "wait 2s" => actix_rt::time::sleep(Duration::from_secs(2)).await,
            "slow" => {
                while !self.release.load(Ordering::SeqCst) {
                    actix_rt::time::sleep(Duration::from_millis(5)).await;
                }
            }
            "never" => futures::future::pending::<()>().await,
            _ => {}
        }
        self.done.store(true, Ordering::SeqCst);
        self.log.note(socket, format!("done {text}"));
    }

    async fn on_pong(&mut self, socket: &Socket, data: Bytes) {
        self.log
            .note(socket, format!("pong {}", String::from_utf8_lossy(&data)));
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
        self.log.note(socket, format!("close {code} {reason}"));
    }
}

fn slow_server(
    config: actix_ws_listener::Config,
) -> (TestServer, Arc<Seen>, Arc<AtomicBool>, Arc<AtomicBool>) {
    let (log, seen) = Log::new();
    let release = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicBool::new(false));
    let (r, d) = (Arc::clone(&release), Arc::clone(&done));
    let server = TestServer::listen_with(config, move || Slow {
        log: log.clone(),
        release: Arc::clone(&r),
        done: Arc::clone(&d),
    });
    (server, Arc::new(seen), release, done)
}

/// The next frame that is not a message.
fn next_control(client: &mut TestClient) -> io::Result<Received> {
    loop {
        match client.recv()? {
            Received::Message(_) => continue,
            other => return Ok(other),
        }
    }
}

#[test]
fn s20_pings_are_answered_and_pongs_recorded_while_a_handler_awaits_2s() -> io::Result<()> {
    let (server, seen, _, done) = slow_server(test_config());
    let mut client = server.client()?;
    seen.wait("open");
    client.send("wait 2s")?;
    seen.wait("message wait 2s");
    client.ping(b"are you there")?;
    assert_eq!(
        next_control(&mut client)?,
        Received::Pong(Bytes::from_static(b"are you there"))
    );
    // The pong came back while the handler was still pending.
    assert!(!done.load(Ordering::SeqCst), "the handler finished first");
    client.pong(b"p")?;
    client.send("after")?;
    seen.wait("message after");
    // The pong and the message waited for the handler, in order.
    let all = seen.all();
    let at = |what: &str| all.iter().position(|w| w == what).unwrap();
    assert!(at("done wait 2s") < at("pong p"), "{all:?}");
    assert!(at("pong p") < at("message after"), "{all:?}");
    client.close()
}

#[test]
fn s20_a_close_while_a_handler_is_pending_is_answered_at_once_and_on_close_runs_once(
) -> io::Result<()> {
    let config = test_config().close_timeout(Duration::from_millis(300));
    let (server, seen, release, done) = slow_server(config);
    let mut client = server.client()?;
    seen.wait("open");
    client.send("slow")?;
    seen.wait("message slow");
    client.close_with(CloseCode::NORMAL, "bye")?;
    assert_eq!(
        next_control(&mut client)?,
        Received::Close(CloseCode::NORMAL, String::new())
    );
    // Answered while the handler was still pending.
    assert!(!done.load(Ordering::SeqCst));
    release.store(true, Ordering::SeqCst);
    seen.wait("close 1000 bye");
    drop(server);
    let all = seen.all();
    assert_eq!(
        all.iter().filter(|w| w.starts_with("close")).count(),
        1,
        "{all:?}"
    );
    assert_eq!(
        all.last().map(String::as_str),
        Some("close 1000 bye"),
        "{all:?}"
    );
    Ok(())
}

#[test]
fn s20_a_peer_that_vanishes_while_a_handler_never_completes_releases_its_connection(
) -> io::Result<()> {
    let config = test_config().close_timeout(Duration::from_millis(300));
    let (log, seen) = Log::new();
    let sockets = Arc::new(Mutex::new(Vec::<Socket>::new()));
    let kept = Arc::clone(&sockets);
    struct Hung(Log, Arc<Mutex<Vec<Socket>>>);
    impl AsyncListener for Hung {
        async fn on_open(&mut self, socket: &Socket) {
            self.1.lock().unwrap().push(socket.clone());
            self.0.note(socket, "open");
        }
        async fn on_message(&mut self, socket: &Socket, _: Message) {
            self.0.note(socket, "hung");
            futures::future::pending::<()>().await;
        }
        fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
            self.0.note(socket, format!("close {code} {reason}"));
        }
    }
    let server = TestServer::listen_with(config, move || Hung(log.clone(), Arc::clone(&kept)));
    let mut client = server.client()?;
    seen.wait("open");
    client.send("anything")?;
    seen.wait("hung");
    drop(client);
    seen.wait(&format!("close {} ", CloseCode::ABNORMAL));
    let socket = sockets.lock().unwrap()[0].clone();
    assert!(!socket.is_open());
    let address = Address::<Hung>::of(&socket).expect("a Hung listener");
    wait_until("the connection's actor stops", || !address.is_connected());
    drop(server);
    let all = seen.all();
    assert_eq!(
        all.iter().filter(|w| w.starts_with("close")).count(),
        1,
        "{all:?}"
    );
    Ok(())
}

/// A typed message whose handler awaits: it reports when it starts and ends.
#[derive(actix::Message)]
#[rtype(result = "u32")]
struct Ask(u32);

/// An async listener with typed messages that await, like frames.
struct Asked {
    log: Log,
    address: Arc<Mutex<Option<Address<Asked>>>>,
}

impl AsyncListener for Asked {
    async fn on_open(&mut self, socket: &Socket) {
        *self.address.lock().unwrap() = Address::of(socket).ok();
        self.log.note(socket, "open");
    }

    async fn on_message(&mut self, socket: &Socket, message: Message) {
        let text = message.as_text().unwrap_or_default().to_owned();
        self.log.note(socket, format!("start {text}"));
        if text == "a" {
            actix_rt::time::sleep(Duration::from_millis(300)).await;
        }
        self.log.note(socket, format!("end {text}"));
    }
}

impl Handles<Ask> for Asked {
    async fn handle(&mut self, socket: &Socket, Ask(n): Ask) -> u32 {
        self.log.note(socket, format!("start ask {n}"));
        if n == 1 {
            actix_rt::time::sleep(Duration::from_millis(300)).await;
        }
        self.log.note(socket, format!("end ask {n}"));
        n * 10
    }
}

#[test]
fn s17_typed_messages_to_an_async_listener_await_in_one_order_with_frames() -> io::Result<()> {
    let (log, seen) = Log::new();
    let address = Arc::new(Mutex::new(None));
    let kept = Arc::clone(&address);
    let server = TestServer::listen(move || Asked {
        log: log.clone(),
        address: Arc::clone(&kept),
    });
    let mut client = server.client()?;
    seen.wait("open");
    let address = address
        .lock()
        .unwrap()
        .clone()
        .expect("an async listener's address");
    // A typed message that awaits holds back the frame sent during it...
    let first = address.send(Ask(1));
    seen.wait("start ask 1");
    client.send("b")?;
    seen.wait("end b");
    // ...and a frame that awaits holds back the typed message sent during it.
    client.send("a")?;
    seen.wait("start a");
    let second = address.send(Ask(2));
    seen.wait("end ask 2");
    let answers = common::run_client(async { (first.await, second.await) });
    assert_eq!((answers.0.ok(), answers.1.ok()), (Some(10), Some(20)));
    let all = seen.all();
    let at = |what: &str| all.iter().position(|w| w == what).unwrap();
    assert!(at("end ask 1") < at("start b"), "{all:?}");
    assert!(at("end a") < at("start ask 2"), "{all:?}");
    client.close()
}

#[test]
fn s20_disconnect_ends_tcp_at_once_and_on_close_gets_1006() -> io::Result<()> {
    let (log, seen) = Log::new();
    struct Cut(Log);
    impl Listener for Cut {
        fn on_message(&mut self, socket: &Socket, _: Message) {
            socket.disconnect();
            self.0.note(
                socket,
                format!("open after disconnect: {}", socket.is_open()),
            );
        }
        fn on_close(&mut self, socket: &Socket, code: CloseCode, reason: &str) {
            self.0.note(socket, format!("close {code} {reason}"));
        }
    }
    let server = TestServer::listen(move || Cut(log.clone()));
    let mut client = server.client()?;
    client.send("bye")?;
    seen.wait("open after disconnect: false");
    // No close frame: the TCP connection just ends.
    let error = client.recv().expect_err("the connection ends");
    assert!(
        matches!(
            error.kind(),
            io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset
        ),
        "{error:?}"
    );
    seen.wait(&format!("close {} ", CloseCode::ABNORMAL));
    Ok(())
}

#[test]
fn test_kit_client_answers_pings_by_itself_when_asked() -> io::Result<()> {
    struct Beat;
    impl Listener for Beat {
        fn on_open(&mut self, socket: &Socket) {
            socket.ping_with("beat").ok();
        }
        fn on_pong(&mut self, socket: &Socket, data: Bytes) {
            // Answered: say so in a message.
            socket
                .send(format!("pong {}", String::from_utf8_lossy(&data)))
                .ok();
        }
    }
    let server = TestServer::listen(|| Beat);
    let mut client = server.client()?;
    client.answer_pings(true);
    assert_eq!(client.recv_message()?, Message::text("pong beat"));
    assert_eq!(client.pings_answered(), 1);
    client.close()
}
