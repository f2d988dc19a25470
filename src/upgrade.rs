//! The HTTP side: request predicates, subprotocol negotiation, the
//! [`WebSocketUpgrade`] extractor and the 101 response that starts a
//! connection.
//!
//! This module owns every decision made before the connection exists (S11,
//! S13): a request that is not a valid WebSocket upgrade, or comes from an
//! origin that is not allowed, gets a clear 4xx and no actor starts.

use std::{fmt, future::Ready, rc::Rc};

use actix_web::{
    body::BoxBody,
    dev::Payload,
    http::{header, Method, StatusCode},
    web, FromRequest, HttpMessage as _, HttpRequest, HttpResponse, ResponseError,
};

use crate::{
    address::Address,
    admission::Admission,
    budget::InboundBudget,
    caps::{Caps, Full},
    config::{ClientAddress, Config},
    connection, deflate,
    driver::Driver,
    handoff::Handoff,
    line::LineReader,
    listening::{Listen, Listening},
    registry::Connections,
};

/// True when `req` asks for a WebSocket: its `Upgrade` header lists
/// `websocket` (any case), whatever else is wrong with the handshake. Ring's
/// `websocket-request?`.
///
/// Use it to branch between a WebSocket and a plain HTTP answer on one
/// route; [`is_upgrade_request`] is the stricter test.
///
/// ```no_run
/// use actix_web::{web, HttpRequest, HttpResponse};
/// use actix_ws_listener::{is_websocket_request, upgrade, listener};
///
/// async fn handler(req: HttpRequest, payload: web::Payload) -> actix_web::Result<HttpResponse> {
///     if !is_websocket_request(&req) {
///         return Ok(HttpResponse::Ok().body("this endpoint speaks WebSocket"));
///     }
///     let echo = listener().on_message(|socket, message| {
///         if let Err(error) = socket.send(message) {
///             log::debug!("echo not sent: {error}");
///         }
///     });
///     Ok(upgrade(&req, payload, echo)?.into_response())
/// }
/// ```
pub fn is_websocket_request(req: &HttpRequest) -> bool {
    header_has_token(req, header::UPGRADE, "websocket")
}

/// True when `req` asks to upgrade the connection to a WebSocket: its
/// `Connection` header lists `upgrade` and its `Upgrade` header lists
/// `websocket` (tokens in comma-separated lists, any case). Ring's
/// `upgrade-request?` (Ring 1.11 renamed it from `websocket-request?`).
///
/// An upgrade to another protocol (`Upgrade: h2c`) is not one. The rest of
/// the handshake (method, version, key) is checked when upgrading.
pub fn is_upgrade_request(req: &HttpRequest) -> bool {
    header_has_token(req, header::CONNECTION, "upgrade")
        && header_has_token(req, header::UPGRADE, "websocket")
}

/// The subprotocols the client offered in `Sec-WebSocket-Protocol`, in the
/// client's order. Ring's `request-protocols`.
pub fn requested_protocols(req: &HttpRequest) -> Vec<String> {
    req.headers()
        .get_all(header::SEC_WEBSOCKET_PROTOCOL)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .map(str::trim)
        .filter(|protocol| !protocol.is_empty())
        .map(str::to_owned)
        .collect()
}

fn header_has_token(req: &HttpRequest, name: header::HeaderName, token: &str) -> bool {
    req.headers()
        .get_all(name)
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(','))
        .any(|item| item.trim().eq_ignore_ascii_case(token))
}

/// Why a request could not be upgraded. Renders as a 4xx response with a
/// plain-text body that says what was wrong.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum UpgradeError {
    /// Not a WebSocket request (no `Upgrade: websocket`): 400.
    NotWebSocket,
    /// A WebSocket request with a method other than GET: 405.
    MethodNotAllowed,
    /// No `Connection: upgrade` header: 400.
    NoConnectionUpgrade,
    /// `Sec-WebSocket-Version` missing, repeated or not 13: 426 with
    /// `Sec-WebSocket-Version: 13`.
    UnsupportedVersion,
    /// `Sec-WebSocket-Key` missing, repeated or not 16 base64-encoded bytes: 400.
    BadKey,
    /// The `Origin` is not in `allowed_origins`: 403.
    OriginNotAllowed,
    /// `max_connections` are open (S19): 503 with `Retry-After`.
    ServerFull,
    /// `max_connections_per_ip` are open from the client's address (S19):
    /// 429 with `Retry-After`.
    TooManyFromAddress,
}

