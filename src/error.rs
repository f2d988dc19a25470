//! Why a connection failed ([`Error`]), why a send failed ([`SendError`])
//! and, with the `json` feature, why a value did not convert (`JsonError`).
//!
//! This module owns both error types and the close code each failure leads
//! to. It must not decide when they happen: the inbound assembler (protocol
//! and limit errors), the connection (timeouts, panics) and the socket
//! (send errors) do.

use std::fmt;

use crate::{close::CloseCode, message::Message};

/// Why a connection failed. Given to [`Listener::on_error`](crate::Listener::on_error),
/// which runs before `on_close`.
///
/// Each variant says when it happens and which close code the server sends
/// ([`Error::close_code`]); the close frame's reason says what happened,
/// with the sizes when a limit was hit (`"Text message too large: 6 > 5"`).
///
/// ```
/// use actix_ws_listener::{CloseCode, Error, ProtocolError};
///
/// let error = Error::Protocol(ProtocolError::UnmaskedFrame);
/// assert_eq!(error.close_code(), CloseCode::PROTOCOL_ERROR);
/// let error = Error::TextTooLarge { size: 6, max: 5 };
/// assert_eq!(error.close_reason(), "Text message too large: 6 > 5");
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum Error {
    /// The peer broke RFC 6455; the variant says how. Closes with 1002.
    Protocol(ProtocolError),
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
    /// A text message grew past `max_text_message_size`, at a frame header
    /// or while inflating. Closes with 1009.
    TextTooLarge {
        /// Size the message would have reached.
        size: u64,
        /// The configured limit.
        max: usize,
    },
    /// A binary message grew past `max_binary_message_size`, at a frame
    /// header or while inflating. Closes with 1009.
    BinaryTooLarge {
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
    /// The server-wide [`InboundBudget`](crate::InboundBudget) (S19) had not
    /// enough left for this connection's unfinished message. Closes with
    /// 1013 (Try Again Later); the reason says how much it asked for and
    /// how much was left.
    BudgetExhausted {
        /// Bytes the connection asked for.
        asked: u64,
        /// Bytes the budget had left for it.
        left: u64,
    },
    /// A listener callback panicked; the payload of the panic, when it is a
    /// string. Closes with 1011 (the peer is told "Internal error", not the
    /// panic's text).
    ListenerPanic(String),
}

impl Error {
    /// The close code the server sends for this error.
    pub fn close_code(&self) -> CloseCode {
        match self {
            Error::Protocol(_) => CloseCode::PROTOCOL_ERROR,
            Error::InvalidUtf8 | Error::InvalidCompressedData => CloseCode::INVALID_PAYLOAD,
            Error::FrameTooLarge { .. }
            | Error::TextTooLarge { .. }
            | Error::BinaryTooLarge { .. } => CloseCode::MESSAGE_TOO_BIG,
            Error::Timeout => CloseCode::GOING_AWAY,
            Error::Backpressure => CloseCode::POLICY_VIOLATION,
            Error::ListenerPanic(_) => CloseCode::INTERNAL_ERROR,
            Error::BudgetExhausted { .. } => CloseCode::TRY_AGAIN_LATER,
        }
    }

    /// The reason the server's close frame carries for this error: what
    /// happened, in a few words, with the sizes when a limit was hit.
    pub fn close_reason(&self) -> String {
        match self {
            Error::Protocol(cause) => format!("Protocol error: {cause}"),
            Error::InvalidUtf8 => "Invalid UTF-8 in text message".to_owned(),
            Error::InvalidCompressedData => "Invalid compressed data".to_owned(),
            Error::FrameTooLarge { size, max } => format!("Frame too large: {size} > {max}"),
            Error::TextTooLarge { size, max } => format!("Text message too large: {size} > {max}"),
            Error::BinaryTooLarge { size, max } => {
                format!("Binary message too large: {size} > {max}")
            }
            Error::Timeout => "Idle timeout".to_owned(),
            Error::Backpressure => "Outbound buffer full".to_owned(),
            Error::ListenerPanic(_) => "Internal error".to_owned(),
            Error::BudgetExhausted { asked, left } => {
                format!("Inbound budget exhausted: asked {asked}, left {left}")
            }
        }
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Protocol(cause) => write!(f, "WebSocket protocol error: {cause}"),
            Error::InvalidUtf8 => f.write_str("text message is not valid UTF-8"),
            Error::InvalidCompressedData => {
                f.write_str("compressed message is not a valid deflate stream")
            }
            Error::FrameTooLarge { size, max } => {
                write!(f, "frame of {size} bytes exceeds max_frame_size {max}")
            }
            Error::TextTooLarge { size, max } => {
                write!(
                    f,
                    "text message of {size} bytes exceeds max_text_message_size {max}"
                )
            }
            Error::BinaryTooLarge { size, max } => write!(
                f,
                "binary message of {size} bytes exceeds max_binary_message_size {max}"
            ),
            Error::Timeout => f.write_str("no data from the peer within idle_timeout"),
            Error::Backpressure => f.write_str("outbound buffer full: the peer does not read"),
            Error::ListenerPanic(message) => write!(f, "listener panicked: {message}"),
            Error::BudgetExhausted { asked, left } => write!(
                f,
                "server-wide inbound budget exhausted: asked for {asked} bytes, {left} left"
            ),
        }
    }
}

