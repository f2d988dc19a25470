//! Broadcast: one message to every socket of a set ([`Group`]), with a
//! report of what happened to it ([`Broadcast`]).
//!
//! This module owns group membership and the rule that a member found closed
//! during a broadcast leaves the group. It sends only through the socket's
//! own send path (`Socket::send_shared`, [`Socket::send`] with a payload
//! compressed once for members that share it), so it inherits the socket's
//! promises (never panics, bounded outbound memory, per-connection order)
//! and must not touch frames, mailboxes or listeners itself. A group opened
//! through a `Cluster` (feature `redis`) also reaches the other nodes, through
//! the `Fanout` the cluster gives it; this module never knows the broker.

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

#[cfg(feature = "redis")]
use crate::fanout::Fanout;
use crate::{
    broadcast::Broadcast,
    command::SharedPayload,
    error::SendError,
    message::Message,
    presence::{Member, Presence, PresenceEvent},
    socket::Socket,
};

mod recovery;
mod replay;

use recovery::Recorded;

/// A set of sockets that receive the same messages: a chat room, the
/// subscribers of a topic, every client of a dashboard.
///
/// Cloning a group shares it (one reference count); it is `Send + Sync`, so
/// listeners, other actors, spawned tasks and plain threads can all hold a
/// clone and insert, remove or broadcast. Members are kept by
/// [`Socket::id`]: inserting a clone of a member's socket changes nothing.
///
/// # Cost of a broadcast
///
/// The message is converted once. Each member then costs one reference-count
/// clone of the payload ([`Message`] holds `Bytes` or `ByteString`, never a
/// copy) and one command in that connection's mailbox; the payload is not
/// copied by the group. Each connection's own actor later encodes the frame
/// into its write buffer (and compresses it, when the client negotiated
/// permessage-deflate), and each member's outbound limit is charged the full
/// frame, as for any [`Socket::send`].
///
/// # Membership
///
/// The group holds a clone of each member's socket until it is removed:
/// remove a socket in [`Listener::on_close`](crate::Listener::on_close), or
/// let the next broadcast drop it (a member whose connection is closing or
/// closed is removed when a broadcast meets it). A held socket of a finished
/// connection keeps only a small allocation alive (the socket's shared state
/// and the end of its mailbox), not the connection.
///
/// # Order and locking
///
/// A broadcast sends to every member while it holds the group's lock, so two
/// broadcasts through one group reach every member in the same order, and
/// `insert` or `remove` called during a broadcast waits for it to finish.
/// Sends never block and run no user code (no callback can re-enter the
/// group), so the lock is held for about one mailbox push per member.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{CloseCode, Group, Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Room {
///     group: Group,
/// }
///
/// impl Listener for Room {
///     fn on_open(&mut self, socket: &Socket) {
///         self.group.insert(socket);
///     }
///
///     fn on_message(&mut self, _: &Socket, message: Message) {
///         // Everyone, the sender too.
///         self.group.broadcast(message);
///     }
///
///     fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
///         self.group.remove(socket);
///     }
/// }
///
/// async fn ws(upgrade: WebSocketUpgrade, group: web::Data<Group>) -> impl Responder {
///     upgrade.listen(Room { group: group.get_ref().clone() })
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let group = web::Data::new(Group::new());
///     HttpServer::new(move || App::new().app_data(group.clone()).route("/ws", web::get().to(ws)))
///         .bind("127.0.0.1:8080")?
///         .run()
///         .await
/// }
/// ```
///
/// # Across processes
///
/// With the `redis` feature, `Cluster::group` (feature `redis`)
/// opens a named group that is also a `Group`: the same methods, the same
/// report, and every broadcast also reaches the members that the other
/// processes hold in the group of that name. Membership stays per process
/// ([`Group::len`] counts this process's members). Code written against a
/// `Group` works unchanged with either.
///
/// # History and recovery
///
/// A group opened with [`Group::with_history`] (or
/// `Cluster::group_with_history`, feature `redis`) records each broadcast
/// with an [`Offset`](crate::Offset), and [`Group::recover`] gives a
/// returning client what it missed, then live messages (S21); see
/// [`History`](crate::History).
#[derive(Clone, Default)]
pub struct Group {
    inner: Arc<Inner>,
}

/// What the handles of one group share.
#[derive(Default)]
struct Inner {
    members: Mutex<HashSet<Socket>>,
    presence: Presence,
    /// The group's history and its recovering sockets (S21), when it keeps one.
    history: Option<Recorded>,
    /// The other nodes, for a group opened through a cluster.
    #[cfg(feature = "redis")]
    fanout: Option<Box<dyn Fanout>>,
}

