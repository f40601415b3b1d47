//! `TestApp`: a Sluice started in-process for one test.

use std::future::Future;
use std::time::{Duration, Instant};

use serde_json::Value;
use sluice::app::{self, Mode, Running};
use sluice::config::Config;
use sluice_storage::pg::{api_keys, tenants};
use uuid::Uuid;

pub struct TestApp {
    pub base: String,
    pub key: String,
    pub tenant_id: Uuid,
    pub http: reqwest::Client,
    pub cfg: Config,
    pub running: Running,
}

/// Settings for a test: its own Redis prefix, no rate limits or caches
/// unless a test asks, quick key reloads and reclaims.
pub fn test_config() -> Config {
    let mut cfg = Config::from_env();
    cfg.addr = "127.0.0.1:0".parse().unwrap();
    cfg.redis_prefix = format!("sluice-test-{}", &Uuid::new_v4().simple().to_string()[..12]);
    cfg.stream_shards = 2;
    cfg.ingest_rate_limit = 0;
    cfg.api_rate_limit = 0;
    cfg.analytics_rate_limit = 0;
    cfg.analytics_cache_secs = 0;
    cfg.key_refresh_ms = 200;
    cfg.worker_reclaim_idle_ms = 1000;
    cfg.worker_linger_ms = 100;
    cfg.pg_pool_size = 5;
    cfg.bootstrap_api_key = None;
    cfg.dev = true;
    cfg.tracking_rate_limits = false;
    // Each app its own backup store, under the system's temp directory.
    cfg.backup_store = Some(
        std::env::temp_dir()
            .join(format!("sluice-test-backups-{}", &cfg.redis_prefix))
            .display()
            .to_string(),
    );
    cfg.job_heartbeat_secs = 1;
    cfg
}

/// A fresh tenant and a read/write key for it.
pub async fn new_tenant(pool: &sqlx::PgPool) -> (Uuid, String) {
    let slug = format!("test-{}", Uuid::new_v4().simple());
    let t = tenants::ensure(pool, &slug, &slug).await.unwrap();
    let perms = vec!["read".to_string(), "write".to_string()];
    let (_, key) = api_keys::create(
        pool,
        &api_keys::NewKey {
            tenant_id: t.id,
            name: "test",
            permissions: &perms,
            rate_limit_per_min: None,
            expires_at: None,
        },
    )
    .await
    .unwrap();
    (t.id, key)
}

impl TestApp {
    pub async fn spawn() -> Self {
        Self::spawn_with(Mode::ALL, |_| {}).await
    }

