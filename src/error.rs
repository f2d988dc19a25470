//! Why a connection failed ([`Error`]) and why a send failed ([`SendError`]).
//!
//! This module owns both error types and the close code each failure leads
//! to. It must not decide when they happen; the connection does.

use std::fmt;

use crate::CloseCode;

/// Why a connection failed. Given to [`Listener::on_error`](crate::Listener::on_error),
/// which runs before `on_close`.
///
/// Each variant says when it happens and which close code the server sends
/// ([`Error::close_code`]).
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455: unmasked frame, reserved bit or opcode,
    /// fragmented or oversized control frame, continuation without a start,
    /// invalid close payload. Closes with 1002.
    Protocol(&'static str),
    /// A text message (or a fragment of one) is not valid UTF-8; detected at
    /// the first invalid byte sequence. Closes with 1007.
    InvalidUtf8,
    /// A frame header declared a payload larger than `max_frame_size`.
    /// Closes with 1009 before the payload is read.
    FrameTooLarge {
        /// Declared payload length.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A message grew past `max_message_size`. Closes with 1009.
    MessageTooLarge {
        /// Size the message would have reached.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A compressed message (permessage-deflate) is not a valid deflate
    /// stream. Closes with 1007: the frames are well-formed, their payload
    /// is not data of the message's type.
    InvalidCompressedData,
    /// Nothing arrived from the peer within `idle_timeout`. Closes with 1001.
    Timeout,
    /// The outbound buffer was full under [`BackpressurePolicy::Close`](crate::BackpressurePolicy::Close).
    /// Closes with 1008.
    Backpressure,
    /// A listener callback panicked; the payload of the panic, when it is a
    /// string. Closes with 1011.
    ListenerPanic(String),
}

impl Error {
    /// The close code the server sends for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            Error::InvalidUtf8 | Error::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Error::FrameTooLarge { .. } | Error::MessageTooLarge { .. } => {
                CloseCode::MESSAGE_TOO_BIG
            }
            Error::Timeout => CloseCode::GOING_AWAY,
            Error::Backpressure => CloseCode::POLICY_VIOLATION,
            Error::ListenerPanic(_) => CloseCode::INTERNAL_ERROR,
        }
    }

    /// The close reason the server sends for this error: short, fixed text.
    pub(crate) fn close_reason(&self) -> &'static str {
        match self {
            Error::Protocol(_) => "protocol error",
            Error::InvalidUtf8 => "invalid UTF-8",
            Error::InvalidCompressedData => "invalid compressed data",
            Error::FrameTooLarge { .. } => "frame too large",
            Error::MessageTooLarge { .. } => "message too large",
            Error::Timeout => "idle timeout",
            Error::Backpressure => "outbound buffer full",
            Error::ListenerPanic(_) => "internal error",
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(what) => write!(f, "WebSocket protocol error: {what}"),
            Error::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            Error::InvalidCompressedData => {
                f.write_str("compressed message is not a valid deflate stream")
            }
            Error::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds max_frame_size {max}")
            }
            Error::MessageTooLarge { size, max } => {
                write!(f, "message of {size} bytes exceeds max_message_size {max}")
            }
            Error::Timeout => f.write_str("no data from the peer within idle_timeout"),
            Error::Backpressure => f.write_str("outbound buffer full: the peer does not read"),
            Error::ListenerPanic(message) => write!(f, "listener panicked: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Why a socket operation was refused. Socket operations never panic.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed (`close` was called, a close
    /// frame arrived, or the connection ended).
    Closed,
    /// Queueing this frame would exceed `max_outbound_buffer`: the peer is
    /// not reading fast enough.
    Backpressure {
        /// Bytes already queued and not yet handed to the writer.
        queued: usize,
        /// The configured `max_outbound_buffer`.
        limit: usize,
    },
    /// `close_with` was given a code that may not be sent (1005, 1006, 1015, 0–999, …).
    InvalidCloseCode(u16),
    /// `close_with` was given a reason longer than 123 bytes.
    ReasonTooLong(usize),
    /// A ping or pong payload was longer than 125 bytes.
    ControlTooLong(usize),
    /// `send_json` could not serialize the value; the serializer's message.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Serialize(String),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed => f.write_str("socket is closed"),
            SendError::Backpressure { queued, limit } => write!(
                f,
                "outbound buffer full: {queued} bytes queued, limit {limit}"
            ),
            SendError::InvalidCloseCode(code) => write!(f, "close code {code} may not be sent"),
            SendError::ReasonTooLong(len) => {
                write!(f, "close reason of {len} bytes exceeds 123 bytes")
            }
            SendError::ControlTooLong(len) => {
                write!(f, "control payload of {len} bytes exceeds 125 bytes")
            }
            #[cfg(feature = "json")]
            SendError::Serialize(error) => write!(f, "cannot serialize message: {error}"),
        }
    }
}

impl std::error::Error for SendError {}
