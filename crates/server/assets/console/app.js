// The livesnap console: plain DOM, no framework, no build step. Every name the server sends
// is put into the page as text (textContent, attributes), never as markup.
import { Livesnap } from "/sdk/livesnap.js";

const KEY_STORE = "livesnap.apiKey";
const REFRESH_MS = 2000;
const PAGE_SIZE = 48;
const MAX_BATCH = 200;

const main = document.getElementById("main");
let timers = [];
let objectUrls = [];

// ---------------------------------------------------------------------------------------------
// plumbing

function key() {
  return sessionStorage.getItem(KEY_STORE) || "";
}

function client() {
  return new Livesnap({ server: location.origin, apiKey: key() || undefined });
}

/** An element: h("a", {href: "#/", class: "x"}, "text", child...). Strings become text. */
function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) el.addEventListener(k.slice(2), v);
    else if (k === "class") el.className = v;
    else el.setAttribute(k, v === true ? "" : String(v));
  }
  for (const c of children.flat()) {
    if (c === undefined || c === null || c === false) continue;
    el.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
  return el;
}

class ApiError extends Error {
  constructor(message, status, body) {
    super(message);
    this.status = status;
    this.body = body;
  }
}

/** fetch() with the key; a JSON error body becomes an ApiError; 401 asks for a key. */
async function api(path, { method = "GET", body, raw = false } = {}) {
  const headers = {};
  if (key()) headers.Authorization = `Bearer ${key()}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
  if (!response.ok) {
    let b = null;
    try { b = await response.json(); } catch (_) { /* not JSON */ }
    if (response.status === 401) askKey(b && b.error);
    throw new ApiError((b && b.error) || `${response.status} ${response.statusText}`, response.status, b);
  }
  if (raw) return response;
  if (response.status === 204 || response.headers.get("content-length") === "0") return null;
  const type = response.headers.get("content-type") || "";
  return type.includes("json") ? response.json() : response.text();
}

/** An image the API serves (a key may be needed, so no plain <img src>): an object URL. */
async function imageUrl(path) {
  const response = await api(path, { raw: true });
  const url = URL.createObjectURL(await response.blob());
  objectUrls.push(url);
  return url;
}

/** Runs `fn` now and again `ms` after each run ends (a stalled server never piles requests
 * up), until the page changes. */
function every(ms, fn) {
  const poll = { stopped: false, timer: null };
  poll.stop = () => {
    poll.stopped = true;
    clearTimeout(poll.timer);
  };
  const tick = async () => {
    try {
      await fn();
    } finally {
      if (!poll.stopped) poll.timer = setTimeout(tick, ms);
    }
  };
  timers.push(poll);
  tick();
}

function showError(where, e) {
  where.replaceChildren(h("p", { class: "error", role: "alert" }, e.message || String(e)));
}

/** An API error under a form: the message, and the field it names when it names one. */
function fieldError(e) {
  const field = e.body && e.body.field;
  return h("div", { class: "field-error", role: "alert" }, field ? `${field}: ` : "", e.message || String(e));
}

function streamPath(s, suffix = "") {
  const q = s.domain && s.domain !== "_default" ? `?domain=${encodeURIComponent(s.domain)}` : "";
  return `/v1/streams/${encodeURIComponent(s.app)}/${encodeURIComponent(s.stream)}${suffix}${q}`;
}

function withQuery(path, params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, v);
  const s = q.toString();
  return s ? `${path}${path.includes("?") ? "&" : "?"}${s}` : path;
}

function fmtAge(ms) {
  if (ms === null || ms === undefined) return "-";
  return ms < 1000 ? `${ms} ms` : `${(ms / 1000).toFixed(1)} s`;
}

// ---------------------------------------------------------------------------------------------
// the key prompt

const dialog = document.getElementById("key-dialog");
const keyInput = document.getElementById("key-input");
document.getElementById("key-button").addEventListener("click", () => askKey());
document.getElementById("key-cancel").addEventListener("click", () => dialog.close());
document.getElementById("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY_STORE);
  dialog.close();
  route();
});
document.getElementById("key-form").addEventListener("submit", () => {
  sessionStorage.setItem(KEY_STORE, keyInput.value.trim());
  keyInput.value = "";
  route();
});

function askKey(why) {
  if (dialog.open) return;
  document.getElementById("key-why").textContent = why
    ? `${why}. The key is kept in this tab only (session storage).`
    : "This server needs an API key. It is kept in this tab only (session storage).";
  dialog.showModal();
  keyInput.focus();
}

// ---------------------------------------------------------------------------------------------
// pages

/** Live streams as a grid of their latest pictures, from the cache (never asking a publisher
 * for a keyframe: viewers cost no decode beyond one per keyframe). */
function pageLive() {
  const grid = h("div", { class: "grid", id: "live-grid" });
  const status = h("p", { class: "muted" }, "Loading…");
  main.replaceChildren(h("h1", {}, "Live streams"), status, grid);
  const cards = new Map();
  every(REFRESH_MS, async () => {
    let list;
    try {
      list = (await api("/v1/streams")).streams;
    } catch (e) {
      showError(status, e);
      return;
    }
    status.textContent = list.length === 0 ? "No live streams. Publish over RTMP, RTSP or WHIP (see Publish)." : `${list.length} live`;
    const seen = new Set();
    for (const s of list) {
      const id = `${s.domain}/${s.app}/${s.stream}`;
      seen.add(id);
      let card = cards.get(id);
      if (!card) {
        card = makeCard(s);
        cards.set(id, card);
        grid.append(card.el);
      }
      card.update(s);
    }
    for (const [id, card] of cards) {
      if (!seen.has(id)) {
        card.remove();
        cards.delete(id);
      }
    }
  });
  // Leaving the page lets every card's picture go.
  timers.push({ stop: () => cards.forEach((card) => card.remove()) });
}

function makeCard(s) {
  const img = h("img", { alt: `latest picture of ${s.app}/${s.stream}` });
  const thumb = h("div", { class: "thumb" }, "waiting for a keyframe");
  const meta = h("div", { class: "meta" });
  const href = `#/stream/${encodeURIComponent(s.domain)}/${encodeURIComponent(s.app)}/${encodeURIComponent(s.stream)}`;
  const el = h("article", { class: "card", "data-stream": `${s.domain}/${s.app}/${s.stream}` }, h("a", { href }, thumb, meta));
  let lastKeyframes = -1;
  let shown = null;
  return {
    el,
    async update(s) {
      meta.replaceChildren(
        h("div", { class: "name" }, s.domain === "_default" ? `${s.app}/${s.stream}` : `${s.domain}/${s.app}/${s.stream}`),
        h("div", { class: "muted" },
          [s.codec || "?", s.width ? `${s.width}×${s.height}` : "", `${s.fps} fps`, `${Math.round(s.bitrate_kbps)} kb/s`, s.protocol].filter(Boolean).join(" · ")),
        h("div", { class: "muted" }, `keyframe ${fmtAge(s.last_keyframe_age_ms)} ago`),
        ...(s.error ? [h("div", { class: "error" }, s.error)] : []),
      );
      // A new picture only when a new keyframe came: the same keyframe is the same picture.
      if (s.keyframes === lastKeyframes || s.keyframes === 0) return;
      lastKeyframes = s.keyframes;
      try {
        // Not through imageUrl(): each card keeps one picture's URL and lets the last go.
        const response = await api(withQuery(streamPath(s, "/snapshot.jpg"), { width: 480, ask_keyframe: "false" }), { raw: true });
        const url = URL.createObjectURL(await response.blob());
        img.src = url;
        if (img.parentNode !== thumb) thumb.replaceChildren(img);
        if (shown) URL.revokeObjectURL(shown);
        shown = url;
      } catch (e) {
        // Shown until a picture comes again; the next keyframe tries again.
        lastKeyframes = -1;
        thumb.replaceChildren(e.message);
      }
    },
    remove() {
      el.remove();
      if (shown) URL.revokeObjectURL(shown);
      shown = null;
    },
  };
}

