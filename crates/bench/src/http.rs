//! A minimal blocking HTTP/1.1 client: one-shot requests for the few API calls the benchmark
//! makes, and [`Conn`], a keep-alive connection for the on-demand clients.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

/// How long a read may wait: far above any picture's latency, so only a hung server hits it.
const READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest response header block accepted (the server's are a few hundred bytes).
const MAX_HEADER_BYTES: usize = 64 * 1024;
/// Largest response body accepted (a 1080p JPEG is well under 2 MiB).
const MAX_BODY_BYTES: usize = 64 * 1024 * 1024;

/// Sends one request with `Connection: close`; returns the status and the body.
pub fn request(
    addr: &str,
    method: &str,
    path: &str,
    body: Option<&str>,
) -> Result<(u16, String), String> {
    request_typed(addr, method, path, "application/json", body)
        .map(|(status, _, body)| (status, body))
}

/// A response's status, headers (names in lower case) and body.
pub type Answer = (u16, Vec<(String, String)>, String);

/// [`request`] with a body of `content_type`; also returns the response's headers.
pub fn request_typed(
    addr: &str,
    method: &str,
    path: &str,
    content_type: &str,
    body: Option<&str>,
) -> Result<Answer, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("HTTP connect {addr}: {e}"))?;
    s.set_read_timeout(Some(READ_TIMEOUT))
        .map_err(|e| e.to_string())?;
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())
        .map_err(|e| format!("HTTP write: {e}"))?;
    let mut resp = Vec::new();
    s.read_to_end(&mut resp)
        .map_err(|e| format!("HTTP read: {e}"))?;
    let text = String::from_utf8_lossy(&resp);
    let (head, rest) = text.split_once("\r\n\r\n").ok_or("HTTP: no header end")?;
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .ok_or("HTTP: no status")?;
    let headers: Vec<(String, String)> = head
        .lines()
        .skip(1)
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        dechunk(rest)
    } else {
        rest.to_string()
    };
    Ok((status, headers, body))
}

