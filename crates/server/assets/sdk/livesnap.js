// livesnap browser module: pictures of live streams, and publishing this browser's camera
// over WHIP. An ES module with no dependencies:
//
//   import { Livesnap, STREAM_STATUS } from "http://HOST:8081/sdk/livesnap.js";
//   const ls = new Livesnap({ server: "http://HOST:8081", apiKey: "..." });
//   const shot = await ls.snapshot("live/cam1", { format: "jpg", width: 640 });
//   img.src = URL.createObjectURL(shot.blob);
//
//   // The Flashphoner WCS shape: getInfo() is the base64 PNG, or the failure's reason.
//   ls.createStream({ name: "live/cam1" })
//     .on(STREAM_STATUS.SNAPSHOT_COMPLETE, (s) => { img.src = "data:image/png;base64," + s.getInfo(); })
//     .on(STREAM_STATUS.FAILED, (s) => console.log("snapshot failed: " + s.getInfo()))
//     .snapshot();
//
//   const pub = await ls.publish("live/cam1", await navigator.mediaDevices.getUserMedia({ video: true }));
//   await pub.stop();

/** Event names of createStream(), as Flashphoner's STREAM_STATUS names them. */
export const STREAM_STATUS = Object.freeze({
  SNAPSHOT_COMPLETE: "SNAPSHOT_COMPLETE",
  FAILED: "FAILED",
  PUBLISHING: "PUBLISHING",
  UNPUBLISHED: "UNPUBLISHED",
});

/** An error the server answered: `status` is the HTTP status, `body` its JSON error body. */
export class LivesnapError extends Error {
  constructor(message, status, body) {
    super(message);
    this.name = "LivesnapError";
    this.status = status;
    this.body = body;
  }
}

/** Splits "app/stream" or "domain/app/stream"; a bare "stream" has neither app nor domain. */
function splitName(name) {
  const parts = String(name).split("/").filter((p) => p.length > 0);
  if (parts.length === 3) return { domain: parts[0], app: parts[1], stream: parts[2] };
  if (parts.length === 2) return { app: parts[0], stream: parts[1] };
  if (parts.length === 1) return { stream: parts[0] };
  throw new LivesnapError(`bad stream name ${JSON.stringify(name)}: use app/stream or domain/app/stream`, 0);
}

async function failure(response) {
  let body = null;
  try {
    body = await response.json();
  } catch (_) {
    // Not JSON: the status says enough.
  }
  const message = (body && body.error) || `${response.status} ${response.statusText}`;
  return new LivesnapError(message, response.status, body);
}

function base64Of(buffer) {
  const bytes = new Uint8Array(buffer);
  let text = "";
  for (let i = 0; i < bytes.length; i += 0x8000) {
    text += String.fromCharCode.apply(null, bytes.subarray(i, i + 0x8000));
  }
  return btoa(text);
}

export class Livesnap {
  /**
   * @param {{server?: string, apiKey?: string}} options `server`: the livesnap HTTP address
   *   (default: the page's own origin); `apiKey`: sent as `Authorization: Bearer`.
   */
  constructor({ server, apiKey } = {}) {
    this.server = (server || globalThis.location?.origin || "").replace(/\/+$/, "");
    this.apiKey = apiKey || null;
  }

  /** fetch() against the server, with the key. */
  async request(path, init = {}) {
    const headers = new Headers(init.headers || {});
    if (this.apiKey && !headers.has("Authorization")) {
      headers.set("Authorization", `Bearer ${this.apiKey}`);
    }
    return fetch(this.server + path, { ...init, headers });
  }

  /** The app, stream and domain of `name`; a bare stream name is looked up among live streams. */
  async resolve(name) {
    const n = splitName(name);
    if (n.app) return n;
    const response = await this.request("/v1/streams");
    if (!response.ok) throw await failure(response);
    const live = (await response.json()).streams || [];
    const found = live.filter((s) => s.stream === n.stream);
    if (found.length === 1) return { domain: found[0].domain, app: found[0].app, stream: found[0].stream };
    if (found.length === 0) throw new LivesnapError(`no live stream named ${n.stream}`, 404);
    throw new LivesnapError(`${found.length} live streams are named ${n.stream}: name one as app/stream`, 409);
  }