/// The `Retry-After` (seconds) of a 503 or 429 from the connection caps:
/// long enough that a client's retry loop does not hammer a full server,
/// short enough that a freed place is taken soon.
const RETRY_AFTER_SECS: u32 = 5;

impl fmt::Display for UpgradeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            UpgradeError::NotWebSocket => {
                "expected a WebSocket upgrade request (Upgrade: websocket)"
            }
            UpgradeError::MethodNotAllowed => "a WebSocket upgrade must use GET",
            UpgradeError::NoConnectionUpgrade => {
                "a WebSocket upgrade needs the header Connection: upgrade"
            }
            UpgradeError::UnsupportedVersion => {
                "unsupported WebSocket version: expected one Sec-WebSocket-Version: 13"
            }
            UpgradeError::BadKey => "missing, repeated or malformed Sec-WebSocket-Key",
            UpgradeError::OriginNotAllowed => "WebSocket upgrade from this origin is not allowed",
            UpgradeError::ServerFull => "the server has as many WebSocket connections as it takes",
            UpgradeError::TooManyFromAddress => "too many WebSocket connections from this address",
        })
    }
}

impl std::error::Error for UpgradeError {}

impl ResponseError for UpgradeError {
    fn status_code(&self) -> StatusCode {
        match self {
            UpgradeError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            UpgradeError::UnsupportedVersion => StatusCode::UPGRADE_REQUIRED,
            UpgradeError::OriginNotAllowed => StatusCode::FORBIDDEN,
            UpgradeError::ServerFull => StatusCode::SERVICE_UNAVAILABLE,
            UpgradeError::TooManyFromAddress => StatusCode::TOO_MANY_REQUESTS,
            _ => StatusCode::BAD_REQUEST,
        }
    }

    fn error_response(&self) -> HttpResponse<BoxBody> {
        let mut response = HttpResponse::build(self.status_code());
        if *self == UpgradeError::UnsupportedVersion {
            response.insert_header((header::SEC_WEBSOCKET_VERSION, "13"));
        }
        if *self == UpgradeError::MethodNotAllowed {
            response.insert_header((header::ALLOW, "GET"));
        }
        if matches!(
            self,
            UpgradeError::ServerFull | UpgradeError::TooManyFromAddress
        ) {
            response.insert_header((header::RETRY_AFTER, RETRY_AFTER_SECS));
        }
        response
            .content_type("text/plain; charset=utf-8")
            .body(self.to_string())
    }
}

/// Checks the handshake headers (RFC 6455 §4.2.1) and the origin policy.
fn verify(req: &HttpRequest, config: &Config) -> Result<(), UpgradeError> {
    if !is_websocket_request(req) {
        return Err(UpgradeError::NotWebSocket);
    }
    if req.method() != Method::GET {
        return Err(UpgradeError::MethodNotAllowed);
    }
    if !header_has_token(req, header::CONNECTION, "upgrade") {
        return Err(UpgradeError::NoConnectionUpgrade);
    }
    if single_header(req, header::SEC_WEBSOCKET_VERSION)
        .is_none_or(|version| version.as_bytes() != b"13")
    {
        return Err(UpgradeError::UnsupportedVersion);
    }
    let key_ok = single_header(req, header::SEC_WEBSOCKET_KEY)
        .is_some_and(|key| is_valid_key(key.as_bytes()));
    if !key_ok {
        return Err(UpgradeError::BadKey);
    }
    if let Some(allowed) = &config.allowed_origins {
        let origin = req
            .headers()
            .get(header::ORIGIN)
            .and_then(|o| o.to_str().ok());
        if !origin.is_some_and(|origin| allowed.iter().any(|a| a == origin)) {
            return Err(UpgradeError::OriginNotAllowed);
        }
    }
    Ok(())
}

/// The value of a header that must appear exactly once (RFC 6455 §11.3.1,
/// §11.3.5): `None` when it is missing or repeated.
fn single_header(req: &HttpRequest, name: header::HeaderName) -> Option<&header::HeaderValue> {
    let mut values = req.headers().get_all(name);
    let first = values.next()?;
    values.next().is_none().then_some(first)
}

