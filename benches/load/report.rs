//! Medians, ratios against the baseline, the Markdown table and the SVG
//! chart of the ratios.

use std::fmt::Write as _;

/// One measurement of one server on one workload.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    /// Which round it belongs to: ratios pair samples of one round.
    pub round: usize,
    /// msgs/s (1, 2), MB/s of payload echoed (3), handshakes/s (4),
    /// deliveries/s (5).
    pub rate: f64,
    /// Server CPU µs per message (1–3), per connection set up (4), per
    /// delivery (5).
    pub cpu_us: f64,
    /// Server and client CPU use over the window, in cores.
    pub server_util: Option<f64>,
    pub client_util: Option<f64>,
    /// CPU used on the machine by anything else (other processes, softirq
    /// not charged to either), and stolen by the hypervisor, in cores.
    pub other_util: Option<f64>,
    pub steal_util: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    /// RSS per idle connection, KiB (4).
    pub mem_kib: Option<f64>,
    /// Time until the last client had the broadcast, ms (5).
    pub time_ms: Option<f64>,
}

/// A server's short name: `A`, `A2`, `B`, `C`, `T`, `F`, `R`.
pub type Role = &'static str;

pub const SERVERS: [(Role, &str); 9] = [
    ("A", "actix-ws-listener"),
    ("W", "actix-ws-listener on WsServer"),
    ("A2", "actix-ws-listener, AsyncListener"),
    ("B", "actix-web-actors (baseline)"),
    ("C", "actix-ws 0.3"),
    ("T", "tokio-tungstenite 0.30"),
    ("F", "fastwebsockets 0.10"),
    ("R", "raw TCP echo"),
    ("X", "actix-web raw payload echo (ceiling)"),
];

/// The other WebSocket servers A is compared with (not A2, not the raw echo).
pub const PEERS: [Role; 4] = ["B", "C", "T", "F"];

/// The role called `name` (any case), if there is one.
pub fn role(name: &str) -> Option<Role> {
    SERVERS
        .iter()
        .find(|(r, _)| r.eq_ignore_ascii_case(name))
        .map(|(r, _)| *r)
}

pub fn server_name(server: &str) -> &'static str {
    SERVERS
        .iter()
        .find(|(r, _)| *r == server)
        .map_or("?", |(_, name)| name)
}

/// Results of one workload, per server, in run order.
pub struct WorkloadResult {
    pub id: u8,
    pub title: String,
    pub samples: Vec<(Role, Vec<Sample>)>,
}

fn median(mut values: Vec<f64>) -> Option<f64> {
    if values.is_empty() {
        return None;
    }
    values.sort_by(f64::total_cmp);
    let mid = values.len() / 2;
    Some(if values.len() % 2 == 1 {
        values[mid]
    } else {
        (values[mid - 1] + values[mid]) / 2.0
    })
}

/// Medians of every field over the rounds.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    pub rate: f64,
    /// Half the min–max range of the rate, relative to its median.
    pub rate_spread: f64,
    pub cpu_us: f64,
    pub server_util: Option<f64>,
    pub client_util: Option<f64>,
    pub other_util: Option<f64>,
    pub p50_us: Option<f64>,
    pub p99_us: Option<f64>,
    pub mem_kib: Option<f64>,
    pub time_ms: Option<f64>,
    pub rounds: usize,
}

pub fn summarize(samples: &[Sample]) -> Summary {
    let pick = |f: fn(&Sample) -> Option<f64>| median(samples.iter().filter_map(f).collect());
    let rates: Vec<f64> = samples.iter().map(|s| s.rate).collect();
    let rate = median(rates.clone()).unwrap_or(0.0);
    let (lo, hi) = rates
        .iter()
        .fold((f64::MAX, f64::MIN), |(lo, hi), r| (lo.min(*r), hi.max(*r)));
    Summary {
        rate,
        rate_spread: if rate > 0.0 && samples.len() > 1 {
            (hi - lo) / 2.0 / rate
        } else {
            0.0
        },
        cpu_us: pick(|s| Some(s.cpu_us)).unwrap_or(0.0),
        server_util: pick(|s| s.server_util),
        client_util: pick(|s| s.client_util),
        other_util: pick(|s| s.other_util),
        p50_us: pick(|s| s.p50_us),
        p99_us: pick(|s| s.p99_us),
        mem_kib: pick(|s| s.mem_kib),
        time_ms: pick(|s| s.time_ms),
        rounds: samples.len(),
    }
}

