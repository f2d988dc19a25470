//! S7 Errors: protocol violations close with their RFC 6455 code, after
//! `on_error` and before `on_close`.
//! S10 Isolation: a panic in a listener closes only its connection (1011,
//! `on_error` with the panic, `on_close`); the server and every other
//! connection carry on.

mod common;

use actix_ws_listener::{listener, CloseCode, Error, Message, ProtocolError};
use common::*;

/// Sends `frames` on a new connection to an echo server and checks that
/// the server closes with `code`, calling `on_error` (returned) before
/// `on_close`, once each.
fn violation_closes_with(frames: &[FrameSpec], code: u16) -> Error {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let socket = events.wait_open();
    for frame in frames {
        // The server may close before the last frames are written.
        let _ = client.try_write(&frame.encode());
    }
    let (sent, _, _) = client.recv_until_close();
    assert_eq!(sent, code, "close code sent for {frames:?}");
    client.expect_eof();

    let error = events.wait_error(socket.id());
    assert_eq!(error.close_code(), CloseCode(code), "{error:?}");
    assert_eq!(events.wait_close(socket.id()).0, CloseCode(code));
    events.assert_lifecycle(socket.id());
    let log = events.of(socket.id());
    let error_at = log.iter().position(|e| matches!(e, Event::Error(_)));
    let close_at = log.iter().position(|e| matches!(e, Event::Close(..)));
    assert!(
        error_at < close_at,
        "S7: on_error must run before on_close: {log:#?}"
    );
    error
}

fn assert_protocol_error(frames: &[FrameSpec], cause: ProtocolError) {
    let error = violation_closes_with(frames, 1002);
    assert_eq!(error, Error::Protocol(cause));
}

// --- S7: 1002 protocol errors -------------------------------------------------

#[test]
fn s7_unmasked_client_frame_closes_with_1002() {
    assert_protocol_error(
        &[FrameSpec::new(OP_TEXT, "hello").unmasked()],
        ProtocolError::UnmaskedFrame,
    );
}

#[test]
fn s7_reserved_bits_without_an_extension_close_with_1002() {
    for (rsv, cause) in [
        (0b100, ProtocolError::CompressionNotNegotiated),
        (0b010, ProtocolError::ReservedBits),
        (0b001, ProtocolError::ReservedBits),
        (0b111, ProtocolError::ReservedBits),
    ] {
        assert_protocol_error(&[FrameSpec::new(OP_TEXT, "hello").rsv(rsv)], cause);
    }
}

#[test]
fn s7_reserved_opcodes_close_with_1002() {
    for opcode in [0x3, 0x7, 0xB, 0xF] {
        assert_protocol_error(
            &[FrameSpec::new(opcode, "?")],
            ProtocolError::ReservedOpcode(opcode),
        );
    }
}

#[test]
fn s7_fragmented_control_frame_closes_with_1002() {
    assert_protocol_error(
        &[FrameSpec::new(OP_PING, "half").fin(false)],
        ProtocolError::FragmentedControlFrame,
    );
}

#[test]
fn s7_control_frame_over_125_bytes_closes_with_1002() {
    assert_protocol_error(
        &[FrameSpec::new(OP_PING, vec![0u8; 126])],
        ProtocolError::ControlFrameTooLong(126),
    );
}

#[test]
fn s7_continuation_without_a_message_closes_with_1002() {
    assert_protocol_error(
        &[FrameSpec::new(OP_CONTINUATION, "orphan")],
        ProtocolError::UnexpectedContinuation,
    );
}

#[test]
fn s7_new_message_inside_a_fragmented_one_closes_with_1002() {
    assert_protocol_error(
        &[
            FrameSpec::new(OP_TEXT, "start").fin(false),
            FrameSpec::new(OP_BINARY, "interloper"),
        ],
        ProtocolError::UnfinishedMessage,
    );
}

#[test]
fn s7_a_64_bit_length_with_the_top_bit_set_closes_with_1002() {
    // RFC 6455 §5.2: the most significant bit of a 64-bit length must be 0.
    let frame = FrameSpec::new(OP_BINARY, vec![0u8; 4]).declared_len(1 << 63);
    assert_protocol_error(&[frame], ProtocolError::InvalidLength);
}

// --- S7: 1007 and 1009 --------------------------------------------------------

#[test]
fn s7_invalid_utf8_closes_with_1007_and_on_error_says_so() {
    let error = violation_closes_with(&[FrameSpec::new(OP_TEXT, vec![0xFF])], 1007);
    assert_eq!(error, Error::InvalidUtf8);
}

