//! Listeners the tests share.

use actix_ws_listener::{Listener, Message, Socket};

/// Echoes every message with its type.
pub struct Echo;

impl Listener for Echo {
    fn on_message(&mut self, socket: &Socket, message: Message) {
        let _ = socket.send(message);
    }
}

/// A listener that does nothing of its own (defaults only).
pub struct Quiet;

impl Listener for Quiet {}
