//! Logging setup: `tracing` to stderr as text or JSON lines. `RUST_LOG` overrides the
//! configured level. Access lines (one per exchange) use the target `tollgate::access`;
//! their CEL fields (`logging.fields.add`) become fields of the line (`access_fields`).
//!
//! Every line passes through [`crate::redact::redact_text`] on its way out, so a URL
//! with credentials (userinfo, `?key=…`) is hidden whichever call site printed it; call
//! sites still redact what they know to be a URL or a header.

use std::io::{self, Write};

use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::EnvFilter;

use crate::config::{LogFormat, LoggingConfig};

mod access_fields;

/// Installs the global subscriber. Call once, before anything logs.
pub fn init(config: &LoggingConfig) {
    let filter = EnvFilter::try_from_default_env()
        .or_else(|_| EnvFilter::try_new(&config.level))
        .unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(Redacting(io::stderr));
    let result = match config.format {
        LogFormat::Text => builder.fmt_fields(access_fields::TextFields).try_init(),
        LogFormat::Json => builder
            .json()
            .flatten_event(true)
            .map_event_format(access_fields::SpliceJson)
            .try_init(),
    };
    if let Err(e) = result {
        eprintln!("tollgate: logging already initialised: {e}");
    }
}

/// A `MakeWriter` whose writers redact each formatted line before passing it on.
struct Redacting<M>(M);

impl<'a, M: MakeWriter<'a>> MakeWriter<'a> for Redacting<M> {
    type Writer = RedactingWriter<M::Writer>;

    fn make_writer(&'a self) -> Self::Writer {
        RedactingWriter(self.0.make_writer())
    }
}

/// The formatter writes one whole event per `write`, so a URL is never split.
struct RedactingWriter<W>(W);

impl<W: Write> Write for RedactingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match std::str::from_utf8(buf) {
            Ok(text) => {
                self.0
                    .write_all(crate::redact::redact_text(text).as_bytes())?;
                Ok(buf.len())
            }
            Err(_) => self.0.write(buf),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_written_line_is_redacted() {
        let mut out = RedactingWriter(Vec::new());
        let line = "WARN failed url=http://h/g?key=S1 next\n";
        assert_eq!(out.write(line.as_bytes()).unwrap(), line.len());
        let written = String::from_utf8(out.0).unwrap();
        assert_eq!(written, "WARN failed url=http://h/g?key=<redacted> next\n");
    }
}
