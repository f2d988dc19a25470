//! S5 Socket operations never panic: errors on closed sockets, exactly one
//! of `succeed`/`fail` per `send_async`, `is_open` false right after
//! `close`, callbacks may use their own socket.
//! S6 Order: operations reach the wire in issue order; operations from a
//! callback come after everything issued before it.

mod common;

use std::{
    collections::HashSet,
    sync::{
        atomic::{AtomicU8, AtomicUsize, Ordering},
        mpsc, Arc,
    },
    thread,
    time::Duration,
};

use actix_ws_listener::{listener, Bytes, Message, SendError, Socket};
use common::*;

// --- S5: is_open --------------------------------------------------------------

#[test]
fn s5_is_open_is_false_right_after_close_inside_on_open() {
    let events = Events::new();
    let server = serve_recorded(&events, |events| {
        listener().on_open(move |socket| {
            let clone = socket.clone();
            events.note(socket, format!("before: {}", socket.is_open()));
            socket.close().unwrap();
            // Still inside on_open: the close frame cannot have been
            // written yet.
            events.note(socket, format!("after: {}", socket.is_open()));
            events.note(socket, format!("clone after: {}", clone.is_open()));
            events.note(socket, format!("send: {:?}", socket.send("too late")));
            events.note(socket, format!("ping: {:?}", clone.ping()));
            events.note(socket, format!("pong: {:?}", clone.pong()));
            events.note(socket, format!("close: {:?}", clone.close()));
        })
    });
    let mut client = server.connect();
    assert_eq!(client.recv_close(), (1000, "Normal Closure".to_owned()));
    client.answer_close(1000);
    events.wait_note("close: Err(Closed(None))");
    let conn = events.snapshot()[0].conn;
    assert_eq!(
        events.notes(conn),
        [
            "before: true",
            "after: false",
            "clone after: false",
            "send: Err(Closed(Some(Text(\"too late\"))))",
            "ping: Err(Closed(None))",
            "pong: Err(Closed(None))",
            "close: Err(Closed(None))",
        ]
    );
}

#[test]
fn s5_is_open_is_false_on_every_clone_right_after_close_from_another_thread() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let clone = socket.clone();
    assert!(socket.is_open() && clone.is_open());
    thread::spawn(move || clone.close_with(4000, "from a thread"))
        .join()
        .unwrap()
        .unwrap();
    assert!(!socket.is_open(), "is_open must be false right after close");
    assert_eq!(client.recv_close(), (4000, "from a thread".to_owned()));
}

#[test]
fn s5_is_open_is_false_after_the_connection_ends() {
    let events = Events::new();
    let server = serve_echo(&events);
    let client = server.connect();
    let socket = events.wait_open();
    assert!(socket.is_open());
    client.drop_tcp();
    events.wait_close(socket.id());
    assert!(!socket.is_open());
}

// --- S5: operations on closed sockets -----------------------------------------

#[test]
fn s5_every_operation_on_a_closed_socket_returns_an_error_and_does_not_panic() {
    let events = Events::new();
    let server = serve_echo(&events);
    let client = server.connect();
    let socket = events.wait_open();
    client.drop_tcp();
    events.wait_close(socket.id());

    // A refused send hands its message back; control frames have none.
    assert_eq!(
        socket.send("text"),
        Err(SendError::Closed(Some(Message::from("text"))))
    );
    assert_eq!(
        socket
            .send(vec![1u8, 2, 3])
            .map_err(SendError::into_message),
        Err(Some(Message::from(vec![1u8, 2, 3])))
    );
    assert_eq!(socket.ping(), Err(SendError::Closed(None)));
    assert_eq!(socket.ping_with(&b"x"[..]), Err(SendError::Closed(None)));
    assert_eq!(socket.pong(), Err(SendError::Closed(None)));
    assert_eq!(socket.pong_with(&b"x"[..]), Err(SendError::Closed(None)));
    assert_eq!(socket.close(), Err(SendError::Closed(None)));
    assert_eq!(
        socket.close_with(4000, "late"),
        Err(SendError::Closed(None))
    );

    let (tx, rx) = mpsc::channel();
    let tx2 = tx.clone();
    socket.send_async(
        "late",
        move || tx.send(Err(())).unwrap(),
        move |error| tx2.send(Ok(error)).unwrap(),
    );
    assert_eq!(
        rx.recv_timeout(TIMEOUT)
            .expect("send_async ran no callback"),
        Ok(SendError::Closed(Some(Message::from("late")))),
        "send_async on a closed socket must call fail with the message"
    );
    assert_eq!(
        run_client(socket.send_and_wait("late")),
        Err(SendError::Closed(Some(Message::from("late"))))
    );
}

