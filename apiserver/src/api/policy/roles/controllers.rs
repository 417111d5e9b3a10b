//! The roles of kybern's control loops, each bound to the loop's service account in
//! kube-system (`controllers::identity` names them): upstream v1.33's
//! `system:controller:<account>` roles (`controller_policy.go`) for the controllers
//! upstream has, and least-privilege roles of the same shape for kybern's own loops
//! (`tokens`, `servicelb`, `localpath`). What kybern's loops do beyond upstream's is
//! added to the upstream rules, never granted wider:
//! - `patch` beside `update` where a loop writes with a merge patch or apply;
//! - reads a loop makes with watches of its own (upstream's controllers read through
//!   the controller manager's shared informers);
//! - each loop's leader-election Lease `kybern-<loop>` in kube-system (create, and
//!   get/update of that name only), since each loop elects its own leader.
//!
//! Each role is bound (binding of the same name) to the service account named after
//! its `system:controller:` prefix in kube-system.

use super::{named, res, ClusterRole, Rule, EVENTS, READ};

const LEASE_CREATE: Rule = res(&["create"], &["coordination.k8s.io"], &["leases"]);

const fn lease(names: &'static [&'static str]) -> Rule {
    named(
        &["get", "update"],
        &["coordination.k8s.io"],
        &["leases"],
        names,
    )
}

const fn role(name: &'static str, rules: &'static [Rule]) -> ClusterRole {
    ClusterRole {
        name,
        labels: &[],
        aggregates: None,
        rules,
    }
}

const GUPW: &[&str] = &["get", "list", "patch", "update", "watch"];
const WRITE_ALL: &[&str] = &[
    "create", "delete", "get", "list", "patch", "update", "watch",
];
const UPDATE: &[&str] = &["patch", "update"];

