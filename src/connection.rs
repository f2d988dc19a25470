//! The connection actor: one per upgraded WebSocket connection.
//!
//! Inbound, it turns request-payload bytes into listener events: frame
//! header (limits checked before any payload is buffered, S8) → unmasking →
//! UTF-8 validated as it streams in (S2) → continuation assembly → callback.
//! Outbound, it applies socket commands from its mailbox to the
//! [`Outbound`] buffer that the response body drains. It owns the lifecycle
//! (S1), the close handshake (S4), errors (S7), panic isolation (S10) and the
//! keepalive timers (S12). It is the only module that knows actix's actor
//! and payload types; listeners and sockets never see them.

use std::{
    any::Any,
    cell::RefCell,
    panic::{catch_unwind, AssertUnwindSafe},
    rc::Rc,
    sync::atomic::Ordering,
    time::{Duration, Instant},
};

use actix::{Actor, ActorContext, AsyncContext, Context, Handler, SpawnHandle, StreamHandler};
use actix_web::error::PayloadError;
use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;
use futures::Stream;

use crate::{
    deflate::{Agreed, InflateError, Inflater},
    frame::{self, Header, OpCode},
    outbound::{BodyStream, Outbound},
    registry::Connections,
    socket::{enter_callback, Command, Envelope, COMMAND_OVERHEAD},
    utf8::Utf8Validator,
    CloseCode, Config, Error, Listener, Message, Socket,
};

/// Starts the actor for one upgraded connection and returns the body of its
/// 101 response.
pub(crate) fn start<L, S>(
    listener: L,
    config: Config,
    deflate: Option<Agreed>,
    payload: S,
) -> BodyStream
where
    L: Listener,
    S: Stream<Item = Result<Bytes, PayloadError>> + 'static,
{
    let mut ctx = Context::<Connection<L>>::new();
    let socket = Socket::new(
        ctx.address().recipient(),
        config.max_outbound_buffer,
        config.backpressure,
    );
    let out = Rc::new(RefCell::new(Outbound::new(socket.clone(), deflate.clone())));
    let body = BodyStream(Rc::clone(&out));
    ctx.add_stream(payload);
    let connection = Connection {
        listener: Box::new(listener),
        socket,
        out,
        config,
        read_buf: BytesMut::new(),
        frame: None,
        message: None,
        utf8: Utf8Validator::default(),
        deflate,
        inflater: None,
        close_timer: None,
        last_seen: Instant::now(),
        failing: false,
        done: false,
    };
    ctx.run(connection);
    body
}

/// Most a frame header alone makes the connection allocate for its payload.
const EAGER_RESERVE: usize = 256 * 1024;

/// The frame being read: its header and how much of its payload is unmasked.
struct InFrame {
    header: Header,
    unmasked: usize,
    /// The payload went through the streaming UTF-8 validator.
    streamed: bool,
}

/// A fragmented message being assembled.
struct Partial {
    text: bool,
    /// permessage-deflate: `inflated` holds the message, `buf` is unused.
    compressed: bool,
    buf: BytesMut,
    inflated: Vec<u8>,
}

impl Partial {
    fn len(&self) -> usize {
        self.buf.len() + self.inflated.len()
    }
}

struct Connection<L: Listener> {
    // Boxed: actors must be Unpin, listeners need not be.
    listener: Box<L>,
    socket: Socket,
    out: Rc<RefCell<Outbound>>,
    config: Config,
    read_buf: BytesMut,
    frame: Option<InFrame>,
    // Boxed, like the decompressor: most connections never need them, and
    // every byte here is paid by every idle connection.
    message: Option<Box<Partial>>,
    utf8: Utf8Validator,
    /// permessage-deflate parameters, when negotiated, and the decompressor
    /// (created on the first compressed message).
    deflate: Option<Agreed>,
    inflater: Option<Box<Inflater>>,
    close_timer: Option<SpawnHandle>,
    last_seen: Instant,
    failing: bool,
    /// `on_close` has run: nothing else runs after this.
    done: bool,
}

