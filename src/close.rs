//! Close codes (RFC 6455 §7.4) as named constants in one place.
//!
//! This module owns [`CloseCode`] and the rule for which codes may appear on
//! the wire. It must not know about frames or connections.

use std::fmt;

/// A WebSocket close status code.
///
/// ```
/// use actix_ws_listener::CloseCode;
///
/// assert_eq!(CloseCode::NORMAL.as_u16(), 1000);
/// assert_eq!(CloseCode::from(4000), CloseCode(4000));
/// assert!(!CloseCode::NO_STATUS.is_sendable());
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CloseCode(pub u16);

impl CloseCode {
    /// 1000: the purpose of the connection has been fulfilled.
    pub const NORMAL: CloseCode = CloseCode(1000);
    /// 1001: the endpoint is going away (server shutdown, idle timeout).
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    /// 1002: the peer broke the protocol.
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    /// 1003: the endpoint cannot accept this type of data.
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    /// 1005: reported to `on_close` when the peer's close frame had no code. Never sent.
    pub const NO_STATUS: CloseCode = CloseCode(1005);
    /// 1006: reported to `on_close` when the connection ended without a close frame. Never sent.
    pub const ABNORMAL: CloseCode = CloseCode(1006);
    /// 1007: a text message (or close reason) was not valid UTF-8.
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    /// 1008: the peer violated a policy (for example, it does not read and the outbound buffer is full).
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    /// 1009: a frame or message exceeded the configured limit.
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    /// 1010: the client expected an extension the server did not negotiate.
    pub const MANDATORY_EXTENSION: CloseCode = CloseCode(1010);
    /// 1011: the server hit an unexpected condition (a listener panicked).
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    /// 1012: the service is restarting.
    pub const SERVICE_RESTART: CloseCode = CloseCode(1012);
    /// 1013: try again later.
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);
    /// 1014: bad gateway.
    pub const BAD_GATEWAY: CloseCode = CloseCode(1014);

    /// The numeric code.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// True when this code may appear in a close frame on the wire
    /// (RFC 6455 §7.4.1 and the IANA registry): 1000–1003, 1007–1014 and 3000–4999.
    ///
    /// Codes 1004, 1005, 1006 and 1015 are reserved, 0–999 and 1016–2999 are
    /// unassigned or reserved for future revisions, 5000 and up are out of range.
    pub const fn is_sendable(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

impl From<u16> for CloseCode {
    fn from(code: u16) -> Self {
        CloseCode(code)
    }
}

impl From<CloseCode> for u16 {
    fn from(code: CloseCode) -> Self {
        code.0
    }
}

impl fmt::Display for CloseCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_and_out_of_range_codes_are_not_sendable() {
        for code in [
            0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(code).is_sendable(), "{code}");
        }
        for code in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999,
            4000, 4999,
        ] {
            assert!(CloseCode(code).is_sendable(), "{code}");
        }
    }
}
