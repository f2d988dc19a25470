//! S7: frames that break RFC 6455 close the connection with 1002, after
//! `on_error(Error::Protocol)` and before `on_close`; the server never
//! delivers them.

mod common;

use actix_ws_listener::{CloseCode, Error};
use common::*;

/// Sends `frames` on a fresh connection and checks the 1002 close and the
/// error-then-close order.
fn assert_protocol_error(frames: &[FrameSpec]) {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    let conn = events.wait_open().id();
    for frame in frames {
        client.write(&frame.encode());
    }
    let (code, _, _) = client.recv_until_close();
    assert_eq!(code, 1002, "close code for {frames:?}");
    assert!(
        matches!(events.wait_error(conn), Error::Protocol(_)),
        "{frames:?}"
    );
    assert_eq!(events.wait_close(conn).0, CloseCode::PROTOCOL_ERROR);
    events.assert_lifecycle(conn);
}

#[test]
fn s7_an_unmasked_client_frame_closes_with_1002() {
    assert_protocol_error(&[FrameSpec::new(OP_TEXT, "hi").unmasked()]);
}

#[test]
fn s7_reserved_bits_without_an_extension_close_with_1002() {
    for rsv in [0b100, 0b010, 0b001] {
        assert_protocol_error(&[FrameSpec::new(OP_TEXT, "hi").rsv(rsv)]);
    }
}

#[test]
fn s7_reserved_opcodes_close_with_1002() {
    for opcode in [3, 7, 0xB, 0xF] {
        assert_protocol_error(&[FrameSpec::new(opcode, "")]);
    }
}

#[test]
fn s7_a_continuation_without_a_message_closes_with_1002() {
    assert_protocol_error(&[FrameSpec::new(OP_CONTINUATION, "x")]);
}

#[test]
fn s7_a_new_message_inside_a_fragmented_one_closes_with_1002() {
    assert_protocol_error(&[
        FrameSpec::new(OP_TEXT, "a").fin(false),
        FrameSpec::new(OP_TEXT, "b"),
    ]);
}

#[test]
fn s7_fragmented_or_oversized_control_frames_close_with_1002() {
    assert_protocol_error(&[FrameSpec::new(OP_PING, "x").fin(false)]);
    assert_protocol_error(&[FrameSpec::new(OP_PING, vec![0; 126])]);
}

#[test]
fn s7_a_fragmented_message_still_works_after_a_ping_inside_it() {
    let events = Events::new();
    let server = serve_echo(&events);
    let mut client = server.connect();
    client.send(FrameSpec::new(OP_TEXT, "con").fin(false));
    client.send(FrameSpec::new(OP_PING, "p"));
    assert_eq!(client.recv(), Incoming::Pong(b"p".to_vec()));
    client.send(FrameSpec::new(OP_CONTINUATION, "tinued"));
    assert_eq!(client.recv_text(), "continued");
}
