//! The central loop: it owns the session table and selects over signals,
//! the listener, session events, finished worker threads and the sweeper's
//! timer. Nothing else touches the table, so it needs no lock.

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use async_channel::Receiver;
use smol::future::FutureExt;
use smol::net::{TcpListener, TcpStream};
use smol::{LocalExecutor, Task, Timer};

use crate::accept;
use crate::admission::{Admission, Refusal};
use crate::children::ChildGroups;
use crate::config::Config;
use crate::ids;
use crate::interviewer::openai::Settings as RelaySettings;
use crate::journal::{EndReason, Journal};
use crate::log_limited;
use crate::notify::Notifier;
use crate::ratelog;
use crate::script::Script;
use crate::session::{self, Control, Env, Event, Phase, Shared};
use crate::shutdown::{self, Shutdown};
use crate::signals::{Signal, SignalThread};
use crate::upstream::Secret;
use crate::workers::Workers;

/// One live connection in the table.
pub struct Entry {
    /// The session's future. Dropping it cancels the session.
    pub task: Task<()>,
    /// Shutdown tells the session to close its client through this.
    pub control: async_channel::Sender<Control>,
    /// Phase and activity, read by the sweeper and the shutdown log.
    pub shared: Rc<Shared>,
}

pub type Table = BTreeMap<u64, Entry>;

/// Settings given on the command line; they win over the file, on reload too.
#[derive(Debug, Default, Clone)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub state_dir: Option<PathBuf>,
    pub log_level: Option<crate::config::LogLevel>,
}

impl Overrides {
    pub fn apply(&self, mut config: Config) -> Config {
        if let Some(listen) = self.listen {
            config.server.listen = listen;
        }
        if let Some(dir) = &self.state_dir {
            config.server.state_dir = Some(dir.clone());
        }
        if let Some(level) = self.log_level {
            config.server.log_level = level;
        }
        config
    }
}

/// Everything the loop owns besides the table.
pub struct Daemon {
    pub config: Rc<Config>,
    pub config_path: Option<PathBuf>,
    pub overrides: Overrides,
    pub script: Arc<Script>,
    pub journal: Journal,
    pub workers: Rc<RefCell<Workers>>,
    pub children: ChildGroups,
    pub reports_dir: Rc<PathBuf>,
    pub signal_thread: SignalThread,
    /// Handshake and session slots; tickets held by sessions give theirs
    /// back when the sessions are dropped.
    pub admission: Rc<RefCell<Admission>>,
    /// The `openai` engine's settings (endpoint, TLS roots, key), built
    /// from the configuration when that engine is configured; rebuilt on
    /// reload. Live sessions keep the one they started with.
    pub relay: Option<Rc<RelaySettings>>,
    /// The `openai` assessor's settings, likewise.
    pub assessor_openai: Option<Rc<crate::assessor::openai::Settings>>,
    /// Live and suspended sessions by resume key (see `session::resume`).
    pub resumable: crate::session::resume::Registry,
    /// The invites; the file is re-read when it grows.
    pub invites: Rc<RefCell<crate::invites::Store>>,
    /// The listener's TLS configuration (`server.tls_cert`); re-read on
    /// SIGHUP, so that new connections get a renewed certificate.
    pub tls: Option<Arc<futures_rustls::rustls::ServerConfig>>,
    /// Tells systemd what the daemon is doing (a no-op outside systemd).
    pub notifier: Notifier,
    /// What the HTTP endpoints report; `draining` is set at shutdown.
    pub status: Rc<crate::endpoints::Status>,
    /// The token that opens `/metrics` from anywhere; re-read on SIGHUP.
    pub metrics_token: Option<Rc<Secret>>,
    /// The address served, for the status line.
    pub addr: SocketAddr,
    /// The state directory (`last-shutdown.json` is written there).
    pub state_dir: PathBuf,
}

/// The bearer token for `/metrics`: the systemd credential `metrics-token`,
/// else `metrics.token_file`, else none. The error never contains it.
pub fn metrics_token(config: &Config) -> Result<Option<Rc<Secret>>, String> {
    crate::upstream::secret(
        "metrics-token",
        config.metrics.token_file.as_deref(),
        "metrics token",
    )
    .map(|token| token.map(Rc::new))
}

