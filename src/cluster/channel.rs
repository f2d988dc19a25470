//! Opening a named group on a node ([`Cluster::group`]) and the per-group
//! link that publishes its broadcasts and unsubscribes when the group's last
//! handle is dropped.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot};

use super::{
    envelope::{self, Change},
    history,
    link::{Cluster, Inner},
    presence,
    stats::bump,
    tasks::Publish,
};
use crate::{
    cluster_error::ClusterError,
    fanout::{Fanout, Pending},
    group::Group,
    history::{History, Offset, Read},
    message::Message,
};

impl Cluster {
    /// Opens the named group on this node: subscribes this node to the
    /// group's channel (returning once Redis confirmed it) and returns a
    /// [`Group`] whose broadcasts also reach every other node's members of
    /// that name. Opening a name that is already open here returns a handle
    /// to the same group (same local members). The node stays subscribed
    /// until the last handle of the group is dropped.
    ///
    /// Subscribing when the group is opened, rather than when its first
    /// member joins, means a member never misses a broadcast because a
    /// `SUBSCRIBE` is still on its way; a node with no member of a group it
    /// keeps open still receives the group's traffic (and delivers it to
    /// nobody).
    ///
    /// ```no_run
    /// # async fn demo(cluster: actix_ws_listener::Cluster) -> Result<(), actix_ws_listener::ClusterError> {
    /// let room = cluster.group("lobby").await?;
    /// assert_eq!(room.name(), Some("lobby"));
    /// room.broadcast("hello, every node").published().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// [`ClusterError::Unreachable`], [`ClusterError::Refused`] or
    /// [`ClusterError::Timeout`] when Redis did not confirm the
    /// subscription; [`ClusterError::Stopped`] when the background thread
    /// is gone.
    pub async fn group(&self, name: &str) -> Result<Group, ClusterError> {
        self.open(name, None).await
    }

    /// Opens (or finds) the named group, with `history` when it is new.
    pub(super) async fn open(
        &self,
        name: &str,
        history: Option<History>,
    ) -> Result<Group, ClusterError> {
        let channel = format!("{}{name}", self.inner.config.prefix);
        let group = {
            let mut groups = self.inner.shared.groups();
            match groups.get(&channel).and_then(|weak| weak.upgrade()) {
                Some(open) => open,
                None => {
                    let group = Group::with_fanout(
                        Box::new(Channel {
                            name: name.to_owned(),
                            channel: channel.as_str().into(),
                            cluster: Arc::clone(&self.inner),
                            history: history.clone(),
                        }),
                        history,
                    );
                    groups.insert(channel.clone(), group.downgrade());
                    group
                }
            }
        };
        // Always confirmed, even for an open group: a concurrent opener may
        // still be waiting for its SUBSCRIBE. Redis ignores a repeat.
        let (mut manager, lock, timeout, shared) = (
            self.inner.subscriber.clone(),
            Arc::clone(&self.inner.subscriptions),
            self.inner.config.publish_timeout,
            Arc::clone(&self.inner.shared),
        );
        self.inner
            .run(async move {
                let _one_at_a_time = lock.lock().await;
                shared.within(timeout, manager.subscribe(&channel)).await
            })
            .await?;
        log::debug!(
            "cluster node {:032x} subscribed to {}{name}",
            self.inner.shared.node,
            self.inner.config.prefix
        );
        Ok(group)
    }
}

/// One named group's link to the other nodes: its channel, and the cluster
/// that publishes on it.
struct Channel {
    name: String,
    channel: Arc<str>,
    cluster: Arc<Inner>,
    /// For a group with history: its length and age, for the stream.
    history: Option<History>,
}

impl Channel {
    /// Queues presence commands; a refusal (backlog) is logged: the node's
    /// next sweeps write a lost join again and remove a lost leave's entry.
    fn send(&self, commands: Vec<redis::Cmd>) {
        let (done, _answer) = oneshot::channel();
        let publish = Publish {
            commands,
            broadcast: false,
            done,
        };
        if let Err(refused) = self.cluster.publish.try_send(publish) {
            let why = match refused {
                mpsc::error::TrySendError::Full(_) => ClusterError::Backlog,
                mpsc::error::TrySendError::Closed(_) => ClusterError::Stopped,
            };
            log::debug!(
                "cluster: presence change on {} not sent: {why}",
                self.channel
            );
        }
    }
}

