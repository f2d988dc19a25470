//! A connection that owns its TCP socket ([`WsServer`](crate::WsServer)):
//! the [`Line`] it shares with the server's upgrade future, the
//! [`LineReader`] its reader pulls bytes from and the [`LineWriter`] that
//! writes its frames, both run by the connection's own actor.
//!
//! On `HttpServer`, actix-http's dispatcher keeps the socket after the 101:
//! it reads into its own buffer and hands the bytes over through the
//! request payload, and it copies every outbound chunk into its write
//! buffer; each idle connection keeps both 8 KiB buffers and the
//! dispatcher's task. Here the upgrade hands the socket itself to the
//! connection: after the handshake no HTTP buffer is left, and reading,
//! the listener's calls and writing all run in the actor's one task.
//!
//! This module owns the socket's reads and writes and the end of the line
//! (socket closed, upgrade future told). It must not decide when the
//! connection closes: the body ending ([`BodyStream`]) says when to stop
//! writing, as it tells actix-http on the other path.

use std::{
    cell::{Cell, RefCell},
    future::Future,
    io::{self, IoSlice},
    pin::Pin,
    rc::Rc,
    task::{self, ready, Poll, Waker},
};

use actix::{ActorContext, ActorFuture, Context};
use actix_codec::{AsyncRead, AsyncWrite, ReadBuf};
use actix_http::error::PayloadError;
use bytes::{Buf, Bytes, BytesMut};
use futures::Stream;
use tokio_util::io::poll_read_buf;

use crate::{connection::Connection, outbound::BodyStream};

/// Bytes read from the socket at most at a time: a connection holds at
/// most one such buffer unread beyond its bounds (S19, S20).
const READ_CHUNK: usize = 16 * 1024;

/// Chunks written at once with one vectored write.
const WRITE_BATCH: usize = 4;

/// A socket a connection can own: TCP (or TLS over it) after the
/// handshake.
pub(crate) trait Io: AsyncRead + AsyncWrite + Unpin {}

impl<T: AsyncRead + AsyncWrite + Unpin> Io for T {}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum State {
    /// The 101 is not written yet: the socket is still the upgrade's.
    Waiting,
    /// The connection reads and writes the socket.
    Attached,
    /// The upgrade gave up before handing the socket over (no 101 went
    /// out, or the server is stopping): the connection ends as if the
    /// peer had gone.
    Abandoned,
    /// The last frame is out and the write side shut down; the writer
    /// reads what the peer still sends until it closes.
    Draining,
    /// The writer is done and the socket is closed.
    Ended,
}

/// What a connection and its upgrade future share.
pub(crate) struct Line {
    io: RefCell<Option<Box<dyn Io>>>,
    /// Bytes the client sent behind its handshake, read with it.
    leftover: Cell<Option<Bytes>>,
    state: Cell<State>,
    /// The connection's task, waiting for the socket.
    actor: RefCell<Option<Waker>>,
    /// The upgrade future, waiting for the end.
    upgrade: RefCell<Option<Waker>>,
}

impl Line {
    pub(crate) fn new() -> Rc<Line> {
        Rc::new(Line {
            io: RefCell::new(None),
            leftover: Cell::new(None),
            state: Cell::new(State::Waiting),
            actor: RefCell::new(None),
            upgrade: RefCell::new(None),
        })
    }

    /// Hands the socket to the connection, with what the client sent after
    /// its handshake. A connection that already ended closes it at once.
    pub(crate) fn attach(&self, io: Box<dyn Io>, leftover: Option<Bytes>) {
        if self.state.get() != State::Waiting {
            return;
        }
        *self.io.borrow_mut() = Some(io);
        self.leftover.set(leftover);
        self.state.set(State::Attached);
        self.wake_actor();
    }

    /// The upgrade will not hand the socket over: the connection ends.
    pub(crate) fn abandon(&self) {
        if self.state.get() == State::Waiting {
            self.state.set(State::Abandoned);
            self.wake_actor();
        }
    }

