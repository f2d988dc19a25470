//! Scale run: `CONNECTIONS` WebSocket connections held by `NODES` server
//! processes that share one port with `SO_REUSEPORT` and one cluster group
//! over Redis, opened by client processes from several loopback source
//! addresses; one echo each after the hold, then one broadcast to all.
//!
//! Run it through `scripts/scale.sh`, which starts Redis and passes
//! `REDIS_URL`. This binary is the driver; it re-executes itself as every
//! node (`SCALE_ROLE=node`) and client (`SCALE_ROLE=client`), talks to them
//! over their stdin/stdout, and kills them by PID when it ends (and they
//! die with it if it is killed).
//!
//! Knobs (environment): `PORT` (the shared port; default a free one),
//! `CONNECTIONS` (100000), `HOLD_S` (15), `NODES` (default: enough for
//! `CONNECTIONS` under the per-process descriptor limit), `CLIENTS`
//! (default: enough for the same limit and for ~28,000 source ports per
//! source address), `PARALLEL` (handshakes in flight per client, 64).
//!
//! Last line: `connections=N held=H nodes=K kib_per_conn=X broadcast_ms=Y
//! delivered=D handshakes_per_s=Z`, where `held` is the most server-side
//! established sockets on `PORT` counted during the hold (`ss`),
//! `kib_per_conn` the nodes' RSS growth over the connections, and
//! `broadcast_ms` the time from sending the broadcast command to the last
//! delivery any client saw (wall clock, one machine). Exit status 1 when a
//! handshake, an echo or a delivery fails or anything is short.

#[path = "load/child.rs"]
mod child;
#[allow(dead_code)]
#[path = "load/client.rs"]
mod client;
#[allow(dead_code)]
#[path = "load/server.rs"]
mod server;
#[allow(dead_code)]
#[path = "load/sys.rs"]
mod sys;

use std::{
    io::{self, BufRead, BufReader, Write as _},
    net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener},
    process::Command,
    rc::Rc,
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use actix_web::{web, App, HttpServer, Responder};
use actix_ws_listener::{
    reuse_port_listener, CloseCode, Cluster, Config, Group, Listener, Message, Socket,
    WebSocketUpgrade, WsServer,
};
use child::Child;

/// Descriptors a process keeps for everything but its connections.
const FD_SPARE: usize = 1_000;
/// Connections one client process opens from one source address at most:
/// the ephemeral port range is 28,232 ports here, shared with the system.
const PER_SOURCE: usize = 25_000;
/// How long a client waits for the broadcast before it reports a shortfall.
const DELIVERY_WAIT: Duration = Duration::from_secs(30);

fn err(message: impl Into<String>) -> io::Error {
    io::Error::other(message.into())
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn num(name: &str, default: usize) -> io::Result<usize> {
    match var(name) {
        None => Ok(default),
        Some(v) => v
            .parse()
            .map_err(|_| err(format!("{name}={v:?} is not a number"))),
    }
}

fn unix_ns() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos())
}

// ---------------------------------------------------------------- node

/// A node's listener: joins the group; `broadcast` broadcasts the 128-byte
/// payload through the cluster group; anything else is echoed.
struct Member(Group);

impl Listener for Member {
    fn on_open(&mut self, socket: &Socket) {
        self.0.insert(socket);
    }

    fn on_message(&mut self, socket: &Socket, message: Message) {
        if message.as_text() == Some(server::BROADCAST_COMMAND) {
            self.0
                .broadcast(Message::binary(&server::BROADCAST_PAYLOAD[..]));
        } else if let Err(error) = socket.send(message) {
            log::debug!("echo not sent: {error}");
        }
    }

    fn on_close(&mut self, socket: &Socket, _: CloseCode, _: &str) {
        self.0.remove(socket);
    }
}

async fn ws(upgrade: WebSocketUpgrade, room: web::Data<Group>) -> impl Responder {
    upgrade.listen(Member(room.get_ref().clone()))
}

