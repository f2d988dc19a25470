//! S2 Messages: whole messages, fragments assembled, text validated as
//! UTF-8 (failing fast), text/binary type preserved both ways.
//! S3 Ping/pong: the default `on_ping` answers with the same payload,
//! `on_pong` sees pongs, control frames inside a fragmented message are
//! handled immediately.

mod common;

use actix_ws_listener::{listener, Bytes, CloseCode, Error, Message};
use awc::ws;
use common::*;
use futures_util::SinkExt;

// --- S2: type preserved -----------------------------------------------------

#[test]
fn s2_text_and_binary_keep_their_type_both_ways_with_awc() {
    let events = Events::new();
    let server = serve_echo(&events);
    let url = server.url("/ws");
    run_client(async move {
        let (_, mut framed) = awc::Client::new().ws(url).connect().await.unwrap();
        framed
            .send(ws::Message::Text("héllo wörld".into()))
            .await
            .unwrap();
        match awc_next(&mut framed).await {
            ws::Frame::Text(text) => assert_eq!(&text[..], "héllo wörld".as_bytes()),
            other => panic!("text must come back as text, got {other:?}"),
        }
        framed
            .send(ws::Message::Binary(Bytes::from_static(&[0, 1, 2, 255])))
            .await
            .unwrap();
        match awc_next(&mut framed).await {
            ws::Frame::Binary(data) => assert_eq!(&data[..], &[0, 1, 2, 255]),
            other => panic!("binary must come back as binary, got {other:?}"),
        }
        // Valid UTF-8 sent as binary stays binary.
        framed
            .send(ws::Message::Binary(Bytes::from_static(b"looks like text")))
            .await
            .unwrap();
        match awc_next(&mut framed).await {
            ws::Frame::Binary(data) => assert_eq!(&data[..], b"looks like text"),
            other => panic!("binary must come back as binary, got {other:?}"),
        }
        framed.send(ws::Message::Close(None)).await.unwrap();
    });
    let socket = events.wait_open();
    let messages = events.wait_messages(socket.id(), 3);
    assert_eq!(messages[0], Message::text("héllo wörld"));
    assert!(messages[0].is_text());
    assert_eq!(messages[1], Message::binary(vec![0u8, 1, 2, 255]));
    assert!(messages[1].is_binary());
    assert!(
        messages[2].is_binary(),
        "binary that is valid UTF-8 stays binary"
    );
}

#[test]
fn s2_messages_sent_by_the_server_keep_their_type() {
    let server = serve(|| {
        listener().on_open(|socket| {
            let _ = socket.send("a &str");
            let _ = socket.send(String::from("a String"));
            let _ = socket.send(Message::text("a Message::text"));
            let _ = socket.send(vec![1u8, 2, 3]);
            let _ = socket.send(&b"a &[u8]"[..]);
            let _ = socket.send(Bytes::from_static(b"Bytes"));
            let _ = socket.send("");
            let _ = socket.send(Vec::<u8>::new());
        })
    });
    let mut client = server.connect();
    assert_eq!(client.recv(), Incoming::Text("a &str".into()));
    assert_eq!(client.recv(), Incoming::Text("a String".into()));
    assert_eq!(client.recv(), Incoming::Text("a Message::text".into()));
    assert_eq!(client.recv(), Incoming::Binary(vec![1, 2, 3]));
    assert_eq!(client.recv(), Incoming::Binary(b"a &[u8]".to_vec()));
    assert_eq!(client.recv(), Incoming::Binary(b"Bytes".to_vec()));
    assert_eq!(client.recv(), Incoming::Text(String::new()));
    assert_eq!(client.recv(), Incoming::Binary(Vec::new()));
}

#[test]
fn s2_empty_messages_are_delivered_with_their_type() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    client.send_text("");
    assert_eq!(client.recv(), Incoming::Text(String::new()));
    client.send_binary(b"");
    assert_eq!(client.recv(), Incoming::Binary(Vec::new()));
    let socket = events.wait_open();
    let messages = events.wait_messages(socket.id(), 2);
    assert_eq!(
        messages,
        vec![Message::text(""), Message::binary(Vec::new())]
    );
}

// --- S2: fragments ------------------------------------------------------------

#[test]
fn s2_fragmented_text_is_delivered_as_one_message() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    client.send(FrameSpec::new(OP_TEXT, "Hel").fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, "lo, ").fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, "").fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, "world"));
    assert_eq!(client.recv(), Incoming::Text("Hello, world".into()));

    let socket = events.wait_open();
    let messages = events.wait_messages(socket.id(), 1);
    assert_eq!(messages, vec![Message::text("Hello, world")]);
}

