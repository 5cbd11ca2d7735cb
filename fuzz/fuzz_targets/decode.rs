//! The incremental body decoders: any split of the same bytes gives the same output or
//! the same class of error, and a body compressed here decodes back to its payload.
#![no_main]

use std::io::Write;
use std::mem::{discriminant, Discriminant};

use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;
use libfuzzer_sys::fuzz_target;
use tollgate::llm::{Decoder, LlmError};
use tollgate_fuzz::Input;

// flags: bits 0-1 the encoding, bit 2 compress the payload here first, bit 3 zlib
// (else raw) for deflate, bit 4 two gzip members, bit 5 the name in upper case.
fuzz_target!(|data: &[u8]| {
    let Some(input) = Input::parse(data) else {
        return;
    };
    let flags = input.flags;
    let encoding = ["identity", "gzip", "deflate", "br"][usize::from(flags & 3)];
    let name = if flags & 32 != 0 {
        encoding.to_ascii_uppercase()
    } else {
        encoding.to_owned()
    };
    let compress = flags & 4 != 0 && matches!(encoding, "gzip" | "deflate");
    let body = if compress {
        compressed(encoding, flags, input.payload)
    } else {
        input.payload.to_vec()
    };
    let whole = decode(&name, &[&body]);
    if compress {
        let mut want = input.payload.to_vec();
        if encoding == "gzip" && flags & 16 != 0 {
            want.extend_from_slice(input.payload);
        }
        assert_eq!(whole, Ok(want), "round trip");
    }
    if encoding == "identity" {
        assert_eq!(whole, Ok(body.clone()), "identity");
    }
    // Cut the body (compressed or not) where the split bytes say.
    let split = Input {
        flags,
        splits: input.splits,
        payload: &body,
    };
    assert_eq!(decode(&name, &split.chunks()), whole, "split differs");
    if body.len() <= 512 {
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(decode(&name, &bytes), whole, "byte-at-a-time differs");
    }
});

/// Everything the decoder gives, or the class of its first error.
fn decode(name: &str, chunks: &[&[u8]]) -> Result<Vec<u8>, Discriminant<LlmError>> {
    let mut d = Decoder::for_encoding(Some(name)).expect("a supported encoding");
    let mut out = Vec::new();
    for chunk in chunks {
        match d.push(chunk) {
            Ok(bytes) => out.extend_from_slice(&bytes),
            Err(e) => return Err(discriminant(&e)),
        }
    }
    out.extend(d.finish().map_err(|e| discriminant(&e))?);
    Ok(out)
}

fn compressed(encoding: &str, flags: u8, payload: &[u8]) -> Vec<u8> {
    let level = Compression::new(u32::from(flags >> 6) * 3);
    match (encoding, flags & 8 != 0) {
        ("gzip", _) => {
            let member = || {
                let mut e = GzEncoder::new(Vec::new(), level);
                e.write_all(payload).unwrap();
                e.finish().unwrap()
            };
            let mut out = member();
            if flags & 16 != 0 {
                out.extend(member());
            }
            out
        }
        (_, true) => {
            let mut e = ZlibEncoder::new(Vec::new(), level);
            e.write_all(payload).unwrap();
            e.finish().unwrap()
        }
        (_, false) => {
            let mut e = DeflateEncoder::new(Vec::new(), level);
            e.write_all(payload).unwrap();
            e.finish().unwrap()
        }
    }
}
