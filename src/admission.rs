//! What the upgrade hands a new connection besides its [`Config`](crate::Config):
//! the live handles it joins and the guard's share it holds (S19).
//!
//! `Config` is plain data; the registry and the inbound budget a connection
//! belongs to are found in the request's `app_data` when it is upgraded,
//! and its place in the connection caps is taken then, before the 101.
//! They travel here. This module must not know about frames or listeners.

use crate::{budget::InboundBudget, caps::Place, registry::Connections, socket::Socket};

/// The handles one connection is admitted with.
pub(crate) struct Admission {
    /// A registry from `app_data` that the connection joins besides
    /// [`Connections::global`].
    pub(crate) registry: Option<Connections>,
    /// The inbound budget its unfinished messages draw from.
    pub(crate) budget: InboundBudget,
    /// Its place in the connection caps, freed when it ends.
    pub(crate) place: Option<Place>,
}

impl Admission {
    /// The connection joins its registries.
    pub(crate) fn join(&self, socket: &Socket) {
        Connections::global().insert(socket);
        if let Some(registry) = &self.registry {
            registry.insert(socket);
        }
    }

    /// The connection leaves its registries and frees its place at once
    /// (its actor may take a little longer to go).
    pub(crate) fn leave(&mut self, socket: &Socket) {
        Connections::global().remove(socket);
        if let Some(registry) = &self.registry {
            registry.remove(socket);
        }
        self.place = None;
    }
}
