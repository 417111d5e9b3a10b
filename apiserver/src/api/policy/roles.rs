//! The bootstrap policy as data: upstream v1.33's default ClusterRoles (those kybern
//! serves) and ClusterRoleBindings, one table each; the control loops' roles are in
//! [`controllers`].

mod controllers;

pub(super) use controllers::CONTROLLER_ROLES;

/// One rule: verbs, API groups, resources, resource names, non-resource URLs.
pub(super) struct Rule {
    pub verbs: &'static [&'static str],
    pub groups: &'static [&'static str],
    pub resources: &'static [&'static str],
    pub names: &'static [&'static str],
    pub urls: &'static [&'static str],
}

const fn res(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names: &[],
        urls: &[],
    }
}

const fn named(
    verbs: &'static [&'static str],
    groups: &'static [&'static str],
    resources: &'static [&'static str],
    names: &'static [&'static str],
) -> Rule {
    Rule {
        verbs,
        groups,
        resources,
        names,
        urls: &[],
    }
}

const fn urls(verbs: &'static [&'static str], urls: &'static [&'static str]) -> Rule {
    Rule {
        verbs,
        groups: &[],
        resources: &[],
        names: &[],
        urls,
    }
}

pub(super) struct ClusterRole {
    pub name: &'static str,
    /// Extra labels (the `aggregate-to-*` ones).
    pub labels: &'static [(&'static str, &'static str)],
    /// `aggregationRule` selecting roles with this label set to "true".
    pub aggregates: Option<&'static str>,
    pub rules: &'static [Rule],
}

