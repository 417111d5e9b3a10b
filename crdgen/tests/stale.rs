//! Fails when the committed `crds/` differs from what the generator produces.

use std::path::PathBuf;

#[test]
fn crds_dir_is_up_to_date() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../crds");
    let files = crdgen::generate().expect("generating CRDs");
    let drift = crdgen::check(&dir, &files).expect("reading crds/");
    assert!(
        drift.is_empty(),
        "crds/ is out of date:\n{drift}regenerate with: {} (from the workspace root)",
        crdgen::REGENERATE
    );
}
