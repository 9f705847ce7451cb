//! `GET /metrics`: the Prometheus text exposition format (version 0.0.4).
//!
//! Served to clients whose address is in `metrics.allow` (loopback by
//! default; behind a trusted proxy, the client `X-Forwarded-For` names)
//! or that present the bearer token of `metrics.token_file` or the systemd
//! credential `metrics-token`. Everyone else gets 403 (401 when a token
//! would open it).

use std::fmt::Write;
use std::net::SocketAddr;
use std::time::UNIX_EPOCH;

use super::{snapshot, text, Snapshot, Status};
use crate::handshake::PageRequest;
use crate::metrics::{self as m, METRICS};
use crate::session::{Env, Phase};

const PLAIN: &str = "text/plain; charset=utf-8";
const EXPOSITION: &str = "text/plain; version=0.0.4; charset=utf-8";

pub async fn answer(env: &Env, peer: SocketAddr, request: &PageRequest) -> Vec<u8> {
    let hops: Vec<&str> = request.forwarded_for.iter().map(String::as_str).collect();
    let client =
        crate::admission::client_address(peer.ip(), &hops, &env.config.server.trusted_proxies);
    let by_address = env.config.metrics.allow.iter().any(|c| c.contains(client));
    let by_token = match (&env.metrics_token, &request.bearer) {
        (Some(token), Some(presented)) => token.matches(presented),
        _ => false,
    };
    if !(by_address || by_token) {
        crate::log_limited!(
            log::Level::Info,
            "metrics refused",
            "refused /metrics to {client}: not in metrics.allow{}",
            if env.metrics_token.is_some() {
                " and no valid token"
            } else {
                ""
            }
        );
        return match env.metrics_token {
            Some(_) => text(401, PLAIN, "a bearer token is required\n"),
            None => text(403, PLAIN, "metrics are not served to this address\n"),
        };
    }
    match snapshot(env).await {
        Some(s) => text(200, EXPOSITION, &render(&s, &env.status)),
        None => text(503, PLAIN, "the central loop is not answering\n"),
    }
}

/// One metric family: its help and type lines, then its samples.
fn family(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// A family of one unlabelled sample.
fn single(out: &mut String, name: &str, kind: &str, help: &str, value: impl std::fmt::Display) {
    family(out, name, kind, help);
    let _ = writeln!(out, "{name} {value}");
}

/// A counter family with one label, a sample per value.
fn labelled<'a>(
    out: &mut String,
    name: &str,
    help: &str,
    label: &str,
    samples: impl Iterator<Item = (&'a str, u64)>,
) {
    family(out, name, "counter", help);
    for (value, n) in samples {
        let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} {n}");
    }
}

fn histogram<const N: usize>(out: &mut String, name: &str, help: &str, h: &m::Histogram<N>) {
    family(out, name, "histogram", help);
    let (buckets, sum, count) = h.snapshot();
    for (le, n) in buckets {
        let _ = writeln!(out, "{name}_bucket{{le=\"{le}\"}} {n}");
    }
    let _ = writeln!(out, "{name}_bucket{{le=\"+Inf\"}} {count}");
    let _ = writeln!(out, "{name}_sum {sum}");
    let _ = writeln!(out, "{name}_count {count}");
}

