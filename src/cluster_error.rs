//! [`ClusterError`]: why an operation of a cross-node group failed, in
//! variants a caller can match.
//!
//! This module owns the error's shape and the mapping from the `redis`
//! crate's errors to it, and nothing else: no broker, no sockets. It is a
//! file of its own so that [`Group`](crate::group::Group), which carries the
//! outcome of a cluster publish, and the cluster, which produces it, can
//! both name it without importing each other.

use std::fmt;

/// Why a cluster operation failed. Local members are never affected: a
/// broadcast reaches them before anything is published.
///
/// Variants that concern the broker carry the URL, shown without any
/// password it holds, so that the message says what could not be reached.
///
/// ```
/// use actix_ws_listener::ClusterError;
///
/// fn advice(error: &ClusterError) -> &'static str {
///     match error {
///         ClusterError::Unreachable { .. } => "start redis-server or fix REDIS_URL",
///         ClusterError::InvalidUrl { .. } => "fix REDIS_URL",
///         ClusterError::Backlog => "publish less, or raise publish_capacity",
///         _ => "see the log",
///     }
/// }
/// # let _ = advice;
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum ClusterError {
    /// The URL is not a Redis URL the `redis` crate accepts.
    InvalidUrl {
        /// The URL as given, password hidden.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Redis could not be reached at `url`, or the connection to it was
    /// lost (refused, reset, no route, no answer to the connect).
    Unreachable {
        /// Where Redis was expected, password hidden.
        url: String,
        /// The I/O error, as the operating system worded it.
        reason: String,
    },
    /// Redis answered a command with an error (a password it wants, a
    /// command it refuses, a key of another type).
    Refused {
        /// The Redis that answered, password hidden.
        url: String,
        /// Redis's error code (`NOAUTH`, `WRONGTYPE`, …), or empty.
        code: String,
        /// The rest of Redis's answer.
        reason: String,
    },
    /// Redis did not answer within
    /// [`ClusterConfig::publish_timeout`](crate::ClusterConfig::publish_timeout);
    /// the broadcast may or may not have been published.
    Timeout {
        /// The Redis that did not answer, password hidden.
        url: String,
    },
    /// [`ClusterConfig::publish_capacity`](crate::ClusterConfig::publish_capacity)
    /// broadcasts of this node are already waiting for Redis: this one was
    /// not published.
    Backlog,
    /// The cluster's background thread is gone (its runtime failed to start,
    /// or the process is shutting down).
    Stopped,
}

impl fmt::Display for ClusterError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ClusterError::InvalidUrl { url, reason } => {
                write!(f, "invalid Redis URL {url}: {reason}")
            }
            ClusterError::Unreachable { url, reason } => {
                write!(f, "cannot reach Redis at {url}: {reason}")
            }
            ClusterError::Refused { url, code, reason } if code.is_empty() => {
                write!(f, "Redis at {url} refused: {reason}")
            }
            ClusterError::Refused { url, code, reason } => {
                write!(f, "Redis at {url} refused: {code} {reason}")
            }
            ClusterError::Timeout { url } => write!(f, "Redis at {url} did not answer in time"),
            ClusterError::Backlog => f.write_str("too many broadcasts waiting for Redis"),
            ClusterError::Stopped => f.write_str("the cluster's background thread has stopped"),
        }
    }
}

impl std::error::Error for ClusterError {}

impl ClusterError {
    /// Maps an error of the `redis` crate met while talking to `url`.
    pub(crate) fn from_redis(url: &str, error: &redis::RedisError) -> ClusterError {
        let url = redacted(url);
        if error.is_timeout() {
            ClusterError::Timeout { url }
        } else if error.is_io_error()
            || error.is_connection_refusal()
            || error.is_connection_dropped()
        {
            ClusterError::Unreachable {
                url,
                reason: error.to_string(),
            }
        } else if error.kind() == redis::ErrorKind::InvalidClientConfig {
            ClusterError::InvalidUrl {
                url,
                reason: error.to_string(),
            }
        } else {
            ClusterError::Refused {
                url,
                code: error.code().unwrap_or_default().to_owned(),
                reason: error
                    .detail()
                    .map_or_else(|| error.to_string(), str::to_owned),
            }
        }
    }

    /// A timeout of our own (the `redis` crate's did not fire first).
    pub(crate) fn timeout(url: &str) -> ClusterError {
        ClusterError::Timeout { url: redacted(url) }
    }
}

/// `url` with the password of its user part replaced by `***`.
pub(crate) fn redacted(url: &str) -> String {
    let Some(scheme_end) = url.find("://").map(|at| at + 3) else {
        return url.to_owned();
    };
    let rest = &url[scheme_end..];
    let authority_end = rest.find('/').unwrap_or(rest.len());
    match rest[..authority_end].rfind('@') {
        Some(at) => {
            let user = rest[..at].split(':').next().unwrap_or_default();
            format!("{}{user}:***{}", &url[..scheme_end], &rest[at..])
        }
        None => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_never_reach_the_message() {
        assert_eq!(
            redacted("redis://:secret@db:6379/0"),
            "redis://:***@db:6379/0"
        );
        assert_eq!(redacted("rediss://app:secret@db/"), "rediss://app:***@db/");
        assert_eq!(
            redacted("redis://127.0.0.1:6379/"),
            "redis://127.0.0.1:6379/"
        );
        assert_eq!(redacted("not a url"), "not a url");
    }

    #[test]
    fn the_message_names_the_url() {
        let error = ClusterError::Unreachable {
            url: "redis://127.0.0.1:1/".into(),
            reason: "Connection refused (os error 111)".into(),
        };
        assert_eq!(
            error.to_string(),
            "cannot reach Redis at redis://127.0.0.1:1/: Connection refused (os error 111)"
        );
    }
}
