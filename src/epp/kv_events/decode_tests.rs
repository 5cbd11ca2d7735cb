use serde::Serialize;
use serde_json::json;

use super::*;

/// Bytes as msgpack `bin` (serde_json has no bytes).
struct Bin(Vec<u8>);

impl Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

fn pack<T: Serialize>(v: &T) -> Vec<u8> {
    rmp_serde::to_vec(v).unwrap()
}

fn stored(hashes: &[u64], parent: Option<u64>, tokens: &[u32]) -> BlockStored {
    BlockStored {
        block_hashes: hashes.to_vec(),
        parent_block_hash: parent,
        token_ids: tokens.to_vec(),
        block_size: 2,
        lora_id: None,
        medium: Some("GPU".into()),
        lora_name: None,
    }
}

#[test]
fn array_form_as_vllm_writes_it() {
    // [ts, [events…], dp rank] with array-like tagged events, as msgspec encodes them.
    let payload = pack(&json!([
        1.5,
        [
            [
                "BlockStored",
                [11, 12],
                null,
                [1, 2, 3, 4],
                2,
                null,
                "GPU",
                null,
                null,
                0
            ],
            ["BlockRemoved", [11], "GPU"],
            ["AllBlocksCleared"],
            // An older publisher: no medium, no lora_name.
            ["BlockStored", [13], 12, [5, 6], 2, null]
        ],
        0
    ]));
    let b = decode_batch(&payload).unwrap();
    assert_eq!(b.ts, 1.5);
    assert_eq!(b.data_parallel_rank, Some(0));
    let mut older = stored(&[13], Some(12), &[5, 6]);
    older.medium = None;
    assert_eq!(
        b.events,
        vec![
            Event::Stored(stored(&[11, 12], None, &[1, 2, 3, 4])),
            Event::Removed {
                block_hashes: vec![11],
                medium: Some("GPU".into())
            },
            Event::AllCleared,
            Event::Stored(older),
        ]
    );
    // Trailing defaults left out: no rank.
    let b = decode_batch(&pack(&json!([2, []]))).unwrap();
    assert_eq!((b.ts, b.events.len(), b.data_parallel_rank), (2.0, 0, None));
}

#[test]
fn map_form_with_named_fields() {
    let payload = pack(&json!([
        1.0,
        [
            {"type": "BlockStored", "block_hashes": [7], "parent_block_hash": 3,
             "token_ids": [9, 8], "block_size": 2, "lora_id": 4, "medium": "GPU",
             "lora_name": "sql", "extra_keys": [[1, "x"]], "group_idx": 0,
             "kv_cache_spec_kind": "full"},
            {"type": "BlockRemoved", "block_hashes": [7], "medium": null},
            {"type": "AllBlocksCleared"}
        ],
        null
    ]));
    let b = decode_batch(&payload).unwrap();
    let mut s = stored(&[7], Some(3), &[9, 8]);
    s.lora_id = Some(4);
    s.lora_name = Some("sql".into());
    assert_eq!(b.events[0], Event::Stored(s));
    assert_eq!(
        b.events[1],
        Event::Removed {
            block_hashes: vec![7],
            medium: None
        }
    );
    assert_eq!(b.events[2], Event::AllCleared);
    assert_eq!(b.data_parallel_rank, None);
}

#[test]
fn bytes_hashes_keep_their_last_eight_bytes() {
    let digest: Vec<u8> = (0u8..32).collect();
    let payload = pack(&(
        1.0,
        vec![(
            "BlockStored",
            vec![Bin(digest.clone()), Bin(vec![1, 2])],
            Some(Bin(vec![0xff; 8])),
            vec![1u32, 2, 3, 4],
            2u32,
        )],
        0,
    ));
    let b = decode_batch(&payload).unwrap();
    let Event::Stored(s) = &b.events[0] else {
        panic!("{:?}", b.events)
    };
    assert_eq!(
        s.block_hashes[0],
        u64::from_be_bytes(digest[24..].try_into().unwrap())
    );
    assert_eq!(s.block_hashes[1], 0x0102);
    assert_eq!(s.parent_block_hash, Some(u64::MAX));
}

