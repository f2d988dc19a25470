//! S1 Lifecycle: `on_open` runs exactly once and first; `on_close` runs
//! exactly once and last, however the connection ends (peer close, server
//! close, protocol error, listener panic, abrupt TCP drop, server stop);
//! nothing runs after `on_close`.

mod common;

use actix_ws_listener::{listener, CloseCode, Error, Message, SendError};
use common::*;

#[test]
fn s1_on_open_and_on_close_run_once_after_peer_close() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send_text("hello");
    assert_eq!(client.recv_text(), "hello");
    client.send_close(1000, "done");
    assert_eq!(client.recv_close().0, 1000);
    client.expect_eof();

    events.assert_closed(socket.id(), CloseCode::NORMAL, "done");
}

#[test]
fn s1_on_open_and_on_close_run_once_after_server_close() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_message(|socket, _| {
            let _ = socket.close_with(4000, "server says bye");
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send_text("close please");
    assert_eq!(client.recv_close(), (4000, "server says bye".to_owned()));
    client.answer_close(4000);
    client.expect_eof();

    events.assert_closed(socket.id(), CloseCode(4000), "server says bye");
}

#[test]
fn s1_on_close_gets_1006_and_empty_reason_after_abrupt_tcp_drop() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_text("still here");
    assert_eq!(client.recv_text(), "still here");

    client.drop_tcp();

    events.assert_closed(socket.id(), CloseCode::ABNORMAL, "");
}

#[test]
fn s1_on_close_gets_1006_after_tcp_drop_in_the_middle_of_a_frame() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    // The header declares 1000 bytes; only 10 arrive before the drop.
    let frame = FrameSpec::new(OP_BINARY, vec![7u8; 10]).declared_len(1000);
    client.write(&frame.encode());
    client.drop_tcp();

    events.assert_closed(socket.id(), CloseCode::ABNORMAL, "");
    let log = events.of(socket.id());
    assert!(
        !log.iter().any(|e| matches!(e, Event::Message(_))),
        "a truncated frame must not be delivered: {log:#?}"
    );
}

#[test]
fn s1_on_close_gets_1006_after_tcp_drop_in_the_middle_of_a_fragmented_message() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send(FrameSpec::new(OP_TEXT, "first half, ").fin(false));
    // A ping between fragments is answered, which proves the first fragment
    // was read before the drop.
    client.send_ping(b"sync");
    assert_eq!(client.recv(), Incoming::Pong(b"sync".to_vec()));
    client.drop_tcp();

    events.assert_closed(socket.id(), CloseCode::ABNORMAL, "");
}