impl WorkloadResult {
    pub fn summary(&self, server: &str) -> Option<Summary> {
        let samples = self.samples_of(server);
        (!samples.is_empty()).then(|| summarize(samples))
    }

    fn samples_of(&self, server: &str) -> &[Sample] {
        self.samples
            .iter()
            .find(|(r, _)| *r == server)
            .map_or(&[], |(_, s)| s.as_slice())
    }
}

/// A ratio against B with its target for A, and A against the best peer.
pub struct Check {
    pub label: String,
    /// `Some((bound, higher_is_better))`.
    pub target: Option<(f64, bool)>,
    pub a: Option<f64>,
    pub c: Option<f64>,
    pub t: Option<f64>,
    pub f: Option<f64>,
    /// The peer with the best median on this metric, and A's paired ratio
    /// to it.
    pub best: Option<(Role, f64)>,
}

impl Check {
    pub fn verdict(&self) -> &'static str {
        match (self.target, self.a) {
            (Some((bound, true)), Some(a)) if a >= bound => "meets",
            (Some((bound, false)), Some(a)) if a <= bound => "meets",
            (Some(_), Some(_)) => "**misses**",
            _ => "—",
        }
    }
}

type Metric = fn(&Sample) -> Option<f64>;

/// `server`'s metric against `base`'s: the median over rounds of the ratio
/// of the two samples taken side by side in that round. Pairing cancels the
/// drift of a shared machine between rounds, which a ratio of medians
/// would keep.
pub fn paired_ratio(w: &WorkloadResult, server: &str, base: &str, metric: Metric) -> Option<f64> {
    median(round_ratios(w, server, base, metric))
}

/// The per-round ratios `server`/`base` of `metric`, rounds in order.
fn round_ratios(w: &WorkloadResult, server: &str, base: &str, metric: Metric) -> Vec<f64> {
    let base = w.samples_of(base);
    w.samples_of(server)
        .iter()
        .filter_map(|x| {
            let b = base.iter().find(|b| b.round == x.round)?;
            match (metric(x), metric(b)) {
                (Some(x), Some(b)) if b > 0.0 => Some(x / b),
                _ => None,
            }
        })
        .collect()
}

/// The margins, robustly: for each echo workload, A's CPU per message and
/// p99 against B, F and X (and W's, A on `WsServer`, against B, F and A) as
/// the median of the per-round ratios with their
/// (min, max) and the number of rounds, in Markdown.
/// Whether workload `id` is an echo (1, 2, 3 and the open-loop 6; 4 is
/// idle connections and 5 a broadcast).
pub fn is_echo(id: u8) -> bool {
    matches!(id, 1..=3 | 6)
}

pub fn margins(results: &[WorkloadResult]) -> String {
    let mut md = String::new();
    let _ = writeln!(
        md,
        "| workload | ratio | median of per-round ratios | (min, max) | rounds |\n|---|---|---|---|---|"
    );
    let cpu: Metric = |s| Some(s.cpu_us);
    let p99: Metric = |s| s.p99_us;
    for w in results.iter().filter(|w| is_echo(w.id)) {
        for (label, metric) in [("CPU/msg", cpu), ("p99", p99)] {
            let pairs = [
                ("A", "B"),
                ("A", "F"),
                ("A", "X"),
                ("A", "A2"),
                ("W", "B"),
                ("W", "F"),
                ("W", "X"),
                ("W", "A"),
            ];
            for (ours, base) in pairs {
                let ratios = round_ratios(w, ours, base, metric);
                let Some(mid) = median(ratios.clone()) else {
                    continue;
                };
                let lo = ratios.iter().copied().fold(f64::MAX, f64::min);
                let hi = ratios.iter().copied().fold(f64::MIN, f64::max);
                let _ = writeln!(
                    md,
                    "| {} {} | {ours}/{base} {label} | {mid:.3} | ({lo:.3}, {hi:.3}) | {} |",
                    w.id,
                    w.title,
                    ratios.len()
                );
            }
        }
    }
    md
}

