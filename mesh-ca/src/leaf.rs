//! The one place where X.509-SVID leaf parameters are decided. `Ca::issue`,
//! `Ca::sign_csr` and the test PKI all build leaves here; the test PKI only
//! flips the documented overrides to make deliberately defective certificates.
//!
//! Subject: `CN=<service name>` (the last path segment, at most 64 bytes, the
//! X.520 upper bound) and `O=mesh`, so that `openssl x509 -text`, logs and
//! dashboards show something readable. The identity is the URI SAN alone:
//! nothing authorizes on the subject.

use std::net::IpAddr;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyUsagePurpose, SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use time::OffsetDateTime;

use crate::error::CaError;
use crate::spiffe::SpiffeId;

/// How far back `not_before` is set, so that a peer whose clock is slightly
/// behind still accepts a certificate fresh from the CA.
pub(crate) const BACKDATE: time::Duration = time::Duration::minutes(1);
/// X.520 `ub-common-name`.
const MAX_CN_LEN: usize = 64;

/// What a leaf contains. `extra_uris` and `is_ca` exist for the test PKI's
/// defective certificates; real issuance leaves them empty and false.
pub(crate) struct LeafSpec<'a> {
    pub spiffe_id: &'a SpiffeId,
    pub dns_names: &'a [String],
    pub ips: &'a [IpAddr],
    pub not_before: OffsetDateTime,
    pub not_after: OffsetDateTime,
    pub extra_uris: &'a [SpiffeId],
    pub is_ca: bool,
}

impl<'a> LeafSpec<'a> {
    /// A well-formed SVID for `spiffe_id`, valid from a minute ago until
    /// `not_after`.
    pub fn new(spiffe_id: &'a SpiffeId, now: OffsetDateTime, not_after: OffsetDateTime) -> Self {
        LeafSpec {
            spiffe_id,
            dns_names: &[],
            ips: &[],
            not_before: now - BACKDATE,
            not_after,
            extra_uris: &[],
            is_ca: false,
        }
    }

    pub fn params(&self) -> Result<CertificateParams, CaError> {
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, common_name(self.spiffe_id));
        p.distinguished_name.push(DnType::OrganizationName, "mesh");

        p.subject_alt_names = Vec::new();
        for id in std::iter::once(self.spiffe_id).chain(self.extra_uris) {
            p.subject_alt_names.push(SanType::URI(uri(id)?));
        }
        for name in self.dns_names {
            let dns = name
                .as_str()
                .try_into()
                .map_err(|e: rcgen::Error| CaError::BadDnsName {
                    name: name.clone(),
                    reason: e.to_string(),
                })?;
            p.subject_alt_names.push(SanType::DnsName(dns));
        }
        p.subject_alt_names
            .extend(self.ips.iter().copied().map(SanType::IpAddress));

        if self.is_ca {
            p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
            p.key_usages = vec![
                KeyUsagePurpose::DigitalSignature,
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
            ];
        } else {
            p.is_ca = IsCa::ExplicitNoCa;
            p.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        }
        p.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        p.use_authority_key_identifier_extension = true;
        p.serial_number = Some(random_serial()?);
        p.not_before = self.not_before;
        p.not_after = self.not_after;
        Ok(p)
    }
}

pub(crate) fn uri(id: &SpiffeId) -> Result<rcgen::string::Ia5String, CaError> {
    // A validated SpiffeId is ASCII, so this cannot fail; map it anyway.
    id.as_str()
        .try_into()
        .map_err(|e: rcgen::Error| CaError::Crypto {
            what: "encode the URI SAN",
            source: e,
        })
}

fn common_name(id: &SpiffeId) -> String {
    // Path characters are ASCII, so byte truncation is char-safe.
    let name = id.service_name();
    name[..name.len().min(MAX_CN_LEN)].to_owned()
}

/// A random positive 128-bit serial (RFC 5280 §4.1.2.2). The top bit is
/// cleared (positive INTEGER) and the next one set, so the DER encoding is
/// always exactly 16 bytes: 126 random bits.
pub(crate) fn random_serial() -> Result<SerialNumber, CaError> {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .map_err(|_| CaError::Random)?;
    bytes[0] = (bytes[0] & 0x7f) | 0x40;
    Ok(SerialNumber::from_slice(&bytes))
}

/// `now + ttl`, capped at `limit` (the CA's own expiry): a leaf never
/// outlives its issuer.
pub(crate) fn expiry(
    now: OffsetDateTime,
    ttl: std::time::Duration,
    limit: OffsetDateTime,
) -> Result<OffsetDateTime, CaError> {
    if ttl.is_zero() {
        return Err(CaError::ZeroTtl);
    }
    let ttl = time::Duration::try_from(ttl).unwrap_or(time::Duration::MAX);
    Ok(now.checked_add(ttl).map_or(limit, |t| t.min(limit)))
}
