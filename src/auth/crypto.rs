//! `jsonwebtoken`'s signatures on `ring`, which tollgate already carries for TLS and
//! sealed MCP sessions, instead of a second crypto stack (`rust_crypto` or `aws_lc_rs`).
//! Every JWS algorithm verifies: HS256/384/512, RS256/384/512, PS256/384/512,
//! ES256/384 and EdDSA (Ed25519). Signing exists for the same set, for tests and tools.
//! [`install`] makes it the process's provider; it is idempotent.

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{new_error, ErrorKind, Result};
use jsonwebtoken::jwk::{EllipticCurve, ThumbprintHash};
use jsonwebtoken::signature;
use jsonwebtoken::{Algorithm, DecodingKey, DecodingKeyKind, EncodingKey};
use ring::signature::{self as sig, KeyPair};
use ring::{digest, hmac, rand::SystemRandom};

/// The provider: ring for every algorithm.
static PROVIDER: CryptoProvider = CryptoProvider {
    signer_factory: new_signer,
    verifier_factory: new_verifier,
    key_utils: KeyUtils {
        rsa_pub_components_from_private_key: rsa_components_from_private_key,
        rsa_pub_components_from_public_key: |_| {
            Err(new_error(ErrorKind::InvalidRsaKey(
                "RSA public keys in DER are not supported; use a JWK".into(),
            )))
        },
        ec_pub_components_from_private_key: ec_components_from_private_key,
        ed_pub_components_from_private_key: ed_components_from_private_key,
        compute_digest,
    },
};

/// Makes ring the process's JWT crypto provider (once; later calls do nothing).
pub fn install() {
    let _ = PROVIDER.install_default();
}

struct Verifier {
    alg: Algorithm,
    key: DecodingKey,
}

struct Signer {
    alg: Algorithm,
    key: EncodingKey,
}

fn new_verifier(alg: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    Ok(Box::new(Verifier {
        alg: *alg,
        key: key.clone(),
    }))
}

fn new_signer(alg: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    if key.family() != alg.family() {
        return Err(new_error(ErrorKind::InvalidKeyFormat));
    }
    Ok(Box::new(Signer {
        alg: *alg,
        key: key.clone(),
    }))
}

impl JwtVerifier for Verifier {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl signature::Verifier<Vec<u8>> for Verifier {
    fn verify(&self, msg: &[u8], signature: &Vec<u8>) -> std::result::Result<(), signature::Error> {
        if let Some(h) = hmac_algorithm(self.alg) {
            let secret = self
                .key
                .try_get_as_bytes()
                .map_err(|_| signature::Error::new())?;
            return hmac::verify(&hmac::Key::new(h, secret), msg, signature).map_err(failed);
        }
        if let Some(params) = rsa_parameters(self.alg) {
            return match self.key.kind() {
                DecodingKeyKind::RsaModulusExponent { n, e } => {
                    sig::RsaPublicKeyComponents { n, e }
                        .verify(params, msg, signature)
                        .map_err(failed)
                }
                DecodingKeyKind::SecretOrDer(der) => sig::UnparsedPublicKey::new(params, der)
                    .verify(msg, signature)
                    .map_err(failed),
            };
        }
        let algorithm: &'static dyn sig::VerificationAlgorithm = match self.alg {
            Algorithm::ES256 => &sig::ECDSA_P256_SHA256_FIXED,
            Algorithm::ES384 => &sig::ECDSA_P384_SHA384_FIXED,
            Algorithm::EdDSA => &sig::ED25519,
            _ => return Err(signature::Error::new()),
        };
        let DecodingKeyKind::SecretOrDer(public) = self.key.kind() else {
            return Err(signature::Error::new());
        };
        sig::UnparsedPublicKey::new(algorithm, public)
            .verify(msg, signature)
            .map_err(failed)
    }
}

impl JwtSigner for Signer {
    fn algorithm(&self) -> Algorithm {
        self.alg
    }
}

impl signature::Signer<Vec<u8>> for Signer {
    fn try_sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, signature::Error> {
        let rng = SystemRandom::new();
        let der = self.key.as_bytes();
        if let Some(h) = hmac_algorithm(self.alg) {
            return Ok(hmac::sign(&hmac::Key::new(h, der), msg).as_ref().to_vec());
        }
        if let Some(padding) = rsa_padding(self.alg) {
            let pair = sig::RsaKeyPair::from_der(der).map_err(failed)?;
            let mut out = vec![0; pair.public().modulus_len()];
            pair.sign(padding, &rng, msg, &mut out).map_err(failed)?;
            return Ok(out);
        }
        match self.alg {
            Algorithm::ES256 | Algorithm::ES384 => {
                let pair = sig::EcdsaKeyPair::from_pkcs8(ecdsa_signing(self.alg), der, &rng)
                    .map_err(failed)?;
                Ok(pair.sign(&rng, msg).map_err(failed)?.as_ref().to_vec())
            }
            Algorithm::EdDSA => {
                let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der).map_err(failed)?;
                Ok(pair.sign(msg).as_ref().to_vec())
            }
            _ => Err(signature::Error::new()),
        }
    }
}

