//! History bench (S21): what recording costs a broadcast, and how long the
//! recovery of 1,000 missed messages takes against the same messages live.
//!
//! Run:    cargo bench --bench history --features redis
//! Knobs:  BENCH_MEMBERS=1000 (sockets in the broadcast samples),
//!         BENCH_BROADCASTS=20 (broadcasts per sample), BENCH_MISSED=1000
//!         (messages a recovering client missed), BENCH_ROUNDS=5 (rounds;
//!         every round measures each layout once, in turn)
//! Needs:  redis-server on PATH (scripts/test.sh installs it); the bench
//!         starts its own on a free port and kills it at the end.
//! Log:    RUST_LOG=actix_ws_listener=debug shows the cluster's own log
//!         (a lost connection to Redis, say).
//!
//! The server is this crate on one actix worker in a thread of this
//! process; the clients are awc WebSocket clients on this thread. Members
//! join on open (`Group::insert`), or with `?since=OFFSET` through
//! `Group::recover`. Messages are 128-byte text lines; a group with history
//! renders each as `OFFSET LINE` (one `format!` per message, as the chat's
//! JSON mode does).
//!
//! - Broadcast: the time for `BENCH_BROADCASTS` broadcasts, issued back to
//!   back, to reach every one of `BENCH_MEMBERS` members, per broadcast;
//!   for a group of this process (`Group::new` against
//!   `Group::with_history`) and a clustered group of one node (`group`, one
//!   `PUBLISH`, against `group_with_history`, one `EVAL` that records and
//!   publishes, delivered on Redis's echo).
//! - Recovery: one member reads `BENCH_MISSED` broadcasts live (the time
//!   from the first broadcast to its last receipt); then a client that
//!   missed them comes back with the offset before them (the time from the
//!   start of its connection to the last replayed message). Both in the
//!   same round, so the ratio is the bench's figure.
//! - Herd (off unless `BENCH_HERD` is set): `BENCH_HERD` clients that each
//!   missed the same `BENCH_HERD_MISSED=100` messages of
//!   `BENCH_HERD_BYTES=1024` bytes come back at once, as after a node
//!   restart: the time from the first connect to the last replayed message,
//!   and this process's peak RSS over that time (the server's replays and
//!   the clients' buffers together; `/proc/self/clear_refs` resets the
//!   peak first), for each history layout, once per round.

#[path = "common/redis.rs"]
mod redis_server;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::mpsc,
    time::{Duration, Instant},
};

use actix_web::{dev::ServerHandle, web, App, HttpRequest, HttpServer, Responder};
use actix_ws_listener::{
    CloseCode, Cluster, Group, History, Listener, Message, Socket, WebSocketUpgrade,
};
use futures_util::StreamExt;

/// Joins the group on open, or recovers from `since`; leaves on close.
struct Member {
    room: Group,
    since: Option<String>,
}

impl Listener for Member {
    fn on_open(&mut self, socket: &Socket) {
        match &self.since {
            Some(since) => {
                self.room.recover(socket, since);
            }
            None => {
                self.room.insert(socket);
            }
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.room.remove(socket);
    }
}

async fn ws(
    request: HttpRequest,
    upgrade: WebSocketUpgrade,
    room: web::Data<Group>,
) -> impl Responder {
    let since = request
        .query_string()
        .strip_prefix("since=")
        .map(str::to_owned);
    upgrade.listen(Member {
        room: room.get_ref().clone(),
        since,
    })
}

/// This crate on one worker, in a thread; stopped with its handle.
fn start_server(room: Group) -> (String, ServerHandle) {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        actix_web::rt::System::new().block_on(async move {
            let room = web::Data::new(room);
            let server = HttpServer::new(move || {
                App::new()
                    .app_data(room.clone())
                    .route("/ws", web::get().to(ws))
            })
            .workers(1)
            .backlog(4096)
            .disable_signals()
            .shutdown_timeout(1)
            .bind("127.0.0.1:0")
            .expect("bind");
            let url = format!("ws://{}/ws", server.addrs()[0]);
            let server = server.run();
            tx.send((url, server.handle())).expect("bench gone");
            let _ = server.await;
        });
    });
    rx.recv().expect("server thread")
}

