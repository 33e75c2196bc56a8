//! Snapshot templates (what to take, how often, where to put it) and bindings (which streams use
//! which template). Both are plain data, checked here; [`crate::auto_rows`] keeps them in the
//! index.

use std::sync::Arc;

use media::picture::{EncodeOptions, ImageFormat, DEFAULT_JPEG_QUALITY, MAX_OUTPUT_SIDE};
use media::stream::StreamKey;
use serde::{Deserialize, Serialize};

use crate::path::{PathPattern, DEFAULT_OVERWRITE_PATH, DEFAULT_SEQUENCE_PATH};

/// Shortest and longest `interval_s`.
pub const INTERVAL_RANGE: (u32, u32) = (1, 86_400);
/// Largest `every_n_frames`.
pub const MAX_EVERY_N_FRAMES: u32 = 1_000_000;
/// Longest template name.
pub const MAX_TEMPLATE_NAME: usize = 64;
/// JPEG quality, lowest and highest.
pub const QUALITY_RANGE: (u8, u8) = (1, 100);
/// Largest `retention.keep_last`: far more than any stream is kept, far below where a count
/// stops fitting the index's signed integers.
pub const MAX_KEEP_LAST: u64 = 100_000_000;
/// Longest `retention.max_age_s`: ten years. A larger age is a mistake, and an age that does not
/// fit in milliseconds would wrap the sweeper's cutoff and delete nearly everything.
pub const MAX_RETENTION_AGE_S: u64 = 10 * 365 * 86_400;
/// Most templates a server keeps: each is a row loaded at start and held in memory, and a few
/// hundred already describe every kind of picture a deployment takes.
pub const MAX_TEMPLATES: usize = 1000;
/// Most bindings a server keeps (one per domain, app or stream that is bound); each stream's
/// publish looks through them.
pub const MAX_BINDINGS: usize = 10_000;

/// One number of a template as the API takes it: where it is in the JSON and its range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NumericField {
    /// The JSON field (`retention.` for the two inside `retention`).
    pub field: &'static str,
    /// Smallest value accepted.
    pub min: u64,
    /// Largest value accepted.
    pub max: u64,
    /// Whether `null` (or leaving it out) is allowed.
    pub optional: bool,
}

/// Every number of a template, with its range: the one table the API's check of the JSON and
/// [`TemplateSpec::check`] read.
pub const NUMERIC_FIELDS: &[NumericField] = &[
    NumericField {
        field: "interval_s",
        min: INTERVAL_RANGE.0 as u64,
        max: INTERVAL_RANGE.1 as u64,
        optional: true,
    },
    NumericField {
        field: "every_n_frames",
        min: 1,
        max: MAX_EVERY_N_FRAMES as u64,
        optional: true,
    },
    NumericField {
        field: "quality",
        min: QUALITY_RANGE.0 as u64,
        max: QUALITY_RANGE.1 as u64,
        optional: false,
    },
    NumericField {
        field: "width",
        min: 1,
        max: MAX_OUTPUT_SIDE as u64,
        optional: true,
    },
    NumericField {
        field: "height",
        min: 1,
        max: MAX_OUTPUT_SIDE as u64,
        optional: true,
    },
    NumericField {
        field: "retention.keep_last",
        min: 1,
        max: MAX_KEEP_LAST,
        optional: true,
    },
    NumericField {
        field: "retention.max_age_s",
        min: 1,
        max: MAX_RETENTION_AGE_S,
        optional: true,
    },
];

