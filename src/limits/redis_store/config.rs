//! How a `RedisStore` connects and what it does when Redis cannot answer.

use std::time::Duration;

/// What a `RedisStore` does when Redis cannot answer in time (down, unreachable, hung).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum RedisFailureMode {
    /// Allow every reservation; charges and refunds go to a local pending ledger that is
    /// replayed into Redis once it answers again. Nothing is enforced while Redis is
    /// down, and nothing is lost.
    #[default]
    FailOpen,
    /// Deny reservations with [`LimitError::Unavailable`](crate::limits::LimitError)
    /// (the processor answers 503). Settlements and charges still go to the pending
    /// ledger: a request that was admitted is always accounted for.
    FailClosed,
}

/// A `RedisStore`'s settings. Timeouts are short on purpose: a limit check sits on the
/// request path, and a slow Redis should trip the failure mode, not stall requests.
#[derive(Clone, Debug)]
pub struct RedisStoreConfig {
    /// `redis://[user:password@]host:port[/db]` (TLS, `rediss://`, is not compiled in).
    pub url: String,
    pub failure_mode: RedisFailureMode,
    /// One connection attempt.
    pub connect_timeout: Duration,
    /// One operation, end to end (including waiting for a reconnect in progress).
    pub command_timeout: Duration,
    /// After a failure, operations apply the failure mode at once, without trying
    /// Redis, for this long; then the next operation tries again.
    pub retry_after_failure: Duration,
    /// How often the pending ledger is retried while it holds anything. A failed
    /// operation followed by a successful one also triggers a replay at once.
    pub flush_interval: Duration,
}

impl RedisStoreConfig {
    /// Defaults: fail open, 250 ms to connect, 250 ms per operation, Redis retried
    /// 500 ms after a failure, ledger retried every second.
    pub fn new(url: impl Into<String>) -> RedisStoreConfig {
        RedisStoreConfig {
            url: url.into(),
            failure_mode: RedisFailureMode::default(),
            connect_timeout: Duration::from_millis(250),
            command_timeout: Duration::from_millis(250),
            retry_after_failure: Duration::from_millis(500),
            flush_interval: Duration::from_secs(1),
        }
    }

    pub fn failure_mode(mut self, mode: RedisFailureMode) -> RedisStoreConfig {
        self.failure_mode = mode;
        self
    }

    pub fn connect_timeout(mut self, timeout: Duration) -> RedisStoreConfig {
        self.connect_timeout = timeout;
        self
    }

    pub fn command_timeout(mut self, timeout: Duration) -> RedisStoreConfig {
        self.command_timeout = timeout;
        self
    }

    pub fn retry_after_failure(mut self, wait: Duration) -> RedisStoreConfig {
        self.retry_after_failure = wait;
        self
    }

    pub fn flush_interval(mut self, interval: Duration) -> RedisStoreConfig {
        self.flush_interval = interval;
        self
    }
}
