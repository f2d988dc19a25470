//! Presence (S21): who is in a group on every node, with the metadata the
//! app gave each member, and the join, update and leave events.
//!
//! This module owns the per-group view of members and the event callbacks,
//! and nothing else: no sockets, no broker. A local
//! [`Group`](crate::Group) changes the view directly; a clustered one
//! changes it from what the broker carries (every node's joins, updates and
//! leaves, and a periodic snapshot), so that reading it never waits for the
//! network. The events follow the view: each entry remembers what the
//! callbacks were told of it, so a change is heard once whichever way it
//! came, and a change the channel never carried is heard when a snapshot
//! repairs the view.

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

/// One group's presence: the view of every node's members, the members
/// tracked in this process, and the callbacks.
#[derive(Default)]
pub(crate) struct Presence {
    state: Mutex<State>,
    callbacks: Mutex<Vec<Callback>>,
}

#[derive(Default)]
struct State {
    /// Every member on every node, by id, as this process knows them.
    view: BTreeMap<String, Entry>,
    /// The members of this process by socket: their id and metadata.
    own: BTreeMap<u64, (String, String)>,
    /// A clustered group: per id, the generation of the last change the
    /// broker's channel made to it since the last snapshot (a snapshot read
    /// before that change must not undo it).
    #[cfg(feature = "redis")]
    changed: std::collections::HashMap<String, u64>,
    /// Counts the changes the channel made.
    #[cfg(feature = "redis")]
    generation: u64,
}

/// A member in the view, and what the callbacks were told of it.
struct Entry {
    meta: String,
    local_socket: Option<u64>,
    /// The metadata the callbacks last heard for this member; `None` while
    /// they have not heard of it (its join is still on its way).
    told: Option<String>,
}

impl Entry {
    fn member(&self, id: &str, meta: &str) -> Member {
        Member {
            id: id.to_owned(),
            meta: meta.to_owned(),
            local_socket: self.local_socket,
        }
    }

    /// The event that brings the callbacks up to date with this entry: a
    /// join for a member they have not heard of, an update for new
    /// metadata, nothing when they know it as it is.
    fn tell(&mut self, id: &str) -> Option<PresenceEvent> {
        let event = match &self.told {
            None => PresenceEvent::Join(self.member(id, &self.meta)),
            Some(told) if *told != self.meta => PresenceEvent::Update(self.member(id, &self.meta)),
            Some(_) => return None,
        };
        self.told = Some(self.meta.clone());
        Some(event)
    }

    /// The leave of this entry, removed from the view: only for a member
    /// the callbacks heard of, with the metadata they heard.
    fn tell_gone(&self, id: &str) -> Option<PresenceEvent> {
        let told = self.told.as_deref()?;
        Some(PresenceEvent::Leave(self.member(id, told)))
    }
}