  /**
   * A picture of a live stream now.
   * @param {string} name "app/stream", "domain/app/stream" or a stream name only one live stream has
   * @param {{format?: "png"|"jpg", width?: number, height?: number, quality?: number}} options
   * @returns {Promise<{data: string, blob: Blob, frameTime: Date|null, ageMs: number|null,
   *   width: number|null, height: number|null, keyframe: boolean, cache: string|null}>}
   */
  async snapshot(name, { format = "png", width, height, quality } = {}) {
    const n = await this.resolve(name);
    const ext = format === "jpg" || format === "jpeg" ? "jpg" : "png";
    const query = new URLSearchParams();
    if (width) query.set("width", String(width));
    if (height) query.set("height", String(height));
    if (quality) query.set("quality", String(quality));
    if (n.domain && n.domain !== "_default") query.set("domain", n.domain);
    const q = query.toString();
    const path = `/v1/streams/${encodeURIComponent(n.app)}/${encodeURIComponent(n.stream)}/snapshot.${ext}${q ? "?" + q : ""}`;
    const response = await this.request(path);
    if (!response.ok) throw await failure(response);
    const buffer = await response.arrayBuffer();
    const h = response.headers;
    const size = (h.get("x-livesnap-size") || "").split("x").map(Number);
    const time = h.get("x-livesnap-frame-time");
    const age = h.get("x-livesnap-frame-age-ms");
    return {
      data: base64Of(buffer),
      blob: new Blob([buffer], { type: h.get("content-type") || `image/${ext === "jpg" ? "jpeg" : "png"}` }),
      frameTime: time ? new Date(time) : null,
      ageMs: age === null ? null : Number(age),
      width: size.length === 2 ? size[0] : null,
      height: size.length === 2 ? size[1] : null,
      keyframe: h.get("x-livesnap-keyframe") === "true",
      cache: h.get("x-livesnap-cache"),
    };
  }

  /**
   * A stream handle shaped like Flashphoner WCS's: `.on(event, fn)` chains, `.snapshot()`
   * asks for a PNG through the WCS call, and the handlers get the handle, whose `getInfo()`
   * is the picture in base64 (SNAPSHOT_COMPLETE) or why it failed (FAILED).
   */
  createStream({ name }) {
    return new WcsStream(this, name);
  }

  /**
   * Publishes `mediaStream`'s video (and audio, which livesnap ignores) as `name` over WHIP.
   * With an API key the URL is signed first (`POST /v1/publish-urls`), so a server with a
   * `publish_secret` takes it. `codec` is preferred (default `"H264"`; `"VP8"`, `"VP9"`,
   * `"AV1"` and `"H265"` where the server pictures them, with its `ffmpeg` feature).
   * @returns {Promise<{pc: RTCPeerConnection, location: string, stop: () => Promise<void>}>}
   */
  async publish(name, mediaStream, { iceGatheringTimeoutMs = 2000, codec = "H264" } = {}) {
    const n = splitName(name);
    if (!n.app) throw new LivesnapError("publish needs app/stream or domain/app/stream", 0);
    const url = await this.whipUrl(n);
    const pc = new RTCPeerConnection();
    try {
      for (const track of mediaStream.getTracks()) {
        const transceiver = pc.addTransceiver(track, { direction: "sendonly", streams: [mediaStream] });
        if (track.kind === "video") prefer(transceiver, codec);
      }
      await pc.setLocalDescription(await pc.createOffer());
      await gathered(pc, iceGatheringTimeoutMs);
      const response = await fetch(url, {
        method: "POST",
        headers: { "Content-Type": "application/sdp" },
        body: pc.localDescription.sdp,
      });
      if (response.status !== 201) throw await failure(response);
      const location = new URL(response.headers.get("Location"), url).toString();
      await pc.setRemoteDescription({ type: "answer", sdp: await response.text() });
      return {
        pc,
        location,
        // The session first: closing the connection first would end it from the media
        // side, and the DELETE would find nothing.
        stop: async () => {
          await fetch(location, { method: "DELETE" }).catch(() => {});
          pc.close();
        },
      };
    } catch (e) {
      pc.close();
      throw e;
    }
  }

