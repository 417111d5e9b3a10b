//! Upstream's impersonation filter: `Impersonate-User` (a user, or a service account as
//! `system:serviceaccount:<ns>:<name>`), `Impersonate-Group`, `Impersonate-Uid` and
//! `Impersonate-Extra-<key>` make the request act as someone else, each one allowed only
//! when the requester may `impersonate` it (users, groups, uids, userextras/<key> in
//! authentication.k8s.io; serviceaccounts in the core group and their namespace).

use std::collections::BTreeMap;

use http::HeaderMap;

use super::super::{Attributes, Pipeline, ResourceAttributes, UserInfo};
use super::{ANONYMOUS_USER, UNAUTHENTICATED_GROUP};
use crate::status::{ApiError, Result};

const USER_HEADER: &str = "impersonate-user";
const GROUP_HEADER: &str = "impersonate-group";
const UID_HEADER: &str = "impersonate-uid";
const EXTRA_PREFIX: &str = "impersonate-extra-";
const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";
const AUTHENTICATED_GROUP: &str = "system:authenticated";

/// The user the request acts as: `requester` itself without impersonation headers, else
/// the impersonated user once every part of it is authorized.
pub fn impersonate(
    pipeline: &Pipeline,
    requester: UserInfo,
    headers: &HeaderMap,
) -> Result<UserInfo> {
    let values = |name: &str| -> Vec<String> {
        headers
            .get_all(name)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .map(String::from)
            .collect()
    };
    let user = values(USER_HEADER).into_iter().next().unwrap_or_default();
    let groups = values(GROUP_HEADER);
    let uid = values(UID_HEADER).into_iter().next();
    let mut extra: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (name, value) in headers {
        if let Some(key) = name.as_str().strip_prefix(EXTRA_PREFIX) {
            if let Ok(v) = value.to_str() {
                extra
                    .entry(crate::request::percent_decode(key, false))
                    .or_default()
                    .push(v.to_string());
            }
        }
    }
    if user.is_empty() {
        if groups.is_empty() && uid.is_none() && extra.is_empty() {
            return Ok(requester);
        }
        return Err(ApiError::Internal(
            "requested impersonation of groups, a uid or extra without impersonating a user".into(),
        ));
    }
    let check = |group: &str, resource: &str, sub: Option<&str>, ns: Option<&str>, name: &str| {
        let attributes = Attributes {
            user: requester.clone(),
            verb: "impersonate".into(),
            resource: Some(ResourceAttributes {
                group: group.into(),
                version: String::new(),
                resource: resource.into(),
                subresource: sub.map(String::from),
                namespace: ns.map(String::from),
                name: Some(name.into()),
                selectors: Default::default(),
            }),
            path: String::new(),
        };
        pipeline.authorize(&attributes)
    };
    const AUTHN: &str = "authentication.k8s.io";
    let account = user
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|rest| rest.split_once(':'));
    let mut groups_out = groups.clone();
    match account {
        Some((ns, name)) => {
            check("", "serviceaccounts", None, Some(ns), name)?;
            if groups.is_empty() {
                groups_out = vec![
                    "system:serviceaccounts".into(),
                    format!("system:serviceaccounts:{ns}"),
                ];
            }
        }
        None => check(AUTHN, "users", None, None, &user)?,
    }
    for g in &groups {
        check(AUTHN, "groups", None, None, g)?;
    }
    for (key, vals) in &extra {
        for v in vals {
            check(AUTHN, "userextras", Some(key), None, v)?;
        }
    }
    if let Some(uid) = &uid {
        check(AUTHN, "uids", None, None, uid)?;
    }
    // Upstream adds system:authenticated (or, for the anonymous user,
    // system:unauthenticated) unless either is asked for already.
    let has = |g: &str| groups_out.iter().any(|x| x == g);
    if user != ANONYMOUS_USER {
        if !has(AUTHENTICATED_GROUP) && !has(UNAUTHENTICATED_GROUP) {
            groups_out.push(AUTHENTICATED_GROUP.into());
        }
    } else if !has(UNAUTHENTICATED_GROUP) {
        groups_out.push(UNAUTHENTICATED_GROUP.into());
    }
    Ok(UserInfo {
        name: user,
        uid: uid.unwrap_or_default(),
        groups: groups_out,
        extra,
    })
}

#[cfg(test)]
mod tests {
    use super::super::super::{Authorizer, Verdict};
    use super::*;

