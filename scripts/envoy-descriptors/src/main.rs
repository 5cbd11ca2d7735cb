//! `envoy-descriptors TYPES_BIN OUT`: the FileDescriptorSet in TYPES_BIN trimmed to the
//! files the message types in ROOTS need (transitively), without source code info,
//! written gzipped to OUT.

use std::collections::BTreeSet;
use std::io::Write;

use prost::Message;
use prost_reflect::DescriptorPool;

/// Every message type tollgate's xDS generator packs into a resource or an `Any`.
const ROOTS: &[&str] = &[
    "envoy.config.cluster.v3.Cluster",
    "envoy.config.endpoint.v3.ClusterLoadAssignment",
    "envoy.config.listener.v3.Listener",
    "envoy.config.route.v3.RouteConfiguration",
    "envoy.config.core.v3.TypedExtensionConfig",
    "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
    "envoy.extensions.filters.http.ext_proc.v3.ExternalProcessor",
    "envoy.extensions.filters.http.router.v3.Router",
    "envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext",
    "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions",
    "envoy.extensions.load_balancing_policies.override_host.v3.OverrideHost",
    "envoy.extensions.load_balancing_policies.round_robin.v3.RoundRobin",
];

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let [_, input, output] = args.as_slice() else {
        eprintln!("usage: envoy-descriptors TYPES_BIN OUT");
        std::process::exit(2);
    };
    let bytes = std::fs::read(input).expect("reading the descriptor set");
    let pool = DescriptorPool::decode(bytes.as_slice()).expect("a FileDescriptorSet");
    let mut files = BTreeSet::new();
    let mut stack: Vec<_> = ROOTS
        .iter()
        .map(|r| {
            pool.get_message_by_name(r)
                .unwrap_or_else(|| panic!("{r} is not in {input}"))
                .parent_file()
        })
        .collect();
    while let Some(f) = stack.pop() {
        if files.insert(f.name().to_string()) {
            stack.extend(f.dependencies());
        }
    }
    let set = prost_types::FileDescriptorSet {
        file: pool
            .files()
            .filter(|f| files.contains(f.name()))
            .map(|f| {
                let mut p = f.file_descriptor_proto().clone();
                p.source_code_info = None;
                p
            })
            .collect(),
    };
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&set.encode_to_vec()).unwrap();
    std::fs::write(output, gz.finish().unwrap()).expect("writing the output");
    println!("{} files, {} types, written to {output}", set.file.len(), ROOTS.len());
}