/// One actix worker on `127.0.0.1:PORT` (shared), group `scale` through
/// `REDIS_URL`; prints `READY` once it listens and has joined.
fn run_node() -> io::Result<()> {
    sys::die_with_parent();
    sys::raise_nofile(sys::NOFILE_WANTED);
    let port: u16 = num("PORT", 0)?
        .try_into()
        .map_err(|_| err("PORT out of range"))?;
    let url = var("REDIS_URL").ok_or_else(|| err("REDIS_URL is not set"))?;
    actix_web::rt::System::new().block_on(async move {
        let cluster = Cluster::connect(&url).await.map_err(io::Error::other)?;
        let room = web::Data::new(cluster.group("scale").await.map_err(io::Error::other)?);
        let config = Config::default();
        let listener = reuse_port_listener(SocketAddr::from(([127, 0, 0, 1], port)), 4096)?;
        let app = move || {
            App::new()
                .app_data(room.clone())
                .app_data(config.clone())
                .route("/", web::get().to(ws))
        };
        // WsServer unless SCALE_SERVER=http: the same app on HttpServer,
        // for comparison.
        let server = if var("SCALE_SERVER").as_deref() == Some("http") {
            HttpServer::new(app)
                .workers(1)
                .max_connections(1 << 20)
                .disable_signals()
                .listen(listener)?
                .run()
        } else {
            WsServer::new(app)
                .workers(1)
                .max_connections(1 << 20)
                .disable_signals()
                .listen(listener)?
                .run()
        };
        say("READY");
        server.await
    })
}

