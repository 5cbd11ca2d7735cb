//! The standalone reverse proxy. Its flow mirrors agentgateway's: one task per bind
//! accepting connections within `limits.connections` (`listener`, over
//! `crate::listen`), one task per connection speaking HTTP/1.1 or h2c (or either over
//! TLS), then the request phase, the upstream call and the response phase (`handler`),
//! the forwarding headers (`forward`), the backend picked and retried (`balance`), the
//! upstream call over a pooled client (`upstream`), the client's request body with its progress timeout and sorted errors
//! (`client_body`), and bodies streamed both ways through the processors that asked for
//! them (`body`).

mod balance;
mod body;
mod client_body;
mod forward;
mod h1_pool;
mod handler;
mod listener;
#[cfg(test)]
mod tests;
mod upstream;

pub use body::ProxyBody;
pub use listener::{bind, bind_mcp, serve, BoundListener};
pub use upstream::Upstreams;
