//! `limits.connections`: bounds on client connections, applied alike on every listener
//! (each proxy bind, the ext_proc server and the admin server). Read at start: a reload
//! that changes them takes effect after a restart, like listen addresses.

use std::num::NonZeroU32;

use schemars::JsonSchema;
use serde::{Deserialize, Deserializer, Serialize};

use crate::config::Duration;

/// Bounds on client connections.
#[derive(Clone, Debug, Deserialize, Serialize, JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ConnectionLimits {
    /// Open connections per proxy bind and on the ext_proc listener. Beyond it, a proxy
    /// bind answers a new connection with a 503 and closes it (TLS binds just close
    /// it); the ext_proc listener leaves it in the accept backlog until one closes.
    /// Keep it (with `adminMaxConnections`) under the open-file limit: each proxied
    /// connection may also hold one upstream socket.
    #[serde(default = "default_max_connections")]
    #[schemars(with = "u32")]
    pub max_connections: NonZeroU32,
    /// Open connections on the admin listener (refused with a 503 beyond it) and on
    /// `extProc.healthAddress` (left in the backlog), each counted apart so probes and
    /// scrapes get through while the proxy is full.
    #[serde(default = "default_admin_max_connections")]
    #[schemars(with = "u32")]
    pub admin_max_connections: NonZeroU32,
    /// How long a new connection may stay silent before it is closed.
    #[serde(default = "default_first_byte_timeout", deserialize_with = "positive")]
    pub first_byte_timeout: Duration,
    /// How long a request's headers may take from their first byte (HTTP/1.1, and the
    /// first request of an HTTP/2 connection from its preface) before the connection is
    /// closed.
    #[serde(default = "default_header_read_timeout", deserialize_with = "positive")]
    pub header_read_timeout: Duration,
    /// How long a connection may stay open with no request in flight (HTTP/1.1
    /// keep-alive, an HTTP/2 connection with no stream) before it is closed gracefully.
    #[serde(default = "default_idle_timeout", deserialize_with = "positive")]
    pub idle_timeout: Duration,
    /// How long the client may take to send the next piece of a request body that
    /// tollgate is waiting for; beyond it the request gets a 408 (proxy binds).
    #[serde(
        default = "default_body_progress_timeout",
        deserialize_with = "positive"
    )]
    pub body_progress_timeout: Duration,
}

impl Default for ConnectionLimits {
    fn default() -> Self {
        ConnectionLimits {
            max_connections: default_max_connections(),
            admin_max_connections: default_admin_max_connections(),
            first_byte_timeout: default_first_byte_timeout(),
            header_read_timeout: default_header_read_timeout(),
            idle_timeout: default_idle_timeout(),
            body_progress_timeout: default_body_progress_timeout(),
        }
    }
}

fn default_max_connections() -> NonZeroU32 {
    NonZeroU32::new(10_000).expect("not zero")
}

fn default_admin_max_connections() -> NonZeroU32 {
    NonZeroU32::new(64).expect("not zero")
}

fn default_first_byte_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_header_read_timeout() -> Duration {
    Duration::from_secs(10)
}

fn default_idle_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_body_progress_timeout() -> Duration {
    Duration::from_secs(30)
}

/// A duration longer than zero (a zero timeout would close every connection at once).
fn positive<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
    let value = Duration::deserialize(d)?;
    if value.get().is_zero() {
        return Err(serde::de::Error::custom("must be longer than 0"));
    }
    Ok(value)
}

#[cfg(test)]
mod tests {
    use crate::config::{parse_str, ConnectionLimits};

    /// A config with one route and `limits.connections` set to `limits`.
    fn with(limits: &str) -> String {
        format!("binds: [ {{ port: 1, listeners: [ {{ routes: [ {{}} ] }} ] }} ]\nlimits:\n  connections: {limits}\n")
    }

    fn error_of(limits: &str) -> String {
        parse_str(&with(limits))
            .map(|_| ())
            .unwrap_err()
            .to_string()
    }

    fn read(limits: &str) -> ConnectionLimits {
        parse_str(&with(limits)).unwrap().config.limits.connections
    }

    #[test]
    fn defaults_apply_when_the_section_is_absent() {
        let c = read("{}");
        assert_eq!(c.max_connections.get(), 10_000);
        assert_eq!(c.admin_max_connections.get(), 64);
        assert_eq!(c.idle_timeout.get().as_secs(), 60);
        assert_eq!(c.body_progress_timeout.get().as_secs(), 30);
    }

    #[test]
    fn bad_values_name_their_field() {
        let e = error_of("{ maxConnections: 0 }");
        assert!(e.contains("limits.connections.maxConnections"), "{e}");
        let e = error_of("{ idleTimeout: 0s }");
        assert!(e.contains("limits.connections.idleTimeout"), "{e}");
        assert!(e.contains("longer than 0"), "{e}");
        let e = error_of("{ headerReadTimeout: soon }");
        assert!(e.contains("limits.connections.headerReadTimeout"), "{e}");
        let e = error_of("{ maxConections: 5 }");
        assert!(e.contains("maxConections"), "{e}");
    }

    #[test]
    fn values_are_read() {
        let c = read("{ maxConnections: 3, firstByteTimeout: 250ms }");
        assert_eq!(c.max_connections.get(), 3);
        assert_eq!(c.first_byte_timeout.get().as_millis(), 250);
    }
}
