//! Certificate path validation for inspection (`mesh-cli inspect --bundle`).
//!
//! A compact RFC 5280 §6 walk: from the leaf, each certificate must be
//! within its validity window, have no unknown critical extension, and be
//! signed by the next one (names chained, issuer a CA with keyCertSign when
//! key usage is present, `pathLenConstraint` respected), until one is signed
//! by a root of the bundle. Signatures are checked by x509-parser with ring.
//! The proxy does not use this: its handshakes go through rustls/webpki.

use rustls_pki_types::CertificateDer;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::ParsedExtension;
use x509_parser::prelude::FromDer;

use crate::error::CaError;
use crate::inspect::{certs_from_pem, display_name, human_duration};
use crate::spiffe::SpiffeId;
use crate::svid::svid_id_of;

/// A chain that verified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedChain {
    /// The leaf's SPIFFE ID when the leaf is a valid X.509-SVID.
    pub spiffe_id: Option<SpiffeId>,
    /// The common name (or subject) of the bundle root that anchors it.
    pub trusted_by: String,
}

/// Why a chain did not verify.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("the bundle has no certificate")]
    EmptyBundle,
    #[error("certificate {subject:?} could not be parsed: {reason}")]
    Parse { subject: String, reason: String },
    #[error("certificate {subject:?} expired {ago} ago")]
    Expired { subject: String, ago: String },
    #[error("certificate {subject:?} is not valid for another {wait}")]
    NotYetValid { subject: String, wait: String },
    #[error("certificate {subject:?} has an unsupported critical extension {oid}")]
    UnknownCriticalExtension { subject: String, oid: String },
    #[error("certificate {subject:?} is issued by an unknown CA ({issuer})")]
    UnknownIssuer { subject: String, issuer: String },
    #[error("certificate {subject:?} has a signature that does not verify with its issuer's key")]
    BadSignature { subject: String },
    #[error("issuer {issuer:?} is not a CA")]
    IssuerNotCa { issuer: String },
    #[error("issuer {issuer:?} may not sign certificates (no keyCertSign)")]
    IssuerCannotSign { issuer: String },
    #[error("issuer {issuer:?} allows {allowed} intermediate CAs below it, the chain has {found}")]
    PathTooLong {
        issuer: String,
        allowed: u32,
        found: usize,
    },
}

/// Verifies the leaf of `chain_pem` (plus the intermediates after it) up to
/// a root in `bundle_pem`, at time `now`.
pub fn verify_chain(
    chain_pem: &[u8],
    bundle_pem: &[u8],
    now: OffsetDateTime,
) -> Result<VerifiedChain, CaError> {
    let chain_der = certs_from_pem(chain_pem)?;
    let bundle_der = certs_from_pem(bundle_pem).map_err(|e| match e {
        CaError::NotPemCertificate => CaError::Chain(ChainError::EmptyBundle),
        other => other,
    })?;
    let chain = parse_all(&chain_der)?;
    let roots = parse_all(&bundle_der)?;
    let (Some(leaf), Some(leaf_der)) = (chain.first(), chain_der.first()) else {
        return Err(CaError::NotPemCertificate);
    };

    // A certificate that is itself in the bundle is trusted as it is.
    let same =
        |(der, _): &(&CertificateDer<'_>, &X509Certificate<'_>)| der.as_ref() == leaf_der.as_ref();
    if let Some((_, root)) = bundle_der.iter().zip(&roots).find(same) {
        check_window(root, now)?;
        return Ok(verified(leaf, root));
    }

    let mut current = leaf;
    let mut intermediates = 0usize;
    let mut rest = chain.iter().skip(1);
    loop {
        check_window(current, now)?;
        check_critical(current)?;
        let (signer, name_matched) = find_signer(current, &roots);
        if let Some(root) = signer {
            check_issuer(root, intermediates)?;
            check_window(root, now)?;
            return Ok(verified(leaf, root));
        }
        let next = rest
            .next()
            .filter(|next| next.subject().as_raw() == current.issuer().as_raw());
        let Some(next) = next else {
            let issuer = if name_matched {
                format!("{}, but not the one in the bundle", current.issuer())
            } else {
                current.issuer().to_string()
            };
            return Err(ChainError::UnknownIssuer {
                subject: display_name(current),
                issuer,
            }
            .into());
        };
        check_issuer(next, intermediates)?;
        current
            .verify_signature(Some(next.public_key()))
            .map_err(|_| ChainError::BadSignature {
                subject: display_name(current),
            })?;
        intermediates += 1;
        current = next;
    }
}

