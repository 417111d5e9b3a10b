//! Completion indexes of an Indexed Job: which index a pod works on, the compressed
//! `status.completedIndexes` form ("0-2,4"), and which indexes still need a pod.

use std::collections::BTreeSet;

use k8s_openapi::api::core::v1::Pod;

/// The annotation (and label) carrying a pod's completion index.
pub const INDEX_KEY: &str = "batch.kubernetes.io/job-completion-index";

/// The completion index of a pod of an Indexed Job, if it carries a valid one.
pub fn pod_index(pod: &Pod) -> Option<i32> {
    let value = pod.metadata.annotations.as_ref()?.get(INDEX_KEY)?;
    value.parse::<i32>().ok().filter(|i| *i >= 0)
}

/// Parses "0-2,4" into {0,1,2,4}, keeping only indexes below `completions`; malformed
/// parts are skipped (upstream ignores what it cannot parse).
pub fn parse_ranges(s: &str, completions: i32) -> BTreeSet<i32> {
    let mut set = BTreeSet::new();
    for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (lo, hi) = match part.split_once('-') {
            Some((a, b)) => (a.parse::<i32>(), b.parse::<i32>()),
            None => (part.parse::<i32>(), part.parse::<i32>()),
        };
        if let (Ok(lo), Ok(hi)) = (lo, hi) {
            set.extend((lo.max(0)..=hi.min(completions - 1)).filter(|i| *i >= lo));
        }
    }
    set
}

/// Formats indexes as sorted ranges: {0,1,2,4,6,7} is "0-2,4,6-7" (two consecutive
/// indexes are written as a range, as upstream does).
pub fn format_ranges(indexes: &BTreeSet<i32>) -> String {
    let mut parts = Vec::new();
    let mut iter = indexes.iter().copied().peekable();
    while let Some(start) = iter.next() {
        let mut end = start;
        while iter.peek() == Some(&(end + 1)) {
            end = iter.next().unwrap_or(end);
        }
        parts.push(if start == end {
            start.to_string()
        } else {
            format!("{start}-{end}")
        });
    }
    parts.join(",")
}

/// The lowest `n` indexes below `completions` that are neither completed nor being
/// worked on by an active pod.
pub fn indexes_to_create(
    completions: i32,
    completed: &BTreeSet<i32>,
    active: &BTreeSet<i32>,
    n: usize,
) -> Vec<i32> {
    (0..completions)
        .filter(|i| !completed.contains(i) && !active.contains(i))
        .take(n)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(v: &[i32]) -> BTreeSet<i32> {
        v.iter().copied().collect()
    }

    #[test]
    fn completed_indexes_are_written_as_ranges() {
        let cases = [
            ("empty", set(&[]), ""),
            ("single", set(&[3]), "3"),
            ("run and single", set(&[0, 1, 2, 4]), "0-2,4"),
            ("pair is a range", set(&[6, 7]), "6-7"),
            ("several", set(&[0, 2, 3, 4, 9, 11, 12]), "0,2-4,9,11-12"),
        ];
        for (name, indexes, want) in cases {
            assert_eq!(format_ranges(&indexes), want, "{name}");
            assert_eq!(parse_ranges(want, 100), indexes, "{name}: round trip");
        }
    }

    #[test]
    fn parsing_drops_indexes_beyond_completions_and_garbage() {
        let cases = [
            ("clipped range", "0-2,8-12", 10, set(&[0, 1, 2, 8, 9])),
            ("garbage skipped", "x,1,3-a,5", 10, set(&[1, 5])),
            ("spaces", " 1 , 2-3 ", 10, set(&[1, 2, 3])),
        ];
        for (name, s, completions, want) in cases {
            assert_eq!(parse_ranges(s, completions), want, "{name}");
        }
    }

    #[test]
    fn missing_indexes_are_created_lowest_first() {
        let cases = [
            ("fresh job", 5, set(&[]), set(&[]), 2, vec![0, 1]),
            (
                "skips done and running",
                5,
                set(&[0, 2]),
                set(&[1]),
                5,
                vec![3, 4],
            ),
            ("nothing left", 3, set(&[0, 1]), set(&[2]), 2, vec![]),
        ];
        for (name, completions, completed, active, n, want) in cases {
            assert_eq!(
                indexes_to_create(completions, &completed, &active, n),
                want,
                "{name}"
            );
        }
    }
}
