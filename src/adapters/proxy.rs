//! The standalone reverse proxy. Its flow mirrors agentgateway's: one task per bind
//! accepting connections (`listener`), one task per connection speaking HTTP/1.1 or h2c
//! (or either over TLS), then the route and the processors (`handler`), then the
//! upstream call over a pooled client (`upstream`), with bodies streamed both ways
//! through the processors that asked for them (`body`).

mod body;
mod client_body;
mod forward;
mod handler;
mod listener;
#[cfg(test)]
mod tests;
mod upstream;

pub use body::ProxyBody;
pub use listener::{bind, serve, BoundListener};
pub use upstream::Upstreams;
