//! The bytes one node publishes to Redis for one broadcast of a named
//! group, and their decoding on the other nodes.
//!
//! This module implements the wire format of S18, documented once, in the
//! "Wire format" section of [`Cluster`](crate::Cluster)'s docs (its tests
//! pin that layout), and nothing else: plain data in, plain data out, no
//! broker, no sockets, no runtime. A payload that does not decode is
//! reported, never panicked on: any process that can publish to the channel
//! can send us anything.

use bytes::{BufMut, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{history::Offset, message::Message};

/// The only version this build writes and reads.
const VERSION: u8 = 1;
const KIND_TEXT: u8 = 1;
const KIND_BINARY: u8 = 2;
const KIND_JOIN: u8 = 3;
const KIND_UPDATE: u8 = 4;
const KIND_LEAVE: u8 = 5;
const KIND_RECORDED_TEXT: u8 = 6;
const KIND_RECORDED_BINARY: u8 = 7;

/// A presence change: the kinds after text and binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Change {
    Join,
    Update,
    Leave,
}
/// Version, kind, origin, excluded socket.
pub(crate) const HEADER_LEN: usize = 1 + 1 + 16 + 8;

/// One decoded broadcast from another (or this) node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Envelope {
    /// The node that published it.
    pub(crate) origin: u128,
    /// The socket of `origin` that must not get it (`broadcast_except`).
    /// For a presence change, the member's socket on `origin`.
    pub(crate) except: Option<u64>,
    /// For a presence change, the member's metadata as text.
    pub(crate) message: Message,
    /// `Some` for a presence change rather than a broadcast.
    pub(crate) change: Option<Change>,
    /// `Some` for a broadcast recorded in the group's history, at this
    /// offset.
    pub(crate) offset: Option<Offset>,
}

/// Why a published payload was not an envelope we can deliver.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Malformed {
    /// Shorter than the header.
    Short,
    /// A version this build does not know (a newer node, or another program).
    Version(u8),
    /// A kind byte that is neither text nor binary.
    Kind(u8),
    /// A text message whose payload is not UTF-8.
    Utf8,
    /// A recorded broadcast whose offset is missing or not `EPOCH:POSITION`.
    Offset,
}

/// The header every envelope starts with, written into a buffer with room
/// for `payload` more bytes.
fn header(kind: u8, origin: u128, socket: Option<u64>, payload: usize) -> BytesMut {
    let mut out = BytesMut::with_capacity(HEADER_LEN + payload);
    out.put_u8(VERSION);
    out.put_u8(kind);
    out.put_u128(origin);
    out.put_u64(socket.unwrap_or(0));
    out
}

/// The publish payload for `message` from node `origin`: the header, then
/// the payload copied once (Redis needs one contiguous value).
pub(crate) fn encode(origin: u128, except: Option<u64>, message: &Message) -> Bytes {
    let kind = if message.is_text() {
        KIND_TEXT
    } else {
        KIND_BINARY
    };
    let mut out = header(kind, origin, except, message.len());
    out.put_slice(message.as_bytes());
    out.freeze()
}

/// The publish payload announcing a presence change of socket `socket` of
/// node `origin`, with its metadata.
pub(crate) fn encode_change(origin: u128, socket: u64, change: Change, meta: &str) -> Bytes {
    let kind = match change {
        Change::Join => KIND_JOIN,
        Change::Update => KIND_UPDATE,
        Change::Leave => KIND_LEAVE,
    };
    let mut out = header(kind, origin, Some(socket), meta.len());
    out.put_slice(meta.as_bytes());
    out.freeze()
}

/// The header of a recorded broadcast of `message`: the history script on
/// Redis appends the offset (its length in one byte, then its text) and
/// the payload, once it knows the offset.
pub(crate) fn encode_recorded_header(
    origin: u128,
    except: Option<u64>,
    message: &Message,
) -> Bytes {
    let kind = if message.is_text() {
        KIND_RECORDED_TEXT
    } else {
        KIND_RECORDED_BINARY
    };
    header(kind, origin, except, 0).freeze()
}

/// Reads the header without touching the payload: which node sent it.
fn origin(raw: &[u8]) -> Option<u128> {
    let bytes = raw.get(2..18)?;
    Some(u128::from_be_bytes(bytes.try_into().ok()?))
}