/** One stream: details, a snapshot through the browser module, a link to its pictures. */
function pageStream(domain, app, stream) {
  const s = { domain, app, stream };
  const name = domain === "_default" ? `${app}/${stream}` : `${domain}/${app}/${stream}`;
  const details = h("dl", { class: "details" });
  const shot = h("div", { class: "preview" });
  const button = h("button", { type: "button", id: "snapshot-button" }, "Take a snapshot");
  button.addEventListener("click", async () => {
    button.disabled = true;
    try {
      const p = await client().snapshot(domain === "_default" ? `${app}/${stream}` : `${domain}/${app}/${stream}`, { format: "jpg" });
      const url = URL.createObjectURL(p.blob);
      objectUrls.push(url);
      shot.replaceChildren(
        h("img", { src: url, alt: `snapshot of ${name}`, id: "snapshot-image" }),
        h("p", { class: "muted", id: "snapshot-meta" },
          `${p.width}×${p.height}, frame time ${p.frameTime ? p.frameTime.toISOString() : "?"}, ${fmtAge(p.ageMs)} old when taken`),
      );
    } catch (e) {
      shot.replaceChildren(fieldError(e));
    } finally {
      button.disabled = false;
    }
  });
  const pictures = `#/snapshots?${new URLSearchParams({ domain, app, stream })}`;
  main.replaceChildren(
    h("h1", {}, name),
    h("div", { class: "two" },
      h("section", {}, h("h2", {}, "Details"), details, h("p", {}, h("a", { href: pictures }, "Stored pictures of this stream"))),
      h("section", {}, h("h2", {}, "Snapshot"), button, shot)),
  );
  every(REFRESH_MS, async () => {
    try {
      const st = await api(streamPath(s));
      const rows = [
        ["Protocol", st.protocol], ["Publisher", st.publisher], ["Started", st.started_at],
        ["Codec", [st.codec, st.profile, st.level].filter(Boolean).join(" ")], ["Size", st.width ? `${st.width}×${st.height}` : "-"],
        ["Frame rate", `${st.fps} fps`], ["Bitrate", `${st.bitrate_kbps} kb/s`], ["Keyframe interval", st.keyframe_interval_ms ? `${st.keyframe_interval_ms} ms` : "-"],
        ["Last keyframe", `${fmtAge(st.last_keyframe_age_ms)} ago`], ["Keyframes asked for", st.keyframe_requests],
        ["Frames (dropped)", `${st.frames} (${st.frames_dropped})`], ["Pictures made", st.snapshots], ["Template", st.template || "-"],
      ];
      if (st.job) rows.push(["Job", st.job]);
      if (st.error) rows.push(["Problem", st.error]);
      details.replaceChildren(...rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v === undefined || v === null ? "-" : v)]));
    } catch (e) {
      showError(details, e.status === 404 ? new Error("This stream is not live.") : e);
    }
  });
}

