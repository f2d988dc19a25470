//! Per-connection limits, timeouts and policies, with their defaults.
//!
//! This module owns [`Config`]. It holds plain data only (no live handles:
//! a registry reaches a connection through the upgrade, not through here);
//! the connection reads it when it starts and never changes it. It depends
//! on nothing above it.

use std::time::Duration;

use crate::deflate::Compression;

/// What a connection does when a send would push its outbound buffer past
/// [`Config::max_outbound_buffer`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum BackpressurePolicy {
    /// The send fails with [`SendError::Backpressure`](crate::SendError::Backpressure)
    /// (`send` returns it, `send_async` calls `fail`); the connection stays open.
    #[default]
    Reject,
    /// The send fails as with `Reject`, and the connection is closed with
    /// 1008 (policy violation): `on_error(Error::Backpressure)` then `on_close`.
    Close,
}

/// Where the address that [`Config::max_connections_per_ip`] counts comes
/// from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum ClientAddress {
    /// The TCP peer's address (`HttpRequest::peer_addr`). The default: it is
    /// the only address a client cannot choose. Behind a reverse proxy it
    /// is the proxy's, so every client shares one count.
    #[default]
    Peer,
    /// The client address a proxy wrote into `Forwarded` or
    /// `X-Forwarded-For` (actix-web's `ConnectionInfo::realip_remote_addr`),
    /// falling back to the peer's. Use it only behind a proxy you trust
    /// that overwrites those headers: any client can send them, and a
    /// client that writes a new address into each request would get a new
    /// count for each connection.
    Forwarded,
}

