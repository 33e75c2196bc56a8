-- Templates and bindings of automatic snapshots, one row each (they were kept in
-- automation.json until this version; the server imports that file once).
-- `spec` is the API's JSON of the template or binding, as livesnap wrote it.

CREATE TABLE templates (
    name       TEXT   NOT NULL PRIMARY KEY,
    spec       TEXT   NOT NULL,
    created_ms BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);

-- A binding may not outlive its template: deleting a template that a binding names fails.
CREATE TABLE bindings (
    domain   TEXT NOT NULL,
    app      TEXT NOT NULL,
    stream   TEXT NOT NULL,
    template TEXT NOT NULL REFERENCES templates (name),
    spec     TEXT NOT NULL,
    PRIMARY KEY (domain, app, stream)
);
CREATE INDEX bindings_by_template ON bindings (template);
