//! The tasks on a cluster's thread: connecting, publishing in batches,
//! taking in what Redis pushes, delivering it to the local members, and the
//! health check that keeps reconnection going.

use std::{
    sync::{Arc, Weak},
    time::Duration,
};

use bytes::Bytes;
use redis::{
    aio::{ConnectionManager, ConnectionManagerConfig},
    PushInfo, PushKind, Value,
};
use tokio::sync::{mpsc, oneshot};

use super::{
    config::ClusterConfig,
    envelope::{self, Envelope},
    link::Shared,
    stats::bump,
};
use crate::cluster_error::ClusterError;

/// Most publishes sent to Redis in one pipeline (one write, one round trip).
const PUBLISH_BATCH: usize = 256;

/// One broadcast (or presence change) waiting to be sent: its commands, in
/// order, in one pipeline with the others queued.
pub(super) struct Publish {
    pub(super) commands: Vec<redis::Cmd>,
    /// Counted in [`ClusterStats`](super::stats::ClusterStats) as a broadcast.
    pub(super) broadcast: bool,
    pub(super) done: oneshot::Sender<Result<(), ClusterError>>,
}

/// What the background thread hands back once Redis answered.
pub(super) struct Started {
    /// The connection that subscribes: it carries the pushes, and nothing
    /// that could fill its output buffer in Redis.
    pub(super) subscriber: ConnectionManager,
    /// The connection for commands: publishes, history reads, presence.
    pub(super) commands: ConnectionManager,
    pub(super) runtime: tokio::runtime::Handle,
    pub(super) publish: mpsc::Sender<Publish>,
}

/// On the cluster's thread: connects, then starts the publishing, delivery
/// and health-check tasks.
pub(super) async fn start(
    client: redis::Client,
    config: ClusterConfig,
    shared: Arc<Shared>,
) -> Result<Started, ClusterError> {
    let (inbound_tx, inbound_rx) = mpsc::channel(config.inbound_capacity);
    let receiver = Arc::clone(&shared);
    let plain = ConnectionManagerConfig::new()
        .set_max_delay(Duration::from_secs(1))
        .set_connection_timeout(Some(config.publish_timeout))
        .set_response_timeout(Some(config.publish_timeout));
    // Two connections. Redis counts every reply to a subscribed connection
    // against the pub/sub output buffer limit (32 MB by default), and closes
    // the connection past it: history pages read by many recovering sockets
    // at once took it past that, and with it the node's subscriptions. So
    // the subscriber only subscribes, and commands go on the other.
    let subscriber_config = plain
        .clone()
        .set_push_sender(move |push: PushInfo| receive(&receiver, &inbound_tx, push))
        .set_automatic_resubscription();
    let refused = |error: redis::RedisError| ClusterError::from_redis(&shared.url, &error);
    let subscriber = ConnectionManager::new_with_config(client.clone(), subscriber_config)
        .await
        .map_err(refused)?;
    let mut commands = ConnectionManager::new_with_config(client, plain)
        .await
        .map_err(refused)?;
    // Alive before any group can announce a member: a sweep elsewhere must
    // not take this node's first members for a silent node's.
    shared
        .within(
            config.publish_timeout,
            super::presence::heartbeat(&config.prefix, shared.node).exec_async(&mut commands),
        )
        .await?;
    let (publish_tx, publish_rx) = mpsc::channel(config.publish_capacity);
    tokio::spawn(publish_loop(
        publish_rx,
        commands.clone(),
        Arc::clone(&shared),
        config.publish_timeout,
    ));
    tokio::spawn(deliver_loop(inbound_rx, Arc::clone(&shared)));
    tokio::spawn(health_loop(
        subscriber.clone(),
        Arc::downgrade(&shared),
        config.health_check,
    ));
    tokio::spawn(super::presence::heartbeat_loop(
        commands.clone(),
        Arc::downgrade(&shared),
        config.prefix.clone(),
    ));
    tokio::spawn(super::presence::sweep_loop(
        commands.clone(),
        Arc::downgrade(&shared),
        config.prefix.clone(),
    ));
    Ok(Started {
        subscriber,
        commands,
        runtime: tokio::runtime::Handle::current(),
        publish: publish_tx,
    })
}

