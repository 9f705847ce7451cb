//! The plain HTTP endpoints served on the interview port beside the
//! WebSocket at `/v1/realtime`: one file per endpoint, the shared parts
//! here.
//!
//! - [`web`]: the candidate's page (`/`, `/assets/...`; `web.enabled`).
//! - [`health`]: `/healthz` (the central loop turns) and `/readyz` (new
//!   interviews are taken).
//! - [`metrics`]: `/metrics`, in the Prometheus text format, for the
//!   addresses in `metrics.allow` or a bearer token.
//!
//! Each request is one connection's task, like a session's handshake: it
//! holds a handshake slot, it is read at the handshake's pace, and its
//! answer is written within `limits.send_timeout`. What an answer needs
//! from the session table it asks the central loop for
//! ([`crate::session::Event::Snapshot`]), so a scrape costs the loop one
//! pass over the table and a slow scraper costs nobody but itself.

use std::cell::Cell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, SystemTime};

use smol::future::FutureExt;
use smol::io::AsyncWriteExt;
use smol::Timer;

use crate::connection::Transport;
use crate::handshake::PageRequest;
use crate::session::{Env, Event};

pub mod health;
pub mod metrics;
pub mod web;

/// How long a request waits for the central loop to answer. The loop
/// answers between two wake-ups; a loop that takes longer than this is
/// not healthy.
const LOOP_ANSWER_TIMEOUT: Duration = Duration::from_secs(2);

/// What the daemon as a whole is doing, shared by the loop (which writes
/// it) and the endpoints (which read it). Single-threaded: `Cell`s.
#[derive(Debug)]
pub struct Status {
    /// Set when the shutdown sequence begins: `/readyz` answers 503.
    pub draining: Cell<bool>,
    /// When this process started (`process_start_time_seconds`).
    pub started_at: SystemTime,
    /// The previous process's shutdown, as it recorded it
    /// (`STATE/last-shutdown.json`), if there is one.
    pub last_shutdown: Option<crate::shutdown::Record>,
}

impl Status {
    pub fn new(last_shutdown: Option<crate::shutdown::Record>) -> Status {
        Status {
            draining: Cell::new(false),
            started_at: SystemTime::now(),
            last_shutdown,
        }
    }
}

/// The session table as the loop sees it, for one answer.
#[derive(Debug, Default, Clone)]
pub struct Snapshot {
    /// Sessions past their handshake, by (phase, engine).
    pub sessions: BTreeMap<(&'static str, &'static str), usize>,
    /// Connections still in their handshake (pages and probes included).
    pub handshakes: usize,
    /// Session slots taken, against `limits.max_sessions`.
    pub admitted: usize,
    pub max_sessions: usize,
}

/// Asks the central loop for a [`Snapshot`]; `None` if it does not answer
/// within [`LOOP_ANSWER_TIMEOUT`] (it is stuck, or shutting down).
async fn snapshot(env: &Env) -> Option<Snapshot> {
    if env.status.draining.get() {
        // The loop is running the shutdown sequence; it answers no more.
        return None;
    }
    let (tx, rx) = async_channel::bounded(1);
    env.events.try_send(Event::Snapshot(tx)).ok()?;
    async { rx.recv().await.ok() }
        .or(async {
            Timer::after(LOOP_ANSWER_TIMEOUT).await;
            None
        })
        .await
}

/// Answers one request and closes. The write is bounded by
/// `limits.send_timeout`: a client that does not read is let go.
pub async fn serve(mut stream: Transport, request: PageRequest, env: &Env, peer: SocketAddr) {
    let answer = match request.path.as_str() {
        "/healthz" => health::healthz(env).await,
        "/readyz" => health::readyz(env).await,
        "/metrics" => metrics::answer(env, peer, &request).await,
        _ => web::answer(&request, env.config.web.enabled),
    };
    let answer = if request.head {
        without_body(answer)
    } else {
        answer
    };
    let _ = async {
        stream.write_all(&answer).await?;
        stream.flush().await
    }
    .or(async {
        Timer::after(env.config.limits.send_timeout.0).await;
        Ok(())
    })
    .await;
}

/// A whole text answer that closes the connection.
pub fn text(status: u16, content_type: &str, body: &str) -> Vec<u8> {
    crate::handshake::typed_response(status, content_type, body).into_bytes()
}

/// The answer to a HEAD request: the same head, no body.
fn without_body(mut answer: Vec<u8>) -> Vec<u8> {
    if let Some(end) = answer.windows(4).position(|w| w == b"\r\n\r\n") {
        answer.truncate(end + 4);
    }
    answer
}
