//! Pushing to sockets from another actor: a ticker actor keeps the sockets
//! of all connected clients and sends each of them the time every second.
//! Sockets join in `on_open` and leave in `on_close`.
//!
//! Run:   cargo run --example ticker      (BIND=127.0.0.1:8080 by default)
//! Talk:  websocat ws://127.0.0.1:8080/ws

use std::{
    net::TcpListener,
    process::ExitCode,
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use actix::{Actor, Addr, AsyncContext, Context, Handler, Message as ActixMessage};
use actix_web::{web, App, HttpServer, Responder};
use actix_ws_listener::{
    run_with_graceful_shutdown, CloseCode, Group, Listener, Socket, WebSocketUpgrade,
};

/// The actor that owns the set of connected sockets.
#[derive(Default)]
struct Ticker {
    sockets: Group,
    ticks: u64,
}

#[derive(ActixMessage)]
#[rtype(result = "()")]
enum Membership {
    Join(Socket),
    Leave(Socket),
}

impl Actor for Ticker {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        ctx.run_interval(Duration::from_secs(1), |ticker, _| {
            ticker.ticks += 1;
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or_default();
            // One shared payload for everyone; members whose connection has
            // closed leave the group, slow ones just miss this tick.
            let report = ticker
                .sockets
                .broadcast(format!("tick {} at {now}", ticker.ticks));
            if report.backpressured > 0 {
                log::warn!("{} clients are not keeping up", report.backpressured);
            }
        });
    }
}

impl Handler<Membership> for Ticker {
    type Result = ();

    fn handle(&mut self, membership: Membership, _: &mut Context<Self>) {
        match membership {
            Membership::Join(socket) => self.sockets.insert(&socket),
            Membership::Leave(socket) => self.sockets.remove(&socket),
        };
        log::info!("{} clients", self.sockets.len());
    }
}

/// Each connection's listener only tells the ticker that it came and went.
struct Client {
    ticker: Addr<Ticker>,
}

impl Listener for Client {
    fn on_open(&mut self, socket: &Socket) {
        self.ticker.do_send(Membership::Join(socket.clone()));
    }

    fn on_close(&mut self, socket: &Socket, _code: CloseCode, _reason: &str) {
        self.ticker.do_send(Membership::Leave(socket.clone()));
    }
}

async fn ws(upgrade: WebSocketUpgrade, ticker: web::Data<Addr<Ticker>>) -> impl Responder {
    upgrade.listen(Client {
        ticker: ticker.get_ref().clone(),
    })
}

#[actix_web::main]
async fn main() -> ExitCode {
    env_logger::init_from_env(env_logger::Env::default().default_filter_or("info"));
    let bind = std::env::var("BIND").unwrap_or_else(|_| "127.0.0.1:8080".to_owned());
    // Fails like a finished program: one line saying what, where, and what
    // to do, then a non-zero exit. The port is taken before any actor
    // starts: an actor started and never run would panic as the system
    // drops it.
    let listener = match TcpListener::bind(&bind) {
        Ok(listener) => listener,
        Err(error) => {
            eprintln!("ticker: cannot listen on {bind}: {error}; choose another BIND");
            return ExitCode::FAILURE;
        }
    };
    let ticker = Ticker::default().start();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(ticker.clone()))
            .route("/ws", web::get().to(ws))
    })
    // Close TCP as soon as a close handshake is done, instead of lingering
    // up to actix-web's default 1 s for the client to close first.
    .client_disconnect_timeout(Duration::ZERO)
    // run_with_graceful_shutdown takes SIGINT and SIGTERM: on either, every
    // WebSocket is closed with 1001 (and gets its on_close), then the server stops.
    .disable_signals();
    let server = match server.listen(listener) {
        Ok(server) => server,
        Err(error) => {
            eprintln!("ticker: cannot listen on {bind}: {error}");
            return ExitCode::FAILURE;
        }
    };
    log::info!("ticker on ws://{bind}/ws");
    match run_with_graceful_shutdown(server.run()).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ticker: server failed: {error}");
            ExitCode::FAILURE
        }
    }
}
