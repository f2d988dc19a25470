//! History and recovery of a group (S21): recording each broadcast with an
//! [`Offset`], and giving a socket that comes back with the offset of the
//! last message it saw exactly what it missed, in order, once, before
//! anything live.
//!
//! This module owns the seam between replay and live delivery. A recovering
//! socket is not yet a live member: live deliveries meant for it wait in a
//! small buffer of its own while a task (the replay, `replay.rs`) reads the history after
//! its offset, page by page, and sends it with flow control (S15). When the
//! history has nothing more, the buffer is drained under the group's lock,
//! skipping what the replay already sent (by offset), and the socket becomes
//! a live member in the same step, so nothing arrives in between. The
//! history itself is the `Ring` of `history.rs` for a group of one process,
//! the broker's stream behind the group's `Fanout` for a clustered group;
//! this module never knows which broker.

use std::{
    collections::{HashMap, VecDeque},
    sync::{
        atomic::{AtomicU64, Ordering},
        Mutex, MutexGuard,
    },
    time::Instant,
};

use super::{send_each, Group, Inner};
use crate::{
    broadcast::Broadcast,
    history::{History, Offset, Read, Ring},
    message::Message,
    socket::Socket,
};

/// Live messages kept for one recovering socket while its replay runs. Past
/// it the socket keeps the first ones and, once they are sent, the replay
/// reads the history again from there: recorded messages are never lost to
/// the cap (unrecorded [`Group::broadcast_here`] ones are, counted as
/// backpressured).
const BUFFER: usize = 256;

/// Numbers the calls of [`Group::recover`].
static RUNS: AtomicU64 = AtomicU64::new(1);

/// A group's history setting and the state of its recoveries.
pub(super) struct Recorded {
    pub(super) settings: History,
    state: Mutex<RecordState>,
}

struct RecordState {
    /// The history of a group of one process; `None` when the broker keeps it.
    ring: Option<Ring>,
    /// Sockets whose replay is running, by id.
    recovering: HashMap<u64, Recovering>,
    /// Live members whose replay read messages that the broker has not
    /// delivered here yet: each skips recorded messages up to its offset.
    caught_up: HashMap<u64, Offset>,
}

struct Recovering {
    /// The socket itself, for [`Group::sockets`].
    socket: Socket,
    /// Which call of [`Group::recover`] this is: a second one for the same
    /// socket starts over, and the first one's replay stops.
    run: u64,
    /// Live messages for it meanwhile, with their offsets (`None`: not
    /// recorded).
    buffer: VecDeque<(Option<Offset>, Message)>,
    /// The buffer was full and more came.
    overflowed: bool,
}

