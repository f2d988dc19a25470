//! S4 Close handshake: a peer close is answered (echoing its code, 1000
//! when it sent none), reaches `on_close` with the peer's code and reason,
//! and ends TCP; a server close sends the close frame, stops delivering
//! messages, waits up to `close_timeout` for the peer's close and gives
//! `on_close` the code the server sent; invalid close payloads close 1002.

mod common;

use std::time::Duration;

use actix_ws_listener::{listener, CloseCode, Error, Message, SendError};
use awc::ws;
use common::*;
use futures_util::SinkExt;

// --- S4: peer close -----------------------------------------------------------

#[test]
fn s4_peer_close_code_and_reason_reach_on_close_and_the_code_is_echoed() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send_close(4001, "x");
    let (code, _reason) = client.recv_close();
    assert_eq!(code, 4001, "the server must echo the peer's close code");
    client.expect_eof();

    events.assert_closed(socket.id(), CloseCode(4001), "x");
}

#[test]
fn s4_peer_close_with_awc_reaches_on_close_and_is_echoed() {
    let events = Events::new();
    let server = serve_echo(&events);
    let url = server.url("/ws");
    run_client(async move {
        let (_, mut framed) = awc::Client::new().ws(url).connect().await.unwrap();
        framed
            .send(ws::Message::Close(Some(ws::CloseReason {
                code: ws::CloseCode::Other(4001),
                description: Some("x".into()),
            })))
            .await
            .unwrap();
        match awc_next(&mut framed).await {
            ws::Frame::Close(reason) => assert_eq!(awc_close_code(&reason), 4001),
            other => panic!("expected the echoed close, got {other:?}"),
        }
    });
    let socket = events.wait_open();
    assert_eq!(
        events.wait_close(socket.id()),
        (CloseCode(4001), "x".to_owned())
    );
}

#[test]
fn s4_peer_close_without_payload_is_answered_with_1000_and_on_close_gets_1005() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send_close_empty();
    assert_eq!(client.recv_close().0, 1000);
    client.expect_eof();

    assert_eq!(
        events.wait_close(socket.id()),
        (CloseCode::NO_STATUS, String::new())
    );
}

#[test]
fn s4_peer_close_with_code_only_gives_an_empty_reason() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_close(1001, "");
    assert_eq!(client.recv_close().0, 1001);
    assert_eq!(
        events.wait_close(socket.id()),
        (CloseCode::GOING_AWAY, String::new())
    );
}

#[test]
fn s4_peer_close_reason_of_123_bytes_is_accepted() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let reason = "r".repeat(123);
    client.send_close(3000, &reason);
    assert_eq!(client.recv_close().0, 3000);
    assert_eq!(events.wait_close(socket.id()), (CloseCode(3000), reason));
}

#[test]
fn s4_messages_queued_before_the_peer_close_are_delivered() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let mut burst = Vec::new();
    for i in 0..5 {
        burst.extend(FrameSpec::new(OP_TEXT, format!("m{i}")).encode());
    }
    burst.extend(FrameSpec::new(OP_CLOSE, close_payload(1000, "")).encode());
    client.write(&burst);
    let (code, _, before) = client.recv_until_close();
    assert_eq!(code, 1000);
    assert_eq!(
        before,
        (0..5)
            .map(|i| Incoming::Text(format!("m{i}")))
            .collect::<Vec<_>>()
    );
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::NORMAL);
    assert_eq!(events.wait_messages(socket.id(), 5).len(), 5);
}

// --- S4: server close ---------------------------------------------------------

#[test]
fn s4_server_close_with_code_and_reason_is_seen_by_awc() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_open(|socket| {
            socket.close_with(4000, "bye").unwrap();
        })
    });
    let url = server.url("/ws");
    run_client(async move {
        let (_, mut framed) = awc::Client::new().ws(url).connect().await.unwrap();
        match awc_next(&mut framed).await {
            ws::Frame::Close(Some(reason)) => {
                assert_eq!(u16::from(reason.code), 4000);
                assert_eq!(reason.description.as_deref(), Some("bye"));
            }
            other => panic!("expected close 4000 \"bye\", got {other:?}"),
        }
        framed
            .send(ws::Message::Close(Some(ws::CloseCode::Other(4000).into())))
            .await
            .unwrap();
    });
    let socket = events.wait_open();
    events.assert_closed(socket.id(), CloseCode(4000), "bye");
}

