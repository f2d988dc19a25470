//! The inbound assembler: request-payload bytes in, whole events out.
//!
//! This module owns the way from bytes to a message: frame header with its
//! limits checked before any payload is buffered (S8) → unmasking →
//! inflation (permessage-deflate, bounded) → fragment assembly with UTF-8
//! validated as it streams in (S2) → one [`Event`]. It knows no actor,
//! listener or socket: the connection feeds it bytes and pulls events one
//! at a time, so it can stop pulling when it cannot take more (S15).
//!
//! It also keeps the S19 accounts of what it holds: each data frame's
//! payload is taken from the server-wide budget when its header arrives,
//! the assembly and inflate buffers as their capacity grows, and a
//! delivered message's bytes are given back when the connection says the
//! listener is done with it ([`Inbound::release_delivered`]). With a rate
//! limit, a whole message waits for its token here, and the connection
//! asks [`Inbound::paced_until`] when to come back.

use std::time::Instant;

use bytes::{Buf, Bytes, BytesMut};
use bytestring::ByteString;

use crate::{
    budget::{Hold, Refused},
    close::CloseCode,
    config::Config,
    deflate::{Agreed, InflateError, Inflater},
    error::{Error, ProtocolError},
    frame::{self, Header, OpCode},
    message::Message,
    rate::Pace,
    utf8::Utf8Validator,
};

/// Most a frame header alone makes the assembler allocate for its payload.
const EAGER_RESERVE: usize = 256 * 1024;

/// Payloads gathered in the assembler's buffer (those that came in more
/// than one chunk) up to this long are copied out of it into their own
/// allocation; longer ones are split off it and share its memory. A split
/// costs two atomic operations on the buffer's shared count (one at the
/// split, one when the message drops), which on small messages cost more
/// than an allocation and a short copy; and a buffer never split stays
/// unshared, so the next frame reuses its memory without asking.
const COPY_MAX: usize = 1024;

/// What reading a frame header came to.
enum Head {
    /// More bytes are needed.
    Incomplete,
    /// The frame is a whole message, read at once.
    Message(Event),
    /// The frame's payload is read next.
    Started,
}

/// What a complete frame or message means to the connection.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Event {
    /// A whole message: fragments assembled, inflated, text validated.
    Message(Message),
    Ping(Bytes),
    Pong(Bytes),
    /// The peer's close frame, validated; `NO_STATUS` when it had no code.
    Close(CloseCode, String),
}

/// The inbound limits, taken from [`Config`].
#[derive(Clone, Copy, Debug)]
pub(crate) struct Limits {
    pub(crate) max_frame: usize,
    pub(crate) max_text: usize,
    pub(crate) max_binary: usize,
    /// Messages per second and burst, when paced.
    pub(crate) rate: Option<(u32, u32)>,
}

impl Limits {
    pub(crate) fn of(config: &Config) -> Limits {
        Limits {
            max_frame: config.max_frame_size,
            max_text: config.max_text_message_size,
            max_binary: config.max_binary_message_size,
            rate: config
                .max_messages_per_second
                .map(|rate| (rate, config.message_burst)),
        }
    }

    fn max(&self, text: bool) -> usize {
        if text {
            self.max_text
        } else {
            self.max_binary
        }
    }

    fn too_large(&self, text: bool, size: u64) -> Error {
        let max = self.max(text);
        if text {
            Error::TextTooLarge { size, max }
        } else {
            Error::BinaryTooLarge { size, max }
        }
    }
}

/// Where the reader is within the current frame.
enum Reading {
    /// Waiting for (the rest of) a frame header.
    Header,
    /// Reading the payload of this frame.
    Payload(InFrame),
}

/// The frame being read: its header and how much of its payload is unmasked.
struct InFrame {
    header: Header,
    unmasked: usize,
    /// The payload went through the streaming UTF-8 validator.
    streamed: bool,
}

/// The message being assembled from fragments.
enum Assembly {
    /// No fragmented message is open.
    Idle,
    /// Uncompressed fragments, appended as they come.
    Plain { text: bool, buf: Vec<u8> },
    /// Compressed fragments, inflated into `out` as they come.
    Inflating { text: bool, out: Vec<u8> },
}

impl Assembly {
    fn len(&self) -> usize {
        match self {
            Assembly::Idle => 0,
            Assembly::Plain { buf, .. } => buf.len(),
            Assembly::Inflating { out, .. } => out.len(),
        }
    }

    /// Whether continuation payloads are text to validate as they stream.
    fn streams_text(&self) -> bool {
        matches!(self, Assembly::Plain { text: true, .. })
    }
}

/// Longest frame header: 2 bytes, 8 of extended length, 4 of mask key.
const MAX_HEADER: usize = 14;

/// Turns the bytes of one connection into [`Event`]s.
///
/// Bytes come in as the HTTP reader's chunks and stay in them until they
/// are needed: a header is parsed where it lies, and a payload that is
/// whole in the chunk is unmasked straight into its own allocation, one
/// pass over its bytes. Only what straddles two chunks (a header cut short,
/// a payload still arriving) is gathered in `buf`, and a payload is
/// unmasked as it is gathered there.
pub(crate) struct Inbound {
    /// Bytes gathered from earlier chunks; logically before `incoming`.
    buf: BytesMut,
    /// The rest of the last chunk fed, not yet read.
    incoming: Bytes,
    /// `incoming` was copied out of the chunk ([`Inbound::keep_unread`]).
    incoming_owned: bool,
    reading: Reading,
    assembly: Assembly,
    utf8: Utf8Validator,
    limits: Limits,
    /// permessage-deflate parameters, when negotiated, and the decompressor
    /// (created on the first compressed message, boxed: most connections
    /// never need it and every byte here is paid by every idle connection).
    deflate: Option<Agreed>,
    inflater: Option<Box<Inflater>>,
    /// This connection's share of the inbound budget (S19): `frame_held`
    /// for the frame being read, `assembly_held` for the assembly's
    /// capacity, `delivered` for messages still with the listener.
    hold: Hold,
    frame_held: usize,
    assembly_held: usize,
    delivered: usize,
    /// The rate limit, and a whole message waiting for its token.
    pace: Option<Box<Paced>>,
}