impl Fanout for Channel {
    fn name(&self) -> &str {
        &self.name
    }

    fn member_id(&self, socket: u64) -> String {
        presence::member_id(self.cluster.shared.node, socket)
    }

    fn track(&self, socket: u64, meta: &str, update: bool) {
        let node = self.cluster.shared.node;
        let mut hset = redis::cmd("HSET");
        hset.arg(presence::hash_key(&self.channel))
            .arg(presence::member_id(node, socket))
            .arg(meta);
        let change = if update { Change::Update } else { Change::Join };
        let mut announce = redis::cmd("PUBLISH");
        announce
            .arg(&*self.channel)
            .arg(&envelope::encode_change(node, socket, change, meta)[..]);
        let renew = presence::renew_hash(&self.channel);
        self.send(vec![hset, renew, announce]);
    }

    fn untrack(&self, socket: u64) {
        let node = self.cluster.shared.node;
        let mut hdel = redis::cmd("HDEL");
        hdel.arg(presence::hash_key(&self.channel))
            .arg(presence::member_id(node, socket));
        let mut announce = redis::cmd("PUBLISH");
        announce
            .arg(&*self.channel)
            .arg(&envelope::encode_change(node, socket, Change::Leave, "")[..]);
        self.send(vec![hdel, announce]);
    }

    fn publish(&self, message: &Message, except: Option<u64>) -> Pending {
        let mut command = redis::cmd("PUBLISH");
        command
            .arg(&*self.channel)
            .arg(&envelope::encode(self.cluster.shared.node, except, message)[..]);
        self.queue_broadcast(command)
    }

    fn publish_recorded(&self, message: &Message, except: Option<u64>) -> Pending {
        let Some(settings) = &self.history else {
            return self.publish(message, except);
        };
        let node = self.cluster.shared.node;
        self.queue_broadcast(history::record(
            node,
            &self.channel,
            settings,
            except,
            message,
        ))
    }

    fn read_history(
        &self,
        since: &Offset,
        max: usize,
        max_age: Duration,
    ) -> BoxFuture<'static, Result<Read, ClusterError>> {
        // Every node of a group must use the same `History`; this node's
        // setting decides the expiry it renews.
        let meta_expiry = self.history.as_ref().map_or(max_age, History::meta_expiry);
        history::read(
            &self.cluster,
            &self.channel,
            since,
            max,
            max_age,
            meta_expiry,
        )
    }
}

impl Channel {
    /// Queues one broadcast's command for the publishing task.
    fn queue_broadcast(&self, command: redis::Cmd) -> Pending {
        let cluster = &self.cluster;
        let (done, outcome) = oneshot::channel();
        let publish = Publish {
            commands: vec![command],
            broadcast: true,
            done,
        };
        match cluster.publish.try_send(publish) {
            Ok(()) => Ok(outcome),
            Err(refused) => {
                let error = match refused {
                    mpsc::error::TrySendError::Full(_) => ClusterError::Backlog,
                    mpsc::error::TrySendError::Closed(_) => ClusterError::Stopped,
                };
                let total = bump(&cluster.shared.counters.publish_failed);
                log::debug!(
                    "cluster: broadcast on {} not published: {error} ({total} failed so far)",
                    self.channel
                );
                Err(error)
            }
        }
    }
}

/// Runs when the group's last handle is dropped: forget it, and unsubscribe
/// unless it was reopened meanwhile.
impl Drop for Channel {
    fn drop(&mut self) {
        let shared = Arc::clone(&self.cluster.shared);
        {
            let mut groups = shared.groups();
            if groups
                .get(&*self.channel)
                .is_some_and(|group| !group.is_alive())
            {
                groups.remove(&*self.channel);
            }
        }
        let (mut manager, lock, channel) = (
            self.cluster.subscriber.clone(),
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
            match shared.within(timeout, manager.unsubscribe(&*channel)).await {
                Ok(()) => log::debug!(
                    "cluster node {:032x} unsubscribed from {channel}",
                    shared.node
                ),
                Err(error) => log::debug!("cluster: unsubscribe from {channel}: {error}"),
            }
        }));
    }
}
