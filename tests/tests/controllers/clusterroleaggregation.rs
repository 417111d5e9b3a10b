//! The clusterrole-aggregation controller: `view`, `edit` and `admin` hold the rules
//! of the roles labelled to aggregate into them, and lose them when those go.

use std::time::Duration;

use k8s_openapi::api::rbac::v1::ClusterRole;
use kube::api::{Api, DeleteParams, PostParams};
use serde_json::json;

use crate::{eventually, Cluster};

fn has_widget_rule(role: &ClusterRole) -> bool {
    role.rules
        .iter()
        .flatten()
        .any(|r| r.resources.as_deref() == Some(&["widgets".to_string()][..]))
}

#[tokio::test]
async fn admin_edit_and_view_pick_up_and_drop_an_aggregated_role() {
    let cluster = Cluster::start(&["clusterrole-aggregation"]).await;
    let roles = Api::<ClusterRole>::all(cluster.client());
    let widgets: ClusterRole = serde_json::from_value(json!({
        "metadata": {"name": "widget-viewer", "labels": {"rbac.authorization.k8s.io/aggregate-to-view": "true"}},
        "rules": [{"verbs": ["get", "list", "watch"], "apiGroups": ["example.com"], "resources": ["widgets"]}],
    }))
    .unwrap();
    roles
        .create(&PostParams::default(), &widgets)
        .await
        .unwrap();
    for name in ["view", "edit", "admin"] {
        let role = eventually(
            &format!("{name} holds the widget rule"),
            Duration::from_secs(20),
            || async {
                let role = roles.get(name).await.unwrap();
                has_widget_rule(&role).then_some(role)
            },
        )
        .await;
        // The default aggregate-to-view rules are there too (pods are readable).
        assert!(
            role.rules
                .iter()
                .flatten()
                .any(|r| r.resources.iter().flatten().any(|x| x == "pods")),
            "{name}"
        );
    }
    roles
        .delete("widget-viewer", &DeleteParams::default())
        .await
        .unwrap();
    for name in ["view", "edit", "admin"] {
        eventually(
            &format!("{name} without the widget rule"),
            Duration::from_secs(20),
            || async { (!has_widget_rule(&roles.get(name).await.unwrap())).then_some(()) },
        )
        .await;
    }
}