/// A label, the target for A/B as `(bound, higher_is_better)`, and the metric.
type Compared = (&'static str, Option<(f64, bool)>, Metric);

/// What is compared on workload `id`.
fn metrics(id: u8) -> Vec<Compared> {
    match id {
        1..=3 | 6 => {
            let mut list: Vec<Compared> = vec![
                ("throughput", Some((0.97, true)), |s| Some(s.rate)),
                ("CPU/msg", Some((1.03, false)), |s| Some(s.cpu_us)),
            ];
            if id == 1 || id == 6 {
                list.push(("p99 latency", Some((1.05, false)), |s| s.p99_us));
            }
            list
        }
        4 => vec![
            ("memory/idle conn", Some((1.10, false)), |s| s.mem_kib),
            ("CPU/handshake", None, |s| Some(s.cpu_us)),
        ],
        _ => vec![
            ("time to last", None, |s| s.time_ms),
            ("CPU/delivery", None, |s| Some(s.cpu_us)),
        ],
    }
}

/// The peer whose median `metric` is best (highest when `higher_is_better`).
fn best_peer(w: &WorkloadResult, metric: Metric, higher_is_better: bool) -> Option<Role> {
    PEERS
        .iter()
        .filter_map(|&peer| {
            let value = median(w.samples_of(peer).iter().filter_map(metric).collect())?;
            Some((peer, if higher_is_better { -value } else { value }))
        })
        .min_by(|x, y| x.1.total_cmp(&y.1))
        .map(|(peer, _)| peer)
}

pub fn checks(results: &[WorkloadResult]) -> Vec<Check> {
    let mut checks = Vec::new();
    for w in results {
        let mut add = |label: &str, target: Option<(f64, bool)>, metric: Metric| {
            let higher_is_better = target.is_some_and(|(_, higher)| higher);
            let best = best_peer(w, metric, higher_is_better)
                .and_then(|peer| paired_ratio(w, "A", peer, metric).map(|ratio| (peer, ratio)));
            checks.push(Check {
                label: format!("{} {label}", w.id),
                target,
                a: paired_ratio(w, "A", "B", metric),
                c: paired_ratio(w, "C", "B", metric),
                t: paired_ratio(w, "T", "B", metric),
                f: paired_ratio(w, "F", "B", metric),
                best,
            });
        };
        for (label, target, metric) in metrics(w.id) {
            add(label, target, metric);
        }
    }
    checks
}

fn opt(value: Option<f64>, unit: &str, digits: usize) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.digits$}{unit}"))
}

fn ratio_cell(value: Option<f64>) -> String {
    value.map_or_else(|| "—".to_owned(), |v| format!("{v:.3}"))
}

fn grouped(value: f64) -> String {
    let digits = format!("{:.0}", value.max(0.0));
    let mut out = String::new();
    for (i, ch) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(ch);
    }
    out
}

fn rate_cell(id: u8, s: &Summary) -> String {
    let spread = if s.rounds > 1 {
        format!(" ±{:.1}%", s.rate_spread * 100.0)
    } else {
        String::new()
    };
    match id {
        3 => format!("{:.0} MB/s{spread}", s.rate),
        4 => format!("{} conn/s{spread}", grouped(s.rate)),
        5 => format!(
            "{} ms to last ({} deliveries/s){spread}",
            opt(s.time_ms, "", 1),
            grouped(s.rate)
        ),
        _ => format!("{} msg/s{spread}", grouped(s.rate)),
    }
}

