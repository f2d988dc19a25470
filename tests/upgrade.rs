//! The HTTP side of a connection: S11 subprotocol negotiation, clear 4xx
//! responses for requests that are not WebSocket upgrades (and no listener
//! for them), `is_websocket_request` branching, `Option<WebSocketUpgrade>`
//! and the plain `upgrade()` function.

mod common;

use std::sync::{
    atomic::{AtomicUsize, Ordering},
    Arc,
};

use actix_web::{web, HttpRequest, HttpResponse};
use actix_ws_listener::{
    is_upgrade_request, is_websocket_request, requested_protocols, upgrade, Listening,
    UpgradeError, WebSocketUpgrade,
};
use common::*;

/// A server with one route per way of upgrading; every listener it creates
/// is counted, so tests can check that refused requests start none.
fn upgrade_server(created: Arc<AtomicUsize>) -> TestServer {
    let counted = move || {
        created.fetch_add(1, Ordering::SeqCst);
        Echo
    };
    serve_app(move |cfg| {
        let c = counted.clone();
        cfg.app_data(test_config());
        cfg.route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = c();
                async move { upgrade.listen(listener) }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/protocol",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = c();
                async move { upgrade.protocol("chat").listen(listener) }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/protocols",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = c();
                async move { upgrade.protocols(["a", "b"]).listen(listener) }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/both",
            web::get().to(move |upgrade: WebSocketUpgrade| {
                let listener = c();
                async move { upgrade.protocols(["a", "b"]).protocol("b").listen(listener) }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/maybe",
            web::get().to(move |upgrade: Option<WebSocketUpgrade>| {
                let c = c.clone();
                async move {
                    match upgrade {
                        Some(upgrade) => upgrade.listen(c()).into_response(),
                        None => HttpResponse::Ok().body("plain HTTP here"),
                    }
                }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/branch",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let c = c.clone();
                async move {
                    if is_websocket_request(&req) {
                        upgrade(&req, payload, c())
                            .map(Listening::into_response)
                            .unwrap_or_else(|e| actix_web::ResponseError::error_response(&e))
                    } else {
                        HttpResponse::Ok().body(format!(
                            "websocket={} upgrade={} protocols={:?}",
                            is_websocket_request(&req),
                            is_upgrade_request(&req),
                            requested_protocols(&req)
                        ))
                    }
                }
            }),
        );
        let c = counted.clone();
        cfg.route(
            "/fn",
            web::get().to(move |req: HttpRequest, payload: web::Payload| {
                let c = c.clone();
                async move { upgrade(&req, payload, c()) }
            }),
        );
    })
}

fn plain_get(server: &TestServer, path: &str, extra: &str) -> HttpHead {
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\n{extra}\r\n",
        server.addr()
    );
    http_request(server.addr(), &request)
}

// --- S11: subprotocols --------------------------------------------------------

#[test]
fn s11_the_handler_protocol_is_sent_when_the_client_offered_it() {
    let server = upgrade_server(Default::default());
    let mut client = RawClient::connect_with(
        server.addr(),
        "/protocol",
        "Sec-WebSocket-Protocol: superchat, chat\r\n",
    );
    assert_eq!(
        client.response.header("sec-websocket-protocol"),
        Some("chat")
    );
    client.send_text("works");
    assert_eq!(client.recv_text(), "works");
}

#[test]
fn s11_the_handler_protocol_is_never_sent_when_the_client_did_not_offer_it() {
    let server = upgrade_server(Default::default());
    for offer in ["Sec-WebSocket-Protocol: superchat\r\n", ""] {
        let mut client = RawClient::connect_with(server.addr(), "/protocol", offer);
        assert_eq!(
            client.response.header("sec-websocket-protocol"),
            None,
            "offer {offer:?}: {:?}",
            client.response
        );
        client.send_text("still works");
        assert_eq!(client.recv_text(), "still works");
    }
}

