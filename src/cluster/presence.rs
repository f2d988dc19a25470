//! Presence across nodes (S21): the node heartbeat, the sweep that removes
//! the members of a silent node, and the view of every group kept in step
//! with the broker.
//!
//! In Redis, per group, a hash `CHANNEL:presence` (field: member id
//! `NODE:SOCKET`, value: the app's metadata), and per node a key
//! `PREFIX` + `node:NODE` set with a [`NODE_TTL`] expiry and refreshed
//! every [`HEARTBEAT`] by a task of its own. Joins, updates and leaves are
//! published on the group's channel (envelope kinds 3, 4 and 5) and applied
//! by every node, the origin too. Every [`HEARTBEAT`] each node sweeps its
//! open groups, [`SWEEP_BATCH`] hashes a round trip ([`SCAN_PAGE`] entries
//! of each at a time): entries of a node whose key expired are removed
//! (`HDEL`; the node whose `HDEL` removed an entry publishes its leave),
//! and the rest replaces the node's view of other nodes. The hash is also
//! made to agree with what the node itself tracks: its members missing
//! there (a join lost to a full queue, an expired or evicted hash, a
//! restarted Redis) are written again, and its entries it no longer tracks
//! (a lost leave), seen two rounds running, are removed with a leave. The
//! hash itself has an expiry ([`HASH_TTL`]), renewed by every join and
//! every sweep: when the last node that has the group open dies, nobody is
//! left to sweep its members, and the hash expires by itself.
//!
//! What the callbacks hear follows the view (`Presence` in
//! [`crate::presence`]): a join or leave from the channel that the view
//! already has (a sweep brought it first) is not heard twice, and a
//! sweep's changes are heard like the channel's. A sweep reads each
//! group's channel generation before it asks for the hash, so that a
//! change the channel brings meanwhile is not undone by the older hash.

use std::{
    collections::{HashMap, HashSet},
    sync::Weak,
    time::Duration,
};

use redis::aio::ConnectionManager;

use super::{
    envelope::{self, Change, Envelope},
    link::Shared,
};
use crate::{group::Group, presence::Member};

/// How often a node refreshes its key and sweeps its groups.
pub(super) const HEARTBEAT: Duration = Duration::from_secs(3);
/// How long a node's key lives without a refresh. A node that dies without
/// a word leaves every view within `NODE_TTL + HEARTBEAT` (13 s) plus a
/// delivery.
pub(super) const NODE_TTL: Duration = Duration::from_secs(10);

/// How long a group's presence hash lives without a join or a sweep. Over
/// twice [`NODE_TTL`]: a node sweeps each of its groups every round, and a
/// round of batched sweeps is short, so the hash expires once no live node
/// has the group open. Should a round ever take longer, the next sweep
/// writes the node's members again.
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
    let presence = group.presence();
    let event = match change {
        Change::Join | Change::Update => presence.apply_join(Member {
            id,
            meta: envelope.message.as_text().unwrap_or_default().to_owned(),
            local_socket,
        }),
        Change::Leave => presence.apply_leave(&id),
    };
    if let Some(event) = event {
        presence.emit(&event);
    }
}

/// Most groups one sweep reads in one pipeline (one round trip): a node
/// with thousands of open groups sweeps them all in a few round trips
/// instead of one (or more) per group.
const SWEEP_BATCH: usize = 128;

/// Entries a sweep asks for at a time from one group's hash (`HSCAN`'s
/// `COUNT`). A large group's hash is read a page a round trip rather than
/// with one `HGETALL`, which holds Redis, and every broadcast of every
/// group behind it, for as long as it reads the whole hash: 62 ms for
/// 100,000 members on this machine, about 1 ms for a page of 1,000. A
/// small hash (up to `hash-max-listpack-entries`, 128 by default) comes
/// whole in its first page.
const SCAN_PAGE: usize = 1000;

