//! S18: named groups across nodes through a real Redis (started per test on
//! a free port, killed when the test ends), real actix-web servers and real
//! WebSocket clients (awc). Every wait is for an event with a generous
//! deadline; nothing asserts on time.
#![cfg(feature = "redis")]

mod common;

use std::time::Duration;

use actix_ws_listener::{Cluster, ClusterConfig, ClusterError, Group, History};
use common::cluster::*;

/// Two nodes, each with its own handle on group "room" and a server.
async fn two_nodes(redis: &Redis, config: ClusterConfig) -> [(Cluster, Group, Node); 2] {
    let mut nodes = Vec::new();
    for _ in 0..2 {
        let cluster = Cluster::connect_with(&redis.url(), config.clone())
            .await
            .expect("connect");
        let room = cluster.group("room").await.expect("subscribe");
        let node = Node::start(room.clone());
        nodes.push((cluster, room, node));
    }
    nodes.try_into().unwrap_or_else(|_| unreachable!())
}

#[actix_rt::test]
async fn s18_every_member_on_every_node_gets_each_line_exactly_once() {
    let redis = Redis::start();
    let [(a, _, node_a), (b, room_b, node_b)] = two_nodes(&redis, ClusterConfig::default()).await;
    let mut a1 = node_a.join().await;
    let mut a2 = node_a.join().await;
    let mut b1 = node_b.join().await;

    // Nodes share no order, so B answers only once it has A's line.
    a1.send("one").await;
    for client in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(client.recv().await, Line::Text("one".into()));
    }
    b1.send_binary(b"two").await;
    // The end marker comes from B after both: a duplicate of either line
    // (say, A delivering its own "one" again when Redis echoes it) would be
    // read before it.
    for client in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(client.recv().await, Line::Binary(b"two".to_vec()));
    }
    room_b
        .broadcast("end")
        .published()
        .await
        .expect("published");
    for client in [&mut a1, &mut a2, &mut b1] {
        assert_eq!(client.recv().await, Line::Text("end".into()));
    }
    assert_eq!((a.stats().published, b.stats().published), (1, 2));
    // Each node took in only the other's broadcasts: its own echoes are not
    // received, so they cannot be delivered twice.
    assert_eq!(a.stats().received, 2);
    assert_eq!(b.stats().received, 1);
}

#[actix_rt::test]
async fn s18_origin_members_get_their_own_broadcast_once() {
    let redis = Redis::start();
    let [(a, room_a, node_a), (_b, room_b, _node_b)] =
        two_nodes(&redis, ClusterConfig::default()).await;
    let mut a1 = node_a.join().await;
    for i in 0..20 {
        room_a
            .broadcast(format!("own {i}"))
            .published()
            .await
            .expect("published");
    }
    room_b
        .broadcast("end")
        .published()
        .await
        .expect("published");
    for i in 0..20 {
        assert_eq!(a1.recv().await, Line::Text(format!("own {i}")));
    }
    assert_eq!(a1.recv().await, Line::Text("end".into()));
    assert_eq!(a.stats().received, 1, "only B's marker came in from Redis");
}

#[actix_rt::test]
async fn s18_broadcast_except_skips_only_the_sender_on_every_node() {
    let redis = Redis::start();
    let [_, (_b, room_b, node_b)] = two_nodes(&redis, ClusterConfig::default()).await;
    let node_a = Node::start_with(
        Cluster::connect(&redis.url())
            .await
            .expect("connect")
            .group("room")
            .await
            .expect("subscribe"),
        true,
    );
    let mut a1 = node_a.join().await;
    let mut a2 = node_a.join().await;
    let mut b1 = node_b.join().await;

    a1.send("not to a1").await;
    assert_eq!(a2.recv().await, Line::Text("not to a1".into()));
    assert_eq!(b1.recv().await, Line::Text("not to a1".into()));
    room_b
        .broadcast("end")
        .published()
        .await
        .expect("published");
    assert_eq!(a1.recv().await, Line::Text("end".into()));
}

