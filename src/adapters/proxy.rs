//! The standalone reverse proxy.
