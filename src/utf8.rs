//! Streaming UTF-8 validation that fails at the first invalid sequence.
//!
//! This module owns [`Utf8Validator`]: text payloads are fed to it as they
//! arrive, fragment by fragment and chunk by chunk, so invalid text is
//! refused before the rest of the message is read (S2). It keeps at most
//! three bytes of an incomplete character between calls.

/// Incremental UTF-8 validator.
#[derive(Debug, Default)]
pub(crate) struct Utf8Validator {
    pending: [u8; 4],
    pending_len: usize,
}

/// Invalid UTF-8 was seen.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct InvalidUtf8;

fn char_width(first: u8) -> usize {
    match first {
        0xC2..=0xDF => 2,
        0xE0..=0xEF => 3,
        0xF0..=0xF4 => 4,
        _ => 0,
    }
}

impl Utf8Validator {
    /// Validates the next piece of text.
    pub(crate) fn feed(&mut self, mut input: &[u8]) -> Result<(), InvalidUtf8> {
        if self.pending_len > 0 {
            let width = char_width(self.pending[0]);
            let take = (width - self.pending_len).min(input.len());
            self.pending[self.pending_len..self.pending_len + take].copy_from_slice(&input[..take]);
            self.pending_len += take;
            input = &input[take..];
            match std::str::from_utf8(&self.pending[..self.pending_len]) {
                Ok(_) => self.pending_len = 0,
                Err(err) if err.error_len().is_some() => return Err(InvalidUtf8),
                // Still a valid prefix: input is exhausted.
                Err(_) => return Ok(()),
            }
        }
        match std::str::from_utf8(input) {
            Ok(_) => Ok(()),
            Err(err) if err.error_len().is_some() => Err(InvalidUtf8),
            Err(err) => {
                let tail = &input[err.valid_up_to()..];
                self.pending[..tail.len()].copy_from_slice(tail);
                self.pending_len = tail.len();
                Ok(())
            }
        }
    }

    /// Ends the message: an incomplete trailing character is invalid.
    pub(crate) fn finish(&mut self) -> Result<(), InvalidUtf8> {
        let complete = self.pending_len == 0;
        self.pending_len = 0;
        if complete {
            Ok(())
        } else {
            Err(InvalidUtf8)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_in_pieces(bytes: &[u8], piece: usize) -> Result<(), InvalidUtf8> {
        let mut validator = Utf8Validator::default();
        for chunk in bytes.chunks(piece) {
            validator.feed(chunk)?;
        }
        validator.finish()
    }

    #[test]
    fn valid_text_passes_whatever_the_split() {
        let text = "κόσμε ascii 𝄞 €".as_bytes();
        for piece in 1..=text.len() {
            assert_eq!(feed_in_pieces(text, piece), Ok(()), "{piece}");
        }
    }

    #[test]
    fn invalid_sequences_fail_whatever_the_split() {
        let cases: &[&[u8]] = &[
            b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited",
            b"\xff",
            b"\xc0\xaf",
            b"\xf4\x90\x80\x80",
            b"\xed\xa0\x80",
            b"ok\xe2\x82",
        ];
        for bytes in cases {
            for piece in 1..=bytes.len() {
                assert_eq!(
                    feed_in_pieces(bytes, piece),
                    Err(InvalidUtf8),
                    "{bytes:?} {piece}"
                );
            }
        }
    }

    #[test]
    fn fails_fast_before_the_message_ends() {
        let mut validator = Utf8Validator::default();
        assert_eq!(validator.feed(b"hello \xf4"), Ok(()));
        assert_eq!(validator.feed(b"\x90"), Err(InvalidUtf8));
    }
}