impl NumericField {
    /// The entry of `field` in [`NUMERIC_FIELDS`].
    pub fn of(field: &str) -> &'static NumericField {
        NUMERIC_FIELDS
            .iter()
            .find(|f| f.field == field)
            .unwrap_or_else(|| unreachable!("{field} is not in NUMERIC_FIELDS"))
    }

    /// Refuses `v` outside the range.
    pub fn check(&self, v: u64) -> Result<(), FieldError> {
        if (self.min..=self.max).contains(&v) {
            Ok(())
        } else {
            Err(self.refuse(&v.to_string()))
        }
    }

    fn refuse(&self, got: &str) -> FieldError {
        bad(
            self.field,
            format!(
                "must be an integer in {}..={}, got {got}",
                self.min, self.max
            ),
        )
    }

    /// Checks the JSON value given for this field, whatever its shape: a number outside the
    /// range (negative, fractional, 1e16, 2^64-1) or anything that is not a number is refused
    /// naming the field, before serde would refuse it with a message that names none.
    pub fn check_json(&self, v: &serde_json::Value) -> Result<(), FieldError> {
        use serde_json::Value;
        match v {
            Value::Null if self.optional => Ok(()),
            Value::Number(n) => match n.as_u64() {
                Some(u) => self.check(u),
                None => Err(self.refuse(&n.to_string())),
            },
            other => {
                let mut shown = other.to_string();
                if shown.len() > 40 {
                    let mut end = 40;
                    while !shown.is_char_boundary(end) {
                        end -= 1;
                    }
                    shown.truncate(end);
                    shown.push_str("...");
                }
                Err(self.refuse(&shown))
            }
        }
    }
}

/// Checks every number of a template's JSON against [`NUMERIC_FIELDS`] (see
/// [`NumericField::check_json`]); what is not a number field is left to serde. Once this passes,
/// each number fits its Rust type.
pub fn check_json_numbers(json: &serde_json::Value) -> Result<(), FieldError> {
    for f in NUMERIC_FIELDS {
        let v = match f.field.split_once('.') {
            Some((outer, inner)) => json.get(outer).and_then(|o| o.get(inner)),
            None => json.get(f.field),
        };
        if let Some(v) = v {
            f.check_json(v)?;
        }
    }
    Ok(())
}

/// A template as the API reads and writes it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TemplateSpec {
    /// Unique name.
    pub name: String,
    /// Take a picture every this many seconds, 1..=86400 (at the first keyframe at or after each
    /// due time).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 86400)]
    pub interval_s: Option<u32>,
    /// Or every this many frames, 1..=[`MAX_EVERY_N_FRAMES`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 1000000)]
    pub every_n_frames: Option<u32>,
    /// `jpg` (default) or `png`.
    #[serde(default = "default_format")]
    pub format: String,
    /// JPEG quality 1..=100.
    #[serde(default = "default_quality")]
    #[schema(minimum = 1, maximum = 100)]
    pub quality: u8,
    /// Output width, 1..=8192 (alone: keeps the aspect ratio).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 8192)]
    pub width: Option<u32>,
    /// Output height, 1..=8192.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 8192)]
    pub height: Option<u32>,
    /// Storage location name.
    #[serde(default = "default_storage")]
    pub storage: String,
    /// `overwrite`, `sequence`, or both.
    #[serde(default = "default_modes")]
    pub modes: Vec<String>,
    /// Pattern of the overwritten picture.
    #[serde(default = "default_overwrite_path")]
    pub overwrite_path: String,
    /// Pattern of sequence pictures.
    #[serde(default = "default_sequence_path")]
    pub sequence_path: String,
    /// What to keep of sequence pictures, per stream.
    #[serde(default)]
    pub retention: Retention,
    /// Where to POST `snapshot.stored` events.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub callback_url: Option<String>,
}

fn default_format() -> String {
    "jpg".into()
}
fn default_quality() -> u8 {
    DEFAULT_JPEG_QUALITY
}
fn default_storage() -> String {
    "local".into()
}
fn default_modes() -> Vec<String> {
    vec!["sequence".into()]
}
fn default_overwrite_path() -> String {
    DEFAULT_OVERWRITE_PATH.into()
}
fn default_sequence_path() -> String {
    DEFAULT_SEQUENCE_PATH.into()
}

/// Retention of sequence pictures, per stream and template.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Retention {
    /// Keep at most this many (1..=[`MAX_KEEP_LAST`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 100000000)]
    pub keep_last: Option<u64>,
    /// Delete those older than this many seconds (1..=[`MAX_RETENTION_AGE_S`], ten years).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, maximum = 315360000)]
    pub max_age_s: Option<u64>,
}

/// When pictures are due.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// Every N seconds, at a keyframe.
    Interval(u32),
    /// Every N frames.
    EveryNFrames(u32),
}

