//! S19: connection caps, checked before the upgrade (429 per address, 503
//! for the server, with `Retry-After`, never a 101), and a place freed as
//! soon as its connection ends.
//!
//! The caps count every connection of the process, so this binary holds
//! one test, which runs alone.

mod common;

use actix_web::web;
use actix_ws_listener::{Stats, WebSocketUpgrade};
use common::*;

fn refused(server: &TestServer, path: &str, status: u16) {
    let addr = server.addr();
    let response = http_request(addr, &handshake_request(addr, path, ""));
    assert_eq!(response.status, status, "{path}: {response:?}");
    assert_eq!(response.header("retry-after"), Some("5"), "{response:?}");
    assert!(response.header("sec-websocket-accept").is_none());
}

#[test]
fn s19_caps_answer_429_and_503_before_any_upgrade_and_free_on_close() {
    let events = Events::new();
    let server = serve_app({
        let events = events.clone();
        move |cfg| {
            let per_ip = events.clone();
            cfg.route(
                "/per-ip",
                web::get().to(move |upgrade: WebSocketUpgrade| {
                    let listener = per_ip.record(Echo);
                    async move {
                        upgrade
                            .configure(|config| config.max_connections_per_ip(3))
                            .listen(listener)
                    }
                }),
            );
            let server_cap = events.clone();
            cfg.route(
                "/server",
                web::get().to(move |upgrade: WebSocketUpgrade| {
                    let listener = server_cap.record(Echo);
                    async move {
                        upgrade
                            .configure(|config| config.max_connections(4))
                            .listen(listener)
                    }
                }),
            );
        }
    });
    let before = Stats::now();

    // Three from 127.0.0.1 are upgraded; the fourth gets 429.
    let mut clients: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(server.addr(), "/per-ip"))
        .collect();
    refused(&server, "/per-ip", 429);
    events.wait_open_nth(2);

    // One leaves: its place is free as soon as its connection ended.
    let leaving = clients.remove(0);
    leaving.drop_tcp();
    wait_until("the place to be freed", || Stats::now().connections == 2);
    clients.push(RawClient::connect(server.addr(), "/per-ip"));

    // The server cap counts every connection: 3 open, one more fits, then 503.
    clients.push(RawClient::connect(server.addr(), "/server"));
    refused(&server, "/server", 503);
    // Still served: every client echoes.
    for (i, client) in clients.iter_mut().enumerate() {
        client.send_text(&format!("client {i}"));
        assert_eq!(client.recv_text(), format!("client {i}"));
    }
    let after = Stats::now();
    assert_eq!(after.connections, 4);
    assert_eq!(after.refused_address_full - before.refused_address_full, 1);
    assert_eq!(after.refused_server_full - before.refused_server_full, 1);

    // All leave with a close handshake: every place is free again.
    for mut client in clients {
        client.send_close(1000, "");
        assert_eq!(client.recv_close().0, 1000);
    }
    wait_until("every place to be freed", || Stats::now().connections == 0);
    let _fresh: Vec<RawClient> = (0..3)
        .map(|_| RawClient::connect(server.addr(), "/per-ip"))
        .collect();
}
