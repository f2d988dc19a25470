//! S21 history and recovery: a client that comes back with the offset of
//! the last message it saw gets exactly what it missed, in order, once,
//! then live messages, with no gap and no duplicate at the seam; or a gap
//! message when the history no longer reaches back that far. On one
//! process without Redis (the in-memory ring), and across nodes through a
//! real `redis-server` (started per test on a free port, killed by PID),
//! real actix-web servers and real WebSocket clients (awc). Every wait is
//! for an event with a deadline.
#![cfg(feature = "redis")]

mod common;

use std::{thread, time::Duration};

use actix_ws_listener::{Cluster, Group, History, Message, Offset};
use common::cluster::*;

/// Members see `OFFSET TEXT`; a client that missed something is told `GAP`.
fn history(len: usize, max_age: Duration) -> History {
    History::new(len, max_age)
        .render(|offset, message| {
            Message::from(format!("{offset} {}", message.as_text().unwrap_or("")))
        })
        .gap("GAP")
}

/// What a member of such a group reads.
#[derive(Debug, PartialEq)]
enum Seen {
    Line(Offset, String),
    Gap,
}

async fn next(client: &mut Client) -> Seen {
    let text = client.recv_text().await;
    if text == "GAP" {
        return Seen::Gap;
    }
    let (offset, body) = text.split_once(' ').expect("OFFSET TEXT");
    Seen::Line(offset.parse().expect("an offset"), body.to_owned())
}

async fn line(client: &mut Client) -> (Offset, String) {
    match next(client).await {
        Seen::Line(offset, text) => (offset, text),
        Seen::Gap => panic!("a gap where a line was expected"),
    }
}

/// Reads `count` lines that must follow `since` at consecutive positions of
/// its epoch; returns their texts, in the order read.
async fn run_after(client: &mut Client, since: &Offset, count: usize) -> Vec<String> {
    let mut texts = Vec::with_capacity(count);
    let mut position = since.position();
    for _ in 0..count {
        let (offset, text) = line(client).await;
        assert_eq!(offset.epoch(), since.epoch(), "{text}");
        assert_eq!(offset.position(), position + 1, "not the next: {text}");
        position = offset.position();
        texts.push(text);
    }
    texts
}

async fn nothing_more(client: &mut Client) {
    if let Some(extra) = client.try_recv(Duration::from_millis(300)).await {
        panic!("nothing more was expected, got {extra:?}");
    }
}

async fn until_empty(group: &Group) {
    wait_for("the group to see its member leave", || {
        let empty = group.is_empty();
        async move { empty.then_some(()) }
    })
    .await;
}

/// A clustered node of its own Redis with group "room" opened with
/// `settings`, and bob, a member of it.
async fn clustered_room(settings: History) -> (Redis, Cluster, Group, Node, Client) {
    let redis = Redis::start();
    let cluster = Cluster::connect(&redis.url()).await.expect("connect");
    let room = cluster
        .group_with_history("room", settings)
        .await
        .expect("open");
    let node = Node::start(room.clone());
    let bob = node.join().await;
    (redis, cluster, room, node, bob)
}

fn texts(range: std::ops::Range<usize>) -> Vec<String> {
    range.map(|i| format!("m{i}")).collect()
}

#[actix_rt::test]
async fn s21_one_node_replays_exactly_what_was_missed_then_live_once() {
    let room = Group::with_history(history(2_000, Duration::from_secs(60)));
    let node = Node::start(room.clone());
    let mut bob = node.join().await;
    for i in 0..3 {
        room.broadcast(format!("m{i}"));
    }
    let mut last = None;
    for i in 0..3 {
        let (offset, text) = line(&mut bob).await;
        assert_eq!(text, format!("m{i}"));
        last = Some(offset);
    }
    let last = last.expect("three lines");
    bob.close().await;
    until_empty(&room).await;

    for i in 3..1_003 {
        room.broadcast(format!("m{i}"));
    }
    let mut bob = node.rejoin(&last.to_string()).await;
    // Live lines while the replay runs: they must come after it, once.
    let live = room.clone();
    let publisher = thread::spawn(move || {
        for i in 1_003..1_203 {
            live.broadcast(format!("m{i}"));
            if i % 10 == 0 {
                thread::sleep(Duration::from_millis(1));
            }
        }
    });
    let seen = run_after(&mut bob, &last, 1_200).await;
    publisher.join().expect("publisher");
    assert_eq!(seen, texts(3..1_203));
    nothing_more(&mut bob).await;
    // And live as a plain member afterwards.
    room.broadcast("after");
    assert_eq!(line(&mut bob).await.1, "after");
}

