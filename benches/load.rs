//! Load bench: this crate (A, and A2 on its async path) against the
//! actix-web-actors baseline, actix-ws, tokio-tungstenite, fastwebsockets
//! and a raw TCP echo, side by side, in one run.
//!
//! Run:    cargo bench --bench load
//! Quick:  BENCH_QUICK=1 cargo bench --bench load        (smoke run, ~20 s)
//! Knobs:  BENCH_SECS=3 (per measurement), BENCH_ROUNDS=5, BENCH_IDLE=10000,
//!         BENCH_SERVERS=A,W,A2,B,C,T,F,R,X, BENCH_WORKLOADS=1,2,3,4,5,6,
//!         BENCH_QUIET_WAIT=20 (s to wait for other programs to leave the
//!         cores before each sample; 0 in quick mode), BENCH_RETRIES=2
//!         (samples taken again when other work took >10% of a core),
//!         BENCH_SPARE=180 (s that waiting and retries may add in all)
//! Scale:  BENCH_SCALE=100000 cargo bench --bench load   (A only: n idle
//!         connections from 127.0.0.2 and up, RSS per connection, handshake
//!         rate, one Group broadcast to all; target/bench/scale.md)
//! Output: a table on stdout, target/bench/load.md and target/bench/load.svg.
//!
//! Each server runs in a child process (this binary re-executed with
//! LOAD_BENCH_ROLE=A|W|A2|B|C|T|F|R|X) with one actix worker (one tokio thread
//! for T, F and R), pinned to core 1; the load client runs here on one
//! thread pinned to core 0. Servers alternate A A2 B C T F R, A A2 B C T F
//! R, … for every workload, a fresh process each time, and the report shows
//! medians. Server CPU time comes from the kernel's
//! per-process CPU clock of the child (the same count as utime + stime in
//! /proc/<pid>/stat, at nanosecond resolution).
//!
//! To profile one server under load: LOAD_BENCH_ROLE=A <bench binary> prints
//! `PORT <n>`; then BENCH_ATTACH=127.0.0.1:<n> BENCH_ATTACH_PID=<pid>
//! BENCH_WORKLOADS=1 <bench binary> runs the client against it.

#[path = "load/child.rs"]
mod child;
#[path = "load/client.rs"]
mod client;
#[path = "load/report.rs"]
mod report;
#[path = "load/server.rs"]
mod server;
#[path = "load/sys.rs"]
mod sys;

use std::{
    cell::Cell,
    net::SocketAddr,
    path::PathBuf,
    time::{Duration, Instant},
};

use client::EchoSpec;
use report::{Role, Sample, WorkloadResult};

struct Settings {
    secs: Duration,
    warmup: Duration,
    rounds: usize,
    idle: usize,
    broadcast_rounds: usize,
    servers: Vec<Role>,
    workloads: Vec<u8>,
    attach: Option<(SocketAddr, u32)>,
    quiet_wait: Duration,
    retries: usize,
    /// Time left for waiting on a busy machine and for retries, in all.
    spare: Cell<Duration>,
}

