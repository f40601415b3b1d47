//! `GET /health` (no auth) and `GET /metrics` (Prometheus text).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::IntoResponse;
use axum::Json;

use crate::ApiState;

pub async fn health() -> Json<serde_json::Value> {
    Json(serde_json::json!({
        "status": "ok",
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
    }))
}

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
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        handle.render(),
    )
        .into_response()
}
