//! A local token issuer: an ES256 key made at random, its public JWK, and tokens signed
//! with it. For tests, examples and local development against `mcpAuthentication`,
//! where a real identity provider is not at hand; tollgate itself only verifies.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};
use ring::rand::SystemRandom;
use ring::signature::{EcdsaKeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING};
use serde_json::{json, Value};

/// An ES256 signing key with a key id.
pub struct Issuer {
    kid: String,
    pkcs8: Vec<u8>,
    public: Vec<u8>,
}

impl std::fmt::Debug for Issuer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issuer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Issuer {
    /// A new random key named `kid`.
    ///
    /// # Panics
    /// If the operating system's random source fails.
    pub fn new(kid: &str) -> Self {
        super::crypto::install();
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("the OS random source failed");
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("a key ring just made");
        Issuer {
            kid: kid.to_string(),
            public: pair.public_key().as_ref().to_vec(),
            pkcs8: pkcs8.as_ref().to_vec(),
        }
    }

    pub fn kid(&self) -> &str {
        &self.kid
    }

    /// The public key as a JWK.
    pub fn jwk(&self) -> Value {
        let (x, y) = self.public[1..].split_at(32);
        json!({
            "kty": "EC", "crv": "P-256", "use": "sig", "alg": "ES256", "kid": self.kid,
            "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y),
        })
    }

    /// A JWKS document holding the public keys of `issuers`.
    pub fn jwks(issuers: &[&Issuer]) -> Value {
        json!({ "keys": issuers.iter().map(|i| i.jwk()).collect::<Vec<_>>() })
    }

    /// `claims` signed as an ES256 JWT with this key's `kid`.
    ///
    /// # Panics
    /// If `claims` is not a JSON object.
    pub fn sign(&self, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::ES256);
        header.kid = Some(self.kid.clone());
        encode(&header, claims, &EncodingKey::from_ec_der(&self.pkcs8)).expect("ES256 signs")
    }
}
