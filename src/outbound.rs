//! The outbound side of a connection: the frame buffer the actor writes into
//! and the response body stream the HTTP writer drains.
//!
//! This module owns the count of bytes not yet handed to the writer (S9) and
//! the moment a `send_async` succeeds: when the writer takes the chunk that
//! ends its frame. It must not run listener callbacks or decide when a
//! connection closes.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io,
    pin::Pin,
    rc::Rc,
    task::{Context, Poll, Waker},
};

use bytes::{Bytes, BytesMut};
use futures::Stream;

use crate::{
    deflate::{Agreed, CompressCache, Deflater},
    frame::{self, OpCode},
    socket::{Command, Completion},
    CloseCode, Message, SendError, Socket,
};

/// Frames encoded for one connection and not yet taken by its HTTP writer.
pub(crate) struct Outbound {
    buf: BytesMut,
    /// Total bytes ever encoded and ever handed to the writer; a completion
    /// is due once `written` reaches the `encoded` mark of its frame.
    encoded: u64,
    written: u64,
    pending: VecDeque<(u64, Completion)>,
    waker: Option<Waker>,
    /// No more frames: the body ends once the buffer is drained.
    finished: bool,
    close_sent: Option<(CloseCode, String)>,
    writer_gone: bool,
    /// permessage-deflate, when negotiated: the policy, the compressor
    /// (created on first use, boxed: idle connections should not pay for
    /// its inline size) and its output buffer.
    deflate: Option<Agreed>,
    deflater: Option<Box<Deflater>>,
    compressed: Vec<u8>,
    /// The connection is cut off: the body fails, which drops the TCP connection.
    aborted: bool,
    /// The connection's socket, whose counters this buffer keeps.
    socket: Socket,
}

impl Outbound {
    pub(crate) fn new(socket: Socket, deflate: Option<Agreed>) -> Outbound {
        Outbound {
            buf: BytesMut::new(),
            encoded: 0,
            written: 0,
            pending: VecDeque::new(),
            waker: None,
            finished: false,
            close_sent: None,
            writer_gone: false,
            deflate,
            deflater: None,
            compressed: Vec::new(),
            aborted: false,
            socket,
        }
    }

    /// Whether the compressor is allocated right now.
    #[cfg(test)]
    pub(crate) fn holds_compressor(&self) -> bool {
        self.deflater.is_some()
    }

    /// The close frame this side sent, if any.
    pub(crate) fn close_sent(&self) -> Option<&(CloseCode, String)> {
        self.close_sent.as_ref()
    }

    /// Encodes a command from a socket, whose bytes the socket reserved.
    pub(crate) fn apply(&mut self, command: Command) {
        let len = command.frame_len();
        if self.close_sent.is_some() || self.finished || self.writer_gone {
            self.socket.shared().release(len);
            if let Command::Send(_, Some(completion), _) = command {
                completion.fail(SendError::Closed);
            }
            return;
        }
        match command {
            Command::Send(message, completion, cache) => {
                let opcode = match message {
                    Message::Text(_) => OpCode::Text,
                    Message::Binary(_) => OpCode::Binary,
                };
                let before = self.encoded;
                if !self.encode_compressed(opcode, message.as_bytes(), cache.as_deref()) {
                    self.encode(opcode, message.as_bytes());
                }
                // Compression changed the size the socket reserved.
                let actual = (self.encoded - before) as usize;
                if actual < len {
                    self.socket.shared().release(len - actual);
                } else if actual > len {
                    self.socket
                        .shared()
                        .queued
                        .fetch_add(actual - len, std::sync::atomic::Ordering::AcqRel);
                }
                if let Some(completion) = completion {
                    self.pending.push_back((self.encoded, completion));
                }
            }
            Command::Ping(data) => self.encode(OpCode::Ping, &data),
            Command::Pong(data) => self.encode(OpCode::Pong, &data),
            Command::Fail(_) => {}
            Command::Close(code, reason) => {
                let before = self.buf.len();
                frame::encode_close(&mut self.buf, code.as_u16(), &reason);
                self.encoded += (self.buf.len() - before) as u64;
                self.close_sent = Some((code, reason));
                self.socket.shared().mark_closed();
            }
        }
        self.wake();
    }