impl<L: Listener> Actor for Connection<L> {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Context<Self>) {
        log::debug!("ws {}: open", self.socket.id());
        Connections::global().insert(&self.socket);
        if let Some(connections) = &self.config.connections {
            connections.insert(&self.socket);
        }
        if let Some(period) = self.config.keepalive {
            ctx.run_interval(period, |act, _| {
                if !act.is_closing() {
                    let _ = act.socket.ping();
                }
            });
        }
        if let Some(timeout) = self.config.idle_timeout {
            let check = (timeout / 4).max(Duration::from_millis(10));
            ctx.run_interval(check, move |act, ctx| {
                if act.last_seen.elapsed() >= timeout {
                    act.fail(ctx, Error::Timeout);
                }
            });
        }
        self.call(ctx, |listener, socket| listener.on_open(socket));
    }

    fn stopped(&mut self, _: &mut Context<Self>) {
        // Stopped from outside (arbiter shutdown): the listener still gets
        // its on_close.
        if !self.done {
            self.run_on_close(CloseCode::GOING_AWAY, "server shutting down");
        }
        self.out.borrow_mut().finish();
        log::debug!("ws {}: stopped", self.socket.id());
    }
}

impl<L: Listener> Drop for Connection<L> {
    fn drop(&mut self) {
        // The runtime dropped the actor without stopping it (a forced
        // server shutdown): on_close still runs, once (S1).
        if !self.done {
            self.run_on_close(CloseCode::ABNORMAL, "");
        }
    }
}

impl<L: Listener> Handler<Envelope> for Connection<L> {
    type Result = ();

    fn handle(&mut self, Envelope(command): Envelope, ctx: &mut Context<Self>) {
        if let Command::Fail(error) = command {
            return self.fail(ctx, error);
        }
        let shared = self.socket.shared();
        shared.release(COMMAND_OVERHEAD);
        self.out.borrow_mut().apply(command);
        shared.in_mailbox.fetch_sub(1, Ordering::AcqRel);
        self.after_event(ctx);
    }
}

impl<L: Listener> StreamHandler<Result<Bytes, PayloadError>> for Connection<L> {
    fn handle(&mut self, item: Result<Bytes, PayloadError>, ctx: &mut Context<Self>) {
        match item {
            Ok(chunk) => {
                self.last_seen = Instant::now();
                self.read(&chunk, ctx);
            }
            Err(error) => {
                log::debug!("ws {}: read error: {error}", self.socket.id());
                self.end_of_input(ctx);
            }
        }
    }

    fn finished(&mut self, ctx: &mut Context<Self>) {
        self.end_of_input(ctx);
    }
}

impl<L: Listener> Connection<L> {
    fn is_closing(&self) -> bool {
        self.out.borrow().close_sent().is_some()
    }

    /// Runs a listener callback with panics contained (S10). Socket
    /// operations it makes on its own socket go straight to the buffer.
    fn call(&mut self, ctx: &mut Context<Self>, f: impl FnOnce(&mut L, &Socket)) {
        if self.done {
            return;
        }
        let result = {
            let _scope = enter_callback(self.socket.id(), Rc::clone(&self.out));
            let (listener, socket) = (&mut self.listener, &self.socket);
            catch_unwind(AssertUnwindSafe(|| f(listener, socket)))
        };
        match result {
            Ok(()) => self.after_event(ctx),
            Err(panic) => {
                let message = panic_message(&*panic);
                log::error!("ws {}: listener panicked: {message}", self.socket.id());
                self.fail(ctx, Error::ListenerPanic(message));
            }
        }
    }

    /// Reacts to what a callback or command did: a close frame sent starts
    /// the wait for the peer's, bounded by `close_timeout` (S4).
    fn after_event(&mut self, ctx: &mut Context<Self>) {
        if self.done || self.close_timer.is_some() {
            return;
        }
        if self.is_closing() {
            log::debug!(
                "ws {}: close sent, waiting for the peer's",
                self.socket.id()
            );
            let handle = ctx.run_later(self.config.close_timeout, |act, ctx| {
                log::debug!("ws {}: close timeout", act.socket.id());
                let (code, reason) = act.sent_close();
                act.finish(ctx, code, &reason);
            });
            self.close_timer = Some(handle);
        }
    }

    fn sent_close(&self) -> (CloseCode, String) {
        self.out
            .borrow()
            .close_sent()
            .cloned()
            .unwrap_or((CloseCode::ABNORMAL, String::new()))
    }

    /// Fails the connection (S7): close frame with the error's code,
    /// `on_error`, then `on_close`, then the TCP connection ends.
    fn fail(&mut self, ctx: &mut Context<Self>, error: Error) {
        if self.done || self.failing {
            return;
        }
        self.failing = true;
        log::debug!("ws {}: failing: {error}", self.socket.id());
        self.out
            .borrow_mut()
            .close(error.close_code(), error.close_reason());
        self.call(ctx, |listener, socket| listener.on_error(socket, &error));
        let (code, reason) = self.sent_close();
        self.finish(ctx, code, &reason);
    }

