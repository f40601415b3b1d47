//! Where backup objects live: any `object_store` store — a local directory
//! by default, or an S3-compatible bucket by configuration.
//!
//! Objects are written through `object_store`'s buffered multipart writer
//! with small parts and little concurrency, so an upload holds at most a
//! few parts in memory whatever the object's size. A half-written object is
//! never visible under its final name: the local store writes a staging
//! file (`<name>#<n>`) and renames it only when the upload completes; S3
//! shows a multipart upload only once it is completed. A failed backup
//! aborts its upload (the staging file is removed).
//!
//! # Choosing a store
//!
//! [`BackupStore::from_url`] takes the store's location and, for S3, its
//! [`S3Options`]:
//!
//! - a plain path (`/var/lib/sluice/backups`, `./backups`) or a `file:` URL
//!   (`file:///var/lib/sluice/backups`): a local directory, created when
//!   missing ([`BackupStore::local`]);
//! - `s3://bucket` or `s3://bucket/some/prefix`: a bucket on AWS S3 or any
//!   S3-compatible server (MinIO, Ceph, R2, …, with
//!   [`S3Options::endpoint`]). Object keys are relative to the prefix:
//!   key `t1/b42.sql.zst` in `s3://backups/sluice` is the object
//!   `sluice/t1/b42.sql.zst` of bucket `backups`, and
//!   [`BackupStore::url`] names it `s3://backups/sluice/t1/b42.sql.zst`.
//!
//! [`BackupStore::from_env`] reads the same from the environment. Each S3
//! setting is read from its `SLUICE_S3_*` name first and, when that is
//! unset or empty, from the standard AWS name:
//!
//! | setting | variable | fallback |
//! |---|---|---|
//! | location | `SLUICE_BACKUP_STORE` | — (unset: `from_env` answers `None`, the caller picks its default) |
//! | endpoint URL | `SLUICE_S3_ENDPOINT` | `AWS_ENDPOINT_URL`, `AWS_ENDPOINT` |
//! | region | `SLUICE_S3_REGION` | `AWS_REGION`, `AWS_DEFAULT_REGION` (then `us-east-1`) |
//! | access key id | `SLUICE_S3_ACCESS_KEY_ID` | `AWS_ACCESS_KEY_ID` |
//! | secret access key | `SLUICE_S3_SECRET_ACCESS_KEY` | `AWS_SECRET_ACCESS_KEY` |
//! | session token | `SLUICE_S3_SESSION_TOKEN` | `AWS_SESSION_TOKEN` |
//! | plain `http://` endpoints allowed | `SLUICE_S3_ALLOW_HTTP` | `AWS_ALLOW_HTTP` |
//! | virtual-hosted-style requests | `SLUICE_S3_VIRTUAL_HOSTED_STYLE` | `AWS_VIRTUAL_HOSTED_STYLE_REQUEST` |
//!
//! Booleans are `true`/`false`, `1`/`0`, `yes`/`no` or `on`/`off`. Requests
//! are path-style (`https://endpoint/bucket/key`, what every S3-compatible
//! server understands) unless virtual-hosted style is asked for
//! (`https://bucket.endpoint/key`; the bucket is put in front of a custom
//! endpoint's host unless the endpoint already starts with it). Without an
//! access key the store asks the instance metadata service for
//! credentials (an EC2 instance role).
//!
//! Secrets (the secret access key, the session token) never appear in
//! `Debug` output, errors or logs; a `s3://` location carrying credentials
//! in its user-info part is refused.
//!
//! # Downloads
//!
//! [`BackupStore::presigned_get`] gives a time-limited presigned `GET` URL
//! (AWS Signature V4 in the query string) for an S3 object, and `None` for
//! the local store, whose objects Sluice serves itself.

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::prefix::PrefixStore;
use object_store::signer::Signer;
use object_store::ObjectStore;
use url::Url;

use crate::error::{BackupError, Result};

/// Bytes buffered per part (5 MiB is S3's smallest part size).
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight at once.
const PART_CONCURRENCY: usize = 2;
/// The longest a presigned URL may live (S3's own limit: 7 days).
pub const MAX_PRESIGN_EXPIRY: Duration = Duration::from_secs(7 * 24 * 3600);
/// The region used when none is configured.
const DEFAULT_REGION: &str = "us-east-1";

