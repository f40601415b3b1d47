//! Backups into a real S3-compatible server: each test starts its own moto
//! (`python3 -m moto.server` on a spare port, killed on drop; installed by
//! scripts/services.sh), creates a bucket and backs up the real PostgreSQL
//! into it, then restores from it and checks what presigned URLs serve.
//!
//! Moto serves any URL that carries a `Signature` without checking it, so
//! presigned URLs are also checked against AWS's own SDK (botocore, which
//! moto brings): the signature must be what botocore computes from the
//! secret, and a tampered one must not be.

mod support;

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};
use sluice_backup::{
    run_backup, run_restore, BackupError, BackupOutcome, BackupRequest, BackupStore, Compression,
    EngineKind, Keyring, Local, RestoreRequest, S3Options,
};
use support::*;

const ACCESS_KEY_ID: &str = "AKIASLUICETEST";
const SECRET: &str = "sluice-test-secret-0123456789";

/// A moto server on a spare port, killed when dropped.
struct Moto {
    child: Child,
    endpoint: String,
}

impl Moto {
    async fn start() -> Self {
        let importable = Command::new("python3")
            .args(["-c", "import moto.server, flask, botocore"])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(
            importable,
            "moto is not installed: run scripts/services.sh (python3 -m pip install 'moto[server]')"
        );
        let port = {
            let l = TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        let child = Command::new("python3")
            .args(["-m", "moto.server", "-H", "127.0.0.1", "-p"])
            .arg(port.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start moto");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(r) = client.get(&moto.endpoint).send().await {
                if r.status().is_success() {
                    break;
                }
            }
            if let Some(status) = moto.child.try_wait().unwrap() {
                panic!("moto exited before answering: {status}");
            }
            assert!(Instant::now() < deadline, "moto did not answer in 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        moto
    }

    /// Creates a bucket (moto takes an unsigned `PUT /bucket`).
    async fn bucket(&self) -> String {
        let name = unique("sluice-bkt").replace('_', "-");
        let r = reqwest::Client::new()
            .put(format!("{}/{name}", self.endpoint))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "create bucket: {}", r.status());
        name
    }

    fn options(&self) -> S3Options {
        S3Options {
            endpoint: Some(self.endpoint.clone()),
            region: Some("eu-west-1".into()),
            access_key_id: Some(ACCESS_KEY_ID.into()),
            secret_access_key: Some(SECRET.into()),
            session_token: None,
            allow_http: true,
            virtual_hosted_style: false,
        }
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Recomputes a presigned URL's SigV4 signature with botocore from the
/// URL's own date, scope and lifetime; true when it is the URL's.
const VERIFY_PRESIGNED: &str = r#"
import sys, urllib.parse
from botocore.auth import S3SigV4QueryAuth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
url, secret = sys.argv[1], sys.argv[2]
p = urllib.parse.urlsplit(url)
q = urllib.parse.parse_qsl(p.query, keep_blank_values=True)
d = dict(q)
key_id, _, region, service, _ = d['X-Amz-Credential'].split('/')
rest = [(k, v) for k, v in q if not k.startswith('X-Amz-')]
base = urllib.parse.urlunsplit((p.scheme, p.netloc, p.path, urllib.parse.urlencode(rest), ''))
req = AWSRequest(method='GET', url=base)
req.context['timestamp'] = d['X-Amz-Date']
auth = S3SigV4QueryAuth(Credentials(key_id, secret), service, region, expires=int(d['X-Amz-Expires']))
auth._modify_request_before_signing(req)
sig = auth.signature(auth.string_to_sign(req, auth.canonical_request(req)), req)
print('match' if sig == d['X-Amz-Signature'] else 'mismatch')
"#;

fn botocore_accepts(url: &str) -> bool {
    let out = Command::new("python3")
        .args(["-c", VERIFY_PRESIGNED, url, SECRET])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "verifier failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    text.trim() == "match"
}

/// The URL with the last hex digit of its signature changed.
fn tampered(url: &str) -> String {
    let mut t = url.to_owned();
    let last = t.pop().unwrap();
    t.push(if last == '0' { '1' } else { '0' });
    assert!(t.contains("X-Amz-Signature=") && t != url);
    t
}

async fn backup(
    store: &BackupStore,
    db: &str,
    compression: Compression,
    keys: Option<&Keyring>,
    key: &str,
) -> Result<BackupOutcome, BackupError> {
    run_backup(
        store,
        BackupRequest {
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            database: db,
            compression,
            encryption: keys,
            object_key: key,
            progress: None,
        },
    )
    .await
}

async fn restore(
    store: &BackupStore,
    target: &str,
    out: &BackupOutcome,
    compression: Compression,
    keys: Option<&Keyring>,
) {
    run_restore(
        store,
        RestoreRequest {
            masking: None,
            engine: EngineKind::Postgres.engine(),
            transport: &Local,
            connection: &pg_conn(),
            target_database: target,
            object_key: &out.object_key,
            expected_checksum: &out.checksum,
            compression,
            decryption: keys,
            progress: None,
        },
    )
    .await
    .unwrap();
}

/// Fetches the object through a fresh presigned URL with a plain GET (no
/// credentials); checks its length and SHA-256 against the outcome.
async fn fetch_presigned(store: &BackupStore, out: &BackupOutcome) -> (String, Vec<u8>) {
    let url = store
        .presigned_get(&out.object_key, Duration::from_secs(300))
        .await
        .unwrap()
        .expect("an S3 store presigns");
    let r = reqwest::get(&url).await.unwrap();
    assert_eq!(r.status(), 200, "presigned GET");
    let bytes = r.bytes().await.unwrap().to_vec();
    assert_eq!(bytes.len() as u64, out.size_bytes);
    assert_eq!(
        format!("sha256:{}", hex::encode(Sha256::digest(&bytes))),
        out.checksum
    );
    (url, bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_pg_zstd_encrypted_round_trip() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    // Through the environment names, as Sluice configures it.
    let o = moto.options();
    let env = [
        ("SLUICE_BACKUP_STORE", format!("s3://{bucket}/sluice/tests")),
        ("SLUICE_S3_ENDPOINT", moto.endpoint.clone()),
        ("SLUICE_S3_REGION", o.region.clone().unwrap()),
        ("SLUICE_S3_ACCESS_KEY_ID", ACCESS_KEY_ID.into()),
        ("SLUICE_S3_SECRET_ACCESS_KEY", SECRET.into()),
        ("SLUICE_S3_ALLOW_HTTP", "true".into()),
    ];
    let store = BackupStore::from_lookup(|name| {
        env.iter().find(|(k, _)| *k == name).map(|(_, v)| v.clone())
    })
    .unwrap()
    .unwrap();
    assert!(!format!("{store:?}").contains(SECRET));

    let source = PgDb::create();
    seed_pg(&source.0);
    let before = pg_fingerprint(&source.0);
    let keys = Keyring::new("k1", "test secret key").unwrap();
    let key = "pg/backup.sql.zst";
    let out = backup(&store, &source.0, Compression::Zstd, Some(&keys), key)
        .await
        .unwrap();
    assert_eq!(
        out.storage_url,
        format!("s3://{bucket}/sluice/tests/pg/backup.sql.zst")
    );
    assert_eq!(store.size(key).await.unwrap(), out.size_bytes);
    assert!(out.dump_bytes > 500_000, "dump of {} bytes", out.dump_bytes);

    let (url, bytes) = fetch_presigned(&store, &out).await;
    assert!(
        url.starts_with(&format!(
            "{}/{bucket}/sluice/tests/pg/backup.sql.zst?",
            moto.endpoint
        )),
        "{url}"
    );
    assert!(url.contains("X-Amz-Expires=300"), "{url}");
    assert!(!url.contains(SECRET));
    assert!(bytes.starts_with(b"SLUICEBK"), "encrypted object");
    for needle in [&b"customers"[..], b"example.com", b"COPY public."] {
        assert!(!bytes.windows(needle.len()).any(|w| w == needle));
    }
    // The signature is AWS SigV4 as AWS's SDK computes it; a tampered one
    // is not, and moto refuses the object without a signed query string.
    assert!(botocore_accepts(&url), "botocore rejects {url}");
    assert!(!botocore_accepts(&tampered(&url)));
    let bare = url.split('?').next().unwrap();
    assert_eq!(reqwest::get(bare).await.unwrap().status(), 403);

    let target = PgDb::name();
    restore(&store, &target.0, &out, Compression::Zstd, Some(&keys)).await;
    assert_same(
        &pg_fingerprint(&target.0),
        &before,
        "restored database differs",
    );

    store.delete(key).await.unwrap();
    let gone = store.size(key).await.unwrap_err();
    assert!(
        matches!(
            gone,
            BackupError::Store(object_store::Error::NotFound { .. })
        ),
        "{gone}"
    );
    assert_eq!(reqwest::get(&url).await.unwrap().status(), 404);
    store.delete(key).await.unwrap(); // already gone: no error
}

/// An object above the 5 MiB part size goes up as a multipart upload.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_multipart_plain_round_trip() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let store = BackupStore::from_url(&format!("s3://{bucket}"), &moto.options()).unwrap();
    let source = PgDb::create();
    pg(
        &source.0,
        "CREATE TABLE big (id int PRIMARY KEY, body text NOT NULL);
         INSERT INTO big SELECT i, md5(i::text) || repeat(md5((i * 7)::text), 4)
         FROM generate_series(1, 100000) i;",
    );
    let fingerprint = "SELECT count(*), md5(string_agg(body, ',' ORDER BY id)) FROM big";
    let before = pg_text(&source.0, fingerprint);
    let out = backup(&store, &source.0, Compression::None, None, "big.sql")
        .await
        .unwrap();
    assert!(
        out.size_bytes > 12 * 1024 * 1024,
        "{} bytes: not multipart",
        out.size_bytes
    );
    assert_eq!(out.storage_url, format!("s3://{bucket}/big.sql"));
    assert_eq!(store.size("big.sql").await.unwrap(), out.size_bytes);
    let (_, bytes) = fetch_presigned(&store, &out).await;
    assert!(bytes.windows(13).any(|w| w == b"CREATE TABLE "));

    let target = PgDb::name();
    restore(&store, &target.0, &out, Compression::None, None).await;
    assert_eq!(pg_text(&target.0, fingerprint), before);
    store.delete("big.sql").await.unwrap();
}

/// A backup that fails aborts its upload: nothing appears in the bucket.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn s3_failed_backup_leaves_no_object() {
    let moto = Moto::start().await;
    let bucket = moto.bucket().await;
    let store = BackupStore::from_url(&format!("s3://{bucket}/p"), &moto.options()).unwrap();
    let missing = PgDb::name();
    let e = backup(&store, &missing.0, Compression::Zstd, None, "x.sql.zst")
        .await
        .unwrap_err();
    assert!(matches!(e, BackupError::Tool { .. }), "{e}");
    assert!(matches!(
        store.size("x.sql.zst").await,
        Err(BackupError::Store(object_store::Error::NotFound { .. }))
    ));
    let listing = reqwest::get(format!("{}/{bucket}", moto.endpoint))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(!listing.contains("<Key>"), "{listing}");
}
