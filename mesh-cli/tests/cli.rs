//! The certificate commands of the real `mesh-cli` binary: `ca init`,
//! offline `issue`, `token create` and `inspect`, checked with mesh-ca's
//! own parser and with openssl.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::{Command, Output};

use mesh_ca::testing::TestPki;
use mesh_ca::{Ca, SpiffeId, Token};
use time::OffsetDateTime;

fn mesh_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run mesh-cli")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = mesh_cli(dir, args);
    assert!(
        out.status.success(),
        "mesh-cli {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

/// Runs a command that must fail with exit code 1 and one `error:` line;
/// returns that line.
fn fails(dir: &Path, args: &[&str]) -> String {
    let out = mesh_cli(dir, args);
    assert_eq!(out.status.code(), Some(1), "mesh-cli {args:?}: {out:?}");
    let stderr = String::from_utf8(out.stderr).expect("utf-8");
    assert_eq!(stderr.lines().count(), 1, "one line expected: {stderr}");
    assert!(stderr.starts_with("error: "), "{stderr}");
    stderr.trim_end().to_owned()
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .expect("metadata")
        .permissions()
        .mode()
        & 0o777
}

/// `ca init --out ca/` then `issue orders --out certs/` in a fresh folder.
fn ca_and_orders() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    ok(
        dir.path(),
        &["ca", "init", "--trust-domain", "mesh.local", "--out", "ca/"],
    );
    ok(
        dir.path(),
        &["issue", "orders", "--ca-dir", "ca/", "--out", "certs/"],
    );
    dir
}

#[test]
fn init_issue_and_inspect_show_a_trusted_leaf_expiring_in_a_day() {
    let dir = ca_and_orders();
    let d = dir.path();
    assert_eq!(mode(&d.join("ca/ca.key")), 0o600);
    assert_eq!(mode(&d.join("ca/ca.crt")), 0o644);
    assert_eq!(mode(&d.join("certs/orders.key")), 0o600);
    assert_eq!(mode(&d.join("certs/orders.crt")), 0o644);
    assert_eq!(
        std::fs::read(d.join("certs/ca.crt")).expect("bundle"),
        std::fs::read(d.join("ca/ca.crt")).expect("root")
    );

    let out = ok(
        d,
        &["inspect", "certs/orders.crt", "--bundle", "certs/ca.crt"],
    );
    assert!(
        out.contains("chain: OK (trusted by mesh root CA (mesh.local))"),
        "{out}"
    );
    assert!(
        out.contains("SPIFFE ID:    spiffe://mesh.local/orders"),
        "{out}"
    );
    assert!(out.contains("subject:      CN=orders, O=mesh"), "{out}");
    assert!(out.contains("kind:         leaf (X.509-SVID)"), "{out}");
    assert!(
        out.contains("issuer:       CN=mesh root CA (mesh.local), O=mesh"),
        "{out}"
    );
    assert!(
        out.contains("usage:        digitalSignature, serverAuth, clientAuth"),
        "{out}"
    );
    assert!(out.contains("(expires in 23h 5"), "{out}");
    assert!(out.contains("serial:       "), "{out}");

    let root = ok(d, &["inspect", "ca/ca.crt"]);
    assert!(
        root.contains("kind:         root CA (path length 0)"),
        "{root}"
    );
    assert!(
        root.contains("SPIFFE ID:    spiffe://mesh.local\n"),
        "{root}"
    );
    assert!(root.contains("expires in 3649d 23h"), "{root}");
}

#[test]
fn issue_takes_sans_ttl_and_full_ids() {
    let dir = ca_and_orders();
    let d = dir.path();
    ok(
        d,
        &[
            "issue",
            "spiffe://mesh.local/ns/prod/sa/web",
            "--ca-dir",
            "ca/",
            "--out",
            "certs/",
            "--ttl",
            "2h",
            "--dns",
            "web.local",
            "--dns",
            "web",
            "--ip",
            "127.0.0.1",
        ],
    );
    // The file stem is the last path segment; ca.crt (same CA) is kept.
    let out = ok(d, &["inspect", "certs/web.crt", "--bundle", "certs/ca.crt"]);
    assert!(
        out.contains("SPIFFE ID:    spiffe://mesh.local/ns/prod/sa/web"),
        "{out}"
    );
    assert!(out.contains("DNS SANs:     web.local, web"), "{out}");
    assert!(out.contains("IP SANs:      127.0.0.1"), "{out}");
    assert!(out.contains("(expires in 1h 5"), "{out}");

    let err = fails(
        d,
        &[
            "issue",
            "spiffe://other.td/web",
            "--ca-dir",
            "ca/",
            "--out",
            "certs/",
        ],
    );
    assert_eq!(
        err,
        "error: spiffe://other.td/web is not in the CA's trust domain mesh.local"
    );
    let err = fails(
        d,
        &[
            "issue",
            "web",
            "--ca-dir",
            "ca/",
            "--out",
            "x/",
            "--trust-domain",
            "prod.local",
        ],
    );
    assert_eq!(
        err,
        "error: --trust-domain prod.local does not match the CA's trust domain mesh.local"
    );
    let err = fails(d, &["issue", "a/../b", "--ca-dir", "ca/", "--out", "x/"]);
    assert!(err.contains("is not a spiffe id"), "{err}");
}

