//! Who each control loop acts as. As kube-controller-manager with
//! `--use-service-account-credentials`, every loop gets a client of its own that
//! authenticates as its service account in kube-system (`deployment` acts as
//! `system:serviceaccount:kube-system:deployment-controller`), so the bootstrap policy's
//! `system:controller:<account>` roles bound that loop alone. The informers the loops
//! share keep the process's identity, as upstream's shared informers keep the
//! controller manager's.
//!
//! The credentials are bound tokens from the TokenRequest API, asked for with the
//! process's own client (which creates the account when it is missing): a token is
//! valid for an hour and replaced after 80 % of that, or at once when the server
//! answers 401 (the account was deleted and made again, the server's key changed).
//! Unlike a client certificate, such a token needs nothing but the API, so the same
//! code serves `kybern server` and `kybern controller --kubeconfig K`; it stays valid
//! over server restarts (the signing key is kept in the data dir) and it is refused as
//! soon as its account is deleted.

use std::collections::HashMap;
use std::sync::Arc;
use std::task::{Context as TaskContext, Poll};
use std::time::Duration;

use futures::future::BoxFuture;
use http::{Request, Response, StatusCode};
use k8s_openapi::api::authentication::v1::{TokenRequest, TokenRequestSpec};
use k8s_openapi::api::core::v1::ServiceAccount;
use kube::api::{Api, ObjectMeta, PostParams};
use kube::client::Body;
use tokio::time::Instant;

/// The namespace of the loops' service accounts.
pub const NAMESPACE: &str = "kube-system";

/// How long a requested token lives (upstream's controller tokens: one hour).
const TOKEN_SECONDS: i64 = 3600;

/// Who a loop acts as.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Identity {
    /// `system:serviceaccount:kube-system:<name>`.
    ServiceAccount(&'static str),
    /// A user of its own, such as the scheduler's `system:kube-scheduler`; it needs a
    /// client made for it (see [`Credentials::with_user`]), else the loop keeps the
    /// process's identity, as kube-scheduler keeps its kubeconfig's.
    User(&'static str),
}

/// Each loop's identity, by loop name: upstream's account where kube-controller-manager
/// has the controller (both node loops share `node-controller`, as upstream's
/// node-ipam and node-lifecycle controllers do; `csrsigning` is upstream's
/// `certificate-controller`, and so is `csrapproving`, upstream's approver in the same
/// controller); `<loop>-controller` for kybern's own loops (`tokens`,
/// `servicelb`, `localpath`). A loop missing here keeps the process's identity.
pub const IDENTITIES: &[(&str, Identity)] = &[
    ("namespace", sa("namespace-controller")),
    ("serviceaccount", sa("service-account-controller")),
    ("tokens", sa("tokens-controller")),
    (
        "clusterrole-aggregation",
        sa("clusterrole-aggregation-controller"),
    ),
    ("garbagecollector", sa("generic-garbage-collector")),
    ("replicaset", sa("replicaset-controller")),
    ("replicationcontroller", sa("replication-controller")),
    ("deployment", sa("deployment-controller")),
    ("statefulset", sa("statefulset-controller")),
    ("daemonset", sa("daemon-set-controller")),
    ("job", sa("job-controller")),
    ("cronjob", sa("cronjob-controller")),
    ("endpoints", sa("endpoint-controller")),
    ("endpointslice", sa("endpointslice-controller")),
    (
        "endpointslicemirroring",
        sa("endpointslicemirroring-controller"),
    ),
    ("servicelb", sa("servicelb-controller")),
    ("nodeipam", sa("node-controller")),
    ("nodelifecycle", sa("node-controller")),
    ("localpath", sa("localpath-controller")),
    ("persistentvolume-binder", sa("persistent-volume-binder")),
    ("podgc", sa("pod-garbage-collector")),
    ("horizontalpodautoscaling", sa("horizontal-pod-autoscaler")),
    ("disruption", sa("disruption-controller")),
    ("resourcequota", sa("resourcequota-controller")),
    ("csrsigning", sa("certificate-controller")),
    ("csrapproving", sa("certificate-controller")),
    ("bootstrapsigner", sa("bootstrap-signer")),
    ("tokencleaner", sa("token-cleaner")),
    ("scheduler", Identity::User("system:kube-scheduler")),
];

const fn sa(name: &'static str) -> Identity {
    Identity::ServiceAccount(name)
}

/// The identity of the loop `name`, if it has one of its own.
pub fn of(name: &str) -> Option<Identity> {
    IDENTITIES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, identity)| *identity)
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("building a client for {who}: {source}")]
    Client {
        who: String,
        #[source]
        source: kube::Error,
    },
    #[error("requesting a token for service account {NAMESPACE}/{name}: {source}")]
    TokenRequest {
        name: String,
        #[source]
        source: kube::Error,
    },
    #[error("the TokenRequest for {NAMESPACE}/{0} came back without a token")]
    NoToken(String),
}

/// How this process makes each loop's client.
pub struct Credentials {
    /// The process's own client: it asks for the tokens.
    issuer: kube::Client,
    /// The server and CA to reach, without the process's own credentials.
    anonymous: kube::Config,
    /// Clients made ahead for [`Identity::User`] identities.
    users: HashMap<&'static str, kube::Client>,
    /// One token source per account, so loops sharing an account share its token.
    tokens: std::sync::Mutex<HashMap<&'static str, Arc<TokenSource>>>,
}

impl Credentials {
    /// Credentials whose tokens `issuer` asks for, used against the server of `config`
    /// (whose own credentials are dropped).
    pub fn new(issuer: kube::Client, mut config: kube::Config) -> Self {
        config.auth_info = kube::config::AuthInfo::default();
        Credentials {
            issuer,
            anonymous: config,
            users: HashMap::new(),
            tokens: Default::default(),
        }
    }

