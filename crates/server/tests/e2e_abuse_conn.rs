//! Connection abuse against the real binary, each case bounded in count and time, loopback only
//! (127.0.0.2 and up are other source addresses: Linux routes all of 127/8 to lo):
//! - RTMP connections trickling their handshake a byte a second are cut at the absolute
//!   deadline, and an honest publisher gets in while they are held;
//! - slowloris request heads and partial bodies are ended by the HTTP timeouts (a declared
//!   100 MB body at once), and `/healthz` answers meanwhile;
//! - one address at its per-address limit (HTTP and RTMP) does not keep another out;
//! - an exhausted open-file limit is survived: afterwards `/healthz` answers and a publisher
//!   publishes, and the log has a line per episode, not per failed accept;
//! - a name with control characters is refused and reaches the log only escaped.

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::Duration;

use common::*;

/// A TCP connection to `addr` from the loopback address `source`.
fn connect_from(source: &str, addr: &str) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let addr: SocketAddr = addr.parse().unwrap();
    let socket = Socket::new(Domain::IPV4, Type::STREAM, None).unwrap();
    let from: SocketAddr = format!("{source}:0").parse().unwrap();
    socket.bind(&from.into()).unwrap();
    socket
        .connect(&addr.into())
        .unwrap_or_else(|e| panic!("connect {addr} from {source}: {e}"));
    let s: TcpStream = socket.into();
    s.set_nodelay(true).unwrap();
    s
}

/// Whether the server closed `s` (EOF or reset) within `wait`; what it sent is collected.
fn closed_within(s: &mut TcpStream, wait: Duration, got: &mut Vec<u8>) -> bool {
    s.set_read_timeout(Some(wait)).unwrap();
    let mut buf = [0u8; 4096];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return true,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                return false
            }
            Err(_) => return true,
        }
    }
}

/// A connection sending `first`, then `each` every `period`, until the server closes it.
struct Trickler {
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    handle: Option<thread::JoinHandle<()>>,
}

impl Trickler {
    fn start(mut s: TcpStream, first: &[u8], each: &'static [u8], period: Duration) -> Trickler {
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let (c, st) = (closed.clone(), stop.clone());
        let first = first.to_vec();
        let handle = thread::spawn(move || {
            let mut sink = Vec::new();
            if s.write_all(&first).is_err() {
                c.store(true, Ordering::SeqCst);
                return;
            }
            while !st.load(Ordering::SeqCst) {
                // The read's timeout is the pause between bytes.
                if closed_within(&mut s, period, &mut sink) || s.write_all(each).is_err() {
                    c.store(true, Ordering::SeqCst);
                    return;
                }
            }
        });
        Trickler {
            closed,
            stop,
            handle: Some(handle),
        }
    }

    fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }
}

impl Drop for Trickler {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn count_closed(ts: &[Trickler]) -> usize {
    ts.iter().filter(|t| t.closed()).count()
}

fn metric(server: &Server, series: &str) -> f64 {
    let text = server.get("/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {series} in /metrics:\n{text}"))
}

/// Sends `request` raw from `source`, reads the answer until the server closes the connection
/// (within `WAIT`), and returns it.
fn raw_answer(server: &Server, source: &str, request: &[u8]) -> String {
    let mut s = connect_from(source, &server.http);
    s.write_all(request).unwrap();
    let mut got = Vec::new();
    assert!(
        closed_within(&mut s, WAIT, &mut got),
        "the server kept the connection open past {WAIT:?}; it sent {:?}",
        String::from_utf8_lossy(&got)
    );
    String::from_utf8_lossy(&got).into_owned()
}

/// The JSON error body of a raw HTTP answer, checked to be `status`.
fn assert_json_error(answer: &str, status: u16) {
    assert!(
        answer.starts_with(&format!("HTTP/1.1 {status} ")),
        "want {status}: {answer:?}"
    );
    let (head, body) = answer.split_once("\r\n\r\n").expect("a head and a body");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    let v: serde_json::Value = serde_json::from_str(body)
        .unwrap_or_else(|e| panic!("not the JSON error body ({e}): {body:?}"));
    assert_eq!(v["status"], status, "{v}");
}

