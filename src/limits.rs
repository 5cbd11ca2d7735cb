//! The storage and arithmetic behind LLM token limits and budgets.
//!
//! A [`Limit`] is a token bucket (`capacity`, refilled continuously) or a period budget
//! (`amount` per UTC-aligned minute / hour / day / month; money budgets are the same in
//! micro-dollars, see [`micro_dollars`]). On a caller-named key a [`LimitStore`] does
//! three atomic things:
//!
//! - `reserve(key, limit, estimate, now)`: check and pre-charge the estimate before the
//!   request goes upstream, answering a [`Decision`] (allowed, remaining, limit,
//!   reset_after, retry_after — OpenAI's `x-ratelimit-*` and `retry-after`);
//! - `settle(key, limit, reserved, actual, now)`: true up once the real usage is known,
//!   charging the excess or refunding the over-estimate;
//! - `charge(key, limit, amount, now)`: an unconditional charge.
//!
//! [`Limiter::reserve`] wraps a grant in a [`Reservation`] guard that settles exactly
//! once, on drop too (for what the caller recorded as delivered), so abandoned streams
//! are counted. Stores: [`LocalStore`] (this process) and [`RedisStore`] (shared between
//! replicas, atomic Lua scripts, fail-open with a pending ledger or fail-closed).
//!
//! Time is always the caller's `now` (wall clock, UTC), never the store's. That keeps one
//! arithmetic for both stores — written once in Rust (`bucket`, `budget`) and mirrored
//! by the Lua scripts — makes every rule testable at exact instants, and puts calendar
//! windows (month lengths) in Rust rather than Lua. The cost is trusting replica clocks:
//! a bucket's refill instant never moves backwards and a budget never returns to an
//! older window, so a replica whose clock lags by `d` refills nothing for `d`, and one
//! that runs ahead refills at most `d` early once; with NTP that is milliseconds.
//!
//! A typical use, in a processor:
//!
//! ```no_run
//! # async fn f(limiter: tollgate::limits::Limiter) -> Result<(), tollgate::limits::LimitError> {
//! use std::time::SystemTime;
//! use tollgate::limits::{Admission, Limit};
//!
//! let tpm = Limit::per(30_000, std::time::Duration::from_secs(60))?;
//! let key = "tollgate:limit:tpm:chat:4f9a…";
//! match limiter.reserve(key, &tpm, 1_200, SystemTime::now()).await? {
//!     Admission::Denied(decision) => { /* 429 with decision's headers */ }
//!     Admission::Allowed(mut reservation) => {
//!         reservation.set_delivered(1_200); // the prompt went upstream
//!         // … stream: reservation.add_delivered(output_tokens_of_chunk) …
//!         reservation.settle_in_background(1_180 + 350); // actual usage, on completion
//!     }
//! }
//! # Ok(()) }
//! ```
//!
//! Several limits on one request (a rate and a budget): reserve each; if one is denied,
//! drop the reservations already granted — their drop refunds them.
//!
//! A limit enforced mid-stream also draws a streamed completion's output from the
//! store as it streams ([`StreamBudget`]).

mod bucket;
mod budget;
mod calendar;
mod decision;
mod error;
mod limit;
mod local_store;
mod redis_store;
mod reservation;
mod store;
mod stream_budget;

pub use decision::{Decision, Reserved};
pub use error::{LimitError, StoreFailure};
pub use limit::{micro_dollars, Limit, Period, PeriodBudget, TokenBucket, MAX_AMOUNT};
pub use local_store::LocalStore;
pub use redis_store::{
    FlushReport, RedisFailureMode, RedisStore, RedisStoreConfig, RedisStoreStats,
};
pub use reservation::{Admission, Limiter, Reservation};
pub use store::LimitStore;
pub use stream_budget::{StreamBudget, CHUNK_TOKENS};

/// A counter key's subject (an API key, a user id) as a short SHA-256 hex digest, so
/// such values never sit in a store (Redis) in the clear.
pub fn hash_key(subject: &str) -> String {
    let digest = ring::digest::digest(&ring::digest::SHA256, subject.as_bytes());
    digest.as_ref()[..12]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// The key of a counter shared by name (`counter:` on limit rules), whatever route or
/// policy charges it: LLM tokens and tool calls of one subject can draw on one budget.
/// The period is part of it, so budgets of different periods never share a window.
pub fn shared_counter_key(counter: &str, period: Period, subject: &str) -> String {
    let period = match period {
        Period::Minute => "minute",
        Period::Hour => "hour",
        Period::Day => "day",
        Period::Month => "month",
    };
    format!(
        "tollgate:tl:counter:{counter}:{period}:{}",
        hash_key(subject)
    )
}
