//! Posting errors and reading them back: grouping, resolution, filters,
//! deletion and tenant isolation.

use serde_json::json;

use crate::support::{new_tenant, TestApp};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posted_error_is_read_back_scrubbed_and_complete() {
    let app = TestApp::spawn().await;
    let posted = app
        .post_error(json!({
            "level": "error",
            "message": "Database connection failed for bob@example.com",
            "stack_trace": "Error: Connection timeout\n    at Database.connect (/app/db.js:10:5)",
            "context": {"user_id": "12345", "password": "hunter2", "request_id": "req-789"},
            "source": "backend",
            "environment": "production",
            "url": "https://api.example.com/users?api_key=abc123"
        }))
        .await;
    let id = posted["id"].as_str().unwrap().to_string();
    assert_eq!(posted["count"], 1);
    assert_eq!(posted["resolved"], false);
    assert_eq!(posted["message"], "Database connection failed for [email]");
    assert_eq!(posted["ip_address"], "127.0.0.1");
    assert_eq!(posted["fingerprint"].as_str().unwrap().len(), 16);

    let stored = app.wait_count(&id, 1).await;
    assert_eq!(stored["id"], id.as_str());
    assert_eq!(stored["level"], "error");
    assert_eq!(stored["source"], "backend");
    assert_eq!(stored["environment"], "production");
    assert_eq!(
        stored["url"],
        "https://api.example.com/users?api_key=[redacted]"
    );
    assert_eq!(stored["context"]["password"], "[redacted]");
    assert_eq!(stored["context"]["user_id"], "12345");
    assert_eq!(stored["fingerprint"], posted["fingerprint"]);
    assert_eq!(stored["first_seen"], stored["last_seen"]);
    assert_eq!(stored["user_agent"], "sluice-e2e");
    for field in ["timestamp", "created_at", "updated_at", "stack_trace"] {
        assert!(stored[field].is_string(), "{field} missing: {stored}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn duplicates_increment_count_and_keep_first_seen() {
    let app = TestApp::spawn().await;
    let first = app
        .post_error(json!({"message": "Order 1001 failed after 30 ms", "source": "billing", "context": {"a": 1}}))
        .await;
    let id = first["id"].as_str().unwrap().to_string();
    let stored_first = app.wait_count(&id, 1).await;
    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    let second = app
        .post_error(json!({"message": "Order 2002 failed after 45 ms", "source": "billing", "context": {"b": 2}}))
        .await;
    let third = app
        .post_error(json!({"message": "Order 3003 failed after 12 ms", "source": "billing", "context": {"a": 3}}))
        .await;
    assert_eq!(second["id"], first["id"]);
    assert_eq!(third["fingerprint"], first["fingerprint"]);

    let stored = app.wait_count(&id, 3).await;
    assert_eq!(stored["first_seen"], stored_first["first_seen"]);
    assert_ne!(stored["last_seen"], stored_first["last_seen"]);
    assert_eq!(stored["message"], "Order 3003 failed after 12 ms");
    assert_eq!(stored["context"], json!({"a": 3, "b": 2}));

    // A different source is a different group.
    let other = app
        .post_error(json!({"message": "Order 1 failed after 1 ms", "source": "shipping"}))
        .await;
    assert_ne!(other["id"], first["id"]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resolved_error_reopens_when_it_happens_again() {
    let app = TestApp::spawn().await;
    let e = app
        .post_error(json!({"message": "cache miss storm", "source": "api"}))
        .await;
    let id = e["id"].as_str().unwrap().to_string();
    app.wait_count(&id, 1).await;

    let r = app
        .put(&format!("/api/errors/{id}/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: serde_json::Value = r.json().await.unwrap();
    assert_eq!(
        body,
        json!({"data": {"status": "resolved"}, "status": "success"})
    );
    let (_, v) = app.get_json(&format!("/api/errors/{id}")).await;
    assert_eq!(v["data"]["resolved"], true);
    let (_, v) = app.get_json("/api/errors?resolved=true").await;
    assert_eq!(v["data"]["total"], 1);

    tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    app.post_error(json!({"message": "cache miss storm", "source": "api"}))
        .await;
    let stored = app.wait_count(&id, 2).await;
    assert_eq!(stored["resolved"], false, "a regression reopens the group");
    let (_, v) = app.get_json("/api/errors?resolved=false").await;
    assert_eq!(v["data"]["total"], 1);

    let missing = uuid::Uuid::new_v4();
    let r = app
        .put(&format!("/api/errors/{missing}/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_filters_and_pagination() {
    let app = TestApp::spawn().await;
    let events = json!([
        {"level": "error", "message": "alpha disk failure", "source": "backend"},
        {"level": "warning", "message": "beta slow query", "source": "backend"},
        {"level": "info", "message": "gamma deploy finished", "source": "frontend"},
        {"level": "debug", "message": "delta cache warm", "source": "frontend"},
        {"level": "critical", "message": "epsilon primary down", "source": "db"}
    ]);
    let r = app
        .post("/api/errors/batch")
        .json(&events)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    crate::support::wait_for("five groups", || async {
        let (_, v) = app.get_json("/api/errors").await;
        (v["data"]["total"] == 5).then_some(())
    })
    .await;

    let (_, v) = app.get_json("/api/errors?level=warning").await;
    assert_eq!(v["data"]["total"], 1);
    assert_eq!(v["data"]["errors"][0]["message"], "beta slow query");
    let (_, v) = app.get_json("/api/errors?level=error&source=backend").await;
    assert_eq!(v["data"]["total"], 1);
    let (_, v) = app.get_json("/api/errors?source=frontend").await;
    assert_eq!(v["data"]["total"], 2);
    let (_, v) = app.get_json("/api/errors?search=PRIMARY").await;
    assert_eq!(v["data"]["total"], 1);
    assert_eq!(v["data"]["errors"][0]["level"], "critical");
    let (_, v) = app.get_json("/api/errors?search=100%25").await;
    assert_eq!(v["data"]["total"], 0, "% is matched literally");
    let (_, v) = app.get_json("/api/errors?resolved=false").await;
    assert_eq!(v["data"]["total"], 5);
    let (_, v) = app.get_json("/api/errors?resolved=true").await;
    assert_eq!(v["data"]["total"], 0);

    let (_, p1) = app.get_json("/api/errors?limit=2&offset=0").await;
    let (_, p2) = app.get_json("/api/errors?limit=2&offset=2").await;
    let (_, p3) = app.get_json("/api/errors?limit=2&offset=4").await;
    assert_eq!(p1["data"]["total"], 5);
    assert_eq!(p1["data"]["limit"], 2);
    assert_eq!(p1["data"]["page"], 1);
    assert_eq!(p2["data"]["page"], 2);
    assert_eq!(p3["data"]["page"], 3);
    let mut seen: Vec<String> = [&p1, &p2, &p3]
        .iter()
        .flat_map(|p| p["data"]["errors"].as_array().unwrap().clone())
        .map(|e| e["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(seen.len(), 5);
    seen.sort();
    seen.dedup();
    assert_eq!(seen.len(), 5, "pages do not overlap");
    let (_, d) = app.get_json("/api/errors").await;
    assert_eq!(d["data"]["limit"], 50);

    for bad in [
        "limit=0",
        "limit=101",
        "limit=x",
        "offset=-1",
        "level=loud",
        "resolved=maybe",
    ] {
        let (s, v) = app.get_json(&format!("/api/errors?{bad}")).await;
        assert_eq!(s, 400, "{bad}");
        assert_eq!(v["status"], "error");
        assert!(v["error"].as_str().unwrap().len() > 5);
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delete_removes_the_group() {
    let app = TestApp::spawn().await;
    let e = app.post_error(json!({"message": "to be deleted"})).await;
    let id = e["id"].as_str().unwrap().to_string();
    app.wait_count(&id, 1).await;
    let r = app
        .delete(&format!("/api/errors/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 204);
    let (s, v) = app.get_json(&format!("/api/errors/{id}")).await;
    assert_eq!(s, 404);
    assert_eq!(v, json!({"error": "error not found", "status": "error"}));
    let r = app
        .delete(&format!("/api/errors/{id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tenants_never_see_each_other() {
    let app = TestApp::spawn().await;
    let (other_tenant, other_key) = new_tenant(&app.running.pg).await;
    // The key directory reloads every 200 ms in tests.
    crate::support::wait_for("second key to load", || async {
        let r = app
            .http
            .get(app.url("/api/errors"))
            .header("X-API-Key", &other_key)
            .send()
            .await
            .unwrap();
        (r.status() == 200).then_some(())
    })
    .await;

    let mine = app
        .post_error(json!({"message": "same bug", "source": "shared"}))
        .await;
    let r = app
        .http
        .post(app.url("/api/errors"))
        .header("X-API-Key", &other_key)
        .json(&json!({"message": "same bug", "source": "shared"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let theirs: serde_json::Value = r.json().await.unwrap();
    assert_ne!(
        mine["id"], theirs["data"]["id"],
        "same fingerprint, different tenants"
    );
    assert_eq!(mine["fingerprint"], theirs["data"]["fingerprint"]);
    let my_id = mine["id"].as_str().unwrap().to_string();
    let their_id = theirs["data"]["id"].as_str().unwrap().to_string();
    app.wait_count(&my_id, 1).await;

    let (_, v) = app.get_json("/api/errors").await;
    assert_eq!(v["data"]["total"], 1);
    assert_eq!(v["data"]["errors"][0]["id"], my_id.as_str());
    let (s, _) = app.get_json(&format!("/api/errors/{their_id}")).await;
    assert_eq!(s, 404);
    let r = app
        .put(&format!("/api/errors/{their_id}/resolve"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let r = app
        .delete(&format!("/api/errors/{their_id}"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let (_, stats) = app.get_json("/api/stats").await;
    assert_eq!(stats["data"]["total_errors"], 1);

    // Their group is untouched and theirs alone.
    crate::support::wait_for("their group", || async {
        let r = app
            .http
            .get(app.url(&format!("/api/errors/{their_id}")))
            .header("X-API-Key", &other_key)
            .send()
            .await
            .unwrap();
        let ok = r.status() == 200;
        let v: serde_json::Value = r.json().await.unwrap();
        (ok && v["data"]["resolved"] == false && v["data"]["count"] == 1).then_some(())
    })
    .await;
    let _ = sluice_storage::pg::tenants::delete(&app.running.pg, other_tenant).await;
    app.stop().await;
}
