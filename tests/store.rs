//! The store conformance table: one list of scenarios every backend must pass, so the redb
//! store and the Redis scripts cannot drift from `store::state` or from each other. The
//! backends' own test modules open a store and call [`conformance`] and [`double_spend`].

use std::sync::Arc;

use mediagate::store::state::UseKind;
use mediagate::store::{
    Consume, Consumed, HistoryEntry, Holder, Reserve, Reserved, Retention, Revocation,
    RevocationEntry, Settled, Store, UseKey,
};

const A: Holder = Holder([0xa; 16]);
const B: Holder = Holder([0xb; 16]);

fn key(token_id: &str) -> UseKey {
    UseKey {
        kid: "k1".into(),
        token_id: token_id.into(),
    }
}

fn request(limit: u32, holder: Holder, kind: UseKind, now: u64) -> Consume {
    Consume {
        limit,
        expires: now + 600,
        holder,
        kind,
        now,
    }
}

fn reservation(id: u8, now: u64, lease: u64) -> Reserve {
    Reserve {
        limit: 1,
        expires: now + 600,
        reservation: [id; 16],
        lease_until: now + lease,
        now,
    }
}

/// Every operation of [`Store`], in the orders that matter, with the answers `store::state`
/// prescribes. `now` is the store's idea of the present (a backend that expires records on
/// its own clock, like Redis, needs a real one).
pub async fn conformance(store: &dyn Store, now: u64) {
    store.ping().await.expect("ping");

    // Single use: counted once, then used up, for everyone.
    let single = key("single");
    let answers = [
        store
            .consume(&single, request(1, A, UseKind::New, now))
            .await,
        store
            .consume(&single, request(1, A, UseKind::New, now))
            .await,
        store
            .consume(&single, request(1, B, UseKind::Peek, now))
            .await,
    ];
    let answers: Vec<Consumed> = answers.into_iter().map(|a| a.expect("consume")).collect();
    assert_eq!(
        answers,
        [Consumed::Counted(1), Consumed::UsedUp, Consumed::UsedUp]
    );

    // Range continuation: the holder's requests are free, another client's are not.
    let video = key("video");
    let mut answers = Vec::new();
    for (holder, kind) in [
        (A, UseKind::Continue),
        (A, UseKind::Continue),
        (A, UseKind::Peek),
        (B, UseKind::Continue),
        (A, UseKind::New),
    ] {
        let answer = store.consume(&video, request(1, holder, kind, now)).await;
        answers.push(answer.expect("consume"));
    }
    assert_eq!(
        answers,
        [
            Consumed::Counted(1),
            Consumed::Continued,
            Consumed::Peeked,
            Consumed::UsedUp,
            Consumed::UsedUp
        ]
    );

    // An N-use token counts 1..=N, then refuses.
    let three = key("three");
    let mut answers = Vec::new();
    for _ in 0..4 {
        let answer = store
            .consume(&three, request(3, A, UseKind::New, now))
            .await;
        answers.push(answer.expect("consume"));
    }
    assert_eq!(
        answers,
        [
            Consumed::Counted(1),
            Consumed::Counted(2),
            Consumed::Counted(3),
            Consumed::UsedUp
        ]
    );

    // Counters are per (kid, token id): the same token id under another key is another token.
    let other_kid = UseKey {
        kid: "k2".into(),
        token_id: "single".into(),
    };
    let answer = store
        .consume(&other_kid, request(1, A, UseKind::New, now))
        .await;
    assert_eq!(answer.expect("consume"), Consumed::Counted(1));

    // Upload reservations: full while reserved, free again after a release, final on commit.
    let slot = key("slot");
    let granted = store.reserve(&slot, reservation(1, now, 60)).await;
    assert_eq!(granted.expect("reserve"), Reserved::Granted);
    let busy = store.reserve(&slot, reservation(2, now, 60)).await;
    assert_eq!(busy.expect("reserve"), Reserved::Full);
    let released = store.settle(&slot, [1; 16], false, now).await;
    assert_eq!(released.expect("settle"), Settled::Released);
    let again = store.reserve(&slot, reservation(3, now, 60)).await;
    assert_eq!(again.expect("reserve"), Reserved::Granted);
    let committed = store.settle(&slot, [3; 16], true, now).await;
    assert_eq!(committed.expect("settle"), Settled::Committed);
    let twice = store.settle(&slot, [3; 16], true, now).await;
    assert_eq!(twice.expect("settle"), Settled::Unknown);
    let after = store.reserve(&slot, reservation(4, now, 60)).await;
    assert_eq!(after.expect("reserve"), Reserved::Full);

    // A lapsed lease frees the slot (the reservation's `now` is past its lease).
    let lapsing = key("lapsing");
    let first = store.reserve(&lapsing, reservation(1, now, 5)).await;
    assert_eq!(first.expect("reserve"), Reserved::Granted);
    let later = store.reserve(&lapsing, reservation(2, now + 10, 60)).await;
    assert_eq!(later.expect("reserve"), Reserved::Granted);

    // History: oldest first, at most `max_entries`, nothing older than `max_age`.
    let retention = Retention {
        max_entries: 3,
        max_age: 100,
    };
    let history_key = key("history");
    for (offset, status) in [(0, 200), (1, 200), (2, 403), (3, 403)] {
        let entry = HistoryEntry {
            at: now - 300 + offset * 100,
            client: Some("198.51.100.7".parse().expect("ip")),
            user_agent: Some(format!("agent {offset}")),
            status,
            reason: (status == 403).then(|| "used_up".to_owned()),
        };
        store
            .record(&history_key, entry, retention)
            .await
            .expect("record");
    }
    let kept = store
        .history(&history_key, retention, now)
        .await
        .expect("history");
    let kept: Vec<(u64, u16)> = kept.iter().map(|e| (e.at, e.status)).collect();
    // Four written (now-300 .. now): the oldest goes by count (three kept), the next by age
    // (200 s > 100 s); an entry exactly `max_age` old is still kept.
    assert_eq!(kept, [(now - 100, 403), (now, 403)]);
    let unknown = store
        .history(&key("never-used"), retention, now)
        .await
        .expect("history");
    assert!(unknown.is_empty());

    // Revocations: listed until they expire; the version moves on every change.
    let before = store.revocations_version().await.expect("version");
    let token = RevocationEntry {
        revocation: Revocation::Token {
            kid: "k1".into(),
            token_id: "t-1".into(),
        },
        created: now,
        expires: now + 50,
    };
    let subject = RevocationEntry {
        revocation: Revocation::Subject {
            subject: "user 42".into(),
        },
        created: now,
        expires: now + 500,
    };
    let key_before = RevocationEntry {
        revocation: Revocation::KeyBefore {
            kid: "k1".into(),
            before: now,
        },
        created: now,
        expires: now + 500,
    };
    for entry in [&token, &subject, &key_before] {
        store.revoke(entry.clone()).await.expect("revoke");
    }
    let after = store.revocations_version().await.expect("version");
    assert_ne!(before, after, "a revocation moves the version");
    let mut listed = store.revocations(now).await.expect("revocations");
    // The trait promises no order (a Redis hash has none): compare in a total order.
    let order = |entry: &RevocationEntry| (entry.expires, format!("{:?}", entry.revocation));
    listed.sort_by_key(order);
    assert_eq!(listed, [token.clone(), key_before.clone(), subject.clone()]);
    let mut later = store.revocations(now + 100).await.expect("revocations");
    later.sort_by_key(|entry| format!("{:?}", entry.revocation));
    assert_eq!(later.len(), 2, "the token revocation expired: {later:?}");
    assert!(!later.contains(&token));

    // Revoking again keeps one entry with the later expiry.
    let mut longer = subject.clone();
    longer.expires = now + 900;
    store.revoke(longer.clone()).await.expect("revoke");
    let listed = store.revocations(now).await.expect("revocations");
    let subjects: Vec<_> = listed
        .iter()
        .filter(|e| matches!(e.revocation, Revocation::Subject { .. }))
        .collect();
    assert_eq!(subjects, [&longer]);
}

/// `parallel` concurrent new uses of one token with use limit `limit`: exactly `limit`
/// succeed, numbered 1..=limit, and the rest are used up.
pub async fn double_spend(
    store: Arc<dyn Store>,
    token_id: &str,
    limit: u32,
    parallel: usize,
    now: u64,
) {
    let mut tasks = Vec::new();
    for n in 0..parallel {
        let store = Arc::clone(&store);
        let key = key(token_id);
        tasks.push(tokio::spawn(async move {
            let holder = Holder([n as u8; 16]);
            store
                .consume(&key, request(limit, holder, UseKind::New, now))
                .await
        }));
    }
    let mut numbers = Vec::new();
    let mut used_up = 0;
    for task in tasks {
        match task.await.expect("task").expect("consume") {
            Consumed::Counted(number) => numbers.push(number),
            Consumed::UsedUp => used_up += 1,
            other => panic!("unexpected {other:?}"),
        }
    }
    numbers.sort_unstable();
    assert_eq!(numbers, (1..=limit).collect::<Vec<_>>());
    assert_eq!(used_up, parallel - limit as usize);
}
