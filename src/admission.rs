//! What the upgrade hands a new connection besides its [`Config`](crate::Config):
//! the live handles it joins.
//!
//! `Config` is plain data; the registries a connection belongs to are found
//! in the request's `app_data` when it is upgraded and travel here. This
//! module must not know about frames or listeners.

use crate::registry::Connections;

/// The handles one connection is admitted with.
#[derive(Default)]
pub(crate) struct Admission {
    /// A registry from `app_data` that the connection joins besides
    /// [`Connections::global`].
    pub(crate) registry: Option<Connections>,
}

impl Admission {
    /// The connection joins its registries.
    pub(crate) fn join(&self, socket: &crate::socket::Socket) {
        Connections::global().insert(socket);
        if let Some(registry) = &self.registry {
            registry.insert(socket);
        }
    }

    /// The connection leaves its registries.
    pub(crate) fn leave(&self, socket: &crate::socket::Socket) {
        Connections::global().remove(socket);
        if let Some(registry) = &self.registry {
            registry.remove(socket);
        }
    }
}
