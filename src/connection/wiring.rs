//! How a connection starts: [`start`] wires the actor, its mailbox, its
//! outbound buffer and its reader together; [`Edge`] is what an
//! [`Address`](crate::Address) keeps of it; [`Settings`] the part of the
//! config it reads.

use std::{
    cell::RefCell,
    collections::VecDeque,
    rc::Rc,
    sync::Arc,
    time::{Duration, Instant},
};

use actix::{Addr, AsyncContext, Context};
use actix_web::error::PayloadError;
use bytes::Bytes;
use futures::Stream;

use super::{
    engine::{Engine, Wakers},
    reader::Reader,
    Connection, Phase, TimerQueue,
};
use crate::{
    admission::Admission,
    budget::Hold,
    command::{ActorAddress, Commands, Link},
    config::{BackpressurePolicy, Config},
    deflate::Agreed,
    driver::Driver,
    inbound::{Inbound, Limits},
    line::{Line, LineWriter},
    outbound::{BodyStream, Outbound},
    socket::Socket,
};

/// Starts the actor for one upgraded connection; returns what its
/// [`Address`](crate::Address) needs, its socket and the body of its 101
/// response. On a [`Line`] (the connection reads it through `payload` and
/// writes it itself) there is no body.
pub(crate) fn start<L, S>(
    driver: Box<dyn Driver<L>>,
    config: Config,
    admission: Admission,
    deflate: Option<Agreed>,
    payload: S,
    line: Option<Rc<Line>>,
) -> (Edge<L>, Socket, Option<BodyStream>)
where
    L: 'static,
    S: Stream<Item = Result<Bytes, PayloadError>> + Unpin + 'static,
{
    let mut ctx = Context::<Connection<L>>::new();
    let address = ctx.address();
    let timers_in = Arc::new(TimerQueue::new());
    let edge = || Edge {
        address: address.clone(),
        timers: Arc::clone(&timers_in),
    };
    let link = Link::new(
        ActorAddress::new(edge(), std::any::type_name::<L>()),
        config.max_outbound_buffer,
        config.backpressure == BackpressurePolicy::Close,
    );
    let commands = Commands::new(Arc::clone(&link));
    let out = Rc::new(RefCell::new(Outbound::new(
        Arc::clone(&link),
        deflate.clone(),
        config.low_water_mark,
        config.idle_timeout.is_some(),
    )));
    let body = BodyStream::new(Rc::clone(&out));
    // On a socket of its own, the connection writes it too, after reading
    // in the same turn; otherwise the body goes to actix-http, and runs the
    // actor (`engine`).
    let owns_socket = line.is_some();
    let wakers = (!owns_socket).then(Wakers::new);
    ctx.spawn(Reader {
        payload,
        commands,
        pace: None,
        payload_waker: wakers.as_ref().map(Wakers::payload_waker),
    });
    let body = match line {
        Some(line) => {
            ctx.spawn(LineWriter::new(line, body));
            None
        }
        None => Some(body),
    };
    let connection = Connection {
        driver,
        socket: Socket::new(link),
        out,
        inbound: Inbound::new(
            Limits::of(&config),
            deflate,
            Hold::new(admission.budget.clone()),
        ),
        settings: Settings::of(config, owns_socket),
        admission,
        phase: Phase::Open,
        pending: None,
        waiting: VecDeque::new(),
        waiting_work: 0,
        held_bytes: 0,
        refused: 0,
        timers: Vec::new(),
        timers_in: Arc::clone(&timers_in),
        last_seen: Instant::now(),
    };
    let socket = connection.socket.clone();
    let edge = edge();
    let body = match (body, wakers) {
        (Some(mut body), Some(wakers)) => {
            body.drive(Engine::start(ctx.into_future(connection), wakers));
            Some(body)
        }
        _ => {
            ctx.run(connection);
            None
        }
    };
    (edge, socket, body)
}

/// What an [`Address<L>`](crate::Address) holds of its connection: the
/// actor's address, for typed messages, and the queue its timer requests go
/// through, both typed by the listener.
pub(crate) struct Edge<L: 'static> {
    pub(crate) address: Addr<Connection<L>>,
    pub(crate) timers: Arc<TimerQueue<L>>,
}

/// The part of [`Config`] a running connection reads: kept instead of the
/// whole config, because every byte here is paid by every idle connection.
pub(super) struct Settings {
    pub(super) high_water_mark: usize,
    pub(super) max_queued_messages: usize,
    pub(super) close_timeout: Duration,
    pub(super) keepalive: Option<Duration>,
    pub(super) idle_timeout: Option<Duration>,
    /// The connection writes its own socket ([`LineWriter`]): it stops
    /// once the writer is done, not before.
    pub(super) owns_socket: bool,
}

impl Settings {
    pub(super) fn of(config: Config, owns_socket: bool) -> Settings {
        Settings {
            high_water_mark: config.high_water_mark,
            max_queued_messages: config.max_queued_messages,
            close_timeout: config.close_timeout,
            keepalive: config.keepalive,
            idle_timeout: config.idle_timeout,
            owns_socket,
        }
    }
}