/** Publish this browser's camera over WHIP, and picture it (WCS's demo pages). */
function pagePublish() {
  const name = h("input", { id: "publish-name", name: "name", value: "live/browser", required: true, autocomplete: "off" });
  const video = h("video", { id: "publish-video", autoplay: true, muted: true, playsinline: true, "aria-label": "camera preview" });
  const status = h("p", { id: "publish-status", class: "muted", role: "status" }, "Not publishing.");
  const shot = h("div", { class: "preview" });
  const start = h("button", { type: "submit", id: "publish-start" }, "Start camera and publish");
  const stop = h("button", { type: "button", id: "publish-stop", class: "secondary", disabled: true }, "Stop");
  const snap = h("button", { type: "button", id: "publish-snapshot", disabled: true }, "Take a snapshot");
  let publisher = null;
  let media = null;
  let left = false;
  const teardown = () => {
    publisher?.stop();
    media?.getTracks().forEach((t) => t.stop());
    publisher = null;
    media = null;
  };
  const form = h("form", { class: "inline" }, h("label", {}, "Stream (app/stream)", name), start, stop);
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    start.disabled = true;
    status.textContent = "Starting the camera…";
    try {
      media = await navigator.mediaDevices.getUserMedia({ video: { width: 1280, height: 720 }, audio: false });
      // The page was left while the camera prompt was open: no publish nobody sees.
      if (left) return teardown();
      video.srcObject = media;
      status.textContent = "Connecting…";
      publisher = await client().publish(name.value.trim(), media);
      if (left) return teardown();
      stop.disabled = false;
      snap.disabled = false;
      status.textContent = `Publishing ${name.value.trim()} over WHIP.`;
      publisher.pc.addEventListener("connectionstatechange", () => {
        if (publisher) status.textContent = `Publishing ${name.value.trim()} over WHIP (${publisher.pc.connectionState}).`;
      });
    } catch (e) {
      status.replaceChildren(fieldError(e));
      media?.getTracks().forEach((t) => t.stop());
      start.disabled = false;
    }
  });
  stop.addEventListener("click", async () => {
    await publisher?.stop();
    media?.getTracks().forEach((t) => t.stop());
    publisher = null;
    stop.disabled = true;
    snap.disabled = true;
    start.disabled = false;
    status.textContent = "Not publishing.";
  });
  snap.addEventListener("click", async () => {
    try {
      const p = await client().snapshot(name.value.trim(), { format: "jpg" });
      const url = URL.createObjectURL(p.blob);
      objectUrls.push(url);
      shot.replaceChildren(h("img", { src: url, alt: "snapshot of the published stream", id: "publish-snapshot-image" }),
        h("p", { class: "muted" }, `${p.width}×${p.height}, ${fmtAge(p.ageMs)} old`));
    } catch (e) {
      shot.replaceChildren(fieldError(e));
    }
  });
  main.replaceChildren(h("h1", {}, "Publish this browser's camera"), form, status,
    h("div", { class: "two" }, h("section", {}, h("h2", {}, "Camera"), video), h("section", {}, h("h2", {}, "Snapshot"), snap, shot)));
  // Leaving the page ends the publish, also one still starting.
  timers.push({ stop: () => { left = true; teardown(); } });
}

