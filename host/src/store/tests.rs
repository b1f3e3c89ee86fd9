use super::*;

fn row(file: &str, offset: i64, url: &str) -> Row {
    Row {
        ip_address: "203.0.113.5".into(),
        method: "GET".into(),
        url: url.into(),
        user_agent: "Mozilla/5.0".into(),
        status: 200,
        threat_type: "sqli".into(),
        confidence: 9,
        reasoning: "rules: sqli-union-select".into(),
        decided_by: "rules".into(),
        action: "block".into(),
        source: "/var/log/nginx/access.log".into(),
        created_at_ms: 1_795_601_234_567,
        logged_at_ms: Some(1_795_601_000_000),
        score: 9,
        rules: r#"["sqli-union-select"]"#.into(),
        source_file: file.into(),
        source_offset: offset,
        tool_results: String::new(),
    }
}

/// Attacker-controlled text that would break a query built by formatting.
const HOSTILE: &str = "/x?id=1'); DROP TABLE analyzed_requests; --\u{0}\u{202e}";

async fn exercise(store: &Store, file: &str) {
    let before = store.count().await.unwrap();
    let rows = vec![row(file, 10, "/a"), row(file, 20, HOSTILE), row(file, 30, "/c")];
    assert_eq!(store.insert(&rows).await.unwrap(), 3);
    // The same lines read again after a crash are not stored twice.
    assert_eq!(store.insert(&rows[1..]).await.unwrap(), 0);
    assert_eq!(store.count().await.unwrap(), before + 3);
    let many: Vec<Row> = (0..1200).map(|i| row(file, 1000 + i, "/bulk")).collect();
    assert_eq!(store.insert(&many).await.unwrap(), 1200);
}

fn decision(uuid: &str, value: &str, until_ms: i64) -> decisions::Decision {
    decisions::Decision {
        uuid: uuid.into(),
        value: value.parse().unwrap(),
        origin: "logsec".into(),
        host: "web-1".into(),
        reason: HOSTILE.into(),
        offence: 1,
        created_ms: 1_000,
        until_ms,
    }
}

/// The uuids of `decisions`.
fn uuids(decisions: Vec<decisions::StoredDecision>) -> Vec<String> {
    decisions.into_iter().map(|d| d.decision.uuid).collect()
}

/// The decisions table on either database: one row per uuid, offences counted across lifts,
/// lifting, and the change queries the enforcer polls.
async fn exercise_decisions(store: &Store, tag: &str) {
    let now = time::now_ms();
    let (a, b) = (format!("{tag}-a"), format!("{tag}-b"));
    // A value of this run only, so counts are not disturbed by other runs on the same database.
    let n = (now as u64 % 250) as u8 + 1;
    let ip = format!("198.18.{n}.{}", (now / 1000 % 250) + 1);
    let block = format!("198.18.{n}.0/24");
    let start = store
        .decisions_after(0, 1_000_000)
        .await
        .unwrap()
        .last()
        .map_or(0, |d| d.id);
    let first = vec![decision(&a, &ip, now + 60_000), decision(&b, &block, now + 60_000)];
    assert_eq!(store.insert_decisions(&first).await.unwrap(), 2);
    assert_eq!(
        store.insert_decisions(&first).await.unwrap(),
        0,
        "the same uuid is stored once"
    );
    let added = store.decisions_after(start, 100).await.unwrap();
    let mine: Vec<_> = added.iter().filter(|d| d.decision.uuid.starts_with(tag)).collect();
    assert_eq!(mine.len(), 2);
    assert_eq!(mine[1].decision.value.to_string(), block);
    assert_eq!(mine[0].decision.reason, HOSTILE.replace('\0', "\\x00"));
    assert!(uuids(store.active_decisions(now).await.unwrap()).contains(&a));
    let value = ip.parse().unwrap();
    assert_eq!(store.offences(&value).await.unwrap(), 1);
    let lifted = store.lift(&value, now).await.unwrap();
    assert_eq!(lifted.len(), 1);
    assert!(store.lift(&value, now).await.unwrap().is_empty(), "lifted once");
    assert!(!uuids(store.active_decisions(now).await.unwrap()).contains(&a));
    assert!(uuids(store.lifted_since(now).await.unwrap()).contains(&a));
    // A later ban of the same address is its second offence.
    store
        .insert_decisions(&[decision(&format!("{tag}-c"), &ip, now + 120_000)])
        .await
        .unwrap();
    assert_eq!(store.offences(&value).await.unwrap(), 2);
    // An ended decision is not in force.
    store
        .insert_decisions(&[decision(&format!("{tag}-d"), "198.18.0.1", now - 1)])
        .await
        .unwrap();
    assert!(
        !uuids(store.active_decisions(now).await.unwrap())
            .iter()
            .any(|u| u.ends_with("-d"))
    );
    let listed = store.list_decisions(true, now, 10).await.unwrap();
    assert!(listed.iter().any(|d| d.decision.uuid == a && d.deleted_ms.is_some()));
    assert!(!uuids(store.list_decisions(false, now, 1000).await.unwrap()).contains(&a));
}

#[tokio::test]
async fn sqlite_keeps_decisions() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logsec.db").display());
    let store = Store::connect(&url).await.unwrap();
    exercise_decisions(&store, "sqlite").await;
}

#[tokio::test]
async fn sqlite_stores_each_line_once_and_survives_hostile_text() {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}", dir.path().join("logsec.db").display());
    let store = Store::connect(&url).await.unwrap();
    exercise(&store, "00000000000000aa").await;
    let url_col: String = match &store {
        Store::Sqlite(p) => sqlx::query_scalar("SELECT url FROM analyzed_requests WHERE source_offset = 20")
            .fetch_one(p)
            .await
            .unwrap(),
        Store::Postgres(_) => unreachable!(),
    };
    assert_eq!(url_col, HOSTILE.replace('\0', "\\x00"));
    store.close().await;
    // Reopening applies no migration twice.
    let again = Store::connect(&url).await.unwrap();
    assert_eq!(again.count().await.unwrap(), 1203);
}

#[tokio::test]
async fn postgres_has_the_same_schema_and_behaviour() {
    let url =
        std::env::var("LOGSEC_TEST_POSTGRES").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let store = match Store::connect(&url).await {
        Ok(s) => s,
        Err(e) if std::env::var("LOGSEC_REQUIRE_ALL").is_ok_and(|v| v == "1") => {
            panic!(
                "PostgreSQL is required in CI and is not reachable at {}: {e:#}",
                redact(&url)
            )
        }
        Err(e) => {
            eprintln!("SKIPPED postgres test: {e:#}");
            return;
        }
    };
    let file = format!("{:016x}", time::now_ms() as u64 ^ u64::from(std::process::id()) << 40);
    exercise(&store, &file).await;
    exercise_decisions(&store, &file).await;
}

#[test]
fn passwords_never_reach_messages() {
    assert_eq!(
        redact("postgres://user:s3cret@db.example.com/x"),
        "postgres://user:***@db.example.com/x"
    );
    assert_eq!(redact("sqlite://./data/logsec.db"), "sqlite://./data/logsec.db");
}
