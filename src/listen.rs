//! Client connections, handled alike on every listener (proxy binds, admin, ext_proc):
//! a connection limit and accept errors backed off and logged at most once a second
//! (`accept`), a watchdog closing connections that stay silent, idle or slow on their
//! headers (`watchdog`), and the drive of one hyper connection under that watchdog and
//! the shutdown signal (`drive`). The bounds come from `limits.connections`.

mod accept;
mod admitted;
mod drive;
mod log;
mod watchdog;

pub use accept::{Accepted, Acceptor, Drain, Listen, Permit, Refusal};
pub use admitted::{incoming, Admitted};
pub use drive::{boxed, drive, Connection, Tracked};
pub use log::RateLimitedLog;
pub use watchdog::{ConnWatch, Expiry, RequestGuard, Timeouts, Watched};

/// Test helper: checks a canned overload reply (a 503 whose `content-length` is its
/// body's) and returns its body.
#[cfg(test)]
pub fn overload_reply_body(reply: &'static [u8]) -> &'static str {
    let text = std::str::from_utf8(reply).expect("a canned reply is text");
    let (head, body) = text.split_once("\r\n\r\n").expect("a head and a body");
    assert!(head.starts_with("HTTP/1.1 503 "), "{head}");
    assert!(
        head.contains(&format!("content-length: {}", body.len())),
        "{head}"
    );
    body
}
