//! Which backups a retention policy keeps: restic's `forget` rules,
//! as pure functions of the backups' times (no I/O; the sweep job and the
//! dry run apply them).
//!
//! - The rules are independent and a backup kept by any of them stays.
//! - `keep_last_n`: the n newest backups.
//! - `keep_days`: every backup taken less than n days before `now`
//!   (restic's `--keep-within` counts from the newest snapshot instead).
//! - `keep_daily` / `keep_weekly` / `keep_monthly`: the newest backup of
//!   each of the n most recent UTC days / ISO weeks / months that have a
//!   backup (a day without one does not use up the count).
//! - A rule of 0 or absent does nothing; a policy without any rule keeps
//!   everything (deleting every backup is never what a blank policy means).
//! - Only completed backups are handed in: the caller never offers a
//!   failed or running backup for deletion.

use std::collections::BTreeMap;

use chrono::{DateTime, Datelike, Duration, Utc};

/// The calendar bucket (day, ISO week or month) of a backup's time.
type Bucket = fn(&DateTime<Utc>) -> (i32, u32, u32);

/// The keep rules of a policy (`None` or 0: the rule is off).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rules {
    pub keep_last_n: Option<i32>,
    pub keep_days: Option<i32>,
    pub keep_daily: Option<i32>,
    pub keep_weekly: Option<i32>,
    pub keep_monthly: Option<i32>,
}

/// Why a backup is kept.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Reason {
    LastN,
    Days,
    Daily,
    Weekly,
    Monthly,
    /// The policy has no rule: everything is kept.
    NoRule,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::LastN => "keep_last_n",
            Reason::Days => "keep_days",
            Reason::Daily => "keep_daily",
            Reason::Weekly => "keep_weekly",
            Reason::Monthly => "keep_monthly",
            Reason::NoRule => "no_rule",
        }
    }
}

fn count(n: Option<i32>) -> usize {
    n.map(|n| usize::try_from(n).unwrap_or(0)).unwrap_or(0)
}

impl Rules {
    /// True when no rule is on.
    pub fn is_empty(&self) -> bool {
        [
            self.keep_last_n,
            self.keep_days,
            self.keep_daily,
            self.keep_weekly,
            self.keep_monthly,
        ]
        .iter()
        .all(|r| count(*r) == 0)
    }

    /// For each backup (an id and its time), the rules that keep it;
    /// a backup absent from the answer is kept by none.
    pub fn keep(
        &self,
        backups: &[(i64, DateTime<Utc>)],
        now: DateTime<Utc>,
    ) -> BTreeMap<i64, Vec<Reason>> {
        let mut kept: BTreeMap<i64, Vec<Reason>> = BTreeMap::new();
        if self.is_empty() {
            for (id, _) in backups {
                kept.insert(*id, vec![Reason::NoRule]);
            }
            return kept;
        }
        // Newest first; ties by id, the later one newer.
        let mut sorted: Vec<(i64, DateTime<Utc>)> = backups.to_vec();
        sorted.sort_by(|a, b| b.1.cmp(&a.1).then(b.0.cmp(&a.0)));

        let mut add = |id: i64, r: Reason| kept.entry(id).or_default().push(r);
        for (id, _) in sorted.iter().take(count(self.keep_last_n)) {
            add(*id, Reason::LastN);
        }
        if count(self.keep_days) > 0 {
            let since = now - Duration::days(i64::from(self.keep_days.unwrap_or(0)));
            for (id, t) in &sorted {
                if *t > since {
                    add(*id, Reason::Days);
                }
            }
        }
        let buckets: [(Reason, Option<i32>, Bucket); 3] = [
            (Reason::Daily, self.keep_daily, |t| {
                (t.year(), t.month(), t.day())
            }),
            (Reason::Weekly, self.keep_weekly, |t| {
                let w = t.iso_week();
                (w.year(), w.week(), 0)
            }),
            (Reason::Monthly, self.keep_monthly, |t| {
                (t.year(), t.month(), 0)
            }),
        ];
        for (reason, n, bucket) in buckets {
            let mut left = count(n);
            let mut last = None;
            for (id, t) in &sorted {
                if left == 0 {
                    break;
                }
                let b = bucket(t);
                if last != Some(b) {
                    add(*id, reason);
                    last = Some(b);
                    left -= 1;
                }
            }
        }
        kept
    }
}