/// Called by the `redis` crate for every push, on the cluster's thread; must
/// not block. Decodes, drops this node's own envelopes, and queues the rest
/// for delivery without ever waiting: a full queue drops and counts.
fn receive(
    shared: &Shared,
    inbound: &mpsc::Sender<(Arc<str>, Envelope)>,
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
    if envelope.origin == shared.node && envelope.change.is_none() && envelope.offset.is_none() {
        // Our own broadcast, echoed: its local members already have it.
        // (Presence changes and recorded broadcasts come back to every
        // node, ours too: a group with history delivers on the echo.)
        return Ok(());
    }
    if envelope.change.is_some() {
        // Presence changes are not broadcasts: not counted; one lost to a
        // full queue is repaired by the next sweep's snapshot.
        if inbound.try_send((channel, envelope)).is_err() {
            log::debug!(
                "cluster node {:032x}: a presence change was dropped",
                shared.node
            );
        }
        return Ok(());
    }
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
async fn deliver_loop(mut inbound: mpsc::Receiver<(Arc<str>, Envelope)>, shared: Arc<Shared>) {
    while let Some((channel, envelope)) = inbound.recv().await {
        // Upgrade under the lock, use and drop outside it: dropping the last
        // handle of a group takes the same lock.
        let group = shared
            .groups()
            .get(&*channel)
            .and_then(|weak| weak.upgrade());
        let Some(group) = group else {
            log::trace!("cluster: broadcast on {channel}, which is no longer open here");
            continue;
        };
        if let Some(change) = envelope.change {
            // Not counted as delivered: a presence change, not a broadcast.
            super::presence::apply(&shared, &group, &envelope, change);
            continue;
        }
        if envelope.offset.is_some() != group.has_history() {
            let total = bump(&shared.counters.history_mismatch);
            if total.is_power_of_two() {
                log::warn!(
                    "cluster: a broadcast on {channel} from node {:032x} was {} there and this node opened the group {}: \
                     every node must open it the same way, or replays miss what was not recorded ({total} so far)",
                    envelope.origin,
                    if envelope.offset.is_some() { "recorded" } else { "not recorded" },
                    if group.has_history() { "with a history" } else { "without one" },
                );
            }
        }
        let report = match &envelope.offset {
            Some(offset) => {
                // A recorded broadcast comes back to its origin too, where
                // the excluded socket lives.
                let skip = envelope.except.filter(|_| envelope.origin == shared.node);
                group.deliver_recorded(offset, &envelope.message, skip)
            }
            // The excluded socket lives on the origin node; here everyone gets it.
            None => group.deliver(&envelope.message),
        };
        drop(group);
        bump(&shared.counters.delivered);
        log::trace!(
            "cluster: broadcast from node {:032x} on {channel}: {report:?}",
            envelope.origin
        );
    }
}

/// Publishes queued broadcasts in order, as many as are waiting in one
/// pipeline, and tells each caller how it went: a broadcast Redis refuses
/// (a script error, a key of another type) fails alone, the others of its
/// pipeline are published and say so.
async fn publish_loop(
    mut queue: mpsc::Receiver<Publish>,
    mut manager: ConnectionManager,
    shared: Arc<Shared>,
    timeout: Duration,
) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    let mut sizes = Vec::with_capacity(PUBLISH_BATCH);
    while queue.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let mut pipe = redis::pipe();
        // One answer per command, errors included, instead of the first
        // error for the whole pipeline.
        pipe.ignore_errors();
        for publish in &mut batch {
            sizes.push(publish.commands.len());
            for command in publish.commands.drain(..) {
                pipe.add_command(command);
            }
        }
        let mut answers = match shared
            .within(
                timeout,
                pipe.query_async::<Vec<redis::RedisResult<Value>>>(&mut manager),
            )
            .await
        {
            Ok(answers) => Ok(answers.into_iter()),
            Err(error) => {
                log::debug!(
                    "cluster node {:032x}: {} publishes not sent: {error}",
                    shared.node,
                    batch.len()
                );
                Err(error)
            }
        };
        for (publish, size) in batch.drain(..).zip(sizes.drain(..)) {
            let outcome = match &mut answers {
                // All of this publish's answers are taken (the next
                // publish's start after them); the first error is its.
                Ok(each) => match each
                    .by_ref()
                    .take(size)
                    .fold(None, |first, answer| first.or(answer.err()))
                {
                    None => Ok(()),
                    Some(refused) => {
                        log::debug!("cluster: Redis refused a publish: {refused}");
                        Err(ClusterError::from_redis(&shared.url, &refused))
                    }
                },
                Err(error) => Err(error.clone()),
            };
            // Counted before the caller hears: stats read after a report
            // include it.
            if publish.broadcast {
                bump(if outcome.is_ok() {
                    &shared.counters.published
                } else {
                    &shared.counters.publish_failed
                });
            }
            // A caller that dropped its report does not want the answer.
            let _ = publish.done.send(outcome);
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
        if let Err(error) = shared
            .within(
                period.max(Duration::from_secs(1)),
                ping.exec_async(&mut manager),
            )
            .await
        {
            log::debug!("cluster node {:032x}: health check: {error}", shared.node);
        }
    }
}
