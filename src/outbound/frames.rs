//! The encoded frames of one connection, in the order they go out: whole
//! chunks ready for the HTTP writer, then the buffer small frames are
//! encoded into.
//!
//! A large payload is not copied into the buffer: its frame header ends
//! the buffer's current chunk and the payload itself follows as a chunk of
//! its own, shared with the message. actix-http copies every body chunk
//! into its write buffer anyway, so copying it here first is pure cost (it
//! was most of what a 64 KiB echo spent above actix-http's own raw echo),
//! and the members of a broadcast then share one payload instead of each
//! holding a copy. Small frames are still copied: one chunk per read's
//! worth of them is cheaper for the writer than one per frame.
//!
//! This module knows bytes only: no counts, completions or wake-ups.

use std::collections::VecDeque;

use bytes::{Buf, Bytes, BytesMut};

use crate::frame::{self, OpCode};

/// Payloads at least this long are queued as their own chunk, shared with
/// the message, instead of being copied into the frame buffer.
pub(crate) const SHARE_MIN: usize = 4 * 1024;

/// Encoded frames not yet taken by the writer.
#[derive(Default)]
pub(crate) struct Frames {
    /// Chunks that go out before `buf`, oldest first.
    ready: VecDeque<Bytes>,
    /// Bytes in `ready`.
    ready_len: usize,
    /// Frames encoded after the last chunk in `ready`.
    buf: BytesMut,
}

impl Frames {
    /// Bytes encoded and not taken.
    pub(crate) fn len(&self) -> usize {
        self.ready_len + self.buf.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Appends a frame; returns the bytes it added. A payload of
    /// [`SHARE_MIN`] bytes or more is shared, not copied.
    pub(crate) fn encode(&mut self, opcode: OpCode, rsv1: bool, payload: &Bytes) -> usize {
        if payload.len() < SHARE_MIN {
            return self.encode_copied(opcode, rsv1, payload);
        }
        frame::encode_header(&mut self.buf, opcode, rsv1, payload.len());
        // The header ends the buffer's chunk (with the frames before it).
        let head = self.buf.split().freeze();
        self.push_ready(head);
        self.push_ready(payload.clone());
        frame::header_len(payload.len()) + payload.len()
    }

    /// Appends a frame, copying its payload; returns the bytes it added.
    pub(crate) fn encode_copied(&mut self, opcode: OpCode, rsv1: bool, payload: &[u8]) -> usize {
        let before = self.buf.len();
        frame::encode(&mut self.buf, opcode, rsv1, payload);
        self.buf.len() - before
    }

    /// Appends a close frame; returns the bytes it added.
    pub(crate) fn encode_close(&mut self, code: u16, reason: &str) -> usize {
        let before = self.buf.len();
        frame::encode_close(&mut self.buf, code, reason);
        self.buf.len() - before
    }

    fn push_ready(&mut self, chunk: Bytes) {
        self.ready_len += chunk.len();
        self.ready.push_back(chunk);
    }

    /// The next chunk for the writer, oldest bytes first; `None` when
    /// nothing is encoded.
    pub(crate) fn take(&mut self) -> Option<Bytes> {
        if let Some(chunk) = self.ready.pop_front() {
            self.ready_len -= chunk.len();
            return Some(chunk);
        }
        if self.buf.is_empty() {
            return None;
        }
        Some(self.buf.split().freeze())
    }

    /// The frames that can be written straight from the buffer: all that
    /// is encoded, when no chunk of its own comes first.
    pub(crate) fn in_place(&self) -> Option<&[u8]> {
        (self.ready.is_empty() && !self.buf.is_empty()).then_some(&self.buf[..])
    }

    /// `n` bytes of [`Frames::in_place`] were written.
    pub(crate) fn advance(&mut self, n: usize) {
        self.buf.advance(n);
    }

    /// Drops everything encoded and frees the buffer.
    pub(crate) fn clear(&mut self) {
        *self = Frames::default();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(frames: &mut Frames) -> Vec<u8> {
        let mut out = Vec::new();
        while let Some(chunk) = frames.take() {
            out.extend_from_slice(&chunk);
        }
        assert!(frames.is_empty());
        out
    }

    fn expected(frames: &[(OpCode, &[u8])]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for (opcode, payload) in frames {
            frame::encode(&mut out, *opcode, false, payload);
        }
        out.to_vec()
    }

    #[test]
    fn shared_and_copied_frames_come_out_in_the_order_they_went_in() {
        let small = Bytes::from_static(b"small");
        let large = Bytes::from(vec![7u8; SHARE_MIN]);
        let larger = Bytes::from(vec![9u8; 70_000]);
        let mut frames = Frames::default();
        let mut added = 0;
        added += frames.encode(OpCode::Text, false, &small);
        added += frames.encode(OpCode::Binary, false, &large);
        added += frames.encode(OpCode::Binary, false, &larger);
        added += frames.encode_copied(OpCode::Ping, false, b"p");
        added += frames.encode_close(1000, "bye");
        assert_eq!(frames.len(), added);
        let mut close = BytesMut::new();
        frame::encode_close(&mut close, 1000, "bye");
        let mut want = expected(&[
            (OpCode::Text, &small),
            (OpCode::Binary, &large),
            (OpCode::Binary, &larger),
            (OpCode::Ping, b"p"),
        ]);
        want.extend_from_slice(&close);
        assert_eq!(drain(&mut frames), want);
    }

    #[test]
    fn a_large_payload_is_shared_not_copied() {
        let large = Bytes::from(vec![1u8; 64 * 1024]);
        let mut frames = Frames::default();
        frames.encode(OpCode::Binary, false, &large);
        let head = frames.take().expect("the header");
        assert_eq!(head.len(), frame::header_len(large.len()));
        let payload = frames.take().expect("the payload");
        assert_eq!(payload.as_ptr(), large.as_ptr(), "the same memory");
        assert_eq!(frames.take(), None);
    }

    #[test]
    fn clear_drops_everything() {
        let mut frames = Frames::default();
        frames.encode(OpCode::Binary, false, &Bytes::from(vec![0u8; SHARE_MIN]));
        frames.encode_copied(OpCode::Text, false, b"after");
        frames.clear();
        assert_eq!(frames.len(), 0);
        assert_eq!(frames.take(), None);
    }
}
