//! The server-wide inbound budget (S19): one count of the bytes that
//! unfinished frames, unfinished messages and inflate buffers hold across
//! every connection.
//!
//! This module owns [`InboundBudget`] and the per-connection [`Hold`] on
//! it. A hold grows when a frame header arrives (before its payload is
//! buffered, S8's place) and as inflation output grows, and shrinks when
//! the message has left (the listener returned, or its async handler
//! completed). It is plain counting: no actor, no frames, no timers.

use std::{
    fmt,
    sync::{
        atomic::{AtomicU64, AtomicUsize, Ordering},
        Arc, OnceLock,
    },
};

/// The default budget: 512 MiB. See [`InboundBudget`] for why.
pub const DEFAULT_INBOUND_BUDGET: usize = 512 << 20;

/// What each connection may hold from the part of the budget kept for
/// small messages: its first 64 KiB.
pub(crate) const SMALL_HOLD: usize = 64 << 10;

/// The bytes all connections of a server may hold in unfinished inbound
/// frames and messages (and their inflate buffers), together (S19).
///
/// Each connection keeps its own limits (`max_frame_size`,
/// `max_text_message_size`), but nothing else bounds their sum: 100 clients
/// each streaming an unfinished 48 MiB message would make a server without
/// it hold 4.8 GiB. With it, a connection that asks for more than is left
/// is closed at once with **1013 Try Again Later** and a reason that says
/// how much it asked for and how much was left
/// (`"Inbound budget exhausted: asked 1048576, left 0"`); its bytes go back
/// to the budget, and `on_error(Error::BudgetExhausted)` then `on_close`
/// run as for any failure.
///
/// **Default: 512 MiB** ([`DEFAULT_INBOUND_BUDGET`]), one budget per
/// process, shared by every route and worker. It is eight connections at
/// the default `max_text_message_size` (64 MiB) receiving a maximal message
/// at the same moment, or thousands of ordinary ones, and it keeps a
/// default server's inbound buffering under about half a gigabyte whatever
/// the number of connections: a small VM survives the attack above.
///
/// **Small messages keep flowing.** An eighth of the budget is kept for the
/// first 64 KiB each connection holds: a connection whose unfinished
/// message is larger cannot take that part, so connections with small
/// messages are served while large ones exhaust the rest. (It takes more
/// than a thousand connections each holding 64 KiB to exhaust that part;
/// [`Config::max_connections_per_ip`](crate::Config::max_connections_per_ip)
/// bounds how many one address may open.)
///
/// **Why close at once rather than wait.** A connection refused more bytes
/// still holds what it already has: holding its reading back would not
/// free any memory, and while every large sender waits for another to
/// finish, none may. Refusing at the door with a clear answer (tower's
/// `load_shed`) frees the bytes now; the client may retry later.
///
/// Change it for the whole process with
/// [`InboundBudget::set_limit`] on [`InboundBudget::global`], or give an
/// app, scope or resource its own budget by putting an `InboundBudget` (or
/// `web::Data<InboundBudget>`) in its `app_data`.
///
/// ```no_run
/// use actix_ws_listener::InboundBudget;
///
/// // A server with little memory: 128 MiB for everyone's unfinished messages.
/// InboundBudget::global().set_limit(128 << 20);
/// log::info!(
///     "inbound: {} of {} bytes held",
///     InboundBudget::global().in_use(),
///     InboundBudget::global().limit()
/// );
/// ```
#[derive(Clone)]
pub struct InboundBudget {
    inner: Arc<Inner>,
}

struct Inner {
    limit: AtomicUsize,
    used: AtomicUsize,
    refused: AtomicU64,
}

impl InboundBudget {
    /// A budget of `limit` bytes, for the apps or routes that get it in
    /// their `app_data`.
    pub fn new(limit: usize) -> InboundBudget {
        InboundBudget {
            inner: Arc::new(Inner {
                limit: AtomicUsize::new(limit),
                used: AtomicUsize::new(0),
                refused: AtomicU64::new(0),
            }),
        }
    }

