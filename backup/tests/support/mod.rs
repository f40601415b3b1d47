//! Test helpers: scratch databases on the real PostgreSQL and MariaDB (each
//! dropped on `Drop`), a scratch object store directory, and queries through
//! the real command line clients.
#![allow(dead_code)]

pub mod sshd;

use std::path::PathBuf;
use std::process::Command;

use sluice_backup::{BackupStore, Connection};

pub fn pg_conn() -> Connection {
    Connection {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: None,
    }
}

pub fn my_conn() -> Connection {
    Connection {
        host: "127.0.0.1".into(),
        port: 3306,
        user: "root".into(),
        password: None,
    }
}

pub fn unique(prefix: &str) -> String {
    let id = uuid::Uuid::new_v4().simple().to_string();
    format!("{prefix}_{}", &id[..12])
}

fn run(mut cmd: Command, what: &str) -> Vec<u8> {
    let out = cmd.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Runs SQL in a PostgreSQL database; returns psql's unaligned output.
pub fn pg(db: &str, sql: &str) -> Vec<u8> {
    let mut c = Command::new("psql");
    c.args(["-X", "-q", "-A", "-t", "-v", "ON_ERROR_STOP=1"])
        .args(["-h", "127.0.0.1", "-U", "postgres", "-d", db, "-c", sql]);
    run(c, sql)
}

pub fn pg_text(db: &str, sql: &str) -> String {
    String::from_utf8(pg(db, sql)).unwrap().trim().to_owned()
}

pub fn pg_exists(db: &str) -> bool {
    pg_text(
        "postgres",
        &format!("SELECT count(*) FROM pg_database WHERE datname = '{db}'"),
    ) == "1"
}

/// Runs SQL in MariaDB (database optional); returns batch output.
pub fn my(db: Option<&str>, sql: &str) -> Vec<u8> {
    let mut c = Command::new("mariadb");
    c.args([
        "--protocol=TCP",
        "-h",
        "127.0.0.1",
        "-P",
        "3306",
        "-u",
        "root",
    ])
    .args([
        "--batch",
        "--skip-column-names",
        "--default-character-set=utf8mb4",
    ]);
    if let Some(db) = db {
        c.args(["--database", db]);
    }
    c.args(["--execute", sql]);
    run(c, sql)
}

pub fn my_text(db: Option<&str>, sql: &str) -> String {
    String::from_utf8(my(db, sql)).unwrap().trim().to_owned()
}

pub fn my_exists(db: &str) -> bool {
    my_text(
        None,
        &format!("SELECT count(*) FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '{db}'"),
    ) == "1"
}

/// A PostgreSQL database name, dropped (if it exists) when this is dropped.
pub struct PgDb(pub String);

impl PgDb {
    /// A name only; the database is not created.
    pub fn name() -> Self {
        PgDb(unique("sluice_bkt"))
    }

    pub fn create() -> Self {
        let db = Self::name();
        pg("postgres", &format!("CREATE DATABASE \"{}\"", db.0));
        db
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        let _ = Command::new("psql")
            .args([
                "-X",
                "-q",
                "-h",
                "127.0.0.1",
                "-U",
                "postgres",
                "-d",
                "postgres",
                "-c",
            ])
            .arg(format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.0
            ))
            .output();
    }
}

/// A MariaDB database name, dropped when this is dropped.
pub struct MyDb(pub String);

impl MyDb {
    pub fn name() -> Self {
        MyDb(unique("sluice_bkt"))
    }

    pub fn create() -> Self {
        let db = Self::name();
        my(
            None,
            &format!("CREATE DATABASE `{}` CHARACTER SET utf8mb4", db.0),
        );
        db
    }
}

impl Drop for MyDb {
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
            .arg(format!("DROP DATABASE IF EXISTS `{}`", self.0))
            .output();
    }
}

/// A local object store in a fresh directory, removed when dropped.
pub struct TempStore {
    pub dir: PathBuf,
    pub store: BackupStore,
}

impl TempStore {
    pub fn new() -> Self {
        let dir = std::env::temp_dir().join(unique("sluice-backup-test"));
        let store = BackupStore::local(&dir).expect("local store");
        Self { dir, store }
    }
}

