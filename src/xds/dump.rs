//! `tollgate xds dump`: what a node would be served, as Envoy's own JSON (or YAML) —
//! every resource with its name, version and body, `Any` fields expanded with their
//! `@type`, as Envoy's `/config_dump` prints them. The bodies are read back from the
//! encoded resources with the descriptors of the Envoy types the generator emits
//! (`proto/envoy-descriptors.bin.gz`, made by `scripts/envoy-descriptors/run`).

use std::io::Read;
use std::sync::OnceLock;

use prost_reflect::{DescriptorPool, DynamicMessage};
use serde_json::{json, Map, Value};

use super::resource::TollgateConfig;
use super::snapshot::{short_type, Snapshot, TOLLGATE_CONFIG};

const DESCRIPTORS: &[u8] = include_bytes!("../../proto/envoy-descriptors.bin.gz");

/// The Envoy descriptors (decoded once).
pub fn pool() -> &'static DescriptorPool {
    static POOL: OnceLock<DescriptorPool> = OnceLock::new();
    POOL.get_or_init(|| {
        let mut bytes = Vec::new();
        flate2::read::GzDecoder::new(DESCRIPTORS)
            .read_to_end(&mut bytes)
            .expect("the embedded descriptors are gzip");
        DescriptorPool::decode(bytes.as_slice()).expect("the embedded descriptors decode")
    })
}

/// Why a resource could not be read back.
#[derive(Debug, thiserror::Error)]
pub enum DumpError {
    #[error("no descriptor for {0}")]
    UnknownType(String),
    #[error("{type_url} {name}: {error}")]
    Decode {
        type_url: String,
        name: String,
        error: String,
    },
}

/// One resource as JSON.
pub fn resource_json(
    type_url: &str,
    name: &str,
    body: &envoy_types::pb::google::protobuf::Any,
) -> Result<Value, DumpError> {
    if type_url == TOLLGATE_CONFIG {
        let c: TollgateConfig =
            prost::Message::decode(body.value.as_slice()).map_err(|e| DumpError::Decode {
                type_url: type_url.into(),
                name: name.into(),
                error: e.to_string(),
            })?;
        return Ok(json!({ "@type": type_url, "name": c.name, "yaml": c.yaml }));
    }
    let full = type_url.rsplit('/').next().unwrap_or(type_url);
    let descriptor = pool()
        .get_message_by_name(full)
        .ok_or_else(|| DumpError::UnknownType(full.to_string()))?;
    let message = DynamicMessage::decode(descriptor, body.value.as_slice()).map_err(|e| {
        DumpError::Decode {
            type_url: type_url.into(),
            name: name.into(),
            error: e.to_string(),
        }
    })?;
    let mut value = serde_json::to_value(&message).map_err(|e| DumpError::Decode {
        type_url: type_url.into(),
        name: name.into(),
        error: e.to_string(),
    })?;
    if let Value::Object(map) = &mut value {
        let mut typed = Map::new();
        typed.insert("@type".into(), Value::String(type_url.to_string()));
        typed.append(map);
        value = Value::Object(typed);
    }
    Ok(value)
}

/// A snapshot as JSON: per type, its version and resources (name, version, body).
pub fn snapshot_json(snapshot: &Snapshot) -> Result<Value, DumpError> {
    let mut types = Map::new();
    for (type_url, resources) in snapshot.types() {
        let mut items = Vec::new();
        for r in resources.items.values() {
            items.push(json!({
                "name": r.name,
                "version": r.version,
                "resource": resource_json(type_url, &r.name, &r.body)?,
            }));
        }
        types.insert(
            short_type(type_url).to_string(),
            json!({ "version": resources.version, "resources": items }),
        );
    }
    Ok(Value::Object(types))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every resource the generator makes for a config using every feature reads back
    /// with no unknown field: the embedded descriptors describe what is sent.
    #[test]
    fn every_generated_resource_reads_back_whole() {
        let text = r#"
extProc: { address: "0.0.0.0:50051", selfSignedTls: true }
xds:
  configs:
    fleet: { binds: [ { port: 8080, listeners: [ { routes: [ { backends: [ { host: "127.0.0.1:1" } ] } ] } ] } ] }
binds:
- port: 10000
  tls: { certFile: /c.pem, keyFile: /k.pem }
  listeners:
  - hostnames: [a.example.com, "*.example.com"]
    routes:
    - name: chat
      matches: [{ path: { pathPrefix: /v1/ }, headers: [{ name: x-a, value: { regex: "b.*" } }] }]
      backends: [{ host: "api.example.com:443", tls: { sni: api.example.com, caFile: /ca.pem }, http2: true }]
  - routes:
    - matches: [{ path: { exact: /x }, method: GET }]
      backends: [{ host: "127.0.0.1:8000" }]
"#;
        let config = crate::config::parse_str(text).unwrap().config;
        let fleet = super::super::generate::fleet(&config).unwrap();
        let mut seen = 0;
        for (type_url, resources) in fleet.default.types() {
            for r in resources.items.values() {
                seen += 1;
                if type_url == TOLLGATE_CONFIG {
                    continue;
                }
                let full = type_url.rsplit('/').next().unwrap();
                let d = pool().get_message_by_name(full).expect("described");
                let m = DynamicMessage::decode(d, r.body.value.as_slice()).unwrap();
                assert_eq!(
                    m.unknown_fields().count(),
                    0,
                    "{type_url} {}: fields the descriptors do not know",
                    r.name
                );
            }
        }
        assert!(seen >= 7, "{seen}");
        let json = snapshot_json(&fleet.default).unwrap();
        let listener = &json["listener"]["resources"][0]["resource"];
        assert_eq!(
            listener["@type"],
            "type.googleapis.com/envoy.config.listener.v3.Listener"
        );
        let hcm = &listener["filterChains"][0]["filters"][0]["typedConfig"];
        assert_eq!(
            hcm["@type"],
            "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager"
        );
        assert_eq!(hcm["httpFilters"][0]["name"], "tollgate_ext_proc");
        assert_eq!(json["tollgate_config"]["resources"][0]["name"], "fleet");
        assert!(json["tollgate_config"]["resources"][0]["resource"]["yaml"]
            .as_str()
            .unwrap()
            .contains("8080"));
    }
}
