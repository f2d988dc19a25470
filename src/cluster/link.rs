//! The [`Cluster`] handle: one node's link to Redis, its background thread
//! and what the thread's tasks and the handles share.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{Arc, Mutex, MutexGuard},
    time::Duration,
};

use redis::{aio::ConnectionManager, IntoConnectionInfo, ProtocolVersion};
use tokio::sync::{mpsc, oneshot};

use super::{
    config::ClusterConfig,
    stats::{ClusterStats, Counters},
    tasks::{self, Publish},
};
use crate::{cluster_error::ClusterError, group::WeakGroup};

/// One node's link to Redis: open named groups with [`Cluster::group`].
///
/// Connect once per process, before starting the server, and share the
/// handle (it is `Clone + Send + Sync`): every actix-web worker's listeners
/// broadcast through the same connection. The link lives on a thread of its
/// own with a single-threaded tokio runtime, so it works the same under any
/// number of workers and never runs on a worker's thread; it stops when the
/// last `Cluster` and clustered [`Group`](crate::Group) handle is dropped.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{Cluster, CloseCode, Group, Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Member(Group);
///
/// impl Listener for Member {
///     fn on_open(&mut self, socket: &Socket) {
///         self.0.insert(socket);
///     }
///
///     fn on_message(&mut self, _: &Socket, message: Message) {
///         // Local members now, every other node through one PUBLISH.
///         self.0.broadcast(message);
///     }
///
///     fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
///         self.0.remove(socket);
///     }
/// }
///
/// async fn ws(upgrade: WebSocketUpgrade, room: web::Data<Group>) -> impl Responder {
///     upgrade.listen(Member(room.get_ref().clone()))
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let cluster = Cluster::connect("redis://127.0.0.1:6379/")
///         .await
///         .map_err(std::io::Error::other)?;
///     let room = web::Data::new(cluster.group("lobby").await.map_err(std::io::Error::other)?);
///     HttpServer::new(move || App::new().app_data(room.clone()).route("/ws", web::get().to(ws)))
///         .bind("127.0.0.1:8080")?
///         .run()
///         .await
/// }
/// ```
///
/// # Wire format
///
/// This is the one description of what a node puts on Redis (the README
/// points here); `envelope.rs` implements it and its tests pin the layout.
///
/// - A node is one `Cluster` handle: it gets a random 128-bit id when it
///   connects (two handles in one process are two nodes).
/// - Group `NAME` is the Redis channel `PREFIX` + `NAME`
///   ([`ClusterConfig::prefix`], default `actix-ws-listener:group:`). A node
///   is subscribed to it from [`Cluster::group`] until the last handle of
///   that group on the node is dropped.
/// - Each broadcast is one `PUBLISH` of a versioned binary envelope:
///
/// ```text
/// offset  size  field
/// 0       1     version: 1
/// 1       1     kind: 1 text, 2 binary (the WebSocket opcodes);
///               3 join, 4 update, 5 leave (presence changes)
/// 2       16    origin node id, big-endian
/// 18      8     excluded socket id, big-endian (0: none); for a presence
///               change, the member's socket on the origin node
/// 26      ..    the message payload, as the WebSocket message carries it;
///               for a presence change, the member's metadata (UTF-8)
/// ```
///
/// - A group opened with [`Cluster::group_with_history`] records each
///   broadcast instead, with one `EVAL` of a script (in the same pipeline
///   as other publishes) that, atomically: reads the epoch from the hash
///   `PREFIX` + `NAME` + `:history:meta` (field `epoch`; a new random one,
///   16 hex digits, when the hash is missing, which also deletes any old
///   stream), increments its field `seq` to get the position, appends the
///   message to the stream `PREFIX` + `NAME` + `:history` with the explicit
///   id `POSITION-0` and fields `t` (Redis `TIME` in ms), `k` (1 text, 2
///   binary), `p` (the payload), trimmed with `MAXLEN ~` [`History::len`](crate::History::len),
///   sets the stream's expiry to [`History::max_age`](crate::History::max_age) (renewed by each
///   broadcast) and the meta hash's to [`History::meta_ttl`](crate::History::meta_ttl)
///   (renewed by each broadcast and each recovery read that finds it),
///   and publishes the envelope with kind 6 (text) or 7 (binary), whose
///   payload starts with the offset: one byte of length, then
///   `EPOCH:POSITION` in ASCII, then the message. A recovery read is a
///   second script: the epoch and `seq` from the meta hash, then `XRANGE`
///   from `POSITION+1`, a page of at most 100 entries that ends early at the
///   entry whose payload takes the page to 1 MiB; it answers a gap when the
///   epoch differs, the position is past `seq`, the first entry is not the
///   next position or is older than the max age.
/// - Presence of group `NAME` is the Redis hash `PREFIX` + `NAME` +
///   `:presence`: field `NODE:SOCKET` (the node id in 32 hex digits, the
///   socket id in decimal; it is [`Member::id`](crate::Member::id)), value
///   the metadata. A node's liveness is the key `PREFIX` + `node:` + `NODE`,
///   set with a 10 s expiry when the node connects and every 3 s after. The
///   hash gets a 30 s expiry at every join and at every node's sweep
///   (every 3 s), so it is gone 30 s after the last node that has the group
///   open died.
///
/// The origin delivers to its own members directly (except in a group with
/// history, below), as a local
/// [`Group`](crate::Group) does, and ignores its own envelope when Redis
/// echoes it back, so no member of the origin gets a broadcast twice. The
/// excluded socket of [`Group::broadcast_except`](crate::Group::broadcast_except)
/// lives on the origin node (socket ids are per process), so the other
/// nodes deliver to all their members; the id travels so that the envelope
/// says all the broadcast meant. Payloads that do not decode (another
/// version, another program on the channel) are counted in
/// [`ClusterStats::malformed`] and dropped.
///
/// # Guarantees
///
/// - **Exactly once while Redis is up**: every member of every node that is
///   subscribed when the envelope reaches Redis gets the message once
///   (subject to the member's own backpressure, as for a local broadcast).
/// - **At most once across an outage**: Redis pub/sub keeps nothing. What is
///   published while a node is disconnected never reaches that node's
///   members; broadcasts issued while this node is disconnected fail
///   ([`Broadcast::published`](crate::Broadcast::published) says so) and
///   reach only the local members. Nothing is replayed after the outage.
/// - **Resubscription**: when the connection drops, the connection manager
///   reconnects with exponential backoff and subscribes again to every
///   channel; a health-check `PING` every [`ClusterConfig::health_check`]
///   starts a new round of attempts if a round gave up. Delivery resumes by
///   itself.
/// - **Order**: broadcasts from one node reach every other node in the order
///   they were issued on that node (one publishing task, one connection).
/// - **Connections**: two per node. One only subscribes and carries the
///   pushes; publishes, history reads and presence go on the other. Redis
///   counts every reply to a subscribed connection against its pub/sub
///   output buffer limit (`client-output-buffer-limit pubsub`, 32 MB by
///   default) and closes the connection past it, so history pages read by
///   many recovering sockets at once must not share it.
///   Broadcasts from different nodes have no common order.
/// - **Bounded**: publishes wait in a queue of
///   [`ClusterConfig::publish_capacity`] (past it a broadcast fails with
///   [`ClusterError::Backlog`]); envelopes read from Redis wait for delivery
///   in a queue of [`ClusterConfig::inbound_capacity`] (past it they are
///   dropped, counted in [`ClusterStats::dropped`] and logged at debug).
///   Redis itself disconnects a subscriber that falls too far behind
///   (`client-output-buffer-limit pubsub`); the node then reconnects.
///
/// # History and recovery
///
/// A group opened with [`Cluster::group_with_history`] keeps its last
/// messages in a Redis stream (S21), and every node delivers each broadcast,
/// the origin's members included, when Redis hands it back with its offset,
/// so that offsets come in one order on every node. With history on:
///
/// - **While Redis is up**: exactly once and in offset order for live
///   members, as without history; positions are consecutive, so a client
///   can see that it missed something.
/// - **Reconnecting clients** ([`Group::recover`](crate::Group::recover)
///   with the last offset they saw, on any node): every message after it,
///   in order, once, then live, as long as the stream still holds them
///   (the last [`History::len`](crate::History::len) messages, none older
///   than [`History::max_age`](crate::History::max_age)); otherwise the
///   [`History::gap`](crate::History::gap) message, then live. Across an
///   outage this is at-least-once deduplicated by offset: what a client
///   missed while its node was cut off is in the stream when it comes back.
/// - **Redis restarted without persistence**: the history starts over with a
///   new epoch; an offset of the old one gets a gap, never a replay of other
///   messages.
/// - **Members that stay connected across an outage** miss what was
///   published meanwhile (pub/sub keeps nothing), and see the hole in the
///   positions; a broadcast made while Redis is unreachable reaches nobody,
///   not even the origin's members, and `published()` says so.
/// - **Bounded**: the stream is capped by Redis; a replay sends through the
///   socket's flow control (S15) a page at a time (100 messages, or fewer
///   when they reach 1 MiB of payload), and the live
///   messages that arrive meanwhile wait in a buffer of at most 256 per
///   recovering socket (past it they are read again from the stream).
///
/// # Presence
///
/// [`Group::track`](crate::Group::track) writes the member into the hash
/// and publishes a join on the group's channel, in order with the node's
/// broadcasts; every node (the origin too) applies it to its view and calls
/// its [`Group::on_presence`](crate::Group::on_presence) callbacks. Every
/// 3 s each node refreshes its own key, and sweeps its open groups, 128
/// hashes a round trip: entries of a node whose key has expired are
/// removed, and the node whose `HDEL` removed an entry publishes its leave;
/// what is left replaces the node's view of the other nodes, which repairs
/// a missed change within 3 s. Each node's callbacks hear what its view
/// does, once: a change the channel brought, or one a sweep repaired (a
/// join or leave lost in an outage is heard at the repair); a sweep never
/// undoes a change the channel brought after the hash was read. The
/// sweep also makes the hash agree with what the node tracks: a member of
/// its own missing there is written again, and an entry of its own it no
/// longer tracks, seen in two sweeps running, is removed with a leave.
///
/// - **Bound**: a node that dies without a word (SIGKILL, network loss)
///   last refreshed its key at most 3 s before; the key expires 10 s after
///   that refresh, and the next sweep of any other node, at most 3 s later,
///   removes its members: **within 13 s of its death, 15 s with delivery**
///   (Phoenix's Tracker: 30 s, Centrifugo's presence: 60 s by default).
///   The heartbeat has a task of its own: a node with many groups, or far
///   from Redis, keeps its key however long its sweeps take.
/// - **Fixed cost per node**: one `SET` every 3 s, and every 3 s one
///   round trip per 128 open groups (`HSCAN` and `PEXPIRE` each), plus one
///   for the `EXISTS` of the other nodes seen, asked once a round; a
///   broadcast costs nothing more. A group of more than 1,000 members is
///   read 1,000 a round trip, so that no command holds Redis (and every
///   broadcast behind it) for long: one `HGETALL` of 100,000 members takes
///   Redis about 60 ms, a page of 1,000 about 1 ms. Joins and leaves cost
///   one `HSET`/`HDEL` and one `PUBLISH` each.
/// - **Redis restarted without persistence**, or a hash evicted: the next
///   sweep writes the node's members again; views converge within one
///   more sweep.
/// - **Bounded**: presence changes travel in the same bounded queues as
///   broadcasts; one lost to a full queue is repaired by the next sweeps,
///   and heard then.
///
/// The `redis` crate forwards what it reads to our bounded queue through
/// its own channel, drained by a task that only does a non-blocking
/// `try_send`, on the same thread that reads the socket.
#[derive(Clone)]
pub struct Cluster {
    pub(super) inner: Arc<Inner>,
}