/// The listener's TLS configuration, when the configuration has one.
pub fn tls_config(
    config: &Config,
) -> Result<Option<Arc<futures_rustls::rustls::ServerConfig>>, String> {
    match (&config.server.tls_cert, &config.server.tls_key) {
        (Some(cert), Some(key)) => crate::tls::server_config(cert, key)
            .map(Some)
            .map_err(|e| format!("server.tls_cert/tls_key: {e}")),
        _ => Ok(None),
    }
}

/// Builds the `openai` assessor's settings when the configuration asks for
/// that assessor. The error never contains the key.
pub fn assessor_settings(
    config: &Config,
) -> Result<Option<Rc<crate::assessor::openai::Settings>>, String> {
    if config.assessment.kind != crate::config::AssessorKind::Openai {
        return Ok(None);
    }
    let settings = crate::assessor::openai::Settings::from_config(config)
        .map_err(|e| format!("[assessment] openai: {e}"))?;
    if !settings.endpoint.secure {
        log::warn!(
            "assessment.openai_url is {} (not https://): the API key and the transcripts cross the network unencrypted; use this for local testing only",
            settings.endpoint.url
        );
    }
    Ok(Some(Rc::new(settings)))
}

/// Builds the `openai` engine's settings when the configuration asks for
/// that engine. The error never contains the key.
pub fn relay_settings(config: &Config) -> Result<Option<Rc<RelaySettings>>, String> {
    if config.interview.engine != crate::config::InterviewerKind::Openai {
        return Ok(None);
    }
    let settings = RelaySettings::from_config(config).map_err(|e| format!("[openai]: {e}"))?;
    if !settings.endpoint.secure {
        log::warn!(
            "openai.url is {} (not wss://): the API key and the interviews cross the network unencrypted; use this for local testing only",
            settings.endpoint.url
        );
    }
    Ok(Some(Rc::new(settings)))
}

/// Wake-ups the loop handles before it gives the executor back, so that a
/// burst of connections or session events cannot starve the sessions.
const LOOP_BUDGET: u32 = 64;

enum Wake {
    Signal(Option<Signal>),
    Accepted(std::io::Result<(TcpStream, SocketAddr)>),
    AcceptResume,
    Session(Event),
    WorkerDone(u64),
    Sweep,
    FlushLog,
    /// A watchdog ping or a status update is due (`notify`).
    Notify,
}

