#!/usr/bin/python3
"""A third-party RTSP server for the bench's `jobs` scenario: GStreamer's gst-rtsp-server
(python3-gi, gir1.2-gst-rtsp-server-1.0) serving a pre-encoded H.264 file, looped at real-time
pace, at rtsp://127.0.0.1:PORT/test as ONE shared media: every client gets the same RTP
packets, so N pulls cost the server one feed, not N encodes (the sibling of
crates/server/tests/peers/gst_rtsp_server.py, which encodes a test pattern per media).

The file (anything parsebin demuxes: the bench's FLV, MP4, TS, raw .h264) is read into memory
once. A thread pushes its access units into an appsrc at their decode times, shifted by the
clip's length on every loop, so timestamps keep rising and the keyframe cadence holds across
the loop (a 12 s clip with a 2 s GOP gives a keyframe every 2 s forever). No transcoding:
`appsrc ! h264parse ! rtph264pay`.

Usage: rtsp_file_server.py FILE
Prints the port it listens on, then serves until killed.
"""
import sys
import threading
import time

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstApp", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstApp, GstRtspServer  # noqa: E402

# appsrc's queue while the media is blocked (between DESCRIBE and the first PLAY): the oldest
# access units are dropped beyond it, rather than memory growing.
QUEUE_BYTES = 8 << 20
# How long one wait for an access unit of the file lasts before the bus is looked at again.
PULL_TIMEOUT_NS = 100 * 1000 * 1000
# How long the feeder waits for the media to reach PLAYING before it gives up on it.
PLAYING_WAIT_S = 30


def read_access_units(path):
    """(caps, [(pts_ns, dts_ns, flags, bytes)]) of the file's H.264 video, in decode order."""
    pipeline = Gst.parse_launch(
        "filesrc name=src ! parsebin ! h264parse config-interval=-1 "
        "! video/x-h264,stream-format=byte-stream,alignment=au "
        "! appsink name=sink sync=false"
    )
    pipeline.get_by_name("src").set_property("location", path)
    sink = pipeline.get_by_name("sink")
    bus = pipeline.get_bus()
    pipeline.set_state(Gst.State.PLAYING)
    caps, units = None, []
    while True:
        # A file parsebin cannot read posts an error and never reaches EOS: poll the bus.
        error = bus.pop_filtered(Gst.MessageType.ERROR)
        if error is not None:
            pipeline.set_state(Gst.State.NULL)
            sys.exit(f"rtsp_file_server: {path}: {error.parse_error()[0].message}")
        sample = sink.emit("try-pull-sample", PULL_TIMEOUT_NS)
        if sample is None:
            if sink.is_eos():
                break
            continue
        buf = sample.get_buffer()
        caps = caps or sample.get_caps()
        ok, info = buf.map(Gst.MapFlags.READ)
        if not ok:
            continue
        data = bytes(info.data)
        buf.unmap(info)
        dts = buf.dts if buf.dts != Gst.CLOCK_TIME_NONE else buf.pts
        units.append((buf.pts, dts, buf.get_flags(), data))
    pipeline.set_state(Gst.State.NULL)
    if not units or caps is None:
        sys.exit(f"rtsp_file_server: no H.264 video in {path}")
    if any(u[1] == Gst.CLOCK_TIME_NONE for u in units):
        sys.exit(f"rtsp_file_server: {path} has access units without timestamps")
    return caps, units


def clip_period(caps, units):
    """The loop's length: the frame count at the stream's frame rate when the caps give one
    (exact, so the keyframe cadence does not drift across loops), otherwise first to last
    decode time plus one mean frame duration."""
    ok, num, den = caps.get_structure(0).get_fraction("framerate")
    if ok and num > 0 and den > 0:
        return len(units) * Gst.SECOND * den // num
    first, last = units[0][1], units[-1][1]
    frames = max(len(units) - 1, 1)
    return last - first + (last - first) // frames


def feed(src, units, period):
    """Pushes the clip into `src` at real-time pace, looping, until the media goes away."""
    deadline = time.monotonic() + PLAYING_WAIT_S
    while src.get_state(0)[1] != Gst.State.PLAYING:
        if time.monotonic() > deadline:
            return
        time.sleep(0.01)
    clock, base_time = src.get_clock(), src.get_base_time()
    if clock is None:
        return
    # Running time now: the first access unit goes out at once, stamped with it.
    start_running = clock.get_time() - base_time
    start_wall = time.monotonic()
    first_dts = units[0][1]
    loop = 0
    while True:
        for pts, dts, flags, data in units:
            offset = start_running + loop * period - first_dts
            due = start_wall + (dts + loop * period - first_dts) / Gst.SECOND
            pause = due - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            buf = Gst.Buffer.new_wrapped(data)
            buf.pts = pts + offset if pts != Gst.CLOCK_TIME_NONE else dts + offset
            buf.dts = dts + offset
            buf.set_flags(flags & Gst.BufferFlags.DELTA_UNIT)
            if src.push_buffer(buf) != Gst.FlowReturn.OK:
                return  # flushing or EOS: the media was unprepared (its last client left)
        loop += 1


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: rtsp_file_server.py FILE")
    Gst.init(None)
    caps, units = read_access_units(sys.argv[1])
    period = clip_period(caps, units)
    print(
        f"rtsp_file_server: {len(units)} access units, loop {period / Gst.SECOND:.3f} s",
        file=sys.stderr,
        flush=True,
    )

    server = GstRtspServer.RTSPServer()
    server.set_address("127.0.0.1")
    server.set_service("0")
    factory = GstRtspServer.RTSPMediaFactory()
    factory.set_launch(
        "( appsrc name=src is-live=true format=time "
        "! h264parse config-interval=-1 ! rtph264pay name=pay0 pt=96 config-interval=1 )"
    )
    factory.set_shared(True)

    def configure(_factory, media):
        # One line per media: with the mount shared, N clients at once make one.
        print("rtsp_file_server: media configured", file=sys.stderr, flush=True)
        src = media.get_element().get_by_name("src")
        src.set_property("caps", caps)
        src.set_property("max-bytes", QUEUE_BYTES)
        src.set_property("leaky-type", GstApp.AppLeakyType.DOWNSTREAM)
        threading.Thread(target=feed, args=(src, units, period), daemon=True).start()

    factory.connect("media-configure", configure)
    server.get_mount_points().add_factory("/test", factory)
    server.attach(None)
    print(server.get_bound_port(), flush=True)
    GLib.MainLoop().run()


if __name__ == "__main__":
    main()