/** Stored pictures: filter, pages of thumbnails, hover to enlarge, select and delete. */
function pageSnapshots(params) {
  const fields = ["domain", "app", "stream", "job"];
  const inputs = Object.fromEntries(fields.map((f) => [f, h("input", { name: f, value: params.get(f) || "", autocomplete: "off" })]));
  const from = h("input", { name: "from", type: "datetime-local", value: params.get("from") || "" });
  const to = h("input", { name: "to", type: "datetime-local", value: params.get("to") || "" });
  const form = h("form", { class: "inline", id: "snapshot-filter" },
    ...fields.map((f) => h("label", {}, f[0].toUpperCase() + f.slice(1), inputs[f])),
    h("label", {}, "From", from), h("label", {}, "To", to), h("button", { type: "submit" }, "Show"));
  const list = h("div", { class: "shots", id: "snapshot-list" });
  const status = h("p", { class: "muted", role: "status" });
  const selectAll = h("button", { type: "button", class: "secondary" }, "Select all on this page");
  const del = h("button", { type: "button", class: "danger", id: "delete-selected", disabled: true }, "Delete selected");
  const more = h("button", { type: "button", class: "secondary", hidden: true }, "Next page");
  const selected = new Set();
  const results = h("div", { id: "delete-results" });
  let cursor = null;
  let shownQuery = {};

  const query = () => {
    const q = {};
    for (const f of fields) q[f] = inputs[f].value.trim();
    if (from.value) q.from = new Date(from.value).toISOString();
    if (to.value) q.to = new Date(to.value).toISOString();
    return q;
  };
  const refreshButtons = () => {
    del.disabled = selected.size === 0;
    del.textContent = `Delete selected (${selected.size})`;
  };
  const load = async (reset) => {
    if (reset) {
      list.replaceChildren();
      selected.clear();
      cursor = null;
      // Later pages go on with this filter, whatever is typed meanwhile.
      shownQuery = query();
      refreshButtons();
    }
    more.disabled = true;
    status.textContent = "Loading…";
    try {
      const page = await api(withQuery("/v1/snapshots", { ...shownQuery, limit: PAGE_SIZE, cursor }));
      cursor = page.next_cursor;
      more.hidden = !cursor;
      for (const row of page.items) list.append(shotItem(row));
      status.textContent = `${list.children.length} shown${cursor ? ", more below" : ""}.`;
    } catch (e) {
      showError(status, e);
    } finally {
      more.disabled = false;
    }
  };
  const shotItem = (row) => {
    const box = h("input", { type: "checkbox", "aria-label": `select ${row.app}/${row.stream} at ${row.time}` });
    box.addEventListener("change", () => {
      if (box.checked) selected.add(row.id);
      else selected.delete(row.id);
      refreshButtons();
    });
    const img = h("img", { alt: `${row.app}/${row.stream} at ${row.time}`, loading: "lazy" });
    imageUrl(`/v1/snapshots/${encodeURIComponent(row.id)}/image`).then((u) => { img.src = u; }, () => { img.alt = "image missing"; });
    return h("figure", { class: "shot", "data-id": row.id, tabindex: "0" }, img,
      h("figcaption", {}, h("label", {}, box, ` ${row.domain === "_default" ? "" : row.domain + "/"}${row.app}/${row.stream}`),
        h("div", { class: "muted" }, `${row.time} · ${row.width}×${row.height} · ${row.mode}${row.job ? " · job " + row.job : ""}`)));
  };
  form.addEventListener("submit", (ev) => {
    ev.preventDefault();
    // The hash keeps the form's own values (a local date-time stays one) for a reload.
    const raw = { ...Object.fromEntries(fields.map((f) => [f, inputs[f].value.trim()])), from: from.value, to: to.value };
    const q = new URLSearchParams(Object.entries(raw).filter(([, v]) => v));
    history.replaceState(null, "", `#/snapshots?${q}`);
    load(true);
  });
  selectAll.addEventListener("click", () => {
    for (const box of list.querySelectorAll("figure:not(.deleted) input[type=checkbox]")) {
      if (!box.checked) {
        box.checked = true;
        box.dispatchEvent(new Event("change"));
      }
    }
  });
  del.addEventListener("click", async () => {
    const ids = [...selected];
    if (!confirm(`Delete ${ids.length} pictures?`)) return;
    try {
      // The API takes at most MAX_BATCH ids a call.
      const all = [];
      for (let i = 0; i < ids.length; i += MAX_BATCH) {
        const r = await api("/v1/snapshots/batch-delete", { method: "POST", body: { ids: ids.slice(i, i + MAX_BATCH) } });
        all.push(...r.results);
      }
      const r = { results: all };
      const failed = r.results.filter((x) => !x.deleted);
      for (const x of r.results) {
        const fig = list.querySelector(`figure[data-id="${CSS.escape(x.id)}"]`);
        if (!fig) continue;
        if (x.deleted) {
          fig.classList.add("deleted");
          fig.querySelector("input").disabled = true;
        } else fig.append(h("div", { class: "error" }, x.error || "not deleted"));
        selected.delete(x.id);
      }
      results.replaceChildren(h("p", { class: failed.length ? "error" : "ok", role: "status" },
        `${r.results.length - failed.length} deleted${failed.length ? `, ${failed.length} not` : ""}.`));
      refreshButtons();
    } catch (e) {
      results.replaceChildren(fieldError(e));
    }
  });
  more.addEventListener("click", () => load(false));
  main.replaceChildren(h("h1", {}, "Stored pictures"), form, h("div", { class: "row" }, selectAll, del), results, status, list, h("div", { class: "row" }, more));
  load(true);
}