    /// Allows alice to impersonate anything but the group `admins`.
    struct AliceButNotAdmins;

    impl Authorizer for AliceButNotAdmins {
        fn authorize(&self, a: &Attributes) -> Verdict {
            let r = a.resource.as_ref();
            if r.is_some_and(|r| r.resource == "groups" && r.name.as_deref() == Some("admins")) {
                return Verdict::NoOpinion;
            }
            if a.user.name == "alice" {
                Verdict::Allow
            } else {
                Verdict::NoOpinion
            }
        }
    }

    fn pipeline() -> Pipeline {
        Pipeline {
            authorizers: vec![Box::new(AliceButNotAdmins)],
            ..Pipeline::default()
        }
    }

    fn user(name: &str) -> UserInfo {
        UserInfo {
            name: name.into(),
            groups: vec![AUTHENTICATED_GROUP.into()],
            ..Default::default()
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn impersonation_acts_as_the_requested_identity_when_each_part_is_allowed() {
        type Case = (&'static str, Vec<(&'static str, &'static str)>, UserInfo);
        let cases: Vec<Case> = vec![
            ("no headers", vec![], user("alice")),
            (
                "a user and groups",
                vec![
                    ("Impersonate-User", "bob"),
                    ("Impersonate-Group", "dev"),
                    ("Impersonate-Group", "ops"),
                ],
                UserInfo {
                    name: "bob".into(),
                    groups: vec!["dev".into(), "ops".into(), AUTHENTICATED_GROUP.into()],
                    ..Default::default()
                },
            ),
            (
                "a service account gets its groups",
                vec![("Impersonate-User", "system:serviceaccount:prod:robot")],
                UserInfo {
                    name: "system:serviceaccount:prod:robot".into(),
                    groups: vec![
                        "system:serviceaccounts".into(),
                        "system:serviceaccounts:prod".into(),
                        AUTHENTICATED_GROUP.into(),
                    ],
                    ..Default::default()
                },
            ),
            (
                "uid and an escaped extra key",
                vec![
                    ("Impersonate-User", "bob"),
                    ("Impersonate-Uid", "1234"),
                    ("Impersonate-Extra-example.com%2fscopes", "view"),
                ],
                UserInfo {
                    name: "bob".into(),
                    uid: "1234".into(),
                    groups: vec![AUTHENTICATED_GROUP.into()],
                    extra: [("example.com/scopes".to_string(), vec!["view".to_string()])].into(),
                },
            ),
            (
                "the anonymous user",
                vec![("Impersonate-User", "system:anonymous")],
                UserInfo {
                    name: "system:anonymous".into(),
                    groups: vec![UNAUTHENTICATED_GROUP.into()],
                    ..Default::default()
                },
            ),
        ];
        for (name, pairs, want) in cases {
            let got = impersonate(&pipeline(), user("alice"), &headers(&pairs));
            assert_eq!(got.ok(), Some(want), "{name}");
        }
    }

    #[test]
    fn impersonation_not_allowed_is_upstreams_403() {
        let cases = [
            (
                "a user",
                "carol",
                vec![("Impersonate-User", "bob")],
                "users.authentication.k8s.io \"bob\" is forbidden: User \"carol\" cannot impersonate resource \"users\" in API group \"authentication.k8s.io\" at the cluster scope",
            ),
            (
                "a group",
                "alice",
                vec![("Impersonate-User", "bob"), ("Impersonate-Group", "admins")],
                "groups.authentication.k8s.io \"admins\" is forbidden: User \"alice\" cannot impersonate resource \"groups\" in API group \"authentication.k8s.io\" at the cluster scope",
            ),
            (
                "a service account",
                "carol",
                vec![("Impersonate-User", "system:serviceaccount:prod:robot")],
                "serviceaccounts \"robot\" is forbidden: User \"carol\" cannot impersonate resource \"serviceaccounts\" in API group \"\" in the namespace \"prod\"",
            ),
        ];
        for (name, requester, pairs, message) in cases {
            let err = impersonate(&pipeline(), user(requester), &headers(&pairs)).unwrap_err();
            assert_eq!(err.code(), 403, "{name}");
            assert_eq!(err.to_string(), message, "{name}");
        }
        let err = impersonate(
            &pipeline(),
            user("alice"),
            &headers(&[("Impersonate-Group", "dev")]),
        )
        .unwrap_err();
        assert_eq!(err.code(), 500, "groups without a user");
    }
}