    /// The process-wide budget, of [`DEFAULT_INBOUND_BUDGET`] bytes until
    /// changed, that every connection without one of its own draws from.
    pub fn global() -> &'static InboundBudget {
        static GLOBAL: OnceLock<InboundBudget> = OnceLock::new();
        GLOBAL.get_or_init(|| InboundBudget::new(DEFAULT_INBOUND_BUDGET))
    }

    /// The budget, in bytes.
    pub fn limit(&self) -> usize {
        self.inner.limit.load(Ordering::Relaxed)
    }

    /// Changes the budget. Bytes already held stay held; a lower limit
    /// refuses new bytes until enough are released.
    pub fn set_limit(&self, limit: usize) {
        self.inner.limit.store(limit, Ordering::Relaxed);
    }

    /// Bytes held now by unfinished frames and messages (and messages still
    /// with their listener).
    pub fn in_use(&self) -> usize {
        self.inner.used.load(Ordering::Relaxed)
    }

    /// Connections closed with 1013 because this budget was exhausted.
    pub fn closed_connections(&self) -> u64 {
        self.inner.refused.load(Ordering::Relaxed)
    }

    /// Takes `bytes` for a connection that already holds `held`; on refusal
    /// says how much was left to it.
    fn take(&self, held: usize, bytes: usize) -> Result<(), usize> {
        let limit = self.limit();
        // Past its first SMALL_HOLD bytes a connection may not use the
        // eighth kept for small messages.
        let ceiling = if held.saturating_add(bytes) <= SMALL_HOLD {
            limit
        } else {
            limit - limit / 8
        };
        let mut used = self.inner.used.load(Ordering::Relaxed);
        loop {
            let after = used.saturating_add(bytes);
            if after > ceiling {
                return Err(ceiling.saturating_sub(used));
            }
            match self.inner.used.compare_exchange_weak(
                used,
                after,
                Ordering::AcqRel,
                Ordering::Relaxed,
            ) {
                Ok(_) => return Ok(()),
                Err(actual) => used = actual,
            }
        }
    }

    fn give_back(&self, bytes: usize) {
        self.inner.used.fetch_sub(bytes, Ordering::AcqRel);
    }
}

impl Default for InboundBudget {
    /// A budget of [`DEFAULT_INBOUND_BUDGET`] bytes, apart from the global one.
    fn default() -> Self {
        InboundBudget::new(DEFAULT_INBOUND_BUDGET)
    }
}

impl fmt::Debug for InboundBudget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("InboundBudget")
            .field("limit", &self.limit())
            .field("in_use", &self.in_use())
            .field("closed_connections", &self.closed_connections())
            .finish()
    }
}

/// A request the budget refused: what was asked for and what was left.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Refused {
    pub(crate) asked: usize,
    pub(crate) left: usize,
}

/// One connection's share of a budget. Dropping it gives everything back.
///
/// Bytes given back with [`Hold::shrink_later`] stay taken from the budget
/// as `spare` until [`Hold::settle`]: the next frames of the same turn
/// take them again without touching the shared count, so that a turn of
/// small messages costs one atomic operation on the budget rather than two
/// per message.
pub(crate) struct Hold {
    budget: InboundBudget,
    held: usize,
    /// Taken from the budget, held by nothing: given back at `settle`.
    spare: usize,
}

impl Hold {
    pub(crate) fn new(budget: InboundBudget) -> Hold {
        Hold {
            budget,
            held: 0,
            spare: 0,
        }
    }

    /// Bytes this connection holds.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.held
    }

    /// Takes `bytes` more, or says why not; a refusal counts as a
    /// connection closed for the budget (the caller closes it).
    pub(crate) fn grow(&mut self, bytes: usize) -> Result<(), Refused> {
        if bytes <= self.spare {
            self.spare -= bytes;
            self.held += bytes;
            return Ok(());
        }
        let spare = std::mem::take(&mut self.spare);
        self.held += spare;
        match self.budget.take(self.held, bytes - spare) {
            Ok(()) => {
                self.held += bytes - spare;
                Ok(())
            }
            Err(left) => {
                self.budget.inner.refused.fetch_add(1, Ordering::Relaxed);
                Err(Refused { asked: bytes, left })
            }
        }
    }

    /// Gives `bytes` back (at most what is held).
    pub(crate) fn shrink(&mut self, bytes: usize) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        self.budget.give_back(bytes);
    }

    /// Stops holding `bytes` (at most what is held), but keeps them from
    /// the budget until [`Hold::settle`], for the next frames to take.
    pub(crate) fn shrink_later(&mut self, bytes: usize) {
        let bytes = bytes.min(self.held);
        self.held -= bytes;
        self.spare += bytes;
    }

    /// Gives back what [`Hold::shrink_later`] kept.
    pub(crate) fn settle(&mut self) {
        if self.spare > 0 {
            self.budget.give_back(std::mem::take(&mut self.spare));
        }
    }

    /// Gives everything back.
    pub(crate) fn clear(&mut self) {
        self.settle();
        self.shrink(self.held);
    }
}

