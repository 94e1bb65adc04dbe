//! `examples/kubernetes/` (issue 7 item 5, SPEC §5.4): every manifest
//! parses, and the fields that make it work on a cluster agree with each
//! other and with the proxy configs — images, container and Service ports,
//! probes (`mesh-cli wait` on the admin address the config really has),
//! every mounted volume exists and every path a config reads is mounted,
//! the sidecar is a native one (an init container with `restartPolicy:
//! Always` and a startup probe, so it is ready before the app starts), every
//! proxy config passes `mesh-proxy --mode validate`, and the objects made by
//! hand (Secrets, the bundle ConfigMap) are created by the README's commands.
//! Schema validation: `kubernetes-validate --strict` (PyPI; scripts/test
//! installs it).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Command;

use mesh_tests::{bin_path, run_validate};
use serde::Deserialize as _;
use serde_yaml::Value;

const IMAGES: [&str; 2] = ["mesh:local", "mesh-demo:local"];

fn dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/kubernetes")
}

/// Every YAML document of every `*.yaml` file: (file name, document).
fn manifests() -> Vec<(String, Value)> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("examples/kubernetes")
        .map(|e| e.expect("dir entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    assert!(files.len() >= 5, "too few manifests: {files:?}");
    let mut docs = Vec::new();
    for file in files {
        let name = file
            .file_name()
            .expect("name")
            .to_string_lossy()
            .into_owned();
        let text = std::fs::read_to_string(&file).expect("readable manifest");
        for doc in serde_yaml::Deserializer::from_str(&text) {
            let value = Value::deserialize(doc).unwrap_or_else(|e| panic!("{name}: {e}"));
            if !value.is_null() {
                docs.push((name.clone(), value));
            }
        }
    }
    docs
}

/// `v` at a dotted path (`spec.template.spec`); numbers index sequences.
fn at<'a>(v: &'a Value, path: &str) -> Option<&'a Value> {
    path.split('.')
        .try_fold(v, |v, key| match key.parse::<usize>() {
            Ok(i) => v.get(i),
            Err(_) => v.get(key),
        })
}

fn s<'a>(v: &'a Value, path: &str) -> &'a str {
    at(v, path)
        .and_then(Value::as_str)
        .unwrap_or_else(|| panic!("no string at {path} in {v:?}"))
}

fn seq<'a>(v: &'a Value, path: &str) -> &'a [Value] {
    at(v, path)
        .and_then(Value::as_sequence)
        .map(Vec::as_slice)
        .unwrap_or(&[])
}

fn strings(v: &Value, path: &str) -> Vec<String> {
    seq(v, path)
        .iter()
        .map(|x| x.as_str().expect("a string").to_owned())
        .collect()
}

fn of_kind<'a>(docs: &'a [(String, Value)], kind: &str) -> Vec<&'a Value> {
    docs.iter()
        .map(|(_, d)| d)
        .filter(|d| at(d, "kind").and_then(Value::as_str) == Some(kind))
        .collect()
}

/// The proxy configs of the ConfigMaps: ConfigMap name → parsed proxy.yaml.
fn proxy_configs(docs: &[(String, Value)]) -> BTreeMap<String, (String, Value)> {
    of_kind(docs, "ConfigMap")
        .into_iter()
        .filter_map(|cm| {
            let text = at(cm, "data")?.get("proxy.yaml")?.as_str()?.to_owned();
            let parsed: Value = serde_yaml::from_str(&text).expect("proxy.yaml parses");
            Some((s(cm, "metadata.name").to_owned(), (text, parsed)))
        })
        .collect()
}

fn readme() -> String {
    std::fs::read_to_string(dir().join("README.md")).expect("examples/kubernetes/README.md")
}

fn port_of(addr: &str) -> u16 {
    addr.rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("no port in {addr}"))
}

#[test]
fn every_manifest_parses_into_the_mesh_namespace() {
    let docs = manifests();
    for (file, doc) in &docs {
        for key in ["apiVersion", "kind", "metadata.name"] {
            assert!(at(doc, key).is_some(), "{file}: no {key}");
        }
        if s(doc, "kind") != "Namespace" {
            assert_eq!(s(doc, "metadata.namespace"), "mesh", "{file}");
        }
    }
    let kinds: BTreeSet<&str> = docs.iter().map(|(_, d)| s(d, "kind")).collect();
    for kind in ["Namespace", "Deployment", "Service", "ConfigMap"] {
        assert!(kinds.contains(kind), "no {kind} among {kinds:?}");
    }
    let deployments: BTreeSet<&str> = of_kind(&docs, "Deployment")
        .into_iter()
        .map(|d| s(d, "metadata.name"))
        .collect();
    for name in ["mesh-ca", "edge", "web", "api"] {
        assert!(deployments.contains(name), "no Deployment {name}");
    }
}

