//! Addresses from the config (`host:port`, `[v6]:port`, `unix:/path`) as Envoy
//! addresses: an IP becomes a socket address Envoy uses as is, a DNS name a host Envoy
//! resolves itself, a `unix:` path a pipe.

use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::{
    address, socket_address, Address, Pipe, SocketAddress,
};

/// A parsed config address.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Target {
    Ip(IpAddr, u16),
    Dns(String, u16),
    Pipe(String),
}

/// Why an address does not parse.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("{0:?} is not host:port, [ipv6]:port or unix:/path")]
pub struct BadAddress(pub String);

impl Target {
    pub fn parse(text: &str) -> Result<Self, BadAddress> {
        let bad = || BadAddress(text.to_string());
        if let Some(path) = text.strip_prefix("unix:") {
            return if path.is_empty() {
                Err(bad())
            } else {
                Ok(Target::Pipe(path.to_string()))
            };
        }
        let (host, port) = text.rsplit_once(':').ok_or_else(bad)?;
        let port: u16 = port.parse().map_err(|_| bad())?;
        let host = host
            .strip_prefix('[')
            .and_then(|h| h.strip_suffix(']'))
            .unwrap_or(host);
        if host.is_empty() || host.contains(['/', ' ']) {
            return Err(bad());
        }
        Ok(match host.parse::<IpAddr>() {
            Ok(ip) => Target::Ip(ip, port),
            Err(_) => Target::Dns(host.to_string(), port),
        })
    }

    /// The same target with an unspecified IP (`0.0.0.0`, `::`) read as loopback: the
    /// address a sidecar Envoy dials for a server listening on every interface.
    pub fn dialable(self) -> Self {
        match self {
            Target::Ip(ip, port) if ip.is_unspecified() => {
                let lo = if ip.is_ipv4() {
                    IpAddr::from([127, 0, 0, 1])
                } else {
                    IpAddr::from(std::net::Ipv6Addr::LOCALHOST)
                };
                Target::Ip(lo, port)
            }
            other => other,
        }
    }

    /// The host part, for SNI defaults (`None` for a pipe).
    pub fn host(&self) -> Option<String> {
        match self {
            Target::Ip(ip, _) => Some(ip.to_string()),
            Target::Dns(host, _) => Some(host.clone()),
            Target::Pipe(_) => None,
        }
    }

    /// The Envoy address.
    pub fn to_envoy(&self) -> Address {
        let address = match self {
            Target::Ip(ip, port) => socket(ip.to_string(), *port),
            Target::Dns(host, port) => socket(host.clone(), *port),
            Target::Pipe(path) => address::Address::Pipe(Pipe {
                path: path.clone(),
                ..Default::default()
            }),
        };
        Address {
            address: Some(address),
        }
    }
}

fn socket(host: String, port: u16) -> address::Address {
    address::Address::SocketAddress(SocketAddress {
        address: host,
        port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
        ..Default::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_each_form() {
        assert_eq!(
            Target::parse("127.0.0.1:8000"),
            Ok(Target::Ip([127, 0, 0, 1].into(), 8000))
        );
        assert_eq!(
            Target::parse("[::1]:443"),
            Ok(Target::Ip(std::net::Ipv6Addr::LOCALHOST.into(), 443))
        );
        assert_eq!(
            Target::parse("api.openai.com:443"),
            Ok(Target::Dns("api.openai.com".into(), 443))
        );
        assert_eq!(
            Target::parse("unix:/run/t.sock"),
            Ok(Target::Pipe("/run/t.sock".into()))
        );
        for bad in ["nohost", "h:notaport", ":80", "unix:", "h:70000", "a b:1"] {
            assert!(Target::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn unspecified_ips_dial_loopback() {
        let t = Target::parse("0.0.0.0:50051").unwrap().dialable();
        assert_eq!(t, Target::Ip([127, 0, 0, 1].into(), 50051));
        let t = Target::parse("[::]:50051").unwrap().dialable();
        assert_eq!(t, Target::Ip(std::net::Ipv6Addr::LOCALHOST.into(), 50051));
        let t = Target::parse("10.0.0.1:1").unwrap().dialable();
        assert_eq!(t, Target::Ip([10, 0, 0, 1].into(), 1));
    }
}
