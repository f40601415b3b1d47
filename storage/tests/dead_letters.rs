//! `sluice_storage::dead_letters` against the local Redis, under a key
//! prefix of its own: the bound and its count, tenant scoping, and replay
//! of an operation.

use sluice_storage::dead_letters::{self, DeadId, Kind, ListFilter, NewDeadLetter, Store};
use sluice_storage::failure::Reason;
use sluice_storage::streams::StreamLayout;
use uuid::Uuid;

fn letter(tenant: Option<Uuid>, kind: Kind, i: u32) -> NewDeadLetter {
    NewDeadLetter {
        kind,
        shard: 0,
        tenant_id: tenant,
        store: Store::Clickhouse,
        reason: Reason::ClickhouseRejected,
        error: "clickhouse: Code: 27".into(),
        stream: "p:ops:{0}".into(),
        entry_id: format!("1700000000000-{i}"),
        index: None,
        in_clickhouse: false,
        events: 1,
        payload: br#"{"not":"an operation"}"#.to_vec(),
    }
}

#[tokio::test]
async fn bounded_scoped_and_replayable() {
    let pool = sluice_storage::redis_pool("redis://127.0.0.1:6379", 2).unwrap();
    let mut conn = pool.get().await.unwrap();
    let layout = StreamLayout::new(
        format!(
            "sluice-dltest-{}",
            &Uuid::new_v4().simple().to_string()[..12]
        ),
        2,
    );
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());

    // 250 letters into a stream bounded at 10: `MAXLEN ~` trims whole
    // stream nodes (100 entries each by default), and counts them.
    let many: Vec<NewDeadLetter> = (0..250)
        .map(|i| letter(Some(a), Kind::Operations, i))
        .collect();
    let trimmed = dead_letters::push(&mut conn, &layout, &many, 10)
        .await
        .unwrap();
    let (held, counted) = dead_letters::totals(&mut conn, &layout).await.unwrap();
    assert!(trimmed > 0, "nothing trimmed");
    assert_eq!(counted, trimmed);
    assert_eq!(held + trimmed, 250);
    assert!(held <= 10 + 100, "{held} held");

    // scoped by tenant: b sees none of a's
    dead_letters::push(
        &mut conn,
        &layout,
        &[letter(Some(b), Kind::Operations, 999)],
        10,
    )
    .await
    .unwrap();
    let of_b = dead_letters::list(
        &mut conn,
        &layout,
        &ListFilter {
            tenant_id: Some(b),
            before: None,
            limit: 1000,
        },
    )
    .await
    .unwrap();
    assert_eq!(of_b.len(), 1);
    assert_eq!(of_b[0].tenant_id, Some(b));
    assert_eq!(of_b[0].reason, "clickhouse_rejected");
    let id = DeadId::parse(&of_b[0].id).unwrap();
    assert!(dead_letters::get(&mut conn, &layout, &id, Some(a))
        .await
        .unwrap()
        .is_none());
    assert!(!dead_letters::drop(&mut conn, &layout, &id, Some(a))
        .await
        .unwrap());
    assert_eq!(
        dead_letters::ids(&mut conn, &layout, Some(b))
            .await
            .unwrap(),
        std::slice::from_ref(&id)
    );

    // replay puts the operation back on its tenant's stream, with its origin
    let entry = dead_letters::replay(&mut conn, &layout, &id, Some(b))
        .await
        .unwrap()
        .expect("replayed");
    let shard = layout.shard_of(b);
    let back: deadpool_redis::redis::streams::StreamRangeReply =
        deadpool_redis::redis::cmd("XRANGE")
            .arg(layout.ops_key(shard))
            .arg(&entry)
            .arg(&entry)
            .query_async(&mut conn)
            .await
            .unwrap();
    let fields = &back.ids[0].map;
    assert!(fields.contains_key(sluice_storage::ops::OP_FIELD));
    assert_eq!(
        deadpool_redis::redis::from_redis_value_ref::<String>(&fields[dead_letters::ORIGIN_FIELD])
            .unwrap(),
        "p:ops:{0}/1700000000000-999"
    );
    assert!(dead_letters::get(&mut conn, &layout, &id, None)
        .await
        .unwrap()
        .is_none());
    assert!(dead_letters::replay(&mut conn, &layout, &id, None)
        .await
        .unwrap()
        .is_none());

    dead_letters::destroy(&mut conn, &layout).await.unwrap();
    layout.destroy(&mut conn).await.unwrap();
}
