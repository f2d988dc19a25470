//! `SO_REUSEPORT` listeners: several server processes on one address.
//!
//! This module owns one helper that binds a TCP listener other processes
//! may bind too, for [`HttpServer::listen`](actix_web::HttpServer::listen).
//! The kernel then spreads new connections over every process listening on
//! the port. It knows nothing of WebSocket, actors or clusters; joining the
//! processes' sockets is the job of a cluster group (feature `redis`).

use std::{io, net::SocketAddr};

use socket2::{Domain, Protocol, Socket, Type};

/// Binds a TCP listener on `addr` with `SO_REUSEPORT` (and `SO_REUSEADDR`)
/// set, listening with a queue of `backlog` pending connections.
///
/// Every process (or thread) that binds the same address this way gets its
/// own accept queue, and the kernel hashes each new connection to one of
/// them, so `N` server processes share one port without a proxy in front.
/// Hand the listener to [`HttpServer::listen`](actix_web::HttpServer::listen)
/// or [`WsServer::listen`](crate::WsServer::listen), which ignore
/// [`HttpServer::backlog`](actix_web::HttpServer::backlog) for listeners
/// they did not bind: pass the backlog here instead (actix-web's
/// default is 1,024 per listener; a burst of handshakes wants more).
///
/// A connection lands in one process only, so a broadcast that must reach
/// every client goes through a group the processes share (`Cluster::group`,
/// feature `redis`), not a [`Group`](crate::Group) made with `Group::new`,
/// which knows this process's members only.
///
/// Only on Unix (Linux, the BSDs, macOS); on Linux every process must run
/// as the same user, so that another user cannot steal the port's traffic.
///
/// # Errors
///
/// Whatever the operating system refuses: the socket option is not
/// supported, the address is taken by a listener without `SO_REUSEPORT`,
/// or binding is not permitted.
///
/// # Example
///
/// Each of several processes runs this; they all listen on port 8080:
///
/// ```no_run
/// use actix_web::{web, App, HttpServer, Responder};
/// use actix_ws_listener::{reuse_port_listener, Listener, Message, Socket, WebSocketUpgrade};
///
/// struct Echo;
/// impl Listener for Echo {
///     fn on_message(&mut self, socket: &Socket, message: Message) {
///         if let Err(error) = socket.send(message) {
///             log::debug!("echo not sent: {error}");
///         }
///     }
/// }
///
/// async fn ws(upgrade: WebSocketUpgrade) -> impl Responder {
///     upgrade.listen(Echo)
/// }
///
/// #[actix_web::main]
/// async fn main() -> std::io::Result<()> {
///     let listener = reuse_port_listener("0.0.0.0:8080".parse().unwrap(), 4096)?;
///     HttpServer::new(|| App::new().route("/ws", web::get().to(ws)))
///         .listen(listener)?
///         .run()
///         .await
/// }
/// ```
pub fn reuse_port_listener(addr: SocketAddr, backlog: i32) -> io::Result<std::net::TcpListener> {
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    // A restarted process may bind while old connections sit in TIME_WAIT.
    socket.set_reuse_address(true)?;
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(backlog)?;
    Ok(socket.into())
}

#[cfg(test)]
mod tests {
    use super::reuse_port_listener;

    #[test]
    fn two_listeners_share_one_port() {
        let first = reuse_port_listener("127.0.0.1:0".parse().unwrap(), 16).unwrap();
        let addr = first.local_addr().unwrap();
        let second = reuse_port_listener(addr, 16).unwrap();
        assert_eq!(second.local_addr().unwrap(), addr);
        // Without SO_REUSEPORT the same bind is refused.
        assert!(std::net::TcpListener::bind(addr).is_err());
    }
}
