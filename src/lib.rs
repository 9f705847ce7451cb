//! interviewd: a small daemon that runs AI job interviews over WebSocket,
//! speaking the OpenAI Realtime API event protocol, and that stops cleanly,
//! fast, in every state.
//!
//! # Layout
//!
//! One OS thread runs a `smol::LocalExecutor`. Blocking work runs on named
//! threads owned by [`workers`].
//!
//! - [`server`]: the central loop; owns the session table and selects over
//!   signals, the listener, session events, finished threads, the sweeper.
//! - [`accept`]: backing off and logging when accept() runs out of descriptors.
//! - [`admission`]: handshake and session slots, in all and per address.
//! - [`budget`]: how much work a task does before it yields (fairness).
//! - [`session`]: one interview, a future owned through its `Task`; dropping
//!   the task cancels it.
//! - [`handshake`]: HTTP request parsing and the WebSocket upgrade.
//! - [`endpoints`]: the plain HTTP endpoints beside the WebSocket: the
//!   candidate's page, `/healthz`, `/readyz`, `/metrics`.
//! - [`metrics`]: the counters and histograms `/metrics` reports.
//! - [`notify`]: systemd notifications (READY, STATUS, WATCHDOG, RELOADING,
//!   STOPPING) and socket activation.
//! - [`connection`]: the client socket as the WebSocket layer reads it,
//!   one frame at a time, so that grown buffers can be shrunk.
//! - [`protocol`]: Realtime GA server events and client event parsing.
//! - [`interviewer`]: interviewer engines (scripted, the openai relay).
//! - [`upstream`]: outgoing TCP, TLS, WebSocket and HTTP connections.
//! - [`assessor`]: assessor engines (rubric, command, openai) and the report
//!   format.
//! - [`journal`]: the transcript writer thread and the transcript reader.
//! - [`recovery`]: at start, closes transcripts a crash left open.
//! - [`shutdown`]: the shutdown sequence, one linear function.
//! - [`signals`]: the signal-hook thread.
//! - [`tls`]: the listener's TLS configuration (certificate, key, reload).
//! - [`workers`], [`children`]: thread and child-process ownership.
//! - [`config`], [`script`]: the configuration file and interview scripts.
//! - [`client`]: the terminal client.
//! - [`exit`]: exit statuses.
//! - [`ratelog`]: rate-limited logging for lines an outsider can trigger.
//!
//! docs/architecture.md tells the same story at more length.

pub mod accept;
pub mod admission;
pub mod assessor;
pub mod budget;
pub mod children;
pub mod client;
pub mod config;
pub mod connection;
pub mod endpoints;
pub mod exit;
pub mod fsutil;
pub mod handshake;
pub mod ids;
pub mod interviewer;
pub mod invites;
pub mod journal;
pub mod logger;
pub mod metrics;
pub mod notify;
pub mod protocol;
pub mod ratelog;
pub mod reassess;
pub mod recovery;
pub mod rlimit;
pub mod script;
pub mod server;
pub mod session;
pub mod shutdown;
pub mod signals;
pub mod tls;
pub mod upstream;

pub mod workers;