/// A rate-limited connection's bucket and the message that waits for it.
struct Paced {
    bucket: Pace,
    waiting: Option<(Event, Instant)>,
}

impl Inbound {
    pub(crate) fn new(limits: Limits, deflate: Option<Agreed>, hold: Hold) -> Inbound {
        let pace = limits.rate.map(|(per_second, burst)| {
            Box::new(Paced {
                bucket: Pace::new(per_second, burst, Instant::now()),
                waiting: None,
            })
        });
        Inbound {
            buf: BytesMut::new(),
            incoming: Bytes::new(),
            incoming_owned: false,
            reading: Reading::Header,
            assembly: Assembly::Idle,
            utf8: Utf8Validator::default(),
            limits,
            deflate,
            inflater: None,
            hold,
            frame_held: 0,
            assembly_held: 0,
            delivered: 0,
            pace,
        }
    }

    /// The listener is done with the messages handed out so far (it
    /// returned, or its async handler completed): their bytes go back to
    /// the budget.
    pub(crate) fn release_delivered(&mut self) {
        self.hold.shrink_later(std::mem::take(&mut self.delivered));
    }

    /// Gives the budget back what [`Inbound::release_delivered`] released:
    /// once per turn of the reader rather than once per message (S19).
    pub(crate) fn settle_budget(&mut self) {
        self.hold.settle();
    }

    /// When a whole message waits for its rate token: the moment it is due
    /// (read nothing until then, S15).
    pub(crate) fn paced_until(&self) -> Option<Instant> {
        self.pace
            .as_ref()
            .and_then(|pace| pace.waiting.as_ref())
            .map(|(_, due)| *due)
    }

