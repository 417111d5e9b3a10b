//! The stages every request passes, in upstream's order: authenticate -> authorize ->
//! (for writes) mutating admission -> defaulting, schema and validation -> validating
//! admission -> storage. Each stage is a list of plugins behind a trait, so a later
//! change (RBAC, webhooks, policies, more authenticators) adds a plugin and touches no
//! handler.
//!
//! Authentication and authorization run in [`super::Api::handle`] before any handler;
//! the admission stages run in the write path (`write.rs`) around its own validation.
//!
//! `kybern server` authenticates client certificates signed by the cluster CA and
//! authorizes as upstream: `system:masters` first, then RBAC ([`rbac`]).

use async_trait::async_trait;
use http::{HeaderMap, Method};
use serde_json::Value;

use super::Api;
use crate::registry::Resource;
use crate::request::Query;
use crate::status::{ApiError, Result, Target};
use crate::tls::ClientIdentity;

mod authn;
mod lifecycle;
pub mod limitranger;
pub mod node;
pub(crate) mod noderestriction;
mod podsecurity;
pub mod priority;
pub mod quota;
pub mod rbac;
pub mod selectors;
mod serviceaccount;
pub mod storageclass;
pub mod tolerationseconds;
pub(crate) mod vap;
pub(crate) mod webhook;

pub(crate) use authn::service_account_user;
pub use authn::{anonymous, impersonate, Anonymous, ServiceAccountTokens};
pub use authn::{bootstrap_token, BootstrapTokens};
pub use lifecycle::NamespaceLifecycle;
pub use limitranger::LimitRanger;
pub use node::NodeAuthorizer;
pub use noderestriction::NodeRestriction;
pub use podsecurity::PodSecurity;
pub use priority::Priority;
pub use quota::ResourceQuota;
pub use selectors::Selectors;
pub use serviceaccount::ServiceAccount;
pub use storageclass::{DefaultStorageClass, StorageObjectInUseProtection};
pub use tolerationseconds::DefaultTolerationSeconds;
pub use vap::ValidatingAdmissionPolicy;
pub use webhook::{MutatingAdmissionWebhook, ValidatingAdmissionWebhook};

/// Who made a request, as upstream's `user.Info`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub name: String,
    pub uid: String,
    pub groups: Vec<String>,
    /// Upstream's `extra` (e.g. `authentication.kubernetes.io/pod-name` of a pod's token).
    pub extra: std::collections::BTreeMap<String, Vec<String>>,
}

impl UserInfo {
    /// The identity the server uses for requests it makes of itself (upstream's
    /// loopback client).
    pub fn apiserver() -> Self {
        UserInfo {
            name: "system:apiserver".into(),
            uid: String::new(),
            groups: vec!["system:authenticated".into(), "system:masters".into()],
            extra: Default::default(),
        }
    }
}

/// What the connection and the request headers offer as proof of identity.
pub struct Credentials<'a> {
    /// The verified client certificate's identity, if the client presented one.
    pub client_certificate: Option<&'a ClientIdentity>,
    pub headers: &'a HeaderMap,
}

/// One authenticator's answer.
#[derive(Debug)]
pub enum Authenticated {
    /// The credentials name this user.
    User(UserInfo),
    /// This authenticator found no credentials of its kind.
    NoCredentials,
    /// Credentials of its kind were offered and are not valid.
    Invalid(String),
}

