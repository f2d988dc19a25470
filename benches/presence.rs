//! Presence bench (S21): what the presence sweeps of a large group cost
//! Redis, and so every broadcast behind them.
//!
//! Run:    cargo bench --bench presence --features redis
//! Knobs:  BENCH_MEMBERS=100000 (members of the group), BENCH_NODES=3
//!         (cluster nodes sweeping it), BENCH_SECS=15 (how long Redis's
//!         latency is watched)
//! Needs:  redis-server on PATH (scripts/test.sh installs it); the bench
//!         starts its own on a free port and kills it at the end.
//!
//! The group's members belong to another node, alive (its key is set),
//! written straight into Redis. `BENCH_NODES` cluster nodes in this process
//! (one `Cluster` each, each with its own thread and connections) open the
//! group, and each sweeps it every 3 s. Meanwhile a plain connection has a
//! `PING` due every 5 ms and times each answer from when it was due: a
//! command that holds Redis holds every `PING` due meanwhile, as it holds
//! every broadcast of every group. Redis's
//! `SLOWLOG` gives the longest single command of the sweeps; the baseline,
//! in the same run, is one `HGETALL` of the same hash (how sweeps read it
//! before they read it a page at a time).

#[path = "common/redis.rs"]
mod redis_server;

use std::time::{Duration, Instant};

use actix_ws_listener::Cluster;

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

/// The hash of group `room` under the default prefix, and the key that
/// says its members' node is alive.
const HASH: &str = "actix-ws-listener:group:room:presence";
const NODE: &str = "ffffffffffffffffffffffffffffffff";

fn fill(conn: &mut redis::Connection, members: usize) -> redis::RedisResult<()> {
    redis::cmd("SET")
        .arg(format!("actix-ws-listener:group:node:{NODE}"))
        .arg(1)
        .arg("PX")
        .arg(3_600_000)
        .exec(conn)?;
    for start in (0..members).step_by(10_000) {
        let mut hset = redis::cmd("HSET");
        hset.arg(HASH);
        for socket in start..(start + 10_000).min(members) {
            hset.arg(format!("{NODE}:{socket}"))
                .arg(format!("member-{socket}"));
        }
        hset.exec(conn)?;
    }
    Ok(())
}

/// The longest command in Redis's slow log: its duration in µs and name.
fn slowest(conn: &mut redis::Connection) -> redis::RedisResult<(u64, String)> {
    // Each entry: id, time, duration (µs), arguments, and on Redis 4 and
    // later the client's address and name.
    let log: Vec<Vec<redis::Value>> = redis::cmd("SLOWLOG").arg("GET").arg(-1).query(conn)?;
    Ok(log
        .iter()
        .filter_map(|entry| {
            let micros: u64 = redis::from_redis_value(entry.get(2)?.clone()).ok()?;
            let args: Vec<String> = redis::from_redis_value(entry.get(3)?.clone()).ok()?;
            Some((micros, args.first().cloned().unwrap_or_default()))
        })
        .max()
        .unwrap_or_default())
}

fn main() -> std::io::Result<()> {
    let _ = env_logger::try_init();
    let members = knob("BENCH_MEMBERS", 100_000);
    let nodes = knob("BENCH_NODES", 3).max(1);
    let secs = knob("BENCH_SECS", 15).max(4);
    let (_redis, url) = redis_server::start()?;
    let mut conn = redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .map_err(std::io::Error::other)?;
    fill(&mut conn, members).map_err(std::io::Error::other)?;

    // The baseline: one command over the whole hash.
    let log_all = |conn: &mut redis::Connection| {
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-log-slower-than")
            .arg(0)
            .exec(conn)?;
        redis::cmd("CONFIG")
            .arg("SET")
            .arg("slowlog-max-len")
            .arg(100_000)
            .exec(conn)?;
        redis::cmd("SLOWLOG").arg("RESET").exec(conn)
    };
    log_all(&mut conn).map_err(std::io::Error::other)?;
    let _: redis::Value = redis::cmd("HGETALL")
        .arg(HASH)
        .query(&mut conn)
        .map_err(std::io::Error::other)?;
    let (hgetall_us, _) = slowest(&mut conn).map_err(std::io::Error::other)?;
    redis::cmd("SLOWLOG")
        .arg("RESET")
        .exec(&mut conn)
        .map_err(std::io::Error::other)?;

    let (pings, longest) = actix_web::rt::System::new().block_on(async move {
        let mut open = Vec::new();
        for _ in 0..nodes {
            let cluster = Cluster::connect(&url)
                .await
                .map_err(std::io::Error::other)?;
            let room = cluster.group("room").await.map_err(std::io::Error::other)?;
            open.push((cluster, room));
        }
        // The PINGs run on a thread of their own, off the nodes' threads.
        let watcher = std::thread::spawn(move || {
            // A `PING` is due every 5 ms, and its latency counts from when
            // it was due: one that had to wait for the previous answer
            // counts that wait too, as a broadcast sent at that moment
            // would have waited.
            let mut pings = Vec::new();
            let start = Instant::now();
            let end = start + Duration::from_secs(secs as u64);
            let mut due = start;
            while due < end {
                std::thread::sleep(due.saturating_duration_since(Instant::now()));
                let _: String = redis::cmd("PING").query(&mut conn).expect("PING");
                pings.push(due.elapsed().as_secs_f64() * 1e3);
                due += Duration::from_millis(5);
            }
            let longest = slowest(&mut conn).expect("SLOWLOG");
            (pings, longest)
        });
        while !watcher.is_finished() {
            actix_web::rt::time::sleep(Duration::from_millis(100)).await;
        }
        let (pings, longest) = watcher.join().expect("the watcher");
        for (_, room) in &open {
            assert_eq!(room.member_count(), members, "every member in each view");
        }
        Ok::<_, std::io::Error>((pings, longest))
    })?;

    let mut sorted = pings.clone();
    sorted.sort_by(f64::total_cmp);
    let at = |q: f64| sorted[((sorted.len() - 1) as f64 * q) as usize];
    let over = sorted.iter().filter(|ms| **ms > 10.0).count();
    let late: f64 = sorted.iter().filter(|ms| **ms > 1.0).sum::<f64>() / sorted.len() as f64;
    println!(
        "{nodes} nodes sweeping a group of {members} members for {secs} s: \
         PING p50 {:.2} ms, p99 {:.2} ms, p99.9 {:.2} ms, max {:.1} ms, {over} of {} over 10 ms, \
         mean wait over 1 ms {late:.3} ms a PING",
        at(0.5),
        at(0.99),
        at(0.999),
        sorted[sorted.len() - 1],
        sorted.len()
    );
    println!(
        "longest command of the sweeps: {} {:.2} ms; one HGETALL of the hash: {:.2} ms \
         (ratio {:.3})",
        longest.1,
        longest.0 as f64 / 1e3,
        hgetall_us as f64 / 1e3,
        longest.0 as f64 / hgetall_us.max(1) as f64
    );
    Ok(())
}
