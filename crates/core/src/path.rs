//! Path patterns for stored pictures: `snapshot/{Date}/{SourceID}/{AppName}/{StreamName}.{Format}`.
//!
//! A pattern is checked once, when a template is saved; rendering substitutes variables whose
//! values are made safe first, so that no stream, app or domain name can make a key leave its
//! storage root: `/`, `\`, NUL and control characters become `_`, a value of `.` or `..` becomes
//! `_`, and long values are cut. The pattern's own text (written by an administrator) may hold
//! `/` to make folders, but no `..` segment and no leading `/`.

use std::fmt::Write;
use std::time::{SystemTime, UNIX_EPOCH};

/// The variables a pattern may use.
pub const VARIABLES: &[&str] = &[
    "Domain",
    "SourceID",
    "AppName",
    "StreamName",
    "Date",
    "SnapshotTime",
    "UnixTimestamp",
    "UnixTimestampMs",
    "Sequence",
    "JobId",
    "MediaSessionId",
    "Format",
];

/// Variables that make every picture's name different, one of which a sequence pattern needs.
pub const UNIQUE_VARIABLES: &[&str] = &[
    "SnapshotTime",
    "UnixTimestampMs",
    "Sequence",
    "UnixTimestamp",
];

/// Default overwrite ("coverage") pattern, as JD Cloud names it.
pub const DEFAULT_OVERWRITE_PATH: &str =
    "snapshot/{Date}/{SourceID}/{AppName}/{StreamName}.{Format}";
/// Default sequence pattern, as JD Cloud names it.
pub const DEFAULT_SEQUENCE_PATH: &str =
    "snapshot/{Date}/{SourceID}/{AppName}/{StreamName}/{SnapshotTime}.{Format}";

/// Longest pattern accepted.
pub const MAX_PATTERN_LEN: usize = 512;
/// Longest value substituted for one variable, in bytes.
pub const MAX_VALUE_LEN: usize = 128;
/// Longest rendered key, in bytes.
pub const MAX_KEY_LEN: usize = 1024;

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Var(String),
}

/// A checked path pattern.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathPattern {
    source: String,
    pieces: Vec<Piece>,
}

impl PathPattern {
    /// Parses and checks a pattern; the error says what is wrong.
    pub fn parse(pattern: &str) -> Result<PathPattern, String> {
        if pattern.is_empty() {
            return Err("is empty".into());
        }
        if pattern.len() > MAX_PATTERN_LEN {
            return Err(format!("is longer than {MAX_PATTERN_LEN} bytes"));
        }
        if pattern.starts_with('/')
            || pattern.contains('\\')
            || pattern.chars().any(|c| c.is_control())
        {
            return Err("may not start with /, nor contain \\ or control characters".into());
        }
        let mut pieces = Vec::new();
        let mut rest = pattern;
        while let Some(open) = rest.find('{') {
            if open > 0 {
                pieces.push(Piece::Text(rest[..open].to_string()));
            }
            let close = rest[open..].find('}').ok_or("has a { without }")? + open;
            let name = &rest[open + 1..close];
            if !VARIABLES.contains(&name) {
                return Err(format!(
                    "uses unknown variable {{{name}}}; known: {}",
                    VARIABLES.join(", ")
                ));
            }
            pieces.push(Piece::Var(name.to_string()));
            rest = &rest[close + 1..];
        }
        if rest.contains('}') {
            return Err("has a } without {".into());
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_string()));
        }
        // Segments of literal text only: none may be "." or "..", none empty ("a//b").
        let literal: String = pieces
            .iter()
            .map(|p| match p {
                Piece::Text(t) => t.as_str(),
                Piece::Var(_) => "x",
            })
            .collect();
        if literal
            .split('/')
            .any(|seg| seg.is_empty() || seg == "." || seg == "..")
        {
            return Err("has an empty, . or .. path segment".into());
        }
        Ok(PathPattern {
            source: pattern.to_string(),
            pieces,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.source
    }

    /// True when the pattern names a variable that differs for every picture.
    pub fn is_unique(&self) -> bool {
        self.pieces
            .iter()
            .any(|p| matches!(p, Piece::Var(v) if UNIQUE_VARIABLES.contains(&v.as_str())))
    }

    /// Renders the key for one picture.
    pub fn render(&self, vars: &PathVars<'_>) -> String {
        let mut out = String::new();
        for p in &self.pieces {
            match p {
                Piece::Text(t) => out.push_str(t),
                Piece::Var(v) => vars.write(v, &mut out),
            }
        }
        if out.len() > MAX_KEY_LEN {
            let mut cut = MAX_KEY_LEN;
            while !out.is_char_boundary(cut) {
                cut -= 1;
            }
            out.truncate(cut);
        }
        out
    }
}

