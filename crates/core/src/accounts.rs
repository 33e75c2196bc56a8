//! Accounts (tenants) and their API keys.
//!
//! An account owns its domains (a domain belongs to at most one account; `_default` is the
//! administrator's) and has keys, each `admin` (everything within the account) or `read` (GETs
//! only). A key is made from 32 random bytes, shown once, and kept only as its SHA-256 digest.
//! Everything is in the index and mirrored in memory, so a key check costs no database round
//! trip, and a revoked key stops working at once. When keys were last used is counted in memory
//! and written every [`KEY_USE_FLUSH`].

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use livesnap_store::index::{AccountRow, Index, KeyRow};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tracing::{info, warn};

use crate::clock::Clock;
use crate::lifecycle::Lifecycle;

/// Most accounts kept.
pub const MAX_ACCOUNTS: usize = 1000;
/// Most domains of one account.
pub const MAX_DOMAINS: usize = 100;
/// Most keys of one account.
pub const MAX_KEYS: usize = 100;
/// Longest account name, key label or domain, in bytes.
pub const MAX_NAME_LEN: usize = 64;
/// Longest domain, in bytes: what a stream key holds.
pub const MAX_DOMAIN_LEN: usize = media::stream::MAX_NAME_LEN;
/// Longest publish secret, in bytes.
pub const MAX_SECRET_LEN: usize = 256;
/// Shortest publish secret, in bytes: anyone who sees one signed URL could try short secrets
/// offline.
pub const MIN_SECRET_LEN: usize = 16;
/// How often the keys' last use is written to the index.
pub const KEY_USE_FLUSH: Duration = Duration::from_secs(60);
/// The prefix of every key livesnap makes.
pub const KEY_PREFIX: &str = "lsk_";

/// What a key may do within its account.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// Everything within the account.
    Admin,
    /// GETs only.
    Read,
}

impl Role {
    /// The name the API and the index use.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Read => "read",
        }
    }
}

/// An account as it is created (`POST /v1/accounts`).
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountSpec {
    /// Unique name: letters, digits, `_`, `-`, `.`.
    pub name: String,
    /// The domains it owns (publishers name them with `?domain=`, or with the URL's host when
    /// that host is also in the `domains` setting).
    #[serde(default)]
    pub domains: Vec<String>,
    /// Pull jobs it may run at once (default: the server's `max_jobs`).
    #[serde(default)]
    pub max_jobs: Option<u64>,
    /// Live streams its domains may hold at once (default: no limit of its own).
    #[serde(default)]
    pub max_streams: Option<u64>,
    /// Publishes in its domains must be signed with this (besides the server's own).
    #[serde(default)]
    pub publish_secret: Option<String>,
    /// Hosts its jobs may pull and its callbacks may reach: `cam.example.com`,
    /// `*.example.com`, an address, or a CIDR block (`10.0.0.0/8`). Empty: any.
    #[serde(default)]
    pub allowed_hosts: Vec<String>,
}

/// A change to an account (`PATCH`): each field given replaces the account's; an empty
/// `publish_secret` removes it, a `max_*` of 0 removes the limit.
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AccountPatch {
    /// The domains it owns, all of them.
    #[serde(default)]
    pub domains: Option<Vec<String>>,
    /// Pull jobs at once; 0: the server's `max_jobs`.
    #[serde(default)]
    pub max_jobs: Option<u64>,
    /// Live streams at once; 0: no limit of its own.
    #[serde(default)]
    pub max_streams: Option<u64>,
    /// Publish secret; empty: none.
    #[serde(default)]
    pub publish_secret: Option<String>,
    /// Hosts its jobs and callbacks may reach, all of them; empty: any.
    #[serde(default)]
    pub allowed_hosts: Option<Vec<String>>,
}

/// What is kept of an account besides its name and domains (the `spec` column).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Settings {
    max_jobs: Option<u64>,
    max_streams: Option<u64>,
    publish_secret: Option<String>,
    #[serde(default)]
    allowed_hosts: Vec<String>,
}

