//! `ca init`, offline `issue` and `token create`: thin wrappers over the
//! `mesh_ca` library that turn its errors into one-sentence messages.

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use mesh_ca::{
    CA_CERT_FILE, CA_KEY_FILE, Ca, CaError, IssueRequest, SpiffeId, Token, validity_words,
};
use time::OffsetDateTime;

use crate::IssueArgs;

pub const CA_INIT_EXAMPLES: &str = "Examples:
  mesh-cli ca init --trust-domain mesh.local --out ca/
  mesh-cli ca init --out ca/ --force      # replace the CA (every leaf must be reissued)";

pub const ISSUE_EXAMPLES: &str = "Examples:
  mesh-cli issue orders --ca-dir ca/ --out certs/
  mesh-cli issue web --ca-dir ca/ --out certs/ --ttl 72h --dns web.local --ip 10.0.0.5
  mesh-cli issue spiffe://mesh.local/ns/prod/sa/orders --ca-dir ca/ --out certs/
  mesh-cli issue orders --ca-url https://ca:8443 --bundle ca.crt --token-file orders.token --out certs/

Writes SERVICE.crt (leaf + chain), SERVICE.key (mode 0600) and ca.crt into --out.
An existing ca.crt with the same CA is kept; anything else existing needs --force.";

pub const TOKEN_EXAMPLES: &str = "Examples:
  mesh-cli token create orders --ca-dir ca/ > orders.token
  mesh-cli token create spiffe://mesh.local/ns/prod/sa/web --ca-dir ca/ --ttl 15m";

pub fn ca_init(trust_domain: &str, out: &Path, force: bool) -> Result<ExitCode> {
    let ca = Ca::create(trust_domain)?;
    ca.save(out, force).map_err(exists_hint)?;
    let info = mesh_ca::inspect_pem(ca.cert_pem().as_bytes())?;
    let not_after = info.first().map(|i| i.not_after);
    println!(
        "created CA for trust domain {} in {}",
        ca.trust_domain(),
        out.display()
    );
    println!(
        "  {}  root certificate: the trust bundle to hand out",
        out.join(CA_CERT_FILE).display()
    );
    println!(
        "  {}  private key (0600): keep it secret",
        out.join(CA_KEY_FILE).display()
    );
    if let Some(t) = not_after {
        println!(
            "  {}",
            validity_words(OffsetDateTime::now_utc(), t, OffsetDateTime::now_utc())
        );
    }
    Ok(ExitCode::SUCCESS)
}

pub fn issue_offline(args: &IssueArgs) -> Result<ExitCode> {
    let ca_dir = args
        .ca_dir
        .as_deref()
        .context("--ca-dir or --ca-url is required")?;
    let ca = load_ca(ca_dir)?;
    let id = service_id(&ca, &args.service, args.trust_domain.as_deref())?;
    let out = OutFiles::new(&args.out, &id);
    out.check(&ca.cert_pem(), args.force)?;

    let mut req = IssueRequest::new(id.clone());
    req.ttl = args.ttl.unwrap_or(mesh_ca::DEFAULT_LEAF_TTL);
    req.dns_names = args.dns.clone();
    req.ips = args.ips.clone();
    let issued = ca.issue(&req)?;
    out.write(
        &issued.chain_pem,
        &issued.key_pem,
        &ca.cert_pem(),
        args.force,
    )?;
    println!(
        "issued {} (serial {}, {})",
        issued.spiffe_id,
        issued.serial_hex,
        validity_words(
            OffsetDateTime::now_utc(),
            issued.not_after,
            OffsetDateTime::now_utc()
        )
    );
    out.print();
    Ok(ExitCode::SUCCESS)
}

pub fn token_create(
    service: &str,
    ca_dir: &Path,
    ttl: Duration,
    trust_domain: Option<&str>,
) -> Result<ExitCode> {
    let ca = load_ca(ca_dir)?;
    let id = service_id(&ca, service, trust_domain)?;
    let token = Token::create(&ca, &id, ttl)?;
    println!("{token}");
    Ok(ExitCode::SUCCESS)
}