#[actix_rt::test]
async fn s21_a_replay_held_back_by_a_slow_client_loses_nothing_live_meanwhile() {
    let room = Group::with_history(history(5_000, Duration::from_secs(60)));
    let node = Node::start(room.clone());
    let mut bob = node.join().await;
    room.broadcast("m0");
    let (since, _) = line(&mut bob).await;
    bob.close().await;
    until_empty(&room).await;
    // 8 MB missed: more than the socket buffers take, so the replay waits
    // for bob to read (S15) while live lines pile up, past the 256 that
    // wait for a recovering socket.
    let padding = "x".repeat(8 * 1024);
    for i in 1..1_001 {
        room.broadcast(format!("m{i} {padding}"));
    }
    let mut bob = node.rejoin(&since.to_string()).await;
    for i in 1_001..1_601 {
        room.broadcast(format!("m{i} {padding}"));
    }
    actix_rt::time::sleep(Duration::from_millis(200)).await;
    // Still replaying (bob reads nothing yet): a member all the same.
    assert_eq!(room.len(), 1);
    assert_eq!(room.sockets().len(), 1, "a recovering socket is listed");
    let seen = run_after(&mut bob, &since, 1_600).await;
    for (i, text) in seen.iter().enumerate() {
        assert!(
            *text == format!("m{} {padding}", i + 1),
            "line {} is {:.12}",
            i + 1,
            text
        );
    }
    nothing_more(&mut bob).await;
}

#[actix_rt::test]
async fn s21_one_node_tells_of_a_gap_when_the_history_does_not_reach_back() {
    let room = Group::with_history(history(10, Duration::from_secs(60)));
    let node = Node::start(room.clone());
    let mut bob = node.join().await;
    let mut offsets = Vec::new();
    for i in 0..30 {
        room.broadcast(format!("m{i}"));
        offsets.push(line(&mut bob).await.0);
    }
    bob.close().await;
    until_empty(&room).await;

    // 20 messages later, 10 kept: whoever saw m4 missed m5..m19 for good.
    let mut old = node.rejoin(&offsets[4].to_string()).await;
    assert_eq!(next(&mut old).await, Seen::Gap);
    // Whoever saw m19 misses only kept ones: m20..m29.
    let mut recent = node.rejoin(&offsets[19].to_string()).await;
    assert_eq!(
        run_after(&mut recent, &offsets[19], 10).await,
        texts(20..30)
    );
    // Not an offset, or one of another history (another process): a gap.
    let mut garbage = node.rejoin("nonsense").await;
    assert_eq!(next(&mut garbage).await, Seen::Gap);
    let other = Group::with_history(history(10, Duration::from_secs(60)));
    other.broadcast("elsewhere");
    let foreign = format!("{}:{}", "0123456789abcdef", offsets[29].position());
    let mut stranger = node.rejoin(&foreign).await;
    assert_eq!(next(&mut stranger).await, Seen::Gap);
    // Up to date: nothing replayed.
    let mut current = node.rejoin(&offsets[29].to_string()).await;

    room.broadcast("live");
    for client in [
        &mut old,
        &mut recent,
        &mut garbage,
        &mut stranger,
        &mut current,
    ] {
        let (offset, text) = line(client).await;
        assert_eq!((offset.position(), text.as_str()), (31, "live"));
        nothing_more(client).await;
    }
}

