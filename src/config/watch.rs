//! Watches the config file for changes by polling its content. Polling (rather than
//! inotify) sees every way a file can change, including the symlink swap Kubernetes uses
//! for mounted ConfigMaps and editors that replace the file, at the cost of one small
//! read per interval.

use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::watch;

/// Calls `on_change` with the new text each time the file's content changes, until
/// `stop` flips to true. The first read is taken as the baseline and not reported.
pub async fn watch_file(
    path: PathBuf,
    interval: Duration,
    mut stop: watch::Receiver<bool>,
    mut on_change: impl FnMut(String) + Send,
) {
    let mut last = tokio::fs::read(&path).await.ok();
    loop {
        tokio::select! {
            _ = tokio::time::sleep(interval) => {}
            _ = stop.changed() => return,
        }
        let now = match tokio::fs::read(&path).await {
            Ok(bytes) => bytes,
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "config file unreadable; keeping the running config");
                continue;
            }
        };
        if last.as_deref() != Some(now.as_slice()) {
            last = Some(now.clone());
            on_change(String::from_utf8_lossy(&now).into_owned());
        }
    }
}