    /// `Ready` once the connection's writer is done and the socket closed.
    pub(crate) fn poll_end(&self, cx: &mut task::Context<'_>) -> Poll<()> {
        match self.state.get() {
            State::Ended | State::Abandoned => Poll::Ready(()),
            State::Waiting | State::Attached | State::Draining => {
                register(&self.upgrade, cx.waker());
                Poll::Pending
            }
        }
    }

    /// Closes the socket and tells the upgrade future.
    fn end(&self) {
        self.state.set(State::Ended);
        drop(self.io.borrow_mut().take());
        if let Some(waker) = self.upgrade.borrow_mut().take() {
            waker.wake();
        }
    }

    fn wake_actor(&self) {
        if let Some(waker) = self.actor.borrow_mut().take() {
            waker.wake();
        }
    }
}

fn register(slot: &RefCell<Option<Waker>>, waker: &Waker) {
    let mut slot = slot.borrow_mut();
    match &*slot {
        Some(current) if current.will_wake(waker) => {}
        _ => *slot = Some(waker.clone()),
    }
}

thread_local! {
    /// Where every connection of a thread reads into (actix-http's read
    /// buffer, shared by the thread's connections instead of one each).
    static SCRATCH: RefCell<BytesMut> = RefCell::new(BytesMut::new());
}

/// The least room a read is given in the scratch buffer.
const READ_MIN: usize = 4 * 1024;

/// The bytes from the socket, as the connection's reader takes them (the
/// place of the request payload on actix-web's path).
///
/// Reads go into a buffer the thread's connections share, and each read is
/// handed over uncopied, as a view of it. The assembler copies every
/// payload out and drops the view once it has read it all, and the reader
/// copies out what it left unread at the end of its turn
/// ([`Inbound::keep_unread`](crate::inbound::Inbound::keep_unread)), so
/// the buffer is reused in place by the next read of any connection, and a
/// connection keeps no read buffer between reads: a connection paused in
/// the middle of a read keeps only the bytes it has not read.
pub(crate) struct LineReader(Rc<Line>);

impl LineReader {
    pub(crate) fn new(line: Rc<Line>) -> LineReader {
        LineReader(line)
    }
}

impl Stream for LineReader {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut task::Context<'_>) -> Poll<Option<Self::Item>> {
        let line = &self.0;
        match line.state.get() {
            State::Waiting => {
                register(&line.actor, cx.waker());
                return Poll::Pending;
            }
            State::Abandoned | State::Draining | State::Ended => return Poll::Ready(None),
            State::Attached => {}
        }
        if let Some(bytes) = line.leftover.take() {
            return Poll::Ready(Some(Ok(bytes)));
        }
        let mut io = line.io.borrow_mut();
        let Some(io) = io.as_mut() else {
            return Poll::Ready(None);
        };
        SCRATCH.with(|scratch| {
            let mut buf = scratch.borrow_mut();
            if buf.capacity() - buf.len() < READ_MIN {
                // In place when every chunk split off before is gone; a
                // new buffer when some connection still holds one.
                buf.reserve(READ_CHUNK);
            }
            match poll_read_buf(Pin::new(io), cx, &mut *buf) {
                Poll::Pending => Poll::Pending,
                Poll::Ready(Err(error)) => Poll::Ready(Some(Err(PayloadError::Io(error)))),
                Poll::Ready(Ok(0)) => Poll::Ready(None),
                Poll::Ready(Ok(_)) => Poll::Ready(Some(Ok(buf.split().freeze()))),
            }
        })
    }
}

/// Writes the connection's frames to the socket as the body stream gives
/// them; when the body ends, shuts the socket down and closes it.
pub(crate) struct LineWriter {
    line: Rc<Line>,
    /// `None` once the body ended or failed.
    body: Option<BodyStream>,
    /// Chunks taken from the body and not yet written, in order.
    chunks: [Bytes; WRITE_BATCH],
    queued: usize,
    /// Where the writer is once the body has ended.
    end: End,
}

