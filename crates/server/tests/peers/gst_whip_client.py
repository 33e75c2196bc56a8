#!/usr/bin/env python3
"""A WHIP publisher from GStreamer: webrtcbin (libnice ICE, OpenSSL DTLS with an RSA
certificate, libsrtp) with x265enc/rtph265pay or x264enc/rtph264pay, for
crates/server/tests/e2e_whip_nonbrowser.rs.

    gst_whip_client.py WHIP_URL STILL_PNG SECONDS [h265|h264]

Sends STILL_PNG as 30 fps video, H.265 Main (x265) or H.264 (x264), a keyframe every 10 s unless
the server asks for one, as the only track of a sendonly offer; waits for ICE gathering to complete, POSTs the
offer to WHIP_URL, applies the 201's answer, sends for SECONDS (or until SIGTERM/SIGINT), then
DELETEs the session's Location.

Browsers encode H.265 for WebRTC only with a hardware encoder and aiortc has no H.265, so this is
the software client that publishes it.

Prints one progress line per step on stdout; exits 0 only when every step worked, 1 (with a
line starting "gst_whip_client: error:") on any failure.
"""

import argparse
import signal
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstSdp", "1.0")
gi.require_version("GstWebRTC", "1.0")
from gi.repository import GLib, Gst, GstSdp, GstWebRTC  # noqa: E402

CONNECT_TIMEOUT_S = 20.0
GATHER_TIMEOUT_S = 10.0
HTTP_TIMEOUT_S = 15.0
KEYFRAME_INTERVAL_FRAMES = 300


class Failure(Exception):
    pass


def say(msg):
    print(f"gst_whip_client: {msg}", flush=True)


# No proxy from the environment: the server is on a directly attached network.
OPENER = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def http(method, url, body=None, content_type=None):
    """One request; returns (status, headers, body text), also for 4xx/5xx answers."""
    req = urllib.request.Request(url, data=body, method=method)
    if content_type:
        req.add_header("Content-Type", content_type)
    try:
        with OPENER.open(req, timeout=HTTP_TIMEOUT_S) as r:
            return r.status, r.headers, r.read().decode("utf-8", "replace")
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read().decode("utf-8", "replace")
    except (urllib.error.URLError, OSError) as e:
        raise Failure(f"{method} {url}: no answer: {e}") from e


def wait_promise(promise, what):
    """The reply of a webrtcbin promise, or a Failure naming `what`."""
    if promise.wait() != Gst.PromiseResult.REPLIED:
        raise Failure(f"{what}: the promise was not answered")
    return promise.get_reply()


ENCODERS = {
    "h265": "x265enc name=enc tune=zerolatency speed-preset=ultrafast bitrate=1500 "
    f"key-int-max={KEYFRAME_INTERVAL_FRAMES} ! video/x-h265,profile=main "
    "! rtph265pay config-interval=-1 "
    "! application/x-rtp,media=video,encoding-name=H265,payload=96,clock-rate=90000",
    "h264": "x264enc name=enc tune=zerolatency speed-preset=ultrafast bitrate=1500 "
    f"key-int-max={KEYFRAME_INTERVAL_FRAMES} ! video/x-h264,profile=constrained-baseline "
    "! rtph264pay config-interval=-1 aggregate-mode=zero-latency "
    "! application/x-rtp,media=video,encoding-name=H264,payload=96,clock-rate=90000",
}


