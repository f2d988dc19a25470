//! The echo server of Ring's WebSocket documentation, as a `Listener` struct.
//!
//! On open it sends "I will echo your messages"; a text message `exit`
//! closes the socket normally (1000); anything else is echoed back with its
//! type. A plain GET of `/ws` gets a short explanation instead, which shows
//! `is_websocket_request` branching the way Ring handlers do.
//!
//! Compression (permessage-deflate) is on for clients that offer it.
//!
//! The S19 guard, from the environment (unset: the library's defaults, off):
//! - `MAX_MESSAGES_PER_SECOND=200`: each connection is paced to 200
//!   messages a second (bursts of a tenth of that), never dropped;
//! - `MAX_CONNECTIONS_PER_IP=20`: the 21st connection from one address gets
//!   429 with `Retry-After` until one of the 20 ends.
//!
//! The server-wide inbound budget is on by default (512 MiB); the log shows
//! its use every 10 s while connections are open.
//!
//! Run:   cargo run --example echo            (BIND=127.0.0.1:8080 by default)
//!        (SERVER=ws serves it on `WsServer` instead of actix-web's `HttpServer`)
//! Talk:  websocat ws://127.0.0.1:8080/ws     or   curl http://127.0.0.1:8080/ws

use std::{process::ExitCode, time::Duration};

use actix_web::{middleware::Logger, web, App, HttpRequest, HttpResponse, HttpServer};
use actix_ws_listener::{
    is_websocket_request, run_with_graceful_shutdown, upgrade, Compression, Config, Listener,
    Message, Socket, Stats, WsServer,
};

struct Echo;

impl Listener for Echo {
    fn on_open(&mut self, socket: &Socket) {
        if let Err(error) = socket.send("I will echo your messages") {
            log::debug!("ws {}: greeting not sent: {error}", socket.id());
        }
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        let done = if message.as_text() == Some("exit") {
            socket.close()
        } else {
            socket.send(message)
        };
        // An error means the client left (`SendError::Closed`, its on_close
        // is on the way) or stopped reading (`SendError::Backpressure`).
        if let Err(error) = done {
            log::debug!("ws {}: {error}", socket.id());
        }
    }
}

async fn ws(req: HttpRequest, payload: web::Payload) -> actix_web::Result<HttpResponse> {
    if !is_websocket_request(&req) {
        return Ok(HttpResponse::Ok()
            .content_type("text/plain; charset=utf-8")
            .body("This endpoint expects a WebSocket connection: try websocat ws://HOST/ws\n"));
    }
    Ok(upgrade(&req, payload, Echo)?.into_response())
}

/// A number from the environment; `None` when unset, a warning when not a number.
fn env_number<T: std::str::FromStr>(name: &str) -> Option<T> {
    let value = std::env::var(name).ok()?;
    match value.trim().parse() {
        Ok(number) => Some(number),
        Err(_) => {
            log::warn!("{name}={value:?} is not a number: ignored");
            None
        }
    }
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    // permessage-deflate for clients that offer it (browsers and most
    // libraries do); the rest of the settings are the defaults.
    let mut config = Config::default().compression(Compression::default());
    if let Some(rate) = env_number::<u32>("MAX_MESSAGES_PER_SECOND") {
        config = config.max_messages_per_second(rate, (rate / 10).max(1));
        log::info!("each connection paced to {rate} messages a second");
    }
    if let Some(cap) = env_number::<usize>("MAX_CONNECTIONS_PER_IP") {
        config = config.max_connections_per_ip(cap);
        log::info!("at most {cap} connections per client address");
    }
    actix_rt::spawn(async {
        let mut every = actix_rt::time::interval(Duration::from_secs(10));
        loop {
            every.tick().await;
            let stats = Stats::now();
            if stats.connections > 0 || stats.inbound_bytes > 0 {
                log::info!("{stats:?}");
            }
        }
    });
    let app = move || {
        App::new()
            .app_data(config.clone())
            .wrap(Logger::default())
            .route("/ws", web::get().to(ws))
    };
    // run_with_graceful_shutdown takes SIGINT and SIGTERM: on either, every
    // WebSocket is closed with 1001 (and gets its on_close), then the server
    // stops. SERVER=ws serves the same app on WsServer (each WebSocket owns
    // its socket).
    let bound = if std::env::var("SERVER").as_deref() == Ok("ws") {
        WsServer::new(app)
            .disable_signals()
            .bind(&bind)
            .map(WsServer::run)
    } else {
        HttpServer::new(app)
            // Close TCP as soon as a close handshake is done, instead of
            // lingering up to actix-web's default 1 s for the client to
            // close first.
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
            eprintln!("echo: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    log::info!("echo server on ws://{bind}/ws");
    match run_with_graceful_shutdown(server).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("echo: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
