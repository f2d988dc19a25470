//! Presence across nodes (S21): the node heartbeat, the sweep that removes
//! the members of a silent node, and the view of every group kept in step
//! with the broker.
//!
//! In Redis, per group, a hash `CHANNEL:presence` (field: member id
//! `NODE:SOCKET`, value: the app's metadata), and per node a key
//! `PREFIX` + `node:NODE` set with a [`NODE_TTL`] expiry and refreshed
//! every [`HEARTBEAT`]. Joins, updates and leaves are published on the
//! group's channel (envelope kinds 3, 4 and 5) and applied by every node,
//! the origin too. Every [`HEARTBEAT`] each node reads each open group's
//! hash: entries of a node whose key expired are removed (`HDEL`; the node
//! whose `HDEL` removed an entry publishes its leave, so there is one leave
//! per member), and the rest replaces the node's view of other nodes. The
//! hash itself has an expiry too ([`HASH_TTL`]), renewed by every join and
//! every sweep: when the last node that has the group open dies, nobody is
//! left to sweep its members, and the hash expires by itself.

use std::{collections::HashMap, sync::Weak, time::Duration};

use redis::aio::ConnectionManager;

use super::{
    envelope::{self, Change, Envelope},
    link::Shared,
};
use crate::{
    group::Group,
    presence::{Member, PresenceEvent},
};

/// How often a node refreshes its key and sweeps its groups.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a node's key lives without a refresh. A node that dies without
/// a word leaves every view within `NODE_TTL + HEARTBEAT` (13 s) plus a
/// delivery.
pub(super) const NODE_TTL: Duration = Duration::from_secs(10);

/// How long a group's presence hash lives without a join or a sweep. Over
/// twice [`NODE_TTL`]: between two sweeps of a group by a node that never
/// lost its key (its heartbeats at most `NODE_TTL` apart) pass at most
/// `2 × NODE_TTL` (the rest of one round, then the next round up to the
/// group), so the hash can expire only after every node that has the group
/// open lost its key, and each of them then writes its members again
/// (`announce_again`) in its next round.
pub(super) const HASH_TTL: Duration = Duration::from_secs(30);

/// The group-wide id of socket `socket` of node `node`.
pub(super) fn member_id(node: u128, socket: u64) -> String {
    format!("{node:032x}:{socket}")
}

/// The Redis hash of a group's presence.
pub(super) fn hash_key(channel: &str) -> String {
    format!("{channel}:presence")
}

/// Renews the expiry of a group's presence hash (a no-op when it is empty,
/// so gone): it outlives the last node that has the group open by at most
/// [`HASH_TTL`].
pub(super) fn renew_hash(channel: &str) -> redis::Cmd {
    let mut pexpire = redis::cmd("PEXPIRE");
    pexpire
        .arg(hash_key(channel))
        .arg(HASH_TTL.as_millis() as u64);
    pexpire
}

/// The Redis key whose presence says that `node` is alive.
pub(super) fn node_key(prefix: &str, node: u128) -> String {
    format!("{prefix}node:{node:032x}")
}

/// The node and socket of a member id; `None` for a field not ours.
fn parse_member(id: &str) -> Option<(u128, u64)> {
    let (node, socket) = id.split_once(':')?;
    Some((u128::from_str_radix(node, 16).ok()?, socket.parse().ok()?))
}

/// The heartbeat command: sets the node's key with its expiry and returns
/// the previous value (`nil` when Redis lost it: a restart, an expiry).
pub(super) fn heartbeat(prefix: &str, node: u128) -> redis::Cmd {
    let mut set = redis::cmd("SET");
    set.arg(node_key(prefix, node))
        .arg(1)
        .arg("PX")
        .arg(NODE_TTL.as_millis() as u64)
        .arg("GET");
    set
}

/// Applies a presence change read from the group's channel, and tells the
/// group's callbacks.
pub(super) fn apply(shared: &Shared, group: &Group, envelope: &Envelope, change: Change) {
    let socket = envelope.except.unwrap_or(0);
    let local_socket = (envelope.origin == shared.node).then_some(socket);
    let id = member_id(envelope.origin, socket);
    let meta = envelope.message.as_text().unwrap_or_default().to_owned();
    let presence = group.presence();
    let event = match change {
        Change::Join | Change::Update => {
            let member = Member {
                id,
                meta,
                local_socket,
            };
            presence.joined(&member);
            if change == Change::Join {
                PresenceEvent::Join(member)
            } else {
                PresenceEvent::Update(member)
            }
        }
        Change::Leave => {
            let known = presence.left(&id);
            PresenceEvent::Leave(Member {
                id,
                meta: known.unwrap_or(meta),
                local_socket,
            })
        }
    };
    presence.emit(&event);
}

