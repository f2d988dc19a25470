//! S21 presence: who is in a group on every node, join and leave events,
//! and a node killed without a word leaving every view within the bound.
//! On one process without Redis, and across nodes through a real
//! `redis-server` (started per test on a free port, killed by PID), real
//! actix-web servers, real WebSocket clients (awc) and the chat example as
//! child processes. Every wait is for an event with a deadline.
#![cfg(feature = "redis")]

mod common;

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use actix_ws_listener::{Cluster, ClusterConfig, Group, Member, PresenceEvent};
use common::cluster::*;

/// Every presence event a group reported, in order.
fn record(group: &Group) -> Arc<Mutex<Vec<PresenceEvent>>> {
    let events = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&events);
    group.on_presence(move |event| sink.lock().expect("events").push(event.clone()));
    events
}

fn joins_and_leaves(events: &Mutex<Vec<PresenceEvent>>) -> (usize, usize) {
    let events = events.lock().expect("events");
    let joins = events
        .iter()
        .filter(|event| matches!(event, PresenceEvent::Join(_)))
        .count();
    let leaves = events
        .iter()
        .filter(|event| matches!(event, PresenceEvent::Leave(_)))
        .count();
    (joins, leaves)
}

fn metas(members: &[Member]) -> Vec<String> {
    let mut metas: Vec<String> = members.iter().map(|member| member.meta.clone()).collect();
    metas.sort();
    metas
}

/// Group `room` on two cluster nodes, A through `url_a` and B through
/// `url_b`; the nodes live as long as the clusters returned.
async fn room_on_two_nodes(url_a: &str, url_b: &str) -> ([Cluster; 2], Group, Group) {
    let a = Cluster::connect(url_a).await.expect("connect");
    let b = Cluster::connect(url_b).await.expect("connect");
    let room_a = a.group("room").await.expect("subscribe");
    let room_b = b.group("room").await.expect("subscribe");
    ([a, b], room_a, room_b)
}

#[actix_rt::test]
async fn s21_a_local_group_counts_lists_and_reports_joins_and_leaves() {
    let group = Group::new();
    let events = record(&group);
    let node = Node::start(group.clone());
    let one = node.join().await;
    let _two = node.join().await;
    assert_eq!(group.member_count(), 2, "tracked before `joined` was sent");
    assert_eq!(group.members().len(), 2);
    assert!(group
        .members()
        .iter()
        .all(|member| member.local_socket.is_some() && member.meta.starts_with('m')));
    assert_eq!(joins_and_leaves(&events), (2, 0));

    one.close().await;
    wait_for("the leave of the closed member", || {
        let seen = joins_and_leaves(&events);
        async move { (seen == (2, 1)).then_some(()) }
    })
    .await;
    assert_eq!(group.member_count(), 1);
}

#[actix_rt::test]
async fn s21_presence_counts_and_lists_every_node_with_events_on_each() {
    let redis = Redis::start();
    let (_nodes, room_a, room_b) = room_on_two_nodes(&redis.url(), &redis.url()).await;
    let (events_a, events_b) = (record(&room_a), record(&room_b));
    let (node_a, node_b) = (Node::start(room_a.clone()), Node::start(room_b.clone()));
    let a1 = node_a.join().await;
    let _b1 = node_b.join().await;
    let _b2 = node_b.join().await;

    for (room, events) in [(&room_a, &events_a), (&room_b, &events_b)] {
        wait_for(
            "every node's members in each view, with a join for each",
            || {
                let (count, seen) = (room.member_count(), joins_and_leaves(events));
                async move { (count == 3 && seen == (3, 0)).then_some(()) }
            },
        )
        .await;
    }
    assert_eq!(room_a.members(), {
        // Same members, same ids; only `local_socket` says where each lives.
        let mut seen_from_b = room_b.members();
        for member in &mut seen_from_b {
            member.local_socket = room_a
                .members()
                .iter()
                .find(|mine| mine.id == member.id)
                .and_then(|mine| mine.local_socket);
        }
        seen_from_b
    });
    let on_a = room_a.members();
    assert_eq!(
        on_a.iter().filter(|m| m.local_socket.is_some()).count(),
        1,
        "one member lives on A: {on_a:?}"
    );

    a1.close().await;
    for (room, events) in [(&room_a, &events_a), (&room_b, &events_b)] {
        wait_for("the leave on every node", || {
            let (count, seen) = (room.member_count(), joins_and_leaves(events));
            async move { (count == 2 && seen == (3, 1)).then_some(()) }
        })
        .await;
    }
    assert_eq!(metas(&room_a.members()), metas(&room_b.members()));
}

