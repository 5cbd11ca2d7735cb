//! tollgate's own xDS resource type, `tollgate.config.v1.Config` (see
//! `proto/tollgate/config/v1/config.proto`): a whole tollgate configuration as YAML,
//! named. A tollgate control plane serves the entries of `xds.configs` as these; a
//! sidecar started with `--from-xds` subscribes to one by name.

/// `tollgate.config.v1.Config`.
#[derive(Clone, PartialEq, Eq, prost::Message)]
pub struct TollgateConfig {
    /// The resource name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// The configuration, as a config file holds it.
    #[prost(string, tag = "2")]
    pub yaml: String,
}

impl prost::Name for TollgateConfig {
    const NAME: &'static str = "Config";
    const PACKAGE: &'static str = "tollgate.config.v1";

    fn full_name() -> String {
        "tollgate.config.v1.Config".into()
    }

    fn type_url() -> String {
        super::snapshot::TOLLGATE_CONFIG.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The derive's field numbers and types are the .proto's.
    #[test]
    fn fields_agree_with_the_proto_file() {
        let proto = include_str!("../../proto/tollgate/config/v1/config.proto");
        assert!(proto.contains("package tollgate.config.v1;"));
        assert!(proto.contains("message Config {"));
        assert!(proto.contains("string name = 1;"));
        assert!(proto.contains("string yaml = 2;"));
        let c = TollgateConfig {
            name: "n".into(),
            yaml: "y".into(),
        };
        // Field 1, wire type 2 (0x0a); field 2, wire type 2 (0x12).
        assert_eq!(c.encode_to_vec(), [0x0a, 1, b'n', 0x12, 1, b'y']);
        assert_eq!(
            <TollgateConfig as prost::Name>::type_url(),
            "type.googleapis.com/tollgate.config.v1.Config"
        );
    }
}
