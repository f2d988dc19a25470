//! A `redis-server` of a bench's own, on a free loopback port, without
//! persistence; killed (by its PID) when dropped. Shared by the benches
//! that need a broker (`cluster`, `history`, through `#[path]`).

use std::{
    net::TcpListener,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// The running server; killed when dropped.
pub struct RedisServer(Child);

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Starts one and waits (up to 20 s) until it answers; returns it and its
/// URL.
pub fn start() -> std::io::Result<(RedisServer, String)> {
    let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()?;
    let server = RedisServer(child);
    let url = format!("redis://127.0.0.1:{port}/");
    let deadline = Instant::now() + Duration::from_secs(20);
    while redis::Client::open(url.as_str())
        .and_then(|client| client.get_connection())
        .is_err()
    {
        if Instant::now() > deadline {
            return Err(std::io::Error::other("redis-server did not start"));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((server, url))
}
