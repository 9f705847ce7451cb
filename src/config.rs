//! The configuration file: a TOML document in which every key has a default.
//!
//! Unknown keys and bad values are errors that name the key, so a typo in
//! production fails loudly at `check-config` or at startup instead of being
//! silently ignored. The effective configuration can be printed back as TOML.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The whole configuration, as read from the file with defaults filled in.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    pub server: Server,
    pub interview: Interview,
    pub assessment: Assessment,
    pub sessions: Sessions,
    pub limits: Limits,
    pub shutdown: Shutdown,
    pub openai: OpenAi,
    pub access: Access,
    pub web: Web,
    pub metrics: Metrics,
}

/// `[metrics]`: who may read `GET /metrics`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Metrics {
    /// Client addresses (IPs or CIDR blocks) that may read the metrics.
    /// Behind a trusted proxy the client is the one `X-Forwarded-For`
    /// names, so a proxy on loopback does not open them to the world.
    pub allow: Vec<Cidr>,
    /// A file holding a bearer token that opens the metrics from any
    /// address (`Authorization: Bearer TOKEN`); the systemd credential
    /// `metrics-token` wins over it.
    pub token_file: Option<PathBuf>,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics {
            allow: vec![
                "127.0.0.0/8".parse().expect("valid literal"),
                "::1".parse().expect("valid literal"),
            ],
            token_file: None,
        }
    }
}

/// `[web]`: the candidate's page.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Web {
    /// Serve the page at `/` (off for headless deployments).
    pub enabled: bool,
}

impl Default for Web {
    fn default() -> Self {
        Web { enabled: true }
    }
}