pub(super) enum Subject {
    User(&'static str),
    Group(&'static str),
}

pub(super) struct ClusterRoleBinding {
    pub name: &'static str,
    pub role: &'static str,
    pub subjects: &'static [Subject],
}

const READ: &[&str] = &["get", "list", "watch"];

const NODES: Subject = Subject::Group("system:nodes");
const WRITE: &[&str] = &["create", "delete", "deletecollection", "patch", "update"];
const READ_WRITE: &[&str] = &[
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
];
const EVENTS: Rule = res(
    &["create", "patch", "update"],
    &["", "events.k8s.io"],
    &["events"],
);

const TO_ADMIN: &str = "rbac.authorization.k8s.io/aggregate-to-admin";
const TO_EDIT: &str = "rbac.authorization.k8s.io/aggregate-to-edit";
const TO_VIEW: &str = "rbac.authorization.k8s.io/aggregate-to-view";

pub(super) const CLUSTER_ROLES: &[ClusterRole] = &[
    ClusterRole {
        name: "cluster-admin",
        labels: &[],
        aggregates: None,
        rules: &[res(&["*"], &["*"], &["*"]), urls(&["*"], &["*"])],
    },
    ClusterRole {
        name: "admin",
        labels: &[],
        aggregates: Some(TO_ADMIN),
        rules: &[],
    },
    ClusterRole {
        name: "edit",
        labels: &[(TO_ADMIN, "true")],
        aggregates: Some(TO_EDIT),
        rules: &[],
    },
    ClusterRole {
        name: "view",
        labels: &[(TO_EDIT, "true")],
        aggregates: Some(TO_VIEW),
        rules: &[],
    },
    ClusterRole {
        name: "system:aggregate-to-admin",
        labels: &[(TO_ADMIN, "true")],
        aggregates: None,
        rules: &[
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews"],
            ),
            res(
                READ_WRITE,
                &["rbac.authorization.k8s.io"],
                &["rolebindings", "roles"],
            ),
        ],
    },
    ClusterRole {
        name: "system:aggregate-to-edit",
        labels: &[(TO_EDIT, "true")],
        aggregates: None,
        rules: &[
            res(
                READ,
                &[""],
                &[
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                    "secrets",
                    "services/proxy",
                ],
            ),
            res(&["impersonate"], &[""], &["serviceaccounts"]),
            res(
                WRITE,
                &[""],
                &[
                    "pods",
                    "pods/attach",
                    "pods/exec",
                    "pods/portforward",
                    "pods/proxy",
                ],
            ),
            res(&["create"], &[""], &["pods/eviction"]),
            res(
                WRITE,
                &[""],
                &[
                    "configmaps",
                    "events",
                    "persistentvolumeclaims",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "secrets",
                    "serviceaccounts",
                    "services",
                    "services/proxy",
                ],
            ),
            res(&["create"], &[""], &["serviceaccounts/token"]),
            res(
                WRITE,
                &["apps"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "replicasets",
                    "replicasets/scale",
                    "statefulsets",
                    "statefulsets/scale",
                ],
            ),
            res(WRITE, &["autoscaling"], &["horizontalpodautoscalers"]),
            res(WRITE, &["batch"], &["cronjobs", "jobs"]),
            res(
                WRITE,
                &["extensions"],
                &[
                    "daemonsets",
                    "deployments",
                    "deployments/rollback",
                    "deployments/scale",
                    "ingresses",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicationcontrollers/scale",
                ],
            ),
            res(WRITE, &["policy"], &["poddisruptionbudgets"]),
            res(
                WRITE,
                &["networking.k8s.io"],
                &["ingresses", "networkpolicies"],
            ),
            res(READ_WRITE, &["coordination.k8s.io"], &["leases"]),
        ],
    },
    ClusterRole {
        name: "system:aggregate-to-view",
        labels: &[(TO_VIEW, "true")],
        aggregates: None,
        rules: &[
            res(
                READ,
                &[""],
                &[
                    "configmaps",
                    "endpoints",
                    "persistentvolumeclaims",
                    "persistentvolumeclaims/status",
                    "pods",
                    "replicationcontrollers",
                    "replicationcontrollers/scale",
                    "serviceaccounts",
                    "services",
                    "services/status",
                ],
            ),
            res(
                READ,
                &[""],
                &[
                    "bindings",
                    "events",
                    "limitranges",
                    "namespaces/status",
                    "pods/log",
                    "pods/status",
                    "replicationcontrollers/status",
                    "resourcequotas",
                    "resourcequotas/status",
                ],
            ),
            res(READ, &[""], &["namespaces"]),
            res(READ, &["discovery.k8s.io"], &["endpointslices"]),
            res(
                READ,
                &["apps"],
                &[
                    "controllerrevisions",
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "statefulsets",
                    "statefulsets/scale",
                    "statefulsets/status",
                ],
            ),
            res(
                READ,
                &["autoscaling"],
                &[
                    "horizontalpodautoscalers",
                    "horizontalpodautoscalers/status",
                ],
            ),
            res(
                READ,
                &["batch"],
                &["cronjobs", "cronjobs/status", "jobs", "jobs/status"],
            ),
            res(
                READ,
                &["extensions"],
                &[
                    "daemonsets",
                    "daemonsets/status",
                    "deployments",
                    "deployments/scale",
                    "deployments/status",
                    "ingresses",
                    "ingresses/status",
                    "networkpolicies",
                    "replicasets",
                    "replicasets/scale",
                    "replicasets/status",
                    "replicationcontrollers/scale",
                ],
            ),
            res(
                READ,
                &["policy"],
                &["poddisruptionbudgets", "poddisruptionbudgets/status"],
            ),
            res(
                READ,
                &["networking.k8s.io"],
                &["ingresses", "ingresses/status", "networkpolicies"],
            ),
        ],
    },
    ClusterRole {
        name: "system:basic-user",
        labels: &[],
        aggregates: None,
        rules: &[
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["selfsubjectaccessreviews", "selfsubjectrulesreviews"],
            ),
            res(
                &["create"],
                &["authentication.k8s.io"],
                &["selfsubjectreviews"],
            ),
        ],
    },
    ClusterRole {
        name: "system:discovery",
        labels: &[],
        aggregates: None,
        rules: &[urls(
            &["get"],
            &[
                "/api",
                "/api/*",
                "/apis",
                "/apis/*",
                "/healthz",
                "/livez",
                "/openapi",
                "/openapi/*",
                "/readyz",
                "/version",
                "/version/",
            ],
        )],
    },
    ClusterRole {
        name: "system:public-info-viewer",
        labels: &[],
        aggregates: None,
        rules: &[urls(
            &["get"],
            &["/healthz", "/livez", "/readyz", "/version", "/version/"],
        )],
    },
    ClusterRole {
        name: "system:service-account-issuer-discovery",
        labels: &[],
        aggregates: None,
        rules: &[urls(
            &["get"],
            &["/.well-known/openid-configuration", "/openid/v1/jwks"],
        )],
    },
    ClusterRole {
        name: "system:auth-delegator",
        labels: &[],
        aggregates: None,
        rules: &[
            res(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
        ],
    },
    ClusterRole {
        name: "system:node",
        labels: &[],
        aggregates: None,
        rules: &[
            res(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["localsubjectaccessreviews", "subjectaccessreviews"],
            ),
            res(READ, &[""], &["services"]),
            res(&["create", "get", "list", "watch"], &[""], &["nodes"]),
            res(&["patch", "update"], &[""], &["nodes/status"]),
            res(&["patch", "update"], &[""], &["nodes"]),
            res(&["create", "patch", "update"], &[""], &["events"]),
            res(READ, &[""], &["pods"]),
            res(&["create", "delete"], &[""], &["pods"]),
            res(&["patch", "update"], &[""], &["pods/status"]),
            res(&["create"], &[""], &["pods/eviction"]),
            res(READ, &[""], &["configmaps", "secrets"]),
            res(
                &["get"],
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            res(&["get"], &[""], &["endpoints"]),
            res(
                &["create", "get", "list", "watch"],
                &["certificates.k8s.io"],
                &["certificatesigningrequests"],
            ),
            res(
                &["create", "delete", "get", "patch", "update"],
                &["coordination.k8s.io"],
                &["leases"],
            ),
            res(&["get"], &["storage.k8s.io"], &["volumeattachments"]),
            res(&["create"], &[""], &["serviceaccounts/token"]),
            res(
                &["get", "patch", "update"],
                &[""],
                &["persistentvolumeclaims/status"],
            ),
            res(READ, &["storage.k8s.io"], &["csidrivers"]),
            res(
                &["create", "delete", "get", "patch", "update"],
                &["storage.k8s.io"],
                &["csinodes"],
            ),
            res(READ, &["node.k8s.io"], &["runtimeclasses"]),
        ],
    },
    ClusterRole {
        name: "system:node-proxier",
        labels: &[],
        aggregates: None,
        rules: &[
            res(&["list", "watch"], &[""], &["endpoints", "services"]),
            res(READ, &[""], &["nodes"]),
            EVENTS,
            res(
                &["list", "watch"],
                &["discovery.k8s.io"],
                &["endpointslices"],
            ),
            res(
                &["list", "watch"],
                &["networking.k8s.io"],
                &["servicecidrs"],
            ),
        ],
    },
    // kybern's own: each agent removes the folders of deleted local-path volumes on its
    // node and then their finalizer (`agent::local_path`).
    ClusterRole {
        name: "kybern:local-path-cleaner",
        labels: &[],
        aggregates: None,
        rules: &[res(
            &["get", "list", "watch", "patch", "update"],
            &[""],
            &["persistentvolumes"],
        )],
    },
    ClusterRole {
        name: "system:kube-scheduler",
        labels: &[],
        aggregates: None,
        rules: &[
            EVENTS,
            res(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-scheduler"],
            ),
            // kybern's scheduler elects its leader through this Lease.
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kybern-scheduler"],
            ),
            res(READ, &[""], &["nodes"]),
            res(&["delete", "get", "list", "watch"], &[""], &["pods"]),
            res(&["create"], &[""], &["bindings", "pods/binding"]),
            res(&["patch", "update"], &[""], &["pods/status"]),
            res(READ, &[""], &["replicationcontrollers", "services"]),
            res(READ, &["apps", "extensions"], &["replicasets"]),
            res(READ, &["apps"], &["statefulsets"]),
            res(READ, &["policy"], &["poddisruptionbudgets"]),
            res(
                READ,
                &[""],
                &["persistentvolumeclaims", "persistentvolumes"],
            ),
            res(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            res(READ, &["storage.k8s.io"], &["csinodes"]),
            res(READ, &[""], &["namespaces"]),
            res(READ, &["storage.k8s.io"], &["csidrivers"]),
            res(READ, &["storage.k8s.io"], &["csistoragecapacities"]),
        ],
    },
    ClusterRole {
        name: "system:volume-scheduler",
        labels: &[],
        aggregates: None,
        rules: &[
            res(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumes"],
            ),
            res(READ, &["storage.k8s.io"], &["storageclasses"]),
            res(
                &["get", "list", "patch", "update", "watch"],
                &[""],
                &["persistentvolumeclaims"],
            ),
        ],
    },
    ClusterRole {
        name: "system:kube-controller-manager",
        labels: &[],
        aggregates: None,
        rules: &[
            EVENTS,
            res(&["create"], &["coordination.k8s.io"], &["leases"]),
            named(
                &["get", "update"],
                &["coordination.k8s.io"],
                &["leases"],
                &["kube-controller-manager"],
            ),
            res(&["create"], &[""], &["secrets", "serviceaccounts"]),
            res(&["delete"], &[""], &["secrets"]),
            res(
                &["get"],
                &[""],
                &["configmaps", "namespaces", "secrets", "serviceaccounts"],
            ),
            res(&["update"], &[""], &["secrets", "serviceaccounts"]),
            res(&["create"], &["authentication.k8s.io"], &["tokenreviews"]),
            res(
                &["create"],
                &["authorization.k8s.io"],
                &["subjectaccessreviews"],
            ),
            res(&["list", "watch"], &["*"], &["*"]),
            res(&["create"], &[""], &["serviceaccounts/token"]),
        ],
    },
];

const AUTHENTICATED: Subject = Subject::Group("system:authenticated");

pub(super) const CLUSTER_ROLE_BINDINGS: &[ClusterRoleBinding] = &[
    ClusterRoleBinding {
        name: "cluster-admin",
        role: "cluster-admin",
        subjects: &[Subject::Group("system:masters")],
    },
    ClusterRoleBinding {
        name: "system:basic-user",
        role: "system:basic-user",
        subjects: &[AUTHENTICATED],
    },
    ClusterRoleBinding {
        name: "system:discovery",
        role: "system:discovery",
        subjects: &[AUTHENTICATED],
    },
    ClusterRoleBinding {
        name: "system:public-info-viewer",
        role: "system:public-info-viewer",
        subjects: &[AUTHENTICATED, Subject::Group("system:unauthenticated")],
    },
    ClusterRoleBinding {
        name: "system:service-account-issuer-discovery",
        role: "system:service-account-issuer-discovery",
        subjects: &[Subject::Group("system:serviceaccounts")],
    },
    ClusterRoleBinding {
        name: "system:kube-scheduler",
        role: "system:kube-scheduler",
        subjects: &[Subject::User("system:kube-scheduler")],
    },
    ClusterRoleBinding {
        name: "system:volume-scheduler",
        role: "system:volume-scheduler",
        subjects: &[Subject::User("system:kube-scheduler")],
    },
    ClusterRoleBinding {
        name: "system:kube-controller-manager",
        role: "system:kube-controller-manager",
        subjects: &[Subject::User("system:kube-controller-manager")],
    },
    ClusterRoleBinding {
        name: "system:node-proxier",
        role: "system:node-proxier",
        subjects: &[Subject::User("system:kube-proxy")],
    },
    // Upstream binds system:node to nobody: the Node authorizer decides for nodes.
    ClusterRoleBinding {
        name: "system:node",
        role: "system:node",
        subjects: &[],
    },
    // kybern's agents are also each node's kube-proxy and cluster DNS server: they
    // read what upstream's kube-proxy (system:node-proxier) and CoreDNS read.
    ClusterRoleBinding {
        name: "kybern:node-proxier",
        role: "system:node-proxier",
        subjects: &[NODES],
    },
    ClusterRoleBinding {
        name: "kybern:local-path-cleaner",
        role: "kybern:local-path-cleaner",
        subjects: &[NODES],
    },
];