/// A key is 16 bytes in base64: 22 alphabet characters and `==`.
fn is_valid_key(key: &[u8]) -> bool {
    key.len() == 24
        && key.ends_with(b"==")
        && key[..22]
            .iter()
            .all(|b| b.is_ascii_alphanumeric() || *b == b'+' || *b == b'/')
}

/// Upgrades `req` and starts a connection driven by `listener` (a
/// [`Listener`](crate::Listener) or an [`AsyncListener`](crate::AsyncListener)),
/// with the app's [`Config`] (from `app_data`) or the default. For handlers
/// that already hold the request and payload; [`WebSocketUpgrade`] is the
/// extractor form. To choose a subprotocol on this path, build the upgrade
/// with [`WebSocketUpgrade::new`]:
/// `WebSocketUpgrade::new(&req, payload)?.protocol("chat").listen(listener)`.
///
/// # Errors
/// [`UpgradeError`] (a 4xx response) when `req` is not a valid WebSocket
/// upgrade or its origin is not allowed.
pub fn upgrade<L, K>(
    req: &HttpRequest,
    payload: web::Payload,
    listener: L,
) -> Result<Listening<L>, UpgradeError>
where
    L: Listen<K>,
{
    Ok(WebSocketUpgrade::new(req, payload)?.listen(listener))
}

fn app_config(req: &HttpRequest) -> Config {
    app_data::<Config>(req).cloned().unwrap_or_default()
}

/// What the connection joins besides its config: the registry and budget
/// in `app_data`, and a place in the connection caps (S19), checked here,
/// before any 101.
fn admission(req: &HttpRequest, config: &Config) -> Result<Admission, UpgradeError> {
    let address = match config.client_address {
        ClientAddress::Peer => req.peer_addr().map(|addr| addr.ip()),
        ClientAddress::Forwarded => forwarded_ip(req),
    };
    let place = Caps::global()
        .admit(
            address,
            config.max_connections,
            config.max_connections_per_ip,
        )
        .map_err(|full| {
            log::debug!("ws upgrade from {address:?} refused: {full:?}");
            match full {
                Full::Server => UpgradeError::ServerFull,
                Full::Address => UpgradeError::TooManyFromAddress,
            }
        })?;
    Ok(Admission {
        registry: app_data::<Connections>(req).cloned(),
        budget: app_data::<InboundBudget>(req)
            .unwrap_or_else(|| InboundBudget::global())
            .clone(),
        place: Some(place),
    })
}

/// The client address a trusted proxy wrote (`Forwarded`, `X-Forwarded-For`),
/// else the peer's.
fn forwarded_ip(req: &HttpRequest) -> Option<std::net::IpAddr> {
    let info = req.connection_info();
    let real = info.realip_remote_addr()?;
    // "203.0.113.7", "203.0.113.7:4711", "[2001:db8::1]:4711" or "2001:db8::1".
    real.parse::<std::net::SocketAddr>()
        .map(|addr| addr.ip())
        .or_else(|_| real.trim_matches(['[', ']']).parse())
        .ok()
        .or_else(|| req.peer_addr().map(|addr| addr.ip()))
}

/// A `T` or a `web::Data<T>` from the request's `app_data`.
fn app_data<T: 'static>(req: &HttpRequest) -> Option<&T> {
    req.app_data::<T>()
        .or_else(|| req.app_data::<web::Data<T>>().map(|data| data.as_ref()))
}

