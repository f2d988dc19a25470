//! [`WsServer`]: actix-web's `HttpServer`, for apps whose WebSocket
//! connections own their sockets.
//!
//! This module owns the server's settings and how each worker's HTTP
//! service is built around the app (actix-http's `HttpService` with the
//! [`Upgrades`] service of [`handoff`](crate::handoff)). It must not know
//! about frames or connections: what happens to an upgrade is `handoff`'s.

use std::{fmt, io, marker::PhantomData, net, rc::Rc, time::Duration};

use actix_http::{body::MessageBody, HttpService, KeepAlive, Request, Response};
use actix_server::{Server, ServerBuilder};
use actix_service::{map_config, IntoServiceFactory, ServiceFactory, ServiceFactoryExt as _};
use actix_web::{dev::AppConfig, Error};

use crate::handoff::{SharedApp, Upgrades};

/// An HTTP server like actix-web's [`HttpServer`](actix_web::HttpServer),
/// same app, same handlers, whose WebSocket connections take their TCP
/// socket from actix-http after the handshake.
///
/// On `HttpServer`, the connection's HTTP dispatcher stays between the
/// socket and the WebSocket for its whole life: it keeps two 8 KiB buffers
/// and a task of its own per connection, reads into its buffer and hands
/// the bytes over, and copies every outgoing frame into its write buffer.
/// On `WsServer`, an upgrade request is answered by the same app, and when
/// the answer is the 101 of a [`WebSocketUpgrade`](crate::WebSocketUpgrade)
/// (or [`upgrade`](crate::upgrade())), the socket goes to the connection:
/// it reads, calls the listener and writes in its own task, with no HTTP
/// buffer left. An idle connection costs less than half the memory, and
/// each message less work.
///
/// What differs from `HttpServer`:
/// - HTTP/1.1 over plain TCP only (no TLS, no HTTP/2);
/// - every upgrade request (any path) is answered by the app and then the
///   TCP connection ends, unless the answer started one of this crate's
///   connections; upgrades made with other WebSocket crates
///   (`actix-web-actors`, `actix-ws`) get a 501;
/// - the settings below are the ones it has; the app is created once per
///   worker, as on `HttpServer`.
///
/// ```no_run
/// use actix_web::{web, App, Responder};
/// use actix_ws_listener::{listener, run_with_graceful_shutdown, WebSocketUpgrade, WsServer};
///
/// async fn echo(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(listener().on_message(|socket, message| {
///         if let Err(error) = socket.send(message) {
///             log::debug!("not echoed: {error}");
///         }
///     }))
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let server = WsServer::new(|| App::new().route("/ws", web::get().to(echo)))
///         .disable_signals()
///         .bind("127.0.0.1:8080")?
///         .run();
///     run_with_graceful_shutdown(server).await
/// }
/// ```
pub struct WsServer<F> {
    factory: F,
    builder: ServerBuilder,
    keep_alive: KeepAlive,
    client_request_timeout: Duration,
    tcp_nodelay: Option<bool>,
    addrs: Vec<net::SocketAddr>,
}

impl<F> fmt::Debug for WsServer<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WsServer")
            .field("keep_alive", &self.keep_alive)
            .field("client_request_timeout", &self.client_request_timeout)
            .field("tcp_nodelay", &self.tcp_nodelay)
            .finish_non_exhaustive()
    }
}

impl<F> WsServer<F> {
    /// A server for the apps `factory` makes, one per worker thread.
    pub fn new(factory: F) -> Self {
        WsServer {
            factory,
            builder: Server::build(),
            keep_alive: KeepAlive::default(),
            client_request_timeout: Duration::from_secs(5),
            tcp_nodelay: None,
            addrs: Vec::new(),
        }
    }

    /// The addresses it listens on so far (the actual port of a `:0`).
    pub fn addrs(&self) -> Vec<net::SocketAddr> {
        self.addrs.clone()
    }

    /// Worker threads (default: the available parallelism, as on
    /// `HttpServer`).
    pub fn workers(mut self, workers: usize) -> Self {
        self.builder = self.builder.workers(workers);
        self
    }

    /// Connections each worker serves at once, WebSockets included (default
    /// 25,600); past it the worker stops accepting.
    pub fn max_connections(mut self, max: usize) -> Self {
        self.builder = self.builder.max_concurrent_connections(max);
        self
    }

