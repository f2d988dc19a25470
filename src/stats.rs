//! What an operator reads about the guard (S19): open connections, the
//! inbound budget's use, refused upgrades, connections closed for the
//! budget, messages paced by the rate limit.
//!
//! This module owns [`Stats`], a snapshot of process-wide counters kept by
//! the budget, the caps and the rate limiter. It only reads them.

use crate::{budget::InboundBudget, caps::Caps, rate};

/// A snapshot of the process-wide guard counters (S19).
///
/// ```
/// let stats = actix_ws_listener::Stats::now();
/// assert!(stats.inbound_bytes <= stats.inbound_budget);
/// log::info!("{stats:?}");
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// WebSocket connections open now (upgraded and not yet ended).
    pub connections: usize,
    /// Bytes the global [`InboundBudget`] lends now to unfinished frames
    /// and messages (apps with a budget of their own read it from theirs).
    pub inbound_bytes: usize,
    /// The global [`InboundBudget`]'s limit.
    pub inbound_budget: usize,
    /// Upgrades refused with 503 because `max_connections` were open.
    pub refused_server_full: u64,
    /// Upgrades refused with 429 because `max_connections_per_ip` were open
    /// from the client's address.
    pub refused_address_full: u64,
    /// Connections closed with 1013 because the global budget was exhausted.
    pub closed_for_budget: u64,
    /// Messages that waited for their turn under `max_messages_per_second`.
    /// The rate limit paces and never closes, so no connection is closed
    /// for it.
    pub paced_messages: u64,
}

impl Stats {
    /// The counters now.
    pub fn now() -> Stats {
        let budget = InboundBudget::global();
        let (refused_server_full, refused_address_full) = Caps::global().refused();
        Stats {
            connections: Caps::global().open(),
            inbound_bytes: budget.in_use(),
            inbound_budget: budget.limit(),
            refused_server_full,
            refused_address_full,
            closed_for_budget: budget.closed_connections(),
            paced_messages: rate::paced_messages(),
        }
    }
}
