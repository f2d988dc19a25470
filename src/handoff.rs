//! The upgrade path of [`WsServer`](crate::WsServer): actix-http hands an
//! upgrade request to [`Upgrades`] with the raw connection instead of
//! keeping it; the app answers it as any other request; when the answer is
//! the 101 of one of this crate's upgrades, the socket goes to that
//! connection ([`Line`]) and no HTTP buffer stays behind.
//!
//! This module owns the app's one instance per worker ([`SharedApp`], the
//! app that answers plain requests answers upgrades too), the
//! [`Handoff`] slot through which [`WebSocketUpgrade`](crate::WebSocketUpgrade)
//! finds that it may take the socket, and the answer to upgrades that are
//! not ours (written, then the connection closes).

use std::{
    cell::RefCell,
    fmt,
    future::{poll_fn, Future},
    marker::PhantomData,
    pin::Pin,
    rc::Rc,
    task::{ready, Poll},
};

use actix_codec::{AsyncRead, AsyncWrite, Framed};
use actix_http::{
    body::{self, BodySize, BoxBody, MessageBody},
    h1::{self, Message},
    ConnectionType, HttpMessage as _, Request, Response, StatusCode,
};
use actix_service::{Service, ServiceFactory};
use bytes::Bytes;

use crate::line::Line;

/// Largest body of a plain answer to an upgrade request (a 404, a 403) that
/// is sent; a larger one is cut to an empty 500.
const MAX_ANSWER: usize = 64 * 1024;

/// Put in an upgrade request's extensions by [`Upgrades`]: the upgrade
/// that answers the request leaves its connection's [`Line`] here and
/// takes no request payload.
#[derive(Clone, Default)]
pub(crate) struct Handoff(Rc<RefCell<Option<Rc<Line>>>>);

impl Handoff {
    /// The line a connection started on this request reads and writes,
    /// once the 101 is out; `None` when another upgrade of the same
    /// request took it.
    pub(crate) fn open(&self) -> Option<Rc<Line>> {
        let mut slot = self.0.borrow_mut();
        if slot.is_some() {
            return None;
        }
        let line = Line::new();
        *slot = Some(Rc::clone(&line));
        Some(line)
    }

    fn take(&self) -> Option<Rc<Line>> {
        self.0.borrow_mut().take()
    }
}

/// Where a worker's app service is, once created: shared by the plain
/// requests' path and [`Upgrades`].
pub(crate) type AppCell<S> = Rc<RefCell<Option<Rc<S>>>>;

/// The app's factory, keeping what it creates in an [`AppCell`].
pub(crate) struct SharedApp<F: ServiceFactory<Request>> {
    pub(crate) factory: F,
    pub(crate) cell: AppCell<F::Service>,
}

impl<F> ServiceFactory<Request> for SharedApp<F>
where
    F: ServiceFactory<Request, Config = ()>,
    F::Service: 'static,
    F::Future: 'static,
{
    type Response = F::Response;
    type Error = F::Error;
    type Config = ();
    type Service = Rc<F::Service>;
    type InitError = F::InitError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Service, F::InitError>>>>;

    fn new_service(&self, _: ()) -> Self::Future {
        let created = self.factory.new_service(());
        let cell = Rc::clone(&self.cell);
        Box::pin(async move {
            let service = Rc::new(created.await?);
            *cell.borrow_mut() = Some(Rc::clone(&service));
            Ok(service)
        })
    }
}

/// actix-http's upgrade service: runs the app on the upgrade request, then
/// hands the socket over or writes the app's answer.
pub(crate) struct Upgrades<S, B> {
    pub(crate) app: AppCell<S>,
    /// The body type of the app's responses.
    pub(crate) body: PhantomData<fn() -> B>,
}

impl<S, T, B> ServiceFactory<(Request, Framed<T, h1::Codec>)> for Upgrades<S, B>
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Response = ();
    type Error = HandoffError;
    type Config = ();
    type Service = Upgrades<S, B>;
    type InitError = ();
    type Future = std::future::Ready<Result<Upgrades<S, B>, ()>>;

    fn new_service(&self, _: ()) -> Self::Future {
        std::future::ready(Ok(Upgrades {
            app: Rc::clone(&self.app),
            body: PhantomData,
        }))
    }
}

impl<S, T, B> Service<(Request, Framed<T, h1::Codec>)> for Upgrades<S, B>
where
    S: Service<Request> + 'static,
    S::Response: Into<Response<B>>,
    S::Error: Into<Response<BoxBody>>,
    B: MessageBody + 'static,
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    type Response = ();
    type Error = HandoffError;
    type Future = Upgrading;

    actix_service::always_ready!();

    fn call(&self, (req, framed): (Request, Framed<T, h1::Codec>)) -> Self::Future {
        let app = self.app.borrow().clone();
        Upgrading::Handshake(Box::pin(async move {
            let Some(app) = app else {
                answer(framed, Response::new(StatusCode::SERVICE_UNAVAILABLE)).await?;
                return Ok(None);
            };
            let handoff = Handoff::default();
            req.extensions_mut().insert(handoff.clone());
            let response: Response<BoxBody> = match app.call(req).await {
                Ok(response) => response.into().map_into_boxed_body(),
                Err(error) => error.into(),
            };
            let line = handoff.take();
            match line {
                Some(line) if response.status() == StatusCode::SWITCHING_PROTOCOLS => {
                    hand_over(framed, response, line).await.map(Some)
                }
                line => {
                    if let Some(line) = line {
                        // The app started a connection, then answered
                        // something else: that connection ends.
                        line.abandon();
                    } else if response.status() == StatusCode::SWITCHING_PROTOCOLS {
                        log::error!(
                            "an upgrade not made by actix-ws-listener reached WsServer: \
                             it cannot work here (use HttpServer for it); answered 501"
                        );
                        answer(framed, Response::new(StatusCode::NOT_IMPLEMENTED)).await?;
                        return Ok(None);
                    }
                    answer(framed, response).await.map(|()| None)
                }
            }
        }))
    }
}

