//! permessage-deflate (RFC 7692): negotiation, compressed echo both ways,
//! RSV1 misuse, a compression bomb and a corrupt stream, with raw frames
//! compressed by the test itself.

mod common;

use actix_ws_listener::{CloseCode, Compression, Config, Error, Group, Listener, Socket};
use common::*;
use flate2::{Compress, Decompress, FlushCompress, FlushDecompress};

const OFFER: &str = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n";

fn deflate_config() -> Config {
    test_config().compression(Compression::default().min_size(0))
}

/// Raw-deflates `data` as one RFC 7692 message (sync flush, trailer removed).
fn compress(data: &[u8], level: u32) -> Vec<u8> {
    let mut compress = Compress::new(flate2::Compression::new(level), false);
    let mut out = Vec::with_capacity(data.len() + 1024);
    loop {
        let consumed = compress.total_in() as usize;
        compress
            .compress_vec(&data[consumed..], &mut out, FlushCompress::Sync)
            .unwrap();
        if compress.total_in() as usize == data.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity());
    }
    assert!(out.ends_with(&[0, 0, 0xFF, 0xFF]));
    out.truncate(out.len() - 4);
    out
}

fn inflate(data: &[u8]) -> Vec<u8> {
    let mut input = data.to_vec();
    input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
    let mut decompress = Decompress::new(false);
    let mut out = Vec::with_capacity(1 << 20);
    decompress
        .decompress_vec(&input, &mut out, FlushDecompress::Sync)
        .unwrap();
    out
}

fn serve_deflate(events: &Events) -> TestServer {
    serve_recorded_with(deflate_config(), events, |_| Echo)
}

#[test]
fn the_first_acceptable_offer_is_accepted_with_the_agreed_parameters() {
    let events = Events::new();
    let server = serve_deflate(&events);
    let client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        Some("permessage-deflate")
    );
    let client = RawClient::connect_with(
        server.addr(),
        "/ws",
        "Sec-WebSocket-Extensions: permessage-deflate; server_max_window_bits=8, \
         permessage-deflate; server_no_context_takeover; server_max_window_bits=12\r\n",
    );
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=12")
    );
}

#[test]
fn offers_that_cannot_be_honoured_and_malformed_headers_get_no_extension() {
    let events = Events::new();
    let server = serve_deflate(&events);
    for header in [
        "permessage-deflate; server_max_window_bits=8",
        "permessage-deflate; server_max_window_bits=99",
        "permessage-deflate; bogus",
        "permessage-deflate;; =",
        "\"unterminated",
    ] {
        let extra = format!("Sec-WebSocket-Extensions: {header}\r\n");
        let client = RawClient::connect_with(server.addr(), "/ws", &extra);
        assert_eq!(
            client.response.header("sec-websocket-extensions"),
            None,
            "{header}"
        );
    }
    // Compression off: never negotiated.
    let plain = serve(|| Echo);
    let client = RawClient::connect_with(plain.addr(), "/ws", OFFER);
    assert_eq!(client.response.header("sec-websocket-extensions"), None);
}

#[test]
fn compressed_messages_are_inflated_and_echoes_are_compressed() {
    let events = Events::new();
    let server = serve_deflate(&events);
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    let conn = events.wait_open().id();
    let text = "hello compressed world, ".repeat(50);
    // The server keeps its compression context between messages, so the
    // client keeps one decompressor for both echoes.
    let mut decompress = Decompress::new(false);
    for _ in 0..2 {
        client.send(FrameSpec::new(OP_TEXT, compress(text.as_bytes(), 6)).rsv(0b100));
        let frame = client.read_frame();
        assert_eq!((frame.opcode, frame.rsv, frame.fin), (OP_TEXT, 0b100, true));
        assert!(
            frame.payload.len() < text.len() / 4,
            "{}",
            frame.payload.len()
        );
        let mut input = frame.payload;
        input.extend_from_slice(&[0, 0, 0xFF, 0xFF]);
        let mut out = Vec::with_capacity(64 * 1024);
        decompress
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        assert_eq!(out, text.as_bytes());
    }
    let messages = events.wait_messages(conn, 2);
    assert!(messages.iter().all(|m| m.as_text() == Some(text.as_str())));
}

#[test]
fn without_context_takeover_every_message_stands_alone_both_ways() {
    let events = Events::new();
    let config = test_config().compression(
        Compression::default()
            .min_size(0)
            .server_no_context_takeover(true)
            .client_no_context_takeover(true),
    );
    let recorder = events.clone();
    let server = serve_with(config, move || recorder.record(Echo));
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    assert_eq!(
        client.response.header("sec-websocket-extensions"),
        Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover")
    );
    let conn = events.wait_open().id();
    // The server frees its streams between messages; each message, compressed
    // by a fresh compressor, must still inflate, and each echo must inflate
    // with a fresh decompressor.
    let texts: Vec<String> = (0..5)
        .map(|i| format!("message {i}: {}", "same words again and again ".repeat(20)))
        .collect();
    for text in &texts {
        client.send(FrameSpec::new(OP_TEXT, compress(text.as_bytes(), 6)).rsv(0b100));
        let frame = client.read_frame();
        assert_eq!((frame.opcode, frame.rsv, frame.fin), (OP_TEXT, 0b100, true));
        assert_eq!(inflate(&frame.payload), text.as_bytes());
    }
    let messages = events.wait_messages(conn, texts.len());
    let received: Vec<&str> = messages.iter().filter_map(|m| m.as_text()).collect();
    assert_eq!(received, texts);
}

