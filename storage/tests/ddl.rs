//! `sluice_storage::ddl` against the local PostgreSQL: each test creates its
//! own scratch database (`sluice_ddl_test_<uuid>`) and drops it afterwards,
//! even when an assertion fails.

use std::future::Future;
use std::sync::{Arc, Mutex};

use sluice_storage::{ddl, StorageError};
use sqlx::postgres::PgPoolOptions;
use sqlx::{AssertSqlSafe, PgPool};

const ADMIN_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

fn db_url(name: &str) -> String {
    format!("postgres://postgres@127.0.0.1:5432/{name}")
}

/// Runs `scenario` against a fresh scratch database, then drops the database
/// whether or not the scenario panicked, and re-raises the panic.
async fn with_scratch_db<F, Fut>(scenario: F)
where
    F: FnOnce(PgPool) -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    let name = format!("sluice_ddl_test_{}", uuid::Uuid::new_v4().simple());
    let admin = PgPool::connect(ADMIN_URL).await.expect("connect admin");
    sqlx::query(AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&admin)
        .await
        .expect("create scratch database");
    let pool = PgPoolOptions::new()
        .max_connections(5)
        .connect(&db_url(&name))
        .await
        .expect("connect scratch database");
    let outcome = tokio::spawn(scenario(pool.clone())).await;
    pool.close().await;
    sqlx::query(AssertSqlSafe(format!(
        "DROP DATABASE IF EXISTS {name} WITH (FORCE)"
    )))
    .execute(&admin)
    .await
    .expect("drop scratch database");
    admin.close().await;
    if let Err(e) = outcome {
        std::panic::resume_unwind(e.into_panic());
    }
}

async fn exec(pool: &PgPool, sql: &'static str) {
    sqlx::raw_sql(sql)
        .execute(pool)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
}

async fn queued(pool: &PgPool) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM sluice_tracking.ddl_queue")
        .fetch_one(pool)
        .await
        .expect("count queue")
}

/// Drains everything queued (in one call) and returns the records.
async fn drain_all(pool: &PgPool) -> Vec<ddl::DdlRecord> {
    let got = Arc::new(Mutex::new(Vec::new()));
    let sink = got.clone();
    let n = ddl::drain(pool, 1000, |records| async move {
        sink.lock().unwrap().extend(records);
        Ok(())
    })
    .await
    .expect("drain");
    let got = std::mem::take(&mut *got.lock().unwrap());
    assert_eq!(n, got.len());
    got
}

#[tokio::test]
async fn tracks_ddl_statements_and_uninstalls_cleanly() {
    with_scratch_db(|pool| async move {
        assert!(!ddl::is_installed(&pool).await.unwrap());
        ddl::install(&pool).await.expect("install");
        ddl::install(&pool).await.expect("install again");
        // Concurrent installs serialise on the advisory lock.
        let (a, b) = tokio::join!(ddl::install(&pool), ddl::install(&pool));
        a.expect("concurrent install a");
        b.expect("concurrent install b");
        assert!(ddl::is_installed(&pool).await.unwrap());
        // Installing Sluice's own objects records nothing.
        assert_eq!(queued(&pool).await, 0);

        let statements = [
            "CREATE TABLE accounts (id serial primary key, email text)",
            "ALTER TABLE accounts ADD COLUMN name text",
            "CREATE INDEX accounts_email_idx ON accounts (email)",
            "DROP TABLE accounts",
        ];
        for sql in statements {
            exec(&pool, sql).await;
        }
        assert_eq!(queued(&pool).await, 4);

        // A failing store leaves every row queued.
        let seen = Arc::new(Mutex::new(0usize));
        let seen_in = seen.clone();
        let err = ddl::drain(&pool, 100, |records| async move {
            *seen_in.lock().unwrap() = records.len();
            Err(StorageError::Invalid("store failed".into()))
        })
        .await
        .expect_err("store error is returned");
        assert!(matches!(err, StorageError::Invalid(ref m) if m == "store failed"));
        assert_eq!(*seen.lock().unwrap(), 4);
        assert_eq!(queued(&pool).await, 4);

        let records = drain_all(&pool).await;
        let tags: Vec<&str> = records.iter().map(|r| r.command_tag.as_str()).collect();
        assert_eq!(
            tags,
            ["CREATE TABLE", "ALTER TABLE", "CREATE INDEX", "DROP TABLE"]
        );
        assert!(records.windows(2).all(|w| w[0].id < w[1].id));
        assert!(records
            .windows(2)
            .all(|w| w[0].occurred_at <= w[1].occurred_at));
        let expected_object = [
            "public.accounts",
            "public.accounts",
            "public.accounts_email_idx",
            "public.accounts",
        ];
        let expected_type = ["table", "table", "index", "table"];
        for (i, r) in records.iter().enumerate() {
            assert!(
                r.affected_objects.iter().any(|o| o == expected_object[i]),
                "{r:?}"
            );
            assert_eq!(r.object_type, expected_type[i], "{r:?}");
            assert_eq!(r.schema_name.as_deref(), Some("public"), "{r:?}");
            assert_eq!(r.session_user, "postgres");
            assert!(r.statement.contains(statements[i]), "{r:?}");
            assert!(
                r.affected_objects
                    .iter()
                    .all(|o| !o.starts_with("sluice_tracking")),
                "{r:?}"
            );
        }
        // DROP TABLE reports the table it named, not its dependent objects.
        assert_eq!(records[3].affected_objects, ["public.accounts"]);

        assert_eq!(drain_all(&pool).await.len(), 0);
        assert_eq!(queued(&pool).await, 0);

        ddl::uninstall(&pool).await.expect("uninstall");
        ddl::uninstall(&pool).await.expect("uninstall again");
        assert!(!ddl::is_installed(&pool).await.unwrap());
        let left: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_event_trigger WHERE evtname LIKE 'sluice_tracking%'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(left, 0);
        let schema: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM pg_namespace WHERE nspname = 'sluice_tracking'",
        )
        .fetch_one(&pool)
        .await
        .unwrap();
        assert_eq!(schema, 0);
        // No broken trigger left behind: DDL still works.
        exec(&pool, "CREATE TABLE after_uninstall (id int)").await;
        exec(&pool, "DROP TABLE after_uninstall").await;
    })
    .await;
}