    pub async fn spawn_with(mode: Mode, tweak: impl FnOnce(&mut Config)) -> Self {
        let mut cfg = test_config();
        tweak(&mut cfg);
        let pool = app::migrate(&cfg).await.expect("migrations");
        let (tenant_id, key) = new_tenant(&pool).await;
        let running = app::start(&cfg, mode).await.expect("app starts");
        let base = format!("http://{}", running.addr.expect("listening"));
        TestApp {
            base,
            key,
            tenant_id,
            http: reqwest::Client::builder()
                .user_agent("sluice-e2e")
                .build()
                .unwrap(),
            cfg,
            running,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub fn get(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.get(self.url(path)).header("X-API-Key", &self.key)
    }

    pub fn put(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.put(self.url(path)).header("X-API-Key", &self.key)
    }

    pub fn delete(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .delete(self.url(path))
            .header("X-API-Key", &self.key)
    }

    pub fn post(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("X-API-Key", &self.key)
    }

    /// Posts one error; asserts it was accepted; returns its data object.
    pub async fn post_error(&self, body: Value) -> Value {
        let r = self.post("/api/errors").json(&body).send().await.unwrap();
        let status = r.status();
        let v: Value = r.json().await.unwrap();
        assert_eq!(status, 201, "post failed: {v}");
        assert_eq!(v["status"], "success");
        v["data"].clone()
    }

    /// The Prometheus text of `/metrics` (no key needed).
    pub async fn metrics_text(&self) -> String {
        self.http
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// GETs a path and returns (status, body).
    pub async fn get_json(&self, path: &str) -> (u16, Value) {
        let r = self.get(path).send().await.unwrap();
        let s = r.status().as_u16();
        (s, r.json().await.unwrap_or(Value::Null))
    }

    /// Waits until the error group `id` has `count` occurrences.
    pub async fn wait_count(&self, id: &str, count: i64) -> Value {
        wait_for(&format!("group {id} to reach count {count}"), || async {
            let (s, v) = self.get_json(&format!("/api/errors/{id}")).await;
            (s == 200 && v["data"]["count"] == count).then(|| v["data"].clone())
        })
        .await
    }

    /// Sum of `count` over every group of this tenant.
    pub async fn total_count(&self) -> i64 {
        let (_, v) = self.get_json("/api/errors?limit=100").await;
        v["data"]["errors"]
            .as_array()
            .map(|a| a.iter().map(|e| e["count"].as_i64().unwrap_or(0)).sum())
            .unwrap_or(0)
    }

    /// Occurrences of this tenant in ClickHouse's raw table.
    pub async fn stored_in_clickhouse(&self) -> u64 {
        sluice_storage::ch::events::count_raw(&self.running.ch, self.tenant_id, None)
            .await
            .unwrap()
    }

    /// Waits until Postgres's group counts and ClickHouse's rows of this
    /// tenant both reach `n`.
    pub async fn wait_stored(&self, n: u64) {
        wait_for(&format!("all {n} in Postgres"), || async {
            (self.total_count().await == n as i64).then_some(())
        })
        .await;
        wait_for(&format!("all {n} in ClickHouse"), || async {
            (self.stored_in_clickhouse().await == n).then_some(())
        })
        .await;
    }

    pub async fn stop(self) {
        let TestApp {
            running, tenant_id, ..
        } = self;
        let pg = running.pg.clone();
        let redis = running.redis.clone();
        let layout = running.layout.clone();
        running.stop().await;
        if let Ok(mut conn) = redis.get().await {
            let _ = layout.destroy(&mut conn).await;
        }
        let _ = tenants::delete(&pg, tenant_id).await;
    }
}

/// Polls `f` every 100 ms until it gives a value, for at most 20 s.
pub async fn wait_for<T, F, Fut>(what: &str, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(v) = f().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn gzip(bytes: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    enc.write_all(bytes).unwrap();
    enc.finish().unwrap()
}

/// A registered user: its access token and the tenant it owns.
pub struct User {
    pub username: String,
    pub token: String,
    pub refresh: String,
    pub tenant_id: Uuid,
}

impl TestApp {
    /// Registers a user (who gets a tenant of their own) and logs in.
    pub async fn register_user(&self) -> User {
        let username = format!("user-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let r = self
            .http
            .post(self.url("/api/v1/auth/register"))
            .json(&serde_json::json!({"username": username, "password": "s3cret-passw0rd", "email": format!("{username}@example.com"), "full_name": "Test User"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        let reg: Value = r.json().await.unwrap();
        let tenant_id = Uuid::parse_str(reg["tenant"]["id"].as_str().unwrap()).unwrap();
        let r = self
            .http
            .post(self.url("/api/v1/auth/login"))
            .json(&serde_json::json!({"username": username, "password": "s3cret-passw0rd"}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
        let login: Value = r.json().await.unwrap();
        User {
            username,
            token: login["access_token"].as_str().unwrap().to_string(),
            refresh: login["refresh_token"].as_str().unwrap().to_string(),
            tenant_id,
        }
    }

    /// Logs `username` in; answers the access token.
    pub async fn login(&self, username: &str, password: &str) -> String {
        let (s, v) = status_json(
            self.http
                .post(self.url("/api/v1/auth/login"))
                .json(&serde_json::json!({"username": username, "password": password})),
        )
        .await;
        assert_eq!(s, 200, "{v}");
        v["access_token"].as_str().unwrap().to_string()
    }

    /// A user with `role` in the owner's tenant (made through the users
    /// API), logged in: its access token.
    pub async fn member_token(&self, owner: &User, role: &str) -> String {
        let username = format!("m-{}", &Uuid::new_v4().simple().to_string()[..10]);
        let (s, v) = status_json(
            self.bearer(
                reqwest::Method::POST,
                "/api/v1/users",
                &owner.token,
                &owner.tenant_id.to_string(),
            )
            .json(&serde_json::json!({"username": username,
                "email": format!("{username}@example.com"),
                "password": "member-pass-1", "role": role})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        self.login(&username, "member-pass-1").await
    }

    /// A request with `Authorization: Bearer` and `X-Tenant-ID`.
    pub fn bearer(
        &self,
        method: reqwest::Method,
        path: &str,
        token: &str,
        tenant: &str,
    ) -> reqwest::RequestBuilder {
        self.http
            .request(method, self.url(path))
            .bearer_auth(token)
            .header("X-Tenant-ID", tenant)
    }
}

pub async fn status_json(r: reqwest::RequestBuilder) -> (u16, Value) {
    let r = r.send().await.unwrap();
    let s = r.status().as_u16();
    (s, r.json().await.unwrap_or(Value::Null))
}