  /** The WHIP URL of `n`: signed when the server mints URLs for this caller, else plain. */
  async whipUrl(n) {
    const response = await this.request("/v1/publish-urls", {
      method: "POST",
      headers: { "Content-Type": "application/json" },
      body: JSON.stringify(n.domain ? { app: n.app, stream: n.stream, domain: n.domain } : { app: n.app, stream: n.stream }),
    }).catch(() => null);
    const whip = response && response.ok ? (await response.json()).whip : null;
    if (typeof whip === "string") {
      // The server names itself by its public_url or Host; the page reached it at this.server
      // (another name, or a proxy's). The key is never sent there either way.
      const u = new URL(whip, this.server);
      const base = new URL(this.server, globalThis.location?.href);
      return u.origin === base.origin ? u.toString() : this.server + u.pathname + u.search;
    }
    const q = n.domain ? `?domain=${encodeURIComponent(n.domain)}` : "";
    return `${this.server}/whip/${encodeURIComponent(n.app)}/${encodeURIComponent(n.stream)}${q}`;
  }
}

/** Puts `codec` first among the codecs a video transceiver offers, where the browser allows. */
function prefer(transceiver, codec) {
  const caps = globalThis.RTCRtpSender?.getCapabilities?.("video");
  if (!caps || typeof transceiver.setCodecPreferences !== "function") return;
  const mime = `video/${codec}`.toLowerCase();
  const first = caps.codecs.filter((c) => c.mimeType.toLowerCase() === mime);
  const rest = caps.codecs.filter((c) => c.mimeType.toLowerCase() !== mime);
  if (first.length === 0) return;
  try {
    transceiver.setCodecPreferences([...first, ...rest]);
  } catch (_) {
    // A browser that checks them against its receiving codecs may refuse: its own order it is.
  }
}

/** Waits until ICE gathering is complete (or the timeout): WHIP here takes no trickle. */
function gathered(pc, timeoutMs) {
  if (pc.iceGatheringState === "complete") return Promise.resolve();
  return new Promise((resolve) => {
    const done = () => {
      pc.removeEventListener("icegatheringstatechange", check);
      clearTimeout(timer);
      resolve();
    };
    const check = () => {
      if (pc.iceGatheringState === "complete") done();
    };
    const timer = setTimeout(done, timeoutMs);
    pc.addEventListener("icegatheringstatechange", check);
  });
}

class WcsStream {
  constructor(client, name) {
    this.client = client;
    this.name = name;
    this.handlers = {};
    this.info = null;
  }

  /** Adds a handler of `event` (SNAPSHOT_COMPLETE or FAILED); returns this handle. */
  on(event, handler) {
    (this.handlers[event] ||= []).push(handler);
    return this;
  }

  /** The picture in base64 after SNAPSHOT_COMPLETE, or the reason after FAILED. */
  getInfo() {
    return this.info;
  }

  emit(event) {
    for (const handler of this.handlers[event] || []) handler(this);
  }

  /** Asks for a PNG; the handlers are called when it comes or fails. Returns this handle. */
  snapshot() {
    this.run();
    return this;
  }

  async run() {
    // The handlers run outside the try: one that throws is the page's error, not a FAILED.
    let event = STREAM_STATUS.FAILED;
    try {
      const response = await this.client.request("/rest-api/stream/snapshot", {
        method: "POST",
        headers: { "Content-Type": "application/json" },
        body: JSON.stringify({ streamName: this.name }),
      });
      const body = await response.json().catch(() => null);
      if (response.ok && body && typeof body.data === "string") {
        this.info = body.data;
        event = STREAM_STATUS.SNAPSHOT_COMPLETE;
      } else {
        this.info = (body && (body.message || body.error)) || `${response.status} ${response.statusText}`;
      }
    } catch (e) {
      this.info = String(e && e.message ? e.message : e);
    }
    this.emit(event);
  }
}

export default Livesnap;
