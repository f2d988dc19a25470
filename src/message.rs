//! The unit a listener receives and a socket sends: a whole WebSocket message.
//!
//! This module owns [`Message`] and its conversions. It knows nothing about
//! frames: fragmentation, masking and UTF-8 streaming live in the inbound
//! assembler (`inbound.rs`, `frame.rs`, `utf8.rs`).

use bytes::Bytes;
use bytestring::ByteString;

/// A whole WebSocket message: text (always valid UTF-8) or binary.
///
/// Both variants are reference counted, so cloning a message (to broadcast it,
/// say) never copies the payload. This is Ring's `CharSequence` / `ByteBuffer`
/// pair.
///
/// ```
/// use actix_ws_listener::Message;
///
/// let text = Message::from("hello");
/// assert_eq!(text.as_text(), Some("hello"));
///
/// let binary = Message::from(vec![1u8, 2, 3]);
/// assert!(binary.is_binary());
/// assert_eq!(binary.as_bytes(), &[1, 2, 3]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Message {
    /// A text message: valid UTF-8, sent with opcode `0x1`.
    Text(ByteString),
    /// A binary message, sent with opcode `0x2`.
    Binary(Bytes),
}

impl Message {
    /// A text message.
    pub fn text(text: impl Into<ByteString>) -> Self {
        Message::Text(text.into())
    }

    /// A binary message.
    pub fn binary(bytes: impl Into<Bytes>) -> Self {
        Message::Binary(bytes.into())
    }

    /// The text, if this is a text message.
    pub fn as_text(&self) -> Option<&str> {
        match self {
            Message::Text(text) => Some(text),
            Message::Binary(_) => None,
        }
    }

    /// The payload bytes, whatever the type.
    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Message::Text(text) => text.as_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// The payload as shared [`Bytes`], without copying.
    pub fn into_bytes(self) -> Bytes {
        match self {
            Message::Text(text) => text.into_bytes(),
            Message::Binary(bytes) => bytes,
        }
    }

    /// Payload length in bytes.
    pub fn len(&self) -> usize {
        self.as_bytes().len()
    }

    /// True when the payload is empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// True for [`Message::Text`].
    pub fn is_text(&self) -> bool {
        matches!(self, Message::Text(_))
    }

    /// True for [`Message::Binary`].
    pub fn is_binary(&self) -> bool {
        matches!(self, Message::Binary(_))
    }
}

impl From<&str> for Message {
    fn from(text: &str) -> Self {
        Message::Text(ByteString::from(text))
    }
}

impl From<String> for Message {
    fn from(text: String) -> Self {
        Message::Text(ByteString::from(text))
    }
}

impl From<&String> for Message {
    fn from(text: &String) -> Self {
        Message::Text(ByteString::from(text.as_str()))
    }
}

impl From<ByteString> for Message {
    fn from(text: ByteString) -> Self {
        Message::Text(text)
    }
}

impl From<Vec<u8>> for Message {
    fn from(bytes: Vec<u8>) -> Self {
        Message::Binary(Bytes::from(bytes))
    }
}

impl From<&[u8]> for Message {
    fn from(bytes: &[u8]) -> Self {
        Message::Binary(Bytes::copy_from_slice(bytes))
    }
}

impl<const N: usize> From<&[u8; N]> for Message {
    fn from(bytes: &[u8; N]) -> Self {
        Message::Binary(Bytes::copy_from_slice(bytes))
    }
}

impl From<Bytes> for Message {
    fn from(bytes: Bytes) -> Self {
        Message::Binary(bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_keep_the_type() {
        assert!(Message::from("a").is_text());
        assert!(Message::from(String::from("a")).is_text());
        assert!(Message::from(ByteString::from("a")).is_text());
        assert!(Message::from(vec![1u8]).is_binary());
        assert!(Message::from(&b"ab"[..]).is_binary());
        assert!(Message::from(Bytes::from_static(b"x")).is_binary());
        assert_eq!(Message::from("héllo").len(), 6);
    }

    #[test]
    fn clones_share_the_payload() {
        let message = Message::binary(vec![7u8; 1024]);
        let copy = message.clone();
        assert_eq!(message.as_bytes().as_ptr(), copy.as_bytes().as_ptr());
    }
}