impl Settings {
    fn from_env() -> Settings {
        let var = |name: &str| std::env::var(name).ok().filter(|v| !v.is_empty());
        let quick = var("BENCH_QUICK").is_some_and(|v| v != "0");
        let secs = var("BENCH_SECS")
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(if quick { 0.5 } else { 3.0 });
        let num = |name: &str, normal: usize, fast: usize| {
            var(name)
                .and_then(|v| v.parse().ok())
                .unwrap_or(if quick { fast } else { normal })
        };
        let servers = var("BENCH_SERVERS")
            .unwrap_or_else(|| "A,W,A2,B,C,T,F,R,X".to_owned())
            .split(',')
            .filter_map(|s| report::role(s.trim()))
            .collect();
        let workloads = var("BENCH_WORKLOADS")
            .unwrap_or_else(|| "1,2,3,4,5,6".to_owned())
            .split(',')
            .filter_map(|s| s.trim().parse().ok())
            .collect();
        let attach = var("BENCH_ATTACH")
            .and_then(|a| a.parse().ok())
            .map(|addr| {
                let pid = var("BENCH_ATTACH_PID")
                    .and_then(|p| p.parse().ok())
                    .unwrap_or(0);
                (addr, pid)
            });
        Settings {
            secs: Duration::from_secs_f64(secs),
            warmup: Duration::from_secs_f64(if quick { 0.2 } else { 1.0 }),
            rounds: num("BENCH_ROUNDS", 5, 1),
            idle: num("BENCH_IDLE", 10_000, 1_000),
            broadcast_rounds: num("BENCH_BROADCASTS", 5, 2),
            servers,
            workloads,
            attach,
            quiet_wait: Duration::from_secs(num("BENCH_QUIET_WAIT", 20, 0) as u64),
            retries: num("BENCH_RETRIES", 2, 0),
            spare: Cell::new(Duration::from_secs(num("BENCH_SPARE", 180, 0) as u64)),
        }
    }
}

/// A server child process; killed when dropped.
struct ServerProcess {
    child: child::Child,
    addr: SocketAddr,
}

impl ServerProcess {
    fn spawn(role: Role) -> std::io::Result<ServerProcess> {
        let child = child::Child::spawn(
            format!("server {role}"),
            &[("LOAD_BENCH_ROLE", role.to_owned())],
        )?;
        let words = child.expect("PORT", Duration::from_secs(60))?;
        let port = words
            .first()
            .and_then(|p| p.parse::<u16>().ok())
            .ok_or_else(|| std::io::Error::other(format!("server {role} said PORT {words:?}")))?;
        Ok(ServerProcess {
            child,
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
        })
    }

    fn pid(&self) -> u32 {
        self.child.pid()
    }
}

/// Messages a second, all connections together, that workload 6 sends:
/// well under what W, A and B echo flat out on one core (1.5 to 2.5
/// million 128 B messages a second here), so that each serves all of it.
const OPEN_LOOP_RATE: f64 = 500_000.0;

fn echo_spec(id: u8) -> EchoSpec {
    match id {
        1 => EchoSpec {
            conns: 64,
            inflight: 1,
            size: 16,
            text: true,
            latency: true,
            rate: None,
        },
        2 => EchoSpec {
            conns: 64,
            inflight: 32,
            size: 128,
            text: false,
            latency: false,
            rate: None,
        },
        6 => EchoSpec {
            conns: 64,
            inflight: 256,
            size: 128,
            text: false,
            latency: true,
            rate: Some(OPEN_LOOP_RATE / 64.0),
        },
        _ => EchoSpec {
            conns: 4,
            inflight: 4,
            size: 64 << 10,
            text: false,
            latency: false,
            rate: None,
        },
    }
}

fn title(id: u8, settings: &Settings) -> String {
    match id {
        1 => "64 conns × 1 in flight, 16 B text".to_owned(),
        2 => "64 conns × 32 in flight, 128 B binary".to_owned(),
        3 => "4 conns × 4 in flight, 64 KiB binary".to_owned(),
        4 => format!("{} idle conns", settings.idle),
        6 => format!(
            "64 conns, 128 B binary at a fixed {} msg/s in all (open loop)",
            OPEN_LOOP_RATE
        ),
        _ => format!("broadcast 128 B to {} conns", settings.idle),
    }
}