/// Settings for the connections of one upgrade route.
///
/// A plain struct with [`Default`]; every setting states its default and why.
/// Set it for the whole app (or a scope, or a resource) with
/// `app_data(config)`, which the extractor picks up, and adjust it for one
/// handler with
/// [`WebSocketUpgrade::configure`](crate::WebSocketUpgrade::configure),
/// which starts from those settings and keeps what it does not change.
///
/// ```
/// use std::time::Duration;
/// use actix_ws_listener::Config;
///
/// let config = Config::default()
///     .max_message_size(1024 * 1024)
///     .keepalive(Duration::from_secs(20))
///     .idle_timeout(Duration::from_secs(60));
/// assert_eq!(config.max_text_message_size, 1024 * 1024);
/// assert_eq!(config.max_binary_message_size, 1024 * 1024);
/// ```
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct Config {
    /// Largest accepted frame payload, in bytes, inclusive. Default 16 MiB
    /// (tungstenite's default; Autobahn 9.x sends 16 MiB frames).
    ///
    /// Checked when the frame header arrives, before any payload is buffered;
    /// a larger frame closes the connection with 1009.
    pub max_frame_size: usize,
    /// Largest accepted text message, in bytes, inclusive, summed over its
    /// fragments (after inflation, with permessage-deflate). Default 64 MiB
    /// (tungstenite's and axum's default). Ring's Jetty adapter calls it
    /// `:ws-max-text-size`.
    ///
    /// Checked at each frame header against the running total; past it the
    /// connection closes with 1009 and the reason says the sizes
    /// (`"Text message too large: 70000 > 65536"`).
    pub max_text_message_size: usize,
    /// Largest accepted binary message, in bytes, inclusive, as
    /// [`Config::max_text_message_size`] is for text. Default 64 MiB.
    /// Ring's Jetty adapter calls it `:ws-max-binary-size`.
    pub max_binary_message_size: usize,
    /// Largest number of bytes queued for one connection and not yet handed
    /// to its HTTP writer. Default 16 MiB: memory per connection stays
    /// bounded when a client stops reading.
    ///
    /// Past it, sends fail with a backpressure error (see [`BackpressurePolicy`]).
    /// When nothing is queued, one frame of any size is accepted, so a
    /// message larger than the limit can still be sent (Autobahn 9.x echoes
    /// 16 MiB messages); the bound is then the limit plus one message.
    ///
    /// The count covers the whole way to the writer: frames in the
    /// connection's buffer, and socket commands still waiting in its
    /// mailbox, each charged its frame plus 64 bytes for the mailbox entry.
    /// This byte count is what bounds a stalled connection's mailbox: even
    /// empty pings stop being accepted once the limit is reached.
    ///
    /// A listener that only answers what it receives does not reach this
    /// limit: the connection stops reading at [`Config::high_water_mark`]
    /// (S15). Sends from other actors, broadcasts and timers can.
    pub max_outbound_buffer: usize,
    /// While more than this many bytes are queued for the client, the
    /// connection reads nothing more from it (S15). Default 1 MiB.
    ///
    /// This is how a client that sends faster than it reads is held back:
    /// its frames wait in TCP, on its side, instead of its echoes piling up
    /// here. A listener that only answers what it receives therefore never
    /// meets [`Config::max_outbound_buffer`]; sends from other actors and
    /// threads still can. 1 MiB keeps a fast client's pipe full (a dozen
    /// 64 KiB messages in flight) while a stalled one costs about that much,
    /// a sixteenth of the hard cap. Reading resumes once the queue is down
    /// to [`Config::low_water_mark`].
    ///
    /// Control frames, timers, keepalive pings, the close handshake and
    /// shutdown keep working while reading is paused. While the connection
    /// closes (after its close frame is sent) it reads regardless, to see
    /// the peer's close frame.
    pub high_water_mark: usize,
    /// Reading resumes when the bytes queued for the client drop to this.
    /// Default 256 KiB: far enough below [`Config::high_water_mark`] that a
    /// connection does not flap between paused and reading on every frame.
    pub low_water_mark: usize,
    /// Typed messages (from [`Address`](crate::Address) or a `Recipient`)
    /// and timer runs that arrive while an [`AsyncListener`](crate::AsyncListener)
    /// handler is pending wait in a queue of at most this many, to run in
    /// arrival order once it finishes. Default 1,024. Past it they are
    /// refused: dropped with a warning in the log, and a sender's `send`
    /// resolves to `MailboxError::Closed`. Plain [`Listener`](crate::Listener)s
    /// never queue: they handle each message as it arrives.
    pub max_queued_messages: usize,
    /// What to do when the outbound buffer is full. Default
    /// [`BackpressurePolicy::Reject`]: the sender decides.
    pub backpressure: BackpressurePolicy,
    /// How long the server waits for the peer's close frame after sending
    /// its own, before it ends the TCP connection. Default 5 s.
    ///
    /// Once a connection ends, actix-web itself may keep the socket open up
    /// to `HttpServer::client_disconnect_timeout` (1 s by default) waiting
    /// for the client to close first; set that to `Duration::ZERO` to close
    /// TCP as soon as the close handshake is done. Measured with the Python
    /// `websockets` client, which waits for the server to end TCP as RFC
    /// 6455 asks: its `close()` takes 1 s on the default, under a
    /// millisecond on `ZERO`. The cost of `ZERO`: a client still sending
    /// when the server fails the connection (a message too large, the
    /// inbound budget) may get a TCP reset, which throws away the close
    /// frame with its code. [`WsServer`](crate::WsServer) has neither
    /// problem: it ends its side of TCP at once and reads on for up to 1 s
    /// until the client closes.
    pub close_timeout: Duration,
    /// Period of server pings. Default off, like Ring, where keepalive is an
    /// opt-in middleware (which pings every 20 s).
    pub keepalive: Option<Duration>,
    /// Close a connection from which nothing (not even a pong) arrived for
    /// this long, with 1001, after `on_error(Error::Timeout)`. Default off.
    pub idle_timeout: Option<Duration>,
    /// Origins allowed to upgrade (exact match of the `Origin` header, e.g.
    /// `https://example.com`). Default `None`: any origin. When set, an
    /// upgrade from another origin, or without one, gets 403 before any
    /// connection starts.
    pub allowed_origins: Option<Vec<String>>,
    /// permessage-deflate (RFC 7692). Default `None`: off.
    ///
    /// Browsers offer it on every connection, but neither way of running it
    /// is free. Measured with `cargo bench --bench deflate` (1 KiB JSON-like
    /// text, 2,000 connections for memory; BENCHMARKS.md has the table):
    ///
    /// | | per idle connection | after one message each way | server CPU per message | bytes on the wire |
    /// |---|---|---|---|---|
    /// | off | 13.5 KiB | 17.6 KiB | 1× | 1× |
    /// | context takeover ([`Compression::default`]) | 13.8 KiB | 351 KiB | 1.2–1.4× | 0.10× |
    /// | no context takeover (both ways) | 13.8 KiB | 16.2 KiB | 1.8× | 0.29× |
    ///
    /// The zlib streams are created on first use; with context takeover they
    /// stay for the connection's life (a 256 KiB compressor and a 32 KiB
    /// decompressor window), without it they are freed after each message.
    /// Turn it on where bandwidth costs more than that. See [`Compression`]
    /// for the policy.
    pub compression: Option<Compression>,
    /// Messages per second one connection may have handed to its listener
    /// (S19). Default `None`: off.
    ///
    /// Over the rate the connection is paced, not dropped: it stops reading
    /// until the next message is due, so TCP holds the client back and
    /// every message it sent is delivered, in order (control frames behind a
    /// waiting message are read and answered once it is delivered; timers,
    /// keepalive and the close handshake keep working). Up to [`Config::message_burst`] messages pass at
    /// once after a quiet spell. Each message runs the listener (a database
    /// write, say); this is how one client is kept from running it as often
    /// as it likes.
    pub max_messages_per_second: Option<u32>,
    /// Messages a connection may send at once, beyond the rate, after a
    /// quiet spell. Default 1 (with the rate off it does nothing).
    pub message_burst: u32,
    /// Connections the server may have open at once, over every route
    /// (S19). Default `None`: no cap (the descriptor limit is the cap).
    ///
    /// Checked before the upgrade: past it the request gets **503 Service
    /// Unavailable** with `Retry-After: 5` and no connection starts. A
    /// connection that ends frees its place at once.
    pub max_connections: Option<usize>,
    /// Connections one client address may have open at once (S19). Default
    /// `None`: no cap.
    ///
    /// Checked before the upgrade: past it the request gets **429 Too Many
    /// Requests** with `Retry-After: 5` and no connection starts. Every
    /// connection of the process counts, whatever its route; the address is
    /// the TCP peer's unless [`Config::client_address`] says otherwise.
    pub max_connections_per_ip: Option<usize>,
    /// Which address [`Config::max_connections_per_ip`] counts. Default
    /// [`ClientAddress::Peer`], the TCP peer's: headers can be forged by any
    /// client; trust them only behind your own proxy.
    pub client_address: ClientAddress,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            max_frame_size: 16 << 20,
            max_text_message_size: 64 << 20,
            max_binary_message_size: 64 << 20,
            max_outbound_buffer: 16 << 20,
            high_water_mark: 1 << 20,
            max_queued_messages: 1024,
            low_water_mark: 256 << 10,
            backpressure: BackpressurePolicy::Reject,
            close_timeout: Duration::from_secs(5),
            keepalive: None,
            idle_timeout: None,
            allowed_origins: None,
            compression: None,
            max_messages_per_second: None,
            message_burst: 1,
            max_connections: None,
            max_connections_per_ip: None,
            client_address: ClientAddress::Peer,
        }
    }
}

