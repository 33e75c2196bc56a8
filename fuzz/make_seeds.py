#!/usr/bin/env python3
"""Writes the seed inputs of every fuzz target to fuzz/seeds/<target>/ from testdata/.

Deterministic and offline: `python3 fuzz/make_seeds.py` rewrites the same files. The seeds are
committed; the corpora that fuzzing grows from them (fuzz/corpus/) are not.

The RTMP seeds are client byte streams built here the way ffmpeg and OBS publish (connect,
SetChunkSize, releaseStream, FCPublish, createStream, publish, @setDataFrame, then the audio and
video tags of testdata/320x240.flv, FCUnpublish, deleteStream).
"""

import os
import shutil
import struct

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TESTDATA = os.path.join(ROOT, "testdata")
SEEDS = os.path.join(ROOT, "fuzz", "seeds")


def read(name):
    with open(os.path.join(TESTDATA, name), "rb") as f:
        return f.read()


# ---------------------------------------------------------------- FLV and H.264 framing


def flv_tags(data):
    """(type, timestamp, body) of every tag of an FLV file."""
    assert data[:3] == b"FLV"
    pos = struct.unpack(">I", data[5:9])[0] + 4
    tags = []
    while pos + 11 <= len(data):
        t = data[pos] & 0x1F
        size = int.from_bytes(data[pos + 1 : pos + 4], "big")
        ts = int.from_bytes(data[pos + 4 : pos + 7], "big") | (data[pos + 7] << 24)
        body = data[pos + 11 : pos + 11 + size]
        tags.append((t, ts, body))
        pos += 11 + size + 4
    return tags


def split_annexb(stream):
    """NAL units of an Annex B stream (start codes removed)."""
    nals, i, start = [], 0, None
    while i + 3 <= len(stream):
        if stream[i : i + 3] == b"\x00\x00\x01":
            if start is not None:
                end = i
                while end > start and stream[end - 1] == 0:
                    end -= 1
                nals.append(stream[start:end])
            i += 3
            start = i
        else:
            i += 1
    if start is not None and start < len(stream):
        nals.append(stream[start:])
    return nals


def avcc_record(sps, pps):
    r = bytes([1, sps[1], sps[2], sps[3], 0xFF, 0xE1]) + struct.pack(">H", len(sps)) + sps
    return r + bytes([1]) + struct.pack(">H", len(pps)) + pps


def parse_avcc_record(r):
    n = struct.unpack(">H", r[6:8])[0]
    sps = r[8 : 8 + n]
    p = 8 + n + 1
    m = struct.unpack(">H", r[p : p + 2])[0]
    return sps, r[p + 2 : p + 2 + m]


def avcc_nals(au):
    out, pos = [], 0
    while pos + 4 <= len(au):
        n = struct.unpack(">I", au[pos : pos + 4])[0]
        out.append(au[pos + 4 : pos + 4 + n])
        pos += 4 + n
    return out


def parameter_sets(stream):
    nals = split_annexb(stream)
    sps = next(n for n in nals if n[0] & 0x1F == 7)
    pps = next(n for n in nals if n[0] & 0x1F == 8)
    return sps, pps


# ---------------------------------------------------------------- AMF0 and RTMP chunks


def amf_str(s):
    b = s.encode()
    return b"\x02" + struct.pack(">H", len(b)) + b


def amf_num(x):
    return b"\x00" + struct.pack(">d", x)


AMF_NULL = b"\x05"


def amf_props(d):
    out = b""
    for k, v in d.items():
        kb = k.encode()
        out += struct.pack(">H", len(kb)) + kb + v
    return out + b"\x00\x00\x09"


def amf_obj(d):
    return b"\x03" + amf_props(d)


def amf_ecma(d):
    return b"\x08" + struct.pack(">I", len(d)) + amf_props(d)


class ChunkWriter:
    """Client side of an RTMP chunk stream: fmt 0 for the first message of a chunk stream,
    fmt 1 (timestamp delta) after it, fmt 3 continuation chunks."""

    def __init__(self):
        self.chunk_size = 128
        self.last = {}
        self.out = bytearray()

    def message(self, csid, type_id, stream_id, payload, ts=0):
        prev = self.last.get(csid)
        if prev is None or prev[1] != stream_id or ts < prev[0]:
            self.out.append(csid)  # fmt 0
            self.out += ts.to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
            self.out += struct.pack("<I", stream_id)
        else:
            self.out.append(0x40 | csid)  # fmt 1
            self.out += (ts - prev[0]).to_bytes(3, "big") + len(payload).to_bytes(3, "big") + bytes([type_id])
        self.last[csid] = (ts, stream_id)
        first, rest = payload[: self.chunk_size], payload[self.chunk_size :]
        self.out += first
        while rest:
            self.out.append(0xC0 | csid)  # fmt 3
            self.out += rest[: self.chunk_size]
            rest = rest[self.chunk_size :]

    def set_chunk_size(self, n):
        self.message(2, 1, 0, struct.pack(">I", n))
        self.chunk_size = n

    def command(self, csid, stream_id, *values):
        self.message(csid, 20, stream_id, b"".join(values))