#[test]
fn s11_protocols_pick_the_first_client_offered_one_that_is_supported() {
    let server = upgrade_server(Default::default());
    let cases = [
        ("Sec-WebSocket-Protocol: c, b, a\r\n", Some("b")),
        ("Sec-WebSocket-Protocol: a, b\r\n", Some("a")),
        (
            "Sec-WebSocket-Protocol: c\r\nSec-WebSocket-Protocol: b\r\n",
            Some("b"),
        ),
        ("Sec-WebSocket-Protocol: c, d\r\n", None),
        ("Sec-WebSocket-Protocol: A\r\n", None),
        ("", None),
    ];
    for (offer, chosen) in cases {
        let mut client = RawClient::connect_with(server.addr(), "/protocols", offer);
        assert_eq!(
            client.response.header("sec-websocket-protocol"),
            chosen,
            "offer {offer:?}"
        );
        client.send_text("ok");
        assert_eq!(client.recv_text(), "ok");
    }
}

#[test]
fn s11_the_handler_protocol_takes_precedence_over_the_supported_list() {
    let server = upgrade_server(Default::default());
    let client =
        RawClient::connect_with(server.addr(), "/both", "Sec-WebSocket-Protocol: a, b\r\n");
    assert_eq!(client.response.header("sec-websocket-protocol"), Some("b"));
}

#[test]
fn s11_awc_gets_the_negotiated_protocol() {
    let server = upgrade_server(Default::default());
    let (url, other) = (server.url("/protocol"), server.url("/protocol"));
    run_client(async move {
        let (response, _framed) = awc::Client::new()
            .ws(url)
            .protocols(["superchat", "chat"])
            .connect()
            .await
            .unwrap();
        assert_eq!(
            response
                .headers()
                .get("sec-websocket-protocol")
                .map(|v| v.to_str().unwrap()),
            Some("chat")
        );
        let (response, _framed) = awc::Client::new()
            .ws(other)
            .protocols(["superchat"])
            .connect()
            .await
            .unwrap();
        assert!(response.headers().get("sec-websocket-protocol").is_none());
    });
}

// --- Refused requests ------------------------------------------------------------

#[test]
fn a_plain_get_to_the_extractor_gets_400_with_a_clear_body_and_no_listener() {
    let created = Arc::new(AtomicUsize::new(0));
    let server = upgrade_server(Arc::clone(&created));
    let response = plain_get(&server, "/ws", "");
    assert_eq!(response.status, 400, "{response:?}");
    assert!(
        response.body_text().contains("WebSocket"),
        "the body should say what was expected: {:?}",
        response.body_text()
    );
    assert_eq!(
        created.load(Ordering::SeqCst),
        0,
        "no listener may be created"
    );
}

#[test]
fn a_bad_websocket_handshake_gets_a_4xx_that_explains_itself() {
    let created = Arc::new(AtomicUsize::new(0));
    let server = upgrade_server(Arc::clone(&created));
    let addr = server.addr();
    let host = format!("Host: {addr}\r\n");
    let cases = [
        (
            "no Connection: upgrade",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "no key",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "bad key",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: short\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "two keys",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            400,
        ),
        (
            "two versions",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Version: 13\r\n\r\n"
            ),
            426,
        ),
        (
            "version 8",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 8\r\n\r\n"
            ),
            426,
        ),
        (
            "no version",
            format!(
                "GET /ws HTTP/1.1\r\n{host}Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {KEY}\r\n\r\n"
            ),
            426,
        ),
    ];
    for (what, request, status) in cases {
        let response = http_request(addr, &request);
        assert_eq!(response.status, status, "{what}: {response:?}");
        assert!(!response.body.is_empty(), "{what}: the 4xx needs a body");
        if status == 426 {
            assert_eq!(
                response.header("sec-websocket-version"),
                Some("13"),
                "{what}: a 426 must say which version is supported"
            );
        }
    }
    assert_eq!(
        created.load(Ordering::SeqCst),
        0,
        "no listener may be created"
    );
}