/// A group that does not keep its members alive: the cluster's registry of
/// open groups holds these, so that dropping the last [`Group`] handle
/// closes the group (and its `Fanout` unsubscribes).
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct WeakGroup(std::sync::Weak<Inner>);

#[cfg(feature = "redis")]
impl WeakGroup {
    /// The group, if a handle of it is still alive.
    pub(crate) fn upgrade(&self) -> Option<Group> {
        self.0.upgrade().map(|inner| Group { inner })
    }

    /// True while a handle of the group is alive.
    pub(crate) fn is_alive(&self) -> bool {
        self.0.strong_count() > 0
    }
}

impl Group {
    /// An empty group.
    ///
    /// ```
    /// use actix_ws_listener::Group;
    ///
    /// let group = Group::new();
    /// assert!(group.is_empty());
    /// ```
    pub fn new() -> Group {
        Group::default()
    }

    /// A group whose broadcasts also go to the other nodes through
    /// `fanout`.
    #[cfg(feature = "redis")]
    pub(crate) fn with_fanout(
        fanout: Box<dyn Fanout>,
        history: Option<crate::history::History>,
    ) -> Group {
        Group {
            inner: Arc::new(Inner {
                members: Mutex::default(),
                presence: Presence::default(),
                history: history.map(|history| Recorded::new(history, false)),
                fanout: Some(fanout),
            }),
        }
    }

    /// A handle that does not keep the group open.
    #[cfg(feature = "redis")]
    pub(crate) fn downgrade(&self) -> WeakGroup {
        WeakGroup(Arc::downgrade(&self.inner))
    }

