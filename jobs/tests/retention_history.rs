//! Retention on a synthetic history: 400 days of nightly backups, extra
//! manual backups on some days, days without any, and failed backups in
//! between, checked for several policies (alone and together) against an
//! independent implementation of the rules written here, bucket by bucket
//! rather than in one newest-first walk.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, Datelike, Duration, TimeZone, Utc};
use sluice_jobs::retention::{to_delete, Rules};

#[derive(Clone, Copy, PartialEq)]
enum Status {
    Completed,
    Failed,
}

/// (id, taken at, status), oldest first.
fn history(now: DateTime<Utc>) -> Vec<(i64, DateTime<Utc>, Status)> {
    let mut out = Vec::new();
    let mut id = 0;
    for day in (0..400).rev() {
        let date = now - Duration::days(day) - Duration::hours(20);
        // Every 13th day has no backup at all.
        if day % 13 == 5 {
            continue;
        }
        id += 1;
        let status = if day % 17 == 3 {
            Status::Failed
        } else {
            Status::Completed
        };
        out.push((id, date + Duration::minutes(day % 7), status));
        // Every 9th day a second, later manual backup; every 31st a failed retry.
        if day % 9 == 0 {
            id += 1;
            out.push((id, date + Duration::hours(6), Status::Completed));
        }
        if day % 31 == 0 {
            id += 1;
            out.push((id, date + Duration::hours(7), Status::Failed));
        }
    }
    out
}

/// The n most recent buckets that hold a backup, and each one's newest.
fn newest_per_bucket<K: Ord + Copy>(
    backups: &[(i64, DateTime<Utc>)],
    key: impl Fn(&DateTime<Utc>) -> K,
    n: usize,
) -> BTreeSet<i64> {
    let mut best: BTreeMap<K, (DateTime<Utc>, i64)> = BTreeMap::new();
    for (id, t) in backups {
        let e = best.entry(key(t)).or_insert((*t, *id));
        if *t > e.0 {
            *e = (*t, *id);
        }
    }
    best.values().rev().take(n).map(|(_, id)| *id).collect()
}

/// What a policy keeps, computed independently of the crate.
fn expected_kept(r: &Rules, backups: &[(i64, DateTime<Utc>)], now: DateTime<Utc>) -> BTreeSet<i64> {
    let n = |v: Option<i32>| v.unwrap_or(0).max(0) as usize;
    if [
        r.keep_last_n,
        r.keep_days,
        r.keep_daily,
        r.keep_weekly,
        r.keep_monthly,
    ]
    .iter()
    .all(|v| n(*v) == 0)
    {
        return backups.iter().map(|(id, _)| *id).collect();
    }
    let mut kept = BTreeSet::new();
    let mut by_time: Vec<_> = backups.to_vec();
    by_time.sort_by_key(|(_, t)| std::cmp::Reverse(*t));
    kept.extend(by_time.iter().take(n(r.keep_last_n)).map(|(id, _)| *id));
    if n(r.keep_days) > 0 {
        let since = now - Duration::days(n(r.keep_days) as i64);
        kept.extend(
            backups
                .iter()
                .filter(|(_, t)| *t > since)
                .map(|(id, _)| *id),
        );
    }
    kept.extend(newest_per_bucket(
        backups,
        |t| (t.year(), t.ordinal()),
        n(r.keep_daily),
    ));
    kept.extend(newest_per_bucket(
        backups,
        |t| (t.iso_week().year(), t.iso_week().week()),
        n(r.keep_weekly),
    ));
    kept.extend(newest_per_bucket(
        backups,
        |t| (t.year(), t.month()),
        n(r.keep_monthly),
    ));
    kept
}

fn rules(last: i32, days: i32, daily: i32, weekly: i32, monthly: i32) -> Rules {
    let on = |v: i32| (v > 0).then_some(v);
    Rules {
        keep_last_n: on(last),
        keep_days: on(days),
        keep_daily: on(daily),
        keep_weekly: on(weekly),
        keep_monthly: on(monthly),
    }
}

#[test]
fn four_hundred_days_of_backups_keep_exactly_what_the_policies_say() {
    let now = Utc.with_ymd_and_hms(2026, 11, 30, 12, 0, 0).unwrap();
    let all = history(now);
    assert!(all.len() > 400, "{}", all.len());
    let failed: BTreeSet<i64> = all
        .iter()
        .filter(|(_, _, s)| *s == Status::Failed)
        .map(|(id, _, _)| *id)
        .collect();
    assert!(!failed.is_empty());
    // The sweep offers completed backups only (failed ones never count and
    // are never deleted by retention).
    let completed: Vec<(i64, DateTime<Utc>)> = all
        .iter()
        .filter(|(_, _, s)| *s == Status::Completed)
        .map(|(id, t, _)| (*id, *t))
        .collect();

    let policies = [
        rules(7, 0, 0, 0, 0),
        rules(0, 30, 0, 0, 0),
        rules(0, 0, 7, 4, 12),
        rules(3, 0, 10, 0, 6),
        rules(0, 0, 0, 52, 0),
        rules(0, 0, 0, 0, 24),
        rules(1, 1, 1, 1, 1),
        rules(0, 0, 500, 0, 0),
        rules(0, 0, 0, 0, 0),
    ];
    for p in &policies {
        let expected: BTreeSet<i64> = completed
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !expected_kept(p, &completed, now).contains(id))
            .collect();
        let got: BTreeSet<i64> = to_delete(&[*p], &completed, now).into_iter().collect();
        assert_eq!(got, expected, "policy {p:?}");
        assert!(
            got.is_disjoint(&failed),
            "a failed backup offered for deletion"
        );
    }
    // Several policies on one database: a backup any of them keeps stays.
    for pair in policies.windows(2) {
        let keep_any: BTreeSet<i64> = pair
            .iter()
            .flat_map(|p| expected_kept(p, &completed, now))
            .collect();
        let expected: BTreeSet<i64> = completed
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !keep_any.contains(id))
            .collect();
        let got: BTreeSet<i64> = to_delete(pair, &completed, now).into_iter().collect();
        assert_eq!(got, expected, "policies {pair:?}");
    }
    // Spot checks of the counts, from the calendar itself.
    let kept_daily = expected_kept(&rules(0, 0, 7, 0, 0), &completed, now);
    assert_eq!(kept_daily.len(), 7);
    let kept_monthly = expected_kept(&rules(0, 0, 0, 0, 12), &completed, now);
    assert_eq!(kept_monthly.len(), 12);
}