#[test]
fn pods_have_known_images_existing_volumes_and_mesh_cli_probes() {
    let docs = manifests();
    let configs = proxy_configs(&docs);
    let configmaps: BTreeSet<&str> = of_kind(&docs, "ConfigMap")
        .into_iter()
        .map(|c| s(c, "metadata.name"))
        .collect();
    let readme = readme();
    for deploy in of_kind(&docs, "Deployment") {
        let name = s(deploy, "metadata.name");
        let pod = at(deploy, "spec.template").expect("a pod template");
        let selector = at(deploy, "spec.selector.matchLabels").expect("a selector");
        for (k, v) in selector.as_mapping().expect("labels") {
            assert_eq!(
                at(pod, "metadata.labels").and_then(|l| l.get(k)),
                Some(v),
                "{name}: the selector does not match the pod's labels"
            );
        }
        let volumes: BTreeMap<&str, &Value> = seq(pod, "spec.volumes")
            .iter()
            .map(|v| (s(v, "name"), v))
            .collect();
        // Volumes from objects the manifests do not hold must be made by
        // the README's commands.
        for (vname, volume) in &volumes {
            if let Some(cm) = at(volume, "configMap.name").and_then(Value::as_str) {
                assert!(
                    configmaps.contains(cm) || readme.contains(&format!("create configmap {cm} ")),
                    "{name}: volume {vname} needs ConfigMap {cm}, neither in the manifests nor made in README.md"
                );
            }
            if let Some(secret) = at(volume, "secret.secretName").and_then(Value::as_str) {
                assert!(
                    readme.contains(&format!("create secret generic {secret} ")),
                    "{name}: volume {vname} needs Secret {secret}, which README.md does not create"
                );
            }
        }
        let containers: Vec<&Value> = seq(pod, "spec.initContainers")
            .iter()
            .chain(seq(pod, "spec.containers"))
            .collect();
        assert!(!containers.is_empty(), "{name}: no containers");
        for c in containers {
            let cname = s(c, "name");
            let image = s(c, "image");
            assert!(
                IMAGES.contains(&image),
                "{name}/{cname}: image {image} is not one of {IMAGES:?}"
            );
            let command = strings(c, "command");
            assert!(
                ["mesh-proxy", "mesh-ca", "mesh-demo"].contains(&command[0].as_str()),
                "{name}/{cname}: runs {command:?}"
            );
            let mounts = seq(c, "volumeMounts");
            for m in mounts {
                assert!(
                    volumes.contains_key(s(m, "name")),
                    "{name}/{cname}: mounts volume {} which the pod does not have",
                    s(m, "name")
                );
            }
            let mount_paths: Vec<&str> = mounts.iter().map(|m| s(m, "mountPath")).collect();
            let container_ports: BTreeSet<u16> = seq(c, "ports")
                .iter()
                .map(|p| {
                    at(p, "containerPort")
                        .and_then(Value::as_u64)
                        .and_then(|p| u16::try_from(p).ok())
                        .expect("containerPort")
                })
                .collect();
            if command[0] == "mesh-proxy" {
                assert_eq!(
                    command[1..],
                    ["-c", "/etc/mesh/proxy.yaml"],
                    "{name}/{cname}"
                );
                let volume = mounts
                    .iter()
                    .find(|m| s(m, "mountPath") == "/etc/mesh/proxy.yaml")
                    .map(|m| volumes[s(m, "name")])
                    .unwrap_or_else(|| panic!("{name}/{cname}: /etc/mesh/proxy.yaml not mounted"));
                let cm = s(volume, "configMap.name");
                let (_, config) = configs
                    .get(cm)
                    .unwrap_or_else(|| panic!("{name}: no proxy config in ConfigMap {cm}"));
                // The probes exec `mesh-cli wait` on the config's admin address.
                let admin = s(config, "admin.address");
                assert!(admin.starts_with("127.0.0.1:"), "{cm}: admin on {admin}");
                let wait = ["mesh-cli", "wait", "--admin", admin, "--timeout", "1s"];
                assert_eq!(
                    strings(c, "readinessProbe.exec.command"),
                    wait,
                    "{name}/{cname}: readiness probe"
                );
                // Every file the identity reads is under a mount.
                for key in ["identity.ca.trust_bundle", "identity.ca.token_file"] {
                    let path = s(config, key);
                    assert!(
                        mount_paths
                            .iter()
                            .any(|m| path.starts_with(&format!("{m}/"))),
                        "{name}/{cname}: {key} {path} is under no mount of {mount_paths:?}"
                    );
                }
                let url = s(config, "identity.ca.url");
                assert_eq!(url, "https://mesh-ca:8443", "{cm}: the CA Service");
                // Every listener on the pod network is a declared container port.
                for l in seq(config, "listeners") {
                    let addr = s(l, "address");
                    if addr.starts_with("0.0.0.0:") {
                        assert!(
                            container_ports.contains(&port_of(addr)),
                            "{name}/{cname}: listener {addr} is not a containerPort {container_ports:?}"
                        );
                    }
                }
            }
        }
    }
}