#[test]
fn s2_fragmented_binary_is_delivered_as_one_message() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let data: Vec<u8> = (0..=255u8).cycle().take(3000).collect();
    for (i, chunk) in data.chunks(700).enumerate() {
        let opcode = if i == 0 { OP_BINARY } else { OP_CONTINUATION };
        let last = (i + 1) * 700 >= data.len();
        client.send(FrameSpec::new(opcode, chunk).fin(last));
    }
    assert_eq!(client.recv(), Incoming::Binary(data.clone()));

    let socket = events.wait_open();
    let messages = events.wait_messages(socket.id(), 1);
    assert_eq!(messages, vec![Message::binary(data)]);
}

#[test]
fn s2_a_character_split_across_fragments_is_valid_text() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let euro = "€".as_bytes(); // 3 bytes
    client.send(FrameSpec::new(OP_TEXT, [b"price: ", &euro[..1]].concat()).fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, &euro[1..2]).fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, [&euro[2..], b"5"].concat()));
    assert_eq!(client.recv(), Incoming::Text("price: €5".into()));
}

#[test]
fn s2_frames_written_in_pieces_are_reassembled() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let big: Vec<u8> = (0..70_000u32).map(|i| (i % 251) as u8).collect();
    let mut bytes = FrameSpec::new(OP_TEXT, "split across writes").encode();
    bytes.extend(FrameSpec::new(OP_BINARY, big.clone()).encode());
    // Byte by byte through the headers, then larger pieces.
    client.write_split(&bytes[..40], 1);
    client.write_split(&bytes[40..], 4093);
    assert_eq!(client.recv(), Incoming::Text("split across writes".into()));
    assert_eq!(client.recv(), Incoming::Binary(big));
}

#[test]
fn s2_two_frames_in_one_write_are_two_messages() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let mut bytes = FrameSpec::new(OP_TEXT, "one").encode();
    bytes.extend(FrameSpec::new(OP_TEXT, "two").encode());
    client.write(&bytes);
    assert_eq!(client.recv_text(), "one");
    assert_eq!(client.recv_text(), "two");
}

// --- S2: UTF-8 ------------------------------------------------------------------

#[test]
fn s2_invalid_utf8_text_closes_with_1007() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(OP_TEXT, vec![b'o', b'k', 0xFF, 0xFE]));
    assert_eq!(client.recv_close().0, 1007);

    assert_eq!(events.wait_error(socket.id()), Error::InvalidUtf8);
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::INVALID_PAYLOAD);
    let messages: Vec<_> = events
        .of(socket.id())
        .into_iter()
        .filter(|e| matches!(e, Event::Message(_)))
        .collect();
    assert!(
        messages.is_empty(),
        "invalid text was delivered: {messages:?}"
    );
}

#[test]
fn s2_invalid_utf8_fails_fast_before_the_frame_is_complete() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    // A text frame declaring 10 000 bytes whose first bytes are already
    // invalid: the server must close without waiting for the rest.
    let mut prefix = vec![b'a'; 16];
    prefix.extend_from_slice(&[0xC0, 0xAF]); // overlong encoding: never valid
    prefix.extend_from_slice(&[b'b'; 16]);
    let frame = FrameSpec::new(OP_TEXT, prefix).declared_len(10_000);
    client.write(&frame.encode());
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(socket.id()), Error::InvalidUtf8);
}

#[test]
fn s2_invalid_utf8_in_an_early_fragment_fails_before_the_last_fragment() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(OP_TEXT, "fine so far").fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, vec![0xED, 0xA0, 0x80]).fin(false)); // surrogate
                                                                                     // No final fragment is ever sent.
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(socket.id()), Error::InvalidUtf8);
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::INVALID_PAYLOAD);
}

#[test]
fn s2_invalid_utf8_in_the_last_fragment_closes_with_1007() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(OP_TEXT, "fine so far").fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, vec![b'!', 0xFF]));
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(socket.id()), Error::InvalidUtf8);
}

#[test]
fn s2_text_truncated_in_the_middle_of_a_character_closes_with_1007() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    let euro = "€".as_bytes();
    client.send(FrameSpec::new(OP_TEXT, [b"cut: ", &euro[..2]].concat()).fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, ""));
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(socket.id()), Error::InvalidUtf8);
}

// --- S3: ping / pong ----------------------------------------------------------

