use rcgen::{BasicConstraints, ExtendedKeyUsagePurpose, IsCa, KeyUsagePurpose};
use x509_parser::certificate::X509Certificate;

use super::*;
use crate::testing::first_der as der_of;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("spiffe id")
}

fn ca() -> Ca {
    Ca::create("mesh.local").expect("CA")
}

/// A CSR with the given SANs (URIs as strings) and tweaks, signed by `key`.
fn csr_with(key: &KeyPair, uris: &[&str], tweak: impl FnOnce(&mut CertificateParams)) -> String {
    let mut p = CertificateParams::default();
    p.subject_alt_names = uris
        .iter()
        .map(|u| SanType::URI((*u).try_into().expect("ia5")))
        .collect();
    tweak(&mut p);
    p.serialize_request(key).and_then(|c| c.pem()).expect("csr")
}

fn key() -> KeyPair {
    KeyPair::generate().expect("key")
}

fn refusal(ca: &Ca, csr: &str, policy: &SignPolicy) -> CsrError {
    match ca.sign_csr(csr.as_bytes(), policy) {
        Err(CaError::Csr(e)) => e,
        other => panic!("expected a CSR refusal, got {other:?}"),
    }
}

#[test]
fn signs_a_workload_csr_keeping_only_key_and_id() {
    let ca = ca();
    let key = key();
    let csr = csr_with(&key, &["spiffe://mesh.local/orders"], |p| {
        // Everything here must be ignored.
        p.distinguished_name = DistinguishedName::new();
        p.distinguished_name.push(DnType::CommonName, "admin");
        p.subject_alt_names
            .push(SanType::DnsName("evil.example".try_into().expect("dns")));
        p.extended_key_usages = vec![ExtendedKeyUsagePurpose::CodeSigning];
        p.key_usages = vec![KeyUsagePurpose::KeyEncipherment];
    });
    let chain = ca
        .sign_csr(csr.as_bytes(), &SignPolicy::default())
        .expect("signed");
    let der = der_of(&chain);
    let (_, cert) = X509Certificate::from_der(&der).expect("parse");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    assert_eq!(
        crate::svid_spiffe_id(&der).expect("svid"),
        id("spiffe://mesh.local/orders")
    );
    let info = crate::inspect_der(&der).expect("info");
    assert_eq!(info.subject, "CN=orders, O=mesh");
    assert!(info.dns_names.is_empty(), "{:?}", info.dns_names);
    assert_eq!(info.extended_key_usage, ["serverAuth", "clientAuth"]);
    assert_eq!(info.key_usage, ["digitalSignature"]);
    assert_eq!(info.serial_hex.len(), 32);
    crate::verify_chain(
        chain.as_bytes(),
        ca.cert_pem().as_bytes(),
        OffsetDateTime::now_utc(),
    )
    .expect("chains to the root");
}

#[test]
fn generated_csrs_round_trip_and_keys_can_be_reused() {
    let ca = ca();
    let me = id("spiffe://mesh.local/ns/prod/sa/web");
    let (csr, key_pem) = generate_csr(&me).expect("csr");
    assert!(csr.starts_with("-----BEGIN CERTIFICATE REQUEST-----"));
    let policy = SignPolicy {
        allowed_id: Some(me.clone()),
        ..SignPolicy::default()
    };
    let first = ca.sign_csr(csr.as_bytes(), &policy).expect("signed");
    let again = generate_csr_for_key(&me, &key_pem).expect("renewal csr");
    let second = ca.sign_csr(again.as_bytes(), &policy).expect("renewed");
    let (a, b) = (der_of(&first), der_of(&second));
    let (_, a) = X509Certificate::from_der(&a).expect("a");
    let (_, b) = X509Certificate::from_der(&b).expect("b");
    assert_eq!(a.public_key().raw, b.public_key().raw, "same key");
    assert_ne!(a.raw_serial(), b.raw_serial(), "fresh serial on renewal");
    assert!(matches!(
        generate_csr_for_key(&me, "nope"),
        Err(CaError::NotPemKey)
    ));
}

#[test]
fn accepts_p384_and_ed25519_keys() {
    let ca = ca();
    for alg in [&rcgen::PKCS_ECDSA_P384_SHA384, &rcgen::PKCS_ED25519] {
        let key = KeyPair::generate_for(alg).expect("key");
        let csr = csr_with(&key, &["spiffe://mesh.local/web"], |_| {});
        let chain = ca
            .sign_csr(csr.as_bytes(), &SignPolicy::default())
            .expect("signed");
        let der = der_of(&chain);
        let (_, cert) = X509Certificate::from_der(&der).expect("parse");
        assert_eq!(
            cert.public_key().subject_public_key.data.as_ref(),
            key.public_key_raw()
        );
    }
}

