//! A namespace's Pod Security policy from its `pod-security.kubernetes.io/*` labels, as
//! upstream's `api.PolicyToEvaluate`: a level (privileged, baseline, restricted) and a
//! version (`latest` or `v1.x`) for each of enforce, audit and warn.

use std::collections::BTreeMap;
use std::fmt;

use crate::status::Cause;

pub(super) const ENFORCE_LEVEL: &str = "pod-security.kubernetes.io/enforce";
pub(super) const ENFORCE_VERSION: &str = "pod-security.kubernetes.io/enforce-version";
pub(super) const AUDIT_LEVEL: &str = "pod-security.kubernetes.io/audit";
pub(super) const AUDIT_VERSION: &str = "pod-security.kubernetes.io/audit-version";
pub(super) const WARN_LEVEL: &str = "pod-security.kubernetes.io/warn";
pub(super) const WARN_VERSION: &str = "pod-security.kubernetes.io/warn-version";

/// How strict a policy is; the order is strictness.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Level {
    Privileged,
    Baseline,
    Restricted,
}

impl Level {
    /// Upstream's `ParseLevel`: an unknown value is an error, and restricted.
    fn parse(s: &str) -> Result<Level, &'static str> {
        match s {
            "privileged" => Ok(Level::Privileged),
            "baseline" => Ok(Level::Baseline),
            "restricted" => Ok(Level::Restricted),
            _ => Err("must be one of privileged, baseline, restricted"),
        }
    }

    pub(super) fn as_str(self) -> &'static str {
        match self {
            Level::Privileged => "privileged",
            Level::Baseline => "baseline",
            Level::Restricted => "restricted",
        }
    }
}

/// A policy version: `v1.<minor>`, or `latest` (newer than any number).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(super) enum Version {
    Minor(u32),
    Latest,
}

impl Version {
    /// Upstream's `ParseVersion`: `latest` or `v1.x` (no leading zeros); anything else
    /// is an error, and latest.
    fn parse(s: &str) -> Result<Version, &'static str> {
        const WRONG: &str = "must be \"latest\" or \"v1.x\"";
        if s == "latest" {
            return Ok(Version::Latest);
        }
        let digits = s.strip_prefix("v1.").ok_or(WRONG)?;
        let well_formed = !digits.is_empty()
            && digits.bytes().all(|b| b.is_ascii_digit())
            && (digits == "0" || !digits.starts_with('0'));
        if !well_formed {
            return Err(WRONG);
        }
        digits.parse().map(Version::Minor).map_err(|_| WRONG)
    }
}

impl fmt::Display for Version {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Version::Minor(m) => write!(f, "v1.{m}"),
            Version::Latest => f.write_str("latest"),
        }
    }
}

/// One mode's level and version, shown as `restricted:latest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub(super) struct LevelVersion {
    pub(super) level: Level,
    pub(super) version: Version,
}

impl LevelVersion {
    pub(super) const PRIVILEGED_LATEST: LevelVersion = LevelVersion {
        level: Level::Privileged,
        version: Version::Latest,
    };
}

impl fmt::Display for LevelVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.level.as_str(), self.version)
    }
}

/// The three modes of a namespace's policy.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct Policy {
    pub(super) enforce: LevelVersion,
    pub(super) audit: LevelVersion,
    pub(super) warn: LevelVersion,
}

impl Default for Policy {
    /// Upstream's default configuration: privileged:latest for every mode (kybern
    /// configures no other defaults and no exemptions).
    fn default() -> Self {
        Policy {
            enforce: LevelVersion::PRIVILEGED_LATEST,
            audit: LevelVersion::PRIVILEGED_LATEST,
            warn: LevelVersion::PRIVILEGED_LATEST,
        }
    }
}

impl Policy {
    pub(super) fn fully_privileged(&self) -> bool {
        [self.enforce, self.audit, self.warn]
            .iter()
            .all(|lv| lv.level == Level::Privileged)
    }

    /// The policy the labels ask for, always a usable one, and one `Invalid` cause per
    /// label value that cannot be parsed. As upstream: a bad enforce level enforces
    /// restricted, a bad audit or warn level fails open to privileged, a bad version is
    /// latest; warn follows a stricter enforce level unless warn is labelled itself.
    pub(super) fn from_labels(labels: &BTreeMap<String, String>) -> (Policy, Vec<Cause>) {
        let mut p = Policy::default();
        let mut errors = Vec::new();
        let mut note = |label: &str, value: &str, why: &str| {
            errors.push(Cause::invalid(
                format!("metadata.labels[{label}]"),
                value,
                why,
            ));
        };
        let mut has_enforce_level = false;
        if let Some(v) = labels.get(ENFORCE_LEVEL) {
            match Level::parse(v) {
                Ok(l) => {
                    p.enforce.level = l;
                    has_enforce_level = true;
                }
                Err(why) => {
                    p.enforce.level = Level::Restricted;
                    note(ENFORCE_LEVEL, v, why);
                }
            }
        }
        if let Some(v) = labels.get(ENFORCE_VERSION) {
            p.enforce.version = Version::parse(v).unwrap_or_else(|why| {
                note(ENFORCE_VERSION, v, why);
                Version::Latest
            });
        }
        if let Some(v) = labels.get(AUDIT_LEVEL) {
            p.audit.level = Level::parse(v).unwrap_or_else(|why| {
                note(AUDIT_LEVEL, v, why);
                Level::Privileged
            });
        }
        if let Some(v) = labels.get(AUDIT_VERSION) {
            p.audit.version = Version::parse(v).unwrap_or_else(|why| {
                note(AUDIT_VERSION, v, why);
                Version::Latest
            });
        }
        let has_warn_level = labels.contains_key(WARN_LEVEL);
        if let Some(v) = labels.get(WARN_LEVEL) {
            p.warn.level = Level::parse(v).unwrap_or_else(|why| {
                note(WARN_LEVEL, v, why);
                Level::Privileged
            });
        }
        let has_warn_version = labels.contains_key(WARN_VERSION);
        if let Some(v) = labels.get(WARN_VERSION) {
            p.warn.version = Version::parse(v).unwrap_or_else(|why| {
                note(WARN_VERSION, v, why);
                Version::Latest
            });
        }
        if !has_warn_level && has_enforce_level && p.enforce.level > p.warn.level {
            p.warn.level = p.enforce.level;
            if !has_warn_version {
                p.warn.version = p.enforce.version;
            }
        }
        (p, errors)
    }
}
