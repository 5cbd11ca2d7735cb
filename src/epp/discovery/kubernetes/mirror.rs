//! One resource kind mirrored by list-then-watch: a map of every object the selectors
//! match, by name, kept current on a watch channel.
//!
//! A list gives the objects and a resource version; a watch from that version applies
//! each added, modified or deleted object. A watch that ends (its timeout) is renewed
//! from the last version seen, after a backoff when it ended sooner than
//! [`SHORTEST_WATCH`]; a `410 Gone` relists at once; any other error relists after the
//! [`Backoff`]. Everything stops when every receiver of the channel is gone.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::time::Duration;

use futures::TryStreamExt;
use kube::api::{Api, ListParams, WatchEvent, WatchParams};
use kube::{Resource, ResourceExt};
use serde::de::DeserializeOwned;
use tokio::sync::watch;

use super::super::sleep_unless_closed;

const BACKOFF_START: Duration = Duration::from_millis(500);
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// Seconds a watch request lasts before it is renewed (the API server's limit is longer).
const WATCH_TIMEOUT_SECS: u32 = 290;
/// A watch that ends sooner than this after it started counts as a failure (backoff).
const SHORTEST_WATCH: Duration = Duration::from_secs(1);

/// Exponential backoff between failed Kubernetes requests.
pub struct Backoff(Duration);

impl Backoff {
    pub fn new() -> Backoff {
        Backoff(BACKOFF_START)
    }
    fn reset(&mut self) {
        self.0 = BACKOFF_START;
    }
    /// Waits the current delay, then doubles it; false when every receiver of `tx` is
    /// gone.
    pub async fn wait<T>(&mut self, tx: &watch::Sender<T>) -> bool {
        let go_on = sleep_unless_closed(tx, self.0).await;
        self.0 = (self.0 * 2).min(BACKOFF_MAX);
        go_on
    }
}

/// The mirrored objects, by name: `None` until the first list.
pub type Mirrored<T> = watch::Sender<Option<BTreeMap<String, T>>>;

/// Keeps `tx` at `project` of every object `api` lists with the selectors, by name
/// (`None` until the first list), until every receiver is gone.
pub async fn mirror<K, T, F>(
    api: Api<K>,
    what: &'static str,
    label_selector: Option<String>,
    field_selector: Option<String>,
    project: F,
    tx: Mirrored<T>,
) where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Clone + PartialEq + Send + Sync + 'static,
    F: Fn(&K) -> T + Send + 'static,
{
    let mut m = Mirror {
        list_params: ListParams {
            label_selector: label_selector.clone(),
            field_selector: field_selector.clone(),
            ..ListParams::default()
        },
        watch_params: WatchParams {
            label_selector: label_selector.clone(),
            field_selector,
            ..WatchParams::default().timeout(WATCH_TIMEOUT_SECS)
        },
        selector: label_selector.unwrap_or_default(),
        api,
        what,
        project,
        tx,
        backoff: Backoff::new(),
        version: String::new(),
        objects: BTreeMap::new(),
    };
    while m.list().await {
        loop {
            match m.watch().await {
                WatchEnd::Renew => continue,
                WatchEnd::Relist => break,
                WatchEnd::Closed => return,
            }
        }
    }
}

/// How one watch request ended.
enum WatchEnd {
    /// Its time was up: watch again from the last version.
    Renew,
    /// The version is lost or the watch failed: list again.
    Relist,
    /// Every receiver is gone.
    Closed,
}

/// What one watch event asks of the watch.
enum Next {
    Continue,
    /// The watch stream ended.
    Ended,
    /// Relist at once.
    Relist,
    /// Relist after the backoff.
    Failed,
}

struct Mirror<K: Resource, T, F> {
    api: Api<K>,
    what: &'static str,
    /// The label selector, for the logs.
    selector: String,
    list_params: ListParams,
    watch_params: WatchParams,
    project: F,
    tx: Mirrored<T>,
    backoff: Backoff,
    /// The last resource version seen.
    version: String,
    objects: BTreeMap<String, T>,
}

