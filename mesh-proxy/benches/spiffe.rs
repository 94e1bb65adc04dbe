//! SPIFFE ID extraction from a peer's X.509-SVID, as the mutual-TLS listener
//! does per handshake (`mesh_ca::svid_spiffe_id`: parse the DER leaf and
//! check the SVID leaf rules), with the listener's allow-list check, the
//! refusal of a CA certificate presented as a leaf, and the leaf's SHA-256
//! for `x-forwarded-client-cert`. The certificates are issued at setup by
//! `mesh_ca::Ca` (a fresh root and leaf each run; nothing is read from disk).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use mesh_ca::{Ca, IssueRequest, SpiffeId, SpiffePattern, SvidError, svid_spiffe_id};
use mesh_proxy::identity::server::sha256_hex;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;

const LEAF_ID: &str = "spiffe://mesh.local/ns/prod/sa/orders";

fn extract(c: &mut Criterion) {
    let ca = Ca::create("mesh.local").expect("create a CA");
    let id = SpiffeId::parse(LEAF_ID).expect("SPIFFE ID");
    let issued = ca.issue(&IssueRequest::new(id)).expect("issue a leaf");
    let leaf = CertificateDer::from_pem_slice(issued.cert_pem.as_bytes()).expect("leaf PEM");
    let ca_der = ca.cert_der().to_vec();
    // A listener's `tls.allow`, the matching entry last.
    let allow: Vec<SpiffePattern> = [
        "spiffe://mesh.local/ns/prod/sa/web",
        "spiffe://mesh.local/ns/staging/sa/*",
        "spiffe://mesh.local/ns/prod/sa/*",
    ]
    .iter()
    .map(|p| SpiffePattern::parse(p).expect("allow pattern"))
    .collect();

    let got = svid_spiffe_id(&leaf).expect("the issued leaf is an SVID");
    assert_eq!(got.as_str(), LEAF_ID);
    assert!(allow.iter().any(|p| p.matches(&got)));
    // The root's own ID (`spiffe://mesh.local`) has no path, so it is refused
    // on the SAN, before the basic-constraints check.
    assert!(matches!(
        svid_spiffe_id(&ca_der),
        Err(SvidError::NotSpiffe { .. })
    ));

    let mut group = c.benchmark_group("spiffe");
    group.bench_function("svid_spiffe_id", |b| {
        b.iter(|| svid_spiffe_id(black_box(&leaf)))
    });
    group.bench_function("svid_spiffe_id_and_allow_list", |b| {
        b.iter(|| {
            svid_spiffe_id(black_box(&leaf)).is_ok_and(|id| allow.iter().any(|p| p.matches(&id)))
        })
    });
    group.bench_function("reject_ca_certificate", |b| {
        b.iter(|| svid_spiffe_id(black_box(&ca_der)))
    });
    group.bench_function("leaf_sha256_hex", |b| {
        b.iter(|| sha256_hex(black_box(&leaf)))
    });
    group.finish();
}

criterion_group!(benches, extract);
criterion_main!(benches);
