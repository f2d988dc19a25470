//! Named groups that span processes through Redis pub/sub (S18):
//! [`Cluster`], [`ClusterGroup`] and their reports.
//!
//! This module owns the link to the broker: one background thread per
//! [`Cluster`] with its own single-threaded tokio runtime, which holds the
//! Redis connection (a `redis` crate `ConnectionManager` speaking RESP3, so
//! it reconnects and resubscribes by itself), publishes, and delivers what
//! other nodes published to the local members through a plain [`Group`].
//! It sends to sockets only through [`Group`], so every promise of a local
//! broadcast (shared payload, never blocks, bounded outbound memory, closed
//! members removed) holds for remote deliveries too. It must not know
//! frames, connections or listeners.
//!
//! # Wire shape
//!
//! - A node is one [`Cluster`] handle: it gets a random 128-bit id when it
//!   connects (two handles in one process are two nodes).
//! - Group `NAME` is the Redis channel `PREFIX` + `NAME`
//!   ([`ClusterConfig::prefix`], default `actix-ws-listener:group:`). A node
//!   is subscribed to it from [`Cluster::group`] until the last handle of
//!   that group on the node is dropped.
//! - Each broadcast is one `PUBLISH` of a versioned binary envelope:
//!
//! ```text
//! offset  size  field
//! 0       1     version: 1
//! 1       1     kind: 1 text, 2 binary (the WebSocket opcodes)
//! 2       16    origin node id, big-endian
//! 18      8     excluded socket id, big-endian (0: none)
//! 26      ..    the message payload, as the WebSocket message carries it
//! ```
//!
//! The origin delivers to its own members directly, as [`Group`] does, and
//! ignores its own envelope when Redis echoes it back, so no member of the
//! origin gets a broadcast twice. The excluded socket of
//! [`ClusterGroup::broadcast_except`] lives on the origin node (socket ids
//! are per process), so the other nodes deliver to all their members; the
//! id travels so that the envelope says all the broadcast meant. Payloads
//! that do not decode (another version, another program on the channel)
//! are counted in [`ClusterStats::malformed`] and dropped.
//!
//! # Guarantees
//!
//! - **Exactly once while Redis is up**: every member of every node that is
//!   subscribed when the envelope reaches Redis gets the message once
//!   (subject to the member's own backpressure, as for a local broadcast).
//! - **At most once across an outage**: Redis pub/sub keeps nothing. What is
//!   published while a node is disconnected never reaches that node's
//!   members; broadcasts issued while this node is disconnected fail
//!   ([`ClusterBroadcast::published`] says so) and reach only the local
//!   members. Nothing is replayed after the outage.
//! - **Resubscription**: when the connection drops, the connection manager
//!   reconnects with exponential backoff and subscribes again to every
//!   channel; a health-check `PING` every [`ClusterConfig::health_check`]
//!   starts a new round of attempts if a round gave up. Delivery resumes by
//!   itself.
//! - **Order**: broadcasts from one node reach every other node in the order
//!   they were issued on that node (one publishing task, one connection).
//!   Broadcasts from different nodes have no common order.
//! - **Bounded**: publishes wait in a queue of
//!   [`ClusterConfig::publish_capacity`] (past it a broadcast fails with
//!   [`ClusterError::Backlog`]); envelopes read from Redis wait for delivery
//!   in a queue of [`ClusterConfig::inbound_capacity`] (past it they are
//!   dropped, counted in [`ClusterStats::dropped`] and logged at debug).
//!   Redis itself disconnects a subscriber that falls too far behind
//!   (`client-output-buffer-limit pubsub`); the node then reconnects.
//!
//! The `redis` crate forwards what it reads to our bounded queue through
//! its own channel, drained by a task that only does a non-blocking
//! `try_send`, on the same thread that reads the socket.

use std::{
    collections::HashMap,
    fmt,
    future::Future,
    hash::{BuildHasher, Hasher},
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, Weak,
    },
    time::Duration,
};

use bytes::Bytes;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    IntoConnectionInfo, ProtocolVersion, PushInfo, PushKind, Value,
};
use tokio::sync::{mpsc, oneshot};

