//! The live-connection registry: how many connections are open, and a way
//! to close them all (S14).
//!
//! This module owns [`Connections`] and the process-wide registry every
//! connection joins. It takes no signals and never decides to close on its
//! own: [`run_with_graceful_shutdown`](crate::run_with_graceful_shutdown) or
//! the application calls [`Connections::close_all`]. It must not know about
//! frames or listeners.

use std::{
    collections::HashMap,
    fmt,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, OnceLock,
    },
};

use crate::{close::CloseCode, socket::Socket};

/// A set of live connections, with counters an operator can read.
///
/// Every connection joins [`Connections::global`]. To count or close some
/// connections apart from the others, put a registry in `app_data` (a
/// `Connections` or a `web::Data<Connections>`) of the app, a scope or a
/// resource: connections upgraded there join it too. Cloning shares the set.
///
/// ```no_run
/// use actix_web::{web, App};
/// use actix_ws_listener::{listener, CloseCode, Connections, WebSocketUpgrade};
///
/// let chat = Connections::new();
/// let app = App::new().service(
///     web::resource("/chat")
///         .app_data(chat.clone())
///         .route(web::get().to(|upgrade: WebSocketUpgrade| async move {
///             upgrade.listen(listener())
///         })),
/// );
/// log::info!("{} open, {} ever opened", chat.len(), chat.total_opened());
/// // Before a programmatic `ServerHandle::stop(true)`:
/// let closing = chat.close_all(CloseCode::GOING_AWAY, "server shutting down");
/// log::info!("closing {closing} connections with 1001");
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
    /// many were asked to close. Each one ends within its `close_timeout`,
    /// after its `on_close`.
    ///
    /// The manual way to shut down (S14): call it with
    /// [`CloseCode::GOING_AWAY`] wherever your application stops its
    /// server (`ServerHandle::stop(true)`), so that actix-web's graceful
    /// stop does not wait for WebSockets that would otherwise stay open.
    /// [`run_with_graceful_shutdown`](crate::run_with_graceful_shutdown)
    /// does exactly that on SIGINT and SIGTERM.
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
