//! Detection-quality corpus: a seeded generator of chat-like sentences with labelled
//! entities of every built-in type (valid, with correct checksums) and unlabelled
//! look-alikes (Luhn-invalid cards, SSNs in forbidden ranges, versions, dates, order ids,
//! non-secret `sk-` words, …), and the precision / recall evaluation over it.
//!
//! Depends on nothing in the crate so that `benches/guard_quality.rs` and
//! `benches/guard.rs` can include it with `#[path]`; in the library it is compiled for
//! tests only. Entity kinds are the built-ins' stable names.

// Explicit paths: the benches load this file with `#[path]`, which would otherwise look
// for these next to it rather than in `quality/`.
#[path = "quality/entities.rs"]
mod entities;
#[path = "quality/negatives.rs"]
mod negatives;
#[path = "quality/prose.rs"]
mod prose;

use std::fmt::Write as _;

pub use prose::chat_text;

/// Every entity kind the corpus labels: the built-in detector names.
pub const KINDS: [&str; 15] = [
    "email",
    "phone",
    "ssn",
    "credit_card",
    "iban",
    "ipv4",
    "ipv6",
    "aws_access_key_id",
    "github_token",
    "gitlab_token",
    "slack_token",
    "openai_api_key",
    "anthropic_api_key",
    "jwt",
    "private_key",
];

/// xorshift64*: small, seeded, good enough for test data.
pub struct XorShift(u64);

impl XorShift {
    pub fn new(seed: u64) -> Self {
        XorShift(seed.max(1))
    }

    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    /// Uniform in `0..n` (n > 0).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// In `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    pub fn pick<'a, T>(&mut self, xs: &'a [T]) -> &'a T {
        &xs[self.below(xs.len() as u64) as usize]
    }

    /// True with probability `percent` / 100.
    pub fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    /// `n` characters drawn from `alphabet`.
    pub fn string(&mut self, alphabet: &[u8], n: usize) -> String {
        (0..n).map(|_| *self.pick(alphabet) as char).collect()
    }

    pub fn digits(&mut self, n: usize) -> String {
        self.string(b"0123456789", n)
    }
}

/// One labelled entity: `text[start..end]` is a `kind`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Label {
    pub kind: &'static str,
    pub start: usize,
    pub end: usize,
}

/// A sentence and its labels.
#[derive(Clone, Debug)]
pub struct Sample {
    pub text: String,
    pub labels: Vec<Label>,
}

/// The generated sentences.
pub struct Corpus {
    pub samples: Vec<Sample>,
}

const TEMPLATES: &[&str] = &[
    "Hi, my details are {} — can you help me with the refund?",
    "Please update the record to {} before Friday.",
    "{} is what the customer wrote in the ticket.",
    "I tried {} but the assistant said it was invalid.",
    "Summarize this: the user ({}) reported an outage at 3pm.",
    "Note: {}",
    "Ça marche, envoyez tout à {} s'il vous plaît.",
    "请把结果发到 {} 谢谢。",
    "« {} » était dans le message d'erreur.",
    "The log line was: [{}] and then nothing.",
    "Can you check whether {} shows up in last week's export?",
    "Forwarding this from Jürgen: {}\nThanks!",
    "{\"customer\": \"{}\", \"priority\": \"high\"}",
    "**Contact:** `{}`",
    "- {}\n- and the second item",
    "<td>{}</td>",
    "Reply with only the value: '{}'",
];

const PAIR_TEMPLATES: &[&str] = &[
    "Contact {} or, if that fails, {} after 5pm.",
    "Old value {}; new value {}.",
    "Both {} and {} appear in the config dump.",
];

impl Corpus {
    /// `n` sentences from `seed`: half carry one entity, 30 % only a look-alike, 10 % an
    /// entity and a look-alike, 10 % two entities. The entity kinds take turns.
    pub fn generate(seed: u64, n: usize) -> Corpus {
        let mut rng = XorShift::new(seed);
        let mut samples = Vec::with_capacity(n);
        for k in 0..n {
            // Cycle through the kinds so every kind gets its share whatever `n` is.
            let kind = KINDS[k % KINDS.len()];
            let mut slots: Vec<Slot> = Vec::new();
            let entity = |kind, rng: &mut XorShift| {
                let (text, at) = entities::generate(kind, rng);
                Slot {
                    text,
                    label: Some((kind, at)),
                }
            };
            let negative = |rng: &mut XorShift| Slot {
                text: negatives::generate(rng),
                label: None,
            };
            match rng.below(10) {
                0..=4 => slots.push(entity(kind, &mut rng)),
                5..=7 => slots.push(negative(&mut rng)),
                8 => {
                    slots.push(entity(kind, &mut rng));
                    slots.push(negative(&mut rng));
                }
                _ => {
                    let other = *rng.pick(&KINDS);
                    slots.push(entity(kind, &mut rng));
                    slots.push(entity(other, &mut rng));
                }
            }
            if slots.len() == 2 && rng.chance(50) {
                slots.swap(0, 1);
            }
            let template = if slots.len() == 1 {
                *rng.pick(TEMPLATES)
            } else {
                *rng.pick(PAIR_TEMPLATES)
            };
            samples.push(fill(template, &slots));
        }
        Corpus { samples }
    }

