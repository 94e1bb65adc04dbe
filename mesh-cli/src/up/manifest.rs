//! `mesh.yaml`, the manifest `mesh-cli up DIR` reads, and the `${name}`
//! placeholders of the proxy config templates and of the manifest's own
//! strings.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result, bail};
use serde::Deserialize;

pub const MANIFEST_FILE: &str = "mesh.yaml";

/// Placeholders `up` fills in besides the declared ports.
pub const RESERVED: [&str; 6] = [
    "ca_url",
    "trust_bundle",
    "token_file",
    "otlp_endpoint",
    "otlp_protocol",
    "state_dir",
];

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub trust_domain: String,
    #[serde(default)]
    pub ports: Vec<String>,
    pub components: Vec<Component>,
    #[serde(default, rename = "try")]
    pub try_urls: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Component {
    pub name: String,
    pub proxy: Option<ProxySpec>,
    pub service: Option<ServiceSpec>,
}

/// A `mesh-proxy` started on a rendered config template.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProxySpec {
    pub config: String,
    /// The service name of its SPIFFE ID; its join token is for that ID.
    pub identity: String,
    /// Its admin address, polled for `/ready`.
    pub admin: String,
}

/// An app: a binary next to `mesh-cli`, ready when `GET /health` is 200.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServiceSpec {
    pub bin: String,
    #[serde(default)]
    pub args: Vec<String>,
    pub health: String,
}

impl Manifest {
    pub fn load(dir: &Path) -> Result<Manifest> {
        let path = dir.join(MANIFEST_FILE);
        let text = std::fs::read_to_string(&path).with_context(|| {
            format!(
                "cannot read {} (mesh-cli up needs a folder with a {MANIFEST_FILE}, such as examples/demo/)",
                path.display()
            )
        })?;
        let manifest: Manifest = serde_yaml::from_str(&text)
            .with_context(|| format!("{} is not a valid manifest", path.display()))?;
        manifest
            .check()
            .with_context(|| format!("{}", path.display()))?;
        Ok(manifest)
    }

    fn check(&self) -> Result<()> {
        if self.components.is_empty() {
            bail!("components: none declared");
        }
        let mut seen = std::collections::HashSet::new();
        for (i, c) in self.components.iter().enumerate() {
            if c.name.is_empty()
                || !c
                    .name
                    .chars()
                    .all(|ch| ch.is_ascii_alphanumeric() || ch == '-' || ch == '_')
            {
                bail!(
                    "components[{i}].name: {:?} must be letters, digits, - or _",
                    c.name
                );
            }
            if !seen.insert(c.name.as_str()) || c.name == "ca" || c.name == "traces" {
                bail!(
                    "components[{i}].name: {:?} is used twice or reserved (ca, traces)",
                    c.name
                );
            }
            if c.proxy.is_some() == c.service.is_some() {
                bail!(
                    "components[{i}] ({}): give exactly one of proxy: or service:",
                    c.name
                );
            }
        }
        for (i, p) in self.ports.iter().enumerate() {
            if RESERVED.contains(&p.as_str()) {
                bail!("ports[{i}]: {p} is a reserved placeholder name");
            }
        }
        Ok(())
    }
}

/// Replaces every `${name}` in `text` with `values[name]`; an unknown name
/// or an unclosed `${` is an error naming it.
pub fn render(text: &str, values: &BTreeMap<String, String>) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            bail!("an unclosed ${{ in {:?}", rest.lines().next().unwrap_or(""));
        };
        let name = &after[..end];
        match values.get(name) {
            Some(v) => out.push_str(v),
            None => bail!(
                "unknown placeholder ${{{name}}} (declare ports under ports: in {MANIFEST_FILE}; the others are {})",
                RESERVED.join(", ")
            ),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values() -> BTreeMap<String, String> {
        [("edge", "10000"), ("ca_url", "https://127.0.0.1:1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn placeholders_are_filled_in() {
        let out = render("a: ${ca_url}\nb: 127.0.0.1:${edge} ${edge}$x", &values());
        assert_eq!(
            out.ok().as_deref(),
            Some("a: https://127.0.0.1:1\nb: 127.0.0.1:10000 10000$x")
        );
    }

    #[test]
    fn unknown_or_unclosed_placeholders_are_errors() {
        let err = render("x: ${edg}", &values()).expect_err("unknown");
        assert!(
            err.to_string().contains("unknown placeholder ${edg}"),
            "{err}"
        );
        assert!(render("x: ${edge", &values()).is_err());
    }

    #[test]
    fn the_demo_manifest_loads() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo");
        let m = Manifest::load(&dir).expect("examples/demo/mesh.yaml");
        assert_eq!(m.trust_domain, "mesh.local");
        assert_eq!(m.components.len(), 5);
    }

    #[test]
    fn a_component_is_a_proxy_or_a_service() {
        let m: Manifest =
            serde_yaml::from_str("trust_domain: t\ncomponents:\n  - name: x\n").expect("parses");
        assert!(m.check().is_err());
        let unknown =
            serde_yaml::from_str::<Manifest>("trust_domain: t\ncomponents: []\nport: []\n");
        assert!(unknown.is_err());
    }
}
