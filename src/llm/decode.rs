//! Incremental decoding of `content-encoding`d bodies (identity, gzip / x-gzip, deflate,
//! br), chunk by chunk as they pass.
//!
//! Each decoder keeps its own state between chunks and decodes every byte once: a long
//! stream costs time linear in its length (re-decoding from the start on every chunk,
//! as some gateways do, is quadratic). Errors say which encoding failed, where, and how:
//! corrupt data, a body that ends inside the compressed stream, or bytes after its end.
//!
//! `deflate` is zlib-wrapped per RFC 9110, but some servers send raw deflate; the first
//! two bytes tell which. Concatenated gzip members are decoded as one body.
//!
//! Output is bounded by [`DecodeLimits`] — total decoded bytes, and decoded bytes per
//! compressed byte — checked as the codec runs, every 16–32 KiB of output (the codecs'
//! own buffer sizes), never after inflating a whole chunk: a bomb costs at most the bound
//! plus one buffer, however it is split.

use std::borrow::Cow;
use std::io::Write;

use brotli_decompressor::{BrotliDecompressStream, BrotliResult, BrotliState, StandardAlloc};
use flate2::write::{DeflateDecoder, MultiGzDecoder, ZlibDecoder};

use super::LlmError;

/// How much one body may decode to. [`DecodeLimits::DEFAULT`]: 64 MiB, ratio 400.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DecodeLimits {
    /// Most decoded bytes in all.
    pub max_bytes: u64,
    /// Most decoded bytes per compressed byte, checked once the body has decoded to
    /// more than [`RATIO_GRACE`] bytes.
    pub max_ratio: u32,
}

/// The ratio bound applies past this much output, so that a short, very compressible
/// body (an error JSON, a run of keep-alives) is never refused for its ratio.
pub const RATIO_GRACE: u64 = 1024 * 1024;

/// Which decode bound a body went over.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeLimit {
    Bytes,
    Ratio,
}

/// A body decoder for one `content-encoding`.
pub struct Decoder {
    codec: Codec,
    encoding: &'static str,
    /// Compressed bytes pushed so far.
    consumed: u64,
    meter: Meter,
}

/// Counts what the codec took and made, against the limits.
struct Meter {
    limits: DecodeLimits,
    /// Compressed bytes the codec has taken.
    fed: u64,
    /// Decoded bytes handed out.
    produced: u64,
}

enum Codec {
    Identity,
    /// gzip, zlib or raw deflate.
    Flate(Box<dyn Flate + Send>),
    /// `deflate` before two bytes have told zlib from raw deflate.
    DeflateUndecided(Vec<u8>),
    Brotli(Box<Brotli>),
}

struct Brotli {
    state: BrotliState<StandardAlloc, StandardAlloc, StandardAlloc>,
    buf: Vec<u8>,
    total_out: usize,
    done: bool,
}

const BROTLI_BUF: usize = 16 * 1024;

// === impl DecodeLimits ===

impl DecodeLimits {
    pub const DEFAULT: DecodeLimits = DecodeLimits {
        max_bytes: 64 * 1024 * 1024,
        max_ratio: 400,
    };
}

impl Default for DecodeLimits {
    fn default() -> Self {
        DecodeLimits::DEFAULT
    }
}

impl DecodeLimit {
    /// The bound's name, for metric labels and messages.
    pub fn as_str(self) -> &'static str {
        match self {
            DecodeLimit::Bytes => "decompressed_bytes",
            DecodeLimit::Ratio => "decompression_ratio",
        }
    }
}

impl std::fmt::Display for DecodeLimit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

// === impl Meter ===

impl Meter {
    /// Whether `pending` more decoded bytes keep the body within its bounds.
    fn check(&self, encoding: &'static str, pending: usize) -> Result<(), LlmError> {
        let decoded = self.produced + pending as u64;
        let ratio_bound = self.fed.saturating_mul(u64::from(self.limits.max_ratio));
        let limit = if decoded > self.limits.max_bytes {
            DecodeLimit::Bytes
        } else if decoded > RATIO_GRACE && decoded > ratio_bound {
            DecodeLimit::Ratio
        } else {
            return Ok(());
        };
        Err(LlmError::DecodeLimit {
            encoding,
            limit,
            decoded,
            consumed: self.fed,
        })
    }
}

// === impl Decoder ===

