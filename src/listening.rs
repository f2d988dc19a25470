//! What [`listen`](crate::WebSocketUpgrade::listen) and
//! [`upgrade`](crate::upgrade()) take and give back: [`Listen`], which a
//! [`Listener`] and an [`AsyncListener`] both satisfy, and [`Listening`],
//! the 101 response together with the started connection's [`Address`].
//!
//! This module owns the one entry point for both kinds of listener. It
//! starts nothing itself: the upgrade starts the connection with the driver
//! chosen here.

use actix_web::{body::BoxBody, HttpRequest, HttpResponse, Responder};

use crate::{
    address::Address,
    async_listener::AsyncListener,
    driver::{AsyncDriver, Driver, SyncDriver},
    listener::Listener,
};

/// Marks a [`Listener`] for [`Listen`]: its callbacks run to the end.
#[derive(Debug)]
pub enum SyncKind {}

/// Marks an [`AsyncListener`] for [`Listen`]: its callbacks may await.
#[derive(Debug)]
pub enum AsyncKind {}

/// What [`WebSocketUpgrade::listen`](crate::WebSocketUpgrade::listen) and
/// [`upgrade`](crate::upgrade()) take: a [`Listener`] or an
/// [`AsyncListener`]. `K` is inferred from the listener's type ([`SyncKind`]
/// or [`AsyncKind`]); code never names it. Sealed: the two blanket
/// implementations are the only ones.
///
/// ```no_run
/// use actix_web::Responder;
/// use actix_ws_listener::{AsyncListener, Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Plain;
/// impl Listener for Plain {}
///
/// struct Awaiting;
/// impl AsyncListener for Awaiting {
///     async fn on_message(&mut self, socket: &Socket, message: Message) {
///         if socket.send(message).is_err() {
///             log::debug!("ws {}: the client left", socket.id());
///         }
///     }
/// }
///
/// async fn plain(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(Plain)
/// }
///
/// async fn awaiting(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(Awaiting)
/// }
/// ```
// Sealed through its crate-private supertrait, which is how the upgrade
// gets the driver; users only ever see the bound.
#[allow(private_bounds)]
pub trait Listen<K>: Start<K> {}

/// How the upgrade turns a listener into the driver its connection calls.
pub(crate) trait Start<K>: Sized + 'static {
    fn into_driver(self) -> Box<dyn Driver<Self>>;
}

impl<L: Listener> Start<SyncKind> for L {
    fn into_driver(self) -> Box<dyn Driver<L>> {
        Box::new(SyncDriver::new(self))
    }
}

impl<L: Listener> Listen<SyncKind> for L {}

impl<L: AsyncListener> Start<AsyncKind> for L {
    fn into_driver(self) -> Box<dyn Driver<L>> {
        Box::new(AsyncDriver::new(self))
    }
}

impl<L: AsyncListener> Listen<AsyncKind> for L {}

/// A started connection: the response that completes the upgrade (return
/// it from the handler: it is a [`Responder`]) and, when asked for, the
/// listener's [`Address`], like actix-web-actors' `start_with_addr`.
///
/// ```no_run
/// use actix::{Actor, Context, Handler, Message, Recipient};
/// use actix_web::{web, HttpResponse};
/// use actix_ws_listener::{Handles, Listener, Socket, WebSocketUpgrade};
///
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct Notice(String);
///
/// /// Some actor that keeps every session's recipient.
/// struct Board(Vec<Recipient<Notice>>);
/// impl Actor for Board { type Context = Context<Self>; }
///
/// #[derive(Message)]
/// #[rtype(result = "()")]
/// struct Join(Recipient<Notice>);
/// impl Handler<Join> for Board {
///     type Result = ();
///     fn handle(&mut self, Join(who): Join, _: &mut Context<Self>) { self.0.push(who); }
/// }
///
/// struct Session;
/// impl Listener for Session {}
/// impl Handles<Notice> for Session {
///     async fn handle(&mut self, socket: &Socket, Notice(text): Notice) {
///         if socket.send(text).is_err() { log::debug!("notice not sent"); }
///     }
/// }
///
/// async fn ws(upgrade: WebSocketUpgrade, board: web::Data<actix::Addr<Board>>) -> HttpResponse {
///     let listening = upgrade.listen(Session);
///     if let Some(address) = listening.address() {
///         board.do_send(Join(address.recipient()));
///     }
///     listening.into()
/// }
/// ```
#[must_use = "the upgrade completes only when the response is returned"]
pub struct Listening<L: 'static> {
    response: HttpResponse,
    address: Option<Address<L>>,
}

impl<L: 'static> Listening<L> {
    pub(crate) fn new(response: HttpResponse, address: Option<Address<L>>) -> Listening<L> {
        Listening { response, address }
    }

    /// The listener's address; `None` when no connection started (the
    /// route's settings refused the request's origin: the response is a 403).
    pub fn address(&self) -> Option<&Address<L>> {
        self.address.as_ref()
    }

    /// The response and the address, apart.
    pub fn into_parts(self) -> (HttpResponse, Option<Address<L>>) {
        (self.response, self.address)
    }

    /// The response, to return from a handler typed `-> HttpResponse`.
    pub fn into_response(self) -> HttpResponse {
        self.response
    }
}

impl<L: 'static> From<Listening<L>> for HttpResponse {
    fn from(listening: Listening<L>) -> HttpResponse {
        listening.response
    }
}

impl<L: 'static> Responder for Listening<L> {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse {
        self.response
    }
}

impl<L: 'static> std::fmt::Debug for Listening<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Listening")
            .field("status", &self.response.status())
            .field("address", &self.address)
            .finish()
    }
}
