//! Watches the config file for changes by polling its content. Polling (rather than
//! inotify) sees every way a file can change, including the symlink swap Kubernetes uses
//! for mounted ConfigMaps and editors that replace the file, at the cost of one small
//! read per interval.
//!
//! A change is reported only once the file is stable: the same new content read on two
//! polls in a row. An editor that saves in place (truncate, then write) or a copy in
//! progress shows a half-written file to one poll, never to two unless the writer
//! stalls for a whole interval — so a half-written file is not applied.
//!
//! A file that cannot be read (removed, no permission, the process out of file
//! descriptors) keeps the running config; that is logged when it starts, then at most
//! once a minute with the count of failed reads left out, and once when the file is
//! readable again — not on every poll.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::watch;

/// Calls `on_change` with the new text each time the file's content changes and has
/// settled (see the module doc), until `stop` flips to true. The first read is taken as
/// the baseline and not reported.
pub async fn watch_file(
    path: PathBuf,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut on_change: impl FnMut(String) + Send,
) {
    let mut settle = Settle::new(tokio::fs::read(&path).await.ok());
    let mut unreadable = crate::listen::RateLimitedLog::every(Duration::from_secs(60));
    let mut failing = false;
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let now = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                failing = true;
                if let Some(suppressed) = unreadable.record(Instant::now()) {
                    tracing::warn!(path = %path.display(), error = %e, suppressed, "config file unreadable; keeping the running config");
                }
                continue;
            }
        };
        if std::mem::take(&mut failing) {
            let suppressed = unreadable.reset();
            tracing::info!(path = %path.display(), suppressed, "config file readable again");
        }
        if let Some(text) = settle.observe(now) {
            on_change(String::from_utf8_lossy(&text).into_owned());
        }
    }
}

/// The debounce: which content was last reported, and a change seen once and waiting
/// for a second identical read.
#[derive(Debug)]
pub(crate) struct Settle {
    reported: Option<Vec<u8>>,
    pending: Option<Vec<u8>>,
}

impl Settle {
    pub(crate) fn new(baseline: Option<Vec<u8>>) -> Self {
        Settle {
            reported: baseline,
            pending: None,
        }
    }

    /// Takes one read; returns the content to report once it differs from the last
    /// report and equals the previous read.
    pub(crate) fn observe(&mut self, now: Vec<u8>) -> Option<Vec<u8>> {
        if self.reported.as_deref() == Some(now.as_slice()) {
            // Back to what is applied (a revert, or a write that was undone).
            self.pending = None;
            return None;
        }
        if self.pending.as_deref() == Some(now.as_slice()) {
            self.pending = None;
            self.reported = Some(now.clone());
            return Some(now);
        }
        self.pending = Some(now);
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(s: &mut Settle, text: &str) -> Option<String> {
        s.observe(text.as_bytes().to_vec())
            .map(|b| String::from_utf8(b).unwrap())
    }

    #[test]
    fn a_change_is_reported_once_two_reads_agree() {
        let mut s = Settle::new(Some(b"v1".to_vec()));
        assert_eq!(read(&mut s, "v1"), None);
        assert_eq!(read(&mut s, "v2"), None, "first sight waits");
        assert_eq!(read(&mut s, "v2").as_deref(), Some("v2"));
        assert_eq!(read(&mut s, "v2"), None, "reported once");
    }

    #[test]
    fn a_file_still_being_written_is_never_reported() {
        let mut s = Settle::new(Some(b"full".to_vec()));
        // Truncated, then growing on every poll: no two reads agree.
        for partial in ["", "bi", "binds:", "binds:\n- po"] {
            assert_eq!(read(&mut s, partial), None, "{partial:?}");
        }
        assert_eq!(read(&mut s, "binds:\n- port: 1"), None);
        assert_eq!(
            read(&mut s, "binds:\n- port: 1").as_deref(),
            Some("binds:\n- port: 1")
        );
    }

    #[test]
    fn a_change_undone_before_it_settles_is_not_reported() {
        let mut s = Settle::new(Some(b"v1".to_vec()));
        assert_eq!(read(&mut s, ""), None);
        assert_eq!(read(&mut s, "v1"), None);
        assert_eq!(read(&mut s, "v1"), None);
        // A file missing at start: its first stable content is a change.
        let mut s = Settle::new(None);
        assert_eq!(read(&mut s, "v1"), None);
        assert_eq!(read(&mut s, "v1").as_deref(), Some("v1"));
    }

    #[tokio::test]
    async fn the_watcher_reports_only_settled_content() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("c.yaml");
        std::fs::write(&path, "v1").unwrap();
        let (stop_tx, stop_rx) = watch::channel(false);
        let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
        let task = tokio::spawn(watch_file(
            path.clone(),
            Duration::from_millis(20),
            stop_rx,
            move |t| {
                let _ = tx.send(t);
            },
        ));
        // Past the watcher's baseline read (ten polls).
        tokio::time::sleep(Duration::from_millis(200)).await;
        std::fs::write(&path, "v2").unwrap();
        let got = tokio::time::timeout(Duration::from_secs(5), rx.recv()).await;
        assert_eq!(got.unwrap().as_deref(), Some("v2"));
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        assert!(rx.try_recv().is_err(), "v2 reported once");
    }

    /// Log lines written while `f` runs on this thread.
    #[derive(Clone, Default)]
    struct Lines(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);

    impl std::io::Write for Lines {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn an_unreadable_file_is_logged_once_not_on_every_poll() {
        let lines = Lines::default();
        let writer = lines.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("missing.yaml");
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(watch_file(
            path.clone(),
            Duration::from_millis(5),
            stop_rx,
            |_| {},
        ));
        // About 60 polls of a file that is not there.
        tokio::time::sleep(Duration::from_millis(300)).await;
        std::fs::write(&path, "v1").unwrap();
        tokio::time::sleep(Duration::from_millis(100)).await;
        stop_tx.send(true).unwrap();
        task.await.unwrap();
        let text = String::from_utf8(lines.0.lock().unwrap().clone()).unwrap();
        assert_eq!(text.matches("config file unreadable").count(), 1, "{text}");
        assert_eq!(
            text.matches("config file readable again").count(),
            1,
            "{text}"
        );
    }
}