impl std::error::Error for Error {}

impl From<ProtocolError> for Error {
    fn from(cause: ProtocolError) -> Error {
        Error::Protocol(cause)
    }
}

/// How the peer broke RFC 6455: the cause inside [`Error::Protocol`]. Every
/// one closes the connection with 1002.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ProtocolError {
    /// RSV2 or RSV3 is set (no extension defines them here) (§5.2).
    ReservedBits,
    /// RSV1 is set but permessage-deflate was not negotiated (§5.2).
    CompressionNotNegotiated,
    /// RSV1 is set on a control frame (RFC 7692 §6.1).
    CompressedControlFrame,
    /// RSV1 is set on a continuation frame (RFC 7692 §6.1).
    CompressedContinuation,
    /// The opcode is reserved (3–7, 0xB–0xF); the opcode (§5.2).
    ReservedOpcode(u8),
    /// A client frame is not masked (§5.1).
    UnmaskedFrame,
    /// A 64-bit payload length has its most significant bit set (§5.2).
    InvalidLength,
    /// A control frame has FIN clear (§5.5).
    FragmentedControlFrame,
    /// A control frame's payload is longer than 125 bytes; its length (§5.5).
    ControlFrameTooLong(u64),
    /// A continuation frame arrived with no fragmented message to continue (§5.4).
    UnexpectedContinuation,
    /// A text or binary frame arrived while a fragmented message was
    /// unfinished (§5.4).
    UnfinishedMessage,
    /// A close frame's payload is one byte: a code needs two (§5.5.1).
    CloseFrameTooShort,
    /// A close frame carries a code that may not be sent (§7.4); the code.
    InvalidCloseCode(u16),
    /// A close frame's reason is not valid UTF-8 (§5.5.1).
    InvalidCloseReason,
}

impl fmt::Display for ProtocolError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ProtocolError::ReservedBits => f.write_str("reserved bit set"),
            ProtocolError::CompressionNotNegotiated => {
                f.write_str("RSV1 set without permessage-deflate")
            }
            ProtocolError::CompressedControlFrame => f.write_str("RSV1 set on a control frame"),
            ProtocolError::CompressedContinuation => {
                f.write_str("RSV1 set on a continuation frame")
            }
            ProtocolError::ReservedOpcode(op) => write!(f, "reserved opcode {op:#x}"),
            ProtocolError::UnmaskedFrame => f.write_str("client frame is not masked"),
            ProtocolError::InvalidLength => {
                f.write_str("payload length has the most significant bit set")
            }
            ProtocolError::FragmentedControlFrame => f.write_str("fragmented control frame"),
            ProtocolError::ControlFrameTooLong(len) => {
                write!(f, "control frame payload of {len} bytes exceeds 125")
            }
            ProtocolError::UnexpectedContinuation => {
                f.write_str("continuation frame without a message")
            }
            ProtocolError::UnfinishedMessage => {
                f.write_str("new data frame while a fragmented message is unfinished")
            }
            ProtocolError::CloseFrameTooShort => f.write_str("close frame with a 1-byte payload"),
            ProtocolError::InvalidCloseCode(code) => write!(f, "invalid close code {code}"),
            ProtocolError::InvalidCloseReason => f.write_str("close reason is not valid UTF-8"),
        }
    }
}

impl std::error::Error for ProtocolError {}

/// Why a socket operation was refused. Socket operations never panic.
///
/// A refused [`Socket::send`](crate::Socket::send) hands its message back,
/// as `std::sync::mpsc::TrySendError` and tokio's `TrySendError` do, so the
/// caller can retry it later, queue it elsewhere or drop it on purpose:
///
/// ```no_run
/// use actix_ws_listener::{Message, SendError, Socket};
///
/// fn send_or_keep(socket: &Socket, message: Message, later: &mut Vec<Message>) {
///     match socket.send(message) {
///         Ok(()) => {}
///         // The client is slow: keep the message and try again later.
///         Err(SendError::Backpressure { message: Some(message), .. }) => later.push(message),
///         // The client left (or anything else): nothing to do.
///         Err(error) => log::debug!("ws {}: not sent: {error}", socket.id()),
///     }
/// }
/// ```
///
/// The message is an `Option` because one type serves every socket
/// operation: pings, pongs and closes have no [`Message`] to give back, and a
/// [`Socket::send_async`](crate::Socket::send_async) whose connection ends
/// after the message was queued reports `Closed(None)`: by then the message
/// was turned into a frame (compressed, maybe), and keeping a second
/// reference to every queued message until it is written would hold its
/// memory twice as long.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum SendError {
    /// The connection is closing or closed (`close` was called, a close
    /// frame arrived, or the connection ended). Carries the refused message
    /// when there is one to give back.
    Closed(Option<Message>),
    /// Queueing this frame would exceed `max_outbound_buffer`: the peer is
    /// not reading fast enough.
    Backpressure {
        /// The refused message, for `send`, `send_async` and `send_json`;
        /// `None` for pings and pongs.
        message: Option<Message>,
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
    /// `send_json` could not serialize the value; nothing was sent.
    #[cfg(feature = "json")]
    #[cfg_attr(docsrs, doc(cfg(feature = "json")))]
    Serialize(JsonError),
}