impl Decoder {
    /// The decoder for a `content-encoding` header value (`None`, empty or `identity`:
    /// bytes pass through), with the default limits. Names are case-insensitive. A list
    /// of encodings (`gzip, br`) is not supported.
    pub fn for_encoding(content_encoding: Option<&str>) -> Result<Decoder, LlmError> {
        Decoder::with_limits(content_encoding, DecodeLimits::DEFAULT)
    }

    /// [`for_encoding`](Self::for_encoding) with these limits.
    pub fn with_limits(
        content_encoding: Option<&str>,
        limits: DecodeLimits,
    ) -> Result<Decoder, LlmError> {
        let name = content_encoding.unwrap_or("").trim();
        let is = |n: &str| name.eq_ignore_ascii_case(n);
        let (codec, encoding) = if name.is_empty() || is("identity") {
            (Codec::Identity, "identity")
        } else if is("gzip") || is("x-gzip") {
            let gz: Box<dyn Flate + Send> = Box::new(MultiGzDecoder::new(Vec::new()));
            (Codec::Flate(gz), "gzip")
        } else if is("deflate") {
            (Codec::DeflateUndecided(Vec::with_capacity(2)), "deflate")
        } else if is("br") {
            let brotli = Brotli {
                state: BrotliState::new(
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                    StandardAlloc::default(),
                ),
                buf: vec![0; BROTLI_BUF],
                total_out: 0,
                done: false,
            };
            (Codec::Brotli(Box::new(brotli)), "br")
        } else {
            return Err(LlmError::UnsupportedEncoding(name.to_owned()));
        };
        Ok(Decoder {
            codec,
            encoding,
            consumed: 0,
            meter: Meter {
                limits,
                fed: 0,
                produced: 0,
            },
        })
    }

    /// Bytes pass through unchanged.
    pub fn is_identity(&self) -> bool {
        matches!(self.codec, Codec::Identity)
    }

    /// The encoding's name, for messages: identity, gzip, deflate or br.
    pub fn encoding(&self) -> &'static str {
        self.encoding
    }

    /// Decodes the next chunk: the bytes it completes (possibly none). Identity borrows
    /// the chunk. [`LlmError::DecodeLimit`] when the body decodes past its limits;
    /// nothing more may be pushed then.
    pub fn push<'a>(&mut self, chunk: &'a [u8]) -> Result<Cow<'a, [u8]>, LlmError> {
        let encoding = self.encoding;
        let consumed = self.consumed;
        self.consumed += chunk.len() as u64;
        let corrupt = |detail: String| LlmError::CorruptEncoding {
            encoding,
            consumed,
            detail,
        };
        let meter = &mut self.meter;
        let out = match &mut self.codec {
            Codec::Identity => return Ok(Cow::Borrowed(chunk)),
            Codec::Flate(d) => write_flate(&mut **d, chunk, encoding, meter, corrupt)?,
            Codec::DeflateUndecided(head) => {
                let take = (2 - head.len()).min(chunk.len());
                head.extend_from_slice(&chunk[..take]);
                if head.len() < 2 {
                    return Ok(Cow::Owned(Vec::new()));
                }
                let mut d: Box<dyn Flate + Send> = if is_zlib_header(head[0], head[1]) {
                    Box::new(ZlibDecoder::new(Vec::new()))
                } else {
                    Box::new(DeflateDecoder::new(Vec::new()))
                };
                let mut out = write_flate(&mut *d, head, encoding, meter, corrupt)?;
                out.extend(write_flate(
                    &mut *d,
                    &chunk[take..],
                    encoding,
                    meter,
                    corrupt,
                )?);
                self.codec = Codec::Flate(d);
                out
            }
            Codec::Brotli(b) => b.push(chunk, meter, corrupt)?,
        };
        Ok(Cow::Owned(out))
    }

    /// Ends the body: the last decoded bytes. An error if the compressed stream is
    /// incomplete. An empty body is accepted for any encoding (as HEAD and 204/304
    /// responses have). Nothing may be pushed after `finish`.
    pub fn finish(&mut self) -> Result<Vec<u8>, LlmError> {
        let (encoding, consumed) = (self.encoding, self.consumed);
        if consumed == 0 {
            return Ok(Vec::new());
        }
        match &mut self.codec {
            Codec::Identity => Ok(Vec::new()),
            Codec::Flate(d) => match d.try_finish() {
                Ok(()) => {
                    let out = std::mem::take(d.output());
                    self.meter.check(encoding, out.len())?;
                    self.meter.produced += out.len() as u64;
                    Ok(out)
                }
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {
                    Err(LlmError::TruncatedEncoding { encoding, consumed })
                }
                Err(e) => Err(LlmError::CorruptEncoding {
                    encoding,
                    consumed,
                    detail: e.to_string(),
                }),
            },
            Codec::Brotli(b) if b.done => Ok(Vec::new()),
            Codec::DeflateUndecided(_) | Codec::Brotli(_) => {
                Err(LlmError::TruncatedEncoding { encoding, consumed })
            }
        }
    }
}

