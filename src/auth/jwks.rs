//! Verification keys from a JWKS (RFC 7517) document, in a file or at a URL. The set is
//! re-read every `refresh`, and on a token whose `kid` it does not hold, at most once per
//! [`REFETCH_COOLDOWN`], so a rotated key is picked up without a restart and a stream of
//! made-up `kid`s costs at most one fetch per cooldown. A failed read keeps the last good
//! set. Keys tollgate cannot use (an unknown `kty`, `use` other than `sig`) are skipped
//! with a warning, not fatal.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http::{Request, Uri};
use http_body_util::{BodyExt, Full, Limited};
use jsonwebtoken::jwk::{Jwk, PublicKeyUse};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey};
use serde_json::Value;

use crate::outbound::{error_chain, HttpClient};

/// The least time between two fetches caused by an unknown `kid`.
pub const REFETCH_COOLDOWN: Duration = Duration::from_secs(5);
/// The most bytes of a JWKS document read.
const MAX_DOCUMENT: usize = 1024 * 1024;
/// The most keys kept from one document.
const MAX_KEYS: usize = 64;
/// Time allowed for one fetch from a URL.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);

/// Where the keys come from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum JwksSource {
    File(PathBuf),
    Url(Uri),
}

impl std::fmt::Display for JwksSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            JwksSource::File(p) => write!(f, "file {}", p.display()),
            JwksSource::Url(u) => write!(f, "URL {u}"),
        }
    }
}

/// One usable key (`Debug` hides nothing secret: it is a public key).
#[derive(Clone, Debug)]
pub struct Key {
    pub kid: Option<String>,
    /// The algorithm the JWK pins, if it names one.
    pub alg: Option<Algorithm>,
    pub family: AlgorithmFamily,
    pub key: DecodingKey,
}

/// Why a JWKS could not be read.
#[derive(Debug, thiserror::Error)]
pub enum JwksError {
    #[error("cannot read {from}: {reason}")]
    Read { from: JwksSource, reason: String },
    #[error("{from} is not a JWKS document: {reason}")]
    Parse { from: JwksSource, reason: String },
}

/// The key set of one source, refreshed in the background.
pub struct KeyStore {
    source: JwksSource,
    client: Arc<HttpClient<Full<Bytes>>>,
    keys: ArcSwap<Vec<Key>>,
    /// When the set was last read successfully (`None`: never).
    loaded_at: Mutex<Option<Instant>>,
    /// When an unknown `kid` last caused a fetch.
    refetched_at: Mutex<Option<Instant>>,
    /// One fetch at a time.
    fetching: tokio::sync::Mutex<()>,
    refresh: Duration,
    /// The refresh task starts with the first token checked.
    refreshing: std::sync::Once,
    me: Weak<KeyStore>,
}

impl std::fmt::Debug for KeyStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KeyStore")
            .field("source", &self.source)
            .field("keys", &self.keys.load().len())
            .finish_non_exhaustive()
    }
}

impl KeyStore {
    /// A store for `source`. A file is read now (its error is the caller's config
    /// error); a URL is fetched on first use. From the first use on, the keys are
    /// re-read every `refresh` while the store lives; a config only validated, or never
    /// used, makes no background work.
    pub fn new(
        source: JwksSource,
        refresh: Duration,
        client: Arc<HttpClient<Full<Bytes>>>,
    ) -> Result<Arc<Self>, JwksError> {
        let store = Arc::new_cyclic(|me| KeyStore {
            keys: ArcSwap::from_pointee(Vec::new()),
            source,
            client,
            loaded_at: Mutex::new(None),
            refetched_at: Mutex::new(None),
            fetching: tokio::sync::Mutex::new(()),
            refresh,
            refreshing: std::sync::Once::new(),
            me: me.clone(),
        });
        if let JwksSource::File(path) = &store.source {
            let text = std::fs::read(path).map_err(|e| JwksError::Read {
                from: store.source.clone(),
                reason: e.to_string(),
            })?;
            store.install(parse_set(&store.source, &text)?);
        }
        Ok(store)
    }

    /// Starts the periodic re-read (once; needs a Tokio runtime).
    pub fn start_refresh(&self) {
        self.refreshing.call_once(|| {
            if let Ok(runtime) = tokio::runtime::Handle::try_current() {
                runtime.spawn(refresh_loop(self.me.clone(), self.refresh));
            }
        });
    }

    pub fn source(&self) -> &JwksSource {
        &self.source
    }

    /// The keys now held.
    pub fn keys(&self) -> Arc<Vec<Key>> {
        self.keys.load_full()
    }