impl<K, T, F> Mirror<K, T, F>
where
    K: Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    T: Clone + PartialEq + Send + Sync + 'static,
    F: Fn(&K) -> T + Send + 'static,
{
    /// Lists until a list succeeds and publishes it; false when every receiver is gone.
    async fn list(&mut self) -> bool {
        loop {
            let listed = tokio::select! {
                _ = self.tx.closed() => return false,
                r = self.api.list(&self.list_params) => r,
            };
            match listed {
                Ok(list) => {
                    self.version = list.metadata.resource_version.unwrap_or_default();
                    self.objects = list
                        .items
                        .iter()
                        .map(|o| (o.name_any(), (self.project)(o)))
                        .collect();
                    self.publish();
                    return true;
                }
                Err(e) => {
                    tracing::warn!(resource = self.what, selector = self.selector, error = %e, "Kubernetes list failed; retrying");
                    if !self.backoff.wait(&self.tx).await {
                        return false;
                    }
                }
            }
        }
    }

    /// Runs one watch request from the last version seen, applying its events.
    async fn watch(&mut self) -> WatchEnd {
        let started_at = tokio::time::Instant::now();
        let started = tokio::select! {
            _ = self.tx.closed() => return WatchEnd::Closed,
            r = self.api.watch(&self.watch_params, &self.version) => r,
        };
        let events = match started {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(resource = self.what, selector = self.selector, error = %e, "Kubernetes watch failed; relisting");
                return self.back_off(WatchEnd::Relist).await;
            }
        };
        let mut events = std::pin::pin!(events);
        loop {
            let next = tokio::select! {
                _ = self.tx.closed() => return WatchEnd::Closed,
                e = events.try_next() => e,
            };
            match self.apply(next) {
                Next::Continue => {}
                Next::Ended if started_at.elapsed() < SHORTEST_WATCH => {
                    return self.back_off(WatchEnd::Renew).await;
                }
                Next::Ended => {
                    self.backoff.reset();
                    return WatchEnd::Renew;
                }
                Next::Relist => return WatchEnd::Relist,
                Next::Failed => return self.back_off(WatchEnd::Relist).await,
            }
        }
    }

    /// Applies one item of a watch stream.
    fn apply(&mut self, next: Result<Option<WatchEvent<K>>, kube::Error>) -> Next {
        match next {
            Ok(None) => Next::Ended,
            Ok(Some(WatchEvent::Added(o) | WatchEvent::Modified(o))) => {
                self.seen(o.resource_version());
                self.objects.insert(o.name_any(), (self.project)(&o));
                self.changed()
            }
            Ok(Some(WatchEvent::Deleted(o))) => {
                self.seen(o.resource_version());
                self.objects.remove(&o.name_any());
                self.changed()
            }
            Ok(Some(WatchEvent::Bookmark(b))) => {
                self.version = b.metadata.resource_version;
                Next::Continue
            }
            // 410 Gone: the version is too old to resume from.
            Ok(Some(WatchEvent::Error(status))) if status.code == 410 => {
                tracing::debug!(
                    resource = self.what,
                    selector = self.selector,
                    "Kubernetes watch expired; relisting"
                );
                Next::Relist
            }
            Ok(Some(WatchEvent::Error(status))) => {
                tracing::warn!(
                    resource = self.what,
                    selector = self.selector,
                    code = status.code,
                    message = status.message,
                    "Kubernetes watch error; relisting"
                );
                Next::Failed
            }
            Err(e) => {
                tracing::warn!(resource = self.what, selector = self.selector, error = %e, "Kubernetes watch stream failed; relisting");
                Next::Failed
            }
        }
    }

    fn seen(&mut self, version: Option<String>) {
        if let Some(v) = version {
            self.version = v;
        }
    }

    /// Publishes the changed objects; a change shows the watch works (backoff reset).
    fn changed(&mut self) -> Next {
        self.publish();
        self.backoff.reset();
        Next::Continue
    }

    fn publish(&self) {
        self.tx.send_if_modified(|current| {
            if current.as_ref() == Some(&self.objects) {
                false
            } else {
                *current = Some(self.objects.clone());
                true
            }
        });
    }

    /// Waits the backoff, then `then`; closed when every receiver goes meanwhile.
    async fn back_off(&mut self, then: WatchEnd) -> WatchEnd {
        if self.backoff.wait(&self.tx).await {
            then
        } else {
            WatchEnd::Closed
        }
    }
}
