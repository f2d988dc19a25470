//! History (S21): the bounded record of a group's last messages, each with
//! an [`Offset`], so that a client that comes back with the offset of the
//! last message it saw can be given exactly what it missed.
//!
//! This module owns the settings ([`History`]), the offset type, and the
//! in-memory ring a group of one process keeps (`Ring`): plain data, no
//! sockets, no runtime, no broker. Across nodes the record is the broker's
//! (a Redis stream, in `cluster/history.rs`) with the same semantics; the
//! replay and its seam with live delivery are in `recovery.rs`.

use std::{
    collections::VecDeque,
    fmt,
    hash::{BuildHasher, Hasher},
    str::FromStr,
    sync::Arc,
    time::{Duration, Instant},
};

use crate::message::Message;

/// How long a clustered group's epoch and position outlive its last
/// broadcast or recovery unless set: 30 days, as Centrifugo's
/// `history_meta_ttl`.
const DEFAULT_META_TTL: Duration = Duration::from_secs(30 * 24 * 3600);

/// How a recorded message is written for its members, given its offset.
pub(crate) type Render = Arc<dyn Fn(&Offset, &Message) -> Message + Send + Sync>;

/// A group's history setting: keep the last `len` messages, none older than
/// `max_age` (off unless a group is opened with one: [`Group::with_history`](crate::Group::with_history),
/// or `Cluster::group_with_history` (feature `redis`)).
///
/// Each broadcast of a group with history is recorded with an [`Offset`]:
/// [`History::render`] decides how its members see it (the offset inside a
/// JSON object, say), and a client that comes back with the offset of the
/// last message it saw is given, by [`Group::recover`](crate::Group::recover),
/// exactly the messages after it, in order, once, before anything live; or
/// the [`History::gap`] message when the history no longer reaches back
/// that far (older than `len` messages or `max_age`, or from before a reset
/// of the history).
///
/// Memory: at most `len` messages per group (one process), or a Redis
/// stream capped at about `len` entries (a clustered group; Redis trims in
/// whole nodes of its radix tree, so up to about 100 more may stay, and they
/// are replayed only when they are within the history's semantics). A
/// clustered group also keeps its epoch and last position in Redis: they
/// expire [`History::meta_ttl`] after the group's last broadcast or
/// recovery (30 days unless set), so group names that are no longer used
/// leave nothing in Redis for good.
///
/// ```
/// use std::time::Duration;
/// use actix_ws_listener::{Group, History, Message};
///
/// let room = Group::with_history(
///     History::new(1_000, Duration::from_secs(300))
///         // Members see "OFFSET MESSAGE"; a client keeps the last OFFSET.
///         .render(|offset, message| {
///             Message::from(format!("{offset} {}", message.as_text().unwrap_or("")))
///         })
///         .gap("history does not reach back that far"),
/// );
/// assert!(room.history().is_some());
/// ```
#[derive(Clone)]
pub struct History {
    pub(crate) len: usize,
    pub(crate) max_age: Duration,
    pub(crate) meta_ttl: Duration,
    pub(crate) render: Option<Render>,
    pub(crate) gap: Option<Message>,
}

impl History {
    /// Keep the last `len` messages (at least 1), none older than `max_age`.
    pub fn new(len: usize, max_age: Duration) -> History {
        History {
            len: len.max(1),
            max_age,
            meta_ttl: DEFAULT_META_TTL,
            render: None,
            gap: None,
        }
    }

    /// How members see a recorded message, live and in a replay: `render`
    /// gets the message's offset and the message as broadcast, and returns
    /// what is sent. It runs once per message per process (not per member),
    /// on the thread that delivers it; it must not block. Without it members
    /// get the message as broadcast, and cannot learn its offset.
    #[must_use]
    pub fn render(
        mut self,
        render: impl Fn(&Offset, &Message) -> Message + Send + Sync + 'static,
    ) -> History {
        self.render = Some(Arc::new(render));
        self
    }