/// The 101 response and the started connection's address, or the 503 / 429
/// of a full server or address.
fn respond<L: 'static>(
    req: &HttpRequest,
    payload: impl futures::Stream<Item = Result<bytes::Bytes, actix_web::error::PayloadError>>
        + Unpin
        + 'static,
    chosen: Option<&str>,
    supported: &[String],
    config: Config,
    driver: Box<dyn Driver<L>>,
) -> Result<(HttpResponse, Address<L>), UpgradeError> {
    let admission = admission(req, &config)?;
    let offered = requested_protocols(req);
    // S11: never answer with a protocol the client did not offer.
    let protocol = match chosen {
        Some(chosen) => offered.iter().find(|p| *p == chosen),
        None => offered.iter().find(|p| supported.contains(p)),
    };
    let key = req
        .headers()
        .get(header::SEC_WEBSOCKET_KEY)
        .map(|key| key.as_bytes())
        .unwrap_or_default();
    let accept = actix_http::ws::hash_key(key);
    let mut response = HttpResponse::build(StatusCode::SWITCHING_PROTOCOLS);
    response
        .upgrade("websocket")
        .insert_header((header::SEC_WEBSOCKET_ACCEPT, &accept[..]));
    if let Some(protocol) = protocol {
        response.insert_header((header::SEC_WEBSOCKET_PROTOCOL, protocol.as_str()));
    }
    let deflate = config.compression.as_ref().and_then(|policy| {
        let offers = req
            .headers()
            .get_all(header::SEC_WEBSOCKET_EXTENSIONS)
            .filter_map(|value| value.to_str().ok());
        deflate::negotiate(offers, policy)
    });
    if let Some(agreed) = &deflate {
        response.insert_header((header::SEC_WEBSOCKET_EXTENSIONS, agreed.response()));
    }
    log::debug!(
        "ws upgrade from {:?} protocol {:?} deflate {:?}",
        req.peer_addr(),
        protocol,
        deflate
    );
    // On `WsServer`, the connection takes the socket once the 101 is out.
    let line = req.extensions().get::<Handoff>().and_then(Handoff::open);
    let (edge, socket, body) = match line {
        Some(line) => {
            let reader = LineReader::new(Rc::clone(&line));
            connection::start(driver, config, admission, deflate, reader, Some(line))
        }
        None => connection::start(driver, config, admission, deflate, payload, None),
    };
    let response = match body {
        Some(body) => response.streaming(body),
        None => response.finish(),
    };
    Ok((response, Address::new(&edge, socket)))
}

/// Extractor for a WebSocket upgrade: Ring's `{::ws/listener L}` response
/// as a builder.
///
/// Extraction fails with an [`UpgradeError`] (a 4xx with a clear body) for
/// requests that are not valid WebSocket upgrades; take
/// `Option<WebSocketUpgrade>` to serve both kinds from one handler. The
/// [`Config`] comes from `app_data` (a `Config` or `web::Data<Config>`) or is
/// the default; [`WebSocketUpgrade::configure`] adjusts it for one route and
/// keeps the rest of the app's settings.
///
/// The app's `allowed_origins` (S13) is checked when the extractor runs, so
/// it holds on every route: a route may restrict origins further, never
/// admit one the app refuses.
///
/// ```no_run
/// use actix_web::{web, App, HttpResponse, HttpServer, Responder};
/// use actix_ws_listener::{Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Echo;
///
/// impl Listener for Echo {
///     fn on_message(&mut self, socket: &Socket, message: Message) {
///         if let Err(error) = socket.send(message) {
///             log::debug!("ws {}: echo not sent: {error}", socket.id());
///         }
///     }
/// }
///
/// async fn ws(upgrade: Option<WebSocketUpgrade>) -> HttpResponse {
///     match upgrade {
///         Some(upgrade) => upgrade.protocols(["echo.v1"]).listen(Echo).into_response(),
///         None => HttpResponse::Ok().body("connect with a WebSocket client"),
///     }
/// }
/// ```
pub struct WebSocketUpgrade {
    req: HttpRequest,
    payload: Payload,
    protocol: Option<String>,
    supported: Vec<String>,
    config: Config,
    /// `config` changed after extraction: the handshake and origin are checked again.
    config_changed: bool,
}

impl WebSocketUpgrade {
    /// Answers with this subprotocol (Ring's `::ws/protocol`) if the client
    /// offered it; otherwise no protocol is sent.
    #[must_use]
    pub fn protocol(mut self, protocol: impl Into<String>) -> Self {
        self.protocol = Some(protocol.into());
        self
    }

    /// The subprotocols the server supports: the first protocol in the
    /// client's offer that is in this list is chosen. Default: none, so no
    /// protocol is sent. [`WebSocketUpgrade::protocol`] takes precedence.
    #[must_use]
    pub fn protocols<I, S>(mut self, protocols: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.supported = protocols.into_iter().map(Into::into).collect();
        self
    }

    /// The subprotocols the client offered, in its order.
    pub fn requested_protocols(&self) -> Vec<String> {
        requested_protocols(&self.req)
    }

    /// The request being upgraded.
    pub fn request(&self) -> &HttpRequest {
        &self.req
    }

