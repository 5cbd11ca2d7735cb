//! Endpoints from a file: one `ip:port` per line (IPv6 in brackets, `[::1]:8000`), `#`
//! comments and blank lines ignored; or a YAML list (`- 10.0.0.1:8000` lines, or
//! `[a, b]`). The file is polled: when its modification time or size changes it is read
//! again, and a content that differs from the last one read is parsed. A broken edit
//! keeps the last good list and logs a warning naming the line.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use tokio::sync::watch;

use super::{normalize, publish, sleep_unless_closed};

/// A line that is not an endpoint.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("line {line}: {problem}")]
pub struct ParseError {
    /// 1-based.
    pub line: usize,
    pub problem: LineProblem,
}

/// What is wrong with the line.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LineProblem {
    #[error("{entry:?} is not an ip:port address (IPv6 in brackets: [::1]:8000)")]
    NotAnAddress { entry: String },
    #[error("{entry:?}: port 0 is not a port")]
    PortZero { entry: String },
    /// `message` is the YAML parser's (its error can be neither cloned nor compared).
    #[error("not a YAML list of ip:port strings: {message}")]
    NotAList { message: String },
}

/// Why a file gave no list.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Parse { path: String, source: ParseError },
}

impl FileError {
    /// The line at fault, for a parse error.
    pub fn line(&self) -> Option<usize> {
        match self {
            FileError::Read { .. } => None,
            FileError::Parse { source, .. } => Some(source.line),
        }
    }
}

/// Reads and parses an endpoints file.
pub fn read(path: &Path) -> Result<Vec<SocketAddr>, FileError> {
    let text = std::fs::read_to_string(path).map_err(|source| FileError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text).map_err(|source| FileError::Parse {
        path: path.display().to_string(),
        source,
    })
}

/// Parses the text of an endpoints file into a sorted, deduplicated list.
pub fn parse(text: &str) -> Result<Vec<SocketAddr>, ParseError> {
    let first = text
        .lines()
        .map(|l| strip_comment(l).trim())
        .find(|l| !l.is_empty());
    let list = match first {
        Some(l) if l.starts_with('-') || l.starts_with('[') => parse_yaml(text)?,
        _ => parse_lines(text)?,
    };
    Ok(normalize(list))
}

fn strip_comment(line: &str) -> &str {
    // `#` never occurs in an address, so it always starts a comment.
    line.split_once('#').map_or(line, |(before, _)| before)
}

fn parse_lines(text: &str) -> Result<Vec<SocketAddr>, ParseError> {
    let mut out = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let entry = strip_comment(line).trim();
        if entry.is_empty() {
            continue;
        }
        out.push(parse_addr(entry).map_err(|problem| ParseError {
            line: i + 1,
            problem,
        })?);
    }
    Ok(out)
}

fn parse_yaml(text: &str) -> Result<Vec<SocketAddr>, ParseError> {
    let items: Vec<String> = serde_yaml::from_str(text).map_err(|e| ParseError {
        line: e.location().map_or(1, |l| l.line()),
        problem: LineProblem::NotAList {
            message: e.to_string(),
        },
    })?;
    let mut out = Vec::with_capacity(items.len());
    for item in &items {
        out.push(parse_addr(item.trim()).map_err(|problem| ParseError {
            line: line_of(text, item),
            problem,
        })?);
    }
    Ok(out)
}

/// The first line holding `item` outside a comment (1 when not found).
fn line_of(text: &str, item: &str) -> usize {
    text.lines()
        .position(|l| strip_comment(l).contains(item))
        .map_or(1, |i| i + 1)
}

fn parse_addr(entry: &str) -> Result<SocketAddr, LineProblem> {
    let addr: SocketAddr = entry.parse().map_err(|_| LineProblem::NotAnAddress {
        entry: entry.to_string(),
    })?;
    if addr.port() == 0 {
        return Err(LineProblem::PortZero {
            entry: entry.to_string(),
        });
    }
    Ok(addr)
}

/// What the last look at the file saw.
#[derive(Default)]
struct Seen {
    stamp: Option<(Option<SystemTime>, u64)>,
    text: Option<String>,
    /// The last problem logged, so that it is logged once.
    problem: Option<String>,
}

/// Polls `path` every `poll` and publishes its list on `tx` until every receiver is gone.
pub(crate) async fn run(path: PathBuf, poll: Duration, tx: watch::Sender<Vec<SocketAddr>>) {
    let mut seen = Seen::default();
    loop {
        check(&path, &tx, &mut seen).await;
        if !sleep_unless_closed(&tx, poll).await {
            return;
        }
    }
}

