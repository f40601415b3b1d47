//! Round trips against the real PostgreSQL and MariaDB: back up a seeded
//! database with each compression, with and without encryption, restore it
//! into a new database and compare every row; and the failures that must
//! leave a restore's target exactly as it was.

mod support;

use std::process::Command;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use sluice_backup::{
    run_backup, run_restore, BackupError, BackupOutcome, BackupRequest, Compression, Connection,
    EngineKind, ErrorClass, Keyring, Local, RestoreRequest, ToolFailure,
};
use support::*;

fn keyring() -> Keyring {
    Keyring::new("k1", "test secret key").unwrap()
}

async fn backup(
    store: &TempStore,
    kind: EngineKind,
    conn: &Connection,
    db: &str,
    compression: Compression,
    keys: Option<&Keyring>,
    key: &str,
) -> Result<BackupOutcome, BackupError> {
    run_backup(
        &store.store,
        BackupRequest {
            engine: kind.engine(),
            transport: &Local,
            connection: conn,
            database: db,
            compression,
            encryption: keys,
            object_key: key,
            progress: None,
        },
    )
    .await
}

#[allow(clippy::too_many_arguments)]
async fn restore(
    store: &TempStore,
    kind: EngineKind,
    conn: &Connection,
    target: &str,
    key: &str,
    checksum: &str,
    compression: Compression,
    keys: Option<&Keyring>,
) -> Result<(), BackupError> {
    run_restore(
        &store.store,
        RestoreRequest {
            engine: kind.engine(),
            transport: &Local,
            connection: conn,
            target_database: target,
            object_key: key,
            expected_checksum: checksum,
            compression,
            decryption: keys,
            progress: None,
            masking: None,
        },
    )
    .await
    .map(drop)
}

/// `sha256sum`'s own answer for a stored object.
fn sha256sum(path: &std::path::Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    format!("sha256:{}", text.split_whitespace().next().unwrap())
}

/// Checks what the stored object looks like, its size and checksum.
fn check_object(store: &TempStore, out: &BackupOutcome, compression: Compression, encrypted: bool) {
    let path = store.store.local_path(&out.object_key).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(bytes.len() as u64, out.size_bytes);
    assert_eq!(sha256sum(&path), out.checksum);
    assert!(out.checksum.starts_with("sha256:") && out.checksum.len() == 71);
    assert_eq!(out.storage_url, format!("file://{}", path.display()));
    assert!(out.dump_bytes > 500_000, "dump of {} bytes", out.dump_bytes);
    if encrypted {
        assert!(bytes.starts_with(b"SLUICEBK"));
        // Long needles only: a 3- or 4-byte compression magic turns up by
        // chance in half a megabyte of ciphertext (about 3 % of runs for
        // gzip's), so the frames are not looked for here.
        for needle in [
            &b"customers"[..],
            b"example.com",
            b"INSERT INTO",
            b"COPY public.",
        ] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle),
                "{needle:?} visible"
            );
        }
        return;
    }
    match compression {
        Compression::None => assert!(bytes.windows(9).any(|w| w == b"customers")),
        Compression::Gzip => {
            assert_eq!(&bytes[..2], &[0x1f, 0x8b]);
            let mut text = Vec::new();
            use std::io::Read;
            flate2::read::GzDecoder::new(&bytes[..])
                .read_to_end(&mut text)
                .unwrap();
            assert_eq!(text.len() as u64, out.dump_bytes);
        }
        Compression::Zstd => assert_eq!(&bytes[..4], &[0x28, 0xb5, 0x2f, 0xfd]),
    }
}

