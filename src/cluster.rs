//! Named groups that span processes through Redis pub/sub (S18):
//! [`Cluster`] and its reports.
//!
//! This module owns the link to the broker, split along its concerns:
//!
//! - `config`: [`ClusterConfig`], plain data;
//! - `stats`: [`ClusterStats`] and the counters behind it;
//! - `envelope`: the bytes of one broadcast on the wire, encoded and
//!   decoded (the format itself is documented once, on [`Cluster`]);
//! - `link`: the [`Cluster`] handle and its thread bootstrap (one background
//!   thread per node with its own single-threaded tokio runtime, holding a
//!   `redis` crate `ConnectionManager` speaking RESP3, so it reconnects and
//!   resubscribes by itself);
//! - `tasks`: the tasks on that thread (publishing, receiving and
//!   delivering, the health check);
//! - `channel`: the registry of open groups, [`Cluster::group`] and the
//!   per-group link that publishes and unsubscribes on drop;
//! - `history`: the group's history in a Redis stream, its two scripts and
//!   [`Cluster::group_with_history`] (S21);
//! - `presence`: the node heartbeat, the sweep of silent nodes and the
//!   presence view kept in step with the broker (S21).
//!
//! A clustered group is a plain [`Group`](crate::Group) holding a `Fanout`
//! from here: the cluster sends to sockets only through the group, so every
//! promise of a local broadcast (shared payload, never blocks, bounded
//! outbound memory, closed members removed) holds for remote deliveries
//! too. It must not know frames, connections or listeners. Errors are
//! [`ClusterError`](crate::ClusterError), in a file of their own.

mod channel;
mod config;
mod envelope;
mod history;
mod link;
mod presence;
mod stats;
mod tasks;

pub use self::{config::ClusterConfig, link::Cluster, stats::ClusterStats};