#[tokio::test]
async fn concurrent_drainers_never_share_rows() {
    with_scratch_db(|pool| async move {
        ddl::install(&pool).await.expect("install");
        for sql in [
            "CREATE TABLE t1 (id int)",
            "CREATE TABLE t2 (id int)",
            "CREATE TABLE t3 (id int)",
            "CREATE TABLE t4 (id int)",
        ] {
            exec(&pool, sql).await;
        }

        // Drainer A takes two rows and holds them (inside `store`) until B ran.
        let (started_tx, started_rx) = tokio::sync::oneshot::channel::<Vec<i64>>();
        let (release_tx, release_rx) = tokio::sync::oneshot::channel::<()>();
        let pool_a = pool.clone();
        let a = tokio::spawn(async move {
            ddl::drain(&pool_a, 2, |records| async move {
                let _ = started_tx.send(records.iter().map(|r| r.id).collect());
                let _ = release_rx.await;
                Ok(())
            })
            .await
        });
        let a_ids = started_rx.await.expect("drainer A started");
        assert_eq!(a_ids.len(), 2);

        let b = drain_all(&pool).await;
        let b_ids: Vec<i64> = b.iter().map(|r| r.id).collect();
        assert_eq!(b_ids.len(), 2, "B skips the rows A holds");
        assert!(b_ids.iter().all(|id| !a_ids.contains(id)));

        release_tx.send(()).expect("release A");
        assert_eq!(a.await.expect("join A").expect("drain A"), 2);
        assert_eq!(queued(&pool).await, 0);

        // DDL by an unprivileged role is recorded too (SECURITY DEFINER);
        // everything, including the role, is rolled back.
        let mut tx = pool.begin().await.unwrap();
        let role = format!("sluice_ddl_test_role_{}", uuid::Uuid::new_v4().simple());
        sqlx::raw_sql(AssertSqlSafe(format!(
            "CREATE ROLE {role};
             GRANT CREATE ON SCHEMA public TO {role};
             SET LOCAL ROLE {role};
             CREATE TABLE by_role (id int);
             RESET ROLE;"
        )))
        .execute(&mut *tx)
        .await
        .unwrap();
        let tags: Vec<(String, Vec<String>)> = sqlx::query_as(
            "SELECT command_tag, affected_objects FROM sluice_tracking.ddl_queue ORDER BY id",
        )
        .fetch_all(&mut *tx)
        .await
        .unwrap();
        assert!(
            tags.iter()
                .any(|(tag, objs)| tag == "CREATE TABLE"
                    && objs.iter().any(|o| o == "public.by_role")),
            "{tags:?}"
        );
        tx.rollback().await.unwrap();
        assert_eq!(queued(&pool).await, 0);

        ddl::uninstall(&pool).await.expect("uninstall");
    })
    .await;
}