/// Puts member `id` in `view` with `meta`, keeping what the callbacks were
/// told of it; returns its entry.
fn set(
    view: &mut BTreeMap<String, Entry>,
    id: String,
    meta: String,
    local_socket: Option<u64>,
) -> &mut Entry {
    let entry = view.entry(id).or_insert_with(|| Entry {
        meta: String::new(),
        local_socket,
        told: None,
    });
    entry.meta = meta;
    entry.local_socket = local_socket;
    entry
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    // Only whole inserts and removes run under these locks, and never user
    // code: a poisoned lock still holds a valid map.
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

impl Presence {
    /// Records a member of this process (`id` is its group-wide id) and
    /// puts it in the view at once. Its event comes from
    /// [`Presence::announce`] (a local group) or from the broker (a
    /// clustered one).
    pub(crate) fn track_own(&self, id: String, socket: u64, meta: String) {
        let mut state = lock(&self.state);
        state.own.insert(socket, (id.clone(), meta.clone()));
        set(&mut state.view, id, meta, Some(socket));
    }

    /// Forgets a member of this process; its metadata if it was tracked.
    pub(crate) fn untrack_own(&self, socket: u64) -> Option<String> {
        lock(&self.state).own.remove(&socket).map(|(_, meta)| meta)
    }

    /// The event that tells the callbacks about member `id` as the view
    /// has it now (a local group's track or update), if they must hear it.
    pub(crate) fn announce(&self, id: &str) -> Option<PresenceEvent> {
        lock(&self.state).view.get_mut(id)?.tell(id)
    }

    /// Removes member `id` from the view (a local group's untrack): its
    /// leave, if the callbacks heard of it.
    pub(crate) fn left(&self, id: &str) -> Option<PresenceEvent> {
        lock(&self.state).view.remove(id)?.tell_gone(id)
    }

    #[cfg(feature = "redis")]
    /// The members of this process: socket id and metadata.
    pub(crate) fn own(&self) -> Vec<(u64, String)> {
        lock(&self.state)
            .own
            .iter()
            .map(|(socket, (_, meta))| (*socket, meta.clone()))
            .collect()
    }

    #[cfg(feature = "redis")]
    /// How many changes the broker's channel has made so far: read before
    /// a snapshot is asked for, and given back to [`Presence::replace`].
    pub(crate) fn generation(&self) -> u64 {
        lock(&self.state).generation
    }

    #[cfg(feature = "redis")]
    /// Applies a join or update read from the broker's channel: the event,
    /// unless the callbacks already know the member as it is (a snapshot
    /// brought it first).
    pub(crate) fn apply_join(&self, member: Member) -> Option<PresenceEvent> {
        let mut state = lock(&self.state);
        state.note_change(&member.id);
        set(
            &mut state.view,
            member.id.clone(),
            member.meta,
            member.local_socket,
        )
        .tell(&member.id)
    }

    #[cfg(feature = "redis")]
    /// Applies a leave read from the broker's channel: the event, unless
    /// the member was not in the view (a snapshot removed it first).
    pub(crate) fn apply_leave(&self, id: &str) -> Option<PresenceEvent> {
        let mut state = lock(&self.state);
        state.note_change(id);
        state.view.remove(id)?.tell_gone(id)
    }

    #[cfg(feature = "redis")]
    /// Makes the view agree with a snapshot read from the broker after
    /// [`Presence::generation`] said `since`: other nodes' members as the
    /// snapshot has them, except those the channel changed since (the
    /// channel is newer), and this process's members as it tracks them
    /// (the process is their source of truth). Returns the events of what
    /// changed, in order: a change the channel never brought (a message
    /// lost in an outage, a repaired join) is heard once, like any other.
    pub(crate) fn replace(&self, snapshot: Vec<Member>, since: u64) -> Vec<PresenceEvent> {
        let mut state = lock(&self.state);
        let State {
            view, own, changed, ..
        } = &mut *state;
        let mut target: BTreeMap<String, (String, Option<u64>)> = snapshot
            .into_iter()
            .filter(|member| member.local_socket.is_none())
            .map(|member| (member.id, (member.meta, None)))
            .collect();
        for (socket, (id, meta)) in own.iter() {
            target.insert(id.clone(), (meta.clone(), Some(*socket)));
        }
        let newer = |id: &str| changed.get(id).is_some_and(|at| *at > since);
        let mut events = Vec::new();
        view.retain(|id, entry| {
            let gone = !target.contains_key(id) && (entry.local_socket.is_some() || !newer(id));
            if gone {
                events.extend(entry.tell_gone(id));
            }
            !gone
        });
        for (id, (meta, local_socket)) in target {
            if local_socket.is_none() && newer(&id) {
                continue;
            }
            events.extend(set(view, id.clone(), meta, local_socket).tell(&id));
        }
        changed.retain(|_, at| *at > since);
        events
    }

    /// Every member on every node, by id.
    pub(crate) fn members(&self) -> Vec<Member> {
        lock(&self.state)
            .view
            .iter()
            .map(|(id, entry)| entry.member(id, &entry.meta))
            .collect()
    }

    pub(crate) fn count(&self) -> usize {
        lock(&self.state).view.len()
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

impl State {
    #[cfg(feature = "redis")]
    fn note_change(&mut self, id: &str) {
        self.generation += 1;
        self.changed.insert(id.to_owned(), self.generation);
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

    fn join(id: &str, meta: &str, local_socket: Option<u64>) -> PresenceEvent {
        PresenceEvent::Join(member(id, meta, local_socket))
    }

    fn leave(id: &str, meta: &str, local_socket: Option<u64>) -> PresenceEvent {
        PresenceEvent::Leave(member(id, meta, local_socket))
    }

    #[test]
    fn a_local_member_is_announced_once_per_change() {
        let presence = Presence::default();
        presence.track_own("1".into(), 1, "alice".into());
        assert_eq!(presence.announce("1"), Some(join("1", "alice", Some(1))));
        presence.track_own("1".into(), 1, "alice".into());
        assert_eq!(presence.announce("1"), None, "nothing changed");
        presence.track_own("1".into(), 1, "alicia".into());
        assert_eq!(
            presence.announce("1"),
            Some(PresenceEvent::Update(member("1", "alicia", Some(1))))
        );
        assert_eq!(presence.untrack_own(1).as_deref(), Some("alicia"));
        assert_eq!(presence.left("1"), Some(leave("1", "alicia", Some(1))));
        assert_eq!(presence.left("1"), None);
        assert_eq!(presence.count(), 0);
    }

    #[test]
    #[cfg(feature = "redis")]
    fn the_channel_tells_each_change_once() {
        let presence = Presence::default();
        let bob = member("b:7", "bob", None);
        assert_eq!(
            presence.apply_join(bob.clone()),
            Some(join("b:7", "bob", None))
        );
        assert_eq!(presence.apply_join(bob), None, "a join heard twice");
        assert_eq!(presence.apply_leave("b:7"), Some(leave("b:7", "bob", None)));
        assert_eq!(presence.apply_leave("b:7"), None, "a leave heard twice");
        // An update for a member never heard of is its join.
        assert_eq!(
            presence.apply_join(member("c:1", "carol", None)),
            Some(join("c:1", "carol", None))
        );
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_snapshot_replaces_other_nodes_keeps_our_own_and_tells_what_changed() {
        let presence = Presence::default();
        presence.track_own("a:1".into(), 1, "alice".into());
        presence.track_own("a:2".into(), 2, "gone".into());
        assert!(presence
            .apply_join(member("a:2", "gone", Some(2)))
            .is_some());
        // Untracked, and its leave never came back (the broker was down).
        presence.untrack_own(2);
        assert!(presence.apply_join(member("b:7", "bob", None)).is_some());
        let since = presence.generation();
        let events = presence.replace(
            vec![
                member("c:3", "carol", None),
                member("a:1", "stale", Some(1)),
            ],
            since,
        );
        assert_eq!(
            events,
            vec![
                leave("a:2", "gone", Some(2)),
                leave("b:7", "bob", None),
                // Its join never came back either: heard now, once.
                join("a:1", "alice", Some(1)),
                join("c:3", "carol", None),
            ]
        );
        assert_eq!(
            presence.members(),
            vec![
                member("a:1", "alice", Some(1)),
                member("c:3", "carol", None)
            ]
        );
        // The echo of a:1's join, late: already told.
        assert_eq!(presence.apply_join(member("a:1", "alice", Some(1))), None);
        assert_eq!(
            presence.replace(presence.members(), presence.generation()),
            vec![]
        );
    }

    #[test]
    #[cfg(feature = "redis")]
    fn a_snapshot_older_than_a_channel_change_does_not_undo_it() {
        let presence = Presence::default();
        assert!(presence.apply_join(member("b:1", "bob", None)).is_some());
        // A sweep asks for the hash; meanwhile bob leaves and dan joins on
        // the channel, and the hash read before both comes back.
        let since = presence.generation();
        assert!(presence.apply_leave("b:1").is_some());
        assert!(presence.apply_join(member("b:2", "dan", None)).is_some());
        let events = presence.replace(vec![member("b:1", "bob", None)], since);
        assert_eq!(events, vec![], "no ghost, no flicker");
        assert_eq!(presence.members(), vec![member("b:2", "dan", None)]);
        // The next snapshot, read after both, rules again.
        let since = presence.generation();
        let events = presence.replace(vec![], since);
        assert_eq!(events, vec![leave("b:2", "dan", None)]);
        assert_eq!(presence.count(), 0);
    }
}
