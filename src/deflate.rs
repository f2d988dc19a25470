//! permessage-deflate (RFC 7692): negotiation, and the compressor and
//! decompressor of one connection.
//!
//! This module owns the `Sec-WebSocket-Extensions` grammar, the choice of
//! parameters, and the zlib streams (raw deflate, `flate2` with the pure-Rust
//! `zlib-rs` backend). Inflation is bounded: it stops as soon as a message's
//! decompressed size passes the limit, so a compression bomb cannot make it
//! hold more than the limit plus one output chunk. It does not know frames:
//! the inbound assembler and the outbound buffer decide which payloads go
//! through it.

use flate2::{Compress, Decompress, FlushCompress, FlushDecompress, Status};

/// Server-side permessage-deflate policy, set with
/// [`Config::compression`](crate::Config::compression).
///
/// The server accepts the first acceptable `permessage-deflate` offer of the
/// client and answers with the parameters it agreed to. Each connection
/// that negotiates it carries a compressor and a decompressor, created on
/// first use. With context takeover they keep their sliding windows between
/// messages, which costs about 256 KiB for the compressor and 40 KiB for the
/// decompressor at 15 window bits, for the rest of the connection. Without
/// it (`server_no_context_takeover` for the compressor,
/// `client_no_context_takeover` for the decompressor) each one is freed at
/// the end of every message, so an idle connection holds about as little
/// as an uncompressed one; the price is a lower compression ratio on small
/// messages, which cannot refer back to earlier ones. BENCHMARKS.md has the
/// measured memory and CPU of each setting.
///
/// ```
/// use actix_ws_listener::{Compression, Config};
///
/// let config = Config::default().compression(
///     Compression::default().level(6).min_size(256).server_no_context_takeover(true),
/// );
/// assert!(config.compression.is_some());
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Compression {
    /// zlib compression level, 0–9. Default 1: most of the size win for a
    /// fraction of the CPU of level 6 on chat-like text.
    pub level: u32,
    /// Messages shorter than this go out uncompressed. Default 128 bytes:
    /// below that deflate rarely wins and always costs CPU.
    pub min_size: usize,
    /// Start the server's compressor afresh for each message, and tell the
    /// client so; the compressor's memory is then freed between messages.
    /// Default `false` (better ratio on small, similar messages).
    pub server_no_context_takeover: bool,
    /// Ask the client to reset its compressor after each message; the
    /// server's decompressor is then freed between messages. Default `false`.
    pub client_no_context_takeover: bool,
    /// Largest LZ77 window the server compresses with, 9–15. Default 15.
    /// A client offer that demands less is honoured when it is 9 or more;
    /// offers that demand 8 are declined (zlib cannot produce raw deflate
    /// with a 256-byte window).
    pub server_max_window_bits: u8,
}

impl Default for Compression {
    fn default() -> Self {
        Compression {
            level: 1,
            min_size: 128,
            server_no_context_takeover: false,
            client_no_context_takeover: false,
            server_max_window_bits: 15,
        }
    }
}

impl Compression {
    /// Sets [`Compression::level`] (clamped to 0–9).
    #[must_use]
    pub fn level(mut self, level: u32) -> Self {
        self.level = level.min(9);
        self
    }

    /// Sets [`Compression::min_size`].
    #[must_use]
    pub fn min_size(mut self, bytes: usize) -> Self {
        self.min_size = bytes;
        self
    }

    /// Sets [`Compression::server_no_context_takeover`].
    #[must_use]
    pub fn server_no_context_takeover(mut self, enabled: bool) -> Self {
        self.server_no_context_takeover = enabled;
        self
    }

    /// Sets [`Compression::client_no_context_takeover`].
    #[must_use]
    pub fn client_no_context_takeover(mut self, enabled: bool) -> Self {
        self.client_no_context_takeover = enabled;
        self
    }

    /// Sets [`Compression::server_max_window_bits`] (clamped to 9–15).
    #[must_use]
    pub fn server_max_window_bits(mut self, bits: u8) -> Self {
        self.server_max_window_bits = bits.clamp(9, 15);
        self
    }
}