/** A JSON editor for one object, with the API's field errors under it. */
function jsonEditor(id, value, onSave) {
  const area = h("textarea", { id, "aria-label": "JSON", spellcheck: "false" });
  area.value = JSON.stringify(value, null, 2);
  const out = h("div");
  const save = h("button", { type: "submit" }, "Save");
  const form = h("form", {}, area, out, h("div", { class: "row" }, save));
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    let parsed;
    try {
      parsed = JSON.parse(area.value);
    } catch (e) {
      out.replaceChildren(h("div", { class: "field-error", role: "alert" }, `Not JSON: ${e.message}`));
      return;
    }
    try {
      await onSave(parsed);
      out.replaceChildren(h("p", { class: "ok", role: "status" }, "Saved."));
    } catch (e) {
      out.replaceChildren(fieldError(e));
    }
  });
  return form;
}

const NEW_TEMPLATE = { name: "every-10s", modes: ["sequence"], interval_s: 10, format: "jpg", quality: 85, storage: "local" };

/** Templates and bindings: create, edit, delete. */
async function pageTemplates() {
  const list = h("table", { id: "template-list" });
  const editor = h("div", { id: "template-editor" });
  const bindings = h("table", { id: "binding-list" });
  const newButton = h("button", { type: "button", id: "template-new" }, "New template");
  newButton.addEventListener("click", () => edit(null));
  const edit = (t) => {
    editor.replaceChildren(h("h2", {}, t ? `Edit ${t.name}` : "New template"),
      jsonEditor("template-json", t || NEW_TEMPLATE, async (v) => {
        if (t) await api(`/v1/templates/${encodeURIComponent(t.name)}`, { method: "PUT", body: v });
        else await api("/v1/templates", { method: "POST", body: v });
        await refresh();
      }));
  };
  const refresh = async () => {
    try {
      const ts = (await api("/v1/templates")).templates;
      list.replaceChildren(h("tr", {}, h("th", {}, "Name"), h("th", {}, "Modes"), h("th", {}, "When"), h("th", {}, "Format"), h("th", {}, "Storage"), h("th", {}, "")),
        ...ts.map((t) => {
          const editB = h("button", { type: "button", class: "secondary" }, "Edit");
          editB.addEventListener("click", () => edit(t));
          const delB = h("button", { type: "button", class: "danger" }, "Delete");
          delB.addEventListener("click", async () => {
            if (!confirm(`Delete template ${t.name}?`)) return;
            try { await api(`/v1/templates/${encodeURIComponent(t.name)}`, { method: "DELETE" }); await refresh(); } catch (e) { editor.replaceChildren(fieldError(e)); }
          });
          const when = t.interval_s ? `every ${t.interval_s} s` : t.every_n_frames ? `every ${t.every_n_frames} frames` : "-";
          return h("tr", {}, h("td", {}, t.name), h("td", {}, (t.modes || []).join(", ")), h("td", {}, when), h("td", {}, t.format), h("td", {}, t.storage), h("td", {}, h("div", { class: "row" }, editB, delB)));
        }));
      const bs = (await api("/v1/bindings")).bindings;
      bindings.replaceChildren(h("tr", {}, h("th", {}, "Domain"), h("th", {}, "App"), h("th", {}, "Stream"), h("th", {}, "Template"), h("th", {}, "")),
        ...bs.map((b) => {
          const delB = h("button", { type: "button", class: "danger" }, "Remove");
          delB.addEventListener("click", async () => {
            try { await api(withQuery("/v1/bindings", { domain: b.domain, app: b.app, stream: b.stream }), { method: "DELETE" }); await refresh(); } catch (e) { bindOut.replaceChildren(fieldError(e)); }
          });
          return h("tr", {}, h("td", {}, b.domain || "*"), h("td", {}, b.app || "*"), h("td", {}, b.stream || "*"), h("td", {}, b.template), h("td", {}, delB));
        }));
    } catch (e) {
      showError(editor, e);
    }
  };
  const bindFields = Object.fromEntries(["domain", "app", "stream", "template"].map((f) => [f, h("input", { name: f, autocomplete: "off" })]));
  const applyLive = h("input", { type: "checkbox", name: "apply_to_live" });
  const bindOut = h("div");
  const bindForm = h("form", { class: "inline", id: "binding-form" },
    ...Object.entries(bindFields).map(([f, el]) => h("label", {}, f[0].toUpperCase() + f.slice(1), el)),
    h("label", {}, applyLive, " apply to live streams"), h("button", { type: "submit" }, "Bind"));
  bindForm.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { apply_to_live: applyLive.checked };
    for (const [f, el] of Object.entries(bindFields)) if (el.value.trim()) body[f] = el.value.trim();
    try { await api("/v1/bindings", { method: "POST", body }); bindOut.replaceChildren(h("p", { class: "ok" }, "Bound.")); await refresh(); } catch (e) { bindOut.replaceChildren(fieldError(e)); }
  });
  main.replaceChildren(h("h1", {}, "Templates"), h("div", { class: "row" }, newButton), list, editor,
    h("h2", {}, "Bindings"), h("p", { class: "muted" }, "Which template pictures which streams; an empty field matches any."), bindings, bindForm, bindOut);
  await refresh();
}

