//! Typed messages as JSON text (feature `json`): Ring's transit middleware,
//! in Rust's idiom.
//!
//! This module owns the conversions between `serde` types and text
//! messages, and [`JsonError`], which says what was wrong. Without the
//! feature none of it is compiled, so it costs nothing.

use std::fmt;

use serde::{de::DeserializeOwned, Serialize};

use crate::{Message, SendError, Socket};

/// A message that could not be turned into or out of JSON.
#[derive(Debug)]
pub struct JsonError {
    kind: JsonErrorKind,
    source: serde_json::Error,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum JsonErrorKind {
    Serialize,
    Binary,
    Parse,
}

impl JsonError {
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
        self.source.is_syntax() || self.source.is_eof()
    }
}

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

impl std::error::Error for JsonError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
impl Message {
    /// Serializes `value` as a JSON text message.
    ///
    /// ```
    /// # #[derive(serde::Serialize)] struct Chat<'a> { from: &'a str, text: &'a str }
    /// use actix_ws_listener::Message;
    ///
    /// let message = Message::json(&Chat { from: "ada", text: "hi" }).unwrap();
    /// assert_eq!(message.as_text(), Some(r#"{"from":"ada","text":"hi"}"#));
    /// ```
    ///
    /// # Errors
    /// When `value`'s `Serialize` implementation fails (a map with
    /// non-string keys, say).
    pub fn json<T: Serialize + ?Sized>(value: &T) -> Result<Message, JsonError> {
        serde_json::to_string(value)
            .map(Message::from)
            .map_err(|source| JsonError {
                kind: JsonErrorKind::Serialize,
                source,
            })
    }

    /// Parses the message as JSON into `T`. Binary messages are parsed too
    /// (as UTF-8 JSON bytes); the error then says the message was binary.
    ///
    /// ```
    /// # #[derive(serde::Deserialize, Debug)] struct Chat { text: String }
    /// use actix_ws_listener::Message;
    ///
    /// let chat: Chat = Message::from(r#"{"text":"hi"}"#).parse_json().unwrap();
    /// assert_eq!(chat.text, "hi");
    ///
    /// let error = Message::from(r#"{"txt":"hi"}"#).parse_json::<Chat>().unwrap_err();
    /// assert!(error.to_string().contains("missing field `text`"));
    /// ```
    ///
    /// # Errors
    /// When the payload is not JSON, or not JSON of `T`'s shape; the error
    /// gives the reason, line and column.
    pub fn parse_json<T: DeserializeOwned>(&self) -> Result<T, JsonError> {
        serde_json::from_slice(self.as_bytes()).map_err(|source| JsonError {
            kind: if self.is_binary() {
                JsonErrorKind::Binary
            } else {
                JsonErrorKind::Parse
            },
            source,
        })
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
impl Socket {
    /// Serializes `value` and sends it as a JSON text message.
    ///
    /// # Errors
    /// [`SendError::Serialize`] when serialization fails; otherwise as
    /// [`Socket::send`].
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let message =
            Message::json(value).map_err(|error| SendError::Serialize(error.to_string()))?;
        self.send(message)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn parse_errors_say_where_and_what() {
        let error = Message::from("{\"a\": 1,\n  oops}")
            .parse_json::<HashMap<String, u32>>()
            .unwrap_err();
        assert!(error.is_syntax());
        assert_eq!(error.line(), 2);
        assert!(
            error
                .to_string()
                .starts_with("message is not the expected JSON"),
            "{error}"
        );

        let error = Message::from(vec![0xFFu8]).parse_json::<u32>().unwrap_err();
        assert!(error.to_string().starts_with("binary message"), "{error}");
    }

    #[test]
    fn serialize_errors_are_reported() {
        let mut map = HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(Message::json(&map).is_err());
    }
}
