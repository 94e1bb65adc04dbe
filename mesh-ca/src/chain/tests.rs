use super::*;
use crate::svid::SvidError;
use crate::testing::{TestPki, first_der};
use crate::{svid_spiffe_id, validity_words};

fn now() -> OffsetDateTime {
    OffsetDateTime::now_utc()
}

fn verify(pki: &TestPki, chain: &str) -> Result<VerifiedChain, CaError> {
    verify_chain(chain.as_bytes(), pki.bundle_pem().as_bytes(), now())
}

fn chain_err(r: Result<VerifiedChain, CaError>) -> ChainError {
    match r {
        Err(CaError::Chain(e)) => e,
        other => panic!("expected a chain error, got {other:?}"),
    }
}

#[test]
fn good_leaf_verifies_and_names_its_root() {
    let pki = TestPki::new("mesh.test");
    let v = verify(&pki, &pki.leaf("web").chain_pem).expect("verifies");
    assert_eq!(v.trusted_by, "mesh root CA (mesh.test)");
    assert_eq!(
        v.spiffe_id.map(|i| i.to_string()),
        Some("spiffe://mesh.test/web".into())
    );
}

#[test]
fn root_verifies_against_itself() {
    let pki = TestPki::new("mesh.test");
    let v = verify(&pki, &pki.bundle_pem()).expect("root is trusted");
    assert_eq!(v.spiffe_id, None);
}

#[test]
fn leaf_of_another_ca_with_the_same_name_is_unknown() {
    let pki = TestPki::new("mesh.test");
    let e = chain_err(verify(&pki, &pki.other_ca_leaf("web").chain_pem));
    assert!(matches!(e, ChainError::UnknownIssuer { .. }), "{e}");
    assert!(e.to_string().contains("issued by an unknown CA"), "{e}");
    assert!(e.to_string().contains("not the one in the bundle"), "{e}");
    // With both roots in the bundle (a rotation), it verifies.
    let both = format!("{}{}", pki.bundle_pem(), pki.other_bundle_pem());
    let v = verify_chain(
        pki.other_ca_leaf("web").chain_pem.as_bytes(),
        both.as_bytes(),
        now(),
    )
    .expect("rotation bundle");
    assert!(v.spiffe_id.is_some());
}

#[test]
fn expired_and_future_leaves_fail_with_words() {
    let pki = TestPki::new("mesh.test");
    let e = chain_err(verify(&pki, &pki.expired("web").chain_pem));
    assert_eq!(
        e,
        ChainError::Expired {
            subject: "web".into(),
            ago: "1h".into()
        }
    );
    assert_eq!(e.to_string(), "certificate \"web\" expired 1h ago");
    let e = chain_err(verify(&pki, &pki.future("web").chain_pem));
    assert!(matches!(e, ChainError::NotYetValid { .. }), "{e}");
    assert!(
        e.to_string().contains("not valid for another 23h 59m"),
        "{e}"
    );
}

