//! The `command` assessor: the operator's program, run as a child in its
//! own process group with the transcript as JSON on stdin; it prints the
//! assessment as JSON on stdout (docs/operations.md has the contract).

use std::io::{Read, Write};
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicI32, Ordering};

use serde_json::Value;

use crate::children::{kill_group, ChildGroups};

/// Largest report a command may print; more is an error, not an OOM.
const MAX_REPORT_BYTES: u64 = 1024 * 1024;

pub(super) fn run_command(
    argv: &[String],
    transcript: &Value,
    children: &ChildGroups,
    pgid: &AtomicI32,
) -> Result<Value, String> {
    let mut command = Command::new(&argv[0]);
    command
        .args(&argv[1..])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        // The service manager's channels are the daemon's, not the
        // assessor's (NotifyAccess=main ignores it anyway).
        .env_remove("NOTIFY_SOCKET")
        .env_remove("WATCHDOG_USEC")
        .env_remove("WATCHDOG_PID")
        .process_group(0);
    // SAFETY: prctl and signal are async-signal-safe. If this thread dies
    // (the daemon is SIGKILLed), the kernel kills the child instead of
    // orphaning it.
    unsafe {
        command.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The daemon ignores SIGXFSZ; the assessor gets the default.
            libc::signal(libc::SIGXFSZ, libc::SIG_DFL);
            Ok(())
        });
    }
    let mut child = children
        .spawn(&mut command)
        .map_err(|e| format!("cannot start assessor `{}`: {e}", argv[0]))?;
    let group = child.id() as libc::pid_t;
    pgid.store(group, Ordering::SeqCst);

    // Write the transcript, then read the report. A child that never reads
    // its stdin cannot block us forever: the timeout kills its group, which
    // breaks the pipe.
    let mut stdin = child.stdin.take().expect("stdin is piped");
    let wrote = stdin.write_all(transcript.to_string().as_bytes());
    drop(stdin);
    let mut out = Vec::new();
    let read = child
        .stdout
        .take()
        .expect("stdout is piped")
        .take(MAX_REPORT_BYTES + 1)
        .read_to_end(&mut out);
    if read.is_ok() && out.len() as u64 > MAX_REPORT_BYTES {
        kill_group(group, libc::SIGKILL);
    }
    let status = child.wait();
    // Whatever the program left behind in its group goes with it.
    kill_group(group, libc::SIGKILL);
    children.remove(group);
    pgid.store(0, Ordering::SeqCst);

    let status = status.map_err(|e| format!("waiting for the assessor: {e}"))?;
    if out.len() as u64 > MAX_REPORT_BYTES {
        return Err(format!(
            "the assessor printed more than {MAX_REPORT_BYTES} bytes"
        ));
    }
    if !status.success() {
        return Err(match status.code() {
            Some(code) => format!("the assessor exited with status {code}"),
            None => format!("the assessor was killed ({status})"),
        });
    }
    if let Err(e) = wrote {
        if e.kind() != std::io::ErrorKind::BrokenPipe {
            return Err(format!("writing the transcript to the assessor: {e}"));
        }
    }
    read.map_err(|e| format!("reading the assessor's report: {e}"))?;
    match serde_json::from_slice::<Value>(&out) {
        Ok(report) if report.is_object() => Ok(report),
        Ok(_) => Err("the assessor's report is not a JSON object".into()),
        Err(e) => Err(format!("the assessor's report is not valid JSON: {e}")),
    }
}
