//! Authentication as upstream's apiserver does it: service-account bearer tokens (bound to
//! their pod and account), the anonymous user, and the ServiceAccount admission plugin
//! that gives pods their token volume.

use kube::Client;
use serde_json::{json, Value};

use crate::call;
use crate::common::users::{anonymous_client, client_with_token, kubectl_with_token};
use crate::common::{eventually, Cluster, InProcess};

async fn create(client: &Client, uri: &str, body: Value) -> Value {
    call(client, "POST", uri, Some(body))
        .await
        .unwrap_or_else(|e| panic!("POST {uri}: {e}"))
}

/// A token for `account` in `default`, bound to `pod` when given, for `audiences`.
async fn token(client: &Client, account: &str, spec: Value) -> String {
    let issued = create(
        client,
        &format!("/api/v1/namespaces/default/serviceaccounts/{account}/token"),
        json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
    )
    .await;
    issued["status"]["token"].as_str().unwrap().to_string()
}

async fn whoami(client: &Client) -> Result<Value, kube::Error> {
    let review = json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"});
    call(
        client,
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        Some(review),
    )
    .await
    .map(|r| r["status"]["userInfo"].clone())
}

/// A Role in `default` that may list ConfigMaps, bound to service account `account`.
async fn grant_list_configmaps(admin: &Client, account: &str) {
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/roles",
        json!({"metadata": {"name": "list-configmaps"},
               "rules": [{"apiGroups": [""], "resources": ["configmaps"], "verbs": ["list"]}]}),
    )
    .await;
    create(
        admin,
        "/apis/rbac.authorization.k8s.io/v1/namespaces/default/rolebindings",
        json!({"metadata": {"name": format!("{account}-lists-configmaps")},
               "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "list-configmaps"},
               "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": "default"}]}),
    )
    .await;
}

fn pod(name: &str, spec: Value) -> Value {
    let mut spec = spec;
    spec["containers"] = json!([{"name": "c", "image": "busybox"}]);
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name}, "spec": spec})
}

