//! Masked restores against the real PostgreSQL and MariaDB: exactly the
//! columns the rules name change (whole names, case-insensitively), each as
//! its strategy says, and every other value arrives byte for byte. A rule
//! the column's type cannot take fails the restore and leaves the target
//! as it was.

mod support;

use std::collections::HashMap;

use sluice_backup::mask::Masker;
use sluice_backup::{
    run_backup, run_restore, BackupError, BackupRequest, Compression, Connection, EngineKind,
    ErrorClass, Local, MaskingRules, RestoreRequest,
};
use support::*;

const KEY: &[u8] = b"tenant-derived masking key";

fn rules() -> MaskingRules {
    MaskingRules::parse(
        KEY.to_vec(),
        [("email", "hash"), ("phone", "randomize"), ("ssn", "null")],
    )
    .unwrap()
}

async fn backup_and_restore(
    kind: EngineKind,
    conn: &Connection,
    source: &str,
    target: &str,
    rules: &MaskingRules,
) -> Result<(), BackupError> {
    let store = TempStore::new();
    let out = run_backup(
        &store.store,
        BackupRequest {
            engine: kind.engine(),
            transport: &Local,
            connection: conn,
            database: source,
            compression: Compression::Zstd,
            encryption: None,
            object_key: "masked",
            progress: None,
        },
    )
    .await
    .unwrap();
    run_restore(
        &store.store,
        RestoreRequest {
            engine: kind.engine(),
            transport: &Local,
            connection: conn,
            target_database: target,
            object_key: "masked",
            expected_checksum: &out.checksum,
            compression: Compression::Zstd,
            decryption: None,
            progress: None,
            masking: Some(rules),
        },
    )
    .await
    .map(drop)
}

/// `id<sep>hex-or-NULL` lines into a map.
fn hex_column(text: &str, sep: char) -> Vec<(String, Option<Vec<u8>>)> {
    text.lines()
        .filter(|l| !l.is_empty())
        .map(|l| {
            let (id, v) = l.split_once(sep).unwrap();
            let v = (v != "NULL").then(|| hex::decode(v).unwrap());
            (id.to_owned(), v)
        })
        .collect()
}

/// Checks hash / randomize / null between a source and a target column.
fn check_hash(
    source: &[(String, Option<Vec<u8>>)],
    target: &[(String, Option<Vec<u8>>)],
    seen: &mut HashMap<Vec<u8>, Vec<u8>>,
) {
    let r = rules();
    let masker = Masker::new(&r).unwrap();
    assert_eq!(source.len(), target.len());
    for ((sid, s), (tid, t)) in source.iter().zip(target) {
        assert_eq!(sid, tid);
        match (s, t) {
            (None, None) => {}
            (Some(s), Some(t)) => {
                assert_eq!(t.len(), 32, "{t:?}");
                assert!(t
                    .iter()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(b)));
                assert_ne!(s, t);
                assert_eq!(*t, masker.hash(s), "row {sid}");
                if let Some(previous) = seen.insert(s.clone(), t.clone()) {
                    assert_eq!(previous, *t, "equal inputs, different hashes");
                }
            }
            other => panic!("row {sid}: hash changed nullness: {other:?}"),
        }
    }
}

fn check_randomized(source: &[(String, Option<Vec<u8>>)], target: &[(String, Option<Vec<u8>>)]) {
    assert_eq!(source.len(), target.len());
    for ((sid, s), (_, t)) in source.iter().zip(target) {
        let t = String::from_utf8(t.clone().expect("randomize gives a value")).unwrap();
        match s {
            None => {
                assert_eq!(t.len(), 8);
                assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
            }
            Some(s) => {
                let s = String::from_utf8(s.clone()).unwrap();
                assert_ne!(s, t, "row {sid}");
                assert_eq!(s.chars().count(), t.chars().count());
                for (a, b) in s.chars().zip(t.chars()) {
                    if a.is_ascii_digit() {
                        assert!(b.is_ascii_digit(), "{s} -> {t}");
                    } else if a.is_alphabetic() {
                        assert!(
                            b.is_alphabetic() && a.is_uppercase() == b.is_uppercase(),
                            "{s} -> {t}"
                        );
                    } else {
                        assert_eq!(a, b, "{s} -> {t}");
                    }
                }
            }
        }
    }
}

