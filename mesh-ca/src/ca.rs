//! The root CA: creating it, keeping it on disk, and issuing X.509-SVIDs.
//!
//! There is one root and no intermediate, so the root carries
//! `pathLenConstraint = 0` and a leaf's chain is just the leaf: the root is
//! the trust bundle, handed out of band (`ca.crt`), and is not repeated in
//! chains (RFC 8446 §4.4.2 lets a sender omit it; every verifier has it).

use std::net::IpAddr;
use std::path::Path;
use std::time::Duration;

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, PKCS_ECDSA_P256_SHA256, SanType,
};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::prelude::FromDer;

use crate::error::CaError;
use crate::files::{read_file, write_private_key, write_public_file};
use crate::leaf::{self, BACKDATE, LeafSpec};
use crate::spiffe::{SpiffeId, validate_trust_domain};
use crate::svid::{is_ca_strict, uri_sans};

/// The root certificate's file in a CA directory.
pub const CA_CERT_FILE: &str = "ca.crt";
/// The root key's file in a CA directory (mode 0600).
pub const CA_KEY_FILE: &str = "ca.key";
/// Lifetime of a root made by [`Ca::create`].
const ROOT_LIFETIME: time::Duration = time::Duration::days(3650);
/// Leaf lifetime when nobody says otherwise (SPEC §2).
pub const DEFAULT_LEAF_TTL: Duration = Duration::from_secs(24 * 3600);

/// A root CA: its certificate and signing key.
pub struct Ca {
    trust_domain: String,
    cert_pem: String,
    cert_der: Vec<u8>,
    not_after: OffsetDateTime,
    issuer: Issuer<'static, KeyPair>,
    /// The same key as `issuer`'s, for signing join tokens.
    token_key: EcdsaKeyPair,
}

/// A request to issue a leaf whose key the CA generates (`mesh-cli issue`).
#[derive(Debug, Clone)]
pub struct IssueRequest {
    pub spiffe_id: SpiffeId,
    pub dns_names: Vec<String>,
    pub ips: Vec<IpAddr>,
    pub ttl: Duration,
}

impl IssueRequest {
    /// A request for `spiffe_id` with no extra SANs and the default TTL.
    pub fn new(spiffe_id: SpiffeId) -> Self {
        IssueRequest {
            spiffe_id,
            dns_names: Vec::new(),
            ips: Vec::new(),
            ttl: DEFAULT_LEAF_TTL,
        }
    }
}

/// An issued leaf with its key.
#[derive(Clone)]
pub struct Issued {
    /// The leaf alone.
    pub cert_pem: String,
    /// The leaf followed by any intermediates (none today): what a workload
    /// presents.
    pub chain_pem: String,
    /// PKCS#8 PEM of the leaf's key.
    pub key_pem: String,
    pub spiffe_id: SpiffeId,
    pub not_after: OffsetDateTime,
    pub serial_hex: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued")
            .field("spiffe_id", &self.spiffe_id)
            .field("serial_hex", &self.serial_hex)
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

impl std::fmt::Debug for Ca {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ca")
            .field("trust_domain", &self.trust_domain)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

impl Ca {
    /// A new root for `trust_domain`: ECDSA P-256, valid 10 years, `cA=true`
    /// with `pathLenConstraint=0`, keyCertSign + cRLSign, URI SAN
    /// `spiffe://<td>`, subject `CN=mesh root CA (<td>), O=mesh`.
    pub fn create(trust_domain: &str) -> Result<Ca, CaError> {
        validate_trust_domain(trust_domain)?;
        let key = KeyPair::generate().map_err(|source| CaError::Crypto {
            what: "generate the CA key",
            source,
        })?;
        let now = OffsetDateTime::now_utc();
        let mut p = CertificateParams::default();
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name
            .push(DnType::CommonName, format!("mesh root CA ({trust_domain})"));
        p.distinguished_name.push(DnType::OrganizationName, "mesh");
        p.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        p.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let td_uri = format!("spiffe://{trust_domain}");
        p.subject_alt_names = vec![SanType::URI(td_uri.as_str().try_into().map_err(
            |source| CaError::Crypto {
                what: "encode the CA URI SAN",
                source,
            },
        )?)];
        p.serial_number = Some(leaf::random_serial()?);
        p.not_before = now - BACKDATE;
        p.not_after = now + ROOT_LIFETIME;
        let cert = p.self_signed(&key).map_err(|source| CaError::Crypto {
            what: "sign the CA certificate",
            source,
        })?;
        Ca::from_parts(cert.der().to_vec(), key, Path::new(CA_CERT_FILE))
    }