/// Every [`HEARTBEAT`] while the cluster lives: refreshes this node's key.
/// On a task of its own, so that a slow sweep (many groups, a distant
/// Redis) never delays it past [`NODE_TTL`]: other nodes would take this
/// one for dead and remove its members.
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
        match shared
            .within(
                HEARTBEAT,
                heartbeat(&prefix, shared.node).query_async::<Option<String>>(&mut manager),
            )
            .await
        {
            // Redis lost the key (a restart, an expiry): the next sweep
            // finds this node's members missing and writes them again.
            Ok(None) => log::debug!(
                "cluster node {:032x}: its key was lost; the next sweep writes its members again",
                shared.node
            ),
            Ok(Some(_)) => {}
            Err(error) => log::debug!("cluster node {:032x}: heartbeat: {error}", shared.node),
        }
    }
}

/// Every [`HEARTBEAT`] while the cluster lives: sweeps every open group,
/// [`SWEEP_BATCH`] groups a round trip.
pub(super) async fn sweep_loop(
    mut manager: ConnectionManager,
    shared: Weak<Shared>,
    prefix: String,
) {
    let mut ticks = tokio::time::interval(HEARTBEAT);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut suspects = HashMap::new();
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let groups: Vec<(String, Group)> = shared
            .groups()
            .iter()
            .filter_map(|(channel, group)| group.upgrade().map(|group| (channel.clone(), group)))
            .collect();
        let mut round = Round {
            shared: &shared,
            prefix: &prefix,
            alive: HashMap::from([(shared.node, true)]),
            suspects: std::mem::take(&mut suspects),
            next_suspects: HashMap::new(),
        };
        let started = tokio::time::Instant::now();
        for batch in groups.chunks(SWEEP_BATCH) {
            round.sweep(&mut manager, batch).await;
        }
        log::trace!(
            "cluster node {:032x}: swept {} groups in {:?}",
            shared.node,
            groups.len(),
            started.elapsed()
        );
        suspects = round.next_suspects;
    }
}

/// One sweep of every open group.
struct Round<'a> {
    shared: &'a Shared,
    prefix: &'a str,
    /// Which nodes have their key, asked once a round.
    alive: HashMap<u128, bool>,
    /// Per channel, the entries of this node that it no longer tracks, seen
    /// in the last round: removed when seen again (a leave still on its way
    /// to Redis is not taken for a lost one).
    suspects: HashMap<String, HashSet<String>>,
    next_suspects: HashMap<String, HashSet<String>>,
}

/// What a sweep does to one group's hash once it has read it.
#[derive(Default)]
struct Fix {
    /// Members whose leave this node publishes if its `HDEL` removes them.
    remove: Vec<(String, u128, u64, String)>,
    /// This node's members missing from the hash (or stale there).
    write: Vec<(u64, String)>,
}