/// The environment variable naming the store ([`BackupStore::from_env`]).
pub const STORE_ENV: &str = "SLUICE_BACKUP_STORE";

/// How to reach an S3-compatible server. `Debug` shows the secret access
/// key and the session token only as `<redacted>`.
#[derive(Clone, Default)]
pub struct S3Options {
    /// The server's URL (`http://127.0.0.1:9000`, `https://s3.example.com`);
    /// AWS's own endpoint for the region when unset.
    pub endpoint: Option<String>,
    /// `us-east-1` when unset.
    pub region: Option<String>,
    /// With [`Self::secret_access_key`]; both unset means instance
    /// credentials.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// For temporary credentials.
    pub session_token: Option<String>,
    /// Whether a plain `http://` endpoint is accepted.
    pub allow_http: bool,
    /// Virtual-hosted-style requests (`bucket.endpoint/key`) instead of
    /// path-style (`endpoint/bucket/key`, the default).
    pub virtual_hosted_style: bool,
}

impl std::fmt::Debug for S3Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let redacted = |v: &Option<String>| v.as_ref().map(|_| "<redacted>");
        f.debug_struct("S3Options")
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field("secret_access_key", &redacted(&self.secret_access_key))
            .field("session_token", &redacted(&self.session_token))
            .field("allow_http", &self.allow_http)
            .field("virtual_hosted_style", &self.virtual_hosted_style)
            .finish()
    }
}

impl S3Options {
    /// Reads the options from the process environment (see the module
    /// docs for the names).
    pub fn from_env() -> Result<Self> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// Reads the options through `get` (a variable's value by name), so
    /// configuration can come from elsewhere than the process environment.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Self> {
        // The first of the names that is set and not empty.
        let first = |names: &[&str]| {
            names
                .iter()
                .filter_map(|n| get(n))
                .map(|v| v.trim().to_owned())
                .find(|v| !v.is_empty())
        };
        let flag = |names: &[&str]| -> Result<bool> {
            match first(names) {
                None => Ok(false),
                Some(v) => parse_bool(&v).ok_or_else(|| {
                    BackupError::Invalid(format!("{}: {v:?} is not a boolean", names[0]))
                }),
            }
        };
        Ok(Self {
            endpoint: first(&["SLUICE_S3_ENDPOINT", "AWS_ENDPOINT_URL", "AWS_ENDPOINT"]),
            region: first(&["SLUICE_S3_REGION", "AWS_REGION", "AWS_DEFAULT_REGION"]),
            access_key_id: first(&["SLUICE_S3_ACCESS_KEY_ID", "AWS_ACCESS_KEY_ID"]),
            secret_access_key: first(&["SLUICE_S3_SECRET_ACCESS_KEY", "AWS_SECRET_ACCESS_KEY"]),
            session_token: first(&["SLUICE_S3_SESSION_TOKEN", "AWS_SESSION_TOKEN"]),
            allow_http: flag(&["SLUICE_S3_ALLOW_HTTP", "AWS_ALLOW_HTTP"])?,
            virtual_hosted_style: flag(&[
                "SLUICE_S3_VIRTUAL_HOSTED_STYLE",
                "AWS_VIRTUAL_HOSTED_STYLE_REQUEST",
            ])?,
        })
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v.to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Some(true),
        "0" | "false" | "no" | "off" => Some(false),
        _ => None,
    }
}

/// The bucket's endpoint for virtual-hosted-style requests: the bucket in
/// front of the endpoint's host, unless it is there already.
fn virtual_hosted_endpoint(endpoint: &str, bucket: &str) -> Result<String> {
    let mut url = Url::parse(endpoint)
        .map_err(|e| BackupError::Invalid(format!("S3 endpoint {endpoint:?}: {e}")))?;
    let host = url
        .host_str()
        .ok_or_else(|| BackupError::Invalid(format!("S3 endpoint {endpoint:?}: no host")))?
        .to_owned();
    if !host.starts_with(&format!("{bucket}.")) {
        url.set_host(Some(&format!("{bucket}.{host}")))
            .map_err(|e| BackupError::Invalid(format!("S3 endpoint {endpoint:?}: {e}")))?;
    }
    Ok(url.as_str().trim_end_matches('/').to_owned())
}

