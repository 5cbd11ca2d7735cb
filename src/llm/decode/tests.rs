//! Each encoding decoded at every split, and each kind of failure named.

use std::io::Write;

use flate2::write::{DeflateEncoder, GzEncoder, ZlibEncoder};
use flate2::Compression;

use super::*;

const PLAIN: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/llm/anthropic.sse"
));
const BROTLI: &[u8] = include_bytes!(concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/llm/anthropic.sse.br"
));

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = GzEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    let mut e = ZlibEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn raw_deflate(data: &[u8]) -> Vec<u8> {
    let mut e = DeflateEncoder::new(Vec::new(), Compression::default());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

fn decode(encoding: &str, chunks: &[&[u8]]) -> Result<Vec<u8>, LlmError> {
    let mut d = Decoder::for_encoding(Some(encoding))?;
    let mut out = Vec::new();
    for c in chunks {
        out.extend_from_slice(&d.push(c)?);
    }
    out.extend(d.finish()?);
    Ok(out)
}

fn encoded() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("gzip", gzip(PLAIN)),
        ("x-gzip", gzip(PLAIN)),
        ("deflate", zlib(PLAIN)),
        ("deflate", raw_deflate(PLAIN)),
        ("br", BROTLI.to_vec()),
        ("identity", PLAIN.to_vec()),
    ]
}

#[test]
fn every_encoding_decodes_at_every_split() {
    for (encoding, body) in encoded() {
        assert_eq!(
            decode(encoding, &[&body]).unwrap(),
            PLAIN,
            "{encoding} whole"
        );
        for cut in 0..=body.len() {
            let got = decode(encoding, &[&body[..cut], &body[cut..]]).unwrap();
            assert_eq!(got, PLAIN, "{encoding} cut at {cut}");
        }
        let bytes: Vec<&[u8]> = body.chunks(1).collect();
        assert_eq!(
            decode(encoding, &bytes).unwrap(),
            PLAIN,
            "{encoding} byte by byte"
        );
    }
}

#[test]
fn output_arrives_as_input_does() {
    // Not all at finish: a streaming body must be readable while it streams.
    let body = gzip(PLAIN);
    let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
    let first = d.push(&body[..body.len() - 8]).unwrap().len();
    assert!(
        first > PLAIN.len() / 2,
        "only {first} bytes before the trailer"
    );
}

#[test]
fn names_are_case_insensitive_and_identity_borrows() {
    for name in [None, Some(""), Some("identity"), Some(" Identity ")] {
        let mut d = Decoder::for_encoding(name).unwrap();
        assert!(d.is_identity());
        assert!(matches!(d.push(b"abc").unwrap(), Cow::Borrowed(b"abc")));
    }
    assert_eq!(
        Decoder::for_encoding(Some("GZIP")).unwrap().encoding(),
        "gzip"
    );
    assert_eq!(Decoder::for_encoding(Some("Br")).unwrap().encoding(), "br");
    let err = Decoder::for_encoding(Some("zstd"))
        .err()
        .unwrap()
        .to_string();
    assert_eq!(
        err,
        r#"unsupported content-encoding "zstd" (supported: identity, gzip, x-gzip, deflate, br)"#
    );
}

#[test]
fn truncated_bodies_fail_at_finish() {
    for (encoding, body) in encoded() {
        if encoding == "identity" {
            continue;
        }
        let cut = &body[..body.len() / 2];
        let err = decode(encoding, &[cut]).unwrap_err();
        assert!(
            matches!(err, LlmError::TruncatedEncoding { .. }),
            "{encoding}: {err}"
        );
        assert!(err
            .to_string()
            .contains("ends inside its compressed stream"));
    }
    // A one-byte deflate body cannot even say which deflate it is.
    let err = decode("deflate", &[&[0x78]]).unwrap_err();
    assert!(matches!(
        err,
        LlmError::TruncatedEncoding { consumed: 1, .. }
    ));
}

#[test]
fn empty_bodies_are_fine_for_any_encoding() {
    for encoding in ["gzip", "deflate", "br"] {
        assert_eq!(decode(encoding, &[]).unwrap(), b"");
    }
}

