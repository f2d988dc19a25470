//! [`ClusterConfig`]: how a node talks to Redis. Plain data, no broker.

use std::time::Duration;

/// How a [`Cluster`](crate::Cluster) talks to Redis. A plain struct with
/// [`Default`]; every setting states its default.
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
    pub(crate) prefix: String,
    pub(crate) inbound_capacity: usize,
    pub(crate) publish_capacity: usize,
    pub(crate) publish_timeout: Duration,
    pub(crate) health_check: Duration,
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
    /// ([`ClusterStats::dropped`](crate::ClusterStats::dropped)) instead of
    /// growing memory. At least 1.
    #[must_use]
    pub fn inbound_capacity(mut self, envelopes: usize) -> Self {
        self.inbound_capacity = envelopes.max(1);
        self
    }

    /// Broadcasts of this node waiting to be published. Default 1024; past
    /// it a broadcast's `published()` reports
    /// [`ClusterError::Backlog`](crate::ClusterError::Backlog) (the local
    /// members still get the message). At least 1.
    #[must_use]
    pub fn publish_capacity(mut self, broadcasts: usize) -> Self {
        self.publish_capacity = broadcasts.max(1);
        self
    }

    /// How long a publish (and a subscribe) may take before it is reported
    /// as [`ClusterError::Timeout`](crate::ClusterError::Timeout). Default
    /// 5 s.
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn capacities_are_at_least_one() {
        let config = ClusterConfig::default()
            .inbound_capacity(0)
            .publish_capacity(0);
        assert_eq!((config.inbound_capacity, config.publish_capacity), (1, 1));
    }
}
