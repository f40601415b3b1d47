//! Where backup objects live: any `object_store` store (a local directory
//! by default; S3-compatible later, by configuration).
//!
//! Objects are written through `object_store`'s buffered multipart writer
//! with small parts and little concurrency, so an upload holds at most a
//! few parts in memory whatever the object's size. A half-written object is
//! never visible under its final name: the local store writes a staging
//! file (`<name>#<n>`) and renames it only when the upload completes; S3
//! shows a multipart upload only once it is completed. A failed backup
//! aborts its upload (the staging file is removed).

use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use futures::stream::BoxStream;
use futures::StreamExt;
use object_store::buffered::BufWriter;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::ObjectStore;

use crate::error::{BackupError, Result};

/// Bytes buffered per part (5 MiB is S3's smallest part size).
const PART_SIZE: usize = 5 * 1024 * 1024;
/// Parts in flight at once.
const PART_CONCURRENCY: usize = 2;

#[derive(Clone)]
pub struct BackupStore {
    store: Arc<dyn ObjectStore>,
    /// URL of the store's root (`file:///var/lib/sluice/backups/`), ends in `/`.
    base_url: String,
    local_root: Option<PathBuf>,
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
        }
    }

    /// The URL naming an object (`file:///…/key` for the local store).
    pub fn url(&self, key: &str) -> String {
        format!("{}{}", self.base_url, key)
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