    /// The settings this upgrade's connection will start with: the app's
    /// (from `app_data`, a `Config` or `web::Data<Config>`, else
    /// [`Config::default`]), as changed by [`WebSocketUpgrade::configure`].
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Adjusts this route's settings, starting from the current ones (the
    /// app's, until changed here), so what the app set and `f` leaves alone
    /// (`allowed_origins`, compression, timeouts) still applies. The one way
    /// to set a route's config, as in axum: a route starts from the app's
    /// settings and changes what it names, so a setting added to the app
    /// later is never silently dropped by a route that replaced the whole
    /// config.
    ///
    /// ```no_run
    /// use actix_web::Responder;
    /// use actix_ws_listener::{listener, WebSocketUpgrade};
    ///
    /// async fn chat(upgrade: WebSocketUpgrade) -> impl Responder {
    ///     upgrade
    ///         .configure(|config| config.max_message_size(16 * 1024))
    ///         .listen(listener())
    /// }
    /// ```
    ///
    /// The app's `allowed_origins` was checked at extraction; if the result
    /// restricts origins further and refuses this request's,
    /// [`WebSocketUpgrade::listen`] answers 403 and no connection starts.
    #[must_use]
    pub fn configure(mut self, f: impl FnOnce(Config) -> Config) -> Self {
        self.config = f(self.config);
        self.config_changed = true;
        self
    }

    /// Starts the connection with `listener`, a [`Listener`](crate::Listener)
    /// or an [`AsyncListener`](crate::AsyncListener), and returns the 101
    /// response with the listener's [`Address`] ([`Listening`]).
    ///
    /// If the settings were changed after extraction and now refuse the
    /// request's origin (S13), the response is a 403 instead, no connection
    /// starts and there is no address.
    pub fn listen<L, K>(self, listener: L) -> Listening<L>
    where
        L: Listen<K>,
    {
        let (response, address) = self.start(listener.into_driver());
        Listening::new(response, address)
    }

    fn start<L: 'static>(self, driver: Box<dyn Driver<L>>) -> (HttpResponse, Option<Address<L>>) {
        if self.config_changed {
            if let Err(error) = verify(&self.req, &self.config) {
                return (error.error_response(), None);
            }
        }
        match respond(
            &self.req,
            self.payload,
            self.protocol.as_deref(),
            &self.supported,
            self.config,
            driver,
        ) {
            Ok((response, address)) => (response, Some(address)),
            Err(error) => (error.error_response(), None),
        }
    }
}

impl fmt::Debug for WebSocketUpgrade {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebSocketUpgrade")
            .field("path", &self.req.path())
            .field("protocol", &self.protocol)
            .field("supported", &self.supported)
            .field("config", &self.config)
            .finish()
    }
}

impl WebSocketUpgrade {
    /// The upgrade of `req`, for a handler that holds the request and its
    /// payload instead of extracting a `WebSocketUpgrade`: the same builder,
    /// with the app's [`Config`] (from `app_data`) or the default.
    ///
    /// ```no_run
    /// use actix_web::{web, HttpRequest, Responder};
    /// use actix_ws_listener::{listener, UpgradeError, WebSocketUpgrade};
    ///
    /// async fn chat(req: HttpRequest, payload: web::Payload) -> Result<impl Responder, UpgradeError> {
    ///     Ok(WebSocketUpgrade::new(&req, payload)?.protocol("chat.v1").listen(listener()))
    /// }
    /// ```
    ///
    /// # Errors
    /// [`UpgradeError`] (a 4xx response) when `req` is not a valid WebSocket
    /// upgrade or its origin is not allowed.
    pub fn new(req: &HttpRequest, payload: web::Payload) -> Result<Self, UpgradeError> {
        WebSocketUpgrade::of(req, payload.into_inner())
    }

    fn of(req: &HttpRequest, payload: Payload) -> Result<Self, UpgradeError> {
        let config = app_config(req);
        verify(req, &config).map(|()| WebSocketUpgrade {
            req: req.clone(),
            payload,
            protocol: None,
            supported: Vec::new(),
            config,
            config_changed: false,
        })
    }
}

