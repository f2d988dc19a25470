//! `WsServer`: what differs from actix-web's `HttpServer`. Every other
//! integration test also runs on it (`ACTIX_WS_LISTENER_SERVER=ws`, as
//! `scripts/test.sh` does); these check what only it does: the app answers
//! plain requests and upgrades alike, an upgrade that is not ours is
//! answered and the connection closed, bytes sent with the handshake are
//! read, and large messages cross the socket the connection owns.

mod common;

use std::{
    io::{Read, Write},
    net::{Shutdown, TcpStream},
};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws_listener::{test::TestServer, Config, WebSocketUpgrade};
use common::*;

/// An app with a plain route, an echo WebSocket on `/ws` and an
/// `actix-ws` upgrade on `/other`, on `WsServer`.
fn app_server(events: &Events) -> TestServer {
    let events = events.clone();
    TestServer::start_on_ws_server(move |cfg| {
        let events = events.clone();
        cfg.app_data(test_config())
            .route("/hello", web::get().to(|| async { "hello over HTTP" }))
            .route(
                "/ws",
                web::get().to(move |upgrade: WebSocketUpgrade| {
                    let listener = events.record(Echo);
                    async move { upgrade.listen(listener) }
                }),
            )
            .route(
                "/other",
                web::get().to(|req: HttpRequest, body: web::Payload| async move {
                    match actix_ws::handle(&req, body) {
                        Ok((response, _session, _stream)) => response,
                        Err(error) => HttpResponse::from_error(error),
                    }
                }),
            );
    })
}

/// A recorded echo on `/ws` with `config`, on `WsServer`.
fn echo_server(events: &Events, config: Config) -> TestServer {
    let events = events.clone();
    TestServer::start_on_ws_server(move |cfg| {
        let events = events.clone();
        cfg.app_data(config.clone()).route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = events.record(Echo);
                async move { upgrade.listen(listener) }
            }),
        );
    })
}

/// Sends `request` on a new connection; the server's whole answer, read
/// until it closes the connection.
fn answer_to(server: &TestServer, request: &str) -> String {
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.write_all(request.as_bytes()).expect("write");
    String::from_utf8(read_to_end(&mut stream)).expect("UTF-8")
}

/// Reads until the server closes the connection; what it sent.
fn read_to_end(stream: &mut TcpStream) -> Vec<u8> {
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut all = Vec::new();
    stream
        .read_to_end(&mut all)
        .expect("the server closes the connection");
    all
}

#[test]
fn plain_requests_keep_alive_beside_websockets() {
    let events = Events::new();
    let server = app_server(&events);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    let request = format!("GET /hello HTTP/1.1\r\nHost: {}\r\n\r\n", server.addr());
    // Two requests on one connection: keep-alive works as on HttpServer.
    stream
        .write_all(format!("{request}{request}").as_bytes())
        .expect("write");
    stream.shutdown(Shutdown::Write).expect("half close");
    let answer = String::from_utf8(read_to_end(&mut stream)).expect("UTF-8");
    assert_eq!(answer.matches("HTTP/1.1 200 OK").count(), 2, "{answer}");
    assert_eq!(answer.matches("hello over HTTP").count(), 2, "{answer}");

    let mut client = RawClient::connect(server.addr(), "/ws");
    client.send_text("and over a WebSocket");
    assert_eq!(client.recv_text(), "and over a WebSocket");
    client.send_close(1000, "bye");
    assert_eq!(client.recv_close(), (1000, String::new()));
    client.expect_eof();
    let conn = events.wait_open().id();
    events.assert_lifecycle(conn);
}

