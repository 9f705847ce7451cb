//! The `interviewd` command. Every error becomes an exit status here, in
//! one place (see `exit`).

use std::cell::RefCell;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use smol::LocalExecutor;

use interviewd::children::ChildGroups;
use interviewd::config::{Config, LogLevel};
use interviewd::journal::Journal;
use interviewd::script::Script;
use interviewd::server::{self, Daemon, Overrides};
use interviewd::workers::Workers;
use interviewd::{client, exit, logger, rlimit, signals};

/// State directory when neither the config, the command line nor systemd
/// (`$STATE_DIRECTORY`) names one.
const DEFAULT_STATE_DIR: &str = "./interviewd-state";

#[derive(Parser)]
#[command(
    name = "interviewd",
    version,
    propagate_version = true,
    about = "An AI job-interview daemon that stops cleanly"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Serve {
        /// Configuration file (TOML); without it, the embedded defaults.
        #[arg(long, value_name = "FILE")]
        config: Option<PathBuf>,
        /// Address to listen on, e.g. 127.0.0.1:8765 (port 0: any free port).
        #[arg(long, value_name = "ADDR")]
        listen: Option<SocketAddr>,
        /// Where transcripts and reports are kept.
        #[arg(long, value_name = "DIR")]
        state_dir: Option<PathBuf>,
        /// error, warn, info, debug or trace.
        #[arg(long, value_name = "LEVEL")]
        log_level: Option<LogLevel>,
        /// Testing only: SIGUSR2 then blocks the central loop for good, so
        /// that a test can check that systemd's watchdog catches it.
        #[arg(long, hide = true)]
        debug_stall_signal: bool,
    },
    /// Take an interview in the terminal.
    Client {
        /// The daemon's Realtime endpoint.
        #[arg(default_value = "ws://127.0.0.1:8765/v1/realtime")]
        url: String,
    },
    /// Parse and validate a configuration file, then print the effective configuration.
    CheckConfig {
        /// The configuration file.
        file: PathBuf,
        /// Print nothing when the file is valid (for `ExecReload=`).
        #[arg(long, short)]
        quiet: bool,
        /// Do not read the API key or the metrics token (systemd 252 gives
        /// `ExecReload=` no credentials; the daemon still reads them when
        /// it reloads, and refuses the reload without them).
        #[arg(long)]
        skip_secrets: bool,
    },
    /// Create, list and revoke candidate invites (access.mode = "invite").
    Invite {
        /// The daemon's configuration file (for the state directory, the
        /// scripts directory and the address in links).
        #[arg(long, value_name = "FILE", global = true)]
        config: Option<PathBuf>,
        /// The daemon's state directory, if not the configuration's.
        #[arg(long, value_name = "DIR", global = true)]
        state_dir: Option<PathBuf>,
        #[command(subcommand)]
        action: InviteAction,
    },
}

#[derive(Subcommand)]
enum InviteAction {
    /// Create an invite; prints its token and link once (they are stored
    /// only as a hash).
    Create {
        /// A script in interview.scripts_dir (NAME.toml); default: the
        /// configured script.
        #[arg(long)]
        script: Option<String>,
        /// Who is invited, e.g. "Ada Lovelace <ada@example.com>".
        #[arg(long)]
        candidate: Option<String>,
        /// How long the invite is valid, e.g. 7d, 36h.
        #[arg(long, default_value = "7d")]
        expires: humantime::Duration,
        /// How many interviews it may start.
        #[arg(long, default_value_t = 1)]
        uses: u32,
        /// The public base URL for the link, e.g. https://interviews.example.com
        #[arg(long, value_name = "URL")]
        base_url: Option<String>,
    },
    /// List invites (never their tokens).
    List,
    /// Revoke an invite by its id (inv_...).
    Revoke { id: String },
}

fn main() {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // --help and --version arrive here too, on stdout, and succeed.
            let _ = e.print();
            std::process::exit(if e.use_stderr() {
                exit::USAGE
            } else {
                exit::OK
            });
        }
    };
    let status = match cli.command {
        Command::Serve {
            config,
            listen,
            state_dir,
            log_level,
            debug_stall_signal,
        } => {
            let overrides = Overrides {
                listen,
                state_dir,
                log_level,
            };
            match serve(config, overrides, debug_stall_signal) {
                Ok(status) => status,
                Err(e) => {
                    log::error!("{e}");
                    exit::FAILURE
                }
            }
        }
        Command::Client { url } => client::run(&url),
        Command::CheckConfig {
            file,
            quiet,
            skip_secrets,
        } => {
            if skip_secrets {
                interviewd::upstream::SECRETS_UNCHECKED
                    .store(true, std::sync::atomic::Ordering::Relaxed);
            }
            check_config(&file, quiet)
        }
        Command::Invite {
            config,
            state_dir,
            action,
        } => invite(config, state_dir, action),
    };
    std::process::exit(status);
}

