//! Presence (S21): who is in a group on every node, with the metadata the
//! app gave each member, and the join, update and leave events.
//!
//! This module owns the per-group view of members and the event callbacks,
//! and nothing else: no sockets, no broker. A local
//! [`Group`](crate::Group) changes the view directly; a clustered one
//! changes it from what the broker carries (every node's joins, updates and
//! leaves, and a periodic snapshot), so that reading it never waits for the
//! network.

use std::{
    collections::BTreeMap,
    fmt,
    sync::{Arc, Mutex, MutexGuard},
};

/// One member of a group as presence sees it, on any node.
///
/// ```
/// # use actix_ws_listener::Group;
/// let room = Group::new();
/// assert!(room.members().is_empty());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Member {
    /// Unique across nodes: the socket's id, prefixed by its node's id in a
    /// clustered group. Opaque; compare, do not parse.
    pub id: String,
    /// The metadata given to [`Group::track`](crate::Group::track) (a
    /// display name, say).
    pub meta: String,
    /// The member's [`Socket::id`](crate::Socket::id) when it lives in this
    /// process; `None` for a member of another node.
    pub local_socket: Option<u64>,
}

/// A change of a group's presence, as every node sees it.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum PresenceEvent {
    /// A member was tracked.
    Join(Member),
    /// A tracked member's metadata changed
    /// ([`Group::update`](crate::Group::update)).
    Update(Member),
    /// A member was untracked, or its node stopped answering (in a
    /// clustered group, within the bound documented on
    /// `Cluster` (feature `redis`)).
    Leave(Member),
}

/// A callback given to [`Group::on_presence`](crate::Group::on_presence).
pub(crate) type Callback = Arc<dyn Fn(&PresenceEvent) + Send + Sync>;

/// One group's presence: the members of every node by id, the members
/// tracked in this process (by socket id), and the callbacks.
#[derive(Default)]
pub(crate) struct Presence {
    view: Mutex<BTreeMap<String, (String, Option<u64>)>>,
    own: Mutex<BTreeMap<u64, String>>,
    callbacks: Mutex<Vec<Callback>>,
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only whole inserts and removes run under these locks, and never user
    // code: a poisoned lock still holds a valid map.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Presence {
    /// Records a member of this process; `id` is its group-wide id.
    pub(crate) fn track_own(&self, id: String, socket: u64, meta: String) {
        lock(&self.own).insert(socket, meta.clone());
        lock(&self.view).insert(id, (meta, Some(socket)));
    }

    /// Forgets a member of this process; its metadata if it was tracked.
    pub(crate) fn untrack_own(&self, socket: u64) -> Option<String> {
        lock(&self.own).remove(&socket)
    }

    #[cfg(feature = "redis")]
    /// The members of this process: socket id and metadata.
    pub(crate) fn own(&self) -> Vec<(u64, String)> {
        lock(&self.own)
            .iter()
            .map(|(socket, meta)| (*socket, meta.clone()))
            .collect()
    }

    #[cfg(feature = "redis")]
    /// Applies a join or update seen on the broker (or made locally).
    pub(crate) fn joined(&self, member: &Member) {
        lock(&self.view).insert(
            member.id.clone(),
            (member.meta.clone(), member.local_socket),
        );
    }

    /// Applies a leave; the member's metadata if it was in the view.
    pub(crate) fn left(&self, id: &str) -> Option<String> {
        lock(&self.view).remove(id).map(|(meta, _)| meta)
    }

    #[cfg(feature = "redis")]
    /// Replaces the view with a snapshot read from the broker, keeping the
    /// members of this process (the process is their source of truth).
    pub(crate) fn replace(&self, snapshot: Vec<Member>) {
        let mut view: BTreeMap<_, _> = snapshot
            .into_iter()
            .filter(|member| member.local_socket.is_none())
            .map(|member| (member.id, (member.meta, None)))
            .collect();
        // Our own members as this process knows them: an untracked one
        // whose leave never came back from the broker goes now.
        let own: std::collections::BTreeSet<u64> = lock(&self.own).keys().copied().collect();
        let mut current = lock(&self.view);
        for (id, entry) in current.iter() {
            if entry.1.is_some_and(|socket| own.contains(&socket)) {
                view.insert(id.clone(), entry.clone());
            }
        }
        *current = view;
    }

    /// Every member on every node, by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        lock(&self.view)
            .iter()
            .map(|(id, (meta, local_socket))| Member {
                id: id.clone(),
                meta: meta.clone(),
                local_socket: *local_socket,
            })
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.view).len()
    }

    pub(crate) fn subscribe(&self, callback: Callback) {
        lock(&self.callbacks).push(callback);
    }

    /// Runs every callback with `event`, outside the locks.
    pub(crate) fn emit(&self, event: &PresenceEvent) {
        let callbacks = lock(&self.callbacks).clone();
        for callback in callbacks {
            callback(event);
        }
    }
}

impl fmt::Debug for Presence {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Presence")
            .field("members", &self.count())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn member(id: &str, meta: &str, local_socket: Option<u64>) -> Member {
        Member {
            id: id.into(),
            meta: meta.into(),
            local_socket,
        }
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_snapshot_replaces_other_nodes_and_keeps_our_own() {
        let presence = Presence::default();
        presence.track_own("a:1".into(), 1, "alice".into());
        presence.track_own("a:2".into(), 2, "gone".into());
        // Untracked, and its leave never came back (the broker was down).
        presence.untrack_own(2);
        presence.joined(&member("b:7", "bob", None));
        presence.replace(vec![
            member("c:3", "carol", None),
            member("a:1", "stale", Some(1)),
        ]);
        assert_eq!(
            presence.members(),
            vec![
                member("a:1", "alice", Some(1)),
                member("c:3", "carol", None)
            ]
        );
        assert_eq!(presence.left("c:3").as_deref(), Some("carol"));
        assert_eq!(presence.left("c:3"), None);
        assert_eq!(presence.count(), 1);
    }
}
