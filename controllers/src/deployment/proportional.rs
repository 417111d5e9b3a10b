//! Proportional scaling (upstream's scale() arithmetic): when a Deployment is resized
//! mid-rollout, every active ReplicaSet grows or shrinks by its share.

use k8s_openapi::jiff::Timestamp;

/// One active ReplicaSet as proportional scaling sees it.
#[derive(Clone, Debug)]
pub struct Sizing {
    pub name: String,
    pub replicas: i32,
    /// The `max-replicas` annotation: the Deployment size (+ surge) it was last sized for.
    pub max_replicas: Option<i32>,
    pub created: Option<Timestamp>,
}

/// Upstream's proportional scaling: when a Deployment is resized mid-rollout, each active
/// ReplicaSet grows or shrinks in proportion to its share, so a rollout in progress keeps
/// its old/new ratio; the rounding leftover goes to the largest. `allowed` is the new
/// replicas + maxSurge; `status_replicas` stands in for a missing max-replicas annotation.
///
/// Worked example: 10 -> 15 replicas at maxSurge 3, old RS 8 and new RS 5, both sized for
/// 13. allowed = 18, to add = 18 - 13 = 5. Old: round(8 * 18 / 13) = round(11.08) = 11,
/// +3. New: round(5 * 18 / 13) = round(6.92) = 7, +2. Total 5, no leftover: 11 + 7 = 18.
pub fn proportional_sizes(
    rses: &[Sizing],
    replicas: i32,
    allowed: i32,
    status_replicas: i32,
) -> Vec<(String, i32)> {
    let to_add = allowed - rses.iter().map(|r| r.replicas).sum::<i32>();
    let mut sorted = rses.to_vec();
    // Larger first; ties: newer first when growing, older first when shrinking.
    sorted.sort_by(|a, b| {
        let by_age = if to_add > 0 {
            b.created.cmp(&a.created)
        } else {
            a.created.cmp(&b.created)
        };
        b.replicas
            .cmp(&a.replicas)
            .then(by_age)
            .then_with(|| a.name.cmp(&b.name))
    });
    let mut added = 0;
    let mut sizes: Vec<(String, i32)> = Vec::new();
    for rs in &sorted {
        let proportion = if to_add == 0 || rs.replicas == 0 || added == to_add {
            0
        } else {
            let fraction = if replicas == 0 {
                -rs.replicas
            } else {
                let annotated = rs.max_replicas.unwrap_or(status_replicas);
                if annotated == 0 {
                    0
                } else {
                    let size = f64::from(rs.replicas) * f64::from(allowed) / f64::from(annotated);
                    // Rounded half away from zero, like upstream's RoundToInt32.
                    #[allow(clippy::cast_possible_truncation)]
                    let rounded = size.round() as i32;
                    rounded - rs.replicas
                }
            };
            let allowed_left = to_add - added;
            if to_add > 0 {
                fraction.min(allowed_left)
            } else {
                fraction.max(allowed_left)
            }
        };
        added += proportion;
        sizes.push((rs.name.clone(), rs.replicas + proportion));
    }
    if to_add != 0 && added != to_add {
        if let Some(first) = sizes.first_mut() {
            first.1 = (first.1 + to_add - added).max(0);
        }
    }
    sizes
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rs(name: &str, replicas: i32, max: i32, created: i64) -> Sizing {
        Sizing {
            name: name.into(),
            replicas,
            max_replicas: Some(max),
            created: Some(Timestamp::from_second(created).unwrap()),
        }
    }

    #[test]
    fn proportional_scaling_keeps_the_rollout_ratio() {
        let cases = [
            (
                "10 -> 15 at surge 3: old 8 -> 11, new 5 -> 7 (see the doc comment)",
                vec![rs("old", 8, 13, 1), rs("new", 5, 13, 2)],
                15,
                18,
                vec![("old", 11), ("new", 7)],
            ),
            (
                // allowed 5 + 1 = 6, to add 6 - 12 = -6: old round(8*6/12)=4 (-4), new round(4*6/12)=2 (-2).
                "10 -> 5 at surge 1: both halve",
                vec![rs("old", 8, 12, 1), rs("new", 4, 12, 2)],
                5,
                6,
                vec![("old", 4), ("new", 2)],
            ),
            (
                // replicas 0: each fraction is -replicas; shrinking sorts older first on ties.
                "scale to zero empties every replicaset",
                vec![rs("old", 1, 2, 1), rs("new", 1, 2, 2)],
                0,
                0,
                vec![("old", 0), ("new", 0)],
            ),
            (
                // allowed 4, to add 4 - 3 = 1: each round(1*4/3)=1 -> +0; leftover 1 to the first (newer on ties).
                "rounding leftover goes to the largest, newest first",
                vec![rs("a", 1, 3, 1), rs("b", 1, 3, 2), rs("c", 1, 3, 3)],
                3,
                4,
                vec![("c", 2), ("b", 1), ("a", 1)],
            ),
        ];
        for (name, rses, replicas, allowed, want) in cases {
            let got = proportional_sizes(&rses, replicas, allowed, 0);
            let want: Vec<(String, i32)> =
                want.into_iter().map(|(n, s)| (n.to_string(), s)).collect();
            assert_eq!(got, want, "{name}");
        }
    }
}