#[test]
fn the_upgrade_function_refuses_a_plain_request_with_a_4xx() {
    let created = Arc::new(AtomicUsize::new(0));
    let server = upgrade_server(Arc::clone(&created));
    let response = plain_get(&server, "/fn", "");
    assert_eq!(response.status, 400, "{response:?}");
    assert_eq!(
        response.body_text(),
        UpgradeError::NotWebSocket.to_string(),
        "the body is the error's message"
    );
    let mut client = RawClient::connect(server.addr(), "/fn");
    client.send_text("upgraded by upgrade()");
    assert_eq!(client.recv_text(), "upgraded by upgrade()");
    assert_eq!(
        created.load(Ordering::SeqCst),
        2,
        "one listener per handler call"
    );
}

// --- One handler for both ------------------------------------------------------

#[test]
fn option_websocket_upgrade_serves_plain_and_websocket_requests() {
    let created = Arc::new(AtomicUsize::new(0));
    let server = upgrade_server(Arc::clone(&created));
    let response = plain_get(&server, "/maybe", "");
    assert_eq!(response.status, 200);
    assert_eq!(response.body_text(), "plain HTTP here");
    assert_eq!(created.load(Ordering::SeqCst), 0);

    let mut client = RawClient::connect(server.addr(), "/maybe");
    client.send_text("upgraded");
    assert_eq!(client.recv_text(), "upgraded");
    assert_eq!(created.load(Ordering::SeqCst), 1);
}

#[test]
fn is_websocket_request_lets_one_handler_branch() {
    let server = upgrade_server(Default::default());
    let response = plain_get(&server, "/branch", "");
    assert_eq!(response.status, 200);
    assert_eq!(
        response.body_text(),
        "websocket=false upgrade=false protocols=[]"
    );

    // Ring's upgrade-request? means an upgrade to a WebSocket: h2c is not one.
    let response = plain_get(
        &server,
        "/branch",
        "Connection: Upgrade\r\nUpgrade: h2c\r\n",
    );
    assert_eq!(
        response.body_text(),
        "websocket=false upgrade=false protocols=[]"
    );

    let mut client = RawClient::connect(server.addr(), "/branch");
    client.send_binary(b"branched");
    assert_eq!(client.recv_binary(), b"branched");
}

#[test]
fn requested_protocols_keep_the_client_order() {
    let server = upgrade_server(Default::default());
    // Not a WebSocket request, so /branch reports what it saw.
    let response = plain_get(
        &server,
        "/branch",
        "Sec-WebSocket-Protocol: b, a\r\nSec-WebSocket-Protocol: c\r\n",
    );
    assert_eq!(
        response.body_text(),
        r#"websocket=false upgrade=false protocols=["b", "a", "c"]"#
    );
}

#[test]
fn upgrade_header_is_matched_without_regard_to_case() {
    let server = upgrade_server(Default::default());
    let addr = server.addr();
    let request = format!(
        "GET /ws HTTP/1.1\r\nHost: {addr}\r\nUpgrade: WebSocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n"
    );
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(TIMEOUT)).unwrap();
    std::io::Write::write_all(&mut stream, request.as_bytes()).unwrap();
    let mut head = [0u8; 12];
    std::io::Read::read_exact(&mut stream, &mut head).unwrap();
    assert_eq!(&head, b"HTTP/1.1 101");
}

// --- Per-route settings (S13) ----------------------------------------------------

const CHAT: &str = "Origin: https://chat.example\r\n";
const EVIL: &str = "Origin: https://evil.example\r\n";

