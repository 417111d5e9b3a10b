//! Compiles the generated CRD manifests of `crds/` into the apiserver, so the binary
//! serves every built-in kind without reading files at start-up.

use std::{env, fs, path::PathBuf};

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap()).join("../crds");
    println!("cargo:rerun-if-changed={}", dir.display());
    let mut files: Vec<PathBuf> = fs::read_dir(&dir)
        .map(|rd| rd.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "yaml"));
    files.sort();
    let mut out = String::from("/// Every built-in CRD manifest of `crds/`: (file name, YAML text).\n");
    out.push_str("pub static BUILTIN_CRDS: &[(&str, &str)] = &[\n");
    for f in &files {
        let canonical = f.canonicalize().unwrap();
        let name = f.file_name().unwrap().to_string_lossy();
        out.push_str(&format!("    ({name:?}, include_str!({:?})),\n", canonical.display().to_string()));
        println!("cargo:rerun-if-changed={}", canonical.display());
    }
    out.push_str("];\n");
    fs::write(PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtin_crds.rs"), out).unwrap();
}