async fn pg_round_trip(compression: Compression, encrypt: bool) {
    let store = TempStore::new();
    let source = PgDb::create();
    seed_pg(&source.0);
    let before = pg_fingerprint(&source.0);
    let keys = keyring();
    let keys = encrypt.then_some(&keys);
    let seen = Arc::new(AtomicU64::new(0));
    let seen2 = Arc::clone(&seen);
    let out = run_backup(
        &store.store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            database: &source.0,
            compression,
            encryption: keys,
            object_key: "pg/backup.sql",
            progress: Some(Arc::new(move |n| seen2.store(n, Ordering::Relaxed))),
        },
    )
    .await
    .unwrap();
    assert_eq!(seen.load(Ordering::Relaxed), out.dump_bytes);
    check_object(&store, &out, compression, encrypt);

    let target = PgDb::name();
    restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        &out.object_key,
        &out.checksum,
        compression,
        keys,
    )
    .await
    .unwrap();
    assert_same(
        &pg_fingerprint(&target.0),
        &before,
        "restored database differs",
    );
    assert_same(&pg_fingerprint(&source.0), &before, "source changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_none_plain() {
    pg_round_trip(Compression::None, false).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_gzip_plain() {
    pg_round_trip(Compression::Gzip, false).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_zstd_plain() {
    pg_round_trip(Compression::Zstd, false).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_none_encrypted() {
    pg_round_trip(Compression::None, true).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_gzip_encrypted() {
    pg_round_trip(Compression::Gzip, true).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_zstd_encrypted() {
    pg_round_trip(Compression::Zstd, true).await;
}

async fn my_round_trip(compression: Compression, encrypt: bool) {
    let store = TempStore::new();
    let source = MyDb::create();
    seed_my(&source.0);
    let before = my_fingerprint(&source.0);
    let keys = keyring();
    let keys = encrypt.then_some(&keys);
    let out = backup(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &source.0,
        compression,
        keys,
        "my/backup.sql",
    )
    .await
    .unwrap();
    check_object(&store, &out, compression, encrypt);
    let target = MyDb::name();
    restore(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &target.0,
        &out.object_key,
        &out.checksum,
        compression,
        keys,
    )
    .await
    .unwrap();
    assert_same(
        &my_fingerprint(&target.0),
        &before,
        "restored database differs",
    );
    assert_same(&my_fingerprint(&source.0), &before, "source changed");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_none_plain() {
    my_round_trip(Compression::None, false).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_gzip_encrypted() {
    my_round_trip(Compression::Gzip, true).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_zstd_plain() {
    my_round_trip(Compression::Zstd, false).await;
}
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_zstd_encrypted() {
    my_round_trip(Compression::Zstd, true).await;
}

/// A restore over an existing database replaces it as a whole (the swap).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restore_replaces_an_existing_target() {
    let store = TempStore::new();
    let source = PgDb::create();
    seed_pg(&source.0);
    let out = backup(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &source.0,
        Compression::Zstd,
        None,
        "a",
    )
    .await
    .unwrap();
    let target = PgDb::create();
    pg(
        &target.0,
        "CREATE TABLE leftover (x int); INSERT INTO leftover VALUES (1)",
    );
    restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "a",
        &out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap();
    assert_same(
        &pg_fingerprint(&target.0),
        &pg_fingerprint(&source.0),
        "restored database differs",
    );
    assert_eq!(
        pg_text(
            &target.0,
            "SELECT count(*) FROM pg_tables WHERE tablename = 'leftover'"
        ),
        "0"
    );

    let my_source = MyDb::create();
    seed_my(&my_source.0);
    let out = backup(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &my_source.0,
        Compression::Zstd,
        None,
        "b",
    )
    .await
    .unwrap();
    let my_target = MyDb::create();
    my(Some(&my_target.0), "CREATE TABLE leftover (x INT); CREATE TABLE customers (id INT PRIMARY KEY); INSERT INTO leftover VALUES (1)");
    restore(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &my_target.0,
        "b",
        &out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap();
    assert_same(
        &my_fingerprint(&my_target.0),
        &my_fingerprint(&my_source.0),
        "restored database differs",
    );
    assert_eq!(
        my_text(None, &format!("SELECT count(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = '{}' AND TABLE_NAME = 'leftover'", my_target.0)),
        "0"
    );
}

/// A target that must not change: a small table with known rows.
fn pg_target_with_rows() -> (PgDb, Vec<u8>) {
    let target = PgDb::create();
    pg(&target.0, "CREATE TABLE keep (id int PRIMARY KEY, v text); INSERT INTO keep VALUES (1, 'one'), (2, 'two')");
    let snapshot = pg_target_snapshot(&target.0);
    (target, snapshot)
}

fn pg_target_snapshot(db: &str) -> Vec<u8> {
    let mut s = pg(
        db,
        "SELECT tablename FROM pg_tables WHERE schemaname = 'public' ORDER BY 1",
    );
    s.extend(pg(db, "COPY (SELECT * FROM keep ORDER BY 1) TO STDOUT"));
    s
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_byte_fails_before_the_target_changes() {
    let store = TempStore::new();
    let source = PgDb::create();
    seed_pg(&source.0);
    for (compression, keys) in [
        (Compression::Zstd, None),
        (Compression::Gzip, Some(keyring())),
    ] {
        let out = backup(
            &store,
            EngineKind::Postgres,
            &pg_conn(),
            &source.0,
            compression,
            keys.as_ref(),
            "flip",
        )
        .await
        .unwrap();
        let path = store.store.local_path("flip").unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        let middle = bytes.len() / 2;
        bytes[middle] ^= 0x01;
        std::fs::write(&path, &bytes).unwrap();

        let (target, snapshot) = pg_target_with_rows();
        let err = restore(
            &store,
            EngineKind::Postgres,
            &pg_conn(),
            &target.0,
            "flip",
            &out.checksum,
            compression,
            keys.as_ref(),
        )
        .await
        .unwrap_err();
        assert!(matches!(err, BackupError::ChecksumMismatch { .. }), "{err}");
        assert!(err.to_string().contains("checksum"));
        assert_eq!(err.class(), ErrorClass::Permanent);
        assert_eq!(pg_target_snapshot(&target.0), snapshot, "target changed");

        // A missing target is not created.
        let missing = PgDb::name();
        restore(
            &store,
            EngineKind::Postgres,
            &pg_conn(),
            &missing.0,
            "flip",
            &out.checksum,
            compression,
            keys.as_ref(),
        )
        .await
        .unwrap_err();
        assert!(!pg_exists(&missing.0));

        // Encrypted, the same flip with the checksum recomputed (someone
        // rewrote the object and its record) is still refused: the chunk
        // fails authentication, inside the scratch database.
        if keys.is_some() {
            let forged = sha256sum(&path);
            let err = restore(
                &store,
                EngineKind::Postgres,
                &pg_conn(),
                &target.0,
                "flip",
                &forged,
                compression,
                keys.as_ref(),
            )
            .await
            .unwrap_err();
            assert!(matches!(err, BackupError::Decrypt(_)), "{err}");
            assert_eq!(pg_target_snapshot(&target.0), snapshot, "target changed");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wrong_key_fails_before_the_target_changes() {
    let store = TempStore::new();
    let source = PgDb::create();
    seed_pg(&source.0);
    let out = backup(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &source.0,
        Compression::Zstd,
        Some(&keyring()),
        "enc",
    )
    .await
    .unwrap();
    let (target, snapshot) = pg_target_with_rows();
    let missing = PgDb::name();

    let wrong = Keyring::new("k1", "not the secret").unwrap();
    let err = restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "enc",
        &out.checksum,
        Compression::Zstd,
        Some(&wrong),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackupError::Decrypt(_)), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    let err = restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &missing.0,
        "enc",
        &out.checksum,
        Compression::Zstd,
        Some(&wrong),
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackupError::Decrypt(_)), "{err}");
    assert!(!pg_exists(&missing.0));

    let unknown = Keyring::new("k2", "test secret key").unwrap();
    let err = restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "enc",
        &out.checksum,
        Compression::Zstd,
        Some(&unknown),
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BackupError::UnknownKey(ref id) if id == "k1"),
        "{err}"
    );
    assert_eq!(pg_target_snapshot(&target.0), snapshot, "target changed");

    // After a rotation, the old key (kept by id) still restores.
    let rotated = Keyring::new("k2", "new secret")
        .unwrap()
        .with_previous("k1", "test secret key")
        .unwrap();
    restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "enc",
        &out.checksum,
        Compression::Zstd,
        Some(&rotated),
    )
    .await
    .unwrap();
    assert_same(
        &pg_fingerprint(&target.0),
        &pg_fingerprint(&source.0),
        "restored database differs",
    );
}

/// The restore tool failing midway (a MariaDB dump fed to psql, a
/// PostgreSQL dump fed to mariadb) leaves the target as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_restore_tool_leaves_the_target_untouched() {
    let store = TempStore::new();
    let my_source = MyDb::create();
    seed_my(&my_source.0);
    let my_out = backup(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &my_source.0,
        Compression::Gzip,
        None,
        "my",
    )
    .await
    .unwrap();
    let (target, snapshot) = pg_target_with_rows();
    let err = restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "my",
        &my_out.checksum,
        Compression::Gzip,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Tool {
                failure: ToolFailure::Failed,
                ..
            }
        ),
        "{err}"
    );
    assert_eq!(pg_target_snapshot(&target.0), snapshot, "target changed");

    let pg_source = PgDb::create();
    seed_pg(&pg_source.0);
    let pg_out = backup(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &pg_source.0,
        Compression::None,
        None,
        "pg",
    )
    .await
    .unwrap();
    let my_target = MyDb::create();
    my(
        Some(&my_target.0),
        "CREATE TABLE keep (id INT PRIMARY KEY, v TEXT); INSERT INTO keep VALUES (1, 'one')",
    );
    let my_before = my(Some(&my_target.0), "SHOW TABLES; SELECT * FROM keep");
    let err = restore(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &my_target.0,
        "pg",
        &pg_out.checksum,
        Compression::None,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackupError::Tool { .. }), "{err}");
    assert_eq!(
        my(Some(&my_target.0), "SHOW TABLES; SELECT * FROM keep"),
        my_before
    );

    // Wrong compression claimed: the decoder refuses, target untouched.
    let err = restore(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &target.0,
        "pg",
        &pg_out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap_err();
    assert!(
        matches!(err, BackupError::Decompress(_) | BackupError::Tool { .. }),
        "{err}"
    );
    assert_eq!(pg_target_snapshot(&target.0), snapshot, "target changed");
}

/// A dump that fails leaves no object behind, not even a staging file, and
/// says whether retrying can help.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_backups_store_nothing_and_are_classified() {
    let store = TempStore::new();
    let missing = PgDb::name();
    let err = backup(
        &store,
        EngineKind::Postgres,
        &pg_conn(),
        &missing.0,
        Compression::Zstd,
        None,
        "x/missing",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Tool {
                failure: ToolFailure::DatabaseMissing,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());

    let err = backup(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &missing.0,
        Compression::Zstd,
        None,
        "x/missing",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Tool {
                failure: ToolFailure::DatabaseMissing,
                ..
            }
        ),
        "{err}"
    );

    let nowhere = Connection {
        port: 1,
        ..pg_conn()
    };
    let err = backup(
        &store,
        EngineKind::Postgres,
        &nowhere,
        "postgres",
        Compression::Zstd,
        None,
        "x/refused",
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err}");
    let nowhere = Connection {
        port: 1,
        ..my_conn()
    };
    let err = backup(
        &store,
        EngineKind::MySql,
        &nowhere,
        "mysql",
        Compression::Zstd,
        None,
        "x/refused",
    )
    .await
    .unwrap_err();
    assert!(err.is_transient(), "{err}");

    assert!(store.store.size("x/missing").await.is_err());
    let leftovers: Vec<_> = walk(&store.dir);
    assert!(leftovers.is_empty(), "left behind: {leftovers:?}");
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for e in std::fs::read_dir(dir).unwrap().flatten() {
        if e.path().is_dir() {
            files.extend(walk(&e.path()));
        } else {
            files.push(e.path());
        }
    }
    files
}

/// The password reaches the tools through MYSQL_PWD; a wrong one is an
/// authentication failure, permanent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_passwords_go_through_the_environment() {
    let store = TempStore::new();
    let source = MyDb::create();
    seed_my(&source.0);
    let user = unique("bkuser");
    let password = "pw with spaces & 'quotes'";
    my(
        None,
        &format!(
            "CREATE USER '{user}'@'%' IDENTIFIED BY 'pw with spaces & ''quotes'''; \
             CREATE USER '{user}'@'localhost' IDENTIFIED BY 'pw with spaces & ''quotes'''; \
             GRANT ALL ON *.* TO '{user}'@'%'; GRANT ALL ON *.* TO '{user}'@'localhost'"
        ),
    );
    struct DropUser(String);
    impl Drop for DropUser {
        fn drop(&mut self) {
            let _ = Command::new("mariadb")
                .args([
                    "--protocol=TCP",
                    "-h",
                    "127.0.0.1",
                    "-u",
                    "root",
                    "--execute",
                ])
                .arg(format!(
                    "DROP USER IF EXISTS '{0}'@'%', '{0}'@'localhost'",
                    self.0
                ))
                .output();
        }
    }
    let _guard = DropUser(user.clone());
    let conn = Connection {
        user: user.clone(),
        password: Some(password.into()),
        ..my_conn()
    };
    let out = backup(
        &store,
        EngineKind::MySql,
        &conn,
        &source.0,
        Compression::Zstd,
        None,
        "pw",
    )
    .await
    .unwrap();
    let target = MyDb::name();
    restore(
        &store,
        EngineKind::MySql,
        &conn,
        &target.0,
        "pw",
        &out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap();
    assert_same(
        &my_fingerprint(&target.0),
        &my_fingerprint(&source.0),
        "restored database differs",
    );

    let wrong = Connection {
        password: Some("wrong".into()),
        ..conn
    };
    let err = backup(
        &store,
        EngineKind::MySql,
        &wrong,
        &source.0,
        Compression::Zstd,
        None,
        "pw2",
    )
    .await
    .unwrap_err();
    assert!(
        matches!(
            err,
            BackupError::Tool {
                failure: ToolFailure::AuthenticationRefused,
                ..
            }
        ),
        "{err}"
    );
    assert!(!err.is_transient());
    assert!(!err.to_string().contains("wrong"), "{err}");
}

/// MariaDB views cannot move between databases with RENAME TABLE: such a
/// restore is refused before the swap and the target stays as it was.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_views_are_refused_before_the_swap() {
    let store = TempStore::new();
    let source = MyDb::create();
    my(
        Some(&source.0),
        "CREATE TABLE t (id INT PRIMARY KEY); INSERT INTO t VALUES (1); CREATE VIEW v AS SELECT id FROM t",
    );
    let out = backup(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &source.0,
        Compression::Zstd,
        None,
        "views",
    )
    .await
    .unwrap();
    let target = MyDb::create();
    my(
        Some(&target.0),
        "CREATE TABLE keep (id INT PRIMARY KEY); INSERT INTO keep VALUES (7)",
    );
    let before = my(Some(&target.0), "SHOW TABLES; SELECT * FROM keep");
    let err = restore(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &target.0,
        "views",
        &out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap_err();
    assert!(matches!(err, BackupError::Unsupported(_)), "{err}");
    assert_eq!(
        my(Some(&target.0), "SHOW TABLES; SELECT * FROM keep"),
        before
    );
    let missing = MyDb::name();
    restore(
        &store,
        EngineKind::MySql,
        &my_conn(),
        &missing.0,
        "views",
        &out.checksum,
        Compression::Zstd,
        None,
    )
    .await
    .unwrap_err();
    assert!(!my_exists(&missing.0));
}