#[test]
fn nothing_is_overwritten_without_force() {
    let dir = ca_and_orders();
    let d = dir.path();
    let before = std::fs::read(d.join("certs/orders.crt")).expect("crt");
    let err = fails(
        d,
        &["issue", "orders", "--ca-dir", "ca/", "--out", "certs/"],
    );
    assert_eq!(
        err,
        "error: certs/orders.crt exists (use --force to overwrite)"
    );
    assert_eq!(
        std::fs::read(d.join("certs/orders.crt")).expect("crt"),
        before
    );

    ok(
        d,
        &[
            "issue", "orders", "--ca-dir", "ca/", "--out", "certs/", "--force",
        ],
    );
    assert_ne!(
        std::fs::read(d.join("certs/orders.crt")).expect("crt"),
        before
    );
    assert_eq!(mode(&d.join("certs/orders.key")), 0o600);

    let err = fails(d, &["ca", "init", "--out", "ca/"]);
    assert_eq!(err, "error: ca/ca.crt exists (use --force to overwrite)");

    // A bundle of another CA in the output folder is not silently replaced.
    ok(d, &["ca", "init", "--out", "ca2/"]);
    let err = fails(d, &["issue", "web", "--ca-dir", "ca2/", "--out", "certs/"]);
    assert_eq!(
        err,
        "error: certs/ca.crt exists and holds a different trust bundle (use --force to overwrite)"
    );
    assert!(!d.join("certs/web.key").exists());
}

#[test]
fn token_create_prints_a_token_the_ca_accepts() {
    let dir = ca_and_orders();
    let d = dir.path();
    let out = ok(
        d,
        &[
            "token", "create", "orders", "--ca-dir", "ca/", "--ttl", "15m",
        ],
    );
    let token = out.trim();
    assert_eq!(out.lines().count(), 1);
    let ca = Ca::load(&d.join("ca")).expect("load CA");
    let now = OffsetDateTime::now_utc();
    assert_eq!(
        Token::verify(&ca, token, now),
        Ok(SpiffeId::parse("spiffe://mesh.local/orders").expect("id"))
    );
    let claims = Token::verified_claims(ca.cert_der(), token).expect("claims");
    assert_eq!(claims.exp - claims.iat, 15 * 60);
    // A token of another CA is refused.
    ok(d, &["ca", "init", "--out", "other/"]);
    let theirs = ok(d, &["token", "create", "orders", "--ca-dir", "other/"]);
    assert!(Token::verify(&ca, theirs.trim(), now).is_err());
}

#[test]
fn openssl_accepts_the_leaf_and_sees_the_uri_san() {
    let dir = ca_and_orders();
    let d = dir.path();
    for purpose in ["sslserver", "sslclient"] {
        let out = Command::new("openssl")
            .current_dir(d)
            .args([
                "verify",
                "-purpose",
                purpose,
                "-CAfile",
                "certs/ca.crt",
                "certs/orders.crt",
            ])
            .output()
            .expect("openssl verify");
        assert!(out.status.success(), "{out:?}");
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "certs/orders.crt: OK\n"
        );
    }
    let out = Command::new("openssl")
        .current_dir(d)
        .args(["x509", "-noout", "-text", "-in", "certs/orders.crt"])
        .output()
        .expect("openssl x509");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("URI:spiffe://mesh.local/orders"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("X509v3 Key Usage: critical"), "{text}");
    // The key matches the certificate.
    let pubkey = |args: &[&str]| {
        Command::new("openssl")
            .current_dir(d)
            .args(args)
            .output()
            .expect("openssl")
            .stdout
    };
    assert_eq!(
        pubkey(&["x509", "-noout", "-pubkey", "-in", "certs/orders.crt"]),
        pubkey(&["pkey", "-pubout", "-in", "certs/orders.key"])
    );
}

