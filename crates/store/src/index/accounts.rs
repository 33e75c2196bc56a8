//! Accounts, their domains and their API keys, in the index (tables `accounts`,
//! `account_domains` and `api_keys`, migration 0006). The store keeps what `livesnap-core`
//! hands it; core checks names and limits. A domain's row makes it one account's: a second
//! account naming it fails on its primary key. Deleting an account deletes its domains and keys
//! (foreign keys, ON DELETE CASCADE).

use super::{Db, Index};
use crate::Result;

/// An account as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct AccountRow {
    /// Unique name.
    pub name: String,
    /// The account's JSON (limits, publish secret).
    pub spec: String,
    /// When it was created (Unix ms).
    pub created_ms: i64,
    /// When it was last changed (Unix ms).
    pub updated_ms: i64,
}

/// An API key as the index keeps it: never the key, only its digest.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct KeyRow {
    /// Its id (shown, and used to revoke it).
    pub id: String,
    /// The account it belongs to.
    pub account: String,
    /// `admin` or `read`.
    pub role: String,
    /// A label for people.
    pub label: Option<String>,
    /// Hex SHA-256 of the key.
    pub key_hash: String,
    /// When it was made (Unix ms).
    pub created_ms: i64,
    /// When it was last used (Unix ms), as last written.
    pub last_used_ms: Option<i64>,
}

const KEY_COLUMNS: &str = "id, account, role, label, key_hash, created_ms, last_used_ms";

impl Index {
    /// Every account, by name.
    pub async fn accounts(&self) -> Result<Vec<AccountRow>> {
        let sql = "SELECT name, spec, created_ms, updated_ms FROM accounts ORDER BY name";
        Ok(with_db!(&self.db, pool => sqlx::query_as::<_, AccountRow>(sql).fetch_all(pool).await)?)
    }

    /// Every (domain, account).
    pub async fn account_domains(&self) -> Result<Vec<(String, String)>> {
        let sql = "SELECT domain, account FROM account_domains ORDER BY domain";
        Ok(with_db!(&self.db, pool =>
            sqlx::query_as::<_, (String, String)>(sql).fetch_all(pool).await)?)
    }

    /// Creates (`create`) or replaces an account with exactly `domains`, in one transaction.
    /// Fails (a unique violation) when another account owns one of the domains, or when
    /// `create` and the name exists.
    pub async fn put_account(
        &self,
        row: &AccountRow,
        domains: &[String],
        create: bool,
    ) -> Result<()> {
        in_transaction!(&self.db, tx => async {
            if create {
                sqlx::query("INSERT INTO accounts (name, spec, created_ms, updated_ms) VALUES ($1, $2, $3, $4)")
                    .bind(&row.name).bind(&row.spec).bind(row.created_ms).bind(row.updated_ms)
                    .execute(&mut *tx).await?;
            } else {
                sqlx::query("UPDATE accounts SET spec = $2, updated_ms = $3 WHERE name = $1")
                    .bind(&row.name).bind(&row.spec).bind(row.updated_ms)
                    .execute(&mut *tx).await?;
                sqlx::query("DELETE FROM account_domains WHERE account = $1")
                    .bind(&row.name).execute(&mut *tx).await?;
            }
            for d in domains {
                sqlx::query("INSERT INTO account_domains (domain, account) VALUES ($1, $2)")
                    .bind(d).bind(&row.name).execute(&mut *tx).await?;
            }
            Ok::<_, crate::Error>(())
        }.await)
    }

    /// Deletes an account with its domains and keys; `false` if there was none.
    pub async fn delete_account(&self, name: &str) -> Result<bool> {
        let n = in_transaction!(&self.db, tx => async {
            // Explicit, as well as the foreign keys' cascade: SQLite connections made before
            // foreign keys were switched on would not cascade.
            sqlx::query("DELETE FROM api_keys WHERE account = $1").bind(name).execute(&mut *tx).await?;
            sqlx::query("DELETE FROM account_domains WHERE account = $1").bind(name).execute(&mut *tx).await?;
            let r = sqlx::query("DELETE FROM accounts WHERE name = $1").bind(name).execute(&mut *tx).await?;
            Ok::<_, crate::Error>(r.rows_affected())
        }.await)?;
        Ok(n > 0)
    }

    /// Every key (their digests), oldest first.
    pub async fn keys(&self) -> Result<Vec<KeyRow>> {
        let sql = format!("SELECT {KEY_COLUMNS} FROM api_keys ORDER BY created_ms, id");
        Ok(with_db!(&self.db, pool => sqlx::query_as::<_, KeyRow>(&sql).fetch_all(pool).await)?)
    }

    /// Adds a key.
    pub async fn insert_key(&self, k: &KeyRow) -> Result<()> {
        let sql =
            format!("INSERT INTO api_keys ({KEY_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7)");
        with_db!(&self.db, pool => sqlx::query(&sql)
            .bind(&k.id).bind(&k.account).bind(&k.role).bind(&k.label).bind(&k.key_hash)
            .bind(k.created_ms).bind(k.last_used_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Deletes key `id` of `account`; `false` if there was none.
    pub async fn delete_key(&self, account: &str, id: &str) -> Result<bool> {
        let n = with_db!(&self.db, pool => sqlx::query("DELETE FROM api_keys WHERE account = $1 AND id = $2")
            .bind(account).bind(id).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(n > 0)
    }

    /// Records when key `id` was last used.
    pub async fn key_used(&self, id: &str, at_ms: i64) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query("UPDATE api_keys SET last_used_ms = $2 WHERE id = $1")
            .bind(id).bind(at_ms).execute(pool).await.map(|_| ()))?;
        Ok(())
    }
}