#[test]
fn services_select_pods_and_target_named_ports() {
    let docs = manifests();
    let deployments = of_kind(&docs, "Deployment");
    for svc in of_kind(&docs, "Service") {
        let name = s(svc, "metadata.name");
        let selector = at(svc, "spec.selector").expect("a selector");
        let pod = deployments
            .iter()
            .map(|d| at(d, "spec.template").expect("template"))
            .find(|pod| {
                selector
                    .as_mapping()
                    .expect("labels")
                    .iter()
                    .all(|(k, v)| at(pod, "metadata.labels").and_then(|l| l.get(k)) == Some(v))
            })
            .unwrap_or_else(|| panic!("Service {name} selects no Deployment's pods"));
        let named: BTreeSet<&str> = seq(pod, "spec.initContainers")
            .iter()
            .chain(seq(pod, "spec.containers"))
            .flat_map(|c| seq(c, "ports"))
            .filter_map(|p| at(p, "name").and_then(Value::as_str))
            .collect();
        for port in seq(svc, "spec.ports") {
            let target = s(port, "targetPort");
            assert!(
                named.contains(target),
                "Service {name}: targetPort {target} is none of {named:?}"
            );
        }
    }
    let ca = of_kind(&docs, "Service")
        .into_iter()
        .find(|s| at(s, "metadata.name").and_then(Value::as_str) == Some("mesh-ca"))
        .expect("Service mesh-ca");
    assert_eq!(
        at(ca, "spec.ports.0.port").and_then(Value::as_u64),
        Some(8443)
    );
}

#[test]
fn the_ca_serves_the_key_of_its_secret() {
    let docs = manifests();
    let ca = of_kind(&docs, "Deployment")
        .into_iter()
        .find(|d| s(d, "metadata.name") == "mesh-ca")
        .expect("Deployment mesh-ca");
    let c = at(ca, "spec.template.spec.containers.0").expect("a container");
    let command = strings(c, "command");
    assert_eq!(command[..2], ["mesh-ca", "serve"]);
    let ca_dir = command
        .iter()
        .position(|a| a == "--ca-dir")
        .map(|i| command[i + 1].clone())
        .expect("--ca-dir");
    let mount = seq(c, "volumeMounts")
        .iter()
        .find(|m| s(m, "mountPath") == ca_dir)
        .expect("the CA dir is mounted");
    let volume = seq(ca, "spec.template.spec.volumes")
        .iter()
        .find(|v| s(v, "name") == s(mount, "name"))
        .expect("its volume");
    assert_eq!(s(volume, "secret.secretName"), "mesh-ca");
    let readme = readme();
    assert!(
        readme.contains("mesh-cli ca init")
            && readme.contains("--from-file=ca.crt=ca/ca.crt")
            && readme.contains("--from-file=ca.key=ca/ca.key"),
        "README.md must show how the mesh-ca Secret is made"
    );
}