/** Pull jobs: submit, stop, start, delete; state and last error. */
async function pageJobs() {
  const table = h("table", { id: "job-list" });
  const out = h("div");
  const note = h("p", { class: "muted" });
  const f = Object.fromEntries(["name", "input_url", "template", "storage", "callback_url"].map((k) => [k, h("input", { name: k, autocomplete: "off", required: ["name", "input_url", "template"].includes(k) })]));
  const form = h("form", { class: "inline", id: "job-form" },
    h("label", {}, "Name", f.name), h("label", {}, "Input URL (rtsp://, rtmp://)", f.input_url), h("label", {}, "Template", f.template),
    h("label", {}, "Storage (optional)", f.storage), h("label", {}, "Callback URL (optional)", f.callback_url), h("button", { type: "submit" }, "Submit job"));
  const refresh = async () => {
    try {
      const page = await api("/v1/jobs?limit=200");
      const jobs = page.jobs;
      note.replaceChildren(page.next_cursor ? "Showing the newest 200 jobs; list the others through the API." : "");
      table.replaceChildren(h("tr", {}, h("th", {}, "Name"), h("th", {}, "State"), h("th", {}, "Source"), h("th", {}, "Pictures"), h("th", {}, "Last error"), h("th", {}, "")),
        ...jobs.map((j) => {
          const act = (label, path, method = "POST", cls = "secondary") => {
            const b = h("button", { type: "button", class: cls }, label);
            b.addEventListener("click", async () => {
              try { await api(path, { method }); await refresh(); } catch (e) { out.replaceChildren(fieldError(e)); }
            });
            return b;
          };
          const id = encodeURIComponent(j.id);
          const err = j.error ? `${j.error.message || j.error} ${j.error.at ? "(" + j.error.at + ")" : ""}` : "";
          return h("tr", { "data-job": j.id }, h("td", {}, j.name), h("td", {}, j.state), h("td", {}, j.input_url), h("td", {}, j.counters ? j.counters.pictures : 0),
            h("td", { class: err ? "error" : "" }, err || "-"),
            h("td", {}, h("div", { class: "row" }, act("Stop", `/v1/jobs/${id}/stop`), act("Start", `/v1/jobs/${id}/start`), act("Delete", `/v1/jobs/${id}`, "DELETE", "danger"))));
        }));
    } catch (e) {
      showError(out, e);
    }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = {};
    for (const [k, el] of Object.entries(f)) if (el.value.trim()) body[k] = el.value.trim();
    try { await api("/v1/jobs", { method: "POST", body }); out.replaceChildren(h("p", { class: "ok" }, "Submitted.")); await refresh(); } catch (e) { out.replaceChildren(fieldError(e)); }
  });
  main.replaceChildren(h("h1", {}, "Pull jobs"), form, out, note, table);
  every(REFRESH_MS * 2, refresh);
}