#[actix_rt::test]
async fn s21_messages_older_than_the_history_age_are_a_gap() {
    let room = Group::with_history(history(100, Duration::from_millis(300)));
    let node = Node::start(room.clone());
    let mut bob = node.join().await;
    room.broadcast("old");
    let (first, _) = line(&mut bob).await;
    room.broadcast("older than max_age by the time bob asks");
    line(&mut bob).await;
    bob.close().await;
    until_empty(&room).await;
    actix_rt::time::sleep(Duration::from_millis(500)).await;
    let mut bob = node.rejoin(&first.to_string()).await;
    assert_eq!(next(&mut bob).await, Seen::Gap);
}

#[actix_rt::test]
async fn s21_a_group_without_history_recovers_as_a_plain_insert() {
    let room = Group::new();
    let node = Node::start(room.clone());
    let mut bob = node.rejoin("whatever:1").await;
    assert!(room.history().is_none());
    room.broadcast("plain");
    assert_eq!(bob.recv_text().await, "plain");
}

#[actix_rt::test]
async fn s21_across_nodes_a_returning_client_gets_what_every_node_said_meanwhile() {
    let redis = Redis::start();
    let a = Cluster::connect(&redis.url()).await.expect("connect");
    let b = Cluster::connect(&redis.url()).await.expect("connect");
    let settings = history(2_000, Duration::from_secs(60));
    let room_a = a
        .group_with_history("room", settings.clone())
        .await
        .expect("open");
    let room_b = b.group_with_history("room", settings).await.expect("open");
    let (node_a, node_b) = (Node::start(room_a.clone()), Node::start(room_b.clone()));

    let mut bob = node_b.join().await;
    for i in 0..3 {
        room_a
            .broadcast(format!("m{i}"))
            .published()
            .await
            .expect("published");
    }
    let mut last = None;
    for i in 0..3 {
        let (offset, text) = line(&mut bob).await;
        assert_eq!(text, format!("m{i}"));
        last = Some(offset);
    }
    let last = last.expect("three lines");
    bob.close().await;
    until_empty(&room_b).await;

    // Said on both nodes while bob was away.
    for i in 3..503 {
        let room = if i % 2 == 0 { &room_a } else { &room_b };
        room.broadcast(format!("m{i}"))
            .published()
            .await
            .expect("published");
    }
    // Bob comes back on the other node; live lines flow during the replay.
    let mut bob = node_a.rejoin(&last.to_string()).await;
    let live = room_b.clone();
    let publisher = actix_rt::spawn(async move {
        for i in 503..603 {
            live.broadcast(format!("m{i}"))
                .published()
                .await
                .expect("published");
        }
    });
    let mut seen = run_after(&mut bob, &last, 600).await;
    publisher.await.expect("publisher");
    // One order for every node: positions are consecutive (checked); the
    // lines of one publisher keep their order, and none is missing.
    seen.sort_by_key(|text| text[1..].parse::<usize>().expect("m<i>"));
    assert_eq!(seen, texts(3..603));
    nothing_more(&mut bob).await;

    // Live afterwards, once, from either node.
    room_b
        .broadcast("after")
        .published()
        .await
        .expect("published");
    assert_eq!(line(&mut bob).await.1, "after");
    nothing_more(&mut bob).await;
}

#[actix_rt::test]
async fn s21_across_nodes_a_too_old_offset_is_a_gap() {
    let (_redis, _cluster, room, node, mut bob) =
        clustered_room(history(10, Duration::from_secs(60))).await;
    let mut offsets = Vec::new();
    // Redis trims in whole nodes of its radix tree: go well past them.
    for i in 0..300 {
        room.broadcast(format!("m{i}"))
            .published()
            .await
            .expect("published");
        offsets.push(line(&mut bob).await.0);
    }
    bob.close().await;
    until_empty(&room).await;
    let mut old = node.rejoin(&offsets[0].to_string()).await;
    assert_eq!(next(&mut old).await, Seen::Gap);
    let mut recent = node.rejoin(&offsets[294].to_string()).await;
    assert_eq!(
        run_after(&mut recent, &offsets[294], 5).await,
        texts(295..300)
    );
    let mut future = node
        .rejoin(&format!("{}:{}", offsets[0].epoch(), 10_000))
        .await;
    assert_eq!(next(&mut future).await, Seen::Gap);
    room.broadcast("live").published().await.expect("published");
    for client in [&mut old, &mut recent, &mut future] {
        assert_eq!(line(client).await.1, "live");
        nothing_more(client).await;
    }
}