/// What the cluster's tasks and its handles share: the node id, the URL
/// (for error messages), the open groups by channel, the counters.
pub(super) struct Shared {
    pub(super) node: u128,
    pub(super) url: String,
    pub(super) groups: Mutex<HashMap<String, WeakGroup>>,
    pub(super) counters: Counters,
}

impl Shared {
    pub(super) fn groups(&self) -> MutexGuard<'_, HashMap<String, WeakGroup>> {
        // Only inserts and removes of whole entries run under this lock.
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// True while a handle of the group on `channel` is alive here.
    pub(super) fn is_open(&self, channel: &str) -> bool {
        self.groups().get(channel).is_some_and(WeakGroup::is_alive)
    }

    /// `future` with [`ClusterConfig::publish_timeout`]-style deadline, its
    /// errors mapped for this node's URL.
    pub(super) async fn within<T>(
        &self,
        timeout: Duration,
        future: impl Future<Output = redis::RedisResult<T>>,
    ) -> Result<T, ClusterError> {
        match tokio::time::timeout(timeout, future).await {
            Ok(result) => result.map_err(|error| ClusterError::from_redis(&self.url, &error)),
            Err(_) => Err(ClusterError::timeout(&self.url)),
        }
    }
}

pub(super) struct Inner {
    pub(super) shared: Arc<Shared>,
    pub(super) config: ClusterConfig,
    /// Subscribes and unsubscribes; carries the pushes.
    pub(super) subscriber: ConnectionManager,
    /// Everything else: publishes, history reads, presence.
    pub(super) commands: ConnectionManager,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) publish: mpsc::Sender<Publish>,
    /// Turns for history reads ([`READS_AT_ONCE`](super::history::READS_AT_ONCE)).
    pub(super) history_reads: Arc<tokio::sync::Semaphore>,
    /// Subscribe and unsubscribe run one at a time, so that an unsubscribe
    /// for a dropped group cannot overtake the subscribe of a reopened one.
    pub(super) subscriptions: Arc<tokio::sync::Mutex<()>>,
    /// Dropped with the last handle: the background thread then stops.
    _stop: oneshot::Sender<()>,
}