/// After the last frame: the FIN, then reading what the peer still sends
/// until it closes too, so that closing the socket does not reset it.
enum End {
    /// The body has more.
    Not,
    /// The body ended: the socket's write side is shut down.
    ShuttingDown,
    /// Unread bytes are read and dropped until the peer closes, the socket
    /// fails or [`LINGER`] passes.
    Draining(Pin<Box<actix_rt::time::Sleep>>),
}

/// How long a socket whose last frame is out keeps reading for the peer to
/// close (a close with unread bytes sends a reset, which can make the peer
/// lose the close frame).
const LINGER: std::time::Duration = std::time::Duration::from_secs(1);

/// Bytes dropped per poll while draining, before other tasks get a turn.
const DRAIN_PER_POLL: usize = 64 * 1024;

impl LineWriter {
    pub(crate) fn new(line: Rc<Line>, body: BodyStream) -> LineWriter {
        LineWriter {
            line,
            body: Some(body),
            chunks: Default::default(),
            queued: 0,
            end: End::Not,
        }
    }

    /// Takes chunks from the body until the batch is full or the body has
    /// none; `Ready(false)` when the body ended, `Ready(true)` when there
    /// are chunks to write.
    fn fill(&mut self, task: &mut task::Context<'_>) -> Poll<io::Result<bool>> {
        while self.queued < WRITE_BATCH {
            let Some(body) = self.body.as_mut() else {
                return Poll::Ready(Ok(false));
            };
            match Pin::new(body).poll_next(task) {
                Poll::Ready(Some(Ok(chunk))) => {
                    if !chunk.is_empty() {
                        self.chunks[self.queued] = chunk;
                        self.queued += 1;
                    }
                }
                Poll::Ready(Some(Err(error))) => return Poll::Ready(Err(error)),
                Poll::Ready(None) => {
                    if self.queued > 0 {
                        break;
                    }
                    return Poll::Ready(Ok(false));
                }
                Poll::Pending if self.queued > 0 => break,
                Poll::Pending => return Poll::Pending,
            }
        }
        Poll::Ready(Ok(true))
    }

