//! Translation between Envoy's protobuf types and the pipeline's: header maps in,
//! header mutations, immediate responses and dynamic metadata out.

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::core::v3::{
    header_value_option::HeaderAppendAction, HeaderMap as ProtoHeaderMap,
    HeaderValue as ProtoHeaderValue, HeaderValueOption,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use envoy_types::pb::envoy::service::ext_proc::v3::{HeaderMutation, ImmediateResponse};
use envoy_types::pb::google::protobuf::{value::Kind, BoolValue, ListValue, Struct, Value};
use http::{HeaderMap, HeaderName, HeaderValue};

use crate::pipeline::{HeaderDiff, LocalReply, RequestHead};

/// Regular headers of a proto header map, plus its pseudo-headers as a request head and
/// the `:status` if present. Values come from `raw_value` (what Envoy sends), falling
/// back to `value`. Invalid names or values are skipped.
pub fn split_headers(proto: Option<&ProtoHeaderMap>) -> (RequestHead, HeaderMap, Option<u16>) {
    let mut head = RequestHead::default();
    let mut map = HeaderMap::new();
    let mut status = None;
    for h in proto.iter().flat_map(|m| m.headers.iter()) {
        let raw: &[u8] = if h.raw_value.is_empty() {
            h.value.as_bytes()
        } else {
            &h.raw_value
        };
        if let Some(pseudo) = h.key.strip_prefix(':') {
            let text = String::from_utf8_lossy(raw).into_owned();
            match pseudo {
                "method" => head.method = text,
                "path" => head.path = text,
                "authority" => head.authority = text,
                "scheme" => head.scheme = text,
                "status" => status = text.parse().ok(),
                _ => {}
            }
            continue;
        }
        if let (Ok(name), Ok(value)) = (
            HeaderName::from_bytes(h.key.as_bytes()),
            HeaderValue::from_bytes(raw),
        ) {
            map.append(name, value);
        }
    }
    if head.authority.is_empty() {
        if let Some(host) = map.get(http::header::HOST).and_then(|v| v.to_str().ok()) {
            head.authority = host.to_string();
        }
    }
    (head, map, status)
}

/// A header mutation expressing `diff`, with values in `raw_value` (Envoy drops
/// string-only values). `None` when nothing changed.
pub fn mutation(diff: &HeaderDiff) -> Option<HeaderMutation> {
    if diff.is_empty() {
        return None;
    }
    let mut set_headers = Vec::new();
    for (name, values) in &diff.set {
        for (i, value) in values.iter().enumerate() {
            let action = if i == 0 {
                HeaderAppendAction::OverwriteIfExistsOrAdd
            } else {
                HeaderAppendAction::AppendIfExistsOrAdd
            };
            // Envoy's ext_proc (1.40 included) reads only the deprecated `append` flag,
            // defaulting to false (overwrite), and ignores `append_action`: without it
            // each value after the first replaces the one before.
            #[allow(deprecated)]
            set_headers.push(HeaderValueOption {
                header: Some(ProtoHeaderValue {
                    key: name.as_str().to_string(),
                    value: String::new(),
                    raw_value: value.as_bytes().to_vec(),
                }),
                append: Some(BoolValue { value: i > 0 }),
                append_action: action as i32,
                keep_empty_value: true,
            });
        }
    }
    Some(HeaderMutation {
        set_headers,
        remove_headers: diff.remove.iter().map(|n| n.as_str().to_string()).collect(),
    })
}

/// An `ImmediateResponse` carrying a local reply.
pub fn immediate(reply: &LocalReply) -> ImmediateResponse {
    let set: Vec<(HeaderName, Vec<HeaderValue>)> = reply
        .headers
        .keys()
        .map(|k| {
            (
                k.clone(),
                reply.headers.get_all(k).iter().cloned().collect(),
            )
        })
        .collect();
    ImmediateResponse {
        status: Some(HttpStatus {
            code: i32::from(reply.status.as_u16()),
        }),
        headers: mutation(&HeaderDiff {
            remove: Vec::new(),
            set,
        }),
        body: reply.body.to_vec(),
        grpc_status: None,
        details: reply.details.clone(),
    }
}

/// Dynamic metadata in Envoy's form: one `Struct` per namespace inside a `Struct`.
pub fn metadata(
    md: &BTreeMap<String, serde_json::Map<String, serde_json::Value>>,
) -> Option<Struct> {
    if md.is_empty() {
        return None;
    }
    let fields = md
        .iter()
        .map(|(ns, entries)| {
            let inner = entries
                .iter()
                .map(|(k, v)| (k.clone(), to_proto(v)))
                .collect();
            (
                ns.clone(),
                Value {
                    kind: Some(Kind::StructValue(Struct { fields: inner })),
                },
            )
        })
        .collect();
    Some(Struct { fields })
}

fn to_proto(v: &serde_json::Value) -> Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or(0.0)),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(ListValue {
            values: items.iter().map(to_proto).collect(),
        }),
        J::Object(map) => Kind::StructValue(Struct {
            fields: map.iter().map(|(k, v)| (k.clone(), to_proto(v))).collect(),
        }),
    };
    Value { kind: Some(kind) }
}