/// A checked template.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    /// The spec it was made from (what the API shows).
    pub spec: TemplateSpec,
    /// When.
    pub trigger: Trigger,
    /// What picture.
    pub options: EncodeOptions,
    /// Overwrite pattern, when that mode is on.
    pub overwrite: Option<PathPattern>,
    /// Sequence pattern, when that mode is on.
    pub sequence: Option<PathPattern>,
    /// The pull job whose stream this template pictures, when it is one's (see
    /// [`crate::jobs`]): its id is `{JobId}` and the rows' `job`, and it counts the pictures.
    pub job: Option<Arc<crate::jobs::JobLink>>,
}

/// A field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FieldError {
    /// The JSON field.
    pub field: &'static str,
    /// What is wrong.
    pub message: String,
}

impl std::fmt::Display for FieldError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.field, self.message)
    }
}

fn bad(field: &'static str, message: impl Into<String>) -> FieldError {
    FieldError {
        field,
        message: message.into(),
    }
}

/// Checks a name used as a template or storage identifier.
pub fn check_identifier(field: &'static str, name: &str) -> Result<(), FieldError> {
    if name.is_empty() || name.len() > MAX_TEMPLATE_NAME {
        return Err(bad(
            field,
            format!("must be 1..={MAX_TEMPLATE_NAME} characters"),
        ));
    }
    if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        || name.starts_with('.')
    {
        return Err(bad(
            field,
            "may hold only letters, digits, _, - and . (not first)",
        ));
    }
    Ok(())
}

/// The separator of an account's template names as kept: `{account}:{name}`. Identifiers hold
/// no `:`, so an account's template never takes the name of the administrator's, and two
/// accounts may each have a template of the same name.
pub const ACCOUNT_SEPARATOR: char = ':';

/// Checks a template name as kept: an identifier, or an account's `{account}:{name}`.
pub fn check_template_name(field: &'static str, name: &str) -> Result<(), FieldError> {
    match name.split_once(ACCOUNT_SEPARATOR) {
        Some((account, own)) => {
            check_identifier(field, account)?;
            check_identifier(field, own)
        }
        None => check_identifier(field, name),
    }
}

/// The name an account's template is kept under.
pub fn account_template_name(account: &str, name: &str) -> String {
    format!("{account}{ACCOUNT_SEPARATOR}{name}")
}

/// The name a template kept as `name` has for `account`: its own part, when it is the
/// account's; `None` when it is not.
pub fn name_for_account<'a>(account: &str, name: &'a str) -> Option<&'a str> {
    name.strip_prefix(account)?.strip_prefix(ACCOUNT_SEPARATOR)
}

/// The name a template's pictures show in `{JobId}` paths: an account's without its prefix.
pub fn display_name(name: &str) -> &str {
    name.split_once(ACCOUNT_SEPARATOR)
        .map_or(name, |(_, own)| own)
}

impl TemplateSpec {
    /// Checks every field; the error names the first bad one.
    pub fn check(self) -> Result<Template, FieldError> {
        check_template_name("name", &self.name)?;
        let trigger = match (self.interval_s, self.every_n_frames) {
            (Some(s), None) => {
                NumericField::of("interval_s").check(s.into())?;
                Trigger::Interval(s)
            }
            (None, Some(n)) => {
                NumericField::of("every_n_frames").check(n.into())?;
                Trigger::EveryNFrames(n)
            }
            (None, None) => return Err(bad("interval_s", "give interval_s or every_n_frames")),
            (Some(_), Some(_)) => {
                return Err(bad(
                    "every_n_frames",
                    "give interval_s or every_n_frames, not both",
                ))
            }
        };
        let format =
            ImageFormat::parse(&self.format).ok_or_else(|| bad("format", "must be jpg or png"))?;
        NumericField::of("quality").check(self.quality.into())?;
        for (field, v) in [("width", self.width), ("height", self.height)] {
            if let Some(v) = v {
                NumericField::of(field).check(v.into())?;
            }
        }
        check_identifier("storage", &self.storage)?;
        if self.modes.is_empty() {
            return Err(bad("modes", "give overwrite, sequence or both"));
        }
        let (mut overwrite, mut sequence) = (false, false);
        for m in &self.modes {
            match m.as_str() {
                "overwrite" if !overwrite => overwrite = true,
                "sequence" if !sequence => sequence = true,
                _ => {
                    return Err(bad(
                        "modes",
                        format!("{m:?} is not overwrite or sequence, or is repeated"),
                    ))
                }
            }
        }
        let overwrite = if overwrite {
            Some(PathPattern::parse(&self.overwrite_path).map_err(|e| bad("overwrite_path", e))?)
        } else {
            None
        };
        let sequence = if sequence {
            let p = PathPattern::parse(&self.sequence_path).map_err(|e| bad("sequence_path", e))?;
            if !p.is_unique() {
                return Err(bad(
                    "sequence_path",
                    "must contain {Sequence}, {SnapshotTime}, {UnixTimestampMs} or {UnixTimestamp} so that names differ",
                ));
            }
            Some(p)
        } else {
            None
        };
        for (field, v) in [
            ("retention.keep_last", self.retention.keep_last),
            ("retention.max_age_s", self.retention.max_age_s),
        ] {
            if let Some(v) = v {
                NumericField::of(field).check(v)?;
            }
        }
        if let Some(url) = &self.callback_url {
            if !(url.starts_with("http://") || url.starts_with("https://")) || url.len() > 2048 {
                return Err(bad("callback_url", "must be an http:// or https:// URL"));
            }
        }
        let options = EncodeOptions {
            format,
            width: self.width,
            height: self.height,
            quality: self.quality,
        };
        Ok(Template {
            spec: self,
            trigger,
            options,
            overwrite,
            sequence,
            job: None,
        })
    }
}