impl Drop for TempStore {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Seeds several PostgreSQL tables: bytea, jsonb, numeric, timestamps,
/// text with tabs, newlines, backslashes and non-ASCII, NULLs; ~15,000 rows.
pub fn seed_pg(db: &str) {
    pg(
        db,
        r#"
CREATE TABLE customers (
  id int PRIMARY KEY, email text NOT NULL UNIQUE, name text, note text,
  created_at timestamptz NOT NULL, balance numeric(12,2), avatar bytea, profile jsonb);
INSERT INTO customers
SELECT i, 'user' || i || '@example.com',
       CASE WHEN i % 10 = 0 THEN NULL ELSE 'Name ' || i || E'\tTab\nNewline \\ é 日本' END,
       repeat('x', i % 50),
       timestamptz '2024-01-01 00:00:00+00' + i * interval '61.5 seconds',
       (i * 1.01)::numeric(12,2),
       CASE WHEN i % 7 = 0 THEN NULL ELSE decode(md5(i::text), 'hex') || '\x000aff5c'::bytea END,
       jsonb_build_object('i', i, 'tags', jsonb_build_array('a', 'b"q'), 'ok', i % 2 = 0)
FROM generate_series(1, 10000) i;
CREATE TABLE orders (
  id bigserial PRIMARY KEY, customer_id int NOT NULL REFERENCES customers(id),
  total numeric(10,2), placed date, meta jsonb);
INSERT INTO orders (customer_id, total, placed, meta)
SELECT 1 + (i * 7) % 10000, i % 1000 + 0.99, date '2024-01-01' + i % 365,
       CASE WHEN i % 3 = 0 THEN NULL ELSE '{"k": "v\"q", "n": [1, 2.5]}'::jsonb END
FROM generate_series(1, 5000) i;
CREATE INDEX orders_customer ON orders (customer_id);
CREATE TABLE empty_table (id int PRIMARY KEY, payload bytea);
CREATE VIEW big_spenders AS SELECT customer_id, sum(total) AS spent FROM orders GROUP BY 1;
"#,
    );
}

/// Everything that must survive a PostgreSQL round trip, as text: schema,
/// constraints, sequences, and every row of every table.
pub fn pg_fingerprint(db: &str) -> String {
    let mut out = pg(
        db,
        "SELECT table_name, column_name, data_type, coalesce(numeric_precision::text, ''), is_nullable \
         FROM information_schema.columns WHERE table_schema = 'public' ORDER BY 1, 2",
    );
    out.extend(pg(
        db,
        "SELECT conrelid::regclass, conname, pg_get_constraintdef(oid) FROM pg_constraint \
         WHERE connamespace = 'public'::regnamespace ORDER BY 1::text, 2",
    ));
    out.extend(pg(
        db,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = 'public' ORDER BY 1",
    ));
    out.extend(pg(db, "SELECT last_value FROM orders_id_seq"));
    for t in ["customers", "orders", "empty_table", "big_spenders"] {
        out.extend(pg(
            db,
            &format!("COPY (SELECT * FROM {t} ORDER BY 1) TO STDOUT"),
        ));
    }
    String::from_utf8_lossy(&out).into_owned()
}

pub fn seed_my(db: &str) {
    my(
        Some(db),
        r#"
CREATE TABLE customers (
  id INT PRIMARY KEY, email VARCHAR(255) NOT NULL UNIQUE, name TEXT,
  created_at DATETIME(3) NOT NULL, balance DECIMAL(12,2), avatar VARBINARY(64), doc JSON, blobby BLOB
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO customers
SELECT seq, CONCAT('user', seq, '@example.com'),
       IF(seq % 10 = 0, NULL, CONCAT('Name ', seq, '\tTab\nNewline \\ é 日本 \'q\'')),
       TIMESTAMP '2024-01-01 00:00:00' + INTERVAL seq * 61500000 MICROSECOND,
       seq * 1.01, UNHEX(MD5(seq)), JSON_OBJECT('i', seq, 'q', '"quoted"', 'ok', seq % 2 = 0),
       IF(seq % 7 = 0, NULL, UNHEX(CONCAT(MD5(seq), '000AFF5C')))
FROM seq_1_to_10000;
CREATE TABLE orders (
  id BIGINT AUTO_INCREMENT PRIMARY KEY, customer_id INT NOT NULL, total DECIMAL(10,2), placed DATE,
  FOREIGN KEY (customer_id) REFERENCES customers(id)
) ENGINE=InnoDB;
INSERT INTO orders (customer_id, total, placed)
SELECT 1 + (seq * 7) % 10000, seq % 1000 + 0.99, DATE '2024-01-01' + INTERVAL seq % 365 DAY FROM seq_1_to_5000;
CREATE TABLE empty_table (id INT PRIMARY KEY, payload LONGBLOB) ENGINE=InnoDB;
"#,
    );
}

pub fn my_fingerprint(db: &str) -> String {
    let mut out = Vec::new();
    for t in ["customers", "orders", "empty_table"] {
        out.extend(my(Some(db), &format!("SHOW CREATE TABLE {t}")));
        out.extend(my(Some(db), &format!("SELECT * FROM {t} ORDER BY id")));
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Asserts two fingerprints are equal, showing the first differing line.
#[track_caller]
pub fn assert_same(actual: &str, expected: &str, what: &str) {
    if actual != expected {
        let (a, e): (Vec<_>, Vec<_>) = (actual.lines().collect(), expected.lines().collect());
        let i = a
            .iter()
            .zip(&e)
            .position(|(x, y)| x != y)
            .unwrap_or(a.len().min(e.len()));
        panic!(
            "{what}: line {i} differs ({} vs {} lines)\n  got:      {:?}\n  expected: {:?}",
            a.len(),
            e.len(),
            a.get(i),
            e.get(i)
        );
    }
}