impl Config {
    /// Sets [`Config::max_frame_size`].
    #[must_use]
    pub fn max_frame_size(mut self, bytes: usize) -> Self {
        self.max_frame_size = bytes;
        self
    }

    /// Sets both [`Config::max_text_message_size`] and
    /// [`Config::max_binary_message_size`].
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_text_message_size = bytes;
        self.max_binary_message_size = bytes;
        self
    }

    /// Sets [`Config::max_text_message_size`].
    #[must_use]
    pub fn max_text_message_size(mut self, bytes: usize) -> Self {
        self.max_text_message_size = bytes;
        self
    }

    /// Sets [`Config::max_binary_message_size`].
    #[must_use]
    pub fn max_binary_message_size(mut self, bytes: usize) -> Self {
        self.max_binary_message_size = bytes;
        self
    }

    /// Sets [`Config::high_water_mark`] and [`Config::low_water_mark`]; a
    /// `low` above `high` is taken as `high`.
    #[must_use]
    pub fn water_marks(mut self, high: usize, low: usize) -> Self {
        self.high_water_mark = high;
        self.low_water_mark = low.min(high);
        self
    }

    /// Sets [`Config::max_outbound_buffer`].
    #[must_use]
    pub fn max_outbound_buffer(mut self, bytes: usize) -> Self {
        self.max_outbound_buffer = bytes;
        self
    }

    /// Sets [`Config::max_queued_messages`].
    #[must_use]
    pub fn max_queued_messages(mut self, messages: usize) -> Self {
        self.max_queued_messages = messages;
        self
    }

    /// Sets [`Config::backpressure`].
    #[must_use]
    pub fn backpressure(mut self, policy: BackpressurePolicy) -> Self {
        self.backpressure = policy;
        self
    }

    /// Sets [`Config::close_timeout`].
    #[must_use]
    pub fn close_timeout(mut self, timeout: Duration) -> Self {
        self.close_timeout = timeout;
        self
    }

    /// Pings every connection every `period` ([`Config::keepalive`]).
    #[must_use]
    pub fn keepalive(mut self, period: Duration) -> Self {
        self.keepalive = Some(period);
        self
    }

    /// Closes connections silent for `timeout` ([`Config::idle_timeout`]).
    #[must_use]
    pub fn idle_timeout(mut self, timeout: Duration) -> Self {
        self.idle_timeout = Some(timeout);
        self
    }

    /// Offers permessage-deflate with this policy ([`Config::compression`]).
    #[must_use]
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = Some(compression);
        self
    }

    /// Paces each connection to `per_second` messages a second, with bursts
    /// of `burst` ([`Config::max_messages_per_second`],
    /// [`Config::message_burst`]).
    ///
    /// ```
    /// let config = actix_ws_listener::Config::default().max_messages_per_second(200, 20);
    /// assert_eq!(config.max_messages_per_second, Some(200));
    /// ```
    #[must_use]
    pub fn max_messages_per_second(mut self, per_second: u32, burst: u32) -> Self {
        self.max_messages_per_second = Some(per_second);
        self.message_burst = burst;
        self
    }

    /// Caps the connections open at once ([`Config::max_connections`]).
    #[must_use]
    pub fn max_connections(mut self, connections: usize) -> Self {
        self.max_connections = Some(connections);
        self
    }

    /// Caps the connections one address may have open
    /// ([`Config::max_connections_per_ip`]).
    #[must_use]
    pub fn max_connections_per_ip(mut self, connections: usize) -> Self {
        self.max_connections_per_ip = Some(connections);
        self
    }

    /// Sets [`Config::client_address`].
    #[must_use]
    pub fn client_address(mut self, source: ClientAddress) -> Self {
        self.client_address = source;
        self
    }

    /// Restricts upgrades to these exact origins ([`Config::allowed_origins`]).
    #[must_use]
    pub fn allowed_origins<I, S>(mut self, origins: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        self.allowed_origins = Some(origins.into_iter().map(Into::into).collect());
        self
    }
}