impl Cluster {
    /// Connects to Redis at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`, …) with the default [`ClusterConfig`].
    ///
    /// ```no_run
    /// # async fn demo() {
    /// use actix_ws_listener::{Cluster, ClusterError};
    ///
    /// match Cluster::connect("redis://127.0.0.1:6379/").await {
    ///     Ok(cluster) => log::info!("node {:032x}", cluster.node_id()),
    ///     // "cannot reach Redis at redis://127.0.0.1:6379/: Connection refused (os error 111)"
    ///     Err(error @ ClusterError::Unreachable { .. }) => eprintln!("{error}"),
    ///     Err(error) => eprintln!("{error}"),
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClusterError::InvalidUrl`] when the URL is invalid,
    /// [`ClusterError::Unreachable`] or [`ClusterError::Timeout`] when
    /// Redis cannot be reached (after the connection manager's retries, a
    /// few seconds), [`ClusterError::Refused`] when it refuses the
    /// connection's setup (a password it wants), [`ClusterError::Stopped`]
    /// when the background thread cannot start.
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        Cluster::connect_with(url, ClusterConfig::default()).await
    }

    /// [`Cluster::connect`] with a [`ClusterConfig`].
    ///
    /// # Errors
    /// As [`Cluster::connect`].
    pub async fn connect_with(url: &str, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let invalid = |error: redis::RedisError| ClusterError::InvalidUrl {
            url: crate::cluster_error::redacted(url),
            reason: error.to_string(),
        };
        let info = url.into_connection_info().map_err(invalid)?;
        // RESP3: the connection manager gets the pushes of its connection
        // and can resubscribe after reconnecting.
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3)).map_err(invalid)?;
        let shared = Arc::new(Shared {
            node: random_node_id(),
            url: url.to_owned(),
            groups: Mutex::new(HashMap::new()),
            counters: Counters::default(),
        });
        let (started_tx, started_rx) = oneshot::channel();
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let (thread_shared, thread_config) = (Arc::clone(&shared), config.clone());
        std::thread::Builder::new()
            .name("actix-ws-redis".to_owned())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(error) => {
                        log::debug!("cluster runtime failed to start: {error}");
                        return;
                    }
                };
                runtime.block_on(async move {
                    let started = tasks::start(client, thread_config, thread_shared).await;
                    let ok = started.is_ok();
                    if started_tx.send(started).is_ok() && ok {
                        // Runs until the last handle drops `stop_tx`.
                        let _ = stop_rx.await;
                    }
                });
                // Dropping the runtime cancels its tasks and closes the connection.
            })
            .map_err(|error| {
                log::debug!("cluster thread failed to start: {error}");
                ClusterError::Stopped
            })?;
        let started = started_rx.await.map_err(|_| ClusterError::Stopped)??;
        log::debug!(
            "cluster node {:032x} connected to {}",
            shared.node,
            crate::cluster_error::redacted(url)
        );
        Ok(Cluster {
            inner: Arc::new(Inner {
                shared,
                config,
                subscriber: started.subscriber,
                commands: started.commands,
                runtime: started.runtime,
                publish: started.publish,
                history_reads: Arc::new(tokio::sync::Semaphore::new(super::history::READS_AT_ONCE)),
                subscriptions: Arc::new(tokio::sync::Mutex::new(())),
                _stop: stop_tx,
            }),
        })
    }

    /// This node's id, random per [`Cluster::connect`]; it is the origin
    /// field of every envelope the node publishes.
    pub fn node_id(&self) -> u128 {
        self.inner.shared.node
    }

    /// The node's counters so far.
    ///
    /// ```no_run
    /// # fn demo(cluster: actix_ws_listener::Cluster) {
    /// let stats = cluster.stats();
    /// if stats.dropped > 0 {
    ///     log::warn!("{} broadcasts from other nodes were dropped here", stats.dropped);
    /// }
    /// # }
    /// ```
    pub fn stats(&self) -> ClusterStats {
        self.inner.shared.counters.snapshot()
    }
}