/// Decodes a payload read from the broker; the message shares `raw`'s
/// memory (no copy for binary, a UTF-8 check for text).
pub(crate) fn decode(raw: Bytes) -> Result<Envelope, Malformed> {
    if raw.len() < HEADER_LEN {
        return Err(Malformed::Short);
    }
    if raw[0] != VERSION {
        return Err(Malformed::Version(raw[0]));
    }
    let origin = origin(&raw).ok_or(Malformed::Short)?;
    let mut except = [0u8; 8];
    except.copy_from_slice(&raw[18..HEADER_LEN]);
    let except = Some(u64::from_be_bytes(except)).filter(|&id| id != 0);
    let mut payload = raw.slice(HEADER_LEN..);
    let mut offset = None;
    if matches!(raw[1], KIND_RECORDED_TEXT | KIND_RECORDED_BINARY) {
        let len = usize::from(*payload.first().ok_or(Malformed::Offset)?);
        let text = payload.get(1..=len).ok_or(Malformed::Offset)?;
        let text = std::str::from_utf8(text).map_err(|_| Malformed::Offset)?;
        offset = Some(text.parse::<Offset>().map_err(|_| Malformed::Offset)?);
        payload = payload.slice(1 + len..);
    }
    let change = match raw[1] {
        KIND_TEXT | KIND_BINARY | KIND_RECORDED_TEXT | KIND_RECORDED_BINARY => None,
        KIND_JOIN => Some(Change::Join),
        KIND_UPDATE => Some(Change::Update),
        KIND_LEAVE => Some(Change::Leave),
        kind => return Err(Malformed::Kind(kind)),
    };
    let message = if matches!(raw[1], KIND_BINARY | KIND_RECORDED_BINARY) {
        Message::Binary(payload)
    } else {
        Message::Text(ByteString::try_from(payload).map_err(|_| Malformed::Utf8)?)
    };
    Ok(Envelope {
        origin,
        except,
        message,
        change,
        offset,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const NODE: u128 = 0x0123_4567_89ab_cdef_fedc_ba98_7654_3210;

    #[test]
    fn text_and_binary_round_trip_with_origin_and_exception() {
        for (message, except) in [
            (Message::from("héllo"), None),
            (Message::from(vec![0u8, 1, 2, 255]), Some(42)),
            (Message::from(""), Some(7)),
        ] {
            let raw = encode(NODE, except, &message);
            assert_eq!(raw.len(), HEADER_LEN + message.len());
            assert_eq!(origin(&raw), Some(NODE));
            assert_eq!(
                decode(raw),
                Ok(Envelope {
                    origin: NODE,
                    except,
                    message,
                    change: None,
                    offset: None,
                })
            );
        }
    }

    #[test]
    fn the_header_layout_is_the_documented_one() {
        let raw = encode(1, Some(2), &Message::from("x"));
        let mut expected = vec![1u8, 1];
        expected.extend_from_slice(&1u128.to_be_bytes());
        expected.extend_from_slice(&2u64.to_be_bytes());
        expected.push(b'x');
        assert_eq!(&raw[..], &expected[..]);
    }

    #[test]
    fn presence_changes_round_trip() {
        for change in [Change::Join, Change::Update, Change::Leave] {
            let raw = encode_change(NODE, 42, change, "alice");
            let envelope = decode(raw).expect("decodes");
            assert_eq!(envelope.change, Some(change));
            assert_eq!((envelope.origin, envelope.except), (NODE, Some(42)));
            assert_eq!(envelope.message, Message::from("alice"));
        }
    }

    #[test]
    fn recorded_broadcasts_carry_their_offset_before_the_payload() {
        for message in [Message::from("héllo"), Message::from(vec![0u8, 255])] {
            let mut raw = encode_recorded_header(NODE, Some(9), &message).to_vec();
            assert_eq!(raw.len(), HEADER_LEN);
            // What the history script appends.
            let offset = "5f3a9c0e12d4b781:42";
            raw.push(u8::try_from(offset.len()).expect("short"));
            raw.extend_from_slice(offset.as_bytes());
            raw.extend_from_slice(message.as_bytes());
            let envelope = decode(raw.into()).expect("decodes");
            assert_eq!(envelope.offset, Some(offset.parse().expect("an offset")));
            assert_eq!((envelope.origin, envelope.except), (NODE, Some(9)));
            assert_eq!(envelope.message, message);
            assert_eq!(envelope.change, None);
        }
        let mut raw = encode_recorded_header(NODE, None, &Message::from("x")).to_vec();
        raw.extend_from_slice(&[40, b'a']);
        assert_eq!(decode(raw.into()), Err(Malformed::Offset));
    }

    #[test]
    fn foreign_payloads_are_reported_not_delivered() {
        assert_eq!(decode(Bytes::from_static(b"hello")), Err(Malformed::Short));
        let mut raw = encode(NODE, None, &Message::from("x")).to_vec();
        raw[0] = 9;
        assert_eq!(decode(raw.clone().into()), Err(Malformed::Version(9)));
        raw[0] = VERSION;
        raw[1] = 9;
        assert_eq!(decode(raw.clone().into()), Err(Malformed::Kind(9)));
        raw[1] = KIND_TEXT;
        *raw.last_mut().expect("one payload byte") = 0xff;
        assert_eq!(decode(raw.into()), Err(Malformed::Utf8));
    }
}
