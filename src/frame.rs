//! The crate's own RFC 6455 frame codec: header parsing with limits checked
//! at header time, in-place unmasking, and encoding of server frames.
//!
//! This module owns the wire format only. It does not assemble messages,
//! validate UTF-8 or decide what to do with a frame; the inbound assembler
//! (`inbound.rs`) does.

use bytes::{BufMut, BytesMut};

use crate::{Error, ProtocolError};

/// Frame opcodes (RFC 6455 §5.2).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum OpCode {
    Continuation,
    Text,
    Binary,
    Close,
    Ping,
    Pong,
}

impl OpCode {
    fn from_u8(byte: u8) -> Option<OpCode> {
        Some(match byte {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    fn as_u8(self) -> u8 {
        match self {
            OpCode::Continuation => 0x0,
            OpCode::Text => 0x1,
            OpCode::Binary => 0x2,
            OpCode::Close => 0x8,
            OpCode::Ping => 0x9,
            OpCode::Pong => 0xA,
        }
    }

    pub(crate) fn is_control(self) -> bool {
        matches!(self, OpCode::Close | OpCode::Ping | OpCode::Pong)
    }
}

/// A parsed, validated client frame header.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Header {
    pub(crate) fin: bool,
    /// RSV1; only legal when an extension that defines it was negotiated.
    pub(crate) rsv1: bool,
    pub(crate) opcode: OpCode,
    pub(crate) mask: [u8; 4],
    pub(crate) len: usize,
}

/// Largest control frame payload (RFC 6455 §5.5).
pub(crate) const MAX_CONTROL_PAYLOAD: usize = 125;

/// Parses a client frame header from the start of `buf`.
///
/// Returns `Ok(None)` when more bytes are needed, `Ok(Some((header, header_len)))`
/// otherwise. Every check that can be made from the header is made here,
/// before any payload is buffered: reserved bits and opcodes, masking,
/// control frame rules and `max_frame_size`.
#[inline]
pub(crate) fn parse_header(
    buf: &[u8],
    max_frame_size: usize,
    rsv1_allowed: bool,
) -> Result<Option<(Header, usize)>, Error> {
    if buf.len() < 2 {
        return Ok(None);
    }
    let (b0, b1) = (buf[0], buf[1]);
    let fin = b0 & 0x80 != 0;
    let rsv1 = b0 & 0x40 != 0;
    if b0 & 0x30 != 0 {
        return Err(ProtocolError::ReservedBits.into());
    }
    if rsv1 && !rsv1_allowed {
        return Err(ProtocolError::CompressionNotNegotiated.into());
    }
    let opcode = OpCode::from_u8(b0 & 0x0F).ok_or(ProtocolError::ReservedOpcode(b0 & 0x0F))?;
    if b1 & 0x80 == 0 {
        return Err(ProtocolError::UnmaskedFrame.into());
    }
    let (len, len_bytes) = match b1 & 0x7F {
        126 => {
            if buf.len() < 4 {
                return Ok(None);
            }
            (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 2)
        }
        127 => {
            if buf.len() < 10 {
                return Ok(None);
            }
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(&buf[2..10]);
            let len = u64::from_be_bytes(bytes);
            if len >> 63 != 0 {
                return Err(ProtocolError::InvalidLength.into());
            }
            (len, 8)
        }
        small => (u64::from(small), 0),
    };
    if opcode.is_control() {
        if !fin {
            return Err(ProtocolError::FragmentedControlFrame.into());
        }
        if len > MAX_CONTROL_PAYLOAD as u64 {
            return Err(ProtocolError::ControlFrameTooLong(len).into());
        }
        if rsv1 {
            return Err(ProtocolError::CompressedControlFrame.into());
        }
    }
    if len > max_frame_size as u64 {
        return Err(Error::FrameTooLarge {
            size: len,
            max: max_frame_size,
        });
    }
    let header_len = 2 + len_bytes + 4;
    if buf.len() < header_len {
        return Ok(None);
    }
    let mut mask = [0u8; 4];
    mask.copy_from_slice(&buf[2 + len_bytes..header_len]);
    Ok(Some((
        Header {
            fin,
            rsv1,
            opcode,
            mask,
            // Fits: bounded by max_frame_size, a usize.
            len: len as usize,
        },
        header_len,
    )))
}

/// Unmasks `data` in place; `offset` is the position of `data[0]` within the
/// frame payload, so a payload can be unmasked in pieces as it arrives.
pub(crate) fn apply_mask(data: &mut [u8], mask: [u8; 4], offset: usize) {
    // The key as it lines up with `data[0]`: byte `i` of the rotated key
    // is byte `(i + offset) % 4` of the key. As a little-endian word, that
    // is a rotation right (a plain integer rotation, where rotating the
    // array costs a call on every frame).
    let key = u32::from_le_bytes(mask).rotate_right(8 * (offset % 4) as u32);
    let mask = key.to_le_bytes();
    // Sixteen bytes at a time (one SSE2 register), then the tail.
    let word = u128::from(key) * 0x0000_0001_0000_0001_0000_0001_0000_0001;
    let mut chunks = data.chunks_exact_mut(16);
    for chunk in &mut chunks {
        let mut bytes = [0u8; 16];
        bytes.copy_from_slice(chunk);
        chunk.copy_from_slice(&(u128::from_le_bytes(bytes) ^ word).to_le_bytes());
    }
    for (byte, key) in chunks.into_remainder().iter_mut().zip(mask.iter().cycle()) {
        *byte ^= key;
    }
}

/// Appends `data` to `out` unmasked: `offset` is the position of
/// `data[0]` within the frame payload, as for [`apply_mask`]. It goes in
/// pieces small enough that each is still in the first-level cache when it
/// is unmasked, so a large payload costs about one pass over memory rather
/// than a copy and then a second pass to unmask it.
#[inline]
pub(crate) fn extend_unmasked(out: &mut BytesMut, data: &[u8], mask: [u8; 4], offset: usize) {
    const PIECE: usize = 4096;
    if data.len() <= PIECE {
        let start = out.len();
        out.extend_from_slice(data);
        apply_mask(&mut out[start..], mask, offset);
        return;
    }
    out.reserve(data.len());
    let mut at = offset;
    for piece in data.chunks(PIECE) {
        let start = out.len();
        out.extend_from_slice(piece);
        apply_mask(&mut out[start..], mask, at);
        at += piece.len();
    }
}

/// Length of the header [`encode`] writes for a payload of `len` bytes.
pub(crate) fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// Appends an unmasked server frame (`fin` set) to `out`.
pub(crate) fn encode(out: &mut BytesMut, opcode: OpCode, rsv1: bool, payload: &[u8]) {
    out.reserve(header_len(payload.len()) + payload.len());
    encode_header(out, opcode, rsv1, payload.len());
    out.extend_from_slice(payload);
}

/// Appends the header of an unmasked server frame (`fin` set) whose
/// payload of `len` bytes the caller writes next.
#[inline]
pub(crate) fn encode_header(out: &mut BytesMut, opcode: OpCode, rsv1: bool, len: usize) {
    // Written as whole integers: one bounds check and store each, where a
    // header built in an array costs its zeroing and a copy of a slice.
    let b0 = 0x80 | opcode.as_u8() | if rsv1 { 0x40 } else { 0 };
    match len {
        0..=125 => out.put_u16(u16::from_be_bytes([b0, len as u8])),
        126..=0xFFFF => out.put_u32((u32::from(b0) << 24) | (126 << 16) | len as u32),
        _ => {
            out.put_u16(u16::from_be_bytes([b0, 127]));
            out.put_u64(len as u64);
        }
    }
}

/// Appends a close frame with `code` and `reason` (which the caller has
/// already checked: sendable code, reason at most 123 bytes).
pub(crate) fn encode_close(out: &mut BytesMut, code: u16, reason: &str) {
    let mut payload = [0u8; MAX_CONTROL_PAYLOAD];
    payload[..2].copy_from_slice(&code.to_be_bytes());
    let len = 2 + reason.len().min(MAX_CONTROL_PAYLOAD - 2);
    payload[2..len].copy_from_slice(&reason.as_bytes()[..len - 2]);
    encode(out, OpCode::Close, false, &payload[..len]);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn masked(b0: u8, len: usize) -> Vec<u8> {
        let mut frame = vec![b0];
        match len {
            0..=125 => frame.push(0x80 | len as u8),
            126..=0xFFFF => {
                frame.push(0x80 | 126);
                frame.extend_from_slice(&(len as u16).to_be_bytes());
            }
            _ => {
                frame.push(0x80 | 127);
                frame.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        frame.extend_from_slice(&[1, 2, 3, 4]);
        frame
    }

    #[test]
    fn header_needs_all_its_bytes() {
        let frame = masked(0x81, 70_000);
        for end in 0..frame.len() {
            assert_eq!(
                parse_header(&frame[..end], 1 << 20, false),
                Ok(None),
                "{end}"
            );
        }
        let (header, len) = parse_header(&frame, 1 << 20, false).unwrap().unwrap();
        assert_eq!((header.len, len, header.opcode), (70_000, 14, OpCode::Text));
    }

    #[test]
    fn s8_oversized_frame_is_refused_from_its_header_alone() {
        // Only the first 10 bytes: the mask has not even arrived.
        let frame = masked(0x82, 1 << 30);
        assert_eq!(
            parse_header(&frame[..10], 16 << 20, false),
            Err(Error::FrameTooLarge {
                size: 1 << 30,
                max: 16 << 20
            })
        );
        // The limit is inclusive.
        assert!(parse_header(&masked(0x82, 100), 100, false)
            .unwrap()
            .is_some());
    }

    #[test]
    fn protocol_violations_in_the_header() {
        use ProtocolError::*;
        let cases: &[(&[u8], ProtocolError)] = &[
            (&[0xC1, 0x80], CompressionNotNegotiated),
            (&[0xA1, 0x80], ReservedBits),
            (&[0x91, 0x80], ReservedBits),
            (&[0x83, 0x80], ReservedOpcode(3)),
            (&[0x8B, 0x80], ReservedOpcode(0xB)),
            (&[0x81, 0x00], UnmaskedFrame),
            (&[0x09, 0x80], FragmentedControlFrame),
            (&[0x89, 0xFE, 0x00, 0x7E], ControlFrameTooLong(126)),
        ];
        for (bytes, cause) in cases {
            assert_eq!(
                parse_header(bytes, 1 << 20, false),
                Err(Error::Protocol(*cause))
            );
        }
        assert_eq!(
            parse_header(&[0xC9, 0x80], 1 << 20, true),
            Err(Error::Protocol(CompressedControlFrame))
        );
        let mut huge = vec![0x82, 0xFF];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert_eq!(
            parse_header(&huge, usize::MAX, false),
            Err(Error::Protocol(InvalidLength))
        );
    }

    #[test]
    fn unmasking_while_copying_matches_unmasking_in_place() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..9_000u32).map(|i| (i * 7 + 3) as u8).collect();
        let mut whole = data.clone();
        apply_mask(&mut whole, mask, 0);
        // Every split point near the block edges and every mask offset.
        for split in [0, 1, 3, 4_095, 4_096, 4_097, 8_192, 8_999, 9_000] {
            let mut out = BytesMut::from(&b"ahead"[..]);
            extend_unmasked(&mut out, &data[..split], mask, 0);
            extend_unmasked(&mut out, &data[split..], mask, split);
            assert_eq!(&out[..5], b"ahead");
            assert_eq!(&out[5..], &whole[..], "split at {split}");
        }
    }

    #[test]
    fn unmasking_in_pieces_matches_unmasking_at_once() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let original: Vec<u8> = (0..=255u8).cycle().take(1000).collect();
        let mut whole = original.clone();
        apply_mask(&mut whole, mask, 0);
        for split in [1, 2, 3, 4, 5, 6, 999] {
            let mut pieces = original.clone();
            let (a, b) = pieces.split_at_mut(split);
            apply_mask(a, mask, 0);
            apply_mask(b, mask, split);
            assert_eq!(pieces, whole, "{split}");
        }
        for (i, byte) in whole.iter().enumerate() {
            assert_eq!(*byte, original[i] ^ mask[i % 4]);
        }
    }

    #[test]
    fn encoding_uses_the_shortest_length_form() {
        for (len, header) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let mut out = BytesMut::new();
            encode(&mut out, OpCode::Binary, false, &vec![0; len]);
            assert_eq!(out.len(), header + len);
            assert_eq!(header_len(len), header);
            assert_eq!(out[0], 0x82);
        }
        let mut out = BytesMut::new();
        encode_close(&mut out, 1000, "bye");
        assert_eq!(&out[..], &[0x88, 5, 0x03, 0xE8, b'b', b'y', b'e']);
    }
}