impl fmt::Debug for Cluster {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Cluster")
            .field("node", &format_args!("{:032x}", self.inner.shared.node))
            .field("stats", &self.stats())
            .finish()
    }
}

impl Inner {
    /// Runs `task` on the cluster's thread and waits for it from any
    /// runtime.
    pub(super) async fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = Result<T, ClusterError>> + Send + 'static,
    ) -> Result<T, ClusterError> {
        self.runtime
            .spawn(task)
            .await
            .map_err(|_| ClusterError::Stopped)?
    }
}

/// 128 bits from the standard library's per-process random hash keys, the
/// clock and the process id: no extra dependency for an id that only needs
/// to differ between nodes.
fn random_node_id() -> u128 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |since| since.as_nanos());
    let half = |salt: u64| {
        let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
        hasher.write_u64(salt);
        hasher.write_u128(nanos);
        hasher.write_u32(std::process::id());
        u128::from(hasher.finish())
    };
    (half(1) << 64) | half(2)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync_and_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Cluster>();
        assert_send_sync::<ClusterConfig>();
        assert_send_sync::<ClusterError>();
    }

    #[test]
    fn node_ids_differ_between_nodes() {
        assert_ne!(random_node_id(), random_node_id());
    }

    #[actix_rt::test]
    async fn an_invalid_url_is_an_invalid_url_error_naming_it() {
        let error = Cluster::connect("not a url").await.expect_err("invalid");
        assert!(
            matches!(&error, ClusterError::InvalidUrl { url, .. } if url == "not a url"),
            "{error:?}"
        );
        assert!(error.to_string().contains("not a url"), "{error}");
    }
}
