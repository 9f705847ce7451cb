//! `interviewd client`: take an interview in the terminal.
//!
//! Prints the interviewer's turns as they stream, reads one answer per line,
//! shows a spinner driven by the server's keepalive events while the
//! assessment is generated, then prints the report. `/finish` (or end of
//! input) ends the interview early.

use std::io::{BufRead, IsTerminal, Write};

use std::time::Duration;

use async_tungstenite::tungstenite::Message;
use futures_util::StreamExt;
use serde_json::{json, Value};
use smol::future::FutureExt;
use smol::Timer;

use crate::exit;

/// How long the client waits for any frame from the server (it pings every
/// `sessions.ping_interval`, 20 s by default) before it gives up. Not
/// counted while the candidate is typing.
const SERVER_SILENCE_LIMIT: Duration = Duration::from_secs(90);

const SPINNER: [char; 10] = ['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

enum Input {
    Line(String),
    Eof,
}

/// What the client loop woke up for.
enum Next {
    Frame(Option<Result<Message, async_tungstenite::tungstenite::Error>>),
    Input(Input),
    Silent,
}

pub fn run(url: &str) -> i32 {
    match smol::block_on(interview(url)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("interviewd client: {e}");
            exit::FAILURE
        }
    }
}

/// `ws://host:port/path` → ("host:port", url).
fn host_port(url: &str) -> Result<String, String> {
    let rest = url
        .strip_prefix("ws://")
        .ok_or_else(|| format!("`{url}`: only ws:// URLs are supported"))?;
    let authority = rest.split('/').next().unwrap_or_default();
    if authority.is_empty() {
        return Err(format!("`{url}` has no host"));
    }
    Ok(if authority.contains(':') {
        authority.to_owned()
    } else {
        format!("{authority}:80")
    })
}

async fn interview(url: &str) -> Result<i32, String> {
    let addr = host_port(url)?;
    let stream = smol::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("cannot connect to {addr}: {e} (is `interviewd serve` running?)"))?;
    let (mut ws, _) = async_tungstenite::client_async(url, stream)
        .await
        .map_err(|e| format!("WebSocket handshake with {url} failed: {e}"))?;
    // A terminal shows text: ask for text replies (an interviewer that
    // speaks, the `openai` relay, then answers in text too).
    let text_only = json!({"type": "session.update",
                           "session": {"type": "realtime", "output_modalities": ["text"]}});
    ws.send(Message::text(text_only.to_string()))
        .await
        .map_err(|e| format!("sending: {e}"))?;

    // stdin has no non-blocking read, so a thread reads it. It lives until
    // end of input or process exit: a blocked read(2) cannot be interrupted,
    // and the process exits as soon as the interview is over.
    // Bounded: piped input far larger than the interview waits in the
    // pipe, not in memory.
    let (lines_tx, lines) = async_channel::bounded(64);
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || {
            for line in std::io::stdin().lock().lines() {
                let Ok(line) = line else { break };
                if lines_tx.send_blocking(Input::Line(line)).is_err() {
                    return;
                }
            }
            let _ = lines_tx.send_blocking(Input::Eof);
        })
        .map_err(|e| format!("cannot start the input thread: {e}"))?;

    // At a terminal, lines that arrive together are one pasted answer; from
    // a pipe, each line is an answer (scripts feed one per question).
    let typed = std::io::stdin().is_terminal();
    let mut waiting_for_answer = false;
    let mut spinner = 0usize;
    let mut answers = 0u32;
    loop {
        // The socket is read even while the candidate types, so that the
        // server's pings are answered and the session is not swept as idle.
        let next = async { Next::Frame(ws.next().await) }
            .or(async {
                if !waiting_for_answer {
                    return std::future::pending().await;
                }
                Next::Input(lines.recv().await.unwrap_or(Input::Eof))
            })
            .or(async {
                // The server pings every 20 s and sends keepalives while it
                // assesses; this long a silence means it is gone.
                Timer::after(SERVER_SILENCE_LIMIT).await;
                Next::Silent
            })
            .await;
        let frame = match next {
            Next::Frame(frame) => frame,
            Next::Silent => {
                return Err(format!(
                    "no word from the server for {} s; giving up",
                    SERVER_SILENCE_LIMIT.as_secs()
                ))
            }
            Next::Input(input) => {
                waiting_for_answer = false;
                let input = if typed {
                    gather_paste(input, &lines).await
                } else {
                    input
                };
                let events = match input {
                    Input::Line(line) if line.trim() == "/finish" => {
                        vec![json!({"type": "interview.finish"})]
                    }
                    Input::Line(line) if line.trim().is_empty() => {
                        prompt();
                        waiting_for_answer = true;
                        continue;
                    }
                    Input::Line(line) => {
                        answers += 1;
                        vec![
                            json!({"type": "conversation.item.create", "event_id": format!("answer_{answers}"),
                                   "item": {"type": "message", "role": "user",
                                            "content": [{"type": "input_text", "text": line}]}}),
                            json!({"type": "response.create"}),
                        ]
                    }
                    Input::Eof => vec![json!({"type": "interview.finish"})],
                };
                for event in events {
                    ws.send(Message::text(event.to_string()))
                        .await
                        .map_err(|e| format!("sending: {e}"))?;
                }
                continue;
            }
        };
        let text = match frame {
            Some(Ok(Message::Text(t))) => t,
            Some(Ok(Message::Close(frame))) => {
                let (code, reason) = frame
                    .map(|f| (u16::from(f.code), f.reason.to_string()))
                    .unwrap_or((1005, String::new()));
                if code != 1000 {
                    println!("\nThe server closed the interview ({code} {reason}).");
                    return Ok(exit::FAILURE);
                }
                continue;
            }
            Some(Ok(_)) => continue,
            Some(Err(e)) => return Err(format!("connection lost: {e}")),
            None => return Ok(exit::OK),
        };
        let event: Value = serde_json::from_str(text.as_str())
            .map_err(|e| format!("bad event from server: {e}"))?;
        match event["type"].as_str().unwrap_or_default() {
            "session.created" => println!(
                "Connected ({}). Answer each question on one line; /finish ends early.\n",
                event["session"]["id"].as_str().unwrap_or("?")
            ),
            // Text, or the transcript of speech when the reply is audio.
            "response.output_text.delta" | "response.output_audio_transcript.delta" => {
                print!("{}", event["delta"].as_str().unwrap_or_default());
                let _ = std::io::stdout().flush();
            }
            // A blank line between the candidate's answer and the reply.
            "response.created" => println!(),
            "response.done" => {
                println!("\n");
                prompt();
                waiting_for_answer = true;
            }
            "error" => eprintln!(
                "\r[server] {}",
                event["error"]["message"].as_str().unwrap_or("error")
            ),
            "interview.assessment.started" => {
                waiting_for_answer = false;
                print!("\rGenerating your assessment {}", SPINNER[0]);
                let _ = std::io::stdout().flush();
            }
            "interview.keepalive" => {
                spinner += 1;
                let secs = event["elapsed_ms"].as_u64().unwrap_or(0) / 1000;
                print!(
                    "\rGenerating your assessment {} {secs}s",
                    SPINNER[spinner % SPINNER.len()]
                );
                let _ = std::io::stdout().flush();
            }
            "interview.assessment.completed" => {
                println!("\r\n");
                print_report(&event["report"]);
            }
            "interview.assessment.failed" => {
                println!(
                    "\r\nThe assessment failed: {}",
                    event["reason"].as_str().unwrap_or("unknown reason")
                );
                return Ok(exit::FAILURE);
            }
            _ => {}
        }
    }
}

