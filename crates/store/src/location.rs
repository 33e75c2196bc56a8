//! Named storage locations: a local folder or an S3-compatible bucket, built from the config's
//! `[storage.NAME]` tables, with put/get/delete by object key.
//!
//! Atomicity of overwrites (a reader never sees half a picture):
//! - local: `object_store`'s `LocalFileSystem::put` (0.14, `local.rs` `put_opts`) writes the
//!   payload to a staging file `<dest>#<n>` beside the destination and then `rename`s it over
//!   the destination, which POSIX makes atomic: a reader opens either the old file or the new one.
//! - S3: a single-request PUT is atomic by the protocol; the object appears whole or not at all.
//!   Pictures are small, so we never use multipart uploads.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, RetryConfig};
use serde::Deserialize;

use crate::{Error, Result};

/// Longest object key accepted (S3's own limit is 1024 bytes).
pub const MAX_KEY_BYTES: usize = 1024;
/// Region used when an S3 location names none.
pub const DEFAULT_S3_REGION: &str = "us-east-1";
/// How long to wait for a TCP connection to an S3 endpoint.
pub const S3_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long one S3 request may take in all.
pub const S3_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);
/// Retries inside one S3 call. Kept small: a store that stays down is the spool's business,
/// and the spool retries with its own backoff without holding up the caller.
pub const S3_MAX_RETRIES: usize = 2;
/// Upper bound on the time one S3 call spends retrying.
pub const S3_RETRY_TIMEOUT: Duration = Duration::from_secs(10);

/// One `[storage.NAME]` table of the config file. Its `Debug` hides the secret key.
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub struct LocationConfig {
    /// `"local"` or `"s3"`.
    pub kind: String,
    /// Local: the folder pictures are written under (created if missing).
    pub root: Option<PathBuf>,
    /// S3: `http(s)://host[:port]`; AWS itself when absent.
    pub endpoint: Option<String>,
    /// S3: the bucket.
    pub bucket: Option<String>,
    /// S3: the region, [`DEFAULT_S3_REGION`] when absent.
    pub region: Option<String>,
    /// S3: access key id.
    pub access_key_id: Option<String>,
    /// S3: secret access key.
    pub secret_access_key: Option<String>,
    /// S3: `http://host/bucket/key` requests when true, `http://bucket.host/key` when false.
    #[serde(default)]
    pub path_style: bool,
    /// S3: a folder prepended to every key (`prefix/key`).
    #[serde(default)]
    pub prefix: Option<String>,
    /// S3: allow a plain `http://` endpoint.
    #[serde(default)]
    pub allow_http: bool,
}

impl std::fmt::Debug for LocationConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LocationConfig")
            .field("kind", &self.kind)
            .field("root", &self.root)
            .field("endpoint", &self.endpoint)
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("access_key_id", &self.access_key_id)
            .field(
                "secret_access_key",
                &self.secret_access_key.as_ref().map(|_| "******"),
            )
            .field("path_style", &self.path_style)
            .field("prefix", &self.prefix)
            .field("allow_http", &self.allow_http)
            .finish()
    }
}

/// What a location is, for display and for callers that need the local path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum LocationKind {
    /// A folder on this machine.
    Local {
        /// Absolute or configured root folder.
        root: PathBuf,
    },
    /// A bucket on an S3-compatible store.
    S3 {
        /// The endpoint URL (AWS when `None`).
        endpoint: Option<String>,
        /// The bucket.
        bucket: String,
        /// Prefix prepended to every key, without slashes at either end.
        prefix: Option<String>,
    },
}

/// A named place pictures are stored in.
#[derive(Clone, Debug)]
pub struct Location {
    name: String,
    kind: LocationKind,
    store: Arc<dyn ObjectStore>,
}

