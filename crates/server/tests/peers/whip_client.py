#!/usr/bin/env python3
"""A WHIP publisher that is not a browser: aiortc (its own ICE, DTLS, SRTP and libx264 through
PyAV), for crates/server/tests/e2e_whip_nonbrowser.rs.

    whip_client.py WHIP_URL VIDEO SECONDS

Sends VIDEO (any file ffmpeg reads, e.g. a short .y4m) looped at 30 fps as an H.264
(packetization-mode 1) video track, with aiortc's silent Opus audio track beside it; waits for
ICE gathering to complete, POSTs the offer to WHIP_URL, applies the 201's answer, sends for
SECONDS (or until SIGTERM/SIGINT), then DELETEs the session's Location.

The file is decoded once with PyAV (aiortc's own dependency) and played by a VideoStreamTrack,
not by aiortc's MediaPlayer(loop=True): on each rewind MediaPlayer restarts the frames' pts at 0,
after which it no longer paces playback and its decoding thread fills an unbounded queue, so a
short clip looped turns into hundreds of frames a second with timestamps going backwards.

Prints one progress line per step on stdout; exits 0 only when every step worked, 1 (with a
line starting "whip_client: error:") on any failure: an HTTP status other than 201 to the POST,
a connection that does not connect or fails, a DELETE that is not 200.
"""

import argparse
import asyncio
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

from aiortc import RTCConfiguration, RTCPeerConnection, RTCSessionDescription
import av
from aiortc.mediastreams import AudioStreamTrack, VideoStreamTrack
from aiortc.rtcrtpsender import RTCRtpSender

CONNECT_TIMEOUT_S = 20.0
HTTP_TIMEOUT_S = 15.0
MAX_FRAMES = 300


class Failure(Exception):
    pass


def say(msg):
    print(f"whip_client: {msg}", flush=True)


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


class LoopedVideo(VideoStreamTrack):
    """The frames of a file, played in a loop with steadily rising timestamps (30 fps)."""

    def __init__(self, path):
        super().__init__()
        with av.open(path) as container:
            if not container.streams.video:
                raise Failure(f"{path} has no video stream")
            self.frames = []
            for frame in container.decode(video=0):
                self.frames.append(frame.reformat(format="yuv420p"))
                if len(self.frames) >= MAX_FRAMES:
                    break
        if not self.frames:
            raise Failure(f"{path}: no video frame decoded")
        self.sent = 0

    async def recv(self):
        pts, time_base = await self.next_timestamp()
        frame = self.frames[self.sent % len(self.frames)]
        self.sent += 1
        frame.pts = pts
        frame.time_base = time_base
        return frame


def video_section(sdp):
    """The lines of the first m=video section."""
    out, inside = [], False
    for line in sdp.splitlines():
        if line.startswith("m="):
            inside = line.startswith("m=video")
            if not inside and out:
                break
        if inside:
            out.append(line)
    return out


async def outbound_counts(pc):
    """(packets, bytes) sent on the video track so far."""
    packets = octets = 0
    for sender in pc.getSenders():
        if sender.track is None or sender.track.kind != "video":
            continue
        stats = await sender.getStats()
        for s in stats.values():
            if getattr(s, "type", "") == "outbound-rtp":
                packets += s.packetsSent
                octets += s.bytesSent
    return packets, octets


