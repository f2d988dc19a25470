//! The history of a clustered group (S21) in the broker: a Redis stream per
//! group, written and read by two Lua scripts so that recording a broadcast,
//! numbering it and publishing it are one atomic step, and so that a
//! recovery read can tell a gap from an answer in one round trip.
//!
//! This module owns the keys, the scripts and the decoding of their
//! answers, and [`Cluster::group_with_history`]; the seam between replay and
//! live delivery is the group's (`group/recovery.rs`). The layout is
//! documented once, in the "Wire format" section of [`Cluster`]'s docs.

use std::{sync::Arc, time::Duration};

use futures::future::BoxFuture;
use redis::Value;

use super::{
    envelope,
    link::{Cluster, Inner},
};
use crate::{
    cluster_error::ClusterError,
    group::Group,
    history::{new_epoch, History, Offset, Read},
    message::Message,
};

/// Records one broadcast and publishes it with its offset.
///
/// KEYS: stream, meta. ARGV: channel, a fresh epoch (used only when the
/// group has none yet), length cap, max age in ms, envelope header, kind
/// (1 text, 2 binary), payload, the meta's expiry in ms. Returns the
/// position.
const RECORD: &str = r"
local epoch = redis.call('HGET', KEYS[2], 'epoch')
if not epoch then
  epoch = ARGV[2]
  redis.call('DEL', KEYS[1])
  redis.call('HSET', KEYS[2], 'epoch', epoch, 'seq', 0)
