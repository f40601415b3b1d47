//! The SSH and docker transports against a real OpenSSH server that each
//! test starts on a spare port (see `support::sshd`), logging in as root by
//! key; the database tools then run "remotely" on this same machine, against
//! the real PostgreSQL and MariaDB.

mod support;

use std::sync::Arc;
use std::time::Duration;

use sha2::{Digest, Sha256};
use sluice_backup::transport::run_capture;
use sluice_backup::{
    run_backup, run_restore, BackupError, BackupRequest, Compression, Connection, Docker,
    EngineKind, ErrorClass, Keyring, RestoreRequest, Ssh, SshAuth, SshConfig, ToolCommand,
    ToolFailure, Transport,
};
use support::sshd::{fingerprint, keygen, Sshd};
use support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

async fn round_trip(
    transport: &dyn Transport,
    restore_transport: &dyn Transport,
    kind: EngineKind,
    conn: &Connection,
    source: &str,
    target: &str,
) {
    let store = TempStore::new();
    let keys = Keyring::new("k1", "test secret key").unwrap();
    let key = format!("ssh/{}.sql.zst", unique("obj"));
    let out = run_backup(
        &store.store,
        BackupRequest {
            engine: kind.engine(),
            transport,
            connection: conn,
            database: source,
            compression: Compression::Zstd,
            encryption: Some(&keys),
            object_key: &key,
            progress: None,
        },
    )
    .await
    .expect("backup over ssh");
    assert!(out.dump_bytes > 500_000, "dump of {} bytes", out.dump_bytes);
    run_restore(
        &store.store,
        RestoreRequest {
            masking: None,
            engine: kind.engine(),
            transport: restore_transport,
            connection: conn,
            target_database: target,
            object_key: &key,
            expected_checksum: &out.checksum,
            compression: Compression::Zstd,
            decryption: Some(&keys),
            progress: None,
        },
    )
    .await
    .expect("restore over ssh");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_round_trip_over_ssh_with_trust_on_first_use() {
    let sshd = Sshd::start("");
    let source = PgDb::create();
    seed_pg(&source.0);
    let target = PgDb::name();
    // A password the trust-authenticated server ignores: it still travels
    // the whole way (PGPASSWORD through the stdin preamble).
    let conn = Connection {
        password: Some("unused pw with 'quotes' and $vars".into()),
        ..pg_conn()
    };

    // First contact: no expected key; the one presented is recorded.
    let first = Ssh::new(sshd.config()).unwrap();
    assert_eq!(first.seen_host_key(), None);
    first.connect().await.expect("connect");
    let seen = first.seen_host_key().expect("host key recorded");
    assert_eq!(seen, sshd.host_fingerprint());

    // Later: pinned to what was seen.
    let pinned = Ssh::new(sshd.config().expected_host_key(seen.clone())).unwrap();
    round_trip(
        &first,
        &pinned,
        EngineKind::Postgres,
        &conn,
        &source.0,
        &target.0,
    )
    .await;
    assert_eq!(pinned.seen_host_key(), Some(seen));
    assert_same(
        &pg_fingerprint(&target.0),
        &pg_fingerprint(&source.0),
        "restored over ssh",
    );
}

/// A stand-in for the docker CLI (no Docker engine can run on the test
/// machines): it checks `exec -i`, that every `-e NAME` is set in its own
/// environment, and the container name, logs its arguments, then runs the
/// tool directly, as `docker exec` would run it in the container.
const FAKE_DOCKER: &str = r#"#!/bin/sh
echo "$*" >> "$(dirname "$0")/../docker-args.log"
[ "$1" = exec ] && [ "$2" = -i ] || { echo "fake docker: expected exec -i" >&2; exit 64; }
shift 2
while [ "$1" = -e ]; do
  eval "[ -n \"\${$2+set}\" ]" || { echo "fake docker: $2 is not in the environment" >&2; exit 65; }
  shift 2
done
[ "$1" = sluice-db ] || { echo "Error response from daemon: No such container: $1" >&2; exit 1; }
shift
exec "$@"
"#;

fn docker_sshd() -> Sshd {
    // sshd's SetEnv puts the fake docker first on the sessions' PATH.
    let sshd = Sshd::start("SetEnv PATH={dir}/bin:/usr/local/bin:/usr/bin:/bin");
    let bin = sshd.dir.join("bin");
    std::fs::create_dir_all(&bin).unwrap();
    let docker = bin.join("docker");
    std::fs::write(&docker, FAKE_DOCKER).unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&docker, std::fs::Permissions::from_mode(0o755)).unwrap();
    sshd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mariadb_round_trip_through_docker_over_ssh() {
    let sshd = docker_sshd();
    let source = MyDb::create();
    seed_my(&source.0);
    let target = MyDb::name();
    let ssh = Arc::new(Ssh::new(sshd.config()).unwrap());
    let docker = Docker::new(Arc::clone(&ssh), "sluice-db").unwrap();
    round_trip(
        &docker,
        &docker,
        EngineKind::MySql,
        &my_conn(),
        &source.0,
        &target.0,
    )
    .await;
    assert_same(
        &my_fingerprint(&target.0),
        &my_fingerprint(&source.0),
        "restored through docker",
    );
    assert!(ssh.seen_host_key().is_some());

    // A secret reaches the tool through `-e NAME` and the environment only.
    let cmd = ToolCommand::new("sh")
        .arg("-c")
        .arg("printf %s \"$SLUICE_SECRET\" | sha256sum")
        .env("SLUICE_SECRET", "docker-secret-value");
    let out = run_capture(&docker, &cmd).await.unwrap();
    assert!(
        out.starts_with(&hex(&Sha256::digest("docker-secret-value"))),
        "{out}"
    );
    let args = std::fs::read_to_string(sshd.dir.join("docker-args.log")).unwrap();
    assert!(
        args.contains("exec -i -e SLUICE_SECRET sluice-db sh -c"),
        "{args}"
    );
    assert!(!args.contains("docker-secret-value"), "{args}");

    // An unknown container: docker's error comes back as the tool's.
    let other = Docker::new(ssh, "missing").unwrap();
    let err = run_capture(&other, &ToolCommand::new("true"))
        .await
        .unwrap_err();
    match &err {
        BackupError::Tool {
            tool,
            status,
            message,
            ..
        } => {
            assert_eq!(tool, "true");
            assert_eq!(status, "exit status: 1");
            assert!(message.contains("No such container: missing"), "{message}");
        }
        e => panic!("unexpected {e:?}"),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[tokio::test]
async fn host_key_mismatch_is_refused_permanently() {
    let sshd = Sshd::start("");
    // Expect some other key's fingerprint (the client key's).
    let other = fingerprint(&sshd.dir.join("client.pub"));
    let ssh = Ssh::new(sshd.config().expected_host_key(other.clone())).unwrap();
    let err = run_capture(&ssh, &ToolCommand::new("true"))
        .await
        .unwrap_err();
    match &err {
        BackupError::HostKeyMismatch {
            expected,
            presented,
            ..
        } => {
            assert_eq!(*expected, other);
            assert_eq!(*presented, sshd.host_fingerprint());
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Permanent);
    let text = err.to_string();
    assert!(
        text.contains(&other) && text.contains(&sshd.host_fingerprint()),
        "{text}"
    );
    assert_eq!(ssh.seen_host_key(), Some(sshd.host_fingerprint()));
}

#[tokio::test]
async fn wrong_key_and_refused_password_are_permanent() {
    let sshd = Sshd::start("");
    let stranger = sshd.dir.join("stranger");
    keygen(&stranger, "");
    let mut config = sshd.config();
    config.auth = SshAuth::PrivateKey {
        pem: std::fs::read_to_string(&stranger).unwrap(),
        passphrase: None,
    };
    let err = Ssh::new(config).unwrap().connect().await.unwrap_err();
    assert!(
        matches!(&err, BackupError::SshAuthRefused { user, .. } if user == "root"),
        "{err:?}"
    );
    assert_eq!(err.class(), ErrorClass::Permanent);

    // The server takes no passwords: refused the same way.
    let mut config = sshd.config();
    config.auth = SshAuth::Password("not-the-password".into());
    let err = Ssh::new(config).unwrap().connect().await.unwrap_err();
    assert!(matches!(err, BackupError::SshAuthRefused { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn encrypted_private_key_with_its_passphrase() {
    let sshd = Sshd::start("");
    let key = sshd.dir.join("locked");
    keygen(&key, "open sesame");
    sshd.authorize(&sshd.dir.join("locked.pub"));
    let pem = std::fs::read_to_string(&key).unwrap();
    let config = |passphrase: Option<&str>| {
        let mut c = sshd.config();
        c.auth = SshAuth::PrivateKey {
            pem: pem.clone(),
            passphrase: passphrase.map(str::to_owned),
        };
        c
    };
    let ssh = Ssh::new(config(Some("open sesame"))).unwrap();
    let out = run_capture(&ssh, &ToolCommand::new("echo").arg("hello"))
        .await
        .unwrap();
    assert_eq!(out, "hello\n");
    let err = Ssh::new(config(Some("wrong"))).unwrap_err();
    assert!(matches!(err, BackupError::Invalid(_)), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Permanent);
}

#[tokio::test]
async fn connection_refused_and_timeout_are_transient() {
    // A port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let config = SshConfig::new("127.0.0.1", "root", SshAuth::Password("x".into())).port(port);
    let err = Ssh::new(config).unwrap().connect().await.unwrap_err();
    assert!(matches!(err, BackupError::Ssh { .. }), "{err:?}");
    assert_eq!(err.class(), ErrorClass::Transient, "{err}");

    // A listener that never speaks SSH: the connect timeout ends it.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = silent.local_addr().unwrap().port();
    let config = SshConfig::new("127.0.0.1", "root", SshAuth::Password("x".into()))
        .port(port)
        .connect_timeout(Duration::from_millis(300));
    let err = Ssh::new(config).unwrap().connect().await.unwrap_err();
    assert!(err.to_string().contains("timed out"), "{err}");
    assert_eq!(err.class(), ErrorClass::Transient);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_never_show_in_the_remote_process_list() {
    let sshd = Sshd::start("");
    let ssh = Ssh::new(sshd.config()).unwrap();
    let secret = "Sup3r-Secret-Needle";

    // A tool holding the secret keeps running (it waits on its stdin)
    // while another channel lists every process on the host.
    let holder = ToolCommand::new("sh")
        .arg("-c")
        .arg("cat > /dev/null; printf %s \"$PGPASSWORD\" | sha256sum")
        .env("PGPASSWORD", secret)
        .with_stdin()
        .with_stdout();
    let mut held = ssh.spawn(&holder).await.unwrap();
    // The holder is running once its shell is waiting on cat.
    let mut listing = String::new();
    for _ in 0..50 {
        listing = run_capture(&ssh, &ToolCommand::new("ps").arg("-eo").arg("args"))
            .await
            .unwrap();
        if listing.contains("cat > /dev/null") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(listing.contains("cat > /dev/null"), "{listing}");
    assert!(!listing.contains(secret), "{listing}");
    assert!(!ssh.command_line(&holder).contains(secret));

    // And the tool did get it.
    let mut stdin = held.stdin.take().unwrap();
    stdin.shutdown().await.unwrap();
    drop(stdin);
    let mut out = String::new();
    held.stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .await
        .unwrap();
    held.exit.await.unwrap();
    assert!(out.starts_with(&hex(&Sha256::digest(secret))), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stdin_and_stdout_stream_through_one_connection() {
    let sshd = Sshd::start("");
    let ssh = Ssh::new(sshd.config()).unwrap();
    // 3 MB of every byte value, a line that looks like NAME=value and an
    // empty line included, through `cat`, several times on one connection.
    let mut data = b"PGPASSWORD=not-env\n\n".to_vec();
    data.extend((0..3_000_000u32).map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8));
    for round in 0..3 {
        let cmd = ToolCommand::new("cat")
            .env("SOME_VAR", format!("round {round}"))
            .with_stdin()
            .with_stdout();
        let mut p = ssh.spawn(&cmd).await.unwrap();
        let mut stdin = p.stdin.take().unwrap();
        let mut stdout = p.stdout.take().unwrap();
        let input = data.clone();
        let writer = tokio::spawn(async move {
            stdin.write_all(&input).await.unwrap();
            // Round 1 drops stdin without a shutdown: EOF all the same.
            if round != 1 {
                stdin.shutdown().await.unwrap();
            }
        });
        let mut out = Vec::new();
        stdout.read_to_end(&mut out).await.unwrap();
        writer.await.unwrap();
        p.exit.await.unwrap();
        assert!(out == data, "round {round}: {} bytes back", out.len());
    }
}

#[tokio::test]
async fn tool_failures_come_back_as_tool_errors() {
    let sshd = Sshd::start("");
    let ssh = Ssh::new(sshd.config()).unwrap();

    let cmd = ToolCommand::new("sh").arg("-c").arg(
        "echo 'psql: error: FATAL:  password authentication failed for user \"x\"' >&2; exit 3",
    );
    match run_capture(&ssh, &cmd).await.unwrap_err() {
        e @ BackupError::Tool { .. } => {
            let BackupError::Tool {
                tool,
                status,
                message,
                failure,
                ..
            } = &e
            else {
                unreachable!()
            };
            assert_eq!(tool, "sh");
            assert_eq!(status, "exit status: 3");
            assert!(
                message.contains("password authentication failed"),
                "{message}"
            );
            assert_eq!(*failure, ToolFailure::AuthenticationRefused);
            assert_eq!(e.class(), ErrorClass::Permanent);
        }
        e => panic!("unexpected {e:?}"),
    }

    // Killed by a signal: transient, as locally.
    let cmd = ToolCommand::new("sh").arg("-c").arg("kill -TERM $$");
    match run_capture(&ssh, &cmd).await.unwrap_err() {
        e @ BackupError::Tool { .. } => {
            assert!(e.to_string().contains("TERM"), "{e}");
            assert_eq!(e.class(), ErrorClass::Transient);
        }
        e => panic!("unexpected {e:?}"),
    }

    // A program the remote host lacks.
    let err = run_capture(&ssh, &ToolCommand::new("no-such-tool-sluice"))
        .await
        .unwrap_err();
    match &err {
        BackupError::Tool {
            status, message, ..
        } => {
            assert_eq!(status, "exit status: 127");
            assert!(message.contains("not found"), "{message}");
        }
        e => panic!("unexpected {e:?}"),
    }
    assert_eq!(err.class(), ErrorClass::Permanent);

    // PostgreSQL's own refusal of a database, through the remote pg tools.
    let engine = EngineKind::Postgres.engine();
    let missing = engine
        .database_exists(&ssh, &pg_conn(), "sluice_no_such_db_x")
        .await
        .unwrap();
    assert!(!missing);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_a_process_stops_the_remote_tool() {
    let sshd = Sshd::start("");
    let ssh = Ssh::new(sshd.config()).unwrap();
    let running = || async {
        run_capture(&ssh, &ToolCommand::new("ps").arg("-eo").arg("args"))
            .await
            .unwrap()
            .lines()
            .any(|l| l.trim() == "sleep 61.2345")
    };
    let cmd = ToolCommand::new("sh").arg("-c").arg("exec sleep 61.2345");
    let p = ssh.spawn(&cmd).await.unwrap();
    let mut seen = false;
    for _ in 0..50 {
        if running().await {
            seen = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(seen, "the tool never showed up");
    drop(p);
    for _ in 0..50 {
        if !running().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!(
        "the tool outlived its dropped Process; sshd log:\n{}",
        sshd.log()
    );
}
