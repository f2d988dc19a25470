//! The client frame encoder of the test kit (feature `test-util`): one
//! [`Frame`] builder that writes masked client frames byte by byte,
//! including the ones no well-behaved client would send (fragments, RSV
//! bits, reserved opcodes, a lying length, no mask), so that tests and
//! benchmarks encode RFC 6455 §5.2 in one place.
//!
//! This module owns only the encoding; it sends nothing and knows no
//! server. [`TestClient`](crate::test::TestClient) writes its frames with
//! it, and a raw client can write [`Frame::encode`]'s bytes on any socket.

/// The opcodes of RFC 6455 §5.2, for [`Frame::new`].
pub mod opcode {
    /// A continuation of a fragmented message.
    pub const CONTINUATION: u8 = 0x0;
    /// A text frame.
    pub const TEXT: u8 = 0x1;
    /// A binary frame.
    pub const BINARY: u8 = 0x2;
    /// A close frame.
    pub const CLOSE: u8 = 0x8;
    /// A ping.
    pub const PING: u8 = 0x9;
    /// A pong.
    pub const PONG: u8 = 0xA;
}

/// The masking key [`Frame::new`] starts with (any key is valid; tests that
/// need varied keys set one with [`Frame::mask`]).
pub const DEFAULT_MASK: [u8; 4] = [0x37, 0xfa, 0x21, 0x3d];

/// A client frame to encode: any opcode, FIN, RSV bits, declared length and
/// mask. Starts as a final, masked frame with no RSV bit set.
///
/// ```
/// use actix_ws_listener::test::{opcode, Frame};
///
/// // "Hello" sent in two fragments, as RFC 6455 §5.7 shows it.
/// let first = Frame::new(opcode::TEXT, "Hel").fin(false).encode();
/// let last = Frame::new(opcode::CONTINUATION, "lo").encode();
/// assert_eq!(first[0], 0x01); // no FIN, text
/// assert_eq!(last[0], 0x80); // FIN, continuation
/// assert_eq!(first[1], 0x80 | 3); // masked, 3 bytes
///
/// // A 300-byte binary frame uses the 16-bit length.
/// let big = Frame::new(opcode::BINARY, vec![0; 300]).encode();
/// assert_eq!(&big[1..4], &[0x80 | 126, 0x01, 0x2c]);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    fin: bool,
    rsv: u8,
    opcode: u8,
    payload: Vec<u8>,
    declared_len: Option<u64>,
    mask: Option<[u8; 4]>,
}

impl Frame {
    /// A final, masked frame with `opcode` (only its low four bits are
    /// written, so any reserved opcode can be sent) and `payload`.
    pub fn new(opcode: u8, payload: impl Into<Vec<u8>>) -> Frame {
        Frame {
            fin: true,
            rsv: 0,
            opcode,
            payload: payload.into(),
            declared_len: None,
            mask: Some(DEFAULT_MASK),
        }
    }

    /// A close frame whose payload is `code` (big endian) then `reason`;
    /// neither is checked, so invalid codes and reasons can be sent.
    pub fn close(code: u16, reason: &str) -> Frame {
        let mut payload = code.to_be_bytes().to_vec();
        payload.extend_from_slice(reason.as_bytes());
        Frame::new(opcode::CLOSE, payload)
    }

    /// Sets the FIN bit (`false` for every fragment but the last).
    #[must_use]
    pub fn fin(mut self, fin: bool) -> Frame {
        self.fin = fin;
        self
    }

    /// Sets the three RSV bits, as `0b000`..=`0b111` (RSV1 is `0b100`).
    #[must_use]
    pub fn rsv(mut self, rsv: u8) -> Frame {
        self.rsv = rsv & 0b111;
        self
    }

    /// Declares `len` as the payload length instead of the real one.
    #[must_use]
    pub fn declared_len(mut self, len: u64) -> Frame {
        self.declared_len = Some(len);
        self
    }

