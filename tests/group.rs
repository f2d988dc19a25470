//! `Group`: one message to every member of a set of sockets, over real
//! connections. A member is confirmed joined when it reads `joined`, which
//! its `on_open` sends after inserting it, so no test waits on time.

mod common;

use actix_ws_listener::{CloseCode, Group, Listener, Message, Socket};
use common::*;

/// Joins the group on open; relays every message with `broadcast`, or with
/// `broadcast_except` the sender; leaves on close only if `leave_on_close`.
struct Room {
    group: Group,
    except_sender: bool,
    leave_on_close: bool,
}

impl Room {
    fn new(group: &Group) -> Room {
        Room {
            group: group.clone(),
            except_sender: false,
            leave_on_close: true,
        }
    }
}

impl Listener for Room {
    fn on_open(&mut self, socket: &Socket) {
        self.group.insert(socket);
        let _ = socket.send("joined");
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if self.except_sender {
            self.group.broadcast_except(socket, message);
        } else {
            self.group.broadcast(message);
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        if self.leave_on_close {
            self.group.remove(socket);
        }
    }
}

/// Connects `n` clients one after the other, each confirmed a member.
fn join(server: &TestServer, n: usize) -> Vec<RawClient> {
    (0..n)
        .map(|_| {
            let mut client = server.connect();
            assert_eq!(client.recv(), Incoming::Text("joined".into()));
            client
        })
        .collect()
}

#[test]
fn broadcast_reaches_every_member_sender_included_type_kept() {
    let group = Group::new();
    let room = group.clone();
    let server = serve(move || Room::new(&room));
    let mut clients = join(&server, 3);
    assert_eq!(group.len(), 3);

    clients[0].send_text("hello");
    for client in &mut clients {
        assert_eq!(client.recv(), Incoming::Text("hello".into()));
    }
    clients[1].send_binary(&[1, 2, 3]);
    for client in &mut clients {
        assert_eq!(client.recv(), Incoming::Binary(vec![1, 2, 3]));
    }
}

#[test]
fn a_large_broadcast_reaches_every_member_whole() {
    // Every member's frame shares the one payload (4 KiB and more are not
    // copied per member): each still gets all of it, and the next message
    // after it.
    let group = Group::new();
    let room = group.clone();
    let server = serve(move || Room::new(&room));
    let mut clients = join(&server, 3);
    let big: Vec<u8> = (0..300_000u32).map(|i| (i % 253) as u8).collect();
    clients[2].send_binary(&big);
    clients[2].send_text("after");
    for client in &mut clients {
        assert_eq!(client.recv(), Incoming::Binary(big.clone()));
        assert_eq!(client.recv(), Incoming::Text("after".into()));
    }
}

#[test]
fn broadcast_except_skips_only_the_sender() {
    let group = Group::new();
    let room = group.clone();
    let server = serve(move || Room {
        except_sender: true,
        ..Room::new(&room)
    });
    let mut clients = join(&server, 3);

    clients[0].send_text("not to me");
    assert_eq!(clients[1].recv(), Incoming::Text("not to me".into()));
    assert_eq!(clients[2].recv(), Incoming::Text("not to me".into()));
    // Whatever the sender reads next must be this, not its own message.
    let report = group.broadcast("marker");
    assert_eq!((report.sent, report.total()), (3, 3));
    assert_eq!(clients[0].recv(), Incoming::Text("marker".into()));
}

#[test]
fn broadcast_from_a_plain_thread_drops_members_that_closed() {
    let events = Events::new();
    let group = Group::new();
    let (room, recorder) = (group.clone(), events.clone());
    let server = serve(move || {
        recorder.record(Room {
            leave_on_close: false,
            ..Room::new(&room)
        })
    });
    let mut clients = join(&server, 2);
    let gone = events.wait_open_nth(1);

    clients.pop().expect("two clients").drop_tcp();
    events.wait_close(gone.id());
    assert!(group.contains(&gone), "nobody removed it yet");

    // The test thread is no actix thread: a group works from anywhere.
    let report = group.broadcast("still here?");
    assert_eq!(
        (report.sent, report.backpressured, report.closed),
        (1, 0, 1)
    );
    assert!(!group.contains(&gone));
    assert_eq!(group.len(), 1);
    assert_eq!(clients[0].recv(), Incoming::Text("still here?".into()));
}