def handshake():
    c1 = bytes(8) + bytes((i * 7 + 3) & 0xFF for i in range(1536 - 8))
    return b"\x03" + c1 + bytes(1536)


def publish_stream(tags, app, tc_url, name, chunk_size, max_tags=None, end=True, play=False):
    w = ChunkWriter()
    w.command(3, 0, amf_str("connect"), amf_num(1), amf_obj({
        "app": amf_str(app),
        "type": amf_str("nonprivate"),
        "flashVer": amf_str("FMLE/3.0 (compatible; Lavf59.27.100)"),
        "tcUrl": amf_str(tc_url),
    }))
    if chunk_size != 128:
        w.set_chunk_size(chunk_size)
    w.message(2, 5, 0, struct.pack(">I", 2_500_000))  # WindowAcknowledgementSize
    if play:
        w.command(3, 0, amf_str("createStream"), amf_num(2), AMF_NULL)
        w.command(8, 1, amf_str("play"), amf_num(3), AMF_NULL, amf_str(name))
        return bytes(w.out)
    w.command(3, 0, amf_str("releaseStream"), amf_num(2), AMF_NULL, amf_str(name))
    w.command(3, 0, amf_str("FCPublish"), amf_num(3), AMF_NULL, amf_str(name))
    w.command(3, 0, amf_str("createStream"), amf_num(4), AMF_NULL)
    w.command(8, 1, amf_str("publish"), amf_num(5), AMF_NULL, amf_str(name), amf_str("live"))
    sent = 0
    for t, ts, body in tags:
        if t == 18:
            # The metadata as ffmpeg sends it: "@setDataFrame" before the onMetaData body.
            w.message(4, 18, 1, amf_str("@setDataFrame") + body, ts)
        elif t in (8, 9):
            w.message(4 if t == 8 else 6, t, 1, body, ts)
            sent += 1
            if max_tags is not None and sent >= max_tags:
                break
    if end:
        w.command(3, 0, amf_str("FCUnpublish"), amf_num(6), AMF_NULL, amf_str(name))
        w.command(3, 0, amf_str("deleteStream"), amf_num(7), AMF_NULL, amf_num(1))
    return bytes(w.out)


# ---------------------------------------------------------------- seeds


