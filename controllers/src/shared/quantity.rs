//! Kubernetes quantities ("500m", "1.5Gi", "2e3") as integers, read one way by the
//! scheduler's resource fit and the PersistentVolume binder's size match.

/// Parses a Kubernetes quantity ("500m", "1.5Gi", "2e3", "1k") scaled by `scale`
/// (1000 for millicores, 1 for plain units), rounding up like `Quantity.MilliValue()`.
pub fn parse_quantity(q: &str, scale: i64) -> Option<i64> {
    let q = q.trim();
    let split = q
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
        .unwrap_or(q.len());
    let (num, suffix) = q.split_at(split);
    let value: f64 = num.parse().ok()?;
    let factor: f64 = match suffix {
        "" => 1.0,
        "n" => 1e-9,
        "u" => 1e-6,
        "m" => 1e-3,
        "k" => 1e3,
        "M" => 1e6,
        "G" => 1e9,
        "T" => 1e12,
        "P" => 1e15,
        "E" => 1e18,
        "Ki" => 1024.0,
        "Mi" => 1024f64.powi(2),
        "Gi" => 1024f64.powi(3),
        "Ti" => 1024f64.powi(4),
        "Pi" => 1024f64.powi(5),
        "Ei" => 1024f64.powi(6),
        s if s.starts_with(['e', 'E']) => 10f64.powi(s[1..].parse().ok()?),
        _ => return None,
    };
    // 1e-9 absorbs binary noise ("0.1" * 1000 = 100.00000000000001 must stay 100).
    let scaled = value * factor * scale as f64;
    Some(
        (scaled - 1e-9)
            .ceil()
            .max(if scaled > 0.0 { 1.0 } else { scaled.ceil() }) as i64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_with_every_suffix() {
        let cases = [
            ("plain cores", "2", 1000, 2000),
            ("millicores", "500m", 1000, 500),
            (
                "nanocores as metrics.k8s.io writes them",
                "250000000n",
                1000,
                250,
            ),
            ("microcores", "1500u", 1000, 2),
            ("fractional cores", "0.1", 1000, 100),
            ("decimal kilo", "1k", 1, 1000),
            ("decimal giga", "2G", 1, 2_000_000_000),
            ("binary mebi", "1Mi", 1, 1 << 20),
            ("binary gibi fraction", "1.5Gi", 1, 3 << 29),
            ("binary exbi", "1Ei", 1, 1 << 60),
            ("e notation", "2e3", 1, 2000),
            ("capital E notation", "1E2", 1, 100),
            ("tiny millicore rounds up", "0.0001", 1000, 1),
        ];
        for (name, q, scale, want) in cases {
            assert_eq!(parse_quantity(q, scale), Some(want), "{name}");
        }
        assert_eq!(parse_quantity("12x", 1), None, "unknown suffix");
    }
}
