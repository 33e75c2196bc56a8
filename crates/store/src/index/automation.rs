//! Templates and bindings of automatic snapshots, one row each in the index (tables
//! `templates` and `bindings`, migration 0004). The store keeps each one's JSON as it is given;
//! `livesnap-core` reads and checks it. A binding names its template by a foreign key, so a
//! template that a binding uses cannot be deleted.

use super::{Db, Index};
use crate::Result;

/// A template as the index keeps it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct TemplateRow {
    /// Unique name.
    pub name: String,
    /// The template's JSON.
    pub spec: String,
    /// When it was created (Unix ms).
    pub created_ms: i64,
    /// When it was last replaced (Unix ms).
    pub updated_ms: i64,
}

/// A binding as the index keeps it; (domain, app, stream) is its key.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct BindingRow {
    /// Domain.
    pub domain: String,
    /// App name or `*`.
    pub app: String,
    /// Stream name or `*`.
    pub stream: String,
    /// The template it names (which must exist).
    pub template: String,
    /// The binding's JSON.
    pub spec: String,
}

const UPSERT_TEMPLATE: &str = "INSERT INTO templates (name, spec, created_ms, updated_ms) \
     VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
     spec = excluded.spec, updated_ms = excluded.updated_ms";
const UPSERT_BINDING: &str = "INSERT INTO bindings (domain, app, stream, template, spec) \
     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (domain, app, stream) DO UPDATE SET \
     template = excluded.template, spec = excluded.spec";

impl Index {
    /// Every template, by name.
    pub async fn load_templates(&self) -> Result<Vec<TemplateRow>> {
        let sql = "SELECT name, spec, created_ms, updated_ms FROM templates ORDER BY name";
        let rows = with_db!(&self.db, pool =>
            sqlx::query_as::<_, TemplateRow>(sql).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Every binding, by (domain, app, stream).
    pub async fn load_bindings(&self) -> Result<Vec<BindingRow>> {
        let sql = "SELECT domain, app, stream, template, spec FROM bindings \
                   ORDER BY domain, app, stream";
        let rows = with_db!(&self.db, pool =>
            sqlx::query_as::<_, BindingRow>(sql).fetch_all(pool).await)?;
        Ok(rows)
    }

    /// Creates or replaces the template `name`; a replaced one keeps its `created_ms`.
    pub async fn upsert_template(&self, name: &str, spec: &str, now_ms: i64) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query(UPSERT_TEMPLATE)
            .bind(name).bind(spec).bind(now_ms).bind(now_ms)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Deletes the template `name`; `false` if there was none. Fails (a foreign-key violation)
    /// while a binding names it.
    pub async fn delete_template(&self, name: &str) -> Result<bool> {
        let done = with_db!(&self.db, pool => sqlx::query("DELETE FROM templates WHERE name = $1")
            .bind(name).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Creates or replaces the binding for its (domain, app, stream). Fails (a foreign-key
    /// violation) when its template does not exist.
    pub async fn upsert_binding(&self, b: &BindingRow) -> Result<()> {
        with_db!(&self.db, pool => sqlx::query(UPSERT_BINDING)
            .bind(&b.domain).bind(&b.app).bind(&b.stream).bind(&b.template).bind(&b.spec)
            .execute(pool).await.map(|_| ()))?;
        Ok(())
    }

    /// Deletes the binding for (domain, app, stream); `false` if there was none.
    pub async fn delete_binding(&self, domain: &str, app: &str, stream: &str) -> Result<bool> {
        let sql = "DELETE FROM bindings WHERE domain = $1 AND app = $2 AND stream = $3";
        let done = with_db!(&self.db, pool => sqlx::query(sql)
            .bind(domain).bind(app).bind(stream).execute(pool).await.map(|r| r.rows_affected()))?;
        Ok(done > 0)
    }

    /// Writes `templates` and then `bindings` in one transaction, but only into an index that
    /// holds no template and no binding yet: `false` (and nothing written) otherwise. For the
    /// one-time import of the file that kept them before; all or nothing, so a failed import
    /// can simply be tried again at the next start.
    pub async fn import_automation(
        &self,
        templates: &[TemplateRow],
        bindings: &[BindingRow],
    ) -> Result<bool> {
        let imported = in_transaction!(&self.db, tx => async {
            let held: i64 = sqlx::query_scalar(
                "SELECT (SELECT COUNT(*) FROM templates) + (SELECT COUNT(*) FROM bindings)",
            )
            .fetch_one(&mut *tx)
            .await?;
            if held > 0 {
                // Nothing was written: the commit ends a transaction that only read.
                return Ok::<bool, sqlx::Error>(false);
            }
            for t in templates {
                sqlx::query(UPSERT_TEMPLATE)
                    .bind(&t.name).bind(&t.spec).bind(t.created_ms).bind(t.updated_ms)
                    .execute(&mut *tx).await?;
            }
            for b in bindings {
                sqlx::query(UPSERT_BINDING)
                    .bind(&b.domain).bind(&b.app).bind(&b.stream).bind(&b.template)
                    .bind(&b.spec)
                    .execute(&mut *tx).await?;
            }
            Ok(true)
        }.await)?;
        Ok(imported)
    }
}