#[test]
fn s3_default_on_ping_answers_pong_with_the_same_payload() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| Quiet);
    let mut client = server.connect();
    client.send_ping(b"are you there?");
    assert_eq!(client.recv(), Incoming::Pong(b"are you there?".to_vec()));
    client.send_ping(b"");
    assert_eq!(client.recv(), Incoming::Pong(Vec::new()));
    let max = vec![0xABu8; 125];
    client.send_ping(&max);
    assert_eq!(client.recv(), Incoming::Pong(max));

    let socket = events.wait_open();
    events.wait_for("three on_ping events", |log| {
        (log.iter()
            .filter(|r| r.conn == socket.id() && matches!(r.event, Event::Ping(_)))
            .count()
            == 3)
            .then_some(())
    });
}

#[test]
fn s3_closure_listener_without_on_ping_still_answers_pings() {
    let server = serve(|| listener().on_message(|s, m| drop(s.send(m))));
    let mut client = server.connect();
    client.send_ping(b"closure");
    assert_eq!(client.recv(), Incoming::Pong(b"closure".to_vec()));
}

#[test]
fn s3_a_custom_on_ping_replaces_the_automatic_pong() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener()
            .on_ping(|socket, data: Bytes| {
                let _ = socket.send(format!("saw ping {}", data.len()));
            })
            .on_message(|s, m| drop(s.send(m)))
    });
    let mut client = server.connect();
    client.send_ping(b"1234");
    client.send_text("after the ping");
    // Had a pong been sent, it would come before these (S6).
    assert_eq!(client.recv(), Incoming::Text("saw ping 4".into()));
    assert_eq!(client.recv(), Incoming::Text("after the ping".into()));
}

#[test]
fn s3_on_pong_gets_the_payload_of_a_pong() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send_pong(b"unsolicited");
    let data = events.wait_for("on_pong", |log| {
        log.iter().find_map(|r| match &r.event {
            Event::Pong(data) => Some(data.clone()),
            _ => None,
        })
    });
    assert_eq!(&data[..], b"unsolicited");
    // A pong is not answered.
    client.send_text("next");
    assert_eq!(client.recv(), Incoming::Text("next".into()));
    drop(socket);
}

#[test]
fn s3_server_ping_reaches_the_client_and_its_pong_reaches_on_pong() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    socket.ping_with(&b"from server"[..]).unwrap();
    assert_eq!(client.recv(), Incoming::Ping(b"from server".to_vec()));
    client.send_pong(b"from server");
    let data = events.wait_for("on_pong", |log| {
        log.iter().find_map(|r| match &r.event {
            Event::Pong(data) => Some(data.clone()),
            _ => None,
        })
    });
    assert_eq!(&data[..], b"from server");
    socket.ping().unwrap();
    assert_eq!(client.recv(), Incoming::Ping(Vec::new()));
    socket.pong_with(&b"unsolicited"[..]).unwrap();
    assert_eq!(client.recv(), Incoming::Pong(b"unsolicited".to_vec()));
    socket.pong().unwrap();
    assert_eq!(client.recv(), Incoming::Pong(Vec::new()));
}

#[test]
fn s3_ping_inside_a_fragmented_message_is_answered_before_the_message_ends() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();

    client.send(FrameSpec::new(OP_TEXT, "frag").fin(false));
    client.send_ping(b"in between");
    // The pong arrives while the message is still unfinished.
    assert_eq!(client.recv(), Incoming::Pong(b"in between".to_vec()));
    client.send(FrameSpec::new(OP_CONTINUATION, "ment").fin(false));
    client.send_pong(b"also in between");
    events.wait_for("on_pong inside the fragmented message", |log| {
        log.iter()
            .any(|r| matches!(r.event, Event::Pong(_)))
            .then_some(())
    });
    client.send(FrameSpec::new(OP_CONTINUATION, "ed"));
    assert_eq!(client.recv(), Incoming::Text("fragmented".into()));

    let log: Vec<Event> = events
        .of(socket.id())
        .into_iter()
        .filter(|e| !matches!(e, Event::Open(_)))
        .collect();
    assert!(
        matches!(
            &log[..],
            [Event::Ping(_), Event::Pong(_), Event::Message(m)] if m.as_text() == Some("fragmented")
        ),
        "control frames must be handled as they arrive: {log:#?}"
    );
}

#[test]
fn s3_close_inside_a_fragmented_message_is_handled_at_once() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(OP_BINARY, vec![1, 2, 3]).fin(false));
    client.send_close(1000, "changed my mind");
    assert_eq!(client.recv_close().0, 1000);
    events.assert_closed(socket.id(), CloseCode::NORMAL, "changed my mind");
}
