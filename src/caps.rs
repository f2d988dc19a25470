//! Connection caps (S19): how many connections the server, and one client
//! address, may have open, checked before the upgrade.
//!
//! This module owns the process-wide count of connections by address and
//! the [`Place`] each connection holds in it until it ends. It refuses; it
//! does not answer HTTP (the upgrade turns a refusal into 503 or 429).

use std::{
    collections::HashMap,
    net::IpAddr,
    sync::{
        atomic::{AtomicU64, Ordering},
        Arc, Mutex, MutexGuard, OnceLock,
    },
};

/// Why a connection was refused a place.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Full {
    /// `max_connections` are open.
    Server,
    /// `max_connections_per_ip` are open from this address.
    Address,
}

/// The open connections, in total and by client address.
#[derive(Default)]
pub(crate) struct Caps {
    counts: Mutex<Counts>,
    refused_server: AtomicU64,
    refused_address: AtomicU64,
}

#[derive(Default)]
struct Counts {
    total: usize,
    by_address: HashMap<IpAddr, usize>,
}

impl Caps {
    /// The process-wide caps every upgrade goes through.
    pub(crate) fn global() -> &'static Arc<Caps> {
        static GLOBAL: OnceLock<Arc<Caps>> = OnceLock::new();
        GLOBAL.get_or_init(Arc::default)
    }

    fn lock(&self) -> MutexGuard<'_, Counts> {
        // Nothing that can panic runs under this lock.
        self.counts.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A place for a connection from `address` (`None`: unknown, counted
    /// in the total only), or why not.
    pub(crate) fn admit(
        self: &Arc<Caps>,
        address: Option<IpAddr>,
        max_total: Option<usize>,
        max_per_address: Option<usize>,
    ) -> Result<Place, Full> {
        let mut counts = self.lock();
        if max_total.is_some_and(|max| counts.total >= max) {
            self.refused_server.fetch_add(1, Ordering::Relaxed);
            return Err(Full::Server);
        }
        if let Some(address) = address {
            let from = counts.by_address.get(&address).copied().unwrap_or(0);
            if max_per_address.is_some_and(|max| from >= max) {
                self.refused_address.fetch_add(1, Ordering::Relaxed);
                return Err(Full::Address);
            }
            counts.by_address.insert(address, from + 1);
        }
        counts.total += 1;
        Ok(Place {
            caps: Arc::clone(self),
            address,
        })
    }

    /// Connections holding a place now.
    pub(crate) fn open(&self) -> usize {
        self.lock().total
    }

    /// Connections open from `address` now.
    #[cfg(test)]
    fn open_from(&self, address: IpAddr) -> usize {
        self.lock().by_address.get(&address).copied().unwrap_or(0)
    }

    /// Upgrades refused: (server full, address full).
    pub(crate) fn refused(&self) -> (u64, u64) {
        (
            self.refused_server.load(Ordering::Relaxed),
            self.refused_address.load(Ordering::Relaxed),
        )
    }

    fn leave(&self, address: Option<IpAddr>) {
        let mut counts = self.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(address) = address {
            if let Some(from) = counts.by_address.get_mut(&address) {
                *from -= 1;
                if *from == 0 {
                    counts.by_address.remove(&address);
                }
            }
        }
    }
}

/// One connection's place in the caps; dropping it frees the place.
pub(crate) struct Place {
    caps: Arc<Caps>,
    address: Option<IpAddr>,
}

impl Drop for Place {
    fn drop(&mut self) {
        self.caps.leave(self.address);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_refuse_past_the_limits_and_free_a_place_when_it_is_dropped() {
        let caps = Arc::new(Caps::default());
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let first = caps.admit(Some(a), Some(3), Some(2)).unwrap();
        let _second = caps.admit(Some(a), Some(3), Some(2)).unwrap();
        assert_eq!(
            caps.admit(Some(a), Some(3), Some(2)).err(),
            Some(Full::Address)
        );
        let _third = caps.admit(Some(b), Some(3), Some(2)).unwrap();
        assert_eq!(
            caps.admit(Some(b), Some(3), Some(2)).err(),
            Some(Full::Server)
        );
        assert_eq!(caps.refused(), (1, 1));
        drop(first);
        assert_eq!((caps.open(), caps.open_from(a)), (2, 1));
        assert!(caps.admit(Some(a), Some(3), Some(2)).is_ok());
    }

    #[test]
    fn without_limits_every_connection_is_counted_and_none_refused() {
        let caps = Arc::new(Caps::default());
        let places: Vec<Place> = (0..100)
            .map(|_| caps.admit(None, None, None).unwrap())
            .collect();
        assert_eq!(caps.open(), 100);
        drop(places);
        assert_eq!(caps.open(), 0);
        assert_eq!(caps.refused(), (0, 0));
    }
}