#[async_trait]
pub trait Authenticator: Send + Sync {
    /// `api` is there for authenticators that check what credentials refer to (a
    /// service-account token's bound pod, secret and account).
    async fn authenticate(&self, api: &Api, credentials: &Credentials<'_>) -> Authenticated;
}

/// A client certificate signed by the cluster CA: CN is the user, each O a group
/// (upstream's x509 authenticator).
pub struct ClientCertificate;

#[async_trait]
impl Authenticator for ClientCertificate {
    async fn authenticate(&self, _: &Api, credentials: &Credentials<'_>) -> Authenticated {
        match credentials.client_certificate {
            Some(id) => {
                let mut groups = id.groups.clone();
                if !groups.iter().any(|g| g == "system:authenticated") {
                    groups.push("system:authenticated".into());
                }
                Authenticated::User(UserInfo {
                    name: id.user.clone(),
                    uid: String::new(),
                    groups,
                    extra: Default::default(),
                })
            }
            None => Authenticated::NoCredentials,
        }
    }
}

/// What a request asks to do, as upstream's `authorizer.Attributes`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attributes {
    pub user: UserInfo,
    /// get, list, watch, create, update, patch, delete, deletecollection; for a
    /// non-resource request the lower-cased HTTP method.
    pub verb: String,
    pub resource: Option<ResourceAttributes>,
    /// The URL path (what non-resource rules match).
    pub path: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ResourceAttributes {
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: Option<String>,
    pub namespace: Option<String>,
    pub name: Option<String>,
    /// A collection request's field and label selectors ([`selectors`]).
    pub selectors: Selectors,
}

impl Attributes {
    /// The attributes of a request for `path`, as upstream's RequestInfo derives them.
    pub fn of(
        user: UserInfo,
        method: &Method,
        path: &str,
        resource: Option<&crate::request::ResourcePath>,
        query: &Query,
    ) -> Self {
        let Some(rp) = resource else {
            return Attributes {
                user,
                verb: method.as_str().to_ascii_lowercase(),
                resource: None,
                path: path.to_string(),
            };
        };
        let named = rp.name.is_some();
        let verb = match *method {
            Method::GET | Method::HEAD if rp.is_watch(query) => "watch",
            Method::GET | Method::HEAD if named => "get",
            Method::GET | Method::HEAD => "list",
            Method::POST => "create",
            Method::PUT => "update",
            Method::PATCH => "patch",
            Method::DELETE if named => "delete",
            Method::DELETE => "deletecollection",
            _ => "",
        };
        let verb = if verb.is_empty() {
            method.as_str().to_ascii_lowercase()
        } else {
            verb.to_string()
        };
        let selectors = Selectors::of_request(&verb, query);
        // A list or watch of one name by `metadata.name` is authorized as that name, as
        // upstream's RequestInfo does (so resourceNames rules and the Node authorizer see it).
        let name = match (&rp.name, verb.as_str()) {
            (None, "list" | "watch") => selectors
                .field_value("metadata.name")
                .filter(|n| !matches!(*n, "" | "." | "..") && !n.contains(['/', '%']))
                .map(String::from),
            (name, _) => name.clone(),
        };
        Attributes {
            user,
            verb,
            resource: Some(ResourceAttributes {
                group: rp.group.clone(),
                version: rp.version.clone(),
                resource: rp.resource.clone(),
                subresource: rp.subresource.clone(),
                namespace: rp.namespace.clone(),
                name,
                selectors,
            }),
            path: path.to_string(),
        }
    }

    /// Upstream's 403 for a denied request, with the authorizer's reason if it gave one.
    pub fn forbidden(&self, reason: &str) -> ApiError {
        let why = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let user = &self.user.name;
        match &self.resource {
            Some(r) => {
                let resource = match &r.subresource {
                    Some(sub) => format!("{}/{sub}", r.resource),
                    None => r.resource.clone(),
                };
                let scope = match &r.namespace {
                    Some(ns) => format!("in the namespace \"{ns}\""),
                    None => "at the cluster scope".to_string(),
                };
                ApiError::Forbidden(
                    // Named by the resource alone, as upstream (`pods "p"`, not `pods/log "p"`).
                    Target::new(&r.group, &r.resource, r.name.as_deref().unwrap_or("")),
                    format!(
                        "User \"{user}\" cannot {} resource \"{resource}\" in API group \"{}\" {scope}{why}",
                        self.verb, r.group
                    ),
                    None,
                )
            }
            None => ApiError::ForbiddenPath(format!(
                "forbidden: User \"{user}\" cannot {} path \"{}\"{why}",
                self.verb, self.path
            )),
        }
    }
}

/// One authorizer's answer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    Allow,
    Deny(String),
    NoOpinion,
}

pub trait Authorizer: Send + Sync {
    fn authorize(&self, attributes: &Attributes) -> Verdict;

    /// Why this authorizer had no opinion, when it has a reason to give (upstream's
    /// reason beside `DecisionNoOpinion`, shown in the 403 when nobody allows).
    fn explain(&self, _attributes: &Attributes) -> Option<String> {
        None
    }

    /// The verdict with the reason this authorizer gives for it, as upstream's
    /// `Authorize` returns both (what access reviews report): by default a denial's
    /// reason, or [`Authorizer::explain`]'s when it has no opinion.
    fn authorize_with_reason(&self, attributes: &Attributes) -> (Verdict, String) {
        let verdict = self.authorize(attributes);
        let reason = match &verdict {
            Verdict::Allow => String::new(),
            Verdict::Deny(why) => why.clone(),
            Verdict::NoOpinion => self.explain(attributes).unwrap_or_default(),
        };
        (verdict, reason)
    }