    /// Masks the payload with `mask` (default [`DEFAULT_MASK`]).
    #[must_use]
    pub fn mask(mut self, mask: [u8; 4]) -> Frame {
        self.mask = Some(mask);
        self
    }

    /// Writes the frame unmasked (a protocol error from a client).
    #[must_use]
    pub fn unmasked(mut self) -> Frame {
        self.mask = None;
        self
    }

    /// The payload, unmasked.
    pub fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// The frame's bytes on the wire.
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(self.payload.len() + 14);
        self.encode_into(&mut out);
        out
    }

    /// Appends the frame's bytes on the wire to `out` (for writers that
    /// reuse one buffer).
    pub fn encode_into(&self, out: &mut Vec<u8>) {
        let head = Head {
            fin: self.fin,
            rsv: self.rsv,
            opcode: self.opcode,
            len: self
                .declared_len
                .unwrap_or_else(|| u64::try_from(self.payload.len()).unwrap_or(u64::MAX)),
            mask: self.mask,
        };
        encode(head, &self.payload, out);
    }
}

/// A frame header, as RFC 6455 §5.2 lays it out.
#[derive(Clone, Copy)]
pub(crate) struct Head {
    pub(crate) fin: bool,
    pub(crate) rsv: u8,
    pub(crate) opcode: u8,
    pub(crate) len: u64,
    pub(crate) mask: Option<[u8; 4]>,
}

/// Appends `head` and `payload` (masked with `head.mask`) to `out`: the one
/// place the test kit writes the 7-, 16- and 64-bit length forms.
pub(crate) fn encode(head: Head, payload: &[u8], out: &mut Vec<u8>) {
    out.push((u8::from(head.fin) << 7) | ((head.rsv & 0b111) << 4) | (head.opcode & 0x0F));
    let mask_bit = if head.mask.is_some() { 0x80 } else { 0 };
    match head.len {
        len @ 0..=125 => out.push(mask_bit | len as u8),
        len @ 126..=0xFFFF => {
            out.push(mask_bit | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        }
        len => {
            out.push(mask_bit | 127);
            out.extend_from_slice(&len.to_be_bytes());
        }
    }
    match head.mask {
        Some(mask) => {
            out.extend_from_slice(&mask);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
}

#[cfg(test)]
mod tests {
    use super::{opcode, Frame};

    fn unmask(frame: &[u8], offset: usize) -> Vec<u8> {
        let mask = &frame[offset..offset + 4];
        frame[offset + 4..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect()
    }

    #[test]
    fn each_length_form_is_used_at_its_boundary() {
        for (len, offset) in [(125, 2), (126, 4), (0xFFFF, 4), (0x1_0000, 10)] {
            let payload: Vec<u8> = (0..len).map(|i| i as u8).collect();
            let bytes = Frame::new(opcode::BINARY, payload.clone()).encode();
            assert_eq!(bytes.len(), offset + 4 + len, "length {len}");
            assert_eq!(unmask(&bytes, offset), payload, "length {len}");
        }
    }

    #[test]
    fn rsv_opcode_and_unmasked_are_written_as_asked() {
        let bytes = Frame::new(0xB, "x")
            .rsv(0b101)
            .fin(false)
            .unmasked()
            .encode();
        assert_eq!(bytes, vec![0x5B, 0x01, b'x']);
    }

    #[test]
    fn a_declared_length_replaces_the_real_one() {
        let bytes = Frame::new(opcode::TEXT, "abc")
            .declared_len(1 << 40)
            .encode();
        assert_eq!(bytes[1], 0x80 | 127);
        assert_eq!(&bytes[2..10], &(1u64 << 40).to_be_bytes());
    }

    #[test]
    fn close_carries_code_then_reason() {
        let frame = Frame::close(4000, "bye");
        assert_eq!(frame.payload(), &[0x0F, 0xA0, b'b', b'y', b'e']);
    }
}