/// The parameters agreed for one connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Agreed {
    pub(crate) level: u32,
    pub(crate) min_size: usize,
    pub(crate) server_no_context_takeover: bool,
    pub(crate) client_no_context_takeover: bool,
    pub(crate) server_window_bits: u8,
    /// Whether the response must carry server_max_window_bits.
    announce_window: bool,
}

impl Agreed {
    /// The `Sec-WebSocket-Extensions` response value.
    pub(crate) fn response(&self) -> String {
        let mut value = String::from("permessage-deflate");
        if self.server_no_context_takeover {
            value.push_str("; server_no_context_takeover");
        }
        if self.client_no_context_takeover {
            value.push_str("; client_no_context_takeover");
        }
        if self.announce_window {
            value.push_str(&format!(
                "; server_max_window_bits={}",
                self.server_window_bits
            ));
        }
        value
    }
}

/// One `name[=value]` extension parameter.
type Param<'a> = (&'a str, Option<&'a str>);

/// Splits a `Sec-WebSocket-Extensions` value into extensions and their
/// parameters; `None` when it is malformed.
fn parse_extensions(value: &str) -> Option<Vec<(&str, Vec<Param<'_>>)>> {
    let is_token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
    };
    let mut extensions = Vec::new();
    for element in value.split(',') {
        let mut parts = element.split(';').map(str::trim);
        let name = parts.next().filter(|name| is_token(name))?;
        let mut params = Vec::new();
        for param in parts {
            let (key, value) = match param.split_once('=') {
                Some((key, value)) => {
                    let value = value.trim();
                    let value = value
                        .strip_prefix('"')
                        .and_then(|v| v.strip_suffix('"'))
                        .unwrap_or(value);
                    if !is_token(value) {
                        return None;
                    }
                    (key.trim(), Some(value))
                }
                None => (param, None),
            };
            if !is_token(key) {
                return None;
            }
            params.push((key, value));
        }
        extensions.push((name, params));
    }
    Some(extensions)
}

fn window_bits(value: &str) -> Option<u8> {
    // RFC 7692 §7.1.2: 1*DIGIT without leading zeros, 8 to 15.
    if value.starts_with('0') {
        return None;
    }
    value.parse().ok().filter(|bits| (8..=15).contains(bits))
}

/// Picks the first acceptable permessage-deflate offer among the
/// `Sec-WebSocket-Extensions` header values, per RFC 7692 §5–7.
///
/// A malformed header means no extension (the upgrade still succeeds).
pub(crate) fn negotiate<'a>(
    headers: impl Iterator<Item = &'a str>,
    policy: &Compression,
) -> Option<Agreed> {
    for header in headers {
        let extensions = parse_extensions(header)?;
        for (name, params) in extensions {
            if !name.eq_ignore_ascii_case("permessage-deflate") {
                continue;
            }
            if let Some(agreed) = accept_offer(&params, policy) {
                return Some(agreed);
            }
        }
    }
    None
}