    /// Runs `on_close` once and ends the connection once the buffered
    /// frames are written.
    fn finish(&mut self, ctx: &mut Context<Self>, code: CloseCode, reason: &str) {
        if self.done {
            return;
        }
        self.run_on_close(code, reason);
        self.out.borrow_mut().finish();
        // A peer that does not read would keep the connection (and what is
        // buffered for it) forever: give it close_timeout, then cut it off.
        // Weak: once the writer has drained the buffer and dropped the body,
        // the buffer must not live on until the timer fires.
        let out = Rc::downgrade(&self.out);
        let timeout = self.config.close_timeout;
        actix_rt::spawn(async move {
            actix_rt::time::sleep(timeout).await;
            if let Some(out) = out.upgrade() {
                out.borrow_mut().abort();
            }
        });
        self.read_buf = BytesMut::new();
        self.frame = None;
        self.message = None;
        ctx.stop();
    }

    fn run_on_close(&mut self, code: CloseCode, reason: &str) {
        self.done = true;
        self.socket.shared().mark_closed();
        Connections::global().remove(&self.socket);
        if let Some(connections) = &self.config.connections {
            connections.remove(&self.socket);
        }
        log::debug!("ws {}: closed with {code} {reason:?}", self.socket.id());
        let _scope = enter_callback(self.socket.id(), Rc::clone(&self.out));
        let (listener, socket) = (&mut self.listener, &self.socket);
        if let Err(panic) =
            catch_unwind(AssertUnwindSafe(|| listener.on_close(socket, code, reason)))
        {
            log::error!(
                "ws {}: on_close panicked: {}",
                self.socket.id(),
                panic_message(&*panic)
            );
        }
    }

    /// The request payload ended: the TCP connection is gone (or half
    /// closed). Without a close handshake that is 1006 (S1).
    fn end_of_input(&mut self, ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        let (code, reason) = if self.is_closing() {
            self.sent_close()
        } else {
            (CloseCode::ABNORMAL, String::new())
        };
        self.finish(ctx, code, &reason);
    }

    /// Consumes inbound bytes frame by frame, as far as they go.
    fn read(&mut self, chunk: &[u8], ctx: &mut Context<Self>) {
        if self.done {
            return;
        }
        self.read_buf.extend_from_slice(chunk);
        loop {
            if self.done {
                return;
            }
            if self.frame.is_none() {
                let rsv1_allowed = self.deflate.is_some();
                match frame::parse_header(&self.read_buf, self.config.max_frame_size, rsv1_allowed)
                {
                    Err(error) => return self.fail(ctx, error),
                    Ok(None) => return,
                    Ok(Some((header, header_len))) => {
                        if let Err(error) = self.check_header(&header) {
                            return self.fail(ctx, error);
                        }
                        self.read_buf.advance(header_len);
                        // Room for the whole payload now, rather than doubling
                        // (and copying) as it streams in; capped so that a
                        // declared size alone cannot make us allocate much.
                        let missing = header.len.saturating_sub(self.read_buf.len());
                        self.read_buf.reserve(missing.min(EAGER_RESERVE));
                        self.frame = Some(InFrame {
                            header,
                            unmasked: 0,
                            streamed: false,
                        });
                    }
                }
            }
            let Some(frame) = self.frame.as_mut() else {
                return;
            };
            let len = frame.header.len;
            let available = self.read_buf.len().min(len);
            if available > frame.unmasked {
                let start = frame.unmasked;
                frame::apply_mask(
                    &mut self.read_buf[start..available],
                    frame.header.mask,
                    start,
                );
                frame.unmasked = available;
                // Compressed payloads are validated after inflation.
                let is_text = match frame.header.opcode {
                    OpCode::Text => !frame.header.rsv1,
                    OpCode::Continuation => self
                        .message
                        .as_ref()
                        .is_some_and(|m| m.text && !m.compressed),
                    _ => false,
                };
                // A whole single-frame text message is validated once, at the
                // end; anything arriving in pieces is validated as it comes.
                let whole = frame.header.opcode == OpCode::Text
                    && frame.header.fin
                    && start == 0
                    && available == len;
                if is_text && !whole {
                    frame.streamed = true;
                    if self.utf8.feed(&self.read_buf[start..available]).is_err() {
                        return self.fail(ctx, Error::InvalidUtf8);
                    }
                }
            }
            if available < len {
                return;
            }
            if let Some(frame) = self.frame.take() {
                let payload = self.read_buf.split_to(len).freeze();
                self.on_frame(frame, payload, ctx);
            }
        }
    }

