//! Links the hot code of `kybern-scheduler` together (see `symbol-order.txt`).

fn main() {
    println!("cargo:rerun-if-changed=symbol-order.txt");
    println!("cargo:rerun-if-env-changed=KYBERN_NO_SYMBOL_ORDER");
    // rustc links x86_64-unknown-linux-gnu with its own LLD (Rust 1.90+), which takes an
    // ordering file; another linker might not.
    let target = std::env::var("TARGET").unwrap_or_default();
    if target != "x86_64-unknown-linux-gnu" || std::env::var_os("KYBERN_NO_SYMBOL_ORDER").is_some() {
        return;
    }
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,--symbol-ordering-file={dir}/symbol-order.txt");
    println!("cargo:rustc-link-arg-bins=-Wl,--no-warn-symbol-ordering");
    // A position-dependent executable, as Go links kube-scheduler: the linker resolves
    // the ~14000 relocations a PIE's loader applies at start-up, whose table (330 KB)
    // is read and whose targets (260 KB of vtables and constants) are written, and so
    // become private memory, before main.
    println!("cargo:rustc-link-arg-bins=-no-pie");
}
