//! Where templates and bindings are kept: one row each in the index ([`Index::load_templates`]
//! and friends), loaded and checked at start; and the one-time import of `automation.json`, the
//! file that kept them before.

use std::collections::HashMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use livesnap_store::index::{BindingRow, TemplateRow};
use livesnap_store::Index;
use serde::Deserialize;
use tracing::{info, warn};

use crate::auto::ConfigError;
use crate::template::{BindingSpec, Template, TemplateSpec, MAX_BINDINGS, MAX_TEMPLATES};

/// What the index holds, checked: templates by name, and bindings by (domain, app, stream).
#[derive(Default)]
pub(crate) struct Loaded {
    pub templates: HashMap<String, Arc<Template>>,
    pub bindings: Vec<BindingSpec>,
}

/// The JSON a template is kept as.
pub(crate) fn template_json(spec: &TemplateSpec) -> Result<String, ConfigError> {
    serde_json::to_string(spec).map_err(|e| ConfigError::Save(e.to_string()))
}

/// The row a binding is kept as.
pub(crate) fn binding_row(spec: &BindingSpec) -> Result<BindingRow, ConfigError> {
    Ok(BindingRow {
        domain: spec.domain.clone(),
        app: spec.app.clone(),
        stream: spec.stream.clone(),
        template: spec.template.clone(),
        spec: serde_json::to_string(spec).map_err(|e| ConfigError::Save(e.to_string()))?,
    })
}

/// The order bindings are listed in (and kept in memory): by their key.
pub(crate) fn binding_order(a: &BindingSpec, b: &BindingSpec) -> std::cmp::Ordering {
    (&a.domain, &a.app, &a.stream).cmp(&(&b.domain, &b.app, &b.stream))
}

/// Loads templates and bindings from the index, first importing `import` (the old
/// `automation.json`) if that file exists and the index holds neither templates nor bindings.
/// A saved template or binding that is no longer valid is skipped with a warning.
pub(crate) async fn load(
    index: &Index,
    import: Option<&Path>,
    now_ms: i64,
) -> Result<Loaded, ConfigError> {
    let load = |e: livesnap_store::Error| ConfigError::Load(e.to_string());
    if let Some(path) = import.filter(|p| p.exists()) {
        import_file(index, path, now_ms).await?;
    }
    let mut loaded = Loaded::default();
    for row in index.load_templates().await.map_err(load)? {
        let checked = serde_json::from_str::<TemplateSpec>(&row.spec)
            .map_err(|e| e.to_string())
            .and_then(|spec| spec.check().map_err(|e| e.to_string()));
        match checked {
            Ok(t) if t.spec.name == row.name => {
                loaded.templates.insert(row.name, Arc::new(t));
            }
            Ok(t) => {
                warn!(template = %row.name, named = %t.spec.name, "saved template's name differs from its row's; skipped")
            }
            Err(e) => warn!(template = %row.name, error = %e, "saved template is invalid; skipped"),
        }
    }
    for row in index.load_bindings().await.map_err(load)? {
        let checked = serde_json::from_str::<BindingSpec>(&row.spec)
            .map_err(|e| e.to_string())
            .and_then(|spec| spec.check().map(|()| spec).map_err(|e| e.to_string()));
        match checked {
            Ok(b) => loaded.bindings.push(b),
            Err(e) => {
                warn!(binding = %format!("{}/{}/{}", row.domain, row.app, row.stream), error = %e, "saved binding is invalid; skipped")
            }
        }
    }
    loaded.bindings.sort_by(binding_order);
    // Kept before the limits existed: all are served, but no new one is taken until some go.
    if loaded.templates.len() > MAX_TEMPLATES {
        warn!(
            templates = loaded.templates.len(),
            max = MAX_TEMPLATES,
            "more templates than MAX_TEMPLATES: none can be created until some are deleted"
        );
    }
    if loaded.bindings.len() > MAX_BINDINGS {
        warn!(
            bindings = loaded.bindings.len(),
            max = MAX_BINDINGS,
            "more bindings than MAX_BINDINGS: none can be added until some are deleted"
        );
    }
    Ok(loaded)
}

/// `automation.json` as earlier versions wrote it. Entries are read one by one, so that one
/// that no longer parses is skipped, not the whole file.
#[derive(Deserialize, Default)]
struct SavedFile {
    #[serde(default)]
    templates: Vec<serde_json::Value>,
    #[serde(default)]
    bindings: Vec<serde_json::Value>,
}

/// Where the file goes once imported: `automation.json.imported` beside it.
pub fn imported_path(path: &Path) -> PathBuf {
    let mut name = OsString::from(path.as_os_str());
    name.push(".imported");
    PathBuf::from(name)
}

/// Imports the file in one transaction into an index that holds no template or binding, then
/// renames it so that it is never imported again. An index that already holds some keeps
/// them, and the file stays where it is (said once per start).
async fn import_file(index: &Index, path: &Path, now_ms: i64) -> Result<(), ConfigError> {
    let unreadable = |e: String| ConfigError::Load(format!("{}: {e}", path.display()));
    let text = tokio::fs::read_to_string(path)
        .await
        .map_err(|e| unreadable(e.to_string()))?;
    let saved: SavedFile = serde_json::from_str(&text).map_err(|e| unreadable(e.to_string()))?;
    // Each template as the file has it (an invalid one is skipped at every load, as before),
    // as long as it has a name to be kept under.
    let mut templates: Vec<TemplateRow> = Vec::new();
    for t in &saved.templates {
        match t.get("name").and_then(|n| n.as_str()) {
            Some(name) => templates.push(TemplateRow {
                name: name.to_string(),
                spec: t.to_string(),
                created_ms: now_ms,
                updated_ms: now_ms,
            }),
            None => warn!(file = %path.display(), "saved template without a name; not imported"),
        }
    }
    let mut bindings: Vec<BindingRow> = Vec::new();
    for b in saved.bindings {
        let spec = match serde_json::from_value::<BindingSpec>(b) {
            Ok(spec) => spec,
            Err(e) => {
                warn!(file = %path.display(), error = %e, "saved binding is invalid; not imported");
                continue;
            }
        };
        // The index does not keep a binding whose template is not there.
        if !templates.iter().any(|t| t.name == spec.template) {
            warn!(file = %path.display(), binding = %format!("{}/{}/{}", spec.domain, spec.app, spec.stream), template = %spec.template, "saved binding names a template the file does not hold; not imported");
            continue;
        }
        bindings.push(binding_row(&spec)?);
    }
    let imported = index
        .import_automation(&templates, &bindings)
        .await
        .map_err(|e| unreadable(format!("import into the index failed: {e}")))?;
    if !imported {
        warn!(file = %path.display(), "the index already holds templates or bindings: this file is not imported (remove it, or rename it to automation.json.imported)");
        return Ok(());
    }
    let to = imported_path(path);
    info!(file = %path.display(), templates = templates.len(), bindings = bindings.len(), renamed_to = %to.display(), "templates and bindings imported into the index");
    // Imported is imported: a file that cannot be renamed is only said, since the index now
    // holds rows and will not take the file again.
    if let Err(e) = tokio::fs::rename(path, &to).await {
        warn!(file = %path.display(), error = %e, "imported file could not be renamed");
    }
    Ok(())
}
