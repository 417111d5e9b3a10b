//! The statistics read from fake cgroup trees laid out in a temp dir, and once from the
//! host's real cgroups.

use std::path::Path;

use super::*;

fn write(root: &Path, rel: &str, text: &str) {
    let path = root.join(rel);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// A node with 1 pod of 1 container: /proc with 250 s of busy CPU and 3 GiB of working
/// set, the pod's and container's cgroups in either layout.
fn fake_host(unified: bool) -> (tempfile::TempDir, Stats) {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // user nice system idle iowait irq softirq steal: (10000+0+12000+500+500+2000) ticks busy.
    write(
        root,
        "proc/stat",
        "cpu  10000 0 12000 99999 7777 500 500 2000 0 0\ncpu0 1 2 3 4 5 6 7 8 0 0\nbtime 1700000000\n",
    );
    write(
        root,
        "proc/meminfo",
        "MemTotal:       8388608 kB\nMemFree:        4194304 kB\nMemAvailable:   5242880 kB\nInactive(file):  1048576 kB\nAnonPages:       2097152 kB\n",
    );
    if unified {
        write(root, "cgroup/cgroup.controllers", "cpu memory\n");
        for (rel, usec, current, inactive) in [
            ("kybern/uid1", 3_000_000u64, 300u64 << 20, 100u64 << 20),
            ("kybern/uid1/c1", 2_500_000, 250 << 20, 50 << 20),
        ] {
            write(
                root,
                &format!("cgroup/{rel}/cpu.stat"),
                &format!("usage_usec {usec}\nuser_usec 1\nsystem_usec 2\n"),
            );
            write(
                root,
                &format!("cgroup/{rel}/memory.current"),
                &format!("{current}\n"),
            );
            write(
                root,
                &format!("cgroup/{rel}/memory.stat"),
                &format!("anon 1000\nfile 5\ninactive_file {inactive}\npgfault 7\npgmajfault 1\n"),
            );
        }
    } else {
        for (rel, ns, usage, inactive) in [
            ("kybern/uid1", 3_000_000_000u64, 300u64 << 20, 100u64 << 20),
            ("kybern/uid1/c1", 2_500_000_000, 250 << 20, 50 << 20),
        ] {
            write(
                root,
                &format!("cgroup/cpuacct/{rel}/cpuacct.usage"),
                &format!("{ns}\n"),
            );
            write(
                root,
                &format!("cgroup/memory/{rel}/memory.usage_in_bytes"),
                &format!("{usage}\n"),
            );
            write(
                root,
                &format!("cgroup/memory/{rel}/memory.stat"),
                &format!("cache 5\ntotal_rss 1000\ntotal_inactive_file {inactive}\ntotal_pgfault 7\ntotal_pgmajfault 1\n"),
            );
        }
    }
    let stats = Stats::new("node-1", root.join("cgroup"), root.join("proc"));
    (dir, stats)
}

fn pods() -> Vec<PodCgroups> {
    vec![PodCgroups {
        namespace: "default".into(),
        name: "web".into(),
        uid: "uid1".into(),
        cgroup: "/kybern/uid1".into(),
        start_time: None,
        containers: vec![
            ContainerCgroup {
                name: "c1".into(),
                cgroup: "/kybern/uid1/c1".into(),
                start_time: Some(Timestamp::from_second(1_700_000_100).unwrap()),
            },
            ContainerCgroup {
                name: "gone".into(),
                cgroup: "/kybern/uid1/exited".into(),
                start_time: None,
            },
        ],
    }]
}

#[test]
fn the_summary_carries_cumulative_cpu_and_the_working_set_of_node_pods_and_containers() {
    for (name, unified) in [("cgroup v2", true), ("cgroup v1", false)] {
        let (_dir, stats) = fake_host(unified);
        let summary = serde_json::to_value(stats.summary(&pods())).unwrap();
        let node = &summary["node"];
        assert_eq!(node["nodeName"], "node-1", "{name}");
        assert_eq!(node["startTime"], "2023-11-14T22:13:20Z", "{name}");
        assert_eq!(
            node["cpu"]["usageCoreNanoSeconds"], 250_000_000_000u64,
            "{name}"
        );
        assert_eq!(node["memory"]["workingSetBytes"], 3u64 << 30, "{name}");
        assert_eq!(node["memory"]["availableBytes"], 5u64 << 30, "{name}");
        let pod = &summary["pods"][0];
        assert_eq!(
            pod["podRef"],
            serde_json::json!({"name": "web", "namespace": "default", "uid": "uid1"}),
            "{name}"
        );
        assert_eq!(
            pod["cpu"]["usageCoreNanoSeconds"], 3_000_000_000u64,
            "{name}"
        );
        assert_eq!(pod["memory"]["workingSetBytes"], 200u64 << 20, "{name}");
        let c = &pod["containers"][0];
        assert_eq!(c["name"], "c1", "{name}");
        assert_eq!(c["cpu"]["usageCoreNanoSeconds"], 2_500_000_000u64, "{name}");
        assert_eq!(c["memory"]["workingSetBytes"], 200u64 << 20, "{name}");
        assert_eq!(c["memory"]["usageBytes"], 250u64 << 20, "{name}");
        assert_eq!(c["startTime"], "2023-11-14T22:15:00Z", "{name}");
        let gone = &pod["containers"][1];
        assert_eq!(
            (gone["name"].as_str(), gone.get("cpu"), gone.get("memory")),
            (Some("gone"), None, None),
            "{name}: a container without a cgroup has no figures"
        );
    }
}

#[test]
fn resource_metrics_are_upstreams_prometheus_families_with_labels_and_timestamps() {
    let (_dir, stats) = fake_host(true);
    let text = stats.resource_metrics(&pods());
    let samples: Vec<(String, String)> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .map(|l| {
            let mut parts = l.rsplitn(3, ' ').collect::<Vec<_>>();
            parts.reverse();
            if parts.len() == 3 {
                assert!(
                    parts[2].parse::<i64>().unwrap() > 1_600_000_000_000,
                    "{l}: ms"
                );
            }
            (parts[0].to_string(), parts[1].to_string())
        })
        .collect();
    let want = [
        ("container_cpu_usage_seconds_total{container=\"c1\",namespace=\"default\",pod=\"web\"}", "2.5"),
        ("container_memory_working_set_bytes{container=\"c1\",namespace=\"default\",pod=\"web\"}", "209715200"),
        ("container_start_time_seconds{container=\"c1\",namespace=\"default\",pod=\"web\"}", "1700000100"),
        ("node_cpu_usage_seconds_total", "250"),
        ("node_memory_working_set_bytes", "3221225472"),
        ("pod_cpu_usage_seconds_total{namespace=\"default\",pod=\"web\"}", "3"),
        ("pod_memory_working_set_bytes{namespace=\"default\",pod=\"web\"}", "209715200"),
        ("resource_scrape_error", "0"),
    ];
    let want: Vec<(String, String)> = want
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    assert_eq!(samples, want, "{text}");
    assert!(
        text.contains("# TYPE node_cpu_usage_seconds_total counter\n"),
        "{text}"
    );
}

#[test]
fn a_second_summary_reports_the_cpu_rate_since_the_first() {
    let (dir, stats) = fake_host(true);
    let first = stats.summary(&pods());
    assert_eq!(
        first.pods[0].usage.cpu.as_ref().unwrap().usage_nano_cores,
        None
    );
    write(
        dir.path(),
        "cgroup/kybern/uid1/cpu.stat",
        "usage_usec 3000001000\n",
    );
    let second = stats.summary(&pods());
    let rate = second.pods[0].usage.cpu.as_ref().unwrap().usage_nano_cores;
    assert!(rate.is_some_and(|r| r > 0), "{rate:?}");
}

#[test]
fn the_hosts_real_cgroups_and_proc_give_figures() {
    // The test process's own cgroup: v2's `0::` entry on a unified host, the root of
    // v1's hierarchies on a legacy or hybrid one.
    let unified = Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    let cgroup = if unified {
        own.lines()
            .find_map(|l| l.strip_prefix("0::"))
            .unwrap_or("/")
            .to_string()
    } else {
        "/".to_string()
    };
    let stats = Stats::host("real");
    let pods = vec![PodCgroups {
        namespace: "ns".into(),
        name: "self".into(),
        uid: "u".into(),
        cgroup: cgroup.clone(),
        start_time: None,
        containers: vec![],
    }];
    let summary = stats.summary(&pods);
    let node_cpu = summary
        .node
        .usage
        .cpu
        .as_ref()
        .map(|c| c.usage_core_nano_seconds);
    assert!(node_cpu.is_some_and(|c| c > 0), "{summary:?}");
    let ws = summary
        .node
        .usage
        .memory
        .as_ref()
        .and_then(|m| m.working_set_bytes);
    assert!(ws.is_some_and(|w| w > 0), "{summary:?}");
    let pod_cpu = summary.pods[0]
        .usage
        .cpu
        .as_ref()
        .map(|c| c.usage_core_nano_seconds);
    assert!(
        pod_cpu.is_some_and(|c| c > 0),
        "cgroup {cgroup}: {summary:?}"
    );
    // Upstream's stats/v1alpha1 JSON: each level's figures sit beside its name.
    let json = serde_json::to_value(&summary).unwrap();
    assert!(
        json["node"]["cpu"]["usageCoreNanoSeconds"].is_u64(),
        "{json}"
    );
    assert!(json["node"]["startTime"].is_string(), "{json}");
    assert!(
        json["pods"][0]["memory"]["workingSetBytes"].is_u64(),
        "{json}"
    );
    assert_eq!(
        json["pods"][0]["podRef"]["name"],
        summary.pods[0].pod_ref.name
    );
}