/// What a client saw: messages so far, and the last one.
#[derive(Default)]
struct Seen {
    count: Cell<usize>,
    last: RefCell<String>,
}

/// Connects a client that counts what it reads.
async fn member(url: &str) -> Rc<Seen> {
    let (_, mut framed) = awc::Client::new()
        .ws(url)
        .max_frame_size(1 << 20)
        .connect()
        .await
        .unwrap_or_else(|error| panic!("connect to {url}: {error}"));
    let seen = Rc::new(Seen::default());
    let reader = Rc::clone(&seen);
    actix_web::rt::spawn(async move {
        while let Some(Ok(frame)) = framed.next().await {
            if let awc::ws::Frame::Text(text) = frame {
                reader.count.set(reader.count.get() + 1);
                *reader.last.borrow_mut() = String::from_utf8_lossy(&text).into_owned();
            }
        }
    });
    seen
}

async fn until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out: {what}");
        actix_web::rt::time::sleep(Duration::from_micros(500)).await;
    }
}

fn line(i: usize) -> String {
    format!("{i:0>128}")
}

fn history() -> History {
    History::new(5_000, Duration::from_secs(600)).render(|offset, message| {
        Message::from(format!("{offset} {}", message.as_text().unwrap_or("")))
    })
}

#[derive(Clone, Copy, PartialEq)]
enum Layout {
    Local,
    LocalHistory,
    Cluster,
    ClusterHistory,
}

impl Layout {
    fn name(self) -> &'static str {
        match self {
            Layout::Local => "Group::new",
            Layout::LocalHistory => "Group::with_history",
            Layout::Cluster => "cluster.group",
            Layout::ClusterHistory => "cluster.group_with_history",
        }
    }

    async fn open(self, cluster: &Cluster, name: &str) -> Group {
        match self {
            Layout::Local => Group::new(),
            Layout::LocalHistory => Group::with_history(history()),
            Layout::Cluster => cluster.group(name).await.expect("group"),
            Layout::ClusterHistory => cluster
                .group_with_history(name, history())
                .await
                .expect("group"),
        }
    }
}

/// Broadcasts `count` lines; for a clustered group, waits until Redis took
/// the last.
async fn say(room: &Group, from: usize, count: usize) {
    let mut last = None;
    for i in from..from + count {
        last = Some(room.broadcast(line(i)));
    }
    if room.name().is_some() {
        if let Some(report) = last {
            report.published().await.expect("published");
        }
    }
}

/// Milliseconds per broadcast to reach every one of `members`.
async fn broadcast_sample(room: Group, members: usize, broadcasts: usize) -> f64 {
    let (url, server) = start_server(room.clone());
    let mut clients = Vec::with_capacity(members);
    for _ in 0..members {
        clients.push(member(&url).await);
    }
    until("every member joined", || room.len() == members).await;
    let total = |clients: &[Rc<Seen>]| clients.iter().map(|seen| seen.count.get()).sum::<usize>();
    // Warm-up: one broadcast to everyone.
    say(&room, 0, 1).await;
    until("the warm-up", || total(&clients) == members).await;
    let start = Instant::now();
    say(&room, 1, broadcasts).await;
    until("every broadcast to every member", || {
        total(&clients) == members * (broadcasts + 1)
    })
    .await;
    let elapsed = start.elapsed();
    drop(clients);
    server.stop(false).await;
    elapsed.as_secs_f64() * 1e3 / broadcasts as f64
}

/// Starts a server for `room` with one live member that read the room's
/// first line: (url, server, the member, the offset of that line).
async fn serve_one_live_member(room: &Group) -> (String, ServerHandle, Rc<Seen>, String) {
    let (url, server) = start_server(room.clone());
    let live = member(&url).await;
    until("the live member joined", || room.len() == 1).await;
    say(room, 0, 1).await;
    until("the first line", || live.count.get() == 1).await;
    let since = live
        .last
        .borrow()
        .split_once(' ')
        .expect("OFFSET LINE")
        .0
        .to_owned();
    (url, server, live, since)
}

