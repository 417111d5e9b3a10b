//! The bootstrap policy's data against upstream's shape.

use super::*;

#[test]
fn every_default_binding_references_a_default_role() {
    for b in CLUSTER_ROLE_BINDINGS {
        assert!(
            CLUSTER_ROLES.iter().any(|r| r.name == b.role),
            "{} references {}",
            b.name,
            b.role
        );
    }
}

#[test]
fn default_roles_carry_upstreams_labels_and_autoupdate_annotation() {
    let view = role_object(CLUSTER_ROLES.iter().find(|r| r.name == "view").unwrap());
    assert_eq!(
        view["metadata"]["labels"]["kubernetes.io/bootstrapping"],
        "rbac-defaults"
    );
    assert_eq!(
        view["metadata"]["labels"]["rbac.authorization.k8s.io/aggregate-to-edit"],
        "true"
    );
    assert_eq!(view["metadata"]["annotations"][AUTOUPDATE], "true");
    assert_eq!(
        view["aggregationRule"],
        json!({"clusterRoleSelectors": [{"matchLabels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}}]})
    );
}