#[test]
fn ttl_is_capped_by_max_ttl() {
    let ca = ca();
    let (csr, _) = generate_csr(&id("spiffe://mesh.local/web")).expect("csr");
    let policy = SignPolicy {
        allowed_id: None,
        ttl: Duration::from_secs(30 * 24 * 3600),
        max_ttl: Duration::from_secs(3600),
    };
    let chain = ca.sign_csr(csr.as_bytes(), &policy).expect("signed");
    let info = crate::inspect_pem(chain.as_bytes()).expect("info");
    let life = info[0].not_after - OffsetDateTime::now_utc();
    assert!(life <= time::Duration::hours(1), "{life}");
    assert!(life > time::Duration::minutes(59), "{life}");
}

#[test]
fn refuses_ca_requests() {
    let ca = ca();
    let uri = ["spiffe://mesh.local/web"];
    let as_ca = csr_with(&key(), &uri, |p| {
        p.is_ca = IsCa::Ca(BasicConstraints::Unconstrained)
    });
    let e = refusal(&ca, &as_ca, &SignPolicy::default());
    assert_eq!(
        e,
        CsrError::CaRequested {
            what: "basicConstraints cA=true"
        }
    );
    assert!(!e.is_forbidden());
    let cert_sign = csr_with(&key(), &uri, |p| {
        p.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyCertSign,
        ]
    });
    assert_eq!(
        refusal(&ca, &cert_sign, &SignPolicy::default()),
        CsrError::CaRequested {
            what: "key usage keyCertSign"
        }
    );
    let crl_sign = csr_with(&key(), &uri, |p| {
        p.key_usages = vec![KeyUsagePurpose::CrlSign]
    });
    assert_eq!(
        refusal(&ca, &crl_sign, &SignPolicy::default()),
        CsrError::CaRequested {
            what: "key usage cRLSign"
        }
    );
}

#[test]
fn refuses_zero_or_several_uri_sans() {
    let ca = ca();
    let none = csr_with(&key(), &[], |p| {
        p.subject_alt_names
            .push(SanType::DnsName("web".try_into().expect("dns")))
    });
    assert_eq!(
        refusal(&ca, &none, &SignPolicy::default()),
        CsrError::NoUriSan
    );
    let two = csr_with(
        &key(),
        &["spiffe://mesh.local/web", "spiffe://mesh.local/admin"],
        |_| {},
    );
    let e = refusal(&ca, &two, &SignPolicy::default());
    assert_eq!(e, CsrError::TooManyUriSans { count: 2 });
    assert_eq!(
        e.to_string(),
        "the certificate signing request has 2 URI SANs; it must name exactly one SPIFFE ID"
    );
}

#[test]
fn refuses_uris_that_are_not_workload_ids() {
    let ca = ca();
    for uri in [
        "spiffe://mesh.local",
        "https://mesh.local/web",
        "spiffe://mesh.local/a/../b",
    ] {
        let csr = csr_with(&key(), &[uri], |_| {});
        assert!(
            matches!(
                refusal(&ca, &csr, &SignPolicy::default()),
                CsrError::InvalidSpiffeId { .. }
            ),
            "{uri}"
        );
    }
}

#[test]
fn refuses_other_trust_domains_and_other_ids_as_forbidden() {
    let ca = ca();
    let foreign = csr_with(&key(), &["spiffe://evil.local/web"], |_| {});
    let e = refusal(&ca, &foreign, &SignPolicy::default());
    assert!(matches!(e, CsrError::ForeignTrustDomain { .. }) && e.is_forbidden());

    let other = csr_with(&key(), &["spiffe://mesh.local/admin"], |_| {});
    let policy = SignPolicy {
        allowed_id: Some(id("spiffe://mesh.local/web")),
        ..SignPolicy::default()
    };
    let e = refusal(&ca, &other, &policy);
    assert!(e.is_forbidden());
    assert_eq!(
        e.to_string(),
        "the token is for spiffe://mesh.local/web, the request asks for spiffe://mesh.local/admin"
    );
    // The same request without an ID restriction is fine.
    ca.sign_csr(other.as_bytes(), &SignPolicy::default())
        .expect("any ID of the trust domain");
}

