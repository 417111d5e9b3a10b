//! Just enough of resource.Quantity for the downward API: a quantity string as an exact
//! count of nano-units, and the rounding upstream's `Value()` and `MilliValue()` apply.

/// `q` in units of 10⁻⁹, rounded up (away from zero) when it has finer digits. `1Ei` is
/// 2⁶⁰ ≈ 1.15e18, so 1.15e27 nano-units, well inside an i128.
pub fn parse_nanos(q: &str) -> Option<i128> {
    let q = q.trim();
    let (negative, rest) = match q.as_bytes().first()? {
        b'-' => (true, &q[1..]),
        b'+' => (false, &q[1..]),
        _ => (false, q),
    };
    let number_len = rest
        .bytes()
        .take_while(|b| b.is_ascii_digit() || *b == b'.')
        .count();
    let (number, suffix) = rest.split_at(number_len);
    let (int_part, frac_part) = number.split_once('.').unwrap_or((number, ""));
    if int_part.is_empty() && frac_part.is_empty() || frac_part.contains('.') {
        return None;
    }
    // mantissa × 10^exp10 × 2^exp2
    let digits = format!("{int_part}{frac_part}");
    let mantissa: i128 = digits.parse().ok()?;
    let mut exp10 = -(frac_part.len() as i32);
    let mut exp2 = 0u32;
    match suffix {
        "" => {}
        "Ki" => exp2 = 10,
        "Mi" => exp2 = 20,
        "Gi" => exp2 = 30,
        "Ti" => exp2 = 40,
        "Pi" => exp2 = 50,
        "Ei" => exp2 = 60,
        "n" => exp10 -= 9,
        "u" => exp10 -= 6,
        "m" => exp10 -= 3,
        "k" => exp10 += 3,
        "M" => exp10 += 6,
        "G" => exp10 += 9,
        "T" => exp10 += 12,
        "P" => exp10 += 15,
        "E" => exp10 += 18,
        s if s.starts_with(['e', 'E']) => exp10 += s[1..].parse::<i32>().ok()?,
        _ => return None,
    }
    let mut value = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
    let scale = exp10 + 9;
    if scale >= 0 {
        value = value.checked_mul(10i128.checked_pow(scale as u32)?)?;
    } else {
        let divisor = 10i128.checked_pow(scale.unsigned_abs())?;
        value = ceil_div(value, divisor);
    }
    Some(if negative { -value } else { value })
}

/// ⌈a / b⌉ for positive `b`.
pub fn ceil_div(a: i128, b: i128) -> i128 {
    let q = a / b;
    if a % b != 0 && a > 0 {
        q + 1
    } else {
        q
    }
}

/// A CPU quantity divided by a divisor as upstream does it: both as milli-units (rounded
/// up), the quotient rounded up. `250m` / `1` is 1; `250m` / `1m` is 250.
pub fn divide_cpu(value_nanos: i128, divisor_nanos: i128) -> Option<i128> {
    let milli = |n: i128| ceil_div(n, 1_000_000);
    let d = milli(divisor_nanos);
    (d > 0).then(|| ceil_div(milli(value_nanos), d))
}

/// A memory (or storage) quantity divided by a divisor: both as whole units (rounded up),
/// the quotient rounded up. `128Mi` / `1Mi` is 128; `1G` / `1Gi` is 1.
pub fn divide_units(value_nanos: i128, divisor_nanos: i128) -> Option<i128> {
    let units = |n: i128| ceil_div(n, 1_000_000_000);
    let d = units(divisor_nanos);
    (d > 0).then(|| ceil_div(units(value_nanos), d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_quantities_in_every_suffix_family() {
        let cases = [
            ("plain integer", "2", Some(2_000_000_000)),
            ("milli", "250m", Some(250_000_000)),
            ("decimal fraction", "0.5", Some(500_000_000)),
            ("binary", "1Ki", Some(1024 * 1_000_000_000)),
            ("decimal SI", "1k", Some(1_000_000_000_000)),
            ("exponent", "1e3", Some(1_000_000_000_000)),
            ("nano", "7n", Some(7)),
            ("finer than nano rounds up", "0.0000000001", Some(1)),
            ("negative", "-1m", Some(-1_000_000)),
            ("unknown suffix", "1Q", None),
            ("empty", "", None),
            ("two dots", "1.2.3", None),
        ];
        for (name, q, want) in cases {
            assert_eq!(parse_nanos(q), want, "{name}: {q}");
        }
    }

    #[test]
    fn divides_resources_as_upstream_rounds() {
        let n = |q| parse_nanos(q).unwrap();
        let cpu = [
            ("half a CPU rounds up to one", "500m", "1", 1),
            ("millicores", "500m", "1m", 500),
            ("two CPUs", "2", "1", 2),
            ("1.5 CPUs in units of 100m", "1500m", "100m", 15),
            ("a CPU in 300m units rounds up", "1", "300m", 4),
        ];
        for (name, value, divisor, want) in cpu {
            assert_eq!(divide_cpu(n(value), n(divisor)), Some(want), "{name}");
        }
        let memory = [
            ("bytes", "128Mi", "1", 134_217_728),
            ("mebibytes", "128Mi", "1Mi", 128),
            ("1G in Gi rounds up", "1G", "1Gi", 1),
            ("1Gi in M rounds up", "1Gi", "1M", 1074),
            ("kilobytes", "64k", "1k", 64),
        ];
        for (name, value, divisor, want) in memory {
            assert_eq!(divide_units(n(value), n(divisor)), Some(want), "{name}");
        }
        assert_eq!(divide_cpu(n("1"), 0), None, "a zero divisor is refused");
    }
}
