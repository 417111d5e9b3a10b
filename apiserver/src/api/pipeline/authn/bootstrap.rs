//! Upstream's bootstrap token authenticator: `Authorization: Bearer <id>.<secret>` is
//! user `system:bootstrap:<id>` in `system:bootstrappers`, the Secret's
//! `auth-extra-groups` and `system:authenticated`, while Secret
//! `kube-system/bootstrap-token-<id>` holds that secret, allows authentication and has
//! not expired. A bearer token of another shape is left to the next authenticator.

use async_trait::async_trait;

use super::bootstrap_token::{self as bt, Token};
use super::{bearer_token, cached};
use crate::api::pipeline::{Authenticated, Authenticator, Credentials, UserInfo};
use crate::api::Api;
use crate::object;

pub struct BootstrapTokens;

#[async_trait]
impl Authenticator for BootstrapTokens {
    async fn authenticate(&self, api: &Api, credentials: &Credentials<'_>) -> Authenticated {
        let Some(token) = bearer_token(credentials.headers).and_then(Token::parse) else {
            return Authenticated::NoCredentials;
        };
        let secret = cached(api, "secrets", Some(bt::NAMESPACE), &token.secret_name()).await;
        match secret.as_ref().map(|s| user(s, &token, object::unix_now())) {
            Some(Ok(user)) => Authenticated::User(user),
            Some(Err(why)) => Authenticated::Invalid(why),
            None => Authenticated::Invalid(format!(
                "no bootstrap token secret {}/{}",
                bt::NAMESPACE,
                token.secret_name()
            )),
        }
    }
}

/// The user `secret` makes of `token` at `now`, or why it does not (upstream's checks,
/// in its order; the secret is compared in constant time).
pub(crate) fn user(
    secret: &serde_json::Value,
    token: &Token,
    now: i64,
) -> Result<UserInfo, String> {
    if object::meta_str(secret, "deletionTimestamp").is_some() {
        return Err("the bootstrap token secret is being deleted".into());
    }
    if secret["type"].as_str() != Some(bt::SECRET_TYPE) {
        return Err(format!(
            "the bootstrap token secret is not of type {}",
            bt::SECRET_TYPE
        ));
    }
    let stored = bt::data(secret, bt::TOKEN_SECRET).unwrap_or_default();
    if !bt::constant_time_eq(&stored, &token.secret) {
        return Err("the bootstrap token does not match its secret".into());
    }
    if bt::data(secret, bt::TOKEN_ID).as_deref() != Some(token.id.as_str()) {
        return Err("the bootstrap token secret names another token id".into());
    }
    if bt::expired(secret, now) {
        return Err("the bootstrap token has expired".into());
    }
    if bt::data(secret, bt::USAGE_AUTHENTICATION).as_deref() != Some("true") {
        return Err("the bootstrap token is not for authentication".into());
    }
    let mut groups = vec![bt::GROUP.to_string()];
    let extra = bt::data(secret, bt::EXTRA_GROUPS).unwrap_or_default();
    for g in extra.split(',').map(str::trim).filter(|g| !g.is_empty()) {
        if !g.starts_with(bt::EXTRA_GROUP_PREFIX) {
            return Err(format!(
                "the bootstrap token's extra group {g:?} does not start with {:?}",
                bt::EXTRA_GROUP_PREFIX
            ));
        }
        groups.push(g.to_string());
    }
    groups.push("system:authenticated".into());
    Ok(UserInfo {
        name: format!("{}{}", bt::USER_PREFIX, token.id),
        uid: String::new(),
        groups,
        extra: Default::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn token() -> Token {
        Token::parse("abcdef.0123456789abcdef").unwrap()
    }

    fn options() -> bt::TokenOptions {
        bt::TokenOptions {
            description: None,
            expires: Some(2_000),
            usages: vec!["authentication".into(), "signing".into()],
            groups: vec![bt::DEFAULT_NODE_GROUP.into()],
        }
    }

    #[test]
    fn a_valid_token_is_its_bootstrap_user_with_the_extra_groups() {
        let user = user(&bt::secret(&token(), &options()), &token(), 1_000).unwrap();
        assert_eq!(user.name, "system:bootstrap:abcdef");
        assert_eq!(
            user.groups,
            [
                "system:bootstrappers",
                bt::DEFAULT_NODE_GROUP,
                "system:authenticated"
            ]
        );
    }

    #[test]
    fn tokens_the_secret_does_not_vouch_for_are_refused() {
        let wrong = Token::parse("abcdef.0123456789abcdeg").unwrap();
        let mut no_auth = bt::secret(&token(), &options());
        no_auth["data"]
            .as_object_mut()
            .unwrap()
            .remove(bt::USAGE_AUTHENTICATION);
        let bad_group = bt::secret(
            &token(),
            &bt::TokenOptions {
                groups: vec!["system:masters".into()],
                ..options()
            },
        );
        let mut opaque = bt::secret(&token(), &options());
        opaque["type"] = "Opaque".into();
        let good = bt::secret(&token(), &options());
        let cases = [
            ("wrong secret", good.clone(), wrong, 1_000, "does not match"),
            ("expired", good, token(), 2_000, "expired"),
            (
                "no authentication usage",
                no_auth,
                token(),
                1_000,
                "not for",
            ),
            (
                "a group outside bootstrappers",
                bad_group,
                token(),
                1_000,
                "extra group",
            ),
            ("not a token secret", opaque, token(), 1_000, "type"),
        ];
        for (name, secret, token, now, why) in cases {
            let err = user(&secret, &token, now).expect_err(name);
            assert!(err.contains(why), "{name}: {err}");
        }
    }
}
