//! tollgate's own xDS resource type, `tollgate.config.v1.Config` (see
//! `proto/tollgate/config/v1/config.proto`): a whole tollgate configuration as YAML,
//! named. A tollgate control plane serves the entries of `xds.configs` as these; a
//! sidecar started with `--from-xds` subscribes to one by name.

/// The types of `proto/tollgate/config/v1/config.proto`, as prost-build writes them
/// (`build.rs`).
pub mod v1 {
    #![allow(clippy::all, missing_docs)]
    include!(concat!(env!("OUT_DIR"), "/tollgate.config.v1.rs"));
}

/// `tollgate.config.v1.Config`.
pub use v1::Config as TollgateConfig;

#[cfg(test)]
mod tests {
    use super::*;
    use prost::Message;

    /// The generated type reads and writes the wire format the .proto gives, under the
    /// type URL the snapshot serves.
    #[test]
    fn the_generated_type_is_the_served_resource() {
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
        assert_eq!(
            <TollgateConfig as prost::Name>::type_url(),
            crate::xds::snapshot::TOLLGATE_CONFIG
        );
    }
}
