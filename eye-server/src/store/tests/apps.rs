use crate::store::{NewApp, Scopes, StoreError};

use super::*;

conformance!(
    created_app_is_found_by_its_key_hash_until_revoked,
    taken_name_is_app_exists_and_unknown_name_is_app_not_found,
    apps_are_listed_by_name_with_their_scopes,
    publishable_app_keeps_its_origins_and_only_it_may_change_them,
);

fn app(name: &str, key: u8) -> NewApp {
    NewApp {
        name: name.to_owned(),
        key_hash: [key; 32],
        scopes: Scopes::INGEST_ONLY,
        origins: None,
    }
}

async fn created_app_is_found_by_its_key_hash_until_revoked(store: TestDb) {
    assert_eq!(store.count_apps().await.unwrap(), 0);
    let created = store.create_app(&app("shop", 1)).await.unwrap();
    let found = store.find_app_by_key_hash(&[1; 32]).await.unwrap().unwrap();
    assert_eq!(found, created);
    assert!(found.scopes.ingest && !found.scopes.query);
    assert!(
        store
            .find_app_by_key_hash(&[2; 32])
            .await
            .unwrap()
            .is_none()
    );

    store.revoke_app("shop").await.unwrap();
    assert!(
        store
            .find_app_by_key_hash(&[1; 32])
            .await
            .unwrap()
            .is_none()
    );
    let listed = store.list_apps().await.unwrap();
    assert_eq!(listed.len(), 1);
    let revoked_at = listed[0].revoked_at.unwrap();
    // Revoking again keeps the first revocation time.
    store.revoke_app("shop").await.unwrap();
    let again = store.find_app_by_name("shop").await.unwrap().unwrap();
    assert_eq!(again.revoked_at, Some(revoked_at));
    assert_eq!(store.count_apps().await.unwrap(), 1);
}

async fn taken_name_is_app_exists_and_unknown_name_is_app_not_found(store: TestDb) {
    store.create_app(&app("shop", 1)).await.unwrap();
    let dup = store.create_app(&app("shop", 2)).await.unwrap_err();
    assert!(matches!(dup, StoreError::AppExists(n) if n == "shop"));
    let missing = store.revoke_app("nope").await.unwrap_err();
    assert!(matches!(missing, StoreError::AppNotFound(n) if n == "nope"));
}

async fn apps_are_listed_by_name_with_their_scopes(store: TestDb) {
    store
        .create_app(&NewApp {
            scopes: Scopes::ALL,
            ..app("zeta", 3)
        })
        .await
        .unwrap();
    store.create_app(&app("alpha", 4)).await.unwrap();
    let listed = store.list_apps().await.unwrap();
    let names: Vec<&str> = listed.iter().map(|a| a.name.as_str()).collect();
    assert_eq!(names, ["alpha", "zeta"]);
    assert_eq!(listed[1].scopes, Scopes::ALL);
}

async fn publishable_app_keeps_its_origins_and_only_it_may_change_them(store: TestDb) {
    let origins = vec![
        "https://shop.example".to_owned(),
        "http://localhost:3000".to_owned(),
    ];
    let created = store
        .create_app(&NewApp {
            origins: Some(origins.clone()),
            ..app("web", 5)
        })
        .await
        .unwrap();
    assert!(created.is_publishable());
    let found = store.find_app_by_key_hash(&[5; 32]).await.unwrap().unwrap();
    assert_eq!(found.origins.as_deref(), Some(&origins[..]));

    let moved = vec!["https://www.shop.example".to_owned()];
    store.set_origins("web", &moved).await.unwrap();
    let found = store.find_app_by_name("web").await.unwrap().unwrap();
    assert_eq!(found.origins, Some(moved.clone()));

    // A secret key never gains origins, and an unknown name is reported as such.
    store.create_app(&app("server", 6)).await.unwrap();
    let secret = store.set_origins("server", &moved).await.unwrap_err();
    assert!(matches!(secret, StoreError::NotPublishable(n) if n == "server"));
    assert!(
        !store
            .find_app_by_name("server")
            .await
            .unwrap()
            .unwrap()
            .is_publishable()
    );
    let missing = store.set_origins("nope", &moved).await.unwrap_err();
    assert!(matches!(missing, StoreError::AppNotFound(n) if n == "nope"));
}