use crate::{Broadcast, Group, Message, Socket};

mod envelope;

/// Most publishes sent to Redis in one pipeline (one write, one round trip).
const PUBLISH_BATCH: usize = 256;

/// How a [`Cluster`] talks to Redis. A plain struct with [`Default`];
/// every setting states its default.
///
/// ```
/// use std::time::Duration;
/// use actix_ws_listener::ClusterConfig;
///
/// let config = ClusterConfig::default()
///     .prefix("chat:")
///     .inbound_capacity(4096)
///     .publish_timeout(Duration::from_secs(2));
/// # let _ = config;
/// ```
#[derive(Clone, Debug)]
pub struct ClusterConfig {
    prefix: String,
    inbound_capacity: usize,
    publish_capacity: usize,
    publish_timeout: Duration,
    health_check: Duration,
}

impl Default for ClusterConfig {
    fn default() -> Self {
        ClusterConfig {
            prefix: "actix-ws-listener:group:".to_owned(),
            inbound_capacity: 1024,
            publish_capacity: 1024,
            publish_timeout: Duration::from_secs(5),
            health_check: Duration::from_secs(1),
        }
    }
}

impl ClusterConfig {
    /// Prefix of every group's Redis channel. Default
    /// `actix-ws-listener:group:`; give each application sharing a Redis
    /// its own.
    #[must_use]
    pub fn prefix(mut self, prefix: impl Into<String>) -> Self {
        self.prefix = prefix.into();
        self
    }

    /// Envelopes read from Redis and waiting for delivery to local members.
    /// Default 1024: a burst of that many broadcasts from other nodes is
    /// absorbed; past it envelopes are dropped and counted
    /// ([`ClusterStats::dropped`]) instead of growing memory. At least 1.
    #[must_use]
    pub fn inbound_capacity(mut self, envelopes: usize) -> Self {
        self.inbound_capacity = envelopes.max(1);
        self
    }

    /// Broadcasts of this node waiting to be published. Default 1024; past
    /// it [`ClusterGroup::broadcast`] reports [`ClusterError::Backlog`] (the
    /// local members still get the message). At least 1.
    #[must_use]
    pub fn publish_capacity(mut self, broadcasts: usize) -> Self {
        self.publish_capacity = broadcasts.max(1);
        self
    }

    /// How long a publish (and a subscribe) may take before it is reported
    /// as [`ClusterError::Timeout`]. Default 5 s.
    #[must_use]
    pub fn publish_timeout(mut self, timeout: Duration) -> Self {
        self.publish_timeout = timeout;
        self
    }

    /// Period of the `PING` that keeps reconnection going while nothing is
    /// published. Default 1 s: a node that only listens notices a restarted
    /// Redis within about a second of it accepting connections.
    #[must_use]
    pub fn health_check(mut self, period: Duration) -> Self {
        self.health_check = period.max(Duration::from_millis(10));
        self
    }
}

/// Why a cluster operation failed. Local members are never affected: a
/// broadcast reaches them before anything is published.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// Redis refused the URL, could not be reached, or answered a command
    /// with an error (the text is the `redis` crate's).
    Broker(String),
    /// [`ClusterConfig::publish_capacity`] broadcasts of this node are
    /// already waiting for Redis: this one was not published.
    Backlog,
    /// Redis did not answer within [`ClusterConfig::publish_timeout`]; the
    /// broadcast may or may not have been published.
    Timeout,
    /// The cluster's background thread is gone (its runtime failed to start,
    /// or the process is shutting down).
    Stopped,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::Broker(reason) => write!(f, "redis: {reason}"),
            ClusterError::Backlog => f.write_str("too many broadcasts waiting for redis"),
            ClusterError::Timeout => f.write_str("redis did not answer in time"),
            ClusterError::Stopped => f.write_str("the cluster's background thread has stopped"),
        }
    }
}

impl std::error::Error for ClusterError {}

impl From<redis::RedisError> for ClusterError {
    fn from(error: redis::RedisError) -> Self {
        ClusterError::Broker(error.to_string())
    }
}

