//! Evaluation off the async workers: CPU-heavy checks (CEL rules over a large prompt,
//! or with a comprehension) run on Tokio's blocking threads, at most
//! `limits.cel.maxConcurrentEvaluations` at once process-wide, so one request's rule
//! cannot hold a worker that other requests need. A check that does not finish within
//! `limits.cel.evaluationTimeout` fails (the policy's failure mode applies); its thread
//! keeps its place until it ends, so the bound holds even then.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Semaphore;

use crate::config::CelLimits;

/// An offloaded check did not give an answer.
#[derive(Debug, thiserror::Error)]
pub enum OffloadError {
    #[error("the check took longer than limits.cel.evaluationTimeout ({0:?})")]
    Timeout(Duration),
    #[error("the check failed: {0}")]
    Failed(String),
}

/// Where and how heavy checks run.
#[derive(Clone, Debug)]
pub struct Offload {
    permits: Arc<Semaphore>,
    timeout: Duration,
    above_bytes: usize,
}

impl Offload {
    /// `permits`: the process-wide places (see `Offload::permits_key`).
    pub fn new(limits: &CelLimits, permits: Arc<Semaphore>) -> Self {
        Offload {
            permits,
            timeout: limits.evaluation_timeout.get(),
            above_bytes: limits.offload_above_bytes,
        }
    }

    /// The key under which pipelines share the places for `limits`.
    pub fn permits_key(limits: &CelLimits) -> String {
        format!("cel-offload/{}", limits.max_concurrent_evaluations)
    }

    /// Whether a check over `input_bytes` of input, with expressions that loop
    /// (`looping`) or not, runs off the async workers.
    pub fn wanted(&self, input_bytes: usize, looping: bool) -> bool {
        looping || input_bytes > self.above_bytes
    }

    /// Runs `work` on a blocking thread once a place is free, waiting at most the
    /// evaluation timeout in all.
    pub async fn run<T, F>(&self, work: F) -> Result<T, OffloadError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let permits = self.permits.clone();
        let run = async move {
            let permit = permits
                .acquire_owned()
                .await
                .map_err(|e| OffloadError::Failed(e.to_string()))?;
            tokio::task::spawn_blocking(move || {
                let _held = permit;
                work()
            })
            .await
            .map_err(|e| OffloadError::Failed(e.to_string()))
        };
        tokio::time::timeout(self.timeout, run)
            .await
            .map_err(|_| OffloadError::Timeout(self.timeout))?
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offload(concurrent: usize, timeout_ms: u64) -> Offload {
        let limits = CelLimits {
            evaluation_timeout: crate::config::Duration::from_millis(timeout_ms),
            ..CelLimits::default()
        };
        Offload::new(&limits, Arc::new(Semaphore::new(concurrent)))
    }

    #[test]
    fn large_or_looping_checks_are_offloaded() {
        let o = offload(1, 1000);
        assert!(!o.wanted(100, false));
        assert!(o.wanted(100, true));
        assert!(o.wanted(CelLimits::default().offload_above_bytes + 1, false));
    }

    #[tokio::test]
    async fn runs_and_answers() {
        assert_eq!(offload(1, 1000).run(|| 6 * 7).await.unwrap(), 42);
    }

    #[tokio::test]
    async fn a_slow_check_times_out_and_keeps_its_place() {
        let o = offload(1, 50);
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let err = o
            .run(move || {
                let _ = rx.recv();
            })
            .await
            .unwrap_err();
        assert!(matches!(err, OffloadError::Timeout(_)), "{err}");
        // The first check still holds the only place: the next one cannot start.
        assert!(matches!(
            o.run(|| ()).await.unwrap_err(),
            OffloadError::Timeout(_)
        ));
        tx.send(()).unwrap();
        assert!(o.run(|| ()).await.is_ok());
    }

    #[tokio::test]
    async fn a_panic_is_an_error_not_a_crash() {
        // A generous bound: the panic hook prints a backtrace first (RUST_BACKTRACE in
        // CI), and symbolizing a debug binary on a busy machine can take seconds.
        let err = offload(1, 60_000)
            .run(|| -> u32 { panic!("boom") })
            .await
            .unwrap_err();
        assert!(matches!(err, OffloadError::Failed(_)), "{err}");
    }
}