/** Running time of jobs per day, as a chart and as CSV. */
async function pageUsage() {
  const today = new Date().toISOString().slice(0, 10);
  const monthAgo = new Date(Date.now() - 29 * 86400e3).toISOString().slice(0, 10);
  const from = h("input", { type: "date", name: "from", value: monthAgo });
  const to = h("input", { type: "date", name: "to", value: today });
  const chart = h("div", { class: "bars", id: "usage-chart", role: "img", "aria-label": "job hours per day" });
  const total = h("p", { id: "usage-total" });
  const csv = h("button", { type: "button", class: "secondary", id: "usage-csv" }, "Download CSV");
  const form = h("form", { class: "inline" }, h("label", {}, "From", from), h("label", {}, "To", to), h("button", { type: "submit" }, "Show"), csv);
  const load = async () => {
    try {
      const u = await api(withQuery("/v1/usage", { from: from.value, to: to.value }));
      // Every day of the range, those without usage at zero.
      const days = new Map();
      for (let d = new Date(`${u.from}T00:00:00Z`); d <= new Date(`${u.to}T00:00:00Z`) && days.size < 400; d = new Date(d.getTime() + 86400e3)) {
        days.set(d.toISOString().slice(0, 10), 0);
      }
      for (const row of u.usage) days.set(row.day, (days.get(row.day) || 0) + row.running_s);
      const max = Math.max(1, ...days.values());
      chart.replaceChildren(...[...days.entries()].sort().map(([day, s]) => {
        const bar = h("div", { class: "bar", title: `${day}: ${(s / 3600).toFixed(2)} h` }, h("span", {}, day.slice(5)));
        bar.style.height = `${Math.max(1, (100 * s) / max)}%`;
        return bar;
      }));
      total.textContent = `${(u.total_running_s / 3600).toFixed(2)} job hours from ${u.from} to ${u.to}.`;
    } catch (e) {
      showError(total, e);
    }
  };
  form.addEventListener("submit", (ev) => { ev.preventDefault(); load(); });
  csv.addEventListener("click", async () => {
    try {
      const r = await api(withQuery("/v1/usage", { from: from.value, to: to.value, format: "csv" }), { raw: true });
      const url = URL.createObjectURL(await r.blob());
      const a = h("a", { href: url, download: `livesnap-usage-${from.value}-${to.value}.csv` });
      document.body.append(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(url), 10000);
    } catch (e) {
      showError(total, e);
    }
  });
  main.replaceChildren(h("h1", {}, "Usage"), form, total, chart);
  await load();
}