/// Counters of one node since it connected, for an operator's dashboard
/// and for alerts on [`ClusterStats::dropped`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Broadcasts of this node that Redis accepted.
    pub published: u64,
    /// Broadcasts of this node that were not published (any
    /// [`ClusterError`]).
    pub publish_failed: u64,
    /// Envelopes from other nodes taken into the inbound queue.
    pub received: u64,
    /// Envelopes from other nodes handed to the local members' group.
    pub delivered: u64,
    /// Envelopes from other nodes dropped because the inbound queue was full:
    /// this node could not keep up with the broker.
    pub dropped: u64,
    /// Payloads on a group channel that were not a valid envelope.
    pub malformed: u64,
}

#[derive(Default)]
struct Counters {
    published: AtomicU64,
    publish_failed: AtomicU64,
    received: AtomicU64,
    delivered: AtomicU64,
    dropped: AtomicU64,
    malformed: AtomicU64,
}

fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}

/// What the cluster's tasks and its handles share: the node id, the open
/// groups by channel, the counters.
struct Shared {
    node: u128,
    groups: Mutex<HashMap<String, Weak<GroupShared>>>,
    counters: Counters,
}

impl Shared {
    fn groups(&self) -> MutexGuard<'_, HashMap<String, Weak<GroupShared>>> {
        // Only inserts and removes of whole entries run under this lock.
        self.groups
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn is_open(&self, channel: &str) -> bool {
        self.groups()
            .get(channel)
            .is_some_and(|group| group.strong_count() > 0)
    }
}