async fn check(path: &Path, tx: &watch::Sender<Vec<SocketAddr>>, seen: &mut Seen) {
    let shown = path.display().to_string();
    let meta = match tokio::fs::metadata(path).await {
        Ok(m) => m,
        Err(e) => {
            let problem = format!("cannot read: {e}");
            if seen.problem.as_ref() != Some(&problem) {
                tracing::warn!(path = %shown, error = %e, "endpoints file cannot be read; keeping the last good list");
                seen.problem = Some(problem);
            }
            // Read it again, whatever its stamp, once it is back.
            seen.stamp = None;
            return;
        }
    };
    let stamp = (meta.modified().ok(), meta.len());
    if seen.stamp == Some(stamp) {
        return;
    }
    seen.stamp = Some(stamp);
    let text = match tokio::fs::read_to_string(path).await {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(path = %shown, error = %e, "endpoints file cannot be read; keeping the last good list");
            seen.stamp = None;
            return;
        }
    };
    if seen.text.as_ref() == Some(&text) {
        return;
    }
    match parse(&text) {
        Ok(list) => {
            let count = list.len();
            if publish(tx, list) {
                tracing::info!(path = %shown, endpoints = count, "endpoints file changed");
            }
            seen.problem = None;
        }
        Err(e) => {
            tracing::warn!(path = %shown, line = e.line, error = %e, "endpoints file: broken edit ignored, keeping the last good list");
            seen.problem = Some(e.to_string());
        }
    }
    seen.text = Some(text);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| a.parse().unwrap()).collect()
    }

    #[test]
    fn lines_comments_and_ipv6() {
        let list = parse(
            "# the pool\n\n127.0.0.2:8000\n  [::1]:8001   # v6\n127.0.0.1:8000\n127.0.0.2:8000\n",
        )
        .unwrap();
        assert_eq!(
            list,
            addrs(&["127.0.0.1:8000", "127.0.0.2:8000", "[::1]:8001"])
        );
        assert_eq!(parse("# nothing yet\n\n").unwrap(), Vec::new());
        assert_eq!(parse("").unwrap(), Vec::new());
    }

    #[test]
    fn yaml_lists() {
        let want = addrs(&["127.0.0.1:8000", "[::1]:8001"]);
        assert_eq!(
            parse("# yaml\n- 127.0.0.1:8000\n- '[::1]:8001'\n").unwrap(),
            want
        );
        assert_eq!(parse("['[::1]:8001', 127.0.0.1:8000]").unwrap(), want);
    }

    #[test]
    fn errors_name_the_line() {
        for (text, line, needle) in [
            (
                "127.0.0.1:8000\n\nmodel-a:8000\n",
                3,
                "\"model-a:8000\" is not an ip:port",
            ),
            ("# c\n127.0.0.1\n", 2, "\"127.0.0.1\" is not an ip:port"),
            ("::1:8000\n", 1, "IPv6 in brackets"),
            ("127.0.0.1:0\n", 1, "port 0"),
            ("- 127.0.0.1:8000\n# c\n- nope:1\n", 3, "\"nope:1\""),
            ("- 127.0.0.1:8000\n- [unclosed\n", 2, "not a YAML list"),
        ] {
            let e = parse(text).unwrap_err();
            assert_eq!(e.line, line, "{text:?}: {e}");
            assert!(e.to_string().contains(needle), "{text:?}: {e}");
            assert!(e.to_string().starts_with(&format!("line {line}: ")), "{e}");
        }
        assert_eq!(
            parse("127.0.0.1:8000\n10.0.0.1:0\n").unwrap_err(),
            ParseError {
                line: 2,
                problem: LineProblem::PortZero {
                    entry: "10.0.0.1:0".into()
                }
            }
        );
    }

    #[test]
    fn read_reports_path_and_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints");
        let e = read(&path).unwrap_err();
        assert!(matches!(e, FileError::Read { .. }), "{e}");
        std::fs::write(&path, "127.0.0.1:8000\nbad\n").unwrap();
        let e = read(&path).unwrap_err();
        assert_eq!(e.line(), Some(2));
        assert!(e.to_string().contains(&path.display().to_string()), "{e}");
    }

    /// Waits (at most 5 s) until the receiver holds `want`.
    async fn wait_for(rx: &mut watch::Receiver<Vec<SocketAddr>>, want: &[SocketAddr]) {
        let ok = tokio::time::timeout(Duration::from_secs(5), rx.wait_for(|l| l == want))
            .await
            .is_ok_and(|r| r.is_ok());
        assert!(
            ok,
            "timed out waiting for {want:?}; have {:?}",
            *rx.borrow()
        );
    }

    #[tokio::test]
    async fn watch_follows_edits_and_keeps_the_last_good_list() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.txt");
        std::fs::write(&path, "127.0.0.1:8000\n").unwrap();
        let source = super::super::EndpointSource::File {
            path: path.clone(),
            poll_interval: Duration::from_millis(20),
        };
        let mut rx = super::super::watch(source, Default::default());
        // The first value is the file as it is now.
        assert_eq!(*rx.borrow_and_update(), addrs(&["127.0.0.1:8000"]));

        std::fs::write(&path, "127.0.0.2:8000\n[::1]:8000\n127.0.0.1:8000\n").unwrap();
        wait_for(
            &mut rx,
            &addrs(&["127.0.0.1:8000", "127.0.0.2:8000", "[::1]:8000"]),
        )
        .await;

        // A broken edit: the list stays, and nothing is sent.
        rx.borrow_and_update();
        std::fs::write(&path, "127.0.0.1:8000\nnot-an-address\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!rx.has_changed().unwrap());
        assert_eq!(rx.borrow().len(), 3);

        // Fixed again, as a YAML list.
        std::fs::write(&path, "- 127.0.0.3:8000\n").unwrap();
        wait_for(&mut rx, &addrs(&["127.0.0.3:8000"])).await;

        // Removed: the last good list stays; back with the same content: no new value.
        std::fs::remove_file(&path).unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        std::fs::write(&path, "- 127.0.0.3:8000\n").unwrap();
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert!(!rx.has_changed().unwrap());
        assert_eq!(*rx.borrow(), addrs(&["127.0.0.3:8000"]));
    }

    #[tokio::test]
    async fn watch_task_stops_when_receivers_are_gone() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("endpoints.txt");
        std::fs::write(&path, "127.0.0.1:8000\n").unwrap();
        let (tx, rx) = watch::channel(Vec::new());
        let task = tokio::spawn(run(path, Duration::from_secs(3600), tx));
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(*rx.borrow(), addrs(&["127.0.0.1:8000"]));
        drop(rx);
        tokio::time::timeout(Duration::from_secs(5), task)
            .await
            .expect("the task did not stop")
            .unwrap();
    }
}
