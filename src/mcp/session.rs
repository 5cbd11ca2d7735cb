//! Stateless sealed sessions: the gateway's whole view of a client session — each
//! target's upstream session id and protocol version, the version the client negotiated,
//! who it is, which target set it was made for — sealed with AES-256-GCM into the
//! `Mcp-Session-Id` the client holds. Any replica with the keys opens it; nothing is
//! stored, so nothing can be revoked: a session dies when its upstream sessions do.
//!
//! A token is `t1.` + base64url (no padding) of `nonce ‖ ciphertext ‖ tag`, with a random
//! 96-bit nonce per seal: rotate keys long before ~2^32 seals per key. The first key
//! seals, every key opens, so a new key goes first and the old one stays until the
//! sessions it sealed have gone.

use std::fmt;

use base64::engine::general_purpose::{STANDARD_NO_PAD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

/// What every token starts with; the version of the format and of the AAD.
const PREFIX: &str = "t1.";
/// Authenticated with every seal, so a token sealed for another purpose never opens.
const AAD: &[u8] = b"tollgate/mcp-session/v1";
/// Bytes in a key.
pub const KEY_LEN: usize = 32;
/// Longer ids are refused unread: far more than any real session seals to.
const MAX_TOKEN_LEN: usize = 16 * 1024;

/// One target's part of a session.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TargetSession {
    /// The target's configured name.
    #[serde(rename = "n")]
    pub target: String,
    /// The `Mcp-Session-Id` the target gave, if it gave one.
    #[serde(rename = "s", default, skip_serializing_if = "Option::is_none")]
    pub session_id: Option<String>,
    /// The protocol version the target negotiated.
    #[serde(rename = "v")]
    pub protocol_version: String,
}

/// A client session as the gateway knows it, sealed into its id.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionState {
    /// One entry per target, in the target set's order.
    #[serde(rename = "t")]
    pub targets: Vec<TargetSession>,
    /// The protocol version negotiated with the client.
    #[serde(rename = "v")]
    pub protocol_version: String,
    /// Who the session belongs to, once the client is authenticated.
    #[serde(rename = "sub", default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// The fingerprint of the target set the session was made for.
    #[serde(rename = "f")]
    pub fingerprint: u64,
    /// When the session was made, in Unix seconds.
    #[serde(rename = "i")]
    pub issued_at: u64,
}

/// A session key that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum SessionKeyError {
    #[error("no session keys")]
    Empty,
    #[error("session key [{index}]: not base64 or base64url: {error}")]
    Base64 {
        index: usize,
        error: base64::DecodeError,
    },
    #[error("session key [{index}]: must decode to {KEY_LEN} bytes (got {len})")]
    Length { index: usize, len: usize },
}

/// The keys that seal and open sessions: the first seals, all open.
pub struct SessionKeys {
    keys: Vec<LessSafeKey>,
    rng: SystemRandom,
}

impl fmt::Debug for SessionKeys {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SessionKeys")
            .field("keys", &self.keys.len())
            .finish_non_exhaustive()
    }
}

impl SessionKeys {
    /// Keys from their bytes; the first seals.
    pub fn new(keys: &[[u8; KEY_LEN]]) -> Result<Self, SessionKeyError> {
        if keys.is_empty() {
            return Err(SessionKeyError::Empty);
        }
        Ok(SessionKeys {
            keys: keys.iter().map(aead_key).collect(),
            rng: SystemRandom::new(),
        })
    }

    /// Keys from base64url or standard base64 text, padded or not (surrounding
    /// whitespace ignored); each must decode to 32 bytes. The first seals.
    pub fn from_base64<S: AsRef<str>>(keys: &[S]) -> Result<Self, SessionKeyError> {
        let bytes = keys
            .iter()
            .enumerate()
            .map(|(index, key)| decode_key(index, key.as_ref()))
            .collect::<Result<Vec<_>, _>>()?;
        SessionKeys::new(&bytes)
    }

    /// One random key, for when none is configured: its sessions open only in this
    /// process and die with it.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn random() -> Self {
        let rng = SystemRandom::new();
        let mut key = [0u8; KEY_LEN];
        rng.fill(&mut key).expect("the OS random source failed");
        SessionKeys {
            keys: vec![aead_key(&key)],
            rng,
        }
    }

    /// The session id for `state`, sealed under the first key.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn seal(&self, state: &SessionState) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        self.rng
            .fill(&mut nonce)
            .expect("the OS random source failed");
        let mut sealed = serde_json::to_vec(state).expect("plain fields serialize to a Vec");
        self.keys[0]
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(AAD),
                &mut sealed,
            )
            .expect("a session state is far below AES-GCM's length limit");
        let mut raw = Vec::with_capacity(NONCE_LEN + sealed.len());
        raw.extend_from_slice(&nonce);
        raw.extend_from_slice(&sealed);
        let mut token = String::with_capacity(PREFIX.len() + raw.len().div_ceil(3) * 4);
        token.push_str(PREFIX);
        URL_SAFE_NO_PAD.encode_string(&raw, &mut token);
        token
    }

    /// The state sealed in `token`, or `None` when it is not a token one of the keys
    /// sealed: wrong prefix, bad base64, too short, unknown key, tampered, bad JSON.
    pub fn open(&self, token: &str) -> Option<SessionState> {
        if token.len() > MAX_TOKEN_LEN {
            return None;
        }
        let raw = URL_SAFE_NO_PAD.decode(token.strip_prefix(PREFIX)?).ok()?;
        if raw.len() < NONCE_LEN + AES_256_GCM.tag_len() {
            return None;
        }
        let (nonce, sealed) = raw.split_at(NONCE_LEN);
        let plain = self.keys.iter().find_map(|key| {
            let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
            let mut buf = sealed.to_vec();
            let len = key
                .open_in_place(nonce, Aad::from(AAD), &mut buf)
                .ok()?
                .len();
            buf.truncate(len);
            Some(buf)
        })?;
        serde_json::from_slice(&plain).ok()
    }
}

fn aead_key(bytes: &[u8; KEY_LEN]) -> LessSafeKey {
    // AES_256_GCM takes exactly KEY_LEN bytes, which the type guarantees.
    LessSafeKey::new(UnboundKey::new(&AES_256_GCM, bytes).expect("a 32-byte AES-256 key"))
}

fn decode_key(index: usize, text: &str) -> Result<[u8; KEY_LEN], SessionKeyError> {
    let text = text.trim().trim_end_matches('=');
    let engine = if text.contains(['+', '/']) {
        &STANDARD_NO_PAD
    } else {
        &URL_SAFE_NO_PAD
    };
    let bytes = engine
        .decode(text)
        .map_err(|error| SessionKeyError::Base64 { index, error })?;
    let len = bytes.len();
    bytes
        .try_into()
        .map_err(|_| SessionKeyError::Length { index, len })
}

#[cfg(test)]
mod tests;
