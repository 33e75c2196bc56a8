#!/usr/bin/python3
"""A third-party RTSP server for the pull tests: GStreamer's gst-rtsp-server (python3-gi,
gir1.2-gst-rtsp-server-1.0) serving videotestsrc's smpte75 pattern, 320x240 I420 (forced: the
encoders pick 4:4:4 otherwise), x264 with a keyframe every second, at rtsp://127.0.0.1:PORT/test.

Usage: gst_rtsp_server.py [USER PASSWORD]   (with them, basic authentication is required)
Listens on the port in the environment variable RTSP_PORT (a restart on the same port), else on
one the system picks. Prints the port it listens on, then serves until killed.
"""
import os
import sys

import gi

gi.require_version("Gst", "1.0")
gi.require_version("GstRtspServer", "1.0")
from gi.repository import GLib, Gst, GstRtspServer  # noqa: E402

Gst.init(None)
server = GstRtspServer.RTSPServer()
server.set_address("127.0.0.1")
server.set_service(os.environ.get("RTSP_PORT", "0"))
factory = GstRtspServer.RTSPMediaFactory()
factory.set_launch(
    "( videotestsrc is-live=true pattern=smpte75 "
    "! video/x-raw,format=I420,width=320,height=240,framerate=25/1 "
    "! x264enc tune=zerolatency key-int-max=25 speed-preset=ultrafast "
    "! rtph264pay name=pay0 pt=96 config-interval=1 )"
)
factory.set_shared(True)
if len(sys.argv) == 3:
    auth = GstRtspServer.RTSPAuth()
    token = GstRtspServer.RTSPToken()
    token.set_string("media.factory.role", "user")
    auth.add_basic(GstRtspServer.RTSPAuth.make_basic(sys.argv[1], sys.argv[2]), token)
    server.set_auth(auth)
    permissions = GstRtspServer.RTSPPermissions()
    permissions.add_role("user")
    permissions.add_permission_for_role("user", "media.factory.access", True)
    permissions.add_permission_for_role("user", "media.factory.construct", True)
    factory.set_permissions(permissions)
server.get_mount_points().add_factory("/test", factory)
server.attach(None)
print(server.get_bound_port(), flush=True)
GLib.MainLoop().run()