fn accept_offer(params: &[Param<'_>], policy: &Compression) -> Option<Agreed> {
    let mut seen = Vec::new();
    let mut agreed = Agreed {
        level: policy.level,
        min_size: policy.min_size,
        server_no_context_takeover: policy.server_no_context_takeover,
        client_no_context_takeover: policy.client_no_context_takeover,
        server_window_bits: policy.server_max_window_bits.clamp(9, 15),
        announce_window: false,
    };
    for (key, value) in params {
        let key = key.to_ascii_lowercase();
        if seen.contains(&key) {
            return None; // RFC 7692 §7: duplicate parameters make the offer invalid.
        }
        match (key.as_str(), value) {
            ("server_no_context_takeover", None) => agreed.server_no_context_takeover = true,
            ("client_no_context_takeover", None) => {
                // The client will reset anyway; mirroring it lets us reset too.
                agreed.client_no_context_takeover = true;
            }
            ("server_max_window_bits", Some(value)) => {
                let bits = window_bits(value)?;
                if bits < 9 {
                    return None; // zlib cannot honour 8: decline rather than lie.
                }
                agreed.server_window_bits = agreed.server_window_bits.min(bits);
                agreed.announce_window = true;
            }
            // We always inflate with a 32 KiB window, so whatever the client
            // uses is fine and the response leaves the parameter out.
            ("client_max_window_bits", None) => {}
            ("client_max_window_bits", Some(value)) => {
                window_bits(value)?;
            }
            _ => return None,
        }
        seen.push(key);
    }
    Some(agreed)
}

/// Compressed forms of one broadcast message, shared by every member's
/// connection. Without context takeover, compressing the same message with
/// the same level and window gives the same bytes, so the first member to
/// need them compresses and the others reuse the result.
#[derive(Default)]
pub(crate) struct CompressCache {
    entries: std::sync::Mutex<Vec<((u32, u8), bytes::Bytes)>>,
}

impl CompressCache {
    /// The compressed payload for `agreed`'s level and window, computed by
    /// `compress` the first time.
    pub(crate) fn get_or_compress(
        &self,
        agreed: &Agreed,
        compress: impl FnOnce() -> Option<bytes::Bytes>,
    ) -> Option<bytes::Bytes> {
        let key = (agreed.level, agreed.server_window_bits);
        let mut entries = self.entries.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, bytes)) = entries.iter().find(|(k, _)| *k == key) {
            return Some(bytes.clone());
        }
        let bytes = compress()?;
        entries.push((key, bytes.clone()));
        Some(bytes)
    }
}

/// The trailer a sync flush ends with, which RFC 7692 strips from messages.
const TRAILER: [u8; 4] = [0x00, 0x00, 0xFF, 0xFF];

/// The server's compressor.
///
/// The zlib stream is created on first use. Without context takeover it is
/// dropped after each message rather than reset, so a connection that is
/// not sending holds none of its memory (about 256 KiB at 15 window bits);
/// creating it again costs about as much as the reset it replaces.
pub(crate) struct Deflater {
    stream: Option<Compress>,
    level: u32,
    window_bits: u8,
    keep_context: bool,
}

impl Deflater {
    pub(crate) fn new(agreed: &Agreed) -> Deflater {
        Deflater {
            stream: None,
            level: agreed.level,
            window_bits: agreed.server_window_bits,
            keep_context: !agreed.server_no_context_takeover,
        }
    }

    /// Whether a zlib stream is allocated right now.
    #[cfg(test)]
    fn holds_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Compresses one whole message into `out` (cleared first), without the
    /// sync-flush trailer. `false` if zlib failed (then send it uncompressed).
    pub(crate) fn compress(&mut self, input: &[u8], out: &mut Vec<u8>) -> bool {
        let (level, window_bits) = (self.level, self.window_bits);
        let stream = self.stream.get_or_insert_with(|| {
            Compress::new_with_window_bits(flate2::Compression::new(level), false, window_bits)
        });
        let done = compress_message(stream, input, out);
        if !done || !self.keep_context {
            // After a failure the context is unknown: start afresh.
            self.stream = None;
        }
        done
    }
}

/// Compresses `input` as one message with sync flush and strips the
/// trailer; `false` if zlib failed.
fn compress_message(stream: &mut Compress, input: &[u8], out: &mut Vec<u8>) -> bool {
    out.clear();
    out.reserve(input.len() / 2 + 64);
    let start = stream.total_in();
    loop {
        let consumed = (stream.total_in() - start) as usize;
        if stream
            .compress_vec(&input[consumed..], out, FlushCompress::Sync)
            .is_err()
        {
            return false;
        }
        let consumed = (stream.total_in() - start) as usize;
        // Done once all input is in and zlib had room left to flush.
        if consumed == input.len() && out.len() < out.capacity() {
            break;
        }
        out.reserve(out.capacity().max(64));
    }
    if out.ends_with(&TRAILER) {
        out.truncate(out.len() - TRAILER.len());
    }
    if out.is_empty() {
        out.push(0x00);
    }
    true
}

/// Why inflating failed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum InflateError {
    /// The output would pass the limit.
    TooBig,
    /// The output needed more memory than its `grow` callback allowed (the
    /// server-wide inbound budget, S19).
    Budget,
    /// Not a valid deflate stream.
    Corrupt,
}

