//! Backs up one PostgreSQL database once and prints what it took, for
//! `scripts/backup-bench.sh` (which runs `pg_dump | zstd` beside it).
//!
//! Usage: `backup_once <database> <store dir> [none|gzip|zstd] [encrypt]`
//! Connects to 127.0.0.1:5432 as postgres (PGPASSWORD from the environment).

use sluice_backup::{
    run_backup, BackupRequest, BackupStore, Compression, Connection, EngineKind, Keyring, Local,
};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        return Err("usage: backup_once <database> <store dir> [none|gzip|zstd] [encrypt]".into());
    }
    let compression: Compression = args.get(3).map(String::as_str).unwrap_or("zstd").parse()?;
    let keys = Keyring::new("bench", "bench secret")?;
    let encrypt = args.get(4).is_some_and(|a| a == "encrypt");
    let store = BackupStore::local(&args[2])?;
    let conn = Connection {
        host: "127.0.0.1".into(),
        port: 5432,
        user: "postgres".into(),
        password: std::env::var("PGPASSWORD").ok(),
    };
    let out = run_backup(
        &store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &conn,
            database: &args[1],
            compression,
            encryption: encrypt.then_some(&keys),
            object_key: "bench.sql",
            progress: None,
        },
    )
    .await?;
    println!(
        "dump_bytes={} object_bytes={} seconds={:.3}",
        out.dump_bytes,
        out.size_bytes,
        out.duration.as_secs_f64()
    );
    Ok(())
}