#[test]
fn a_compressed_message_may_be_fragmented_with_rsv1_on_its_first_frame_only() {
    let events = Events::new();
    let server = serve_deflate(&events);
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    let conn = events.wait_open().id();
    let data = b"fragmented and compressed ".repeat(40);
    let compressed = compress(&data, 6);
    let (a, b) = compressed.split_at(compressed.len() / 2);
    client.send(FrameSpec::new(OP_BINARY, a).fin(false).rsv(0b100));
    client.send(FrameSpec::new(OP_PING, "mid"));
    client.send(FrameSpec::new(OP_CONTINUATION, b));
    assert_eq!(client.read_frame().payload, b"mid");
    let echo = client.read_frame();
    assert_eq!(echo.rsv, 0b100);
    assert_eq!(inflate(&echo.payload), data);
    assert_eq!(events.wait_messages(conn, 1)[0].as_bytes(), &data[..]);
}

#[test]
fn rsv1_on_a_continuation_or_control_frame_closes_with_1002() {
    for frames in [
        vec![
            FrameSpec::new(OP_TEXT, compress(b"abc", 6))
                .fin(false)
                .rsv(0b100),
            FrameSpec::new(OP_CONTINUATION, compress(b"def", 6)).rsv(0b100),
        ],
        vec![FrameSpec::new(OP_PING, "x").rsv(0b100)],
        vec![FrameSpec::new(OP_TEXT, "x").rsv(0b010)],
    ] {
        let events = Events::new();
        let server = serve_deflate(&events);
        let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
        let conn = events.wait_open().id();
        for frame in &frames {
            client.send(frame.clone());
        }
        assert_eq!(client.recv_close().0, 1002, "{frames:?}");
        assert!(matches!(events.wait_error(conn), Error::Protocol(_)));
    }
}

#[test]
fn a_compression_bomb_closes_with_1009_before_it_is_inflated() {
    let events = Events::new();
    let config = deflate_config().max_message_size(1 << 20);
    let server = serve_recorded_with(config, &events, |_| Echo);
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    let conn = events.wait_open().id();
    // 64 MiB of zeros in well under 100 KiB on the wire.
    let bomb = compress(&vec![0u8; 64 << 20], 9);
    assert!(bomb.len() < 100 << 10, "{}", bomb.len());
    client.send(FrameSpec::new(OP_BINARY, bomb).rsv(0b100));
    assert_eq!(client.recv_close().0, 1009);
    assert!(matches!(
        events.wait_error(conn),
        Error::BinaryTooLarge { max: 1048576, .. }
    ));
    assert_eq!(events.wait_close(conn).0, CloseCode::MESSAGE_TOO_BIG);
}

#[test]
fn corrupt_deflate_data_closes_with_1007() {
    let events = Events::new();
    let server = serve_deflate(&events);
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    let conn = events.wait_open().id();
    client.send(FrameSpec::new(OP_TEXT, vec![0xFF; 16]).rsv(0b100));
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(conn), Error::InvalidCompressedData);
    events.assert_lifecycle(conn);
}

#[test]
fn compressed_text_that_inflates_to_invalid_utf8_closes_with_1007() {
    let events = Events::new();
    let server = serve_deflate(&events);
    let mut client = RawClient::connect_with(server.addr(), "/ws", OFFER);
    let conn = events.wait_open().id();
    client.send(FrameSpec::new(OP_TEXT, compress(b"ok \xff\xfe", 6)).rsv(0b100));
    assert_eq!(client.recv_close().0, 1007);
    assert_eq!(events.wait_error(conn), Error::InvalidUtf8);
}

#[test]
fn a_group_broadcast_reaches_compressing_and_plain_members_alike() {
    struct Member(Group);
    impl Listener for Member {
        fn on_open(&mut self, socket: &Socket) {
            self.0.insert(socket);
        }
    }
    let group = Group::new();
    let events = Events::new();
    let server = serve_with(deflate_config(), {
        let (group, events) = (group.clone(), events.clone());
        move || events.record(Member(group.clone()))
    });
    let no_takeover =
        "Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n";
    let mut a = RawClient::connect_with(server.addr(), "/ws", no_takeover);
    let mut b = RawClient::connect_with(server.addr(), "/ws", no_takeover);
    let mut plain = server.connect();
    events.wait_open_nth(2);
    // on_open records the event before joining the group.
    wait_until("3 members in the group", || group.len() == 3);
    let text = "broadcast ".repeat(100);
    for _ in 0..2 {
        assert_eq!(group.broadcast(text.as_str()).sent, 3);
        for client in [&mut a, &mut b] {
            let frame = client.read_frame();
            assert_eq!(frame.rsv, 0b100);
            // No context takeover: each message inflates on its own.
            assert_eq!(inflate(&frame.payload), text.as_bytes());
        }
        assert_eq!(plain.recv_text(), text);
    }
}