    /// Writes what is queued; `Ready` once all of it is written.
    fn write(&mut self, io: &mut dyn Io, task: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        while self.queued > 0 {
            let written = {
                let io = Pin::new(&mut *io);
                // One chunk (the usual turn's worth of small frames): a
                // plain write, cheaper in the kernel than a one-piece writev.
                let poll = if self.queued == 1 {
                    io.poll_write(task, &self.chunks[0])
                } else {
                    let slices: [IoSlice<'_>; WRITE_BATCH] =
                        std::array::from_fn(|i| IoSlice::new(&self.chunks[i][..]));
                    io.poll_write_vectored(task, &slices[..self.queued])
                };
                match poll {
                    Poll::Pending => return Poll::Pending,
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(Ok(0)) => {
                        return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                    }
                    Poll::Ready(Ok(n)) => n,
                }
            };
            self.advance(written);
        }
        Poll::Ready(Ok(()))
    }

    /// Drops `n` written bytes from the front of the queue.
    fn advance(&mut self, mut n: usize) {
        let mut done = 0;
        while done < self.queued && n >= self.chunks[done].len() {
            n -= self.chunks[done].len();
            self.chunks[done] = Bytes::new();
            done += 1;
        }
        if done < self.queued {
            self.chunks[done].advance(n);
        }
        self.chunks[..self.queued].rotate_left(done);
        self.queued -= done;
    }

    /// Writes until the body has nothing more for now; `Ready` when the
    /// writer is done (the body ended or the socket failed).
    fn drive(&mut self, task: &mut task::Context<'_>) -> Poll<io::Result<()>> {
        let line = Rc::clone(&self.line);
        let mut io = line.io.borrow_mut();
        let Some(io) = io.as_mut() else {
            return Poll::Ready(Ok(()));
        };
        loop {
            match &mut self.end {
                End::Not => {}
                End::ShuttingDown => {
                    if let Err(error) = ready!(Pin::new(&mut **io).poll_shutdown(task)) {
                        return Poll::Ready(Err(error));
                    }
                    // The reader sees the end of input from now on.
                    line.state.set(State::Draining);
                    let linger = Box::pin(actix_rt::time::sleep(LINGER));
                    self.end = End::Draining(linger);
                    continue;
                }
                End::Draining(linger) => {
                    if linger.as_mut().poll(task).is_ready() {
                        return Poll::Ready(Ok(()));
                    }
                    return drain(&mut **io, task);
                }
            }
            if self.queued == 0 {
                // The usual turn's frames go out straight from the
                // connection's buffer, without being taken out as a chunk.
                if let Some(body) = &self.body {
                    match body.write_in_place(|bytes| Pin::new(&mut **io).poll_write(task, bytes)) {
                        Poll::Pending => return Poll::Pending,
                        Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                        Poll::Ready(Ok(true)) => continue,
                        Poll::Ready(Ok(false)) => {}
                    }
                }
                match self.fill(task) {
                    // Nothing more for now: what was written is pushed out
                    // (a no-op on TCP) and the body wakes us for more.
                    Poll::Pending => {
                        return match Pin::new(&mut **io).poll_flush(task) {
                            Poll::Ready(Err(error)) => Poll::Ready(Err(error)),
                            _ => Poll::Pending,
                        };
                    }
                    Poll::Ready(Err(error)) => return Poll::Ready(Err(error)),
                    Poll::Ready(Ok(false)) => {
                        // The body ended: what it had is out. The body
                        // stays until the socket closes: the connection
                        // stops once its writer lets go of it.
                        self.end = End::ShuttingDown;
                        continue;
                    }
                    Poll::Ready(Ok(true)) => {}
                }
            }
            match self.write(&mut **io, task) {
                Poll::Ready(Ok(())) => {}
                other => return other,
            }
        }
    }
}

/// Reads and drops what the peer still sends; `Ready` once it closed or
/// the socket failed.
fn drain(io: &mut dyn Io, task: &mut task::Context<'_>) -> Poll<io::Result<()>> {
    let mut dropped = 0;
    let mut sink = [0u8; 4096];
    while dropped < DRAIN_PER_POLL {
        let mut buf = ReadBuf::new(&mut sink);
        match ready!(Pin::new(&mut *io).poll_read(task, &mut buf)) {
            Ok(()) if buf.filled().is_empty() => return Poll::Ready(Ok(())),
            Ok(()) => dropped += buf.filled().len(),
            // A reset now changes nothing: the frames are out.
            Err(_) => return Poll::Ready(Ok(())),
        }
    }
    task.waker().wake_by_ref();
    Poll::Pending
}

impl<L: 'static> ActorFuture<Connection<L>> for LineWriter {
    type Output = ();

    fn poll(
        self: Pin<&mut Self>,
        act: &mut Connection<L>,
        ctx: &mut Context<Connection<L>>,
        task: &mut task::Context<'_>,
    ) -> Poll<()> {
        let this = self.get_mut();
        match this.line.state.get() {
            State::Waiting => {
                register(&this.line.actor, task.waker());
                return Poll::Pending;
            }
            State::Attached | State::Draining => match this.drive(task) {
                Poll::Pending => return Poll::Pending,
                Poll::Ready(Ok(())) => {}
                Poll::Ready(Err(error)) => {
                    log::debug!("ws {}: write error: {error}", act.id());
                }
            },
            State::Abandoned | State::Ended => {}
        }
        // Done: the body goes (the connection learns its writer is gone),
        // the socket closes, and a connection that was only waiting for its
        // frames to go out stops.
        this.body = None;
        this.queued = 0;
        this.line.end();
        if act.is_done() {
            ctx.stop();
        } else {
            // The socket failed under the writer (the peer reset it) while
            // the reader waits on it: its wakeup went with the socket. The
            // reader comes before this future in the actor's items, so it
            // is polled again only if the task is woken; it then finds the
            // line ended and the connection finishes (S1).
            task.waker().wake_by_ref();
        }
        Poll::Ready(())
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        // The actor stopped (or its runtime is going away) first.
        if self.line.state.get() != State::Abandoned {
            self.line.end();
        }
    }
}
