#!/usr/bin/env bash
# Autobahn TestSuite conformance gate.
#
# What it does:
#   1. Creates (or reuses) a Python venv in target/conformance-venv and installs
#      the Autobahn case runner `kosoku` (a native re-implementation of the
#      Autobahn TestSuite "fuzzingclient", driving Autobahn's own case files)
#      at the pinned version below.
#   2. Builds the echo server `cargo build --release --example autobahn`
#      (examples/autobahn.rs: WebSocket echo on every path, address from BIND).
#   3. Picks a free loopback port, starts the server in the background with
#      BIND=127.0.0.1:<port>, and waits (bounded) until the port accepts TCP.
#   4. Runs `kosoku -m fuzzingclient -p <parallelism> -o <report dir>` against
#      it, then stops the server by its PID (also on any exit, via a trap).
#   5. Reads the Autobahn-style report (<report dir>/index.json plus one
#      <agent>_case_<id>.json per case), prints a per-group table
#      (OK / NON-STRICT / INFORMATIONAL / UNIMPLEMENTED / FAILED / other), the
#      wall time, and every FAILED / other case with kosoku's explanation.
#   6. Exits non-zero if any case in the gated groups is FAILED, errored or
#      missing from the report, or if the report has no cases at all.
#
#   kosoku's own exit code is NOT the gate: it exits 1 for any case that is not
#   OK/NON-STRICT/INFORMATIONAL, including UNIMPLEMENTED (e.g. groups 12/13
#   against a server without permessage-deflate). It only matters here when no
#   report was written.
#
# Verdict per case (the table's columns). Autobahn reports two verdicts per
# case, `behavior` (the message exchange) and `behaviorClose` (the closing
# handshake); they are folded as Autobahn's own HTML report colours them:
#   FAILED         behavior FAILED, or behaviorClose FAILED / UNCLEAN
#   other          behavior ERROR (kosoku could not run the case: connection
#                  refused, crash, ...), any unknown label, or a case that is
#                  missing from the report (the server died, kosoku aborted)
#   NON-STRICT     behavior NON-STRICT, or behaviorClose WRONG CODE /
#                  FAILED BY CLIENT (still conformant; worth a look)
#   UNIMPLEMENTED, INFORMATIONAL, OK   as reported
#
# How to run (from anywhere; paths are relative to the repo root):
#   scripts/conformance.sh
#   CONFORMANCE_INCLUDE='6.* 7.*' scripts/conformance.sh     # a subset
#   CONFORMANCE_GROUPS_GATED=1-11 scripts/conformance.sh     # leave out deflate
#   Open target/conformance-report/index.html for Autobahn's HTML report
#   (per-case pages include the wire log).
#
# Measuring another server: set CONFORMANCE_SERVER_CMD to a shell command that
# starts a WebSocket echo server listening on $BIND (host:port); the cargo
# build is then skipped. It runs in its own process group, which is stopped
# at the end. Example (a Python `websockets` echo server):
#   CONFORMANCE_SERVER_CMD='/tmp/venv/bin/python /tmp/echo.py' scripts/conformance.sh
#
# Environment:
#   CONFORMANCE_PARALLELISM    cases kosoku runs at once (default 2)
#   CONFORMANCE_GROUPS_GATED   top-level groups whose FAILED/errored/missing
#                              cases fail the gate: comma-separated numbers
#                              or ranges (default "1-13": deflate included)
#   CONFORMANCE_SERVER_CMD     command to start instead of the autobahn example
#                              (must listen on $BIND); skips the cargo build
#   CONFORMANCE_INCLUDE        space-separated case ids/globs to run (kosoku -i),
#                              e.g. "1.* 9.7.*" (default: the whole suite)
#   CONFORMANCE_EXCLUDE        space-separated case ids/globs to skip (kosoku -x)
#   CONFORMANCE_REPORT_DIR     report directory, emptied first
#                              (default target/conformance-report)
#   CONFORMANCE_VENV           venv directory (default target/conformance-venv)
#   CONFORMANCE_START_TIMEOUT  seconds to wait for the server port (default 60)
#   CONFORMANCE_PYTHON         interpreter that creates the venv (default
#                              python3; kosoku needs >= 3.10)
#   CARGO_TARGET_DIR           honoured for the build and the binary path
# The server's stdout/stderr go to <report dir>/server.log (the example logs
# at RUST_LOG, default warn); its tail is printed if the gate fails.
set -euo pipefail

KOSOKU_VERSION=0.1.0

cd "$(dirname "$0")/.."
. scripts/lib.sh