fn percentile(sorted: &[u64], p: f64) -> Option<f64> {
    if sorted.is_empty() {
        return None;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    Some(sorted[i] as f64 / 1000.0)
}

async fn measure_echo(
    id: u8,
    addr: SocketAddr,
    pid: u32,
    raw: bool,
    settings: &Settings,
) -> std::io::Result<Sample> {
    let spec = echo_spec(id);
    let out = client::echo_load(addr, spec, raw, pid, settings.warmup, settings.secs).await?;
    if settings.attach.is_some() {
        println!("  {} messages echoed in all", out.total);
    }
    let secs = out.elapsed.as_secs_f64();
    let mut latencies = out.latencies;
    latencies.sort_unstable();
    let msgs = out.msgs.max(1) as f64;
    let rate = if id == 3 {
        out.msgs as f64 * spec.size as f64 / secs / 1e6
    } else {
        out.msgs as f64 / secs
    };
    Ok(Sample {
        rate,
        cpu_us: out.server_cpu.as_secs_f64() * 1e6 / msgs,
        server_util: Some(out.server_cpu.as_secs_f64() / secs),
        client_util: Some(out.client_cpu.as_secs_f64() / secs),
        other_util: Some(out.other_cpu.as_secs_f64() / secs),
        steal_util: Some(out.steal.as_secs_f64() / secs),
        p50_us: percentile(&latencies, 0.50),
        p99_us: percentile(&latencies, 0.99),
        ..Sample::default()
    })
}

/// Opens `n` connections to `path` and measures what they cost the server:
/// RSS (after minus before, per connection), handshakes/s, CPU per
/// handshake. The server is warmed up first (lazy statics, first buffers).
async fn connect_measured(
    addr: SocketAddr,
    pid: u32,
    path: &str,
    n: usize,
) -> std::io::Result<(Vec<client::Conn>, Sample)> {
    drop(client::connect_many(addr, "/", 64, 16, false).await?);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let rss0 = sys::rss_kib(pid);
    let cpu0 = sys::cpu_time(pid);
    let t0 = Instant::now();
    let conns = client::connect_many(addr, path, n, 128, false).await?;
    let elapsed = t0.elapsed();
    let cpu = sys::cpu_time(pid).saturating_sub(cpu0);
    tokio::time::sleep(Duration::from_millis(500)).await;
    let rss1 = sys::rss_kib(pid);
    let n = n as f64;
    let sample = Sample {
        rate: n / elapsed.as_secs_f64(),
        cpu_us: cpu.as_secs_f64() * 1e6 / n,
        mem_kib: Some(rss1.saturating_sub(rss0) as f64 / n),
        ..Sample::default()
    };
    Ok((conns, sample))
}

async fn measure_idle(addr: SocketAddr, pid: u32, settings: &Settings) -> std::io::Result<Sample> {
    let (conns, sample) = connect_measured(addr, pid, "/", settings.idle).await?;
    drop(conns);
    Ok(sample)
}

async fn measure_broadcast(
    addr: SocketAddr,
    pid: u32,
    settings: &Settings,
) -> std::io::Result<Sample> {
    let conns = client::connect_many(addr, "/broadcast", settings.idle, 128, false).await?;
    broadcast_sample(conns, pid, settings).await
}

/// Broadcasts on `conns` (after one warm-up) and keeps the median time to
/// the last client and the server's CPU per delivery.
async fn broadcast_sample(
    conns: Vec<client::Conn>,
    pid: u32,
    settings: &Settings,
) -> std::io::Result<Sample> {
    let n = conns.len();
    let out = client::broadcast_load(conns, pid, 1, settings.broadcast_rounds).await?;
    let ms: Vec<f64> = out.times.iter().map(|t| t.as_secs_f64() * 1e3).collect();
    let mut sorted = ms.clone();
    sorted.sort_by(f64::total_cmp);
    let time_ms = sorted.get(sorted.len() / 2).copied().unwrap_or(0.0);
    Ok(Sample {
        rate: n as f64 / (time_ms / 1e3),
        cpu_us: out.server_cpu.as_secs_f64() * 1e6 / out.deliveries.max(1) as f64,
        time_ms: Some(time_ms),
        ..Sample::default()
    })
}

/// Connections the scale mode leaves for everything else a process opens.
const FD_SPARE: u64 = 256;

/// The scale mode (`BENCH_SCALE=n`): `n` idle connections to one server A
/// on `/broadcast`; memory per connection, handshake rate, the time for
/// one `Group` broadcast to reach all, and whether the server still
/// answers afterwards. Returns the report in Markdown.
async fn run_scale(want: usize, nofile: u64, settings: &Settings) -> std::io::Result<String> {
    let fits = usize::try_from(nofile.saturating_sub(FD_SPARE)).unwrap_or(usize::MAX);
    let n = want.min(fits);
    let mut md =
        format!("Scale: {want} connections asked; RLIMIT_NOFILE {nofile} in client and server");
    if n < want {
        md += &format!(
            " (the hard limit, which this machine does not let a process raise), \
             so {n} connections, the most one process can hold here"
        );
    }
    md += ".\n\n";
    let process = ServerProcess::spawn("A")?;
    let pid = process.pid();
    let (conns, idle) = connect_measured(process.addr, pid, "/broadcast", n).await?;
    let rss = sys::rss_kib(pid);
    println!("{}", describe(4, "A", &idle));
    let sample = broadcast_sample(conns, pid, settings).await?;
    println!("{}", describe(5, "A", &sample));
    // Still there, and still answering, once the clients have gone?
    tokio::time::sleep(Duration::from_millis(500)).await;
    let alive = client::connect_many(process.addr, "/", 1, 1, false)
        .await
        .map_or_else(|e| format!("**no** ({e})"), |_| "yes".to_owned());
    md += &format!(
        "| connections | server RSS | RSS/conn | handshakes/s | server CPU/handshake \
         | broadcast 128 B to all (median of {}) | server CPU/delivery | server answers afterwards |\n\
         |---|---|---|---|---|---|---|---|\n\
         | {n} | {:.0} MiB | {:.2} KiB | {:.0} | {:.1} µs | {:.1} ms | {:.2} µs | {alive} |\n",
        settings.broadcast_rounds,
        rss as f64 / 1024.0,
        idle.mem_kib.unwrap_or(0.0),
        idle.rate,
        idle.cpu_us,
        sample.time_ms.unwrap_or(0.0),
        sample.cpu_us,
    );
    Ok(md)
}

async fn measure_once(
    id: u8,
    server: Role,
    addr: SocketAddr,
    pid: u32,
    settings: &Settings,
) -> std::io::Result<Sample> {
    match id {
        1..=3 | 6 => measure_echo(id, addr, pid, matches!(server, "R" | "X"), settings).await,
        4 => measure_idle(addr, pid, settings).await,
        _ => measure_broadcast(addr, pid, settings).await,
    }
}

/// Most of a core's worth of CPU that other work may take during a sample
/// before it is measured again.
const NOISY: f64 = 0.10;

/// One sample; retried (up to `settings.retries` times) when other work
/// took more than [`NOISY`] of the machine meanwhile. Keeps the quietest.
async fn measure(
    id: u8,
    server: Role,
    addr: SocketAddr,
    pid: u32,
    settings: &Settings,
) -> std::io::Result<Sample> {
    let (cores0, server0, own0, t0) = (
        sys::core_times(),
        sys::cpu_time(pid),
        sys::own_cpu_time(),
        Instant::now(),
    );
    let mut sample = measure_once(id, server, addr, pid, settings).await?;
    if sample.other_util.is_none() {
        let used =
            sys::cpu_time(pid).saturating_sub(server0) + sys::own_cpu_time().saturating_sub(own0);
        let busy = sys::core_times().busy.saturating_sub(cores0.busy);
        sample.other_util =
            Some(busy.saturating_sub(used).as_secs_f64() / t0.elapsed().as_secs_f64());
    }
    Ok(sample)
}

fn describe(id: u8, server: &str, s: &Sample) -> String {
    let mut line = match id {
        3 => format!("{:>10.1} MB/s ", s.rate),
        4 => format!("{:>10.0} conn/s", s.rate),
        5 => format!("{:>8.1} ms to last", s.time_ms.unwrap_or(0.0)),
        _ => format!("{:>10.0} msg/s", s.rate),
    };
    line = format!(
        "  w{id} {server}: {line}  server CPU {:.2} µs/{}",
        s.cpu_us,
        match id {
            4 => "conn",
            5 => "delivery",
            _ => "msg",
        }
    );
    if let (Some(su), Some(cu)) = (s.server_util, s.client_util) {
        line += &format!(
            "  (server {:.0}% / client {:.0}% of a core)",
            su * 100.0,
            cu * 100.0
        );
    }
    if let Some(other) = s.other_util {
        line += &format!("  [other {:.0}%", other * 100.0);
        if let Some(steal) = s.steal_util {
            line += &format!(", steal {:.0}%", steal * 100.0);
        }
        line += "]";
    }
    if let (Some(p50), Some(p99)) = (s.p50_us, s.p99_us) {
        line += &format!("  p50 {p50:.0} µs p99 {p99:.0} µs");
    }
    if let Some(mem) = s.mem_kib {
        line += &format!("  {mem:.2} KiB RSS/conn");
    }
    line
}

/// Busy fraction of the whole machine (in cores) below which it counts
/// as quiet.
const QUIET: f64 = 0.15;

/// Waits, up to `max`, until the cores are nearly idle so that a sample is
/// not taken while another program (a compiler, a test run) competes for
/// them. Returns the last busy reading, in cores.
async fn wait_quiet(max: Duration) -> f64 {
    let deadline = Instant::now() + max;
    loop {
        let (before, t0) = (sys::core_times(), Instant::now());
        tokio::time::sleep(Duration::from_millis(300)).await;
        let busy = sys::core_times()
            .busy
            .saturating_sub(before.busy)
            .as_secs_f64()
            / t0.elapsed().as_secs_f64();
        if busy < QUIET || Instant::now() >= deadline {
            return busy;
        }
    }
}

/// Runs one sample on a fresh server process, after waiting for the
/// machine to be quiet; measures again (up to `settings.retries` times) if
/// other work took more than [`NOISY`] meanwhile, and keeps the quietest.
async fn sample_quietly(
    id: u8,
    server: Role,
    settings: &Settings,
    show_pins: bool,
) -> std::io::Result<Sample> {
    let mut best: Option<Sample> = None;
    for attempt in 0..=settings.retries {
        if attempt > 0 && settings.spare.get().is_zero() {
            println!("  (time for waiting and retries used up; keeping the noisy sample)");
            break;
        }
        let waited = Instant::now();
        let busy = wait_quiet(settings.quiet_wait.min(settings.spare.get())).await;
        settings
            .spare
            .set(settings.spare.get().saturating_sub(waited.elapsed()));
        if busy >= QUIET {
            println!(
                "  (cores still {:.0}% busy with other work after {:.0} s; measuring anyway)",
                busy * 100.0,
                waited.elapsed().as_secs_f64()
            );
        } else if waited.elapsed() > Duration::from_secs(2) {
            println!(
                "  (waited {:.0} s for other work to leave the cores)",
                waited.elapsed().as_secs_f64()
            );
        }
        let process = ServerProcess::spawn(server)?;
        if show_pins && attempt == 0 {
            println!(
                "  (server pid {} runs on cores {}, client on cores {})",
                process.pid(),
                sys::cpus_allowed(process.pid()),
                sys::cpus_allowed(std::process::id())
            );
        }
        let started = Instant::now();
        let sample = measure(id, server, process.addr, process.pid(), settings).await;
        drop(process);
        if attempt > 0 {
            settings
                .spare
                .set(settings.spare.get().saturating_sub(started.elapsed()));
        }
        // Let the kernel reap sockets before the next server starts.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let sample = sample?;
        let other = sample.other_util.unwrap_or(0.0);
        let quieter = best
            .as_ref()
            .is_none_or(|b| other < b.other_util.unwrap_or(0.0));
        if other <= NOISY {
            return Ok(sample);
        }
        if attempt < settings.retries {
            println!(
                "{}  <- other work took {:.0}% of a core, measuring again",
                describe(id, server, &sample),
                other * 100.0
            );
        }
        if quieter {
            best = Some(sample);
        }
    }
    best.ok_or_else(|| std::io::Error::other("no sample"))
}

async fn run_all(settings: &Settings) -> Vec<WorkloadResult> {
    let mut results = Vec::new();
    for &id in &settings.workloads {
        // The raw echo has no idle or broadcast side worth measuring, and
        // A2 (the async path) serves the echo route only.
        let servers: Vec<Role> = settings
            .servers
            .iter()
            .copied()
            .filter(|s| report::is_echo(id) || !matches!(*s, "R" | "X"))
            .filter(|s| report::is_echo(id) || id == 4 || *s != "A2")
            .collect();
        let mut result = WorkloadResult {
            id,
            title: title(id, settings),
            samples: servers.iter().map(|s| (*s, Vec::new())).collect(),
        };
        println!("workload {id}: {}", result.title);
        for round in 0..settings.rounds {
            for (i, &server) in servers.iter().enumerate() {
                let show_pins = round == 0 && i == 0 && id == settings.workloads[0];
                match sample_quietly(id, server, settings, show_pins).await {
                    Ok(mut sample) => {
                        sample.round = round;
                        println!("{} (round {})", describe(id, server, &sample), round + 1);
                        result.samples[i].1.push(sample);
                    }
                    Err(e) => println!("  w{id} {server}: FAILED: {e}"),
                }
            }
        }
        results.push(result);
    }
    results
}

async fn run_attached(settings: &Settings, addr: SocketAddr, pid: u32) {
    for &id in &settings.workloads {
        for round in 0..settings.rounds {
            match measure(id, "A", addr, pid, settings).await {
                Ok(sample) => println!("{} (round {})", describe(id, "?", &sample), round + 1),
                Err(e) => println!("  w{id}: FAILED: {e}"),
            }
        }
    }
}

fn main() -> std::io::Result<()> {
    if let Ok(role) = std::env::var("LOAD_BENCH_ROLE") {
        return server::run(&role);
    }
    let settings = Settings::from_env();
    let pinned = sys::pin_to_core(0);
    let nofile = sys::raise_nofile(sys::NOFILE_WANTED);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    if let Some((addr, pid)) = settings.attach {
        local.block_on(&runtime, run_attached(&settings, addr, pid));
        return Ok(());
    }
    if let Some(n) = std::env::var("BENCH_SCALE")
        .ok()
        .and_then(|v| v.parse::<usize>().ok())
    {
        let md = local.block_on(&runtime, run_scale(n, nofile, &settings))?;
        println!("\n{md}");
        return write_output("scale.md", &md);
    }
    let cores = sys::online_cores();
    let setup = format!(
        "Setup: {cores} cores; server: 1 actix worker{}; client: 1 tokio thread{}; \
         {} round(s), {:.1} s per measurement after {:.1} s warm-up, medians; RLIMIT_NOFILE {nofile}.",
        if pinned { " pinned to core 1" } else { " (not pinned)" },
        if pinned { " pinned to core 0" } else { " (not pinned)" },
        settings.rounds,
        settings.secs.as_secs_f64(),
        settings.warmup.as_secs_f64(),
    );
    println!("{setup}");
    let started = Instant::now();
    let results = local.block_on(&runtime, run_all(&settings));
    let md = format!(
        "{}\n{}",
        report::markdown(&results, &setup),
        report::margins(&results)
    );
    println!("\n{md}");
    println!("total time {:.0} s", started.elapsed().as_secs_f64());
    write_output("load.md", &md)?;
    let subtitle = format!(
        "cargo bench --bench load · {} round(s) × {:.1} s · median of per-round ratios · lower is better except throughput",
        settings.rounds,
        settings.secs.as_secs_f64()
    );
    write_output("load.svg", &report::svg(&results, &subtitle))
}

/// Writes `target/bench/<name>` and says so.
fn write_output(name: &str, text: &str) -> std::io::Result<()> {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("target")
        .join("bench");
    std::fs::create_dir_all(&dir)?;
    std::fs::write(dir.join(name), text)?;
    println!("wrote {}", dir.join(name).display());
    Ok(())
}
