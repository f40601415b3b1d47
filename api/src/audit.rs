//! Writing the audit log: one middleware ([`record`]) on the whole API
//! router records every state-changing request (POST, PUT, PATCH, DELETE)
//! that answered below 400, with the caller, the client's address and a
//! generic action (`http_post` on resource type `server`, …). A handler
//! that knows better puts an [`AuditNote`] in its response's extensions
//! and the middleware writes that instead — the only way an error answer
//! (a failed login) is recorded.
//!
//! The entry is written inline, after the handler, bounded by
//! [`WRITE_TIMEOUT`]; a failure or timeout is logged and counted
//! (`sluice_audit_write_failures_total`), never turned into an error for
//! the client. Inline keeps the log read-your-writes: once a client has its
//! answer, the entry is there.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use axum::extract::{ConnectInfo, Request, State};
use axum::http::{HeaderMap, Method};
use axum::middleware::Next;
use axum::response::Response;
use ipnet::IpNet;
use serde_json::{json, Value};
use sluice_auth::principal::Subject;
use sluice_storage::pg::audit::{self, NewEntry};
use uuid::Uuid;

use crate::ApiState;

/// How long writing one request's entries may take.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(2);

/// The precise entry for a request, set by its handler.
#[derive(Debug, Clone)]
pub struct AuditNote {
    pub action: &'static str,
    pub resource_type: &'static str,
    pub resource_id: Option<i64>,
    pub details: Value,
    /// Who acted, when the request's credentials do not say (a login).
    pub actor: Option<Actor>,
}

impl AuditNote {
    pub fn new(
        action: &'static str,
        resource_type: &'static str,
        resource_id: Option<i64>,
    ) -> Self {
        Self {
            action,
            resource_type,
            resource_id,
            details: json!({}),
            actor: None,
        }
    }

    pub fn details(mut self, details: Value) -> Self {
        self.details = details;
        self
    }

    pub fn actor(mut self, actor: Actor) -> Self {
        self.actor = Some(actor);
        self
    }
}

/// Who acted, in which tenants (one entry each; none: a tenant-less entry).
#[derive(Debug, Clone)]
pub struct Actor {
    pub tenants: Vec<Uuid>,
    pub user: Option<Uuid>,
    pub username: String,
}

/// The client's address: the peer's, unless the peer is a trusted proxy,
/// then the right-most untrusted hop of `X-Forwarded-For` (the same rule
/// as the ingest tier's `client_ip`).
pub fn client_ip(peer: SocketAddr, headers: &HeaderMap, trusted: &[IpNet]) -> IpAddr {
    let peer_ip = peer.ip().to_canonical();
    if !trusted.iter().any(|n| n.contains(&peer_ip)) {
        return peer_ip;
    }
    let hops = headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|h| h.trim().parse::<IpAddr>().ok())
        .collect::<Vec<_>>();
    hops.iter()
        .rev()
        .find(|ip| !trusted.iter().any(|n| n.contains(*ip)))
        .or(hops.first())
        .copied()
        .unwrap_or(peer_ip)
}

/// The request's client address, as text.
pub fn request_ip(
    state: &ApiState,
    req_headers: &HeaderMap,
    peer: Option<SocketAddr>,
) -> Option<String> {
    peer.map(|p| client_ip(p, req_headers, &state.trusted_proxies).to_string())
}

/// The caller the request's credentials name (no database involved).
fn caller(state: &ApiState, headers: &HeaderMap) -> Option<Actor> {
    let h = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let api_key = h("x-api-key").map(|k| format!("Bearer {}", k.trim()));
    let authorization = h("authorization").or(api_key.as_deref());
    let p = sluice_auth::principal::resolve(
        authorization,
        h("x-tenant-id"),
        &state.keys,
        &state.tokens,
    )
    .ok()?;
    Some(match p.subject {
        Subject::User(u) => Actor {
            tenants: vec![p.tenant_id],
            user: Some(u),
            username: String::new(),
        },
        Subject::ApiKey(k) => Actor {
            tenants: vec![p.tenant_id],
            user: None,
            username: format!("api_key:{k}"),
        },
    })
}

