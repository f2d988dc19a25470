//! A pure echo server for conformance testing with the Autobahn TestSuite:
//! no greeting, WebSocket on every path, limits at their defaults,
//! permessage-deflate accepted (Autobahn groups 12 and 13) unless
//! `COMPRESSION=off`. On actix-web's `HttpServer`, or on `WsServer` with
//! `SERVER=ws`.
//!
//! Run:   cargo run --release --example autobahn   (BIND=127.0.0.1:9001 by default)
//! Test:  scripts/conformance.sh                    (builds and runs this for you)

use std::process::ExitCode;

use actix_web::{web, App, HttpServer, Responder};
use actix_ws_listener::{
    run_with_graceful_shutdown, Compression, Config, Listener, Message, Socket, WebSocketUpgrade,
    WsServer,
};

struct Echo;

impl Listener for Echo {
    fn on_message(&mut self, socket: &Socket, message: Message) {
        if let Err(error) = socket.send(message) {
            log::debug!("ws {}: echo not sent: {error}", socket.id());
        }
    }
}

async fn ws(upgrade: WebSocketUpgrade) -> impl Responder {
    upgrade.listen(Echo)
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("warn"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:9001".to_owned());
    let workers = std::env::var("WORKERS")
        .ok()
        .and_then(|w| w.parse().ok())
        .unwrap_or(2);
    let mut config = Config::default();
    if std::env::var("COMPRESSION").as_deref() != Ok("off") {
        config = config.compression(Compression::default().min_size(0));
    }
    let app = move || {
        App::new()
            .app_data(config.clone())
            .default_service(web::get().to(ws))
    };
    // run_with_graceful_shutdown takes SIGINT and SIGTERM: on either, every
    // WebSocket is closed with 1001 (and gets its on_close), then the server
    // stops. Fails like a finished program: one line saying what, where,
    // and what to do, then a non-zero exit.
    let bound = if std::env::var("SERVER").as_deref() == Ok("ws") {
        WsServer::new(app)
            .workers(workers)
            .disable_signals()
            .bind(&bind)
            .map(WsServer::run)
    } else {
        HttpServer::new(app)
            .workers(workers)
            // Close TCP right after a close handshake instead of lingering
            // up to actix-web's default 1 s for the client to close first.
            .client_disconnect_timeout(std::time::Duration::ZERO)
            .disable_signals()
            .bind(&bind)
            .map(HttpServer::run)
    };
    let server = match bound {
        Ok(server) => server,
        Err(error) => {
            eprintln!("autobahn: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("autobahn echo on ws://{bind}/");
    match run_with_graceful_shutdown(server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("autobahn: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