    /// Reads `ca.key` and `ca.crt` from `dir`, as [`Ca::save`] wrote them.
    /// Checks that the certificate is a CA of some trust domain and that the
    /// key belongs to it.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        let key_bytes = read_file(&key_path)?;
        let cert_bytes = read_file(&cert_path)?;
        let bad = |path: &Path, reason: &str| CaError::BadCaFile {
            path: path.to_owned(),
            reason: reason.to_owned(),
        };
        let cert_der = CertificateDer::from_pem_slice(&cert_bytes)
            .map_err(|_| bad(&cert_path, "not a PEM certificate"))?;
        let key_pem =
            std::str::from_utf8(&key_bytes).map_err(|_| bad(&key_path, "not a PEM private key"))?;
        let key =
            KeyPair::from_pem(key_pem).map_err(|_| bad(&key_path, "not a PEM private key"))?;
        if key.algorithm() != &PKCS_ECDSA_P256_SHA256 {
            return Err(CaError::UnsupportedCaKey {
                path: key_path,
                found: format!("{:?}", key.algorithm()),
            });
        }
        {
            let (_, cert) = X509Certificate::from_der(&cert_der)
                .map_err(|e| bad(&cert_path, &format!("certificate could not be parsed: {e}")))?;
            if cert.public_key().subject_public_key.data.as_ref() != key.public_key_raw() {
                return Err(CaError::KeyMismatch {
                    key: key_path,
                    cert: cert_path,
                });
            }
        }
        Ca::from_parts(cert_der.to_vec(), key, &cert_path)
    }

    fn from_parts(cert_der: Vec<u8>, key: KeyPair, cert_path: &Path) -> Result<Ca, CaError> {
        let (trust_domain, not_after) = {
            let (_, cert) =
                X509Certificate::from_der(&cert_der).map_err(|e| CaError::BadCaFile {
                    path: cert_path.to_owned(),
                    reason: format!("certificate could not be parsed: {e}"),
                })?;
            if !is_ca_strict(&cert).unwrap_or(false) {
                return Err(CaError::NotACa {
                    path: cert_path.to_owned(),
                });
            }
            (
                trust_domain_of(&cert, cert_path)?,
                cert.validity().not_after.to_datetime(),
            )
        };
        let token_key = EcdsaKeyPair::from_pkcs8(
            &ECDSA_P256_SHA256_FIXED_SIGNING,
            &key.serialize_der(),
            &SystemRandom::new(),
        )
        .map_err(|e| CaError::BadCaFile {
            path: cert_path.with_file_name(CA_KEY_FILE),
            reason: format!("unusable ECDSA P-256 key: {e}"),
        })?;
        let issuer = Issuer::from_ca_cert_der(&CertificateDer::from(cert_der.as_slice()), key)
            .map_err(|source| CaError::Crypto {
                what: "use the CA certificate as issuer",
                source,
            })?;
        // Exactly one PEM block, so `cert_pem()` is a clean bundle.
        let cert_pem = pem_of(&cert_der);
        Ok(Ca {
            trust_domain,
            cert_pem,
            cert_der,
            not_after,
            issuer,
            token_key,
        })
    }

    /// Writes `ca.crt` (0644) and `ca.key` (0600 from its creation) into
    /// `dir`, creating it if needed. Without `force`, refuses if either file
    /// exists, before writing anything.
    pub fn save(&self, dir: &Path, force: bool) -> Result<(), CaError> {
        let key_path = dir.join(CA_KEY_FILE);
        let cert_path = dir.join(CA_CERT_FILE);
        if !force {
            for path in [&cert_path, &key_path] {
                if path.symlink_metadata().is_ok() {
                    return Err(CaError::Exists { path: path.clone() });
                }
            }
        }
        std::fs::create_dir_all(dir).map_err(|source| CaError::Write {
            path: dir.to_owned(),
            source,
        })?;
        write_private_key(&key_path, &self.issuer.key().serialize_pem(), force)?;
        write_public_file(&cert_path, &self.cert_pem, force)
    }

