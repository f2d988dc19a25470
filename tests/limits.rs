//! S8: frame and message limits are enforced when a frame header arrives,
//! before its payload is buffered; 1009, `on_error` then `on_close`.

mod common;

use actix_ws_listener::{CloseCode, Error};
use common::*;

fn limited(frame: usize, message: usize) -> actix_ws_listener::Config {
    test_config()
        .max_frame_size(frame)
        .max_message_size(message)
}

#[test]
fn s8_a_frame_declaring_1_gib_is_refused_from_its_header_with_1009() {
    let events = Events::new();
    let server = serve(move || events.record(Echo));
    let mut client = server.connect();
    // The header only: had the server waited for the payload, no close
    // would come until the read timeout.
    let frame = FrameSpec::new(OP_BINARY, Vec::new())
        .declared_len(1 << 30)
        .encode();
    client.write(&frame);
    assert_eq!(client.recv_close().0, 1009);
}

#[test]
fn s8_a_fragmented_message_is_cut_off_when_its_running_size_passes_the_limit() {
    let events = Events::new();
    let server = serve_recorded_with(limited(1000, 2500), &events, |_| Echo);
    let mut client = server.connect();
    let conn = events.wait_open().id();
    client.send(FrameSpec::new(OP_BINARY, vec![1; 1000]).fin(false));
    client.send(FrameSpec::new(OP_CONTINUATION, vec![2; 1000]).fin(false));
    // The third header alone takes the message to 3000 > 2500: its payload
    // is never sent, yet the server answers.
    let third = FrameSpec::new(OP_CONTINUATION, Vec::new())
        .declared_len(1000)
        .encode();
    client.write(&third);
    assert_eq!(client.recv_close().0, 1009);
    assert!(matches!(
        events.wait_error(conn),
        Error::BinaryTooLarge {
            size: 3000,
            max: 2500
        }
    ));
    assert_eq!(events.wait_close(conn).0, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn s8_a_single_frame_over_max_message_size_closes_1009() {
    let events = Events::new();
    let server = serve_recorded_with(limited(10_000, 100), &events, |_| Echo);
    let mut client = server.connect();
    let conn = events.wait_open().id();
    client.write(
        &FrameSpec::new(OP_TEXT, Vec::new())
            .declared_len(101)
            .encode(),
    );
    assert_eq!(client.recv_close().0, 1009);
    assert!(matches!(
        events.wait_error(conn),
        Error::TextTooLarge {
            size: 101,
            max: 100
        }
    ));
}

#[test]
fn s8_text_and_binary_messages_have_their_own_limits() {
    // Ring's Jetty adapter: :ws-max-text-size and :ws-max-binary-size.
    let events = Events::new();
    let config = test_config()
        .max_text_message_size(5)
        .max_binary_message_size(8);
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = server.connect();
    let conn = events.wait_open().id();
    client.send_binary(&[7u8; 8]);
    assert_eq!(client.recv_binary(), vec![7u8; 8]);
    client.send_text("12345");
    assert_eq!(client.recv_text(), "12345");
    client.send_text("123456");
    assert_eq!(
        client.recv_close(),
        (1009, "Text message too large: 6 > 5".to_owned())
    );
    assert_eq!(
        events.wait_error(conn),
        Error::TextTooLarge { size: 6, max: 5 }
    );
    assert_eq!(events.wait_close(conn).0, CloseCode::MESSAGE_TOO_BIG);
}
