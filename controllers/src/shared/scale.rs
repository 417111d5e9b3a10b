//! Int-or-percent values (maxSurge, maxUnavailable, ...) scaled against a total, as
//! upstream's intstr.GetScaledValueFromIntOrPercent.

use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

/// An int, or a percentage of `total` rounded up or down: 25% of 10 is 3 rounded up
/// and 2 rounded down. A string without `%` is read as an int (0 if it is none).
pub fn scaled_value(value: &IntOrString, total: i32, round_up: bool) -> i32 {
    match value {
        IntOrString::Int(n) => *n,
        IntOrString::String(s) => {
            let Some(percent) = s.strip_suffix('%').and_then(|p| p.parse::<i64>().ok()) else {
                return s.parse().unwrap_or(0);
            };
            let scaled = percent * i64::from(total);
            let value = if round_up {
                (scaled + 99).div_euclid(100)
            } else {
                scaled.div_euclid(100)
            };
            i32::try_from(value).unwrap_or(i32::MAX)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentages_scale_against_the_total_and_round_as_asked() {
        let s = |v: &str| IntOrString::String(v.into());
        let cases = [
            ("an int is taken as it is", IntOrString::Int(3), 10, true, 3),
            ("25% of 10 rounded up", s("25%"), 10, true, 3),
            ("25% of 10 rounded down", s("25%"), 10, false, 2),
            ("100% of 7", s("100%"), 7, false, 7),
            ("0% rounded up stays 0", s("0%"), 10, true, 0),
            ("1% of 1 rounded up is 1", s("1%"), 1, true, 1),
            ("a number in a string", s("4"), 10, true, 4),
            ("garbage is 0", s("x%"), 10, true, 0),
        ];
        for (name, value, total, up, want) in cases {
            assert_eq!(scaled_value(&value, total, up), want, "{name}");
        }
    }
}
