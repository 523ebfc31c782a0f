//! Long-poll: answers on change, after the wait, on uninstall and on shutdown.

use super::*;

#[tokio::test]
async fn long_poll_answers_on_change_or_after_the_wait() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let rev = revision(&s, &tok).await;

    // A different revision answers at once; a bad query is a 400.
    let a = get(&s, &format!("{DOC}?revision={}&wait=60", rev - 1), Some(&tok)).await;
    assert_eq!((a.status, a.revision), (StatusCode::OK, Some(rev)));
    let a = get(&s, &format!("{DOC}?revision=x"), Some(&tok)).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    // The current one waits, and answers 304 when the wait is over.
    let a = get(&s, &format!("{DOC}?revision={rev}&wait=1"), Some(&tok)).await;
    assert_eq!((a.status, a.revision), (StatusCode::NOT_MODIFIED, Some(rev)));

    // A change through the API wakes the waiters with the new document.
    let waiters: Vec<_> = (0..3)
        .map(|_| {
            let router = s.router.clone();
            let (tok, path) = (tok.clone(), format!("{DOC}?revision={rev}&wait=60"));
            tokio::spawn(async move { send(router, Method::GET, &path, Some(&tok), None).await })
        })
        .collect();
    wait_for_watchers(&s, 3).await;
    s.ok(
        Method::PUT,
        "/teams/demo/components/web/plugins/mesh",
        Some(json!({"values": {"base": {"LEVEL": "warn"}}})),
        StatusCode::OK,
    )
    .await;
    for w in waiters {
        let a = tokio::time::timeout(Duration::from_secs(10), w)
            .await
            .expect("the waiter was woken")
            .unwrap();
        assert_eq!(a.status, StatusCode::OK);
        assert_eq!(a.body["revision"].as_u64(), Some(rev + 1));
        assert_eq!(a.body["base"]["LEVEL"], "warn");
        // The secret was not sent again, and is kept.
        assert_eq!(a.body["base"]["KEY"], "s3cret");
    }
}

#[tokio::test]
async fn uninstall_wakes_waiters_with_404() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r = revision(&s, &tok).await;
    let waiter = waiting_long_poll(&s, &tok, r, 60).await;
    s.ok(
        Method::DELETE,
        "/teams/demo/components/web/plugins/mesh",
        None,
        StatusCode::NO_CONTENT,
    )
    .await;
    let a = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
}

#[tokio::test]
async fn a_stopping_server_answers_its_long_polls_at_once() {
    let s = setup().await;
    let tok = token(&s, "web", "mesh").await;
    let r = revision(&s, &tok).await;
    let waiter = waiting_long_poll(&s, &tok, r, 300).await;
    s.state.discovery.hub.close();
    let a = tokio::time::timeout(Duration::from_secs(10), waiter)
        .await
        .expect("the long-poll ended with the server")
        .unwrap();
    assert_eq!((a.status, a.revision), (StatusCode::NOT_MODIFIED, Some(r)));
}