    /// The message a recovering client gets when what it missed is no
    /// longer all in the history (see [`Group::recover`](crate::Group::recover)); without it the
    /// client gets nothing to say so.
    #[must_use]
    pub fn gap(mut self, message: impl Into<Message>) -> History {
        self.gap = Some(message.into());
        self
    }

    /// How long a clustered group's epoch and last position stay in Redis
    /// after its last broadcast or recovery read (default 30 days, as
    /// Centrifugo's `history_meta_ttl`; never less than the history's
    /// `max_age`, which it is raised to). Once they expire, the group's next
    /// broadcast starts a new epoch, and a client that comes back with an
    /// offset of the old one is told of a gap (by then every message it
    /// could have missed is past `max_age` anyway, but a client that had
    /// missed nothing is told of a gap too). Without an expiry, every group
    /// name ever given a history would keep its few bytes in Redis forever.
    ///
    /// A group of one process keeps its epoch in memory for as long as the
    /// group lives; this setting does not apply to it.
    ///
    /// ```
    /// use std::time::Duration;
    /// use actix_ws_listener::History;
    ///
    /// // Rooms named after documents: forget a room's epoch a week after
    /// // its last message.
    /// let history = History::new(100, Duration::from_secs(3600))
    ///     .meta_ttl(Duration::from_secs(7 * 24 * 3600));
    /// assert!(format!("{history:?}").contains("meta_ttl: 604800s"));
    /// ```
    #[must_use]
    pub fn meta_ttl(mut self, ttl: Duration) -> History {
        self.meta_ttl = ttl;
        self
    }

    /// The expiry of a clustered group's epoch and last position in Redis:
    /// [`History::meta_ttl`], raised to `max_age` when shorter.
    pub(crate) fn meta_expiry(&self) -> Duration {
        self.meta_ttl.max(self.max_age)
    }

    /// The most messages kept.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Always false: a history keeps at least one message.
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The age past which a message is no longer in the history.
    pub fn max_age(&self) -> Duration {
        self.max_age
    }

    /// `message` as members see it at `offset`.
    pub(crate) fn rendered(&self, offset: &Offset, message: &Message) -> Message {
        match &self.render {
            Some(render) => render(offset, message),
            None => message.clone(),
        }
    }
}

impl fmt::Debug for History {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("History")
            .field("len", &self.len)
            .field("max_age", &self.max_age)
            .field("meta_ttl", &self.meta_expiry())
            .field("render", &self.render.is_some())
            .field("gap", &self.gap)
            .finish()
    }
}

/// The place of one recorded message in its group's history: the history's
/// epoch and the message's position in it.
///
/// Written as `EPOCH:POSITION` ([`Display`](fmt::Display), parsed back with
/// [`FromStr`]): hand it to clients as an opaque string. Positions count the
/// group's recorded messages from 1 within an epoch, one per broadcast, so
/// a client that gets every broadcast of the group sees them consecutive.
/// The epoch changes when the history starts over (a new process for a
/// group of one process; Redis restarted without persistence, or the
/// group's keys deleted, for a clustered group): an offset of another epoch
/// is never replayed from, it is a gap.
///
/// ```
/// use actix_ws_listener::Offset;
///
/// let offset: Offset = "5f3a9c0e12d4b781:42".parse().unwrap();
/// assert_eq!(offset.epoch(), "5f3a9c0e12d4b781");
/// assert_eq!(offset.position(), 42);
/// assert_eq!(offset.to_string(), "5f3a9c0e12d4b781:42");
/// assert!("42".parse::<Offset>().is_err());
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Offset {
    epoch: Arc<str>,
    position: u64,
}

impl Offset {
    pub(crate) fn new(epoch: Arc<str>, position: u64) -> Offset {
        Offset { epoch, position }
    }

    /// The history's epoch.
    pub fn epoch(&self) -> &str {
        &self.epoch
    }

    /// The message's position within the epoch, from 1.
    pub fn position(&self) -> u64 {
        self.position
    }
}

impl fmt::Display for Offset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.epoch, self.position)
    }
}

/// A string that is not an [`Offset`] (`EPOCH:POSITION`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InvalidOffset(String);

