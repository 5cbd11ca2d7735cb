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

pub use accept::{Accepted, Acceptor, Drain, Permit, Refusal};
pub use admitted::{incoming, Admitted};
pub use drive::{boxed, drive, Connection, Tracked};
pub use log::RateLimitedLog;
pub use watchdog::{ConnWatch, Expiry, RequestGuard, Timeouts, Watched};