class Publisher:
    def __init__(self, still, codec):
        Gst.init(None)
        desc = (
            "webrtcbin name=webrtc bundle-policy=max-bundle "
            f'filesrc location="{still}" ! pngdec ! videoconvert ! imagefreeze is-live=true '
            "! video/x-raw,framerate=30/1 ! videoconvert ! video/x-raw,format=I420 "
            f"! {ENCODERS[codec]} ! webrtc."
        )
        self.pipeline = Gst.parse_launch(desc)
        self.webrtc = self.pipeline.get_by_name("webrtc")
        self.gathered = threading.Event()
        self.connected = threading.Event()
        self.failed = threading.Event()
        self.state = "new"
        self.keyframes_asked = 0
        self.negotiation_needed = threading.Event()
        self.webrtc.connect("on-negotiation-needed", lambda _w: self.negotiation_needed.set())
        self.webrtc.connect("notify::ice-gathering-state", self._on_gathering)
        self.webrtc.connect("notify::connection-state", self._on_connection)
        bus = self.pipeline.get_bus()
        bus.add_signal_watch()
        bus.connect("message::error", self._on_error)
        # Count the keyframe requests that reach the encoder (PLI/FIR turned into
        # GstForceKeyUnit by the RTP stack).
        enc_src = self.pipeline.get_by_name("enc").get_static_pad("src")
        enc_src.add_probe(Gst.PadProbeType.EVENT_UPSTREAM, self._on_upstream_event)

    def _on_gathering(self, webrtc, _pspec):
        st = webrtc.get_property("ice-gathering-state")
        if st == GstWebRTC.WebRTCICEGatheringState.COMPLETE:
            self.gathered.set()

    def _on_connection(self, webrtc, _pspec):
        st = webrtc.get_property("connection-state")
        self.state = st.value_nick
        say(f"connection state {self.state}")
        if st == GstWebRTC.WebRTCPeerConnectionState.CONNECTED:
            self.connected.set()
        elif st in (
            GstWebRTC.WebRTCPeerConnectionState.FAILED,
            GstWebRTC.WebRTCPeerConnectionState.CLOSED,
        ):
            self.failed.set()

    def _on_error(self, _bus, msg):
        err, debug = msg.parse_error()
        say(f"pipeline error: {err.message} ({debug})")
        self.state = f"pipeline error: {err.message}"
        self.failed.set()

    def _on_upstream_event(self, _pad, info):
        ev = info.get_event()
        if ev is not None and ev.has_name("GstForceKeyUnit"):
            self.keyframes_asked += 1
            say(f"the encoder was asked for a keyframe ({self.keyframes_asked})")
        return Gst.PadProbeReturn.OK

    def offer(self):
        """The complete offer's SDP text (every candidate gathered, no trickle)."""
        if self.pipeline.set_state(Gst.State.PLAYING) == Gst.StateChangeReturn.FAILURE:
            raise Failure("the pipeline does not start")
        trans = self.webrtc.emit("get-transceiver", 0)
        if trans is None:
            raise Failure("webrtcbin made no transceiver for the video pad")
        trans.set_property("direction", GstWebRTC.WebRTCRTPTransceiverDirection.SENDONLY)
        # The offer can be made once the payloader's caps reached webrtcbin.
        if not self.negotiation_needed.wait(GATHER_TIMEOUT_S):
            raise Failure(f"webrtcbin did not ask for negotiation within {GATHER_TIMEOUT_S:.0f} s")
        promise = Gst.Promise.new()
        self.webrtc.emit("create-offer", None, promise)
        reply = wait_promise(promise, "create-offer")
        offer = reply.get_value("offer") if reply is not None else None
        if offer is None:
            raise Failure(f"create-offer made no offer: {reply.to_string() if reply else None}")
        promise = Gst.Promise.new()
        self.webrtc.emit("set-local-description", offer, promise)
        wait_promise(promise, "set-local-description")
        if not self.gathered.wait(GATHER_TIMEOUT_S):
            raise Failure(f"ICE gathering not complete within {GATHER_TIMEOUT_S:.0f} s")
        return self.webrtc.get_property("local-description").sdp.as_text()

    def answer(self, text):
        res, sdp = GstSdp.SDPMessage.new_from_text(text)
        if res != GstSdp.SDPResult.OK:
            raise Failure(f"the answer is not SDP: {text[:300]!r}")
        desc = GstWebRTC.WebRTCSessionDescription.new(GstWebRTC.WebRTCSDPType.ANSWER, sdp)
        promise = Gst.Promise.new()
        self.webrtc.emit("set-remote-description", desc, promise)
        wait_promise(promise, "set-remote-description")

    def stop(self):
        self.pipeline.set_state(Gst.State.NULL)