#[test]
fn corrupt_and_trailing_bytes_are_named() {
    let err = decode("gzip", &[b"this is not gzip at all"]).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::CorruptEncoding {
                encoding: "gzip",
                consumed: 0,
                ..
            }
        ),
        "{err}"
    );

    let mut body = BROTLI.to_vec();
    body[20] ^= 0xFF;
    body[21] ^= 0xFF;
    let err = decode("br", &[&body]).unwrap_err();
    assert!(
        matches!(err, LlmError::CorruptEncoding { encoding: "br", .. }),
        "{err}"
    );

    let mut body = zlib(b"hello");
    body.extend_from_slice(b"junk");
    let err = decode("deflate", &[&body]).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::TrailingData {
                encoding: "deflate",
                extra: 4
            }
        ),
        "{err}"
    );

    let mut body = BROTLI.to_vec();
    body.extend_from_slice(b"xy");
    let err = decode("br", &[&body]).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::TrailingData {
                encoding: "br",
                extra: 2
            }
        ),
        "{err}"
    );
    // Pushed separately after the end, too.
    let err = decode("br", &[BROTLI, b"z"]).unwrap_err();
    assert!(
        matches!(
            err,
            LlmError::TrailingData {
                encoding: "br",
                extra: 1
            }
        ),
        "{err}"
    );
}

#[test]
fn concatenated_gzip_members_are_one_body() {
    let mut body = gzip(b"hello ");
    body.extend(gzip(b"world"));
    assert_eq!(decode("gzip", &[&body]).unwrap(), b"hello world");
}

#[test]
fn decoders_can_move_between_threads() {
    fn send<T: Send>() {}
    send::<Decoder>();
}

#[test]
fn large_bodies_decode_linearly() {
    // 8 MiB in 4 KiB chunks: quadratic re-decoding would take minutes, not milliseconds.
    let plain: Vec<u8> = PLAIN.iter().copied().cycle().take(8 << 20).collect();
    let body = gzip(&plain);
    let chunks: Vec<&[u8]> = body.chunks(4096).collect();
    // A fixture repeated compresses far past the default ratio bound: lift it here.
    let limits = DecodeLimits {
        max_bytes: 16 << 20,
        max_ratio: 100_000,
    };
    let mut d = Decoder::with_limits(Some("gzip"), limits).unwrap();
    let start = std::time::Instant::now();
    let (produced, err) = decode_until_error(&mut d, &chunks);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(produced, plain.len() as u64);
    assert!(start.elapsed() < std::time::Duration::from_secs(5));
}

// === limits ===

/// 10 MiB of zeros, gzip-compressed (about 10 KiB): a decompression bomb of ratio ~1000,
/// over the default ratio bound (400) and under the default byte bound (64 MiB).
fn gzip_bomb() -> Vec<u8> {
    gzip(&vec![0u8; 10 * 1024 * 1024])
}

/// What pushing `chunks` produced before the first error, and that error.
fn decode_until_error(d: &mut Decoder, chunks: &[&[u8]]) -> (u64, Option<LlmError>) {
    let mut produced = 0u64;
    for c in chunks {
        match d.push(c) {
            Ok(out) => produced += out.len() as u64,
            Err(e) => return (produced, Some(e)),
        }
    }
    match d.finish() {
        Ok(out) => (produced + out.len() as u64, None),
        Err(e) => (produced, Some(e)),
    }
}

/// Splits of `body`: whole, in two at a few points, in 7-byte and 1 KiB pieces.
fn splits(body: &[u8]) -> Vec<Vec<&[u8]>> {
    let mut all = vec![vec![body]];
    for cut in [1, 10, 100, body.len() / 3, body.len() - 1] {
        all.push(vec![&body[..cut], &body[cut..]]);
    }
    all.push(body.chunks(7).collect());
    all.push(body.chunks(1024).collect());
    all
}

