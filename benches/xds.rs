//! xDS hot paths, on a config of 1,000 routes over 100 backends in one bind (each route
//! with its own path prefix and token accounting):
//! - `xds/generate`: the snapshot of that config (`xds::generate::fleet`: 1 listener,
//!   1 route configuration with 1,000 routes, 101 clusters, 100 endpoint assignments,
//!   each encoded and hashed) — what every applied reload adds;
//! - `xds/publish unchanged`: generating it again and finding it equal to the one
//!   served (a reload that changes nothing Envoy sees: no push);
//! - baseline in the same run: `Pipeline::build` of the same config, which every reload
//!   already pays.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, Criterion};
use tollgate::config::parse_str;
use tollgate::pipeline::Pipeline;
use tollgate::services::Services;
use tollgate::xds::{generate, Xds};

/// A config of `routes` routes over `backends` backends.
pub fn config_text(routes: usize, backends: usize) -> String {
    let mut text = String::from(
        "extProc: { address: \"127.0.0.1:50051\" }\nxds: {}\nbinds:\n- port: 10000\n  listeners:\n  - routes:\n",
    );
    for r in 0..routes {
        text.push_str(&format!(
            "    - name: r{r}\n      matches: [ {{ path: {{ pathPrefix: /v1/t{r} }} }} ]\n      policies: {{ tokenAccounting: {{}} }}\n      backends: [ {{ host: \"127.0.0.1:{}\" }} ]\n",
            20000 + r % backends
        ));
    }
    text
}

fn xds(c: &mut Criterion) {
    let text = config_text(1000, 100);
    let config = parse_str(&text).unwrap().config;
    let fleet = generate::fleet(&config).unwrap();
    assert_eq!(
        fleet
            .default
            .resources(tollgate::xds::snapshot::CLUSTER)
            .items
            .len(),
        101
    );
    let xds = Xds::new(Arc::new(tollgate::metrics::Metrics::new()));
    assert!(xds.publish(&config).unwrap());

    let mut g = c.benchmark_group("xds");
    g.sample_size(30);
    g.bench_function("Pipeline::build, 1000 routes (baseline)", |b| {
        let services = Services::new();
        b.iter(|| Pipeline::build(parse_str(black_box(&text)).unwrap(), services.clone()).unwrap())
    });
    g.bench_function("generate, 1000 routes / 100 clusters", |b| {
        b.iter(|| generate::fleet(black_box(&config)).unwrap())
    });
    g.bench_function("publish unchanged, 1000 routes", |b| {
        b.iter(|| assert!(!xds.publish(black_box(&config)).unwrap()))
    });
    g.finish();
}

criterion_group!(benches, xds);
criterion_main!(benches);