#[test]
fn the_sidecars_are_native_and_start_before_their_apps() {
    let docs = manifests();
    let configs = proxy_configs(&docs);
    for app in ["web", "api"] {
        let deploy = of_kind(&docs, "Deployment")
            .into_iter()
            .find(|d| s(d, "metadata.name") == app)
            .unwrap_or_else(|| panic!("Deployment {app}"));
        let pod = at(deploy, "spec.template.spec").expect("pod spec");
        let sidecar = at(pod, "initContainers.0").expect("the sidecar is the first init container");
        assert_eq!(s(sidecar, "name"), "mesh-proxy");
        assert_eq!(
            s(sidecar, "restartPolicy"),
            "Always",
            "{app}: a native sidecar"
        );
        // The startup probe gates the app's start on the proxy being ready.
        assert_eq!(
            strings(sidecar, "startupProbe.exec.command")[..3],
            ["mesh-cli", "wait", "--admin"],
            "{app}: startup probe"
        );
        let app_container = at(pod, "containers.0").expect("the app");
        assert_eq!(s(app_container, "image"), "mesh-demo:local");
        let (_, config) = &configs[&format!("{app}-sidecar")];
        let command = strings(app_container, "command");
        let arg = |flag: &str| {
            command
                .iter()
                .position(|a| a == flag)
                .map(|i| command[i + 1].clone())
        };
        // The app listens where the sidecar's local_app cluster points,
        // on loopback only.
        let local_app = seq(config, "clusters")
            .iter()
            .find(|c| s(c, "name") == "local_app")
            .expect("a local_app cluster");
        assert_eq!(
            arg("--listen").as_deref(),
            Some(s(local_app, "endpoints.0")),
            "{app}: --listen"
        );
        if let Some(egress) = arg("--egress") {
            let listener = seq(config, "listeners")
                .iter()
                .find(|l| s(l, "name") == "egress")
                .expect("an egress listener");
            assert_eq!(egress, s(listener, "address"), "{app}: --egress");
        }
        let ingress = seq(config, "listeners")
            .iter()
            .find(|l| s(l, "name") == "ingress")
            .expect("an ingress listener");
        assert_eq!(s(ingress, "tls.mode"), "mutual", "{app}: mTLS ingress");
    }
}

#[tokio::test]
async fn every_proxy_config_validates() {
    let docs = manifests();
    let configs = proxy_configs(&docs);
    assert_eq!(configs.len(), 3, "{:?}", configs.keys());
    // A real CA for the bundle and a real join token, where the pods mount them.
    let tmp = tempfile::tempdir().expect("tempdir");
    let ca = tmp.path().join("ca");
    let cli = bin_path("mesh-cli").expect("mesh-cli");
    let out = Command::new(&cli)
        .args(["ca", "init", "--trust-domain", "mesh.local", "--out"])
        .arg(&ca)
        .output()
        .expect("mesh-cli ca init");
    assert!(out.status.success(), "{out:?}");
    for (name, (text, config)) in &configs {
        let spiffe = s(config, "identity.ca.spiffe_id");
        let out = Command::new(&cli)
            .args(["token", "create", spiffe, "--ca-dir"])
            .arg(&ca)
            .output()
            .expect("mesh-cli token create");
        assert!(out.status.success(), "{out:?}");
        let token = tmp.path().join(format!("{name}.token"));
        std::fs::write(&token, &out.stdout).expect("token file");
        let bundle = ca.join("ca.crt");
        let text = text
            .replace("/etc/mesh/bundle/ca.crt", &bundle.to_string_lossy())
            .replace("/var/run/mesh/token/token", &token.to_string_lossy());
        let (code, stdout, stderr) = run_validate(&text).await.expect("validate");
        assert_eq!(
            (code, stdout.trim()),
            (0, "OK"),
            "ConfigMap {name}: mesh-proxy --mode validate:\n{stderr}"
        );
    }
}

#[test]
fn kubernetes_validate_accepts_every_manifest() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir())
        .expect("examples/kubernetes")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "yaml"))
        .collect();
    files.sort();
    let out = Command::new("kubernetes-validate")
        .arg("--strict")
        .args(&files)
        .output()
        .unwrap_or_else(|e| {
            panic!("kubernetes-validate is not installed ({e}): scripts/test installs it (pip install kubernetes-validate)")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        out.status.success(),
        "kubernetes-validate --strict:\n{text}"
    );
    let docs = manifests().len();
    assert_eq!(
        text.matches(" passed for resource ").count(),
        docs,
        "every document must be checked:\n{text}"
    );
}