impl Drop for Hold {
    fn drop(&mut self) {
        self.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn holds_stay_under_the_budget_and_give_back_on_drop() {
        let budget = InboundBudget::new(800 << 10);
        let mut a = Hold::new(budget.clone());
        let mut b = Hold::new(budget.clone());
        // Large holders may take seven eighths: 700 KiB.
        assert_eq!(a.grow(400 << 10), Ok(()));
        assert_eq!(
            b.grow(400 << 10),
            Err(Refused {
                asked: 400 << 10,
                left: 300 << 10
            })
        );
        assert_eq!(budget.closed_connections(), 1);
        assert_eq!(b.grow(300 << 10), Ok(()));
        assert_eq!(budget.in_use(), 700 << 10);
        drop(a);
        assert_eq!(budget.in_use(), 300 << 10);
        b.shrink(100 << 10);
        assert_eq!((b.held(), budget.in_use()), (200 << 10, 200 << 10));
        b.clear();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn the_eighth_kept_for_small_messages_serves_them_when_large_ones_took_the_rest() {
        let budget = InboundBudget::new(8 << 20);
        let mut large = Hold::new(budget.clone());
        assert_eq!(large.grow(7 << 20), Ok(()));
        assert!(large.grow(1).is_err(), "large holders stop at 7/8");
        let mut smalls: Vec<Hold> = (0..16).map(|_| Hold::new(budget.clone())).collect();
        for small in &mut smalls {
            assert_eq!(small.grow(SMALL_HOLD), Ok(()));
        }
        // Past its first 64 KiB a small one is large.
        assert!(smalls[0].grow(1).is_err());
        assert_eq!(budget.in_use(), (7 << 20) + 16 * SMALL_HOLD);
    }

    #[test]
    fn bytes_shrunk_for_later_are_taken_again_first_and_given_back_at_settle() {
        let budget = InboundBudget::new(1 << 20);
        let mut hold = Hold::new(budget.clone());
        assert_eq!(hold.grow(100), Ok(()));
        hold.shrink_later(100);
        assert_eq!((hold.held(), budget.in_use()), (0, 100));
        // The next frame takes the spare bytes, then the rest.
        assert_eq!(hold.grow(60), Ok(()));
        assert_eq!((hold.held(), budget.in_use()), (60, 100));
        assert_eq!(hold.grow(90), Ok(()));
        assert_eq!((hold.held(), budget.in_use()), (150, 150));
        hold.shrink_later(150);
        hold.settle();
        assert_eq!((hold.held(), budget.in_use()), (0, 0));
        // A refusal counts what the connection held, spare included.
        let small = InboundBudget::new(100);
        let mut hold = Hold::new(small.clone());
        assert_eq!(hold.grow(80), Ok(()));
        hold.shrink_later(80);
        assert_eq!(
            hold.grow(120),
            Err(Refused {
                asked: 120,
                left: 20
            })
        );
        hold.clear();
        assert_eq!(small.in_use(), 0);
    }

    #[test]
    fn a_lower_limit_refuses_until_enough_is_released() {
        let budget = InboundBudget::new(1 << 20);
        let mut hold = Hold::new(budget.clone());
        assert_eq!(hold.grow(1000), Ok(()));
        budget.set_limit(500);
        let mut other = Hold::new(budget.clone());
        assert!(other.grow(10).is_err());
        hold.clear();
        assert_eq!(other.grow(10), Ok(()));
    }
}