/// Serves until a terminating signal, then runs the shutdown sequence and
/// returns the process exit status.
pub async fn run(
    ex: &LocalExecutor<'_>,
    listener: TcpListener,
    signals: Receiver<Signal>,
    mut daemon: Daemon,
) -> i32 {
    let mut table = Table::new();
    // Unbounded, yet bounded by construction: a session sends one Ended,
    // and an endpoint request one Snapshot that it waits on, while holding
    // a handshake slot (limits.max_handshakes).
    let (events_tx, events) = async_channel::unbounded();
    let done_workers = daemon.workers.borrow().done_events();
    let mut next_key = 0u64;
    let mut next_sweep = Instant::now() + daemon.config.sessions.sweep_interval.0;
    let mut accept_backoff = accept::Backoff::default();
    let mut signals_alive = true;
    let mut turns = 0u32;
    // Owned here: dropped (cancelled) when the loop ends; their worker
    // threads are joined by the shutdown sequence like every assessment's.
    let _reassessing = reassess_pending(ex, &daemon);
    for found in crate::session::restore::find(
        &daemon.reports_dir.with_file_name("sessions"),
        &daemon.reports_dir,
    ) {
        let key = next_key;
        next_key += 1;
        let entry = restore_session(ex, &daemon, &events_tx, key, found);
        table.insert(key, entry);
    }
    // Bound, the journal writable, restored sessions in the table: ready.
    daemon.notifier.ready(&status_line(&table, daemon.addr));
    // Signals first, then the listener: a busy table must not delay a
    // shutdown or a new connection.
    let trigger = loop {
        turns += 1;
        if turns >= LOOP_BUDGET {
            turns = 0;
            smol::future::yield_now().await;
        }
        let notify_at = daemon.notifier.next_due();
        let wake = async {
            if !signals_alive {
                return std::future::pending().await;
            }
            Wake::Signal(signals.recv().await.ok())
        }
        .or(async {
            match accept_backoff.paused_until() {
                Some(until) => {
                    Timer::at(until).await;
                    Wake::AcceptResume
                }
                None => Wake::Accepted(listener.accept().await),
            }
        })
        .or(async { Wake::Session(events.recv().await.expect("the loop holds a sender")) })
        .or(async {
            Wake::WorkerDone(
                done_workers
                    .recv()
                    .await
                    .expect("the registry holds a sender"),
            )
        })
        .or(async {
            Timer::at(next_sweep).await;
            Wake::Sweep
        })
        .or(async {
            match ratelog::next_flush() {
                Some(at) => Timer::at(at).await,
                // Re-checked at the next wake; lines held back meanwhile
                // are flushed by then or counted in the next line.
                None => std::future::pending::<Instant>().await,
            };
            Wake::FlushLog
        })
        .or(async {
            match notify_at {
                Some(at) => Timer::at(at).await,
                None => std::future::pending::<Instant>().await,
            };
            Wake::Notify
        })
        .await;
        match wake {
            Wake::Signal(Some(Signal::Terminate(name, at))) => break (name, at),
            Wake::Signal(Some(Signal::Reload)) => {
                daemon.notifier.reloading();
                reload(&mut daemon);
                daemon.notifier.ready(&status_line(&table, daemon.addr));
            }
            Wake::Signal(Some(Signal::Stall)) => {
                // Only sent with --debug-stall-signal. Deliberately blocks
                // the executor thread: this is the stuck loop the watchdog
                // must catch.
                log::warn!(
                    "SIGUSR2 (--debug-stall-signal): blocking the central loop until killed"
                );
                loop {
                    std::thread::sleep(std::time::Duration::from_secs(3600));
                }
            }
            Wake::Signal(None) => {
                log::error!("the signal thread has stopped; signals are no longer handled");
                signals_alive = false;
            }
            Wake::Accepted(Ok((stream, peer))) => {
                accept_backoff.log_success();
                let exempt = daemon.config.server.is_trusted(peer.ip());
                let ticket = Admission::handshake(
                    &daemon.admission,
                    peer.ip(),
                    exempt,
                    &daemon.config.limits,
                );
                match ticket {
                    Ok(ticket) => {
                        let _ = stream.set_nodelay(true);
                        let key = next_key;
                        next_key += 1;
                        let entry =
                            spawn_session(ex, &daemon, &events_tx, key, stream, peer, ticket);
                        table.insert(key, entry);
                    }
                    Err(refusal) => refuse_at_once(stream, peer, refusal),
                }
            }
            Wake::Accepted(Err(e)) => {
                if accept::is_resource_exhaustion(&e) {
                    accept_backoff.log_failure(&e, Instant::now());
                } else {
                    log::debug!("accept: {e}");
                }
            }
            Wake::AcceptResume => accept_backoff.resume(),
            Wake::Session(Event::Ended(key)) => {
                table.remove(&key);
            }
            Wake::Session(Event::Snapshot(reply)) => {
                let _ = reply.try_send(snapshot(&table, &daemon));
            }
            Wake::WorkerDone(id) => daemon.workers.borrow_mut().reap(id),
            Wake::Sweep => {
                sweep(&mut table, &daemon.config);
                next_sweep = Instant::now() + daemon.config.sessions.sweep_interval.0;
            }
            Wake::FlushLog => ratelog::flush(),
            Wake::Notify => daemon
                .notifier
                .on_due(Instant::now(), || status_line(&table, daemon.addr)),
        }
    };
    daemon.status.draining.set(true);
    daemon.notifier.stopping(&format!(
        "stopping ({}): closing {} session(s)",
        trigger.0,
        table.len()
    ));
    let sequence = Shutdown {
        trigger: trigger.0,
        received: trigger.1,
        config: daemon.config.clone(),
        journal: daemon.journal.clone(),
        workers: daemon.workers.clone(),
        children: daemon.children.clone(),
        signal_thread: daemon.signal_thread,
        state_dir: daemon.state_dir.clone(),
    };
    shutdown::run(sequence, listener, table).await
}

