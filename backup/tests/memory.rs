//! Memory stays bounded: a dump several times larger than the allowed
//! growth streams through backup and restore while this process's peak RSS
//! grows by little. Its own test binary, so nothing else runs in the
//! process while it measures.

mod support;

use sluice_backup::{
    run_backup, run_restore, BackupRequest, Compression, EngineKind, Keyring, Local, MaskingRules,
    RestoreRequest,
};
use support::*;

fn status_kb(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

/// Resets the peak RSS (VmHWM) to the current RSS (Linux ≥ 4.0).
fn reset_peak() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

const ALLOWED_GROWTH_MB: u64 = 32;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_dump_streams_in_bounded_memory() {
    let store = TempStore::new();
    let source = PgDb::create();
    // 40,000 rows of 4 KiB text: ~160 MB of dump (TOAST keeps the table
    // itself small on disk).
    pg(
        &source.0,
        "CREATE TABLE big (id int PRIMARY KEY, body text); \
         INSERT INTO big SELECT i, repeat(md5(i::text), 128) FROM generate_series(1, 40000) i",
    );
    let keys = Keyring::new("k1", "memory test").unwrap();

    // No compression, encrypted: every dump byte crosses every stage.
    reset_peak();
    let base = status_kb("VmRSS:");
    let out = run_backup(
        &store.store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            database: &source.0,
            compression: Compression::None,
            encryption: Some(&keys),
            object_key: "big",
            progress: None,
        },
    )
    .await
    .unwrap();
    let backup_growth = status_kb("VmHWM:").saturating_sub(base) / 1024;
    eprintln!(
        "backup: dump {} MB, object {} MB in {:.1} s, peak RSS {} MB, growth {} MB (base {} MB)",
        out.dump_bytes >> 20,
        out.size_bytes >> 20,
        out.duration.as_secs_f64(),
        status_kb("VmHWM:") / 1024,
        backup_growth,
        base / 1024
    );
    assert!(
        out.dump_bytes > 4 * (ALLOWED_GROWTH_MB << 20),
        "dump too small to tell"
    );

    reset_peak();
    let base = status_kb("VmRSS:");
    let target = PgDb::name();
    let restored = run_restore(
        &store.store,
        RestoreRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            target_database: &target.0,
            object_key: "big",
            expected_checksum: &out.checksum,
            compression: Compression::None,
            decryption: Some(&keys),
            progress: None,
            masking: None,
        },
    )
    .await
    .unwrap();
    let restore_growth = status_kb("VmHWM:").saturating_sub(base) / 1024;
    eprintln!(
        "restore: object {} MB in {:.1} s, peak RSS {} MB, growth {} MB (base {} MB)",
        restored.object_bytes >> 20,
        restored.duration.as_secs_f64(),
        status_kb("VmHWM:") / 1024,
        restore_growth,
        base / 1024
    );
    assert_eq!(
        pg_text(&target.0, "SELECT count(*), sum(length(body)) FROM big"),
        "40000|163840000"
    );
    assert!(
        backup_growth < ALLOWED_GROWTH_MB,
        "backup grew RSS by {backup_growth} MB"
    );
    assert!(
        restore_growth < ALLOWED_GROWTH_MB,
        "restore grew RSS by {restore_growth} MB"
    );

    // Masked, the dump also crosses pg_restore's script and the filter.
    let rules = MaskingRules::parse(b"memory key".to_vec(), [("body", "hash")]).unwrap();
    reset_peak();
    let base = status_kb("VmRSS:");
    let masked = PgDb::name();
    run_restore(
        &store.store,
        RestoreRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            target_database: &masked.0,
            object_key: "big",
            expected_checksum: &out.checksum,
            compression: Compression::None,
            decryption: Some(&keys),
            progress: None,
            masking: Some(&rules),
        },
    )
    .await
    .unwrap();
    let masked_growth = status_kb("VmHWM:").saturating_sub(base) / 1024;
    eprintln!("masked restore: growth {masked_growth} MB");
    assert_eq!(
        pg_text(&masked.0, "SELECT count(*), sum(length(body)) FROM big"),
        "40000|1280000"
    );
    assert!(
        masked_growth < ALLOWED_GROWTH_MB,
        "masked restore grew RSS by {masked_growth} MB"
    );

    // The same database is large enough to interrupt a backup midway.
    interrupted_backups_leave_no_object(&store, &source.0, &keys).await;
}

/// A backup whose connection is dropped midway fails as transient; one
/// cancelled midway (its worker gone) leaves nothing under its name, not
/// even the staging file.
async fn interrupted_backups_leave_no_object(store: &TempStore, db: &str, keys: &Keyring) {
    let terminated = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&terminated);
    let db_name = db.to_owned();
    let err = run_backup(
        &store.store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            database: db,
            compression: Compression::Zstd,
            encryption: Some(keys),
            object_key: "dropped",
            progress: Some(std::sync::Arc::new(move |n| {
                if n > 8 << 20 && !flag.swap(true, std::sync::atomic::Ordering::SeqCst) {
                    let db = db_name.clone();
                    std::thread::spawn(move || {
                        pg(
                            "postgres",
                            &format!(
                                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
                                 WHERE datname = '{db}' AND application_name = 'sluice-backup'"
                            ),
                        )
                    });
                }
            })),
        },
    )
    .await
    .unwrap_err();
    eprintln!("dropped connection: {err}");
    assert!(err.is_transient(), "{err}");
    assert!(store.store.size("dropped").await.is_err());

    // Cancelled (its future dropped, as when a worker dies) once 8 MB of
    // dump went through, whatever the machine's speed.
    let midway = std::sync::Arc::new(tokio::sync::Notify::new());
    let signal = std::sync::Arc::clone(&midway);
    let conn = pg_conn();
    let backup = run_backup(
        &store.store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &conn,
            database: db,
            compression: Compression::None,
            encryption: None,
            object_key: "cancelled",
            progress: Some(std::sync::Arc::new(move |n| {
                if n > 8 << 20 {
                    signal.notify_one();
                }
            })),
        },
    );
    tokio::select! {
        r = backup => panic!("the backup ended before it could be cancelled: {r:?}"),
        _ = midway.notified() => {}
    }
    // The staging file is removed on a blocking thread: give it a moment.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    let names: Vec<String> = std::fs::read_dir(&store.dir)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert!(
        names.iter().all(|n| n == "big"),
        "left behind next to the completed backup: {names:?}"
    );
}