    /// Message-level rules that a header alone decides (S2, S8).
    fn check_header(&mut self, header: &Header) -> Result<(), Error> {
        let max = self.config.max_message_size;
        match header.opcode {
            OpCode::Text | OpCode::Binary => {
                if self.message.is_some() {
                    return Err(Error::Protocol(
                        "new data frame while a fragmented message is unfinished",
                    ));
                }
                if header.len > max {
                    return Err(Error::MessageTooLarge {
                        size: header.len as u64,
                        max,
                    });
                }
                if header.opcode == OpCode::Text {
                    self.utf8 = Utf8Validator::default();
                }
            }
            OpCode::Continuation if header.rsv1 => {
                return Err(Error::Protocol("RSV1 set on a continuation frame"));
            }
            OpCode::Continuation => match &self.message {
                None => return Err(Error::Protocol("continuation frame without a message")),
                Some(partial) => {
                    let size = partial.len() as u64 + header.len as u64;
                    if size > max as u64 {
                        return Err(Error::MessageTooLarge { size, max });
                    }
                }
            },
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    fn on_frame(&mut self, frame: InFrame, payload: Bytes, ctx: &mut Context<Self>) {
        let header = frame.header;
        log::trace!(
            "ws {}: frame {:?} fin={} len={}",
            self.socket.id(),
            header.opcode,
            header.fin,
            header.len
        );
        match header.opcode {
            OpCode::Text | OpCode::Binary if header.rsv1 => {
                let mut partial = Partial {
                    text: header.opcode == OpCode::Text,
                    compressed: true,
                    buf: BytesMut::new(),
                    inflated: Vec::new(),
                };
                if self.inflate_into(&mut partial, &payload, header.fin, ctx) {
                    if header.fin {
                        self.deliver(partial.text, Bytes::from(partial.inflated), true, ctx);
                    } else {
                        self.message = Some(Box::new(partial));
                    }
                }
            }
            OpCode::Text | OpCode::Binary if header.fin => {
                self.deliver(header.opcode == OpCode::Text, payload, frame.streamed, ctx);
            }
            OpCode::Text | OpCode::Binary => {
                let mut buf = BytesMut::with_capacity(payload.len() * 2);
                buf.extend_from_slice(&payload);
                self.message = Some(Box::new(Partial {
                    text: header.opcode == OpCode::Text,
                    compressed: false,
                    buf,
                    inflated: Vec::new(),
                }));
            }
            OpCode::Continuation => {
                let Some(mut partial) = self.message.take() else {
                    return;
                };
                if partial.compressed {
                    if !self.inflate_into(&mut partial, &payload, header.fin, ctx) {
                        return;
                    }
                } else {
                    partial.buf.extend_from_slice(&payload);
                }
                if !header.fin {
                    self.message = Some(partial);
                } else if partial.compressed {
                    self.deliver(partial.text, Bytes::from(partial.inflated), true, ctx);
                } else {
                    self.deliver(partial.text, partial.buf.freeze(), true, ctx);
                }
            }
            OpCode::Ping => {
                if !self.is_closing() {
                    self.call(ctx, |listener, socket| listener.on_ping(socket, payload));
                }
            }
            OpCode::Pong => {
                if !self.is_closing() {
                    self.call(ctx, |listener, socket| listener.on_pong(socket, payload));
                }
            }
            OpCode::Close => self.on_peer_close(&payload, ctx),
        }
    }

    /// Inflates one frame of a compressed message into `partial`, checking
    /// the decompressed size against `max_message_size` as it grows and
    /// validating text as it comes out. `false` when the connection failed.
    fn inflate_into(
        &mut self,
        partial: &mut Partial,
        payload: &[u8],
        fin: bool,
        ctx: &mut Context<Self>,
    ) -> bool {
        let Some(agreed) = &self.deflate else {
            self.fail(ctx, Error::Protocol("RSV1 set without permessage-deflate"));
            return false;
        };
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(agreed)));
        let max = self.config.max_message_size;
        let before = partial.inflated.len();
        let mut result = inflater.inflate(payload, &mut partial.inflated, max);
        if result.is_ok() && fin {
            result = inflater.finish_message(&mut partial.inflated, max);
        }
        match result {
            Err(InflateError::TooBig) => {
                let size = partial.inflated.len() as u64;
                self.fail(ctx, Error::MessageTooLarge { size, max });
                false
            }
            Err(InflateError::Corrupt) => {
                self.fail(ctx, Error::InvalidCompressedData);
                false
            }
            Ok(()) => {
                if partial.text && self.utf8.feed(&partial.inflated[before..]).is_err() {
                    self.fail(ctx, Error::InvalidUtf8);
                    return false;
                }
                true
            }
        }
    }

