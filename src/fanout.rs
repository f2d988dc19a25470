//! What a [`Group`](crate::group::Group) needs from a broker to reach its
//! members on other nodes: the [`Fanout`] a cluster plugs into a group.
//!
//! This module owns that seam and nothing else. A group keeps its local
//! members and delivers to them itself; a group opened through a
//! [`Cluster`](crate::Cluster) also holds a `Fanout`, which publishes each
//! broadcast for the other nodes and unsubscribes when the group's last
//! handle is dropped. The group never knows the broker; the cluster never
//! holds the members.

use std::time::Duration;

use futures::future::BoxFuture;
use tokio::sync::oneshot;

use crate::{
    cluster_error::ClusterError,
    history::{Offset, Read},
    message::Message,
};

/// The remote part of one broadcast: queued for the broker (and a receiver
/// of the broker's answer), or refused at once.
pub(crate) type Pending = Result<oneshot::Receiver<Result<(), ClusterError>>, ClusterError>;

/// A group's link to the members of the other nodes.
pub(crate) trait Fanout: Send + Sync + 'static {
    /// The group's name on every node.
    fn name(&self) -> &str;

    /// Queues `message` for every other node, without waiting; `except` is
    /// the socket of this node that must not get it
    /// ([`Group::broadcast_except`](crate::group::Group::broadcast_except)).
    fn publish(&self, message: &Message, except: Option<u64>) -> Pending;

    /// Records `message` in the broker's history of the group and publishes
    /// it with its offset to every node, this one included: a group with
    /// history delivers on the broker's echo, so that every node sees one
    /// order of offsets.
    fn publish_recorded(&self, message: &Message, except: Option<u64>) -> Pending;

    /// At most `max` recorded messages after `since`, none older than
    /// `max_age`, or a gap.
    fn read_history(
        &self,
        since: &Offset,
        max: usize,
        max_age: Duration,
    ) -> BoxFuture<'static, Result<Read, ClusterError>>;

    /// The group-wide presence id of socket `socket` of this node.
    fn member_id(&self, socket: u64) -> String;

    /// Records a member of this node in the broker's presence and announces
    /// it (a join, or an update of its metadata) to every node.
    fn track(&self, socket: u64, meta: &str, update: bool);

    /// Removes a member of this node from the broker's presence and
    /// announces its leave to every node.
    fn untrack(&self, socket: u64);
}
