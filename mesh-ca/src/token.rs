//! Join tokens: how a workload gets its first certificate.
//!
//! A token is a compact JWS (RFC 7515) in JWT shape,
//! `base64url(header).base64url(payload).base64url(signature)`, with header
//! `{"alg":"ES256","typ":"JWT"}` and payload `{sub, iat, exp, jti}`: `sub` is
//! the one SPIFFE ID the token may obtain, `exp`/`iat` are Unix seconds and
//! `jti` is 128 random bits in hex. It is signed with the CA's own ECDSA
//! P-256 key (fixed-size `r||s` signature, as JWS ES256 specifies), so only
//! the CA can mint one and anyone holding the bundle can check one. Tokens
//! are bearer secrets: never log them.

use std::time::Duration;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{ECDSA_P256_SHA256_FIXED, UnparsedPublicKey};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::ca::Ca;
use crate::inspect::{hex, human_duration};
use crate::spiffe::{SpiffeId, SpiffeIdError};

const HEADER: &str = r#"{"alg":"ES256","typ":"JWT"}"#;
/// Longer inputs are refused before any decoding.
const MAX_TOKEN_LEN: usize = 4096;

/// Why a token was refused (or could not be made).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed join token: {reason}")]
    Malformed { reason: &'static str },
    #[error("join token uses algorithm {alg:?}, only ES256 is accepted")]
    Algorithm { alg: String },
    #[error("join token signature does not verify with the CA key")]
    BadSignature,
    #[error("join token expired {ago} ago")]
    Expired { ago: String },
    #[error("join token names an invalid SPIFFE ID: {source}")]
    BadSubject {
        #[source]
        source: SpiffeIdError,
    },
    #[error("join token is for trust domain {found}, this CA serves {expected}")]
    ForeignTrustDomain { found: String, expected: String },
    #[error("join token ttl must be longer than zero")]
    ZeroTtl,
    #[error("{id} is not in this CA's trust domain {trust_domain}")]
    SubjectNotInTrustDomain { id: String, trust_domain: String },
    #[error("the CA certificate could not be read: {reason}")]
    BadCaCert { reason: String },
    #[error("could not sign the join token")]
    Sign,
    #[error("{id} is reserved for the CA server itself; no token can name it")]
    Reserved { id: String },
}

/// The claims of a join token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenClaims {
    pub sub: String,
    pub iat: i64,
    pub exp: i64,
    pub jti: String,
}

/// What a valid token proves, with what single use needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedToken {
    /// The one SPIFFE ID the token may obtain.
    pub id: SpiffeId,
    /// The token's unique id.
    pub jti: String,
    /// Expiry, Unix seconds.
    pub exp: i64,
}

/// Creating and checking join tokens.
pub struct Token;

#[derive(Deserialize)]
struct Header {
    alg: String,
}

impl Token {
    /// A token for `spiffe_id` valid for `ttl` from now.
    pub fn create(ca: &Ca, spiffe_id: &SpiffeId, ttl: Duration) -> Result<String, TokenError> {
        Token::create_at(ca, spiffe_id, ttl, OffsetDateTime::now_utc())
    }

    /// A token for `spiffe_id` as if created at `now` (tests make expired
    /// tokens with it).
    pub fn create_at(
        ca: &Ca,
        spiffe_id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<String, TokenError> {
        if ttl.is_zero() {
            return Err(TokenError::ZeroTtl);
        }
        if crate::ca_identity::is_reserved_id(spiffe_id) {
            return Err(TokenError::Reserved {
                id: spiffe_id.to_string(),
            });
        }
        Token::create_any(ca, spiffe_id, ttl, now)
    }

    /// [`Token::create_at`] without the reserved-identity check (the test
    /// PKI's tokens for the CA's own identity, as older tools could mint).
    pub(crate) fn create_any(
        ca: &Ca,
        spiffe_id: &SpiffeId,
        ttl: Duration,
        now: OffsetDateTime,
    ) -> Result<String, TokenError> {
        if spiffe_id.trust_domain() != ca.trust_domain() {
            return Err(TokenError::SubjectNotInTrustDomain {
                id: spiffe_id.to_string(),
                trust_domain: ca.trust_domain().to_owned(),
            });
        }
        let rng = SystemRandom::new();
        let mut jti = [0u8; 16];
        rng.fill(&mut jti).map_err(|_| TokenError::Sign)?;
        let iat = now.unix_timestamp();
        let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX).max(1);
        let claims = TokenClaims {
            sub: spiffe_id.to_string(),
            iat,
            exp: iat.saturating_add(ttl_secs),
            jti: hex(&jti),
        };
        let payload = serde_json::to_vec(&claims).map_err(|_| TokenError::Sign)?;
        sign_payload(ca, &payload)
    }

    /// Checks `token` against `ca` at `now`; returns the one SPIFFE ID it
    /// allows.
    pub fn verify(ca: &Ca, token: &str, now: OffsetDateTime) -> Result<SpiffeId, TokenError> {
        Token::verify_with_ca_cert(ca.cert_der(), token, now)
    }