def video_section(sdp):
    out, inside = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            inside = line.startswith("m=video")
            if not inside and out:
                break
        if inside:
            out.append(line)
    return out


def publish(url, still, seconds, codec):
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())

    # webrtcbin's signals and bus run on a GLib main loop of their own thread.
    loop = GLib.MainLoop()
    looper = threading.Thread(target=loop.run, daemon=True)
    looper.start()
    pub = Publisher(still, codec)
    location = None
    try:
        offer = pub.offer()
        vsec = video_section(offer)
        cands = [l.split(" ", 4)[4] for l in offer.splitlines() if l.startswith("a=candidate:")]
        rtpmaps = [l.split(" ", 1)[1] for l in vsec if l.startswith("a=rtpmap:")]
        say(f"offer: video codecs {sorted(set(rtpmaps))}; candidates {sorted(set(cands))}")
        if not any(r.upper().startswith(codec.upper()) for r in rtpmaps):
            raise Failure(f"the offer's video is not {codec}: {rtpmaps}")
        if not cands:
            raise Failure("the offer has no ICE candidate (no interface but loopback?)")

        say(f"POST {url}")
        status, headers, body = http("POST", url, offer.encode(), "application/sdp")
        if status != 201:
            raise Failure(f"POST {url}: status {status} (want 201): {body.strip()[:500]}")
        ctype = headers.get("Content-Type", "")
        if not ctype.startswith("application/sdp"):
            raise Failure(f"POST {url}: Content-Type {ctype!r}, not application/sdp")
        if not headers.get("Location"):
            raise Failure(f"POST {url}: 201 without a Location")
        location = urllib.parse.urljoin(url, headers["Location"])
        answer_rtpmaps = [
            l.split(" ", 1)[1] for l in video_section(body) if l.startswith("a=rtpmap:")
        ]
        say(f"201 Created, Location {location}; answer video codecs {answer_rtpmaps}")
        pub.answer(body)

        deadline = time.monotonic() + CONNECT_TIMEOUT_S
        while not pub.connected.is_set():
            if pub.failed.is_set() or time.monotonic() >= deadline or stop.is_set():
                raise Failure(
                    f"not connected within {CONNECT_TIMEOUT_S:.0f} s (state {pub.state})"
                )
            time.sleep(0.05)

        say(f"connected; sending for up to {seconds:g} s")
        end = time.monotonic() + seconds
        while not stop.is_set() and time.monotonic() < end:
            if pub.failed.is_set():
                raise Failure(f"the connection went {pub.state} while sending")
            stop.wait(min(1.0, max(0.0, end - time.monotonic())))
        why = "asked to stop" if stop.is_set() else f"{seconds:g} s elapsed"
        say(f"{why}; the encoder was asked for {pub.keyframes_asked} keyframe(s)")

        say(f"DELETE {location}")
        status, _, body = http("DELETE", location)
        deleted, location = location, None
        if status != 200:
            raise Failure(f"DELETE {deleted}: status {status} (want 200): {body.strip()[:500]}")
        say("DELETE 200: publish ended")
    finally:
        if location is not None:
            try:
                http("DELETE", location)
            except Failure:
                pass
        pub.stop()
        loop.quit()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="the WHIP endpoint, e.g. http://10.0.0.1:8081/whip/live/cam1")
    ap.add_argument("still", help="a PNG to send as 30 fps video")
    ap.add_argument("seconds", type=float, help="how long to send at most")
    ap.add_argument("codec", nargs="?", default="h265", choices=sorted(ENCODERS))
    args = ap.parse_args()
    try:
        publish(args.url, args.still, args.seconds, args.codec)
    except Failure as e:
        say(f"error: {e}")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any crash is a failure with its reason
        say(f"error: {type(e).__name__}: {e}")
        sys.exit(1)
    say("done")


if __name__ == "__main__":
    main()
