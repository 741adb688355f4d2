//! The rules on bytes: frames classified per role, requests admitted.

use bytes::BytesMut;
use enchufe_framing::mux::{ErrorCode, Kind};

use super::*;

fn frame(kind: u8, id: u64, body: &[u8]) -> BytesMut {
    let mut out = vec![kind];
    out.extend(id.to_be_bytes());
    out.extend(body);
    BytesMut::from(&out[..])
}

#[test]
fn each_role_accepts_only_what_the_other_end_may_send() {
    use Role::*;
    let ok = |kind, role| classify(frame(kind, 3, b"x"), role).is_ok();
    // Request, notify, cancel: to servers and peers.
    for kind in [1, 4, 6] {
        assert!(ok(kind, Server) && ok(kind, Peer) && !ok(kind, Client));
    }
    // Response, error: to clients and peers.
    for kind in [2, 3] {
        assert!(ok(kind, Client) && ok(kind, Peer) && !ok(kind, Server));
    }
    assert!(ok(5, Client) && ok(5, Peer) && !ok(5, Server));
    assert!(ok(7, Peer) && !ok(7, Client) && !ok(7, Server));
    assert_eq!(
        classify(frame(9, 0, b""), Server),
        Err(Violation::UnknownKind)
    );
    assert_eq!(
        classify(BytesMut::from(&[1u8, 0][..]), Server),
        Err(Violation::Short)
    );
    assert_eq!(
        classify(frame(1, 3, b"x"), Client),
        Err(Violation::ServerSentServerKind(Kind::Request))
    );
    assert_eq!(
        classify(frame(7, 0, b""), Client),
        Err(Violation::PingOutsidePeers)
    );
    assert_eq!(
        classify(frame(2, 3, b"x"), Server),
        Err(Violation::ClientSentServerKind(Kind::Response))
    );
    // The texts a log shows are those of before.
    assert_eq!(
        Violation::Short.to_string(),
        "frame shorter than the 9-byte header"
    );
}

#[test]
fn replies_carry_bodies_or_the_remote_error() {
    assert_eq!(
        classify(frame(2, 7, b"hi"), Role::Client),
        Ok(Inbound::Reply {
            id: 7,
            outcome: Ok(BytesMut::from(&b"hi"[..]))
        })
    );
    assert_eq!(
        classify(frame(3, 7, b"\x03full"), Role::Peer),
        Ok(Inbound::Reply {
            id: 7,
            outcome: Err((ErrorCode::Busy, "full".to_owned()))
        })
    );
    assert_eq!(
        classify(frame(5, 0, b"p"), Role::Peer),
        Ok(Inbound::Notify(BytesMut::from(&b"p"[..])))
    );
}

#[test]
fn one_way_messages_count_against_the_limit_and_wait() {
    let mut flow = Flow::new(2, Busy::Refuse);
    assert_eq!(flow.admit(None, 'a').0, Admit::Run);
    assert_eq!(flow.admit(None, 'b').0, Admit::Run);
    // A third one-way message cannot be refused visibly: it waits.
    assert_eq!(flow.admit(None, 'c').0, Admit::Park);
    // A request is refused under Refuse.
    assert_eq!(flow.admit(Some(1), 'r').0, Admit::Busy);
    assert!(flow.next_parked().is_none());
    flow.finished(None);
    assert_eq!(flow.next_parked(), Some((None, 'c')));
    assert_eq!(flow.running(), 2);
}

#[test]
fn at_the_limit_requests_park_reading_stops_when_full_and_cancels_reach_them() {
    let mut flow = Flow::new(2, Busy::Wait);
    assert_eq!(flow.admit(Some(1), ()).0, Admit::Run);
    assert_eq!(flow.admit(Some(2), ()).0, Admit::Run);
    assert_eq!(flow.admit(Some(3), ()).0, Admit::Park);
    assert!(flow.can_read());
    assert_eq!(flow.admit(Some(4), ()).0, Admit::Park);
    assert!(!flow.can_read());
    assert_eq!(flow.cancel_parked(3), Some(()));
    assert_eq!(flow.cancel_parked(1), None, "running, not parked");
    assert!(flow.can_read());
    // Order is kept: a newcomer never overtakes a parked message.
    flow.finished(Some(1));
    assert_eq!(flow.admit(Some(5), ()).0, Admit::Park);
    assert_eq!(flow.next_parked(), Some((Some(4), ())));
}

#[test]
fn duplicates_are_refused_and_shutdown_answers_what_waits() {
    let mut flow = Flow::new(1, Busy::Wait);
    assert_eq!(flow.admit(Some(1), 'a').0, Admit::Run);
    assert_eq!(flow.admit(Some(1), 'b').0, Admit::Duplicate);
    assert_eq!(flow.admit(Some(2), 'c').0, Admit::Park);
    assert_eq!(flow.admit(Some(2), 'd').0, Admit::Duplicate);
    assert_eq!(flow.stop(), vec![(Some(2), 'c')]);
    assert_eq!(flow.admit(Some(3), 'e').0, Admit::ShuttingDown);
    assert!(flow.next_parked().is_none());
    flow.finished(Some(1));
    assert!(flow.is_idle());
}

#[test]
fn an_abandoned_request_frees_its_slot_and_cancels_only_if_sent() {
    let cancelled = std::sync::Mutex::new(Vec::new());
    let cancel = |id| cancelled.lock().unwrap().push(id);
    let table: InFlight<()> = InFlight::new();
    let quiet = table.register(()).unwrap();
    drop(Abandon::new(&table, quiet, &cancel));
    let loud = table.register(()).unwrap();
    let mut guard = Abandon::new(&table, loud, &cancel);
    guard.sent();
    drop(guard);
    let answered = table.register(()).unwrap();
    let mut guard = Abandon::new(&table, answered, &cancel);
    guard.sent();
    assert_eq!(table.take(answered), Some(()));
    drop(guard);
    assert_eq!(*cancelled.lock().unwrap(), vec![loud]);
    assert!(table.is_empty());
    // Each reused the freed place under an id of its own.
    let ids = std::collections::HashSet::from([quiet, loud, answered]);
    assert_eq!(ids.len(), 3);
    assert!(!ids.contains(&0));
}