fn say(line: &str) {
    let mut out = io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---------------------------------------------------------------- client

/// Opens `COUNT` connections from `SOURCE` to `127.0.0.1:PORT`, then obeys
/// its stdin: `ECHO` (one 16-byte echo on each), `LISTEN` (wait for one
/// broadcast on each). Answers `CONNECTED n ms`, `ECHOED n`, `LISTENING`,
/// `DELIVERED n last_unix_ns`; on any failure `ERROR …` and exit status 1.
fn run_client() -> io::Result<()> {
    sys::die_with_parent();
    sys::raise_nofile(sys::NOFILE_WANTED);
    let count = num("COUNT", 0)?;
    let parallel = num("PARALLEL", 64)?.max(1);
    let port: u16 = num("PORT", 0)?
        .try_into()
        .map_err(|_| err("PORT out of range"))?;
    let source: Ipv4Addr = var("SOURCE")
        .unwrap_or_else(|| "127.0.0.1".to_owned())
        .parse()
        .map_err(|_| err("SOURCE is not an IPv4 address"))?;
    let seed = num("SEED", 1)? as u64;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let outcome = local.block_on(&runtime, async move {
        let server = SocketAddr::from(([127, 0, 0, 1], port));
        let from = SocketAddr::new(IpAddr::V4(source), 0);
        let started = Instant::now();
        let mut conns = open(server, from, count, parallel, seed).await?;
        say(&format!(
            "CONNECTED {} {}",
            conns.len(),
            started.elapsed().as_millis()
        ));
        let mut stdin = BufReader::new(io::stdin()).lines();
        let mut command = || -> io::Result<String> {
            stdin
                .next()
                .transpose()?
                .ok_or_else(|| err("driver went away"))
        };
        if command()? != "ECHO" {
            return Err(err("expected ECHO"));
        }
        conns = each(conns, |mut conn| async move {
            conn.echo_once(true, b"still-here-after").await?;
            conn.shrink();
            Ok(conn)
        })
        .await?;
        say(&format!("ECHOED {}", conns.len()));
        if command()? != "LISTEN" {
            return Err(err("expected LISTEN"));
        }
        let last = Rc::new(std::cell::Cell::new(0u128));
        let readers: Vec<_> = conns
            .into_iter()
            .map(|mut conn| {
                let last = last.clone();
                tokio::task::spawn_local(async move {
                    conn.recv_broadcast().await?;
                    last.set(last.get().max(unix_ns()));
                    Ok::<_, io::Error>(conn)
                })
            })
            .collect();
        say("LISTENING");
        let deadline = tokio::time::Instant::now() + DELIVERY_WAIT;
        let (mut delivered, mut failed) = (0usize, None);
        let mut kept = Vec::new();
        for reader in readers {
            match tokio::time::timeout_at(deadline, reader).await {
                Ok(Ok(Ok(conn))) => {
                    delivered += 1;
                    kept.push(conn);
                }
                Ok(Ok(Err(e))) => failed = Some(e.to_string()),
                Ok(Err(e)) => failed = Some(e.to_string()),
                Err(_) => failed = Some("no broadcast within 30 s".to_owned()),
            }
        }
        say(&format!("DELIVERED {delivered} {}", last.get()));
        if let Some(why) = failed {
            eprintln!("client {source}: {why}");
        }
        // Hold the connections until the driver says the run is over.
        let _ = command();
        drop(kept);
        Ok(())
    });
    if let Err(e) = &outcome {
        say(&format!("ERROR {e}"));
        std::process::exit(1);
    }
    outcome
}

/// `count` upgraded connections from `from`, `parallel` handshakes at a
/// time; the first failure ends them all.
async fn open(
    server: SocketAddr,
    from: SocketAddr,
    count: usize,
    parallel: usize,
    seed: u64,
) -> io::Result<Vec<client::Conn>> {
    let next = Rc::new(std::cell::Cell::new(0usize));
    let mut workers = Vec::new();
    for _ in 0..parallel.min(count) {
        let next = next.clone();
        workers.push(tokio::task::spawn_local(async move {
            let mut mine = Vec::new();
            loop {
                let i = next.get();
                if i >= count {
                    return Ok::<_, io::Error>(mine);
                }
                next.set(i + 1);
                // An explicit source port: binding port 0 on a given address
                // makes the kernel search its bind table for a free port each
                // time, which grows with every connection held.
                let mut tries = 0;
                let mut conn = loop {
                    let port = 10_000 + (i + tries * count) % 50_000;
                    let local = SocketAddr::new(from.ip(), port as u16);
                    match client::connect(server, Some(local), "/", seed + i as u64, false).await {
                        Err(e) if e.kind() == io::ErrorKind::AddrInUse && tries < 3 => tries += 1,
                        other => {
                            break other
                                .map_err(|e| err(format!("handshake {i} from {local}: {e}")))?
                        }
                    }
                };
                conn.shrink();
                mine.push(conn);
            }
        }));
    }
    let mut conns = Vec::with_capacity(count);
    for worker in workers {
        conns.extend(worker.await.map_err(|e| err(e.to_string()))??);
    }
    Ok(conns)
}

/// Runs `step` on every connection at once and gives them back.
async fn each<F, Fut>(conns: Vec<client::Conn>, step: F) -> io::Result<Vec<client::Conn>>
where
    F: Fn(client::Conn) -> Fut,
    Fut: std::future::Future<Output = io::Result<client::Conn>> + 'static,
{
    let tasks: Vec<_> = conns
        .into_iter()
        .map(|conn| tokio::task::spawn_local(step(conn)))
        .collect();
    let mut back = Vec::with_capacity(tasks.len());
    for task in tasks {
        back.push(task.await.map_err(|e| err(e.to_string()))??);
    }
    Ok(back)
}

// ---------------------------------------------------------------- driver

/// Server-side established TCP sockets on `port` (`ss`, as the check does).
fn established(port: u16) -> io::Result<usize> {
    let out = Command::new("ss")
        .args(["-Htn", "state", "established"])
        .arg(format!("( sport = :{port} )"))
        .output()?;
    if !out.status.success() {
        return Err(err("ss failed"));
    }
    Ok(out
        .stdout
        .split(|b| *b == b'\n')
        .filter(|l| !l.is_empty())
        .count())
}

fn hard_nofile() -> usize {
    let out = Command::new("sh").args(["-c", "ulimit -Hn"]).output();
    out.ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(1024)
}

fn first_field(words: &[String], what: &str) -> io::Result<u128> {
    words
        .first()
        .and_then(|w| w.parse().ok())
        .ok_or_else(|| err(format!("bad {what} report {words:?}")))
}

fn drive() -> io::Result<bool> {
    let url = var("REDIS_URL").ok_or_else(|| err("REDIS_URL is not set (run scripts/scale.sh)"))?;
    let connections = num("CONNECTIONS", 100_000)?;
    let hold = Duration::from_secs(num("HOLD_S", 15)? as u64);
    let per_process = hard_nofile().saturating_sub(FD_SPARE).max(100);
    // SO_REUSEPORT hashes connections over the nodes: leave them 15 % room.
    let nodes = num(
        "NODES",
        (connections * 115 / 100).div_ceil(per_process).max(1),
    )?;
    let clients = num(
        "CLIENTS",
        connections.div_ceil(per_process.min(PER_SOURCE)).max(1),
    )?;
    if clients > 250 {
        return Err(err("more than 250 client processes (source addresses)"));
    }
    let port = match num("PORT", 0)? {
        0 => TcpListener::bind("127.0.0.1:0")?.local_addr()?.port(),
        p => u16::try_from(p).map_err(|_| err("PORT out of range"))?,
    };
    eprintln!(
        "scale: {connections} connections, {nodes} nodes on 127.0.0.1:{port}, {clients} clients, \
         descriptor limit {} per process",
        per_process + FD_SPARE
    );

    let mut node_procs = Vec::new();
    for k in 0..nodes {
        let node = Child::spawn(
            format!("node {k}"),
            &[
                ("SCALE_ROLE", "node".to_owned()),
                ("PORT", port.to_string()),
                ("REDIS_URL", url.clone()),
            ],
        )?;
        node.expect("READY", Duration::from_secs(60))?;
        node_procs.push(node);
    }
    let rss_before: u64 = node_procs.iter().map(|n| sys::rss_kib(n.pid())).sum();

    let started = Instant::now();
    let mut client_procs = Vec::new();
    for k in 0..clients {
        let count = connections / clients + usize::from(k < connections % clients);
        client_procs.push(Child::spawn(
            format!("client {k}"),
            &[
                ("SCALE_ROLE", "client".to_owned()),
                ("PORT", port.to_string()),
                ("COUNT", count.to_string()),
                (
                    "SOURCE",
                    format!("127.0.{}.{}", (k + 2) / 250, 2 + (k % 250)),
                ),
                ("SEED", (k as u64 * 1_000_003 + 1).to_string()),
                ("PARALLEL", num("PARALLEL", 64)?.to_string()),
            ],
        )?);
    }
    let mut opened = 0u128;
    for client in &client_procs {
        opened += first_field(
            &client.expect("CONNECTED", Duration::from_secs(600))?,
            "CONNECTED",
        )?;
    }
    let connect_s = started.elapsed().as_secs_f64();
    let handshakes_per_s = opened as f64 / connect_s;
    eprintln!(
        "scale: {opened} connected in {connect_s:.1} s; holding {} s",
        hold.as_secs()
    );

    // Count during the hold: at its start, middle and end.
    let mut held = 0;
    let mut rss_held = 0;
    for step in 0..3 {
        held = held.max(established(port)?);
        rss_held = rss_held.max(node_procs.iter().map(|n| sys::rss_kib(n.pid())).sum());
        if step < 2 {
            std::thread::sleep(hold / 2);
        }
    }
    let kib_per_conn = rss_held.saturating_sub(rss_before) as f64 / opened.max(1) as f64;
    let per_node: Vec<String> = node_procs
        .iter()
        .map(|n| format!("{} KiB", sys::rss_kib(n.pid())))
        .collect();
    eprintln!("scale: held {held}; node RSS {}", per_node.join(", "));

    let mut echoed = 0u128;
    for client in &mut client_procs {
        client.tell("ECHO")?;
    }
    for client in &client_procs {
        echoed += first_field(
            &client.expect("ECHOED", Duration::from_secs(600))?,
            "ECHOED",
        )?;
    }

    // The trigger: one more connection (a member too), on whichever node
    // the kernel gives it.
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let server = SocketAddr::from(([127, 0, 0, 1], port));
    let mut trigger = local.block_on(&runtime, client::connect(server, None, "/", 7, false))?;
    for client in &mut client_procs {
        client.tell("LISTEN")?;
    }
    for client in &client_procs {
        client.expect("LISTENING", Duration::from_secs(60))?;
    }
    std::thread::sleep(Duration::from_millis(200));
    let published = unix_ns();
    local.block_on(&runtime, trigger.send_text(server::BROADCAST_COMMAND))?;
    let (mut delivered, mut last) = (0u128, 0u128);
    for client in &client_procs {
        let words = client.expect("DELIVERED", DELIVERY_WAIT + Duration::from_secs(30))?;
        delivered += first_field(&words, "DELIVERED")?;
        last = last.max(first_field(&words[1..], "DELIVERED")?);
    }
    let broadcast_ms = last.saturating_sub(published) as f64 / 1e6;
    for client in &mut client_procs {
        let _ = client.tell("DONE");
    }

    let ok = opened == connections as u128
        && echoed == opened
        && delivered == opened
        && held >= connections;
    if !ok {
        eprintln!(
            "scale: SHORT: opened {opened}, echoed {echoed}, delivered {delivered}, held {held} \
             of {connections}"
        );
    }
    println!(
        "connections={opened} held={held} nodes={nodes} kib_per_conn={kib_per_conn:.2} \
         broadcast_ms={broadcast_ms:.1} delivered={delivered} handshakes_per_s={handshakes_per_s:.0}"
    );
    Ok(ok)
}

fn main() -> io::Result<()> {
    match var("SCALE_ROLE").as_deref() {
        Some("node") => run_node(),
        Some("client") => run_client(),
        Some(other) => Err(err(format!("unknown SCALE_ROLE {other:?}"))),
        None => match drive() {
            Ok(true) => Ok(()),
            Ok(false) => std::process::exit(1),
            Err(e) => {
                eprintln!("scale: FAILED: {e}");
                std::process::exit(1);
            }
        },
    }
}
