//! `mesh-cli authz check` and `authz explain` on a real config file: the
//! proxy's own answer offline (exit 0 allow, 1 deny, 2 bad input) and the
//! effective policy of each route.

use std::path::Path;
use std::process::{Command, Output};

const CONFIG: &str = "\
identity: { cert: api.crt, key: api.key, trust_bundle: ca.crt }
listeners:
  - name: ingress
    address: 127.0.0.1:0
    tls: { mode: mutual, allow: [spiffe://mesh.local/**] }
    authz:
      rules:
        - { name: web-reads, from: [spiffe://mesh.local/web], methods: [GET, HEAD], paths: [/api/*, /healthz] }
        - { name: tenant, from: ['spiffe://mesh.local/team/**'], headers: { x-tenant: acme } }
    routes:
      - name: admin
        match: { prefix: /admin }
        cluster: app
        authz: { rules: [ { name: ops-only, from: [spiffe://mesh.local/ops] } ] }
      - { name: main, match: { prefix: / }, cluster: app }
  - name: public
    address: 127.0.0.1:0
    authz:
      default: allow
      rules: [ { name: probes, from: [unauthenticated], paths: [/healthz] } ]
    routes:
      - name: private
        match: { prefix: /private }
        cluster: app
        authz: { default: deny }
      - { name: rest, match: { prefix: / }, cluster: app }
  - name: audited
    address: 127.0.0.1:0
    tls: { mode: mutual, allow: [spiffe://mesh.local/**] }
    authz: { mode: audit, rules: [ { name: web-reads, from: [spiffe://mesh.local/web] } ] }
    routes: [ { name: main, match: { prefix: / }, cluster: app } ]
  - name: open
    address: 127.0.0.1:0
    routes: [ { name: api, match: { path: /api }, cluster: app } ]
  - { name: raw, address: 127.0.0.1:0, protocol: tcp, cluster: app }
clusters: [ { name: app, endpoints: [127.0.0.1:9] } ]
";

/// A folder with CONFIG as `proxy.yaml` (the identity files only need to exist).
fn setup() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    for name in ["api.crt", "api.key", "ca.crt"] {
        std::fs::write(dir.path().join(name), "placeholder\n").expect("write");
    }
    std::fs::write(dir.path().join("proxy.yaml"), CONFIG).expect("write");
    dir
}

fn mesh_cli(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_mesh-cli"))
        .current_dir(dir)
        .args(args)
        .output()
        .expect("run mesh-cli")
}

/// `authz check proxy.yaml --listener L --from WHO --method M --path P
/// [--header H]...`: (exit code, stdout, stderr).
fn check(
    dir: &Path,
    listener: &str,
    who: &str,
    method: &str,
    path: &str,
    headers: &[&str],
) -> (i32, String, String) {
    let from = match who {
        "unauthenticated" | "" => who.to_owned(),
        w if w.contains(':') => w.to_owned(),
        w => format!("spiffe://mesh.local/{w}"),
    };
    let mut args = vec![
        "authz",
        "check",
        "proxy.yaml",
        "--listener",
        listener,
        "--from",
        &from,
        "--method",
        method,
        "--path",
        path,
    ];
    for h in headers {
        args.extend(["--header", h]);
    }
    let out = mesh_cli(dir, &args);
    (
        out.status.code().expect("exit code"),
        String::from_utf8(out.stdout).expect("utf-8"),
        String::from_utf8(out.stderr).expect("utf-8"),
    )
}

/// Each case: `"LISTENER WHO METHOD PATH [HEADER]..."`, exit code, the line.
#[track_caller]
fn answers(dir: &Path, cases: &[(&str, i32, &str)]) {
    for (request, code, line) in cases {
        let words: Vec<&str> = request.split_whitespace().collect();
        let [listener, who, method, path, headers @ ..] = &words[..] else {
            panic!("bad case {request}");
        };
        let (got, stdout, stderr) = check(dir, listener, who, method, path, headers);
        assert_eq!(
            (got, stdout.as_str()),
            (*code, format!("{line}\n").as_str()),
            "{request}: {stderr}"
        );
        assert_eq!(stderr, "", "{request}");
    }
}

const DENY: &str = "DENY (no rule matched; default deny)";

#[test]
fn check_answers_as_the_proxy_decides() {
    let dir = setup();
    answers(
        dir.path(),
        &[
            // Allowed by a rule; denied by the default once no rule matches.
            ("ingress web GET /api/orders", 0, "ALLOW (rule web-reads)"),
            ("ingress web head /healthz", 0, "ALLOW (rule web-reads)"),
            ("ingress web POST /api/orders", 1, DENY),
            ("ingress web GET /other", 1, DENY),
            // The path is normalized first, as the proxy does it.
            ("ingress web GET /api/../admin/users", 1, DENY),
            (
                "ingress web GET /%61pi//orders?x=1",
                0,
                "ALLOW (rule web-reads)",
            ),
            // /admin's own rules replace the listener's.
            ("ingress web GET /admin/users", 1, DENY),
            (
                "ingress ops DELETE /admin/users/7",
                0,
                "ALLOW (rule ops-only)",
            ),
            ("ingress ops GET /api/orders", 1, DENY),
            // A header rule needs the exact value.
            (
                "ingress team/a/b PUT /x x-tenant=acme",
                0,
                "ALLOW (rule tenant)",
            ),
            ("ingress team/a/b PUT /x x-tenant=other", 1, DENY),
            ("ingress team/a/b PUT /x", 1, DENY),
        ],
    );
}

#[test]
fn check_knows_unauthenticated_callers_defaults_and_audit_mode() {
    let dir = setup();
    let audit = "DENY (no rule matched; default deny) — audit mode: the proxy lets it through";
    answers(
        dir.path(),
        &[
            (
                "public unauthenticated GET /healthz",
                0,
                "ALLOW (rule probes)",
            ),
            (
                "public unauthenticated POST /orders",
                0,
                "ALLOW (no rule matched; default allow)",
            ),
            // A route's own authz replaces the listener's rules (here with none).
            ("public unauthenticated GET /private/x", 1, DENY),
            // Only a caller without a certificate is unauthenticated.
            ("ingress unauthenticated GET /api/x", 1, DENY),
            ("audited stranger GET /x", 1, audit),
            ("audited web GET /x", 0, "ALLOW (rule web-reads)"),
            ("open web GET /api", 0, "ALLOW (no authz policy)"),
            (
                "open web GET /other",
                1,
                "NO ROUTE (no route matches: the proxy answers 404)",
            ),
        ],
    );
}

#[test]
fn bad_input_exits_2_with_one_sentence() {
    let dir = setup();
    let d = dir.path();
    for (listener, who, method, path, headers, says) in [
        (
            "nosuch",
            "web",
            "GET",
            "/",
            &[][..],
            "error: no listener \"nosuch\" in the config (listeners: ingress, public, audited, open, raw)",
        ),
        (
            "raw",
            "web",
            "GET",
            "/",
            &[],
            "error: listener \"raw\" is a tcp listener",
        ),
        (
            "ingress",
            "web",
            "GET",
            "api",
            &[],
            "error: invalid path \"api\"",
        ),
        (
            "ingress",
            "web",
            "GET",
            "/a%2fb",
            &[],
            "error: invalid path \"/a%2fb\": encoded slash",
        ),
        (
            "ingress",
            "web",
            "G T",
            "/",
            &[],
            "error: --method \"G T\": not an HTTP method",
        ),
        (
            "ingress",
            "web",
            "GET",
            "/",
            &["x-tenant"],
            "error: --header \"x-tenant\": expected NAME=VALUE",
        ),
        (
            "ingress",
            "web",
            "GET",
            "/",
            &["bad name=1"],
            "error: --header \"bad name=1\": invalid header name",
        ),
        (
            "ingress",
            "spiffe://Mesh/x",
            "GET",
            "/",
            &[],
            "error: --from: ",
        ),
        ("ingress", "orders", "GET", "/", &[], "error: --from: "),
    ] {
        let who = if who == "orders" {
            "http://orders"
        } else {
            who
        };
        let (code, stdout, stderr) = check(d, listener, who, method, path, headers);
        assert_eq!(
            (code, stdout.as_str()),
            (2, ""),
            "{listener} {who} {method} {path}: {stderr}"
        );
        assert!(stderr.starts_with(says), "{stderr}");
        assert_eq!(stderr.lines().count(), 1, "{stderr}");
    }
    std::fs::write(
        d.join("bad.yaml"),
        CONFIG.replace("default: deny", "default: maybe"),
    )
    .expect("write");
    let out = mesh_cli(
        d,
        &[
            "authz",
            "check",
            "bad.yaml",
            "--listener",
            "ingress",
            "--from",
            "unauthenticated",
            "--method",
            "GET",
            "--path",
            "/",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.starts_with("error: bad.yaml: listeners[1].routes[0].authz.default: "),
        "{stderr}"
    );
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
}

#[test]
fn explain_prints_each_routes_effective_policy_and_rules() {
    let dir = setup();
    let out = mesh_cli(
        dir.path(),
        &["authz", "explain", "proxy.yaml", "--listener", "ingress"],
    );
    assert!(out.status.success(), "{out:?}");
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let rows: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        rows,
        [
            &[
                "ROUTE", "MATCH", "MODE", "DEFAULT", "RULE", "FROM", "METHODS", "PATHS", "HEADERS"
            ][..],
            &[
                "admin",
                "/admin*",
                "enforce",
                "deny",
                "ops-only",
                "spiffe://mesh.local/ops",
                "any",
                "any",
                "-"
            ],
            &[
                "main",
                "/*",
                "enforce",
                "deny",
                "web-reads",
                "spiffe://mesh.local/web",
                "GET,HEAD",
                "/api/*,/healthz",
                "-"
            ],
            &[
                "tenant",
                "spiffe://mesh.local/team/**",
                "any",
                "any",
                "x-tenant=acme"
            ],
        ],
        "{text}"
    );
    // The rule rows line up under RULE.
    let rule_col = text
        .lines()
        .next()
        .and_then(|h| h.find("RULE"))
        .expect("RULE");
    assert_eq!(
        text.lines().nth(3).and_then(|l| l.find("tenant")),
        Some(rule_col),
        "{text}"
    );

    let out = mesh_cli(
        dir.path(),
        &["authz", "explain", "proxy.yaml", "--listener", "open"],
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    assert!(
        text.lines()
            .nth(1)
            .is_some_and(|l| l.split_whitespace().collect::<Vec<_>>()
                == ["api", "/api", "-", "allow", "(no", "authz", "policy)"]),
        "{text}"
    );
    let out = mesh_cli(
        dir.path(),
        &["authz", "explain", "proxy.yaml", "--listener", "nosuch"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
}