    /// What `user` may do in `namespace`, as upstream's `RuleResolver` lists it for a
    /// SelfSubjectRulesReview; `None` when this authorizer cannot list its rules.
    fn rules(&self, _user: &UserInfo, _namespace: &str) -> Option<Rules> {
        None
    }

    /// Loads what this authorizer decides from and keeps it current (RBAC's roles and
    /// bindings); called once the watch caches run, before requests are answered.
    fn start<'a>(
        &'a self,
        _api: &'a std::sync::Arc<Api>,
    ) -> futures::future::BoxFuture<'a, Result<()>> {
        Box::pin(async { Ok(()) })
    }
}

/// The rules a SelfSubjectRulesReview reports (authorization.k8s.io/v1 ResourceRule
/// and NonResourceRule objects).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Rules {
    pub resource_rules: Vec<Value>,
    pub non_resource_rules: Vec<Value>,
    /// An authorizer could not list its rules, so there may be more.
    pub incomplete: bool,
}

/// Allows every authenticated request (tests of other stages use it).
pub struct AlwaysAllow;

impl Authorizer for AlwaysAllow {
    fn authorize(&self, _: &Attributes) -> Verdict {
        Verdict::Allow
    }

    /// Everything, as upstream's always-allow authorizer answers.
    fn rules(&self, _: &UserInfo, _: &str) -> Option<Rules> {
        Some(Rules {
            resource_rules: vec![serde_json::json!(
                {"verbs": ["*"], "apiGroups": ["*"], "resources": ["*"]}
            )],
            non_resource_rules: vec![serde_json::json!(
                {"verbs": ["*"], "nonResourceURLs": ["*"]}
            )],
            incomplete: false,
        })
    }
}

/// The write an admission plugin is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
}

/// What admission plugins know about a write besides the objects.
pub struct AdmissionRequest<'a> {
    pub operation: Operation,
    pub resource: &'a Resource,
    pub subresource: Option<&'a str>,
    pub namespace: Option<&'a str>,
    pub name: &'a str,
    pub user: &'a UserInfo,
    pub dry_run: bool,
    /// The request's query (the options webhooks are shown).
    pub query: &'a Query,
    /// Where plugins add warnings for the client (`Warning` headers).
    pub warnings: &'a super::Warnings,
}

/// A plugin that may change the object before it is validated.
#[async_trait]
pub trait MutatingAdmission: Send + Sync {
    /// Whether the plugin is asked about `operation` at all (upstream's `Handles`):
    /// creates and updates unless it says otherwise.
    fn handles(&self, operation: Operation) -> bool {
        matches!(operation, Operation::Create | Operation::Update)
    }

    /// `obj` is the object to be stored; `old` the stored one on an update. On a delete
    /// `obj` is null and `old` the object being deleted (upstream's attributes).
    async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()>;
}

/// A plugin that may refuse a validated write; it cannot change the object. On a
/// delete, `obj` is the object being deleted.
#[async_trait]
pub trait ValidatingAdmission: Send + Sync {
    async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()>;

    /// Called once the server runs, before requests are answered, for a plugin that
    /// works beside the requests it is asked about (the quota's per-namespace queue).
    fn start(&self, _api: &std::sync::Arc<Api>) {}
}

/// The plugins of every stage, in the order they run.
pub struct Pipeline {
    pub authenticators: Vec<Box<dyn Authenticator>>,
    pub authorizers: Vec<Box<dyn Authorizer>>,
    pub mutating: Vec<Box<dyn MutatingAdmission>>,
    pub validating: Vec<Box<dyn ValidatingAdmission>>,
}

impl Default for Pipeline {
    /// What `kybern server` runs.
    fn default() -> Self {
        let rbac = rbac::Rbac::default();
        Pipeline {
            authenticators: vec![
                Box::new(ClientCertificate),
                Box::new(BootstrapTokens),
                Box::new(ServiceAccountTokens),
                Box::new(Anonymous),
            ],
            authorizers: vec![
                Box::new(rbac::PrivilegedGroups),
                Box::new(NodeAuthorizer::default()),
                Box::new(rbac.clone()),
            ],
            mutating: vec![
                Box::new(LimitRanger),
                Box::new(ServiceAccount),
                Box::new(NodeRestriction),
                Box::new(Priority),
                Box::new(DefaultTolerationSeconds),
                Box::new(DefaultStorageClass),
                Box::new(StorageObjectInUseProtection),
                Box::new(MutatingAdmissionWebhook::with_authorizer(rbac.clone())),
            ],
            validating: vec![
                Box::new(NamespaceLifecycle),
                Box::new(LimitRanger),
                Box::new(NodeRestriction),
                Box::new(PodSecurity),
                Box::new(Priority),
                Box::new(ValidatingAdmissionPolicy::with_authorizer(rbac.clone())),
                Box::new(ValidatingAdmissionWebhook::with_authorizer(rbac.clone())),
                // Upstream checks escalation in RBAC's storage, after admission; before
                // the quota charge here so a refused RBAC write charges nothing.
                Box::new(rbac.escalation()),
                Box::new(ResourceQuota::default()),
            ],
        }
    }
}