fn check_config(file: &Path, quiet: bool) -> i32 {
    let checked = Config::load(file).and_then(|config| {
        Script::load(config.interview.script.as_deref()).map_err(|e| {
            interviewd::config::ConfigError::Invalid {
                key: "interview.script",
                message: e.to_string(),
            }
        })?;
        interviewd::server::tls_config(&config).map_err(|message| {
            interviewd::config::ConfigError::Invalid {
                key: "server.tls_cert",
                message,
            }
        })?;
        interviewd::server::assessor_settings(&config).map_err(|message| {
            interviewd::config::ConfigError::Invalid {
                key: "assessment",
                message,
            }
        })?;
        interviewd::server::relay_settings(&config).map_err(|message| {
            interviewd::config::ConfigError::Invalid {
                key: "openai",
                message,
            }
        })?;
        interviewd::server::metrics_token(&config).map_err(|message| {
            interviewd::config::ConfigError::Invalid {
                key: "metrics.token_file",
                message,
            }
        })?;
        Ok(config)
    });
    match checked {
        Ok(_) if quiet => exit::OK,
        Ok(mut config) => {
            // What the daemon will use, resolved as it resolves it.
            let explicit = config.server.state_dir.is_some();
            config.server.state_dir = Some(state_dir(&config));
            let mut out = config.to_toml();
            // TOML has no null: say what the keys left unset mean.
            if !explicit {
                out.push_str(&format!(
                    "# server.state_dir is not in the file: $STATE_DIRECTORY if set, else {DEFAULT_STATE_DIR} (relative to the working directory)\n"
                ));
            }
            if config.interview.script.is_none() {
                out.push_str("# interview.script unset: the built-in script\n");
            }
            // Written, not printed: `check-config | head` closes the pipe
            // early, and that is not an error worth a panic.
            use std::io::Write;
            let _ = std::io::stdout().lock().write_all(out.as_bytes());
            exit::OK
        }
        Err(e) => {
            eprintln!("interviewd: {e}");
            exit::FAILURE
        }
    }
}

/// Pending connections the kernel may queue before accept().
const LISTEN_BACKLOG: libc::c_int = 4096;

/// `interviewd invite ...`: works on the state directory's invites file,
/// while the daemon runs or not.
fn invite(
    config_path: Option<PathBuf>,
    state_dir_arg: Option<PathBuf>,
    action: InviteAction,
) -> i32 {
    use interviewd::invites;
    let config = match &config_path {
        Some(path) => match Config::load(path) {
            Ok(c) => c,
            Err(e) => {
                eprintln!("interviewd: {e}");
                return exit::FAILURE;
            }
        },
        None => Config::default(),
    };
    let dir = state_dir_arg.unwrap_or_else(|| state_dir(&config));
    let fail = |e: String| {
        eprintln!("interviewd: {e}");
        exit::FAILURE
    };
    match action {
        InviteAction::Create {
            script,
            candidate,
            expires,
            uses,
            base_url,
        } => {
            if uses == 0 {
                return fail("--uses must be at least 1".into());
            }
            if let Some(name) = &script {
                let path = interviewd::session::admit::named_script_path(
                    config.interview.scripts_dir.as_deref(),
                    name,
                )
                .and_then(|p| {
                    Script::load(Some(&p))
                        .map(|_| ())
                        .map_err(|e| e.to_string())
                });
                if let Err(e) = path {
                    return fail(format!("--script {name}: {e}"));
                }
            }
            if candidate
                .as_ref()
                .is_some_and(|c| c.len() > 500 || c.chars().any(char::is_control))
            {
                return fail("--candidate must be one line of at most 500 bytes".into());
            }
            let (token, invite) = match invites::create(&dir, script, candidate, *expires, uses) {
                Ok(created) => created,
                Err(e) => {
                    return fail(format!(
                        "cannot write {}: {e}",
                        dir.join(invites::FILE).display()
                    ))
                }
            };
            let secure = config.server.tls_cert.is_some();
            let base = base_url.unwrap_or_else(|| {
                format!(
                    "{}://{}",
                    if secure { "https" } else { "http" },
                    config.server.listen
                )
            });
            let base = base.trim_end_matches('/');
            let ws_base = base
                .replacen("https://", "wss://", 1)
                .replacen("http://", "ws://", 1);
            println!(
                "invite {} for {}, {} use(s), expires {}",
                invite.id,
                invite.candidate.as_deref().unwrap_or("anyone holding it"),
                invite.uses,
                humantime::format_rfc3339_seconds(
                    std::time::UNIX_EPOCH + std::time::Duration::from_secs(invite.expires_at)
                )
            );
            println!("token:     {token}");
            println!("link:      {base}/#invite={token}");
            println!("websocket: {ws_base}/v1/realtime  (Authorization: Bearer {token})");
            println!("The token is shown once: only its hash is stored.");
            exit::OK
        }
        InviteAction::List => {
            let (all, revoked) = match invites::read_all(&dir) {
                Ok(r) => r,
                Err(e) => {
                    return fail(format!(
                        "cannot read {}: {e}",
                        dir.join(invites::FILE).display()
                    ))
                }
            };
            let used = invites::uses(&dir);
            let now = invites::now();
            for i in &all {
                let n = used.get(&i.id).copied().unwrap_or(0);
                let status = if revoked.contains_key(&i.id) {
                    "revoked"
                } else if n >= i.uses {
                    "used"
                } else if now >= i.expires_at {
                    "expired"
                } else {
                    "active"
                };
                println!(
                    "{}  {:8}  {}/{} used  expires {}  script {}  {}",
                    i.id,
                    status,
                    n,
                    i.uses,
                    humantime::format_rfc3339_seconds(
                        std::time::UNIX_EPOCH + std::time::Duration::from_secs(i.expires_at)
                    ),
                    i.script.as_deref().unwrap_or("(default)"),
                    i.candidate.as_deref().unwrap_or("")
                );
            }
            if all.is_empty() {
                println!("no invites in {}", dir.display());
            }
            exit::OK
        }
        InviteAction::Revoke { id } => match invites::revoke(&dir, &id) {
            Ok(true) => {
                println!("invite {id} revoked");
                exit::OK
            }
            Ok(false) => fail(format!("no invite `{id}` in {}", dir.display())),
            Err(e) => fail(format!("cannot revoke: {e}")),
        },
    }
}