/// An account as the API shows it (never its publish secret).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Account {
    /// Its name.
    pub name: String,
    /// Its domains.
    pub domains: Vec<String>,
    /// Pull jobs at once, when it has a limit of its own.
    pub max_jobs: Option<u64>,
    /// Live streams at once, when it has a limit of its own.
    pub max_streams: Option<u64>,
    /// Whether publishes in its domains must be signed with a secret of its own.
    pub publish_secret_set: bool,
    /// Hosts its jobs and callbacks may reach (empty: any).
    pub allowed_hosts: Vec<String>,
    /// When it was created (RFC 3339).
    pub created_at: String,
    /// When it was last changed (RFC 3339).
    pub updated_at: String,
}

/// A key as the API lists it (never the key).
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct KeyInfo {
    /// Its id (to revoke it).
    pub id: String,
    /// What it may do.
    pub role: Role,
    /// Its label.
    pub label: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
    /// When it was last used (RFC 3339), to the minute.
    pub last_used_at: Option<String>,
}

/// A key just made: the only time its text is shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct NewKey {
    /// Its id.
    pub id: String,
    /// The key: send it as `Authorization: Bearer <key>`. It is not kept, only its digest.
    pub key: String,
    /// What it may do.
    pub role: Role,
    /// Its label.
    pub label: Option<String>,
    /// When it was made (RFC 3339).
    pub created_at: String,
}

/// Why an account or key request was refused.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// A field is wrong.
    #[error("{field}: {message}")]
    Field {
        /// The JSON field.
        field: &'static str,
        /// What is wrong.
        message: String,
    },
    /// No such account or key (or not the caller's to see).
    #[error("{0} not found")]
    NotFound(String),
    /// The change conflicts with what exists (a name taken, a domain owned, live streams).
    #[error("{0}")]
    Conflict(String),
    /// A count limit.
    #[error("at most {max} {what} are kept ({limit}); delete one first")]
    TooMany {
        /// `accounts` or `keys`.
        what: &'static str,
        /// The limit.
        max: usize,
        /// Its name.
        limit: &'static str,
    },
    /// The index failed; nothing changed.
    #[error("cannot save: {0}")]
    Save(String),
}

fn field(field: &'static str, message: impl Into<String>) -> AccountError {
    AccountError::Field {
        field,
        message: message.into(),
    }
}

fn saved<T>(r: livesnap_store::Result<T>) -> Result<T, AccountError> {
    r.map_err(|e| AccountError::Save(e.to_string()))
}

/// A key's owner, as a key check finds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyOwner {
    /// The key's id.
    pub id: String,
    /// Its account.
    pub account: String,
    /// What it may do.
    pub role: Role,
}

#[derive(Debug, Clone)]
struct Entry {
    settings: Settings,
    domains: Vec<String>,
    created_ms: i64,
    updated_ms: i64,
}

#[derive(Debug, Default)]
struct State {
    accounts: BTreeMap<String, Entry>,
    /// Domain -> account.
    owners: HashMap<String, String>,
    /// Digest -> owner.
    keys: HashMap<[u8; 32], KeyOwner>,
    /// Id -> what the API lists.
    key_rows: BTreeMap<String, KeyRow>,
}

/// The accounts of the server.
pub struct Accounts {
    index: Arc<Index>,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    /// Key id -> when it was last used, not yet written.
    used: Mutex<HashMap<String, i64>>,
    change: tokio::sync::Mutex<()>,
    /// Told each domain's publish secret whenever they change.
    on_secrets: Box<dyn Fn(HashMap<String, String>) + Send + Sync>,
}

impl std::fmt::Debug for Accounts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = self.read();
        f.debug_struct("Accounts")
            .field("accounts", &s.accounts.len())
            .field("keys", &s.keys.len())
            .finish_non_exhaustive()
    }
}

/// The SHA-256 digest of a key.
pub fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex32(s: &str) -> Option<[u8; 32]> {
    if s.len() != 64 {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, pair) in s.as_bytes().chunks(2).enumerate() {
        out[i] = u8::from_str_radix(std::str::from_utf8(pair).ok()?, 16).ok()?;
    }
    Some(out)
}

/// `n` random bytes from the operating system.
fn random_bytes<const N: usize>() -> Result<[u8; N], AccountError> {
    let mut b = [0u8; N];
    getrandom::getrandom(&mut b)
        .map_err(|e| AccountError::Save(format!("no randomness from the system: {e}")))?;
    Ok(b)
}

