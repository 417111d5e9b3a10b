//! `kybern bench api`'s security figures: what RBAC and the admission chain cost a request.
//!
//! The main run is the admin (group `system:masters`, which the authorizer lets through
//! before RBAC is asked) in a namespace without policy objects. Here the same create,
//! GET and LIST phases also run as `bench-user`, a client certificate with no privileged
//! group whose only access is RoleBindings to the rules of the `edit` ClusterRole, in a namespace
//! that carries what admission reads on every write: PodSecurity labels (`restricted`)
//! and a LimitRange. A third side adds a ResourceQuota counting ConfigMaps, so every create
//! is also charged to it: a second durable write per batch of creates, as upstream's.
//! The runs go admin, user, user with a quota, then back in reverse, so that a machine's
//! drift falls on every side; each side's figures are its two runs together.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{Context, Result};
use k8s_openapi::api::core::v1::{LimitRange, Namespace, ResourceQuota};
use k8s_openapi::api::rbac::v1::RoleBinding;
use kube::api::{Api, Patch, PatchParams, PostParams};
use kube::Client;
use serde_json::json;

use super::report::{Report, Row, Samples, Target, Unit};
use super::{procs, progress, workload, ApiArgs};

pub(crate) const USER: &str = "bench-user";
const GROUP: &str = "bench-team";

/// Upstream kube-apiserver v1.20.2 + etcd creating with this bench's own client
/// (reference figures, "same client" table): what the issue's 2x is measured against.
const UPSTREAM_SAME_CLIENT_CREATE_PER_S: f64 = 1491.0;

/// A kubeconfig for [`USER`] (in [`GROUP`]) signed by the CA in `data_dir/pki`, for the
/// server at `server_url`.
pub(crate) fn user_kubeconfig(data_dir: &Path, server_url: &str) -> Result<PathBuf> {
    let read = |f: &str| {
        let path = data_dir.join("pki").join(f);
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))
    };
    let ca = apiserver::pki::Pki {
        ca_cert_pem: read("ca.crt")?,
        ca_key_pem: read("ca.key")?,
        server_cert_pem: String::new(),
        server_key_pem: String::new(),
        admin_cert_pem: String::new(),
        admin_key_pem: String::new(),
        kubelet_client_cert_pem: String::new(),
        kubelet_client_key_pem: String::new(),
    };
    let (cert, key) = ca.issue_client_cert(USER, &[GROUP])?;
    let path = data_dir.join(format!("{USER}.kubeconfig"));
    apiserver::pki::write_kubeconfig(&path, server_url, &ca, &cert, &key)?;
    Ok(path)
}

/// A namespace as a tenant's looks: PodSecurity labels, a LimitRange, [`USER`]'s
/// RoleBindings and, `with_quota`, a ResourceQuota (its status set, as the quota
/// controller would, so admission charges every create).
async fn guarded_namespace(admin: &Client, ns: &str, with_quota: bool) -> Result<()> {
    let level = "restricted";
    let namespace: Namespace = serde_json::from_value(json!({"metadata": {"name": ns, "labels": {
        "pod-security.kubernetes.io/enforce": level,
        "pod-security.kubernetes.io/audit": level,
        "pod-security.kubernetes.io/warn": level,
    }}}))?;
    Api::<Namespace>::all(admin.clone())
        .create(&PostParams::default(), &namespace)
        .await
        .with_context(|| format!("creating namespace {ns}"))?;
    let limits: LimitRange = serde_json::from_value(json!({
        "metadata": {"name": "defaults"},
        "spec": {"limits": [{"type": "Container",
            "default": {"cpu": "500m", "memory": "256Mi"},
            "defaultRequest": {"cpu": "100m", "memory": "64Mi"},
            "max": {"cpu": "2", "memory": "1Gi"}}]},
    }))?;
    Api::<LimitRange>::namespaced(admin.clone(), ns)
        .create(&PostParams::default(), &limits)
        .await
        .context("creating the LimitRange")?;
    if with_quota {
        quota(admin, ns).await?;
    }
    bind_user(admin, ns).await
}

/// A ResourceQuota on ConfigMaps with its status already counted.
async fn quota(admin: &Client, ns: &str) -> Result<()> {
    let hard = json!({"configmaps": "100000", "count/configmaps": "100000", "pods": "100"});
    let quota: ResourceQuota = serde_json::from_value(json!({
        "metadata": {"name": "tenant"}, "spec": {"hard": hard},
    }))?;
    let quotas = Api::<ResourceQuota>::namespaced(admin.clone(), ns);
    quotas
        .create(&PostParams::default(), &quota)
        .await
        .context("creating the ResourceQuota")?;
    let used = json!({"configmaps": "0", "count/configmaps": "0", "pods": "0"});
    quotas
        .patch_status(
            "tenant",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"hard": hard, "used": used}})),
        )
        .await
        .context("setting the ResourceQuota's status")?;
    Ok(())
}

