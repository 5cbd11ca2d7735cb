//! Plausible chat text with sparse entities, for throughput benchmarks.

use super::{Corpus, XorShift};

/// Prose vocabulary, space-separated.
const WORDS: &str = "\
    the a to and of in is for that it with on as you can be this are we have not or by \
    from at but your will an if which would there their about when what so model prompt \
    answer question request response function context customer invoice refund account \
    order shipping delivery support please thanks summary report meeting schedule \
    project deadline explain example code error message server database query table user \
    team manager policy document paragraph translate rewrite shorter longer formal \
    friendly quickly carefully because however therefore although maybe probably \
    definitely yesterday tomorrow weekly quarterly budget forecast revenue growth \
    latency throughput cache token stream gateway proxy guard mask email phone number \
    Kubernetes Envoy Rust Python JSON API HTTP OpenAI Claude GPT café naïve résumé \
    Zürich São Paulo über straße 日本 データ";

const CODE: &[&str] = &[
    "`let x = vec![1, 2, 3];`",
    "`fn main() {}`",
    "`SELECT * FROM orders WHERE id = 42;`",
    "`curl -s https://api.example.com/v1/models`",
    "`kubectl get pods -n prod`",
    "`std::collections::HashMap`",
    "`x += 1`",
];

/// About `bytes` of chat text from `seed`: paragraphs of prose with numbers, inline code
/// and, every forty sentences or so, a corpus sentence with an entity or a look-alike.
pub fn chat_text(seed: u64, bytes: usize) -> String {
    let mut rng = XorShift::new(seed);
    let words: Vec<&str> = WORDS.split_whitespace().collect();
    let corpus = Corpus::generate(seed ^ 0x5eed, 256);
    let mut out = String::with_capacity(bytes + 256);
    while out.len() < bytes {
        for _ in 0..rng.range(3, 6) {
            if rng.chance(2) {
                out.push_str(&corpus.samples[rng.below(256) as usize].text);
                out.push(' ');
                continue;
            }
            let n = rng.range(6, 18);
            for k in 0..n {
                let mut w = (*rng.pick(&words)).to_string();
                if k == 0 {
                    w = capitalise(&w);
                }
                out.push_str(&w);
                match rng.below(40) {
                    0 => out.push_str(&format!(" {}", rng.range(2, 99))),
                    1 => out.push_str(&format!(" in {}", rng.range(1990, 2030))),
                    2 => out.push_str(&format!(" ({}%)", rng.range(1, 100))),
                    3 => out.push_str(&format!(" {}", rng.pick(CODE))),
                    4 => out.push(','),
                    _ => {}
                }
                if k + 1 < n {
                    out.push(' ');
                }
            }
            let end: &&str = rng.pick(&[". ", ". ", ". ", "? ", "! ", ": "]);
            out.push_str(end);
        }
        out.push_str("\n\n");
    }
    out
}

fn capitalise(w: &str) -> String {
    let mut c = w.chars();
    match c.next() {
        Some(f) => f.to_uppercase().chain(c).collect(),
        None => String::new(),
    }
}
