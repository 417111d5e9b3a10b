use super::*;

const SECRET: &str = "/registry/core/secrets/default/s";

fn config(yaml: &str) -> std::result::Result<Transformer, String> {
    let c: EncryptionConfiguration = serde_yaml::from_str(yaml).map_err(|e| e.to_string())?;
    c.transformer()
}

fn keys(names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("{{name: {n}, secret: {}}}", Key::generate(n).secret))
        .collect::<Vec<_>>()
        .join(", ")
}

#[test]
fn records_of_named_resources_are_encrypted_and_others_kept_as_they_are() {
    let t = EncryptionConfiguration::generated("k1")
        .transformer()
        .unwrap();
    let plain = Bytes::from_static(br#"{"data":{"password":"hunter2"}}"#);
    let stored = t.to_storage(SECRET, plain.clone()).unwrap();
    assert!(stored.starts_with(b"k8s:enc:aesgcm:v1:k1:"), "{stored:?}");
    assert!(!stored.windows(7).any(|w| w == b"hunter2"));
    let read = t.from_storage(SECRET, &stored).unwrap();
    assert_eq!(read.value, plain);
    assert!(!read.stale, "written by the first provider");

    let configmap = "/registry/core/configmaps/default/c";
    assert_eq!(t.to_storage(configmap, plain.clone()).unwrap(), plain);
    let other = "/compact_rev_key";
    assert_eq!(t.to_storage(other, plain.clone()).unwrap(), plain);
}

#[test]
fn plaintext_records_stay_readable_through_identity_and_are_stale() {
    let t = EncryptionConfiguration::generated("k1")
        .transformer()
        .unwrap();
    let plain = Bytes::from_static(br#"{"data":{}}"#);
    let read = t.from_storage(SECRET, &plain).unwrap();
    assert_eq!(read.value, plain);
    assert!(read.stale, "identity is not the writing provider");
}

#[test]
fn unreadable_records_say_why() {
    let writer = EncryptionConfiguration::generated("old")
        .transformer()
        .unwrap();
    let stored = writer
        .to_storage(SECRET, Bytes::from_static(b"{}"))
        .unwrap();
    let reader = EncryptionConfiguration::generated("new")
        .transformer()
        .unwrap();
    let mut corrupted = stored.to_vec();
    let last = corrupted.len() - 1;
    corrupted[last] ^= 1;
    let same_name = EncryptionConfiguration::generated("old")
        .transformer()
        .unwrap();
    let cases = [
        (
            "unknown_key",
            &reader,
            stored.clone(),
            "identity transformer tried to read encrypted data (the record is aesgcm key \"old\", which no provider of the encryption configuration reads)",
        ),
        (
            "corrupted",
            &writer,
            Bytes::from(corrupted),
            "cipher: message authentication failed",
        ),
        (
            "same_name_other_secret",
            &same_name,
            stored.clone(),
            "cipher: message authentication failed",
        ),
    ];
    for (name, t, raw, want) in cases {
        let err = t
            .from_storage(SECRET, &raw)
            .err()
            .unwrap_or_else(|| panic!("{name}: read"));
        assert_eq!(err, want, "{name}");
    }
    let off = config(
        "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources: []\n",
    )
    .unwrap();
    assert!(off
        .from_storage(SECRET, &stored)
        .err()
        .unwrap()
        .contains("names no provider for this resource"));
}

/// `generated(first)` with `more` keys after the first, all in one aesgcm provider.
fn with_keys(first: &EncryptionConfiguration, more: &[Key]) -> EncryptionConfiguration {
    let mut c = first.clone();
    let keys = &mut c
        .first_provider_mut()
        .unwrap()
        .aesgcm
        .as_mut()
        .unwrap()
        .keys;
    let mut all: Vec<Key> = more.to_vec();
    all.append(keys);
    *keys = all;
    c
}

#[test]
fn every_key_of_the_chain_reads_and_only_the_first_writes() {
    let old = EncryptionConfiguration::generated("old");
    let stored = old
        .transformer()
        .unwrap()
        .to_storage(SECRET, Bytes::from_static(b"{}"))
        .unwrap();
    let rotated = with_keys(&old, &[Key::generate("new")])
        .transformer()
        .unwrap();
    let read = rotated.from_storage(SECRET, &stored).unwrap();
    assert_eq!(read.value, Bytes::from_static(b"{}"));
    assert!(read.stale, "read by the second key");
    let rewritten = rotated.to_storage(SECRET, read.value).unwrap();
    assert!(rewritten.starts_with(b"k8s:enc:aesgcm:v1:new:"));
    assert!(!rotated.from_storage(SECRET, &rewritten).unwrap().stale);
}

#[test]
fn resource_names_select_keys() {
    let cases = [
        ("secrets", SECRET, true),
        ("secrets", "/registry/core/configmaps/a/b", false),
        ("secrets", "/registry/example.com/secrets/a/b", false),
        ("deployments.apps", "/registry/apps/deployments/a/b", true),
        ("*.", "/registry/core/pods/a/b", true),
        ("*.", "/registry/apps/deployments/a/b", false),
        ("*.apps", "/registry/apps/statefulsets/a/b", true),
        ("*.*", "/registry/example.com/widgets/w", true),
        ("*.*", "/compact_rev_key", false),
    ];
    for (resource, key, want) in cases {
        let m = Matcher::parse(resource).unwrap();
        let got = group_resource(key).is_some_and(|(g, p)| m.matches(g, p));
        assert_eq!(got, want, "{resource} {key}");
    }
}

#[test]
fn invalid_configurations_are_refused_with_the_reason() {
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n";
    let cases = [
        (
            "aescbc",
            format!("{head}  - aescbc: {{keys: [{}]}}\n", keys(&["k"])),
            "the aescbc provider is not supported by kybern",
        ),
        (
            "secretbox_short_key",
            format!("{head}  - secretbox: {{keys: [{{name: k, secret: c2hvcnQ=}}]}}\n"),
            "secretbox.keys[0].secret: Invalid value: REDACTED: secret is not of the expected length, got 5, expected one of [32]",
        ),
        (
            "two_in_one",
            format!(
                "{head}  - {{identity: {{}}, aesgcm: {{keys: [{}]}}}}\n",
                keys(&["k"])
            ),
            "more than one provider specified in a single element",
        ),
        (
            "short_key",
            format!("{head}  - aesgcm: {{keys: [{{name: k, secret: c2hvcnQ=}}]}}\n"),
            "secret is not of the expected length, got 5",
        ),
        (
            "duplicate_name",
            format!("{head}  - aesgcm: {{keys: [{}]}}\n", keys(&["k", "k"])),
            "Duplicate value",
        ),
        (
            "no_providers",
            format!("{head}  []\n").replace("  providers:\n  []", "  providers: []"),
            "at least one provider",
        ),
        (
            "upper_case",
            format!("{head}  - identity: {{}}\n").replace("[secrets]", "[Secrets]"),
            "upper case",
        ),
        (
            "wrong_kind",
            format!("{head}  - identity: {{}}\n")
                .replace("kind: EncryptionConfiguration", "kind: Other"),
            "expected apiVersion",
        ),
        (
            "typo",
            format!("{head}  - aesgsm: {{}}\n"),
            "unknown field `aesgsm`",
        ),
    ];
    for (name, yaml, want) in cases {
        let err = config(&yaml)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(err.contains(want), "{name}: {err}");
    }
}

#[test]
fn a_saved_configuration_is_private_and_loads_back() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(DEFAULT_FILE);
    let c = EncryptionConfiguration::generated("k1");
    c.save(&path).unwrap();
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let back = EncryptionConfiguration::load(&path).unwrap();
    let stored = c
        .transformer()
        .unwrap()
        .to_storage(SECRET, Bytes::from_static(b"{}"))
        .unwrap();
    assert_eq!(
        back.transformer()
            .unwrap()
            .from_storage(SECRET, &stored)
            .unwrap()
            .value,
        Bytes::from_static(b"{}")
    );
}

#[test]
fn describe_names_the_provider_and_key() {
    assert_eq!(describe(b"{}"), "plaintext");
    assert_eq!(describe(b"k8s:enc:aesgcm:v1:k1:xyz"), "aesgcm key \"k1\"");
    assert_eq!(describe(b"k8s:enc:odd"), "encrypted with an unknown prefix");
}

#[test]
fn secretbox_records_carry_upstreams_prefix_and_migrate_to_and_from_aesgcm() {
    let head = "apiVersion: apiserver.config.k8s.io/v1\nkind: EncryptionConfiguration\nresources:\n- resources: [secrets]\n  providers:\n";
    let sb = Key::generate("sb1");
    let gcm = Key::generate("gcm1");
    let secretbox = format!(
        "  - secretbox: {{keys: [{{name: sb1, secret: {}}}]}}\n",
        sb.secret
    );
    let aesgcm = format!(
        "  - aesgcm: {{keys: [{{name: gcm1, secret: {}}}]}}\n",
        gcm.secret
    );
    let sb_first = config(&format!("{head}{secretbox}{aesgcm}  - identity: {{}}\n")).unwrap();
    let gcm_first = config(&format!("{head}{aesgcm}{secretbox}")).unwrap();
    let plain = Bytes::from_static(br#"{"data":{"password":"hunter2"}}"#);

    let stored = sb_first.to_storage(SECRET, plain.clone()).unwrap();
    assert!(
        stored.starts_with(b"k8s:enc:secretbox:v1:sb1:"),
        "{stored:?}"
    );
    let prefix = b"k8s:enc:secretbox:v1:sb1:".len();
    assert_eq!(
        stored.len(),
        prefix + 24 + 16 + plain.len(),
        "nonce and tag follow the prefix, as upstream stores them"
    );
    assert!(!stored.windows(7).any(|w| w == b"hunter2"));
    assert_eq!(describe(&stored), "secretbox key \"sb1\"");
    let read = sb_first.from_storage(SECRET, &stored).unwrap();
    assert_eq!((read.value.clone(), read.stale), (plain.clone(), false));

    let read = gcm_first.from_storage(SECRET, &stored).unwrap();
    assert_eq!(read.value, plain);
    assert!(
        read.stale,
        "a secretbox record is rewritten by an aesgcm writer"
    );
    let by_gcm = gcm_first.to_storage(SECRET, plain.clone()).unwrap();
    let read = sb_first.from_storage(SECRET, &by_gcm).unwrap();
    assert_eq!((read.value, read.stale), (plain, true));
}