impl Pipeline {
    /// The first authenticator that recognizes the credentials decides; with none, or
    /// with invalid credentials, the answer is upstream's 401.
    pub async fn authenticate(&self, api: &Api, credentials: &Credentials<'_>) -> Result<UserInfo> {
        for a in &self.authenticators {
            match a.authenticate(api, credentials).await {
                Authenticated::User(user) => return Ok(user),
                Authenticated::NoCredentials => {}
                Authenticated::Invalid(why) => {
                    tracing::debug!(%why, "credentials refused");
                    return Err(ApiError::Unauthorized);
                }
            }
        }
        Err(ApiError::Unauthorized)
    }

    /// Starts every authorizer ([`Authorizer::start`]) and validating plugin
    /// ([`ValidatingAdmission::start`]).
    pub async fn start(&self, api: &std::sync::Arc<Api>) -> Result<()> {
        for a in &self.authorizers {
            a.start(api).await?;
        }
        for v in &self.validating {
            v.start(api);
        }
        Ok(())
    }

    /// The first authorizer with an opinion decides; with none, the request is denied.
    pub fn authorize(&self, attributes: &Attributes) -> Result<()> {
        match self.decide(attributes) {
            Verdict::Allow => Ok(()),
            Verdict::Deny(reason) => Err(attributes.forbidden(&reason)),
            Verdict::NoOpinion => {
                let reasons: Vec<String> = self
                    .authorizers
                    .iter()
                    .filter_map(|a| a.explain(attributes))
                    .collect();
                Err(attributes.forbidden(&reasons.join("\n")))
            }
        }
    }

    /// The verdict of the first authorizer with an opinion (what the access reviews
    /// report).
    pub fn decide(&self, attributes: &Attributes) -> Verdict {
        self.authorizers
            .iter()
            .map(|a| a.authorize(attributes))
            .find(|v| *v != Verdict::NoOpinion)
            .unwrap_or(Verdict::NoOpinion)
    }

    /// The decision with its reason, as access reviews report it (upstream's union
    /// authorizer): the first authorizer with an opinion gives both; with none, the
    /// reasons every authorizer gave, one a line.
    pub fn review(&self, attributes: &Attributes) -> (Verdict, String) {
        let mut reasons = Vec::new();
        for a in &self.authorizers {
            match a.authorize_with_reason(attributes) {
                (Verdict::NoOpinion, reason) if !reason.is_empty() => reasons.push(reason),
                (Verdict::NoOpinion, _) => {}
                decided => return decided,
            }
        }
        (Verdict::NoOpinion, reasons.join("\n"))
    }

    /// Every authorizer's rules for `user` in `namespace`, incomplete when one cannot
    /// list them (upstream's union of rule resolvers).
    pub fn rules(&self, user: &UserInfo, namespace: &str) -> Rules {
        let mut all = Rules::default();
        for a in &self.authorizers {
            match a.rules(user, namespace) {
                Some(r) => {
                    all.resource_rules.extend(r.resource_rules);
                    all.non_resource_rules.extend(r.non_resource_rules);
                    all.incomplete |= r.incomplete;
                }
                None => all.incomplete = true,
            }
        }
        all
    }

    pub async fn admit(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &mut Value,
        old: Option<&Value>,
    ) -> Result<()> {
        for plugin in self
            .mutating
            .iter()
            .filter(|p| p.handles(request.operation))
        {
            plugin.admit(api, request, obj, old).await?;
        }
        Ok(())
    }

    pub async fn validate(
        &self,
        api: &Api,
        request: &AdmissionRequest<'_>,
        obj: &Value,
        old: Option<&Value>,
    ) -> Result<()> {
        for plugin in &self.validating {
            plugin.validate(api, request, obj, old).await?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