#[test]
fn messages_need_three_frames_and_an_eight_byte_sequence() {
    let payload = pack(&json!([1.0, []]));
    let m = decode_message(&[&b""[..], &7u64.to_be_bytes(), &payload]).unwrap();
    assert_eq!(m.seq, 7);
    assert_eq!(
        decode_message(&[&b""[..], &payload]),
        Err(DecodeError::Frames(2))
    );
    assert_eq!(
        decode_message(&[&b"t"[..], &[0u8; 4], &payload]),
        Err(DecodeError::Sequence(4))
    );
}

#[test]
fn malformed_payloads_are_errors_never_panics() {
    let cases: Vec<Vec<u8>> = vec![
        vec![],
        b"not msgpack at all".to_vec(),
        vec![0xc1],                         // never-used byte
        vec![0xdd, 0xff, 0xff, 0xff, 0xff], // array claiming 4G items, none there
        vec![
            0x92, 0xcb, 0, 0, 0, 0, 0, 0, 0, 0, 0xdd, 0xff, 0xff, 0xff, 0xff,
        ], // 4G events
        vec![0x91; 100_000],                // deeply nested arrays
        pack(&json!({"ts": 1.0, "events": []})), // a map batch
        pack(&json!([1.0, [["BlockStolen", [1], null, [1, 2], 2]]])),
        pack(&json!([1.0, [["BlockStored", [1], null, [1, 2, 3], 2]]])), // tokens ≠ blocks
        pack(&json!([1.0, [["BlockStored", [1], null, [1, 2], 0]]])),    // block size 0
        pack(&json!([1.0, [["BlockStored", [1], null]]])),               // fields missing
        pack(&json!([1.0, [["BlockStored", "x", null, [1, 2], 2]]])),    // hashes not a list
        pack(&json!([1.0, [["BlockStored", [-1.5], null, [1, 2], 2]]])), // float hash
        pack(&json!([
            1.0,
            [["BlockStored", [1], null, [1, 99999999999i64], 1]]
        ])),
        pack(&json!([
            1.0,
            [["BlockStored", [1], null, [1], 99999999999i64]]
        ])),
        pack(&json!([1.0, [{"block_hashes": [1]}]])), // no tag
        pack(&json!([1.0, [{"type": "BlockRemoved"}]])),
        // {"type": "BlockRemoved", "type": "AllBlocksCleared"}: the tag twice.
        [
            &[0x92, 0x01, 0x91, 0x82, 0xa4][..],
            b"type",
            &[0xac],
            b"BlockRemoved",
            &[0xa4],
            b"type",
            &[0xb0],
            b"AllBlocksCleared",
        ]
        .concat(),
        pack(&json!([1.0, [[]]])),
        pack(&json!([1.0, [42]])),
        pack(&json!(["now", []])),
        pack(&json!([1.0])),
    ];
    for (i, c) in cases.iter().enumerate() {
        assert!(decode_batch(c).is_err(), "case {i} decoded: {c:?}");
    }
    assert_eq!(
        decode_batch(&vec![0u8; MAX_PAYLOAD + 1]),
        Err(DecodeError::TooLarge(MAX_PAYLOAD + 1))
    );
    let too_many = pack(&json!([
        1.0,
        [["BlockRemoved", vec![1; MAX_BLOCKS + 1], null]]
    ]));
    assert!(decode_batch(&too_many).is_err());
}

#[test]
fn mutated_valid_payloads_never_panic() {
    let valid = pack(&json!([
        1.0,
        [
            ["BlockStored", [11, 12], null, [1, 2, 3, 4], 2, null, "GPU"],
            {"type": "BlockRemoved", "block_hashes": [11], "medium": "GPU"},
            ["AllBlocksCleared"]
        ],
        0
    ]));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for _ in 0..20_000 {
        let mut m = valid.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() as usize) % m.len();
            match next() % 3 {
                0 => m[i] = next() as u8,
                1 => m.truncate(i),
                _ => m.insert(i, next() as u8),
            }
            if m.is_empty() {
                break;
            }
        }
        let _ = decode_batch(&m);
    }
}