end
local seq = redis.call('HINCRBY', KEYS[2], 'seq', 1)
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[3], seq .. '-0', 't', ms, 'k', ARGV[6], 'p', ARGV[7])
redis.call('PEXPIRE', KEYS[1], ARGV[4])
redis.call('PEXPIRE', KEYS[2], ARGV[8])
local offset = epoch .. ':' .. seq
redis.call('PUBLISH', ARGV[1], ARGV[5] .. string.char(#offset) .. offset .. ARGV[7])
return seq
";

/// What came after an offset, or a gap.
///
/// KEYS: stream, meta. ARGV: the offset's epoch, its position, most
/// entries, max age in ms, the meta's expiry in ms (renewed when the meta
/// exists), most payload bytes (the page ends with the entry that reaches
/// them). Returns `{'gap'}`, or `{'ok', more, position, kind, payload,
/// ...}`.
const READ: &str = r"
local meta = redis.call('HMGET', KEYS[2], 'epoch', 'seq')
if not meta[1] then return {'gap'} end
redis.call('PEXPIRE', KEYS[2], ARGV[5])
if meta[1] ~= ARGV[1] then return {'gap'} end
local seq = tonumber(meta[2]) or 0
local since = tonumber(ARGV[2])
if since > seq then return {'gap'} end
if since == seq then return {'ok', 0} end
local entries = redis.call('XRANGE', KEYS[1], (since + 1) .. '-0', '+', 'COUNT', ARGV[3])
if #entries == 0 then return {'gap'} end
local now = redis.call('TIME')
local ms = tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000)
local first = entries[1]
if tonumber(string.match(first[1], '^%d+')) ~= since + 1 then return {'gap'} end
if ms - tonumber(first[2][2]) > tonumber(ARGV[4]) then return {'gap'} end
local out = {'ok', 0}
local last = since
local bytes = 0
local most = tonumber(ARGV[6])
for _, entry in ipairs(entries) do
  local position = string.match(entry[1], '^%d+')
  last = tonumber(position)
  table.insert(out, position)
  table.insert(out, entry[2][4])
  table.insert(out, entry[2][6])
  bytes = bytes + #entry[2][6]
  if bytes >= most then break end
end
if last < seq then out[2] = 1 end
return out
";

/// Most payload bytes one recovery read brings back (the page then ends
/// early, at the entry that reaches it): a replay holds at most one page,
/// so a history of large messages costs a recovering socket about this
/// much, not a page of 100 entries of up to `max_message_size`
/// each.
const PAGE_BYTES: usize = 1024 * 1024;

/// History reads of one node in flight at once. When many sockets recover
/// at once (clients coming back after a restart), the others wait their
/// turn, so at most this many pages are on their way from Redis at a time,
/// where Redis would otherwise queue the replies to all of them at once
/// (the history bench's herd sample: less time and less memory).
pub(super) const READS_AT_ONCE: usize = 8;

/// The stream of group channel `channel`.
pub(super) fn stream_key(channel: &str) -> String {
    format!("{channel}:history")
}

/// The hash holding the epoch and the last position of `channel`'s history.
pub(super) fn meta_key(channel: &str) -> String {
    format!("{channel}:history:meta")
}

fn millis(duration: Duration) -> u64 {
    u64::try_from(duration.as_millis())
        .unwrap_or(u64::MAX)
        .max(1)
}

/// The command that records `message` in `channel`'s history and publishes
/// it to every node.
pub(super) fn record(
    node: u128,
    channel: &str,
    history: &History,
    except: Option<u64>,
    message: &Message,
) -> redis::Cmd {
    let mut command = redis::cmd("EVAL");
    command
        .arg(RECORD)
        .arg(2)
        .arg(stream_key(channel))
        .arg(meta_key(channel))
        .arg(channel)
        .arg(&*new_epoch())
        .arg(history.len)
        .arg(millis(history.max_age))
        .arg(&envelope::encode_recorded_header(node, except, message)[..])
        .arg(if message.is_text() { 1 } else { 2 })
        .arg(message.as_bytes())
        .arg(millis(history.meta_expiry()));
    command
}

/// Reads at most `max` entries after `since` from `channel`'s history,
/// none older than `max_age`; renews the meta's expiry to `meta_expiry`.
pub(super) fn read(
    cluster: &Arc<Inner>,
    channel: &str,
    since: &Offset,
    max: usize,
    max_age: Duration,
    meta_expiry: Duration,
) -> BoxFuture<'static, Result<Read, ClusterError>> {
    let mut command = redis::cmd("EVAL");
    command
        .arg(READ)
        .arg(2)
        .arg(stream_key(channel))
        .arg(meta_key(channel))
        .arg(since.epoch())
        .arg(since.position())
        .arg(max.max(1))
        .arg(millis(max_age))
        .arg(millis(meta_expiry))
        .arg(PAGE_BYTES);
    let cluster = Arc::clone(cluster);
    let epoch: Arc<str> = since.epoch().into();
    Box::pin(async move {
        let (mut manager, shared, timeout, reads) = (
            cluster.commands.clone(),
            Arc::clone(&cluster.shared),
            cluster.config.publish_timeout,
            Arc::clone(&cluster.history_reads),
        );
        let url = shared.url.clone();
        let answer: Value = cluster
            .run(async move {
                // Closed only with the cluster, which then stops this task.
                let _turn = reads.acquire_owned().await;
                shared
                    .within(timeout, command.query_async(&mut manager))
                    .await
            })
            .await?;
        decode_read(answer, &epoch).ok_or_else(|| ClusterError::Refused {
            url: crate::cluster_error::redacted(&url),
            code: String::new(),
            reason: "an unexpected answer to a history read".to_owned(),
        })
    })
}

fn text(value: &Value) -> Option<&[u8]> {
    match value {
        Value::BulkString(bytes) => Some(bytes),
        Value::SimpleString(text) => Some(text.as_bytes()),
        _ => None,
    }
}

fn number(value: &Value) -> Option<u64> {
    match value {
        Value::Int(n) => u64::try_from(*n).ok(),
        other => std::str::from_utf8(text(other)?).ok()?.parse().ok(),
    }
}