impl Recorded {
    pub(super) fn new(settings: History, local: bool) -> Recorded {
        let ring = local.then(|| Ring::new(&settings));
        Recorded {
            settings,
            state: Mutex::new(RecordState {
                ring,
                recovering: HashMap::new(),
                caught_up: HashMap::new(),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, RecordState> {
        // Nothing that can panic runs while the state is inconsistent.
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// What to do with a recorded message, given the offset a socket has seen.
#[derive(Debug, PartialEq)]
pub(super) enum Admit {
    /// Already sent to it.
    Skip,
    Send,
    /// Of another epoch: the history started over since, so the socket
    /// missed an unknown part; tell it, then send.
    GapThenSend,
}

/// Whether a socket that has seen `cursor` gets the message at `offset`;
/// moves `cursor` to it when it does.
pub(super) fn admit(cursor: &mut Option<Offset>, offset: Option<&Offset>) -> Admit {
    let Some(offset) = offset else {
        return Admit::Send;
    };
    let verdict = match cursor.as_ref() {
        Some(seen) if seen.epoch() == offset.epoch() => {
            if offset.position() <= seen.position() {
                return Admit::Skip;
            }
            Admit::Send
        }
        Some(_) => Admit::GapThenSend,
        None => Admit::Send,
    };
    *cursor = Some(offset.clone());
    verdict
}

impl Group {
    /// A group of this process that keeps a history (S21): every broadcast
    /// is recorded with an [`Offset`] and rendered by
    /// [`History::render`], and [`Group::recover`] replays what a returning
    /// client missed. The offsets' epoch is new for each group (a restarted
    /// process starts a new history: older offsets get a gap).
    ///
    /// ```
    /// use std::time::Duration;
    /// use actix_ws_listener::{Group, History};
    ///
    /// let room = Group::with_history(History::new(100, Duration::from_secs(60)));
    /// assert_eq!(room.history().map(History::len), Some(100));
    /// ```
    pub fn with_history(history: History) -> Group {
        Group {
            inner: std::sync::Arc::new(Inner {
                history: Some(Recorded::new(history, true)),
                ..Inner::default()
            }),
        }
    }

    /// The group's history setting, if it keeps one.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert!(Group::new().history().is_none());
    /// ```
    pub fn history(&self) -> Option<&History> {
        self.inner
            .history
            .as_ref()
            .map(|recorded| &recorded.settings)
    }

    /// Adds `socket` to the group as a client that has seen every message
    /// up to offset `since` (the text of an [`Offset`], as the client kept
    /// it): it first gets, in order and once each, the recorded messages
    /// after `since`, then live broadcasts, with no gap and no duplicate
    /// at the seam. When the history no longer reaches back to `since`
    /// (older than its length or age, from before a reset of the history,
    /// or not an offset at all) it gets the [`History::gap`] message
    /// instead of the replay, then live broadcasts. Returns `false`, and
    /// inserts the socket as [`Group::insert`] does, when the group keeps
    /// no history.
    ///
    /// Never blocks: the replay runs as a task (on the current actix or
    /// tokio runtime, or a thread of its own outside one), sends through
    /// the socket's flow control (S15: it waits while the client's queue is
    /// full, and runs at most a page of 100 messages ahead of the writer;
    /// across nodes a page also ends at about 1 MiB of payload),
    /// and ends when the socket closes or is removed. Meanwhile the socket
    /// counts as a member ([`Group::contains`], [`Group::len`]), and up to
    /// 256 live messages wait for it; past that it reads them again from
    /// the history after the replay.
    ///
    /// In a clustered group the history is the broker's: when it cannot be
    /// read (Redis unreachable) the replay retries for 5 s, then sends the
    /// gap message.
    ///
    /// ```no_run
    /// use actix_ws_listener::{CloseCode, Group, Listener, Socket};
    ///
    /// struct Member {
    ///     room: Group,
    ///     /// From the URL: `?since=OFFSET`.
    ///     since: Option<String>,
    /// }
    ///
    /// impl Listener for Member {
    ///     fn on_open(&mut self, socket: &Socket) {
    ///         match &self.since {
    ///             Some(since) => {
    ///                 self.room.recover(socket, since);
    ///             }
    ///             None => {
    ///                 self.room.insert(socket);
    ///             }
    ///         }
    ///     }
    ///
    ///     fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
    ///         self.room.remove(socket);
    ///     }
    /// }
    /// ```
    pub fn recover(&self, socket: &Socket, since: &str) -> bool {
        let Some(recorded) = &self.inner.history else {
            self.insert(socket);
            return false;
        };
        let since = since.parse::<Offset>().ok();
        let run = RUNS.fetch_add(1, Ordering::Relaxed);
        {
            let mut state = recorded.lock();
            // A live member that recovers again starts over.
            self.lock().remove(socket);
            state.caught_up.remove(&socket.id());
            state.recovering.insert(
                socket.id(),
                Recovering {
                    socket: socket.clone(),
                    run,
                    buffer: VecDeque::new(),
                    overflowed: false,
                },
            );
        }
        super::replay::start(self.clone(), socket.clone(), since, run);
        true
    }

    /// Records and delivers a broadcast of a group with history: through
    /// the broker for a clustered group (every node delivers it when the
    /// broker hands it back with its offset), else into the ring and to the
    /// members at once.
    pub(super) fn record(&self, message: Message, skip: Option<&Socket>) -> Broadcast {
        let Some(recorded) = &self.inner.history else {
            return self.send_to_members(&message, skip.map(Socket::id));
        };
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return Broadcast {
                published: Some(fanout.publish_recorded(&message, skip.map(Socket::id))),
                ..Broadcast::default()
            };
        }
        let mut state = recorded.lock();
        let Some(ring) = state.ring.as_mut() else {
            return Broadcast::default();
        };
        let offset = ring.push(message.clone(), Instant::now());
        let rendered = recorded.settings.rendered(&offset, &message);
        self.deliver_locked(&mut state, Some(&offset), &rendered, skip.map(Socket::id))
    }

    /// Whether this process opened the group with a history.
    #[cfg(feature = "redis")]
    pub(crate) fn has_history(&self) -> bool {
        self.inner.history.is_some()
    }

    /// Delivers a broadcast that came from another node to this process's
    /// members only (the excluded socket, if any, lives on the origin).
    #[cfg(feature = "redis")]
    pub(crate) fn deliver(&self, message: &Message) -> Broadcast {
        if let Some(recorded) = &self.inner.history {
            // Not recorded by its sender (the nodes open the group
            // differently): in order with what is, as `broadcast_here`.
            return self.deliver_at(recorded, None, message, None);
        }
        self.send_to_members(message, None)
    }

    /// Delivers a recorded broadcast that the broker handed back with its
    /// offset (from any node, this one included) to this process's members.
    #[cfg(feature = "redis")]
    pub(crate) fn deliver_recorded(
        &self,
        offset: &Offset,
        message: &Message,
        skip: Option<u64>,
    ) -> Broadcast {
        match &self.inner.history {
            Some(recorded) => {
                let rendered = recorded.settings.rendered(offset, message);
                self.deliver_at(recorded, Some(offset), &rendered, skip)
            }
            // Opened here without history: delivered as broadcast.
            None => self.send_to_members(message, skip),
        }
    }

    /// Delivers `message` (recorded at `offset`, or not recorded) to the
    /// live members, and buffers it for the recovering ones.
    pub(super) fn deliver_at(
        &self,
        recorded: &Recorded,
        offset: Option<&Offset>,
        message: &Message,
        skip: Option<u64>,
    ) -> Broadcast {
        self.deliver_locked(&mut recorded.lock(), offset, message, skip)
    }

    fn deliver_locked(
        &self,
        state: &mut RecordState,
        offset: Option<&Offset>,
        message: &Message,
        skip: Option<u64>,
    ) -> Broadcast {
        let mut report = Broadcast::default();
        for (id, recovering) in &mut state.recovering {
            if skip == Some(*id) {
                continue;
            }
            if recovering.overflowed || recovering.buffer.len() >= BUFFER {
                recovering.overflowed = true;
                // A recorded message is read again from the history.
                if offset.is_none() {
                    report.backpressured += 1;
                }
                continue;
            }
            recovering
                .buffer
                .push_back((offset.cloned(), message.clone()));
            report.sent += 1;
        }
        let mut members = self.lock();
        if state.caught_up.is_empty() || offset.is_none() {
            send_each(&mut members, message, skip, &mut report, |_| true);
        } else {
            let caught_up = &mut state.caught_up;
            send_each(&mut members, message, skip, &mut report, |socket| {
                let Some(seen) = caught_up.get(&socket.id()) else {
                    return true;
                };
                let mut cursor = Some(seen.clone());
                if admit(&mut cursor, offset) == Admit::Skip {
                    return false;
                }
                // Past what its replay sent: a plain member from now on.
                caught_up.remove(&socket.id());
                true
            });
            if !caught_up.is_empty() {
                // Forget the members this broadcast found closed.
                let ids: std::collections::HashSet<u64> = members.iter().map(Socket::id).collect();
                caught_up.retain(|id, _| ids.contains(id));
            }
        }
        report
    }

    /// Forgets a recovering socket (its replay then stops); true if it was
    /// one.
    pub(super) fn forget_recovering(&self, socket: &Socket) -> bool {
        let Some(recorded) = &self.inner.history else {
            return false;
        };
        let mut state = recorded.lock();
        state.caught_up.remove(&socket.id());
        state.recovering.remove(&socket.id()).is_some()
    }

    pub(super) fn is_recovering(&self, socket: &Socket) -> bool {
        self.inner
            .history
            .as_ref()
            .is_some_and(|recorded| recorded.lock().recovering.contains_key(&socket.id()))
    }

    /// The live members and the recovering sockets, under the history's
    /// lock and then the members' (the seam's order): a socket whose replay
    /// ends meanwhile is in it once.
    pub(super) fn members_and_recovering(&self) -> Vec<Socket> {
        let state = self.inner.history.as_ref().map(|recorded| recorded.lock());
        let mut sockets: Vec<Socket> = self.lock().iter().cloned().collect();
        if let Some(state) = &state {
            sockets.extend(
                state
                    .recovering
                    .values()
                    .map(|recovering| recovering.socket.clone()),
            );
        }
        sockets
    }

    pub(super) fn recovering_count(&self) -> usize {
        self.inner
            .history
            .as_ref()
            .map_or(0, |recorded| recorded.lock().recovering.len())
    }

    /// True while run `run` of `socket`'s recovery is the current one.
    pub(super) fn is_current(&self, socket: &Socket, run: u64) -> bool {
        self.inner.history.as_ref().is_some_and(|recorded| {
            recorded
                .lock()
                .recovering
                .get(&socket.id())
                .is_some_and(|recovering| recovering.run == run)
        })
    }

    /// Ends run `run` of `socket`'s recovery, if it is still the current one.
    pub(super) fn abandon(&self, socket: &Socket, run: u64) {
        if let Some(recorded) = &self.inner.history {
            let mut state = recorded.lock();
            if state
                .recovering
                .get(&socket.id())
                .is_some_and(|recovering| recovering.run == run)
            {
                state.recovering.remove(&socket.id());
            }
        }
    }

    /// At most `max` recorded messages after `since`, from wherever the
    /// group's history is.
    pub(super) async fn read_after(&self, since: &Offset, max: usize) -> Result<Read, String> {
        let Some(recorded) = &self.inner.history else {
            return Ok(Read::Gap);
        };
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return fanout
                .read_history(since, max, recorded.settings.max_age)
                .await
                .map_err(|error| error.to_string());
        }
        let mut state = recorded.lock();
        Ok(match state.ring.as_mut() {
            Some(ring) => ring.after(since, max, Instant::now()),
            None => Read::Gap,
        })
    }

    /// The seam: under the group's lock, sends what waited for the socket
    /// (skipping what the replay sent) and makes it a live member. When its
    /// buffer overflowed, hands the buffer back instead, to be sent before
    /// the history is read again.
    pub(super) fn seam(&self, socket: &Socket, run: u64, cursor: &mut Option<Offset>) -> Seam {
        let Some(recorded) = &self.inner.history else {
            return Seam::Live;
        };
        let mut state = recorded.lock();
        let Some(recovering) = state
            .recovering
            .get_mut(&socket.id())
            .filter(|recovering| recovering.run == run)
        else {
            return Seam::Live;
        };
        if recovering.overflowed {
            recovering.overflowed = false;
            return Seam::Again(std::mem::take(&mut recovering.buffer));
        }
        let Some(recovering) = state.recovering.remove(&socket.id()) else {
            return Seam::Live;
        };
        let mut members = self.lock();
        for (offset, message) in recovering.buffer {
            let verdict = admit(cursor, offset.as_ref());
            if verdict == Admit::GapThenSend {
                self.send_gap(socket);
            }
            if verdict != Admit::Skip {
                // As for a live member: a full queue misses it.
                if let Err(error) = socket.send(message) {
                    log::debug!(
                        "ws {}: a message at the seam was not sent: {error}",
                        socket.id()
                    );
                }
            }
        }
        if socket.is_open() {
            members.insert(socket.clone());
            if let Some(seen) = cursor.take() {
                state.caught_up.insert(socket.id(), seen);
            }
        }
        Seam::Live
    }

    pub(super) fn send_gap(&self, socket: &Socket) {
        let gap = self
            .inner
            .history
            .as_ref()
            .and_then(|recorded| recorded.settings.gap.clone());
        if let Some(gap) = gap {
            if let Err(error) = socket.send(gap) {
                log::debug!("ws {}: gap message not sent: {error}", socket.id());
            }
        }
    }
}

/// What the seam found.
pub(super) enum Seam {
    /// The socket is a live member now (or gone).
    Live,
    /// Its buffer overflowed: these first, then read the history again.
    Again(VecDeque<(Option<Offset>, Message)>),
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn at(epoch: &str, position: u64) -> Offset {
        Offset::new(Arc::from(epoch), position)
    }

    #[test]
    fn the_seam_skips_what_was_replayed_and_moves_on() {
        let mut cursor = Some(at("a", 5));
        assert_eq!(admit(&mut cursor, Some(&at("a", 4))), Admit::Skip);
        assert_eq!(admit(&mut cursor, Some(&at("a", 5))), Admit::Skip);
        assert_eq!(admit(&mut cursor, Some(&at("a", 6))), Admit::Send);
        assert_eq!(cursor, Some(at("a", 6)));
        // Unrecorded messages always go, and leave the cursor.
        assert_eq!(admit(&mut cursor, None), Admit::Send);
        assert_eq!(cursor, Some(at("a", 6)));
    }

    #[test]
    fn another_epoch_at_the_seam_is_a_gap_then_the_message() {
        let mut cursor = Some(at("a", 5));
        assert_eq!(admit(&mut cursor, Some(&at("b", 1))), Admit::GapThenSend);
        assert_eq!(cursor, Some(at("b", 1)));
        let mut after_gap = None;
        assert_eq!(admit(&mut after_gap, Some(&at("b", 2))), Admit::Send);
        assert_eq!(after_gap, Some(at("b", 2)));
    }
}