/// `[access]`: who may start an interview.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct Access {
    /// `open` or `invite`. Unset: `open` while `server.listen` is loopback,
    /// `invite` otherwise ([`Config::access_mode`]).
    pub mode: Option<AccessMode>,
    /// Allows `mode = "open"` on a non-loopback address: an explicit choice.
    pub allow_open_on_public: bool,
    /// Browser origins allowed to open a session (`https://host[:port]`);
    /// empty: any. Clients that send no `Origin` are judged by their token.
    pub allowed_origins: Vec<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessMode {
    Open,
    Invite,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Server {
    /// Address to listen on; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Where transcripts and reports go. `$STATE_DIRECTORY` (set by systemd)
    /// wins over the default but not over an explicit value.
    pub state_dir: Option<PathBuf>,
    /// error, warn, info, debug or trace.
    pub log_level: LogLevel,
    /// Proxies (addresses or CIDR blocks) whose `X-Forwarded-For` header
    /// names the client; per-address limits then apply to that client. A
    /// trusted proxy itself is not limited per address, only in total.
    pub trusted_proxies: Vec<Cidr>,
    /// PEM certificate chain and private key: when both are set the
    /// listener speaks TLS only (`wss://`, `https://`).
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Interview {
    /// Path to an interview script (TOML). Unset: the built-in script.
    pub script: Option<PathBuf>,
    /// The interviewer engine: `scripted` (built in) or `openai` (a relay
    /// to the Realtime API).
    pub engine: InterviewerKind,
    /// The longest an interview may last; it ends then whatever happens.
    /// Below the Realtime API's 60-minute session cap.
    pub max_duration: Dur,
    /// How long before `max_duration` the interviewer is told to close.
    pub wrap_up: Dur,
    /// Where named scripts live (`NAME.toml`), for invites that name one.
    pub scripts_dir: Option<PathBuf>,
}

/// `[openai]`: the Realtime API the `openai` engine relays to.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct OpenAi {
    /// `wss://` (or `ws://` for local testing, logged as a warning).
    pub url: String,
    pub model: String,
    /// A file holding the API key. The key comes from
    /// `$CREDENTIALS_DIRECTORY/openai-api-key` first, then this file, then
    /// `$OPENAI_API_KEY`.
    pub api_key_file: Option<PathBuf>,
    /// Extra PEM roots, trusted on top of the webpki roots.
    pub ca_file: Option<PathBuf>,
    pub voice: String,
    pub transcription_model: String,
    pub turn_detection: TurnDetection,
    /// How long to keep trying to connect (with backoff) before giving up.
    pub connect_timeout: Dur,
    /// Pings to the upstream; one that answers nothing within two
    /// intervals is dead.
    pub ping_interval: Dur,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum TurnDetection {
    ServerVad,
    SemanticVad,
    None,
}

impl Default for Interview {
    fn default() -> Self {
        Interview {
            script: None,
            engine: InterviewerKind::Scripted,
            max_duration: Dur::secs(45 * 60),
            wrap_up: Dur::secs(2 * 60),
            scripts_dir: None,
        }
    }
}

impl Default for OpenAi {
    fn default() -> Self {
        OpenAi {
            url: "wss://api.openai.com/v1/realtime".into(),
            model: "gpt-realtime".into(),
            api_key_file: None,
            ca_file: None,
            voice: "marin".into(),
            transcription_model: "gpt-4o-mini-transcribe".into(),
            turn_detection: TurnDetection::SemanticVad,
            connect_timeout: Dur::secs(10),
            ping_interval: Dur::secs(15),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum InterviewerKind {
    #[default]
    Scripted,
    Openai,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Assessment {
    pub kind: AssessorKind,
    /// argv of the `command` assessor: transcript JSON on stdin, report JSON on stdout.
    pub command: Vec<String>,
    pub timeout: Dur,
    pub keepalive_interval: Dur,
    /// The `openai` assessor's Responses API endpoint (`https://`, or
    /// `http://` for local testing, logged as a warning).
    pub openai_url: String,
    pub openai_model: String,
    /// What `interview.assessment.completed` shows the candidate; the full
    /// report is always on disk.
    pub share_with_candidate: Share,
}

/// How much of the report the candidate is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Share {
    /// The whole report (practice interviews).
    Full,
    /// The candidate-facing summary only: no scores, no recommendation.
    Summary,
    /// Nothing but that the assessment is done.
    None,
}

#[derive(Debug, Clone, Copy, PartialEq, Deserialize, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum AssessorKind {
    #[default]
    Rubric,
    Openai,
    Command,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Sessions {
    pub idle_timeout: Dur,
    pub sweep_interval: Dur,
    pub ping_interval: Dur,
    /// How long a session whose client has gone waits to be resumed.
    pub resume_window: Dur,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    pub max_sessions: usize,
    /// Connections in their HTTP handshake at once; beyond it a new
    /// connection is closed at once.
    pub max_handshakes: usize,
    /// Handshakes at once from one client address (an IPv6 /64).
    pub max_handshakes_per_ip: usize,
    /// Sessions at once from one client address; beyond it HTTP 429.
    pub max_sessions_per_ip: usize,
    /// Answers and interviewer items one session may hold.
    pub max_items: usize,
    /// Bytes of conversation one session may write to its transcript.
    pub max_transcript_bytes: u64,
    /// Client frames per second, sustained (a token bucket)...
    pub events_per_second: u32,
    /// ...and how many may come at once.
    pub events_burst: u32,
    pub max_message_bytes: usize,
    /// Longest text a single answer may carry.
    pub max_text_bytes: usize,
    /// Consecutive invalid client events before the session is closed with 1008.
    pub max_invalid_events: u32,
    pub handshake_timeout: Dur,
    /// How long one write to a client may take before the client is
    /// treated as gone.
    pub send_timeout: Dur,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, default)]
pub struct Shutdown {
    pub close_grace: Dur,
    pub deadline: Dur,
}

impl Default for Server {
    fn default() -> Self {
        Server {
            listen: "127.0.0.1:8765".parse().expect("valid literal address"),
            state_dir: None,
            log_level: LogLevel::Info,
            // A proxy on the same host (nginx, Caddy) is the usual set-up.
            trusted_proxies: vec![
                "127.0.0.1".parse().expect("valid literal"),
                "::1".parse().expect("valid literal"),
            ],
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Server {
    /// Whether `ip` is one of `server.trusted_proxies`.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted_proxies.iter().any(|c| c.contains(ip))
    }
}

impl Default for Assessment {
    fn default() -> Self {
        Assessment {
            kind: AssessorKind::Rubric,
            command: Vec::new(),
            timeout: Dur::secs(120),
            keepalive_interval: Dur::secs(3),
            openai_url: "https://api.openai.com/v1/responses".into(),
            openai_model: "gpt-5-mini".into(),
            share_with_candidate: Share::Summary,
        }
    }
}

impl Default for Sessions {
    fn default() -> Self {
        Sessions {
            idle_timeout: Dur::secs(120),
            sweep_interval: Dur::secs(300),
            ping_interval: Dur::secs(20),
            resume_window: Dur::secs(10 * 60),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_sessions: 2000,
            max_handshakes: 256,
            max_handshakes_per_ip: 32,
            max_sessions_per_ip: 100,
            max_items: 2000,
            max_transcript_bytes: 8 * 1024 * 1024,
            // Audio in 20 ms chunks is 50 appends a second; twice that
            // leaves room for everything else a live client sends.
            events_per_second: 100,
            events_burst: 200,
            max_message_bytes: 256 * 1024,
            max_text_bytes: 32 * 1024,
            max_invalid_events: 10,
            handshake_timeout: Dur::secs(10),
            send_timeout: Dur::secs(10),
        }
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Shutdown {
            close_grace: Dur(Duration::from_millis(250)),
            deadline: Dur::secs(2),
        }
    }
}

/// An error in the configuration, naming the key (or the file) at fault.
#[derive(Debug)]
pub enum ConfigError {
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    Parse {
        path: PathBuf,
        message: String,
    },
    Invalid {
        key: &'static str,
        message: String,
    },
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Read { path, source } => {
                write!(f, "cannot read {}: {source}", path.display())
            }
            ConfigError::Parse { path, message } => {
                write!(f, "{}: {}", path.display(), message.trim_end())
            }
            ConfigError::Invalid { key, message } => {
                write!(f, "invalid value for `{key}`: {message}")
            }
        }
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Reads, parses and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Config::parse(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_owned(),
                message,
            },
            other => other,
        })?;
        // Against the file's directory, made absolute: what `check-config`
        // prints is then what the daemon uses, wherever either runs from.
        let base = path.parent().unwrap_or(Path::new("."));
        let base = std::path::absolute(base).unwrap_or_else(|_| base.to_owned());
        Ok(config.resolve_relative_to(&base))
    }

    /// Parses and validates configuration text.
    pub fn parse(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<config>"),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Paths in a config file are relative to the file, not to the daemon's
    /// working directory, so that a unit file and a shell agree.
    fn resolve_relative_to(mut self, base: &Path) -> Config {
        if let Some(script) = &self.interview.script {
            if script.is_relative() {
                self.interview.script = Some(base.join(script));
            }
        }
        for path in [
            &mut self.interview.scripts_dir,
            &mut self.server.state_dir,
            &mut self.server.tls_cert,
            &mut self.server.tls_key,
            &mut self.openai.api_key_file,
            &mut self.openai.ca_file,
            &mut self.metrics.token_file,
        ] {
            if let Some(p) = path {
                if p.is_relative() {
                    *path = Some(base.join(&*p));
                }
            }
        }
        self
    }

    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |key, message: &str| {
            Err(ConfigError::Invalid {
                key,
                message: message.to_owned(),
            })
        };
        let positive: [(&'static str, Dur); 12] = [
            ("assessment.timeout", self.assessment.timeout),
            (
                "assessment.keepalive_interval",
                self.assessment.keepalive_interval,
            ),
            ("sessions.idle_timeout", self.sessions.idle_timeout),
            ("sessions.sweep_interval", self.sessions.sweep_interval),
            ("sessions.ping_interval", self.sessions.ping_interval),
            ("limits.handshake_timeout", self.limits.handshake_timeout),
            ("limits.send_timeout", self.limits.send_timeout),
            ("shutdown.close_grace", self.shutdown.close_grace),
            ("shutdown.deadline", self.shutdown.deadline),
            ("interview.max_duration", self.interview.max_duration),
            ("openai.connect_timeout", self.openai.connect_timeout),
            ("openai.ping_interval", self.openai.ping_interval),
        ];
        for (key, value) in positive {
            if value.0.is_zero() {
                return invalid(key, "must be greater than zero");
            }
        }
        if self.assessment.kind == AssessorKind::Command && self.assessment.command.is_empty() {
            return invalid(
                "assessment.command",
                "must name a program when assessment.kind = \"command\"",
            );
        }
        if self.assessment.command.iter().any(|a| a.contains('\0')) {
            return invalid("assessment.command", "arguments cannot contain NUL bytes");
        }
        for (key, value) in [
            ("limits.max_sessions", self.limits.max_sessions),
            ("limits.max_handshakes", self.limits.max_handshakes),
            (
                "limits.max_handshakes_per_ip",
                self.limits.max_handshakes_per_ip,
            ),
            (
                "limits.max_sessions_per_ip",
                self.limits.max_sessions_per_ip,
            ),
            ("limits.max_items", self.limits.max_items),
            (
                "limits.events_per_second",
                self.limits.events_per_second as usize,
            ),
        ] {
            if value == 0 {
                return invalid(key, "must be at least 1");
            }
        }
        if self.limits.max_transcript_bytes < 4096 {
            return invalid("limits.max_transcript_bytes", "must be at least 4096");
        }
        if self.limits.events_burst < self.limits.events_per_second.min(10) {
            return invalid(
                "limits.events_burst",
                "must be at least limits.events_per_second (or 10)",
            );
        }
        if self.limits.max_message_bytes < 1024 {
            return invalid("limits.max_message_bytes", "must be at least 1024");
        }
        if self.limits.max_text_bytes == 0
            || self.limits.max_text_bytes > self.limits.max_message_bytes
        {
            return invalid(
                "limits.max_text_bytes",
                "must be between 1 and limits.max_message_bytes",
            );
        }
        if self.limits.max_invalid_events == 0 {
            return invalid("limits.max_invalid_events", "must be at least 1");
        }
        if self.access_mode() == AccessMode::Open
            && !self.server.listen.ip().is_loopback()
            && !self.access.allow_open_on_public
        {
            return invalid(
                "access.mode",
                "\"open\" lets anyone who reaches a public address start interviews: use \"invite\", or set access.allow_open_on_public = true to mean it",
            );
        }
        for origin in &self.access.allowed_origins {
            if !(origin.starts_with("https://") || origin.starts_with("http://"))
                || origin.trim_end_matches('/').matches('/').count() != 2
            {
                return invalid(
                    "access.allowed_origins",
                    &format!("`{origin}` is not an origin like \"https://host[:port]\""),
                );
            }
        }
        if self.server.tls_cert.is_some() != self.server.tls_key.is_some() {
            return invalid(
                "server.tls_cert",
                "server.tls_cert and server.tls_key go together: set both or neither",
            );
        }
        if self.sessions.ping_interval.0 >= self.sessions.idle_timeout.0 {
            return invalid(
                "sessions.ping_interval",
                "must be shorter than sessions.idle_timeout (a client answering pings would be swept as idle)",
            );
        }
        if self.interview.wrap_up.0 >= self.interview.max_duration.0 {
            return invalid(
                "interview.wrap_up",
                "must be shorter than interview.max_duration",
            );
        }
        match crate::upstream::Endpoint::parse(&self.assessment.openai_url) {
            Ok(e) if e.url.starts_with("http") => {}
            Ok(_) => {
                return invalid(
                    "assessment.openai_url",
                    "must be an http:// or https:// URL",
                )
            }
            Err(e) => return invalid("assessment.openai_url", &e),
        }
        if self.assessment.openai_model.trim().is_empty() {
            return invalid("assessment.openai_model", "must be a non-empty name");
        }
        match crate::upstream::Endpoint::parse(&self.openai.url) {
            Ok(e) if e.url.starts_with("ws") => {}
            Ok(_) => return invalid("openai.url", "must be a ws:// or wss:// URL"),
            Err(e) => return invalid("openai.url", &e),
        }
        for (key, value) in [
            ("openai.model", &self.openai.model),
            ("openai.voice", &self.openai.voice),
            (
                "openai.transcription_model",
                &self.openai.transcription_model,
            ),
        ] {
            if value.trim().is_empty() || value.chars().any(char::is_control) {
                return invalid(key, "must be a non-empty name");
            }
        }
        if self.shutdown.close_grace.0 >= self.shutdown.deadline.0 {
            return invalid(
                "shutdown.close_grace",
                "must be shorter than shutdown.deadline",
            );
        }
        Ok(())
    }

    /// Who may start an interview: `access.mode`, or by default `open` on a
    /// loopback address and `invite` anywhere else.
    pub fn access_mode(&self) -> AccessMode {
        self.access
            .mode
            .unwrap_or(if self.server.listen.ip().is_loopback() {
                AccessMode::Open
            } else {
                AccessMode::Invite
            })
    }

    /// The configuration as TOML: every key that has a value (the optional
    /// paths are left out while unset).
    pub fn to_toml(&self) -> String {
        toml::to_string(self).expect("configuration serializes")
    }
}

/// An address block written as `ADDRESS` or `ADDRESS/BITS`, IPv4 or IPv6.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    pub addr: IpAddr,
    pub bits: u8,
}

impl Cidr {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                prefix(u32::from(net) as u128, u32::from(ip) as u128, self.bits, 32)
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                prefix(u128::from(net), u128::from(ip), self.bits, 128)
            }
            _ => false,
        }
    }
}