/// Starts the assessments a stop or a crash interrupted (see `reassess`):
/// each runs as a task that writes its outcome and the end line into the
/// session's transcript.
fn reassess_pending(ex: &LocalExecutor<'_>, daemon: &Daemon) -> Vec<Task<()>> {
    let reports_dir = daemon.reports_dir.to_path_buf();
    let sessions_dir = reports_dir.with_file_name("sessions");
    let pending = crate::reassess::find(
        &sessions_dir,
        &reports_dir,
        &daemon.script,
        daemon.config.interview.scripts_dir.as_deref(),
    );
    let mut tasks = Vec::new();
    for p in pending {
        let input = crate::assessor::Input::new(
            p.session_id.clone(),
            p.candidate.clone(),
            p.script.clone(),
            p.items.iter().map(|(item, _)| item),
            p.items
                .iter()
                .filter_map(|(item, q)| q.as_deref().map(|q| (q, item.text.as_str()))),
        );
        let assessor =
            crate::assessor::Assessor::from_config(&daemon.config, daemon.assessor_openai.as_ref());
        let started = crate::assessor::start(
            &assessor,
            input,
            reports_dir.clone(),
            &daemon.workers,
            &daemon.children,
        );
        let id: Arc<str> = p.session_id.into();
        let job = match started {
            Ok(job) => job,
            Err(e) => {
                log::error!("session {id}: cannot assess it again: {e}");
                continue;
            }
        };
        log::info!("session {id}: its assessment was interrupted; assessing it again");
        let journal = daemon.journal.clone();
        let timeout = daemon.config.assessment.timeout.0;
        tasks.push(ex.spawn(async move {
            let t = Instant::now();
            let outcome = async { Some(job.result().await) }
                .or(async {
                    Timer::after(timeout).await;
                    None
                })
                .await;
            let outcome = match outcome {
                Some(outcome) => outcome,
                None => job.terminate().await.ok_or_else(|| {
                    format!(
                        "the assessment did not finish within {}",
                        humantime::format_duration(timeout)
                    )
                }),
            };
            let ms = t.elapsed().as_millis() as u64;
            crate::metrics::assessed(&outcome, t.elapsed());
            let at = crate::journal::now_rfc3339();
            match outcome {
                Ok(_) => {
                    journal.append(&id, serde_json::json!({"kind": "assessment", "outcome": "completed",
                        "report": format!("reports/{id}.json"), "duration_ms": ms, "after_restart": true, "at": at}));
                    journal.end(&id, EndReason::Completed, Some("assessed after a restart"));
                    log::info!("session {id}: assessed again in {ms} ms; report written");
                }
                Err(reason) => {
                    journal.append(&id, serde_json::json!({"kind": "assessment", "outcome": "failed",
                        "reason": reason, "duration_ms": ms, "after_restart": true, "at": at}));
                    journal.end(&id, EndReason::Error, Some("assessment failed after a restart"));
                    log::warn!("session {id}: assessment failed again: {reason}");
                }
            }
        }));
    }
    tasks
}

/// What a session gets from the daemon, as configured now.
fn session_env(daemon: &Daemon, events: &async_channel::Sender<Event>) -> Env {
    Env {
        config: daemon.config.clone(),
        script: daemon.script.clone(),
        journal: daemon.journal.clone(),
        workers: daemon.workers.clone(),
        children: daemon.children.clone(),
        reports_dir: daemon.reports_dir.clone(),
        events: events.clone(),
        admission: daemon.admission.clone(),
        relay: daemon.relay.clone(),
        assessor_openai: daemon.assessor_openai.clone(),
        tls: daemon.tls.clone(),
        invites: daemon.invites.clone(),
        resumable: daemon.resumable.clone(),
        status: daemon.status.clone(),
        metrics_token: daemon.metrics_token.clone(),
    }
}

/// The table by phase, for STATUS= and the log: "2 interviewing, 1
/// assessing, 0 suspended, 3 connecting; listening on 127.0.0.1:8765".
pub fn status_line(table: &Table, addr: SocketAddr) -> String {
    let mut n = [0usize; 5];
    for entry in table.values() {
        n[entry.shared.phase.get() as usize] += 1;
    }
    format!(
        "{} interviewing, {} assessing, {} closing, {} suspended, {} connecting; listening on {addr}",
        n[Phase::Interview as usize],
        n[Phase::Assessing as usize],
        n[Phase::Closing as usize],
        n[Phase::Suspended as usize],
        n[Phase::Handshake as usize],
    )
}

