//! Detection quality on a small generated corpus: recall ≥ 0.99 and precision ≥ 0.95 for
//! every built-in (`cargo bench --bench guard_quality` prints the table on a larger one).

use super::quality::{chat_text, evaluate, table, Corpus, KINDS};
use super::{RuleSet, Scanner};

fn scanner() -> Scanner {
    Scanner::new(&RuleSet::all_builtins()).unwrap()
}

#[test]
fn recall_and_precision_per_builtin() {
    let s = scanner();
    let corpus = Corpus::generate(42, 3000);
    let rows = evaluate(&corpus, |text| {
        s.scan(text)
            .iter()
            .map(|f| (s.rule(f.rule).name.clone(), f.start, f.end))
            .collect()
    });
    let t = table(&rows);
    for r in &rows {
        assert!(
            r.true_pos + r.false_neg >= 50,
            "too few {} labels\n{t}",
            r.kind
        );
        assert!(
            r.recall() >= 0.99,
            "{} recall {:.4}\n{t}",
            r.kind,
            r.recall()
        );
        assert!(
            r.precision() >= 0.95,
            "{} precision {:.4}\n{t}",
            r.kind,
            r.precision()
        );
    }
    assert_eq!(rows.len(), KINDS.len());
}

#[test]
fn generated_chat_text_masks_to_valid_text() {
    let s = scanner();
    let text = chat_text(1, 64 * 1024);
    assert!(text.len() >= 64 * 1024);
    let findings = s.scan(&text);
    assert!(
        !findings.is_empty() && findings.len() < 200,
        "{} findings",
        findings.len()
    );
    let masked = s.mask(&text);
    assert!(masked.len() < text.len());
    assert!(s.scan(&masked).is_empty(), "placeholders are not findings");
}