/** Accounts and their keys (the administrator's). */
async function pageAccounts() {
  const table = h("table", { id: "account-list" });
  const out = h("div");
  const keysBox = h("div", { id: "account-keys" });
  const f = {
    name: h("input", { name: "name", required: true, autocomplete: "off" }),
    domains: h("input", { name: "domains", autocomplete: "off", placeholder: "cams.example.com, ..." }),
    max_streams: h("input", { name: "max_streams", type: "number", min: 1 }),
    max_jobs: h("input", { name: "max_jobs", type: "number", min: 1 }),
  };
  const form = h("form", { class: "inline", id: "account-form" },
    h("label", {}, "Name", f.name), h("label", {}, "Domains (comma-separated)", f.domains),
    h("label", {}, "Most live streams", f.max_streams), h("label", {}, "Most jobs", f.max_jobs), h("button", { type: "submit" }, "Create account"));
  const keys = async (name) => {
    try {
      const list = (await api(`/v1/accounts/${encodeURIComponent(name)}/keys`)).keys;
      const role = h("select", { name: "role" }, h("option", { value: "admin" }, "admin"), h("option", { value: "read" }, "read"));
      const label = h("input", { name: "label", autocomplete: "off" });
      const made = h("div");
      const kf = h("form", { class: "inline" }, h("label", {}, "Role", role), h("label", {}, "Label", label), h("button", { type: "submit" }, "New key"));
      kf.addEventListener("submit", async (ev) => {
        ev.preventDefault();
        try {
          const k = await api(`/v1/accounts/${encodeURIComponent(name)}/keys`, { method: "POST", body: { role: role.value, label: label.value || null } });
          await keys(name);
          keysBox.append(h("p", { class: "ok", role: "status" }, "The new key (shown once): ", h("code", {}, k.key)));
        } catch (e) { made.replaceChildren(fieldError(e)); }
      });
      keysBox.replaceChildren(h("h2", {}, `Keys of ${name}`),
        h("table", {}, h("tr", {}, h("th", {}, "Id"), h("th", {}, "Role"), h("th", {}, "Label"), h("th", {}, "Last used"), h("th", {}, "")),
          ...list.map((k) => {
            const rev = h("button", { type: "button", class: "danger" }, "Revoke");
            rev.addEventListener("click", async () => {
              try { await api(`/v1/accounts/${encodeURIComponent(name)}/keys/${encodeURIComponent(k.id)}`, { method: "DELETE" }); await keys(name); } catch (e) { made.replaceChildren(fieldError(e)); }
            });
            return h("tr", {}, h("td", {}, k.id), h("td", {}, k.role), h("td", {}, k.label || "-"), h("td", {}, k.last_used_at || "-"), h("td", {}, rev));
          })), kf, made);
    } catch (e) {
      showError(keysBox, e);
    }
  };
  const refresh = async () => {
    try {
      const accounts = (await api("/v1/accounts")).accounts;
      table.replaceChildren(h("tr", {}, h("th", {}, "Name"), h("th", {}, "Domains"), h("th", {}, "Limits"), h("th", {}, "")),
        ...accounts.map((a) => {
          const kb = h("button", { type: "button", class: "secondary" }, "Keys");
          kb.addEventListener("click", () => keys(a.name));
          const db = h("button", { type: "button", class: "danger" }, "Delete");
          db.addEventListener("click", async () => {
            if (!confirm(`Delete account ${a.name}?`)) return;
            try { await api(`/v1/accounts/${encodeURIComponent(a.name)}`, { method: "DELETE" }); await refresh(); } catch (e) { out.replaceChildren(fieldError(e)); }
          });
          return h("tr", {}, h("td", {}, a.name), h("td", {}, a.domains.join(", ") || "-"),
            h("td", {}, `streams ${a.max_streams ?? "∞"}, jobs ${a.max_jobs ?? "∞"}`), h("td", {}, h("div", { class: "row" }, kb, db)));
        }));
    } catch (e) {
      showError(out, e);
    }
  };
  form.addEventListener("submit", async (ev) => {
    ev.preventDefault();
    const body = { name: f.name.value.trim(), domains: f.domains.value.split(",").map((d) => d.trim()).filter(Boolean) };
    if (f.max_streams.value) body.max_streams = Number(f.max_streams.value);
    if (f.max_jobs.value) body.max_jobs = Number(f.max_jobs.value);
    try { await api("/v1/accounts", { method: "POST", body }); out.replaceChildren(h("p", { class: "ok" }, "Created.")); await refresh(); } catch (e) { out.replaceChildren(fieldError(e)); }
  });
  main.replaceChildren(h("h1", {}, "Accounts"), form, out, table, keysBox);
  await refresh();
}

// ---------------------------------------------------------------------------------------------
// routing

const pages = {
  live: pageLive,
  stream: pageStream,
  publish: pagePublish,
  snapshots: pageSnapshots,
  templates: pageTemplates,
  jobs: pageJobs,
  usage: pageUsage,
  accounts: pageAccounts,
};

function route() {
  for (const t of timers) t.stop();
  timers = [];
  for (const u of objectUrls) URL.revokeObjectURL(u);
  objectUrls = [];
  const hash = location.hash.replace(/^#\/?/, "");
  const [path, query] = hash.split("?");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  const name = parts[0] || "live";
  const page = pages[name] || pageLive;
  for (const a of document.querySelectorAll("nav a")) {
    if (a.getAttribute("href") === `#/${name}`) a.setAttribute("aria-current", "page");
    else a.removeAttribute("aria-current");
  }
  document.title = `livesnap · ${name}`;
  const args = name === "snapshots" ? [new URLSearchParams(query || "")] : parts.slice(1);
  Promise.resolve(page(...args)).catch((e) => showError(main, e));
}

window.addEventListener("hashchange", route);
route();