/// The ids of `backups` that none of `policies` keeps (for a database
/// whose schedules name several policies, a backup any of them keeps
/// stays).
pub fn to_delete(
    policies: &[Rules],
    backups: &[(i64, DateTime<Utc>)],
    now: DateTime<Utc>,
) -> Vec<i64> {
    if policies.is_empty() {
        return Vec::new();
    }
    let mut kept = std::collections::BTreeSet::new();
    for p in policies {
        kept.extend(p.keep(backups, now).into_keys());
    }
    let mut out: Vec<i64> = backups
        .iter()
        .map(|(id, _)| *id)
        .filter(|id| !kept.contains(id))
        .collect();
    out.sort_unstable();
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    /// Backups with ids 1.. in the order given.
    fn backups(times: &[&str]) -> Vec<(i64, DateTime<Utc>)> {
        times
            .iter()
            .enumerate()
            .map(|(i, s)| (i as i64 + 1, t(s)))
            .collect()
    }

    fn kept_ids(r: &Rules, b: &[(i64, DateTime<Utc>)], now: &str) -> Vec<i64> {
        r.keep(b, t(now)).into_keys().collect()
    }

    /// One backup a day at 02:00 from 2024-01-01 to 2024-03-31 (ids 1..=91).
    fn daily_quarter() -> Vec<(i64, DateTime<Utc>)> {
        let start = t("2024-01-01T02:00:00Z");
        (0..91)
            .map(|d| (d + 1, start + Duration::days(d)))
            .collect()
    }

    #[test]
    fn table() {
        let now = "2024-04-01T00:00:00Z";
        let q = daily_quarter();
        struct Case {
            name: &'static str,
            rules: Rules,
            kept: Vec<i64>,
        }
        let cases = vec![
            Case {
                name: "last 3",
                rules: Rules {
                    keep_last_n: Some(3),
                    ..Default::default()
                },
                kept: vec![89, 90, 91],
            },
            Case {
                name: "last more than there are",
                rules: Rules {
                    keep_last_n: Some(500),
                    ..Default::default()
                },
                kept: (1..=91).collect(),
            },
            Case {
                name: "days 7 (newer than now - 7 days)",
                rules: Rules {
                    keep_days: Some(7),
                    ..Default::default()
                },
                kept: vec![85, 86, 87, 88, 89, 90, 91],
            },
            Case {
                name: "daily 5",
                rules: Rules {
                    keep_daily: Some(5),
                    ..Default::default()
                },
                kept: vec![87, 88, 89, 90, 91],
            },
            Case {
                // ISO weeks: 2024-03-31 is a Sunday, so the newest week is
                // Mon 25 .. Sun 31 (newest: 31 = id 91), then the Sundays
                // before it.
                name: "weekly 3",
                rules: Rules {
                    keep_weekly: Some(3),
                    ..Default::default()
                },
                kept: vec![77, 84, 91],
            },
            Case {
                name: "monthly 2: the last backup of March and of February",
                rules: Rules {
                    keep_monthly: Some(2),
                    ..Default::default()
                },
                kept: vec![60, 91],
            },
            Case {
                name: "monthly 12 with only three months",
                rules: Rules {
                    keep_monthly: Some(12),
                    ..Default::default()
                },
                kept: vec![31, 60, 91],
            },
            Case {
                name: "rules are independent and add up",
                rules: Rules {
                    keep_last_n: Some(2),
                    keep_daily: Some(3),
                    keep_weekly: Some(2),
                    keep_monthly: Some(3),
                    ..Default::default()
                },
                kept: vec![31, 60, 84, 89, 90, 91],
            },
            Case {
                name: "zero is no rule",
                rules: Rules {
                    keep_last_n: Some(0),
                    keep_daily: Some(1),
                    ..Default::default()
                },
                kept: vec![91],
            },
            Case {
                name: "no rule keeps everything",
                rules: Rules::default(),
                kept: (1..=91).collect(),
            },
            Case {
                name: "all zero keeps everything",
                rules: Rules {
                    keep_last_n: Some(0),
                    keep_days: Some(0),
                    ..Default::default()
                },
                kept: (1..=91).collect(),
            },
        ];
        for c in cases {
            assert_eq!(kept_ids(&c.rules, &q, now), c.kept, "{}", c.name);
        }
    }

    #[test]
    fn days_without_backups_do_not_use_up_the_count() {
        // restic: "--keep-daily n: for the last n days which have one or
        // more snapshots, only keep the last one for that day".
        let b = backups(&[
            "2024-01-01T01:00:00Z",
            "2024-01-01T23:00:00Z", // newest of Jan 1
            "2024-01-05T10:00:00Z",
            "2024-01-05T11:00:00Z", // newest of Jan 5
            "2024-01-20T08:00:00Z", // newest of Jan 20
        ]);
        let daily = Rules {
            keep_daily: Some(2),
            ..Default::default()
        };
        assert_eq!(kept_ids(&daily, &b, "2024-06-01T00:00:00Z"), vec![4, 5]);
        let daily = Rules {
            keep_daily: Some(3),
            ..Default::default()
        };
        assert_eq!(kept_ids(&daily, &b, "2024-06-01T00:00:00Z"), vec![2, 4, 5]);
    }

    #[test]
    fn reasons_are_reported_per_backup() {
        let b = backups(&["2024-01-01T01:00:00Z", "2024-01-02T01:00:00Z"]);
        let r = Rules {
            keep_last_n: Some(1),
            keep_daily: Some(2),
            ..Default::default()
        };
        let k = r.keep(&b, t("2024-01-03T00:00:00Z"));
        assert_eq!(k[&2], vec![Reason::LastN, Reason::Daily]);
        assert_eq!(k[&1], vec![Reason::Daily]);
    }

    #[test]
    fn iso_weeks_cross_years() {
        // 2024-12-30 (Mon) is in ISO week 1 of 2025, with 2025-01-02.
        let b = backups(&[
            "2024-12-29T12:00:00Z",
            "2024-12-30T12:00:00Z",
            "2025-01-02T12:00:00Z",
        ]);
        let r = Rules {
            keep_weekly: Some(2),
            ..Default::default()
        };
        assert_eq!(kept_ids(&r, &b, "2025-01-03T00:00:00Z"), vec![1, 3]);
    }

    #[test]
    fn several_policies_delete_only_what_none_keeps() {
        let q = daily_quarter();
        let now = t("2024-04-01T00:00:00Z");
        let a = Rules {
            keep_last_n: Some(1),
            ..Default::default()
        };
        let b = Rules {
            keep_monthly: Some(3),
            ..Default::default()
        };
        let gone = to_delete(&[a, b], &q, now);
        assert_eq!(gone.len(), 91 - 3);
        assert!(!gone.contains(&31) && !gone.contains(&60) && !gone.contains(&91));
        assert!(to_delete(&[], &q, now).is_empty());
        assert!(to_delete(&[Rules::default()], &q, now).is_empty());
    }
}