/// The handshake's future: the line of the connection it started, if any.
type Handshake = Pin<Box<dyn Future<Output = Result<Option<Rc<Line>>, HandoffError>>>>;

/// What actix-http's dispatcher awaits for an upgrade request: the
/// handshake (the app's answer, the 101), then, once the socket is the
/// connection's, only its end. The handshake's state (the request, the
/// app's future, the codec) is freed as soon as the socket is handed over:
/// the dispatcher keeps this future for the connection's whole life.
pub(crate) enum Upgrading {
    Handshake(Handshake),
    /// The server counts the connection until its end (its
    /// `max_connections`, its graceful shutdown).
    Connected(Rc<Line>),
}

impl Future for Upgrading {
    type Output = Result<(), HandoffError>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<Self::Output> {
        if let Upgrading::Handshake(handshake) = &mut *self {
            match ready!(handshake.as_mut().poll(cx)) {
                Ok(Some(line)) => *self = Upgrading::Connected(line),
                Ok(None) => return Poll::Ready(Ok(())),
                Err(error) => return Poll::Ready(Err(error)),
            }
        }
        match &*self {
            Upgrading::Connected(line) => line.poll_end(cx).map(Ok),
            Upgrading::Handshake(_) => Poll::Pending,
        }
    }
}

/// Writes the 101 and hands the socket to the connection; the line, to
/// wait for its end.
async fn hand_over<T>(
    mut framed: Framed<T, h1::Codec>,
    response: Response<BoxBody>,
    line: Rc<Line>,
) -> Result<Rc<Line>, HandoffError>
where
    T: AsyncRead + AsyncWrite + Unpin + 'static,
{
    /// Until the socket is handed over, dropping this (an error, the server
    /// stopping) ends the connection.
    struct Abandon(Rc<Line>);
    impl Drop for Abandon {
        fn drop(&mut self) {
            self.0.abandon();
        }
    }
    let line = Abandon(line);
    let (response, _) = response.into_parts();
    Pin::new(&mut framed)
        .write(Message::Item((response, BodySize::None)))
        .map_err(HandoffError)?;
    poll_fn(|cx| Pin::new(&mut framed).flush(cx))
        .await
        .map_err(HandoffError)?;
    let parts = framed.into_parts();
    // Copied out at its size: the read buffer itself is freed now.
    let leftover = (!parts.read_buf.is_empty()).then(|| Bytes::copy_from_slice(&parts.read_buf));
    drop((parts.read_buf, parts.write_buf));
    line.0.attach(Box::new(parts.io), leftover);
    Ok(Rc::clone(&line.0))
}

/// Writes a plain answer to an upgrade request; the connection then
/// closes (what followed the request on it was never read as HTTP).
async fn answer<T, B>(
    mut framed: Framed<T, h1::Codec>,
    response: Response<B>,
) -> Result<(), HandoffError>
where
    T: AsyncRead + AsyncWrite + Unpin,
    B: MessageBody,
{
    let (mut response, body) = response.into_parts();
    response
        .head_mut()
        .set_connection_type(ConnectionType::Close);
    let body = match body::to_bytes_limited(body, MAX_ANSWER).await {
        Ok(Ok(bytes)) => bytes,
        _ => {
            response.head_mut().status = StatusCode::INTERNAL_SERVER_ERROR;
            Bytes::new()
        }
    };
    let size = BodySize::Sized(body.len() as u64);
    let mut framed = Pin::new(&mut framed);
    framed
        .as_mut()
        .write(Message::Item((response, size)))
        .map_err(HandoffError)?;
    if !body.is_empty() {
        framed
            .as_mut()
            .write(Message::Chunk(Some(body)))
            .map_err(HandoffError)?;
    }
    framed
        .as_mut()
        .write(Message::Chunk(None))
        .map_err(HandoffError)?;
    poll_fn(|cx| framed.as_mut().flush(cx))
        .await
        .map_err(HandoffError)?;
    poll_fn(|cx| framed.as_mut().close(cx))
        .await
        .map_err(HandoffError)
}

/// The socket failed while the handshake's answer was written.
#[derive(Debug)]
pub(crate) struct HandoffError(std::io::Error);

impl fmt::Display for HandoffError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "writing the answer to an upgrade request: {}", self.0)
    }
}

impl From<HandoffError> for Response<BoxBody> {
    fn from(_: HandoffError) -> Self {
        Response::internal_server_error()
    }
}