    /// Bytes this connection holds in the budget.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.hold.held()
    }

    /// Takes a chunk read from the peer. It is read in place by
    /// [`Inbound::next_event`]; the connection feeds the next chunk only
    /// once that has said it needs more bytes.
    pub(crate) fn feed(&mut self, chunk: Bytes) {
        if !self.incoming.is_empty() {
            // Not read yet (a paced message was waiting): keep the order.
            self.buf.extend_from_slice(&self.incoming);
        }
        self.incoming = chunk;
        self.incoming_owned = false;
    }

    /// Copies what is left unread of the last chunk into memory of its own,
    /// once: the chunk may be a view of a read buffer that other
    /// connections share ([`WsServer`](crate::WsServer)), which must not
    /// stay pinned by a connection that stops reading in the middle of it.
    pub(crate) fn keep_unread(&mut self) {
        if !self.incoming.is_empty() && !self.incoming_owned {
            self.incoming = Bytes::copy_from_slice(&self.incoming);
            self.incoming_owned = true;
        }
    }

    /// Takes a copy of `chunk`, as [`Inbound::feed`].
    #[cfg(test)]
    fn feed_slice(&mut self, chunk: &[u8]) {
        self.feed(Bytes::copy_from_slice(chunk));
    }

    /// Bytes held: read and not yet made into events, and the message being
    /// assembled.
    pub(crate) fn buffered(&self) -> usize {
        self.buf.len() + self.incoming.len() + self.assembly.len()
    }

    /// Frees everything held: the connection is over.
    pub(crate) fn clear(&mut self) {
        self.buf = BytesMut::new();
        self.incoming = Bytes::new();
        self.reading = Reading::Header;
        self.assembly = Assembly::Idle;
        self.inflater = None;
        self.pace = None;
        self.hold.clear();
        (self.frame_held, self.assembly_held, self.delivered) = (0, 0, 0);
    }

    /// The next event the fed bytes make, `Ok(None)` when more bytes are
    /// needed (or, when [`Inbound::paced_until`] says so, when the next
    /// message is not due yet), or the error that must fail the connection.
    pub(crate) fn next_event(&mut self) -> Result<Option<Event>, Error> {
        if let Some(pace) = &mut self.pace {
            if let Some((event, _)) = pace.waiting.take() {
                match pace.bucket.take(Instant::now()) {
                    Ok(()) => return Ok(Some(event)),
                    Err(due) => {
                        pace.waiting = Some((event, due));
                        return Ok(None);
                    }
                }
            }
        }
        let event = self.next_unpaced()?;
        match (event, &mut self.pace) {
            (Some(event @ Event::Message(_)), Some(pace)) => {
                match pace.bucket.take(Instant::now()) {
                    Ok(()) => Ok(Some(event)),
                    Err(due) => {
                        pace.waiting = Some((event, due));
                        Ok(None)
                    }
                }
            }
            (event, _) => Ok(event),
        }
    }

    fn next_unpaced(&mut self) -> Result<Option<Event>, Error> {
        loop {
            if let Reading::Header = self.reading {
                match self.read_header()? {
                    Head::Incomplete => return Ok(None),
                    Head::Message(event) => return Ok(Some(event)),
                    Head::Started => {}
                }
            }
            let Some(payload) = self.payload()? else {
                return Ok(None);
            };
            let Reading::Payload(frame) = std::mem::replace(&mut self.reading, Reading::Header)
            else {
                return Ok(None);
            };
            if let Some(event) = self.on_frame(frame, payload)? {
                return Ok(Some(event));
            }
        }
    }

    /// Parses a frame header if all of it is here (then nothing is left in
    /// `incoming` when it is not). A whole unfragmented, uncompressed
    /// message that lies in the chunk is read at once, the usual case.
    fn read_header(&mut self) -> Result<Head, Error> {
        let rsv1_allowed = self.deflate.is_some();
        let max_frame = self.limits.max_frame;
        if self.buf.is_empty() {
            // The usual case: the header is in the chunk.
            let Some((header, header_len)) =
                frame::parse_header(&self.incoming, max_frame, rsv1_allowed)?
            else {
                self.buf.extend_from_slice(&self.incoming);
                self.incoming = Bytes::new();
                return Ok(Head::Incomplete);
            };
            consume(&mut self.incoming, header_len);
            if let Some(text) = self.whole_in_chunk(&header) {
                return self.whole_message(&header, text).map(Head::Message);
            }
            self.start_frame(header)?;
            return Ok(Head::Started);
        }
        // A header cut short by the end of the last chunk: gather what it
        // may still need (bytes past it are payload, unmasked in `buf`).
        let more = MAX_HEADER
            .saturating_sub(self.buf.len())
            .min(self.incoming.len());
        self.buf.extend_from_slice(&self.incoming[..more]);
        consume(&mut self.incoming, more);
        let Some((header, header_len)) = frame::parse_header(&self.buf, max_frame, rsv1_allowed)?
        else {
            return Ok(Head::Incomplete);
        };
        self.buf.advance(header_len);
        self.start_frame(header)?;
        Ok(Head::Started)
    }

    /// Whether the frame whose header was just read from the chunk is a
    /// whole message the chunk holds, that nothing else must see first
    /// (`Some(text)`): a final text or binary frame, uncompressed, within
    /// its limit, with no fragmented message open.
    fn whole_in_chunk(&self, header: &Header) -> Option<bool> {
        let text = match header.opcode {
            OpCode::Text => true,
            OpCode::Binary => false,
            _ => return None,
        };
        (header.fin
            && !header.rsv1
            && self.incoming.len() >= header.len
            && header.len <= self.limits.max(text)
            && matches!(self.assembly, Assembly::Idle))
        .then_some(text)
    }

    /// The message of a frame [`Inbound::whole_in_chunk`] accepted: taken
    /// from the budget (S19), unmasked into its own memory, text validated
    /// (S2), held until the listener is done with it. What the general
    /// path does over several steps, in one.
    fn whole_message(&mut self, header: &Header, text: bool) -> Result<Event, Error> {
        let len = header.len;
        self.hold.grow(len).map_err(budget_error)?;
        self.delivered += len;
        let payload = take_unmasked(&mut self.incoming, len, header.mask);
        self.message(text, payload.freeze(), false)
    }

    /// A frame whose header was just read: its checks, its budget, and the
    /// state that reads its payload.
    fn start_frame(&mut self, header: Header) -> Result<(), Error> {
        self.check_header(&header)?;
        if matches!(
            header.opcode,
            OpCode::Text | OpCode::Binary | OpCode::Continuation
        ) {
            // S19 at S8's place: the payload is taken from the budget
            // before any of it is buffered.
            self.hold.grow(header.len).map_err(budget_error)?;
            self.frame_held = header.len;
        }
        self.reading = Reading::Payload(InFrame {
            header,
            unmasked: 0,
            streamed: false,
        });
        Ok(())
    }

    /// The whole payload of the frame being read, unmasked, or `None`
    /// while more of it must arrive (then nothing is left in `incoming`).
    fn payload(&mut self) -> Result<Option<Bytes>, Error> {
        let Reading::Payload(frame) = &mut self.reading else {
            return Ok(None);
        };
        let len = frame.header.len;
        if self.buf.is_empty() && self.incoming.len() >= len {
            // All of it is in the chunk: unmasked into its own memory.
            let payload = take_unmasked(&mut self.incoming, len, frame.header.mask);
            let streams_text = self.assembly.streams_text();
            check_arrived(frame, &mut self.utf8, streams_text, 0, &payload)?;
            return Ok(Some(payload.freeze()));
        }
        if !self.gather()? {
            return Ok(None);
        }
        Ok(Some(take_payload(&mut self.buf, len)))
    }

    /// Message-level rules that a header alone decides (S2, S8).
    fn check_header(&mut self, header: &Header) -> Result<(), Error> {
        match header.opcode {
            OpCode::Text | OpCode::Binary => {
                if !matches!(self.assembly, Assembly::Idle) {
                    return Err(ProtocolError::UnfinishedMessage.into());
                }
                let text = header.opcode == OpCode::Text;
                if header.len > self.limits.max(text) {
                    return Err(self.limits.too_large(text, header.len as u64));
                }
                if text {
                    self.utf8 = Utf8Validator::default();
                }
            }
            OpCode::Continuation if header.rsv1 => {
                return Err(ProtocolError::CompressedContinuation.into());
            }
            OpCode::Continuation => {
                let text = match &self.assembly {
                    Assembly::Idle => return Err(ProtocolError::UnexpectedContinuation.into()),
                    Assembly::Plain { text, .. } | Assembly::Inflating { text, .. } => *text,
                };
                let size = self.assembly.len() as u64 + header.len as u64;
                if size > self.limits.max(text) as u64 {
                    return Err(self.limits.too_large(text, size));
                }
            }
            OpCode::Close | OpCode::Ping | OpCode::Pong => {}
        }
        Ok(())
    }

    /// Gathers the payload in `buf`, unmasked, validating text that
    /// arrives in pieces as it comes; `true` once the whole payload is there.
    fn gather(&mut self) -> Result<bool, Error> {
        let Reading::Payload(frame) = &mut self.reading else {
            return Ok(false);
        };
        let len = frame.header.len;
        let start = frame.unmasked;
        // Bytes that came with a header cut short are unmasked in place.
        let in_buf = self.buf.len().min(len);
        if in_buf > start {
            frame::apply_mask(&mut self.buf[start..in_buf], frame.header.mask, start);
            frame.unmasked = in_buf;
        }
        // The chunk's share is unmasked as it is copied. Room for the whole
        // payload first, rather than doubling (and copying) as it streams
        // in; capped so that a declared size alone cannot make us allocate
        // much.
        if frame.unmasked == self.buf.len() && !self.incoming.is_empty() {
            let take = self.incoming.len().min(len - frame.unmasked);
            self.buf
                .reserve((len - frame.unmasked).min(EAGER_RESERVE.max(take)));
            let mask = frame.header.mask;
            frame::extend_unmasked(&mut self.buf, &self.incoming[..take], mask, frame.unmasked);
            consume(&mut self.incoming, take);
            frame.unmasked += take;
        }
        let available = self.buf.len().min(len);
        let streams_text = self.assembly.streams_text();
        let arrived = &self.buf[start..available];
        check_arrived(frame, &mut self.utf8, streams_text, start, arrived)?;
        Ok(available == len)
    }

    /// A whole frame: an event, or `None` while a message is unfinished.
    fn on_frame(&mut self, frame: InFrame, payload: Bytes) -> Result<Option<Event>, Error> {
        let header = frame.header;
        let text = header.opcode == OpCode::Text;
        let assembly = match header.opcode {
            OpCode::Ping => return Ok(Some(Event::Ping(payload))),
            OpCode::Pong => return Ok(Some(Event::Pong(payload))),
            OpCode::Close => {
                let (code, reason) = parse_close(&payload)?;
                return Ok(Some(Event::Close(code, reason.to_owned())));
            }
            OpCode::Text | OpCode::Binary if header.rsv1 => Assembly::Inflating {
                text,
                out: Vec::new(),
            },
            OpCode::Text | OpCode::Binary if header.fin => {
                // The frame's payload is the message: its bytes stay held
                // until the listener is done with it.
                self.delivered += std::mem::take(&mut self.frame_held);
                return self.message(text, payload, frame.streamed).map(Some);
            }
            OpCode::Text | OpCode::Binary => Assembly::Plain {
                text,
                buf: Vec::new(),
            },
            OpCode::Continuation => std::mem::replace(&mut self.assembly, Assembly::Idle),
        };
        match assembly {
            Assembly::Idle => Ok(None),
            Assembly::Plain { text, mut buf } => {
                self.grow_assembly(&mut buf, payload.len(), text)?;
                buf.extend_from_slice(&payload);
                // The frame's bytes now live in the assembly.
                drop(payload);
                self.hold.shrink(std::mem::take(&mut self.frame_held));
                if header.fin {
                    self.delivered += std::mem::take(&mut self.assembly_held);
                    return self.message(text, Bytes::from(buf), true).map(Some);
                }
                self.assembly = Assembly::Plain { text, buf };
                Ok(None)
            }
            Assembly::Inflating { text, mut out } => {
                self.inflate(text, &mut out, &payload, header.fin)?;
                drop(payload);
                self.hold.shrink(std::mem::take(&mut self.frame_held));
                if header.fin {
                    self.delivered += std::mem::take(&mut self.assembly_held);
                    return self.message(text, Bytes::from(out), true).map(Some);
                }
                self.assembly = Assembly::Inflating { text, out };
                Ok(None)
            }
        }
    }

    /// Makes room in a plain assembly for `more` bytes: its capacity at
    /// least doubles (never past the message limit), and each growth is
    /// taken from the budget before it is allocated.
    fn grow_assembly(&mut self, buf: &mut Vec<u8>, more: usize, text: bool) -> Result<(), Error> {
        let needed = buf.len() + more;
        if needed <= buf.capacity() {
            return Ok(());
        }
        let target = needed.max((buf.capacity() * 2).min(self.limits.max(text)));
        let growth = target - buf.capacity();
        self.hold.grow(growth).map_err(budget_error)?;
        self.assembly_held += growth;
        buf.reserve_exact(target - buf.len());
        Ok(())
    }

    /// Inflates one frame of a compressed message into `out`, checking the
    /// decompressed size against the limit as it grows and validating text
    /// as it comes out.
    fn inflate(
        &mut self,
        text: bool,
        out: &mut Vec<u8>,
        payload: &[u8],
        fin: bool,
    ) -> Result<(), Error> {
        let Some(agreed) = &self.deflate else {
            return Err(ProtocolError::CompressionNotNegotiated.into());
        };
        let inflater = self
            .inflater
            .get_or_insert_with(|| Box::new(Inflater::new(agreed)));
        let max = self.limits.max(text);
        let before = out.len();
        let (hold, held) = (&mut self.hold, &mut self.assembly_held);
        let mut refused = None;
        let mut grow = |bytes: usize| match hold.grow(bytes) {
            Ok(()) => {
                *held += bytes;
                true
            }
            Err(refusal) => {
                refused = Some(refusal);
                false
            }
        };
        let mut result = inflater.inflate_within(payload, out, max, &mut grow);
        if result.is_ok() && fin {
            result = inflater.finish_message(out, max, &mut grow);
        }
        match result {
            Err(InflateError::Budget) => {
                Err(refused.map_or(Error::BudgetExhausted { asked: 0, left: 0 }, budget_error))
            }
            Err(InflateError::TooBig) => Err(self.limits.too_large(text, out.len() as u64)),
            Err(InflateError::Corrupt) => Err(Error::InvalidCompressedData),
            Ok(()) if text && self.utf8.feed(&out[before..]).is_err() => Err(Error::InvalidUtf8),
            Ok(()) => Ok(()),
        }
    }

    /// A whole message; text that `streamed` through the validator must
    /// also end on a character boundary.
    fn message(&mut self, text: bool, payload: Bytes, streamed: bool) -> Result<Event, Error> {
        if !text {
            return Ok(Event::Message(Message::Binary(payload)));
        }
        if streamed && self.utf8.finish().is_err() {
            return Err(Error::InvalidUtf8);
        }
        match ByteString::try_from(payload) {
            Ok(text) => Ok(Event::Message(Message::Text(text))),
            Err(_) => Err(Error::InvalidUtf8),
        }
    }
}

