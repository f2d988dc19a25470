//! The outbound side of a connection: the frame buffer commands are
//! encoded into, and the response body stream the HTTP writer drains.
//!
//! This module owns the encoding of commands into frames (and their
//! compression), the moment a `send_async` succeeds (when the writer takes
//! the chunk that ends its frame) and the wake-up of a reader paused on a
//! full queue (S15). The byte count itself lives in [`Link`]. It must
//! not run listener callbacks or decide when a connection closes.

use std::{
    cell::RefCell,
    collections::VecDeque,
    io,
    pin::Pin,
    rc::Rc,
    sync::Arc,
    task::{Context, Poll, Waker},
    time::Instant,
};

use bytes::Bytes;
use futures::Stream;

use crate::{
    command::{Command, Completion, Link, SharedPayload, Sink},
    deflate::{Agreed, Deflater},
    frame::OpCode,
    CloseCode, Message, SendError,
};

mod frames;

use frames::Frames;

/// Where the outbound side of a connection is in its life.
#[derive(Debug, PartialEq, Eq)]
enum State {
    /// Frames are encoded as commands arrive.
    Open,
    /// This side's close frame is encoded: nothing more is.
    Closing(CloseCode, String),
    /// No more frames: the body ends once the buffer is drained.
    Finished,
    /// Cut off: the body fails at its next poll, so actix-http drops TCP.
    Aborted,
    /// The HTTP writer dropped the body.
    WriterGone,
}

/// Frames encoded for one connection and not yet taken by its HTTP writer.
pub(crate) struct Outbound {
    frames: Frames,
    /// Total bytes ever encoded and ever handed to the writer; a completion
    /// is due once `written` reaches the `encoded` mark of its frame.
    encoded: u64,
    written: u64,
    pending: VecDeque<(u64, Completion)>,
    /// The body stream, waiting for frames.
    waker: Option<Waker>,
    /// The body is running the actor ([`Drive`]): it takes what is queued
    /// meanwhile as soon as the actor waits, so nothing wakes it.
    driving: bool,
    /// The connection's reader, paused until the queue drains to
    /// `resume_below` bytes (S15).
    reader: Option<Waker>,
    resume_below: usize,
    /// When the writer last took bytes; tracked only for an idle timeout.
    last_drain: Option<Instant>,
    state: State,
    /// permessage-deflate, when negotiated: the policy, the compressor
    /// (created on first use, boxed: idle connections should not pay for
    /// its inline size) and its output buffer.
    deflate: Option<Agreed>,
    deflater: Option<Box<Deflater>>,
    compressed: Vec<u8>,
    counters: Arc<Link>,
}

impl Outbound {
    pub(crate) fn new(
        counters: Arc<Link>,
        deflate: Option<Agreed>,
        resume_below: usize,
        track_drain: bool,
    ) -> Outbound {
        Outbound {
            frames: Frames::default(),
            encoded: 0,
            written: 0,
            pending: VecDeque::new(),
            waker: None,
            driving: false,
            reader: None,
            resume_below,
            last_drain: track_drain.then(Instant::now),
            state: State::Open,
            deflate,
            deflater: None,
            compressed: Vec::new(),
            counters,
        }
    }

    /// The close frame this side sent, while waiting for the peer's.
    pub(crate) fn close_sent(&self) -> Option<(CloseCode, &str)> {
        match &self.state {
            State::Closing(code, reason) => Some((*code, reason)),
            _ => None,
        }
    }

    /// Whether the HTTP writer dropped the body: the connection is gone.
    pub(crate) fn is_writer_gone(&self) -> bool {
        self.state == State::WriterGone
    }

    /// When the HTTP writer last took bytes (or the connection started).
    pub(crate) fn last_drain(&self) -> Option<Instant> {
        self.last_drain
    }

    /// Wakes `waker` once the bytes queued drop to the resume mark.
    pub(crate) fn park_reader(&mut self, waker: &Waker) {
        match &self.reader {
            Some(reader) if reader.will_wake(waker) => {}
            _ => self.reader = Some(waker.clone()),
        }
    }

    /// Encodes a command from a socket, whose bytes the socket counted.
    pub(crate) fn apply(&mut self, command: Command) {
        let len = command.frame_len();
        if self.state != State::Open {
            self.counters.release(len);
            if let Command::Send(_, Some(completion), _) = command {
                completion.fail(SendError::Closed(None));
            }
            return;
        }
        match command {
            Command::Send(message, completion, broadcast) => {
                let before = self.encoded;
                self.encode_message(message, broadcast.as_ref());
                // Compression changed the size the socket counted.
                self.counters.settle(len, (self.encoded - before) as usize);
                if let Some(completion) = completion {
                    self.pending.push_back((self.encoded, completion));
                }
            }
            Command::Ping(data) => self.encode_control(OpCode::Ping, &data),
            Command::Pong(data) => self.encode_control(OpCode::Pong, &data),
            Command::Fail(_) | Command::Disconnect => {}
            Command::Close(code, reason) => self.encode_close(code, reason),
        }
        self.wake();
    }