    /// Sends a close frame on the connection's own behalf (protocol error,
    /// timeout, echo of the peer's close). Does nothing if one was sent.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        if self.close_sent.is_some() || self.finished {
            return;
        }
        self.socket.shared().mark_closed();
        let before = self.buf.len();
        frame::encode_close(&mut self.buf, code.as_u16(), reason);
        let len = self.buf.len() - before;
        self.encoded += len as u64;
        self.socket
            .shared()
            .queued
            .fetch_add(len, std::sync::atomic::Ordering::AcqRel);
        self.close_sent = Some((code, reason.to_owned()));
        self.wake();
    }

    /// Ends the body once what is buffered has been written.
    pub(crate) fn finish(&mut self) {
        self.socket.shared().mark_closed();
        self.finished = true;
        // Nothing is encoded after this: free the compressor now rather
        // than when the writer lets go of the body.
        self.deflater = None;
        self.compressed = Vec::new();
        self.wake();
    }

    /// Cuts the connection off if the writer has not drained the buffer:
    /// what is still buffered is dropped (its completions fail) and the body
    /// ends with an error, so actix-http drops the TCP connection.
    pub(crate) fn abort(&mut self) {
        if self.writer_gone || (self.finished && self.buf.is_empty()) {
            return;
        }
        self.aborted = true;
        self.finished = true;
        let buffered = self.buf.len();
        self.buf.clear();
        self.socket.shared().release(buffered);
        let pending = std::mem::take(&mut self.pending);
        self.wake();
        drop(pending);
    }

    /// Encodes a compressed data frame when permessage-deflate is on and
    /// the message is worth it; `false` when it was not encoded.
    fn encode_compressed(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        cache: Option<&CompressCache>,
    ) -> bool {
        let Some(agreed) = &self.deflate else {
            return false;
        };
        if payload.len() < agreed.min_size {
            return false;
        }
        let deflater = self
            .deflater
            .get_or_insert_with(|| Box::new(Deflater::new(agreed)));
        let scratch = &mut self.compressed;
        let shared;
        let compressed: &[u8] = match cache {
            // Without context takeover the output depends on the message
            // alone: the first member of a broadcast compresses for all.
            Some(cache) if agreed.server_no_context_takeover => {
                shared = cache.get_or_compress(agreed, || {
                    deflater
                        .compress(payload, scratch)
                        .then(|| bytes::Bytes::copy_from_slice(scratch))
                });
                match &shared {
                    Some(bytes) => bytes,
                    None => return false,
                }
            }
            _ => {
                if !deflater.compress(payload, scratch) {
                    return false;
                }
                scratch
            }
        };
        let before = self.buf.len();
        frame::encode(&mut self.buf, opcode, true, compressed);
        self.encoded += (self.buf.len() - before) as u64;
        // Keep the scratch buffer for the next message, unless one huge
        // message would pin its memory for the connection's lifetime.
        if self.compressed.capacity() > 64 * 1024 {
            self.compressed = Vec::new();
        }
        true
    }

    fn encode(&mut self, opcode: OpCode, payload: &[u8]) {
        let before = self.buf.len();
        frame::encode(&mut self.buf, opcode, false, payload);
        self.encoded += (self.buf.len() - before) as u64;
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

/// The 101 response's body: the frames of one connection, as the HTTP
/// writer asks for them. actix-http polls it only while its own write buffer
/// has room, so a peer that stops reading leaves bytes in [`Outbound`],
/// where they are counted.
pub(crate) struct BodyStream(pub(crate) Rc<RefCell<Outbound>>);

impl Stream for BodyStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let mut due = Vec::new();
        let chunk = {
            let mut out = self.0.borrow_mut();
            if out.aborted {
                out.aborted = false;
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "WebSocket peer did not take its data within close_timeout",
                ))));
            }
            if out.buf.is_empty() {
                if out.finished {
                    return Poll::Ready(None);
                }
                match &out.waker {
                    Some(waker) if waker.will_wake(cx.waker()) => {}
                    _ => out.waker = Some(cx.waker().clone()),
                }
                return Poll::Pending;
            }
            let chunk = out.buf.split().freeze();
            out.written += chunk.len() as u64;
            out.socket.shared().release(chunk.len());
            let written = out.written;
            while out.pending.front().is_some_and(|(end, _)| *end <= written) {
                if let Some((_, completion)) = out.pending.pop_front() {
                    due.push(completion);
                }
            }
            chunk
        };
        // Outside the borrow: `succeed` may send again on this socket.
        for completion in due {
            completion.succeed();
        }
        Poll::Ready(Some(Ok(chunk)))
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        let pending = {
            let mut out = self.0.borrow_mut();
            out.writer_gone = true;
            out.socket.shared().mark_closed();
            let buffered = out.buf.len();
            out.buf.clear();
            out.socket.shared().release(buffered);
            std::mem::take(&mut out.pending)
        };
        // Frames the writer never took: their completions fail (on drop).
        drop(pending);
    }
}