#[test]
fn rtmp_handshakes_trickled_a_byte_a_second_are_cut_at_the_deadline() {
    // One address may hold 40 / 8 = 5 connections that have not published.
    let server = Server::start_with(
        &[],
        &[
            "--rtmp-handshake-timeout-s",
            "6",
            "--max-pending-connections",
            "40",
        ],
    );
    let trickles: Vec<Trickler> = (0..12)
        .map(|_| {
            let s = connect_from("127.0.0.2", &server.rtmp);
            // C0 (version 3), then a byte of C1 a second: 1536 s to finish.
            Trickler::start(s, &[3], &[0], Duration::from_secs(1))
        })
        .collect();
    // The 7 over the address's share are closed at once; 5 are held.
    poll(
        WAIT,
        "the connections over the per-address share to close",
        || (count_closed(&trickles) >= 7).then_some(()),
    );
    assert_eq!(count_closed(&trickles), 7, "5 should be held");

    // While they are held, an honest publisher from another address publishes.
    let honest = rtmp::Publisher::start(&server.rtmp, "live", "honest");
    server.wait_live("live", "honest", None);
    assert_eq!(
        count_closed(&trickles),
        7,
        "the trickling connections were cut before their deadline (6 s)"
    );

    // Each byte used to restart the handshake timeout; the deadline counts from the accept.
    poll(WAIT, "every trickling connection to be cut", || {
        (count_closed(&trickles) == trickles.len()).then_some(())
    });
    let log = server.log_text();
    assert!(
        log.contains("did not finish the handshake within 6 s of connecting"),
        "{}",
        server.log_tail(30)
    );
    assert!(
        metric(
            &server,
            "livesnap_connections_refused_total{protocol=\"rtmp\"}"
        ) >= 7.0
    );
    // The honest publisher is untouched.
    server.wait_live("live", "honest", None);
    drop(honest);
    server.stop();
}

#[test]
fn slowloris_heads_and_partial_bodies_are_ended_and_healthz_answers() {
    let server = Server::start_with(
        &[],
        &["--http-header-timeout-s", "2", "--http-body-timeout-s", "2"],
    );
    // Heads that never end: a header line every half second.
    let slow: Vec<Trickler> = (0..8)
        .map(|_| {
            let s = connect_from("127.0.0.3", &server.http);
            Trickler::start(
                s,
                b"GET /healthz HTTP/1.1\r\nHost: x\r\n",
                b"X-Slow: 1\r\n",
                Duration::from_millis(500),
            )
        })
        .collect();
    assert_eq!(server.get("/healthz").status, 200);

    // A declared 100 MB body with 10 bytes sent: refused at once, before it is read.
    let answer = raw_answer(
        &server,
        "127.0.0.3",
        b"POST /v1/templates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 104857600\r\n\r\n0123456789",
    );
    assert_json_error(&answer, 413);
    // A body within the limit that stops after 10 of its 1000 bytes: 408 at the body deadline.
    let answer = raw_answer(
        &server,
        "127.0.0.3",
        b"POST /v1/templates HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
          Content-Length: 1000\r\n\r\n0123456789",
    );
    assert_json_error(&answer, 408);
    assert_eq!(server.get("/healthz").status, 200);

    poll(WAIT, "every slowloris connection to be closed", || {
        (count_closed(&slow) == slow.len()).then_some(())
    });
    assert_eq!(server.get("/healthz").status, 200);
    server.stop();
}

#[test]
fn one_address_at_its_limit_does_not_keep_another_out() {
    let server = Server::start_with(
        &[],
        &[
            "--max-connections-per-address",
            "5",
            "--http-header-timeout-s",
            "60",
            "--rtmp-handshake-timeout-s",
            "60",
        ],
    );
    let mut sink = Vec::new();
    // HTTP: five idle connections from 127.0.0.4 are held, the sixth gets the JSON 503.
    let mut held: Vec<TcpStream> = (0..5)
        .map(|_| connect_from("127.0.0.4", &server.http))
        .collect();
    let mut sixth = connect_from("127.0.0.4", &server.http);
    let mut answer = Vec::new();
    assert!(
        closed_within(&mut sixth, WAIT, &mut answer),
        "the sixth HTTP connection of one address was held"
    );
    assert_json_error(&String::from_utf8_lossy(&answer), 503);
    for s in &mut held {
        assert!(!closed_within(s, Duration::from_millis(50), &mut sink));
    }
    // Another address gets in.
    assert_eq!(server.get("/healthz").status, 200);

    // RTMP: the same.
    let mut held_rtmp: Vec<TcpStream> = (0..5)
        .map(|_| connect_from("127.0.0.4", &server.rtmp))
        .collect();
    let mut sixth = connect_from("127.0.0.4", &server.rtmp);
    assert!(
        closed_within(&mut sixth, WAIT, &mut sink),
        "the sixth RTMP connection of one address was held"
    );
    for s in &mut held_rtmp {
        assert!(!closed_within(s, Duration::from_millis(50), &mut sink));
    }
    let publisher = rtmp::Publisher::start(&server.rtmp, "live", "other");
    server.wait_live("live", "other", None);
    assert!(
        metric(
            &server,
            "livesnap_connections_refused_total{protocol=\"http\"}"
        ) >= 1.0
    );
    assert!(
        metric(
            &server,
            "livesnap_connections_refused_total{protocol=\"rtmp\"}"
        ) >= 1.0
    );
    drop(publisher);
    drop(held);
    drop(held_rtmp);
    server.stop();
}

