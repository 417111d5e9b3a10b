//! What a CronJob should do now, as a pure function of its spec, status and the clock
//! (upstream's syncCronJob decisions): start the most recent unmet scheduled run,
//! replacing or skipping running Jobs per concurrencyPolicy, or wait.

use k8s_openapi::jiff::tz::TimeZone;
use k8s_openapi::jiff::Timestamp;

use super::schedule::Schedule;

/// More missed runs than this get upstream's "too many missed start times" warning;
/// only the most recent one is started either way.
pub const TOO_MANY_MISSED: usize = 100;

/// What the decision needs to know.
#[derive(Debug, Clone)]
pub struct Inputs<'a> {
    pub now: Timestamp,
    pub schedule: &'a Schedule,
    pub tz: &'a TimeZone,
    /// When the CronJob was created, and when it last started a Job.
    pub created: Timestamp,
    pub last_schedule: Option<Timestamp>,
    pub starting_deadline_seconds: Option<i64>,
    /// "Allow", "Forbid" or "Replace".
    pub concurrency_policy: &'a str,
    pub suspend: bool,
    /// Names of the Jobs in status.active.
    pub active: &'a [String],
    pub name: &'a str,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Nothing to start now; look again at `next`.
    Wait { next: Option<Timestamp> },
    /// Forbid: a Job is still running, so the run at `scheduled` waits.
    Forbidden {
        scheduled: Timestamp,
        next: Option<Timestamp>,
    },
    /// Create the Job for `scheduled` (deleting the active Jobs first when `replace`).
    /// `missed` counts the unmet runs since the last one (capped just past
    /// [`TOO_MANY_MISSED`]).
    Start {
        scheduled: Timestamp,
        replace: bool,
        missed: usize,
        next: Option<Timestamp>,
    },
}

/// The Job name for a run: `<cronjob>-<scheduled time in minutes since the epoch>`.
pub fn job_name(cronjob: &str, scheduled: Timestamp) -> String {
    format!("{cronjob}-{}", scheduled.as_second().div_euclid(60))
}