/// An IPv4-mapped IPv6 address (`::ffff:a.b.c.d`, as a dual-stack listener
/// reports IPv4 peers) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

fn prefix(net: u128, ip: u128, bits: u8, width: u8) -> bool {
    if bits == 0 {
        return true;
    }
    let shift = width - bits;
    (net >> shift) == (ip >> shift)
}

impl std::str::FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Cidr, String> {
        let (addr, bits) = match s.split_once('/') {
            Some((a, b)) => (a, Some(b)),
            None => (s, None),
        };
        let addr: IpAddr = addr
            .trim()
            .parse()
            .map_err(|_| format!("`{s}` is not an IP address or CIDR block"))?;
        let addr = canonical(addr);
        let width = if addr.is_ipv4() { 32 } else { 128 };
        let bits = match bits {
            None => width,
            Some(b) => match b.trim().parse::<u8>() {
                Ok(b) if b <= width => b,
                _ => return Err(format!("`{s}`: the prefix length must be 0 to {width}")),
            },
        };
        Ok(Cidr { addr, bits })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.bits)
    }
}

impl fmt::Debug for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl<'de> Deserialize<'de> for Cidr {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

impl Serialize for Cidr {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.to_string())
    }
}

/// A duration written as a human string: "250ms", "3s", "5m".
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Dur(pub Duration);

