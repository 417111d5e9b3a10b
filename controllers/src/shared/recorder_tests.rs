use k8s_openapi::api::core::v1::ObjectReference;

use super::*;

fn at(seconds: i64) -> Timestamp {
    Timestamp::from_second(seconds).unwrap()
}

fn object(name: &str) -> ObjectReference {
    ObjectReference {
        api_version: Some("apps/v1".into()),
        kind: Some("Deployment".into()),
        name: Some(name.into()),
        namespace: Some("ns".into()),
        uid: Some(format!("uid-{name}")),
        ..Default::default()
    }
}

fn ev(name: &str, reason: &str, message: &str, now: Timestamp) -> Event {
    new_event(
        object(name),
        "Normal",
        reason,
        message,
        "deployment-controller",
        now,
    )
}

/// Correlates, and records what a server would store (the event as sent).
fn send(c: &mut Correlator, e: Event, now: Timestamp) -> Verdict {
    let v = c.correlate(e, now);
    match &v {
        Verdict::Create { key, event } | Verdict::Patch { key, event, .. } => c.stored(key, event),
        Verdict::Skip => {}
    }
    v
}

#[test]
fn the_same_event_again_patches_the_first_with_a_count() {
    let mut c = Correlator::default();
    let first = send(
        &mut c,
        ev("web", "ScalingReplicaSet", "Scaled up", at(100)),
        at(100),
    );
    let Verdict::Create { event: created, .. } = first else {
        panic!("the first event is created: {first:?}")
    };
    let again = send(
        &mut c,
        ev("web", "ScalingReplicaSet", "Scaled up", at(160)),
        at(160),
    );
    let Verdict::Patch { event, patch, .. } = again else {
        panic!("a repeat is a patch: {again:?}")
    };
    assert_eq!(event.metadata.name, created.metadata.name, "the same Event");
    assert_eq!(event.count, Some(2));
    assert_eq!(
        event.first_timestamp,
        Some(Time(at(100))),
        "first seen stays"
    );
    assert_eq!(patch["count"], 2);
    assert_eq!(patch["lastTimestamp"], json!(Time(at(160))));

    let other = send(
        &mut c,
        ev("web", "ScalingReplicaSet", "Scaled down", at(170)),
        at(170),
    );
    assert!(
        matches!(other, Verdict::Create { .. }),
        "another message is another event: {other:?}"
    );
    let other_object = send(
        &mut c,
        ev("api", "ScalingReplicaSet", "Scaled up", at(170)),
        at(170),
    );
    assert!(
        matches!(other_object, Verdict::Create { .. }),
        "another object is another event: {other_object:?}"
    );
}

#[test]
fn the_tenth_distinct_message_within_ten_minutes_is_combined() {
    let mut c = Correlator::default();
    for i in 0..9 {
        let v = send(
            &mut c,
            ev("web", "FailedCreate", &format!("error {i}"), at(100 + i)),
            at(100 + i),
        );
        assert!(
            matches!(v, Verdict::Create { .. }),
            "message {i} is its own event: {v:?}"
        );
    }
    let tenth = send(
        &mut c,
        ev("web", "FailedCreate", "error 9", at(120)),
        at(120),
    );
    let Verdict::Create {
        event: combined, ..
    } = tenth
    else {
        panic!("the tenth is a combined event: {tenth:?}")
    };
    assert_eq!(
        combined.message.as_deref(),
        Some("(combined from similar events): error 9")
    );
    let eleventh = send(
        &mut c,
        ev("web", "FailedCreate", "error 10", at(130)),
        at(130),
    );
    let Verdict::Patch { event, .. } = eleventh else {
        panic!("later ones count on the combined event: {eleventh:?}")
    };
    assert_eq!(event.metadata.name, combined.metadata.name);
    assert_eq!(event.count, Some(2));
    assert_eq!(
        event.message.as_deref(),
        Some("(combined from similar events): error 10")
    );
    let later = send(
        &mut c,
        ev("web", "FailedCreate", "error 11", at(130 + 601)),
        at(130 + 601),
    );
    assert!(
        matches!(&later, Verdict::Create { event, .. } if event.message.as_deref() == Some("error 11")),
        "after ten quiet minutes messages stand alone again: {later:?}"
    );
}

#[test]
fn an_object_gets_25_events_at_once_then_one_every_five_minutes() {
    let mut c = Correlator::default();
    let sent = (0..30)
        .map(|i| {
            send(
                &mut c,
                ev("web", &format!("Reason{i}"), "m", at(100)),
                at(100),
            )
        })
        .filter(|v| !matches!(v, Verdict::Skip))
        .count();
    assert_eq!(sent, 25, "the burst");
    let v = send(&mut c, ev("web", "Late", "m", at(100 + 299)), at(100 + 299));
    assert_eq!(v, Verdict::Skip, "no token yet");
    let v = send(
        &mut c,
        ev("web", "Later", "m", at(100 + 301)),
        at(100 + 301),
    );
    assert!(!matches!(v, Verdict::Skip), "one token after 300 s");
    let v = send(
        &mut c,
        ev("api", "Other", "m", at(100 + 301)),
        at(100 + 301),
    );
    assert!(
        !matches!(v, Verdict::Skip),
        "other objects have their own bucket"
    );
}