/// One node's link to Redis: open named groups with [`Cluster::group`].
///
/// Connect once per process, before starting the server, and share the
/// handle (it is `Clone + Send + Sync`): every actix-web worker's listeners
/// broadcast through the same connection. The link lives on a thread of its
/// own with a single-threaded tokio runtime, so it works the same under any
/// number of workers and never runs on a worker's thread; it stops when the
/// last `Cluster` and [`ClusterGroup`] handle is dropped.
///
/// ```no_run
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{Cluster, ClusterGroup, CloseCode, Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Member(ClusterGroup);
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
/// async fn ws(upgrade: WebSocketUpgrade, room: web::Data<ClusterGroup>) -> impl Responder {
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
#[derive(Clone)]
pub struct Cluster {
    inner: Arc<Inner>,
}

struct Inner {
    shared: Arc<Shared>,
    config: ClusterConfig,
    manager: ConnectionManager,
    runtime: tokio::runtime::Handle,
    publish: mpsc::Sender<Publish>,
    /// Subscribe and unsubscribe run one at a time, so that an unsubscribe
    /// for a dropped group cannot overtake the subscribe of a reopened one.
    subscriptions: Arc<tokio::sync::Mutex<()>>,
    /// Dropped with the last handle: the background thread then stops.
    _stop: oneshot::Sender<()>,
}

/// One broadcast waiting to be published.
struct Publish {
    channel: Arc<str>,
    payload: Bytes,
    done: oneshot::Sender<Result<(), ClusterError>>,
}

/// What the background thread hands back once Redis answered.
struct Started {
    manager: ConnectionManager,
    runtime: tokio::runtime::Handle,
    publish: mpsc::Sender<Publish>,
}

impl Cluster {
    /// Connects to Redis at `url` (`redis://host:port/db`,
    /// `redis+unix:///path`, …) with the default [`ClusterConfig`].
    ///
    /// # Errors
    /// [`ClusterError::Broker`] when the URL is invalid or Redis cannot be
    /// reached (after the connection manager's retries, a few seconds);
    /// [`ClusterError::Stopped`] when the background thread cannot start.
    pub async fn connect(url: &str) -> Result<Cluster, ClusterError> {
        Cluster::connect_with(url, ClusterConfig::default()).await
    }

    /// [`Cluster::connect`] with a [`ClusterConfig`].
    ///
    /// # Errors
    /// As [`Cluster::connect`].
    pub async fn connect_with(url: &str, config: ClusterConfig) -> Result<Cluster, ClusterError> {
        let info = url.into_connection_info()?;
        // RESP3: pub/sub pushes and commands share one connection, and the
        // connection manager can resubscribe after reconnecting.
        let resp3 = info
            .redis_settings()
            .clone()
            .set_protocol(ProtocolVersion::RESP3);
        let client = redis::Client::open(info.set_redis_settings(resp3))?;
        let shared = Arc::new(Shared {
            node: random_node_id(),
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
                    let started = start(client, thread_config, thread_shared).await;
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
        log::debug!("cluster node {:032x} connected to {url}", shared.node);
        Ok(Cluster {
            inner: Arc::new(Inner {
                shared,
                config,
                manager: started.manager,
                runtime: started.runtime,
                publish: started.publish,
                subscriptions: Arc::new(tokio::sync::Mutex::new(())),
                _stop: stop_tx,
            }),
        })
    }

    /// Opens the named group on this node: subscribes this node to the
    /// group's channel (returning once Redis confirmed it) and returns a
    /// handle. Opening a name that is already open here returns a handle to
    /// the same group (same local members). The node stays subscribed until
    /// the last handle of the group is dropped.
    ///
    /// Subscribing when the group is opened, rather than when its first
    /// member joins, means a member never misses a broadcast because a
    /// `SUBSCRIBE` is still on its way; a node with no member of a group it
    /// keeps open still receives the group's traffic (and delivers it to
    /// nobody).
    ///
    /// # Errors
    /// [`ClusterError::Broker`] or [`ClusterError::Timeout`] when Redis did
    /// not confirm the subscription; [`ClusterError::Stopped`] when the
    /// background thread is gone.
    pub async fn group(&self, name: &str) -> Result<ClusterGroup, ClusterError> {
        let channel = format!("{}{name}", self.inner.config.prefix);
        let group = {
            let mut groups = self.inner.shared.groups();
            match groups.get(&channel).and_then(Weak::upgrade) {
                Some(open) => open,
                None => {
                    let group = Arc::new(GroupShared {
                        name: name.to_owned(),
                        channel: channel.as_str().into(),
                        local: Group::new(),
                        cluster: Arc::clone(&self.inner),
                    });
                    groups.insert(channel.clone(), Arc::downgrade(&group));
                    group
                }
            }
        };
        // Always confirmed, even for an open group: a concurrent opener may
        // still be waiting for its SUBSCRIBE. Redis ignores a repeat.
        let (mut manager, lock, timeout) = (
            self.inner.manager.clone(),
            Arc::clone(&self.inner.subscriptions),
            self.inner.config.publish_timeout,
        );
        self.inner
            .run(async move {
                let _one_at_a_time = lock.lock().await;
                within(timeout, manager.subscribe(&channel)).await
            })
            .await?;
        log::debug!(
            "cluster node {:032x} subscribed to {}",
            self.inner.shared.node,
            group.channel
        );
        Ok(ClusterGroup { group })
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
        let c = &self.inner.shared.counters;
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClusterStats {
            published: read(&c.published),
            publish_failed: read(&c.publish_failed),
            received: read(&c.received),
            delivered: read(&c.delivered),
            dropped: read(&c.dropped),
            malformed: read(&c.malformed),
        }
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
    async fn run<T: Send + 'static>(
        &self,
        task: impl Future<Output = Result<T, ClusterError>> + Send + 'static,
    ) -> Result<T, ClusterError> {
        self.runtime
            .spawn(task)
            .await
            .map_err(|_| ClusterError::Stopped)?
    }
}

async fn within<T>(
    timeout: Duration,
    future: impl Future<Output = redis::RedisResult<T>>,
) -> Result<T, ClusterError> {
    match tokio::time::timeout(timeout, future).await {
        Ok(result) => Ok(result?),
        Err(_) => Err(ClusterError::Timeout),
    }
}

/// On the cluster's thread: connects, then starts the publishing, delivery
/// and health-check tasks.
async fn start(
    client: redis::Client,
    config: ClusterConfig,
    shared: Arc<Shared>,
) -> Result<Started, ClusterError> {
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
    let receiver = Arc::clone(&shared);
    let manager_config = ConnectionManagerConfig::new()
        .set_push_sender(move |push: PushInfo| receive(&receiver, &inbound_tx, push))
        .set_automatic_resubscription()
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(config.publish_timeout))
        .set_response_timeout(Some(config.publish_timeout));
    let manager = ConnectionManager::new_with_config(client, manager_config).await?;
    let (publish_tx, publish_rx) = mpsc::channel(config.publish_capacity);
    tokio::spawn(publish_loop(
        publish_rx,
        manager.clone(),
        Arc::clone(&shared),
        config.publish_timeout,
    ));
    tokio::spawn(deliver_loop(inbound_rx, Arc::clone(&shared)));
    tokio::spawn(health_loop(
        manager.clone(),
        Arc::downgrade(&shared),
        config.health_check,
    ));
    Ok(Started {
        manager,
        runtime: tokio::runtime::Handle::current(),
        publish: publish_tx,
    })
}

/// Called by the `redis` crate for every push, on the cluster's thread; must
/// not block. Decodes, drops this node's own envelopes, and queues the rest
/// for delivery without ever waiting: a full queue drops and counts.
fn receive(
    shared: &Shared,
    inbound: &mpsc::Sender<(Arc<str>, envelope::Envelope)>,
    push: PushInfo,
) -> Result<(), ()> {
    match push.kind {
        PushKind::Message => {}
        PushKind::Disconnection => {
            log::debug!(
                "cluster node {:032x} lost redis; reconnecting (broadcasts meanwhile are lost)",
                shared.node
            );
            return Ok(());
        }
        _ => return Ok(()),
    }
    let mut data = push.data.into_iter();
    let (Some(Value::BulkString(channel)), Some(Value::BulkString(payload))) =
        (data.next(), data.next())
    else {
        bump(&shared.counters.malformed);
        return Ok(());
    };
    let channel: Arc<str> = String::from_utf8_lossy(&channel).into();
    if envelope::origin(&payload) == Some(shared.node) {
        // Our own broadcast, echoed: its local members already have it.
        return Ok(());
    }
    let envelope = match envelope::decode(Bytes::from(payload)) {
        Ok(envelope) => envelope,
        Err(why) => {
            let total = bump(&shared.counters.malformed);
            log::debug!(
                "cluster: dropped a malformed payload on {channel} ({why:?}; {total} so far)"
            );
            return Ok(());
        }
    };
    match inbound.try_send((Arc::clone(&channel), envelope)) {
        Ok(()) => {
            bump(&shared.counters.received);
            Ok(())
        }
        Err(mpsc::error::TrySendError::Full(_)) => {
            let total = bump(&shared.counters.dropped);
            log::debug!(
                "cluster node {:032x}: delivery queue full, dropped a broadcast on {channel} ({total} dropped so far)",
                shared.node
            );
            Ok(())
        }
        // The delivery task is gone: the cluster is stopping.
        Err(mpsc::error::TrySendError::Closed(_)) => Err(()),
    }
}

/// Delivers queued envelopes to the local members of their group.
async fn deliver_loop(
    mut inbound: mpsc::Receiver<(Arc<str>, envelope::Envelope)>,
    shared: Arc<Shared>,
) {
    while let Some((channel, envelope)) = inbound.recv().await {
        // Upgrade under the lock, use and drop outside it: dropping the last
        // handle of a group takes the same lock.
        let group = shared.groups().get(&*channel).and_then(Weak::upgrade);
        let Some(group) = group else {
            log::trace!("cluster: broadcast on {channel}, which is no longer open here");
            continue;
        };
        // The excluded socket lives on the origin node; here everyone gets it.
        let report = group.local.broadcast(envelope.message);
        bump(&shared.counters.delivered);
        log::trace!(
            "cluster: broadcast from node {:032x} on {channel}: {report:?}",
            envelope.origin
        );
    }
}

/// Publishes queued broadcasts in order, as many as are waiting in one
/// pipeline, and tells each caller how it went.
async fn publish_loop(
    mut queue: mpsc::Receiver<Publish>,
    mut manager: ConnectionManager,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        for publish in &batch {
            pipe.cmd("PUBLISH")
                .arg(&*publish.channel)
                .arg(&publish.payload[..])
                .ignore();
        }
        let outcome = within(timeout, pipe.exec_async(&mut manager)).await;
        let counter = match &outcome {
            Ok(()) => &shared.counters.published,
            Err(error) => {
                log::debug!(
                    "cluster node {:032x}: {} broadcasts not published: {error}",
                    shared.node,
                    batch.len()
                );
                &shared.counters.publish_failed
            }
        };
        counter.fetch_add(batch.len() as u64, Ordering::Relaxed);
        for publish in batch.drain(..) {
            let _ = publish.done.send(outcome.clone());
        }
    }
}

/// Pings Redis every `period` while the cluster lives, so that a node that
/// only listens reconnects (and resubscribes) after an outage.
async fn health_loop(mut manager: ConnectionManager, shared: Weak<Shared>, period: Duration) {
    let mut ticks = tokio::time::interval(period);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let ping = redis::cmd("PING");
        if let Err(error) = within(
            period.max(Duration::from_secs(1)),
            ping.exec_async(&mut manager),
        )
        .await
        {
            log::debug!("cluster node {:032x}: health check: {error}", shared.node);
        }
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

/// A named group on one node: its local members, and its channel.
struct GroupShared {
    name: String,
    channel: Arc<str>,
    local: Group,
    cluster: Arc<Inner>,
}

impl Drop for GroupShared {
    fn drop(&mut self) {
        let shared = Arc::clone(&self.cluster.shared);
        {
            let mut groups = shared.groups();
            if groups
                .get(&*self.channel)
                .is_some_and(|group| group.strong_count() == 0)
            {
                groups.remove(&*self.channel);
            }
        }
        let (mut manager, lock, channel) = (
            self.cluster.manager.clone(),
            Arc::clone(&self.cluster.subscriptions),
            Arc::clone(&self.channel),
        );
        let timeout = self.cluster.config.publish_timeout;
        drop(self.cluster.runtime.spawn(async move {
            let _one_at_a_time = lock.lock().await;
            // Reopened meanwhile: stay subscribed.
            if shared.is_open(&channel) {
                return;
            }
            match within(timeout, manager.unsubscribe(&*channel)).await {
                Ok(()) => log::debug!(
                    "cluster node {:032x} unsubscribed from {channel}",
                    shared.node
                ),
                Err(error) => log::debug!("cluster: unsubscribe from {channel}: {error}"),
            }
        }));
    }
}

/// A named group: the local members of this node, and through Redis the
/// members of every other node that opened the same name. Get one from
/// [`Cluster::group`]; clones share it (`Clone + Send + Sync`).
///
/// Membership is local: [`ClusterGroup::insert`] and
/// [`ClusterGroup::remove`] change this node's members only, and
/// [`ClusterGroup::len`] counts them (no node knows the others' members).
/// An unnamed [`Group`] is unchanged by all this and needs no broker.
#[derive(Clone)]
pub struct ClusterGroup {
    group: Arc<GroupShared>,
}

/// What a cluster broadcast did: the local report at once, the publish
/// outcome when Redis answers.
///
/// Dropping it does not cancel the publish; a failure is then only counted
/// ([`ClusterStats::publish_failed`]) and logged at debug.
#[derive(Debug)]
#[non_exhaustive]
pub struct ClusterBroadcast {
    /// The delivery to this node's members, as [`Group::broadcast`]
    /// reports it; done before anything is published.
    pub local: Broadcast,
    published: Result<oneshot::Receiver<Result<(), ClusterError>>, ClusterError>,
}

impl ClusterBroadcast {
    /// Waits until Redis accepted the publish (every node subscribed at that
    /// moment will deliver it) or it failed.
    ///
    /// ```no_run
    /// # async fn demo(room: actix_ws_listener::ClusterGroup) {
    /// if let Err(error) = room.broadcast("hello").published().await {
    ///     log::warn!("only this node's members got it: {error}");
    /// }
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClusterError::Backlog`] when the publish queue was full,
    /// [`ClusterError::Broker`] or [`ClusterError::Timeout`] when Redis
    /// failed or did not answer, [`ClusterError::Stopped`] when the cluster
    /// stopped first.
    pub async fn published(self) -> Result<(), ClusterError> {
        self.published?.await.map_err(|_| ClusterError::Stopped)?
    }
}

impl ClusterGroup {
    /// The group's name, as given to [`Cluster::group`].
    pub fn name(&self) -> &str {
        &self.group.name
    }

    /// This node's members, as a plain [`Group`] (shared, not a copy): a
    /// broadcast through it stays on this node.
    pub fn local(&self) -> &Group {
        &self.group.local
    }

    /// Adds a local member; `false` if it was one already. See
    /// [`Group::insert`].
    pub fn insert(&self, socket: &Socket) -> bool {
        self.group.local.insert(socket)
    }

    /// Removes a local member; `false` if it was not one. See
    /// [`Group::remove`].
    pub fn remove(&self, socket: &Socket) -> bool {
        self.group.local.remove(socket)
    }

    /// True if the socket is a member on this node.
    pub fn contains(&self, socket: &Socket) -> bool {
        self.group.local.contains(socket)
    }

    /// Number of members on this node.
    pub fn len(&self) -> usize {
        self.group.local.len()
    }

    /// True when this node has no member.
    pub fn is_empty(&self) -> bool {
        self.group.local.is_empty()
    }

    /// Sends one message to every member on every node: this node's members
    /// now, from the shared payload, as [`Group::broadcast`] does; the other
    /// nodes through one `PUBLISH`, queued without waiting. Never blocks,
    /// never panics.
    pub fn broadcast(&self, message: impl Into<Message>) -> ClusterBroadcast {
        let message = message.into();
        let local = self.group.local.broadcast(message.clone());
        self.publish(local, None, &message)
    }

    /// Sends one message to every member on every node except `skip`
    /// (usually the sender), as [`ClusterGroup::broadcast`] does.
    pub fn broadcast_except(&self, skip: &Socket, message: impl Into<Message>) -> ClusterBroadcast {
        let message = message.into();
        let local = self.group.local.broadcast_except(skip, message.clone());
        self.publish(local, Some(skip.id()), &message)
    }

    fn publish(
        &self,
        local: Broadcast,
        except: Option<u64>,
        message: &Message,
    ) -> ClusterBroadcast {
        let cluster = &self.group.cluster;
        let (done, outcome) = oneshot::channel();
        let publish = Publish {
            channel: Arc::clone(&self.group.channel),
            payload: envelope::encode(cluster.shared.node, except, message),
            done,
        };
        let published = match cluster.publish.try_send(publish) {
            Ok(()) => Ok(outcome),
            Err(refused) => {
                let error = match refused {
                    mpsc::error::TrySendError::Full(_) => ClusterError::Backlog,
                    mpsc::error::TrySendError::Closed(_) => ClusterError::Stopped,
                };
                let total = bump(&cluster.shared.counters.publish_failed);
                log::debug!(
                    "cluster: broadcast on {} not published: {error} ({total} failed so far)",
                    self.group.channel
                );
                Err(error)
            }
        };
        ClusterBroadcast { local, published }
    }
}

impl fmt::Debug for ClusterGroup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClusterGroup")
            .field("name", &self.group.name)
            .field("channel", &self.group.channel)
            .field("local_members", &self.len())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handles_are_send_sync_and_clone() {
        fn assert_send_sync<T: Send + Sync + Clone + 'static>() {}
        assert_send_sync::<Cluster>();
        assert_send_sync::<ClusterGroup>();
        assert_send_sync::<ClusterConfig>();
        assert_send_sync::<ClusterError>();
    }

    #[test]
    fn node_ids_differ_between_nodes() {
        assert_ne!(random_node_id(), random_node_id());
    }

    #[test]
    fn capacities_are_at_least_one() {
        let config = ClusterConfig::default()
            .inbound_capacity(0)
            .publish_capacity(0);
        assert_eq!((config.inbound_capacity, config.publish_capacity), (1, 1));
    }

    #[actix_rt::test]
    async fn an_invalid_url_is_a_broker_error() {
        let error = Cluster::connect("not a url").await.expect_err("invalid");
        assert!(matches!(error, ClusterError::Broker(_)), "{error:?}");
    }
}