pub(in crate::api::policy) const CONTROLLER_ROLES: &[ClusterRole] = &[
    role(
        "system:controller:namespace-controller",
        &[
            res(&["delete", "get", "list", "watch"], &[""], &["namespaces"]),
            res(UPDATE, &[""], &["namespaces/finalize", "namespaces/status"]),
            res(
                &["delete", "deletecollection", "get", "list", "watch"],
                &["*"],
                &["*"],
            ),
            LEASE_CREATE,
            lease(&["kybern-namespace"]),
        ],
    ),
    role(
        "system:controller:service-account-controller",
        &[
            res(
                &["create", "get", "list", "watch"],
                &[""],
                &["serviceaccounts"],
            ),
            // The root CA ConfigMap (upstream's root-ca-cert-publisher).
            res(
                &["create", "get", "list", "update", "watch"],
                &[""],
                &["configmaps"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-serviceaccount"]),
        ],
    ),
    role(
        "system:controller:tokens-controller",
        &[
            res(READ, &[""], &["serviceaccounts"]),
            res(
                &["delete", "get", "list", "update", "watch"],
                &[""],
                &["secrets"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-tokens"]),
        ],
    ),
    role(
        "system:controller:clusterrole-aggregation-controller",
        &[
            res(
                &["escalate", "get", "list", "patch", "update", "watch"],
                &["rbac.authorization.k8s.io"],
                &["clusterroles"],
            ),
            LEASE_CREATE,
            lease(&["kybern-clusterrole-aggregation"]),
        ],
    ),
    role(
        "system:controller:generic-garbage-collector",
        &[
            res(
                &["delete", "get", "list", "patch", "update", "watch"],
                &["*"],
                &["*"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-garbagecollector"]),
        ],
    ),
    role(
        "system:controller:replicaset-controller",
        &[
            res(GUPW, &["apps", "extensions"], &["replicasets"]),
            res(
                UPDATE,
                &["apps", "extensions"],
                &["replicasets/finalizers", "replicasets/status"],
            ),
            res(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-replicaset"]),
        ],
    ),
    role(
        "system:controller:replication-controller",
        &[
            res(GUPW, &[""], &["replicationcontrollers"]),
            res(
                UPDATE,
                &[""],
                &[
                    "replicationcontrollers/finalizers",
                    "replicationcontrollers/status",
                ],
            ),
            res(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-replicationcontroller"]),
        ],
    ),
    role(
        "system:controller:deployment-controller",
        &[
            res(GUPW, &["apps", "extensions"], &["deployments"]),
            res(
                UPDATE,
                &["apps", "extensions"],
                &["deployments/finalizers", "deployments/status"],
            ),
            res(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &["apps", "extensions"],
                &["replicasets"],
            ),
            res(GUPW, &[""], &["pods"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-deployment"]),
        ],
    ),
    role(
        "system:controller:statefulset-controller",
        &[
            res(&["list", "watch"], &[""], &["pods"]),
            res(GUPW, &["apps"], &["statefulsets"]),
            res(
                UPDATE,
                &["apps"],
                &["statefulsets/finalizers", "statefulsets/status"],
            ),
            res(
                &["create", "delete", "get", "patch", "update"],
                &[""],
                &["pods"],
            ),
            res(WRITE_ALL, &["apps"], &["controllerrevisions"]),
            res(
                &[
                    "create", "delete", "get", "list", "patch", "update", "watch",
                ],
                &[""],
                &["persistentvolumeclaims"],
            ),
            res(&["update"], &[""], &["pods/finalizers"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-statefulset"]),
        ],
    ),
    role(
        "system:controller:daemon-set-controller",
        &[
            res(READ, &["apps", "extensions"], &["daemonsets"]),
            res(
                UPDATE,
                &["apps", "extensions"],
                &["daemonsets/finalizers", "daemonsets/status"],
            ),
            res(&["list", "watch"], &[""], &["nodes"]),
            res(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            res(&["create"], &[""], &["pods/binding"]),
            res(WRITE_ALL, &["apps"], &["controllerrevisions"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-daemonset"]),
        ],
    ),
    role(
        "system:controller:job-controller",
        &[
            res(GUPW, &["batch"], &["jobs"]),
            res(UPDATE, &["batch"], &["jobs/finalizers", "jobs/status"]),
            res(
                &["create", "delete", "list", "patch", "watch"],
                &[""],
                &["pods"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-job"]),
        ],
    ),
    role(
        "system:controller:cronjob-controller",
        &[
            res(GUPW, &["batch"], &["cronjobs"]),
            res(WRITE_ALL, &["batch"], &["jobs"]),
            res(
                UPDATE,
                &["batch"],
                &["cronjobs/finalizers", "cronjobs/status"],
            ),
            res(&["delete", "list", "watch"], &[""], &["pods"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-cronjob"]),
        ],
    ),
    role(
        "system:controller:endpoint-controller",
        &[
            res(READ, &[""], &["pods", "services"]),
            res(
                &["create", "delete", "get", "list", "update", "watch"],
                &[""],
                &["endpoints"],
            ),
            res(&["create"], &[""], &["endpoints/restricted"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-endpoints"]),
        ],
    ),
    role(
        "system:controller:endpointslice-controller",
        &[
            res(READ, &[""], &["nodes", "pods", "services"]),
            res(&["update"], &[""], &["services/finalizers"]),
            res(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-endpointslice"]),
        ],
    ),
    role(
        "system:controller:endpointslicemirroring-controller",
        &[
            res(READ, &[""], &["endpoints", "services"]),
            res(
                &["update"],
                &[""],
                &["endpoints/finalizers", "services/finalizers"],
            ),
            res(
                &["create", "delete", "get", "list", "update", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-endpointslicemirroring"]),
        ],
    ),
    // kybern's servicelb, shaped as upstream's service-controller.
    role(
        "system:controller:servicelb-controller",
        &[
            res(READ, &[""], &["services"]),
            res(UPDATE, &[""], &["services/status"]),
            res(&["list", "watch"], &[""], &["nodes"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-servicelb"]),
        ],
    ),
    // nodeipam and nodelifecycle share it, as upstream's two node controllers do.
    role(
        "system:controller:node-controller",
        &[
            res(
                &["delete", "get", "list", "patch", "update", "watch"],
                &[""],
                &["nodes"],
            ),
            res(UPDATE, &[""], &["nodes/status", "pods/status"]),
            res(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            res(&["create"], &[""], &["pods/eviction"]),
            // The nodes' heartbeats, which upstream reads through shared informers.
            res(READ, &["coordination.k8s.io"], &["leases"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-nodeipam", "kybern-nodelifecycle"]),
        ],
    ),
    // kybern's local-path provisioner: PersistentVolumes for claims of its class.
    role(
        "system:controller:localpath-controller",
        &[
            res(WRITE_ALL, &[""], &["persistentvolumes"]),
            res(UPDATE, &[""], &["persistentvolumes/status"]),
            res(GUPW, &[""], &["persistentvolumeclaims"]),
            res(UPDATE, &[""], &["persistentvolumeclaims/status"]),
            res(
                &["create", "get", "list", "watch"],
                &["storage.k8s.io"],
                &["storageclasses"],
            ),
            res(&["list", "watch"], &[""], &["nodes", "pods"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-localpath"]),
        ],
    ),
    role(
        "system:controller:persistent-volume-binder",
        &[
            res(WRITE_ALL, &[""], &["persistentvolumes"]),
            res(UPDATE, &[""], &["persistentvolumes/status"]),
            res(GUPW, &[""], &["persistentvolumeclaims"]),
            res(UPDATE, &[""], &["persistentvolumeclaims/status"]),
            res(
                &["create", "delete", "get", "list", "watch"],
                &[""],
                &["pods"],
            ),
            res(READ, &["storage.k8s.io"], &["storageclasses"]),
            res(&["list", "watch"], &[""], &["nodes"]),
            EVENTS,
            res(&["watch"], &[""], &["events"]),
            LEASE_CREATE,
            lease(&["kybern-persistentvolume-binder"]),
        ],
    ),
    role(
        "system:controller:pod-garbage-collector",
        &[
            res(&["delete", "list", "watch"], &[""], &["pods"]),
            res(READ, &[""], &["nodes"]),
            res(&["patch"], &[""], &["pods/status"]),
            LEASE_CREATE,
            lease(&["kybern-podgc"]),
        ],
    ),
    role(
        "system:controller:horizontal-pod-autoscaler",
        &[
            res(READ, &["autoscaling"], &["horizontalpodautoscalers"]),
            res(
                UPDATE,
                &["autoscaling"],
                &["horizontalpodautoscalers/status"],
            ),
            res(&["get", "patch", "update"], &["*"], &["*/scale"]),
            res(&["list", "watch"], &[""], &["pods"]),
            res(&["list", "watch"], &["metrics.k8s.io"], &["pods"]),
            res(READ, &["custom.metrics.k8s.io"], &["*"]),
            res(READ, &["external.metrics.k8s.io"], &["*"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-horizontalpodautoscaling"]),
        ],
    ),
    role(
        "system:controller:disruption-controller",
        &[
            res(
                READ,
                &["apps", "extensions"],
                &["deployments", "replicasets"],
            ),
            res(READ, &[""], &["replicationcontrollers"]),
            res(READ, &["policy"], &["poddisruptionbudgets"]),
            res(READ, &["apps"], &["statefulsets"]),
            res(UPDATE, &["policy"], &["poddisruptionbudgets/status"]),
            res(UPDATE, &[""], &["pods/status"]),
            res(&["get"], &["*"], &["*/scale"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-disruption"]),
        ],
    ),
    role(
        "system:controller:resourcequota-controller",
        &[
            res(&["list", "watch"], &["*"], &["*"]),
            res(&["get"], &[""], &["resourcequotas"]),
            res(UPDATE, &[""], &["resourcequotas/status"]),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-resourcequota"]),
        ],
    ),
    // csrsigning (upstream's csrsigning controller, and its auto-approval of nodes'
    // serving certificates, as upstream's approver does for client certificates).
    role(
        "system:controller:certificate-controller",
        &[
            res(
                &["delete", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            res(
                UPDATE,
                &["certificates.k8s.io"],
                &[
                    "certificatesigningrequests/approval",
                    "certificatesigningrequests/status",
                ],
            ),
            named(
                &["approve"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                ],
            ),
            named(
                &["sign"],
                &["certificates.k8s.io"],
                &["signers"],
                &[
                    "kubernetes.io/kube-apiserver-client",
                    "kubernetes.io/kube-apiserver-client-kubelet",
                    "kubernetes.io/kubelet-serving",
                    "kubernetes.io/legacy-unknown",
                ],
            ),
            // The Node a serving certificate names is looked up before approving.
            res(&["get"], &[""], &["nodes"]),
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            EVENTS,
            LEASE_CREATE,
            lease(&["kybern-csrsigning", "kybern-csrapproving"]),
        ],
    ),
    // bootstrapsigner and tokencleaner (upstream's bootstrap-signer and token-cleaner):
    // cluster-wide only their events and Leases; what they read and write lives in the
    // namespaced Roles of `policy/bootstrap_tokens.rs` (kube-system's token Secrets,
    // kube-public's cluster-info), as upstream grants them.
    role(
        "system:controller:bootstrap-signer",
        &[EVENTS, LEASE_CREATE, lease(&["kybern-bootstrapsigner"])],
    ),
    role(
        "system:controller:token-cleaner",
        &[EVENTS, LEASE_CREATE, lease(&["kybern-tokencleaner"])],
    ),
];