/// Loads the CA, saying how to make one when there is none.
pub fn load_ca(dir: &Path) -> Result<Ca> {
    Ca::load(dir).map_err(|e| match &e {
        CaError::Read { source, .. } if source.kind() == std::io::ErrorKind::NotFound => anyhow!(
            "no CA in {}: {e} (run mesh-cli ca init first)",
            dir.display()
        ),
        _ => anyhow!("cannot use the CA in {}: {e}", dir.display()),
    })
}

/// SERVICE as a SPIFFE ID in the CA's trust domain.
fn service_id(ca: &Ca, service: &str, trust_domain: Option<&str>) -> Result<SpiffeId> {
    if let Some(td) = trust_domain
        && td != ca.trust_domain()
    {
        bail!(
            "--trust-domain {td} does not match the CA's trust domain {}",
            ca.trust_domain()
        );
    }
    let id = SpiffeId::from_service(ca.trust_domain(), service)?;
    if id.trust_domain() != ca.trust_domain() {
        bail!("{id} is not in the CA's trust domain {}", ca.trust_domain());
    }
    Ok(id)
}

/// Adds the `--force` hint to "exists" errors.
pub fn exists_hint(e: CaError) -> anyhow::Error {
    match e {
        CaError::Exists { path } => anyhow!("{} exists (use --force to overwrite)", path.display()),
        other => other.into(),
    }
}

/// The three files `issue` writes.
pub struct OutFiles {
    dir: PathBuf,
    pub cert: PathBuf,
    pub key: PathBuf,
    pub bundle: PathBuf,
}

impl OutFiles {
    /// `<dir>/<service>.crt`, `.key` and `ca.crt`; the file stem is the ID's
    /// last path segment.
    pub fn new(dir: &Path, id: &SpiffeId) -> Self {
        let stem = id.service_name();
        OutFiles {
            dir: dir.to_owned(),
            cert: dir.join(format!("{stem}.crt")),
            key: dir.join(format!("{stem}.key")),
            bundle: dir.join(CA_CERT_FILE),
        }
    }

    /// Refuses, before anything is written, if a file would be replaced
    /// without `force`. An existing `ca.crt` holding this same bundle is
    /// fine: several services are usually issued into one folder.
    pub fn check(&self, bundle_pem: &str, force: bool) -> Result<()> {
        if force {
            return Ok(());
        }
        for path in [&self.cert, &self.key] {
            if path.symlink_metadata().is_ok() {
                bail!("{} exists (use --force to overwrite)", path.display());
            }
        }
        if self.bundle.symlink_metadata().is_ok() && !self.bundle_is(bundle_pem) {
            bail!(
                "{} exists and holds a different trust bundle (use --force to overwrite)",
                self.bundle.display()
            );
        }
        Ok(())
    }

    fn bundle_is(&self, bundle_pem: &str) -> bool {
        std::fs::read(&self.bundle).is_ok_and(|b| b == bundle_pem.as_bytes())
    }

    /// Writes the key first (0600), then the chain, then the bundle.
    pub fn write(
        &self,
        chain_pem: &str,
        key_pem: &str,
        bundle_pem: &str,
        force: bool,
    ) -> Result<()> {
        std::fs::create_dir_all(&self.dir).map_err(|e| {
            anyhow!(
                "cannot create {}: {}",
                self.dir.display(),
                mesh_ca::os_reason(&e)
            )
        })?;
        mesh_ca::write_private_key(&self.key, key_pem, force).map_err(exists_hint)?;
        mesh_ca::write_public_file(&self.cert, chain_pem, force).map_err(exists_hint)?;
        if force || !self.bundle_is(bundle_pem) {
            mesh_ca::write_public_file(&self.bundle, bundle_pem, force).map_err(exists_hint)?;
        }
        Ok(())
    }

    pub fn print(&self) {
        println!("  {}  certificate chain (leaf first)", self.cert.display());
        println!("  {}  private key (0600)", self.key.display());
        println!("  {}  trust bundle", self.bundle.display());
    }
}