/// The keys of the clustered group "room" under the default prefix.
const ROOM_META: &str = "actix-ws-listener:group:room:history:meta";
const ROOM_STREAM: &str = "actix-ws-listener:group:room:history";

#[actix_rt::test]
async fn s21_across_nodes_a_broadcast_and_a_recovery_renew_the_epochs_expiry() {
    let hour = Duration::from_secs(3600);
    let (redis, _cluster, room, node, mut bob) =
        clustered_room(history(10, Duration::from_secs(60)).meta_ttl(hour)).await;
    room.broadcast("m0").published().await.expect("published");
    let (first, _) = line(&mut bob).await;
    // The stream lives max_age after the last broadcast, its epoch meta_ttl.
    let stream_ms: i64 = redis.query(&["PTTL", ROOM_STREAM]);
    assert!(
        stream_ms > 0 && stream_ms <= 60_000,
        "stream PTTL {stream_ms}"
    );
    let meta_ms: i64 = redis.query(&["PTTL", ROOM_META]);
    assert!(
        meta_ms > 60_000 && meta_ms <= 3_600_000,
        "meta PTTL {meta_ms}"
    );

    // A client coming back renews it too, even with no broadcast since.
    let shortened: i64 = redis.query(&["PEXPIRE", ROOM_META, "50000"]);
    assert_eq!(shortened, 1);
    bob.close().await;
    until_empty(&room).await;
    let mut bob = node.rejoin(&first.to_string()).await;
    wait_for("the recovery read to renew the epoch's expiry", || {
        let meta_ms: i64 = redis.query(&["PTTL", ROOM_META]);
        async move { (meta_ms > 60_000).then_some(()) }
    })
    .await;
    // Up to date: nothing replayed, the same epoch goes on.
    room.broadcast("m1").published().await.expect("published");
    assert_eq!(run_after(&mut bob, &first, 1).await, texts(1..2));
    nothing_more(&mut bob).await;
}

#[actix_rt::test]
async fn s21_across_nodes_the_epoch_expires_meta_ttl_after_the_last_broadcast() {
    // Rooms come and go: a short epoch for the test.
    let (redis, cluster, room, node, mut bob) = clustered_room(
        history(10, Duration::from_millis(200)).meta_ttl(Duration::from_millis(600)),
    )
    .await;
    // Without a setting the epoch stays 30 days.
    let default = cluster
        .group_with_history("default", history(10, Duration::from_secs(60)))
        .await
        .expect("open");
    default
        .broadcast("kept")
        .published()
        .await
        .expect("published");
    let meta_ms: i64 = redis.query(&["PTTL", "actix-ws-listener:group:default:history:meta"]);
    let days_29 = 29 * 24 * 3600 * 1000;
    assert!(
        meta_ms > days_29 && meta_ms <= days_29 / 29 * 30,
        "{meta_ms}"
    );

    room.broadcast("m0").published().await.expect("published");
    let (first, _) = line(&mut bob).await;
    bob.close().await;
    until_empty(&room).await;
    wait_for("the room's keys to expire in Redis", || {
        let left: i64 = redis.query(&["EXISTS", ROOM_META, ROOM_STREAM]);
        async move { (left == 0).then_some(()) }
    })
    .await;

    // The old epoch is gone: a gap, then a new epoch from position 1.
    let mut bob = node.rejoin(&first.to_string()).await;
    assert_eq!(next(&mut bob).await, Seen::Gap);
    room.broadcast("fresh")
        .published()
        .await
        .expect("published");
    let (offset, text) = line(&mut bob).await;
    assert_eq!(text, "fresh");
    assert_ne!(offset.epoch(), first.epoch());
    assert_eq!(offset.position(), 1);
    nothing_more(&mut bob).await;
}