/// The verified JWT claims Envoy's `jwt_authn` filter forwarded (its namespace must be
/// in the ext_proc filter's `metadata_options.forwarding_namespaces`): the first struct
/// it holds, which is the payload stored under `payload_in_metadata`.
pub fn jwt_claims(
    md: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
) -> Option<serde_json::Value> {
    let ns = md?.filter_metadata.get("envoy.filters.http.jwt_authn")?;
    ns.fields.values().find_map(|v| match &v.kind {
        Some(Kind::StructValue(s)) => Some(from_proto_struct(s)),
        _ => None,
    })
}

/// The endpoint subset hint of the Gateway API Inference Extension protocol:
/// `filter_metadata["envoy.lb.subset_hint"]["x-gateway-destination-endpoint-subset"]`,
/// a list of `ip:port` strings or one comma-separated string. `Some(empty)` when the
/// hint is present but names nothing (the picker then answers 503).
pub fn endpoint_subset(
    md: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
) -> Option<Vec<String>> {
    let ns = md?.filter_metadata.get("envoy.lb.subset_hint")?;
    let value = ns.fields.get("x-gateway-destination-endpoint-subset")?;
    let split = |s: &str| -> Vec<String> {
        s.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(str::to_string)
            .collect()
    };
    Some(match &value.kind {
        Some(Kind::StringValue(s)) => split(s),
        Some(Kind::ListValue(l)) => l
            .values
            .iter()
            .filter_map(|v| match &v.kind {
                Some(Kind::StringValue(s)) => Some(split(s)),
                _ => None,
            })
            .flatten()
            .collect(),
        _ => Vec::new(),
    })
}

/// The endpoint that served the request, as the gateway reports it on the response path:
/// `filter_metadata["envoy.lb"]["x-gateway-destination-endpoint-served"]`.
pub fn served_endpoint(
    md: Option<&envoy_types::pb::envoy::config::core::v3::Metadata>,
) -> Option<String> {
    let ns = md?.filter_metadata.get("envoy.lb")?;
    match &ns.fields.get("x-gateway-destination-endpoint-served")?.kind {
        Some(Kind::StringValue(s)) if !s.trim().is_empty() => Some(s.trim().to_string()),
        _ => None,
    }
}

fn from_proto_struct(s: &Struct) -> serde_json::Value {
    serde_json::Value::Object(
        s.fields
            .iter()
            .map(|(k, v)| (k.clone(), from_proto(v)))
            .collect(),
    )
}

fn from_proto(v: &Value) -> serde_json::Value {
    match &v.kind {
        None | Some(Kind::NullValue(_)) => serde_json::Value::Null,
        Some(Kind::BoolValue(b)) => serde_json::Value::Bool(*b),
        Some(Kind::NumberValue(n)) => serde_json::json!(n),
        Some(Kind::StringValue(s)) => serde_json::Value::String(s.clone()),
        Some(Kind::ListValue(l)) => {
            serde_json::Value::Array(l.values.iter().map(from_proto).collect())
        }
        Some(Kind::StructValue(s)) => from_proto_struct(s),
    }
}