PARALLELISM="${CONFORMANCE_PARALLELISM:-2}"
GROUPS_GATED="${CONFORMANCE_GROUPS_GATED:-1-13}"
REPORT_DIR="${CONFORMANCE_REPORT_DIR:-target/conformance-report}"
VENV="${CONFORMANCE_VENV:-target/conformance-venv}"
START_TIMEOUT="${CONFORMANCE_START_TIMEOUT:-60}"
PYTHON="${CONFORMANCE_PYTHON:-python3}"
TARGET_DIR="${CARGO_TARGET_DIR:-target}"
SERVER_CMD="${CONFORMANCE_SERVER_CMD:-}"

say() { printf '[conformance] %s\n' "$*"; }
die() { printf '[conformance] ERROR: %s\n' "$*" >&2; exit 1; }

[[ "$PARALLELISM" =~ ^[1-9][0-9]*$ ]] || die "CONFORMANCE_PARALLELISM must be a positive integer, got '$PARALLELISM'"
[[ "$GROUPS_GATED" =~ ^[0-9]+(-[0-9]+)?(,[0-9]+(-[0-9]+)?)*$ ]] \
    || die "CONFORMANCE_GROUPS_GATED must look like '1-11' or '1-7,9,10', got '$GROUPS_GATED'"
[[ "$START_TIMEOUT" =~ ^[1-9][0-9]*$ ]] || die "CONFORMANCE_START_TIMEOUT must be a positive integer, got '$START_TIMEOUT'"

# --- 1. venv with the pinned kosoku -----------------------------------------
PY="$VENV/bin/python"
if [ ! -x "$PY" ]; then
    command -v "$PYTHON" >/dev/null || die "$PYTHON not found (needed for the kosoku venv)"
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 10))' \
        || die "kosoku needs Python >= 3.10; $PYTHON is $("$PYTHON" -V 2>&1)"
    say "creating venv $VENV"
    rm -rf "$VENV"
    "$PYTHON" -m venv "$VENV"
fi
if [ "$("$PY" -c 'import importlib.metadata as m; print(m.version("kosoku"))' 2>/dev/null || true)" != "$KOSOKU_VERSION" ]; then
    say "installing kosoku==$KOSOKU_VERSION into $VENV"
    "$PY" -m pip install --quiet --disable-pip-version-check "kosoku==$KOSOKU_VERSION"
fi
KOSOKU="$VENV/bin/kosoku"
[ -x "$KOSOKU" ] || die "$KOSOKU missing after install"

# --- 2. the server under test -----------------------------------------------
if [ -z "$SERVER_CMD" ]; then
    say "cargo build --release --example autobahn"
    cargo build --release --example autobahn
    SERVER_BIN="$TARGET_DIR/release/examples/autobahn"
    [ -x "$SERVER_BIN" ] || die "$SERVER_BIN not found after the build"
    SERVER_CMD="exec $(printf '%q' "$SERVER_BIN")"
fi

# --- 3. start it on a free loopback port -------------------------------------
PORT="$(free_port)"
ADDR="127.0.0.1:$PORT"

rm -rf "$REPORT_DIR"
mkdir -p "$REPORT_DIR"
SERVER_LOG="$REPORT_DIR/server.log"

SERVER_PID=""
stop_server() {
    [ -n "$SERVER_PID" ] || return 0
    local pid="$SERVER_PID"
    SERVER_PID=""
    if kill -0 "$pid" 2>/dev/null; then
        # The server leads its own process group (setsid below): signal the group
        # so a wrapper command's children go too.
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 100); do
            kill -0 "$pid" 2>/dev/null || break
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            say "server $pid ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
    wait "$pid" 2>/dev/null || true
}
trap stop_server EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

say "starting server on $ADDR: $SERVER_CMD"
BIND="$ADDR" RUST_LOG="${RUST_LOG:-warn}" setsid bash -c "$SERVER_CMD" >"$SERVER_LOG" 2>&1 </dev/null &
SERVER_PID=$!

if ! wait_for_port "$PORT" "$SERVER_PID" "$START_TIMEOUT"; then
    say "server log ($SERVER_LOG):"
    tail -n 40 "$SERVER_LOG" >&2 || true
    die "server did not come up on $ADDR"
fi
say "server pid $SERVER_PID is accepting connections on $ADDR"

