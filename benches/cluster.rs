//! Cluster bench: time for one broadcast of a `Group` to reach N
//! sockets when all N are on one node, against N split over two nodes
//! (N/2 each) that share the group through Redis.
//!
//! Run:    cargo bench --bench cluster --features redis
//! Knobs:  BENCH_SIZES=1000,10000 (sockets), BENCH_ROUNDS=5 (pairs of
//!         samples), BENCH_BROADCASTS=5 (timed broadcasts per sample, after
//!         one warm-up)
//! Needs:  redis-server on PATH (scripts/test.sh installs it); the bench
//!         starts its own on a free port and kills it at the end.
//!
//! Each node is a child process (this binary re-executed with
//! CLUSTER_BENCH_ROLE=node) running one actix worker; the client (the load
//! bench's RFC 6455 client, benches/load/client.rs) runs here on one tokio
//! thread. One client socket on node 1 sends `broadcast`; node 1 calls
//! `Group::broadcast` with 128 bytes: its own members get it
//! directly, node 2's through one PUBLISH. The time is from sending the
//! command until the last of the N sockets has the payload. Both layouts go
//! through the same Redis (a one-node group publishes too), so the ratio
//! shows what splitting the members over two processes costs or saves.

#[allow(dead_code)]
#[path = "load/client.rs"]
mod client;
#[path = "common/redis.rs"]
mod redis_server;
#[allow(dead_code)]
#[path = "load/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "load/sys.rs"]
mod sys;

use std::{
    io::{BufRead, BufReader},
    net::SocketAddr,
    process::{Child, Command, Stdio},
};

use actix_web::{web, App, HttpServer, Responder};
use actix_ws_listener::{
    CloseCode, Cluster, Config, Group, Listener, Message, Socket, WebSocketUpgrade,
};

/// A node's listener: joins the group; `broadcast` broadcasts the payload,
/// anything else is echoed (the client's connect step echoes once).
struct Member(Group);

impl Listener for Member {
    fn on_open(&mut self, socket: &Socket) {
        self.0.insert(socket);
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if message.as_text() == Some(server::BROADCAST_COMMAND) {
            self.0
                .broadcast(Message::binary(&server::BROADCAST_PAYLOAD[..]));
        } else {
            let _ = socket.send(message);
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.0.remove(socket);
    }
}

async fn ws(upgrade: WebSocketUpgrade, room: web::Data<Group>) -> impl Responder {
    upgrade.listen(Member(room.get_ref().clone()))
}

/// The node role: joins group `bench` through REDIS_URL, prints `PORT n`.
fn run_node() -> std::io::Result<()> {
    sys::die_with_parent();
    sys::raise_nofile(65_536);
    actix_web::rt::System::new().block_on(async {
        let url = std::env::var("REDIS_URL").map_err(std::io::Error::other)?;
        let cluster = Cluster::connect(&url)
            .await
            .map_err(std::io::Error::other)?;
        let room = web::Data::new(
            cluster
                .group("bench")
                .await
                .map_err(std::io::Error::other)?,
        );
        let config = Config::default();
        let server = HttpServer::new(move || {
            App::new()
                .app_data(room.clone())
                .app_data(config.clone())
                .route("/broadcast", web::get().to(ws))
        })
        .workers(1)
        .backlog(4096)
        .disable_signals()
        .bind("127.0.0.1:0")?;
        println!("PORT {}", server.addrs()[0].port());
        server.run().await
    })
}

/// A node's child process; killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn start_node(redis_url: &str) -> std::io::Result<(Process, SocketAddr)> {
    let mut child = Command::new(std::env::current_exe()?)
        .env("CLUSTER_BENCH_ROLE", "node")
        .env("REDIS_URL", redis_url)
        .stdout(Stdio::piped())
        .spawn()?;
    let mut line = String::new();
    if let Some(stdout) = child.stdout.as_mut() {
        BufReader::new(stdout).read_line(&mut line)?;
    }
    let process = Process(child);
    let port = line
        .trim()
        .strip_prefix("PORT ")
        .and_then(|p| p.parse::<u16>().ok())
        .ok_or_else(|| std::io::Error::other(format!("node said {line:?}")))?;
    Ok((process, SocketAddr::from(([127, 0, 0, 1], port))))
}

/// Median time to the last socket, in ms, with `sizes[i]` sockets on node i.
async fn sample(redis_url: &str, sizes: &[usize], broadcasts: usize) -> std::io::Result<f64> {
    let mut nodes = Vec::new();
    let mut conns = Vec::new();
    for &n in sizes {
        let (node, addr) = start_node(redis_url)?;
        conns.extend(client::connect_many(addr, "/broadcast", n, 128, false).await?);
        nodes.push(node);
    }
    let pid = nodes[0].0.id();
    let outcome = client::broadcast_load(conns, pid, 1, broadcasts).await?;
    let mut ms: Vec<f64> = outcome
        .times
        .iter()
        .map(|t| t.as_secs_f64() * 1e3)
        .collect();
    ms.sort_by(f64::total_cmp);
    Ok(ms[ms.len() / 2])
}

fn median(values: &mut [f64]) -> f64 {
    values.sort_by(f64::total_cmp);
    values[values.len() / 2]
}

fn main() -> std::io::Result<()> {
    if std::env::var("CLUSTER_BENCH_ROLE").as_deref() == Ok("node") {
        return run_node();
    }
    let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
    let sizes: Vec<usize> = var("BENCH_SIZES")
        .unwrap_or_else(|| "1000,10000".to_owned())
        .split(',')
        .filter_map(|s| s.trim().parse().ok())
        .collect();
    let rounds: usize = var("BENCH_ROUNDS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    let broadcasts: usize = var("BENCH_BROADCASTS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(5);
    sys::raise_nofile(65_536);
    let (_redis, url) = redis_server::start()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    println!("| sockets | all on one node | split over two nodes | two/one (median of per-round ratios) |");
    println!("|---|---|---|---|");
    for &n in &sizes {
        let (mut one, mut two, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
        for round in 0..rounds {
            let a = local.block_on(&runtime, sample(&url, &[n], broadcasts))?;
            let b = local.block_on(&runtime, sample(&url, &[n / 2, n - n / 2], broadcasts))?;
            eprintln!(
                "{n} sockets, round {}: one node {a:.2} ms, two nodes {b:.2} ms",
                round + 1
            );
            one.push(a);
            two.push(b);
            ratios.push(b / a);
        }
        println!(
            "| {n} | {:.2} ms | {:.2} ms | {:.3} |",
            median(&mut one),
            median(&mut two),
            median(&mut ratios)
        );
    }
    Ok(())
}