/// (live ms, recovery ms) for `missed` messages.
async fn recovery_sample(room: Group, missed: usize) -> (f64, f64) {
    let (url, server, live, since) = serve_one_live_member(&room).await;
    let start = Instant::now();
    say(&room, 1, missed).await;
    until("the live member read everything", || {
        live.count.get() == missed + 1
    })
    .await;
    let live_ms = start.elapsed().as_secs_f64() * 1e3;
    let start = Instant::now();
    let back = member(&format!("{url}?since={since}")).await;
    until("the replay", || back.count.get() == missed).await;
    let recovery_ms = start.elapsed().as_secs_f64() * 1e3;
    assert!(
        back.last.borrow().ends_with(&line(missed)),
        "the replay ends with the last line"
    );
    server.stop(false).await;
    (live_ms, recovery_ms)
}

/// A text line of `bytes` bytes (at least the digits of `i`).
fn sized_line(i: usize, bytes: usize) -> String {
    format!("{i:0>bytes$}")
}

/// This process's resident set now and its peak (VmRSS, VmHWM), in KiB.
fn rss_kib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find_map(|line| line.strip_prefix(name))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|kib| kib.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// (ms until every one of `herd` clients that missed the same `missed`
/// messages and came back at once has them all, this process's peak RSS
/// growth over that time in MiB).
async fn herd_sample(room: Group, herd: usize, missed: usize, bytes: usize) -> (f64, f64) {
    let (url, server, live, since) = serve_one_live_member(&room).await;
    let mut last = None;
    for i in 1..=missed {
        last = Some(room.broadcast(sized_line(i, bytes)));
    }
    if let (Some(report), Some(_)) = (last, room.name()) {
        report.published().await.expect("published");
    }
    until("the live member read everything", || {
        live.count.get() == missed + 1
    })
    .await;
    // The peak from here on (Linux: writing 5 resets VmHWM to VmRSS).
    let _ = std::fs::write("/proc/self/clear_refs", "5");
    let (before, _) = rss_kib();
    let start = Instant::now();
    let target = format!("{url}?since={since}");
    let clients = futures_util::future::join_all((0..herd).map(|_| member(&target))).await;
    // When each client had its whole replay, in ms from the start.
    let mut done_at: Vec<Option<f64>> = vec![None; herd];
    until("every replay", || {
        for (at, seen) in done_at.iter_mut().zip(&clients) {
            if at.is_none() && seen.count.get() == missed {
                *at = Some(start.elapsed().as_secs_f64() * 1e3);
            }
        }
        done_at.iter().all(Option::is_some)
    })
    .await;
    let ms = start.elapsed().as_secs_f64() * 1e3;
    let mut times: Vec<f64> = done_at.into_iter().flatten().collect();
    eprintln!(
        "  replays done: first {:.1} ms, median {:.1} ms, 90th {:.1} ms",
        times.iter().copied().fold(f64::INFINITY, f64::min),
        median(&mut times),
        times[times.len() * 9 / 10]
    );
    let (_, peak) = rss_kib();
    for seen in &clients {
        assert!(
            seen.last.borrow().ends_with(&sized_line(missed, bytes)),
            "every replay ends with the last line"
        );
    }
    drop(clients);
    server.stop(false).await;
    (ms, peak.saturating_sub(before) as f64 / 1024.0)
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn knob(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|value| value.parse().ok())
        .unwrap_or(default)
}