/// What the HTTP endpoints ask the loop for.
fn snapshot(table: &Table, daemon: &Daemon) -> crate::endpoints::Snapshot {
    let mut s = crate::endpoints::Snapshot {
        admitted: daemon.admission.borrow().sessions(),
        max_sessions: daemon.config.limits.max_sessions,
        ..Default::default()
    };
    for entry in table.values() {
        let phase = entry.shared.phase.get();
        match (phase, entry.shared.engine.get()) {
            (Phase::Handshake, _) | (_, None) => s.handshakes += 1,
            (phase, Some(engine)) => *s.sessions.entry((phase.as_str(), engine)).or_default() += 1,
        }
    }
    s
}

/// A session restored from its journal after a restart, in the table like
/// any other (see `session::restore`).
fn restore_session(
    ex: &LocalExecutor<'_>,
    daemon: &Daemon,
    events: &async_channel::Sender<Event>,
    key: u64,
    found: crate::session::restore::Suspended,
) -> Entry {
    let shared = Rc::new(Shared::new(found.session_id.clone()));
    let (control, control_rx) = async_channel::bounded(4);
    let task = ex.spawn(crate::session::restore::run(
        key,
        shared.clone(),
        session_env(daemon, events),
        found,
        (control.clone(), control_rx),
    ));
    Entry {
        task,
        control,
        shared,
    }
}

/// A connection over a handshake limit is closed at once: holding it, even
/// to read its request, is what a slowloris wants. Over the per-address
/// limit it is first told 429, if the socket takes the answer at once.
fn refuse_at_once(stream: TcpStream, peer: SocketAddr, refusal: Refusal) {
    if refusal == Refusal::HandshakesPerIp {
        use std::os::fd::AsRawFd;
        let answer = crate::handshake::response(429, "too many connections from your address\n");
        // SAFETY: the descriptor is open (we own `stream`) and the buffer
        // outlives the call. MSG_DONTWAIT: never block the loop.
        unsafe {
            libc::send(
                stream.as_raw_fd(),
                answer.as_ptr().cast(),
                answer.len(),
                libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL,
            )
        };
    }
    log_limited!(
        log::Level::Warn,
        "refused",
        "closed a connection from {peer} at once: {refusal}"
    );
}

fn spawn_session(
    ex: &LocalExecutor<'_>,
    daemon: &Daemon,
    events: &async_channel::Sender<Event>,
    key: u64,
    stream: TcpStream,
    peer: SocketAddr,
    handshake: crate::admission::Ticket,
) -> Entry {
    let shared = Rc::new(Shared::new(ids::session_id()));
    // Room for a takeover and a shutdown notice at once.
    let (control, control_rx) = async_channel::bounded(4);
    let env = session_env(daemon, events);
    let task = ex.spawn(session::run(
        key,
        shared.clone(),
        env,
        stream,
        peer,
        handshake,
        (control.clone(), control_rx),
    ));
    Entry {
        task,
        control,
        shared,
    }
}

/// Lets go of clients that have been silent for `sessions.idle_timeout`:
/// sessions mid-interview are told (they suspend, and can be resumed);
/// connections still in their handshake are dropped. Sessions being
/// assessed are left alone: they end when the assessment does, within
/// `assessment.timeout`.
fn sweep(table: &mut Table, config: &Config) {
    let idle_timeout = config.sessions.idle_timeout.0;
    let stale: Vec<u64> = table
        .iter()
        .filter(|(_, e)| matches!(e.shared.phase.get(), Phase::Interview | Phase::Handshake))
        .filter(|(_, e)| e.shared.last_activity.get().elapsed() >= idle_timeout)
        .map(|(&key, _)| key)
        .collect();
    for key in stale {
        let Some(entry) = table.get(&key) else {
            continue;
        };
        let idle = entry.shared.last_activity.get().elapsed();
        log::info!(
            "session {}: stale (no client activity for {} s)",
            entry.shared.id,
            idle.as_secs()
        );
        if entry.shared.phase.get() == Phase::Interview
            && entry.control.try_send(Control::Stale).is_ok()
        {
            continue;
        }
        if let Some(entry) = table.remove(&key) {
            entry.shared.cancel_reason.set(EndReason::Stale);
            drop(entry.task); // cancels the session; its guard writes the end line
        }
    }
}