impl Round<'_> {
    /// Reads the hashes of `batch` (renewing their expiry), removes the
    /// members of silent nodes and this node's entries it no longer tracks
    /// (publishing their leaves), writes this node's members that the
    /// broker lost, and replaces each group's view of the other nodes.
    async fn sweep(&mut self, manager: &mut ConnectionManager, batch: &[(String, Group)]) {
        // What each group's channel had brought before the hashes are read:
        // a change it brings after that is newer than the hash.
        let since: Vec<u64> = batch
            .iter()
            .map(|(_, group)| group.presence().generation())
            .collect();
        let Some(hashes) = self.read_hashes(manager, batch).await else {
            return;
        };
        self.ask_alive(manager, hashes.iter().flatten()).await;

        // From here to the writes, nothing waits: a leave made meanwhile on
        // another thread reaches Redis after them (same connection, queued
        // later), so a member written again is not one that just left.
        let mut writes = redis::pipe();
        let mut fixes = Vec::with_capacity(batch.len());
        for (((channel, group), hash), since) in batch.iter().zip(hashes).zip(since) {
            let Some(hash) = hash else {
                fixes.push(Fix::default());
                continue;
            };
            let fix = self.judge(channel, group, hash, since);
            for (id, ..) in &fix.remove {
                writes.cmd("HDEL").arg(hash_key(channel)).arg(id);
            }
            if !fix.write.is_empty() {
                let mut hset = redis::cmd("HSET");
                hset.arg(hash_key(channel));
                for (socket, meta) in &fix.write {
                    hset.arg(member_id(self.shared.node, *socket)).arg(meta);
                }
                writes
                    .add_command(hset)
                    .ignore()
                    .add_command(renew_hash(channel))
                    .ignore();
                log::debug!(
                    "cluster node {:032x}: {} members of {channel} written again",
                    self.shared.node,
                    fix.write.len()
                );
            }
            fixes.push(fix);
        }
        if fixes
            .iter()
            .all(|fix| fix.remove.is_empty() && fix.write.is_empty())
        {
            return;
        }
        let removed = match self
            .shared
            .within(HEARTBEAT, writes.query_async::<Vec<u32>>(manager))
            .await
        {
            Ok(removed) => removed,
            Err(error) => {
                log::debug!(
                    "cluster: presence repairs of {} groups: {error}",
                    batch.len()
                );
                return;
            }
        };
        let mut leaves = redis::pipe();
        let mut removed = removed.into_iter();
        for ((channel, _), fix) in batch.iter().zip(fixes) {
            for (id, node, socket, meta) in fix.remove {
                // The sweeper whose `HDEL` removed it publishes its leave,
                // so every node hears it once.
                if removed.next() == Some(1) {
                    log::debug!("cluster: {id} of {channel} left (silent node or lost leave)");
                    leaves
                        .cmd("PUBLISH")
                        .arg(channel)
                        .arg(&envelope::encode_change(node, socket, Change::Leave, &meta)[..])
                        .ignore();
                }
            }
        }
        if let Err(error) = self
            .shared
            .within(HEARTBEAT, leaves.exec_async(manager))
            .await
        {
            log::debug!("cluster: leaves not published: {error}");
        }
    }

    /// Reads the presence hashes of `batch` (renewing their expiry), a page
    /// of [`SCAN_PAGE`] entries per group a round trip: every group's first
    /// page in one round trip, then the next pages of the large ones, all
    /// of them in each round trip. `None` for a hash Redis could not read
    /// (another type); `None` for all when Redis did not answer.
    async fn read_hashes(
        &self,
        manager: &mut ConnectionManager,
        batch: &[(String, Group)],
    ) -> Option<Vec<Option<HashMap<String, String>>>> {
        let mut hashes: Vec<Option<HashMap<String, String>>> =
            vec![Some(HashMap::new()); batch.len()];
        // Groups still being read, with their cursor.
        let mut reading: Vec<(usize, u64)> = (0..batch.len()).map(|index| (index, 0)).collect();
        let mut first = true;
        while !reading.is_empty() {
            let mut read = redis::pipe();
            // A hash Redis cannot read (another type) fails alone.
            read.ignore_errors();
            for (index, cursor) in &reading {
                let channel = &batch[*index].0;
                read.cmd("HSCAN")
                    .arg(hash_key(channel))
                    .arg(*cursor)
                    .arg("COUNT")
                    .arg(SCAN_PAGE);
                if first {
                    read.add_command(renew_hash(channel)).ignore();
                }
            }
            first = false;
            let pages = match self
                .shared
                .within(
                    HEARTBEAT,
                    read.query_async::<Vec<redis::RedisResult<(u64, HashMap<String, String>)>>>(
                        manager,
                    ),
                )
                .await
            {
                Ok(pages) => pages,
                Err(error) => {
                    log::debug!("cluster: presence sweep of {} groups: {error}", batch.len());
                    return None;
                }
            };
            let mut next = Vec::new();
            for ((index, _), page) in reading.into_iter().zip(pages) {
                match page {
                    Ok((cursor, entries)) => {
                        if let Some(hash) = &mut hashes[index] {
                            // A page may repeat entries of an earlier one
                            // (the hash grew meanwhile): the map keeps one.
                            hash.extend(entries);
                        }
                        if cursor != 0 {
                            next.push((index, cursor));
                        }
                    }
                    Err(error) => {
                        log::debug!("cluster: presence sweep of {}: {error}", batch[index].0);
                        hashes[index] = None;
                    }
                }
            }
            reading = next;
        }
        Some(hashes)
    }

    /// Asks Redis, in one round trip, which of the nodes named in `hashes`
    /// and not asked yet this round have their key.
    async fn ask_alive(
        &mut self,
        manager: &mut ConnectionManager,
        hashes: impl Iterator<Item = &HashMap<String, String>>,
    ) {
        let mut unknown: Vec<u128> = hashes
            .flat_map(|hash| hash.keys())
            .filter_map(|id| parse_member(id).map(|(node, _)| node))
            .filter(|node| !self.alive.contains_key(node))
            .collect();
        unknown.sort_unstable();
        unknown.dedup();
        if unknown.is_empty() {
            return;
        }
        let mut exists = redis::pipe();
        for node in &unknown {
            exists.cmd("EXISTS").arg(node_key(self.prefix, *node));
        }
        let answers = self
            .shared
            .within(HEARTBEAT, exists.query_async::<Vec<bool>>(manager))
            .await;
        for (index, node) in unknown.into_iter().enumerate() {
            // Unknown: kept until a sweep can tell.
            let exists = answers
                .as_ref()
                .map_or(true, |answers| answers.get(index).copied().unwrap_or(true));
            self.alive.insert(node, exists);
        }
    }

    /// Sorts one group's entries: the members of live nodes replace the
    /// group's view; those of silent nodes, and this node's that it no
    /// longer tracks (seen two rounds running), are to be removed; this
    /// node's members missing from the hash, or stale there, are to be
    /// written again.
    fn judge(
        &mut self,
        channel: &str,
        group: &Group,
        hash: HashMap<String, String>,
        since: u64,
    ) -> Fix {
        let presence = group.presence();
        let mut own: HashMap<u64, String> = presence.own().into_iter().collect();
        let suspects = self.suspects.remove(channel).unwrap_or_default();
        let mut next_suspects = HashSet::new();
        let mut fix = Fix::default();
        let mut snapshot = Vec::with_capacity(hash.len());
        for (id, meta) in hash {
            let Some((node, socket)) = parse_member(&id) else {
                continue;
            };
            if node == self.shared.node {
                match own.remove(&socket) {
                    Some(tracked) => {
                        if tracked != meta {
                            fix.write.push((socket, tracked));
                        }
                    }
                    None if suspects.contains(&id) => {
                        fix.remove.push((id, node, socket, meta));
                    }
                    None => {
                        next_suspects.insert(id);
                    }
                }
                // This node's members in the view follow what it tracks,
                // not the hash (`Presence::replace`).
                continue;
            }
            if !self.alive.get(&node).copied().unwrap_or(true) {
                fix.remove.push((id, node, socket, meta));
                continue;
            }
            snapshot.push(Member {
                id,
                meta,
                local_socket: None,
            });
        }
        // Tracked here, unknown to the broker: a join lost to a full
        // queue, a hash that expired or a Redis that restarted.
        fix.write.extend(own);
        if !next_suspects.is_empty() {
            self.next_suspects.insert(channel.to_owned(), next_suspects);
        }
        for event in presence.replace(snapshot, since) {
            presence.emit(&event);
        }
        fix
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
        // See HASH_TTL: a hash outlives the gap between two sweeps of a
        // node that keeps its key.
        assert!(HASH_TTL > NODE_TTL * 2);
    }
}