    /// Whether a read ever succeeded.
    pub fn loaded(&self) -> bool {
        self.loaded_at.lock().expect("lock").is_some()
    }

    /// Reads the set again because a token named a `kid` it lacks (or none was ever
    /// loaded); `false` without a read when the cooldown has not passed.
    pub async fn refetch_for_unknown_kid(&self) -> bool {
        {
            let mut at = self.refetched_at.lock().expect("lock");
            if at.is_some_and(|t| t.elapsed() < REFETCH_COOLDOWN) && self.loaded() {
                return false;
            }
            *at = Some(Instant::now());
        }
        self.reload().await.is_ok()
    }

    /// Reads the source and installs its keys; on failure the old keys stay.
    pub async fn reload(&self) -> Result<usize, JwksError> {
        let _one = self.fetching.lock().await;
        let text = match &self.source {
            JwksSource::File(path) => tokio::fs::read(path).await.map_err(|e| JwksError::Read {
                from: self.source.clone(),
                reason: e.to_string(),
            })?,
            JwksSource::Url(uri) => self.fetch(uri).await?,
        };
        let keys = parse_set(&self.source, &text)?;
        let n = keys.len();
        self.install(keys);
        Ok(n)
    }

    fn install(&self, keys: Vec<Key>) {
        self.keys.store(Arc::new(keys));
        *self.loaded_at.lock().expect("lock") = Some(Instant::now());
    }

    async fn fetch(&self, uri: &Uri) -> Result<Vec<u8>, JwksError> {
        let failed = |reason: String| JwksError::Read {
            from: self.source.clone(),
            reason,
        };
        let request = Request::get(uri.clone())
            .header(http::header::ACCEPT, "application/json")
            .body(Full::new(Bytes::new()))
            .map_err(|e| failed(e.to_string()))?;
        let response = tokio::time::timeout(FETCH_TIMEOUT, self.client.request(request))
            .await
            .map_err(|_| failed(format!("no answer within {FETCH_TIMEOUT:?}")))?
            .map_err(|e| failed(error_chain(&e)))?;
        if !response.status().is_success() {
            return Err(failed(format!(
                "answered HTTP {}",
                response.status().as_u16()
            )));
        }
        let body = Limited::new(response.into_body(), MAX_DOCUMENT);
        let bytes = tokio::time::timeout(FETCH_TIMEOUT, body.collect())
            .await
            .map_err(|_| failed(format!("body not read within {FETCH_TIMEOUT:?}")))?
            .map_err(|e| failed(format!("body: {e} (at most {MAX_DOCUMENT} bytes)")))?;
        Ok(bytes.to_bytes().to_vec())
    }
}

async fn refresh_loop(store: Weak<KeyStore>, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        let Some(store) = store.upgrade() else { return };
        if let Err(e) = store.reload().await {
            tracing::warn!(error = %e, "JWKS refresh failed; the last keys stay in use");
        }
    }
}

/// The usable keys of a JWKS document.
pub fn parse_set(source: &JwksSource, text: &[u8]) -> Result<Vec<Key>, JwksError> {
    let parse = |reason: String| JwksError::Parse {
        from: source.clone(),
        reason,
    };
    let doc: Value = serde_json::from_slice(text).map_err(|e| parse(e.to_string()))?;
    let Some(entries) = doc.get("keys").and_then(Value::as_array) else {
        return Err(parse("no `keys` array".into()));
    };
    let mut keys = Vec::new();
    for (i, entry) in entries.iter().enumerate() {
        match usable(entry) {
            Ok(Some(key)) if keys.len() < MAX_KEYS => keys.push(key),
            Ok(Some(_)) => {
                tracing::warn!(%source, "JWKS holds more than {MAX_KEYS} keys; the rest are ignored");
                break;
            }
            Ok(None) => {}
            Err(reason) => tracing::warn!(%source, key = i, %reason, "JWKS key skipped"),
        }
    }
    Ok(keys)
}

/// A JWK as a verification key; `None` for an encryption key.
fn usable(entry: &Value) -> Result<Option<Key>, String> {
    let jwk: Jwk = serde_json::from_value(entry.clone()).map_err(|e| e.to_string())?;
    if matches!(jwk.common.public_key_use, Some(ref u) if *u != PublicKeyUse::Signature) {
        return Ok(None);
    }
    let key = DecodingKey::from_jwk(&jwk).map_err(|e| e.to_string())?;
    let alg = jwk
        .common
        .key_algorithm
        .and_then(|a| a.to_string().parse::<Algorithm>().ok());
    Ok(Some(Key {
        kid: jwk.common.key_id.clone(),
        alg,
        family: key.family(),
        key,
    }))
}
