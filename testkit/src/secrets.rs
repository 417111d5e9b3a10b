//! Secrets for the encryption-at-rest tests: a Secret holding one value, its storage key,
//! and a value no other test writes (with the base64 form a Secret's JSON stores it in),
//! so a test can search the data files for it.

use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::ByteString;
use kube::api::Api;

/// The storage key of Secret `name` in `default`.
pub fn key(name: &str) -> String {
    format!("/registry/core/secrets/default/{name}")
}

/// A Secret `name` whose `password` is `value`.
pub fn secret(name: &str, value: &str) -> Secret {
    let mut s = Secret::default();
    s.metadata.name = Some(name.into());
    s.data = Some(
        [(
            "password".to_string(),
            ByteString(value.as_bytes().to_vec()),
        )]
        .into(),
    );
    s
}

/// A value no other test writes, and the base64 form a Secret's JSON stores it in.
pub fn canary(what: &str) -> (String, String) {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    let value = format!("canary-{what}-{}-{nanos}", std::process::id());
    let b64 = serde_json::to_string(&ByteString(value.clone().into_bytes())).unwrap();
    (value, b64.trim_matches('"').to_string())
}

/// The `password` of Secret `name`, as read through the API.
pub async fn password(secrets: &Api<Secret>, name: &str) -> String {
    let s = secrets.get(name).await.unwrap();
    String::from_utf8(s.data.unwrap()["password"].0.clone()).unwrap()
}