/// Every [`HEARTBEAT`] while the cluster lives: refreshes this node's key,
/// re-announces this node's members if Redis lost them, and sweeps every
/// open group.
pub(super) async fn heartbeat_loop(
    mut manager: ConnectionManager,
    shared: Weak<Shared>,
    prefix: String,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let previous = shared
            .within(
                HEARTBEAT,
                heartbeat(&prefix, shared.node).query_async::<Option<String>>(&mut manager),
            )
            .await;
        let lost = match previous {
            Ok(previous) => previous.is_none(),
            Err(error) => {
                log::debug!("cluster node {:032x}: heartbeat: {error}", shared.node);
                false
            }
        };
        let groups: Vec<(String, Group)> = shared
            .groups()
            .iter()
            .filter_map(|(channel, group)| group.upgrade().map(|group| (channel.clone(), group)))
            .collect();
        for (channel, group) in groups {
            if lost {
                announce_again(&shared, &mut manager, &channel, &group).await;
            }
            sweep(&shared, &mut manager, &prefix, &channel, &group).await;
        }
    }
}

/// Writes this node's members of `group` into the broker's presence again
/// (after Redis lost them: a restart without persistence).
async fn announce_again(
    shared: &Shared,
    manager: &mut ConnectionManager,
    channel: &str,
    group: &Group,
) {
    let own = group.presence().own();
    if own.is_empty() {
        return;
    }
    let mut hset = redis::cmd("HSET");
    hset.arg(hash_key(channel));
    for (socket, meta) in &own {
        hset.arg(member_id(shared.node, *socket)).arg(meta);
    }
    match shared.within(HEARTBEAT, hset.exec_async(manager)).await {
        Ok(()) => log::debug!(
            "cluster node {:032x}: {} members of {channel} announced again",
            shared.node,
            own.len()
        ),
        Err(error) => log::debug!("cluster: announcing {channel} again: {error}"),
    }
}

/// Removes the members of silent nodes from `group`'s presence (publishing
/// their leaves) and refreshes this node's view from what is left.
async fn sweep(
    shared: &Shared,
    manager: &mut ConnectionManager,
    prefix: &str,
    channel: &str,
    group: &Group,
) {
    let hash = hash_key(channel);
    let mut read = redis::pipe();
    read.cmd("HGETALL")
        .arg(&hash)
        .add_command(renew_hash(channel))
        .ignore();
    let entries: HashMap<String, String> = match shared
        .within(
            HEARTBEAT,
            read.query_async::<(HashMap<String, String>,)>(manager),
        )
        .await
    {
        Ok((entries,)) => entries,
        Err(error) => {
            log::debug!("cluster: presence sweep of {channel}: {error}");
            return;
        }
    };
    let mut alive = HashMap::from([(shared.node, true)]);
    let mut snapshot = Vec::with_capacity(entries.len());
    for (id, meta) in entries {
        let Some((node, socket)) = parse_member(&id) else {
            continue;
        };
        let is_alive = match alive.get(&node) {
            Some(known) => *known,
            None => {
                let exists = shared
                    .within(
                        HEARTBEAT,
                        redis::cmd("EXISTS")
                            .arg(node_key(prefix, node))
                            .query_async::<bool>(manager),
                    )
                    .await
                    // Unknown: keep it until a sweep can tell.
                    .unwrap_or(true);
                alive.insert(node, exists);
                exists
            }
        };
        if is_alive {
            let local_socket = (node == shared.node).then_some(socket);
            snapshot.push(Member {
                id,
                meta,
                local_socket,
            });
            continue;
        }
        remove_silent(shared, manager, channel, &hash, &id, node, socket, &meta).await;
    }
    group.presence().replace(snapshot);
}

/// Removes one member of a silent node; the sweeper whose `HDEL` removed it
/// publishes its leave, so every node hears it once.
#[allow(clippy::too_many_arguments)]
async fn remove_silent(
    shared: &Shared,
    manager: &mut ConnectionManager,
    channel: &str,
    hash: &str,
    id: &str,
    node: u128,
    socket: u64,
    meta: &str,
) {
    let removed = shared
        .within(
            HEARTBEAT,
            redis::cmd("HDEL")
                .arg(hash)
                .arg(id)
                .query_async::<u32>(manager),
        )
        .await;
    if !matches!(removed, Ok(1)) {
        return;
    }
    log::debug!("cluster: {id} of {channel} left with its silent node");
    let mut publish = redis::cmd("PUBLISH");
    publish
        .arg(channel)
        .arg(&envelope::encode_change(node, socket, Change::Leave, meta)[..]);
    if let Err(error) = shared.within(HEARTBEAT, publish.exec_async(manager)).await {
        log::debug!("cluster: leave of {id} on {channel} not published: {error}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn member_ids_round_trip() {
        let id = member_id(0xabc, 42);
        assert_eq!(id, "00000000000000000000000000000abc:42");
        assert_eq!(parse_member(&id), Some((0xabc, 42)));
        assert_eq!(parse_member("not a member"), None);
    }

    #[test]
    fn the_documented_bound_holds() {
        assert!(NODE_TTL + HEARTBEAT <= Duration::from_secs(15));
        // See HASH_TTL: a hash outlives any gap between two sweeps of a
        // node that kept its key.
        assert!(HASH_TTL > NODE_TTL * 2);
    }
}