/// How many scripts this Redis ran (`EVAL` calls): records and reads.
fn eval_calls(redis: &Redis) -> u64 {
    let info: String = redis.query(&["INFO", "commandstats"]);
    info.lines()
        .find_map(|line| line.strip_prefix("cmdstat_eval:calls="))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

#[actix_rt::test]
async fn s21_across_nodes_a_replay_of_large_messages_reads_pages_of_about_a_mebibyte() {
    let (redis, _cluster, room, node, mut bob) =
        clustered_room(history(100, Duration::from_secs(60))).await;
    room.broadcast("m0").published().await.expect("published");
    let (since, _) = line(&mut bob).await;
    bob.close().await;
    until_empty(&room).await;
    // 90 messages of 60 KiB (under awc's 64 KiB frame limit): 5.3 MiB.
    let padding = "x".repeat(60 * 1024);
    for i in 1..91 {
        room.broadcast(format!("m{i} {padding}"))
            .published()
            .await
            .expect("published");
    }
    let before = eval_calls(&redis);
    let mut bob = node.rejoin(&since.to_string()).await;
    let mut position = since.position();
    for i in 1..91 {
        let (offset, text) = line(&mut bob).await;
        assert_eq!(offset.position(), position + 1, "consecutive");
        position = offset.position();
        assert!(
            text == format!("m{i} {padding}"),
            "the wrong message at m{i}: {:.20}",
            text
        );
    }
    nothing_more(&mut bob).await;
    // A page ends at the entry that reaches 1 MiB: 18 of these, so five
    // reads where a page of 100 entries would have brought all 90 at once.
    assert_eq!(eval_calls(&redis) - before, 5, "history reads");
}

/// Connections this Redis accepted so far (the query's own included).
fn connections_received(redis: &Redis) -> u64 {
    let info: String = redis.query(&["INFO", "stats"]);
    info.lines()
        .find_map(|line| line.strip_prefix("total_connections_received:"))
        .map_or(0, |count| count.trim().parse().expect("a count"))
}

#[actix_rt::test]
async fn s21_many_recoveries_at_once_do_not_cost_the_node_its_subscription() {
    let (redis, _cluster, room, node, mut bob) =
        clustered_room(history(100, Duration::from_secs(60))).await;
    // Redis closes a subscribed connection whose unread replies pass its
    // pub/sub output limit (32 MB by default; 1 MB here, so that a few
    // recoveries are enough).
    let set: String = redis.query(&[
        "CONFIG",
        "SET",
        "client-output-buffer-limit",
        "pubsub 1mb 1mb 0",
    ]);
    assert_eq!(set, "OK");
    room.broadcast("m0").published().await.expect("published");
    let (since, _) = line(&mut bob).await;
    let padding = "x".repeat(60 * 1024);
    for i in 1..41 {
        room.broadcast(format!("m{i} {padding}"))
            .published()
            .await
            .expect("published");
    }
    run_after(&mut bob, &since, 40).await;
    let before = connections_received(&redis);

    // Eight clients come back at once: eight replays of 2.4 MB.
    let since_text = since.to_string();
    let mut back = futures_util::future::join_all((0..8).map(|_| node.rejoin(&since_text))).await;
    for client in &mut back {
        let texts = run_after(client, &since, 40).await;
        for (i, text) in texts.iter().enumerate() {
            assert!(
                *text == format!("m{} {padding}", i + 1),
                "the wrong message at m{}: {:.20}",
                i + 1,
                text
            );
        }
    }
    // The node kept its connections (the one new one is this query's).
    assert_eq!(
        connections_received(&redis),
        before + 1,
        "the node lost a connection to Redis and made a new one"
    );
    room.broadcast("live").published().await.expect("published");
    for client in back.iter_mut().chain([&mut bob]) {
        assert_eq!(line(client).await.1, "live");
    }
}

#[actix_rt::test]
async fn s21_redis_restarted_during_a_replay_gives_a_gap_never_a_wrong_replay() {
    let mut redis = Redis::start();
    let a = Cluster::connect(&redis.url()).await.expect("connect");
    let b = Cluster::connect(&redis.url()).await.expect("connect");
    let settings = history(3_000, Duration::from_secs(60));
    let room_a = a
        .group_with_history("room", settings.clone())
        .await
        .expect("open");
    let room_b = b.group_with_history("room", settings).await.expect("open");
    let node_b = Node::start(room_b.clone());

    let mut bob = node_b.join().await;
    room_a.broadcast("m0").published().await.expect("published");
    let (since, _) = line(&mut bob).await;
    bob.close().await;
    until_empty(&room_b).await;
    // 64 MB missed: the replay is held back by bob's reading (S15).
    let padding = "x".repeat(32 * 1024);
    for i in 1..2_001 {
        room_a
            .broadcast(format!("m{i} {padding}"))
            .published()
            .await
            .expect("published");
    }
    let mut bob = node_b.rejoin(&since.to_string()).await;
    let mut position = since.position();
    for _ in 0..10 {
        let (offset, text) = line(&mut bob).await;
        assert_eq!(offset.position(), position + 1);
        position = offset.position();
        assert!(
            text == format!("m{} {padding}", position - since.position()),
            "the wrong message at {position}: {:.20}",
            text
        );
    }
    // Redis loses everything (no persistence) while the replay is held back.
    redis.start_again();

    // Whatever was read before the restart comes right; then a gap.
    // (The loop ends at the gap.)
    while let Seen::Line(offset, text) = next(&mut bob).await {
        assert_eq!(offset.epoch(), since.epoch(), "an old epoch before the gap");
        assert_eq!(offset.position(), position + 1, "consecutive");
        position = offset.position();
        assert!(
            text == format!("m{} {padding}", position - since.position()),
            "the wrong message at {position}: {:.20}",
            text
        );
    }
    assert!(
        position < since.position() + 2_000,
        "the restart came before the replay ended"
    );
    // Then live lines of the new history.
    let after = wait_for("a broadcast after Redis came back", || {
        let room = room_a.clone();
        async move { room.broadcast("after").published().await.ok() }
    })
    .await;
    let () = after;
    // Node B may still have been receiving the 2,000 broadcasts when bob
    // came back: those reach him live after the gap, in order, none twice.
    loop {
        let (offset, text) = line(&mut bob).await;
        if text == "after" {
            assert_ne!(
                offset.epoch(),
                since.epoch(),
                "a new history after the reset"
            );
            break;
        }
        assert_eq!(offset.epoch(), since.epoch(), "live, of the old history");
        assert!(offset.position() > position, "twice: {:.20}", text);
        position = offset.position();
        assert!(
            text == format!("m{} {padding}", position - since.position()),
            "the wrong message at {position}: {:.20}",
            text
        );
    }
}

/// The next JSON object a chat client reads.
async fn object(client: &mut Client) -> serde_json::Value {
    let text = client.recv_text().await;
    serde_json::from_str(&text).unwrap_or_else(|error| panic!("not JSON ({error}): {text}"))
}

/// The next `line` object: its id and text. Presence news (a join that
/// reached this process late, a leave) may come first.
async fn chat_line(client: &mut Client) -> (String, String) {
    let line = loop {
        let seen = object(client).await;
        if !matches!(seen["type"].as_str(), Some("join" | "leave")) {
            break seen;
        }
    };
    assert_eq!(line["type"], "line", "{line}");
    (
        line["id"].as_str().expect("an id").to_owned(),
        line["text"].as_str().expect("a text").to_owned(),
    )
}

#[actix_rt::test]
async fn s21_chat_json_clients_come_back_with_since_on_either_process() {
    let redis = Redis::start();
    let chat = build_example("chat");
    let one = ChatProcess::start(&chat, &redis.url());
    let two = ChatProcess::start(&chat, &redis.url());

    let mut alice = Client::connect(&one.json_url("alice")).await;
    assert_eq!(object(&mut alice).await["type"], "welcome");
    let mut bob = Client::connect(&two.json_url("bob")).await;
    assert_eq!(object(&mut bob).await["type"], "welcome");
    // Bob's join reaches alice (so both processes have the room).
    loop {
        let seen = object(&mut alice).await;
        if seen["type"] == "join" {
            break;
        }
    }
    alice.send("before").await;
    let (id, text) = chat_line(&mut bob).await;
    assert_eq!(text, "before");
    assert_eq!(chat_line(&mut alice).await.1, "before");
    bob.close().await;

    for text in ["missed 1", "missed 2", "missed 3"] {
        alice.send(text).await;
        // Alice hears her own lines: each is recorded by then.
        loop {
            let seen = object(&mut alice).await;
            if seen["type"] == "line" {
                assert_eq!(seen["text"], text);
                break;
            }
        }
    }
    // Bob comes back on the other process with the id of the last line he saw.
    let mut bob = Client::connect(&format!("{}&since={id}", one.json_url("bob"))).await;
    assert_eq!(object(&mut bob).await["type"], "welcome");
    let mut replayed = Vec::new();
    for _ in 0..3 {
        replayed.push(chat_line(&mut bob).await.1);
    }
    assert_eq!(replayed, ["missed 1", "missed 2", "missed 3"]);
    alice.send("live").await;
    let live = loop {
        let seen = object(&mut bob).await;
        if seen["type"] == "line" {
            break seen;
        }
        // Presence news (bob's own leave and join) may come in between.
        assert!(
            matches!(seen["type"].as_str(), Some("join" | "leave")),
            "{seen}"
        );
    };
    assert_eq!(live["text"], "live");

    // An id the history does not know: a gap, then live.
    let mut carol = Client::connect(&format!("{}&since=nonsense", two.json_url("carol"))).await;
    assert_eq!(object(&mut carol).await["type"], "welcome");
    assert_eq!(object(&mut carol).await, serde_json::json!({"type": "gap"}));
}

/// Every node of a group must open it the same way. A node with a history
/// counts (and logs) the broadcasts of a node that opened the group without
/// one, and the other way round: `ClusterStats::history_mismatch`. Both
/// are still delivered, unrendered where they were not recorded.
#[actix_rt::test]
async fn s21_nodes_that_open_a_group_differently_are_counted_and_still_delivered() {
    let redis = Redis::start();
    let a = Cluster::connect(&redis.url()).await.expect("connect");
    let b = Cluster::connect(&redis.url()).await.expect("connect");
    let room_a = a
        .group_with_history("room", history(100, Duration::from_secs(60)))
        .await
        .expect("open");
    let room_b = b.group("room").await.expect("open");
    let (node_a, node_b) = (Node::start(room_a.clone()), Node::start(room_b.clone()));
    let mut alice = node_a.join().await;
    let mut bob = node_b.join().await;

    room_b
        .broadcast("plain")
        .published()
        .await
        .expect("published");
    assert_eq!(alice.recv_text().await, "plain", "not recorded: as sent");
    room_a
        .broadcast("recorded")
        .published()
        .await
        .expect("published");
    let (offset, text) = line(&mut alice).await;
    assert_eq!((offset.position(), text.as_str()), (1, "recorded"));
    assert_eq!(bob.recv_text().await, "plain");
    assert_eq!(bob.recv_text().await, "recorded", "B renders nothing");
    wait_for("each node to count the other's broadcast", || {
        let seen = (a.stats().history_mismatch, b.stats().history_mismatch);
        async move { (seen == (1, 1)).then_some(()) }
    })
    .await;

    // Opened the same way on both nodes: nothing to count.
    let same_a = a.group("same").await.expect("open");
    let same_b = b.group("same").await.expect("open");
    let node_same = Node::start(same_a.clone());
    let mut carol = node_same.join().await;
    same_b
        .broadcast("fine")
        .published()
        .await
        .expect("published");
    assert_eq!(carol.recv_text().await, "fine");
    assert_eq!(a.stats().history_mismatch, 1);
}
