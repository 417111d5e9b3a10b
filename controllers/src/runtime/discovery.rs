//! Which resources the apiserver serves, for loops that act on every kind (the
//! namespace cleaner, the garbage collector).

use kube::discovery::{verbs, ApiCapabilities, ApiResource, Discovery, Scope};

/// Every resource (preferred version of each group) that supports all of `needed`.
pub async fn resources(
    client: kube::Client,
    needed: &[&str],
) -> Result<Vec<(ApiResource, ApiCapabilities)>, kube::Error> {
    let discovery = Discovery::new(client).run().await?;
    Ok(discovery
        .groups()
        .flat_map(|g| g.recommended_resources())
        .filter(|(_, caps)| needed.iter().all(|v| caps.supports_operation(v)))
        .collect())
}

/// Namespaced resources whose objects can be listed and deleted by collection.
pub async fn namespaced_deletable(client: kube::Client) -> Result<Vec<ApiResource>, kube::Error> {
    Ok(resources(client, &[verbs::LIST, verbs::DELETE_COLLECTION])
        .await?
        .into_iter()
        .filter(|(_, caps)| caps.scope == Scope::Namespaced)
        .map(|(ar, _)| ar)
        .collect())
}
