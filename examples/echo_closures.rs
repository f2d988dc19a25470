//! The same echo server as `examples/echo.rs`, written with the closure
//! listener: the Rust counterpart of a Ring listener map.
//!
//! Run:   cargo run --example echo_closures   (BIND=127.0.0.1:8080 by default)
//! Talk:  websocat ws://127.0.0.1:8080/ws

use std::{process::ExitCode, time::Duration};

use actix_web::{web, App, HttpResponse, HttpServer};
use actix_ws_listener::{listener, run_with_graceful_shutdown, WebSocketUpgrade};

async fn ws(upgrade: Option<WebSocketUpgrade>) -> HttpResponse {
    let Some(upgrade) = upgrade else {
        return HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("This endpoint expects a WebSocket connection: try websocat ws://HOST/ws\n");
    };
    upgrade
        .listen(
            listener()
                .on_open(|socket| {
                    if let Err(error) = socket.send("I will echo your messages") {
                        log::debug!("ws {}: greeting not sent: {error}", socket.id());
                    }
                })
                .on_message(|socket, message| {
                    let done = if message.as_text() == Some("exit") {
                        socket.close()
                    } else {
                        socket.send(message)
                    };
                    // The client left or stopped reading: nothing more to do.
                    if let Err(error) = done {
                        log::debug!("ws {}: {error}", socket.id());
                    }
                }),
        )
        .into_response()
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    let server = HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
        // Close TCP right after a close handshake (actix-web lingers 1 s).
        .client_disconnect_timeout(Duration::ZERO)
        // Signals are run_with_graceful_shutdown's: 1001 to every WebSocket, then stop.
        .disable_signals();
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit.
    let server = match server.bind(&bind) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("echo_closures: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("echo (closure listener) on ws://{bind}/ws");
    match run_with_graceful_shutdown(server.run()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo_closures: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