/// Output is produced in steps of this size, so the limit is overshot by
/// at most this much before inflation stops.
const INFLATE_STEP: usize = 32 * 1024;

/// The server's decompressor for client messages.
///
/// Like [`Deflater`], its zlib stream exists only while it is needed: from
/// the first compressed frame of a message to the end of that message when
/// the client has no context takeover, for the connection's life otherwise.
pub(crate) struct Inflater {
    stream: Option<Decompress>,
    keep_context: bool,
}

impl Inflater {
    pub(crate) fn new(agreed: &Agreed) -> Inflater {
        Inflater {
            stream: None,
            keep_context: !agreed.client_no_context_takeover,
        }
    }

    /// Whether a zlib stream is allocated right now.
    #[cfg(test)]
    fn holds_stream(&self) -> bool {
        self.stream.is_some()
    }

    /// Inflates one frame's compressed payload, appending to `out`, and
    /// fails as soon as `out` would hold more than `limit` bytes.
    #[cfg(test)]
    pub(crate) fn inflate(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
    ) -> Result<(), InflateError> {
        self.inflate_within(input, out, limit, &mut |_| true)
    }

    /// [`Inflater::inflate`], asking `grow` before each growth of `out`'s
    /// capacity (by the number of bytes it is about to grow); a `false`
    /// stops with [`InflateError::Budget`] before allocating.
    pub(crate) fn inflate_within(
        &mut self,
        input: &[u8],
        out: &mut Vec<u8>,
        limit: usize,
        grow: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), InflateError> {
        let stream = self
            .stream
            .get_or_insert_with(|| Decompress::new_with_window_bits(false, 15));
        let start = stream.total_in();
        loop {
            if out.capacity() == out.len() {
                // Grow geometrically, but never past the limit (plus one
                // byte, to see that it was passed).
                let cap = limit.saturating_add(1);
                let target = (out.capacity() * 2)
                    .max(out.len() + INFLATE_STEP)
                    .min(cap)
                    .max(out.len() + 1);
                if !grow(target - out.capacity()) {
                    return Err(InflateError::Budget);
                }
                out.reserve_exact(target - out.len());
            }
            let consumed = (stream.total_in() - start) as usize;
            let status = stream
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|_| InflateError::Corrupt)?;
            if out.len() > limit {
                return Err(InflateError::TooBig);
            }
            let consumed = (stream.total_in() - start) as usize;
            match status {
                Status::StreamEnd => {
                    // The client ended the deflate stream (BFINAL): nothing
                    // may follow in this message; start afresh for the next.
                    if consumed != input.len() {
                        return Err(InflateError::Corrupt);
                    }
                    self.stream = None;
                    return Ok(());
                }
                Status::Ok | Status::BufError => {
                    if consumed == input.len() && out.len() < out.capacity() {
                        return Ok(());
                    }
                    if status == Status::BufError && out.len() < out.capacity() {
                        // No progress with room to spare: the input is stuck.
                        return Err(InflateError::Corrupt);
                    }
                }
            }
        }
    }

    /// Ends a message: feeds the stripped trailer back in.
    pub(crate) fn finish_message(
        &mut self,
        out: &mut Vec<u8>,
        limit: usize,
        grow: &mut dyn FnMut(usize) -> bool,
    ) -> Result<(), InflateError> {
        let result = self.inflate_within(&TRAILER, out, limit, grow);
        if !self.keep_context {
            self.stream = None;
        }
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offer(value: &str) -> Option<Agreed> {
        negotiate(std::iter::once(value), &Compression::default())
    }

    #[test]
    fn negotiation_accepts_the_first_acceptable_offer() {
        assert_eq!(
            offer("permessage-deflate").unwrap().response(),
            "permessage-deflate"
        );
        assert_eq!(
            offer("permessage-deflate; client_max_window_bits")
                .unwrap()
                .response(),
            "permessage-deflate"
        );
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=10; server_no_context_takeover")
                .unwrap()
                .response(),
            "permessage-deflate; server_no_context_takeover; server_max_window_bits=10"
        );
        // The first offer demands a window zlib cannot do: the second is taken.
        assert_eq!(
            offer("permessage-deflate; server_max_window_bits=8, permessage-deflate")
                .unwrap()
                .response(),
            "permessage-deflate"
        );
        assert_eq!(
            offer("x-webkit-deflate-frame, permessage-deflate; client_no_context_takeover")
                .unwrap()
                .response(),
            "permessage-deflate; client_no_context_takeover"
        );
    }

    #[test]
    fn invalid_offers_are_declined_and_malformed_headers_ignored() {
        for bad in [
            "permessage-deflate; server_max_window_bits",
            "permessage-deflate; server_max_window_bits=16",
            "permessage-deflate; server_max_window_bits=010",
            "permessage-deflate; client_max_window_bits=7",
            "permessage-deflate; server_no_context_takeover=1",
            "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
            "permessage-deflate; unknown",
            "permessage-deflate; ;",
            ",",
            "permessage-deflate; a=\"b",
            "x-other",
        ] {
            assert_eq!(offer(bad), None, "{bad}");
        }
    }

    #[test]
    fn round_trip_with_and_without_context_takeover() {
        for takeover in [false, true] {
            let agreed = accept_offer(
                &[],
                &Compression::default()
                    .server_no_context_takeover(!takeover)
                    .client_no_context_takeover(!takeover),
            )
            .unwrap();
            let mut deflater = Deflater::new(&agreed);
            let mut inflater = Inflater::new(&agreed);
            for message in [&b""[..], b"hello hello hello hello", &[7u8; 100_000]] {
                let mut compressed = Vec::new();
                assert!(deflater.compress(message, &mut compressed));
                let mut out = Vec::new();
                inflater.inflate(&compressed, &mut out, 1 << 20).unwrap();
                inflater
                    .finish_message(&mut out, 1 << 20, &mut |_| true)
                    .unwrap();
                assert_eq!(out, message);
                // Without context takeover nothing is kept between messages.
                assert_eq!(deflater.holds_stream(), takeover);
                assert_eq!(inflater.holds_stream(), takeover);
            }
        }
    }

    #[test]
    fn a_compression_bomb_stops_at_the_limit() {
        let agreed = accept_offer(&[], &Compression::default()).unwrap();
        let mut deflater = Deflater::new(&agreed);
        let mut compressed = Vec::new();
        assert!(deflater.compress(&vec![0u8; 50 << 20], &mut compressed));
        // A bomb: ~100 times smaller than what it expands to.
        assert!(compressed.len() < (50 << 20) / 90, "{}", compressed.len());
        let mut inflater = Inflater::new(&agreed);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&compressed, &mut out, 1 << 20),
            Err(InflateError::TooBig)
        );
        assert!(out.capacity() <= (1 << 20) + 1, "{}", out.capacity());
    }

    #[test]
    fn a_broadcast_is_compressed_once_per_level_and_window() {
        let cache = CompressCache::default();
        let agreed = accept_offer(&[], &Compression::default()).unwrap();
        let mut calls = 0;
        for _ in 0..100 {
            let bytes = cache.get_or_compress(&agreed, || {
                calls += 1;
                Some(bytes::Bytes::from_static(b"x"))
            });
            assert_eq!(bytes.as_deref(), Some(&b"x"[..]));
        }
        assert_eq!(calls, 1);
        let other = accept_offer(
            &[("server_max_window_bits", Some("10"))],
            &Compression::default(),
        )
        .unwrap();
        cache.get_or_compress(&other, || {
            calls += 1;
            Some(bytes::Bytes::new())
        });
        assert_eq!(calls, 2);
    }

    #[test]
    fn corrupt_data_is_an_error() {
        let agreed = accept_offer(&[], &Compression::default()).unwrap();
        let mut inflater = Inflater::new(&agreed);
        let mut out = Vec::new();
        assert_eq!(
            inflater.inflate(&[0xFF, 0xFF, 0xFF, 0xFF], &mut out, 1 << 20),
            Err(InflateError::Corrupt)
        );
    }
}