#[tokio::test]
async fn a_pod_bound_token_authenticates_as_its_account_until_the_pod_is_deleted() {
    let s = InProcess::start().await;
    let admin = &s.client;
    create(
        admin,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    let p = create(
        admin,
        "/api/v1/namespaces/default/pods",
        pod("web", json!({"serviceAccountName": "robot"})),
    )
    .await;
    let pod_uid = p["metadata"]["uid"].as_str().unwrap().to_string();
    let t = token(
        admin,
        "robot",
        json!({"boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "web", "uid": pod_uid}}),
    )
    .await;
    let robot = client_with_token(&s.server.kubeconfig, &t).await;
    let me = whoami(&robot).await.unwrap();
    assert_eq!(
        me["username"], "system:serviceaccount:default:robot",
        "{me}"
    );
    assert_eq!(
        me["groups"],
        json!([
            "system:serviceaccounts",
            "system:serviceaccounts:default",
            "system:authenticated"
        ]),
        "{me}"
    );
    assert_eq!(
        me["extra"]["authentication.kubernetes.io/pod-name"],
        json!(["web"]),
        "{me}"
    );
    assert_eq!(
        me["extra"]["authentication.kubernetes.io/pod-uid"],
        json!([pod_uid]),
        "{me}"
    );
    assert!(
        me["extra"]["authentication.kubernetes.io/credential-id"][0]
            .as_str()
            .is_some_and(|c| c.starts_with("JTI=")),
        "{me}"
    );
    // RBAC decides for the account as for any user: nothing without a binding, then what
    // its Role grants.
    let denied = call(&robot, "GET", "/api/v1/namespaces/default/configmaps", None).await;
    assert_eq!(crate::status(denied).message, "configmaps is forbidden: User \"system:serviceaccount:default:robot\" cannot list resource \"configmaps\" in API group \"\" in the namespace \"default\"");
    grant_list_configmaps(admin, "robot").await;
    eventually("the Role to let the account list configmaps", || async {
        call(&robot, "GET", "/api/v1/namespaces/default/configmaps", None)
            .await
            .map_err(|e| format!("{e:?}"))
    })
    .await;

    call(
        admin,
        "DELETE",
        "/api/v1/namespaces/default/pods/web",
        Some(json!({"gracePeriodSeconds": 0})),
    )
    .await
    .unwrap();
    let refused = eventually("the pod's token to be refused", || async {
        match whoami(&robot).await {
            Err(kube::Error::Api(status)) => Ok(status),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(refused.code, 401, "{refused:?}");
    assert_eq!(refused.reason, "Unauthorized", "{refused:?}");
    assert_eq!(refused.message, "Unauthorized", "{refused:?}");
}

#[tokio::test]
async fn tokens_that_are_not_valid_for_this_server_are_refused_with_401() {
    let s = InProcess::start().await;
    let admin = &s.client;
    for name in ["robot", "gone"] {
        create(
            admin,
            "/api/v1/namespaces/default/serviceaccounts",
            json!({"metadata": {"name": name}}),
        )
        .await;
    }
    let good = token(admin, "robot", json!({})).await;
    let gone = token(admin, "gone", json!({})).await;
    call(
        admin,
        "DELETE",
        "/api/v1/namespaces/default/serviceaccounts/gone",
        None,
    )
    .await
    .unwrap();
    let cases = [
        ("garbage", "not-a-jwt".to_string()),
        (
            "another audience",
            token(admin, "robot", json!({"audiences": ["vault"]})).await,
        ),
        (
            "a forged signature",
            format!("{}AA", &good[..good.len() - 2]),
        ),
        ("a deleted account's", gone),
    ];
    for (name, t) in cases {
        let client = client_with_token(&s.server.kubeconfig, &t).await;
        let status = eventually(&format!("{name} token refused"), || async {
            match whoami(&client).await {
                Err(kube::Error::Api(status)) => Ok(status),
                other => Err(format!("{other:?}")),
            }
        })
        .await;
        assert_eq!(
            (status.code, status.reason.as_str(), status.message.as_str()),
            (401, "Unauthorized", "Unauthorized"),
            "{name}"
        );
    }
    let client = client_with_token(&s.server.kubeconfig, &good).await;
    assert_eq!(
        whoami(&client).await.unwrap()["username"],
        "system:serviceaccount:default:robot"
    );
}

#[tokio::test]
async fn requests_without_credentials_are_anonymous_and_see_only_public_info() {
    let s = InProcess::start().await;
    let anon = anonymous_client(&s.server.kubeconfig).await;
    for path in ["/version", "/healthz", "/readyz", "/livez"] {
        let req = http::Request::get(path).body(Vec::new()).unwrap();
        anon.request_text(req)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
    }
    let cases = [
        (
            "discovery",
            "GET",
            "/api",
            "forbidden: User \"system:anonymous\" cannot get path \"/api\"",
        ),
        (
            "a list",
            "GET",
            "/api/v1/namespaces/default/pods",
            "pods is forbidden: User \"system:anonymous\" cannot list resource \"pods\" in API group \"\" in the namespace \"default\"",
        ),
        (
            "a review",
            "POST",
            "/apis/authentication.k8s.io/v1/selfsubjectreviews",
            "selfsubjectreviews.authentication.k8s.io is forbidden: User \"system:anonymous\" cannot create resource \"selfsubjectreviews\" in API group \"authentication.k8s.io\" at the cluster scope",
        ),
    ];
    for (name, method, uri, message) in cases {
        let body = (method == "POST").then(
            || json!({"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"}),
        );
        match call(&anon, method, uri, body).await {
            Err(kube::Error::Api(status)) => {
                assert_eq!(status.code, 403, "{name}: {status:?}");
                assert_eq!(status.message, message, "{name}");
            }
            other => panic!("{name}: expected a 403, got {other:?}"),
        }
    }
}

#[tokio::test]
async fn created_pods_run_as_default_and_mount_a_projected_token() {
    let s = InProcess::start().await;
    let admin = &s.client;
    let pods = "/api/v1/namespaces/default/pods";
    let p = create(admin, pods, pod("plain", json!({}))).await;
    let spec = &p["spec"];
    assert_eq!(spec["serviceAccountName"], "default", "{p}");
    let volume = &spec["volumes"][0];
    let name = volume["name"].as_str().unwrap();
    assert!(
        name.starts_with("kube-api-access-") && name.len() == "kube-api-access-".len() + 5,
        "{name}"
    );
    assert_eq!(
        volume["projected"],
        json!({
            "defaultMode": 420,
            "sources": [
                {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {"downwardAPI": {"items": [{"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}}]}},
            ],
        }),
        "{p}"
    );
    assert_eq!(
        spec["containers"][0]["volumeMounts"],
        json!([{"name": name, "readOnly": true, "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount"}]),
        "{p}"
    );

    create(
        admin,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "quiet"}, "automountServiceAccountToken": false, "imagePullSecrets": [{"name": "regcred"}]}),
    )
    .await;
    let quiet = create(
        admin,
        pods,
        pod("quiet", json!({"serviceAccountName": "quiet"})),
    )
    .await;
    assert!(quiet["spec"].get("volumes").is_none(), "{quiet}");
    assert_eq!(
        quiet["spec"]["imagePullSecrets"],
        json!([{"name": "regcred"}]),
        "{quiet}"
    );

    match call(
        admin,
        "POST",
        pods,
        Some(pod("lost", json!({"serviceAccountName": "ghost"}))),
    )
    .await
    {
        Err(kube::Error::Api(status)) => {
            assert_eq!(status.code, 403, "{status:?}");
            assert_eq!(
                status.message,
                "pods \"lost\" is forbidden: error looking up service account default/ghost: serviceaccount \"ghost\" not found"
            );
        }
        other => panic!("expected a 403, got {other:?}"),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn kubectl_create_token_then_kubectl_token_and_as_are_who_auth_whoami_says() {
    let c = Cluster::builder("authn-kubectl").start().await;
    c.kubectl(&["create", "serviceaccount", "robot"]);
    let token = c.kubectl(&["create", "token", "robot"]);
    let dir = tempfile::tempdir().unwrap();
    let robot = kubectl_with_token(&c.kubeconfig, token.trim(), dir.path());
    let me: Value = serde_json::from_str(&robot.run(&["auth", "whoami", "-o", "json"])).unwrap();
    assert_eq!(
        me["status"]["userInfo"]["username"], "system:serviceaccount:authn-kubectl:robot",
        "{me}"
    );
    // What the account may do is RBAC's to say: a Role and a binding made with kubectl.
    let denied = robot.output(&["get", "configmaps", "-n", "authn-kubectl"]);
    assert!(
        String::from_utf8_lossy(&denied.stderr).contains("cannot list resource \"configmaps\""),
        "{denied:?}"
    );
    c.kubectl(&[
        "create",
        "role",
        "list-configmaps",
        "--verb=list",
        "--resource=configmaps",
    ]);
    c.kubectl(&[
        "create",
        "rolebinding",
        "robot-lists-configmaps",
        "--role=list-configmaps",
        "--serviceaccount=authn-kubectl:robot",
    ]);
    eventually("the Role to let the account list configmaps", || async {
        let out = robot.output(&["get", "configmaps", "-n", "authn-kubectl"]);
        if out.status.success() {
            Ok(())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    })
    .await;

    let as_bob: Value = serde_json::from_str(&c.kubectl(&[
        "auth",
        "whoami",
        "--as",
        "bob",
        "--as-group",
        "dev",
        "-o",
        "json",
    ]))
    .unwrap();
    assert_eq!(
        as_bob["status"]["userInfo"],
        json!({"username": "bob", "groups": ["dev", "system:authenticated"]}),
        "{as_bob}"
    );
}

#[tokio::test]
async fn the_issuer_publishes_its_discovery_document_and_the_key_that_signs_tokens() {
    let s = InProcess::start().await;
    let client = s.client.clone();
    let get = |path: &'static str| {
        let client = client.clone();
        async move {
            let req = http::Request::get(path).body(Vec::new()).unwrap();
            let text = client.request_text(req).await.unwrap();
            serde_json::from_str::<Value>(&text).unwrap()
        }
    };
    let config = get("/.well-known/openid-configuration").await;
    assert_eq!(
        config["issuer"], "https://kubernetes.default.svc.cluster.local",
        "{config}"
    );
    assert!(
        config["jwks_uri"]
            .as_str()
            .is_some_and(|u| u.starts_with("https://") && u.ends_with("/openid/v1/jwks")),
        "{config}"
    );
    assert_eq!(
        config["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let jwks = get("/openid/v1/jwks").await;
    let key = &jwks["keys"][0];
    assert_eq!(
        (&key["kty"], &key["crv"], &key["alg"], &key["use"]),
        (
            &json!("EC"),
            &json!("P-256"),
            &json!("ES256"),
            &json!("sig")
        ),
        "{jwks}"
    );
    create(
        &s.client,
        "/api/v1/namespaces/default/serviceaccounts",
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    let t = token(&s.client, "robot", json!({})).await;
    use base64::Engine as _;
    let header = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(t.split('.').next().unwrap())
        .unwrap();
    let header: Value = serde_json::from_slice(&header).unwrap();
    assert_eq!(header["kid"], key["kid"], "{header} {jwks}");
}

#[tokio::test]
async fn legacy_token_secrets_are_filled_and_authenticate_while_the_secret_exists() {
    let c = Cluster::builder("authn-legacy")
        .loops(&["tokens"])
        .start()
        .await;
    let ns = "/api/v1/namespaces/authn-legacy";
    let account = create(
        &c.client,
        &format!("{ns}/serviceaccounts"),
        json!({"metadata": {"name": "robot"}}),
    )
    .await;
    create(
        &c.client,
        &format!("{ns}/secrets"),
        json!({"metadata": {"name": "robot-token", "annotations": {"kubernetes.io/service-account.name": "robot"}},
               "type": "kubernetes.io/service-account-token"}),
    )
    .await;
    let secret = eventually("the token secret to be filled", || async {
        let s = call(&c.client, "GET", &format!("{ns}/secrets/robot-token"), None)
            .await
            .map_err(|e| e.to_string())?;
        s["data"]["token"]
            .is_string()
            .then_some(s.clone())
            .ok_or(s.to_string())
    })
    .await;
    use base64::Engine as _;
    let decode = |v: &Value| {
        String::from_utf8(
            base64::engine::general_purpose::STANDARD
                .decode(v.as_str().unwrap())
                .unwrap(),
        )
        .unwrap()
    };
    assert_eq!(decode(&secret["data"]["namespace"]), "authn-legacy");
    assert_eq!(
        secret["metadata"]["annotations"]["kubernetes.io/service-account.uid"],
        account["metadata"]["uid"],
        "{secret}"
    );
    let token = decode(&secret["data"]["token"]);
    let robot = client_with_token(&c.kubeconfig, &token).await;
    assert_eq!(
        whoami(&robot).await.unwrap()["username"],
        "system:serviceaccount:authn-legacy:robot"
    );

    call(
        &c.client,
        "DELETE",
        &format!("{ns}/secrets/robot-token"),
        None,
    )
    .await
    .unwrap();
    let refused = eventually("the legacy token to be refused", || async {
        match whoami(&robot).await {
            Err(kube::Error::Api(status)) => Ok(status.code),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    assert_eq!(refused, 401);
}
