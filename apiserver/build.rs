//! Compiles the generated CRD manifests of `crds/` into the apiserver, so the binary
//! serves every built-in kind without reading files at start-up. They are converted to
//! JSON here: parsing JSON at start-up is several times faster than YAML. Each version's
//! schema (most of the bytes) is split out, so the server parses a kind's schema only
//! when it first needs it; the CRD keeps `x-kybern-schema-has-spec` for the generation rule.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../crds");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let mut out = String::from(
        "/// Every built-in CRD of `crds/`: (file name, CRD JSON without schemas, [(version, schema JSON)]).\n",
    );
    out.push_str("/// A built-in CRD: its file name, its JSON, and each version's schema JSON.\n");
    out.push_str("pub type BuiltinCrd = (&'static str, &'static str, &'static [(&'static str, &'static str)]);\n");
    out.push_str("pub static BUILTIN_CRDS: &[BuiltinCrd] = &[\n");
    for f in &files {
        let canonical = f.canonicalize().unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        println!("cargo:rerun-if-changed={}", canonical.display());
        let text = fs::read_to_string(&canonical).unwrap();
        let mut value: serde_json::Value =
            serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let mut schemas = String::new();
        for v in value
            .pointer_mut("/spec/versions")
            .and_then(|v| v.as_array_mut())
            .into_iter()
            .flatten()
        {
            let version = v["name"].as_str().unwrap_or_default().to_string();
            let Some(schema) = v.pointer("/schema/openAPIV3Schema").cloned() else {
                continue;
            };
            let has_spec = schema.pointer("/properties/spec").is_some();
            v.as_object_mut().unwrap().remove("schema");
            v["x-kybern-schema-has-spec"] = serde_json::Value::Bool(has_spec);
            let schema_path = out_dir.join(format!(
                "{}.{version}.schema.json",
                name.trim_end_matches(".yaml")
            ));
            fs::write(&schema_path, serde_json::to_vec(&schema).unwrap()).unwrap();
            schemas.push_str(&format!(
                "({version:?}, include_str!({:?})), ",
                schema_path.display().to_string()
            ));
        }
        let json_path = out_dir.join(name.replace(".yaml", ".json"));
        fs::write(&json_path, serde_json::to_vec(&value).unwrap()).unwrap();
        out.push_str(&format!(
            "    ({name:?}, include_str!({:?}), &[{schemas}]),\n",
            json_path.display().to_string()
        ));
    }
    out.push_str("];\n");
    fs::write(out_dir.join("builtin_crds.rs"), out).unwrap();
    git_commit();
}

/// `KYBERN_GIT_COMMIT` for `/version`'s gitCommit: the value given in the environment,
/// else the checkout's HEAD commit, else none (the server then reports zeros).
fn git_commit() {
    println!("cargo:rerun-if-env-changed=KYBERN_GIT_COMMIT");
    if env::var("KYBERN_GIT_COMMIT").is_ok() {
        return;
    }
    let git = |args: &[&str]| {
        std::process::Command::new("git")
            .args(args)
            .current_dir(env::var("CARGO_MANIFEST_DIR").unwrap())
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
    };
    // Built again when HEAD moves: HEAD itself, the branch it names, packed refs (only
    // files that exist: cargo reruns a script whose watched file is missing every time).
    let branch = git(&["symbolic-ref", "-q", "HEAD"]);
    let watched = ["HEAD", "packed-refs"]
        .into_iter()
        .chain(branch.as_deref())
        .filter_map(|path| git(&["rev-parse", "--git-path", path]));
    for p in watched {
        let full = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join(&p);
        if full.exists() {
            println!("cargo:rerun-if-changed={p}");
        }
    }
    if let Some(commit) = git(&["rev-parse", "HEAD"]) {
        if commit.len() == 40 && commit.bytes().all(|b| b.is_ascii_hexdigit()) {
            println!("cargo:rustc-env=KYBERN_GIT_COMMIT={commit}");
        }
    }
}