impl fmt::Display for InvalidOffset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "not a history offset (EPOCH:POSITION): {:?}",
            self.0.chars().take(64).collect::<String>()
        )
    }
}

impl std::error::Error for InvalidOffset {}

impl FromStr for Offset {
    type Err = InvalidOffset;

    fn from_str(text: &str) -> Result<Offset, InvalidOffset> {
        let invalid = || InvalidOffset(text.to_owned());
        let (epoch, position) = text.rsplit_once(':').ok_or_else(invalid)?;
        let valid_epoch = !epoch.is_empty()
            && epoch.len() <= 64
            && epoch.bytes().all(|b| b.is_ascii_alphanumeric());
        if !valid_epoch || position.is_empty() || !position.bytes().all(|b| b.is_ascii_digit()) {
            return Err(invalid());
        }
        let position = position.parse().map_err(|_| invalid())?;
        Ok(Offset::new(epoch.into(), position))
    }
}

/// What a read of the history after an offset found.
#[derive(Debug, PartialEq)]
pub(crate) enum Read {
    /// The next messages after the offset, in order (at most the number
    /// asked for); `more` when there may be more after the last one.
    Entries {
        entries: Vec<(Offset, Message)>,
        more: bool,
    },
    /// The history does not reach back to the offset: some message after it
    /// is no longer kept, or the offset is of another epoch, or from the
    /// future.
    Gap,
}

/// A random epoch: 16 hex digits from the standard library's per-process
/// random hash keys and the clock.
pub(crate) fn new_epoch() -> Arc<str> {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    hasher.write_u128(nanos);
    hasher.write_u32(std::process::id());
    format!("{:016x}", hasher.finish()).into()
}

/// The history of a group of one process: the last messages in memory.
pub(crate) struct Ring {
    epoch: Arc<str>,
    /// Position of the last message recorded (0: none yet).
    last: u64,
    /// The highest position no longer kept (trimmed by count or age).
    dropped_through: u64,
    entries: VecDeque<(u64, Instant, Message)>,
    len: usize,
    max_age: Duration,
}

impl Ring {
    pub(crate) fn new(history: &History) -> Ring {
        Ring {
            epoch: new_epoch(),
            last: 0,
            dropped_through: 0,
            entries: VecDeque::new(),
            len: history.len,
            max_age: history.max_age,
        }
    }

    /// Records `message`; returns its offset.
    pub(crate) fn push(&mut self, message: Message, now: Instant) -> Offset {
        self.last += 1;
        if self.entries.len() == self.len {
            if let Some((position, ..)) = self.entries.pop_front() {
                self.dropped_through = position;
            }
        }
        self.entries.push_back((self.last, now, message));
        Offset::new(Arc::clone(&self.epoch), self.last)
    }

    /// At most `max` messages after `since`, or a gap.
    pub(crate) fn after(&mut self, since: &Offset, max: usize, now: Instant) -> Read {
        self.expire(now);
        if *since.epoch != *self.epoch
            || since.position > self.last
            || self.dropped_through > since.position
        {
            return Read::Gap;
        }
        let first = self.entries.front().map_or(self.last + 1, |entry| entry.0);
        let skip = usize::try_from(since.position + 1 - first).unwrap_or(usize::MAX);
        let entries: Vec<(Offset, Message)> = self
            .entries
            .iter()
            .skip(skip)
            .take(max)
            .map(|(position, _, message)| {
                (
                    Offset::new(Arc::clone(&self.epoch), *position),
                    message.clone(),
                )
            })
            .collect();
        let more = entries
            .last()
            .is_some_and(|(offset, _)| offset.position < self.last);
        Read::Entries { entries, more }
    }

    /// Drops what is older than `max_age`.
    fn expire(&mut self, now: Instant) {
        while let Some((position, at, _)) = self.entries.front() {
            if now.saturating_duration_since(*at) <= self.max_age {
                break;
            }
            self.dropped_through = *position;
            self.entries.pop_front();
        }
    }

