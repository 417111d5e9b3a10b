//! Generator of `protobuf/descriptors.json`: the proto field numbers, JSON names and types of
//! every message a built-in kind's protobuf encoding uses, read from k8s-pb's prost sources.
//!
//! `cargo run -p crdgen -- protobuf` writes it, `cargo run -p crdgen -- protobuf --check`
//! verifies it (as does `cargo test -p crdgen`).

pub mod names;
pub mod prost_src;

use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::path::{Path, PathBuf};

use serde_json::{json, Value};

use names::Names;
use prost_src::{Label, Messages, Type};

/// Where the descriptors live, relative to the workspace root.
pub const PATH: &str = "protobuf/descriptors.json";

/// The command that regenerates [`PATH`] (from the workspace root).
pub const REGENERATE: &str = "cargo run -p crdgen -- protobuf";

/// The generated file and what could not be mapped.
#[derive(Debug)]
pub struct Generated {
    pub json: String,
    /// Kinds without a message, and fields whose JSON name no schema confirmed.
    pub warnings: Vec<String>,
}

/// k8s-pb's `src/` directory, found through `cargo metadata` (k8s-pb is an optional
/// dependency of crdgen so that it is in Cargo.lock; enabling the feature for metadata
/// downloads its source without compiling it).
/// Returns the directory and k8s-pb's version.
pub fn k8s_pb_src() -> anyhow::Result<(PathBuf, String)> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR")).join("../Cargo.toml");
    let out = std::process::Command::new(cargo)
        .args([
            "metadata",
            "--format-version",
            "1",
            "--features",
            "crdgen/k8s-pb",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()?;
    anyhow::ensure!(
        out.status.success(),
        "cargo metadata failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let meta: Value = serde_json::from_slice(&out.stdout)?;
    let package = meta["packages"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["name"] == "k8s-pb")
        .ok_or_else(|| anyhow::anyhow!("k8s-pb is not in cargo metadata's packages"))?;
    let path = package["manifest_path"]
        .as_str()
        .ok_or_else(|| anyhow::anyhow!("k8s-pb has no manifest_path"))?;
    let version = package["version"].as_str().unwrap_or("?").to_owned();
    Ok((
        Path::new(path)
            .parent()
            .unwrap_or(Path::new("."))
            .join("src"),
        version,
    ))
}

/// The proto module of an API group version (`apps`, `v1` -> `api.apps.v1`).
fn module_of(group: &str, version: &str) -> String {
    let base = match group {
        "" => "api.core".to_owned(),
        "apiextensions.k8s.io" => "apiextensions_apiserver.pkg.apis.apiextensions".to_owned(),
        "apiregistration.k8s.io" => "kube_aggregator.pkg.apis.apiregistration".to_owned(),
        g => format!("api.{}", g.split('.').next().unwrap_or(g).replace('-', "_")),
    };
    format!("{base}.{version}")
}

/// Generates the descriptors from the sources under `src` and the CRDs of every built-in kind.
/// `version` is k8s-pb's, recorded in the file.
pub fn generate_from(src: &Path, version: &str) -> anyhow::Result<Generated> {
    let messages = prost_src::read_messages(src)?;
    let mut crds = crate::all_crds()?;
    crds.extend(crate::review_kinds()?);
    let mut warnings = Vec::new();
    let mut kinds = Vec::new();
    let mut names = Names::default();
    let mut roots = Vec::new();
    for crd in &crds {
        for v in &crd.versions {
            let api_version = if crd.group.is_empty() {
                v.name.clone()
            } else {
                format!("{}/{}", crd.group, v.name)
            };
            let module = module_of(&crd.group, &v.name);
            let found = messages.keys().find(|m| {
                m.strip_prefix(&module)
                    .and_then(|r| r.strip_prefix('.'))
                    .is_some_and(|n| n.eq_ignore_ascii_case(&crd.kind))
            });
            let Some(message) = found else {
                warnings.push(format!(
                    "no message for {api_version} {} (looked in {module})",
                    crd.kind
                ));
                continue;
            };
            names.walk(&messages, message, &v.schema);
            kinds.push(json!({"apiVersion": api_version, "kind": crd.kind, "message": message}));
            roots.push(message.clone());
        }
    }
    let reachable = reachable(&messages, roots);
    let source = Value::from(format!("k8s-pb {version} (prost), JSON names from crds/"));
    let mut out = format!("{{\n  \"source\": {source},\n  \"kinds\": [\n");
    out.push_str(
        &kinds
            .iter()
            .map(|k| format!("    {k}"))
            .collect::<Vec<_>>()
            .join(",\n"),
    );
    out.push_str("\n  ],\n  \"messages\": {\n");
    let mut blocks = Vec::new();
    for msg in &reachable {
        let fields = &messages[msg];
        if !fields.is_empty()
            && !names.properties.contains_key(msg)
            && !names::SPECIAL.contains(&msg.as_str())
        {
            warnings.push(format!(
                "{msg}: no schema reaches it; its field names are lowerCamelCase"
            ));
        }
        let mut lines = Vec::new();
        for f in fields {
            let (name, confirmed) = names.json_name(msg, f);
            let inline = names.inline.contains(&(msg.clone(), f.tag));
            if !confirmed && !inline && names.properties.contains_key(msg) {
                warnings.push(format!(
                    "{msg}.{}: no schema property matches; using {name}",
                    f.rust_name
                ));
            }
            let mut d = serde_json::Map::new();
            d.insert("tag".into(), f.tag.into());
            d.insert("name".into(), name.into());
            let (kind, ty) = match &f.ty {
                Type::Scalar(s) => (s.clone(), None),
                Type::Message(m) => ("message".to_owned(), Some(m.clone())),
            };
            if f.label == Label::Map {
                d.insert("kind".into(), "map".into());
                d.insert("value".into(), kind.into());
            } else {
                d.insert("kind".into(), kind.into());
            }
            if let Some(ty) = ty {
                d.insert("type".into(), ty.into());
            }
            d.insert("repeated".into(), (f.label == Label::Repeated).into());
            if inline {
                d.insert("inline".into(), true.into());
            }
            lines.push(format!("      {}", Value::Object(d)));
        }
        let body = if lines.is_empty() {
            String::new()
        } else {
            format!("\n{}\n    ", lines.join(",\n"))
        };
        blocks.push(format!("    {}: [{body}]", Value::from(msg.as_str())));
    }
    out.push_str(&blocks.join(",\n"));
    out.push_str("\n  }\n}\n");
    Ok(Generated {
        json: out,
        warnings,
    })
}

/// Every message reachable from `roots` through message-typed fields, sorted.
fn reachable(messages: &Messages, roots: Vec<String>) -> BTreeSet<String> {
    let mut seen = BTreeSet::new();
    let mut queue: VecDeque<String> = roots.into();
    while let Some(m) = queue.pop_front() {
        if !seen.insert(m.clone()) {
            continue;
        }
        for f in messages.get(&m).into_iter().flatten() {
            if let Type::Message(t) = &f.ty {
                if messages.contains_key(t) && !seen.contains(t) {
                    queue.push_back(t.clone());
                }
            }
        }
    }
    seen
}

/// Generates the descriptors from the k8s-pb source in the cargo registry.
pub fn generate() -> anyhow::Result<Generated> {
    let (src, version) = k8s_pb_src()?;
    generate_from(&src, &version)
}

/// Reads `path` and tells whether it differs from `json` (`None`: up to date).
pub fn check(path: &Path, json: &str) -> anyhow::Result<Option<String>> {
    let current = std::fs::read_to_string(path).unwrap_or_default();
    if current == json {
        return Ok(None);
    }
    let old: BTreeMap<&str, ()> = current.lines().map(|l| (l, ())).collect();
    let new: BTreeMap<&str, ()> = json.lines().map(|l| (l, ())).collect();
    let added = new.keys().filter(|l| !old.contains_key(*l)).count();
    let removed = old.keys().filter(|l| !new.contains_key(*l)).count();
    Ok(Some(format!(
        "{} differs: {added} lines would be added, {removed} removed\n",
        path.display()
    )))
}

/// Writes `json` to `path`, creating its directory.
pub fn write(path: &Path, json: &str) -> anyhow::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    std::fs::write(path, json)?;
    Ok(())
}