/// Binds [`USER`] to `edit`'s rules in `ns`.
async fn bind_user(admin: &Client, ns: &str) -> Result<()> {
    // `edit` is the ClusterRole a tenant is usually bound to, but its rules are filled in
    // by the aggregation loop, which the bench's server does not run: bind the two
    // roles it aggregates instead (the same ~20 rules).
    let bindings = Api::<RoleBinding>::namespaced(admin.clone(), ns);
    for role in ["system:aggregate-to-edit", "system:aggregate-to-view"] {
        let binding: RoleBinding = serde_json::from_value(json!({
            "metadata": {"name": format!("bench-{}", role.trim_start_matches("system:"))},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": role},
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": USER}],
        }))?;
        bindings
            .create(&PostParams::default(), &binding)
            .await
            .with_context(|| format!("binding {role}"))?;
    }
    Ok(())
}

/// One run's figures.
struct Run {
    create_per_s: f64,
    create: Samples,
    get1: Samples,
    get8_per_s: f64,
    get8: Samples,
    list: Samples,
    list_rv0: Samples,
    errors: Vec<String>,
}

async fn run_once(clients: &[Client], ns: &str, args: &ApiArgs) -> Result<Run> {
    // Each client's connection (TLS handshake included) is opened before anything is timed.
    for c in clients {
        let path = format!("{}?limit=1", workload::collection(ns));
        workload::raw_list(c, path).await?;
    }
    let create = workload::create_objects(clients, ns, args.objects).await;
    let get1 = workload::get_one(&clients[0], ns, args.gets).await?;
    let get8 = workload::get_parallel(clients, ns, args.objects, args.gets * 2).await;
    let lists = workload::list_phase(&clients[0], ns, args.objects, args.lists).await?;
    let mut errors: Vec<String> = [create.error_note("create"), get8.error_note("GET")]
        .into_iter()
        .flatten()
        .collect();
    errors.extend(lists.notes);
    Ok(Run {
        create_per_s: create.per_sec(),
        create: create.latencies,
        get1,
        get8_per_s: get8.per_sec(),
        get8: get8.latencies,
        list: lists.consistent,
        list_rv0: lists.rv0,
        errors,
    })
}

/// Runs the phases as the admin and as [`USER`] against the server `admin_kubeconfig`
/// names (its CA key in `data_dir/pki`) and compares them.
pub(crate) async fn run(
    admin_kubeconfig: &Path,
    data_dir: &Path,
    args: &ApiArgs,
    started: Instant,
) -> Result<Report> {
    let admin_cfg = workload::client_config(admin_kubeconfig).await?;
    let user_cfg = workload::client_config(&user_kubeconfig(
        data_dir,
        admin_cfg.cluster_url.to_string().trim_end_matches('/'),
    )?)
    .await?;
    let n = args.concurrency.max(1);
    let admins = workload::clients(&admin_cfg, n)?;
    let users = workload::clients(&user_cfg, n)?;
    let mut namespaces = Vec::new();
    let mut runs: [Vec<Run>; 3] = Default::default();
    for side in [
        Side::Admin,
        Side::User,
        Side::Quota,
        Side::Quota,
        Side::User,
        Side::Admin,
    ] {
        let ns = format!("bench-sec-{}", procs::random_suffix(6));
        let who = match side {
            Side::Admin => {
                workload::create_namespace(&admins[0], &ns).await?;
                "admin".to_string()
            }
            Side::User => {
                guarded_namespace(&admins[0], &ns, false).await?;
                USER.to_string()
            }
            Side::Quota => {
                guarded_namespace(&admins[0], &ns, true).await?;
                format!("{USER} under a ResourceQuota")
            }
        };
        namespaces.push(ns.clone());
        progress(
            started,
            &format!(
                "security: create, GET, LIST of {} ConfigMaps as {who} in {ns}",
                args.objects
            ),
        );
        let clients = if side == Side::Admin { &admins } else { &users };
        runs[side as usize].push(run_once(clients, &ns, args).await?);
    }
    for ns in &namespaces {
        workload::delete_namespace(&admins[0], ns).await?;
    }
    let [admin, user, quota] = runs;
    Ok(compare(&user, &quota, &admin, args))
}