impl FromRequest for WebSocketUpgrade {
    type Error = UpgradeError;
    type Future = Ready<Result<Self, Self::Error>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        std::future::ready(WebSocketUpgrade::of(req, payload.take()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    fn ws_request() -> TestRequest {
        TestRequest::get()
            .insert_header((header::UPGRADE, "websocket"))
            .insert_header((header::CONNECTION, "keep-alive, Upgrade"))
            .insert_header((header::SEC_WEBSOCKET_VERSION, "13"))
            .insert_header((header::SEC_WEBSOCKET_KEY, "dGhlIHNhbXBsZSBub25jZQ=="))
    }

    /// A GET with these `Connection` and `Upgrade` header lines.
    fn request(connection: &[&'static str], upgrade: &[&'static str]) -> HttpRequest {
        let lines = connection.iter().map(|v| (header::CONNECTION, *v));
        let lines = lines.chain(upgrade.iter().map(|v| (header::UPGRADE, *v)));
        lines
            .fold(TestRequest::get(), TestRequest::append_header)
            .to_http_request()
    }

    #[test]
    fn predicates() {
        let req = ws_request().to_http_request();
        assert!(is_websocket_request(&req));
        assert!(is_upgrade_request(&req));
        assert!(!is_websocket_request(&TestRequest::get().to_http_request()));
        assert!(!is_upgrade_request(&TestRequest::get().to_http_request()));
    }

    #[test]
    fn an_upgrade_request_is_connection_upgrade_plus_upgrade_websocket() {
        let cases: [(&[&str], &[&str], bool); 8] = [
            (&["Upgrade"], &["websocket"], true),
            (&["keep-alive, UPGRADE"], &["WebSocket"], true),
            // Tokens may be spread over repeated headers.
            (&["keep-alive", "upgrade"], &["foo/2, websocket"], true),
            // HTTP/2 cleartext is an upgrade, but not to a WebSocket.
            (&["Upgrade, HTTP2-Settings"], &["h2c"], false),
            (&[], &["websocket"], false),
            (&["upgrade"], &[], false),
            // A token, not a substring.
            (&["upgraded"], &["websocket"], false),
            (&["upgrade"], &["websockets"], false),
        ];
        for (connection, upgrade, expected) in cases {
            let req = request(connection, upgrade);
            assert_eq!(
                is_upgrade_request(&req),
                expected,
                "{connection:?} {upgrade:?}"
            );
        }
    }

    #[test]
    fn a_websocket_request_only_needs_upgrade_websocket() {
        assert!(is_websocket_request(&request(&[], &["WebSocket"])));
        assert!(!is_websocket_request(&request(&["upgrade"], &["h2c"])));
    }

    #[test]
    fn protocols_keep_the_client_order() {
        let req = ws_request()
            .insert_header((header::SEC_WEBSOCKET_PROTOCOL, "b, a ,c"))
            .to_http_request();
        assert_eq!(requested_protocols(&req), ["b", "a", "c"]);
    }

    #[test]
    fn bad_handshakes_get_4xx() {
        let config = Config::default();
        assert_eq!(verify(&ws_request().to_http_request(), &config), Ok(()));
        let plain = TestRequest::get().to_http_request();
        assert_eq!(verify(&plain, &config), Err(UpgradeError::NotWebSocket));
        let old = ws_request()
            .insert_header((header::SEC_WEBSOCKET_VERSION, "8"))
            .to_http_request();
        assert_eq!(verify(&old, &config), Err(UpgradeError::UnsupportedVersion));
        let bad_key = ws_request()
            .insert_header((header::SEC_WEBSOCKET_KEY, "short"))
            .to_http_request();
        assert_eq!(verify(&bad_key, &config), Err(UpgradeError::BadKey));
        for error in [UpgradeError::NotWebSocket, UpgradeError::OriginNotAllowed] {
            assert!(error.error_response().status().is_client_error());
        }
    }

    #[test]
    fn s13_origins_are_matched_exactly() {
        let config = Config::default().allowed_origins(["https://good.example"]);
        let good = ws_request()
            .insert_header((header::ORIGIN, "https://good.example"))
            .to_http_request();
        let evil = ws_request()
            .insert_header((header::ORIGIN, "https://good.example.evil"))
            .to_http_request();
        assert_eq!(verify(&good, &config), Ok(()));
        assert_eq!(verify(&evil, &config), Err(UpgradeError::OriginNotAllowed));
        assert_eq!(
            verify(&ws_request().to_http_request(), &config),
            Err(UpgradeError::OriginNotAllowed)
        );
    }
}