    /// The name it was opened with through
    /// `Cluster::group` (feature `redis`); `None` for a group of
    /// this process alone ([`Group::new`]).
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert_eq!(Group::new().name(), None);
    /// ```
    pub fn name(&self) -> Option<&str> {
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return Some(fanout.name());
        }
        None
    }

    /// Adds a socket; returns `false` if it was already a member (by
    /// [`Socket::id`]). Inserting a closed socket is allowed: the next
    /// broadcast removes it.
    ///
    /// ```no_run
    /// use actix_ws_listener::{Group, Listener, Socket};
    ///
    /// struct Member(Group);
    ///
    /// impl Listener for Member {
    ///     fn on_open(&mut self, socket: &Socket) {
    ///         assert!(self.0.insert(socket));
    ///         assert!(!self.0.insert(&socket.clone()), "one membership per connection");
    ///     }
    /// }
    /// ```
    pub fn insert(&self, socket: &Socket) -> bool {
        self.lock().insert(socket.clone())
    }

    /// Removes a socket; returns `false` if it was not a member.
    ///
    /// ```no_run
    /// use actix_ws_listener::{CloseCode, Group, Listener, Socket};
    ///
    /// struct Member(Group);
    ///
    /// impl Listener for Member {
    ///     fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
    ///         self.0.remove(socket);
    ///     }
    /// }
    /// ```
    pub fn remove(&self, socket: &Socket) -> bool {
        let recovering = self.forget_recovering(socket);
        self.lock().remove(socket) || recovering
    }

    /// True if the socket (by [`Socket::id`]) is a member.
    ///
    /// ```no_run
    /// # fn demo(group: actix_ws_listener::Group, socket: actix_ws_listener::Socket) {
    /// if !group.contains(&socket) {
    ///     if let Err(error) = socket.send("you are not in this room") {
    ///         log::debug!("ws {}: not told: {error}", socket.id());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn contains(&self, socket: &Socket) -> bool {
        // One lock at a time: a broadcast takes the history's, then this one.
        let live = self.lock().contains(socket);
        live || self.is_recovering(socket)
    }

    /// Number of members, closed ones that no broadcast has met yet included.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert_eq!(Group::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        let live = self.lock().len();
        live + self.recovering_count()
    }

    /// True when the group has no member.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert!(Group::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Sends one message to every member, the payload shared rather than
    /// copied, and reports what happened. Members found closing or closed are
    /// removed from the group. Never blocks, never panics; a member that
    /// refuses the message does not stop the others from getting it.
    ///
    /// ```no_run
    /// use std::time::Duration;
    /// use actix_ws_listener::Group;
    ///
    /// // From any thread or task: a group is Send + Sync.
    /// fn start_clock(group: Group) {
    ///     std::thread::spawn(move || loop {
    ///         let report = group.broadcast(format!("{} clients", group.len()));
    ///         log::debug!("{report:?}");
    ///         std::thread::sleep(Duration::from_secs(1));
    ///     });
    /// }
    /// ```
    pub fn broadcast(&self, message: impl Into<Message>) -> Broadcast {
        let message = message.into();
        if self.inner.history.is_some() {
            return self.record(message, None);
        }
        let report = self.send_to_members(&message, None);
        self.publish(report, &message, None)
    }

    /// Sends one message to every member except `skip` (usually the sender),
    /// as [`Group::broadcast`] does. `skip` need not be a member, and is not
    /// counted in the report.
    ///
    /// ```no_run
    /// use actix_ws_listener::{Group, Listener, Message, Socket};
    ///
    /// struct Relay(Group);
    ///
    /// impl Listener for Relay {
    ///     fn on_message(&mut self, socket: &Socket, message: Message) {
    ///         // Everyone else hears it; the sender does not get an echo.
    ///         self.0.broadcast_except(socket, message);
    ///     }
    /// }
    /// ```
    pub fn broadcast_except(&self, skip: &Socket, message: impl Into<Message>) -> Broadcast {
        let message = message.into();
        if self.inner.history.is_some() {
            return self.record(message, Some(skip));
        }
        let report = self.send_to_members(&message, Some(skip.id()));
        self.publish(report, &message, Some(skip))
    }

    /// Sends one message to this process's members only (except the socket
    /// whose [`Socket::id`] is `skip`, as [`Member::local_socket`] gives it),
    /// even in a clustered group: for what each node says to its own
    /// members, such as a line rendered from a [`PresenceEvent`] that every
    /// node receives.
    ///
    /// ```no_run
    /// # fn demo(room: actix_ws_listener::Group) {
    /// use actix_ws_listener::PresenceEvent;
    ///
    /// let here = room.clone();
    /// room.on_presence(move |event| {
    ///     if let PresenceEvent::Join(member) = event {
    ///         // Every node gets the event: each tells its own members.
    ///         here.broadcast_here(member.local_socket, format!("* {} joined", member.meta));
    ///     }
    /// });
    /// # }
    /// ```
    pub fn broadcast_here(&self, skip: Option<u64>, message: impl Into<Message>) -> Broadcast {
        let message = message.into();
        if let Some(recorded) = &self.inner.history {
            // Not recorded, but in order with what is.
            return self.deliver_at(recorded, None, &message, skip);
        }
        self.send_to_members(&message, skip)
    }

    /// Tracks `socket` in the group's presence with the app's `meta` (a
    /// display name, say): it counts in [`Group::member_count`] and shows in
    /// [`Group::members`] on every node, and every node's
    /// [`Group::on_presence`] callbacks get a [`PresenceEvent::Join`].
    /// Presence is separate from delivery: [`Group::insert`] decides who
    /// gets broadcasts. Never blocks; in a clustered group the join is
    /// queued for Redis like a broadcast.
    ///
    /// ```no_run
    /// use actix_ws_listener::{CloseCode, Group, Listener, Socket};
    ///
    /// struct Member {
    ///     room: Group,
    ///     name: String,
    /// }
    ///
    /// impl Listener for Member {
    ///     fn on_open(&mut self, socket: &Socket) {
    ///         self.room.insert(socket);
    ///         self.room.track(socket, self.name.clone());
    ///     }
    ///
    ///     fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
    ///         self.room.remove(socket);
    ///         self.room.untrack(socket);
    ///     }
    /// }
    /// ```
    pub fn track(&self, socket: &Socket, meta: impl Into<String>) {
        self.change_presence(socket, meta.into(), false);
    }

    /// Changes a tracked member's metadata (a rename): every node's
    /// callbacks get a [`PresenceEvent::Update`]. Tracks the socket if it
    /// was not tracked (then they get a [`PresenceEvent::Join`]); the same
    /// metadata again changes nothing and tells nothing.
    pub fn update(&self, socket: &Socket, meta: impl Into<String>) {
        self.change_presence(socket, meta.into(), true);
    }

    // `update` only names the broker's message: what the callbacks hear
    // follows from the view ([`Presence::announce`]).
    #[cfg_attr(not(feature = "redis"), allow(unused_variables))]
    fn change_presence(&self, socket: &Socket, meta: String, update: bool) {
        let id = self.member_id(socket.id());
        self.inner
            .presence
            .track_own(id.clone(), socket.id(), meta.clone());
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            fanout.track(socket.id(), &meta, update);
            return;
        }
        if let Some(event) = self.inner.presence.announce(&id) {
            self.inner.presence.emit(&event);
        }
    }

    /// Removes `socket` from the group's presence; `false` if it was not
    /// tracked. Every node's callbacks get a [`PresenceEvent::Leave`].
    pub fn untrack(&self, socket: &Socket) -> bool {
        if self.inner.presence.untrack_own(socket.id()).is_none() {
            return false;
        }
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            // The view changes when the leave comes back from the broker,
            // with every other node's.
            fanout.untrack(socket.id());
            return true;
        }
        if let Some(event) = self.inner.presence.left(&self.member_id(socket.id())) {
            self.inner.presence.emit(&event);
        }
        true
    }

    /// Every tracked member on every node, sorted by id. Reads this
    /// process's view: no round trip. In a clustered group the view follows
    /// the broker (joins and leaves as they are published, a full snapshot
    /// every few seconds; see `Cluster` (feature `redis`) for the bounds).
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// let room = Group::new();
    /// let names: Vec<String> = room.members().into_iter().map(|m| m.meta).collect();
    /// assert!(names.is_empty());
    /// ```
    pub fn members(&self) -> Vec<Member> {
        self.inner.presence.members()
    }

    /// Number of tracked members on every node, as [`Group::members`] sees
    /// them.
    pub fn member_count(&self) -> usize {
        self.inner.presence.count()
    }

    /// Calls `callback` for every join, update and leave of the group's
    /// presence, on every node. The events follow this process's view
    /// ([`Group::members`]): each member that enters it is heard once as a
    /// join, each change of its metadata as an update, and its departure
    /// as a leave, whether the change came from the broker's channel or
    /// from a sweep that repaired the view (a change lost in an outage, in
    /// a clustered group). It runs on the thread that made the change
    /// (a local group) or on the cluster's thread (a clustered group): it
    /// must not block; sending to sockets and broadcasting are fine. It
    /// stays registered as long as the group lives.
    pub fn on_presence(&self, callback: impl Fn(&PresenceEvent) + Send + Sync + 'static) {
        self.inner.presence.subscribe(Arc::new(callback));
    }

    /// The group-wide id of a member of this process.
    fn member_id(&self, socket: u64) -> String {
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return fanout.member_id(socket);
        }
        socket.to_string()
    }

    /// The group's presence, for the cluster that keeps it in step.
    #[cfg(feature = "redis")]
    pub(crate) fn presence(&self) -> &Presence {
        &self.inner.presence
    }

    /// Hands the message to the other nodes, for a clustered group.
    #[cfg_attr(not(feature = "redis"), allow(unused_variables, clippy::unused_self))]
    fn publish(&self, report: Broadcast, message: &Message, skip: Option<&Socket>) -> Broadcast {
        #[cfg(feature = "redis")]
        if let Some(fanout) = &self.inner.fanout {
            return Broadcast {
                published: Some(fanout.publish(message, skip.map(Socket::id))),
                ..report
            };
        }
        report
    }

    /// A snapshot of the members for sending to them one by one, sockets
    /// replaying their history ([`Group::recover`]) included: a message sent
    /// to one may reach it before its replay ends. Later changes do not affect it.
    ///
    /// ```no_run
    /// # fn demo(group: actix_ws_listener::Group) {
    /// for (rank, socket) in group.sockets().iter().enumerate() {
    ///     // Closed (it is leaving) or backpressure (it is not reading): skip it.
    ///     if let Err(error) = socket.send(format!("you are number {}", rank + 1)) {
    ///         log::debug!("ws {}: rank not sent: {error}", socket.id());
    ///     }
    /// }
    /// # }
    /// ```
    pub fn sockets(&self) -> Vec<Socket> {
        self.members_and_recovering()
    }

    fn send_to_members(&self, message: &Message, skip: Option<u64>) -> Broadcast {
        let mut report = Broadcast::default();
        send_each(&mut self.lock(), message, skip, &mut report, |_| true);
        report
    }

    fn lock(&self) -> MutexGuard<'_, HashSet<Socket>> {
        // No code that can panic runs under this lock while the set is
        // inconsistent, so a poisoned lock still holds a valid set.
        self.inner
            .members
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Sends `message` to `members` but `skip` and those `wanted` refuses, drops
/// the closed ones, counts in `report`. Under the lock: one order for all.
fn send_each(
    members: &mut HashSet<Socket>,
    message: &Message,
    skip: Option<u64>,
    report: &mut Broadcast,
    mut wanted: impl FnMut(&Socket) -> bool,
) {
    // Members without context takeover share one compressed payload.
    let shared = SharedPayload::default();
    members.retain(|socket| {
        if skip == Some(socket.id()) || !wanted(socket) {
            return true;
        }
        match socket.send_shared(message.clone(), &shared) {
            Ok(()) => {
                report.sent += 1;
                true
            }
            // A member past `max_outbound_buffer` misses this message
            // and stays, unless its socket is no longer open.
            Err(SendError::Backpressure { .. }) => {
                report.backpressured += 1;
                socket.is_open()
            }
            Err(_) => {
                report.closed += 1;
                false
            }
        }
    });
    log::trace!(
        "broadcast of {} bytes: {} sent, {} backpressured, {} closed",
        message.len(),
        report.sent,
        report.backpressured,
        report.closed
    );
}

