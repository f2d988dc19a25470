//! The replay of one recovering socket (S21): a task that reads the
//! history after the socket's offset page by page, sends it with flow
//! control (S15), then hands the socket to the seam in `recovery.rs`.
//!
//! This module owns pacing, retries and where the task runs; what a
//! recovering socket is, and the seam with live delivery, are
//! `recovery.rs`'s.

use std::{
    future::Future,
    time::{Duration, Instant},
};

use super::{
    recovery::{admit, Admit, Seam},
    Group,
};
use crate::{
    error::SendError,
    history::{Offset, Read},
    message::Message,
    socket::Socket,
};

/// Messages read from the history at a time; the last of each page is sent
/// with [`Socket::send_and_wait`], so a replay runs at most a page ahead of
/// the connection's writer.
const PAGE: usize = 100;
/// How long a replay keeps retrying a history that cannot be read (Redis
/// unreachable) before it tells the client of a gap.
const READ_PATIENCE: Duration = Duration::from_secs(5);
/// Pause between retries of a send refused for backpressure, or of a read.
const RETRY: Duration = Duration::from_millis(20);

/// How a replay ended.
enum Replayed {
    /// Everything after the offset was sent; the cursor is the last sent.
    Done,
    /// The history does not reach back that far.
    Gap,
    /// The socket closed, or left the group.
    Gone,
}

/// Starts the replay of `socket` from `since` (run `run` of its
/// recovery) as a task.
pub(super) fn start(group: Group, socket: Socket, since: Option<Offset>, run: u64) {
    spawn(replay(group, socket, since, run));
}

impl Group {
    /// Sends what came after `cursor`, page by page; moves `cursor` along.
    async fn replay_after(
        &self,
        socket: &Socket,
        run: u64,
        cursor: &mut Option<Offset>,
    ) -> Replayed {
        let Some(recorded) = &self.inner.history else {
            return Replayed::Gone;
        };
        let mut failing_since: Option<Instant> = None;
        loop {
            let Some(since) = cursor.clone() else {
                return Replayed::Done;
            };
            if !self.is_current(socket, run) {
                return Replayed::Gone;
            }
            let (entries, more) = match self.read_after(&since, PAGE).await {
                Ok(Read::Entries { entries, more }) => (entries, more),
                Ok(Read::Gap) => return Replayed::Gap,
                Err(error) => {
                    let first = *failing_since.get_or_insert_with(Instant::now);
                    if first.elapsed() >= READ_PATIENCE {
                        log::debug!("ws {}: history unreadable, a gap: {error}", socket.id());
                        return Replayed::Gap;
                    }
                    actix_rt::time::sleep(RETRY * 10).await;
                    continue;
                }
            };
            failing_since = None;
            let count = entries.len();
            for (index, (offset, message)) in entries.into_iter().enumerate() {
                if !self.is_current(socket, run) {
                    return Replayed::Gone;
                }
                let rendered = recorded.settings.rendered(&offset, &message);
                if send_paced(socket, rendered, index + 1 == count)
                    .await
                    .is_err()
                {
                    return Replayed::Gone;
                }
                *cursor = Some(offset);
            }
            if !more {
                return Replayed::Done;
            }
        }
    }
}

/// One socket's recovery, from its offset to live membership.
async fn replay(group: Group, socket: Socket, since: Option<Offset>, run: u64) {
    let mut cursor = since;
    if cursor.is_none() {
        group.send_gap(&socket);
    }
    loop {
        match group.replay_after(&socket, run, &mut cursor).await {
            Replayed::Done => {}
            Replayed::Gap => {
                group.send_gap(&socket);
                cursor = None;
            }
            Replayed::Gone => {
                group.abandon(&socket, run);
                return;
            }
        }
        match group.seam(&socket, run, &mut cursor) {
            Seam::Live => return,
            Seam::Again(buffer) => {
                for (offset, message) in buffer {
                    let verdict = admit(&mut cursor, offset.as_ref());
                    if verdict == Admit::GapThenSend {
                        group.send_gap(&socket);
                    }
                    if verdict != Admit::Skip && send_paced(&socket, message, false).await.is_err()
                    {
                        group.abandon(&socket, run);
                        return;
                    }
                }
            }
        }
    }
}

/// Sends `message`, waiting while the socket's queue is full (S15); with
/// `wait`, until the writer has taken it. `Err` once the socket is closed.
async fn send_paced(socket: &Socket, message: Message, wait: bool) -> Result<(), ()> {
    let mut message = message;
    loop {
        let sent = if wait {
            socket.send_and_wait(message).await
        } else {
            socket.send(message)
        };
        match sent {
            Ok(()) => return Ok(()),
            Err(SendError::Backpressure {
                message: Some(refused),
                ..
            }) if socket.is_open() => {
                message = refused;
                actix_rt::time::sleep(RETRY).await;
            }
            Err(_) => return Err(()),
        }
    }
}

/// Runs a replay on the current runtime, or on a thread of its own outside
/// one.
fn spawn(task: impl Future<Output = ()> + Send + 'static) {
    if let Some(arbiter) = actix_rt::Arbiter::try_current() {
        if arbiter.spawn(task) {
            return;
        }
        log::debug!("recovery: the current arbiter is stopping");
        return;
    }
    let started = std::thread::Builder::new()
        .name("actix-ws-recovery".to_owned())
        .spawn(move || match actix_rt::Runtime::new() {
            Ok(runtime) => runtime.block_on(task),
            Err(error) => log::debug!("recovery: no runtime for the replay: {error}"),
        });
    if let Err(error) = started {
        log::debug!("recovery: no thread for the replay: {error}");
    }
}
