//! Detection quality of the built-in guard detectors: precision and recall per detector
//! on a generated corpus (sentences with labelled entities of every type and look-alike
//! negatives), printed as a Markdown table. Not a timing benchmark (`harness = false`).
//!
//! `cargo bench --bench guard_quality [-- SENTENCES [SEED]]`

// Shared with the library's tests and `benches/guard.rs`; each uses a part of it.
#[allow(dead_code, unused_imports)]
#[path = "../src/guard/quality.rs"]
mod quality;

use tollgate::guard::{RuleSet, Scanner};

fn main() {
    // `cargo bench` passes `--bench`; numbers are ours.
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.parse().ok())
        .collect();
    let sentences = args.first().copied().unwrap_or(30_000) as usize;
    let seed = args.get(1).copied().unwrap_or(2024);
    let corpus = quality::Corpus::generate(seed, sentences);
    let scanner = Scanner::new(&RuleSet::all_builtins()).expect("built-ins compile");
    let rows = quality::evaluate(&corpus, |text| {
        scanner
            .scan(text)
            .iter()
            .map(|f| (scanner.rule(f.rule).name.clone(), f.start, f.end))
            .collect()
    });
    let bytes: usize = corpus.samples.iter().map(|s| s.text.len()).sum();
    println!("guard detection quality: {sentences} sentences ({bytes} bytes), seed {seed}\n");
    println!("{}", quality::table(&rows));
    let failing: Vec<_> = rows
        .iter()
        .filter(|r| r.recall() < 0.99 || r.precision() < 0.95)
        .map(|r| r.kind)
        .collect();
    if failing.is_empty() {
        println!("target recall >= 0.99 and precision >= 0.95: met for every detector");
    } else {
        println!("target recall >= 0.99 and precision >= 0.95: NOT met for {failing:?}");
    }
}