impl fmt::Debug for Group {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Group")
            .field("name", &self.name())
            .field("members", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::Stream;

    use crate::command::{Command, Commands, Link};

    /// Stands in for connections: keeps each member's command channel open
    /// and counts the messages queued on it. Nothing ever writes, so what
    /// is queued stays queued.
    #[derive(Default)]
    struct Members(Vec<Commands>);

    impl Members {
        fn socket(&mut self, max_outbound: usize) -> Socket {
            let counters = Link::detached(max_outbound);
            self.0.push(Commands::new(Arc::clone(&counters)));
            Socket::new(counters)
        }

        /// Messages queued so far, over every member.
        fn received(&mut self) -> usize {
            let mut sends = 0;
            let waker = futures::task::noop_waker();
            let mut cx = std::task::Context::from_waker(&waker);
            for commands in &mut self.0 {
                while let std::task::Poll::Ready(Some(command)) =
                    std::pin::Pin::new(&mut *commands).poll_next(&mut cx)
                {
                    sends += usize::from(matches!(command, Command::Send(..)));
                }
            }
            sends
        }
    }

    #[test]
    fn group_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Group>();
        fn assert_send<T: Send + 'static>() {}
        assert_send::<Broadcast>();
    }

    #[test]
    fn membership_goes_by_socket_id() {
        let mut members = Members::default();
        let group = Group::new();
        let a = members.socket(1 << 20);
        let b = members.socket(1 << 20);
        assert!(group.insert(&a));
        assert!(!group.insert(&a.clone()));
        assert!(group.insert(&b));
        assert_eq!(group.len(), 2);
        assert!(group.clone().contains(&a), "clones share members");
        assert!(group.remove(&a));
        assert!(!group.remove(&a));
        assert!(!group.contains(&a));
        assert_eq!(group.sockets(), vec![b]);
    }