/// SIGHUP: re-reads the configuration file. Live sessions keep what they
/// started with; new sessions get the new script, limits and timings.
fn reload(daemon: &mut Daemon) {
    let Some(path) = daemon.config_path.clone() else {
        log::warn!("SIGHUP: no --config file was given; nothing to reload");
        return;
    };
    let config = match Config::load(&path) {
        Ok(c) => daemon.overrides.apply(c),
        Err(e) => {
            log::error!("SIGHUP: reload refused, keeping the current configuration: {e}");
            return;
        }
    };
    for (key, same) in [
        (
            "server.listen",
            config.server.listen == daemon.config.server.listen,
        ),
        (
            "server.state_dir",
            config.server.state_dir == daemon.config.server.state_dir,
        ),
    ] {
        if !same {
            log::error!("SIGHUP: reload refused: `{key}` cannot change without a restart");
            return;
        }
    }
    let script = match Script::load(config.interview.script.as_deref()) {
        Ok(s) => s,
        Err(e) => {
            log::error!("SIGHUP: reload refused, keeping the current configuration: {e}");
            return;
        }
    };
    let relay = match relay_settings(&config) {
        Ok(relay) => relay,
        Err(e) => {
            log::error!("SIGHUP: reload refused, keeping the current configuration: {e}");
            return;
        }
    };
    let assessor_openai = match assessor_settings(&config) {
        Ok(settings) => settings,
        Err(e) => {
            log::error!("SIGHUP: reload refused, keeping the current configuration: {e}");
            return;
        }
    };
    let metrics_token = match metrics_token(&config) {
        Ok(token) => token,
        Err(e) => {
            log::error!("SIGHUP: reload refused, keeping the current configuration: [metrics] {e}");
            return;
        }
    };
    let tls = match tls_config(&config) {
        Ok(tls) => tls,
        Err(e) => {
            log::error!(
                "SIGHUP: reload refused, keeping the current configuration and certificate: {e}"
            );
            return;
        }
    };
    if tls.is_some() != daemon.tls.is_some() {
        log::error!(
            "SIGHUP: reload refused: TLS cannot be turned on or off without a restart (server.tls_cert)"
        );
        return;
    }
    if tls.is_some() {
        log::info!("SIGHUP: TLS certificate re-read; new connections get it");
    }
    let token_changed = match (&daemon.metrics_token, &metrics_token) {
        (None, None) => false,
        (Some(old), Some(new)) => !old.matches(new.expose()),
        _ => true,
    };
    daemon.tls = tls;
    daemon.metrics_token = metrics_token;
    daemon.relay = relay;
    daemon.assessor_openai = assessor_openai;
    let mut changed = changed_keys(&daemon.config, &config);
    if script != *daemon.script {
        changed.push("interview script contents".into());
    }
    if token_changed {
        changed.push("metrics token".into());
    }
    log::set_max_level(config.server.log_level.filter());
    if let Some(nofile) = crate::rlimit::nofile() {
        crate::rlimit::warn_if_short(&config.limits, nofile);
    }
    daemon.config = Rc::new(config);
    daemon.script = Arc::new(script);
    if changed.is_empty() {
        log::info!("SIGHUP: configuration reloaded, nothing changed");
    } else {
        log::info!(
            "SIGHUP: configuration reloaded; changed: {}",
            changed.join(", ")
        );
    }
}

/// The dotted keys whose values differ between two configurations.
fn changed_keys(old: &Config, new: &Config) -> Vec<String> {
    let flatten = |c: &Config| -> BTreeMap<String, String> {
        let value: toml::Table = toml::from_str(&c.to_toml()).expect("own TOML parses");
        let mut out = BTreeMap::new();
        for (section, table) in value {
            if let toml::Value::Table(t) = table {
                for (key, v) in t {
                    out.insert(format!("{section}.{key}"), v.to_string());
                }
            }
        }
        out
    };
    let (a, b) = (flatten(old), flatten(new));
    let mut keys: Vec<String> = a.keys().chain(b.keys()).cloned().collect();
    keys.sort();
    keys.dedup();
    keys.into_iter().filter(|k| a.get(k) != b.get(k)).collect()
}