    fn deliver(&mut self, text: bool, payload: Bytes, streamed: bool, ctx: &mut Context<Self>) {
        let message = if text {
            if streamed && self.utf8.finish().is_err() {
                return self.fail(ctx, Error::InvalidUtf8);
            }
            match ByteString::try_from(payload) {
                Ok(text) => Message::Text(text),
                Err(_) => return self.fail(ctx, Error::InvalidUtf8),
            }
        } else {
            Message::Binary(payload)
        };
        // After the server's close, messages are read but not delivered (S4).
        if !self.is_closing() {
            self.call(ctx, |listener, socket| listener.on_message(socket, message));
        }
    }

    /// The peer's close frame (S4): answer it (unless this side closed
    /// first), run `on_close`, end the connection.
    fn on_peer_close(&mut self, payload: &[u8], ctx: &mut Context<Self>) {
        let (code, reason) = match parse_close(payload) {
            Ok(close) => close,
            Err(error) => return self.fail(ctx, error),
        };
        if self.is_closing() {
            let (code, reason) = self.sent_close();
            return self.finish(ctx, code, &reason);
        }
        let echo = if code == CloseCode::NO_STATUS {
            CloseCode::NORMAL
        } else {
            code
        };
        self.out.borrow_mut().close(echo, "");
        self.finish(ctx, code, reason);
    }
}

/// Parses and validates a close frame's payload.
fn parse_close(payload: &[u8]) -> Result<(CloseCode, &str), Error> {
    match payload.len() {
        0 => Ok((CloseCode::NO_STATUS, "")),
        1 => Err(Error::Protocol("close frame with a 1-byte payload")),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_sendable() {
                return Err(Error::Protocol("invalid close code"));
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| Error::Protocol("close reason is not valid UTF-8"))?;
            Ok((code, reason))
        }
    }
}

fn panic_message(panic: &(dyn Any + Send)) -> String {
    if let Some(message) = panic.downcast_ref::<&str>() {
        (*message).to_owned()
    } else if let Some(message) = panic.downcast_ref::<String>() {
        message.clone()
    } else {
        "non-string panic payload".to_owned()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{deflate, BackpressurePolicy, Compression};

    #[test]
    fn a_finished_buffer_frees_its_compressor() {
        struct Quiet;
        impl Listener for Quiet {}
        // An address is all a socket needs; the actor never has to run.
        let ctx = Context::<Connection<Quiet>>::new();
        let socket = Socket::new(
            ctx.address().recipient(),
            1 << 20,
            BackpressurePolicy::Reject,
        );
        let agreed = deflate::negotiate(
            std::iter::once("permessage-deflate"),
            &Compression::default().min_size(0),
        );
        let mut out = Outbound::new(socket.clone(), agreed);
        let command = Command::Send(Message::from("compress me ".repeat(40)), None, None);
        socket
            .shared()
            .queued
            .fetch_add(command.frame_len(), Ordering::AcqRel);
        out.apply(command);
        assert!(out.holds_compressor());
        out.finish();
        assert!(!out.holds_compressor());
    }

    #[test]
    fn close_payloads_are_validated() {
        assert_eq!(parse_close(&[]), Ok((CloseCode::NO_STATUS, "")));
        assert!(parse_close(&[0x03]).is_err());
        assert_eq!(
            parse_close(&[0x03, 0xE8, b'o', b'k']),
            Ok((CloseCode::NORMAL, "ok"))
        );
        for bad in [0u16, 999, 1004, 1005, 1006, 1015, 1016, 2999, 5000] {
            assert!(parse_close(&bad.to_be_bytes()).is_err(), "{bad}");
        }
        assert!(parse_close(&[0x03, 0xE8, 0xFF]).is_err());
    }
}