/// The results table in Markdown.
pub fn markdown(results: &[WorkloadResult], setup: &str) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "{setup}\n");
    let _ = writeln!(
        md,
        "Servers: A = actix-ws-listener (this crate) on actix-web's HttpServer, W = the same app on its WsServer, A2 = A with an AsyncListener, \
         B = actix-web-actors actor (baseline), C = actix-ws 0.3, T = tokio-tungstenite 0.30, \
         F = fastwebsockets 0.10 (hyper 1), R = raw TCP echo (client ceiling), X = actix-web echoing the raw payload stream (the actix stack's ceiling). \
         Ratios are against B (A/B, C/B, …) or another server named in the column: the median over \
         rounds of the ratio of the two samples \
         taken side by side in a round; ±x% is half the min–max range of the rate over the rounds. \
         Server and client CPU are in % of one core; \"other\" is CPU used on the machine by anything else \
         during the window (kernel work not charged to either process, other programs).\n"
    );
    let _ = writeln!(
        md,
        "| workload | server | rate | server CPU/msg | server CPU | client CPU | other | p50 | p99 | RSS/idle conn | rate ×B | CPU/msg ×B | p99 ×B | mem ×B |"
    );
    let _ = writeln!(
        md,
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"
    );
    for w in results {
        for (server, _) in &w.samples {
            let Some(s) = w.summary(server) else {
                continue;
            };
            let cpu_unit = match w.id {
                4 => " µs/conn",
                5 => " µs/delivery",
                _ => " µs",
            };
            let vs = |metric: Metric| {
                if matches!(*server, "B" | "R" | "X") {
                    return String::new();
                }
                ratio_cell(paired_ratio(w, server, "B", metric))
            };
            let _ = writeln!(
                md,
                "| {} {} | {} {} | {} | {:.2}{cpu_unit} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.id,
                w.title,
                server,
                server_name(server),
                rate_cell(w.id, &s),
                s.cpu_us,
                opt(s.server_util.map(|u| u * 100.0), "%", 0),
                opt(s.client_util.map(|u| u * 100.0), "%", 0),
                opt(s.other_util.map(|u| u * 100.0), "%", 0),
                opt(s.p50_us, " µs", 0),
                opt(s.p99_us, " µs", 0),
                opt(s.mem_kib, " KiB", 2),
                vs(|s| if s.time_ms.is_some() { s.time_ms } else { Some(s.rate) }),
                vs(|s| Some(s.cpu_us)),
                vs(|s| s.p99_us),
                vs(|s| s.mem_kib),
            );
        }
    }
    let _ = writeln!(md, "\nWorkload 5's \"rate ×B\" column is the ratio of times to the last client (lower is better).\n");
    let _ = writeln!(
        md,
        "### Ratios against B and the best peer, and the targets for A\n"
    );
    let _ = writeln!(
        md,
        "The best peer is the one of B, C, T, F with the best median on that metric \
         (highest throughput; lowest CPU, latency, memory and time); A/best pairs A's samples \
         with that peer's, round by round.\n"
    );
    let _ = writeln!(
        md,
        "| workload · metric | target for A/B | A/B | A | best peer | A/best | C/B | T/B | F/B |"
    );
    let _ = writeln!(md, "|---|---|---|---|---|---|---|---|---|");
    for check in checks(results) {
        let target = match check.target {
            Some((bound, true)) => format!("≥ {bound:.2}"),
            Some((bound, false)) => format!("≤ {bound:.2}"),
            None => "(none)".to_owned(),
        };
        let (peer, vs_best) = check
            .best
            .map_or(("—", None), |(peer, ratio)| (peer, Some(ratio)));
        let _ = writeln!(
            md,
            "| {} | {target} | {} | {} | {peer} | {} | {} | {} | {} |",
            check.label,
            ratio_cell(check.a),
            check.verdict(),
            ratio_cell(vs_best),
            ratio_cell(check.c),
            ratio_cell(check.t),
            ratio_cell(check.f),
        );
    }
    let async_rows: Vec<String> = results
        .iter()
        .filter(|w| is_echo(w.id) || w.id == 4)
        .flat_map(|w| {
            metrics(w.id)
                .into_iter()
                .filter_map(move |(label, _, metric)| {
                    let ratio = paired_ratio(w, "A2", "A", metric)?;
                    Some(format!("| {} {label} | {ratio:.3} |", w.id))
                })
        })
        .collect();
    if !async_rows.is_empty() {
        let _ = writeln!(md, "\n### The async path against the sync one (A2/A)\n");
        let _ = writeln!(md, "| workload · metric | A2/A |\n|---|---|");
        for row in async_rows {
            let _ = writeln!(md, "{row}");
        }
    }
    md
}