# --- 4. run the suite ----------------------------------------------------------
KOSOKU_ARGS=(-m fuzzingclient -p "$PARALLELISM" -o "$REPORT_DIR")
read -r -a INCLUDES <<<"${CONFORMANCE_INCLUDE:-}"   # no pathname expansion of the globs
read -r -a EXCLUDES <<<"${CONFORMANCE_EXCLUDE:-}"
for c in ${INCLUDES[@]+"${INCLUDES[@]}"}; do KOSOKU_ARGS+=(-i "$c"); done
for c in ${EXCLUDES[@]+"${EXCLUDES[@]}"}; do KOSOKU_ARGS+=(-x "$c"); done
say "kosoku ${KOSOKU_ARGS[*]} $ADDR"
START_NS=$(date +%s%N)
set +e
# kosoku lists its non-passing cases on stderr; the summary below covers them.
"$KOSOKU" "${KOSOKU_ARGS[@]}" "$ADDR" 2>"$REPORT_DIR/kosoku.stderr"
KOSOKU_RC=$?
set -e
END_NS=$(date +%s%N)
WALL="$(( (END_NS - START_NS) / 1000000 ))"

SERVER_ALIVE=1
kill -0 "$SERVER_PID" 2>/dev/null || SERVER_ALIVE=0
stop_server

# --- 5./6. summary and gate ------------------------------------------------------
set +e
CONFORMANCE_WALL_MS="$WALL" CONFORMANCE_KOSOKU_RC="$KOSOKU_RC" CONFORMANCE_SERVER_ALIVE="$SERVER_ALIVE" \
CONFORMANCE_GROUPS_GATED="$GROUPS_GATED" CONFORMANCE_INCLUDE="${CONFORMANCE_INCLUDE:-}" \
CONFORMANCE_EXCLUDE="${CONFORMANCE_EXCLUDE:-}" \
    "$PY" - "$REPORT_DIR" <<'EOF'
import fnmatch, json, os, sys

report_dir = sys.argv[1]
wall_ms = int(os.environ["CONFORMANCE_WALL_MS"])
kosoku_rc = int(os.environ["CONFORMANCE_KOSOKU_RC"])
server_alive = os.environ["CONFORMANCE_SERVER_ALIVE"] == "1"
includes = os.environ["CONFORMANCE_INCLUDE"].split()
excludes = os.environ["CONFORMANCE_EXCLUDE"].split()

gated = set()
for part in os.environ["CONFORMANCE_GROUPS_GATED"].split(","):
    lo, _, hi = part.partition("-")
    gated.update(range(int(lo), int(hi or lo) + 1))

def key(case_id):
    return tuple(int(p) for p in case_id.split("."))

def group(case_id):
    return int(case_id.split(".")[0])

def short(text, n=300):
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."

index_path = os.path.join(report_dir, "index.json")
results = {}   # case id -> index entry (+ "agent")
if os.path.exists(index_path):
    with open(index_path) as f:
        index = json.load(f)
    for agent, cases in index.items():
        for case_id, entry in cases.items():
            results[case_id] = dict(entry, agent=agent)

# The cases this run should have produced: kosoku's case list, filtered by the
# same include/exclude globs (kosoku's `*` also spans dots, like fnmatch's).
CASES = {}
try:
    from kosoku.cases import CASES
    selected = [c for c in CASES
                if (not includes or any(fnmatch.fnmatchcase(c, g) for g in includes))
                and not any(fnmatch.fnmatchcase(c, g) for g in excludes)]
except Exception as e:  # the summary still works from the report alone
    print(f"note: could not load kosoku's case list ({e}); missing cases are not detected")
    selected = list(results)
missing = sorted(set(selected) - set(results), key=key)

COLUMNS = ["OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED", "other"]

def verdict(entry):
    b, bc = entry.get("behavior"), entry.get("behaviorClose")
    if b not in ("OK", "NON-STRICT", "INFORMATIONAL", "UNIMPLEMENTED", "FAILED"):
        return "other"   # ERROR (could not run the case) or an unknown label
    if b == "FAILED" or bc in ("FAILED", "UNCLEAN"):
        return "FAILED"
    if b == "OK" and bc in ("WRONG CODE", "FAILED BY CLIENT"):
        return "NON-STRICT"
    if bc not in ("OK", "INFORMATIONAL", "WRONG CODE", "FAILED BY CLIENT"):
        return "other"
    return b

verdicts = {c: verdict(e) for c, e in results.items()}
verdicts.update({c: "other" for c in missing})

groups = sorted({group(c) for c in verdicts})
table = {g: dict.fromkeys(COLUMNS, 0) for g in groups}
for c, v in verdicts.items():
    table[group(c)][v] += 1