#[test]
fn a_gzip_bomb_stops_at_the_byte_limit_at_any_split() {
    let bomb = gzip_bomb();
    let limits = DecodeLimits {
        max_bytes: 1024 * 1024,
        max_ratio: 100_000,
    };
    for chunks in splits(&bomb) {
        let mut d = Decoder::with_limits(Some("gzip"), limits).unwrap();
        let (produced, err) = decode_until_error(&mut d, &chunks);
        match err {
            Some(LlmError::DecodeLimit {
                encoding: "gzip",
                limit: DecodeLimit::Bytes,
                decoded,
                ..
            }) => {
                // Checked every flate2 buffer (32 KiB): never more than two past it.
                assert!(decoded <= limits.max_bytes + 64 * 1024, "{decoded}");
                assert!(produced <= limits.max_bytes, "{produced}");
            }
            other => panic!("{} pieces: {other:?}", chunks.len()),
        }
    }
}

#[test]
fn a_gzip_bomb_stops_at_the_ratio_limit_past_the_grace() {
    let bomb = gzip_bomb();
    for chunks in splits(&bomb) {
        let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
        let (produced, err) = decode_until_error(&mut d, &chunks);
        let Some(LlmError::DecodeLimit {
            limit: DecodeLimit::Ratio,
            decoded,
            consumed,
            ..
        }) = err
        else {
            panic!("{} pieces: {err:?}", chunks.len());
        };
        assert!(decoded > RATIO_GRACE && decoded > consumed * 400);
        // What was handed out kept to the ratio (or the grace), within one buffer.
        let bound = RATIO_GRACE.max(consumed * 400) + 64 * 1024;
        assert!(produced <= bound, "{produced} > {bound}");
        assert!(produced < 2 * 1024 * 1024, "{produced}");
    }
}

#[test]
fn zlib_and_raw_deflate_bombs_are_bounded_too() {
    let zeros = vec![0u8; 10 * 1024 * 1024];
    for body in [zlib(&zeros), raw_deflate(&zeros)] {
        for chunks in splits(&body) {
            let mut d = Decoder::for_encoding(Some("deflate")).unwrap();
            let (produced, err) = decode_until_error(&mut d, &chunks);
            assert!(
                matches!(
                    err,
                    Some(LlmError::DecodeLimit {
                        encoding: "deflate",
                        ..
                    })
                ),
                "{err:?}"
            );
            assert!(produced < 2 * 1024 * 1024, "{produced}");
        }
    }
}

#[test]
fn brotli_is_held_to_the_byte_limit() {
    let limits = DecodeLimits {
        max_bytes: 1000,
        max_ratio: 100,
    };
    for chunks in splits(BROTLI) {
        let mut d = Decoder::with_limits(Some("br"), limits).unwrap();
        let (produced, err) = decode_until_error(&mut d, &chunks);
        assert!(
            matches!(
                err,
                Some(LlmError::DecodeLimit {
                    encoding: "br",
                    limit: DecodeLimit::Bytes,
                    ..
                })
            ),
            "{err:?}"
        );
        assert!(produced <= 1000);
    }
}

#[test]
fn a_body_within_its_limits_decodes_whole() {
    // Exactly at the byte limit, and a highly compressible body under the ratio grace.
    let limits = DecodeLimits {
        max_bytes: PLAIN.len() as u64,
        max_ratio: 1,
    };
    let mut d = Decoder::with_limits(Some("gzip"), limits).unwrap();
    let (produced, err) = decode_until_error(&mut d, &[&gzip(PLAIN)]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(produced, PLAIN.len() as u64);
    let zeros = vec![0u8; RATIO_GRACE as usize];
    let mut d = Decoder::for_encoding(Some("gzip")).unwrap();
    let (produced, err) = decode_until_error(&mut d, &[&gzip(&zeros)]);
    assert!(err.is_none(), "{err:?}");
    assert_eq!(produced, RATIO_GRACE);
    // The message names the encoding, the bound and the sizes.
    let mut d = Decoder::with_limits(
        Some("gzip"),
        DecodeLimits {
            max_bytes: 10,
            ..limits
        },
    )
    .unwrap();
    let (_, err) = decode_until_error(&mut d, &[&gzip(PLAIN)]);
    let msg = err.unwrap().to_string();
    assert!(
        msg.starts_with("gzip body decodes past its decompressed_bytes limit"),
        "{msg}"
    );
}
