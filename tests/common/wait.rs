//! Waiting for a condition with a deadline, instead of sleeping.

use std::{
    thread,
    time::{Duration, Instant},
};

/// How long any wait lasts before the test fails: the test kit's one
/// deadline, generous so that a loaded 2-core machine never fails a correct
/// test.
pub use actix_ws_listener::test::TIMEOUT;

/// Blocks until `condition` is true, checking it every few milliseconds;
/// fails the test after [`TIMEOUT`] saying that `what` never happened.
///
/// For conditions no event announces (a registry count, a thread that
/// finished). For listener callbacks, wait on [`Events`](super::Events),
/// which wakes as soon as they are recorded.
pub fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + TIMEOUT;
    while !condition() {
        assert!(
            Instant::now() < deadline,
            "timed out after {TIMEOUT:?} waiting for {what}"
        );
        thread::sleep(Duration::from_millis(5));
    }
}
