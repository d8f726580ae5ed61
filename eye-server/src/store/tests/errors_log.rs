use eye_core::{ErrorCode, ErrorQuery};

use super::*;

conformance!(
    rejected_event_is_logged_once_per_key_with_everything,
    errors_log_is_newest_first_and_filters_by_code_application_and_time,
    errors_log_pages_are_stable,
    errors_log_counts_are_exact_across_hour_edges_for_every_filter,
);

async fn codes_of(store: &Store, q: &ErrorQuery) -> (u64, Vec<Vec<String>>) {
    let (count, records) = store.query_errors(q).await.unwrap();
    (count, records.into_iter().map(|r| r.codes).collect())
}

async fn rejected_event_is_logged_once_per_key_with_everything(store: TestDb) {
    let m = rejected(
        "shop",
        5,
        &[
            ErrorCode::InvalidHost,
            ErrorCode::InvalidPath,
            ErrorCode::InvalidHost,
        ],
    );
    let first = store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    let again = store.write_batch(std::slice::from_ref(&m)).await.unwrap();
    assert_eq!((first.errors_logged, again.errors_logged), (1, 0));
    let (count, records) = store.query_errors(&ErrorQuery::default()).await.unwrap();
    assert_eq!(count, 1);
    let r = &records[0];
    let Message::RejectedV1(src) = &m else {
        unreachable!()
    };
    assert_eq!(r.application, "shop");
    assert_eq!(r.received_at, t(5));
    assert_eq!(r.codes, vec!["invalid_host", "invalid_path"]);
    assert_eq!(r.errors, src.errors);
    assert_eq!(r.payload, src.payload);
}

async fn errors_log_is_newest_first_and_filters_by_code_application_and_time(store: TestDb) {
    store
        .write_batch(&[
            rejected("shop", 10, &[ErrorCode::InvalidHost]),
            rejected("crm", 20, &[ErrorCode::TimestampInFuture]),
            rejected(
                "shop",
                30,
                &[ErrorCode::TimestampInFuture, ErrorCode::InvalidPath],
            ),
            view("s", 0),
        ])
        .await
        .unwrap();
    let all = codes_of(&store, &ErrorQuery::default()).await;
    assert_eq!(all.0, 3);
    assert_eq!(
        all.1,
        vec![
            vec!["timestamp_in_future", "invalid_path"],
            vec!["timestamp_in_future"],
            vec!["invalid_host"],
        ]
    );
    let by_code = ErrorQuery {
        code: Some("timestamp_in_future".into()),
        ..ErrorQuery::default()
    };
    assert_eq!(codes_of(&store, &by_code).await.0, 2);
    let by_code_and_app = ErrorQuery {
        application: Some("crm".into()),
        ..by_code.clone()
    };
    let (n, records) = store.query_errors(&by_code_and_app).await.unwrap();
    assert_eq!((n, records[0].application.as_str()), (1, "crm"));
    let by_app = ErrorQuery {
        application: Some("shop".into()),
        ..ErrorQuery::default()
    };
    assert_eq!(codes_of(&store, &by_app).await.0, 2);
    let mut by_time = ErrorQuery::default();
    by_time.time.start = Some(t(15));
    by_time.time.end = Some(t(25));
    assert_eq!(
        codes_of(&store, &by_time).await,
        (1, vec![vec!["timestamp_in_future".to_owned()]])
    );
    let mut code_and_time = by_code.clone();
    code_and_time.time.start = Some(t(25));
    assert_eq!(codes_of(&store, &code_and_time).await.0, 1);
}

async fn errors_log_pages_are_stable(store: TestDb) {
    let batch: Vec<Message> = (0..7)
        .map(|i| rejected("shop", i % 3, &[ErrorCode::InvalidJson]))
        .collect();
    store.write_batch(&batch).await.unwrap();
    let mut ids = Vec::new();
    for page in 1..=3 {
        let q = ErrorQuery {
            pagination: eye_core::Pagination { page, page_size: 3 },
            ..ErrorQuery::default()
        };
        let (count, records) = store.query_errors(&q).await.unwrap();
        assert_eq!(count, 7);
        ids.extend(records.into_iter().map(|r| (r.received_at, r.id)));
    }
    let mut sorted = ids.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(ids.len(), 7);
    assert_eq!(ids, sorted);
}

async fn errors_log_counts_are_exact_across_hour_edges_for_every_filter(store: TestDb) {
    // Arrange: 200 entries over about 11 hours, two applications, mixed codes. Counts
    // come from the hourly counters plus the partial hours; the page must agree.
    let codes = [
        ErrorCode::InvalidHost,
        ErrorCode::TimestampInFuture,
        ErrorCode::InvalidJson,
    ];
    let batch: Vec<Message> = (0..200i64)
        .map(|i| {
            let app = if i % 3 == 0 { "crm" } else { "shop" };
            let n = (i % 3 + 1) as usize;
            rejected(app, i * 199, &codes[..n])
        })
        .collect();
    store.write_batch(&batch).await.unwrap();
    // Act / Assert
    for (s, e) in [
        (None, None),
        (Some(0), Some(39_601)),
        (Some(3599), None),
        (None, Some(7200)),
        (Some(100), Some(200)),
    ] {
        for app in [None, Some("crm")] {
            for code in [None, Some("timestamp_in_future")] {
                let mut q = ErrorQuery {
                    application: app.map(str::to_owned),
                    code: code.map(str::to_owned),
                    pagination: eye_core::Pagination {
                        page: 1,
                        page_size: 1000,
                    },
                    ..ErrorQuery::default()
                };
                q.time.start = s.map(t);
                q.time.end = e.map(t);
                let (count, records) = store.query_errors(&q).await.unwrap();
                assert_eq!(count, records.len() as u64, "{q:?}");
                let want = batch
                    .iter()
                    .filter(|m| match m {
                        Message::RejectedV1(r) => {
                            s.is_none_or(|s| r.received_at >= t(s))
                                && e.is_none_or(|e| r.received_at <= t(e))
                                && app.is_none_or(|a| r.application == a)
                                && code
                                    .is_none_or(|c| r.errors.iter().any(|x| x.code.as_str() == c))
                        }
                        Message::EventV1(_) => false,
                    })
                    .count();
                assert_eq!(count, want as u64, "{q:?}");
            }
        }
    }
}