/// Any ring error as a signature error (ring's errors say nothing more useful).
fn failed<E>(_: E) -> signature::Error {
    signature::Error::new()
}

fn hmac_algorithm(alg: Algorithm) -> Option<hmac::Algorithm> {
    match alg {
        Algorithm::HS256 => Some(hmac::HMAC_SHA256),
        Algorithm::HS384 => Some(hmac::HMAC_SHA384),
        Algorithm::HS512 => Some(hmac::HMAC_SHA512),
        _ => None,
    }
}

fn rsa_parameters(alg: Algorithm) -> Option<&'static sig::RsaParameters> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_2048_8192_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_2048_8192_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_2048_8192_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_2048_8192_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_2048_8192_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_2048_8192_SHA512),
        _ => None,
    }
}

fn rsa_padding(alg: Algorithm) -> Option<&'static dyn sig::RsaEncoding> {
    match alg {
        Algorithm::RS256 => Some(&sig::RSA_PKCS1_SHA256),
        Algorithm::RS384 => Some(&sig::RSA_PKCS1_SHA384),
        Algorithm::RS512 => Some(&sig::RSA_PKCS1_SHA512),
        Algorithm::PS256 => Some(&sig::RSA_PSS_SHA256),
        Algorithm::PS384 => Some(&sig::RSA_PSS_SHA384),
        Algorithm::PS512 => Some(&sig::RSA_PSS_SHA512),
        _ => None,
    }
}

fn ecdsa_signing(alg: Algorithm) -> &'static sig::EcdsaSigningAlgorithm {
    if alg == Algorithm::ES384 {
        &sig::ECDSA_P384_SHA384_FIXED_SIGNING
    } else {
        &sig::ECDSA_P256_SHA256_FIXED_SIGNING
    }
}

fn rsa_components_from_private_key(der: &[u8]) -> Result<(Vec<u8>, Vec<u8>)> {
    let pair = sig::RsaKeyPair::from_der(der)
        .map_err(|e| new_error(ErrorKind::InvalidRsaKey(e.to_string())))?;
    let public = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(pair.public());
    Ok((public.n, public.e))
}

fn ec_components_from_private_key(
    der: &[u8],
    alg: Algorithm,
) -> Result<(EllipticCurve, Vec<u8>, Vec<u8>)> {
    let (curve, half) = match alg {
        Algorithm::ES256 => (EllipticCurve::P256, 32),
        Algorithm::ES384 => (EllipticCurve::P384, 48),
        _ => return Err(new_error(ErrorKind::InvalidEcdsaKey)),
    };
    let rng = SystemRandom::new();
    let pair = sig::EcdsaKeyPair::from_pkcs8(ecdsa_signing(alg), der, &rng)
        .map_err(|_| new_error(ErrorKind::InvalidEcdsaKey))?;
    let point = pair.public_key().as_ref();
    if point.first() != Some(&4) || point.len() != 1 + 2 * half {
        return Err(new_error(ErrorKind::InvalidEcdsaKey));
    }
    let (x, y) = point[1..].split_at(half);
    Ok((curve, x.to_vec(), y.to_vec()))
}

fn ed_components_from_private_key(der: &[u8], curve: &EllipticCurve) -> Result<Vec<u8>> {
    if *curve != EllipticCurve::Ed25519 {
        return Err(new_error(ErrorKind::InvalidAlgorithm));
    }
    let pair = sig::Ed25519KeyPair::from_pkcs8_maybe_unchecked(der)
        .map_err(|_| new_error(ErrorKind::InvalidEddsaKey))?;
    Ok(pair.public_key().as_ref().to_vec())
}

fn compute_digest(data: &[u8], hash: ThumbprintHash) -> Result<Vec<u8>> {
    let algorithm = match hash {
        ThumbprintHash::SHA256 => &digest::SHA256,
        ThumbprintHash::SHA384 => &digest::SHA384,
        ThumbprintHash::SHA512 => &digest::SHA512,
        _ => return Err(new_error(ErrorKind::UnsupportedAlgorithm)),
    };
    Ok(digest::digest(algorithm, data).as_ref().to_vec())
}
