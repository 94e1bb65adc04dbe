//! Reading certificates for people: what `mesh-cli inspect`, the admin
//! `/certs` page and logs show.

use std::net::IpAddr;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use serde::Serialize;
use time::OffsetDateTime;
use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::objects::{oid_registry, oid2sn};
use x509_parser::oid_registry::{
    OID_EC_P256, OID_KEY_TYPE_EC_PUBLIC_KEY, OID_NIST_EC_P384, OID_PKCS1_RSAENCRYPTION,
    OID_SIG_ED25519,
};
use x509_parser::prelude::FromDer;
use x509_parser::x509::SubjectPublicKeyInfo;

use crate::error::CaError;
use crate::svid::{svid_id_of, uri_sans};

/// One certificate, summarized.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CertInfo {
    /// RFC 4514-style, e.g. `CN=orders, O=mesh`.
    pub subject: String,
    pub issuer: String,
    /// Lowercase hex of the serial's DER integer bytes.
    pub serial_hex: String,
    /// The single `spiffe://` URI SAN, if the certificate has exactly one URI
    /// SAN and it is a SPIFFE URI (a root's is `spiffe://<td>`).
    pub spiffe_id: Option<String>,
    /// For a non-CA certificate that is not a valid X.509-SVID: why not.
    pub svid_error: Option<String>,
    pub uris: Vec<String>,
    pub dns_names: Vec<String>,
    pub ip_addrs: Vec<String>,
    #[serde(with = "time::serde::rfc3339")]
    pub not_before: OffsetDateTime,
    #[serde(with = "time::serde::rfc3339")]
    pub not_after: OffsetDateTime,
    pub is_ca: bool,
    pub path_len: Option<u32>,
    pub is_self_signed: bool,
    /// e.g. `digitalSignature`, `keyCertSign`.
    pub key_usage: Vec<String>,
    /// e.g. `serverAuth`, `clientAuth`.
    pub extended_key_usage: Vec<String>,
    /// e.g. `ECDSA P-256`.
    pub key_algorithm: String,
    /// e.g. `ecdsa-with-SHA256`.
    pub signature_algorithm: String,
    /// Lowercase hex SHA-256 of the DER.
    pub sha256: String,
}

/// Every certificate in a PEM text, in file order (a chain file has its
/// leaf first). Other PEM blocks (keys, CSRs) are skipped; none at all is
/// [`CaError::NotPemCertificate`].
pub fn inspect_pem(pem: &[u8]) -> Result<Vec<CertInfo>, CaError> {
    let ders = certs_from_pem(pem)?;
    ders.iter().map(|d| inspect_der(d)).collect()
}

/// One DER certificate.
pub fn inspect_der(der: &[u8]) -> Result<CertInfo, CaError> {
    let (_, cert) = X509Certificate::from_der(der).map_err(|e| CaError::BadCertificate {
        reason: e.to_string(),
    })?;
    let uris: Vec<String> = uri_sans(&cert)
        .map(|u| u.into_iter().map(str::to_owned).collect())
        .unwrap_or_default();
    let (dns_names, ip_addrs) = other_sans(&cert);
    let basic = cert.basic_constraints().ok().flatten();
    let is_ca = basic.as_ref().is_some_and(|b| b.value.ca);
    let spiffe_id = match uris.as_slice() {
        [one] if one.starts_with("spiffe://") => Some(one.clone()),
        _ => None,
    };
    let svid_error = if is_ca {
        None
    } else {
        svid_id_of(&cert).err().map(|e| e.to_string())
    };
    Ok(CertInfo {
        subject: cert.subject().to_string(),
        issuer: cert.issuer().to_string(),
        serial_hex: hex(cert.raw_serial()),
        spiffe_id,
        svid_error,
        uris,
        dns_names,
        ip_addrs,
        not_before: cert.validity().not_before.to_datetime(),
        not_after: cert.validity().not_after.to_datetime(),
        is_ca,
        path_len: basic.and_then(|b| b.value.path_len_constraint),
        is_self_signed: cert.subject().as_raw() == cert.issuer().as_raw()
            && cert.verify_signature(None).is_ok(),
        key_usage: key_usage_names(&cert),
        extended_key_usage: eku_names(&cert),
        key_algorithm: key_algorithm_name(cert.public_key()),
        signature_algorithm: oid_name(&cert.signature_algorithm.algorithm),
        sha256: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()),
    })
}

/// True when the PEM private key (PKCS#8) belongs to the first certificate
/// of `cert_pem`: a loaded identity's cert and key must match.
pub fn key_matches_cert(key_pem: &str, cert_pem: &[u8]) -> Result<bool, CaError> {
    let key = rcgen::KeyPair::from_pem(key_pem).map_err(|_| CaError::NotPemKey)?;
    let ders = certs_from_pem(cert_pem)?;
    let first = ders.first().ok_or(CaError::NotPemCertificate)?;
    let (_, cert) = X509Certificate::from_der(first).map_err(|e| CaError::BadCertificate {
        reason: e.to_string(),
    })?;
    Ok(cert.public_key().subject_public_key.data.as_ref() == key.public_key_raw())
}

