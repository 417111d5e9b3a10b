use super::*;

#[test]
fn only_six_and_sixteen_lower_case_letters_or_digits_make_a_token() {
    let cases = [
        ("well formed", "abcdef.0123456789abcdef", true),
        ("upper case", "ABCDEF.0123456789abcdef", false),
        ("short id", "abcde.0123456789abcdef", false),
        ("long secret", "abcdef.0123456789abcdef0", false),
        ("no dot", "abcdef0123456789abcdef", false),
        ("a JWT", "eyJh.eyJz.c2ln", false),
        ("punctuation", "abc-ef.0123456789abcdef", false),
    ];
    for (name, s, ok) in cases {
        assert_eq!(Token::parse(s).is_some(), ok, "{name}");
    }
}

#[test]
fn generated_tokens_have_the_token_shape_and_differ() {
    let a = Token::generate();
    let b = Token::generate();
    assert_eq!(Token::parse(&a.to_string()), Some(a.clone()));
    assert_ne!(a, b);
    assert!(
        !format!("{a:?}").contains(&a.secret),
        "Debug hides the secret"
    );
}

#[test]
fn a_token_secret_round_trips_and_expires() {
    let token = Token::parse("abcdef.0123456789abcdef").unwrap();
    let options = TokenOptions {
        description: Some("for node 2".into()),
        expires: Some(1_000),
        usages: vec!["signing".into(), "authentication".into()],
        groups: vec![DEFAULT_NODE_GROUP.into()],
    };
    let s = secret(&token, &options);
    assert_eq!(s["metadata"]["name"], "bootstrap-token-abcdef");
    assert_eq!(s["type"], SECRET_TYPE);
    assert_eq!(token_of(&s), Some(token));
    assert_eq!(data(&s, USAGE_SIGNING).as_deref(), Some("true"));
    assert_eq!(data(&s, USAGE_AUTHENTICATION).as_deref(), Some("true"));
    assert_eq!(
        data(&s, EXPIRATION).as_deref(),
        Some("1970-01-01T00:16:40Z")
    );
    assert_eq!(data(&s, EXTRA_GROUPS).as_deref(), Some(DEFAULT_NODE_GROUP));
    assert!(!expired(&s, 999));
    assert!(expired(&s, 1_000));
}

#[test]
fn a_detached_jws_verifies_only_with_its_token_and_content() {
    let token = Token::parse("abcdef.0123456789abcdef").unwrap();
    let other = Token::parse("abcdef.0123456789abcdeg").unwrap();
    let jws = detached_jws("kubeconfig", &token);
    let (header, signature) = jws.split_once("..").expect("detached: no payload");
    assert_eq!(
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(header)
            .unwrap(),
        br#"{"alg":"HS256","kid":"abcdef"}"#
    );
    assert_eq!(signature.len(), 43, "32 bytes of HMAC-SHA256");
    assert!(jws_valid(&jws, "kubeconfig", &token));
    assert!(!jws_valid(&jws, "kubeconfig", &other), "another secret");
    assert!(!jws_valid(&jws, "kubeconfig2", &token), "other content");
}

#[test]
fn the_ca_pin_is_the_sha256_of_the_public_key_info() {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = rcgen::CertificateParams::new(vec!["ca".into()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let digest = ring::digest::digest(
        &ring::digest::SHA256,
        &rcgen::PublicKeyData::subject_public_key_info(&key),
    );
    let hex: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(ca_cert_hash(&cert.pem()), Some(format!("sha256:{hex}")));
}