    #[test]
    fn broadcast_reaches_every_member_once() {
        let mut members = Members::default();
        let group = Group::new();
        for _ in 0..3 {
            group.insert(&members.socket(1 << 20));
        }
        let report = group.broadcast("hello");
        assert_eq!(
            (report.sent, report.backpressured, report.closed),
            (3, 0, 0)
        );
        assert_eq!(report.total(), 3);
        assert_eq!(members.received(), 3);
    }

    #[test]
    fn broadcast_except_skips_the_sender() {
        let mut members = Members::default();
        let group = Group::new();
        let sender = members.socket(1 << 20);
        group.insert(&sender);
        group.insert(&members.socket(1 << 20));
        let report = group.broadcast_except(&sender, "hi");
        assert_eq!((report.sent, report.total()), (1, 1));
        assert!(group.contains(&sender));
        assert_eq!(members.received(), 1);
    }

    #[test]
    fn closed_members_are_dropped_during_broadcast() {
        let mut members = Members::default();
        let group = Group::new();
        let open = members.socket(1 << 20);
        let closed = members.socket(1 << 20);
        group.insert(&open);
        group.insert(&closed);
        closed.close().expect("first close");
        let report = group.broadcast("after close");
        assert_eq!((report.sent, report.closed), (1, 1));
        assert!(!group.contains(&closed));
        assert_eq!(group.len(), 1);
    }

    #[test]
    fn backpressured_members_miss_the_message_and_stay() {
        let mut members = Members::default();
        let group = Group::new();
        let small = members.socket(1024);
        group.insert(&small);
        group.insert(&members.socket(1 << 20));
        // The first message fills the small member's buffer, the second
        // does not fit.
        let first = group.broadcast(vec![0u8; 1000]);
        assert_eq!((first.sent, first.backpressured), (2, 0));
        let second = group.broadcast(vec![0u8; 1000]);
        assert_eq!(
            (second.sent, second.backpressured, second.closed),
            (1, 1, 0)
        );
        assert!(group.contains(&small));
        assert_eq!(group.len(), 2);
        assert_eq!(members.received(), 3);
    }
}