impl std::fmt::Debug for Decoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Decoder")
            .field("encoding", &self.encoding)
            .field("consumed", &self.consumed)
            .finish_non_exhaustive()
    }
}

/// RFC 1950: CM = 8 (deflate), CINFO ≤ 7, and the header is a multiple of 31.
fn is_zlib_header(cmf: u8, flg: u8) -> bool {
    cmf & 0x0F == 8 && cmf >> 4 <= 7 && (u16::from(cmf) << 8 | u16::from(flg)) % 31 == 0
}

/// Feeds all of `chunk` to a flate2 write-side decoder and takes what it produced. Each
/// `write` inflates into flate2's 32 KiB buffer and stops when it is full, so checking
/// the limits after each one bounds the output to the limit plus a buffer or two.
fn write_flate(
    d: &mut (dyn Flate + Send),
    mut chunk: &[u8],
    encoding: &'static str,
    meter: &mut Meter,
    corrupt: impl Fn(String) -> LlmError,
) -> Result<Vec<u8>, LlmError> {
    while !chunk.is_empty() {
        match d.write(chunk) {
            Ok(0) => {
                return Err(LlmError::TrailingData {
                    encoding,
                    extra: chunk.len(),
                })
            }
            Ok(n) => {
                chunk = &chunk[n..];
                meter.fed += n as u64;
            }
            Err(e) => return Err(corrupt(e.to_string())),
        }
        meter.check(encoding, d.output().len())?;
    }
    d.flush().map_err(|e| corrupt(e.to_string()))?;
    meter.check(encoding, d.output().len())?;
    let out = std::mem::take(d.output());
    meter.produced += out.len() as u64;
    Ok(out)
}

/// flate2's write-side decoders, writing into a `Vec`.
trait Flate: Write {
    fn output(&mut self) -> &mut Vec<u8>;
    fn try_finish(&mut self) -> std::io::Result<()>;
}

macro_rules! impl_flate {
    ($($t:ident),*) => {$(
        impl Flate for $t<Vec<u8>> {
            fn output(&mut self) -> &mut Vec<u8> {
                self.get_mut()
            }
            fn try_finish(&mut self) -> std::io::Result<()> {
                $t::try_finish(self)
            }
        }
    )*};
}

impl_flate!(MultiGzDecoder, ZlibDecoder, DeflateDecoder);

// === impl Brotli ===

impl Brotli {
    /// Decodes `chunk` in steps of the 16 KiB buffer, checking the limits after each.
    fn push(
        &mut self,
        chunk: &[u8],
        meter: &mut Meter,
        corrupt: impl Fn(String) -> LlmError,
    ) -> Result<Vec<u8>, LlmError> {
        if chunk.is_empty() {
            return Ok(Vec::new());
        }
        if self.done {
            return Err(LlmError::TrailingData {
                encoding: "br",
                extra: chunk.len(),
            });
        }
        let mut out = Vec::new();
        let mut avail_in = chunk.len();
        let mut in_offset = 0;
        let mut fed = 0;
        loop {
            let mut avail_out = self.buf.len();
            let mut out_offset = 0;
            let result = BrotliDecompressStream(
                &mut avail_in,
                &mut in_offset,
                chunk,
                &mut avail_out,
                &mut out_offset,
                &mut self.buf,
                &mut self.total_out,
                &mut self.state,
            );
            meter.fed += (in_offset - fed) as u64;
            fed = in_offset;
            meter.check("br", out.len() + out_offset)?;
            out.extend_from_slice(&self.buf[..out_offset]);
            match result {
                BrotliResult::NeedsMoreOutput => continue,
                BrotliResult::NeedsMoreInput => {
                    meter.produced += out.len() as u64;
                    return Ok(out);
                }
                BrotliResult::ResultSuccess => {
                    self.done = true;
                    if avail_in > 0 {
                        return Err(LlmError::TrailingData {
                            encoding: "br",
                            extra: avail_in,
                        });
                    }
                    meter.produced += out.len() as u64;
                    return Ok(out);
                }
                BrotliResult::ResultFailure => {
                    return Err(corrupt(format!("{:?}", self.state.error_code)))
                }
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests;