    /// Messages kept now.
    #[cfg(test)]
    fn kept(&self) -> usize {
        self.entries.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ring(len: usize, max_age: Duration) -> Ring {
        Ring::new(&History::new(len, max_age))
    }

    fn positions(read: &Read) -> Vec<u64> {
        match read {
            Read::Entries { entries, .. } => entries.iter().map(|(o, _)| o.position()).collect(),
            Read::Gap => panic!("a gap"),
        }
    }

    #[test]
    fn offsets_print_and_parse_back() {
        let offset = Offset::new("00ff".into(), 7);
        assert_eq!(offset.to_string().parse::<Offset>(), Ok(offset));
        for bad in [
            "",
            ":",
            "ab:",
            ":3",
            "ab:-1",
            "a b:3",
            "ab:3x",
            "ab:99999999999999999999",
        ] {
            assert!(bad.parse::<Offset>().is_err(), "{bad:?}");
        }
    }

    #[test]
    fn after_gives_what_came_after_in_pages() {
        let now = Instant::now();
        let mut ring = ring(100, Duration::from_secs(60));
        let offsets: Vec<Offset> = (0..10)
            .map(|i| ring.push(Message::from(format!("m{i}")), now))
            .collect();
        let read = ring.after(&offsets[2], 4, now);
        assert_eq!(positions(&read), vec![4, 5, 6, 7]);
        assert!(matches!(read, Read::Entries { more: true, .. }));
        let read = ring.after(&offsets[6], 4, now);
        assert_eq!(positions(&read), vec![8, 9, 10]);
        assert!(matches!(read, Read::Entries { more: false, .. }));
        let read = ring.after(&offsets[9], 4, now);
        assert_eq!(positions(&read), Vec::<u64>::new());
        // From before the first message: everything.
        let start = Offset::new(Arc::clone(&ring.epoch), 0);
        assert_eq!(positions(&ring.after(&start, 100, now)).len(), 10);
    }

    #[test]
    fn an_offset_older_than_the_kept_messages_is_a_gap() {
        let now = Instant::now();
        let mut ring = ring(3, Duration::from_secs(60));
        let offsets: Vec<Offset> = (0..5).map(|_| ring.push(Message::from("x"), now)).collect();
        assert_eq!(ring.kept(), 3);
        // 2 was dropped, so whoever saw only 1 missed it.
        assert_eq!(ring.after(&offsets[0], 10, now), Read::Gap);
        // Whoever saw 2 misses nothing that is gone.
        assert_eq!(positions(&ring.after(&offsets[1], 10, now)), vec![3, 4, 5]);
    }

    #[test]
    fn another_epoch_or_a_future_position_is_a_gap() {
        let now = Instant::now();
        let mut ring = ring(10, Duration::from_secs(60));
        let offset = ring.push(Message::from("x"), now);
        let other = Offset::new("feed".into(), offset.position());
        assert_eq!(ring.after(&other, 10, now), Read::Gap);
        let future = Offset::new(Arc::clone(&ring.epoch), 2);
        assert_eq!(ring.after(&future, 10, now), Read::Gap);
    }

    #[test]
    fn messages_older_than_max_age_leave_the_history() {
        let start = Instant::now();
        let mut ring = ring(10, Duration::from_secs(5));
        let first = ring.push(Message::from("old"), start);
        let second = ring.push(Message::from("new"), start + Duration::from_secs(4));
        let later = start + Duration::from_secs(6);
        // "old" expired: whoever saw nothing before it missed it.
        let before = Offset::new(Arc::clone(&ring.epoch), 0);
        assert_eq!(ring.after(&before, 10, later), Read::Gap);
        // Whoever saw "old" misses only "new", still kept.
        assert_eq!(positions(&ring.after(&first, 10, later)), vec![2]);
        // A quiet room: everything expired, but whoever saw the last missed nothing.
        let much_later = start + Duration::from_secs(60);
        assert_eq!(
            positions(&ring.after(&second, 10, much_later)),
            Vec::<u64>::new()
        );
        assert_eq!(ring.kept(), 0);
    }
}