    /// The samples joined into `count` documents (for streaming tests).
    pub fn documents(&self, count: usize) -> Vec<String> {
        let per = self.samples.len().div_ceil(count.max(1)).max(1);
        self.samples
            .chunks(per)
            .map(|c| {
                c.iter()
                    .map(|s| s.text.as_str())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .collect()
    }
}

/// Text for one `{}` of a template; a labelled entity starts `at` bytes into it.
struct Slot {
    text: String,
    label: Option<(&'static str, usize)>,
}

fn fill(template: &str, slots: &[Slot]) -> Sample {
    let mut text = String::new();
    let mut labels = Vec::new();
    let mut parts = template.split("{}");
    text.push_str(parts.next().unwrap_or(""));
    for (slot, part) in slots.iter().zip(parts) {
        let start = text.len();
        text.push_str(&slot.text);
        if let Some((kind, at)) = slot.label {
            labels.push(Label {
                kind,
                start: start + at,
                end: text.len(),
            });
        }
        text.push_str(part);
    }
    Sample { text, labels }
}

/// Precision and recall counts of one kind.
#[derive(Clone, Debug, Default)]
pub struct Row {
    pub kind: &'static str,
    pub true_pos: usize,
    pub false_pos: usize,
    pub false_neg: usize,
}

impl Row {
    pub fn precision(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_pos)
    }

    pub fn recall(&self) -> f64 {
        ratio(self.true_pos, self.true_pos + self.false_neg)
    }
}

fn ratio(a: usize, b: usize) -> f64 {
    if b == 0 {
        1.0
    } else {
        a as f64 / b as f64
    }
}

/// Scores `detect` (which returns `(kind, start, end)` findings) against the labels. A
/// finding counts only if kind and span are exactly a label's.
pub fn evaluate<F>(corpus: &Corpus, mut detect: F) -> Vec<Row>
where
    F: FnMut(&str) -> Vec<(String, usize, usize)>,
{
    let mut rows: Vec<Row> = KINDS
        .iter()
        .map(|&kind| Row {
            kind,
            ..Row::default()
        })
        .collect();
    let row_of = |kind: &str| KINDS.iter().position(|k| *k == kind);
    for sample in &corpus.samples {
        let found = detect(&sample.text);
        for (kind, start, end) in &found {
            let hit = sample
                .labels
                .iter()
                .any(|l| l.kind == kind && l.start == *start && l.end == *end);
            if let Some(r) = row_of(kind) {
                if hit {
                    rows[r].true_pos += 1;
                } else {
                    rows[r].false_pos += 1;
                }
            }
        }
        for l in &sample.labels {
            let hit = found
                .iter()
                .any(|(k, s, e)| k == l.kind && *s == l.start && *e == l.end);
            if !hit {
                rows[row_of(l.kind).expect("labels use known kinds")].false_neg += 1;
            }
        }
    }
    rows
}

/// The rows as a Markdown table.
pub fn table(rows: &[Row]) -> String {
    let mut t = String::from(
        "| detector | labels | found | true pos | false pos | false neg | precision | recall |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for r in rows {
        let _ = writeln!(
            t,
            "| {} | {} | {} | {} | {} | {} | {:.4} | {:.4} |",
            r.kind,
            r.true_pos + r.false_neg,
            r.true_pos + r.false_pos,
            r.true_pos,
            r.false_pos,
            r.false_neg,
            r.precision(),
            r.recall()
        );
    }
    t
}

/// Near-misses of every detector, repeated to `bytes`: grouped digits one short of a card,
/// bare `@`s, token prefixes without bodies, PEM BEGIN lines without END, colons, long
/// runs. Every detector triggers constantly. Pieces are joined with `sep`: with a space
/// nothing matches; with nothing, neighbours sometimes complete each other into a match.
pub fn hostile(bytes: usize, sep: &str) -> String {
    const PIECES: &[&str] = &[
        "1111-1111-1111-111 ",
        "a@",
        "a@b.",
        "AKIA",
        "AKIAAAAAAAAAAAAAAAA ",
        "+1 (",
        "(415) 555-",
        "-----BEGIN RSA PRIVATE KEY-----\n",
        "-----END ",
        "eyJ",
        "eyJhbGciOiJIUzI1NiJ9.",
        "ghp_",
        "github_pat_",
        "sk-",
        "sk-ant-",
        "glpat-",
        "xoxb-1-",
        "::",
        "1:2:3:4:5:6:7:",
        "DE89 3704 ",
        "GB29NWBK",
        "1.1.1.",
        "999.999.999.999 ",
        "123-45-",
        "SSN 12345678 ",
        "4111111111111112 ",
        "x.y.z@",
        "..@..",
        "\u{00e9}@\u{00e9}.",
    ];
    let mut rng = XorShift::new(0xbad_c0de);
    let mut out = String::with_capacity(bytes + 64);
    while out.len() < bytes {
        match rng.below(40) {
            0 => out.push_str(&"7".repeat(rng.range(20, 300) as usize)),
            1 => out.push_str(&"a".repeat(rng.range(60, 400) as usize)),
            2 => out.push_str(&"ab.".repeat(rng.range(20, 120) as usize)),
            3 => out.push_str(&"-".repeat(rng.range(2, 12) as usize)),
            _ => out.push_str(rng.pick::<&str>(PIECES)),
        }
        out.push_str(sep);
    }
    out
}