/// A string attribute Envoy forwarded (e.g. `xds.route_name`), looked up in the
/// per-filter attribute structs of a request.
pub fn attribute<'a>(
    attributes: &'a std::collections::HashMap<String, Struct>,
    name: &str,
) -> Option<&'a str> {
    attributes.values().find_map(|s| match s.fields.get(name) {
        Some(Value {
            kind: Some(Kind::StringValue(v)),
        }) if !v.is_empty() => Some(v.as_str()),
        _ => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hv(k: &str, raw: &str) -> ProtoHeaderValue {
        ProtoHeaderValue {
            key: k.into(),
            value: String::new(),
            raw_value: raw.as_bytes().to_vec(),
        }
    }

    #[test]
    fn splits_pseudo_headers_and_reads_raw_values() {
        let proto = ProtoHeaderMap {
            headers: vec![
                hv(":method", "POST"),
                hv(":path", "/v1/chat?x=1"),
                hv(":authority", "api.local"),
                hv("x-a", "1"),
                hv("x-a", "2"),
                ProtoHeaderValue {
                    key: "x-str".into(),
                    value: "s".into(),
                    raw_value: Vec::new(),
                },
            ],
        };
        let (head, map, status) = split_headers(Some(&proto));
        assert_eq!(head.method, "POST");
        assert_eq!(head.path_only(), "/v1/chat");
        assert_eq!(head.authority, "api.local");
        assert_eq!(map.get_all("x-a").iter().count(), 2);
        assert_eq!(map["x-str"], "s");
        assert_eq!(status, None);
    }

    #[test]
    fn mutation_uses_raw_value_and_overwrite_then_append() {
        let diff = HeaderDiff {
            remove: vec![HeaderName::from_static("gone")],
            set: vec![(
                HeaderName::from_static("x"),
                vec![HeaderValue::from_static("1"), HeaderValue::from_static("2")],
            )],
        };
        let m = mutation(&diff).unwrap();
        assert_eq!(m.remove_headers, vec!["gone"]);
        assert_eq!(m.set_headers.len(), 2);
        let first = &m.set_headers[0];
        assert_eq!(first.header.as_ref().unwrap().raw_value, b"1");
        assert!(first.header.as_ref().unwrap().value.is_empty());
        assert_eq!(
            first.append_action,
            HeaderAppendAction::OverwriteIfExistsOrAdd as i32
        );
        assert_eq!(
            m.set_headers[1].append_action,
            HeaderAppendAction::AppendIfExistsOrAdd as i32
        );
        #[allow(deprecated)]
        let appends: Vec<_> = m
            .set_headers
            .iter()
            .map(|h| h.append.map(|b| b.value))
            .collect();
        assert_eq!(
            appends,
            vec![Some(false), Some(true)],
            "the flag Envoy's ext_proc reads"
        );
        assert!(mutation(&HeaderDiff::default()).is_none());
    }

    #[test]
    fn jwt_claims_come_from_jwt_authn_metadata() {
        use envoy_types::pb::envoy::config::core::v3::Metadata;
        let claims = Struct {
            fields: [(
                "sub".to_string(),
                Value {
                    kind: Some(Kind::StringValue("alice".into())),
                },
            )]
            .into_iter()
            .collect(),
        };
        let ns = Struct {
            fields: [(
                "jwt_payload".to_string(),
                Value {
                    kind: Some(Kind::StructValue(claims)),
                },
            )]
            .into_iter()
            .collect(),
        };
        let md = Metadata {
            filter_metadata: [("envoy.filters.http.jwt_authn".to_string(), ns)]
                .into_iter()
                .collect(),
            ..Default::default()
        };
        assert_eq!(jwt_claims(Some(&md)).unwrap()["sub"], "alice");
        assert!(jwt_claims(None).is_none());
    }

    #[test]
    fn metadata_nests_namespaces() {
        let mut md = BTreeMap::new();
        md.entry("ns".to_string())
            .or_insert_with(serde_json::Map::new)
            .insert("k".into(), serde_json::json!(3));
        let s = metadata(&md).unwrap();
        match &s.fields["ns"].kind {
            Some(Kind::StructValue(inner)) => {
                assert_eq!(inner.fields["k"].kind, Some(Kind::NumberValue(3.0)))
            }
            other => panic!("{other:?}"),
        }
    }
}