impl SendError {
    /// The refused message, when the error carries one.
    pub fn message(&self) -> Option<&Message> {
        match self {
            SendError::Closed(message) | SendError::Backpressure { message, .. } => {
                message.as_ref()
            }
            _ => None,
        }
    }

    /// Takes the refused message back, when the error carries one.
    pub fn into_message(self) -> Option<Message> {
        match self {
            SendError::Closed(message) | SendError::Backpressure { message, .. } => message,
            _ => None,
        }
    }

    /// True when the connection is closing or closed: retrying on this
    /// socket cannot succeed.
    pub fn is_closed(&self) -> bool {
        matches!(self, SendError::Closed(_))
    }

    /// True when the peer is not reading fast enough: a later retry may
    /// succeed.
    pub fn is_backpressure(&self) -> bool {
        matches!(self, SendError::Backpressure { .. })
    }

    /// This error carrying `message` as the refused one (for the refusals
    /// that hand a message back).
    pub(crate) fn with_message(self, message: Option<Message>) -> SendError {
        match self {
            SendError::Closed(_) => SendError::Closed(message),
            SendError::Backpressure { queued, limit, .. } => SendError::Backpressure {
                message,
                queued,
                limit,
            },
            other => other,
        }
    }
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Closed(_) => f.write_str("socket is closed"),
            SendError::Backpressure { queued, limit, .. } => write!(
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
            SendError::Serialize(error) => write!(f, "cannot send: {error}"),
        }
    }
}

impl std::error::Error for SendError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            #[cfg(feature = "json")]
            SendError::Serialize(error) => Some(error),
            _ => None,
        }
    }
}

/// A message that could not be turned into or out of JSON.
///
/// Cheap to clone (the serializer's error is shared). Two errors are equal
/// when they are of the same kind and say the same thing (message, line
/// and column).
#[cfg(feature = "json")]
#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
#[derive(Clone, Debug)]
pub struct JsonError {
    kind: JsonErrorKind,
    source: std::sync::Arc<serde_json::Error>,
}

#[cfg(feature = "json")]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum JsonErrorKind {
    Serialize,
    Binary,
    Parse,
}

#[cfg(feature = "json")]
impl JsonError {
    pub(crate) fn new(kind: JsonErrorKind, source: serde_json::Error) -> JsonError {
        JsonError {
            kind,
            source: std::sync::Arc::new(source),
        }
    }

    /// True when the error came from serializing a value (`Message::json`,
    /// `Socket::send_json`), false when parsing a message.
    pub fn is_serialize(&self) -> bool {
        self.kind == JsonErrorKind::Serialize
    }

    /// Line of the input (1-based) where parsing failed; 0 when serializing.
    pub fn line(&self) -> usize {
        self.source.line()
    }

    /// Column of the input (1-based) where parsing failed; 0 when serializing.
    pub fn column(&self) -> usize {
        self.source.column()
    }

    /// True when the input was not JSON at all (a syntax error or cut-off
    /// input), false when it was JSON of the wrong shape or when serializing.
    pub fn is_syntax(&self) -> bool {
        // serde_json classifies some serializer errors (a non-string map
        // key) as syntax errors; there was no input then.
        self.kind != JsonErrorKind::Serialize && (self.source.is_syntax() || self.source.is_eof())
    }
}

#[cfg(feature = "json")]
impl fmt::Display for JsonError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.kind {
            JsonErrorKind::Serialize => {
                write!(f, "cannot serialize value as JSON: {}", self.source)
            }
            JsonErrorKind::Binary => write!(f, "binary message is not JSON text: {}", self.source),
            JsonErrorKind::Parse => write!(f, "message is not the expected JSON: {}", self.source),
        }
    }
}

#[cfg(feature = "json")]
impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&*self.source)
    }
}

#[cfg(feature = "json")]
impl PartialEq for JsonError {
    fn eq(&self, other: &JsonError) -> bool {
        self.kind == other.kind
            && self.line() == other.line()
            && self.column() == other.column()
            && self.source.to_string() == other.source.to_string()
    }
}

#[cfg(feature = "json")]
impl Eq for JsonError {}