    /// Sends a close frame on the connection's own behalf (protocol error,
    /// timeout, echo of the peer's close). Does nothing if one was sent.
    pub(crate) fn close(&mut self, code: CloseCode, reason: &str) {
        if self.state != State::Open {
            return;
        }
        self.counters.mark_closed();
        let before = self.encoded;
        self.encode_close(code, reason.to_owned());
        self.counters.charge((self.encoded - before) as usize);
        self.wake();
    }

    fn encode_close(&mut self, code: CloseCode, reason: String) {
        self.encoded += self.frames.encode_close(code.as_u16(), &reason) as u64;
        self.state = State::Closing(code, reason);
        self.counters.mark_closed();
    }

    /// Ends the body once what is buffered has been written.
    pub(crate) fn finish(&mut self) {
        self.counters.mark_closed();
        if matches!(self.state, State::Open | State::Closing(..)) {
            self.state = State::Finished;
        }
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
        if self.state == State::WriterGone
            || (self.state == State::Finished && self.frames.is_empty())
        {
            return;
        }
        self.state = State::Aborted;
        self.drop_buffered();
        self.wake();
    }

    /// Drops what is buffered; the completions of its frames fail.
    fn drop_buffered(&mut self) {
        self.counters.release(self.frames.len());
        self.frames.clear();
        let pending = std::mem::take(&mut self.pending);
        drop(pending);
    }

    fn encode_message(&mut self, message: Message, broadcast: Option<&SharedPayload>) {
        let opcode = match message {
            Message::Text(_) => OpCode::Text,
            Message::Binary(_) => OpCode::Binary,
        };
        if !self.encode_compressed(opcode, message.as_bytes(), broadcast) {
            self.encoded += self.frames.encode(opcode, false, &message.into_bytes()) as u64;
        }
    }