#[test]
fn s5_send_from_a_callback_after_close_returns_closed() {
    let events = Events::new();
    let server = serve_recorded(&events, |events| {
        listener().on_message(move |socket, _| {
            socket.close_with(4000, "closing").unwrap();
            let (tx, rx) = mpsc::channel();
            socket.send_async("x", || {}, move |e| tx.send(e).unwrap());
            // fail may run later, on another thread: wait for it here.
            let fail = rx.recv_timeout(TIMEOUT);
            events.note(
                socket,
                format!("send: {:?}, fail: {fail:?}", socket.send("x")),
            );
        })
    });
    let mut client = server.connect();
    client.send_text("go");
    assert_eq!(client.recv_close().0, 4000);
    events.wait_note("send: Err(Closed(Some(Text(\"x\")))), fail: Ok(Closed(Some(Text(\"x\"))))");
}

#[test]
fn s5_control_payloads_over_125_bytes_are_refused_without_closing() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let long = Bytes::from(vec![0u8; 126]);
    assert_eq!(
        socket.ping_with(long.clone()),
        Err(SendError::ControlTooLong(126))
    );
    assert_eq!(socket.pong_with(long), Err(SendError::ControlTooLong(126)));
    assert!(socket.is_open());
    socket.ping_with(vec![1u8; 125]).unwrap();
    assert_eq!(client.recv(), Incoming::Ping(vec![1u8; 125]));
}

// --- S5: send_async -----------------------------------------------------------

fn send_chain(socket: Socket, i: usize, n: usize, failures: mpsc::Sender<String>) {
    if i == n {
        return;
    }
    let next = socket.clone();
    let next_failures = failures.clone();
    socket.send_async(
        format!("chained {i}"),
        move || send_chain(next, i + 1, n, next_failures),
        move |error| failures.send(format!("send {i} failed: {error}")).unwrap(),
    );
}

#[test]
fn s5_a_succeed_callback_can_send_the_next_message() {
    let (failures_tx, failures) = mpsc::channel();
    let failures_tx = std::sync::Mutex::new(failures_tx);
    let server = serve(move || {
        let failures = failures_tx.lock().unwrap().clone();
        listener().on_open(move |socket| send_chain(socket.clone(), 0, 100, failures.clone()))
    });
    let mut client = server.connect();
    for i in 0..100 {
        assert_eq!(client.recv(), Incoming::Text(format!("chained {i}")));
    }
    assert!(
        failures.try_recv().is_err(),
        "no send of the chain may fail"
    );
}

#[test]
fn s5_send_and_wait_resolves_once_the_frame_is_handed_to_the_writer() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    assert_eq!(run_client(socket.send_and_wait("awaited")), Ok(()));
    assert_eq!(client.recv(), Incoming::Text("awaited".into()));
    socket.close().unwrap();
    assert_eq!(
        run_client(socket.send_and_wait("after close")),
        Err(SendError::Closed(Some(Message::from("after close"))))
    );
}

