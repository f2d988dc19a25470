//! Helpers for tests that use awc, a real async WebSocket client.

use super::TIMEOUT;

/// Runs an async client body (awc) on its own actix system, on this thread.
pub fn run_client<F: std::future::Future>(future: F) -> F::Output {
    actix_rt::System::new().block_on(future)
}

/// The code of an awc close frame (1005 when it had none).
pub fn awc_close_code(reason: &Option<awc::ws::CloseReason>) -> u16 {
    reason.as_ref().map_or(1005, |r| u16::from(r.code))
}

/// The next frame from an awc connection; fails the test on timeout, end of
/// stream or protocol error.
pub async fn awc_next<S>(framed: &mut S) -> awc::ws::Frame
where
    S: futures_util::Stream<Item = Result<awc::ws::Frame, awc::error::WsProtocolError>> + Unpin,
{
    use futures_util::StreamExt;
    match actix_rt::time::timeout(TIMEOUT, framed.next()).await {
        Ok(Some(Ok(frame))) => frame,
        Ok(Some(Err(e))) => panic!("awc protocol error: {e}"),
        Ok(None) => panic!("awc connection ended without a frame"),
        Err(_) => panic!("timed out after {TIMEOUT:?} waiting for a frame (awc)"),
    }
}