/// Makes an outside value safe as (part of) one path segment.
pub fn sanitize(value: &str) -> String {
    let mut s: String = value
        .chars()
        .map(|c| {
            if c == '/' || c == '\\' || c == '\0' || c.is_control() {
                '_'
            } else {
                c
            }
        })
        .collect();
    if s.len() > MAX_VALUE_LEN {
        let mut cut = MAX_VALUE_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    if s.is_empty() || s.chars().all(|c| c == '.') {
        s = "_".repeat(s.len().max(1));
    }
    s
}

/// The values of one picture's variables.
#[derive(Debug, Clone)]
pub struct PathVars<'a> {
    /// Domain of the stream.
    pub domain: &'a str,
    /// SourceID of the domain (defaults to the domain).
    pub source_id: &'a str,
    /// App.
    pub app: &'a str,
    /// Stream.
    pub stream: &'a str,
    /// When the picture was taken.
    pub time: SystemTime,
    /// The picture's number in its stream's sequence.
    pub sequence: u64,
    /// The job id (pull jobs) or the template name.
    pub job_id: &'a str,
    /// The publish session's id.
    pub media_session_id: &'a str,
    /// `jpg` or `png`.
    pub format: &'a str,
}

impl PathVars<'_> {
    fn write(&self, var: &str, out: &mut String) {
        let since = self.time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let civil = civil_from_unix(since.as_secs() as i64);
        let _ = match var {
            "Domain" => write!(out, "{}", sanitize(self.domain)),
            "SourceID" => write!(out, "{}", sanitize(self.source_id)),
            "AppName" => write!(out, "{}", sanitize(self.app)),
            "StreamName" => write!(out, "{}", sanitize(self.stream)),
            "Date" => write!(out, "{:04}-{:02}-{:02}", civil.0, civil.1, civil.2),
            "SnapshotTime" => write!(
                out,
                "{:04}{:02}{:02}{:02}{:02}{:02}{:03}",
                civil.0,
                civil.1,
                civil.2,
                civil.3,
                civil.4,
                civil.5,
                since.subsec_millis()
            ),
            "UnixTimestamp" => write!(out, "{}", since.as_secs()),
            "UnixTimestampMs" => write!(out, "{}", since.as_millis()),
            "Sequence" => write!(out, "{}", self.sequence),
            "JobId" => write!(out, "{}", sanitize(self.job_id)),
            "MediaSessionId" => write!(out, "{}", sanitize(self.media_session_id)),
            "Format" => write!(out, "{}", sanitize(self.format)),
            _ => Ok(()),
        };
    }
}

/// UTC (year, month, day, hour, minute, second) of a Unix time (Howard Hinnant's algorithm;
/// written here to avoid a date crate for four fields).
pub fn civil_from_unix(secs: i64) -> (i64, u32, u32, u32, u32, u32) {
    let days = secs.div_euclid(86_400);
    let sod = secs.rem_euclid(86_400) as u32;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let y = yoe + era * 400 + i64::from(m <= 2);
    (y, m, d, sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn vars<'a>(app: &'a str, stream: &'a str) -> PathVars<'a> {
        PathVars {
            domain: "_default",
            source_id: "_default",
            app,
            stream,
            time: UNIX_EPOCH + Duration::from_millis(1_763_742_600_123), // 2025-11-21 16:30:00.123 UTC
            sequence: 7,
            job_id: "tpl",
            media_session_id: "42",
            format: "jpg",
        }
    }

    #[test]
    fn renders_the_reference_defaults() {
        let o = PathPattern::parse(DEFAULT_OVERWRITE_PATH).unwrap();
        let s = PathPattern::parse(DEFAULT_SEQUENCE_PATH).unwrap();
        assert_eq!(
            o.render(&vars("live", "cam1")),
            "snapshot/2025-11-21/_default/live/cam1.jpg"
        );
        assert_eq!(
            s.render(&vars("live", "cam1")),
            "snapshot/2025-11-21/_default/live/cam1/20251121163000123.jpg"
        );
        assert!(!o.is_unique() && s.is_unique());
        let a = PathPattern::parse("snapshot/{JobId}/{Sequence}/{UnixTimestamp}.jpg").unwrap();
        assert_eq!(
            a.render(&vars("live", "cam1")),
            "snapshot/tpl/7/1763742600.jpg"
        );
    }

    #[test]
    fn hostile_names_stay_inside_the_root() {
        let p = PathPattern::parse("{AppName}/{StreamName}.{Format}").unwrap();
        for (app, stream) in [
            ("..", ".."),
            ("../../etc", "passwd"),
            ("a\\..\\b", "x\0y"),
            (".", "...."),
            ("", "\n"),
        ] {
            let key = p.render(&vars(app, stream));
            assert!(!key.starts_with('/'), "{key}");
            assert!(
                key.split('/')
                    .all(|seg| !seg.is_empty() && seg != "." && seg != ".."),
                "{key:?}"
            );
            assert!(
                !key.contains('\\') && !key.contains('\0') && !key.contains('\n'),
                "{key:?}"
            );
            assert_eq!(key.split('/').count(), 2, "{key:?}");
        }
        let long = "x".repeat(10_000);
        assert!(p.render(&vars(&long, &long)).len() <= 2 * MAX_VALUE_LEN + 5);
    }

    #[test]
    fn refuses_bad_patterns() {
        for bad in [
            "",
            "/abs/{StreamName}",
            "a/../{StreamName}",
            "{Nope}.jpg",
            "{StreamName",
            "a}b",
            "a//b",
            "a\\b",
        ] {
            assert!(PathPattern::parse(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn civil_dates() {
        assert_eq!(civil_from_unix(0), (1970, 1, 1, 0, 0, 0));
        assert_eq!(civil_from_unix(951_782_400), (2000, 2, 29, 0, 0, 0));
        assert_eq!(civil_from_unix(1_763_742_600), (2025, 11, 21, 16, 30, 0));
    }
}
