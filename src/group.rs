//! Broadcast: one message to every socket of a set ([`Group`]), with a
//! report of what happened to it ([`Broadcast`]).
//!
//! This module owns group membership and the rule that a member found closed
//! during a broadcast leaves the group. It sends only through the socket's
//! own send path (`Socket::send_shared`, [`Socket::send`] with a payload
//! compressed once for members that share it), so it inherits the socket's
//! promises (never panics, bounded outbound memory, per-connection order)
//! and must not touch frames, mailboxes or listeners itself. A group opened
//! through a [`Cluster`](crate::Cluster) also reaches the other nodes, through
//! the `Fanout` the cluster gives it; this module never knows the broker.

use std::{
    collections::HashSet,
    fmt,
    sync::{Arc, Mutex, MutexGuard, Weak},
};

#[cfg(feature = "redis")]
use crate::{
    cluster_error::ClusterError,
    fanout::{Fanout, Pending},
};
use crate::{command::SharedPayload, error::SendError, message::Message, socket::Socket};

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
/// With the `redis` feature, [`Cluster::group`](crate::Cluster::group)
/// opens a named group that is also a `Group`: the same methods, the same
/// report, and every broadcast also reaches the members that the other
/// processes hold in the group of that name. Membership stays per process
/// ([`Group::len`] counts this process's members). Code written against a
/// `Group` works unchanged with either.
#[derive(Clone, Default)]
pub struct Group {
    inner: Arc<Inner>,
}

/// What the handles of one group share.
#[derive(Default)]
struct Inner {
    members: Mutex<HashSet<Socket>>,
    /// The other nodes, for a group opened through a cluster.
    #[cfg(feature = "redis")]
    fanout: Option<Box<dyn Fanout>>,
}

/// A group that does not keep its members alive: the cluster's registry of
/// open groups holds these, so that dropping the last [`Group`] handle
/// closes the group (and its `Fanout` unsubscribes).
#[cfg(feature = "redis")]
#[derive(Clone)]
pub(crate) struct WeakGroup(Weak<Inner>);

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

/// What a broadcast did: how many members it was queued for, how many
/// refused it for backpressure, how many were found closed (and removed).
///
/// The three counts add up to the number of this process's members the
/// broadcast was addressed to. For a group opened through a
/// [`Cluster`](crate::Cluster), `published()` (feature `redis`) waits for
/// the broker to accept the copy for the other processes; dropping the
/// report does not cancel that publish.
///
/// ```no_run
/// # fn demo(group: actix_ws_listener::Group) {
/// let report = group.broadcast("tick");
/// if report.backpressured > 0 {
///     log::warn!("{} slow clients missed a tick", report.backpressured);
/// }
/// log::debug!("tick sent to {} clients, {} had left", report.sent, report.closed);
/// # }
/// ```
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct Broadcast {
    /// Members the message was queued for: the promise of [`Socket::send`]
    /// returning `Ok` (queued in order on that connection), not that the
    /// client received it.
    pub sent: usize,
    /// Members that refused the message with [`SendError::Backpressure`]:
    /// their client is not reading fast enough and their outbound buffer is
    /// full. They missed this message and stay in the group, unless the
    /// socket is no longer open after the refusal; under
    /// [`BackpressurePolicy::Close`](crate::BackpressurePolicy::Close) the
    /// refusal closes the connection, and a broadcast removes the member
    /// once its socket reports closed.
    pub backpressured: usize,
    /// Members whose socket was closing or closed ([`SendError::Closed`]);
    /// they have been removed from the group.
    pub closed: usize,
    /// The copy for the other nodes: `None` for a local group.
    #[cfg(feature = "redis")]
    published: Option<Pending>,
}

impl Broadcast {
    /// Members the broadcast was addressed to: `sent + backpressured + closed`.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// let report = Group::new().broadcast("nobody hears this");
    /// assert_eq!(report.total(), 0);
    /// ```
    pub fn total(&self) -> usize {
        self.sent + self.backpressured + self.closed
    }

    /// Waits until the broker accepted the copy for the other nodes (every
    /// node subscribed at that moment will deliver it), or it failed. A
    /// local group's broadcast has no such copy: `Ok` at once.
    ///
    /// ```no_run
    /// # async fn demo(room: actix_ws_listener::Group) {
    /// if let Err(error) = room.broadcast("hello").published().await {
    ///     log::warn!("only this process's members got it: {error}");
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClusterError::Backlog`] when the publish queue was full,
    /// [`ClusterError::Unreachable`], [`ClusterError::Refused`] or
    /// [`ClusterError::Timeout`] when Redis failed or did not answer,
    /// [`ClusterError::Stopped`] when the cluster stopped first.
    #[cfg(feature = "redis")]
    #[cfg_attr(docsrs, doc(cfg(feature = "redis")))]
    pub async fn published(self) -> Result<(), ClusterError> {
        match self.published {
            None => Ok(()),
            Some(Ok(answer)) => answer.await.map_err(|_| ClusterError::Stopped)?,
            Some(Err(refused)) => Err(refused),
        }
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
    pub(crate) fn with_fanout(fanout: Box<dyn Fanout>) -> Group {
        Group {
            inner: Arc::new(Inner {
                members: Mutex::default(),
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
    /// [`Cluster::group`](crate::Cluster::group); `None` for a group of
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
        self.lock().remove(socket)
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
        self.lock().contains(socket)
    }

    /// Number of members, closed ones that no broadcast has met yet included.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert_eq!(Group::new().len(), 0);
    /// ```
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// True when the group has no member.
    ///
    /// ```
    /// # use actix_ws_listener::Group;
    /// assert!(Group::new().is_empty());
    /// ```
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
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
        let report = self.send_to_members(&message, Some(skip));
        self.publish(report, &message, Some(skip))
    }

    /// Delivers a broadcast that came from another node to this process's
    /// members only (the excluded socket, if any, lives on the origin).
    #[cfg(feature = "redis")]
    pub(crate) fn deliver(&self, message: &Message) -> Broadcast {
        self.send_to_members(message, None)
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

    /// A snapshot of the members, for sending to them one by one (a
    /// different message each, say). Later changes to the group do not
    /// affect it.
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
        self.lock().iter().cloned().collect()
    }

    fn send_to_members(&self, message: &Message, skip: Option<&Socket>) -> Broadcast {
        let mut report = Broadcast::default();
        // Members that compress without context takeover share one
        // compressed payload; the others compress in their own context.
        let shared = SharedPayload::default();
        let mut members = self.lock();
        // Under the lock, so every member sees broadcasts in one order.
        members.retain(|socket| {
            if skip == Some(socket) {
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
        drop(members);
        log::trace!(
            "broadcast of {} bytes: {} sent, {} backpressured, {} closed",
            message.len(),
            report.sent,
            report.backpressured,
            report.closed
        );
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
