//! Compiles the generated CRD manifests of `crds/` into the apiserver, so the binary
//! serves every built-in kind without reading files at start-up. They are converted to
//! JSON here: parsing JSON at start-up is several times faster than YAML.

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
    let mut out = String::from("/// Every built-in CRD manifest of `crds/`: (file name, JSON text).\n");
    out.push_str("pub static BUILTIN_CRDS: &[(&str, &str)] = &[\n");
    for f in &files {
        let canonical = f.canonicalize().unwrap();
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        println!("cargo:rerun-if-changed={}", canonical.display());
        let text = fs::read_to_string(&canonical).unwrap();
        let value: serde_json::Value = serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{name}: {e}"));
        let json_path = out_dir.join(name.replace(".yaml", ".json"));
        fs::write(&json_path, serde_json::to_vec(&value).unwrap()).unwrap();
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", json_path.display().to_string()));
    }
    out.push_str("];\n");
    fs::write(out_dir.join("builtin_crds.rs"), out).unwrap();
}