/// The whole exposition.
pub fn render(s: &Snapshot, status: &Status) -> String {
    let mut out = String::with_capacity(8 * 1024);
    let o = &mut out;

    family(
        o,
        "interviewd_sessions",
        "gauge",
        "Sessions past their handshake, by phase and interviewer engine.",
    );
    for phase in [
        Phase::Interview,
        Phase::Assessing,
        Phase::Closing,
        Phase::Suspended,
    ] {
        for engine in m::ENGINES {
            let n = s.sessions.get(&(phase.as_str(), engine)).unwrap_or(&0);
            let _ = writeln!(
                o,
                "interviewd_sessions{{phase=\"{}\",engine=\"{engine}\"}} {n}",
                phase.as_str()
            );
        }
    }
    single(
        o,
        "interviewd_handshakes",
        "gauge",
        "Connections still in their HTTP handshake (page and probe requests included).",
        s.handshakes,
    );
    single(
        o,
        "interviewd_session_slots",
        "gauge",
        "Session slots taken (limits.max_sessions counts these).",
        s.admitted,
    );
    single(
        o,
        "interviewd_session_slots_max",
        "gauge",
        "limits.max_sessions.",
        s.max_sessions,
    );

    labelled(
        o,
        "interviewd_sessions_started_total",
        "Interviews started, by engine (a resumed session is not counted again).",
        "engine",
        m::ENGINES
            .iter()
            .zip(&METRICS.sessions_started)
            .map(|(e, c)| (*e, c.get())),
    );
    labelled(
        o,
        "interviewd_sessions_ended_total",
        "Sessions whose transcript was closed, by end reason.",
        "reason",
        m::END_REASONS
            .iter()
            .zip(&METRICS.sessions_ended)
            .map(|(r, c)| (r.as_str(), c.get())),
    );
    labelled(
        o,
        "interviewd_assessments_total",
        "Assessments finished, by outcome.",
        "outcome",
        m::Outcome::ALL
            .iter()
            .map(|x| (x.as_str(), METRICS.assessments[*x as usize].get())),
    );
    histogram(
        o,
        "interviewd_assessment_duration_seconds",
        "How long assessments took.",
        &METRICS.assessment_seconds,
    );
    histogram(
        o,
        "interviewd_journal_sync_seconds",
        "fdatasync latency of transcript writes.",
        &METRICS.journal_sync_seconds,
    );
    labelled(
        o,
        "interviewd_relayed_messages_total",
        "Messages relayed between clients and the upstream interviewer, by direction.",
        "direction",
        m::Direction::ALL
            .iter()
            .map(|d| (d.as_str(), METRICS.relayed_messages[*d as usize].get())),
    );
    labelled(
        o,
        "interviewd_relayed_bytes_total",
        "Bytes of relayed messages, by direction.",
        "direction",
        m::Direction::ALL
            .iter()
            .map(|d| (d.as_str(), METRICS.relayed_bytes[*d as usize].get())),
    );
    single(
        o,
        "interviewd_upstream_reconnects_total",
        "counter",
        "Upstream connections lost mid-interview and made again.",
        METRICS.upstream_reconnects.get(),
    );
    single(
        o,
        "interviewd_upstream_failures_total",
        "counter",
        "Interviews the upstream could not carry to the end (upstream_unavailable).",
        METRICS.upstream_failures.get(),
    );
    labelled(
        o,
        "interviewd_invite_refusals_total",
        "Invite tokens refused, by reason.",
        "reason",
        m::INVITE_REFUSALS
            .iter()
            .zip(&METRICS.invite_refusals)
            .map(|(r, c)| (*r, c.get())),
    );
    labelled(
        o,
        "interviewd_connections_refused_total",
        "Connections and sessions refused at an admission limit, by limit.",
        "limit",
        m::CONNECTION_REFUSALS
            .iter()
            .zip(&METRICS.connections_refused)
            .map(|(l, c)| (*l, c.get())),
    );

    if let Some(last) = &status.last_shutdown {
        family(
            o,
            "interviewd_last_shutdown_step_seconds",
            "gauge",
            "How long each step of the previous process's shutdown took.",
        );
        for (step, ms) in &last.steps {
            let _ = writeln!(
                o,
                "interviewd_last_shutdown_step_seconds{{step=\"{}\"}} {}",
                escape(step),
                *ms as f64 / 1000.0
            );
        }
        family(
            o,
            "interviewd_last_shutdown_seconds",
            "gauge",
            "The previous process's shutdown, from the signal to exit.",
        );
        let _ = writeln!(
            o,
            "interviewd_last_shutdown_seconds {}",
            last.total_ms as f64 / 1000.0
        );
        family(
            o,
            "interviewd_last_shutdown_exit_status",
            "gauge",
            "The previous process's exit status (0: clean).",
        );
        let _ = writeln!(o, "interviewd_last_shutdown_exit_status {}", last.status);
    }

    family(
        o,
        "interviewd_build_info",
        "gauge",
        "The running build; the value is always 1.",
    );
    let _ = writeln!(
        o,
        "interviewd_build_info{{version=\"{}\"}} 1",
        env!("CARGO_PKG_VERSION")
    );
    family(
        o,
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since the Unix epoch, in seconds.",
    );
    let started = status
        .started_at
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0);
    let _ = writeln!(o, "process_start_time_seconds {started:.3}");
    if let Some(rss) = resident_bytes() {
        family(
            o,
            "process_resident_memory_bytes",
            "gauge",
            "Resident memory size in bytes.",
        );
        let _ = writeln!(o, "process_resident_memory_bytes {rss}");
    }
    if let Ok(fds) = std::fs::read_dir("/proc/self/fd") {
        family(
            o,
            "process_open_fds",
            "gauge",
            "Number of open file descriptors.",
        );
        let _ = writeln!(o, "process_open_fds {}", fds.count());
    }
    out
}

/// A label value as the exposition format wants it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn resident_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    Some(pages * u64::try_from(page).ok()?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every sample line belongs to a family declared above it, and every
    /// family has HELP and TYPE: what a Prometheus scraper checks.
    #[test]
    fn the_exposition_is_well_formed() {
        let mut s = Snapshot {
            max_sessions: 10,
            admitted: 2,
            ..Default::default()
        };
        s.sessions.insert(("interview", "scripted"), 2);
        let status = Status::new(Some(crate::shutdown::Record {
            steps: vec![("1/5 stop accepting".into(), 3)],
            total_ms: 40,
            status: 0,
        }));
        let text = render(&s, &status);
        let mut declared = std::collections::HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# TYPE ") {
                declared.insert(rest.split(' ').next().unwrap().to_owned());
                continue;
            }
            if line.starts_with('#') {
                continue;
            }
            let name = line.split(['{', ' ']).next().unwrap();
            let family = name
                .strip_suffix("_bucket")
                .or_else(|| name.strip_suffix("_sum"))
                .or_else(|| name.strip_suffix("_count"))
                .filter(|f| declared.contains(*f))
                .unwrap_or(name);
            assert!(declared.contains(family), "undeclared sample: {line}");
            let value = line.rsplit(' ').next().unwrap();
            assert!(value.parse::<f64>().is_ok(), "bad value: {line}");
        }
        assert!(text.contains("interviewd_sessions{phase=\"interview\",engine=\"scripted\"} 2\n"));
        assert!(text.contains(
            "interviewd_last_shutdown_step_seconds{step=\"1/5 stop accepting\"} 0.003\n"
        ));
    }
}