/// Checks a domain an account would own: a host name, lowercase, not livesnap's own.
fn check_domain(d: &str) -> Result<(), AccountError> {
    let ok = !d.is_empty()
        && d.len() <= MAX_DOMAIN_LEN
        && !d.starts_with(['_', '.', '-'])
        && !d.ends_with('.')
        && d.chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '-' | '.'))
        && d.parse::<std::net::IpAddr>().is_err()
        && d != "localhost";
    if ok {
        Ok(())
    } else {
        Err(field(
            "domains",
            format!(
                "{:?} is not a domain an account can own (a lowercase host name, not an address, not localhost, not starting with _)",
                d.chars().take(64).collect::<String>()
            ),
        ))
    }
}

/// Most `allowed_hosts` patterns of one account.
pub const MAX_ALLOWED_HOSTS: usize = 100;

/// The host of a `scheme://[user@]host[:port]/...` URL, lowercased (an IPv6 one without its
/// brackets).
pub fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://")?.1;
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next()?,
        None => authority.split(':').next()?,
    };
    (!host.is_empty()).then(|| host.to_ascii_lowercase())
}

/// Whether `host` matches `pattern`: the same host, a `*.suffix` one below it, or an address
/// in a CIDR block.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    let pattern = pattern.to_ascii_lowercase();
    if let Some(suffix) = pattern.strip_prefix("*.") {
        return host.len() > suffix.len() + 1 && host.ends_with(&format!(".{suffix}"));
    }
    if let Some((net, bits)) = pattern.split_once('/') {
        let (Ok(net), Ok(bits), Ok(ip)) = (
            net.parse::<std::net::IpAddr>(),
            bits.parse::<u32>(),
            host.parse::<std::net::IpAddr>(),
        ) else {
            return false;
        };
        let prefix = |a: &[u8], b: &[u8], bits: u32| -> bool {
            let whole = (bits / 8) as usize;
            let rest = bits % 8;
            if a[..whole] != b[..whole] {
                return false;
            }
            rest == 0 || (a[whole] ^ b[whole]) >> (8 - rest) == 0
        };
        return match (net, ip) {
            (std::net::IpAddr::V4(n), std::net::IpAddr::V4(i)) if bits <= 32 => {
                prefix(&n.octets(), &i.octets(), bits)
            }
            (std::net::IpAddr::V6(n), std::net::IpAddr::V6(i)) if bits <= 128 => {
                prefix(&n.octets(), &i.octets(), bits)
            }
            _ => false,
        };
    }
    pattern == host
}

fn check_settings(s: &Settings) -> Result<(), AccountError> {
    if s.allowed_hosts.len() > MAX_ALLOWED_HOSTS
        || s.allowed_hosts.iter().any(|h| {
            h.is_empty()
                || h.len() > MAX_DOMAIN_LEN
                || h.chars().any(|c| c.is_control() || c.is_whitespace())
        })
    {
        return Err(field(
            "allowed_hosts",
            format!("at most {MAX_ALLOWED_HOSTS} host names, *.suffix patterns, addresses or CIDR blocks"),
        ));
    }
    if let Some(secret) = &s.publish_secret {
        if secret.len() < MIN_SECRET_LEN || secret.len() > MAX_SECRET_LEN {
            return Err(field(
                "publish_secret",
                format!("must be {MIN_SECRET_LEN}..={MAX_SECRET_LEN} bytes"),
            ));
        }
    }
    for (name, v) in [("max_jobs", s.max_jobs), ("max_streams", s.max_streams)] {
        if v.is_some_and(|v| v == 0 || v > 1_000_000) {
            let name: &'static str = if name == "max_jobs" {
                "max_jobs"
            } else {
                "max_streams"
            };
            return Err(field(name, "must be 1..=1000000"));
        }
    }
    Ok(())
}