fn dechunk(mut s: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = s.split_once("\r\n") {
        let n = usize::from_str_radix(size.trim(), 16).unwrap_or(0);
        if n == 0 || rest.len() < n {
            break;
        }
        out.push_str(&rest[..n]);
        s = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// POSTs JSON and fails unless the status is 2xx.
pub fn post_ok(addr: &str, path: &str, body: &str) -> Result<(), String> {
    let (status, resp) = request(addr, "POST", path, Some(body))?;
    if !(200..300).contains(&status) {
        return Err(format!("POST {path}: {status} {resp}"));
    }
    Ok(())
}

/// One response on a keep-alive connection.
pub struct Response {
    pub status: u16,
    /// Header names in lower case.
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// A keep-alive HTTP/1.1 connection, opened on first use and again after the server closes it.
pub struct Conn {
    addr: String,
    stream: Option<BufReader<TcpStream>>,
    /// The API key sent as `Authorization: Bearer`, if any.
    auth: Option<&'static str>,
    /// The local address to connect from (another loopback address is another client to the
    /// server's per-address limits), if not the system's choice.
    source: Option<IpAddr>,
}

/// A TCP connection to `addr`, from `source` when given.
fn connect(addr: &str, source: Option<IpAddr>) -> Result<TcpStream, String> {
    let Some(ip) = source else {
        return TcpStream::connect(addr).map_err(|e| format!("HTTP connect {addr}: {e}"));
    };
    let target = addr
        .to_socket_addrs()
        .ok()
        .and_then(|mut a| a.next())
        .ok_or_else(|| format!("HTTP connect {addr}: not an address"))?;
    let sock = socket2::Socket::new(
        socket2::Domain::for_address(target),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )
    .map_err(|e| e.to_string())?;
    sock.bind(&SocketAddr::new(ip, 0).into())
        .map_err(|e| format!("HTTP connect from {ip}: {e}"))?;
    sock.connect(&target.into())
        .map_err(|e| format!("HTTP connect {addr} from {ip}: {e}"))?;
    Ok(sock.into())
}

impl Conn {
    pub fn new(addr: &str) -> Conn {
        Conn::with_auth(addr, None)
    }

    /// A connection whose requests carry `Authorization: Bearer <auth>`.
    pub fn with_auth(addr: &str, auth: Option<&'static str>) -> Conn {
        Conn {
            addr: addr.to_string(),
            stream: None,
            auth,
            source: None,
        }
    }

    /// This connection from `source` (a local address), when given.
    pub fn from_source(mut self, source: Option<IpAddr>) -> Conn {
        self.source = source;
        self
    }

    /// GETs `path`. A request on a reused connection that the server had closed is sent once
    /// more on a new one.
    pub fn get(&mut self, path: &str) -> Result<Response, String> {
        let reused = self.stream.is_some();
        match self.try_get(path) {
            Err(_) if reused => {
                self.stream = None;
                self.try_get(path)
            }
            r => r,
        }
    }

    fn try_get(&mut self, path: &str) -> Result<Response, String> {
        if self.stream.is_none() {
            let s = connect(&self.addr, self.source)?;
            s.set_nodelay(true).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(READ_TIMEOUT))
                .map_err(|e| e.to_string())?;
            self.stream = Some(BufReader::new(s));
        }
        let result = self.exchange(path);
        if result.as_ref().map_or(true, |(_, close)| *close) {
            self.stream = None;
        }
        result.map(|(r, _)| r)
    }

    /// Sends the request and reads the response; says whether the connection must be closed.
    fn exchange(&mut self, path: &str) -> Result<(Response, bool), String> {
        let s = self.stream.as_mut().ok_or("not connected")?;
        let auth = self
            .auth
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        let req = format!("GET {path} HTTP/1.1\r\nHost: {}\r\n{auth}\r\n", self.addr);
        s.get_mut()
            .write_all(req.as_bytes())
            .map_err(|e| format!("HTTP write: {e}"))?;
        let mut line = String::new();
        let mut header_bytes = 0;
        let mut read_line = |s: &mut BufReader<TcpStream>, line: &mut String| {
            line.clear();
            let n = s.read_line(line).map_err(|e| format!("HTTP read: {e}"))?;
            header_bytes += n;
            if n == 0 {
                return Err("HTTP: connection closed before the response".to_string());
            }
            if header_bytes > MAX_HEADER_BYTES {
                return Err("HTTP: response header too large".to_string());
            }
            Ok(())
        };
        read_line(s, &mut line)?;
        let status: u16 = line
            .split_whitespace()
            .nth(1)
            .and_then(|c| c.parse().ok())
            .ok_or_else(|| format!("HTTP: bad status line {line:?}"))?;
        let mut headers = Vec::new();
        loop {
            read_line(s, &mut line)?;
            let l = line.trim_end();
            if l.is_empty() {
                break;
            }
            if let Some((n, v)) = l.split_once(':') {
                headers.push((n.trim().to_ascii_lowercase(), v.trim().to_string()));
            }
        }
        let get = |name: &str| {
            headers
                .iter()
                .find(|(n, _)| n == name)
                .map(|(_, v)| v.to_ascii_lowercase())
        };
        let close = get("connection").is_some_and(|v| v == "close");
        let body = if let Some(len) = get("content-length") {
            let len: usize = len
                .parse()
                .map_err(|_| format!("HTTP: bad content-length {len:?}"))?;
            if len > MAX_BODY_BYTES {
                return Err(format!("HTTP: body of {len} bytes is too large"));
            }
            let mut body = vec![0; len];
            s.read_exact(&mut body)
                .map_err(|e| format!("HTTP read body: {e}"))?;
            body
        } else if get("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            read_chunked(s)?
        } else {
            // Neither: the body runs to the end of the connection.
            let mut body = Vec::new();
            s.take(MAX_BODY_BYTES as u64)
                .read_to_end(&mut body)
                .map_err(|e| format!("HTTP read body: {e}"))?;
            return Ok((
                Response {
                    status,
                    headers,
                    body,
                },
                true,
            ));
        };
        Ok((
            Response {
                status,
                headers,
                body,
            },
            close,
        ))
    }
}

fn read_chunked(s: &mut BufReader<TcpStream>) -> Result<Vec<u8>, String> {
    let mut body = Vec::new();
    let mut line = String::new();
    loop {
        line.clear();
        s.read_line(&mut line)
            .map_err(|e| format!("HTTP read chunk: {e}"))?;
        let size = line.trim().split(';').next().unwrap_or("");
        let n = usize::from_str_radix(size, 16)
            .map_err(|_| format!("HTTP: bad chunk size {line:?}"))?;
        if body.len() + n > MAX_BODY_BYTES {
            return Err("HTTP: chunked body too large".into());
        }
        let start = body.len();
        body.resize(start + n, 0);
        s.read_exact(&mut body[start..])
            .map_err(|e| format!("HTTP read chunk: {e}"))?;
        // CRLF after the chunk (after the last, zero-size chunk: the end of the trailers).
        line.clear();
        s.read_line(&mut line)
            .map_err(|e| format!("HTTP read chunk: {e}"))?;
        if n == 0 {
            return Ok(body);
        }
    }
}
