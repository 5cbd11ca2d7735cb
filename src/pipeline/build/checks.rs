//! The checks of addresses, files and TLS settings a pipeline build makes, each error
//! at its field path; and the warning an unverified backend gets at every load.

use std::net::{IpAddr, SocketAddr};

use crate::config::{BackendTls, Config, ConfigError, ConfigErrors, ServerTls};

pub(super) fn validate_addresses(config: &Config, errs: &mut ConfigErrors) {
    if let Some(ext) = &config.ext_proc {
        if let Some(path) = ext.address.strip_prefix("unix:") {
            if path.is_empty() {
                errs.push(ConfigError::field(
                    "extProc.address",
                    "empty unix socket path",
                ));
            }
        } else if ext.address.parse::<SocketAddr>().is_err() {
            errs.push(ConfigError::field(
                "extProc.address",
                format!("{:?} is neither an IP:port nor unix:/path", ext.address),
            ));
        }
        if let Some(tls) = &ext.tls {
            server_tls_files(tls, "extProc.tls", errs);
        }
        if let Some(h) = &ext.health_address {
            if h.parse::<SocketAddr>().is_err() {
                errs.push(ConfigError::field(
                    "extProc.healthAddress",
                    format!("{h:?} is not an IP:port"),
                ));
            }
        }
    }
    if config.admin.address.parse::<SocketAddr>().is_err() {
        errs.push(ConfigError::field(
            "admin.address",
            format!("{:?} is not an IP:port", config.admin.address),
        ));
    }
    for (b, bind) in config.binds.iter().enumerate() {
        if bind.address.parse::<IpAddr>().is_err() {
            errs.push(ConfigError::field(
                format!("binds[{b}].address"),
                format!("{:?} is not an IP address", bind.address),
            ));
        }
        if let Some(tls) = &bind.tls {
            server_tls_files(tls, &format!("binds[{b}].tls"), errs);
        }
    }
}

pub(super) fn server_tls_files(tls: &ServerTls, path: &str, errs: &mut ConfigErrors) {
    errs.check(readable(&tls.cert_file, &format!("{path}.certFile")));
    errs.check(readable(&tls.key_file, &format!("{path}.keyFile")));
}

/// A warning for each backend whose certificate is not verified (`tls.insecure`), which
/// `validate` prints and `serve` logs at every load.
pub(super) fn insecure_backends(config: &Config) -> Vec<String> {
    let mut warnings = Vec::new();
    for (b, bind) in config.binds.iter().enumerate() {
        for (l, listener) in bind.listeners.iter().enumerate() {
            for (r, route) in listener.routes.iter().enumerate() {
                for (i, backend) in route.backends.iter().enumerate() {
                    if backend.tls.as_ref().is_some_and(|t| t.insecure) {
                        warnings.push(format!(
                            "binds[{b}].listeners[{l}].routes[{r}].backends[{i}].tls.insecure: \
                             the certificate of {} is NOT verified; anyone on the path can \
                             read and change this traffic",
                            backend.host
                        ));
                    }
                }
            }
        }
    }
    warnings
}

/// A backend's TLS: readable files, a certificate with its key, no CA beside
/// `insecure` (it would never be used).
pub(super) fn check_backend_tls(tls: &BackendTls, at: &str, errs: &mut ConfigErrors) {
    if let Some(ca) = &tls.ca_file {
        errs.check(readable(ca, &format!("{at}.caFile")));
        if tls.insecure {
            errs.push(ConfigError::field(
                format!("{at}.insecure"),
                "verifies nothing, so caFile would never be used: set one or the other",
            ));
        }
    }
    match (&tls.cert_file, &tls.key_file) {
        (Some(cert), Some(key)) => {
            errs.check(readable(cert, &format!("{at}.certFile")));
            errs.check(readable(key, &format!("{at}.keyFile")));
        }
        (Some(_), None) => errs.push(ConfigError::field(
            format!("{at}.keyFile"),
            "required with certFile",
        )),
        (None, Some(_)) => errs.push(ConfigError::field(
            format!("{at}.certFile"),
            "required with keyFile",
        )),
        (None, None) => {}
    }
}

fn readable(file: &str, path: &str) -> Result<(), ConfigError> {
    std::fs::metadata(file)
        .map(|_| ())
        .map_err(|e| ConfigError::field(path, format!("cannot read {file}: {e}")))
}

pub(super) fn validate_host_port(host: &str, path: &str) -> Result<(), ConfigError> {
    match host.rsplit_once(':') {
        Some((name, port)) if !name.is_empty() && port.parse::<u16>().is_ok() => Ok(()),
        _ => Err(ConfigError::field(
            path,
            format!("{host:?} must be host:port"),
        )),
    }
}