pub fn decide(i: &Inputs<'_>) -> Decision {
    let next = i.schedule.next(i.now, i.tz);
    if i.suspend {
        return Decision::Wait { next: None };
    }
    // Runs before the last one, or before the startingDeadlineSeconds window, are not
    // wanted: a run missed by more than the deadline is simply not started.
    let mut earliest = i.last_schedule.unwrap_or(i.created);
    if let Some(sds) = i.starting_deadline_seconds {
        let window =
            Timestamp::from_second(i.now.as_second() - sds).unwrap_or(Timestamp::UNIX_EPOCH);
        earliest = earliest.max(window);
    }
    let Some(scheduled) = i.schedule.previous(i.now, earliest, i.tz) else {
        return Decision::Wait { next };
    };
    if i.last_schedule == Some(scheduled)
        || i.active.iter().any(|n| *n == job_name(i.name, scheduled))
    {
        return Decision::Wait { next };
    }
    if i.concurrency_policy == "Forbid" && !i.active.is_empty() {
        return Decision::Forbidden { scheduled, next };
    }
    let mut missed = 0;
    let mut t = earliest;
    while let Some(n) = i.schedule.next(t, i.tz).filter(|n| *n <= i.now) {
        missed += 1;
        if missed > TOO_MANY_MISSED {
            break;
        }
        t = n;
    }
    Decision::Start {
        scheduled,
        replace: i.concurrency_policy == "Replace" && !i.active.is_empty(),
        missed,
        next,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    struct Case {
        name: &'static str,
        now: &'static str,
        last: Option<&'static str>,
        deadline: Option<i64>,
        policy: &'static str,
        suspend: bool,
        active: &'static [&'static str],
        want: Decision,
    }

    fn base(name: &'static str, want: Decision) -> Case {
        Case {
            name,
            now: "2024-01-01T10:05:30Z",
            last: Some("2024-01-01T10:04:00Z"),
            deadline: None,
            policy: "Allow",
            suspend: false,
            active: &[],
            want,
        }
    }

    #[test]
    fn decisions_follow_concurrency_policy_and_deadlines() {
        let t = |s| ts(s);
        let next = Some(t("2024-01-01T10:06:00Z"));
        let start = |replace, missed| Decision::Start {
            scheduled: t("2024-01-01T10:05:00Z"),
            replace,
            missed,
            next,
        };
        let cases = [
            base("allow starts the due run", start(false, 1)),
            Case {
                active: &["cj-28401724"],
                ..base("allow runs beside an active job", start(false, 1))
            },
            Case {
                policy: "Forbid",
                active: &["cj-28401724"],
                ..base(
                    "forbid waits for the active job",
                    Decision::Forbidden {
                        scheduled: t("2024-01-01T10:05:00Z"),
                        next,
                    },
                )
            },
            Case {
                policy: "Forbid",
                ..base("forbid starts when nothing runs", start(false, 1))
            },
            Case {
                policy: "Replace",
                active: &["cj-28401724"],
                ..base("replace deletes the active job", start(true, 1))
            },
            Case {
                policy: "Replace",
                ..base("replace with nothing to replace", start(false, 1))
            },
            Case {
                last: Some("2024-01-01T10:05:00Z"),
                ..base("already started", Decision::Wait { next })
            },
            Case {
                active: &["cj-28401725"],
                last: None,
                ..base("the run's job is already active", Decision::Wait { next })
            },
            Case {
                suspend: true,
                ..base("suspended", Decision::Wait { next: None })
            },
            Case {
                now: "2024-01-01T10:05:50Z",
                deadline: Some(30),
                ..base("missed the starting deadline", Decision::Wait { next })
            },
            Case {
                deadline: Some(60),
                ..base("within the starting deadline", start(false, 1))
            },
            Case {
                last: Some("2024-01-01T10:01:00Z"),
                ..base("three missed runs start only the latest", start(false, 4))
            },
            Case {
                last: Some("2023-12-01T00:00:00Z"),
                ..base("too many missed runs", start(false, TOO_MANY_MISSED + 1))
            },
            Case {
                last: Some("2023-12-01T00:00:00Z"),
                deadline: Some(200),
                ..base("deadline bounds the missed runs", start(false, 3))
            },
        ];
        let schedule = Schedule::parse("* * * * *").unwrap();
        for c in cases {
            let active: Vec<String> = c.active.iter().map(|s| s.to_string()).collect();
            let inputs = Inputs {
                now: t(c.now),
                schedule: &schedule,
                tz: &TimeZone::UTC,
                created: t("2023-01-01T00:00:00Z"),
                last_schedule: c.last.map(t),
                starting_deadline_seconds: c.deadline,
                concurrency_policy: c.policy,
                suspend: c.suspend,
                active: &active,
                name: "cj",
            };
            assert_eq!(decide(&inputs), c.want, "{}", c.name);
        }
    }

    #[test]
    fn a_new_cronjob_waits_for_its_first_time() {
        let schedule = Schedule::parse("0 * * * *").unwrap();
        let inputs = Inputs {
            now: ts("2024-01-01T10:30:00Z"),
            schedule: &schedule,
            tz: &TimeZone::UTC,
            created: ts("2024-01-01T10:20:00Z"),
            last_schedule: None,
            starting_deadline_seconds: None,
            concurrency_policy: "Allow",
            suspend: false,
            active: &[],
            name: "cj",
        };
        assert_eq!(
            decide(&inputs),
            Decision::Wait {
                next: Some(ts("2024-01-01T11:00:00Z"))
            }
        );
    }

    #[test]
    fn job_names_count_minutes_since_the_epoch() {
        assert_eq!(
            job_name("hello", ts("2024-01-01T10:05:00Z")),
            "hello-28401725"
        );
        assert_eq!(job_name("hello", ts("1970-01-01T00:01:59Z")), "hello-1");
    }
}