#[test]
fn s7_frame_over_max_frame_size_closes_with_1009_from_its_header() {
    let events = Events::new();
    let config = test_config().max_frame_size(1024);
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = server.connect();
    let socket = events.wait_open();
    // Only the header of a 1 GiB frame is ever sent.
    let header = FrameSpec::new(OP_BINARY, Vec::new()).declared_len(1 << 30);
    client.write(&header.encode());
    assert_eq!(client.recv_close().0, 1009);
    assert!(
        matches!(
            events.wait_error(socket.id()),
            Error::FrameTooLarge { size, max: 1024 } if size == 1 << 30
        ),
        "{:?}",
        events.of(socket.id())
    );
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn s7_a_frame_of_exactly_max_frame_size_is_accepted() {
    let events = Events::new();
    let config = test_config().max_frame_size(1024);
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = server.connect();
    client.send_binary(&[9u8; 1024]);
    assert_eq!(client.recv_binary(), vec![9u8; 1024]);
}

#[test]
fn s7_fragments_adding_up_past_max_message_size_close_with_1009() {
    let events = Events::new();
    let config = test_config().max_message_size(1000);
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = server.connect();
    let socket = events.wait_open();
    client.send(FrameSpec::new(OP_BINARY, vec![1u8; 600]).fin(false));
    let _ = client.try_write(&FrameSpec::new(OP_CONTINUATION, vec![1u8; 600]).encode());
    // The reason says what happened, with the sizes, as Ring's Jetty adapter does.
    assert_eq!(
        client.recv_close(),
        (1009, "Binary message too large: 1200 > 1000".to_owned())
    );
    assert_eq!(
        events.wait_error(socket.id()),
        Error::BinaryTooLarge {
            size: 1200,
            max: 1000
        }
    );
    assert_eq!(events.wait_close(socket.id()).0, CloseCode::MESSAGE_TOO_BIG);
}

// --- S10: isolation -------------------------------------------------------------

fn panicking_echo(events: &Events) -> TestServer {
    serve_recorded(events, |_| {
        listener().on_message(|socket, message: Message| {
            if message.as_text() == Some("panic") {
                panic!("listener panicked on purpose");
            }
            let _ = socket.send(message);
        })
    })
}

#[test]
fn s10_a_panicking_on_message_closes_only_its_connection_with_1011() {
    let events = Events::new();
    let server = panicking_echo(&events);
    let mut victim = server.connect();
    let victim_socket = events.wait_open_nth(0);
    let mut bystander = server.connect();
    let bystander_socket = events.wait_open_nth(1);
    bystander.send_text("before");
    assert_eq!(bystander.recv_text(), "before");

    victim.send_text("panic");
    assert_eq!(victim.recv_close(), (1011, "Internal error".to_owned()));
    victim.answer_close(1011);
    victim.expect_eof();

    let error = events.wait_error(victim_socket.id());
    assert!(
        matches!(&error, Error::ListenerPanic(m) if m.contains("listener panicked on purpose")),
        "on_error must get the panic: {error:?}"
    );
    assert_eq!(
        events.wait_close(victim_socket.id()).0,
        CloseCode::INTERNAL_ERROR
    );
    events.assert_lifecycle(victim_socket.id());

    // The other connection on the same worker thread keeps echoing...
    for i in 0..10 {
        bystander.send_text(&format!("after {i}"));
        assert_eq!(bystander.recv_text(), format!("after {i}"));
    }
    assert!(bystander_socket.is_open());
    // ...and the server takes new connections.
    let mut newcomer = server.connect();
    newcomer.send_binary(b"new");
    assert_eq!(newcomer.recv_binary(), b"new");
}

#[test]
fn s10_a_panic_in_on_close_or_on_error_does_not_hurt_the_server() {
    let events = Events::new();
    let server = serve_recorded(&events, |_| {
        listener()
            .on_message(|socket, message: Message| {
                if message.as_text() == Some("panic") {
                    panic!("first panic");
                }
                let _ = socket.send(message);
            })
            .on_error(|_, _| panic!("on_error panics too"))
            .on_close(|_, _, _| panic!("on_close panics too"))
    });
    let mut victim = server.connect();
    let victim_socket = events.wait_open();
    victim.send_text("panic");
    assert_eq!(victim.recv_close().0, 1011);
    events.wait_close(victim_socket.id());
    events.assert_nothing_after_close(victim_socket.id());

    let mut other = server.connect();
    other.send_text("still serving");
    assert_eq!(other.recv_text(), "still serving");
    // A clean close whose on_close panics does not break the handshake.
    other.send_close(1000, "");
    assert_eq!(other.recv_close().0, 1000);
    other.expect_eof();
}

#[test]
fn s10_a_panicking_send_async_callback_is_contained() {
    let server = serve(|| {
        listener().on_message(|socket, message: Message| {
            let next = socket.clone();
            socket.send_async(
                message,
                move || {
                    let _ = next.send("succeed ran");
                    panic!("succeed panicked on purpose");
                },
                |_| {},
            );
        })
    });
    let mut client = server.connect();
    client.send_text("one");
    assert_eq!(client.recv_text(), "one");
    assert_eq!(client.recv_text(), "succeed ran");
    client.send_text("two");
    assert_eq!(client.recv_text(), "two");
    assert_eq!(client.recv_text(), "succeed ran");
}