#[test]
fn refuses_bad_signatures_and_garbage() {
    let ca = ca();
    let good = csr_with(&key(), &["spiffe://mesh.local/web"], |_| {});
    let mut der = CertificateSigningRequestDer::from_pem_slice(good.as_bytes())
        .expect("der")
        .as_ref()
        .to_vec();
    let last = der.len() - 1;
    der[last] ^= 0x01; // inside the signature value
    let tampered = pem_wrap("CERTIFICATE REQUEST", &der);
    assert!(matches!(
        refusal(&ca, &tampered, &SignPolicy::default()),
        CsrError::BadSignature { .. }
    ));

    // A signed request whose subject was edited afterwards: the signature
    // covers it, so it fails too.
    let pos = der
        .windows(3)
        .position(|w| w == b"web")
        .expect("uri in der");
    der[last] ^= 0x01;
    der[pos] = b'x';
    let edited = pem_wrap("CERTIFICATE REQUEST", &der);
    assert!(matches!(
        refusal(&ca, &edited, &SignPolicy::default()),
        CsrError::BadSignature { .. }
    ));

    assert_eq!(
        refusal(&ca, "hello", &SignPolicy::default()),
        CsrError::NotPem
    );
    let junk = pem_wrap("CERTIFICATE REQUEST", b"\x30\x03\x02\x01\x00");
    assert!(matches!(
        refusal(&ca, &junk, &SignPolicy::default()),
        CsrError::Malformed { .. }
    ));
}

#[test]
fn refuses_rsa_keys_from_openssl() {
    let ca = ca();
    let rsa = include_str!("../../fuzz/corpus/csr/rsa2048.pem");
    let e = refusal(&ca, rsa, &SignPolicy::default());
    assert_eq!(
        e,
        CsrError::UnsupportedKey {
            found: "RSA 2048".into()
        }
    );
}

#[test]
fn signs_an_openssl_made_csr() {
    let ca = ca();
    let csr = include_str!("../../fuzz/corpus/csr/valid-openssl-p256.pem");
    let chain = ca
        .sign_csr(csr.as_bytes(), &SignPolicy::default())
        .expect("openssl CSR");
    assert_eq!(
        crate::svid_spiffe_id(&der_of(&chain)).expect("svid"),
        id("spiffe://mesh.local/orders")
    );
}

/// Every seed of the fuzz target goes through `sign_csr` as the target
/// feeds it (PEM as is, anything else wrapped as PEM of DER), returning
/// a result rather than panicking.
#[test]
fn fuzz_corpus_replays_without_panicking() {
    let ca = ca();
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/csr");
    let mut seen = 0;
    let mut signed = 0;
    for entry in std::fs::read_dir(&dir).expect("corpus dir") {
        let path = entry.expect("entry").path();
        let data = std::fs::read(&path).expect("seed");
        let input = if data.starts_with(b"-----BEGIN") {
            data
        } else {
            pem_wrap("CERTIFICATE REQUEST", &data).into_bytes()
        };
        let result = ca.sign_csr(&input, &SignPolicy::default());
        signed += usize::from(result.is_ok());
        seen += 1;
    }
    assert!(seen >= 6, "corpus has only {seen} seeds");
    assert!(signed >= 2, "the valid seeds must sign ({signed})");
}

fn pem_wrap(label: &str, der: &[u8]) -> String {
    let lf = pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF);
    pem::encode_config(&pem::Pem::new(label, der), lf)
}

#[test]
fn openssl_seeds_get_their_specific_refusals() {
    let ca = ca();
    let seed = |name: &str| {
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("fuzz/corpus/csr")
            .join(name);
        std::fs::read_to_string(path).expect("seed")
    };
    let policy = SignPolicy::default();
    assert!(matches!(
        refusal(&ca, &seed("ca-request.pem"), &policy),
        CsrError::CaRequested { .. }
    ));
    assert_eq!(
        refusal(&ca, &seed("two-uri.pem"), &policy),
        CsrError::TooManyUriSans { count: 2 }
    );
    assert!(matches!(
        refusal(&ca, &seed("foreign-trust-domain.pem"), &policy),
        CsrError::ForeignTrustDomain { .. }
    ));
    assert_eq!(
        refusal(&ca, &seed("no-san.pem"), &policy),
        CsrError::NoUriSan
    );
    assert!(matches!(
        refusal(&ca, &seed("truncated.pem"), &policy),
        CsrError::NotPem | CsrError::Malformed { .. }
    ));
}