/// Matches an app or stream name, or any (`*`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BindingSpec {
    /// Domain (default `_default`).
    #[serde(default = "default_domain")]
    pub domain: String,
    /// App name or `*`.
    #[serde(default = "star")]
    pub app: String,
    /// Stream name or `*`; a stream needs an app.
    #[serde(default = "star")]
    pub stream: String,
    /// Template name.
    pub template: String,
}

/// `_default`, for serde defaults.
pub fn default_domain() -> String {
    media::stream::DEFAULT_DOMAIN.into()
}
/// `*`, for serde defaults.
pub fn star() -> String {
    "*".into()
}

impl BindingSpec {
    /// Checks the binding's names.
    pub fn check(&self) -> Result<(), FieldError> {
        media::stream::check_name("domain", &self.domain)
            .map_err(|e| bad("domain", e.to_string()))?;
        if self.app != "*" {
            media::stream::check_name("app", &self.app).map_err(|e| bad("app", e.to_string()))?;
        }
        if self.stream != "*" {
            if self.app == "*" {
                return Err(bad("stream", "a stream binding needs an app"));
            }
            media::stream::check_name("stream", &self.stream)
                .map_err(|e| bad("stream", e.to_string()))?;
        }
        check_template_name("template", &self.template)
    }

    /// How specific: 2 stream, 1 app, 0 domain; `None` when it does not match `key`.
    pub fn rank(&self, key: &StreamKey) -> Option<u8> {
        if self.domain != key.domain {
            return None;
        }
        match (self.app.as_str(), self.stream.as_str()) {
            ("*", _) => Some(0),
            (app, "*") if app == key.app => Some(1),
            (app, stream) if app == key.app && stream == key.stream => Some(2),
            _ => None,
        }
    }
}

