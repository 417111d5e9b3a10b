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

#[test]
fn protobuf_descriptors_are_up_to_date() {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(crdgen::protobuf::PATH);
    let generated = crdgen::protobuf::generate().expect("generating protobuf descriptors");
    let drift =
        crdgen::protobuf::check(&path, &generated.json).expect("reading protobuf/descriptors.json");
    assert!(
        drift.is_none(),
        "{}regenerate with: {} (from the workspace root)",
        drift.unwrap_or_default(),
        crdgen::protobuf::REGENERATE
    );
}
