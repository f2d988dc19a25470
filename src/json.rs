//! Typed messages as JSON text (feature `json`): Ring's transit middleware,
//! in Rust's idiom.
//!
//! This module owns the conversions between `serde` types and text
//! messages; [`JsonError`], which says what was wrong, lives with the
//! other error types in `error.rs`. Without the
//! feature none of it is compiled, so it costs nothing.

use serde::{de::DeserializeOwned, Serialize};

use crate::{
    error::{JsonError, JsonErrorKind, SendError},
    message::Message,
    socket::Socket,
};

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
            .map_err(|source| JsonError::new(JsonErrorKind::Serialize, source))
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
        serde_json::from_slice(self.as_bytes()).map_err(|source| {
            let kind = if self.is_binary() {
                JsonErrorKind::Binary
            } else {
                JsonErrorKind::Parse
            };
            JsonError::new(kind, source)
        })
    }
}

#[cfg_attr(docsrs, doc(cfg(feature = "json")))]
impl Socket {
    /// Serializes `value` and sends it as a JSON text message.
    ///
    /// # Errors
    /// [`SendError::Serialize`] with the serializer's [`JsonError`] when
    /// serialization fails (nothing is sent); otherwise as [`Socket::send`],
    /// which hands the serialized message back when it is refused.
    pub fn send_json<T: Serialize + ?Sized>(&self, value: &T) -> Result<(), SendError> {
        let message = Message::json(value).map_err(SendError::Serialize)?;
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
    fn send_json_errors_are_typed_and_a_refused_message_comes_back() {
        let counters = crate::command::Link::detached(16);
        let socket = Socket::new(counters);
        let mut map = HashMap::new();
        map.insert(vec![1u8], 1);
        match socket.send_json(&map) {
            Err(SendError::Serialize(error)) => {
                assert!(error.is_serialize());
                assert!(!error.is_syntax());
                assert_eq!(error, error.clone());
            }
            other => panic!("expected a serialize error, got {other:?}"),
        }
        // The first frame takes an empty queue; the second is over 16 bytes.
        assert_eq!(socket.send_json(&"first"), Ok(()));
        let refused = socket.send_json(&[1, 2, 3]).unwrap_err();
        assert!(refused.is_backpressure(), "{refused:?}");
        assert_eq!(refused.into_message(), Some(Message::from("[1,2,3]")));
        socket.link().mark_closed();
        assert_eq!(
            socket.send_json(&"late"),
            Err(SendError::Closed(Some(Message::from("\"late\""))))
        );
    }

    #[test]
    fn serialize_errors_are_reported() {
        let mut map = HashMap::new();
        map.insert(vec![1u8], 1);
        assert!(Message::json(&map).is_err());
    }
}
