//! Kubernetes quantities as exact integers of thousandths ("500m" is 500, "1Gi" is
//! 1073741824000), with upstream's canonical text, for the sums and comparisons of
//! ResourceQuota and LimitRange.

use std::cmp::Ordering;
use std::fmt;

/// A quantity in thousandths of its unit, remembering whether it was written with a
/// binary suffix (so sums of memory print as `Mi`, as upstream's keep their format).
#[derive(Clone, Copy, Debug, Default)]
pub struct Quantity {
    pub milli: i128,
    pub binary: bool,
}

impl PartialEq for Quantity {
    fn eq(&self, other: &Self) -> bool {
        self.milli == other.milli
    }
}

impl Eq for Quantity {}

impl PartialOrd for Quantity {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for Quantity {
    fn cmp(&self, other: &Self) -> Ordering {
        self.milli.cmp(&other.milli)
    }
}

impl Quantity {
    pub fn count(n: i128) -> Self {
        Quantity {
            milli: n * 1000,
            binary: false,
        }
    }

    /// Parses "2", "500m", "1.5Gi", "2e3"; thousandths are rounded up, as upstream
    /// rounds what it cannot represent.
    pub fn parse(s: &str) -> Option<Self> {
        let s = s.trim();
        let split = s
            .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '+' || c == '-'))
            .unwrap_or(s.len());
        let (num, suffix) = s.split_at(split);
        let (negative, num) = match num.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, num.strip_prefix('+').unwrap_or(num)),
        };
        let (whole, frac) = num.split_once('.').unwrap_or((num, ""));
        if whole.is_empty() && frac.is_empty() {
            return None;
        }
        let digits = format!("{whole}{frac}");
        if !digits.chars().all(|c| c.is_ascii_digit()) || digits.len() > 30 {
            return None;
        }
        let mantissa: i128 = digits.parse().ok()?;
        // value = mantissa * 10^exp10 * 1024^exp2, in thousandths.
        let mut exp10 = 3 - frac.len() as i32;
        let mut exp2 = 0u32;
        let mut binary = false;
        match suffix {
            "" => {}
            "n" => exp10 -= 9,
            "u" => exp10 -= 6,
            "m" => exp10 -= 3,
            "k" => exp10 += 3,
            "M" => exp10 += 6,
            "G" => exp10 += 9,
            "T" => exp10 += 12,
            "P" => exp10 += 15,
            "E" => exp10 += 18,
            "Ki" | "Mi" | "Gi" | "Ti" | "Pi" | "Ei" => {
                binary = true;
                exp2 = 10 * (1 + "KMGTPE".find(&suffix[..1])? as u32);
            }
            e if e.starts_with(['e', 'E']) => exp10 += e[1..].parse::<i32>().ok()?,
            _ => return None,
        }
        let mut v = mantissa.checked_mul(1i128.checked_shl(exp2)?)?;
        if exp10 >= 0 {
            v = v.checked_mul(10i128.checked_pow(exp10 as u32)?)?;
        } else {
            let d = 10i128.checked_pow((-exp10) as u32)?;
            v = (v + d - 1) / d;
        }
        Some(Quantity {
            milli: if negative { -v } else { v },
            binary,
        })
    }
}

impl std::ops::Add for Quantity {
    type Output = Quantity;

    fn add(self, other: Quantity) -> Quantity {
        Quantity {
            milli: self.milli + other.milli,
            binary: if self.milli == 0 {
                other.binary
            } else {
                self.binary
            },
        }
    }
}

impl std::ops::Sub for Quantity {
    type Output = Quantity;

    fn sub(self, other: Quantity) -> Quantity {
        Quantity {
            milli: self.milli - other.milli,
            binary: self.binary,
        }
    }
}

impl fmt::Display for Quantity {
    /// Upstream's canonical form: `500m`, `1`, `2k`, `128Mi`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.milli % 1000 != 0 {
            return write!(f, "{}m", self.milli);
        }
        let v = self.milli / 1000;
        if v == 0 {
            return write!(f, "0");
        }
        if self.binary && v.abs() >= 1024 && v % 1024 == 0 {
            let mut n = v;
            let mut i = 0;
            while i < 6 && n % 1024 == 0 {
                n /= 1024;
                i += 1;
            }
            return write!(f, "{n}{}i", &"KMGTPE"[i - 1..i]);
        }
        let mut n = v;
        let mut i = 0;
        while i < 6 && n % 1000 == 0 {
            n /= 1000;
            i += 1;
        }
        let suffix = ["", "k", "M", "G", "T", "P", "E"][i];
        write!(f, "{n}{suffix}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantities_parse_to_thousandths_and_print_canonically() {
        let cases = [
            ("plain cores", "2", 2000, "2"),
            ("millicores", "500m", 500, "500m"),
            ("fractional cores", "1.5", 1500, "1500m"),
            ("thousand millicores are one core", "1000m", 1000, "1"),
            ("mebibytes", "128Mi", (128 << 20) * 1000, "128Mi"),
            (
                "one and a half gibibytes",
                "1.5Gi",
                (1536 << 20) * 1000,
                "1536Mi",
            ),
            ("decimal kilo", "2k", 2_000_000, "2k"),
            ("plain bytes below a kibibyte", "1000", 1_000_000, "1k"),
            ("e notation", "2e3", 2_000_000, "2k"),
            ("nanos round up", "1n", 1, "1m"),
            ("zero", "0", 0, "0"),
        ];
        for (name, text, milli, canonical) in cases {
            let q = Quantity::parse(text).unwrap_or_else(|| panic!("{name}: parses"));
            assert_eq!(q.milli, milli, "{name}");
            assert_eq!(q.to_string(), canonical, "{name}");
        }
        assert!(Quantity::parse("12x").is_none(), "unknown suffix");
        assert!(Quantity::parse("").is_none(), "empty");
    }
}