def main():
    flv = read("320x240.flv")
    tags = flv_tags(flv)
    video = [b for t, _, b in tags if t == 9]
    script = [b for t, _, b in tags if t == 18]
    record = next(b[5:] for b in video if b[0] & 0x0F == 7 and b[1] == 0)
    frames = [b[5:] for b in video if b[0] & 0x0F == 7 and b[1] == 1]
    sps320, pps320 = parse_avcc_record(record)
    sets = {"320x240": (sps320, pps320)}
    for res in ("720p", "1080p"):
        sets[res] = parameter_sets(read(f"{res}.h264"))

    seeds = {}

    def seed(target, name, data):
        seeds.setdefault(target, {})[name] = bytes(data)

    # avc_config / sps
    seed("avc_config", "flv_320x240", record)
    for res, (sps, pps) in sets.items():
        seed("sps", res, sps)
        if res != "320x240":
            seed("avc_config", res, avcc_record(sps, pps))

    # annexb: SPS, PPS and the first access units of the FLV in Annex B form.
    def annexb(nals):
        return b"".join(b"\x00\x00\x00\x01" + n for n in nals)

    seed("annexb", "320x240_4au", annexb([sps320, pps320] + [n for au in frames[:4] for n in avcc_nals(au)]))
    seed("annexb", "320x240_idr", annexb([sps320, pps320] + avcc_nals(frames[0])))
    seed("annexb", "720p_head", read("720p.h264")[:4096])

    # flv: the file, a truncated file, tag bodies as RTMP carries them.
    seed("flv", "320x240_file", flv)
    seed("flv", "320x240_truncated", flv[:2048])
    seed("flv", "tag_avc_config", next(b for b in video if b[1] == 0))
    seed("flv", "tag_avc_keyframe", next(b for b in video if b[1] == 1 and b[0] >> 4 == 1))
    seed("flv", "tag_avc_inter", next(b for b in video if b[1] == 1 and b[0] >> 4 == 2))
    seed("flv", "tag_enhanced_hevc", b"\x91hvc1\x00\x00\x00\x00")

    # amf0
    seed("amf0", "onmetadata", script[0])
    seed("amf0", "setdataframe", amf_str("@setDataFrame") + script[0])
    seed("amf0", "connect", amf_str("connect") + amf_num(1) + amf_obj({
        "app": amf_str("live"), "type": amf_str("nonprivate"),
        "flashVer": amf_str("FMLE/3.0 (compatible; Lavf59.27.100)"),
        "tcUrl": amf_str("rtmp://127.0.0.1:1935/live"),
        "nested": amf_obj({"a": amf_ecma({"b": amf_num(2)}), "c": b"\x0a\x00\x00\x00\x02" + AMF_NULL + b"\x01\x01"}),
    }))
    seed("amf0", "publish", amf_str("publish") + amf_num(5) + AMF_NULL + amf_str("cam?domain=x.example") + amf_str("live"))
    seed("amf0", "long_string_date", b"\x0c\x00\x00\x00\x03abc" + b"\x0b" + struct.pack(">d", 1.7e12) + b"\x00\x00" + b"\x06")

    # rtmp_session: mode byte, then the client's bytes after its handshake.
    ffmpeg = publish_stream(tags, "live", "rtmp://127.0.0.1:1935/live", "cam", 4096)
    # Fed in one piece, every media message arrives in the same feed() as `publish`, before the
    # publish is accepted, and the session drops them all (see the report on pipelined publish).
    seed("rtmp_session", "ffmpeg_publish_whole", b"\x00" + ffmpeg)
    seed("rtmp_session", "ffmpeg_publish_split", b"\x13" + ffmpeg)
    # Mode 2 cuts the stream so that `publish` is accepted before the AVC sequence header comes:
    # this one reaches AvcConfig, SPS and every frame.
    seed("rtmp_session", "ffmpeg_publish_paced", b"\x02" + ffmpeg)
    seed("rtmp_session", "obs_vhost_chunk128", b"\x05" + publish_stream(
        tags, "live?vhost=cams.example.com", "rtmp://cams.example.com/live?vhost=cams.example.com",
        "cam", 128, max_tags=6))
    seed("rtmp_session", "bad_name", b"\x00" + publish_stream(tags, "live", "rtmp://h/live", "a/b", 4096, max_tags=0))
    seed("rtmp_session", "play_refused", b"\x00" + publish_stream(tags, "live", "rtmp://h/live", "cam", 4096, play=True))
    seed("rtmp_session", "raw_handshake_connect", b"\x80" + handshake()
         + publish_stream(tags, "live", "rtmp://h/live", "cam", 4096, max_tags=2, end=False))

    # stream_url: app, name, tcUrl, domains (one per line).
    for name, text in {
        "plain": "live\ncam1\nrtmp://127.0.0.1:1935/live\n",
        "domain_param": "live\ncam1?domain=A.example&t=1\n\ncams.example.com",
        "vhost_on_app": "live?vhost=b.example/\ncam1\nrtmp://b.example/live\n",
        "configured_host": "live\ncam1\nrtmp://user@CAMS.example.com:1935/live\ncams.example.com\nother.example",
        "ipv6": "live\ncam1\nrtmp://[::1]:1935/live\n::1",
        "bad": "live\n../x\nrtmp://h/\n",
    }.items():
        seed("stream_url", name, text.encode())

    # decode: flags, display w, h (u16 BE), then u32 BE length + access unit, repeated.
    def units(aus):
        return b"".join(struct.pack(">I", len(a)) + a for a in aus)

    seed("decode", "keyframe_jpeg", b"\x00\x00\x00\x00\x00" + units(frames[:1]))
    seed("decode", "gop5_png", b"\x02\x00\x00\x00\x00" + units(frames[:5]))
    seed("decode", "gop8_scaled_crop", b"\x05" + struct.pack(">HH", 160, 100) + units(frames[:8]))
    seed("decode", "keyframe_new_decoder_png33", b"\x0e\x00\x00\x00\x00" + units(frames[:1]))
    seed("decode", "inband_parameter_sets", b"\x00\x00\x00\x00\x00" + units([
        struct.pack(">I", len(sps320)) + sps320 + struct.pack(">I", len(pps320)) + pps320 + frames[0]]))

    # rtsp_session: split byte, then a publisher's bytes; sdp: an ANNOUNCE body. From what
    # ffmpeg sends over TCP (testdata/rtsp/ffmpeg_record_tcp.bin).
    rtsp = read("rtsp/ffmpeg_record_tcp.bin")
    seed("rtsp_session", "ffmpeg_record_tcp", b"\x00" + rtsp)
    seed("rtsp_session", "ffmpeg_record_tcp_split", b"\x13" + rtsp[:8192])
    seed("sdp", "ffmpeg_h264", rtsp[rtsp.index(b"v=0"):rtsp.index(b"SETUP ")])

    # Only the targets made here are rewritten: others' seeds (hevc, rtp_*) come from elsewhere.
    for target, files in sorted(seeds.items()):
        d = os.path.join(SEEDS, target)
        if os.path.isdir(d):
            shutil.rmtree(d)
        os.makedirs(d)
        for name, data in sorted(files.items()):
            with open(os.path.join(d, name), "wb") as f:
                f.write(data)
        print(f"{target}: {len(files)} seeds, {sum(map(len, files.values()))} bytes")


if __name__ == "__main__":
    main()