/// Who creates, and in what namespace.
#[derive(Clone, Copy, PartialEq)]
enum Side {
    /// The admin, in a namespace without policy objects.
    Admin = 0,
    /// [`USER`], in a namespace with PodSecurity labels and a LimitRange.
    User = 1,
    /// [`USER`], in such a namespace that also has a ResourceQuota charged on each create.
    Quota = 2,
}

fn compare(user: &[Run], quota: &[Run], admin: &[Run], args: &ApiArgs) -> Report {
    let mut report = Report::versus(
        format!(
            "RBAC and admission: {USER} (RoleBinding, LimitRange, PodSecurity; every admission plugin on) vs the admin (system:masters)"
        ),
        "RBAC + admission",
        "admin",
    );
    let mean = |runs: &[Run], f: fn(&Run) -> f64| {
        runs.iter().map(f).sum::<f64>() / runs.len().max(1) as f64
    };
    let merged = |runs: &[Run], f: fn(&Run) -> &Samples| Samples::merged(runs.iter().map(f));
    let slower = Target::Ratio(0.9);
    let c = args.concurrency;
    report.row(
        Row::new(
            format!("create, {c} clients"),
            mean(user, |r| r.create_per_s),
            Some(mean(admin, |r| r.create_per_s)),
            Unit::PerSec,
        )
        .target(slower),
    );
    let latency = |report: &mut Report, figure: &str, f: fn(&Run) -> &Samples, p99_target: bool| {
        let (u, a) = (merged(user, f), merged(admin, f));
        report.row(Row::new(
            format!("{figure} p50"),
            u.p50_ms(),
            Some(a.p50_ms()),
            Unit::Ms,
        ));
        let row = Row::new(
            format!("{figure} p99"),
            u.p99_ms(),
            Some(a.p99_ms()),
            Unit::Ms,
        );
        report.row(if p99_target { row.target(slower) } else { row });
    };
    latency(&mut report, "  create", |r| &r.create, true);
    latency(&mut report, "GET, 1 client,", |r| &r.get1, true);
    report.row(
        Row::new(
            format!("GET, {c} clients"),
            mean(user, |r| r.get8_per_s),
            Some(mean(admin, |r| r.get8_per_s)),
            Unit::PerSec,
        )
        .target(slower),
    );
    latency(
        &mut report,
        &format!("GET, {c} clients,"),
        |r| &r.get8,
        false,
    );
    latency(
        &mut report,
        &format!("LIST {}, consistent,", args.objects),
        |r| &r.list,
        true,
    );
    latency(
        &mut report,
        &format!("LIST {}, resourceVersion=0,", args.objects),
        |r| &r.list_rv0,
        true,
    );
    report.row(
        Row::new(
            format!("create as {USER}, {c} clients (vs upstream v1.20.2, same client)"),
            mean(user, |r| r.create_per_s),
            Some(UPSTREAM_SAME_CLIENT_CREATE_PER_S),
            Unit::PerSec,
        )
        .target(Target::Ratio(2.0)),
    );
    // The same creates with a ResourceQuota in the namespace: each batch of them also
    // waits for the quota's durable write, as upstream's do.
    report.row(Row::new(
        format!("create, {c} clients, also charged to a ResourceQuota"),
        mean(quota, |r| r.create_per_s),
        Some(mean(admin, |r| r.create_per_s)),
        Unit::PerSec,
    ));
    let (q, a) = (merged(quota, |r| &r.create), merged(admin, |r| &r.create));
    report.row(Row::new(
        "  create p50, also charged to a ResourceQuota",
        q.p50_ms(),
        Some(a.p50_ms()),
        Unit::Ms,
    ));
    report.row(Row::new(
        "  create p99, also charged to a ResourceQuota",
        q.p99_ms(),
        Some(a.p99_ms()),
        Unit::Ms,
    ));
    report.row(Row::new(
        format!("create as {USER} under a ResourceQuota (vs upstream v1.20.2, same client)"),
        mean(quota, |r| r.create_per_s),
        Some(UPSTREAM_SAME_CLIENT_CREATE_PER_S),
        Unit::PerSec,
    ));
    report.note(format!(
        "two runs per side (admin, {USER}, {USER} under a quota, then in reverse), each a fresh \
         namespace; throughputs are the runs' mean, percentiles over both runs' samples; target: \
         at most 10 % slower (ratio >= 0.9)"
    ));
    report.note(format!(
        "upstream v1.20.2 + etcd with this client: {UPSTREAM_SAME_CLIENT_CREATE_PER_S:.0} creates/s \
         (reference figures, same-client table; upstream's figure is with its admin identity)"
    ));
    for r in user.iter().chain(quota).chain(admin) {
        for e in &r.errors {
            report.note(e.clone());
        }
    }
    report
}
