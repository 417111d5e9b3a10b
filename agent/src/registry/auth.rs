//! Answering a registry's 401 challenge: `Basic` with the credentials given, `Bearer` by
//! fetching a token from the challenge's realm for the repository scope (with the
//! credentials as basic auth, if any), as the distribution token specification describes.

use base64::Engine;
use bytes::Bytes;
use http::Method;

use super::client::{read_body, server_message, Session};
use super::{Error, Result};
use crate::runtime::RegistryAuth;

impl Session {
    /// Sets the authorization a challenge asks for; false when there is nothing new to try.
    pub(super) async fn answer(&mut self, challenge: &str) -> Result<bool> {
        let (scheme, params) = parse_challenge(challenge);
        if scheme.eq_ignore_ascii_case("basic") {
            let Some(auth) = &self.auth else {
                return Ok(false);
            };
            let basic = basic_header(auth);
            if self.authorization.as_deref() == Some(basic.as_str()) {
                return Ok(false);
            }
            self.authorization = Some(basic);
            return Ok(true);
        }
        if !scheme.eq_ignore_ascii_case("bearer") {
            return Ok(false);
        }
        let realm = params
            .iter()
            .find(|(k, _)| k == "realm")
            .map(|(_, v)| v.clone())
            .ok_or_else(|| Error::Auth(format!("bearer challenge without realm: {challenge}")))?;
        let mut query = Vec::new();
        if let Some((_, service)) = params.iter().find(|(k, _)| k == "service") {
            query.push(format!("service={}", encode(service)));
        }
        let scope = params
            .iter()
            .find(|(k, _)| k == "scope")
            .map_or(self.scope.clone(), |(_, v)| v.clone());
        query.push(format!("scope={}", encode(&scope)));
        let sep = if realm.contains('?') { '&' } else { '?' };
        let url = format!("{realm}{sep}{}", query.join("&"));
        let basic = self.auth.as_ref().map(basic_header);
        let resp = self
            .raw(Method::GET, &url, &[], Bytes::new(), basic.as_deref())
            .await
            .map_err(|(e, _)| e)?;
        let status = resp.status();
        let body = read_body(resp, &Method::GET, &url).await?;
        if !status.is_success() {
            let what = if self.auth.is_some() {
                "token"
            } else {
                "anonymous token"
            };
            return Err(Error::Auth(format!(
                "failed to fetch {what}: unexpected status from GET request to {url}: {status}{}",
                server_message(&body)
            )));
        }
        #[derive(serde::Deserialize)]
        struct Token {
            #[serde(default)]
            token: String,
            #[serde(default)]
            access_token: String,
        }
        let token: Token = serde_json::from_slice(&body)
            .map_err(|e| Error::Auth(format!("token response from {url}: {e}")))?;
        let token = if token.token.is_empty() {
            token.access_token
        } else {
            token.token
        };
        if token.is_empty() {
            return Err(Error::Auth(format!(
                "token response from {url} holds no token"
            )));
        }
        self.authorization = Some(format!("Bearer {token}"));
        Ok(true)
    }
}

pub(super) fn basic_header(auth: &RegistryAuth) -> String {
    let raw = format!("{}:{}", auth.username, auth.password);
    format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(raw)
    )
}

/// Splits `Bearer realm="...",service="...",scope="a:b:pull,push"` into the scheme and its
/// parameters (quoted values may hold commas).
fn parse_challenge(header: &str) -> (String, Vec<(String, String)>) {
    let header = header.trim();
    let (scheme, rest) = header.split_once(' ').unwrap_or((header, ""));
    let mut params = Vec::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            value = chars.by_ref().take_while(|&c| c != ',').collect();
        }
        params.push((key.trim().to_ascii_lowercase(), value));
    }
    (scheme.to_string(), params)
}

/// Percent-encodes a query value (RFC 3986 unreserved characters stay).
fn encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn challenges_parse_into_scheme_and_parameters() {
        let cases = [
            (
                "bearer with scope list",
                r#"Bearer realm="https://auth.example.com/token",service="registry.example.com",scope="repository:a/b:pull,push""#,
                "Bearer",
                vec![
                    ("realm", "https://auth.example.com/token"),
                    ("service", "registry.example.com"),
                    ("scope", "repository:a/b:pull,push"),
                ],
            ),
            (
                "basic",
                r#"Basic realm="basic-realm""#,
                "Basic",
                vec![("realm", "basic-realm")],
            ),
            (
                "unquoted",
                "Bearer realm=http://x/t, service=s",
                "Bearer",
                vec![("realm", "http://x/t"), ("service", "s")],
            ),
        ];
        for (name, header, scheme, want) in cases {
            let (s, params) = parse_challenge(header);
            assert_eq!(s, scheme, "{name}");
            let got: Vec<(&str, &str)> = params
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str()))
                .collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