w = 15
print()
print(f"{'group':<8}" + "".join(f"{col:>{w}}" for col in COLUMNS) + f"{'total':>8}  gated")
for g in groups:
    row = table[g]
    print(f"{str(g) + '.*':<8}" + "".join(f"{row[col]:>{w}}" for col in COLUMNS)
          + f"{sum(row.values()):>8}  {'yes' if g in gated else 'no'}")
totals = {col: sum(table[g][col] for g in groups) for col in COLUMNS}
print(f"{'all':<8}" + "".join(f"{totals[col]:>{w}}" for col in COLUMNS) + f"{sum(totals.values()):>8}")
print()
print(f"wall time: {wall_ms / 1000:.1f} s for {len(results)} cases "
      f"(kosoku exit code {kosoku_rc}; it exits 1 whenever any case is not OK/NON-STRICT/INFORMATIONAL)")
durations = sorted(((e.get("duration") or 0, c) for c, e in results.items()), reverse=True)[:5]
if durations:
    print("slowest cases: " + ", ".join(f"{c} {d / 1000:.1f} s" for d, c in durations))

def detail(case_id):
    entry = results.get(case_id)
    if entry is None:
        text = getattr(CASES.get(case_id), "DESCRIPTION", "")
        return [f"  {case_id}: missing from the report (not run to completion)",
                f"      description: {short(text)}"]
    lines = [f"  {case_id}: behavior={entry.get('behavior')} behaviorClose={entry.get('behaviorClose')} "
             f"remoteCloseCode={entry.get('remoteCloseCode')} ({entry.get('duration')} ms)"]
    case = {}
    try:
        with open(os.path.join(report_dir, entry["reportfile"])) as f:
            case = json.load(f)
    except (OSError, KeyError, ValueError):
        pass
    if case:
        # An errored case's report has empty texts: take them from the case class.
        cls = CASES.get(case_id)
        for field, attr in (("description", "DESCRIPTION"), ("expectation", "EXPECTATION")):
            text = case.get(field) or getattr(cls, attr, "")
            lines.append(f"      {field + ':':<12} {short(text)}")
        lines.append(f"      result:      {short(case.get('result', ''))}")
        close = case.get("resultClose", "")
        if case.get("wasNotCleanReason"):
            close += f" (not clean: {case['wasNotCleanReason']})"
        if case.get("remoteCloseReason"):
            close += f" (peer's close reason: {case['remoteCloseReason']!r})"
        lines.append(f"      close:       {short(close)}")
        if case.get("behavior") == "FAILED":
            lines.append(f"      expected:    {short(case.get('expected', ''), 200)}")
            lines.append(f"      received:    {short(case.get('received', ''), 200)}")
    return lines

for title, wanted in (("FAILED", "FAILED"), ("errored / missing (other)", "other"),
                      ("NON-STRICT", "NON-STRICT")):
    ids = sorted((c for c, v in verdicts.items() if v == wanted), key=key)
    if not ids:
        continue
    print()
    print(f"{title} cases ({len(ids)}):")
    for c in ids:
        mark = "" if group(c) in gated else "   [not gated]"
        lines = detail(c)
        lines[0] += mark
        print("\n".join(lines))

print()
if os.path.exists(os.path.join(report_dir, "index.html")):
    print(f"HTML report: {os.path.join(report_dir, 'index.html')}")
if not server_alive:
    print("note: the server process had exited before the run ended")

failing = sorted((c for c, v in verdicts.items() if v in ("FAILED", "other") and group(c) in gated), key=key)
if not results:
    print(f"GATE FAILED: the report has no cases (kosoku exit code {kosoku_rc})")
    sys.exit(1)
if failing:
    print(f"GATE FAILED: {len(failing)} FAILED/errored/missing case(s) in gated groups "
          f"{os.environ['CONFORMANCE_GROUPS_GATED']}: {' '.join(failing[:40])}"
          + (" ..." if len(failing) > 40 else ""))
    sys.exit(1)
print(f"GATE PASSED: no FAILED/errored/missing case in groups {os.environ['CONFORMANCE_GROUPS_GATED']}")
EOF
RC=$?
set -e
if [ "$RC" != 0 ]; then
    if [ -s "$REPORT_DIR/kosoku.stderr" ] && ! grep -q 'cases failed' "$REPORT_DIR/kosoku.stderr"; then
        say "kosoku stderr:"
        tail -n 40 "$REPORT_DIR/kosoku.stderr" >&2
    fi
    if [ -s "$SERVER_LOG" ]; then
        say "last lines of the server log ($SERVER_LOG):"
        tail -n 20 "$SERVER_LOG" >&2
    fi
fi
exit "$RC"