/// The answer of the read script; `None` when it is not one.
fn decode_read(answer: Value, epoch: &Arc<str>) -> Option<Read> {
    let Value::Array(items) = answer else {
        return None;
    };
    let mut items = items.into_iter();
    match text(&items.next()?)? {
        b"gap" => return Some(Read::Gap),
        b"ok" => {}
        _ => return None,
    }
    let more = number(&items.next()?)? != 0;
    let mut entries = Vec::new();
    while let Some(position) = items.next() {
        let position = number(&position)?;
        let kind = number(&items.next()?)?;
        let Value::BulkString(payload) = items.next()? else {
            return None;
        };
        let message = if kind == 2 {
            Message::Binary(payload.into())
        } else {
            Message::Text(String::from_utf8(payload).ok()?.into())
        };
        entries.push((Offset::new(Arc::clone(epoch), position), message));
    }
    Some(Read::Entries { entries, more })
}

impl Cluster {
    /// [`Cluster::group`] for a group that keeps a history in Redis (S21):
    /// every broadcast is recorded in the group's stream with an
    /// [`Offset`], and [`Group::recover`] replays what a returning client
    /// missed, whichever node it returns to. Open it with the same
    /// [`History`] on every node (the render runs on each node that
    /// delivers). A node that opened it with [`Cluster::group`] instead
    /// records nothing: its broadcasts are missing from every replay. Such
    /// broadcasts are still delivered, and each node counts the ones it
    /// receives in [`ClusterStats::history_mismatch`](crate::ClusterStats::history_mismatch)
    /// (and logs a warning). A name already open on this node returns that
    /// group as it was opened.
    ///
    /// A broadcast of a group with history is delivered when Redis hands it
    /// back with its offset, on every node and on the origin too (so every
    /// node sees one order of offsets): its [`Broadcast`](crate::Broadcast)
    /// counts no local member, and a broadcast while Redis is unreachable
    /// reaches nobody (`published()` says so).
    ///
    /// ```no_run
    /// # async fn demo(cluster: actix_ws_listener::Cluster) -> Result<(), actix_ws_listener::ClusterError> {
    /// use std::time::Duration;
    /// use actix_ws_listener::{History, Message};
    ///
    /// let room = cluster
    ///     .group_with_history(
    ///         "lobby",
    ///         History::new(1_000, Duration::from_secs(300))
    ///             .render(|offset, message| {
    ///                 Message::from(format!("{offset} {}", message.as_text().unwrap_or("")))
    ///             })
    ///             .gap("(some messages were missed)"),
    ///     )
    ///     .await?;
    /// room.broadcast("recorded").published().await?;
    /// # Ok(())
    /// # }
    /// ```
    ///
    /// # Errors
    /// As [`Cluster::group`].
    pub async fn group_with_history(
        &self,
        name: &str,
        history: History,
    ) -> Result<Group, ClusterError> {
        self.open(name, Some(history)).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bulk(text: &str) -> Value {
        Value::BulkString(text.as_bytes().to_vec())
    }

    #[test]
    fn read_answers_decode_to_entries_or_a_gap() {
        let epoch: Arc<str> = "ab".into();
        assert_eq!(
            decode_read(Value::Array(vec![bulk("gap")]), &epoch),
            Some(Read::Gap)
        );
        let answer = Value::Array(vec![
            bulk("ok"),
            Value::Int(1),
            bulk("7"),
            bulk("1"),
            bulk("héllo"),
            bulk("8"),
            bulk("2"),
            Value::BulkString(vec![0, 255]),
        ]);
        assert_eq!(
            decode_read(answer, &epoch),
            Some(Read::Entries {
                entries: vec![
                    (Offset::new(Arc::clone(&epoch), 7), Message::from("héllo")),
                    (
                        Offset::new(Arc::clone(&epoch), 8),
                        Message::from(vec![0u8, 255])
                    ),
                ],
                more: true,
            })
        );
        let empty = Value::Array(vec![bulk("ok"), Value::Int(0)]);
        assert_eq!(
            decode_read(empty, &epoch),
            Some(Read::Entries {
                entries: Vec::new(),
                more: false
            })
        );
        assert_eq!(decode_read(Value::Int(3), &epoch), None);
        assert_eq!(
            decode_read(
                Value::Array(vec![bulk("ok"), Value::Int(0), bulk("x")]),
                &epoch
            ),
            None
        );
    }
}
