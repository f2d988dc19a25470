//! [`ClusterStats`]: what one node counted since it connected, and the
//! atomic counters behind it.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counters of one node since it connected, for an operator's dashboard
/// and for alerts on [`ClusterStats::dropped`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct ClusterStats {
    /// Broadcasts of this node that Redis accepted.
    pub published: u64,
    /// Broadcasts of this node that were not published (any
    /// [`ClusterError`](crate::ClusterError)).
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
    /// Broadcasts from other nodes on a group that they and this node
    /// opened differently: recorded there and opened here without a
    /// history, or the other way round. Delivered all the same; but every
    /// node of a group must open it the same way
    /// ([`Cluster::group_with_history`](crate::Cluster::group_with_history)
    /// with the same [`History`](crate::History), or
    /// [`Cluster::group`](crate::Cluster::group) on all), as a broadcast its
    /// sender did not record is missing from every replay.
    pub history_mismatch: u64,
}

/// The live counters of one node, bumped by its tasks and handles.
#[derive(Default)]
pub(crate) struct Counters {
    pub(crate) published: AtomicU64,
    pub(crate) publish_failed: AtomicU64,
    pub(crate) received: AtomicU64,
    pub(crate) delivered: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) malformed: AtomicU64,
    pub(crate) history_mismatch: AtomicU64,
}

impl Counters {
    /// A consistent-enough copy for a report (each counter read once).
    pub(crate) fn snapshot(&self) -> ClusterStats {
        let read = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        ClusterStats {
            published: read(&self.published),
            publish_failed: read(&self.publish_failed),
            received: read(&self.received),
            delivered: read(&self.delivered),
            dropped: read(&self.dropped),
            malformed: read(&self.malformed),
            history_mismatch: read(&self.history_mismatch),
        }
    }
}

/// Adds one; returns the new total (for the log line that reports it).
pub(crate) fn bump(counter: &AtomicU64) -> u64 {
    counter.fetch_add(1, Ordering::Relaxed) + 1
}