#[actix_rt::test]
async fn s18_delivery_resumes_by_itself_after_a_redis_restart() {
    let mut redis = Redis::start();
    let config = ClusterConfig::default().publish_timeout(std::time::Duration::from_secs(2));
    let [(_a, room_a, node_a), (_b, _room_b, node_b)] = two_nodes(&redis, config).await;
    let mut a1 = node_a.join().await;
    let mut b1 = node_b.join().await;

    redis.stop();
    // During the outage: the publish fails and says so; local members still
    // get the line.
    let report = room_a.broadcast("during the outage");
    assert_eq!(report.sent, 1);
    assert!(report.published().await.is_err(), "Redis is down");
    assert_eq!(a1.recv().await, Line::Text("during the outage".into()));

    redis.start_again();
    // Probe until B's member hears one: resubscription is the event waited
    // for; the probes are the only way to observe it from outside.
    let deadline = std::time::Instant::now() + TIMEOUT;
    let mut sent = 0;
    let first = loop {
        assert!(
            std::time::Instant::now() < deadline,
            "delivery did not resume after the restart"
        );
        let _ = room_a.broadcast(format!("probe {sent}")).published().await;
        sent += 1;
        if let Some(line) = b1.try_recv(std::time::Duration::from_millis(200)).await {
            break line;
        }
    };
    let Line::Text(first) = first else {
        panic!("expected a probe, got {first:?}")
    };
    let mut next: usize = first
        .strip_prefix("probe ")
        .and_then(|n| n.parse().ok())
        .expect("a probe");
    // Then every later probe, once each and in order, then the end marker.
    room_a
        .broadcast("end")
        .published()
        .await
        .expect("published");
    loop {
        next += 1;
        let line = b1.recv().await;
        if line == Line::Text("end".into()) {
            break;
        }
        assert_eq!(line, Line::Text(format!("probe {next}")));
    }
    // B's member never got the line published while Redis was down.
    for i in 0..sent {
        assert_eq!(a1.recv().await, Line::Text(format!("probe {i}")));
    }
    assert_eq!(a1.recv().await, Line::Text("end".into()));
}

#[actix_rt::test]
async fn s18_a_slow_node_drops_and_counts_instead_of_queueing() {
    let redis = Redis::start();
    let sender = Cluster::connect_with(
        &redis.url(),
        ClusterConfig::default().publish_capacity(100_000),
    )
    .await
    .expect("connect");
    let room_a = sender.group("room").await.expect("subscribe");
    // A node whose delivery queue holds one envelope: bursts overflow it.
    let slow = Cluster::connect_with(&redis.url(), ClusterConfig::default().inbound_capacity(1))
        .await
        .expect("connect");
    let node_b = Node::start(slow.group("room").await.expect("subscribe"));
    let mut b1 = node_b.join().await;

    let mut total = 0u64;
    wait_for("the slow node to drop a broadcast", || {
        let reports: Vec<_> = (0..2_000)
            .map(|_| {
                total += 1;
                room_a.broadcast(format!("{total}"))
            })
            .collect();
        let slow = slow.clone();
        async move {
            for report in reports {
                report.published().await.expect("published");
            }
            (slow.stats().dropped > 0).then_some(())
        }
    })
    .await;
    // Every envelope is accounted for: taken into the bounded queue or
    // dropped and counted, never queued without bound.
    wait_for("the slow node to account for every envelope", || {
        let stats = slow.stats();
        async move { (stats.received + stats.dropped == total).then_some(()) }
    })
    .await;
    wait_for("the slow node to deliver what it took in", || {
        let stats = slow.stats();
        async move { (stats.delivered == stats.received).then_some(()) }
    })
    .await;
    let stats = slow.stats();
    assert!(stats.dropped > 0 && stats.delivered > 0, "{stats:?}");
    // What was delivered arrives once each, in publish order, with gaps
    // where envelopes were dropped.
    let mut last = 0u64;
    for _ in 0..stats.delivered {
        let Line::Text(line) = b1.recv().await else {
            panic!("text expected")
        };
        let seq: u64 = line.parse().expect("a sequence number");
        assert!(seq > last, "{seq} after {last}: duplicate or reordered");
        last = seq;
    }
}

#[actix_rt::test]
async fn s18_publish_failures_are_reported_and_local_members_still_get_the_line() {
    let mut redis = Redis::start();
    let cluster = Cluster::connect_with(
        &redis.url(),
        ClusterConfig::default().publish_timeout(std::time::Duration::from_secs(1)),
    )
    .await
    .expect("connect");
    let room = cluster.group("room").await.expect("subscribe");
    let node = Node::start(room.clone());
    let mut member = node.join().await;
    redis.stop();
    let report = room.broadcast("local only");
    assert_eq!(report.sent, 1);
    let error = report.published().await.expect_err("Redis is down");
    assert!(
        matches!(
            error,
            ClusterError::Unreachable { .. } | ClusterError::Timeout { .. }
        ),
        "{error:?}"
    );
    assert_eq!(member.recv().await, Line::Text("local only".into()));
    assert!(cluster.stats().publish_failed >= 1);
}

