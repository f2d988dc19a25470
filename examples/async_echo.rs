//! An async listener: for every message it awaits `DELAY_MS` milliseconds (a
//! stand-in for a database call), then echoes the message unchanged. No
//! greeting.
//!
//! Messages are handled one at a time, in order, with `&mut self` state;
//! while a handler awaits, the connection reads nothing more, so a client
//! that floods it is held back by TCP rather than by server memory.
//!
//! Run:   DELAY_MS=100 cargo run --example async_echo    (BIND=127.0.0.1:8080 by default)
//! Talk:  websocat ws://127.0.0.1:8080/ws

use std::time::Duration;

use actix_web::{web, App, HttpServer};
use actix_ws_listener::{
    run_with_graceful_shutdown, AsyncListener, CloseCode, Message, Socket, WebSocketUpgrade,
};

struct DelayedEcho {
    delay: Duration,
    echoed: u64,
}

impl AsyncListener for DelayedEcho {
    async fn on_message(&mut self, socket: &Socket, message: Message) {
        actix_web::rt::time::sleep(self.delay).await;
        if let Err(error) = socket.send(message) {
            // The client left (its on_close is on the way) or the socket was
            // closed meanwhile: there is nobody to answer.
            log::debug!("ws {}: echo not sent: {error}", socket.id());
            return;
        }
        self.echoed += 1;
    }

    fn on_close(&mut self, socket: &Socket, code: CloseCode, _reason: &str) {
        log::debug!(
            "ws {}: closed with {code} after {} echoes",
            socket.id(),
            self.echoed
        );
    }
}

#[actix_web::main]
async fn main() -> std::io::Result<()> {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let delay_ms = match std::env::var("DELAY_MS") {
        Ok(value) => value.parse().map_err(|_| {
            std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                format!("DELAY_MS must be a number of milliseconds, got {value:?}"),
            )
        })?,
        Err(_) => 100,
    };
    let delay = Duration::from_millis(delay_ms);
    log::info!("async echo on ws://{bind}/ws, {delay_ms} ms per message");
    let server = HttpServer::new(move || {
        App::new().route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| async move {
                upgrade.listen(DelayedEcho { delay, echoed: 0 })
            }),
        )
    })
    .client_disconnect_timeout(Duration::ZERO)
    .disable_signals()
    .bind(bind)?
    .run();
    run_with_graceful_shutdown(server).await
}
