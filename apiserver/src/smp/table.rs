//! Upstream's patch metadata (`patchStrategy`/`patchMergeKey` tags of k8s.io/api) for built-in kinds.

use super::meta::{FieldMeta, PatchMeta};

/// One entry of a type's table: a tagged field, or an embedded type whose
/// own table applies under a sub-path.
enum Rule {
    Field(&'static str, FieldMeta),
    Embed(&'static str, &'static [Rule]),
}

use Rule::{Embed, Field};

const BY_NAME: FieldMeta = FieldMeta::merge_by("name");
const BY_TYPE: FieldMeta = FieldMeta::merge_by("type");
const BY_IP: FieldMeta = FieldMeta::merge_by("ip");

/// metav1.ObjectMeta.
const OBJECT_META: &[Rule] = &[
    Field("finalizers", FieldMeta::merge_primitives()),
    Field("ownerReferences", FieldMeta::merge_by("uid")),
];

/// core/v1 Container and EphemeralContainerCommon (envFrom, resizePolicy and
/// restartPolicyRules carry no tag: replaced as a whole).
const CONTAINER: &[Rule] = &[
    Field("ports", FieldMeta::merge_by("containerPort")),
    Field("env", BY_NAME),
    Field("volumeMounts", FieldMeta::merge_by("mountPath")),
    Field("volumeDevices", FieldMeta::merge_by("devicePath")),
];

/// core/v1 PodSpec (tolerations, readinessGates and the rest carry no tag).
const POD_SPEC: &[Rule] = &[
    Field("volumes", BY_NAME.and_retain_keys()),
    Field("initContainers", BY_NAME),
    Embed("initContainers", CONTAINER),
    Field("containers", BY_NAME),
    Embed("containers", CONTAINER),
    Field("ephemeralContainers", BY_NAME),
    Embed("ephemeralContainers", CONTAINER),
    Field("imagePullSecrets", BY_NAME),
    Field("hostAliases", BY_IP),
    Field(
        "topologySpreadConstraints",
        FieldMeta::merge_by("topologyKey"),
    ),
    Field("schedulingGates", BY_NAME),
    Field("resourceClaims", BY_NAME.and_retain_keys()),
];

/// core/v1 ContainerStatus (the status lists themselves carry no tag).
const CONTAINER_STATUS: &[Rule] = &[
    Field("volumeMounts", FieldMeta::merge_by("mountPath")),
    Field("allocatedResourcesStatus", BY_NAME),
];

/// core/v1 PodStatus.
const POD_STATUS: &[Rule] = &[
    Field("conditions", BY_TYPE),
    Field("podIPs", BY_IP),
    Field("hostIPs", BY_IP),
    Field("resourceClaimStatuses", BY_NAME.and_retain_keys()),
    Embed("containerStatuses", CONTAINER_STATUS),
    Embed("initContainerStatuses", CONTAINER_STATUS),
    Embed("ephemeralContainerStatuses", CONTAINER_STATUS),
];

/// core/v1 PodTemplateSpec.
const POD_TEMPLATE: &[Rule] = &[Embed("metadata", OBJECT_META), Embed("spec", POD_SPEC)];

/// Workloads: a pod template at `spec.template` and conditions in status.
const WORKLOAD: &[Rule] = &[
    Embed("spec.template", POD_TEMPLATE),
    Field("status.conditions", BY_TYPE),
];

const STATUS_CONDITIONS: &[Rule] = &[Field("status.conditions", BY_TYPE)];

/// The per-kind tables, by API group ("" is core) and kind. Every kind also
/// gets ObjectMeta at `metadata`.
const KINDS: &[(&str, &str, &[Rule])] = &[
    (
        "",
        "Pod",
        &[Embed("spec", POD_SPEC), Embed("status", POD_STATUS)],
    ),
    ("", "PodTemplate", &[Embed("template", POD_TEMPLATE)]),
    ("", "ReplicationController", WORKLOAD),
    (
        "",
        "Node",
        &[
            Field("spec.podCIDRs", FieldMeta::merge_primitives()),
            Field("status.conditions", BY_TYPE),
            Field("status.addresses", BY_TYPE),
        ],
    ),
    ("", "Namespace", STATUS_CONDITIONS),
    (
        "",
        "Service",
        &[
            Field("spec.ports", FieldMeta::merge_by("port")),
            Field("status.conditions", BY_TYPE),
        ],
    ),
    ("", "PersistentVolumeClaim", STATUS_CONDITIONS),
    ("", "ServiceAccount", &[Field("secrets", BY_NAME)]),
    ("", "ComponentStatus", &[Field("conditions", BY_TYPE)]),
    (
        "apps",
        "Deployment",
        &[
            Embed("", WORKLOAD),
            Field("spec.strategy", FieldMeta::retain_keys()),
        ],
    ),
    ("apps", "ReplicaSet", WORKLOAD),
    ("apps", "StatefulSet", WORKLOAD),
    ("apps", "DaemonSet", WORKLOAD),
    ("batch", "Job", WORKLOAD),
    (
        "batch",
        "CronJob",
        &[
            Embed("spec.jobTemplate.metadata", OBJECT_META),
            Embed("spec.jobTemplate.spec.template", POD_TEMPLATE),
        ],
    ),
    (
        "policy",
        "PodDisruptionBudget",
        &[
            Field("spec.selector", FieldMeta::replace()),
            Field("status.conditions", BY_TYPE),
        ],
    ),
    ("autoscaling", "HorizontalPodAutoscaler", STATUS_CONDITIONS),
    ("networking.k8s.io", "ServiceCIDR", STATUS_CONDITIONS),
    (
        "storage.k8s.io",
        "CSINode",
        &[Field("spec.drivers", BY_NAME)],
    ),
];

fn join(prefix: &str, path: &str) -> String {
    match (prefix.is_empty(), path.is_empty()) {
        (true, _) => path.to_string(),
        (_, true) => prefix.to_string(),
        _ => format!("{prefix}.{path}"),
    }
}

fn add(meta: &mut PatchMeta, prefix: &str, rules: &[Rule]) {
    for rule in rules {
        match rule {
            Field(path, field) => meta.insert(join(prefix, path), *field),
            Embed(path, sub) => add(meta, &join(prefix, path), sub),
        }
    }
}

/// The patch metadata of a built-in kind, from upstream's struct tags. Kinds
/// without a table (ConfigMap, Secret, Endpoints, EndpointSlice, ...) and
/// unknown kinds get only ObjectMeta's tags; their maps merge and their lists
/// are replaced.
pub fn patch_meta_for(group: &str, kind: &str) -> PatchMeta {
    let mut meta = PatchMeta::new();
    add(&mut meta, "metadata", OBJECT_META);
    if let Some((_, _, rules)) = KINDS.iter().find(|(g, k, _)| *g == group && *k == kind) {
        add(&mut meta, "", rules);
    }
    meta
}