#[actix_rt::test]
async fn s18_a_broadcast_redis_refuses_fails_alone_the_rest_of_its_batch_is_published() {
    let redis = Redis::start();
    let [(a, room_a, _), (_b, _, node_b)] = two_nodes(&redis, ClusterConfig::default()).await;
    let mut member = node_b.join().await;
    // A group whose history stream is then replaced by a string: Redis
    // refuses to record in it (WRONGTYPE), while plain publishes go on.
    let broken = a
        .group_with_history("broken", History::new(10, Duration::from_secs(60)))
        .await
        .expect("open");
    broken
        .broadcast("recorded")
        .published()
        .await
        .expect("published");
    let set: String = redis.query(&[
        "SET",
        "actix-ws-listener:group:broken:history",
        "not a stream",
    ]);
    assert_eq!(set, "OK");

    // Queued back to back, they go to Redis in as few pipelines as the
    // publishing task makes: the refused one shares one with others.
    let mut reports = Vec::new();
    let mut refused = None;
    for i in 0..200 {
        if i % 50 == 25 {
            refused
                .get_or_insert_with(Vec::new)
                .push(broken.broadcast("refused"));
        }
        reports.push(room_a.broadcast(format!("m{i}")));
    }
    for (i, report) in reports.into_iter().enumerate() {
        if let Err(error) = report.published().await {
            panic!("m{i} was published, yet reported {error:?}");
        }
    }
    for report in refused.unwrap() {
        let error = report.published().await.expect_err("refused by Redis");
        assert!(matches!(error, ClusterError::Refused { .. }), "{error:?}");
    }
    for i in 0..200 {
        assert_eq!(member.recv().await, Line::Text(format!("m{i}")));
    }
    let stats = a.stats();
    assert_eq!((stats.published, stats.publish_failed), (201, 4));
}

#[actix_rt::test]
async fn s18_two_chat_processes_share_one_room() {
    let redis = Redis::start();
    let chat = build_example("chat");
    let one = ChatProcess::start(&chat, &redis.url());
    let two = ChatProcess::start(&chat, &redis.url());

    let mut alice = Client::connect(&one.url("alice")).await;
    assert_eq!(
        alice.recv().await,
        Line::Text("* welcome, alice (1 online)".into())
    );
    let mut bob = Client::connect(&two.url("bob")).await;
    // "N online" counts the room on every process; alice's join may still
    // be on its way to the second process, so either count is right here.
    let welcome = bob.recv().await;
    assert!(
        [
            Line::Text("* welcome, bob (1 online)".into()),
            Line::Text("* welcome, bob (2 online)".into())
        ]
        .contains(&welcome),
        "{welcome:?}"
    );
    assert_eq!(alice.recv().await, Line::Text("* bob joined".into()));
    alice.send("hello").await;
    assert_eq!(alice.recv().await, Line::Text("alice: hello".into()));
    let mut line = bob.recv().await;
    if welcome == Line::Text("* welcome, bob (1 online)".into())
        && line == Line::Text("* alice joined".into())
    {
        // Alice's join reached the second process after bob's welcome
        // counted the room, and after bob joined its delivery group.
        line = bob.recv().await;
    }
    assert_eq!(line, Line::Text("alice: hello".into()));
    bob.send("hi").await;
    // Each once: a duplicate "alice: hello" would come before "bob: hi".
    assert_eq!(alice.recv().await, Line::Text("bob: hi".into()));
    assert_eq!(bob.recv().await, Line::Text("bob: hi".into()));
}

/// Runs the chat example to its end with `env`; returns its exit status and
/// what it wrote to stderr.
fn run_chat_to_failure(env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let chat = build_example("chat");
    let mut command = std::process::Command::new(chat);
    command
        .env_remove("REDIS_URL")
        .env("RUST_LOG", "info")
        .stdin(std::process::Stdio::null());
    for (key, value) in env {
        command.env(key, value);
    }
    let output = command.output().expect("run the chat example");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).trim().to_owned(),
    )
}

#[test]
fn chat_at_no_redis_says_so_in_one_line_and_exits_non_zero() {
    // A port nobody listens on: the connection is refused.
    let url = format!("redis://127.0.0.1:{}/", free_port());
    let bind = format!("127.0.0.1:{}", free_port());
    let (status, stderr) = run_chat_to_failure(&[("REDIS_URL", &url), ("BIND", &bind)]);
    assert!(!status.success(), "{status}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&url), "names the URL: {stderr}");
    assert!(
        stderr.contains("start redis-server") && stderr.contains("unset REDIS_URL"),
        "says what to do: {stderr}"
    );
}

#[test]
fn chat_on_a_taken_port_says_so_in_one_line_and_exits_non_zero() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let bind = taken.local_addr().expect("address").to_string();
    let (status, stderr) = run_chat_to_failure(&[("BIND", &bind)]);
    assert!(!status.success(), "{status}: {stderr}");
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr}");
    assert!(stderr.contains(&bind), "names the address: {stderr}");
    assert!(stderr.contains("choose another BIND"), "{stderr}");
}