    /// Encodes a compressed data frame when permessage-deflate is on and
    /// the message is worth it; `false` when it was not encoded.
    fn encode_compressed(
        &mut self,
        opcode: OpCode,
        payload: &[u8],
        broadcast: Option<&SharedPayload>,
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
        let compressed: &[u8] = match broadcast {
            // Without context takeover the output depends on the message
            // alone: the first member of a broadcast compresses for all.
            Some(broadcast) if agreed.server_no_context_takeover => {
                shared = broadcast.cache().get_or_compress(agreed, || {
                    deflater
                        .compress(payload, scratch)
                        .then(|| Bytes::copy_from_slice(scratch))
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
        self.encoded += self.frames.encode_copied(opcode, true, compressed) as u64;
        // Keep the scratch buffer for the next message, unless one huge
        // message would pin its memory for the connection's lifetime.
        if self.compressed.capacity() > 64 * 1024 {
            self.compressed = Vec::new();
        }
        true
    }

    /// Encodes a ping or a pong (its payload is at most 125 bytes).
    fn encode_control(&mut self, opcode: OpCode, payload: &[u8]) {
        self.encoded += self.frames.encode_copied(opcode, false, payload) as u64;
    }

    /// The writer is polled right after the current turn, in the same task
    /// (a connection on its own socket, whose writer follows its reader):
    /// what the turn buffers needs no wake-up, which would only poll the
    /// task once more for nothing.
    pub(crate) fn writer_follows(&mut self) {
        self.waker = None;
    }

    fn wake(&mut self) {
        if self.driving {
            return;
        }
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }

    /// The writer asks for the next chunk: what is buffered, and the
    /// completions it makes due.
    fn take(&mut self, cx: &Context<'_>) -> Poll<Option<Result<Chunk, io::Error>>> {
        if self.state == State::Aborted {
            self.state = State::Finished;
            return Poll::Ready(Some(Err(io::Error::new(
                io::ErrorKind::TimedOut,
                "WebSocket peer did not take its data within close_timeout",
            ))));
        }
        let Some(chunk) = self.frames.take() else {
            if self.state == State::Finished {
                return Poll::Ready(None);
            }
            match &self.waker {
                Some(waker) if waker.will_wake(cx.waker()) => {}
                _ => self.waker = Some(cx.waker().clone()),
            }
            return Poll::Pending;
        };
        let due = self.taken(chunk.len());
        Poll::Ready(Some(Ok((chunk, due))))
    }

    /// The writer has `n` more bytes: they leave the count, a paused
    /// reader may go on, and the completions they finish are due.
    fn taken(&mut self, n: usize) -> Vec<Completion> {
        self.written += n as u64;
        self.counters.release(n);
        if let Some(last_drain) = &mut self.last_drain {
            *last_drain = Instant::now();
        }
        if self.reader.is_some() && self.counters.queued() <= self.resume_below {
            if let Some(reader) = self.reader.take() {
                reader.wake();
            }
        }
        let mut due = Vec::new();
        while self
            .pending
            .front()
            .is_some_and(|(end, _)| *end <= self.written)
        {
            if let Some((_, completion)) = self.pending.pop_front() {
                due.push(completion);
            }
        }
        due
    }
}

/// A chunk for the writer and the `send_async` completions it makes due.
type Chunk = (Bytes, Vec<Completion>);

impl Sink for RefCell<Outbound> {
    fn apply_now(&self, command: Command) -> Result<(), Command> {
        match self.try_borrow_mut() {
            Ok(mut out) => {
                out.apply(command);
                Ok(())
            }
            Err(_) => Err(command),
        }
    }
}

/// What the body needs of the connection's actor when it runs it (on
/// actix-web: `connection/engine.rs`), whatever the listener's type.
pub(crate) trait Drive {
    /// Runs the actor until it waits, from the dispatcher's task.
    fn drive(&self, body: &Waker);
    /// The body answered the dispatcher: with `Pending` it will be polled
    /// again when woken; otherwise (a chunk, the end, an error) it may not
    /// be, and the helper runs the actor meanwhile.
    fn answered(&self, pending: bool);
    /// The body is gone: the helper runs the actor to its end.
    fn body_gone(&self);
}

/// The 101 response's body: the frames of one connection, as the HTTP
/// writer asks for them. actix-http polls it only while its own write buffer
/// has room, so a peer that stops reading leaves bytes in [`Outbound`],
/// where they are counted.
///
/// On actix-web the body also runs the connection's actor
/// ([`Drive`]): the dispatcher's task is the connection's.
pub(crate) struct BodyStream {
    out: Rc<RefCell<Outbound>>,
    engine: Option<Rc<dyn Drive>>,
}

impl BodyStream {
    pub(crate) fn new(out: Rc<RefCell<Outbound>>) -> BodyStream {
        BodyStream { out, engine: None }
    }

    /// From now on, polling the body runs the connection's actor first.
    pub(crate) fn drive(&mut self, engine: Rc<dyn Drive>) {
        self.engine = Some(engine);
    }
}

impl Stream for BodyStream {
    type Item = Result<Bytes, io::Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Some(engine) = &self.engine {
            self.out.borrow_mut().driving = true;
            engine.drive(cx.waker());
            self.out.borrow_mut().driving = false;
        }
        let taken = self.out.borrow_mut().take(cx);
        if let Some(engine) = &self.engine {
            engine.answered(taken.is_pending());
        }
        Poll::Ready(match taken {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => None,
            Poll::Ready(Some(Err(error))) => Some(Err(error)),
            Poll::Ready(Some(Ok((chunk, due)))) => {
                // Outside the borrow: `succeed` may send again on this socket.
                for completion in due {
                    completion.succeed();
                }
                Some(Ok(chunk))
            }
        })
    }
}

impl BodyStream {
    /// Writes the buffered frames with `write` straight from the buffer,
    /// without taking them out as a chunk (the connection that owns its
    /// socket, [`WsServer`](crate::WsServer)): `Ready(Ok(true))` when
    /// `write` took some, `Ready(Ok(false))` when nothing can go out this
    /// way (nothing is buffered, a chunk of its own comes first, or the
    /// body has an error to report: [`Stream::poll_next`] then says what).
    pub(crate) fn write_in_place(
        &self,
        write: impl FnOnce(&[u8]) -> Poll<io::Result<usize>>,
    ) -> Poll<io::Result<bool>> {
        let due = {
            let mut out = self.out.borrow_mut();
            if out.state == State::Aborted {
                return Poll::Ready(Ok(false));
            }
            let Some(bytes) = out.frames.in_place() else {
                return Poll::Ready(Ok(false));
            };
            let n = match write(bytes) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                Poll::Ready(Ok(0)) => return Poll::Ready(Err(io::ErrorKind::WriteZero.into())),
                Poll::Ready(Ok(n)) => n,
            };
            out.frames.advance(n);
            out.taken(n)
        };
        // Outside the borrow, as in `poll_next`.
        for completion in due {
            completion.succeed();
        }
        Poll::Ready(Ok(true))
    }
}

impl Drop for BodyStream {
    fn drop(&mut self) {
        if let Some(engine) = &self.engine {
            engine.body_gone();
        }
        let pending = {
            let mut out = self.out.borrow_mut();
            out.state = State::WriterGone;
            out.counters.mark_closed();
            out.counters.release(out.frames.len());
            out.frames.clear();
            // The reader may be paused on this buffer: it must learn that
            // the connection is over.
            if let Some(reader) = out.reader.take() {
                reader.wake();
            }
            std::mem::take(&mut out.pending)
        };
        // Frames the writer never took: their completions fail (on drop).
        drop(pending);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{deflate, Compression};

    fn outbound(deflate: Option<Agreed>) -> (Outbound, Arc<Link>) {
        let counters = Link::detached(1 << 20);
        (
            Outbound::new(Arc::clone(&counters), deflate, 0, false),
            counters,
        )
    }

    fn send(out: &mut Outbound, counters: &Link, message: &str) {
        let command = Command::Send(Message::from(message), None, None);
        counters.charge(command.frame_len());
        out.apply(command);
    }

    #[test]
    fn a_finished_buffer_frees_its_compressor() {
        let agreed = deflate::negotiate(
            std::iter::once("permessage-deflate"),
            &Compression::default().min_size(0),
        );
        let (mut out, counters) = outbound(agreed);
        send(&mut out, &counters, &"compress me ".repeat(40));
        assert!(out.deflater.is_some());
        // Compression settled the count to the compressed frame.
        assert_eq!(counters.queued(), out.frames.len());
        out.finish();
        assert!(out.deflater.is_none());
    }

    #[test]
    fn nothing_is_encoded_after_the_close_frame() {
        let (mut out, counters) = outbound(None);
        send(&mut out, &counters, "before");
        out.close(CloseCode::NORMAL, "bye");
        assert_eq!(out.close_sent(), Some((CloseCode::NORMAL, "bye")));
        let queued = counters.queued();
        send(&mut out, &counters, "after");
        assert_eq!(counters.queued(), queued, "a refused frame is released");
        assert_eq!(queued, out.frames.len());
        assert!(!counters.is_open());
    }

    #[test]
    fn frames_written_in_place_leave_the_count_and_finish_their_sends_as_they_go() {
        let (mut out, counters) = outbound(None);
        let done = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let completion = {
            let done = Arc::clone(&done);
            Completion::new(
                Box::new(move || done.store(true, std::sync::atomic::Ordering::SeqCst)),
                Box::new(|_| panic!("the send must not fail")),
            )
        };
        let command = Command::Send(Message::from("async"), Some(completion), None);
        counters.charge(command.frame_len());
        out.apply(command);
        send(&mut out, &counters, "after");
        let encoded = out.frames.len();
        let body = BodyStream::new(Rc::new(RefCell::new(out)));

        // The socket takes 3 bytes: the first frame is not out yet.
        let mut wire = Vec::new();
        let mut write = |bytes: &[u8], most: usize| {
            let n = bytes.len().min(most);
            wire.extend_from_slice(&bytes[..n]);
            Poll::Ready(Ok(n))
        };
        assert!(matches!(
            body.write_in_place(|b| write(b, 3)),
            Poll::Ready(Ok(true))
        ));
        assert_eq!(counters.queued(), encoded - 3);
        assert!(!done.load(std::sync::atomic::Ordering::SeqCst));
        // The rest of it, and the next frame.
        assert!(matches!(
            body.write_in_place(|b| write(b, usize::MAX)),
            Poll::Ready(Ok(true))
        ));
        assert!(done.load(std::sync::atomic::Ordering::SeqCst));
        assert_eq!(counters.queued(), 0);
        assert_eq!(wire.len(), encoded);
        assert_eq!(&wire[2..7], b"async");
        // Nothing left: the writer asks the body, which waits.
        assert!(matches!(
            body.write_in_place(|_| unreachable!("nothing to write")),
            Poll::Ready(Ok(false))
        ));
        // A socket that takes nothing is an error, not a loop.
        send(&mut body.out.borrow_mut(), &counters, "stuck");
        assert!(matches!(
            body.write_in_place(|_| Poll::Ready(Ok(0))),
            Poll::Ready(Err(e)) if e.kind() == io::ErrorKind::WriteZero
        ));
    }

    #[test]
    fn an_abort_drops_the_buffer_and_fails_the_body_once() {
        let (mut out, counters) = outbound(None);
        send(&mut out, &counters, "never read");
        out.abort();
        assert_eq!(counters.queued(), 0);
        let waker = futures::task::noop_waker();
        let cx = Context::from_waker(&waker);
        assert!(matches!(out.take(&cx), Poll::Ready(Some(Err(_)))));
        assert!(matches!(out.take(&cx), Poll::Ready(None)));
    }
}