fn escape(text: &str) -> String {
    text.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// A horizontal bar chart of the ratios: one row per check, A/B and C/B
/// bars, the parity line at 1 and A's target as a red tick.
pub fn svg(results: &[WorkloadResult], subtitle: &str) -> String {
    let checks = checks(results);
    let (left, right, top, row, bar) = (190.0, 70.0, 70.0, 46.0, 12.0);
    let plot_w = 560.0;
    let width = left + plot_w + right;
    let height = top + row * checks.len() as f64 + 60.0;
    let max = checks
        .iter()
        .flat_map(|c| [c.a, c.best.map(|(_, r)| r), c.c])
        .flatten()
        .fold(2.0f64, f64::max)
        .min(4.0);
    let x = |v: f64| left + plot_w * (v.min(max) / max);
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let _ = writeln!(
        s,
        r##"<text x="{}" y="22" font-size="15" font-weight="bold">A against actix-web-actors (B = 1.0) and against the best peer</text>"##,
        left - 170.0
    );
    let _ = writeln!(
        s,
        r##"<text x="{}" y="40" fill="#555">{}</text>"##,
        left - 170.0,
        escape(subtitle)
    );
    // Grid.
    let mut tick = 0.0;
    while tick <= max + 1e-9 {
        let gx = x(tick);
        let stroke = if (tick - 1.0f64).abs() < 1e-9 {
            "#000"
        } else {
            "#ddd"
        };
        let _ = writeln!(
            s,
            r##"<line x1="{gx:.1}" y1="{}" x2="{gx:.1}" y2="{}" stroke="{stroke}"/>"##,
            top - 8.0,
            top + row * checks.len() as f64
        );
        let _ = writeln!(
            s,
            r##"<text x="{gx:.1}" y="{}" text-anchor="middle" fill="#555">{tick:.1}</text>"##,
            top + row * checks.len() as f64 + 16.0
        );
        tick += 0.5;
    }
    for (i, check) in checks.iter().enumerate() {
        let y = top + row * i as f64;
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            left - 8.0,
            y + bar + 3.0,
            escape(&match check.best {
                Some((peer, _)) => format!("{} (best: {peer})", check.label),
                None => check.label.clone(),
            })
        );
        let bars = [
            (check.a, "#1f77b4"),
            (check.best.map(|(_, r)| r), "#2ca02c"),
            (check.c, "#aaaaaa"),
        ];
        for (j, (value, color)) in bars.iter().enumerate() {
            let Some(value) = value else { continue };
            let by = y + 2.0 + j as f64 * bar;
            let _ = writeln!(
                s,
                r##"<rect x="{left}" y="{by:.1}" width="{:.1}" height="{}" fill="{color}"/>"##,
                (x(*value) - left).max(1.0),
                bar - 2.0
            );
            let _ = writeln!(
                s,
                r##"<text x="{:.1}" y="{:.1}" font-size="10" fill="{color}">{value:.3}</text>"##,
                left + plot_w + 8.0,
                by + bar - 3.0
            );
        }
        if let Some((bound, _)) = check.target {
            let tx = x(bound);
            let _ = writeln!(
                s,
                r##"<line x1="{tx:.1}" y1="{:.1}" x2="{tx:.1}" y2="{:.1}" stroke="#d62728" stroke-width="2"/>"##,
                y,
                y + 3.0 * bar + 2.0
            );
        }
    }
    let ly = top + row * checks.len() as f64 + 36.0;
    let legend = [
        (0.0, "#1f77b4", "A/B actix-ws-listener"),
        (160.0, "#2ca02c", "A/best peer (named on the left)"),
        (370.0, "#aaaaaa", "C/B actix-ws"),
    ];
    for (dx, color, text) in legend {
        let _ = writeln!(
            s,
            r##"<rect x="{:.1}" y="{:.1}" width="12" height="10" fill="{color}"/><text x="{:.1}" y="{ly:.1}">{text}</text>"##,
            left + dx,
            ly - 9.0,
            left + dx + 16.0
        );
    }
    let _ = writeln!(
        s,
        r##"<line x1="{}" y1="{:.1}" x2="{}" y2="{:.1}" stroke="#d62728" stroke-width="2"/><text x="{}" y="{ly:.1}">target for A</text>"##,
        left + 470.0,
        ly - 10.0,
        left + 470.0,
        ly + 1.0,
        left + 476.0
    );
    let _ = writeln!(s, "</svg>");
    s
}
