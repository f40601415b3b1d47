//! Registered databases (a master and its replicas).

use serde_json::Value;
use sqlx::PgPool;
use uuid::Uuid;

use crate::Result;

#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Database {
    pub id: i64,
    pub tenant_id: Uuid,
    pub name: String,
    pub db_type: String,
    pub environment: String,
    pub master_sealed: Vec<u8>,
    /// `[{"replicaId", "role"}]` in registration order.
    pub replicas: Value,
    /// The replicas' sealed connection strings, in the same order.
    pub replica_conns_sealed: Vec<Vec<u8>>,
    pub created_at: chrono::DateTime<chrono::Utc>,
}

macro_rules! columns {
    () => {
        "id, tenant_id, name, db_type, environment, master_sealed, replicas, \
         replica_conns_sealed, created_at"
    };
}

/// A registration's fields (secrets already sealed).
#[derive(Debug, Clone)]
pub struct NewDatabase {
    pub name: String,
    pub db_type: String,
    pub environment: String,
    pub master_sealed: Vec<u8>,
    pub replicas: Value,
    pub replica_conns_sealed: Vec<Vec<u8>>,
}

pub async fn insert(
    pool: &PgPool,
    tenant: Uuid,
    d: &NewDatabase,
    created_by: Option<Uuid>,
) -> Result<Database> {
    let sql = concat!(
        "INSERT INTO orch_databases (tenant_id, name, db_type, environment, master_sealed, \
         replicas, replica_conns_sealed, created_by) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) \
         RETURNING ",
        columns!()
    );
    Ok(sqlx::query_as::<_, Database>(sql)
        .bind(tenant)
        .bind(&d.name)
        .bind(&d.db_type)
        .bind(&d.environment)
        .bind(&d.master_sealed)
        .bind(&d.replicas)
        .bind(&d.replica_conns_sealed)
        .bind(created_by)
        .fetch_one(pool)
        .await?)
}

pub async fn get(pool: &PgPool, tenant: Uuid, id: i64) -> Result<Option<Database>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_databases WHERE tenant_id = $1 AND id = $2"
    );
    Ok(sqlx::query_as::<_, Database>(sql)
        .bind(tenant)
        .bind(id)
        .fetch_optional(pool)
        .await?)
}

/// The tenant's registrations, oldest first.
pub async fn list(pool: &PgPool, tenant: Uuid) -> Result<Vec<Database>> {
    let sql = concat!(
        "SELECT ",
        columns!(),
        " FROM orch_databases WHERE tenant_id = $1 ORDER BY id"
    );
    Ok(sqlx::query_as::<_, Database>(sql)
        .bind(tenant)
        .fetch_all(pool)
        .await?)
}
