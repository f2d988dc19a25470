//! An async listener: for every message it awaits `DELAY_MS` milliseconds (a
//! stand-in for a database call), then echoes the message unchanged. No
//! greeting.
//!
//! Messages are handled one at a time, in order, with `&mut self` state.
//! While a handler awaits, the connection still answers pings and a close
//! at once (S20), and reads at most a small lookahead of data: a client
//! that floods it is held back by TCP rather than by server memory.
//!
//! Run:   DELAY_MS=100 cargo run --example async_echo    (BIND=127.0.0.1:8080 by default)
//!        (SERVER=ws serves it on `WsServer` instead of actix-web's `HttpServer`)
//! Talk:  websocat ws://127.0.0.1:8080/ws

use std::{process::ExitCode, time::Duration};

use actix_web::{web, App, HttpServer};
use actix_ws_listener::{
    run_with_graceful_shutdown, AsyncListener, CloseCode, Message, Socket, WebSocketUpgrade,
    WsServer,
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
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let delay_ms = match std::env::var("DELAY_MS") {
        Ok(value) => match value.parse() {
            Ok(delay_ms) => delay_ms,
            Err(_) => {
                eprintln!("async_echo: DELAY_MS must be a number of milliseconds, got {value:?}; unset it for 100");
                return ExitCode::FAILURE;
            }
        },
        Err(_) => 100,
    };
    let delay = Duration::from_millis(delay_ms);
    let app = move || {
        App::new().route(
            "/ws",
            web::get().to(move |upgrade: WebSocketUpgrade| async move {
                upgrade.listen(DelayedEcho { delay, echoed: 0 })
            }),
        )
    };
    // SERVER=ws serves the same app on WsServer (each WebSocket owns its
    // socket).
    let bound = if std::env::var("SERVER").as_deref() == Ok("ws") {
        WsServer::new(app)
            .disable_signals()
            .bind(&bind)
            .map(WsServer::run)
    } else {
        HttpServer::new(app)
            .client_disconnect_timeout(Duration::ZERO)
            .disable_signals()
            .bind(&bind)
            .map(HttpServer::run)
    };
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit.
    let server = match bound {
        Ok(server) => server,
        Err(error) => {
            eprintln!("async_echo: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("async echo on ws://{bind}/ws, {delay_ms} ms per message");
    match run_with_graceful_shutdown(server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("async_echo: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