fn seed_pg_people(db: &str) {
    pg(
        db,
        r#"
CREATE TABLE customers (
  id int PRIMARY KEY, email text NOT NULL, email_verified text, phone text, ssn text,
  note text, score int, avatar bytea);
INSERT INTO customers
SELECT i,
       CASE WHEN i % 5 = 0 THEN E'we\tird\n\\ é 日本@x.org' ELSE 'user' || (i % 40) || '@example.com' END,
       'user' || (i % 40) || '@example.com',
       CASE WHEN i % 9 = 0 THEN NULL ELSE '+1 (555) ' || lpad(i::text, 4, '0') || E' ext\t' || i END,
       CASE WHEN i % 4 = 0 THEN NULL ELSE '123-45-' || lpad(i::text, 4, '0') END,
       CASE WHEN i % 3 = 0 THEN NULL ELSE E'note\t' || i || E'\nline \\ é' END,
       i * 7,
       decode(md5(i::text), 'hex') || '\x000a5c09'::bytea
FROM generate_series(1, 300) i;
CREATE TABLE "Contacts" (id int PRIMARY KEY, "Email" varchar(64), "Phone" varchar(40), other text);
INSERT INTO "Contacts"
SELECT i,
       CASE WHEN i % 7 = 0 THEN NULL WHEN i % 5 = 0 THEN E'we\tird\n\\ é 日本@x.org' ELSE 'user' || (i % 60) || '@example.com' END,
       CASE WHEN i % 2 = 0 THEN NULL ELSE '06 ' || lpad(i::text, 8, '0') END,
       E'other \\N\t' || i
FROM generate_series(1, 120) i;
"#,
    );
}

fn pg_col(db: &str, table: &str, column: &str) -> Vec<(String, Option<Vec<u8>>)> {
    hex_column(
        &pg_text(
            db,
            &format!(
                "SELECT id, coalesce(encode(convert_to({column}, 'UTF8'), 'hex'), 'NULL') FROM {table} ORDER BY id"
            ),
        ),
        '|',
    )
}

