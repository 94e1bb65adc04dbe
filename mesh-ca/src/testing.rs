//! Test PKI (feature `test-util`): a CA and the certificates of the mTLS
//! negative matrix (RELIABILITY O11), each with exactly one intended defect.
//!
//! Every certificate comes from the same leaf builder as `Ca::issue`, with
//! one documented override; nothing is hand-written PEM. Validity windows
//! have a fixed shape relative to "now" (expired: ended 1 h ago after a day;
//! future: starts in 1 day), so tests can assert on the words they produce.
//! Panics on failure: this is test support, and a broken test PKI must stop
//! the test at once.

use std::path::{Path, PathBuf};

use time::OffsetDateTime;

use crate::ca::{Ca, IssueRequest};
use crate::files::{write_private_key, write_public_file};
use crate::leaf::LeafSpec;
use crate::spiffe::SpiffeId;

/// A certificate, its chain and key, in PEM.
#[derive(Debug, Clone)]
pub struct TestCert {
    pub cert_pem: String,
    pub chain_pem: String,
    pub key_pem: String,
}

/// Paths of a [`TestCert`] written to disk by [`TestPki::write`].
#[derive(Debug, Clone)]
pub struct TestCertFiles {
    pub cert: PathBuf,
    pub key: PathBuf,
}

/// A root CA for the trust domain and, for "other CA" cases, a second root
/// of the same trust domain that the bundle does not contain.
pub struct TestPki {
    ca: Ca,
    other: Ca,
}

impl TestPki {
    pub fn new(trust_domain: &str) -> TestPki {
        TestPki {
            ca: Ca::create(trust_domain).expect("test CA"),
            other: Ca::create(trust_domain).expect("other test CA"),
        }
    }

    pub fn ca(&self) -> &Ca {
        &self.ca
    }

    pub fn trust_domain(&self) -> &str {
        self.ca.trust_domain()
    }

    /// The trust bundle: the root of [`TestPki::ca`].
    pub fn bundle_pem(&self) -> String {
        self.ca.cert_pem()
    }

    /// The root of the other CA (not in the bundle).
    pub fn other_bundle_pem(&self) -> String {
        self.other.cert_pem()
    }

    /// A good SVID for `id` (full ID or service name), valid 24 h.
    pub fn leaf(&self, id: &str) -> TestCert {
        self.build(&self.ca, id, |_| {})
    }

    /// A good SVID that also carries DNS and IP SANs; reserved names (the
    /// CA server's) are allowed here, to build impostors.
    pub fn leaf_with_sans(&self, id: &str, dns: &[&str], ips: &[std::net::IpAddr]) -> TestCert {
        let mut req = IssueRequest::new(self.id(id));
        req.dns_names = dns.iter().map(|s| (*s).to_owned()).collect();
        req.ips = ips.to_vec();
        cert(self.ca.issue_any(&req).expect("test leaf with SANs"))
    }

    /// Valid from 25 h ago until 1 h ago.
    pub fn expired(&self, id: &str) -> TestCert {
        let now = OffsetDateTime::now_utc();
        self.build(&self.ca, id, |s| {
            s.not_before = now - time::Duration::hours(25);
            s.not_after = now - time::Duration::hours(1);
        })
    }

    /// Valid from 1 day from now, for a day.
    pub fn future(&self, id: &str) -> TestCert {
        let now = OffsetDateTime::now_utc();
        self.build(&self.ca, id, |s| {
            s.not_before = now + time::Duration::days(1);
            s.not_after = now + time::Duration::days(2);
        })
    }

    /// A good SVID for the same ID, signed by the other root.
    pub fn other_ca_leaf(&self, id: &str) -> TestCert {
        self.build(&self.other, id, |_| {})
    }

    /// `CA:TRUE` with keyCertSign and cRLSign, otherwise SVID-shaped.
    pub fn ca_leaf(&self, id: &str) -> TestCert {
        self.build(&self.ca, id, |s| s.is_ca = true)
    }

    /// Two URI SANs.
    pub fn two_uri(&self, id1: &str, id2: &str) -> TestCert {
        let second = [self.id(id2)];
        let id = self.id(id1);
        let now = OffsetDateTime::now_utc();
        let mut spec = LeafSpec::new(&id, now, now + time::Duration::hours(24));
        spec.extra_uris = &second;
        cert(self.ca.issue_spec(&spec).expect("two-URI test cert"))
    }

    /// A join token for `id`, even one no workload may have (the CA's own
    /// identity), valid 10 minutes.
    pub fn token_for_any(&self, id: &str) -> String {
        let id = self.id(id);
        crate::token::Token::create_any(
            &self.ca,
            &id,
            std::time::Duration::from_secs(600),
            OffsetDateTime::now_utc(),
        )
        .expect("test token")
    }

    /// Writes `<name>.crt` (chain), `<name>.key` and, once, `ca.crt` into
    /// `dir`, replacing earlier files.
    pub fn write(&self, dir: &Path, name: &str, cert: &TestCert) -> TestCertFiles {
        let files = TestCertFiles {
            cert: dir.join(format!("{name}.crt")),
            key: dir.join(format!("{name}.key")),
        };
        write_public_file(&files.cert, &cert.chain_pem, true).expect("write test cert");
        write_private_key(&files.key, &cert.key_pem, true).expect("write test key");
        write_public_file(&dir.join("ca.crt"), &self.bundle_pem(), true).expect("write bundle");
        files
    }

    fn id(&self, id: &str) -> SpiffeId {
        SpiffeId::from_service(self.trust_domain(), id).expect("test SPIFFE ID")
    }

    fn build(&self, ca: &Ca, id: &str, tweak: impl FnOnce(&mut LeafSpec<'_>)) -> TestCert {
        let id = self.id(id);
        let now = OffsetDateTime::now_utc();
        let mut spec = LeafSpec::new(&id, now, now + time::Duration::hours(24));
        tweak(&mut spec);
        cert(ca.issue_spec(&spec).expect("test cert"))
    }
}

/// The DER of the first certificate in a PEM text.
pub fn first_der(pem: &str) -> Vec<u8> {
    use rustls_pki_types::CertificateDer;
    use rustls_pki_types::pem::PemObject;
    CertificateDer::from_pem_slice(pem.as_bytes())
        .expect("a PEM certificate")
        .to_vec()
}

fn cert(issued: crate::ca::Issued) -> TestCert {
    TestCert {
        cert_pem: issued.cert_pem,
        chain_pem: issued.chain_pem,
        key_pem: issued.key_pem,
    }
}
