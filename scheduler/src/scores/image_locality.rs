//! ImageLocality: nodes that already have the pod's images score higher, by image size
//! scaled by how widely the image is spread (so one node with a popular image does not
//! attract everything). Sums below 23 MiB score 0, at 1000 MiB per container 100.

use crate::cache::{normalize_image, Cache, NodeInfo};
use crate::framework::CycleState;

const MB: i64 = 1024 * 1024;
const MIN_THRESHOLD: i64 = 23 * MB;
const MAX_CONTAINER_THRESHOLD: i64 = 1000 * MB;

pub fn score(state: &CycleState, nodes: &[&NodeInfo], cache: &Cache) -> Vec<i64> {
    let Some(spec) = state.pod.spec.as_deref() else {
        return vec![0; nodes.len()];
    };
    let images: Vec<String> = spec
        .init_containers
        .iter()
        .flatten()
        .chain(&spec.containers)
        .filter_map(|c| c.image.as_deref().map(normalize_image))
        .collect();
    let total = cache.nodes().len().max(1) as f64;
    let max = MAX_CONTAINER_THRESHOLD * images.len().max(1) as i64;
    nodes
        .iter()
        .map(|n| {
            let sum: i64 = images
                .iter()
                .filter_map(|img| {
                    let size = *n.images.get(img)?;
                    let spread = cache.image_nodes.get(img).copied().unwrap_or(0) as f64 / total;
                    Some((size as f64 * spread) as i64)
                })
                .sum();
            let sum = sum.clamp(MIN_THRESHOLD, max);
            super::MAX * (sum - MIN_THRESHOLD) / (max - MIN_THRESHOLD)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use k8s_openapi::api::core::v1::{Node, Pod};

    use super::*;
    use crate::filters::fixtures::cluster;
    use crate::scores::fixtures::scores;
    use controllers::fixtures::{NodeFixture, PodFixture};

    #[test]
    fn nodes_with_the_image_score_by_size_and_spread() {
        let cache = cluster(
            vec![
                Node::test("big").image("docker.io/library/app:v1", 1000 * MB),
                Node::test("tiny").image("docker.io/library/small:latest", 10 * MB),
                Node::test("none"),
                Node::test("also-big").image("app:v1", 1000 * MB),
            ],
            vec![],
        );
        // app:v1 is on 2 of 4 nodes → 500 MiB scaled: 100×(500−23)/(1000−23) = 48
        let cases = [
            (
                "image present on half the nodes",
                Pod::test("p").image("app:v1"),
                vec![48, 0, 0, 48],
            ),
            (
                "small images score 0",
                Pod::test("p").image("small"),
                vec![0, 0, 0, 0],
            ),
        ];
        for (name, pod, want) in cases {
            assert_eq!(scores(&cache, pod, score), want, "{name}");
        }
    }
}