#[test]
fn a_leaf_cannot_act_as_an_issuer() {
    let pki = TestPki::new("mesh.test");
    // A certificate signed with a leaf's key, presented with that leaf as
    // its "intermediate".
    let leaf = pki.leaf("web");
    let leaf_key = rcgen::KeyPair::from_pem(&leaf.key_pem).expect("key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&leaf.cert_pem, leaf_key).expect("issuer");
    let id = crate::SpiffeId::parse("spiffe://mesh.test/admin").expect("id");
    let spec = crate::leaf::LeafSpec::new(&id, now(), now() + time::Duration::hours(1));
    let key = rcgen::KeyPair::generate().expect("key");
    let forged = spec
        .params()
        .expect("params")
        .signed_by(&key, &issuer)
        .expect("signed");
    let chain = format!("{}{}", forged.pem(), leaf.cert_pem);
    let e = chain_err(verify(&pki, &chain));
    assert_eq!(
        e,
        ChainError::IssuerNotCa {
            issuer: "web".into()
        }
    );
    // Without the "intermediate" the issuer is simply unknown.
    let e = chain_err(verify(&pki, &forged.pem()));
    assert!(matches!(e, ChainError::UnknownIssuer { .. }), "{e}");
}

#[test]
fn empty_bundle_and_garbage_are_errors() {
    let pki = TestPki::new("mesh.test");
    let leaf = pki.leaf("web").chain_pem;
    assert!(matches!(
        verify_chain(leaf.as_bytes(), b"", now()),
        Err(CaError::Chain(ChainError::EmptyBundle))
    ));
    assert!(matches!(
        verify_chain(b"nope", pki.bundle_pem().as_bytes(), now()),
        Err(CaError::NotPemCertificate)
    ));
}

#[test]
fn test_pki_certificates_have_their_intended_defect_only() {
    let pki = TestPki::new("mesh.test");
    let id = |s: &str| svid_spiffe_id(&first_der(s));

    assert_eq!(
        id(&pki.leaf("web").cert_pem).map(|i| i.to_string()),
        Ok("spiffe://mesh.test/web".into())
    );
    // Expired / future / other CA: a valid SVID shape, the defect is elsewhere.
    for c in [
        pki.expired("web"),
        pki.future("web"),
        pki.other_ca_leaf("web"),
    ] {
        assert!(id(&c.cert_pem).is_ok());
    }
    let expired = crate::inspect_der(&first_der(&pki.expired("web").cert_pem)).expect("info");
    assert!(expired.not_after < now() && expired.not_before < expired.not_after);
    let future = crate::inspect_der(&first_der(&pki.future("web").cert_pem)).expect("info");
    assert!(future.not_before > now());

    assert_eq!(id(&pki.ca_leaf("web").cert_pem), Err(SvidError::IsCa));
    let ca_leaf = crate::inspect_der(&first_der(&pki.ca_leaf("web").cert_pem)).expect("info");
    assert!(ca_leaf.is_ca && ca_leaf.key_usage.contains(&"keyCertSign".to_owned()));

    let two = pki.two_uri("web", "admin");
    let e = id(&two.cert_pem).expect_err("two URIs");
    assert_eq!(e, SvidError::UriSanCount { count: 2 });
    assert_eq!(
        e.to_string(),
        "certificate has 2 URI SANs, an SVID must have exactly one"
    );
    // Everything but the defect verifies: same root, in its window.
    assert!(verify(&pki, &two.chain_pem).is_ok());
    assert!(verify(&pki, &pki.ca_leaf("web").chain_pem).is_ok());
    // Keys are PKCS#8 PEM and match their certificates.
    let leaf = pki.leaf("web");
    let key = rcgen::KeyPair::from_pem(&leaf.key_pem).expect("key");
    let der = first_der(&leaf.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("cert");
    assert_eq!(
        cert.public_key().subject_public_key.data.as_ref(),
        key.public_key_raw()
    );
    let matches = |key: &str| crate::key_matches_cert(key, leaf.cert_pem.as_bytes()).ok();
    assert_eq!(matches(&leaf.key_pem), Some(true));
    assert_eq!(matches(&pki.leaf("web").key_pem), Some(false));
    assert_eq!(matches("junk"), None);
}

#[test]
fn roots_are_not_svids() {
    let pki = TestPki::new("mesh.test");
    let e = svid_spiffe_id(&first_der(&pki.bundle_pem())).expect_err("root");
    // spiffe://mesh.test has no path.
    assert!(matches!(e, SvidError::NotSpiffe { .. }), "{e}");
    assert!(matches!(
        svid_spiffe_id(b"junk"),
        Err(SvidError::Parse { .. })
    ));
}

#[test]
fn inspect_reads_every_certificate_leaf_first() {
    let pki = TestPki::new("mesh.test");
    let pem = format!("{}{}", pki.leaf("web").chain_pem, pki.bundle_pem());
    let infos = crate::inspect_pem(pem.as_bytes()).expect("inspect");
    assert_eq!(infos.len(), 2);
    assert_eq!(
        infos[0].spiffe_id.as_deref(),
        Some("spiffe://mesh.test/web")
    );
    assert!(!infos[0].is_ca && infos[1].is_ca);
    assert_eq!(infos[1].spiffe_id.as_deref(), Some("spiffe://mesh.test"));
    assert_eq!(infos[0].issuer, infos[1].subject);
    let json = serde_json::to_value(&infos[0]).expect("json");
    assert!(json["not_after"].as_str().expect("rfc3339").ends_with('Z'));
    assert!(matches!(
        crate::inspect_pem(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"),
        Err(CaError::NotPemCertificate)
    ));
    let sans = pki.leaf_with_sans("web", &["web.local"], &["::1".parse().expect("ip")]);
    let info = &crate::inspect_pem(sans.cert_pem.as_bytes()).expect("inspect")[0];
    assert_eq!(info.dns_names, ["web.local"]);
    assert_eq!(info.ip_addrs, ["::1"]);
}

#[test]
fn validity_reads_like_a_person_would_say_it() {
    let t = |s: i64| OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(s);
    let (nb, na) = (t(0), t(86_400));
    assert_eq!(validity_words(nb, na, t(61)), "expires in 23h 58m");
    assert_eq!(validity_words(nb, na, t(86_400 + 180)), "expired 3m ago");
    assert_eq!(
        validity_words(t(7200), na, t(0)),
        "not valid for another 2h"
    );
    assert_eq!(validity_words(nb, t(10 * 86_400), t(0)), "expires in 10d");
    assert_eq!(validity_words(nb, na, t(86_400 - 42)), "expires in 42s");
    assert_eq!(
        crate::human_duration(time::Duration::seconds(90_061)),
        "1d 1h"
    );
}

#[test]
fn path_length_of_the_root_is_enforced() {
    let pki = TestPki::new("mesh.test");
    // A CA:TRUE "leaf" used as an intermediate: the root's pathLen 0 forbids it.
    let inter = pki.ca_leaf("inter");
    let key = rcgen::KeyPair::from_pem(&inter.key_pem).expect("key");
    let issuer = rcgen::Issuer::from_ca_cert_pem(&inter.cert_pem, key).expect("issuer");
    let id = crate::SpiffeId::parse("spiffe://mesh.test/web").expect("id");
    let spec = crate::leaf::LeafSpec::new(&id, now(), now() + time::Duration::hours(1));
    let leaf_key = rcgen::KeyPair::generate().expect("key");
    let leaf = spec
        .params()
        .expect("params")
        .signed_by(&leaf_key, &issuer)
        .expect("signed");
    let chain = format!("{}{}", leaf.pem(), inter.cert_pem);
    let e = chain_err(verify(&pki, &chain));
    assert_eq!(
        e,
        ChainError::PathTooLong {
            issuer: "mesh root CA (mesh.test)".into(),
            allowed: 0,
            found: 1
        }
    );
}