fn pg_unmasked(db: &str) -> Vec<u8> {
    let mut out = pg(
        db,
        "SELECT table_name, column_name, data_type, is_nullable FROM information_schema.columns \
         WHERE table_schema = 'public' ORDER BY 1, 2",
    );
    out.extend(pg(
        db,
        "COPY (SELECT id, email_verified, note, score, avatar FROM customers ORDER BY id) TO STDOUT",
    ));
    out.extend(pg(
        db,
        "COPY (SELECT id, other FROM \"Contacts\" ORDER BY id) TO STDOUT",
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masked_restore() {
    let source = PgDb::create();
    seed_pg_people(&source.0);
    let before = pg_unmasked(&source.0);
    let target = PgDb::name();
    backup_and_restore(
        EngineKind::Postgres,
        &pg_conn(),
        &source.0,
        &target.0,
        &rules(),
    )
    .await
    .unwrap();

    assert_eq!(pg_unmasked(&target.0), before, "an unmasked column changed");
    let mut seen = HashMap::new();
    check_hash(
        &pg_col(&source.0, "customers", "email"),
        &pg_col(&target.0, "customers", "email"),
        &mut seen,
    );
    check_hash(
        &pg_col(&source.0, "\"Contacts\"", "\"Email\""),
        &pg_col(&target.0, "\"Contacts\"", "\"Email\""),
        &mut seen,
    );
    // Distinct inputs, distinct outputs; equal ones met in both tables.
    let outputs: std::collections::HashSet<_> = seen.values().collect();
    assert_eq!(outputs.len(), seen.len());
    assert!(seen.len() > 40, "{} distinct emails", seen.len());
    check_randomized(
        &pg_col(&source.0, "customers", "phone"),
        &pg_col(&target.0, "customers", "phone"),
    );
    check_randomized(
        &pg_col(&source.0, "\"Contacts\"", "\"Phone\""),
        &pg_col(&target.0, "\"Contacts\"", "\"Phone\""),
    );
    assert_eq!(
        pg_text(&target.0, "SELECT count(*), count(ssn) FROM customers"),
        "300|0"
    );
    // The source is untouched.
    assert_eq!(pg_unmasked(&source.0), before);
    assert_eq!(
        pg_text(&source.0, "SELECT count(ssn) FROM customers"),
        "225"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_masking_a_column_its_type_refuses_leaves_the_target_untouched() {
    let source = PgDb::create();
    seed_pg_people(&source.0);
    let target = PgDb::create();
    pg(
        &target.0,
        "CREATE TABLE keep (id int PRIMARY KEY); INSERT INTO keep VALUES (1)",
    );
    let bad = MaskingRules::parse(KEY.to_vec(), [("score", "hash")]).unwrap();
    let err = backup_and_restore(EngineKind::Postgres, &pg_conn(), &source.0, &target.0, &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Tool { .. }), "{err}");
    assert!(err.to_string().contains("integer"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        pg_text(
            &target.0,
            "SELECT string_agg(tablename, ',') FROM pg_tables WHERE schemaname = 'public'"
        ),
        "keep"
    );
}

fn seed_my_people(db: &str) {
    my(
        Some(db),
        r#"
CREATE TABLE customers (
  id INT PRIMARY KEY, email VARCHAR(255) NOT NULL, email_verified VARCHAR(255), phone VARCHAR(40),
  ssn VARCHAR(16), note TEXT, score INT, avatar VARBINARY(32)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO customers
SELECT seq,
       IF(seq % 5 = 0, 'we\tird\n\\ é 日本 \'q\', (x)@x.org', CONCAT('user', seq % 40, '@example.com')),
       CONCAT('user', seq % 40, '@example.com'),
       IF(seq % 9 = 0, NULL, CONCAT('+1 (555) ', LPAD(seq, 4, '0'), ' ext\t', seq)),
       IF(seq % 4 = 0, NULL, CONCAT('123-45-', LPAD(seq, 4, '0'))),
       IF(seq % 3 = 0, NULL, CONCAT('note\t', seq, '\nline \\ é \'q\'),(')),
       seq * 7,
       UNHEX(CONCAT(MD5(seq), '000A5C09'))
FROM seq_1_to_300;
CREATE TABLE `Contacts` (id INT PRIMARY KEY, `Email` VARCHAR(64), `Phone` VARCHAR(40), other TEXT)
  ENGINE=InnoDB DEFAULT CHARSET=utf8mb4;
INSERT INTO `Contacts`
SELECT seq,
       IF(seq % 7 = 0, NULL, IF(seq % 5 = 0, 'we\tird\n\\ é 日本 \'q\', (x)@x.org', CONCAT('user', seq % 60, '@example.com'))),
       IF(seq % 2 = 0, NULL, CONCAT('06 ', LPAD(seq, 8, '0'))),
       CONCAT('other \\N\t', seq)
FROM seq_1_to_120;
"#,
    );
}

fn my_col(db: &str, table: &str, column: &str) -> Vec<(String, Option<Vec<u8>>)> {
    hex_column(
        &my_text(
            Some(db),
            &format!("SELECT id, IFNULL(HEX({column}), 'NULL') FROM {table} ORDER BY id"),
        ),
        '\t',
    )
}

fn my_unmasked(db: &str) -> Vec<u8> {
    let mut out = my(
        Some(db),
        "SHOW CREATE TABLE customers; SHOW CREATE TABLE `Contacts`",
    );
    out.extend(my(
        Some(db),
        "SELECT id, HEX(email_verified), HEX(note), score, HEX(avatar) FROM customers ORDER BY id",
    ));
    out.extend(my(
        Some(db),
        "SELECT id, HEX(other) FROM `Contacts` ORDER BY id",
    ));
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_masked_restore() {
    let source = MyDb::create();
    seed_my_people(&source.0);
    let before = my_unmasked(&source.0);
    let target = MyDb::name();
    backup_and_restore(
        EngineKind::MySql,
        &my_conn(),
        &source.0,
        &target.0,
        &rules(),
    )
    .await
    .unwrap();

    assert_eq!(my_unmasked(&target.0), before, "an unmasked column changed");
    let mut seen = HashMap::new();
    check_hash(
        &my_col(&source.0, "customers", "email"),
        &my_col(&target.0, "customers", "email"),
        &mut seen,
    );
    check_hash(
        &my_col(&source.0, "`Contacts`", "`Email`"),
        &my_col(&target.0, "`Contacts`", "`Email`"),
        &mut seen,
    );
    let outputs: std::collections::HashSet<_> = seen.values().collect();
    assert_eq!(outputs.len(), seen.len());
    assert!(seen.len() > 40, "{} distinct emails", seen.len());
    check_randomized(
        &my_col(&source.0, "customers", "phone"),
        &my_col(&target.0, "customers", "phone"),
    );
    check_randomized(
        &my_col(&source.0, "`Contacts`", "`Phone`"),
        &my_col(&target.0, "`Contacts`", "`Phone`"),
    );
    assert_eq!(
        my_text(
            Some(&target.0),
            "SELECT count(*), count(ssn) FROM customers"
        ),
        "300\t0"
    );
    assert_eq!(my_unmasked(&source.0), before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_masking_a_column_its_type_refuses_leaves_the_target_untouched() {
    let source = MyDb::create();
    seed_my_people(&source.0);
    let target = MyDb::create();
    my(
        Some(&target.0),
        "CREATE TABLE keep (id INT PRIMARY KEY); INSERT INTO keep VALUES (1)",
    );
    let before = my(Some(&target.0), "SHOW TABLES; SELECT * FROM keep");
    let bad = MaskingRules::parse(KEY.to_vec(), [("score", "hash")]).unwrap();
    let err = backup_and_restore(EngineKind::MySql, &my_conn(), &source.0, &target.0, &bad)
        .await
        .unwrap_err();
    assert!(matches!(err, BackupError::Mask(_)), "{err}");
    assert!(err.to_string().contains("customers.score"), "{err}");
    assert_eq!(err.class(), ErrorClass::Permanent);
    assert_eq!(
        my(Some(&target.0), "SHOW TABLES; SELECT * FROM keep"),
        before
    );
    let missing = MyDb::name();
    backup_and_restore(EngineKind::MySql, &my_conn(), &source.0, &missing.0, &bad)
        .await
        .unwrap_err();
    assert!(!my_exists(&missing.0));
}
