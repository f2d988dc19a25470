//! An example program run as a separate process, the way a user runs it:
//! built by cargo, listening on a free port, killed when dropped.

use std::{
    io::{BufRead, BufReader},
    net::{SocketAddr, TcpListener, TcpStream},
    path::PathBuf,
    process::{Child, Command, Stdio},
    thread,
    time::{Duration, Instant},
};

use super::TIMEOUT;

/// A port nobody listens on right now.
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|addr| addr.port())
        .expect("bind an ephemeral port")
}

/// Builds `examples/<name>.rs` (what `cargo test` already built, so usually
/// a no-op) and returns its path, read from cargo's own report.
pub fn build_example(name: &str) -> PathBuf {
    let output = Command::new(env!("CARGO"))
        .args(["build", "--example", name, "--message-format=json"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .stderr(Stdio::inherit())
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo build --example {name} failed"
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let target = format!(r#""name":"{name}""#);
    let line = stdout
        .lines()
        .find(|line| line.contains(&target) && line.contains(r#""executable":""#))
        .unwrap_or_else(|| panic!("cargo reported no executable for {name}"));
    let start = line.find(r#""executable":""#).expect("executable") + r#""executable":""#.len();
    let end = start + line[start..].find('"').expect("closing quote");
    PathBuf::from(&line[start..end])
}

/// One running example, on `BIND` = a free port.
pub struct ExampleProcess {
    pub addr: SocketAddr,
    child: Child,
}

impl ExampleProcess {
    /// Starts `exe` with `env` and waits until it accepts connections; its
    /// log goes to the test's output (shown on failure), line by line.
    pub fn start(exe: &PathBuf, env: &[(&str, &str)]) -> ExampleProcess {
        let addr = SocketAddr::from(([127, 0, 0, 1], free_port()));
        let mut command = Command::new(exe);
        command
            .env("BIND", addr.to_string())
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped());
        for (key, value) in env {
            command.env(key, value);
        }
        let mut child = command.spawn().expect("start the example");
        if let Some(stderr) = child.stderr.take() {
            thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    eprintln!("[{addr}] {line}");
                }
            });
        }
        let deadline = Instant::now() + 3 * TIMEOUT;
        while TcpStream::connect(addr).is_err() {
            if let Ok(Some(status)) = child.try_wait() {
                panic!("example exited with {status}");
            }
            assert!(
                Instant::now() < deadline,
                "example did not listen on {addr}"
            );
            thread::sleep(Duration::from_millis(20));
        }
        ExampleProcess { addr, child }
    }
}

impl Drop for ExampleProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// What an example printed on stderr before it exited by itself, and how
/// it exited.
pub struct Exited {
    pub status: std::process::ExitStatus,
    pub stderr: String,
}

/// Runs `exe` with `env` until it exits by itself; fails the test if it
/// still runs after [`TIMEOUT`] (it is then killed).
pub fn run_to_exit(exe: &PathBuf, env: &[(&str, &str)]) -> Exited {
    let mut command = Command::new(exe);
    command
        .env("RUST_LOG", "warn")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("start the example");
    let stderr = child.stderr.take().map(|stderr| {
        thread::spawn(move || {
            let mut text = String::new();
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                text.push_str(&line);
                text.push('\n');
            }
            text
        })
    });
    let deadline = Instant::now() + TIMEOUT;
    let status = loop {
        if let Some(status) = child.try_wait().expect("wait for the example") {
            break status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{} still runs after {TIMEOUT:?}", exe.display());
        }
        thread::sleep(Duration::from_millis(20));
    };
    let stderr = stderr
        .map(|reader| reader.join().expect("stderr reader"))
        .unwrap_or_default();
    Exited { status, stderr }
}