#[test]
fn s1_on_open_and_on_close_run_once_after_listener_panic() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_message(|socket, message: Message| {
            if message.as_text() == Some("panic") {
                panic!("listener exploded on purpose");
            }
            let _ = socket.send(message);
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send_text("panic");
    assert_eq!(client.recv_close().0, 1011);
    client.answer_close(1011);

    let error = events.wait_error(socket.id());
    assert!(
        matches!(&error, Error::ListenerPanic(m) if m.contains("listener exploded")),
        "on_error should get the panic, got {error:?}"
    );
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::INTERNAL_ERROR);
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_panic_in_on_open_still_runs_on_close_once() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_open(|_| panic!("on_open exploded on purpose"))
    });
    let mut client = server.connect();
    let socket = events.wait_open();

    assert_eq!(client.recv_close().0, 1011);
    client.answer_close(1011);

    assert!(matches!(
        events.wait_error(socket.id()),
        Error::ListenerPanic(_)
    ));
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::INTERNAL_ERROR);
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_on_close_runs_once_after_a_protocol_error() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send(FrameSpec::new(OP_TEXT, "not masked").unmasked());
    assert_eq!(client.recv_close().0, 1002);

    assert!(matches!(events.wait_error(socket.id()), Error::Protocol(_)));
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::PROTOCOL_ERROR);
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_on_open_runs_before_a_message_sent_with_the_handshake() {
    let events = Events::new();
    let server = serve_echo(&events);
    // The first frame travels in the same write as the handshake request, so
    // it is in the server's hands before the connection has even started.
    let stream = handshake_with_text(server.addr(), "/ws", "early");

    let socket = events.wait_open();
    let messages = events.wait_messages(socket.id(), 1);
    assert_eq!(messages[0].as_text(), Some("early"));
    let log = events.of(socket.id());
    assert!(
        matches!(log.first(), Some(Event::Open(_))),
        "on_open must run before on_message: {log:#?}"
    );
    drop(stream);
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_on_close_comes_when_the_peer_resets_the_socket_as_its_echo_is_written() {
    // The client vanishes with the 101 and the echo unread, so its TCP
    // sends a reset. Whether the server's reader or its writer meets the
    // reset first is a race; whichever does, the connection must end and
    // `on_close` must run. Repeated, so that both orders come up.
    let events = Events::new();
    let server = serve_echo(&events);
    for n in 0..30 {
        let stream = handshake_with_text(server.addr(), "/ws", "and gone");
        let socket = events.wait_open_nth(n);
        events.wait_messages(socket.id(), 1);
        drop(stream);
        let (code, _) = events.wait_close(socket.id());
        assert_eq!(code, CloseCode::ABNORMAL, "connection #{n}");
    }
}

#[test]
fn s1_on_close_runs_once_when_the_listener_closes_in_on_open() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_open(|socket| {
            let _ = socket.close();
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();

    assert_eq!(client.recv_close(), (1000, "Normal Closure".to_owned()));
    client.answer_close(1000);
    client.expect_eof();

    assert_eq!(events.wait_close(socket.id()).0, CloseCode::NORMAL);
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_no_callback_runs_after_on_close_even_when_the_peer_keeps_talking() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    // Close, then keep writing frames in the same burst: everything after
    // the close frame must be ignored.
    let mut burst = FrameSpec::new(OP_CLOSE, close_payload(1000, "")).encode();
    burst.extend(FrameSpec::new(OP_TEXT, "after close").encode());
    burst.extend(FrameSpec::new(OP_PING, "after close").encode());
    burst.extend(FrameSpec::new(OP_PONG, "after close").encode());
    client.write(&burst);
    assert_eq!(client.recv_close().0, 1000);

    assert_eq!(events.wait_close(socket.id()).0, CloseCode::NORMAL);
    events.assert_nothing_after_close(socket.id());
    let log = events.of(socket.id());
    assert!(
        !log.iter()
            .any(|e| matches!(e, Event::Message(_) | Event::Ping(_) | Event::Pong(_))),
        "frames after the peer's close must not reach the listener: {log:#?}"
    );
    // The socket outlives the connection; using it is an error, not a panic.
    assert!(!socket.is_open());
    assert_eq!(
        socket.send("late"),
        Err(SendError::Closed(Some("late".into())))
    );
}

#[test]
fn s1_on_close_runs_once_when_the_server_stops() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_text("ping-pong");
    assert_eq!(client.recv_text(), "ping-pong");

    drop(server);

    events.wait_close(socket.id());
    events.assert_nothing_after_close(socket.id());
}

#[test]
fn s1_every_connection_of_a_server_gets_one_open_and_one_close() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut clients: Vec<RawClient> = (0..12).map(|_| server.connect()).collect();
    let sockets: Vec<_> = (0..12).map(|n| events.wait_open_nth(n)).collect();

    // Three ways to end, four connections each.
    for (i, client) in clients.iter_mut().enumerate() {
        match i % 3 {
            0 => client.send_close(1000, ""),
            1 => client.send(FrameSpec::new(OP_TEXT, "x").unmasked()),
            _ => client.shutdown_write(),
        }
    }
    for socket in &sockets {
        events.wait_close(socket.id());
    }
    drop(clients);
    for socket in &sockets {
        events.assert_nothing_after_close(socket.id());
    }
}

#[test]
fn a_boxed_dyn_listener_gets_every_callback_including_on_ping() {
    struct Quiet;
    impl actix_ws_listener::Listener for Quiet {
        // Overrides the default pong: a boxed listener must reach this.
        fn on_ping(&mut self, _: &actix_ws_listener::Socket, _: bytes::Bytes) {}
    }
    let events = Events::new();
    let recorder = events.clone();
    let server =
        serve(move || -> Box<dyn actix_ws_listener::Listener> { Box::new(recorder.record(Quiet)) });
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_ping(b"unanswered");
    client.send_text("hello");
    events.wait_messages(socket.id(), 1);
    client.send_close(1000, "done");
    // No pong before the close echo: Quiet's on_ping ran, not the default.
    assert_eq!(client.recv_close().0, 1000);
    events.assert_closed(socket.id(), CloseCode::NORMAL, "done");
}