#[test]
fn inspect_json_is_one_object_with_every_certificate() {
    let dir = ca_and_orders();
    let d = dir.path();
    let both = [
        std::fs::read_to_string(d.join("certs/orders.crt")).expect("crt"),
        std::fs::read_to_string(d.join("ca/ca.crt")).expect("ca"),
    ]
    .concat();
    std::fs::write(d.join("both.pem"), both).expect("write");
    let out = ok(
        d,
        &["inspect", "both.pem", "--bundle", "ca/ca.crt", "--json"],
    );
    let v: serde_json::Value = serde_json::from_str(&out).expect("json");
    let certs = v["certificates"].as_array().expect("array");
    assert_eq!(certs.len(), 2);
    assert_eq!(certs[0]["spiffe_id"], "spiffe://mesh.local/orders");
    assert_eq!(certs[0]["is_ca"], false);
    assert_eq!(certs[1]["is_ca"], true);
    assert_eq!(certs[0]["key_algorithm"], "ECDSA P-256");
    assert!(certs[0]["not_after"].as_str().expect("time").ends_with('Z'));
    assert_eq!(v["chain"]["ok"], true);
    assert_eq!(v["chain"]["spiffe_id"], "spiffe://mesh.local/orders");
    let plain = ok(d, &["inspect", "both.pem", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&plain).expect("json");
    assert!(v["chain"].is_null());
}

#[test]
fn inspect_explains_bad_chains_and_exits_1() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    let pki = TestPki::new("mesh.local");
    pki.write(d, "expired", &pki.expired("web"));
    pki.write(d, "future", &pki.future("web"));
    pki.write(d, "foreign", &pki.other_ca_leaf("web"));
    pki.write(d, "two", &pki.two_uri("web", "admin"));

    let run = |file: &str| {
        let out = mesh_cli(d, &["inspect", file, "--bundle", "ca.crt"]);
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
        )
    };
    let (code, out) = run("expired.crt");
    assert_eq!(code, Some(1));
    assert!(out.contains("(expired 1h ago)"), "{out}");
    assert!(
        out.contains("chain: FAILED: certificate \"web\" expired 1h ago"),
        "{out}"
    );
    let (code, out) = run("future.crt");
    assert_eq!(code, Some(1));
    assert!(out.contains("(not valid for another 23h 59m)"), "{out}");
    let (code, out) = run("foreign.crt");
    assert_eq!(code, Some(1));
    assert!(
        out.contains("chain: FAILED: certificate \"web\" is issued by an unknown CA"),
        "{out}"
    );
    // A chain can be fine while the leaf is no SVID: both are said.
    let (code, out) = run("two.crt");
    assert_eq!(code, Some(0));
    assert!(
        out.contains("leaf, NOT a valid X.509-SVID: certificate has 2 URI SANs, an SVID must have exactly one"),
        "{out}"
    );
    assert!(
        out.contains("URI SANs:     spiffe://mesh.local/web, spiffe://mesh.local/admin"),
        "{out}"
    );
}

#[test]
fn errors_are_one_sentence() {
    let dir = tempfile::tempdir().expect("tempdir");
    let d = dir.path();
    assert_eq!(
        fails(
            d,
            &["issue", "orders", "--ca-dir", "ca/", "--out", "certs/"]
        ),
        "error: no CA in ca/: ca/ca.key: No such file or directory (run mesh-cli ca init first)"
    );
    assert_eq!(
        fails(d, &["token", "create", "orders", "--ca-dir", "ca/"]),
        "error: no CA in ca/: ca/ca.key: No such file or directory (run mesh-cli ca init first)"
    );
    std::fs::write(d.join("x.pem"), "hello\n").expect("write");
    assert_eq!(
        fails(d, &["inspect", "x.pem"]),
        "error: cannot read x.pem: not a PEM certificate"
    );
    assert_eq!(
        fails(d, &["inspect", "missing.pem"]),
        "error: cannot read missing.pem: No such file or directory"
    );
    let err = fails(
        d,
        &["ca", "init", "--trust-domain", "Mesh.Local", "--out", "ca/"],
    );
    assert!(
        err.contains("trust domain character 'M' is not allowed"),
        "{err}"
    );
    assert!(!d.join("ca").exists());
}

#[test]
fn every_command_has_an_example_in_its_help() {
    let dir = tempfile::tempdir().expect("tempdir");
    for cmd in [
        &["ca", "init", "--help"][..],
        &["issue", "--help"],
        &["token", "create", "--help"],
        &["inspect", "--help"],
        &["validate", "--help"],
        &["authz", "check", "--help"],
        &["authz", "explain", "--help"],
        &["stat", "--help"],
        &["wait", "--help"],
        &["fault", "--help"],
        &["traces", "--help"],
    ] {
        let out = ok(dir.path(), cmd);
        assert!(out.contains("Examples:\n  mesh-cli "), "{cmd:?}: {out}");
    }
}