/// `/api/v1/servers/12/test-connection` → (`server`, 12).
fn generic_resource(path: &str) -> (String, Option<i64>) {
    let rest = path
        .strip_prefix("/api/v1/")
        .or_else(|| path.strip_prefix("/api/"))
        .unwrap_or(path.trim_start_matches('/'));
    let mut parts = rest.split('/').filter(|s| !s.is_empty());
    let kind = parts.next().unwrap_or("");
    let kind = kind.strip_suffix('s').unwrap_or(kind);
    let id = parts.find_map(|s| s.parse::<i64>().ok());
    (kind.chars().take(64).collect(), id)
}

/// The middleware: see the module's doc.
pub async fn record(State(state): State<ApiState>, req: Request, next: Next) -> Response {
    let method = req.method().clone();
    if !matches!(
        method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    ) {
        return next.run(req).await;
    }
    let path = req.uri().path().to_string();
    let peer = req
        .extensions()
        .get::<ConnectInfo<SocketAddr>>()
        .map(|ConnectInfo(a)| *a);
    let ip = request_ip(&state, req.headers(), peer);
    let who = caller(&state, req.headers());
    let mut res = next.run(req).await;
    let note = res.extensions_mut().remove::<AuditNote>();
    let (action, resource_type, resource_id, details, actor) = match note {
        Some(n) => (
            n.action.to_string(),
            n.resource_type.to_string(),
            n.resource_id,
            n.details,
            n.actor.or(who),
        ),
        None if res.status().as_u16() < 400 => {
            let (kind, id) = generic_resource(&path);
            (
                format!("http_{}", method.as_str().to_ascii_lowercase()),
                kind,
                id,
                json!({"method": method.as_str(), "path": path, "status": res.status().as_u16()}),
                who,
            )
        }
        None => return res,
    };
    let Some(actor) = actor else {
        return res; // nobody to attribute it to, no tenant to show it in
    };
    let tenants: Vec<Option<Uuid>> = if actor.tenants.is_empty() {
        vec![None]
    } else {
        actor.tenants.iter().copied().map(Some).collect()
    };
    let write = async {
        for tenant in tenants {
            let entry = NewEntry {
                tenant_id: tenant,
                user: actor.user,
                username: (!actor.username.is_empty()).then(|| actor.username.clone()),
                action: action.clone(),
                resource_type: Some(resource_type.clone()).filter(|s| !s.is_empty()),
                resource_id,
                details: details.clone(),
                ip_address: ip.clone(),
            };
            state.pg.run(|pg| audit::insert(pg, &entry)).await?;
        }
        Ok::<(), sluice_storage::breaker::CallError>(())
    };
    let failed = match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(e.to_string()),
        Err(_) => Some("timed out".to_string()),
    };
    if let Some(why) = failed {
        metrics::counter!("sluice_audit_write_failures_total").increment(1);
        tracing::error!(action = %action, error = %why, "audit entry not written");
    }
    res
}

/// The request's client address (see [`client_ip`]), when known.
pub struct ClientIp(pub Option<String>);

impl axum::extract::FromRequestParts<ApiState> for ClientIp {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &ApiState,
    ) -> Result<Self, Self::Rejection> {
        let peer = parts
            .extensions
            .get::<ConnectInfo<SocketAddr>>()
            .map(|ConnectInfo(a)| *a);
        Ok(ClientIp(request_ip(state, &parts.headers, peer)))
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn generic_resources_come_from_the_path() {
        assert_eq!(
            super::generic_resource("/api/v1/servers/12/test-connection"),
            ("server".to_string(), Some(12))
        );
        assert_eq!(
            super::generic_resource("/api/v1/backups"),
            ("backup".to_string(), None)
        );
        assert_eq!(
            super::generic_resource("/api/errors/abc/resolve"),
            ("error".to_string(), None)
        );
    }
}