    pub fn trust_domain(&self) -> &str {
        &self.trust_domain
    }

    /// The root certificate in PEM: the trust bundle.
    pub fn cert_pem(&self) -> String {
        self.cert_pem.clone()
    }

    /// The root certificate in DER.
    pub fn cert_der(&self) -> &[u8] {
        &self.cert_der
    }

    /// The root's expiry; no leaf outlives it.
    pub fn not_after(&self) -> OffsetDateTime {
        self.not_after
    }

    /// Issues a workload leaf for `req.spiffe_id` (which must be in this
    /// trust domain) with a freshly generated ECDSA P-256 key. The CA
    /// server's identity and names (`spiffe://<td>/mesh-ca`, DNS `ca`,
    /// `mesh-ca`, `localhost`) are refused: a workload holding them could
    /// pose as the CA.
    pub fn issue(&self, req: &IssueRequest) -> Result<Issued, CaError> {
        crate::ca_identity::check_workload_request(req)?;
        self.issue_any(req)
    }

    /// [`Ca::issue`] without the reserved-name check: the CA server's own
    /// certificate and the test PKI's impostors.
    pub(crate) fn issue_any(&self, req: &IssueRequest) -> Result<Issued, CaError> {
        self.check_trust_domain(&req.spiffe_id)?;
        let now = OffsetDateTime::now_utc();
        let mut spec = LeafSpec::new(
            &req.spiffe_id,
            now,
            leaf::expiry(now, req.ttl, self.not_after)?,
        );
        spec.dns_names = &req.dns_names;
        spec.ips = &req.ips;
        self.issue_spec(&spec)
    }

    /// Signs a leaf described by `spec` with a new key; shared by `issue` and
    /// the test PKI.
    pub(crate) fn issue_spec(&self, spec: &LeafSpec<'_>) -> Result<Issued, CaError> {
        let key = KeyPair::generate().map_err(|source| CaError::Crypto {
            what: "generate a key",
            source,
        })?;
        let cert = spec
            .params()?
            .signed_by(&key, &self.issuer)
            .map_err(|source| CaError::Crypto {
                what: "sign the certificate",
                source,
            })?;
        let info = crate::inspect::inspect_der(cert.der())?;
        let cert_pem = cert.pem();
        Ok(Issued {
            chain_pem: cert_pem.clone(),
            cert_pem,
            key_pem: key.serialize_pem(),
            spiffe_id: spec.spiffe_id.clone(),
            not_after: info.not_after,
            serial_hex: info.serial_hex,
        })
    }

    pub(crate) fn check_trust_domain(&self, id: &SpiffeId) -> Result<(), CaError> {
        if id.trust_domain() == self.trust_domain {
            Ok(())
        } else {
            Err(CaError::ForeignTrustDomain {
                id: id.to_string(),
                trust_domain: self.trust_domain.clone(),
            })
        }
    }

    pub(crate) fn issuer(&self) -> &Issuer<'static, KeyPair> {
        &self.issuer
    }

    pub(crate) fn token_key(&self) -> &EcdsaKeyPair {
        &self.token_key
    }
}

/// The trust domain a root names in its `spiffe://<td>` URI SAN.
fn trust_domain_of(cert: &X509Certificate<'_>, path: &Path) -> Result<String, CaError> {
    let missing = || CaError::BadCaFile {
        path: path.to_owned(),
        reason: "has no spiffe://<trust-domain> URI SAN".to_owned(),
    };
    let uris = uri_sans(cert).map_err(|_| missing())?;
    let td = uris
        .iter()
        .find_map(|u| u.strip_prefix("spiffe://"))
        .map(|td| td.trim_end_matches('/'))
        .ok_or_else(missing)?;
    validate_trust_domain(td)?;
    Ok(td.to_owned())
}

/// A DER certificate as one PEM block (64-column base64, `\n` line ends).
pub(crate) fn pem_of(der: &[u8]) -> String {
    let block = pem::Pem::new("CERTIFICATE", der);
    pem::encode_config(
        &block,
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests;
