//! Sockets used away from their connection: from plain threads, another
//! actix actor on another system, and tokio tasks (S5, S6: ordered, never
//! panicking, errors once closed).

mod common;

use std::{sync::mpsc, thread};

use actix::{Actor, Context, Handler};
use actix_ws_listener::{CloseCode, SendError, Socket};
use common::*;

#[test]
fn s6_ten_thousand_sends_from_another_std_thread_arrive_in_order() {
    const N: usize = 10_000;
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let sender = thread::spawn(move || {
        for i in 0..N {
            socket
                .send(format!("{i}"))
                .unwrap_or_else(|e| panic!("send {i} failed: {e}"));
        }
    });
    // Read while the other thread sends.
    for i in 0..N {
        assert_eq!(client.recv(), Incoming::Text(format!("{i}")), "message {i}");
    }
    sender.join().unwrap();
}

#[test]
fn s6_sends_from_several_threads_keep_each_threads_order() {
    const THREADS: usize = 4;
    const N: usize = 2_000;
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let senders: Vec<_> = (0..THREADS)
        .map(|t| {
            let socket = socket.clone();
            thread::spawn(move || {
                for i in 0..N {
                    socket.send(format!("{t} {i}")).unwrap();
                }
            })
        })
        .collect();
    let mut next = [0usize; THREADS];
    for _ in 0..THREADS * N {
        let text = client.recv_text();
        let (t, i) = text.split_once(' ').unwrap();
        let (t, i): (usize, usize) = (t.parse().unwrap(), i.parse().unwrap());
        assert_eq!(i, next[t], "thread {t}'s messages out of order");
        next[t] += 1;
    }
    assert_eq!(next, [N; THREADS]);
    for sender in senders {
        sender.join().unwrap();
    }
}

#[test]
fn one_thread_can_push_to_many_sockets() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut clients: Vec<RawClient> = (0..5).map(|_| server.connect()).collect();
    let sockets: Vec<Socket> = (0..5).map(|n| events.wait_open_nth(n)).collect();
    thread::spawn(move || {
        for i in 0..100 {
            for socket in &sockets {
                socket.send(format!("broadcast {i}")).unwrap();
            }
        }
    })
    .join()
    .unwrap();
    for client in &mut clients {
        for i in 0..100 {
            assert_eq!(client.recv_text(), format!("broadcast {i}"));
        }
    }
}

/// An actor on its own actix system that pushes to sockets it is given.
struct Pusher;

impl Actor for Pusher {
    type Context = Context<Self>;
}

struct Push(Socket, usize);

impl actix::Message for Push {
    type Result = Result<(), SendError>;
}

impl Handler<Push> for Pusher {
    type Result = Result<(), SendError>;

    fn handle(&mut self, Push(socket, n): Push, _: &mut Context<Self>) -> Self::Result {
        for i in 0..n {
            socket.send(format!("from actor {i}"))?;
        }
        socket.ping_with(&b"actor ping"[..])?;
        socket.close_with(4000, "actor done")
    }
}

#[test]
fn an_actor_on_another_system_can_push_and_close() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let result = thread::spawn(move || {
        actix_rt::System::new().block_on(async move {
            let pusher = Pusher.start();
            pusher.send(Push(socket, 500)).await.expect("actor mailbox")
        })
    })
    .join()
    .unwrap();
    assert_eq!(result, Ok(()));
    for i in 0..500 {
        assert_eq!(client.recv(), Incoming::Text(format!("from actor {i}")));
    }
    assert_eq!(client.recv(), Incoming::Ping(b"actor ping".to_vec()));
    assert_eq!(client.recv_close(), (4000, "actor done".to_owned()));
    client.answer_close(4000);
    let conn = events.wait_open().id();
    assert_eq!(
        events.wait_close(conn),
        (CloseCode(4000), "actor done".to_owned())
    );
}

#[test]
fn tokio_tasks_on_a_multi_thread_runtime_can_send_and_wait() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    runtime.spawn(async move {
        let mut result = Ok(());
        for i in 0..1000 {
            // The future is Send: it may move between worker threads.
            result = socket.send_and_wait(format!("task {i}")).await;
            if result.is_err() {
                break;
            }
        }
        tx.send(result).unwrap();
    });
    for i in 0..1000 {
        assert_eq!(client.recv(), Incoming::Text(format!("task {i}")));
    }
    assert_eq!(
        rx.recv_timeout(TIMEOUT).expect("the task did not finish"),
        Ok(())
    );
}

#[test]
fn send_async_from_another_thread_runs_succeed_and_may_chain() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let (tx, rx) = mpsc::channel();
    let next = socket.clone();
    thread::spawn(move || {
        socket.send_async(
            "first",
            move || {
                let _ = next.send("second, sent from succeed");
                tx.send("succeed").unwrap();
            },
            |e| panic!("first failed: {e}"),
        )
    })
    .join()
    .unwrap();
    assert_eq!(client.recv_text(), "first");
    assert_eq!(client.recv_text(), "second, sent from succeed");
    assert_eq!(rx.recv_timeout(TIMEOUT), Ok("succeed"));
}

#[test]
fn s5_a_thread_sending_while_the_client_drops_gets_errors_not_panics() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let (first_tx, first) = mpsc::channel();
    let sender = {
        let socket = socket.clone();
        thread::spawn(move || {
            // Sends until the connection is gone; every send either queues
            // or fails with an error.
            let mut i = 0u64;
            loop {
                match socket.send(format!("{i}")) {
                    Ok(()) => {}
                    Err(SendError::Backpressure { .. }) => thread::yield_now(),
                    Err(SendError::Closed(_)) => return i,
                    Err(other) => panic!("unexpected error {other:?}"),
                }
                if i == 0 {
                    first_tx.send(()).unwrap();
                }
                i += 1;
            }
        })
    };
    first
        .recv_timeout(TIMEOUT)
        .expect("the sender never started");
    assert_eq!(client.recv_text(), "0");
    client.drop_tcp();
    let (code, _) = events.wait_close(socket.id());
    assert_eq!(code, CloseCode::ABNORMAL);
    // The thread stops by itself once sends report Closed.
    sender.join().expect("the sending thread panicked");
    assert!(socket.send("after").is_err_and(|e| e.is_closed()));
    assert!(!socket.is_open());
}

#[test]
fn close_from_another_thread_reaches_the_client_and_on_close() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let id = socket.id();
    let closer = thread::spawn(move || {
        socket.send("last words").unwrap();
        let closed = socket.close_with(4005, "closed elsewhere");
        (closed, socket.is_open(), socket.send("too late"))
    });
    assert_eq!(
        closer.join().unwrap(),
        (
            Ok(()),
            false,
            Err(SendError::Closed(Some("too late".into())))
        )
    );
    assert_eq!(client.recv_text(), "last words");
    assert_eq!(client.recv_close(), (4005, "closed elsewhere".to_owned()));
    client.answer_close(4005);
    events.assert_closed(id, CloseCode(4005), "closed elsewhere");
}