    /// With `client` for the loops whose identity is the user `name`.
    pub fn with_user(mut self, name: &'static str, client: kube::Client) -> Self {
        self.users.insert(name, client);
        self
    }

    /// The client the loop `name` acts with; `None` keeps the process's client.
    pub fn client_for(&self, name: &str) -> Result<Option<kube::Client>, Error> {
        match of(name) {
            None => Ok(None),
            Some(Identity::User(user)) => Ok(self.users.get(user).cloned()),
            Some(Identity::ServiceAccount(account)) => {
                let source = self
                    .tokens
                    .lock()
                    .expect("token sources poisoned")
                    .entry(account)
                    .or_insert_with(|| Arc::new(TokenSource::new(self.issuer.clone(), account)))
                    .clone();
                let who = format!("service account {NAMESPACE}/{account}");
                let inner = kube::Client::try_from(self.anonymous.clone())
                    .map_err(|source| Error::Client { who, source })?;
                Ok(Some(kube::Client::new(
                    Bearer { inner, source },
                    self.anonymous.default_namespace.clone(),
                )))
            }
        }
    }
}

/// A service account's current token, asked for again before it expires.
struct TokenSource {
    issuer: kube::Client,
    account: &'static str,
    current: tokio::sync::Mutex<Option<Token>>,
}

struct Token {
    value: String,
    renew_at: Instant,
}

impl TokenSource {
    fn new(issuer: kube::Client, account: &'static str) -> Self {
        TokenSource {
            issuer,
            account,
            current: tokio::sync::Mutex::new(None),
        }
    }

    /// The token to send now; one request at a time asks for a new one, the others
    /// wait for it.
    async fn token(&self) -> Result<String, Error> {
        let mut current = self.current.lock().await;
        if let Some(t) = current.as_ref().filter(|t| Instant::now() < t.renew_at) {
            return Ok(t.value.clone());
        }
        let (value, lifetime) = self.request().await?;
        // Renewed after 80 % of its life: a one-hour token after 48 minutes.
        *current = Some(Token {
            value: value.clone(),
            renew_at: Instant::now() + lifetime.mul_f64(0.8),
        });
        Ok(value)
    }

    /// Forgets the token (the server refused it), so the next request asks again.
    async fn forget(&self) {
        *self.current.lock().await = None;
    }

    async fn request(&self) -> Result<(String, Duration), Error> {
        let accounts = Api::<ServiceAccount>::namespaced(self.issuer.clone(), NAMESPACE);
        let err = |source| Error::TokenRequest {
            name: self.account.to_string(),
            source,
        };
        let body = TokenRequest {
            spec: TokenRequestSpec {
                audiences: Vec::new(),
                expiration_seconds: Some(TOKEN_SECONDS),
                ..Default::default()
            },
            ..Default::default()
        };
        let pp = PostParams::default();
        let answer: TokenRequest = match accounts
            .create_subresource("token", self.account, &pp, &body)
            .await
        {
            Err(kube::Error::Api(s)) if s.code == 404 => {
                tracing::info!(
                    account = self.account,
                    "creating the loop's service account"
                );
                let account = ServiceAccount {
                    metadata: ObjectMeta {
                        name: Some(self.account.to_string()),
                        ..Default::default()
                    },
                    ..Default::default()
                };
                match accounts.create(&pp, &account).await {
                    Ok(_) => {}
                    Err(kube::Error::Api(s)) if s.code == 409 => {}
                    Err(e) => return Err(err(e)),
                }
                accounts
                    .create_subresource("token", self.account, &pp, &body)
                    .await
                    .map_err(err)?
            }
            other => other.map_err(err)?,
        };
        let status = answer
            .status
            .ok_or_else(|| Error::NoToken(self.account.to_string()))?;
        let now = k8s_openapi::jiff::Timestamp::now();
        let left = status.expiration_timestamp.0.duration_since(now);
        let lifetime = Duration::try_from(left)
            .unwrap_or(Duration::ZERO)
            .min(Duration::from_secs(TOKEN_SECONDS as u64));
        Ok((status.token, lifetime))
    }
}

/// The service that sends each request with the account's current token.
#[derive(Clone)]
struct Bearer {
    inner: kube::Client,
    source: Arc<TokenSource>,
}

impl tower::Service<Request<Body>> for Bearer {
    type Response = Response<Body>;
    type Error = kube::Error;
    type Future = BoxFuture<'static, Result<Response<Body>, kube::Error>>;

    fn poll_ready(&mut self, _: &mut TaskContext<'_>) -> Poll<Result<(), Self::Error>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        let Bearer { inner, source } = self.clone();
        Box::pin(async move {
            let token = source.token().await.map_err(|e| {
                tracing::warn!(error = %e, "no token for the loop's service account");
                kube::Error::Service(Box::new(e))
            })?;
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|e| kube::Error::Service(Box::new(e)))?;
            request
                .headers_mut()
                .insert(http::header::AUTHORIZATION, value);
            let response = inner.send(request).await?;
            if response.status() == StatusCode::UNAUTHORIZED {
                source.forget().await;
            }
            Ok(response)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_loop_of_this_crate_has_an_identity_of_its_own() {
        for l in crate::loops() {
            assert!(of(l.name).is_some(), "loop {} has no identity", l.name);
        }
    }

    #[test]
    fn the_deployment_loop_is_upstreams_deployment_controller_and_the_scheduler_a_user() {
        assert_eq!(
            of("deployment"),
            Some(Identity::ServiceAccount("deployment-controller"))
        );
        assert_eq!(
            of("scheduler"),
            Some(Identity::User("system:kube-scheduler"))
        );
        assert_eq!(of("no-such-loop"), None);
    }
}
