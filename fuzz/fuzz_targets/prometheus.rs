//! The Prometheus text reader the endpoint picker scrapes with: every value it reports
//! is finite, and line endings (`\n` or `\r\n`), a trailing newline and comment lines do
//! not change what it reads.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::epp::metrics::{parse, Scrape};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let scrape = parse(text);
    if let Some(s) = &scrape {
        check(s);
    }
    if !text.contains('\r') {
        assert_eq!(parse(&text.replace('\n', "\r\n")), scrape, "CRLF differs");
    }
    let commented = format!("# HELP x y\n# TYPE x gauge\n{text}\n\n# EOF\n");
    assert_eq!(parse(&commented), scrape, "comments differ");
});

fn check(s: &Scrape) {
    let m = &s.metrics;
    for (name, v) in [
        ("waiting", m.waiting),
        ("running", m.running),
        ("kv", m.kv_cache),
    ] {
        assert!(v.is_finite(), "{name} = {v}");
    }
    if let Some(c) = &s.cache_config {
        assert!(c.block_size > 0 && c.num_gpu_blocks > 0);
    }
}
