//! `GET /health` (no auth): the stores' circuits and what Redis' settings
//! promise about accepted events; `GET /metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;
use sluice_storage::breaker::State as Circuit;

use crate::openapi::health_monitor as hm;
use crate::ApiState;

/// Always 200 while the process serves; `status` is `degraded` while a
/// store's circuit is open.
#[utoipa::path(
    get,
    path = "/health",
    operation_id = "service_health",
    tag = "health-monitor",
    responses(
        (status = 200, body = hm::Health, description = "Always 200 while the process serves"),
    ),
    security(())
)]
pub async fn health(State(state): State<ApiState>) -> Json<serde_json::Value> {
    let pg = state.pg.breaker().status();
    let ch = state.ch.breaker().status();
    let durability = state.durability.report().await;
    let degraded = pg.circuit == Circuit::Open || ch.circuit == Circuit::Open;
    Json(serde_json::json!({
        "status": if degraded { "degraded" } else { "ok" },
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "stores": {"postgres": pg, "clickhouse": ch},
        "durability": durability,
    }))
}

#[utoipa::path(
    get,
    path = "/metrics",
    operation_id = "service_metrics",
    tag = "health-monitor",
    responses(
        (status = 200, body = String, content_type = "text/plain", description = "Prometheus text format"),
        (status = 404, body = String, content_type = "text/plain", description = "Metrics are not enabled"),
    ),
    security(())
)]
pub async fn metrics(State(state): State<ApiState>) -> impl IntoResponse {
    let Some(handle) = &state.metrics else {
        return (
            StatusCode::NOT_FOUND,
            "metrics are not enabled\n".to_string(),
        )
            .into_response();
    };
    if let Ok(mut conn) = state.redis.get().await {
        if let Ok(n) = state.layout.backlog(&mut conn).await {
            metrics::gauge!("sluice_stream_backlog").set(n as f64);
        }
        if let Ok((held, trimmed)) =
            sluice_storage::dead_letters::totals(&mut conn, &state.layout).await
        {
            metrics::gauge!("sluice_dead_letters").set(held as f64);
            metrics::gauge!("sluice_dead_letters_trimmed").set(trimmed as f64);
        }
    }
    for b in [state.pg.breaker(), state.ch.breaker()] {
        let open = b.state() == Circuit::Open;
        metrics::gauge!("sluice_store_circuit_open", "store" => b.store().as_str()).set(if open {
            1.0
        } else {
            0.0
        });
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