/// Startup errors, with what was being attempted.
type StartError = String;

fn serve(
    config_path: Option<PathBuf>,
    mut overrides: Overrides,
    debug_stall: bool,
) -> Result<i32, StartError> {
    // A write past RLIMIT_FSIZE must fail with EFBIG, which the journal
    // reports, rather than kill the daemon with SIGXFSZ.
    // SAFETY: setting a signal's disposition to SIG_IGN has no preconditions.
    unsafe { libc::signal(libc::SIGXFSZ, libc::SIG_IGN) };
    // Logging starts before the configuration is read, so that every
    // startup error goes to the same place (stderr, or the journal).
    logger::init(overrides.log_level.unwrap_or(LogLevel::Info).filter());
    // Before any thread starts: this edits the environment.
    let activated = interviewd::notify::activated_listener()?;
    if let Some(listener) = &activated {
        // The socket unit decides the address; the configuration is checked
        // (access rules) against it, and a reload keeps it.
        overrides.listen = Some(listener.local_addr().map_err(|e| e.to_string())?);
    }
    let notifier = interviewd::notify::Notifier::from_env();
    let config = match &config_path {
        Some(path) => Config::load(path).map_err(|e| e.to_string())?,
        None => Config::default(),
    };
    let config = overrides.apply(config);
    // The command line may have moved the address: the access rules are
    // checked again against the one the daemon will use.
    config.validate().map_err(|e| e.to_string())?;
    log::set_max_level(config.server.log_level.filter());
    let script = Script::load(config.interview.script.as_deref()).map_err(|e| e.to_string())?;

    let state_dir = state_dir(&config);
    let reports_dir = state_dir.join("reports");
    // The state directory and everything in it is the daemon's alone.
    interviewd::fsutil::private_dir(&state_dir)
        .and_then(|()| interviewd::fsutil::private_dir(&reports_dir))
        .map_err(|e| {
            format!(
                "cannot create state directory {}: {e}",
                reports_dir.display()
            )
        })?;
    match rlimit::raise_nofile() {
        Ok((old, new)) if old != new => log::info!("open-file limit raised from {old} to {new}"),
        Ok((_, new)) => log::info!("open-file limit is {new}"),
        Err(e) => log::warn!("cannot raise the open-file limit: {e}"),
    }
    if let Some(nofile) = rlimit::nofile() {
        rlimit::warn_if_short(&config.limits, nofile);
    }
    // glibc raises its mmap threshold to the largest block freed, after
    // which large blocks (a 256 KiB client frame, a report) come from the
    // heap and their pages stay with the process after they are freed.
    // A fixed threshold keeps large blocks in their own mappings, returned
    // to the system as soon as they are freed.
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only changes an allocator setting.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 128 * 1024);
    }

    let workers = Rc::new(RefCell::new(Workers::default()));
    let children = ChildGroups::default();
    let (signal_rx, signal_thread) =
        signals::start(&mut workers.borrow_mut(), children.clone(), debug_stall)
            .map_err(|e| format!("cannot install signal handlers: {e}"))?;
    let sessions_dir = state_dir.join("sessions");
    let journal = Journal::start(sessions_dir.clone(), &mut workers.borrow_mut()).map_err(|e| {
        format!(
            "cannot start the journal in {}: {e}",
            sessions_dir.display()
        )
    })?;

    // Ready means transcripts can be written: a read-only or full state
    // directory fails the start here, not the first interview.
    interviewd::fsutil::check_writable(&sessions_dir).map_err(|e| {
        format!(
            "the state directory is not writable: {}: {e}",
            sessions_dir.display()
        )
    })?;

    let relay = server::relay_settings(&config)?;
    let assessor_openai = server::assessor_settings(&config)?;
    let tls = server::tls_config(&config)?;
    let metrics_token = server::metrics_token(&config).map_err(|e| format!("[metrics] {e}"))?;

    let (listener, activated) = match activated {
        Some(listener) => (listener, true),
        None => (
            std::net::TcpListener::bind(config.server.listen)
                .map_err(|e| format!("cannot listen on {}: {e}", config.server.listen))?,
            false,
        ),
    };
    let addr = listener.local_addr().map_err(|e| e.to_string())?;
    // std listens with a backlog of 128: a burst of connections (a flood,
    // or clients reconnecting after a restart) would overflow it and the
    // kernel would drop SYNs, delaying legitimate clients by a second or
    // more. The kernel caps this at net.core.somaxconn.
    // (A socket from systemd keeps the unit's Backlog=.)
    if !activated {
        use std::os::fd::AsRawFd;
        // SAFETY: listen() on a socket we own; calling it again on a
        // listening socket only changes the backlog.
        unsafe { libc::listen(listener.as_raw_fd(), LISTEN_BACKLOG) };
    }
    let listener = smol::net::TcpListener::try_from(listener)
        .map_err(|e| format!("cannot listen on {addr}: {e}"))?;

    let daemon = Daemon {
        config: Rc::new(config),
        config_path,
        overrides,
        script: Arc::new(script),
        journal,
        workers,
        children,
        reports_dir: Rc::new(reports_dir),
        signal_thread,
        admission: Default::default(),
        relay,
        assessor_openai,
        tls,
        resumable: Default::default(),
        invites: Rc::new(RefCell::new(interviewd::invites::Store::open(
            &state_dir,
            &sessions_dir,
        ))),
        notifier,
        status: Rc::new(interviewd::endpoints::Status::new(
            interviewd::shutdown::Record::read(&state_dir),
        )),
        metrics_token,
        addr,
        state_dir: state_dir.clone(),
    };
    log::info!(
        "interviewd {} state in {}, transcripts in {}",
        env!("CARGO_PKG_VERSION"),
        state_dir.display(),
        sessions_dir.display()
    );
    if let Some(cert) = daemon
        .config
        .server
        .tls_cert
        .as_ref()
        .filter(|_| daemon.tls.is_some())
    {
        log::info!(
            "TLS: serving wss:// and https:// only, certificate {}",
            cert.display()
        );
    }
    match daemon.config.access_mode() {
        interviewd::config::AccessMode::Invite => {
            log::info!("access: invite (sessions need an invite token; `interviewd invite create`)")
        }
        interviewd::config::AccessMode::Open if addr.ip().is_loopback() => {
            log::info!("access: open (loopback only)")
        }
        interviewd::config::AccessMode::Open => log::warn!(
            "access: open on {addr} (access.allow_open_on_public): anyone who can reach it can start an interview"
        ),
    }
    if activated {
        log::info!("socket activation: serving the socket systemd passed (interviewd.socket); server.listen is not used");
    }
    log::info!("listening on {addr}");
    let ex = LocalExecutor::new();
    Ok(smol::block_on(
        ex.run(server::run(&ex, listener, signal_rx, daemon)),
    ))
}

/// The command line or config file wins; then systemd's `$STATE_DIRECTORY`
/// (its first entry); then the default.
fn state_dir(config: &Config) -> PathBuf {
    if let Some(dir) = &config.server.state_dir {
        return dir.clone();
    }
    if let Some(dirs) = std::env::var_os("STATE_DIRECTORY") {
        if let Some(first) = dirs.to_string_lossy().split(':').find(|d| !d.is_empty()) {
            return PathBuf::from(first);
        }
    }
    PathBuf::from(DEFAULT_STATE_DIR)
}