/// What an S3 store keeps besides its `dyn ObjectStore`: the client itself,
/// to sign URLs, and the prefix its keys live under.
#[derive(Clone)]
struct S3Signing {
    client: Arc<AmazonS3>,
    prefix: Path,
}

impl S3Signing {
    /// The object's path in the bucket.
    fn full_path(&self, key: &Path) -> Path {
        self.prefix.parts().chain(key.parts()).collect()
    }
}

#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    /// URL of the store's root (`file:///var/lib/sluice/backups/`), ends in `/`.
    base_url: String,
    local_root: Option<PathBuf>,
    s3: Option<S3Signing>,
}

impl std::fmt::Debug for BackupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BackupStore")
            .field("base_url", &self.base_url)
            .finish()
    }
}

impl BackupStore {
    /// A store in a local directory (created when missing).
    pub fn local(dir: impl AsRef<FsPath>) -> Result<Self> {
        std::fs::create_dir_all(dir.as_ref())?;
        let root = std::fs::canonicalize(dir.as_ref())?;
        let store = LocalFileSystem::new_with_prefix(&root)?;
        let mut base_url = format!("file://{}", root.display());
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        Ok(Self {
            store: Arc::new(store),
            base_url,
            local_root: Some(root),
            s3: None,
        })
    }

