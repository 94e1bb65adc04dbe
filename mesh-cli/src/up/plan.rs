//! What each component of `mesh.yaml` runs: the binary (found next to this
//! `mesh-cli`), its arguments and how to tell it is ready. For a proxy it
//! also writes the join token (0600) and the config rendered from its
//! template, and checks that config with the proxy's own validation before
//! anything starts. It starts nothing itself.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use http::uri::Authority;
use mesh_ca::{Ca, SpiffeId, Token};

use super::children::Ready;
use super::manifest::{self, Component, Manifest};

/// The proxies' `--drain-time`: shorter than the stop deadline.
const DRAIN_TIME: &str = "3s";

/// What one component runs: the binary, its arguments, and when it is ready.
pub(super) type Plan = (PathBuf, Vec<String>, Ready);

/// The binary, arguments and readiness check of one component; for a proxy,
/// also writes its token and its rendered, validated config.
pub(super) fn plan(
    c: &Component,
    manifest: &Manifest,
    dir: &Path,
    state: &Path,
    ca: &Ca,
    values: &BTreeMap<String, String>,
    bins: &Bins,
) -> Result<Plan> {
    let here = |what: &str| format!("{}: component {}: {what}", manifest::MANIFEST_FILE, c.name);
    if let Some(s) = &c.service {
        let args = s
            .args
            .iter()
            .map(|a| manifest::render(a, values))
            .collect::<Result<Vec<_>>>()
            .with_context(|| here("args"))?;
        let health = manifest::render(&s.health, values).with_context(|| here("health"))?;
        let health: Authority = health
            .parse()
            .map_err(|_| anyhow!("{}: {health:?} is not HOST:PORT", here("health")))?;
        return Ok((bins.path(&s.bin)?, args, Ready::Http(health, "/health")));
    }
    let Some(p) = &c.proxy else {
        bail!("{}", here("neither proxy: nor service:"));
    };
    let id = SpiffeId::from_service(&manifest.trust_domain, &p.identity)
        .with_context(|| here("identity"))?;
    let token = Token::create(ca, &id, Duration::from_secs(3600))
        .with_context(|| format!("cannot create a join token for {id}"))?;
    let token_file = state.join("tokens").join(format!("{}.token", c.name));
    write_secret(&token_file, token.as_bytes())?;
    let mut values = values.clone();
    values.insert("token_file".into(), token_file.display().to_string());
    let template = dir.join(&p.config);
    let text = fs::read_to_string(&template)
        .with_context(|| format!("cannot read {}", template.display()))?;
    let rendered =
        manifest::render(&text, &values).with_context(|| format!("{}", template.display()))?;
    let config = state.join("configs").join(format!("{}.yaml", c.name));
    fs::write(&config, rendered).with_context(|| format!("cannot write {}", config.display()))?;
    if let Err(errors) = mesh_proxy::config::load_file(&config) {
        bail!(
            "the config rendered from {} does not validate: {}",
            template.display(),
            errors.to_string().lines().collect::<Vec<_>>().join("; ")
        );
    }
    let admin = manifest::render(&p.admin, &values).with_context(|| here("admin"))?;
    let admin = crate::admin::parse_admin(&admin).map_err(|e| anyhow!("{}: {e}", here("admin")))?;
    let args = vec![
        "-c".to_owned(),
        config.display().to_string(),
        "--drain-time".to_owned(),
        DRAIN_TIME.to_owned(),
    ];
    Ok((bins.path("mesh-proxy")?, args, Ready::Http(admin, "/ready")))
}

fn write_secret(path: &Path, bytes: &[u8]) -> Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    f.write_all(bytes)
        .with_context(|| format!("cannot write {}", path.display()))
}

/// The binaries next to the running `mesh-cli`.
pub(super) struct Bins(PathBuf);

impl Bins {
    pub(super) fn locate() -> Result<Bins> {
        let exe = std::env::current_exe().context("cannot locate mesh-cli itself")?;
        let dir = exe
            .parent()
            .ok_or_else(|| anyhow!("cannot locate the folder of {}", exe.display()))?;
        let bins = Bins(dir.to_path_buf());
        for name in ["mesh-proxy", "mesh-ca"] {
            bins.path(name)?;
        }
        Ok(bins)
    }

    pub(super) fn path(&self, name: &str) -> Result<PathBuf> {
        let path = self.0.join(name);
        if !path.is_file() {
            bail!(
                "{name} not found next to mesh-cli (in {}); run cargo build --bins",
                self.0.display()
            );
        }
        Ok(path)
    }
}