/// Issues `n` send_async of `size` bytes through `issue`, drops the client
/// once a quarter are issued, and checks that every send ran exactly one
/// callback, exactly once.
fn exactly_one_callback_per_send(from_listener: bool) {
    const N: usize = 3000;
    const SIZE: usize = 8 * 1024; // 24 MB in all: past the 16 MiB outbound limit
    let counts: Arc<Vec<AtomicU8>> = Arc::new((0..N).map(|_| AtomicU8::new(0)).collect());
    let issued = Arc::new(AtomicUsize::new(0));
    let (quarter_tx, quarter) = mpsc::channel::<()>();
    let quarter_tx = Arc::new(std::sync::Mutex::new(quarter_tx));
    let (done_tx, done) = mpsc::channel::<(usize, bool)>();
    let thread_done = done_tx.clone();
    let done_tx = std::sync::Mutex::new(done_tx);

    let issue_all = {
        let counts = Arc::clone(&counts);
        let issued = Arc::clone(&issued);
        let quarter_tx = Arc::clone(&quarter_tx);
        move |socket: &Socket, done: mpsc::Sender<(usize, bool)>| {
            let payload = Bytes::from(vec![b'x'; SIZE]);
            for i in 0..N {
                let (c1, c2) = (Arc::clone(&counts), Arc::clone(&counts));
                let (d1, d2) = (done.clone(), done.clone());
                socket.send_async(
                    Message::Binary(payload.clone()),
                    move || {
                        c1[i].fetch_add(1, Ordering::SeqCst);
                        let _ = d1.send((i, true));
                    },
                    move |_| {
                        c2[i].fetch_add(1, Ordering::SeqCst);
                        let _ = d2.send((i, false));
                    },
                );
                if issued.fetch_add(1, Ordering::SeqCst) + 1 == N / 4 {
                    let _ = quarter_tx.lock().unwrap().send(());
                }
            }
        }
    };

    let events = Events::new();
    let config = test_config().close_timeout(Duration::from_secs(1));
    let server = serve_recorded_with(config, &events, {
        let issue_all = issue_all.clone();
        move |_| {
            let done = done_tx.lock().unwrap().clone();
            let issue_all = issue_all.clone();
            listener().on_message(move |socket, _| {
                if from_listener {
                    issue_all(socket, done.clone());
                }
            })
        }
    });
    // The client never reads: frames pile up in the kernel and the
    // connection's buffer until it drops.
    let mut client = server.connect();
    let socket = events.wait_open();
    let issuer = if from_listener {
        client.send_text("go");
        None
    } else {
        let socket = socket.clone();
        Some(thread::spawn(move || issue_all(&socket, thread_done)))
    };
    quarter
        .recv_timeout(TIMEOUT)
        .expect("a quarter of the sends were never issued");
    client.drop_tcp();
    if let Some(issuer) = issuer {
        issuer.join().unwrap();
    }

    let mut seen = HashSet::new();
    while seen.len() < N {
        match done.recv_timeout(TIMEOUT) {
            Ok((i, _)) => assert!(seen.insert(i), "send {i} ran a second callback"),
            Err(_) => panic!(
                "only {} of {N} send_async ran a callback; missing e.g. {:?}",
                seen.len(),
                (0..N).find(|i| !seen.contains(i))
            ),
        }
    }
    // Give a buggy library the chance to run a second callback; a correct
    // one passes however short this is.
    thread::sleep(Duration::from_millis(200));
    for (i, count) in counts.iter().enumerate() {
        assert_eq!(
            count.load(Ordering::SeqCst),
            1,
            "send {i}: succeed + fail must run exactly once"
        );
    }
    assert!(done.try_recv().is_err(), "a callback ran twice");
    events.wait_close(socket.id());
}

#[test]
fn s5_every_send_async_from_another_thread_runs_exactly_one_callback_when_the_client_drops() {
    exactly_one_callback_per_send(false);
}

#[test]
fn s5_every_send_async_from_the_listener_runs_exactly_one_callback_when_the_client_drops() {
    exactly_one_callback_per_send(true);
}

// --- S5: identity -------------------------------------------------------------

#[test]
fn s5_sockets_are_equal_and_hash_by_connection() {
    let events = Events::new();
    let server = serve_echo(&events);
    let _a = server.connect();
    let _b = server.connect();
    let first = events.wait_open_nth(0);
    let second = events.wait_open_nth(1);
    assert_eq!(first, first.clone());
    assert_ne!(first, second);
    assert_ne!(first.id(), second.id());
    // Hash and Eq go by the connection id, which never changes, and
    // clippy's mutable_key_type lint stays quiet about a set of sockets.
    let set: HashSet<Socket> = [first.clone(), first.clone(), second.clone()].into();
    assert_eq!(set.len(), 2);
    assert!(format!("{first:?}").contains(&first.id().to_string()));
    fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
    assert_send_sync::<Socket>();
}

