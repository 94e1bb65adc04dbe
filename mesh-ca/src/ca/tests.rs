use std::collections::HashSet;
use std::os::unix::fs::PermissionsExt;

use x509_parser::extensions::{GeneralName, ParsedExtension};
use x509_parser::oid_registry::{OID_X509_EXT_KEY_USAGE, OID_X509_EXT_SUBJECT_ALT_NAME};

use super::*;
use crate::error::CaError;
use crate::spiffe::SpiffeIdError;
use crate::testing::first_der as der_of;

fn id(s: &str) -> SpiffeId {
    SpiffeId::parse(s).expect("spiffe id")
}

fn ca() -> Ca {
    Ca::create("mesh.local").expect("create CA")
}

#[test]
fn root_is_a_p256_ca_for_the_trust_domain() {
    let ca = ca();
    assert_eq!(ca.trust_domain(), "mesh.local");
    let der = der_of(&ca.cert_pem());
    let (_, cert) = X509Certificate::from_der(&der).expect("parse");
    let bc = cert.basic_constraints().expect("bc").expect("present");
    assert!(bc.critical && bc.value.ca);
    assert_eq!(bc.value.path_len_constraint, Some(0));
    let ku = cert.key_usage().expect("ku").expect("present").value;
    assert!(ku.key_cert_sign() && ku.crl_sign() && !ku.digital_signature());
    assert_eq!(
        crate::svid::uri_sans(&cert).expect("uris"),
        vec!["spiffe://mesh.local"]
    );
    assert_eq!(
        cert.subject().to_string(),
        "CN=mesh root CA (mesh.local), O=mesh"
    );
    let info = crate::inspect_der(&der).expect("inspect");
    assert_eq!(info.key_algorithm, "ECDSA P-256");
    assert_eq!(info.signature_algorithm, "ecdsa-with-SHA256");
    assert!(info.is_self_signed);
    let life = info.not_after - info.not_before;
    assert!(life >= time::Duration::days(3650), "{life}");
    assert!(life <= time::Duration::days(3651), "{life}");
}

#[test]
fn rejects_invalid_trust_domains() {
    assert!(matches!(
        Ca::create("Mesh.Local"),
        Err(CaError::SpiffeId(SpiffeIdError::TrustDomainChar { .. }))
    ));
    assert!(Ca::create("").is_err());
}