/// Runs the checks due as payload bytes arrive: `arrived` are the bytes
/// just unmasked, from position `start` of the frame's payload. Text that
/// comes in pieces is validated as it comes (`streams_text`: the open
/// message is plain text, for a continuation frame).
fn check_arrived(
    frame: &mut InFrame,
    utf8: &mut Utf8Validator,
    streams_text: bool,
    start: usize,
    arrived: &[u8],
) -> Result<(), Error> {
    if arrived.is_empty() {
        return Ok(());
    }
    // Compressed payloads are validated after inflation.
    let is_text = match frame.header.opcode {
        OpCode::Text => !frame.header.rsv1,
        OpCode::Continuation => streams_text,
        _ => false,
    };
    // A whole single-frame text message is validated once, at the end;
    // anything arriving in pieces is validated as it comes.
    let whole = frame.header.opcode == OpCode::Text
        && frame.header.fin
        && start == 0
        && arrived.len() == frame.header.len;
    if is_text && !whole {
        frame.streamed = true;
        if utf8.feed(arrived).is_err() {
            return Err(Error::InvalidUtf8);
        }
    }
    Ok(())
}

/// Drops `n` read bytes off a chunk, and the chunk itself once it is read:
/// an empty view would still hold the HTTP reader's buffer, which then
/// could not reuse its memory for the next read.
fn consume(incoming: &mut Bytes, n: usize) {
    if n == incoming.len() {
        *incoming = Bytes::new();
    } else {
        incoming.advance(n);
    }
}