fn parse_all<'a>(ders: &'a [CertificateDer<'static>]) -> Result<Vec<X509Certificate<'a>>, CaError> {
    ders.iter()
        .enumerate()
        .map(|(i, d)| {
            X509Certificate::from_der(d).map(|(_, c)| c).map_err(|e| {
                ChainError::Parse {
                    subject: format!("#{}", i + 1),
                    reason: e.to_string(),
                }
                .into()
            })
        })
        .collect()
}

fn verified(leaf: &X509Certificate<'_>, root: &X509Certificate<'_>) -> VerifiedChain {
    VerifiedChain {
        spiffe_id: if leaf.is_ca() {
            None
        } else {
            svid_id_of(leaf).ok()
        },
        trusted_by: display_name(root),
    }
}

/// The bundle root whose subject is `cert`'s issuer and whose key verifies
/// its signature (with several roots of that name, as during a rotation, any
/// that verifies will do), and whether any root had the issuer's name: every
/// mesh root of a trust domain has the same name, so a name match alone
/// means nothing.
fn find_signer<'r, 'a>(
    cert: &X509Certificate<'_>,
    roots: &'r [X509Certificate<'a>],
) -> (Option<&'r X509Certificate<'a>>, bool) {
    let mut name_matched = false;
    for root in roots {
        if root.subject().as_raw() != cert.issuer().as_raw() {
            continue;
        }
        name_matched = true;
        if cert.verify_signature(Some(root.public_key())).is_ok() {
            return (Some(root), true);
        }
    }
    (None, name_matched)
}

fn check_window(cert: &X509Certificate<'_>, now: OffsetDateTime) -> Result<(), ChainError> {
    let not_before = cert.validity().not_before.to_datetime();
    let not_after = cert.validity().not_after.to_datetime();
    if now < not_before {
        return Err(ChainError::NotYetValid {
            subject: display_name(cert),
            wait: human_duration(not_before - now),
        });
    }
    if now > not_after {
        return Err(ChainError::Expired {
            subject: display_name(cert),
            ago: human_duration(now - not_after),
        });
    }
    Ok(())
}

fn check_critical(cert: &X509Certificate<'_>) -> Result<(), ChainError> {
    for ext in cert.extensions() {
        if ext.critical
            && matches!(
                ext.parsed_extension(),
                ParsedExtension::UnsupportedExtension { .. } | ParsedExtension::ParseError { .. }
            )
        {
            return Err(ChainError::UnknownCriticalExtension {
                subject: display_name(cert),
                oid: ext.oid.to_id_string(),
            });
        }
    }
    Ok(())
}

/// `issuer` may sign a certificate that has `below` CA certificates under it.
fn check_issuer(issuer: &X509Certificate<'_>, below: usize) -> Result<(), ChainError> {
    let name = display_name(issuer);
    let bc = issuer.basic_constraints().ok().flatten();
    let Some(bc) = bc.filter(|b| b.value.ca) else {
        return Err(ChainError::IssuerNotCa { issuer: name });
    };
    if let Ok(Some(ku)) = issuer.key_usage()
        && !ku.value.key_cert_sign()
    {
        return Err(ChainError::IssuerCannotSign { issuer: name });
    }
    if let Some(allowed) = bc.value.path_len_constraint
        && below > allowed as usize
    {
        return Err(ChainError::PathTooLong {
            issuer: name,
            allowed,
            found: below,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