fn main() -> std::io::Result<()> {
    let _ = env_logger::try_init();
    let members = knob("BENCH_MEMBERS", 1_000);
    let broadcasts = knob("BENCH_BROADCASTS", 20);
    let missed = knob("BENCH_MISSED", 1_000);
    let rounds = knob("BENCH_ROUNDS", 5).max(1);
    let herd = knob("BENCH_HERD", 0);
    let herd_missed = knob("BENCH_HERD_MISSED", 100).max(1);
    let herd_bytes = knob("BENCH_HERD_BYTES", 1024).max(8);
    let (_redis, url) = redis_server::start()?;
    actix_web::rt::System::new().block_on(async move {
        let cluster = Cluster::connect(&url).await.map_err(std::io::Error::other)?;
        let layouts = [
            Layout::Local,
            Layout::LocalHistory,
            Layout::Cluster,
            Layout::ClusterHistory,
        ];
        let mut per_broadcast: Vec<Vec<f64>> = vec![Vec::new(); layouts.len()];
        let mut recovery: Vec<(Vec<f64>, Vec<f64>, Vec<f64>)> =
            vec![(Vec::new(), Vec::new(), Vec::new()); 2];
        let mut herds: Vec<(Vec<f64>, Vec<f64>)> = vec![(Vec::new(), Vec::new()); 2];
        for round in 0..rounds {
            for (index, layout) in layouts.iter().enumerate() {
                let name = format!("bench-{round}-{index}");
                let room = layout.open(&cluster, &name).await;
                let ms = broadcast_sample(room, members, broadcasts).await;
                eprintln!(
                    "round {}: {} to {members} members: {ms:.3} ms per broadcast",
                    round + 1,
                    layout.name()
                );
                per_broadcast[index].push(ms);
            }
            for (index, layout) in [Layout::LocalHistory, Layout::ClusterHistory]
                .iter()
                .enumerate()
            {
                let name = format!("recovery-{round}-{index}");
                let room = layout.open(&cluster, &name).await;
                let (live, recovered) = recovery_sample(room, missed).await;
                eprintln!(
                    "round {}: {}: {missed} live in {live:.1} ms, recovered in {recovered:.1} ms",
                    round + 1,
                    layout.name()
                );
                let (lives, recoveries, ratios) = &mut recovery[index];
                lives.push(live);
                recoveries.push(recovered);
                ratios.push(recovered / live);
            }
            if herd == 0 {
                continue;
            }
            for (index, layout) in [Layout::LocalHistory, Layout::ClusterHistory]
                .iter()
                .enumerate()
            {
                let name = format!("herd-{round}-{index}");
                let room = layout.open(&cluster, &name).await;
                let (ms, peak_mib) = herd_sample(room, herd, herd_missed, herd_bytes).await;
                eprintln!(
                    "round {}: {}: {herd} clients back at once, {herd_missed} × {herd_bytes} B each, all replayed in {ms:.1} ms, peak RSS +{peak_mib:.1} MiB",
                    round + 1,
                    layout.name()
                );
                herds[index].0.push(ms);
                herds[index].1.push(peak_mib);
            }
        }
        println!(
            "Broadcast of a 128-byte line to {members} members ({broadcasts} back to back, ms per broadcast, median of {rounds} rounds):"
        );
        println!();
        println!("| group | history off | history on | on/off (median of per-round ratios) |");
        println!("|---|---|---|---|");
        for (off, on, label) in [(0, 1, "one process"), (2, 3, "clustered, one node")] {
            let mut ratios: Vec<f64> = per_broadcast[on]
                .iter()
                .zip(&per_broadcast[off])
                .map(|(on, off)| on / off)
                .collect();
            println!(
                "| {label} | {:.3} | {:.3} | {:.3} |",
                median(&mut per_broadcast[off].clone()),
                median(&mut per_broadcast[on].clone()),
                median(&mut ratios)
            );
        }
        println!();
        println!("Recovery of {missed} missed messages against the same messages live (ms, median of {rounds} rounds):");
        println!();
        println!("| group | live | recovered on reconnect | recovered/live (median of per-round ratios) |");
        println!("|---|---|---|---|");
        for (index, label) in ["Group::with_history", "cluster.group_with_history"]
            .iter()
            .enumerate()
        {
            let (lives, recoveries, ratios) = &mut recovery[index];
            println!(
                "| {label} | {:.1} | {:.1} | {:.3} |",
                median(lives),
                median(recoveries),
                median(ratios)
            );
        }
        if herd > 0 {
            println!();
            println!(
                "{herd} clients that missed the same {herd_missed} messages of {herd_bytes} bytes come back at once (median of {rounds} rounds):"
            );
            println!();
            println!("| group | all replayed (ms) | peak RSS growth of the process (MiB) |");
            println!("|---|---|---|");
            for (index, label) in ["Group::with_history", "cluster.group_with_history"]
                .iter()
                .enumerate()
            {
                let (times, peaks) = &mut herds[index];
                println!(
                    "| {label} | {:.1} | {:.1} |",
                    median(times),
                    median(peaks)
                );
            }
        }
        Ok(())
    })
}