/// CPU time (user and system, in clock ticks of 1/100 s) the process has used.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // After the command name in parentheses: fields 3 onwards; utime and stime are 14 and 15.
    let rest = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

/// Open files the server may have under this test: enough to start, few enough to exhaust.
const OPEN_FILES: u32 = 64;

#[test]
fn an_exhausted_open_file_limit_is_survived_with_a_line_per_episode() {
    let nofile = format!("--nofile={OPEN_FILES}:{OPEN_FILES}");
    let server = Server::start_under(
        &["prlimit", &nofile],
        &[
            "--max-pending-connections",
            "1000",
            "--max-connections-per-address",
            "1000",
            "--http-header-timeout-s",
            "60",
        ],
    );
    // More idle connections than the server has files: accepting fails until some close.
    let mut idle: Vec<TcpStream> = (0..2 * OPEN_FILES)
        .map(|_| connect_from("127.0.0.5", &server.http))
        .collect();
    poll(WAIT, "the server to run out of open files", || {
        server.log_text().contains("accept failing").then_some(())
    });
    // Held out of files for a while: the accept loop backs off, it does not spin or log. A
    // loop retrying at once would burn a whole core for these two seconds.
    let before = cpu_ticks(server.pid());
    thread::sleep(Duration::from_secs(2));
    let used = cpu_ticks(server.pid()) - before;
    assert!(
        used < 100,
        "the server used {used} CPU ticks (1/100 s) in 2 s while out of files: it spins"
    );
    // Close most of them: the server takes in the rest of its queue and serves again.
    idle.truncate(OPEN_FILES as usize / 4);
    // On a new connection (the harness's client may hold one from before).
    poll(WAIT, "/healthz to answer again on a new connection", || {
        let mut s = connect_from("127.0.0.1", &server.http);
        s.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut got = Vec::new();
        closed_within(&mut s, Duration::from_secs(5), &mut got);
        got.starts_with(b"HTTP/1.1 200 ").then_some(())
    });
    let publisher = rtmp::Publisher::start(&server.rtmp, "live", "after");
    server.wait_live("live", "after", None);
    let log = server.log_text();
    let episodes = log.matches("accept failing").count();
    assert!(
        (1..=5).contains(&episodes),
        "{episodes} accept-failure lines: one per episode, not per failure\n{}",
        server.log_tail(40)
    );
    assert!(log.contains("accepting again"), "{}", server.log_tail(40));
    // Each episode's end says how many accepts failed over how long: a backed-off loop tries a
    // few times a second (at most 2 once the backoff is at its cap), a spinning one thousands.
    for line in log.lines().filter(|l| l.contains("accepting again")) {
        let field = |name: &str| -> u64 {
            let at = line.find(&format!("{name}=")).unwrap() + name.len() + 1;
            let digits: String = line[at..]
                .chars()
                .take_while(char::is_ascii_digit)
                .collect();
            digits.parse().unwrap()
        };
        let (failures, ms) = (field("failures"), field("ms"));
        assert!(
            failures <= 10 + ms / 100,
            "{failures} failed accepts in {ms} ms: the accept loop does not back off\n{line}"
        );
    }
    drop(publisher);
    drop(idle);
    server.stop();
}

#[test]
fn a_name_with_control_characters_is_refused_and_logged_escaped() {
    let server = Server::start();
    let addr = server.rtmp.clone();
    let tc_url = format!("rtmp://{addr}/live");
    for (app, name) in [
        ("live", "cam\nforged-line: ERROR injected"),
        ("live", "cam?token=1\r\nforged-line: ERROR injected"),
        ("live\n", "cam"),
        ("live", "cam\u{1b}[2Jforged"),
    ] {
        match rtmp::Publisher::try_start(&addr, &tc_url, app, name) {
            Ok(_) => panic!("the publish of {app:?}/{name:?} was accepted"),
            Err(why) => assert!(why.contains("BadName"), "{app:?}/{name:?}: {why}"),
        }
    }
    assert_eq!(
        server.get("/v1/streams").json()["streams"],
        serde_json::json!([])
    );
    let log = server.log_text();
    assert!(
        !log.lines().any(|l| l.starts_with("forged-line")),
        "a name started a log line:\n{log}"
    );
    assert!(!log.contains('\u{1b}'), "an escape reached the log:\n{log}");
    assert!(
        log.contains("cam\\nforged-line"),
        "the refused name is logged escaped:\n{log}"
    );
    server.stop();
}