impl Dur {
    const fn secs(s: u64) -> Dur {
        Dur(Duration::from_secs(s))
    }
}

impl fmt::Debug for Dur {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", humantime::format_duration(self.0))
    }
}

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        humantime::parse_duration(&text).map(Dur).map_err(|e| {
            serde::de::Error::custom(format!(
                "`{text}` is not a duration like \"250ms\", \"3s\" or \"5m\" ({e})"
            ))
        })
    }
}

impl Serialize for Dur {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&humantime::format_duration(self.0).to_string())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl LogLevel {
    pub fn filter(self) -> log::LevelFilter {
        match self {
            LogLevel::Error => log::LevelFilter::Error,
            LogLevel::Warn => log::LevelFilter::Warn,
            LogLevel::Info => log::LevelFilter::Info,
            LogLevel::Debug => log::LevelFilter::Debug,
            LogLevel::Trace => log::LevelFilter::Trace,
        }
    }
}

impl std::str::FromStr for LogLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "error" => Ok(LogLevel::Error),
            "warn" => Ok(LogLevel::Warn),
            "info" => Ok(LogLevel::Info),
            "debug" => Ok(LogLevel::Debug),
            "trace" => Ok(LogLevel::Trace),
            _ => Err(format!(
                "`{s}` is not one of error, warn, info, debug, trace"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_the_documented_defaults() {
        let c = Config::parse("").unwrap();
        assert_eq!(c, Config::default());
        assert_eq!(c.assessment.keepalive_interval.0, Duration::from_secs(3));
        assert_eq!(c.sessions.sweep_interval.0, Duration::from_secs(300));
        assert_eq!(c.shutdown.close_grace.0, Duration::from_millis(250));
        assert_eq!(c.shutdown.deadline.0, Duration::from_secs(2));
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::parse("[sessions]\nidle_timout = \"3s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("idle_timout"), "{err}");
    }

    #[test]
    fn bad_durations_are_named() {
        let err = Config::parse("[assessment]\ntimeout = \"soon\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("timeout") && err.contains("soon"), "{err}");
        let err = Config::parse("[shutdown]\ndeadline = \"0s\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("shutdown.deadline"), "{err}");
    }

    #[test]
    fn command_assessor_needs_a_command() {
        let err = Config::parse("[assessment]\nkind = \"command\"\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("assessment.command"), "{err}");
    }

    #[test]
    fn cidr_blocks_match_their_addresses() {
        let net: Cidr = "10.1.0.0/16".parse().unwrap();
        assert!(net.contains("10.1.200.3".parse().unwrap()));
        assert!(!net.contains("10.2.0.1".parse().unwrap()));
        assert!(net.contains("::ffff:10.1.0.9".parse().unwrap()));
        let one: Cidr = "2001:db8::1".parse().unwrap();
        assert!(one.contains("2001:db8::1".parse().unwrap()));
        assert!(!one.contains("2001:db8::2".parse().unwrap()));
        let all: Cidr = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains("192.0.2.1".parse().unwrap()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("proxy".parse::<Cidr>().is_err());
        let err = Config::parse("[server]\ntrusted_proxies = [\"nope\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope"), "{err}");
    }

    #[test]
    fn effective_config_round_trips() {
        let c =
            Config::parse("[limits]\nmax_sessions = 7\n[sessions]\nping_interval = \"250ms\"\n[server]\ntrusted_proxies = [\"10.0.0.0/8\"]\n")
                .unwrap();
        let again = Config::parse(&c.to_toml()).unwrap();
        assert_eq!(c, again);
    }
}
