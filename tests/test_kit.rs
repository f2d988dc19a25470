//! The test kit users get with the `test-util` feature: a listener tested
//! over real TCP in a few lines.

use std::time::Duration;

use actix_ws_listener::{
    test::{Received, TestServer},
    CloseCode, Listener, Message, Socket,
};

struct Echo;

impl Listener for Echo {
    fn on_message(&mut self, socket: &Socket, message: Message) {
        socket.send(message).expect("echo");
    }
}

#[test]
fn a_listener_is_tested_in_a_few_lines() -> std::io::Result<()> {
    let server = TestServer::listen(|| Echo);
    let mut client = server.client()?;
    client.send("hello")?;
    assert_eq!(client.recv_message()?, Message::text("hello"));
    client.send(vec![1u8, 2, 3])?;
    assert_eq!(client.recv_message()?, Message::binary(vec![1u8, 2, 3]));
    client.close()
}

#[test]
fn pings_are_answered_and_close_frames_are_reported() -> std::io::Result<()> {
    struct Closer;
    impl Listener for Closer {
        fn on_message(&mut self, socket: &Socket, _: Message) {
            socket.close_with(4001, "done").expect("close");
        }
    }
    let server = TestServer::listen(|| Closer);
    let mut client = server.client()?;
    client.ping(b"are you there")?;
    assert_eq!(client.recv()?, Received::Pong("are you there".into()));
    client.send("bye")?;
    assert_eq!(
        client.recv()?,
        Received::Close(CloseCode(4001), "done".to_owned())
    );
    Ok(())
}

#[test]
fn waiting_for_nothing_times_out_instead_of_hanging() -> std::io::Result<()> {
    let server = TestServer::listen(|| Echo);
    let mut client = server.client()?;
    let error = client
        .recv_timeout(Duration::from_millis(50))
        .expect_err("nothing was sent");
    assert_eq!(error.kind(), std::io::ErrorKind::TimedOut);
    Ok(())
}
