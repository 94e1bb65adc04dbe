//! `mesh-cli inspect FILE.pem [--bundle ca.crt] [--json]`.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, anyhow};
use mesh_ca::{CaError, CertInfo, validity_words, verify_chain};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

pub const EXAMPLES: &str = "Examples:
  mesh-cli inspect certs/orders.crt
  mesh-cli inspect certs/orders.crt --bundle certs/ca.crt
  mesh-cli inspect certs/orders.crt --bundle certs/ca.crt --json | jq '.certificates[0].not_after'

Exits 1 when the file cannot be read or, with --bundle, when the chain does not verify.";

/// Reads a PEM file; errors say which file and why in one sentence.
pub fn read_pem(path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| anyhow!("cannot read {}: {}", path.display(), mesh_ca::os_reason(&e)))
}

pub fn run(file: &Path, bundle: Option<&Path>, json: bool) -> Result<ExitCode> {
    let pem = read_pem(file)?;
    let certs = mesh_ca::inspect_pem(&pem).map_err(|e| cannot_read(file, e))?;
    let now = OffsetDateTime::now_utc();
    let chain = match bundle {
        None => None,
        Some(path) => {
            let bundle_pem = read_pem(path)?;
            mesh_ca::inspect_pem(&bundle_pem).map_err(|e| cannot_read(path, e))?;
            Some(verify_chain(&pem, &bundle_pem, now))
        }
    };
    let chain_ok = !matches!(chain, Some(Err(_)));
    if json {
        print_json(file, &certs, chain.as_ref())?;
    } else {
        print_text(file, &certs, chain.as_ref(), now);
    }
    Ok(if chain_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn cannot_read(path: &Path, e: CaError) -> anyhow::Error {
    anyhow!("cannot read {}: {e}", path.display())
}

type ChainResult = Result<mesh_ca::VerifiedChain, CaError>;

fn print_text(file: &Path, certs: &[CertInfo], chain: Option<&ChainResult>, now: OffsetDateTime) {
    let n = certs.len();
    println!(
        "{}: {n} certificate{}",
        file.display(),
        if n == 1 { "" } else { "s" }
    );
    for (i, c) in certs.iter().enumerate() {
        println!();
        if n > 1 {
            println!("certificate {} of {n}", i + 1);
        }
        let row = |k: &str, v: &str| println!("  {k:<13} {v}");
        row("kind:", &kind(c));
        row("subject:", &c.subject);
        row("SPIFFE ID:", c.spiffe_id.as_deref().unwrap_or("(none)"));
        let other_uris: Vec<&str> = c
            .uris
            .iter()
            .map(String::as_str)
            .filter(|u| Some(*u) != c.spiffe_id.as_deref())
            .collect();
        if !other_uris.is_empty() {
            row("URI SANs:", &other_uris.join(", "));
        }
        if !c.dns_names.is_empty() {
            row("DNS SANs:", &c.dns_names.join(", "));
        }
        if !c.ip_addrs.is_empty() {
            row("IP SANs:", &c.ip_addrs.join(", "));
        }
        row("issuer:", &c.issuer);
        row("serial:", &c.serial_hex);
        row(
            "validity:",
            &format!(
                "{} to {} ({})",
                rfc3339(c.not_before),
                rfc3339(c.not_after),
                validity_words(c.not_before, c.not_after, now)
            ),
        );
        row(
            "key:",
            &format!("{}, signed with {}", c.key_algorithm, c.signature_algorithm),
        );
        let mut usage = c.key_usage.clone();
        usage.extend(c.extended_key_usage.iter().cloned());
        if !usage.is_empty() {
            row("usage:", &usage.join(", "));
        }
        row("sha256:", &c.sha256);
    }
    if let Some(chain) = chain {
        println!();
        match chain {
            Ok(v) => println!("chain: OK (trusted by {})", v.trusted_by),
            Err(e) => println!("chain: FAILED: {e}"),
        }
    }
}

fn kind(c: &CertInfo) -> String {
    if c.is_ca {
        let root = if c.is_self_signed { "root " } else { "" };
        match c.path_len {
            Some(n) => format!("{root}CA (path length {n})"),
            None => format!("{root}CA"),
        }
    } else {
        match &c.svid_error {
            None => "leaf (X.509-SVID)".to_owned(),
            Some(why) => format!("leaf, NOT a valid X.509-SVID: {why}"),
        }
    }
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_else(|_| t.to_string())
}

fn print_json(file: &Path, certs: &[CertInfo], chain: Option<&ChainResult>) -> Result<()> {
    let chain = chain.map(|c| match c {
        Ok(v) => serde_json::json!({
            "ok": true,
            "trusted_by": v.trusted_by,
            "spiffe_id": v.spiffe_id,
        }),
        Err(e) => serde_json::json!({ "ok": false, "error": e.to_string() }),
    });
    let out = serde_json::json!({
        "file": file.display().to_string(),
        "certificates": certs,
        "chain": chain,
    });
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