/// The chat's JSON mode as a client reads it: the `name` list of a `who`.
fn who_names(line: &str) -> Option<Vec<String>> {
    let names = line.strip_prefix(r#"{"type":"who","names":["#)?;
    let names = names.strip_suffix("]}")?;
    Some(
        names
            .split(',')
            .filter(|name| !name.is_empty())
            .map(|name| name.trim_matches('"').to_owned())
            .collect(),
    )
}

/// Asks `/who` until the answer is `expected`, skipping join and leave
/// lines in between.
async fn wait_for_who(client: &mut Client, expected: &[&str]) {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        client.send("/who").await;
        let names = loop {
            let line = client.recv_text().await;
            if let Some(names) = who_names(&line) {
                break names;
            }
        };
        if names == expected {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "/who never said {expected:?} (last {names:?})"
        );
        actix_rt::time::sleep(Duration::from_millis(50)).await;
    }
}

#[actix_rt::test]
async fn s21_chat_welcome_and_who_count_every_node_and_a_killed_node_leaves() {
    let redis = Redis::start();
    let chat = build_example("chat");
    let one = ChatProcess::start(&chat, &redis.url());
    let two = ChatProcess::start(&chat, &redis.url());

    let mut alice = Client::connect(&one.json_url("alice")).await;
    assert_eq!(
        alice.recv_text().await,
        r#"{"type":"welcome","name":"alice","online":1}"#
    );
    let mut bob = Client::connect(&two.json_url("bob")).await;
    let welcome = bob.recv_text().await;
    assert!(
        welcome.starts_with(r#"{"type":"welcome","name":"bob","online":"#),
        "{welcome}"
    );
    // Both processes see both, whichever answers.
    wait_for_who(&mut bob, &["alice", "bob"]).await;
    wait_for_who(&mut alice, &["alice", "bob"]).await;
    let mut carol = Client::connect(&two.json_url("carol")).await;
    assert_eq!(
        carol.recv_text().await,
        r#"{"type":"welcome","name":"carol","online":3}"#,
        "the welcome counts the room on every node, the newcomer included"
    );
    // Carol's join is on its way to Redis; the room knows her once alice's
    // process has it.
    wait_for_who(&mut alice, &["alice", "bob", "carol"]).await;

    // Two's users leave every view when two dies without a word.
    let killed = Instant::now();
    two.kill();
    let mut left = Vec::new();
    // The documented bound (15 s), plus the shared slack for a loaded machine.
    while left.len() < 2 {
        assert!(
            killed.elapsed() < Duration::from_secs(15) + TIMEOUT,
            "the killed process's users never left: {left:?}"
        );
        if let Some(Line::Text(line)) = alice.try_recv(Duration::from_millis(200)).await {
            if line.starts_with(r#"{"type":"leave""#) {
                left.push(line);
            }
        }
    }
    eprintln!(
        "presence after SIGKILL: both leaves after {:?}",
        killed.elapsed()
    );
    left.sort();
    assert_eq!(
        left,
        [
            r#"{"type":"leave","name":"bob"}"#,
            r#"{"type":"leave","name":"carol"}"#
        ]
    );
    wait_for_who(&mut alice, &["alice"]).await;

    // The last node dies too: no node is left to sweep alice away, and the
    // room's presence hash expires by itself (30 s after the last sweep).
    let hashes: Vec<String> = redis.query(&["KEYS", "*:presence"]);
    assert_eq!(hashes.len(), 1, "one room: {hashes:?}");
    let ttl_ms: i64 = redis.query(&["PTTL", &hashes[0]]);
    assert!(ttl_ms > 0 && ttl_ms <= 30_000, "PTTL {ttl_ms}");
    one.kill();
    wait_for_within(
        Duration::from_secs(30) + TIMEOUT,
        "the dead room's presence hash to expire",
        || {
            let left: Vec<String> = redis.query(&["KEYS", "*:presence"]);
            async move { left.is_empty().then_some(()) }
        },
    )
    .await;
}

/// The presence hash of group `name` under the default prefix.
const ROOM_HASH: &str = "actix-ws-listener:group:room:presence";

/// The Leave events of `events`, by member id.
fn leaves(events: &Mutex<Vec<PresenceEvent>>) -> Vec<String> {
    events
        .lock()
        .expect("events")
        .iter()
        .filter_map(|event| match event {
            PresenceEvent::Leave(member) => Some(member.id.clone()),
            _ => None,
        })
        .collect()
}

/// A node whose Redis is 15 ms away and which has 1,000 groups open: its
/// sweep of them must not hold its heartbeat back. Swept one round trip a
/// group, a round took 15 s, the node's key (10 s) expired in the middle,
/// and the other node removed its members and reported them gone.
#[actix_rt::test]
async fn s21_a_node_with_many_groups_behind_a_slow_link_keeps_its_members() {
    let redis = Redis::start();
    let link = SlowLink::start(&redis);
    let ([a, _b], room_a, room_b) = room_on_two_nodes(&link.url(), &redis.url()).await;
    let mut idle = Vec::new();
    for i in 0..1000 {
        idle.push(a.group(&format!("idle{i}")).await.expect("subscribe"));
    }
    let events_b = record(&room_b);
    let node_a = Node::start(room_a.clone());
    let _a1 = node_a.join().await;
    wait_for("A's member in B's view", || {
        let count = room_b.member_count();
        async move { (count == 1).then_some(()) }
    })
    .await;

    link.set_delay(Duration::from_millis(15));
    // Longer than a key lives (10 s) plus a heartbeat and a sweep of B.
    let until = Instant::now() + Duration::from_secs(18);
    while Instant::now() < until {
        assert_eq!(
            leaves(&events_b),
            Vec::<String>::new(),
            "B reported A's live member gone"
        );
        assert_eq!(room_b.member_count(), 1, "B lost A's live member");
        actix_rt::time::sleep(Duration::from_millis(200)).await;
    }
    let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
    assert_eq!(hash.len(), 1, "A's member in the broker: {hash:?}");
    drop(idle);
}

/// A member the broker lost while its node lives (the hash evicted or
/// deleted, a join lost to a full queue) is written again by its node's
/// next sweep, with its metadata and the hash's expiry.
#[actix_rt::test]
async fn s21_a_member_the_broker_lost_is_written_again_by_its_node() {
    let redis = Redis::start();
    let (_nodes, room_a, room_b) = room_on_two_nodes(&redis.url(), &redis.url()).await;
    let node_a = Node::start(room_a.clone());
    let _a1 = node_a.join().await;
    let written: std::collections::HashMap<String, String> = wait_for("the join in Redis", || {
        let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
        async move { (hash.len() == 1).then_some(hash) }
    })
    .await;

    let deleted: u32 = redis.query(&["DEL", ROOM_HASH]);
    assert_eq!(deleted, 1);
    // A sweep comes every 3 s; two rounds at most, with room to spare.
    wait_for_within(Duration::from_secs(8), "the member written again", || {
        let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
        let ttl: i64 = redis.query(&["PTTL", ROOM_HASH]);
        let written = written.clone();
        async move { (hash == written && ttl > 0).then_some(()) }
    })
    .await;
    wait_for("A's member in B's view again", || {
        let members = room_b.members();
        let written = written.clone();
        async move {
            (members.len() == 1 && written.get(&members[0].id) == Some(&members[0].meta))
                .then_some(())
        }
    })
    .await;
}

/// An entry of a live node that the node no longer tracks (its leave lost
/// to a full queue or an outage) is removed by that node's sweep, which
/// publishes its leave: no member stays in every view forever.
#[actix_rt::test]
async fn s21_an_entry_its_live_node_no_longer_tracks_is_removed_with_a_leave() {
    let redis = Redis::start();
    let (_nodes, room_a, room_b) = room_on_two_nodes(&redis.url(), &redis.url()).await;
    let events_b = record(&room_b);
    let node_a = Node::start(room_a.clone());
    let _a1 = node_a.join().await;
    let id = wait_for("the join in Redis", || {
        let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
        async move { hash.into_keys().next() }
    })
    .await;
    let (node, _) = id.split_once(':').expect("NODE:SOCKET");
    let ghost = format!("{node}:999999");
    let added: u32 = redis.query(&["HSET", ROOM_HASH, &ghost, "ghost"]);
    assert_eq!(added, 1);

    // Seen in two sweeps of A running (3 s apart), then removed.
    wait_for_within(Duration::from_secs(12), "the ghost's leave on B", || {
        let gone = leaves(&events_b).contains(&ghost);
        async move { gone.then_some(()) }
    })
    .await;
    let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
    assert_eq!(hash.into_keys().collect::<Vec<_>>(), vec![id.clone()]);
    wait_for("B's view without the ghost", || {
        let ids: Vec<String> = room_b.members().into_iter().map(|m| m.id).collect();
        let id = id.clone();
        async move { (ids == vec![id]).then_some(()) }
    })
    .await;
    assert_eq!(leaves(&events_b), vec![ghost], "one leave, the ghost's");
}

/// The presence events of `events` about member `id`, as `J`, `U`, `L`.
fn story(events: &Mutex<Vec<PresenceEvent>>, id: &str) -> String {
    events
        .lock()
        .expect("events")
        .iter()
        .filter_map(|event| match event {
            PresenceEvent::Join(member) if member.id == id => Some('J'),
            PresenceEvent::Update(member) if member.id == id => Some('U'),
            PresenceEvent::Leave(member) if member.id == id => Some('L'),
            _ => None,
        })
        .collect()
}

/// The ids of the members of `room`.
fn ids(room: &Group) -> Vec<String> {
    room.members().into_iter().map(|member| member.id).collect()
}

/// A leave and a join made while Redis is down never reach the channel;
/// once Redis is back (empty: no persistence), the sweeps repair every
/// view, and every node's callbacks hear each change once, as if the
/// channel had carried it: what a node's events say is what its view did.
#[actix_rt::test]
async fn s21_changes_lost_in_an_outage_are_heard_once_on_every_node_when_views_repair() {
    let mut redis = Redis::start();
    // Publishes wait 300 ms for Redis, then are given up: lost.
    let config = || ClusterConfig::default().publish_timeout(Duration::from_millis(300));
    let a = Cluster::connect_with(&redis.url(), config())
        .await
        .expect("connect");
    let b = Cluster::connect_with(&redis.url(), config())
        .await
        .expect("connect");
    let room_a = a.group("room").await.expect("subscribe");
    let room_b = b.group("room").await.expect("subscribe");
    let (events_a, events_b) = (record(&room_a), record(&room_b));
    let node_a = Node::start(room_a.clone());
    let x = node_a.join().await;
    let x_id = wait_for("X in Redis", || {
        let hash: std::collections::HashMap<String, String> = redis.query(&["HGETALL", ROOM_HASH]);
        async move { hash.into_keys().next() }
    })
    .await;
    for (room, events) in [(&room_a, &events_a), (&room_b, &events_b)] {
        wait_for("X's join on every node", || {
            let (heard, view) = (story(events, &x_id), ids(room));
            let expected = vec![x_id.clone()];
            async move { (heard == "J" && view == expected).then_some(()) }
        })
        .await;
    }

    redis.stop();
    // X leaves and Y joins while nothing reaches the broker.
    x.close().await;
    let _y = node_a.join().await;
    let y_id = room_a
        .members()
        .into_iter()
        .find(|member| member.id != x_id)
        .expect("Y tracked on A")
        .id;
    // Past the publish timeout: the leave and the join are given up.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    redis.start_again();

    // A writes Y again at its next sweep; every view converges within a
    // few sweeps (3 s each).
    for (room, events) in [(&room_a, &events_a), (&room_b, &events_b)] {
        wait_for_within(Duration::from_secs(15), "every view repaired", || {
            let view = ids(room);
            let expected = vec![y_id.clone()];
            async move { (view == expected).then_some(()) }
        })
        .await;
        // The events that made it: X left, Y joined, each heard once.
        wait_for("the repair's events", || {
            let heard = (story(events, &x_id), story(events, &y_id));
            async move { (heard == ("JL".to_owned(), "J".to_owned())).then_some(()) }
        })
        .await;
    }
    // A few more sweeps change nothing and tell nothing.
    tokio::time::sleep(Duration::from_secs(4)).await;
    for (room, events) in [(&room_a, &events_a), (&room_b, &events_b)] {
        assert_eq!(ids(room), vec![y_id.clone()]);
        assert_eq!(
            (story(events, &x_id), story(events, &y_id)),
            ("JL".to_owned(), "J".to_owned()),
            "{:?}",
            events.lock().expect("events")
        );
    }
}

/// Field `cmdstat_NAME`'s `calls` in Redis's `INFO commandstats`.
fn calls(redis: &Redis, name: &str) -> u64 {
    let stats: String = redis.query(&["INFO", "commandstats"]);
    stats
        .lines()
        .find_map(|line| line.strip_prefix(&format!("cmdstat_{name}:calls=")))
        .and_then(|rest| rest.split(',').next())
        .map_or(0, |calls| calls.parse().expect("a count"))
}

/// A group larger than a sweep's page (1,000 entries) is read whole, a
/// page at a time (`HSCAN`), never with one command over the whole hash:
/// one `HGETALL` of 100,000 members holds Redis, and every broadcast
/// behind it, for about 60 ms. Every member found is heard once, as a join.
#[actix_rt::test]
async fn s21_a_large_group_is_swept_a_page_at_a_time_and_seen_whole() {
    const MEMBERS: usize = 5_000;
    let redis = Redis::start();
    let cluster = Cluster::connect(&redis.url()).await.expect("connect");
    let room = cluster.group("room").await.expect("subscribe");
    let events = record(&room);
    // The members of another node, alive (its key is set), written
    // straight into Redis.
    let node = "f".repeat(32);
    let key = format!("actix-ws-listener:group:node:{node}");
    let _: String = redis.query(&["SET", &key, "1", "PX", "60000"]);
    let mut hset = vec!["HSET".to_owned(), ROOM_HASH.to_owned()];
    for socket in 0..MEMBERS {
        hset.push(format!("{node}:{socket}"));
        hset.push(format!("m{socket}"));
    }
    let added: usize = redis.query(&hset.iter().map(String::as_str).collect::<Vec<_>>());
    assert_eq!(added, MEMBERS);

    wait_for_within(
        Duration::from_secs(8),
        "every member in the view, heard",
        || {
            let (count, heard) = (room.member_count(), joins_and_leaves(&events));
            async move { (count == MEMBERS && heard == (MEMBERS, 0)).then_some(()) }
        },
    )
    .await;
    let mut expected: Vec<String> = (0..MEMBERS).map(|socket| format!("m{socket}")).collect();
    expected.sort();
    assert_eq!(metas(&room.members()), expected);

    assert_eq!(calls(&redis, "hgetall"), 0, "no sweep reads a hash at once");
    let pages = calls(&redis, "hscan");
    assert!(
        pages >= (MEMBERS / 1000) as u64,
        "{pages} pages for {MEMBERS} members"
    );
    // The next sweeps find nothing new to tell.
    tokio::time::sleep(Duration::from_secs(4)).await;
    assert_eq!(joins_and_leaves(&events), (MEMBERS, 0));
}