/// The first `len` bytes of the chunk, unmasked into memory of their own
/// in one pass, and taken off it.
fn take_unmasked(incoming: &mut Bytes, len: usize, mask: [u8; 4]) -> BytesMut {
    let mut payload = BytesMut::with_capacity(len);
    frame::extend_unmasked(&mut payload, &incoming[..len], mask, 0);
    consume(incoming, len);
    payload
}

fn budget_error(refused: Refused) -> Error {
    Error::BudgetExhausted {
        asked: refused.asked as u64,
        left: refused.left as u64,
    }
}

/// The first `len` bytes of `buf`, taken off it: copied when short,
/// split off (sharing the buffer's memory) when long ([`COPY_MAX`]).
fn take_payload(buf: &mut BytesMut, len: usize) -> Bytes {
    if len > COPY_MAX {
        return buf.split_to(len).freeze();
    }
    let payload = Bytes::copy_from_slice(&buf[..len]);
    buf.advance(len);
    payload
}

/// Parses and validates a close frame's payload (S4).
fn parse_close(payload: &[u8]) -> Result<(CloseCode, &str), Error> {
    match payload.len() {
        0 => Ok((CloseCode::NO_STATUS, "")),
        1 => Err(ProtocolError::CloseFrameTooShort.into()),
        _ => {
            let code = CloseCode(u16::from_be_bytes([payload[0], payload[1]]));
            if !code.is_sendable() {
                return Err(ProtocolError::InvalidCloseCode(code.as_u16()).into());
            }
            let reason = std::str::from_utf8(&payload[2..])
                .map_err(|_| ProtocolError::InvalidCloseReason)?;
            Ok((code, reason))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{budget::InboundBudget, deflate, Compression};

    /// An inbound with a budget of its own, large enough not to matter.
    fn new_inbound(limits: Limits, deflate: Option<Agreed>) -> Inbound {
        Inbound::new(limits, deflate, Hold::new(InboundBudget::new(1 << 40)))
    }

    const MASK: [u8; 4] = [0x37, 0xFA, 0x21, 0x3D];

    /// A masked client frame.
    fn frame(b0: u8, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![b0];
        match payload.len() {
            len @ 0..=125 => out.push(0x80 | len as u8),
            len @ 126..=0xFFFF => {
                out.push(0x80 | 126);
                out.extend_from_slice(&(len as u16).to_be_bytes());
            }
            len => {
                out.push(0x80 | 127);
                out.extend_from_slice(&(len as u64).to_be_bytes());
            }
        }
        out.extend_from_slice(&MASK);
        let mut masked = payload.to_vec();
        frame::apply_mask(&mut masked, MASK, 0);
        out.extend_from_slice(&masked);
        out
    }

    fn limits(max: usize) -> Limits {
        Limits {
            max_frame: max,
            max_text: max,
            max_binary: max,
            rate: None,
        }
    }

    fn inbound() -> Inbound {
        new_inbound(limits(1 << 20), None)
    }

    /// Feeds `bytes` one at a time and collects every event.
    fn events_byte_by_byte(inbound: &mut Inbound, bytes: &[u8]) -> Result<Vec<Event>, Error> {
        let mut events = Vec::new();
        for byte in bytes {
            inbound.feed_slice(&[*byte]);
            while let Some(event) = inbound.next_event()? {
                events.push(event);
            }
        }
        Ok(events)
    }

    fn text(s: &str) -> Event {
        Event::Message(Message::from(s))
    }

    #[test]
    fn what_a_turn_left_unread_is_copied_out_once_and_read_as_before() {
        let mut bytes = frame(0x81, b"first");
        bytes.extend(frame(0x82, &[9u8; 300]));
        bytes.extend(frame(0x81, b"third"));
        let chunk = Bytes::from(bytes);
        let range = chunk.as_ptr() as usize..chunk.as_ptr() as usize + chunk.len();
        let mut inbound = inbound();
        inbound.feed(chunk.clone());
        assert_eq!(inbound.next_event().unwrap(), Some(text("first")));

        inbound.keep_unread();
        let copy = inbound.incoming.as_ptr();
        assert!(
            !range.contains(&(copy as usize)),
            "the unread rest has memory of its own"
        );
        assert_eq!(
            inbound.buffered(),
            chunk.len() - frame(0x81, b"first").len()
        );
        assert_eq!(
            inbound.next_event().unwrap(),
            Some(Event::Message(Message::Binary(Bytes::from(vec![9u8; 300]))))
        );
        // Copied once: a later turn that stops short again keeps this copy.
        inbound.keep_unread();
        assert!(std::ptr::eq(
            inbound.incoming.as_ptr(),
            copy.wrapping_add(frame(0x82, &[9u8; 300]).len())
        ));
        assert_eq!(inbound.next_event().unwrap(), Some(text("third")));
        assert_eq!(inbound.next_event().unwrap(), None);
        inbound.keep_unread();
        assert_eq!(inbound.buffered(), 0);
    }

    #[test]
    fn short_payloads_are_copied_out_and_long_ones_split_off() {
        let mut buf = BytesMut::from(&[1u8; 3 * COPY_MAX][..]);
        buf[COPY_MAX] = 2;
        let start = buf.as_ptr() as usize;
        let short = take_payload(&mut buf, COPY_MAX);
        assert_eq!(&short[..], &[1u8; COPY_MAX][..]);
        let at = short.as_ptr() as usize;
        assert!(
            at < start || at >= start + 3 * COPY_MAX,
            "a short payload has its own memory"
        );
        assert_eq!(buf.len(), 2 * COPY_MAX);
        let rest = buf.as_ptr();
        let long = take_payload(&mut buf, COPY_MAX + 1);
        assert_eq!(long.as_ptr(), rest, "a long payload shares the buffer's");
        assert_eq!((long[0], long.len()), (2, COPY_MAX + 1));
        assert_eq!(buf.len(), COPY_MAX - 1);
    }

    /// Every event (or the error) that `bytes` make when fed in one chunk.
    fn events_at_once(inbound: &mut Inbound, bytes: &[u8]) -> Result<Vec<Event>, Error> {
        inbound.feed_slice(bytes);
        let mut events = Vec::new();
        while let Some(event) = inbound.next_event()? {
            events.push(event);
        }
        Ok(events)
    }

    #[test]
    fn a_whole_message_read_at_once_follows_the_rules_of_one_read_in_pieces() {
        let concat = |frames: &[Vec<u8>]| frames.concat();
        let cases: Vec<(&str, Vec<u8>)> = vec![
            (
                "text and binary",
                concat(&[frame(0x81, b"hi"), frame(0x82, &[1; 200])]),
            ),
            ("invalid text", frame(0x81, &[b'a', 0xFF])),
            ("text cut in a character", frame(0x81, &[0xC3])),
            ("binary over the limit", frame(0x82, &[0; 101])),
            ("text over the limit", frame(0x81, &[b'a'; 101])),
            (
                "a new message inside a fragmented one",
                concat(&[frame(0x01, b"a"), frame(0x81, b"b")]),
            ),
            (
                "control frames between whole messages",
                concat(&[frame(0x81, b"a"), frame(0x89, b"p"), frame(0x82, b"b")]),
            ),
            ("compression not negotiated", frame(0xC1, b"x")),
        ];
        for (case, bytes) in cases {
            let at_once = events_at_once(&mut new_inbound(limits(100), None), &bytes);
            let in_pieces = events_byte_by_byte(&mut new_inbound(limits(100), None), &bytes);
            assert_eq!(at_once, in_pieces, "{case}");
        }
        // The budget refuses a whole message at its header, as any frame.
        let budget = InboundBudget::new(1000);
        let mut inbound = Inbound::new(limits(1 << 20), None, Hold::new(budget.clone()));
        assert_eq!(
            events_at_once(&mut inbound, &frame(0x82, &[0; 1001])),
            Err(Error::BudgetExhausted {
                asked: 1001,
                left: 1000
            })
        );
    }

    #[test]
    fn s2_fragments_are_assembled_around_interleaved_control_frames() {
        let mut bytes = frame(0x01, b"Hel");
        bytes.extend(frame(0x89, b"ping"));
        bytes.extend(frame(0x00, b"lo, "));
        bytes.extend(frame(0x80, "wörld".as_bytes()));
        bytes.extend(frame(0x82, &[1, 2, 3]));
        bytes.extend(frame(0x88, &[0x03, 0xE8, b'o', b'k']));
        let events = events_byte_by_byte(&mut inbound(), &bytes).unwrap();
        assert_eq!(
            events,
            [
                Event::Ping(Bytes::from_static(b"ping")),
                text("Hello, wörld"),
                Event::Message(Message::from(vec![1u8, 2, 3])),
                Event::Close(CloseCode::NORMAL, "ok".to_owned()),
            ]
        );
    }

    #[test]
    fn s2_invalid_utf8_fails_at_the_first_bad_byte_not_at_the_end() {
        let mut inbound = inbound();
        // The first fragment is already invalid; the message never ends.
        inbound.feed_slice(&frame(0x01, &[b'a', 0xFF]));
        assert_eq!(inbound.next_event(), Err(Error::InvalidUtf8));
        // A character split across fragments is fine; one cut short is not.
        let mut bytes = frame(0x01, &[0xC3]);
        bytes.extend(frame(0x80, &[0xA9]));
        assert_eq!(
            events_byte_by_byte(&mut new_inbound(limits(100), None), &bytes),
            Ok(vec![text("é")])
        );
        let mut bytes = frame(0x01, b"ok");
        bytes.extend(frame(0x80, &[0xC3]));
        assert_eq!(
            events_byte_by_byte(&mut new_inbound(limits(100), None), &bytes),
            Err(Error::InvalidUtf8)
        );
    }

    #[test]
    fn payloads_unmasked_as_they_are_fed_in_chunks_make_the_same_events() {
        let long_text = "dé€😀".repeat(1_500);
        let long_binary: Vec<u8> = (0..20_000u32).map(|i| (i % 251) as u8).collect();
        let mut bytes = frame(0x81, long_text.as_bytes());
        bytes.extend(frame(0x89, b"ping"));
        bytes.extend(frame(0x02, &long_binary[..7_000]));
        bytes.extend(frame(0x80, &long_binary[7_000..]));
        bytes.extend(frame(0x81, b"short"));
        let want = vec![
            text(&long_text),
            Event::Ping(Bytes::from_static(b"ping")),
            Event::Message(Message::from(long_binary.clone())),
            text("short"),
        ];
        for size in [1, 7, 500, 4_096, 65_536] {
            let mut inbound = inbound();
            let mut events = Vec::new();
            for chunk in bytes.chunks(size) {
                inbound.feed_slice(chunk);
                while let Some(event) = inbound.next_event().unwrap() {
                    events.push(event);
                }
            }
            assert_eq!(events, want, "chunks of {size}");
        }
        // Text unmasked as it is fed is still validated as it comes: the
        // bad byte fails the chunk it arrives in, not the end of the frame.
        let mut bad = long_text.clone().into_bytes();
        bad[3_000] = 0xFF;
        let bytes = frame(0x81, &bad);
        let mut inbound = inbound();
        inbound.feed_slice(&bytes[..2_000]);
        assert_eq!(inbound.next_event(), Ok(None));
        inbound.feed_slice(&bytes[2_000..4_000]);
        assert_eq!(inbound.next_event(), Err(Error::InvalidUtf8));
    }

    #[test]
    fn s8_limits_fail_at_the_header_with_the_sizes() {
        let mut inbound = new_inbound(
            Limits {
                max_frame: 100,
                max_text: 5,
                max_binary: 8,
                rate: None,
            },
            None,
        );
        // Only the header of a 6-byte text frame: refused before its payload.
        inbound.feed_slice(&frame(0x81, b"123456")[..6]);
        assert_eq!(
            inbound.next_event(),
            Err(Error::TextTooLarge { size: 6, max: 5 })
        );
        let mut inbound = new_inbound(limits(8), None);
        let mut bytes = frame(0x02, &[0; 5]);
        bytes.extend(frame(0x80, &[0; 4]));
        assert_eq!(
            events_byte_by_byte(&mut inbound, &bytes),
            Err(Error::BinaryTooLarge { size: 9, max: 8 })
        );
        let mut inbound = new_inbound(limits(8), None);
        inbound.feed_slice(&frame(0x82, &[0; 9])[..4]);
        assert_eq!(
            inbound.next_event(),
            Err(Error::FrameTooLarge { size: 9, max: 8 })
        );
    }

    #[test]
    fn s7_fragmentation_errors_name_their_cause() {
        let cases = [
            (frame(0x80, b"x"), ProtocolError::UnexpectedContinuation),
            (
                [frame(0x01, b"a"), frame(0x81, b"b")].concat(),
                ProtocolError::UnfinishedMessage,
            ),
            (frame(0x88, &[3]), ProtocolError::CloseFrameTooShort),
            (
                frame(0x88, &[0x03, 0xED]),
                ProtocolError::InvalidCloseCode(1005),
            ),
            (
                frame(0x88, &[0x03, 0xE8, 0xFF]),
                ProtocolError::InvalidCloseReason,
            ),
        ];
        for (bytes, cause) in cases {
            assert_eq!(
                events_byte_by_byte(&mut inbound(), &bytes),
                Err(Error::Protocol(cause))
            );
        }
    }

    #[test]
    fn a_close_without_payload_has_no_status() {
        let mut inbound = inbound();
        inbound.feed_slice(&frame(0x88, &[]));
        assert_eq!(
            inbound.next_event(),
            Ok(Some(Event::Close(CloseCode::NO_STATUS, String::new())))
        );
    }

    #[test]
    fn compressed_messages_are_inflated_within_the_limit() {
        let agreed = deflate::negotiate(
            std::iter::once("permessage-deflate"),
            &Compression::default().min_size(0),
        );
        let Some(agreed) = agreed else {
            panic!("permessage-deflate was not agreed");
        };
        let original = "compress me, ".repeat(50);
        let mut compressed = Vec::new();
        assert!(deflate::Deflater::new(&agreed).compress(original.as_bytes(), &mut compressed));
        // Split over two frames, RSV1 on the first only.
        let (a, b) = compressed.split_at(compressed.len() / 2);
        let bytes = [frame(0x41, a), frame(0x80, b)].concat();
        let mut inbound = new_inbound(limits(1 << 20), Some(agreed.clone()));
        assert_eq!(
            events_byte_by_byte(&mut inbound, &bytes),
            Ok(vec![text(&original)])
        );
        let mut small = new_inbound(limits(100), Some(agreed));
        let whole = frame(0xC1, &compressed);
        match events_byte_by_byte(&mut small, &whole) {
            Err(Error::TextTooLarge { size, max: 100 }) => assert!(size > 100, "{size}"),
            other => panic!("expected TextTooLarge, got {other:?}"),
        }
    }

    #[test]
    fn s19_unfinished_messages_hold_budget_until_the_listener_is_done() {
        let budget = InboundBudget::new(1 << 20);
        let mut inbound = Inbound::new(limits(1 << 20), None, Hold::new(budget.clone()));
        // Only the header of a 1000-byte fragment: its payload is taken now.
        inbound.feed_slice(&frame(0x02, &[7; 1000])[..8]);
        assert_eq!(inbound.next_event(), Ok(None));
        assert_eq!(budget.in_use(), 1000);
        inbound.feed_slice(&frame(0x02, &[7; 1000])[8..]);
        assert_eq!(inbound.next_event(), Ok(None));
        // The frame moved into the assembly (capacity counted).
        assert_eq!(budget.in_use(), inbound.held());
        inbound.feed_slice(&frame(0x80, &[8; 500]));
        assert!(matches!(inbound.next_event(), Ok(Some(Event::Message(_)))));
        // Handed out, still with the listener: still held.
        assert!(budget.in_use() >= 1500, "{}", budget.in_use());
        inbound.release_delivered();
        inbound.settle_budget();
        assert_eq!(budget.in_use(), 0);
        // A whole single-frame message holds exactly its payload.
        inbound.feed_slice(&frame(0x82, &[1; 300]));
        assert!(matches!(inbound.next_event(), Ok(Some(Event::Message(_)))));
        assert_eq!(budget.in_use(), 300);
        inbound.release_delivered();
        inbound.settle_budget();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn s19_a_frame_past_the_budget_is_refused_at_its_header_with_the_sizes() {
        let budget = InboundBudget::new(800 << 10);
        let mut first = Inbound::new(limits(1 << 20), None, Hold::new(budget.clone()));
        first.feed_slice(&frame(0x02, &[0; 600 << 10])[..14]);
        assert_eq!(first.next_event(), Ok(None));
        let mut second = Inbound::new(limits(1 << 20), None, Hold::new(budget.clone()));
        second.feed_slice(&frame(0x02, &[0; 200 << 10])[..14]);
        // Large holders may use 7/8 of 800 KiB = 700 KiB; 100 KiB are left.
        assert_eq!(
            second.next_event(),
            Err(Error::BudgetExhausted {
                asked: 200 << 10,
                left: 100 << 10
            })
        );
        assert_eq!(
            Error::BudgetExhausted { asked: 5, left: 1 }.close_code(),
            CloseCode::TRY_AGAIN_LATER
        );
        // A small message still fits in the part kept for small ones.
        second.clear();
        let mut small = Inbound::new(limits(1 << 20), None, Hold::new(budget.clone()));
        small.feed_slice(&frame(0x81, b"hi"));
        assert_eq!(small.next_event(), Ok(Some(text("hi"))));
        // The connection that ended gave everything back.
        first.clear();
        small.release_delivered();
        small.settle_budget();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn s19_a_compression_bomb_counts_its_inflated_bytes_against_the_budget() {
        let Some(agreed) = deflate::negotiate(
            std::iter::once("permessage-deflate"),
            &Compression::default().min_size(0),
        ) else {
            panic!("permessage-deflate was not agreed");
        };
        let mut compressed = Vec::new();
        assert!(deflate::Deflater::new(&agreed).compress(&vec![0u8; 8 << 20], &mut compressed));
        let budget = InboundBudget::new(1 << 20);
        // The message limit (64 MiB) would allow it; the budget does not.
        let mut inbound = Inbound::new(limits(64 << 20), Some(agreed), Hold::new(budget.clone()));
        inbound.feed_slice(&frame(0xC2, &compressed));
        match inbound.next_event() {
            Err(Error::BudgetExhausted { asked, left }) => {
                assert!(asked > left, "{asked} {left}")
            }
            other => panic!("expected BudgetExhausted, got {other:?}"),
        }
        assert!(budget.in_use() <= 1 << 20, "{}", budget.in_use());
        inbound.clear();
        assert_eq!(budget.in_use(), 0);
    }

    #[test]
    fn s19_over_the_rate_a_whole_message_waits_for_its_token_in_order() {
        let mut inbound = new_inbound(
            Limits {
                rate: Some((1, 2)),
                ..limits(1 << 20)
            },
            None,
        );
        for word in ["a", "b", "c"] {
            inbound.feed_slice(&frame(0x81, word.as_bytes()));
        }
        inbound.feed_slice(&frame(0x89, b"p"));
        assert_eq!(inbound.next_event(), Ok(Some(text("a"))));
        assert_eq!(inbound.next_event(), Ok(Some(text("b"))));
        // The burst is spent: "c" waits, and nothing behind it is read.
        assert_eq!(inbound.next_event(), Ok(None));
        let due = inbound.paced_until();
        assert!(due.is_some_and(|due| due > Instant::now()));
        assert_eq!(inbound.next_event(), Ok(None));
        assert_eq!(inbound.paced_until(), due);
    }
}