/// The DER certificates of a PEM text.
pub(crate) fn certs_from_pem(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, CaError> {
    let certs: Vec<_> = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<_, _>>()
        .map_err(|_| CaError::NotPemCertificate)?;
    if certs.is_empty() {
        return Err(CaError::NotPemCertificate);
    }
    Ok(certs)
}

/// The first certificate's common name, or its whole subject when it has
/// none.
pub(crate) fn display_name(cert: &X509Certificate<'_>) -> String {
    cert.subject()
        .iter_common_name()
        .next()
        .and_then(|cn| cn.as_str().ok())
        .map(str::to_owned)
        .unwrap_or_else(|| cert.subject().to_string())
}

/// `ECDSA P-256`, `ECDSA P-384`, `Ed25519`, `RSA 2048`, or the OID's name.
pub fn key_algorithm_name(spki: &SubjectPublicKeyInfo<'_>) -> String {
    let alg = &spki.algorithm;
    if alg.algorithm == OID_KEY_TYPE_EC_PUBLIC_KEY {
        let curve = alg.parameters.as_ref().and_then(|p| p.as_oid().ok());
        return match curve {
            Some(c) if c == OID_EC_P256 => "ECDSA P-256".to_owned(),
            Some(c) if c == OID_NIST_EC_P384 => "ECDSA P-384".to_owned(),
            Some(c) => format!("ECDSA {}", oid_name(&c)),
            None => "ECDSA (no curve)".to_owned(),
        };
    }
    if alg.algorithm == OID_SIG_ED25519 {
        return "Ed25519".to_owned();
    }
    if alg.algorithm == OID_PKCS1_RSAENCRYPTION {
        return match spki.parsed() {
            Ok(key) => format!("RSA {}", key.key_size()),
            Err(_) => "RSA".to_owned(),
        };
    }
    oid_name(&alg.algorithm)
}

fn oid_name(oid: &x509_parser::der_parser::oid::Oid<'_>) -> String {
    oid2sn(oid, oid_registry())
        .map(str::to_owned)
        .unwrap_or_else(|_| oid.to_id_string())
}

fn other_sans(cert: &X509Certificate<'_>) -> (Vec<String>, Vec<String>) {
    let (mut dns, mut ips) = (Vec::new(), Vec::new());
    for ext in cert.extensions() {
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            continue;
        };
        for name in &san.general_names {
            match name {
                GeneralName::DNSName(d) => dns.push((*d).to_owned()),
                GeneralName::IPAddress(bytes) => ips.push(ip_string(bytes)),
                _ => {}
            }
        }
    }
    (dns, ips)
}

fn ip_string(bytes: &[u8]) -> String {
    match bytes.len() {
        4 => {
            let mut a = [0u8; 4];
            a.copy_from_slice(bytes);
            IpAddr::from(a).to_string()
        }
        16 => {
            let mut a = [0u8; 16];
            a.copy_from_slice(bytes);
            IpAddr::from(a).to_string()
        }
        _ => format!("invalid({})", hex(bytes)),
    }
}

fn key_usage_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(ku)) = cert.key_usage() else {
        return Vec::new();
    };
    let ku = ku.value;
    [
        (ku.digital_signature(), "digitalSignature"),
        (ku.non_repudiation(), "nonRepudiation"),
        (ku.key_encipherment(), "keyEncipherment"),
        (ku.data_encipherment(), "dataEncipherment"),
        (ku.key_agreement(), "keyAgreement"),
        (ku.key_cert_sign(), "keyCertSign"),
        (ku.crl_sign(), "cRLSign"),
        (ku.encipher_only(), "encipherOnly"),
        (ku.decipher_only(), "decipherOnly"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect()
}

fn eku_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(eku)) = cert.extended_key_usage() else {
        return Vec::new();
    };
    let eku = eku.value;
    let mut names: Vec<String> = [
        (eku.any, "any"),
        (eku.server_auth, "serverAuth"),
        (eku.client_auth, "clientAuth"),
        (eku.code_signing, "codeSigning"),
        (eku.email_protection, "emailProtection"),
        (eku.time_stamping, "timeStamping"),
        (eku.ocsp_signing, "OCSPSigning"),
    ]
    .into_iter()
    .filter(|(set, _)| *set)
    .map(|(_, name)| name.to_owned())
    .collect();
    names.extend(eku.other.iter().map(|o| o.to_id_string()));
    names
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A short human duration, largest two units, rounded down: `23h 59m`,
/// `3m`, `45s`, `2d 3h`. Negative durations are shown by magnitude.
pub fn human_duration(d: time::Duration) -> String {
    let secs = d.whole_seconds().unsigned_abs();
    let (days, hours, mins) = (secs / 86_400, secs % 86_400 / 3600, secs % 3600 / 60);
    match (days, hours, mins) {
        (0, 0, 0) => format!("{secs}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, 0) => format!("{h}h"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, 0, _) => format!("{d}d"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// Where `now` stands relative to a validity window, in words:
/// `expires in 23h 59m`, `expired 3m ago`, `not valid for another 2h`.
pub fn validity_words(
    not_before: OffsetDateTime,
    not_after: OffsetDateTime,
    now: OffsetDateTime,
) -> String {
    if now < not_before {
        format!("not valid for another {}", human_duration(not_before - now))
    } else if now > not_after {
        format!("expired {} ago", human_duration(now - not_after))
    } else {
        format!("expires in {}", human_duration(not_after - now))
    }
}