/// Lines that reach us within this of each other came from one paste
/// (a terminal delivers a paste in one burst); nobody types two lines
/// this fast.
const PASTE_WINDOW: Duration = Duration::from_millis(40);

/// A paste stops growing here: the rest becomes the next answer. Far
/// above what the daemon takes in one answer (`limits.max_text_bytes`),
/// which then says so.
const MAX_PASTE_BYTES: usize = 1024 * 1024;

/// A typed line and the lines that followed it within [`PASTE_WINDOW`]:
/// one answer, its lines joined by newlines. End of input after a paste
/// still sends the paste as an answer; the end is seen at the next read.
async fn gather_paste(first: Input, lines: &async_channel::Receiver<Input>) -> Input {
    let Input::Line(mut answer) = first else {
        return first;
    };
    if answer.trim() == "/finish" {
        return Input::Line(answer);
    }
    while answer.len() < MAX_PASTE_BYTES {
        let next = async { lines.recv().await.ok() }
            .or(async {
                Timer::after(PASTE_WINDOW).await;
                None
            })
            .await;
        match next {
            Some(Input::Line(line)) => {
                answer.push('\n');
                answer.push_str(&line);
            }
            // Closed or quiet: the paste is over. (Eof is only ever sent
            // last, so the channel is closed behind it: recv() then says so.)
            Some(Input::Eof) | None => break,
        }
    }
    Input::Line(answer.trim_end().to_owned())
}

fn prompt() {
    print!("> ");
    let _ = std::io::stdout().flush();
}

/// Prints what `interview.assessment.completed` delivered: the whole
/// report, its summary view (`assessment.share_with_candidate = "summary"`:
/// the summary alone), or `null` (`"none"`).
fn print_report(report: &Value) {
    println!("== Assessment ==");
    if report.is_null() {
        println!("Your interview has been assessed; the report is not shared with you.");
        return;
    }
    if let Some(score) = report["overall_score"].as_u64() {
        println!(
            "Overall: {score}/100 ({})",
            report["recommendation"]
                .as_str()
                .unwrap_or("-")
                .replace('_', " ")
        );
    }
    if let Some(summary) = report["summary"].as_str() {
        println!("{summary}");
    }
    if let Some(questions) = report["questions"].as_array() {
        println!();
        for q in questions {
            let score = q["score"]
                .as_u64()
                .map(|s| s.to_string())
                .unwrap_or_else(|| "-".into());
            println!("  {score:>3}  {}", q["question_id"].as_str().unwrap_or("?"));
            if let Some(reasons) = q["reasons"].as_array() {
                for r in reasons {
                    println!("       {}", r.as_str().unwrap_or_default());
                }
            }
        }
    } else if !report["summary"].is_string() {
        // Neither the report format (docs/report.schema.json) nor its
        // summary view: show it whole.
        println!(
            "{}",
            serde_json::to_string_pretty(report).unwrap_or_default()
        );
    }
}
