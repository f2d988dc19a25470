//! `examples/rooms.rs`, actix's chat-server pattern on this crate (S17),
//! driven through its text protocol by real clients against the example
//! running as its own process.

mod common;

use common::*;

/// Connects to the example and waits until the server actor has
/// registered the session (`/list` is answered only after `Connect`, which
/// the session sends first).
fn join(server: &ExampleProcess) -> RawClient {
    let mut client = RawClient::connect(server.addr, "/ws");
    client.send_text("/list");
    assert!(client.recv_text().starts_with("rooms: "));
    client
}

#[test]
fn rooms_deliver_to_the_other_members_of_the_room_only() {
    let server = ExampleProcess::start(&build_example("rooms"), &[]);
    let mut a = join(&server);
    let mut b = join(&server);
    let mut c = join(&server);

    // Everyone starts in main as guest-N, in order of arrival.
    a.send_text("hello");
    assert_eq!(b.recv_text(), "guest-1: hello");
    assert_eq!(c.recv_text(), "guest-1: hello");

    c.send_text("/join side");
    assert_eq!(c.recv_text(), "joined side");
    c.send_text("/list");
    assert_eq!(c.recv_text(), "rooms: main side");

    b.send_text("/name bob");
    assert_eq!(b.recv_text(), "name bob");
    b.send_text("only for main");
    assert_eq!(a.recv_text(), "bob: only for main");
    // c left main: its next message is the answer to its own request, not
    // bob's line (the server handled bob's line first: a got it).
    c.send_text("/list");
    assert_eq!(c.recv_text(), "rooms: main side");
    // Not echoed to the sender: b's next message answers b's request.
    b.send_text("/list");
    assert_eq!(b.recv_text(), "rooms: main side");

    c.send_text("alone here");
    a.send_text("/join side");
    assert_eq!(a.recv_text(), "joined side");
    a.send_text("hi c");
    assert_eq!(c.recv_text(), "guest-1: hi c");

    // main is empty once b leaves it too: it disappears.
    b.send_text("/join side");
    assert_eq!(b.recv_text(), "joined side");
    b.send_text("/list");
    assert_eq!(b.recv_text(), "rooms: side");
}

#[test]
fn rooms_without_members_disappear_when_their_last_member_leaves() {
    let server = ExampleProcess::start(&build_example("rooms"), &[]);
    let mut a = join(&server);
    let mut b = join(&server);
    a.send_text("/join attic");
    assert_eq!(a.recv_text(), "joined attic");
    b.send_text("/list");
    assert_eq!(b.recv_text(), "rooms: attic main");
    a.send_close(1000, "");
    a.expect_eof();
    // The server actor handled a's Disconnect when its connection ended;
    // b asks until the room is gone.
    wait_until("the empty room disappears", || {
        b.send_text("/list");
        b.recv_text() == "rooms: main"
    });
}

#[test]
fn rooms_answer_malformed_commands_with_their_usage() {
    let server = ExampleProcess::start(&build_example("rooms"), &[]);
    let mut a = join(&server);
    a.send_text("/join");
    assert_eq!(a.recv_text(), "usage: /join NAME");
    a.send_text("/name two words");
    assert_eq!(a.recv_text(), "usage: /name NAME");
}