    /// The store at `location`: a plain path or `file:` URL (a local
    /// directory), or `s3://bucket[/prefix]` reached with `s3` (ignored for
    /// local stores). See the module docs.
    pub fn from_url(location: &str, s3: &S3Options) -> Result<Self> {
        let location = location.trim();
        if location.is_empty() {
            return Err(BackupError::Invalid("backup store location: empty".into()));
        }
        if !location.contains("://") {
            return Self::local(location);
        }
        let url = Url::parse(location).map_err(|e| {
            BackupError::Invalid(format!("backup store location {location:?}: {e}"))
        })?;
        match url.scheme() {
            "file" => {
                let dir = url.to_file_path().map_err(|()| {
                    BackupError::Invalid(format!(
                        "backup store location {location:?}: not a local absolute path"
                    ))
                })?;
                Self::local(dir)
            }
            "s3" => {
                // Never echo the location itself here: it may carry a secret.
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(BackupError::Invalid(
                        "backup store location: credentials go in the S3 options, not the s3:// URL"
                            .into(),
                    ));
                }
                if url.query().is_some() || url.fragment().is_some() {
                    return Err(BackupError::Invalid(format!(
                        "backup store location {location:?}: no query or fragment expected"
                    )));
                }
                let bucket = url.host_str().unwrap_or_default();
                let prefix = Path::from_url_path(url.path()).map_err(|e| {
                    BackupError::Invalid(format!("backup store location {location:?}: {e}"))
                })?;
                Self::s3(bucket, prefix.as_ref(), s3)
            }
            other => Err(BackupError::Unsupported(format!(
                "backup store scheme {other:?} (expected a path, file:// or s3://)"
            ))),
        }
    }

    /// The store named by `SLUICE_BACKUP_STORE`, with S3 options from the
    /// environment ([`S3Options::from_env`]); `None` when the variable is
    /// unset or empty (the caller picks its default).
    pub fn from_env() -> Result<Option<Self>> {
        Self::from_lookup(|name| std::env::var(name).ok())
    }

    /// [`Self::from_env`] reading variables through `get`.
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Option<Self>> {
        let location = match get(STORE_ENV) {
            Some(v) if !v.trim().is_empty() => v,
            _ => return Ok(None),
        };
        let options = S3Options::from_lookup(&get)?;
        Self::from_url(&location, &options).map(Some)
    }

    /// A bucket on an S3-compatible server; keys live under `prefix` (may
    /// be empty).
    pub fn s3(bucket: &str, prefix: &str, options: &S3Options) -> Result<Self> {
        let valid_bucket = !bucket.is_empty()
            && bucket.len() <= 63
            && bucket
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'));
        if !valid_bucket {
            return Err(BackupError::Invalid(format!("S3 bucket name {bucket:?}")));
        }
        let prefix = Path::parse(prefix.trim_matches('/'))
            .map_err(|e| BackupError::Invalid(format!("S3 prefix: {e}")))?;
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(options.region.as_deref().unwrap_or(DEFAULT_REGION))
            .with_allow_http(options.allow_http)
            .with_virtual_hosted_style_request(options.virtual_hosted_style);
        if let Some(endpoint) = &options.endpoint {
            builder = builder.with_endpoint(if options.virtual_hosted_style {
                virtual_hosted_endpoint(endpoint, bucket)?
            } else {
                endpoint.trim_end_matches('/').to_owned()
            });
        }
        match (&options.access_key_id, &options.secret_access_key) {
            (Some(id), Some(secret)) => {
                builder = builder
                    .with_access_key_id(id)
                    .with_secret_access_key(secret);
            }
            (None, None) => {}
            _ => return Err(BackupError::Invalid(
                "S3 credentials: set both the access key id and the secret access key, or neither"
                    .into(),
            )),
        }
        if let Some(token) = &options.session_token {
            builder = builder.with_token(token);
        }
        let client = Arc::new(
            builder
                .build()
                .map_err(|e| BackupError::Invalid(format!("S3 store configuration: {e}")))?,
        );
        let store: Arc<dyn ObjectStore> = if prefix.as_ref().is_empty() {
            Arc::clone(&client) as Arc<dyn ObjectStore>
        } else {
            Arc::new(PrefixStore::new(AmazonS3::clone(&client), prefix.clone()))
        };
        let base_url = if prefix.as_ref().is_empty() {
            format!("s3://{bucket}/")
        } else {
            format!("s3://{bucket}/{prefix}/")
        };
        Ok(Self {
            store,
            base_url,
            local_root: None,
            s3: Some(S3Signing { client, prefix }),
        })
    }

    /// Any other store; `base_url` names its root (`s3://bucket/prefix/`).
    pub fn new(store: Arc<dyn ObjectStore>, base_url: impl Into<String>) -> Self {
        let mut base_url = base_url.into();
        if !base_url.ends_with('/') {
            base_url.push('/');
        }
        Self {
            store,
            base_url,
            local_root: None,
            s3: None,
        }
    }

    /// The URL naming an object (`file:///…/key` for the local store).
    pub fn url(&self, key: &str) -> String {
        format!("{}{}", self.base_url, key)
    }

    /// A presigned `GET` URL for the object, valid for `expires_in` (one
    /// second to [`MAX_PRESIGN_EXPIRY`]), for an S3 store; `None` for other
    /// stores (Sluice serves local objects itself). Signing is local: the
    /// object is not looked up. The URL is a bearer credential until it
    /// expires: hand it to the client, do not log it.
    pub async fn presigned_get(&self, key: &str, expires_in: Duration) -> Result<Option<String>> {
        let path = Self::path(key)?;
        let Some(s3) = &self.s3 else {
            return Ok(None);
        };
        if expires_in < Duration::from_secs(1) || expires_in > MAX_PRESIGN_EXPIRY {
            return Err(BackupError::Invalid(format!(
                "presigned URL lifetime {expires_in:?}: between 1 s and 7 days"
            )));
        }
        let url = s3
            .client
            .signed_url(http::Method::GET, &s3.full_path(&path), expires_in)
            .await?;
        Ok(Some(url.into()))
    }

    /// The object's file, for the local store.
    pub fn local_path(&self, key: &str) -> Option<PathBuf> {
        self.local_root.as_ref().map(|r| r.join(key))
    }

    pub(crate) fn path(key: &str) -> Result<Path> {
        let p = Path::parse(key).map_err(|e| BackupError::Invalid(format!("object key: {e}")))?;
        if p.as_ref().is_empty() {
            return Err(BackupError::Invalid("object key: empty".into()));
        }
        Ok(p)
    }

    pub(crate) fn writer(&self, key: &str) -> Result<BufWriter> {
        Ok(
            BufWriter::with_capacity(Arc::clone(&self.store), Self::path(key)?, PART_SIZE)
                .with_max_concurrency(PART_CONCURRENCY),
        )
    }

    /// The stored object as a stream of chunks (downloads, restores).
    pub async fn read(&self, key: &str) -> Result<BoxStream<'static, Result<Bytes>>> {
        let got = self.store.get(&Self::path(key)?).await?;
        Ok(got
            .into_stream()
            .map(|r| r.map_err(BackupError::from))
            .boxed())
    }

    /// The stored object's size in bytes.
    pub async fn size(&self, key: &str) -> Result<u64> {
        Ok(self.store.head(&Self::path(key)?).await?.size)
    }

    /// Removes an object (no error when it is already gone).
    pub async fn delete(&self, key: &str) -> Result<()> {
        match self.store.delete(&Self::path(key)?).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    fn lookup(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    fn keys() -> S3Options {
        S3Options {
            access_key_id: Some("AKIDTEST".into()),
            secret_access_key: Some("s3cr3t-value".into()),
            ..S3Options::default()
        }
    }

    #[test]
    fn local_locations() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", uuid::Uuid::new_v4()));
        let plain = BackupStore::from_url(dir.to_str().unwrap(), &S3Options::default()).unwrap();
        let url = format!("file://{}", dir.display());
        let file = BackupStore::from_url(&url, &S3Options::default()).unwrap();
        assert_eq!(plain.url("a/b"), file.url("a/b"));
        assert_eq!(file.url("a/b"), format!("{url}/a/b"));
        assert_eq!(file.local_path("a/b"), Some(dir.join("a/b")));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn local_store_has_no_presigned_url() {
        let dir = std::env::temp_dir().join(format!("sluice-store-{}", uuid::Uuid::new_v4()));
        let store = BackupStore::local(&dir).unwrap();
        let got = store
            .presigned_get("a/b", Duration::from_secs(60))
            .await
            .unwrap();
        assert_eq!(got, None);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[tokio::test]
    async fn s3_locations_and_presigning() {
        let store = BackupStore::from_url("s3://my-bucket/some/prefix/", &keys()).unwrap();
        assert_eq!(store.url("t1/b.sql"), "s3://my-bucket/some/prefix/t1/b.sql");
        assert_eq!(store.local_path("t1/b.sql"), None);
        let url = store
            .presigned_get("t1/b.sql", Duration::from_secs(600))
            .await
            .unwrap()
            .unwrap();
        assert!(
            url.starts_with("https://s3.us-east-1.amazonaws.com/my-bucket/some/prefix/t1/b.sql?"),
            "{url}"
        );
        assert!(url.contains("X-Amz-Expires=600") && url.contains("X-Amz-Signature="));
        assert!(!url.contains("s3cr3t"));
        for bad in [Duration::ZERO, MAX_PRESIGN_EXPIRY + Duration::from_secs(1)] {
            let e = store.presigned_get("t1/b.sql", bad).await.unwrap_err();
            assert!(matches!(e, BackupError::Invalid(_)), "{e}");
        }

        let bare = BackupStore::from_url("s3://my-bucket", &keys()).unwrap();
        assert_eq!(bare.url("k"), "s3://my-bucket/k");

        let custom = S3Options {
            endpoint: Some("http://127.0.0.1:9000/".into()),
            region: Some("eu-west-3".into()),
            allow_http: true,
            ..keys()
        };
        let store = BackupStore::from_url("s3://b1/p", &custom).unwrap();
        let url = store
            .presigned_get("k", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(url.starts_with("http://127.0.0.1:9000/b1/p/k?"), "{url}");
        assert!(url.contains("%2Feu-west-3%2Fs3%2F"), "{url}");

        let hosted = S3Options {
            endpoint: Some("https://s3.example.com".into()),
            virtual_hosted_style: true,
            ..keys()
        };
        let store = BackupStore::from_url("s3://b1/p", &hosted).unwrap();
        let url = store
            .presigned_get("k", Duration::from_secs(60))
            .await
            .unwrap()
            .unwrap();
        assert!(url.starts_with("https://b1.s3.example.com/p/k?"), "{url}");
    }

    #[test]
    fn virtual_hosted_endpoints() {
        assert_eq!(
            virtual_hosted_endpoint("https://s3.example.com/", "b1").unwrap(),
            "https://b1.s3.example.com"
        );
        assert_eq!(
            virtual_hosted_endpoint("https://b1.s3.example.com", "b1").unwrap(),
            "https://b1.s3.example.com"
        );
    }

    #[test]
    fn refuses_bad_locations() {
        let invalid = |loc: &str, opts: &S3Options| {
            let e = BackupStore::from_url(loc, opts).unwrap_err();
            assert!(
                matches!(e, BackupError::Invalid(_) | BackupError::Unsupported(_)),
                "{loc}: {e}"
            );
            e.to_string()
        };
        invalid("", &keys());
        invalid("s3://", &keys());
        invalid("s3:///prefix", &keys());
        invalid("s3://bad bucket/x", &keys());
        invalid("s3://b1/x?versionId=1", &keys());
        assert!(matches!(
            BackupStore::from_url("gs://b1/x", &keys()),
            Err(BackupError::Unsupported(_))
        ));
        let msg = invalid("s3://AKID:hunter2@b1/x", &keys());
        assert!(!msg.contains("hunter2"), "{msg}");
        let half = S3Options {
            access_key_id: Some("AKID".into()),
            ..S3Options::default()
        };
        invalid("s3://b1/x", &half);
    }

    #[test]
    fn secrets_stay_out_of_debug() {
        let opts = S3Options {
            session_token: Some("t0ken-value".into()),
            ..keys()
        };
        let text = format!("{opts:?}");
        assert!(
            text.contains("AKIDTEST") && text.contains("<redacted>"),
            "{text}"
        );
        assert!(
            !text.contains("s3cr3t") && !text.contains("t0ken"),
            "{text}"
        );
        let store = BackupStore::from_url("s3://b1/p", &opts).unwrap();
        let text = format!("{store:?}");
        assert!(
            !text.contains("s3cr3t") && !text.contains("t0ken"),
            "{text}"
        );
    }

    #[test]
    fn options_from_lookup() {
        assert!(BackupStore::from_lookup(lookup(&[])).unwrap().is_none());
        assert!(BackupStore::from_lookup(lookup(&[(STORE_ENV, " ")]))
            .unwrap()
            .is_none());

        let o = S3Options::from_lookup(lookup(&[
            ("SLUICE_S3_ENDPOINT", "http://minio:9000"),
            ("AWS_ENDPOINT_URL", "http://ignored"),
            ("SLUICE_S3_REGION", ""),
            ("AWS_DEFAULT_REGION", "eu-north-1"),
            ("AWS_ACCESS_KEY_ID", "AKID"),
            ("SLUICE_S3_SECRET_ACCESS_KEY", "sec"),
            ("SLUICE_S3_ALLOW_HTTP", "TRUE"),
            ("AWS_VIRTUAL_HOSTED_STYLE_REQUEST", "0"),
        ]))
        .unwrap();
        assert_eq!(o.endpoint.as_deref(), Some("http://minio:9000"));
        assert_eq!(o.region.as_deref(), Some("eu-north-1"));
        assert_eq!(o.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(o.secret_access_key.as_deref(), Some("sec"));
        assert_eq!(o.session_token, None);
        assert!(o.allow_http && !o.virtual_hosted_style);

        let e = S3Options::from_lookup(lookup(&[("SLUICE_S3_ALLOW_HTTP", "maybe")])).unwrap_err();
        assert!(e.to_string().contains("SLUICE_S3_ALLOW_HTTP"), "{e}");

        let store = BackupStore::from_lookup(lookup(&[
            (STORE_ENV, "s3://b1/env/prefix"),
            ("SLUICE_S3_ACCESS_KEY_ID", "AKID"),
            ("SLUICE_S3_SECRET_ACCESS_KEY", "sec"),
        ]))
        .unwrap()
        .unwrap();
        assert_eq!(store.url("k"), "s3://b1/env/prefix/k");
    }
}