async def publish(url, video, seconds):
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)

    # No STUN server (aiortc's default is a public one): host candidates only.
    pc = RTCPeerConnection(RTCConfiguration(iceServers=[]))
    state = {"connection": "new"}
    connected, failed = asyncio.Event(), asyncio.Event()

    @pc.on("connectionstatechange")
    async def on_state():
        state["connection"] = pc.connectionState
        say(f"connection state {pc.connectionState}")
        if pc.connectionState == "connected":
            connected.set()
        elif pc.connectionState in ("failed", "closed"):
            failed.set()

    track = LoopedVideo(video)
    f0 = track.frames[0]
    say(f"video {video}: {len(track.frames)} frame(s) of {f0.width}x{f0.height}, looped at 30 fps")
    vt = pc.addTransceiver(track, direction="sendonly")
    h264 = [
        c
        for c in RTCRtpSender.getCapabilities("video").codecs
        if c.mimeType.lower() == "video/h264"
        and c.parameters.get("packetization-mode") == "1"
    ]
    if not h264:
        raise Failure("this aiortc offers no H.264 with packetization-mode 1")
    vt.setCodecPreferences(h264)
    pc.addTransceiver(AudioStreamTrack(), direction="sendonly")

    location = None
    try:
        # aiortc gathers every candidate in setLocalDescription: the offer is complete (no
        # trickle ICE, which the server does not take).
        await pc.setLocalDescription(await pc.createOffer())
        if pc.iceGatheringState != "complete":
            raise Failure(f"ICE gathering is {pc.iceGatheringState}, not complete")
        offer = pc.localDescription.sdp
        vsec = video_section(offer)
        cands = [l.split(" ", 4)[4] for l in offer.splitlines() if l.startswith("a=candidate:")]
        rtpmaps = [l.split(" ", 1)[1] for l in vsec if l.startswith("a=rtpmap:")]
        say(f"offer: video codecs {sorted(set(rtpmaps))}; candidates {sorted(set(cands))}")
        if any(r.upper().startswith("VP8") for r in rtpmaps) or not any(
            r.upper().startswith("H264") for r in rtpmaps
        ):
            raise Failure(f"the offer's video is not H.264 only: {rtpmaps}")
        if not cands:
            raise Failure("the offer has no ICE candidate (no interface but loopback?)")

        say(f"POST {url}")
        status, headers, body = await asyncio.to_thread(
            http, "POST", url, offer.encode(), "application/sdp"
        )
        if status != 201:
            raise Failure(f"POST {url}: status {status} (want 201): {body.strip()[:500]}")
        ctype = headers.get("Content-Type", "")
        if not ctype.startswith("application/sdp"):
            raise Failure(f"POST {url}: Content-Type {ctype!r}, not application/sdp")
        if not headers.get("Location"):
            raise Failure(f"POST {url}: 201 without a Location")
        location = urllib.parse.urljoin(url, headers["Location"])
        answer_cands = [
            l.split(" ", 4)[4] for l in body.splitlines() if l.startswith("a=candidate:")
        ]
        say(f"201 Created, Location {location}; answer candidates {answer_cands}")
        await pc.setRemoteDescription(RTCSessionDescription(sdp=body, type="answer"))

        done = asyncio.ensure_future(connected.wait())
        bad = asyncio.ensure_future(failed.wait())
        await asyncio.wait({done, bad}, timeout=CONNECT_TIMEOUT_S, return_when=asyncio.FIRST_COMPLETED)
        done.cancel()
        bad.cancel()
        if not connected.is_set():
            raise Failure(
                f"not connected within {CONNECT_TIMEOUT_S:.0f} s (state {state['connection']})"
            )

        say(f"connected; sending for up to {seconds:g} s")
        end = time.monotonic() + seconds
        next_report = time.monotonic() + 5.0
        while not stop.is_set():
            left = end - time.monotonic()
            if left <= 0:
                break
            if failed.is_set():
                raise Failure(f"the connection went {state['connection']} while sending")
            if time.monotonic() >= next_report:
                packets, octets = await outbound_counts(pc)
                say(f"sending: {track.sent} frames, {packets} video packets, {octets} bytes")
                next_report += 5.0
            try:
                await asyncio.wait_for(stop.wait(), timeout=min(left, 1.0))
            except asyncio.TimeoutError:
                pass
        why = "asked to stop" if stop.is_set() else f"{seconds:g} s elapsed"
        packets, octets = await outbound_counts(pc)
        say(f"{why}: sent {track.sent} frames, {packets} video packets, {octets} bytes")
        if packets == 0:
            raise Failure("no video packet was sent")

        say(f"DELETE {location}")
        status, _, body = await asyncio.to_thread(http, "DELETE", location)
        deleted, location = location, None
        if status != 200:
            raise Failure(f"DELETE {deleted}: status {status} (want 200): {body.strip()[:500]}")
        say("DELETE 200: publish ended")
    finally:
        if location is not None:
            # A failure after the session was made: end it all the same, best effort.
            try:
                await asyncio.to_thread(http, "DELETE", location)
            except Failure:
                pass
        await pc.close()
        track.stop()


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("url", help="the WHIP endpoint, e.g. http://10.0.0.1:8081/whip/live/cam1")
    ap.add_argument("video", help="a video file to send, looped")
    ap.add_argument("seconds", type=float, help="how long to send at most")
    args = ap.parse_args()
    try:
        asyncio.run(publish(args.url, args.video, args.seconds))
    except Failure as e:
        say(f"error: {e}")
        sys.exit(1)
    except Exception as e:  # noqa: BLE001 - any crash is a failure with its reason
        say(f"error: {type(e).__name__}: {e}")
        sys.exit(1)
    say("done")


if __name__ == "__main__":
    main()