/// A server whose app allows `https://chat.example` and
/// `https://admin.example`, with routes that change their settings after
/// extraction in each way there is.
fn per_route_server(events: &Events) -> TestServer {
    let events = events.clone();
    serve_app(move |cfg| {
        cfg.app_data(
            test_config().allowed_origins(["https://chat.example", "https://admin.example"]),
        );
        changed_route(cfg, "/configure", &events, |upgrade| {
            upgrade.configure(|config| config.max_message_size(16))
        });
        changed_route(cfg, "/admins", &events, |upgrade| {
            upgrade.configure(|config| config.allowed_origins(["https://admin.example"]))
        });
        cfg.route(
            "/inspect",
            web::get().to(|upgrade: WebSocketUpgrade| async move {
                let upgrade = upgrade.configure(|config| config.max_message_size(16));
                let config = upgrade.config();
                HttpResponse::Ok().body(format!(
                    "{:?} {} {}",
                    config.allowed_origins, config.max_text_message_size, config.max_frame_size
                ))
            }),
        );
    })
}

/// A route at `path` that applies `change` to the extracted upgrade, then
/// listens with a recorded echo.
fn changed_route(
    cfg: &mut web::ServiceConfig,
    path: &str,
    events: &Events,
    change: fn(WebSocketUpgrade) -> WebSocketUpgrade,
) {
    let events = events.clone();
    cfg.route(
        path,
        web::get().to(move |upgrade: WebSocketUpgrade| {
            let listener = events.record(Echo);
            async move { change(upgrade).listen(listener) }
        }),
    );
}

/// A handshake to `path` with the `origin` header line (or none) gets a 403
/// that says why, and no connection starts (S13).
fn assert_origin_refused(server: &TestServer, events: &Events, path: &str, origin: &str) {
    let addr = server.addr();
    let response = http_request(addr, &handshake_request(addr, path, origin));
    assert_eq!(response.status, 403, "{path} {origin:?}: {response:?}");
    let body = response.body_text();
    assert!(body.contains("origin"), "{body}");
    let opened = events
        .snapshot()
        .iter()
        .filter(|r| matches!(r.event, Event::Open(_)))
        .count();
    assert_eq!(opened, 0, "a refused origin starts no connection");
}

/// A message of 17 bytes closes with 1009 (over a 16-byte limit); one of 16 is echoed.
fn assert_message_limit_is_16(client: &mut RawClient) {
    client.send_text("sixteen bytes ok");
    assert_eq!(client.recv_text(), "sixteen bytes ok");
    client.send_text("seventeen bytes!!");
    assert_eq!(client.recv_close().0, 1009);
}

#[test]
fn s13_a_route_that_configures_one_limit_still_refuses_a_foreign_origin_set_app_wide() {
    let events = Events::new();
    let server = per_route_server(&events);
    assert_origin_refused(&server, &events, "/configure", EVIL);
    assert_origin_refused(&server, &events, "/configure", "");
    let mut chat = RawClient::connect_with(server.addr(), "/configure", CHAT);
    assert_message_limit_is_16(&mut chat);
}

#[test]
fn configure_starts_from_the_app_config_and_config_shows_the_result() {
    let events = Events::new();
    let server = per_route_server(&events);
    let addr = server.addr();
    let response = http_request(addr, &handshake_request(addr, "/inspect", CHAT));
    assert_eq!(response.status, 200, "{response:?}");
    assert_eq!(
        response.body_text(),
        format!(
            r#"Some(["https://chat.example", "https://admin.example"]) 16 {}"#,
            test_config().max_frame_size
        )
    );
}

#[test]
fn s13_origins_tightened_after_extraction_are_checked_before_any_connection_starts() {
    let events = Events::new();
    let server = per_route_server(&events);
    // Allowed by the app, refused by the route's own setting.
    assert_origin_refused(&server, &events, "/admins", CHAT);
    let admin_origin = "Origin: https://admin.example\r\n";
    let mut admin = RawClient::connect_with(server.addr(), "/admins", admin_origin);
    admin.send_text("in");
    assert_eq!(admin.recv_text(), "in");
}