    /// The listen backlog (default 2048).
    pub fn backlog(mut self, backlog: u32) -> Self {
        self.builder = self.builder.backlog(backlog);
        self
    }

    /// HTTP keep-alive between plain requests (default 5 s).
    pub fn keep_alive(mut self, keep_alive: impl Into<KeepAlive>) -> Self {
        self.keep_alive = keep_alive.into();
        self
    }

    /// How long a client has to send a request's head (default 5 s).
    pub fn client_request_timeout(mut self, timeout: Duration) -> Self {
        self.client_request_timeout = timeout;
        self
    }

    /// Sets `TCP_NODELAY` on accepted sockets (default: the system's).
    pub fn tcp_nodelay(mut self, nodelay: bool) -> Self {
        self.tcp_nodelay = Some(nodelay);
        self
    }

    /// How long a graceful stop waits for connections (default 30 s).
    pub fn shutdown_timeout(mut self, seconds: u64) -> Self {
        self.builder = self.builder.shutdown_timeout(seconds);
        self
    }

    /// No signal handling of the server's own (see
    /// [`run_with_graceful_shutdown`](crate::run_with_graceful_shutdown)).
    pub fn disable_signals(mut self) -> Self {
        self.builder = self.builder.disable_signals();
        self
    }

    /// Listens on every address `addrs` resolves to.
    ///
    /// # Errors
    /// When an address cannot be bound.
    pub fn bind<A, I, S, B>(mut self, addrs: A) -> io::Result<Self>
    where
        A: net::ToSocketAddrs,
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<Error> + 'static,
        S::InitError: fmt::Debug,
        S::Response: Into<Response<B>> + 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let mut bound = false;
        let mut last = None;
        for addr in addrs.to_socket_addrs()? {
            match net::TcpListener::bind(addr) {
                Ok(listener) => {
                    self = self.listen(listener)?;
                    bound = true;
                }
                Err(error) => last = Some(error),
            }
        }
        match (bound, last) {
            (true, _) => Ok(self),
            (false, Some(error)) => Err(error),
            (false, None) => Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "no address to bind",
            )),
        }
    }

    /// Serves on `listener` (a [`reuse_port_listener`](crate::reuse_port_listener)
    /// to share a port between processes).
    ///
    /// # Errors
    /// When the listener's address cannot be read.
    pub fn listen<I, S, B>(mut self, listener: net::TcpListener) -> io::Result<Self>
    where
        F: Fn() -> I + Send + Clone + 'static,
        I: IntoServiceFactory<S, Request>,
        S: ServiceFactory<Request, Config = AppConfig> + 'static,
        S::Error: Into<Error> + 'static,
        S::InitError: fmt::Debug,
        S::Response: Into<Response<B>> + 'static,
        S::Service: 'static,
        B: MessageBody + 'static,
    {
        let addr = listener.local_addr()?;
        self.addrs.push(addr);
        let factory = self.factory.clone();
        let (keep_alive, request_timeout, nodelay) = (
            self.keep_alive,
            self.client_request_timeout,
            self.tcp_nodelay,
        );
        self.builder =
            self.builder
                .listen(format!("actix-ws-listener-{addr}"), listener, move || {
                    let app = factory()
                        .into_factory()
                        .map_err(|error| error.into().error_response());
                    let host = addr.to_string();
                    let app = map_config(app, move |_| {
                        // What `HttpServer` gives the app: not secure, this
                        // address as the host when a request names none.
                        AppConfig::__priv_test_new(false, host.clone(), addr)
                    });
                    let shared = SharedApp {
                        factory: app,
                        cell: Rc::default(),
                    };
                    let upgrades = Upgrades {
                        app: Rc::clone(&shared.cell),
                        body: PhantomData,
                    };
                    let mut service = HttpService::build()
                        .keep_alive(keep_alive)
                        .client_request_timeout(request_timeout)
                        .local_addr(addr);
                    if let Some(nodelay) = nodelay {
                        service = service.tcp_nodelay(nodelay);
                    }
                    service.upgrade(upgrades).finish(shared).tcp()
                })?;
        Ok(self)
    }

    /// Starts the server: await the returned [`Server`] (or pass it to
    /// [`run_with_graceful_shutdown`](crate::run_with_graceful_shutdown)).
    pub fn run(self) -> Server {
        self.builder.run()
    }
}
