//! Backs up one PostgreSQL database once, or restores such a backup once,
//! and prints what it took, for `scripts/backup-bench.sh` (which runs
//! `pg_dump -Fc | zstd` and `pg_restore` beside it).
//!
//! Usage:
//! - `backup_once backup <database> <store dir> [none|gzip|zstd] [encrypt]`
//! - `backup_once restore <target database> <store dir> <checksum> [none|gzip|zstd] [encrypt]`
//!
//! Connects to 127.0.0.1:5432 as postgres (PGPASSWORD from the environment);
//! the object is `bench` in the store directory.

use sluice_backup::{
    run_backup, run_restore, BackupRequest, BackupStore, Compression, Connection, EngineKind,
    Keyring, Local, RestoreRequest,
};

const USAGE: &str = "usage: backup_once backup <database> <store dir> [none|gzip|zstd] [encrypt]\n       backup_once restore <target> <store dir> <checksum> [none|gzip|zstd] [encrypt]";

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        return Err(USAGE.into());
    }
    let keys = Keyring::new("bench", "bench secret")?;
    let store = BackupStore::local(&args[3])?;
    let conn = Connection {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: std::env::var("PGPASSWORD").ok(),
    };
    let engine = EngineKind::Postgres.engine();
    match args[1].as_str() {
        "backup" => {
            let compression: Compression =
                args.get(4).map(String::as_str).unwrap_or("zstd").parse()?;
            let encrypt = args.get(5).is_some_and(|a| a == "encrypt");
            let out = run_backup(
                &store,
                BackupRequest {
                    engine,
                    transport: &Local,
                    connection: &conn,
                    database: &args[2],
                    compression,
                    encryption: encrypt.then_some(&keys),
                    object_key: "bench",
                    progress: None,
                },
            )
            .await?;
            println!(
                "dump_bytes={} object_bytes={} checksum={} seconds={:.3}",
                out.dump_bytes,
                out.size_bytes,
                out.checksum,
                out.duration.as_secs_f64()
            );
        }
        "restore" => {
            let checksum = args.get(4).ok_or(USAGE)?;
            let compression: Compression =
                args.get(5).map(String::as_str).unwrap_or("zstd").parse()?;
            let encrypt = args.get(6).is_some_and(|a| a == "encrypt");
            let out = run_restore(
                &store,
                RestoreRequest {
                    engine,
                    transport: &Local,
                    connection: &conn,
                    target_database: &args[2],
                    object_key: "bench",
                    expected_checksum: checksum,
                    compression,
                    decryption: encrypt.then_some(&keys),
                    progress: None,
                    masking: None,
                },
            )
            .await?;
            println!(
                "object_bytes={} seconds={:.3}",
                out.object_bytes,
                out.duration.as_secs_f64()
            );
        }
        _ => return Err(USAGE.into()),
    }
    Ok(())
}