#[test]
fn leaf_is_an_x509_svid() {
    let ca = ca();
    let mut req = IssueRequest::new(id("spiffe://mesh.local/ns/prod/sa/orders"));
    req.dns_names = vec!["orders.prod.svc".into()];
    req.ips = vec!["10.1.2.3".parse().expect("ip")];
    let issued = ca.issue(&req).expect("issue");
    let der = der_of(&issued.cert_pem);
    let (_, cert) = X509Certificate::from_der(&der).expect("parse");

    // Exactly one URI SAN, the ID; DNS and IP SANs as asked.
    let san_ext = cert.get_extension_unique(&OID_X509_EXT_SUBJECT_ALT_NAME);
    let san_ext = san_ext.expect("one SAN ext").expect("present");
    let ParsedExtension::SubjectAlternativeName(san) = san_ext.parsed_extension() else {
        panic!("SAN not parsed");
    };
    let uris: Vec<_> = san
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(u) => Some(*u),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://mesh.local/ns/prod/sa/orders"]);
    assert!(
        san.general_names
            .contains(&GeneralName::DNSName("orders.prod.svc"))
    );
    assert!(
        san.general_names
            .contains(&GeneralName::IPAddress(&[10, 1, 2, 3]))
    );

    // Not a CA; KU critical with digitalSignature only; EKU server+client.
    let bc = cert.basic_constraints().expect("bc").expect("present");
    assert!(!bc.value.ca);
    let ku_ext = cert.get_extension_unique(&OID_X509_EXT_KEY_USAGE);
    assert!(ku_ext.expect("ku").expect("present").critical);
    let ku = cert.key_usage().expect("ku").expect("present").value;
    assert!(ku.digital_signature() && !ku.key_cert_sign() && !ku.crl_sign());
    let eku = cert
        .extended_key_usage()
        .expect("eku")
        .expect("present")
        .value;
    assert!(eku.server_auth && eku.client_auth && !eku.any);

    // Authority key identifier = the root's subject key identifier.
    let root_der = der_of(&ca.cert_pem());
    let (_, root) = X509Certificate::from_der(&root_der).expect("root");
    let ski = root
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::SubjectKeyIdentifier(k) => Some(k.0.to_vec()),
            _ => None,
        })
        .expect("root SKI");
    let aki = cert
        .iter_extensions()
        .find_map(|e| match e.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(a) => a.key_identifier.as_ref(),
            _ => None,
        })
        .expect("leaf AKI");
    assert_eq!(aki.0, ski.as_slice());
    cert.verify_signature(Some(root.public_key()))
        .expect("signed by the root");

    // Subject, key, serial, validity.
    assert_eq!(cert.subject().to_string(), "CN=orders, O=mesh");
    assert_eq!(cert.raw_serial().len(), 16);
    assert_eq!(cert.raw_serial()[0] & 0x80, 0, "serial must be positive");
    assert_eq!(issued.serial_hex.len(), 32);
    let info = crate::inspect_der(&der).expect("inspect");
    assert_eq!(info.key_algorithm, "ECDSA P-256");
    assert_eq!(info.svid_error, None);
    let now = OffsetDateTime::now_utc();
    let nb = cert.validity().not_before.to_datetime();
    assert!(nb <= now - time::Duration::seconds(55) && nb >= now - time::Duration::seconds(65));
    let life = issued.not_after - now;
    assert!(
        life > time::Duration::hours(23) + time::Duration::minutes(59),
        "{life}"
    );
    assert!(life <= time::Duration::hours(24), "{life}");

    assert_eq!(crate::svid_spiffe_id(&der).expect("svid"), req.spiffe_id);
    assert_eq!(issued.chain_pem, issued.cert_pem, "no intermediates");
    rcgen::KeyPair::from_pem(&issued.key_pem).expect("PKCS#8 key");
}

#[test]
fn serials_are_unique() {
    let ca = ca();
    let req = IssueRequest::new(id("spiffe://mesh.local/web"));
    let serials: HashSet<String> = (0..20)
        .map(|_| ca.issue(&req).expect("issue").serial_hex)
        .collect();
    assert_eq!(serials.len(), 20);
    assert!(serials.iter().all(|s| s.len() == 32));
}

#[test]
fn refuses_ids_of_other_trust_domains_and_zero_ttl() {
    let ca = ca();
    let err = ca
        .issue(&IssueRequest::new(id("spiffe://other.local/web")))
        .expect_err("foreign");
    assert_eq!(
        err.to_string(),
        "spiffe://other.local/web is not in this CA's trust domain mesh.local"
    );
    let mut req = IssueRequest::new(id("spiffe://mesh.local/web"));
    req.ttl = Duration::ZERO;
    assert!(matches!(ca.issue(&req), Err(CaError::ZeroTtl)));
    req.ttl = DEFAULT_LEAF_TTL;
    req.dns_names = vec!["bad name é".into()];
    assert!(matches!(ca.issue(&req), Err(CaError::BadDnsName { .. })));
}

#[test]
fn leaves_never_outlive_the_root() {
    let ca = ca();
    let mut req = IssueRequest::new(id("spiffe://mesh.local/web"));
    req.ttl = Duration::from_secs(u64::MAX);
    let issued = ca.issue(&req).expect("issue");
    assert!(issued.not_after <= ca.not_after());
}

