//! Links the hot code of `kybern-scheduler` together (see `symbol-order.txt`).

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=KYBERN_NO_SYMBOL_ORDER");
    // rustc links x86_64-unknown-linux-gnu with its own LLD (Rust 1.90+), which takes an
    // ordering file; another linker might not.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || std::env::var_os("KYBERN_NO_SYMBOL_ORDER").is_some()
    {
        return;
    }
    // The linker reads a copy in OUT_DIR, not the source file: a target dir shared by
    // several checkouts (CI clones) keeps this script's output, and a path into a
    // checkout that is gone would fail the link.
    let source = std::path::Path::new(
        &std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"),
    )
    .join("symbol-order.txt");
    let copy = std::path::Path::new(&std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"))
        .join("symbol-order.txt");
    std::fs::copy(&source, &copy)
        .unwrap_or_else(|e| panic!("copying {} to {}: {e}", source.display(), copy.display()));
    println!(
        "cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={}",
        copy.display()
    );
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // A position-dependent executable, as Go links kube-scheduler: the linker resolves
    // the ~14000 relocations a PIE's loader applies at start-up, whose table (330 KB)
    // is read and whose targets (260 KB of vtables and constants) are written, and so
    // become private memory, before main.
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
