//! Graceful shutdown of a server with open WebSockets, on the application's
//! request (S14).
//!
//! This module owns the one place where the crate listens for process
//! signals, and it does so only inside [`run_with_graceful_shutdown`], which
//! the application calls. It never ends the process: it stops the server and
//! returns, and `main` decides what happens next. It must not know about
//! frames or listeners; it closes connections through [`Connections`].

use std::{future::pending, io, pin::pin, time::Duration};

use actix_web::dev::Server;
use futures::future::{select, Either};

use crate::{CloseCode, Connections};

/// How often, while the server stops, connections that opened after the
/// first [`Connections::close_all`] (an upgrade racing the signal) are
/// closed too.
const SWEEP: Duration = Duration::from_millis(100);

/// Runs `server` until it stops, and stops it gracefully on SIGINT or
/// SIGTERM (Ctrl-C where there are no Unix signals), closing every open
/// WebSocket with 1001 "server shutting down" so that each gets its
/// `on_close` and actix-web's graceful stop does not wait for them (S14).
///
/// On the first signal it asks the server to stop gracefully
/// (`ServerHandle::stop(true)`) and calls
/// [`Connections::global().close_all`](Connections::close_all) with
/// [`CloseCode::GOING_AWAY`]; each connection then ends within its
/// [`close_timeout`](crate::Config::close_timeout). Connections that open
/// while the server stops are closed too. A second signal stops the server
/// at once, without waiting for connections. It never exits the process:
/// it returns the server's result, or `Ok(())` after a forced stop.
///
/// It works with actix-web's own signal handling on or off. Left on (the
/// default), both react to the same signal: on SIGTERM actix-web starts the
/// graceful stop and this closes the WebSockets, so it ends quickly; on
/// SIGINT, though, actix-web stops the server *at once* (its choice for
/// Ctrl-C), and connections are dropped with `on_close(1006)` or closed
/// with 1001, whichever comes first. Call `HttpServer::disable_signals()`
/// to make Ctrl-C graceful too, as the examples do.
///
/// Signal handlers are installed when it is called and stay for the life
/// of the process, which then no longer ends on SIGINT or SIGTERM by
/// itself. If they cannot be installed, it logs a warning and just runs the
/// server. Without this function the crate takes no signals; stop the server
/// yourself and call [`Connections::close_all`] (the manual way).
///
/// ```no_run
/// use actix_web::{web, App, HttpServer};
/// use actix_ws_listener::{listener, run_with_graceful_shutdown, WebSocketUpgrade};
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let server = HttpServer::new(|| {
///         App::new().route(
///             "/ws",
///             web::get().to(|upgrade: WebSocketUpgrade| async { upgrade.listen(listener()) }),
///         )
///     })
///     .disable_signals()
///     .bind("127.0.0.1:8080")?
///     .run();
///     run_with_graceful_shutdown(server).await
/// }
/// ```
///
/// # Errors
/// The server's own error, if it fails to run.
pub async fn run_with_graceful_shutdown(server: Server) -> io::Result<()> {
    let handle = server.handle();
    let mut server = server;
    let mut signals = match Signals::new() {
        Ok(signals) => signals,
        Err(error) => {
            log::warn!("cannot listen for shutdown signals ({error}); WebSockets will not be closed on shutdown");
            return server.await;
        }
    };
    let signal = match select(&mut server, pin!(signals.recv())).await {
        Either::Left((result, _)) => return result,
        Either::Right((signal, _)) => signal,
    };
    // Stop accepting first, so that the sweeps below find few newcomers.
    // `stop` sends the command at once; its future only waits for the end.
    drop(handle.stop(true));
    let closing = Connections::global().close_all(CloseCode::GOING_AWAY, "server shutting down");
    log::info!("{signal}: stopping the server; closing {closing} WebSocket connections with 1001");
    loop {
        let next_signal = pin!(signals.recv());
        let sweep = pin!(actix_rt::time::sleep(SWEEP));
        match select(&mut server, select(next_signal, sweep)).await {
            Either::Left((result, _)) => return result,
            Either::Right((Either::Left((signal, _)), _)) => {
                log::warn!("{signal} again: stopping the server without waiting for connections");
                // Dropping a running actix server stops its workers at once.
                drop(server);
                return Ok(());
            }
            Either::Right((Either::Right(_), _)) => {
                Connections::global().close_all(CloseCode::GOING_AWAY, "server shutting down");
            }
        }
    }
}

/// The stop signals: SIGINT and SIGTERM.
#[cfg(unix)]
struct Signals {
    interrupt: actix_rt::signal::unix::Signal,
    terminate: actix_rt::signal::unix::Signal,
}

#[cfg(unix)]
impl Signals {
    fn new() -> io::Result<Signals> {
        use actix_rt::signal::unix::{signal, SignalKind};
        Ok(Signals {
            interrupt: signal(SignalKind::interrupt())?,
            terminate: signal(SignalKind::terminate())?,
        })
    }

    /// Waits for the next signal and names it.
    async fn recv(&mut self) -> &'static str {
        let Signals {
            interrupt,
            terminate,
        } = self;
        // `None` means no signal can arrive any more: wait forever then.
        let interrupt = async {
            match interrupt.recv().await {
                Some(()) => "SIGINT",
                None => pending().await,
            }
        };
        let terminate = async {
            match terminate.recv().await {
                Some(()) => "SIGTERM",
                None => pending().await,
            }
        };
        match select(pin!(interrupt), pin!(terminate)).await {
            Either::Left((name, _)) | Either::Right((name, _)) => name,
        }
    }
}

/// The stop signal: Ctrl-C.
#[cfg(not(unix))]
struct Signals;

#[cfg(not(unix))]
impl Signals {
    fn new() -> io::Result<Signals> {
        Ok(Signals)
    }

    /// Waits for the next Ctrl-C.
    async fn recv(&mut self) -> &'static str {
        if actix_rt::signal::ctrl_c().await.is_err() {
            pending::<()>().await;
        }
        "Ctrl-C"
    }
}