#[test]
fn save_writes_modes_and_load_reads_it_back() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca_dir = dir.path().join("ca");
    let ca = ca();
    ca.save(&ca_dir, false).expect("save");
    let mode = |f: &str| {
        std::fs::metadata(ca_dir.join(f))
            .expect("meta")
            .permissions()
            .mode()
            & 0o777
    };
    assert_eq!(mode(CA_KEY_FILE), 0o600);
    assert_eq!(mode(CA_CERT_FILE), 0o644);

    let loaded = Ca::load(&ca_dir).expect("load");
    assert_eq!(loaded.trust_domain(), "mesh.local");
    assert_eq!(loaded.cert_pem(), ca.cert_pem());
    // A leaf from the loaded CA chains to the original root.
    let issued = loaded
        .issue(&IssueRequest::new(id("spiffe://mesh.local/web")))
        .expect("issue");
    let verified = crate::verify_chain(
        issued.chain_pem.as_bytes(),
        ca.cert_pem().as_bytes(),
        OffsetDateTime::now_utc(),
    )
    .expect("chain");
    assert_eq!(verified.spiffe_id, Some(id("spiffe://mesh.local/web")));
}

#[test]
fn save_refuses_to_overwrite_without_force() {
    let dir = tempfile::tempdir().expect("tempdir");
    let first = ca();
    first.save(dir.path(), false).expect("save");
    let second = ca();
    let err = second.save(dir.path(), false).expect_err("exists");
    assert!(matches!(err, CaError::Exists { .. }), "{err}");
    assert_eq!(
        Ca::load(dir.path()).expect("load").cert_pem(),
        first.cert_pem()
    );
    second.save(dir.path(), true).expect("forced");
    assert_eq!(
        Ca::load(dir.path()).expect("load").cert_pem(),
        second.cert_pem()
    );
}

#[test]
fn load_errors_name_the_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let err = Ca::load(dir.path()).expect_err("empty dir");
    assert_eq!(
        err.to_string(),
        format!("{}/ca.key: No such file or directory", dir.path().display())
    );

    // A key that belongs to another CA.
    let a = ca();
    let b = ca();
    a.save(dir.path(), false).expect("save");
    std::fs::write(
        dir.path().join(CA_KEY_FILE),
        b.issuer().key().serialize_pem(),
    )
    .expect("swap key");
    assert!(matches!(
        Ca::load(dir.path()),
        Err(CaError::KeyMismatch { .. })
    ));

    // Garbage in place of the certificate.
    std::fs::write(dir.path().join(CA_CERT_FILE), "hello").expect("garbage");
    let err = Ca::load(dir.path()).expect_err("garbage");
    assert!(
        err.to_string().ends_with("ca.crt: not a PEM certificate"),
        "{err}"
    );
}

#[test]
fn load_refuses_a_leaf_as_ca() {
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = ca();
    let issued = ca
        .issue(&IssueRequest::new(id("spiffe://mesh.local/web")))
        .expect("issue");
    std::fs::write(dir.path().join(CA_CERT_FILE), &issued.cert_pem).expect("cert");
    std::fs::write(dir.path().join(CA_KEY_FILE), &issued.key_pem).expect("key");
    assert!(matches!(Ca::load(dir.path()), Err(CaError::NotACa { .. })));
}

#[test]
fn pem_of_writes_one_lf_block_of_64_columns_that_reads_back() {
    let ca = ca();
    let text = pem_of(ca.cert_der());
    assert!(text.starts_with("-----BEGIN CERTIFICATE-----\n"), "{text}");
    assert!(text.ends_with("\n-----END CERTIFICATE-----\n"), "{text}");
    assert!(!text.contains('\r'));
    let body: Vec<&str> = text.lines().skip(1).collect();
    let (last, full) = body[..body.len() - 1].split_last().expect("lines");
    assert!(full.iter().all(|l| l.len() == 64), "{text}");
    assert!(!last.is_empty() && last.len() <= 64);
    assert_eq!(der_of(&text), ca.cert_der());
}
