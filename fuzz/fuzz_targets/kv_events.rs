//! vLLM's KV-event payloads as the endpoint picker decodes them: nothing panics; a
//! batch that decodes, re-encoded in vLLM's array form (the simulator's encoder),
//! decodes to the same events; and applying it to a small exact index keeps the index
//! within its bound.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tollgate::epp::kv_events::decode::decode_batch;
use tollgate::epp::kv_events::index::BlockIndex;
use tollgate::sim::kv_publish::encode_batch;

fuzz_target!(|data: &[u8]| {
    let Ok(batch) = decode_batch(data) else {
        return;
    };
    let again = encode_batch(&batch.events, batch.ts).expect("a decoded batch encodes");
    let back = decode_batch(&again).expect("the re-encoded batch decodes");
    assert_eq!(back.events, batch.events, "the array form round-trips");
    let mut index = BlockIndex::new(8);
    for e in &batch.events {
        index.apply(e);
        assert!(index.len() <= 8, "the index outgrew its bound");
    }
});