#[test]
fn s4_server_close_gives_on_close_the_code_the_server_sent() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_open(|socket| {
            socket.close_with(4000, "bye").unwrap();
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    assert_eq!(client.recv_close(), (4000, "bye".to_owned()));
    // The peer answers with a different code: on_close still reports what
    // the server sent.
    client.send_close(1000, "whatever");
    client.expect_eof();
    assert_eq!(
        events.wait_close(socket.id()),
        (CloseCode(4000), "bye".to_owned())
    );
}

#[test]
fn s4_server_close_ends_tcp_after_close_timeout_when_the_peer_never_answers() {
    let events = Events::new();
    let config = test_config().close_timeout(Duration::from_millis(300));
    let server = serve_recorded_with(config, &events, |_| {
        listener().on_open(|socket| {
            socket.close_with(4002, "no answer expected").unwrap();
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    assert_eq!(client.recv_close().0, 4002);
    // No close frame from this side: the server gives up on its own.
    client.expect_eof();
    events.assert_closed(socket.id(), CloseCode(4002), "no answer expected");
}

#[test]
fn s4_messages_after_the_server_close_are_not_delivered() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_message(|socket, message: Message| {
            if message.as_text() == Some("close") {
                socket.close().unwrap();
            }
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    // "late" is written before the client has seen the server's close.
    let mut burst = FrameSpec::new(OP_TEXT, "close").encode();
    burst.extend(FrameSpec::new(OP_TEXT, "late").encode());
    burst.extend(FrameSpec::new(OP_BINARY, "late too").encode());
    client.write(&burst);
    assert_eq!(client.recv_close(), (1000, "Normal Closure".to_owned()));
    client.send_close(1000, "");
    client.expect_eof();

    // on_close ran after the peer's close was read, so "late" was read
    // before it: not having it in the log is a result, not a race.
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::NORMAL);
    let messages = events.wait_messages(socket.id(), 1);
    assert_eq!(messages, vec![Message::text("close")]);
}

#[test]
fn s4_sends_queued_before_close_go_out_before_the_close_frame() {
    let server = serve(|| {
        listener().on_open(|socket| {
            for i in 0..50 {
                socket.send(format!("before {i}")).unwrap();
            }
            socket.close_with(4003, "after the sends").unwrap();
            assert!(socket.send("after").is_err_and(|e| e.is_closed()));
        })
    });
    let mut client = server.connect();
    let (code, reason, before) = client.recv_until_close();
    assert_eq!((code, reason.as_str()), (4003, "after the sends"));
    let expected: Vec<Incoming> = (0..50)
        .map(|i| Incoming::Text(format!("before {i}")))
        .collect();
    assert_eq!(before, expected);
}

#[test]
fn s4_close_without_arguments_sends_1000_normal_closure_as_ring_does() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener().on_message(|socket, _| {
            socket.close().unwrap();
        })
    });
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_text("please close");
    // ring.websocket/close: (close socket 1000 "Normal Closure").
    assert_eq!(client.recv_close(), (1000, "Normal Closure".to_owned()));
    client.answer_close(1000);
    assert_eq!(
        events.wait_close(socket.id()),
        (CloseCode::NORMAL, "Normal Closure".to_owned())
    );
}

// --- S4: close_with argument checks -------------------------------------------

#[test]
fn s4_close_with_an_invalid_code_or_a_long_reason_returns_err_and_leaves_the_socket_open() {
    let events = Events::new();
    let server = serve_recorded(&events, |events| {
        listener().on_open(move |socket| {
            let results = [
                socket.close_with(1005, ""),
                socket.close_with(1006, ""),
                socket.close_with(1015, ""),
                socket.close_with(999, ""),
                socket.close_with(0, ""),
                socket.close_with(5000, ""),
                socket.close_with(4000, "r".repeat(124)),
            ];
            events.note(socket, format!("{results:?}"));
            events.note(socket, format!("open: {}", socket.is_open()));
            // The socket still works and the valid close still goes out.
            let _ = socket.send("still open");
            events.note(
                socket,
                format!("valid: {:?}", socket.close_with(4000, "r".repeat(123))),
            );
        })
    });
    let mut client = server.connect();
    assert_eq!(client.recv(), Incoming::Text("still open".into()));
    assert_eq!(client.recv_close(), (4000, "r".repeat(123)));

    events.wait_note("valid: Ok(())");
    let conn = events.snapshot()[0].conn;
    let notes = events.notes(conn);
    let expected = format!(
        "{:?}",
        [
            Err::<(), _>(SendError::InvalidCloseCode(1005)),
            Err(SendError::InvalidCloseCode(1006)),
            Err(SendError::InvalidCloseCode(1015)),
            Err(SendError::InvalidCloseCode(999)),
            Err(SendError::InvalidCloseCode(0)),
            Err(SendError::InvalidCloseCode(5000)),
            Err(SendError::ReasonTooLong(124)),
        ]
    );
    assert_eq!(notes[0], expected);
    assert_eq!(notes[1], "open: true");
}

#[test]
fn s4_close_twice_returns_closed_the_second_time() {
    let events = Events::new();
    let server = serve_recorded(&events, |events| {
        listener().on_open(move |socket| {
            let first = socket.close_with(4000, "first");
            let second = socket.close_with(4001, "second");
            let third = socket.clone().close();
            events.note(socket, format!("{first:?} {second:?} {third:?}"));
        })
    });
    let mut client = server.connect();
    assert_eq!(client.recv_close(), (4000, "first".to_owned()));
    events.wait_note("Ok(()) Err(Closed(None)) Err(Closed(None))");
}

// --- S4: invalid close payloads -----------------------------------------------

#[test]
fn s4_invalid_close_payloads_close_with_1002() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("1-byte payload", vec![0x03]),
        ("code 1005 on the wire", close_payload(1005, "")),
        ("code 1006 on the wire", close_payload(1006, "")),
        ("code 999", close_payload(999, "")),
        ("code 1004", close_payload(1004, "")),
        ("code 5000", close_payload(5000, "")),
        (
            "non-UTF-8 reason",
            [&1000u16.to_be_bytes()[..], &[0xFF, 0xFE]].concat(),
        ),
    ];
    let events = Events::new();
    let server = serve_echo(&events);
    for (n, (what, payload)) in cases.into_iter().enumerate() {
        let mut client = server.connect();
        let socket = events.wait_open_nth(n);
        client.send(FrameSpec::new(OP_CLOSE, payload));
        assert_eq!(client.recv_close().0, 1002, "{what}");
        assert!(
            matches!(events.wait_error(socket.id()), Error::Protocol(_)),
            "{what}: on_error should get a protocol error"
        );
        assert_eq!(
            events.wait_close(socket.id()).0,
            CloseCode::PROTOCOL_ERROR,
            "{what}"
        );
        events.assert_lifecycle(socket.id());
    }
}

#[test]
fn s4_close_frame_longer_than_125_bytes_closes_with_1002() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(
        OP_CLOSE,
        close_payload(1000, &"r".repeat(124)),
    ));
    assert_eq!(client.recv_close().0, 1002);
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::PROTOCOL_ERROR);
}
