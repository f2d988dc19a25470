//! The live-connection registry: how many connections are open, and a way
//! to close them all (S14).
//!
//! This module owns [`Connections`] and the process-wide registry every
//! connection joins, which closes them with 1001 when the process receives
//! SIGINT or SIGTERM (the signals on which actix-web stops gracefully). It
//! must not know about frames or listeners.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use crate::{CloseCode, Socket};

/// A set of live connections, with counters an operator can read.
///
/// Every connection joins [`Connections::global`]. Give a route its own
/// registry with [`Config::connections`](crate::Config::connections) to
/// count or close that route's connections alone. Cloning shares the set.
///
/// ```no_run
/// use actix_ws_listener::{CloseCode, Config, Connections};
///
/// let connections = Connections::new();
/// let config = Config::default().connections(connections.clone());
/// // ... App::new().app_data(config.clone()) ...
/// println!("{} open, {} ever opened", connections.len(), connections.total_opened());
/// // Before a programmatic `ServerHandle::stop(true)`:
/// connections.close_all(CloseCode::GOING_AWAY, "server shutting down");
/// ```
#[derive(Clone, Default)]
pub struct Connections {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    sockets: Mutex<HashMap<u64, Socket>>,
    opened: AtomicU64,
}

impl Connections {
    /// An empty registry.
    pub fn new() -> Connections {
        Connections::default()
    }

    /// The process-wide registry that every connection joins.
    pub fn global() -> &'static Connections {
        static GLOBAL: OnceLock<Connections> = OnceLock::new();
        GLOBAL.get_or_init(Connections::new)
    }

    /// Connections open now (opened and not yet past `on_close`).
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when no connection is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Connections ever opened through this registry.
    pub fn total_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Sockets of the open connections.
    pub fn sockets(&self) -> Vec<Socket> {
        self.lock().values().cloned().collect()
    }

    /// Starts the closing handshake on every open connection; returns how
    /// many were asked to close. Each one ends within its `close_timeout`.
    pub fn close_all(&self, code: CloseCode, reason: &str) -> usize {
        self.sockets()
            .into_iter()
            .filter(|socket| socket.close_with(code, reason).is_ok())
            .count()
    }

    pub(crate) fn insert(&self, socket: &Socket) {
        self.inner.opened.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(socket.id(), socket.clone());
    }

    pub(crate) fn remove(&self, socket: &Socket) {
        self.lock().remove(&socket.id());
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Socket>> {
        // A panic while holding this lock cannot leave the map inconsistent.
        self.inner
            .sockets
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

impl fmt::Debug for Connections {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connections")
            .field("open", &self.len())
            .field("total_opened", &self.total_opened())
            .finish()
    }
}

/// Starts, once per process, a task on the current runtime that closes every
/// connection with 1001 when SIGINT or SIGTERM arrives. actix-web stops
/// gracefully on the same signals and waits for connections to end; closing
/// them lets it finish within `close_timeout` instead of its shutdown timeout.
pub(crate) fn watch_shutdown_signals() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if STARTED.swap(true, Ordering::AcqRel) {
        return;
    }
    #[cfg(unix)]
    actix_rt::spawn(async {
        use actix_rt::signal::unix::{signal, SignalKind};
        let (Ok(mut interrupt), Ok(mut terminate)) = (
            signal(SignalKind::interrupt()),
            signal(SignalKind::terminate()),
        ) else {
            log::warn!(
                "cannot listen for shutdown signals; connections will not be closed on shutdown"
            );
            return;
        };
        futures::future::select(Box::pin(interrupt.recv()), Box::pin(terminate.recv())).await;
        let closed = Connections::global().close_all(CloseCode::GOING_AWAY, "server shutting down");
        log::info!("shutdown signal: closing {closed} WebSocket connections with 1001");
        // Installing these handlers took away the signals' default action:
        // a second signal ends the process, as users expect of Ctrl-C
        // pressed twice, even when nothing else handles the first one.
        futures::future::select(Box::pin(interrupt.recv()), Box::pin(terminate.recv())).await;
        log::warn!("second shutdown signal: exiting now");
        std::process::exit(130);
    });
}