// --- S6: order ----------------------------------------------------------------

#[test]
fn s6_operations_from_a_callback_reach_the_wire_in_issue_order() {
    let server = serve(|| {
        listener().on_message(|socket, _| {
            socket.send("first").unwrap();
            socket.ping_with(&b"second"[..]).unwrap();
            socket.send(vec![3u8]).unwrap();
            socket.pong_with(&b"fourth"[..]).unwrap();
            socket.send_async("fifth", || {}, |_| {});
            socket.send("sixth").unwrap();
            socket.close_with(4000, "seventh").unwrap();
        })
    });
    let mut client = server.connect();
    client.send_text("go");
    assert_eq!(client.recv(), Incoming::Text("first".into()));
    assert_eq!(client.recv(), Incoming::Ping(b"second".to_vec()));
    assert_eq!(client.recv(), Incoming::Binary(vec![3]));
    assert_eq!(client.recv(), Incoming::Pong(b"fourth".to_vec()));
    assert_eq!(client.recv(), Incoming::Text("fifth".into()));
    assert_eq!(client.recv(), Incoming::Text("sixth".into()));
    assert_eq!(client.recv(), Incoming::Close(4000, "seventh".into()));
}

#[test]
fn s6_operations_from_a_callback_come_after_everything_issued_earlier() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_message(|socket, message: Message| {
            if message.as_text() == Some("mark") {
                socket.send("reply from the callback").unwrap();
            }
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    // Issued from another thread, all before the client sends "mark".
    let sender = socket.clone();
    thread::spawn(move || {
        for i in 0..2000 {
            sender.send(format!("earlier {i}")).unwrap();
        }
    })
    .join()
    .unwrap();
    client.send_text("mark");
    for i in 0..2000 {
        assert_eq!(client.recv(), Incoming::Text(format!("earlier {i}")));
    }
    assert_eq!(
        client.recv(),
        Incoming::Text("reply from the callback".into())
    );
}

#[test]
fn s6_send_async_callbacks_succeed_in_issue_order() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let (tx, rx) = mpsc::channel();
    for i in 0..500 {
        let tx = tx.clone();
        socket.send_async(
            format!("{i}"),
            move || tx.send(i).unwrap(),
            |e| panic!("send failed: {e}"),
        );
    }
    for i in 0..500 {
        assert_eq!(client.recv(), Incoming::Text(format!("{i}")));
    }
    let order: Vec<i32> = (0..500)
        .map(|_| rx.recv_timeout(TIMEOUT).expect("succeed did not run"))
        .collect();
    assert_eq!(order, (0..500).collect::<Vec<_>>());
}

#[test]
fn s6_large_payloads_keep_their_place_among_small_frames_and_their_callbacks_order() {
    // Payloads of 4 KiB and more go to the writer as chunks of their own
    // (shared with the message, not copied): they must still come out whole,
    // in issue order among the small frames, with `succeed` in that order.
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let large = |i: u32| -> Vec<u8> { (0..70_000u32).map(|j| ((i * 7 + j) % 251) as u8).collect() };
    let large_text = "é€ large ".repeat(600);
    let (tx, rx) = mpsc::channel();
    let sender = socket.clone();
    thread::spawn(move || {
        for i in 0..20u32 {
            let tx = tx.clone();
            sender.send(format!("small {i}")).unwrap();
            sender.send_async(
                large(i),
                move || tx.send(i).unwrap(),
                |e| panic!("send failed: {e}"),
            );
            sender.ping_with(&b"between"[..]).unwrap();
        }
    })
    .join()
    .unwrap();
    socket.send(large_text.clone()).unwrap();
    for i in 0..20u32 {
        assert_eq!(client.recv(), Incoming::Text(format!("small {i}")));
        assert_eq!(client.recv(), Incoming::Binary(large(i)));
        assert_eq!(client.recv(), Incoming::Ping(b"between".to_vec()));
    }
    assert_eq!(client.recv(), Incoming::Text(large_text));
    let order: Vec<u32> = (0..20)
        .map(|_| rx.recv_timeout(TIMEOUT).expect("succeed did not run"))
        .collect();
    assert_eq!(order, (0..20).collect::<Vec<_>>());
}