impl Location {
    /// Builds the location `name` from its config table. Creates a local root folder if missing.
    pub fn new(name: &str, cfg: &LocationConfig) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidLocation {
            name: name.to_string(),
            reason,
        };
        match cfg.kind.as_str() {
            "local" => {
                // Fields of the other kind are a sign of a mistyped `kind`: say so rather than ignore them.
                if cfg.endpoint.is_some()
                    || cfg.bucket.is_some()
                    || cfg.access_key_id.is_some()
                    || cfg.secret_access_key.is_some()
                    || cfg.prefix.is_some()
                {
                    return Err(invalid(
                        "endpoint, bucket, credentials and prefix are for kind = \"s3\"".into(),
                    ));
                }
                let root = cfg
                    .root
                    .as_deref()
                    .ok_or_else(|| invalid("kind = \"local\" needs `root`".into()))?;
                Location::local(name, root)
            }
            "s3" => Location::s3(name, cfg),
            other => Err(invalid(format!(
                "unknown kind {other:?} (expected \"local\" or \"s3\")"
            ))),
        }
    }

    /// A local folder location; the folder is created if missing.
    pub fn local(name: &str, root: &Path) -> Result<Location> {
        if root.as_os_str().is_empty() {
            return Err(Error::InvalidLocation {
                name: name.into(),
                reason: "empty root".into(),
            });
        }
        std::fs::create_dir_all(root).map_err(|source| Error::CreateRoot {
            name: name.into(),
            path: root.to_path_buf(),
            source,
        })?;
        // `new_with_prefix` canonicalizes the root, so it must exist first (it creates nothing).
        let store = LocalFileSystem::new_with_prefix(root).map_err(|e| Error::InvalidLocation {
            name: name.into(),
            reason: e.to_string(),
        })?;
        Ok(Location {
            name: name.into(),
            kind: LocationKind::Local {
                root: root.to_path_buf(),
            },
            store: Arc::new(store),
        })
    }

    fn s3(name: &str, cfg: &LocationConfig) -> Result<Location> {
        let invalid = |reason: String| Error::InvalidLocation {
            name: name.to_string(),
            reason,
        };
        if cfg.root.is_some() {
            return Err(invalid("`root` is for kind = \"local\"".into()));
        }
        let bucket = cfg
            .bucket
            .as_deref()
            .filter(|b| !b.is_empty())
            .ok_or_else(|| invalid("kind = \"s3\" needs `bucket`".into()))?;
        if bucket.contains(['/', '\\', '\0']) {
            return Err(invalid(format!(
                "bucket {bucket:?} contains a slash or NUL"
            )));
        }
        // Without explicit keys object_store would fall back to the EC2 metadata service,
        // which elsewhere just hangs until a timeout: better a clear error at startup.
        let (Some(key_id), Some(secret)) = (&cfg.access_key_id, &cfg.secret_access_key) else {
            return Err(invalid(
                "kind = \"s3\" needs access_key_id and secret_access_key".into(),
            ));
        };
        let region = cfg.region.as_deref().unwrap_or(DEFAULT_S3_REGION);
        let prefix = match cfg.prefix.as_deref().map(|p| p.trim_matches('/')) {
            None | Some("") => None,
            Some(p) => {
                check_key(p)?;
                Some(p.to_string())
            }
        };

        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(bucket)
            .with_region(region)
            .with_access_key_id(key_id)
            .with_secret_access_key(secret)
            .with_virtual_hosted_style_request(!cfg.path_style)
            .with_client_options(
                ClientOptions::new()
                    .with_allow_http(cfg.allow_http)
                    .with_connect_timeout(S3_CONNECT_TIMEOUT)
                    .with_timeout(S3_REQUEST_TIMEOUT),
            )
            .with_retry(RetryConfig {
                backoff: BackoffConfig::default(),
                max_retries: S3_MAX_RETRIES,
                retry_timeout: S3_RETRY_TIMEOUT,
            });

        let endpoint = match cfg.endpoint.as_deref() {
            None => None,
            Some(e) => {
                let url = url::Url::parse(e)
                    .map_err(|err| invalid(format!("endpoint {e:?} is not a URL: {err}")))?;
                match url.scheme() {
                    "https" => {}
                    "http" if cfg.allow_http => {}
                    "http" => {
                        return Err(invalid(format!(
                            "endpoint {e:?} is plain http: set allow_http = true to use it"
                        )))
                    }
                    s => return Err(invalid(format!("endpoint scheme {s:?} is not http(s)"))),
                }
                let Some(host) = url.host_str() else {
                    return Err(invalid(format!("endpoint {e:?} has no host")));
                };
                if !url.username().is_empty() || url.password().is_some() {
                    return Err(invalid(
                        "put credentials in access_key_id/secret_access_key, not in the endpoint"
                            .into(),
                    ));
                }
                let base = e.trim_end_matches('/').to_string();
                // object_store uses a custom endpoint verbatim for virtual-hosted requests,
                // so the bucket has to be put into the host name here.
                let request_base = if cfg.path_style || host.starts_with(&format!("{bucket}.")) {
                    base.clone()
                } else {
                    let port = url.port().map(|p| format!(":{p}")).unwrap_or_default();
                    format!("{}://{bucket}.{host}{port}", url.scheme())
                };
                builder = builder.with_endpoint(request_base);
                Some(base)
            }
        };

        let store = builder.build().map_err(|e| invalid(e.to_string()))?;
        Ok(Location {
            name: name.into(),
            kind: LocationKind::S3 {
                endpoint,
                bucket: bucket.to_string(),
                prefix,
            },
            store: Arc::new(store),
        })
    }

    /// The location's name from the config.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// What kind of location this is.
    pub fn kind(&self) -> &LocationKind {
        &self.kind
    }

    /// A one-line description without secrets: `local:/srv/snapshots`,
    /// `s3:bucket@http://127.0.0.1:9000` (or `s3:bucket/prefix@...`).
    pub fn describe(&self) -> String {
        match &self.kind {
            LocationKind::Local { root } => format!("local:{}", root.display()),
            LocationKind::S3 {
                endpoint,
                bucket,
                prefix,
            } => {
                let prefix = prefix
                    .as_deref()
                    .map(|p| format!("/{p}"))
                    .unwrap_or_default();
                let endpoint = endpoint.as_deref().unwrap_or("aws");
                format!("s3:{bucket}{prefix}@{endpoint}")
            }
        }
    }

    /// Stores `data` under `key`, replacing any object there atomically.
    pub async fn put(&self, key: &str, data: Bytes) -> Result<()> {
        let path = self.object_path(key)?;
        self.store
            .put(&path, data.into())
            .await
            .map(|_| ())
            .map_err(|source| self.storage_error("put", key, source))
    }

    /// Reads the whole object under `key`.
    pub async fn get(&self, key: &str) -> Result<Bytes> {
        let path = self.object_path(key)?;
        let result = match self.store.get(&path).await {
            Ok(r) => r,
            Err(source) => return Err(self.storage_error("get", key, source)),
        };
        result
            .bytes()
            .await
            .map_err(|source| self.storage_error("get", key, source))
    }

    /// Deletes the object under `key`; an object that is already gone is not an error.
    pub async fn delete(&self, key: &str) -> Result<()> {
        let path = self.object_path(key)?;
        match self.store.delete(&path).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(source) => Err(self.storage_error("delete", key, source)),
        }
    }

    /// Removes the staging files a crash left in a local location (object_store writes
    /// `name#N` and renames it into place, so a `#digits` suffix is never a picture); returns
    /// how many went. An S3 location has none (a PUT is whole or absent).
    pub fn remove_temp_files(&self) -> std::io::Result<usize> {
        let LocationKind::Local { root } = &self.kind else {
            return Ok(0);
        };
        let mut removed = 0;
        let mut dirs = vec![root.clone()];
        while let Some(dir) = dirs.pop() {
            for entry in std::fs::read_dir(&dir)? {
                let entry = entry?;
                let path = entry.path();
                if entry.file_type()?.is_dir() {
                    dirs.push(path);
                } else if is_staging_name(&entry.file_name().to_string_lossy()) {
                    std::fs::remove_file(&path)?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
    }

    fn storage_error(&self, op: &'static str, key: &str, source: object_store::Error) -> Error {
        match source {
            object_store::Error::NotFound { .. } => Error::NotFound {
                location: self.name.clone(),
                key: key.into(),
            },
            source => Error::Storage {
                location: self.name.clone(),
                op,
                key: key.into(),
                source: Box::new(source),
            },
        }
    }

    fn object_path(&self, key: &str) -> Result<ObjectPath> {
        check_key(key)?;
        let full = match &self.kind {
            LocationKind::S3 {
                prefix: Some(p), ..
            } => format!("{p}/{key}"),
            _ => key.to_string(),
        };
        ObjectPath::parse(&full).map_err(|_| Error::InvalidKey {
            key: key.into(),
            reason: "not a valid object path",
        })
    }
}

/// `x.jpg#123`: an object_store staging file of a picture (the picture name, then `#` and a
/// counter).
fn is_staging_name(name: &str) -> bool {
    name.rsplit_once('#').is_some_and(|(base, n)| {
        [".jpg", ".jpeg", ".png"]
            .iter()
            .any(|ext| base.ends_with(ext))
            && !n.is_empty()
            && n.bytes().all(|b| b.is_ascii_digit())
    })
}

/// Refuses keys that could address anything outside the location's root, before any I/O.
/// Keys come from our own path renderer, so a refusal here means a bug or a hostile name got
/// through: better an error than a file in the wrong place.

pub fn check_key(key: &str) -> Result<()> {
    let refuse = |reason| {
        Err(Error::InvalidKey {
            key: key.into(),
            reason,
        })
    };
    if key.is_empty() {
        return refuse("empty");
    }
    if key.len() > MAX_KEY_BYTES {
        return refuse("longer than MAX_KEY_BYTES");
    }
    if key.starts_with('/') {
        return refuse("absolute");
    }
    if key.contains('\\') {
        return refuse("contains a backslash");
    }
    if key.chars().any(|c| c.is_control()) {
        return refuse("contains NUL or a control character");
    }
    for segment in key.split('/') {
        match segment {
            "" => return refuse("empty path segment"),
            "." | ".." => return refuse("`.` or `..` segment"),
            _ => {}
        }
    }
    // A drive-like first segment (`C:`) would be absolute on Windows; our renderer never makes one.
    if key.split('/').next().is_some_and(|s| s.contains(':')) {
        return refuse("drive-like first segment");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn staging_files_left_by_a_crash_are_removed_and_pictures_kept() {
        let dir = tempfile::tempdir().unwrap();
        let loc = Location::local("local", dir.path()).unwrap();
        let sub = dir.path().join("cam");
        std::fs::create_dir_all(&sub).unwrap();
        for name in ["a.jpg", "a.jpg#1", "b.png#12", "c#1", "d.jpg#x", "e.jpg#"] {
            std::fs::write(sub.join(name), b"x").unwrap();
        }
        assert_eq!(loc.remove_temp_files().unwrap(), 2);
        let mut left: Vec<String> = std::fs::read_dir(&sub)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["a.jpg", "c#1", "d.jpg#x", "e.jpg#"]);
    }

    #[test]
    fn hostile_keys_are_refused() {
        for key in [
            "",
            "/etc/passwd",
            "../x.jpg",
            "a/../../x.jpg",
            "a/./x.jpg",
            "a//x.jpg",
            "a/x.jpg/",
            "a\\..\\x.jpg",
            "a\0b.jpg",
            "a\nb.jpg",
            "C:/x.jpg",
            &"a".repeat(MAX_KEY_BYTES + 1),
        ] {
            assert!(
                matches!(check_key(key), Err(Error::InvalidKey { .. })),
                "{key:?} accepted"
            );
        }
        for key in [
            "snapshot/2026-11-21/_default/live/cam1.jpg",
            "a.b/c..d/e.png",
            "x",
        ] {
            check_key(key).unwrap();
        }
    }

    #[test]
    fn config_errors_are_clear() {
        let cfg = |kind: &str| LocationConfig {
            kind: kind.into(),
            root: None,
            endpoint: None,
            bucket: None,
            region: None,
            access_key_id: None,
            secret_access_key: None,
            path_style: false,
            prefix: None,
            allow_http: false,
        };
        let err = Location::new("x", &cfg("ftp")).unwrap_err().to_string();
        assert!(err.contains("unknown kind"), "{err}");
        let err = Location::new("x", &cfg("local")).unwrap_err().to_string();
        assert!(err.contains("root"), "{err}");
        let err = Location::new("x", &cfg("s3")).unwrap_err().to_string();
        assert!(err.contains("bucket"), "{err}");
        let mut c = cfg("s3");
        c.bucket = Some("b".into());
        c.access_key_id = Some("k".into());
        c.secret_access_key = Some("very-secret".into());
        c.endpoint = Some("http://127.0.0.1:9000".into());
        let err = Location::new("x", &c).unwrap_err().to_string();
        assert!(err.contains("allow_http"), "{err}");
        c.allow_http = true;
        c.prefix = Some("/pics/".into());
        let loc = Location::new("x", &c).unwrap();
        assert_eq!(loc.describe(), "s3:b/pics@http://127.0.0.1:9000");
        for shown in [format!("{c:?}"), format!("{loc:?}"), loc.describe()] {
            assert!(!shown.contains("very-secret"), "secret shown in {shown}");
        }
        let toml_err = serde_json::from_str::<LocationConfig>(r#"{"kind":"local","rooot":"/x"}"#);
        assert!(toml_err.is_err(), "unknown fields must be refused");
    }
}