    /// [`Token::verify`], also returning the token's id and expiry, which
    /// single use needs.
    pub fn verify_full(
        ca: &Ca,
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, TokenError> {
        Token::verify_full_with_ca_cert(ca.cert_der(), token, now)
    }

    /// Checks `token` against a CA certificate (DER) at `now`: the
    /// signature, the expiry and that the subject is in the CA's trust
    /// domain.
    pub fn verify_with_ca_cert(
        ca_cert_der: &[u8],
        token: &str,
        now: OffsetDateTime,
    ) -> Result<SpiffeId, TokenError> {
        Token::verify_full_with_ca_cert(ca_cert_der, token, now).map(|v| v.id)
    }

    fn verify_full_with_ca_cert(
        ca_cert_der: &[u8],
        token: &str,
        now: OffsetDateTime,
    ) -> Result<VerifiedToken, TokenError> {
        let claims = Token::verified_claims(ca_cert_der, token)?;
        let id =
            SpiffeId::parse(&claims.sub).map_err(|source| TokenError::BadSubject { source })?;
        let expected = ca_trust_domain(ca_cert_der)?;
        if id.trust_domain() != expected {
            return Err(TokenError::ForeignTrustDomain {
                found: id.trust_domain().to_owned(),
                expected,
            });
        }
        if now.unix_timestamp() >= claims.exp {
            let ago = time::Duration::seconds(now.unix_timestamp().saturating_sub(claims.exp));
            return Err(TokenError::Expired {
                ago: human_duration(ago),
            });
        }
        let jti_ok = (1..=64).contains(&claims.jti.len())
            && claims.jti.bytes().all(|b| b.is_ascii_alphanumeric());
        if !jti_ok {
            return Err(TokenError::Malformed {
                reason: "the token id (jti) is not a short alphanumeric string",
            });
        }
        Ok(VerifiedToken {
            id,
            jti: claims.jti,
            exp: claims.exp,
        })
    }

    /// The claims of a token whose signature verifies (expiry not checked).
    pub fn verified_claims(ca_cert_der: &[u8], token: &str) -> Result<TokenClaims, TokenError> {
        let malformed = |reason| TokenError::Malformed { reason };
        if token.len() > MAX_TOKEN_LEN {
            return Err(malformed("too long"));
        }
        let token = token.trim();
        let mut parts = token.split('.');
        let (Some(h), Some(p), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(malformed("expected three dot-separated parts"));
        };
        let decode = |part: &str| URL_SAFE_NO_PAD.decode(part);
        let header = decode(h).map_err(|_| malformed("header is not base64url"))?;
        let header: Header =
            serde_json::from_slice(&header).map_err(|_| malformed("header is not JSON"))?;
        if header.alg != "ES256" {
            return Err(TokenError::Algorithm { alg: header.alg });
        }
        let sig = decode(s).map_err(|_| malformed("signature is not base64url"))?;
        let key = ca_public_key(ca_cert_der)?;
        let signing_input = &token[..h.len() + 1 + p.len()];
        UnparsedPublicKey::new(&ECDSA_P256_SHA256_FIXED, key)
            .verify(signing_input.as_bytes(), &sig)
            .map_err(|_| TokenError::BadSignature)?;
        let payload = decode(p).map_err(|_| malformed("payload is not base64url"))?;
        serde_json::from_slice(&payload).map_err(|_| malformed("payload is not the expected JSON"))
    }
}

/// `header.payload.signature` for any payload bytes (tests sign odd
/// payloads with it to reach the claims parser).
pub(crate) fn sign_payload(ca: &Ca, payload: &[u8]) -> Result<String, TokenError> {
    let signing_input = format!(
        "{}.{}",
        URL_SAFE_NO_PAD.encode(HEADER),
        URL_SAFE_NO_PAD.encode(payload)
    );
    let sig = ca
        .token_key()
        .sign(&SystemRandom::new(), signing_input.as_bytes())
        .map_err(|_| TokenError::Sign)?;
    Ok(format!(
        "{signing_input}.{}",
        URL_SAFE_NO_PAD.encode(sig.as_ref())
    ))
}

fn ca_public_key(ca_cert_der: &[u8]) -> Result<Vec<u8>, TokenError> {
    let (_, cert) = X509Certificate::from_der(ca_cert_der).map_err(|e| TokenError::BadCaCert {
        reason: e.to_string(),
    })?;
    Ok(cert.public_key().subject_public_key.data.to_vec())
}

pub(crate) fn ca_trust_domain(ca_cert_der: &[u8]) -> Result<String, TokenError> {
    let (_, cert) = X509Certificate::from_der(ca_cert_der).map_err(|e| TokenError::BadCaCert {
        reason: e.to_string(),
    })?;
    let uris = crate::svid::uri_sans(&cert).map_err(|e| TokenError::BadCaCert {
        reason: e.to_string(),
    })?;
    uris.iter()
        .find_map(|u| u.strip_prefix("spiffe://"))
        .map(|td| td.trim_end_matches('/').to_owned())
        .ok_or_else(|| TokenError::BadCaCert {
            reason: "it has no spiffe://<trust-domain> URI SAN".to_owned(),
        })
}

#[cfg(test)]
mod props;
#[cfg(test)]
mod tests;