#[test]
fn an_upgrade_to_a_route_without_a_websocket_gets_the_apps_answer_then_the_connection_closes() {
    let events = Events::new();
    let server = app_server(&events);
    let answer = answer_to(&server, &handshake_request(server.addr(), "/nowhere", ""));
    assert!(answer.starts_with("HTTP/1.1 404 Not Found\r\n"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );

    // A refused handshake (wrong version) gets its 4xx and body, as on
    // HttpServer, then the connection closes.
    let request = handshake_request(server.addr(), "/ws", "")
        .replace("Sec-WebSocket-Version: 13", "Sec-WebSocket-Version: 8");
    let answer = answer_to(&server, &request);
    assert!(answer.starts_with("HTTP/1.1 426 "), "{answer}");
    assert!(
        answer.contains("13"),
        "the body says which version: {answer}"
    );
}

#[test]
fn an_upgrade_made_by_another_websocket_crate_gets_501() {
    let events = Events::new();
    let server = app_server(&events);
    let answer = answer_to(&server, &handshake_request(server.addr(), "/other", ""));
    assert!(answer.starts_with("HTTP/1.1 501 "), "{answer}");
}

#[test]
fn frames_sent_with_the_handshake_are_read() {
    let events = Events::new();
    let server = app_server(&events);
    let mut stream = TcpStream::connect(server.addr()).expect("connect");
    stream.set_nodelay(true).expect("nodelay");
    // The handshake and two frames in one write: actix-http reads them
    // together; the frames must reach the connection.
    let mut bytes = handshake_request(server.addr(), "/ws", "").into_bytes();
    bytes.extend(FrameSpec::new(OP_TEXT, "first").encode());
    bytes.extend(FrameSpec::new(OP_TEXT, "second").encode());
    stream.write_all(&bytes).expect("write");
    stream
        .set_read_timeout(Some(TIMEOUT))
        .expect("read timeout");
    let mut got = Vec::new();
    let expected_tail = [&[0x81, 5][..], b"first", &[0x81, 6], b"second"].concat();
    while !got.ends_with(&expected_tail) {
        let mut chunk = [0u8; 4096];
        let n = stream.read(&mut chunk).expect("read");
        assert!(
            n > 0,
            "closed early after {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&chunk[..n]);
    }
    assert!(got.starts_with(b"HTTP/1.1 101 Switching Protocols\r\n"));
}

#[test]
fn large_messages_cross_the_socket_whole_both_ways() {
    let events = Events::new();
    let server = echo_server(&events, Config::default().max_message_size(8 << 20));
    let mut client = RawClient::connect(server.addr(), "/ws");
    for size in [70_000usize, 3 << 20] {
        let data: Vec<u8> = (0..size).map(|i| (i * 31 % 251) as u8).collect();
        client.send_binary(&data);
        let echoed = client.recv_binary();
        assert_eq!(echoed.len(), size);
        assert!(echoed == data, "the {size}-byte echo differs");
    }
    client.send_close(1000, "");
    client.recv_close();
    let conn = events.wait_open().id();
    events.assert_lifecycle(conn);
}

#[test]
fn a_client_that_vanishes_mid_message_gives_on_close_1006() {
    let events = Events::new();
    let server = app_server(&events);
    let mut client = RawClient::connect(server.addr(), "/ws");
    // Half a frame, then the TCP connection goes.
    client.write(&FrameSpec::new(OP_BINARY, &[7u8; 1000][..]).encode()[..500]);
    let conn = events.wait_open().id();
    client.drop_tcp();
    let (code, _) = events.wait_close(conn);
    assert_eq!(code.as_u16(), 1006);
    events.assert_lifecycle(conn);
    // The server goes on serving.
    let mut again = RawClient::connect(server.addr(), "/ws");
    again.send_text("still here");
    assert_eq!(again.recv_text(), "still here");
}

#[test]
fn a_failure_close_reaches_a_slow_client_that_sent_more_after_the_bad_frame() {
    // The server stops reading at the bad frame. Closing a socket with
    // unread bytes resets it, and a reset throws away what the kernel has
    // not sent yet: a client that reads slowly would lose the end of its
    // echoes and the close frame. WsServer shuts its side down and reads
    // on until the client closes (at most a second), so all of it arrives.
    let events = Events::new();
    // Room to read everything the client sends before it reads.
    let config = Config::default()
        .water_marks(8 << 20, 1 << 20)
        .max_outbound_buffer(16 << 20);
    let server = echo_server(&events, config);
    let mut client = RawClient::connect(server.addr(), "/ws");
    let conn = events.wait_open().id();
    let echoes = 64;
    let mut bytes = Vec::new();
    for _ in 0..echoes {
        bytes.extend(FrameSpec::new(OP_BINARY, vec![7u8; 16 * 1024]).encode());
    }
    bytes.extend(FrameSpec::new(OP_TEXT, "not masked").unmasked().encode());
    bytes.extend(FrameSpec::new(OP_BINARY, vec![1u8; 64 * 1024]).encode());
    let mut writer = client.writer();
    let sending = std::thread::spawn(move || {
        // Until the server stops reading, and what it never reads: this
        // write may end in an error once the server closes.
        let _ = writer.write_all(&bytes);
    });
    let (code, _) = events.wait_close(conn);
    assert_eq!(code.as_u16(), 1002);
    let (code, reason, before) = client.recv_until_close();
    assert_eq!(code, 1002, "{reason}");
    assert_eq!(before.len(), echoes, "every echo arrives before the close");
    client.expect_eof();
    sending.join().expect("the writer thread");
}
