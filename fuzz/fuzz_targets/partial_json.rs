//! A JSON body scanned as it arrives (`llm::partial`), cut into pieces of the size the
//! first byte says: nothing panics; a scan that lost the structure closes nothing; every
//! cut of a body that is JSON stays followable and closes into JSON, and its `model` is
//! the body's once the scan has passed it.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::llm::partial::PartialJson;

fuzz_target!(|data: &[u8]| {
    let Some((&piece, body)) = data.split_first() else {
        return;
    };
    let piece = usize::from(piece % 16) + 1;
    let whole = serde_json::from_slice::<serde_json::Value>(body).is_ok();
    let model = serde_json::from_slice::<serde_json::Value>(body)
        .ok()
        .and_then(|v| v.get("model").and_then(|m| m.as_str()).map(str::to_owned));
    let mut scan = PartialJson::new();
    let mut seen = 0;
    for chunk in body.chunks(piece) {
        scan.push(chunk);
        seen += chunk.len();
        let closed = scan.close(&body[..seen]);
        if scan.lost() {
            assert!(closed.is_none(), "a lost scan closed");
            assert!(!whole, "a JSON body lost its scan");
            return;
        }
        if let (Some(closed), true) = (closed, whole) {
            let part = serde_json::from_slice::<serde_json::Value>(&closed);
            assert!(part.is_ok(), "a cut of a JSON body closed into bad JSON: {closed:?}");
        }
    }
    // Compared where both readings must agree: no escapes (a key can be spelt with
    // them) and one `"model"` (serde_json keeps the last of duplicate keys, the scan the
    // first).
    let plain = !body.contains(&b'\\');
    if whole && plain && model.as_deref().is_some_and(|m| m.len() <= 1024) {
        let keys = body.windows(7).filter(|w| w == b"\"model\"").count();
        if keys == 1 {
            assert_eq!(scan.model(), model.as_deref(), "the scan's model");
        }
    }
});
