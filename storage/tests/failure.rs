//! `sluice_storage::failure` against the real stores: the errors
//! PostgreSQL and ClickHouse actually answer are classified as the workers
//! need (refused data: permanent, with its reason; outages and races:
//! transient). Postgres work happens in temporary tables of one
//! connection; ClickHouse's in a scratch table dropped afterwards.

use sluice_storage::failure::{Failure, Reason};
use sluice_storage::StorageError;
use sqlx::{Connection, PgConnection};

const PG_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";
const CH_URL: &str = "http://127.0.0.1:8123";

async fn pg() -> PgConnection {
    PgConnection::connect(PG_URL)
        .await
        .expect("connect postgres")
}

async fn pg_failure(conn: &mut PgConnection, sql: &'static str, arg: &str) -> (Failure, String) {
    let e = sqlx::query(sql)
        .bind(arg)
        .execute(&mut *conn)
        .await
        .expect_err("postgres refuses this");
    let e = StorageError::from(e);
    (e.failure(), e.detail())
}

#[tokio::test]
async fn postgres_refusals_of_data_are_permanent() {
    let mut c = pg().await;
    sqlx::query("CREATE TEMP TABLE t (s text UNIQUE, j jsonb)")
        .execute(&mut c)
        .await
        .unwrap();

    let (f, detail) = pg_failure(&mut c, "INSERT INTO t (s) VALUES ($1)", "nul \0 here").await;
    assert_eq!(f, Failure::Permanent(Reason::InvalidText));
    assert!(detail.starts_with("postgres 22021:"), "{detail}");

    let (f, detail) = pg_failure(
        &mut c,
        "INSERT INTO t (j) VALUES ($1::jsonb)",
        r#"{"k":"a\u0000b"}"#,
    )
    .await;
    assert_eq!(f, Failure::Permanent(Reason::InvalidJson));
    assert!(detail.starts_with("postgres 22P05:"), "{detail}");

    let (f, _) = pg_failure(&mut c, "INSERT INTO t (j) VALUES ($1::jsonb)", "{not json").await;
    assert_eq!(f, Failure::Permanent(Reason::InvalidJson));

    // a btree entry over 2,704 bytes that does not compress
    let long: String = (0..200)
        .flat_map(|_| *uuid::Uuid::new_v4().as_bytes())
        .map(|b| char::from(33 + b % 94))
        .take(3000)
        .collect();
    let (f, detail) = pg_failure(&mut c, "INSERT INTO t (s) VALUES ($1)", &long).await;
    assert_eq!(f, Failure::Permanent(Reason::TooLarge), "{detail}");
    assert!(detail.starts_with("postgres 54000:"), "{detail}");

    sqlx::query("INSERT INTO t (s) VALUES ('once')")
        .execute(&mut c)
        .await
        .unwrap();
    let (f, _) = pg_failure(&mut c, "INSERT INTO t (s) VALUES ($1)", "once").await;
    assert_eq!(f, Failure::Permanent(Reason::Constraint));
}

#[tokio::test]
async fn postgres_outages_and_races_are_transient() {
    let mut c = pg().await;
    // The server itself answers each SQLSTATE, as it would under load.
    for code in ["40001", "40P01", "53300", "57P01", "55P03", "08006"] {
        let sql =
            format!("DO $$ BEGIN RAISE EXCEPTION 'simulated' USING ERRCODE = '{code}'; END $$");
        let e = sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(&mut c)
            .await
            .expect_err("raised");
        let e = StorageError::from(e);
        assert_eq!(e.failure(), Failure::Transient, "{code}: {e}");
    }
    // nothing listens on port 1
    let e = PgConnection::connect("postgres://postgres@127.0.0.1:1/postgres")
        .await
        .expect_err("refused");
    let e = StorageError::from(e);
    assert_eq!(e.failure(), Failure::Transient, "{e}");
    assert_eq!(e.detail(), "postgres unavailable");
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(300))
        .connect_lazy("postgres://postgres@127.0.0.1:1/postgres")
        .unwrap();
    let e = StorageError::from(pool.acquire().await.expect_err("no server"));
    assert_eq!(e.failure(), Failure::Transient, "{e}");
}

#[tokio::test]
async fn clickhouse_refusals_of_data_are_permanent_outages_transient() {
    let table = format!(
        "default.sluice_failure_test_{}",
        uuid::Uuid::new_v4().simple()
    );
    let ch = clickhouse::Client::default()
        .with_url(CH_URL)
        .with_validation(false);
    ch.query(&format!(
        "CREATE TABLE {table} (n UInt8, s String) ENGINE = Memory"
    ))
    .execute()
    .await
    .expect("create scratch table");

    // A string whose length says 100 bytes, followed by 3: data ClickHouse
    // cannot read, whatever the connection.
    let mut ins = ch.insert_formatted_with(format!("INSERT INTO {table} (n, s) FORMAT RowBinary"));
    let refused = async {
        ins.send(bytes::Bytes::from_static(b"\x01\x64abc")).await?;
        ins.end().await
    }
    .await
    .expect_err("clickhouse refuses a truncated row");
    let refused = StorageError::from(refused);

    // A text a UInt8 cannot hold.
    let parse = ch
        .query("SELECT toUInt8('not a number')")
        .fetch_one::<u8>()
        .await
        .expect_err("not a number");
    let parse = StorageError::from(parse);

    // Not the data: a table that does not exist, and no server at all.
    let missing = ch
        .query("SELECT count() FROM default.sluice_no_such_table_4711")
        .fetch_one::<u64>()
        .await
        .expect_err("no table");
    let missing = StorageError::from(missing);
    let down = clickhouse::Client::default()
        .with_url("http://127.0.0.1:1")
        .query("SELECT 1")
        .fetch_one::<u8>()
        .await
        .expect_err("nothing listens");
    let down = StorageError::from(down);

    let _ = ch
        .query(&format!("DROP TABLE IF EXISTS {table}"))
        .execute()
        .await;

    assert_eq!(
        refused.failure(),
        Failure::Permanent(Reason::ClickhouseRejected),
        "{refused}"
    );
    assert!(
        refused.detail().starts_with("clickhouse: Code: "),
        "{}",
        refused.detail()
    );
    assert_eq!(
        parse.failure(),
        Failure::Permanent(Reason::ClickhouseRejected),
        "{parse}"
    );
    assert_eq!(missing.failure(), Failure::Transient, "{missing}");
    assert_eq!(down.failure(), Failure::Transient, "{down}");
    assert_eq!(down.detail(), "clickhouse unavailable");
}
