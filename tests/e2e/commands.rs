//! The Backup platform's saved commands over HTTP, run by the real job
//! workers on a `local` server: CRUD, execution with stdout, stderr, exit
//! code and duration, injection attempts that stay literal text, missing
//! variables, output bounds, the timeout, roles, and tenant isolation.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{json, Value};
use sluice::app::Mode;
use sluice_storage::pg::users;
use uuid::Uuid;

use crate::support::{status_json, TestApp, User};

const COMMANDS: &str = "/api/v1/commands";
/// The bounds these tests run with (small, so they stay quick).
const OUTPUT_LIMIT: usize = 64 * 1024;
const TIMEOUT_SECS: u64 = 3;

async fn spawn() -> TestApp {
    TestApp::spawn_with(Mode::ALL, |cfg| {
        cfg.command_timeout_secs = TIMEOUT_SECS;
        cfg.command_output_bytes = OUTPUT_LIMIT;
    })
    .await
}

async fn call(
    app: &TestApp,
    user: &User,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut r = app
        .http
        .request(method, app.url(path))
        .bearer_auth(&user.token);
    if let Some(b) = body {
        r = r.json(&b);
    }
    status_json(r).await
}

async fn local_server(app: &TestApp, user: &User) -> i64 {
    let (s, v) = call(
        app,
        user,
        Method::POST,
        "/api/v1/servers",
        Some(json!({"name": "this host", "type": "local"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_i64().unwrap()
}

async fn create(app: &TestApp, user: &User, body: Value) -> Value {
    let (s, v) = call(app, user, Method::POST, COMMANDS, Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v
}

/// Polls a task until it ends, for at most `secs`.
async fn wait_task(app: &TestApp, user: &User, task: &str, secs: u64) -> Value {
    let deadline = Instant::now() + Duration::from_secs(secs);
    loop {
        let (s, v) = call(
            app,
            user,
            Method::GET,
            &format!("/api/v1/tasks/{task}"),
            None,
        )
        .await;
        assert_eq!(s, 200, "{v}");
        if v["status"] == "completed" || v["status"] == "failed" {
            return v;
        }
        assert!(Instant::now() < deadline, "task {task} still {v}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Executes and waits; answers (the execute answer, the task, the execution).
async fn run(
    app: &TestApp,
    user: &User,
    command: i64,
    server: i64,
    variables: Value,
) -> (Value, Value, Value) {
    let (s, v) = call(
        app,
        user,
        Method::POST,
        &format!("{COMMANDS}/{command}/execute"),
        Some(json!({"server_id": server, "variables": variables})),
    )
    .await;
    assert_eq!(s, 202, "{v}");
    assert_eq!(v["status"], "pending", "{v}");
    let task = v["task_id"].as_str().unwrap().to_string();
    assert!(!task.is_empty());
    let t = wait_task(app, user, &task, 30).await;
    assert_eq!(t["type"], "command", "{t}");
    let (s, list) = call(
        app,
        user,
        Method::GET,
        &format!("{COMMANDS}/{command}/executions"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{list}");
    let e = list
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["id"] == v["execution_id"])
        .unwrap_or_else(|| panic!("execution {} not listed: {list}", v["execution_id"]))
        .clone();
    (v, t, e)
}

/// A user of `tenant` with `role`, logged in.
async fn member(app: &TestApp, tenant: Uuid, role: &str) -> User {
    let pool = &app.running.pg;
    let username = format!("{role}-{}", &Uuid::new_v4().simple().to_string()[..10]);
    let hash = sluice_auth::password::hash("s3cret-passw0rd").unwrap();
    let u = users::create(
        pool,
        &users::NewUser {
            username: &username,
            email: None,
            full_name: None,
            password_hash: &hash,
        },
    )
    .await
    .unwrap();
    users::set_membership(pool, tenant, u.id, role)
        .await
        .unwrap();
    let r = app
        .http
        .post(app.url("/api/v1/auth/login"))
        .json(&json!({"username": username, "password": "s3cret-passw0rd"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let login: Value = r.json().await.unwrap();
    User {
        username,
        token: login["access_token"].as_str().unwrap().to_string(),
        refresh: login["refresh_token"].as_str().unwrap().to_string(),
        tenant_id: tenant,
    }
}

fn check_422(v: &Value, loc: &[&str]) {
    let want: Vec<Value> = loc.iter().map(|l| json!(l)).collect();
    let errors = v["detail"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert!(
        errors.iter().any(|e| e["loc"].as_array().unwrap() == &want),
        "no error at {loc:?}: {v}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_list_update_delete_and_validation() {
    let app = spawn().await;
    let user = app.register_user().await;

    let a = create(
        &app,
        &user,
        json!({"name": "Check Disk Space", "description": "Check available disk space",
               "command_template": "df -h", "type": "shell"}),
    )
    .await;
    for f in [
        "id",
        "name",
        "description",
        "command_template",
        "type",
        "created_by",
        "created_at",
    ] {
        assert!(a.get(f).is_some(), "{f} missing: {a}");
    }
    assert_eq!(a["type"], "shell");
    assert_eq!(a["created_by"], user.username.as_str());
    assert!(chrono::DateTime::parse_from_rfc3339(a["created_at"].as_str().unwrap()).is_ok());
    // The contract's own example: type docker, tags as text.
    let b = create(
        &app,
        &user,
        json!({"name": "Restart Docker Container", "description": "Restart a specific container",
               "command_template": "docker restart {{container_name}}", "type": "docker",
               "tags": "docker,restart"}),
    )
    .await;
    assert_eq!(b["type"], "docker");
    assert_eq!(b["variables"], json!(["container_name"]));
    assert!(b["id"].as_i64().unwrap() > a["id"].as_i64().unwrap());
    // type defaults to shell.
    let c = create(
        &app,
        &user,
        json!({"name": "uptime", "command_template": "uptime"}),
    )
    .await;
    assert_eq!(c["type"], "shell");

    let (s, list) = call(&app, &user, Method::GET, COMMANDS, None).await;
    assert_eq!(s, 200);
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|x| &x["id"]).collect();
    assert_eq!(ids, vec![&a["id"], &b["id"], &c["id"]]);
    assert_eq!(list[0], a);

    // PUT is partial.
    let path = format!("{COMMANDS}/{}", a["id"]);
    let (s, u) = call(
        &app,
        &user,
        Method::PUT,
        &path,
        Some(json!({"command_template": "df -h /"})),
    )
    .await;
    assert_eq!(s, 200, "{u}");
    assert_eq!(u["command_template"], "df -h /");
    assert_eq!(u["name"], "Check Disk Space");
    assert_eq!(u["description"], "Check available disk space");
    let (s, g) = call(&app, &user, Method::GET, &path, None).await;
    assert_eq!(s, 200);
    assert_eq!(g, u);

    // Validation.
    for (body, loc) in [
        (json!({"command_template": "x"}), vec!["body", "name"]),
        (json!({"name": "x"}), vec!["body", "command_template"]),
        (
            json!({"name": "x", "command_template": "x", "type": "sql"}),
            vec!["body", "type"],
        ),
        (
            json!({"name": 1, "command_template": "x"}),
            vec!["body", "name"],
        ),
    ] {
        let (s, v) = call(&app, &user, Method::POST, COMMANDS, Some(body)).await;
        assert_eq!(s, 422, "{v}");
        check_422(&v, &loc);
    }
    let (s, v) = call(&app, &user, Method::PUT, &path, Some(json!({"name": null}))).await;
    assert_eq!(s, 422, "{v}");
    let (s, _) = call(&app, &user, Method::GET, &format!("{COMMANDS}/abc"), None).await;
    assert_eq!(s, 422);

    // Delete: gone from the list, then 404 everywhere.
    let (s, _) = call(&app, &user, Method::DELETE, &path, None).await;
    assert!(s == 200 || s == 204);
    let (_, list) = call(&app, &user, Method::GET, COMMANDS, None).await;
    assert!(list.as_array().unwrap().iter().all(|x| x["id"] != a["id"]));
    for m in [Method::GET, Method::PUT, Method::DELETE] {
        let (s, v) = call(&app, &user, m, &path, Some(json!({"name": "x"}))).await;
        assert_eq!(s, 404, "{v}");
        assert_eq!(v["code"], "NOT_FOUND", "{v}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execution_records_output_exit_code_and_newest_first() {
    let app = spawn().await;
    let user = app.register_user().await;
    let server = local_server(&app, &user).await;
    let cmd = create(
        &app,
        &user,
        json!({"name": "greet", "command_template": "echo {{greeting}} && echo err 1>&2 && exit {{code}}"}),
    )
    .await;
    let id = cmd["id"].as_i64().unwrap();

    let (v1, t1, e1) = run(
        &app,
        &user,
        id,
        server,
        json!({"greeting": "hello world", "code": "3"}),
    )
    .await;
    assert_eq!(t1["status"], "failed", "{t1}");
    assert!(t1["error"].as_str().unwrap().contains("code 3"), "{t1}");
    assert_eq!(
        e1["command_text"],
        "echo 'hello world' && echo err 1>&2 && exit 3"
    );
    assert_eq!(e1["status"], "failed");
    assert_eq!(e1["exit_code"], 3);
    assert_eq!(e1["stdout"], "hello world\n");
    assert_eq!(e1["stderr"], "err\n");
    assert_eq!(e1["executed_by"], user.username.as_str());
    assert_eq!(e1["command_id"], id);
    assert_eq!(e1["server_id"], server);
    assert_eq!(e1["task_id"], v1["task_id"]);
    let d = e1["duration_seconds"].as_f64().unwrap();
    assert!((0.0..10.0).contains(&d), "{e1}");
    let started = chrono::DateTime::parse_from_rfc3339(e1["started_at"].as_str().unwrap()).unwrap();
    let done = chrono::DateTime::parse_from_rfc3339(e1["completed_at"].as_str().unwrap()).unwrap();
    assert!(started <= done);

    // A number is a value too; exit 0 completes.
    let (v2, t2, e2) = run(
        &app,
        &user,
        id,
        server,
        json!({"greeting": "hi", "code": 0}),
    )
    .await;
    assert_eq!(t2["status"], "completed", "{t2}");
    assert_eq!(t2["progress"], 100.0);
    assert!(t2["error"].is_null());
    assert_eq!(e2["status"], "completed");
    assert_eq!(e2["exit_code"], 0);
    assert_eq!(e2["stdout"], "hi\n");
    assert_eq!(e2["command_text"], "echo hi && echo err 1>&2 && exit 0");

    let (_, list) = call(
        &app,
        &user,
        Method::GET,
        &format!("{COMMANDS}/{id}/executions"),
        None,
    )
    .await;
    let ids: Vec<&Value> = list.as_array().unwrap().iter().map(|e| &e["id"]).collect();
    assert_eq!(ids, vec![&v2["execution_id"], &v1["execution_id"]]);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn injection_attempts_stay_literal_text() {
    let app = spawn().await;
    let user = app.register_user().await;
    let server = local_server(&app, &user).await;
    let cmd = create(
        &app,
        &user,
        json!({"name": "echo", "command_template": "echo {{v}}"}),
    )
    .await;
    let id = cmd["id"].as_i64().unwrap();
    let marker = std::env::temp_dir().join(format!("sluice-injected-{}", Uuid::new_v4().simple()));
    let m = marker.display().to_string();
    for value in [
        format!("; touch {m}"),
        format!("$(touch {m})"),
        format!("`touch {m}`"),
        format!("x && touch {m}"),
        format!("x' ; touch {m}; echo '"),
        format!("x\ntouch {m}"),
        format!("| touch {m}"),
    ] {
        let (_, t, e) = run(&app, &user, id, server, json!({"v": value})).await;
        assert_eq!(t["status"], "completed", "{t}");
        assert_eq!(e["stdout"], format!("{value}\n"), "{e}");
        assert!(!marker.exists(), "{value:?} ran: {e}");
    }
    // An empty value is one empty word.
    let (_, _, e) = run(&app, &user, id, server, json!({"v": ""})).await;
    assert_eq!(e["command_text"], "echo ''");
    assert_eq!(e["stdout"], "\n");
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn missing_variables_output_bounds_and_the_timeout() {
    let app = spawn().await;
    let user = app.register_user().await;
    let server = local_server(&app, &user).await;

    // A variable the template names but the request lacks.
    let cmd = create(
        &app,
        &user,
        json!({"name": "two", "command_template": "echo {{a}} {{b}}"}),
    )
    .await;
    let path = format!("{COMMANDS}/{}/execute", cmd["id"]);
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        &path,
        Some(json!({"server_id": server, "variables": {"a": "1", "extra": "x"}})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    check_422(&v, &["body", "variables", "b"]);
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        &path,
        Some(json!({"variables": {"a": "1", "b": "2"}})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    check_422(&v, &["body", "server_id"]);
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        &path,
        Some(json!({"server_id": server, "variables": {"a": [1], "b": "2"}})),
    )
    .await;
    assert_eq!(s, 422, "{v}");
    check_422(&v, &["body", "variables", "a"]);
    let (s, v) = call(
        &app,
        &user,
        Method::POST,
        &path,
        Some(json!({"server_id": 999_999_999, "variables": {"a": "1", "b": "2"}})),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (_, list) = call(
        &app,
        &user,
        Method::GET,
        &format!("{COMMANDS}/{}/executions", cmd["id"]),
        None,
    )
    .await;
    assert_eq!(list, json!([]), "refused requests recorded nothing");

    // Output past the bound is dropped and counted, for each stream.
    let big = create(
        &app,
        &user,
        json!({"name": "big", "command_template": "head -c {{n}} /dev/zero | tr '\\0' a; head -c {{n}} /dev/zero | tr '\\0' b >&2"}),
    )
    .await;
    let n = OUTPUT_LIMIT + 100_000;
    let (_, t, e) = run(
        &app,
        &user,
        big["id"].as_i64().unwrap(),
        server,
        json!({"n": n}),
    )
    .await;
    assert_eq!(t["status"], "completed", "{t}");
    assert_eq!(e["stdout"].as_str().unwrap(), "a".repeat(OUTPUT_LIMIT));
    assert_eq!(e["stderr"].as_str().unwrap(), "b".repeat(OUTPUT_LIMIT));
    assert_eq!(e["stdout_truncated_bytes"], 100_000);
    assert_eq!(e["stderr_truncated_bytes"], 100_000);

    // A command past the timeout is stopped and fails, saying so.
    let slow = create(
        &app,
        &user,
        json!({"name": "slow", "command_template": "echo started; sleep 60"}),
    )
    .await;
    let began = Instant::now();
    let (_, t, e) = run(&app, &user, slow["id"].as_i64().unwrap(), server, json!({})).await;
    assert!(began.elapsed() < Duration::from_secs(TIMEOUT_SECS + 15));
    assert_eq!(t["status"], "failed", "{t}");
    assert!(
        t["error"].as_str().unwrap().contains("timed out after 3 s"),
        "{t}"
    );
    assert_eq!(e["status"], "failed");
    assert!(e["exit_code"].is_null(), "{e}");
    assert!(
        e["error_message"].as_str().unwrap().contains("timed out"),
        "{e}"
    );
    assert_eq!(e["stdout"], "started\n");
    let d = e["duration_seconds"].as_f64().unwrap();
    assert!(
        d >= TIMEOUT_SECS as f64 - 0.5 && d < TIMEOUT_SECS as f64 + 10.0,
        "{e}"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn roles_and_tenant_isolation() {
    let app = spawn().await;
    let owner = app.register_user().await;
    let server = local_server(&app, &owner).await;
    let cmd = create(
        &app,
        &owner,
        json!({"name": "hi", "command_template": "echo hi"}),
    )
    .await;
    let id = cmd["id"].as_i64().unwrap();
    let (_, _, first) = run(&app, &owner, id, server, json!({})).await;
    let exec = format!("{COMMANDS}/{id}/execute");
    let one = format!("{COMMANDS}/{id}");
    let body = json!({"server_id": server, "variables": {}});

    for role in ["viewer", "developer"] {
        let u = member(&app, owner.tenant_id, role).await;
        let (s, v) = call(&app, &u, Method::GET, COMMANDS, None).await;
        assert_eq!(s, 200, "{role}: {v}");
        assert_eq!(v.as_array().unwrap().len(), 1);
        let (s, _) = call(&app, &u, Method::GET, &format!("{one}/executions"), None).await;
        assert_eq!(s, 200, "{role}");
        for (m, p, b) in [
            (
                Method::POST,
                COMMANDS.to_string(),
                json!({"name": "x", "command_template": "id"}),
            ),
            (Method::PUT, one.clone(), json!({"name": "x"})),
            (Method::DELETE, one.clone(), json!({})),
            (Method::POST, exec.clone(), body.clone()),
        ] {
            let (s, v) = call(&app, &u, m.clone(), &p, Some(b)).await;
            assert_eq!(s, 403, "{role} {m} {p}: {v}");
            assert_eq!(v["code"], "FORBIDDEN", "{v}");
        }
    }
    // An operator runs commands but does not write them.
    let op = member(&app, owner.tenant_id, "operator").await;
    let (s, _) = call(
        &app,
        &op,
        Method::POST,
        COMMANDS,
        Some(json!({"name": "x", "command_template": "id"})),
    )
    .await;
    assert_eq!(s, 403);
    let (_, t, e) = run(&app, &op, id, server, json!({})).await;
    assert_eq!(t["status"], "completed");
    assert_eq!(e["executed_by"], op.username.as_str());
    // A dba writes them.
    let dba = member(&app, owner.tenant_id, "dba").await;
    let c = create(
        &app,
        &dba,
        json!({"name": "dba's", "command_template": "true"}),
    )
    .await;
    assert_eq!(c["created_by"], dba.username.as_str());

    // Another tenant sees none of it, and touches nothing.
    let other = app.register_user().await;
    let (_, list) = call(&app, &other, Method::GET, COMMANDS, None).await;
    assert_eq!(list, json!([]));
    let other_server = local_server(&app, &other).await;
    for (m, p, b) in [
        (Method::GET, one.clone(), None),
        (Method::PUT, one.clone(), Some(json!({"name": "stolen"}))),
        (Method::DELETE, one.clone(), None),
        (
            Method::POST,
            exec.clone(),
            Some(json!({"server_id": other_server, "variables": {}})),
        ),
        (Method::GET, format!("{one}/executions"), None),
        (
            Method::GET,
            format!("/api/v1/tasks/{}", first["task_id"].as_str().unwrap()),
            None,
        ),
    ] {
        let (s, v) = call(&app, &other, m.clone(), &p, b).await;
        assert_eq!(s, 404, "{m} {p}: {v}");
        assert_eq!(v["code"], "NOT_FOUND", "{v}");
    }
    // Their own command may not run on our server.
    let theirs = create(
        &app,
        &other,
        json!({"name": "t", "command_template": "echo x"}),
    )
    .await;
    let (s, v) = call(
        &app,
        &other,
        Method::POST,
        &format!("{COMMANDS}/{}/execute", theirs["id"]),
        Some(body.clone()),
    )
    .await;
    assert_eq!(s, 404, "{v}");
    let (s, still) = call(&app, &owner, Method::GET, &one, None).await;
    assert_eq!(s, 200);
    assert_eq!(still, cmd);
    let (_, runs) = call(
        &app,
        &owner,
        Method::GET,
        &format!("{one}/executions"),
        None,
    )
    .await;
    assert_eq!(runs.as_array().unwrap().len(), 2);
    app.stop().await;
}
