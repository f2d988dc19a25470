//! Shared helpers for the integration tests, one concern per file:
//!
//! - [`server`]: a real actix-web server whose route is built from a
//!   listener factory;
//! - [`listeners`]: small listeners the tests share;
//! - [`events`]: an event recorder that tests wait on instead of sleeping;
//! - [`raw`]: a raw WebSocket client that speaks frames byte by byte (so
//!   tests can break every rule of RFC 6455);
//! - [`client`]: helpers for awc, a real async client;
//! - [`cluster`]: a real `redis-server` and cluster nodes (feature `redis`),
//!   used as `common::cluster::*` (not re-exported: its client is its own);
//! - [`process`]: an example program run as a separate process;
//! - [`wait`]: [`TIMEOUT`] and [`wait_until`].
//!
//! Every wait has a generous deadline ([`TIMEOUT`]) and fails the test with a
//! message saying what never happened; none of them is a timing assertion.

#![allow(dead_code, unused_imports)]

pub mod client;
#[cfg(feature = "redis")]
pub mod cluster;
pub mod events;
pub mod listeners;
pub mod process;
pub mod raw;
pub mod server;
pub mod wait;

pub use client::*;
pub use events::*;
pub use listeners::*;
pub use process::*;
pub use raw::*;
pub use server::*;
pub use wait::*;