/// The most specific binding for a stream (stream over app over domain).
pub fn resolve<'a>(
    bindings: impl IntoIterator<Item = &'a BindingSpec>,
    key: &StreamKey,
) -> Option<&'a BindingSpec> {
    bindings
        .into_iter()
        .filter_map(|b| b.rank(key).map(|r| (r, b)))
        .max_by_key(|(r, _)| *r)
        .map(|(_, b)| b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Result<Template, String> {
        let s: TemplateSpec = serde_json::from_str(json).map_err(|e| e.to_string())?;
        s.check().map_err(|e| e.to_string())
    }

    #[test]
    fn defaults_and_field_errors() {
        let t = spec(r#"{"name":"t","interval_s":5}"#).unwrap();
        assert_eq!(t.trigger, Trigger::Interval(5));
        assert!(t.sequence.is_some() && t.overwrite.is_none());
        assert_eq!(t.options.format, ImageFormat::Jpeg);
        for (json, field) in [
            (r#"{"name":"t"}"#, "interval_s"),
            (r#"{"name":"t","interval_s":0}"#, "interval_s"),
            (r#"{"name":"t","interval_s":86401}"#, "interval_s"),
            (
                r#"{"name":"t","interval_s":5,"every_n_frames":3}"#,
                "every_n_frames",
            ),
            (r#"{"name":"t","interval_s":5,"format":"gif"}"#, "format"),
            (r#"{"name":"t","interval_s":5,"quality":0}"#, "quality"),
            (r#"{"name":"t","interval_s":5,"width":99999}"#, "width"),
            (r#"{"name":"t","interval_s":5,"modes":[]}"#, "modes"),
            (r#"{"name":"t","interval_s":5,"modes":["both"]}"#, "modes"),
            (
                r#"{"name":"t","interval_s":5,"sequence_path":"s/{StreamName}.jpg"}"#,
                "sequence_path",
            ),
            (
                r#"{"name":"t","interval_s":5,"modes":["overwrite"],"overwrite_path":"../x"}"#,
                "overwrite_path",
            ),
            (r#"{"name":"../t","interval_s":5}"#, "name"),
            (
                r#"{"name":"t","interval_s":5,"callback_url":"ftp://x"}"#,
                "callback_url",
            ),
            (
                r#"{"name":"t","interval_s":5,"retention":{"keep_last":0}}"#,
                "retention",
            ),
        ] {
            let err = spec(json).unwrap_err();
            assert!(err.starts_with(field), "{json} -> {err}");
        }
        assert!(spec(r#"{"name":"t","interval_s":5,"colour":"red"}"#)
            .unwrap_err()
            .contains("colour"));
    }

    #[test]
    fn numbers_out_of_range_or_of_the_wrong_shape_name_their_field() {
        // What the API does: the numbers first, then serde, then the rest of the checks.
        let parse = |json: &str| -> Result<Template, FieldError> {
            let v: serde_json::Value = serde_json::from_str(json).unwrap();
            check_json_numbers(&v)?;
            serde_json::from_value::<TemplateSpec>(v).unwrap().check()
        };
        for (json, field) in [
            (r#"{"interval_s":1e16}"#, "interval_s"),
            (r#"{"interval_s":-1}"#, "interval_s"),
            (r#"{"interval_s":1.5}"#, "interval_s"),
            (r#"{"interval_s":"5"}"#, "interval_s"),
            (r#"{"interval_s":5,"quality":300}"#, "quality"),
            (r#"{"interval_s":5,"quality":null}"#, "quality"),
            (r#"{"interval_s":5,"width":18446744073709551615}"#, "width"),
            (r#"{"every_n_frames":4294967296}"#, "every_n_frames"),
            (
                r#"{"interval_s":5,"retention":{"max_age_s":18446744073709551615}}"#,
                "retention.max_age_s",
            ),
            (
                r#"{"interval_s":5,"retention":{"max_age_s":1e16}}"#,
                "retention.max_age_s",
            ),
            (
                r#"{"interval_s":5,"retention":{"max_age_s":315360001}}"#,
                "retention.max_age_s",
            ),
            (
                r#"{"interval_s":5,"retention":{"keep_last":-1}}"#,
                "retention.keep_last",
            ),
            (
                r#"{"interval_s":5,"retention":{"keep_last":100000001}}"#,
                "retention.keep_last",
            ),
        ] {
            let json = json.replacen('{', r#"{"name":"t","#, 1);
            let err = parse(&json).unwrap_err();
            assert_eq!(err.field, field, "{json}: {err}");
            assert!(err.message.contains("..="), "{json}: {err}");
        }
        let t = parse(
            r#"{"name":"t","interval_s":5,"retention":{"max_age_s":315360000,"keep_last":100000000}}"#,
        )
        .unwrap();
        assert_eq!(t.spec.retention.max_age_s, Some(MAX_RETENTION_AGE_S));
        // A spec made in code (not from JSON) is held to the same ranges.
        let mut spec = parse(r#"{"name":"t","interval_s":5}"#).unwrap().spec;
        spec.retention.max_age_s = Some(u64::MAX);
        assert_eq!(spec.check().unwrap_err().field, "retention.max_age_s");
    }

    /// The OpenAPI schema's minimum and maximum of each number (attribute literals) are the
    /// ranges the checks use.
    #[test]
    fn the_schema_shows_the_ranges() {
        use utoipa::PartialSchema;
        let spec = serde_json::to_value(TemplateSpec::schema()).unwrap();
        let retention = serde_json::to_value(Retention::schema()).unwrap();
        for f in NUMERIC_FIELDS {
            let p = match f.field.split_once('.') {
                Some((_, inner)) => &retention["properties"][inner],
                None => &spec["properties"][f.field],
            };
            assert_eq!(
                p["minimum"].as_f64(),
                Some(f.min as f64),
                "{}: {p}",
                f.field
            );
            assert_eq!(
                p["maximum"].as_f64(),
                Some(f.max as f64),
                "{}: {p}",
                f.field
            );
        }
    }

    mod properties {
        use super::super::*;
        use proptest::prelude::*;

        /// Any JSON number: u64, i64, f64 (finite, as serde_json reads them), and the edges.
        fn any_number() -> impl Strategy<Value = serde_json::Value> {
            prop_oneof![
                any::<u64>().prop_map(serde_json::Value::from),
                any::<i64>().prop_map(serde_json::Value::from),
                any::<f64>().prop_map(serde_json::Value::from), // NaN and inf become null
                (0u64..=1_000_000_000).prop_map(serde_json::Value::from),
                Just(serde_json::json!(1e16)),
                Just(serde_json::json!(u64::MAX)),
                Just(serde_json::json!(-1)),
                Just(serde_json::json!(1.5)),
            ]
        }

        proptest! {
            /// Each numeric field, given any number, is either accepted with that very value
            /// inside its range or refused with an error naming it; nothing panics.
            #[test]
            fn every_number_is_in_range_or_refused_by_name(
                which in 0..NUMERIC_FIELDS.len(),
                n in any_number(),
            ) {
                let f = NUMERIC_FIELDS[which];
                let mut json = serde_json::json!({"name": "t"});
                if f.field != "every_n_frames" {
                    json["interval_s"] = 5.into();
                }
                match f.field.split_once('.') {
                    Some((outer, inner)) => json[outer] = serde_json::json!({ inner: n.clone() }),
                    None => json[f.field] = n.clone(),
                }
                let in_range = n.as_u64().filter(|v| (f.min..=f.max).contains(v));
                let checked = check_json_numbers(&json).map(|()| {
                    // Once the numbers pass, serde takes the body and the ranges hold.
                    serde_json::from_value::<TemplateSpec>(json.clone())
                        .expect("a checked number fits its type")
                        .check()
                });
                match (in_range, checked) {
                    (Some(v), Ok(Ok(t))) => {
                        let got = serde_json::to_value(&t.spec).unwrap();
                        let got = match f.field.split_once('.') {
                            Some((outer, inner)) => got[outer][inner].clone(),
                            None => got[f.field].clone(),
                        };
                        prop_assert_eq!(got.as_u64(), Some(v));
                    }
                    (None, Err(e)) => prop_assert_eq!(e.field, f.field),
                    // null for an optional field is the field left out.
                    (None, Ok(Ok(_))) if n.is_null() && f.optional => {}
                    (r, c) => prop_assert!(false, "{} = {}: in range {:?}, got {:?}", f.field, n, r, c),
                }
            }
        }
    }

    #[test]
    fn most_specific_binding_wins() {
        let b = |app: &str, stream: &str, t: &str| BindingSpec {
            domain: "_default".into(),
            app: app.into(),
            stream: stream.into(),
            template: t.into(),
        };
        let all = [
            b("*", "*", "domain"),
            b("live", "*", "app"),
            b("live", "cam1", "stream"),
        ];
        let key = |app: &str, s: &str| StreamKey::new("_default", app, s).unwrap();
        assert_eq!(
            resolve(&all, &key("live", "cam1")).unwrap().template,
            "stream"
        );
        assert_eq!(resolve(&all, &key("live", "cam2")).unwrap().template, "app");
        assert_eq!(
            resolve(&all, &key("other", "x")).unwrap().template,
            "domain"
        );
        assert!(resolve(&all, &StreamKey::new("d.example", "live", "cam1").unwrap()).is_none());
        assert!(b("*", "cam1", "x").check().is_err());
    }
}
