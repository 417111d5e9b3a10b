//! Scheduler configuration, read from a KubeSchedulerConfiguration-shaped YAML file
//! (only the fields kybern honours: score plugin weights and disables, the
//! NodeResourcesFit scoring strategy, percentageOfNodesToScore, schedulerName).

use serde::Deserialize;

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
pub enum ScoringStrategy {
    #[default]
    LeastAllocated,
    MostAllocated,
}

/// Score plugin weights; upstream's defaults. A weight of 0 switches the plugin off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Weights {
    pub node_resources_fit: i64,
    pub balanced_allocation: i64,
    pub node_affinity: i64,
    pub inter_pod_affinity: i64,
    pub taint_toleration: i64,
    pub pod_topology_spread: i64,
    pub image_locality: i64,
}

impl Default for Weights {
    fn default() -> Self {
        Weights {
            node_resources_fit: 1,
            balanced_allocation: 1,
            node_affinity: 2,
            inter_pod_affinity: 2,
            taint_toleration: 3,
            pod_topology_spread: 2,
            image_locality: 1,
        }
    }
}

impl Weights {
    fn slot(&mut self, plugin: &str) -> Option<&mut i64> {
        Some(match plugin {
            "NodeResourcesFit" => &mut self.node_resources_fit,
            "NodeResourcesBalancedAllocation" => &mut self.balanced_allocation,
            "NodeAffinity" => &mut self.node_affinity,
            "InterPodAffinity" => &mut self.inter_pod_affinity,
            "TaintToleration" => &mut self.taint_toleration,
            "PodTopologySpread" => &mut self.pod_topology_spread,
            "ImageLocality" => &mut self.image_locality,
            _ => return None,
        })
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SchedulerConfig {
    pub scheduler_name: String,
    pub weights: Weights,
    pub strategy: ScoringStrategy,
    /// None: upstream's adaptive percentage.
    pub percentage_of_nodes_to_score: Option<u32>,
    /// Concurrent binding requests in flight.
    pub parallel_binds: usize,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        SchedulerConfig {
            scheduler_name: "default-scheduler".into(),
            weights: Weights::default(),
            strategy: ScoringStrategy::default(),
            percentage_of_nodes_to_score: None,
            // Each binding in flight is its own HTTP/1.1 connection with TLS and body
            // buffers; 8 kept `kybern bench scheduler` above 2000 pods/s on 2 cores.
            parallel_binds: 8,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("reading scheduler config: {0}")]
    Yaml(#[from] serde_yaml::Error),
    #[error("unknown score plugin {0:?}")]
    UnknownPlugin(String),
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct File {
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    profiles: Vec<Profile>,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Profile {
    scheduler_name: Option<String>,
    percentage_of_nodes_to_score: Option<u32>,
    #[serde(default)]
    plugins: Plugins,
    #[serde(default)]
    plugin_config: Vec<PluginConfig>,
}

#[derive(Deserialize, Default)]
struct Plugins {
    #[serde(default)]
    score: PluginSet,
}

#[derive(Deserialize, Default)]
struct PluginSet {
    #[serde(default)]
    enabled: Vec<Plugin>,
    #[serde(default)]
    disabled: Vec<Plugin>,
}

#[derive(Deserialize)]
struct Plugin {
    name: String,
    weight: Option<i64>,
}

#[derive(Deserialize)]
struct PluginConfig {
    name: String,
    #[serde(default)]
    args: serde_json::Value,
}

impl SchedulerConfig {
    /// Parses the upstream shape: `profiles[0].plugins.score.{enabled,disabled}[]` and
    /// `profiles[0].pluginConfig[name=NodeResourcesFit].args.scoringStrategy.type`.
    pub fn from_yaml(text: &str) -> Result<SchedulerConfig, ConfigError> {
        let file: File = serde_yaml::from_str(text)?;
        let mut c = SchedulerConfig {
            percentage_of_nodes_to_score: file.percentage_of_nodes_to_score,
            ..Default::default()
        };
        let Some(p) = file.profiles.into_iter().next() else {
            return Ok(c);
        };
        if let Some(name) = p.scheduler_name {
            c.scheduler_name = name;
        }
        c.percentage_of_nodes_to_score = p
            .percentage_of_nodes_to_score
            .or(c.percentage_of_nodes_to_score);
        for d in &p.plugins.score.disabled {
            if d.name == "*" {
                c.weights = Weights {
                    node_resources_fit: 0,
                    balanced_allocation: 0,
                    node_affinity: 0,
                    inter_pod_affinity: 0,
                    taint_toleration: 0,
                    pod_topology_spread: 0,
                    image_locality: 0,
                };
            } else {
                *c.weights
                    .slot(&d.name)
                    .ok_or_else(|| ConfigError::UnknownPlugin(d.name.clone()))? = 0;
            }
        }
        for e in &p.plugins.score.enabled {
            let default = Weights::default().slot(&e.name).map(|w| *w);
            let slot = c
                .weights
                .slot(&e.name)
                .ok_or_else(|| ConfigError::UnknownPlugin(e.name.clone()))?;
            *slot = e.weight.or(default).unwrap_or(1);
        }
        for pc in &p.plugin_config {
            if pc.name == "NodeResourcesFit" {
                if let Some(t) = pc.args.pointer("/scoringStrategy/type") {
                    c.strategy = serde_json::from_value(t.clone()).map_err(|e| {
                        ConfigError::Yaml(serde::de::Error::custom(format!(
                            "scoringStrategy.type: {e}"
                        )))
                    })?;
                }
            }
        }
        Ok(c)
    }

    pub fn from_file(path: &std::path::Path) -> anyhow::Result<SchedulerConfig> {
        let text = std::fs::read_to_string(path)?;
        Ok(Self::from_yaml(&text)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_weights_strategy_and_percentage_from_the_upstream_shape() {
        let yaml = r#"
apiVersion: kubescheduler.config.k8s.io/v1
kind: KubeSchedulerConfiguration
percentageOfNodesToScore: 30
profiles:
- schedulerName: default-scheduler
  plugins:
    score:
      disabled:
      - name: ImageLocality
      enabled:
      - name: NodeResourcesFit
        weight: 5
  pluginConfig:
  - name: NodeResourcesFit
    args:
      scoringStrategy:
        type: MostAllocated
        resources:
        - name: cpu
          weight: 1
"#;
        let c = SchedulerConfig::from_yaml(yaml).unwrap();
        assert_eq!(c.strategy, ScoringStrategy::MostAllocated, "strategy");
        assert_eq!(c.weights.node_resources_fit, 5, "explicit weight");
        assert_eq!(c.weights.image_locality, 0, "disabled plugin");
        assert_eq!(c.weights.taint_toleration, 3, "untouched default");
        assert_eq!(c.percentage_of_nodes_to_score, Some(30), "percentage");
    }

    #[test]
    fn empty_file_gives_upstream_defaults() {
        assert_eq!(
            SchedulerConfig::from_yaml("{}").unwrap(),
            SchedulerConfig::default()
        );
    }

    #[test]
    fn unknown_plugins_are_errors() {
        let yaml = "profiles:\n- plugins:\n    score:\n      enabled:\n      - name: Nope\n";
        assert!(matches!(
            SchedulerConfig::from_yaml(yaml),
            Err(ConfigError::UnknownPlugin(_))
        ));
    }
}
