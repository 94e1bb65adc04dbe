//! X.509-SVID leaf rules (spiffe/spiffe `standards/X509-SVID.md` §4–5):
//! what a workload certificate must look like for its SPIFFE ID to be
//! believed. Chain validation happens elsewhere (rustls in the proxy,
//! [`crate::verify_chain`] in the CLI); this module only reads the leaf.

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{
    OID_X509_EXT_BASIC_CONSTRAINTS, OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME,
};
use x509_parser::prelude::FromDer;

use crate::spiffe::{SpiffeId, SpiffeIdError};

/// Why a certificate is not a valid X.509-SVID leaf.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SvidError {
    #[error("certificate could not be parsed: {reason}")]
    Parse { reason: String },
    #[error("certificate has a malformed {extension} extension")]
    MalformedExtension { extension: &'static str },
    #[error("certificate has {count} URI SANs, an SVID must have exactly one")]
    UriSanCount { count: usize },
    #[error("certificate URI SAN is not a workload SPIFFE ID: {source}")]
    NotSpiffe {
        #[source]
        source: SpiffeIdError,
    },
    #[error("certificate is a CA (basicConstraints cA=true), an SVID leaf must not be")]
    IsCa,
    #[error("certificate key usage has {usage}, an SVID leaf must not")]
    SigningUsage { usage: &'static str },
    #[error("certificate key usage lacks digitalSignature, an SVID leaf must have it")]
    NoDigitalSignature,
}

/// The SPIFFE ID of an X.509-SVID leaf, after checking the leaf rules:
/// exactly one URI SAN holding a workload SPIFFE ID (non-root path),
/// `cA=false` or no basic constraints, a key usage with digitalSignature and
/// neither keyCertSign nor cRLSign.
pub fn svid_spiffe_id(cert_der: &[u8]) -> Result<SpiffeId, SvidError> {
    let (_, cert) = X509Certificate::from_der(cert_der).map_err(|e| SvidError::Parse {
        reason: e.to_string(),
    })?;
    svid_id_of(&cert)
}

pub(crate) fn svid_id_of(cert: &X509Certificate<'_>) -> Result<SpiffeId, SvidError> {
    let uris = uri_sans(cert)?;
    let [uri] = uris.as_slice() else {
        return Err(SvidError::UriSanCount { count: uris.len() });
    };
    let id = SpiffeId::parse(uri).map_err(|source| SvidError::NotSpiffe { source })?;
    if is_ca_strict(cert)? {
        return Err(SvidError::IsCa);
    }
    let usage = key_usage_flags(cert)?.ok_or(SvidError::NoDigitalSignature)?;
    if usage.key_cert_sign {
        return Err(SvidError::SigningUsage {
            usage: "keyCertSign",
        });
    }
    if usage.crl_sign {
        return Err(SvidError::SigningUsage { usage: "cRLSign" });
    }
    if !usage.digital_signature {
        return Err(SvidError::NoDigitalSignature);
    }
    Ok(id)
}

/// Every URI SAN of the certificate, across however many SAN extensions it
/// carries (a second SAN extension must not smuggle in a second identity).
pub(crate) fn uri_sans<'a>(cert: &'a X509Certificate<'_>) -> Result<Vec<&'a str>, SvidError> {
    let mut uris = Vec::new();
    for ext in cert.extensions() {
        if ext.oid != OID_X509_EXT_SUBJECT_ALT_NAME {
            continue;
        }
        let ParsedExtension::SubjectAlternativeName(san) = ext.parsed_extension() else {
            return Err(SvidError::MalformedExtension {
                extension: "subjectAltName",
            });
        };
        for name in &san.general_names {
            match name {
                GeneralName::URI(uri) => uris.push(*uri),
                GeneralName::Invalid(..) => {
                    return Err(SvidError::MalformedExtension {
                        extension: "subjectAltName",
                    });
                }
                _ => {}
            }
        }
    }
    Ok(uris)
}

/// `cA` of the basic constraints; a present but unparsable extension is an
/// error rather than "absent".
pub(crate) fn is_ca_strict(cert: &X509Certificate<'_>) -> Result<bool, SvidError> {
    let mut is_ca = false;
    for ext in cert.extensions() {
        if ext.oid != OID_X509_EXT_BASIC_CONSTRAINTS {
            continue;
        }
        match ext.parsed_extension() {
            ParsedExtension::BasicConstraints(bc) => is_ca |= bc.ca,
            _ => {
                return Err(SvidError::MalformedExtension {
                    extension: "basicConstraints",
                });
            }
        }
    }
    Ok(is_ca)
}

pub(crate) struct UsageFlags {
    pub digital_signature: bool,
    pub key_cert_sign: bool,
    pub crl_sign: bool,
}

/// The key usage bits, `None` when the extension is absent.
pub(crate) fn key_usage_flags(cert: &X509Certificate<'_>) -> Result<Option<UsageFlags>, SvidError> {
    let mut found: Option<UsageFlags> = None;
    for ext in cert.extensions() {
        if ext.oid != OID_X509_EXT_KEY_USAGE {
            continue;
        }
        let ParsedExtension::KeyUsage(ku) = ext.parsed_extension() else {
            return Err(SvidError::MalformedExtension {
                extension: "keyUsage",
            });
        };
        if found.is_some() {
            return Err(SvidError::MalformedExtension {
                extension: "keyUsage",
            });
        }
        found = Some(UsageFlags {
            digital_signature: ku.digital_signature(),
            key_cert_sign: ku.key_cert_sign(),
            crl_sign: ku.crl_sign(),
        });
    }
    Ok(found)
}