impl Accounts {
    /// Loads accounts and keys from the index; `on_secrets` is told every domain's publish
    /// secret now and whenever they change. The keys' last use is written on `life`.
    pub async fn start(
        index: Arc<Index>,
        clock: Arc<dyn Clock>,
        on_secrets: Box<dyn Fn(HashMap<String, String>) + Send + Sync>,
        life: &Lifecycle,
    ) -> Result<Arc<Accounts>, livesnap_store::Error> {
        let mut state = State::default();
        let domains = index.account_domains().await?;
        for row in index.accounts().await? {
            let settings: Settings = serde_json::from_str(&row.spec).unwrap_or_else(|e| {
                warn!(account = %row.name, error = %e, "account settings unreadable; none used");
                Settings::default()
            });
            let own: Vec<String> = domains
                .iter()
                .filter(|(_, a)| *a == row.name)
                .map(|(d, _)| d.clone())
                .collect();
            for d in &own {
                state.owners.insert(d.clone(), row.name.clone());
            }
            state.accounts.insert(
                row.name.clone(),
                Entry {
                    settings,
                    domains: own,
                    created_ms: row.created_ms,
                    updated_ms: row.updated_ms,
                },
            );
        }
        for k in index.keys().await? {
            let Some(d) = unhex32(&k.key_hash) else {
                warn!(key = %k.id, "key digest unreadable; the key does not work");
                continue;
            };
            let role = match k.role.as_str() {
                "read" => Role::Read,
                "admin" => Role::Admin,
                other => {
                    warn!(key = %k.id, role = %other, "key of an unknown role; the key does not work");
                    continue;
                }
            };
            state.keys.insert(
                d,
                KeyOwner {
                    id: k.id.clone(),
                    account: k.account.clone(),
                    role,
                },
            );
            state.key_rows.insert(k.id.clone(), k);
        }
        if !state.accounts.is_empty() {
            info!(
                accounts = state.accounts.len(),
                keys = state.keys.len(),
                "accounts loaded"
            );
        }
        let accounts = Arc::new(Accounts {
            index,
            clock,
            state: RwLock::new(state),
            used: Mutex::new(HashMap::new()),
            change: tokio::sync::Mutex::new(()),
            on_secrets,
        });
        accounts.tell_secrets();
        let me = accounts.clone();
        let token = life.token.clone();
        life.spawn(async move {
            loop {
                tokio::select! {
                    biased;
                    _ = token.cancelled() => break,
                    () = me.clock.sleep(KEY_USE_FLUSH) => {}
                }
                me.flush_used().await;
            }
            me.flush_used().await;
        });
        Ok(accounts)
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, State> {
        self.state.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, State> {
        self.state.write().unwrap_or_else(|p| p.into_inner())
    }

    fn tell_secrets(&self) {
        let secrets = {
            let s = self.read();
            let mut out = HashMap::new();
            for e in s.accounts.values() {
                if let Some(secret) = &e.settings.publish_secret {
                    for d in &e.domains {
                        out.insert(d.clone(), secret.clone());
                    }
                }
            }
            out
        };
        (self.on_secrets)(secrets);
    }

    /// Whether any account exists.
    pub fn any(&self) -> bool {
        !self.read().accounts.is_empty()
    }

    /// Who `key` is, if it is an account's; its use is noted.
    pub fn key_owner(&self, key: &str) -> Option<KeyOwner> {
        let owner = self.read().keys.get(&digest(key)).cloned()?;
        self.used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(owner.id.clone(), self.clock.unix_ms());
        Some(owner)
    }

    /// The account owning `domain`, if one does.
    pub fn owner_of(&self, domain: &str) -> Option<String> {
        self.read().owners.get(domain).cloned()
    }

    /// The publish secret of the account owning `domain`, if it has one.
    pub fn publish_secret_of(&self, domain: &str) -> Option<String> {
        let s = self.read();
        let owner = s.owners.get(domain)?;
        s.accounts.get(owner)?.settings.publish_secret.clone()
    }

    /// The live-stream limit of `account`, when it has one.
    pub fn max_streams_of(&self, account: &str) -> Option<usize> {
        let limit = self.read().accounts.get(account)?.settings.max_streams?;
        Some(usize::try_from(limit).unwrap_or(usize::MAX))
    }

    /// Checks that `account` may reach `url` (its `allowed_hosts`); `field` names the JSON
    /// field in the refusal.
    pub fn check_outbound(
        &self,
        account: &str,
        field_name: &'static str,
        url: &str,
    ) -> Result<(), AccountError> {
        let allowed = match self.read().accounts.get(account) {
            Some(e) => e.settings.allowed_hosts.clone(),
            None => return Ok(()),
        };
        if allowed.is_empty() {
            return Ok(());
        }
        let host = url_host(url).unwrap_or_default();
        if allowed.iter().any(|p| host_matches(p, &host)) {
            return Ok(());
        }
        Err(field(
            field_name,
            format!(
                "host {:?} is not in the account's allowed_hosts ({})",
                host.chars().take(64).collect::<String>(),
                allowed.join(", ")
            ),
        ))
    }

    /// The domains of `account`.
    pub fn domains_of(&self, account: &str) -> Vec<String> {
        self.read()
            .accounts
            .get(account)
            .map(|e| e.domains.clone())
            .unwrap_or_default()
    }

    fn view(name: &str, e: &Entry) -> Account {
        let t = livesnap_store::time::ms_to_rfc3339;
        Account {
            name: name.to_string(),
            domains: e.domains.clone(),
            max_jobs: e.settings.max_jobs,
            max_streams: e.settings.max_streams,
            publish_secret_set: e.settings.publish_secret.is_some(),
            allowed_hosts: e.settings.allowed_hosts.clone(),
            created_at: t(e.created_ms),
            updated_at: t(e.updated_ms),
        }
    }

    /// Every account, by name.
    pub fn list(&self) -> Vec<Account> {
        self.read()
            .accounts
            .iter()
            .map(|(n, e)| Self::view(n, e))
            .collect()
    }

    /// The account `name`.
    pub fn get(&self, name: &str) -> Result<Account, AccountError> {
        self.read()
            .accounts
            .get(name)
            .map(|e| Self::view(name, e))
            .ok_or_else(|| AccountError::NotFound(format!("account {}", shown(name))))
    }

    fn check_domains(&self, name: &str, domains: &[String]) -> Result<Vec<String>, AccountError> {
        if domains.len() > MAX_DOMAINS {
            return Err(field(
                "domains",
                format!("at most {MAX_DOMAINS} (MAX_DOMAINS)"),
            ));
        }
        let mut out: Vec<String> = Vec::new();
        for d in domains {
            let d = d.to_ascii_lowercase();
            check_domain(&d)?;
            if let Some(other) = self.read().owners.get(&d).filter(|o| *o != name) {
                return Err(AccountError::Conflict(format!(
                    "the domain {d} belongs to another account ({other})"
                )));
            }
            if !out.contains(&d) {
                out.push(d);
            }
        }
        Ok(out)
    }

    /// Creates an account.
    pub async fn create(&self, spec: AccountSpec) -> Result<Account, AccountError> {
        crate::template::check_identifier("name", &spec.name)
            .map_err(|e| field("name", e.message))?;
        if spec.name.len() > MAX_NAME_LEN {
            return Err(field("name", format!("at most {MAX_NAME_LEN} bytes")));
        }
        let settings = Settings {
            max_jobs: spec.max_jobs,
            max_streams: spec.max_streams,
            publish_secret: spec.publish_secret,
            allowed_hosts: spec.allowed_hosts,
        };
        check_settings(&settings)?;
        let _change = self.change.lock().await;
        if self.read().accounts.contains_key(&spec.name) {
            return Err(AccountError::Conflict(format!(
                "account {} exists",
                spec.name
            )));
        }
        if self.read().accounts.len() >= MAX_ACCOUNTS {
            return Err(AccountError::TooMany {
                what: "accounts",
                max: MAX_ACCOUNTS,
                limit: "MAX_ACCOUNTS",
            });
        }
        let domains = self.check_domains(&spec.name, &spec.domains)?;
        let now = self.clock.unix_ms();
        let row = AccountRow {
            name: spec.name.clone(),
            spec: serde_json::to_string(&settings)
                .map_err(|e| AccountError::Save(e.to_string()))?,
            created_ms: now,
            updated_ms: now,
        };
        saved(self.index.put_account(&row, &domains, true).await)?;
        let entry = Entry {
            settings,
            domains: domains.clone(),
            created_ms: now,
            updated_ms: now,
        };
        {
            let mut s = self.write();
            for d in &domains {
                s.owners.insert(d.clone(), spec.name.clone());
            }
            s.accounts.insert(spec.name.clone(), entry);
        }
        self.tell_secrets();
        info!(account = %spec.name, "account created");
        self.get(&spec.name)
    }

    /// Changes an account.
    pub async fn update(&self, name: &str, patch: AccountPatch) -> Result<Account, AccountError> {
        let _change = self.change.lock().await;
        let mut entry = self
            .read()
            .accounts
            .get(name)
            .cloned()
            .ok_or_else(|| AccountError::NotFound(format!("account {}", shown(name))))?;
        if let Some(d) = &patch.domains {
            entry.domains = self.check_domains(name, d)?;
        }
        if let Some(v) = patch.max_jobs {
            entry.settings.max_jobs = (v > 0).then_some(v);
        }
        if let Some(v) = patch.max_streams {
            entry.settings.max_streams = (v > 0).then_some(v);
        }
        if let Some(s) = patch.publish_secret {
            entry.settings.publish_secret = (!s.is_empty()).then_some(s);
        }
        if let Some(h) = patch.allowed_hosts {
            entry.settings.allowed_hosts = h;
        }
        check_settings(&entry.settings)?;
        entry.updated_ms = self.clock.unix_ms();
        let row = AccountRow {
            name: name.to_string(),
            spec: serde_json::to_string(&entry.settings)
                .map_err(|e| AccountError::Save(e.to_string()))?,
            created_ms: entry.created_ms,
            updated_ms: entry.updated_ms,
        };
        saved(self.index.put_account(&row, &entry.domains, false).await)?;
        {
            let mut s = self.write();
            s.owners.retain(|_, a| a != name);
            for d in &entry.domains {
                s.owners.insert(d.clone(), name.to_string());
            }
            s.accounts.insert(name.to_string(), entry);
        }
        self.tell_secrets();
        self.get(name)
    }

    /// Deletes an account with its domains and keys (its keys stop working at once), once
    /// `may` agrees, asked under the same lock as every other account change (so no change
    /// slips between the check of what it owns and the delete).
    pub async fn delete(
        &self,
        name: &str,
        may: impl FnOnce(&[String]) -> Result<(), AccountError>,
    ) -> Result<(), AccountError> {
        let _change = self.change.lock().await;
        let Some(domains) = self.read().accounts.get(name).map(|e| e.domains.clone()) else {
            return Err(AccountError::NotFound(format!("account {}", shown(name))));
        };
        may(&domains)?;
        saved(self.index.delete_account(name).await)?;
        {
            let mut s = self.write();
            s.accounts.remove(name);
            s.owners.retain(|_, a| a != name);
            s.keys.retain(|_, k| k.account != name);
            s.key_rows.retain(|_, k| k.account != name);
        }
        self.tell_secrets();
        info!(account = %name, "account deleted");
        Ok(())
    }

    /// Makes a key for `account`.
    pub async fn create_key(
        &self,
        account: &str,
        role: Role,
        label: Option<String>,
    ) -> Result<NewKey, AccountError> {
        if let Some(l) = &label {
            if l.len() > MAX_NAME_LEN || l.chars().any(char::is_control) {
                return Err(field(
                    "label",
                    format!("at most {MAX_NAME_LEN} bytes, no control characters"),
                ));
            }
        }
        let _change = self.change.lock().await;
        if !self.read().accounts.contains_key(account) {
            return Err(AccountError::NotFound(format!(
                "account {}",
                shown(account)
            )));
        }
        let count = self
            .read()
            .key_rows
            .values()
            .filter(|k| k.account == account)
            .count();
        if count >= MAX_KEYS {
            return Err(AccountError::TooMany {
                what: "keys",
                max: MAX_KEYS,
                limit: "MAX_KEYS",
            });
        }
        let key = format!("{KEY_PREFIX}{}", hex(&random_bytes::<32>()?));
        let id = format!("key_{}", hex(&random_bytes::<8>()?));
        let d = digest(&key);
        let now = self.clock.unix_ms();
        let row = KeyRow {
            id: id.clone(),
            account: account.to_string(),
            role: role.as_str().into(),
            label: label.clone(),
            key_hash: hex(&d),
            created_ms: now,
            last_used_ms: None,
        };
        saved(self.index.insert_key(&row).await)?;
        {
            let mut s = self.write();
            s.keys.insert(
                d,
                KeyOwner {
                    id: id.clone(),
                    account: account.to_string(),
                    role,
                },
            );
            s.key_rows.insert(id.clone(), row);
        }
        info!(account = %account, key = %id, role = role.as_str(), "api key made");
        Ok(NewKey {
            id,
            key,
            role,
            label,
            created_at: livesnap_store::time::ms_to_rfc3339(now),
        })
    }

    /// The keys of `account` (never the keys themselves).
    pub fn keys(&self, account: &str) -> Result<Vec<KeyInfo>, AccountError> {
        let s = self.read();
        if !s.accounts.contains_key(account) {
            return Err(AccountError::NotFound(format!(
                "account {}",
                shown(account)
            )));
        }
        let used = self.used.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let t = livesnap_store::time::ms_to_rfc3339;
        Ok(s.key_rows
            .values()
            .filter(|k| k.account == account)
            .map(|k| KeyInfo {
                id: k.id.clone(),
                role: if k.role == "read" {
                    Role::Read
                } else {
                    Role::Admin
                },
                label: k.label.clone(),
                created_at: t(k.created_ms),
                last_used_at: used.get(&k.id).copied().or(k.last_used_ms).map(t),
            })
            .collect())
    }

    /// Revokes key `id` of `account`: it stops working at once.
    pub async fn delete_key(&self, account: &str, id: &str) -> Result<(), AccountError> {
        let _change = self.change.lock().await;
        let exists = self
            .read()
            .key_rows
            .get(id)
            .is_some_and(|k| k.account == account);
        if !exists {
            return Err(AccountError::NotFound(format!("key {}", shown(id))));
        }
        saved(self.index.delete_key(account, id).await)?;
        let mut s = self.write();
        s.keys.retain(|_, k| k.id != id);
        s.key_rows.remove(id);
        info!(account = %account, key = %id, "api key revoked");
        Ok(())
    }

    /// Writes when keys were last used.
    async fn flush_used(&self) {
        let used: Vec<(String, i64)> = self
            .used
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .drain()
            .collect();
        for (id, at) in used {
            if let Err(e) = self.index.key_used(&id, at).await {
                warn!(key = %id, error = %e, "key use not saved; written at the next flush");
                self.used
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .entry(id)
                    .or_insert(at);
                continue;
            }
            if let Some(k) = self.write().key_rows.get_mut(&id) {
                k.last_used_ms = Some(at);
            }
        }
    }
}

/// A name from a request as it may be shown in an error.
fn shown(s: &str) -> String {
    s.chars().take(64).filter(|c| !c.is_control()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_an_account_may_own() {
        for ok in ["cams.example.com", "a-b.example", "x1"] {
            assert!(check_domain(ok).is_ok(), "{ok}");
        }
        for bad in [
            "_default",
            "_jobs",
            "",
            "Cams.example.com",
            "10.0.0.1",
            "localhost",
            "a b",
            ".x",
        ] {
            assert!(check_domain(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hosts_match_names_wildcards_and_blocks() {
        assert_eq!(
            url_host("rtsp://u:p@Cam.Example.com:554/s").as_deref(),
            Some("cam.example.com")
        );
        assert_eq!(
            url_host("rtsp://[fd00::5]:554/s").as_deref(),
            Some("fd00::5")
        );
        assert_eq!(url_host("nourl"), None);
        assert!(host_matches("cam.example.com", "cam.example.com"));
        assert!(host_matches("*.example.com", "cam.example.com"));
        assert!(!host_matches("*.example.com", "example.com"));
        assert!(!host_matches("*.example.com", "evil-example.com"));
        assert!(host_matches("10.0.0.0/8", "10.200.3.4"));
        assert!(!host_matches("10.0.0.0/8", "11.0.0.1"));
        assert!(host_matches("192.168.1.0/25", "192.168.1.127"));
        assert!(!host_matches("192.168.1.0/25", "192.168.1.128"));
        assert!(host_matches("fd00::/8", "fd12::1"));
        assert!(!host_matches("10.0.0.0/8", "cam.example.com"));
        assert!(host_matches("0.0.0.0/0", "1.2.3.4"));
    }

    #[test]
    fn digests_round_trip_through_hex() {
        let d = digest("lsk_abc");
        assert_eq!(unhex32(&hex(&d)), Some(d));
        assert_eq!(unhex32("zz"), None);
    }
}
