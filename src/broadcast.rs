//! [`Broadcast`]: the report of one broadcast of a
//! [`Group`](crate::group::Group), and for a clustered group the pending
//! publish to the other nodes.
//!
//! This module owns the report's shape and nothing else.

#[cfg(feature = "redis")]
use crate::{cluster_error::ClusterError, fanout::Pending};

/// What a broadcast did: how many members it was queued for, how many
/// refused it for backpressure, how many were found closed (and removed).
///
/// The three counts add up to the number of this process's members the
/// broadcast was addressed to. For a group opened through a
/// `Cluster` (feature `redis`), `published()` (feature `redis`) waits for
/// the broker to accept the copy for the other processes; dropping the
/// report does not cancel that publish.
///
/// In a group with history, a recovering member counts as `sent` when the
/// message waits for it behind its replay. A clustered group with history
/// delivers on the broker's echo, the origin's members too
/// (`Cluster::group_with_history`, feature `redis`): its report counts no
/// member, and `published()` says whether the broker recorded it.
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
    /// Members the message was queued for: the promise of [`Socket::send`](crate::Socket::send)
    /// returning `Ok` (queued in order on that connection), not that the
    /// client received it.
    pub sent: usize,
    /// Members that refused the message with [`SendError::Backpressure`](crate::SendError::Backpressure):
    /// their client is not reading fast enough and their outbound buffer is
    /// full. They missed this message and stay in the group, unless the
    /// socket is no longer open after the refusal; under
    /// [`BackpressurePolicy::Close`](crate::BackpressurePolicy::Close) the
    /// refusal closes the connection, and a broadcast removes the member
    /// once its socket reports closed.
    pub backpressured: usize,
    /// Members whose socket was closing or closed ([`SendError::Closed`](crate::SendError::Closed));
    /// they have been removed from the group.
    pub closed: usize,
    /// The copy for the other nodes: `None` for a local group.
    #[cfg(feature = "redis")]
    pub(crate) published: Option<Pending>,
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
    /// [`ClusterError::Unreachable`] or [`ClusterError::Timeout`] when
    /// Redis failed or did not answer, [`ClusterError::Refused`] when Redis
    /// refused this broadcast (broadcasts queued together go to Redis in one
    /// pipeline, but each gets its own answer: one that Redis refuses does
    /// not fail the others), [`ClusterError::Stopped`] when the cluster
    /// stopped first.
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
