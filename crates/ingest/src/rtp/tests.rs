//! Depacketizer tests: each packetization, loss, reorder, duplicates, wraps, sprop, limits.

use super::*;

const SPS: &[u8] = &[0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9];
const PPS: &[u8] = &[0x68, 0xeb, 0xe3, 0xcb];
const SEI: &[u8] = &[0x06, 0x05, 0x01, 0xaa, 0x80];
const AUD: &[u8] = &[0x09, 0xf0];
/// 90 kHz ticks of a frame at 25 fps.
const FRAME: u32 = 3600;

fn idr(fill: u8, len: usize) -> Vec<u8> {
    let mut n = vec![0x65, 0x88];
    n.resize(len, fill);
    n
}

fn slice(fill: u8, len: usize) -> Vec<u8> {
    let mut n = vec![0x41, 0x9a];
    n.resize(len, fill);
    n
}

/// Length-prefixed NAL units, as frames carry them.
fn avcc(nals: &[&[u8]]) -> Vec<u8> {
    let mut out = Vec::new();
    for n in nals {
        out.extend_from_slice(&(n.len() as u32).to_be_bytes());
        out.extend_from_slice(n);
    }
    out
}

fn stap_a(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![0x78]; // F 0, NRI 3, type 24
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

/// FU-A payloads of one NAL unit, `size` bytes of it a packet.
fn fu_a(nal: &[u8], size: usize) -> Vec<Vec<u8>> {
    let pieces: Vec<&[u8]> = nal[1..].chunks(size).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut fu = nal[0] & 0x1f;
            if i == 0 {
                fu |= 0x80;
            }
            if i == last {
                fu |= 0x40;
            }
            let mut p = vec![(nal[0] & 0xe0) | 28, fu];
            p.extend_from_slice(piece);
            p
        })
        .collect()
}

/// A sender's sequence numbers and clock.
struct Sender {
    seq: u16,
    ts: u32,
    ssrc: u32,
}

impl Sender {
    fn new() -> Sender {
        Sender {
            seq: 1000,
            ts: 123_456,
            ssrc: 0x1234_5678,
        }
    }

    /// One access unit's payloads as packets, the last one with the marker.
    fn au(&mut self, payloads: Vec<Vec<u8>>) -> Vec<Packet> {
        let last = payloads.len() - 1;
        let packets = payloads
            .into_iter()
            .enumerate()
            .map(|(i, payload)| {
                let p = Packet {
                    marker: i == last,
                    payload_type: 96,
                    sequence: self.seq,
                    timestamp: self.ts,
                    ssrc: self.ssrc,
                    payload: Bytes::from(payload),
                };
                self.seq = self.seq.wrapping_add(1);
                p
            })
            .collect();
        self.ts = self.ts.wrapping_add(FRAME);
        packets
    }

    /// A keyframe: SPS and PPS in a STAP-A, then the IDR in FU-As.
    fn keyframe(&mut self, fill: u8) -> Vec<Packet> {
        let mut payloads = vec![stap_a(&[SPS, PPS])];
        payloads.extend(fu_a(&idr(fill, 3000), 1400));
        self.au(payloads)
    }

    fn p_frame(&mut self, fill: u8) -> Vec<Packet> {
        self.au(vec![slice(fill, 500)])
    }
}

fn h264() -> Depacketizer {
    Depacketizer::new(Codec::H264, "packetization-mode=1").unwrap()
}

/// Pushes every packet, then flushes (gives up on gaps); returns the frames.
fn run(d: &mut Depacketizer, packets: impl IntoIterator<Item = Packet>) -> Vec<Frame> {
    let mut events = Vec::new();
    for p in packets {
        let _ = d.push(p, &mut events);
    }
    let _ = d.flush(&mut events);
    frames(events)
}

fn frames(events: Vec<Event>) -> Vec<Frame> {
    events
        .into_iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(f),
            Event::Config(_) => None,
        })
        .collect()
}

fn keyframes(frames: &[Frame]) -> Vec<bool> {
    frames.iter().map(|f| f.keyframe).collect()
}

// ------------------------------------------------------------------ header

fn header(first: u8, second: u8) -> Vec<u8> {
    vec![
        first, second, 0x12, 0x34, 0, 0, 0x03, 0xe8, 0xde, 0xad, 0xbe, 0xef,
    ]
}

#[test]
fn header_fields_and_what_surrounds_the_payload() {
    let mut b = header(0x80, 0x80 | 96);
    b.extend_from_slice(b"abc");
    let p = Packet::parse(Bytes::from(b)).unwrap();
    assert!(p.marker);
    assert_eq!(
        (p.payload_type, p.sequence, p.timestamp, p.ssrc),
        (96, 0x1234, 1000, 0xdead_beef)
    );
    assert_eq!(&p.payload[..], b"abc");

    // Two CSRCs, an extension of one word, two bytes of padding.
    let mut b = header(0x80 | 0x20 | 0x10 | 2, 96);
    b.extend_from_slice(&[1; 8]);
    b.extend_from_slice(&[0xbe, 0xde, 0, 1, 9, 9, 9, 9]);
    b.extend_from_slice(b"xyz");
    b.extend_from_slice(&[0, 2]);
    let p = Packet::parse(Bytes::from(b)).unwrap();
    assert!(!p.marker);
    assert_eq!(&p.payload[..], b"xyz");
}

#[test]
fn malformed_headers_are_refused() {
    let refused = |b: Vec<u8>| match Packet::parse(Bytes::from(b)) {
        Err(Error::RtpHeader(why)) => why,
        other => panic!("accepted: {other:?}"),
    };
    assert_eq!(refused(vec![0x80; 11]), "shorter than 12 bytes");
    assert_eq!(refused(header(0x40, 96)), "version is not 2");
    assert!(refused(header(0x80, 200)).contains("RTCP"));
    assert!(refused(header(0x80 | 1, 96)).contains("CSRC"));
    assert!(refused(header(0x90, 96)).contains("extension"));
    let mut b = header(0x90, 96);
    b.extend_from_slice(&[0, 0, 0, 2, 1, 2, 3, 4]); // claims 2 words, has 1
    assert!(refused(b).contains("extension"));
    let mut b = header(0xa0, 96);
    b.extend_from_slice(&[1, 2, 9]);
    assert!(refused(b).contains("padding"));
    let mut b = header(0xa0, 96);
    b.extend_from_slice(&[1, 2, 0]);
    assert!(refused(b).contains("padding"));
}

// ------------------------------------------------------------------ H.264

#[test]
fn h264_stap_a_and_fu_a_make_config_and_frames() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut events = Vec::new();
    for p in s.keyframe(1).into_iter().chain(s.p_frame(2)) {
        d.push(p, &mut events).unwrap();
    }
    let Event::Config(VideoConfig::Avc(config)) = &events[0] else {
        panic!("first event: {:?}", events[0]);
    };
    assert_eq!((&config.sps[0][..], &config.pps[0][..]), (SPS, PPS));
    assert_eq!(config.nal_length_size, 4);
    let frames = frames(events);
    assert_eq!(keyframes(&frames), [true, false]);
    // Parameter sets are in the config, not in the frame; the IDR is whole again, header too.
    assert_eq!(&frames[0].data[..], avcc(&[&idr(1, 3000)]));
    assert_eq!(&frames[1].data[..], avcc(&[&slice(2, 500)]));
    assert_eq!((frames[0].pts_ms, frames[1].pts_ms), (0, 40));
    let c = d.counters();
    assert_eq!(
        (c.packets, c.frames, c.frames_dropped, c.packets_lost),
        (5, 2, 0, 0)
    );
}

#[test]
fn single_nal_packets_keep_sei_and_drop_aud_and_trailing_zeros() {
    let mut s = Sender::new();
    let mut d = h264();
    let idr = idr(7, 100);
    let packets = s.au(vec![
        AUD.to_vec(),
        SPS.to_vec(),
        PPS.to_vec(),
        SEI.to_vec(),
        [&idr[..], &[0, 0]].concat(), // zeros of the byte stream a sender left on
    ]);
    let frames = run(&mut d, packets);
    assert_eq!(frames.len(), 1);
    assert_eq!(&frames[0].data[..], avcc(&[SEI, &idr]));
}

#[test]
fn without_markers_a_timestamp_change_ends_the_access_unit() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut packets: Vec<Packet> = [s.keyframe(1), s.p_frame(2), s.p_frame(3)].concat();
    for p in &mut packets {
        p.marker = false;
    }
    let frames = run(&mut d, packets);
    // The last one ends only when a later timestamp comes.
    assert_eq!(keyframes(&frames), [true, false]);
    assert_eq!(&frames[1].data[..], avcc(&[&slice(2, 500)]));
}

#[test]
fn a_lost_packet_drops_frames_up_to_the_next_keyframe() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut packets = [s.keyframe(1), s.p_frame(2)].concat();
    let mut second = s.au(vec![slice(3, 500), slice(3, 400)]);
    second.remove(0); // the first slice of the third frame is lost
    packets.extend(second);
    packets.extend([s.p_frame(4), s.keyframe(5), s.p_frame(6)].concat());
    let frames = run(&mut d, packets);
    assert_eq!(keyframes(&frames), [true, false, true, false]);
    assert_eq!(&frames[2].data[..], avcc(&[&idr(5, 3000)]));
    let c = d.counters();
    assert_eq!(c.packets_lost, 1);
    assert_eq!(
        c.frames_dropped, 2,
        "the damaged frame and the one after it"
    );
}

#[test]
fn a_lost_fragment_drops_the_keyframe_and_its_gop() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut key = s.keyframe(1);
    key.remove(2); // the middle FU-A of three
    let packets = [key, s.p_frame(2), s.keyframe(3)].concat();
    let frames = run(&mut d, packets);
    assert_eq!(keyframes(&frames), [true]);
    assert_eq!(&frames[0].data[..], avcc(&[&idr(3, 3000)]));
    assert_eq!(
        (d.counters().packets_lost, d.counters().frames_dropped),
        (1, 2)
    );
}

#[test]
fn a_fragment_without_its_start_is_refused_even_without_a_gap() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut frames = run(&mut d, s.keyframe(1));
    // The sender itself left out the start (sequence numbers follow on).
    let mut payloads = fu_a(&slice(2, 3000), 1400);
    payloads.remove(0);
    let mut events = Vec::new();
    let mut errors = 0;
    for p in s.au(payloads) {
        errors += usize::from(d.push(p, &mut events).is_err());
    }
    assert_eq!(errors, 1, "refused; the rest of its access unit is skipped");
    frames.extend(self::frames(events));
    frames.extend(run(&mut d, [s.p_frame(3), s.keyframe(4)].concat()));
    assert_eq!(keyframes(&frames), [true, true]);
    let c = d.counters();
    assert_eq!(
        (c.packets_lost, c.packets_refused, c.frames_dropped),
        (0, 1, 2)
    );
}

#[test]
fn interleaved_packet_types_are_refused_and_counted() {
    let mut s = Sender::new();
    let mut d = h264();
    run(&mut d, s.keyframe(1));
    for t in [25u8, 26, 27, 29] {
        let mut events = Vec::new();
        let p = s.au(vec![vec![0x60 | t, 0, 0, 0]]).remove(0);
        match d.push(p, &mut events) {
            Err(Error::RtpUnsupported(what)) => assert!(what.contains("interleaved"), "{what}"),
            other => panic!("type {t}: {other:?}"),
        }
        assert!(events.is_empty());
    }
    assert_eq!(d.counters().packets_refused, 4);
    let frames = run(&mut d, [s.p_frame(2), s.keyframe(3)].concat());
    assert_eq!(keyframes(&frames), [true]);
}

#[test]
fn malformed_aggregates_are_refused_without_panics() {
    let mut s = Sender::new();
    let mut d = h264();
    run(&mut d, s.keyframe(1));
    let bad: [&[u8]; 6] = [
        &[],
        &[0x78],
        &[0x78, 0, 9, 0x41],
        &[0x78, 0, 0],
        &[0x78, 0, 1, 0x41, 0],
        &[0x7c],
    ];
    for payload in bad {
        let p = s.au(vec![payload.to_vec()]).remove(0);
        assert!(
            matches!(d.push(p, &mut Vec::new()), Err(Error::RtpPayload { .. })),
            "{payload:?} accepted"
        );
    }
}

// ------------------------------------------------------------------ reorder, duplicates, wraps

/// Three GOPs of a keyframe and four P-frames.
fn three_gops(s: &mut Sender) -> Vec<Packet> {
    let mut packets = Vec::new();
    for g in 0..3u8 {
        packets.extend(s.keyframe(10 * g));
        for f in 1..5 {
            packets.extend(s.p_frame(10 * g + f));
        }
    }
    packets
}

fn same_frames(a: &[Frame], b: &[Frame]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert_eq!(
            (x.pts_ms, x.dts_ms, x.keyframe, &x.data),
            (y.pts_ms, y.dts_ms, y.keyframe, &y.data)
        );
    }
}

#[test]
fn reordered_and_duplicated_packets_give_the_frames_sent() {
    let mut s = Sender::new();
    let packets = three_gops(&mut s);
    let expected = run(&mut h264(), packets.clone());
    assert_eq!(expected.len(), 15);

    // Swap neighbours, move some packets a few places later, send some twice.
    let mut shuffled = packets.clone();
    // (Not the first: what comes before the first packet is taken as late.)
    for i in (1..shuffled.len() - 1).step_by(3) {
        shuffled.swap(i, i + 1);
    }
    for i in (5..shuffled.len() - 6).step_by(7) {
        let p = shuffled.remove(i);
        shuffled.insert(i + 5, p);
    }
    let mut with_duplicates = Vec::new();
    for (i, p) in shuffled.into_iter().enumerate() {
        if i % 4 == 0 {
            with_duplicates.push(p.clone());
        }
        with_duplicates.push(p);
    }
    let mut d = h264();
    let got = run(&mut d, with_duplicates);
    same_frames(&got, &expected);
    let c = d.counters();
    assert_eq!((c.packets_lost, c.frames_dropped), (0, 0));
    assert_eq!(c.packets_discarded, (packets.len() as u64).div_ceil(4));
}

#[test]
fn a_gap_is_given_up_once_the_window_is_full_and_a_late_packet_is_discarded() {
    let mut s = Sender::new();
    let mut packets = s.keyframe(1);
    for f in 0..50 {
        packets.extend(s.p_frame(f));
    }
    packets.extend([s.keyframe(2), s.p_frame(99)].concat());
    let late = packets.remove(10); // the 7th P-frame
    let mut d = h264();
    let mut events = Vec::new();
    let mut rest = packets.into_iter();
    for p in rest.by_ref().take(10 + REORDER_PACKETS) {
        d.push(p, &mut events).unwrap();
    }
    assert_eq!(d.counters().packets_lost, 0, "still waiting");
    d.push(rest.next().unwrap(), &mut events).unwrap();
    assert_eq!(d.counters().packets_lost, 1, "gap given up");
    d.push(late, &mut events).unwrap();
    assert_eq!(d.counters().packets_discarded, 1, "too late");
    for p in rest {
        d.push(p, &mut events).unwrap();
    }
    let frames = frames(events);
    // The keyframe and the six P-frames before the loss, then nothing up to the next keyframe.
    let mut expected = vec![true];
    expected.extend([false; 6]);
    expected.extend([true, false]);
    assert_eq!(keyframes(&frames), expected);
    assert_eq!(d.counters().frames_dropped, 50 - 7);
}

#[test]
fn flush_gives_up_waiting() {
    let mut s = Sender::new();
    let mut packets = [s.keyframe(1), s.p_frame(2), s.p_frame(3)].concat();
    packets.remove(packets.len() - 2); // the second P-frame is lost
    let mut d = h264();
    let mut events = Vec::new();
    for p in packets {
        d.push(p, &mut events).unwrap();
    }
    assert_eq!(
        frames(std::mem::take(&mut events)).len(),
        1,
        "P-frame 3 held"
    );
    assert!(d.waiting());
    d.flush(&mut events).unwrap();
    assert!(events.is_empty(), "P-frame 3 follows a loss: dropped");
    assert!(!d.waiting());
    assert_eq!(
        (d.counters().packets_lost, d.counters().frames_dropped),
        (1, 1)
    );
}

#[test]
fn sequence_numbers_and_timestamps_wrap() {
    let mut s = Sender::new();
    s.seq = u16::MAX - 10;
    s.ts = u32::MAX - 3 * FRAME + 1;
    let packets = three_gops(&mut s);
    let mut d = h264();
    let frames = run(&mut d, packets);
    assert_eq!(frames.len(), 15);
    assert_eq!(d.counters().packets_lost, 0);
    let pts: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
    assert_eq!(pts, (0..15).map(|i| i * 40).collect::<Vec<_>>());
}

#[test]
fn b_frames_keep_their_pts_and_dts_never_decreases() {
    // Decode order I0 P3 B1 B2 P6 B4 B5, as an encoder with two B-frames sends.
    let mut s = Sender::new();
    let base = s.ts;
    let mut packets = s.keyframe(1);
    for (i, n) in [3u32, 1, 2, 6, 4, 5].into_iter().enumerate() {
        s.ts = base.wrapping_add(n * FRAME);
        packets.extend(s.p_frame(i as u8));
    }
    let frames = run(&mut h264(), packets);
    let pts: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
    let dts: Vec<i64> = frames.iter().map(|f| f.dts_ms).collect();
    assert_eq!(pts, [0, 120, 40, 80, 240, 160, 200]);
    assert_eq!(dts, [0, 120, 120, 120, 240, 240, 240]);
}

#[test]
fn a_restarted_sequence_is_followed_and_another_ssrc_is_ignored() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut frames = run(&mut d, [s.keyframe(1), s.p_frame(2)].concat());
    let mut stray = Sender::new();
    stray.ssrc = 99;
    frames.extend(run(&mut d, stray.keyframe(9)));
    assert_eq!(d.counters().packets_discarded, 4);
    // The sender restarts its numbering and its clock: the access unit there may have lost
    // its start, so pictures resume at the keyframe after.
    s.seq = s.seq.wrapping_add(30_000);
    s.ts = s.ts.wrapping_add(1 << 31);
    frames.extend(run(
        &mut d,
        [s.keyframe(3), s.p_frame(4), s.keyframe(5)].concat(),
    ));
    assert_eq!(keyframes(&frames), [true, false, true]);
    let pts: Vec<i64> = frames.iter().map(|f| f.pts_ms).collect();
    assert_eq!(pts, [0, 40, 120], "timestamps go on from the restart");
    assert_eq!(d.counters().packets_discarded, 4);
}

// ------------------------------------------------------------------ sprop, limits, setup

#[test]
fn sprop_gives_the_config_and_in_band_sets_win() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    let fmtp = format!(
        "96 packetization-mode=1; sprop-parameter-sets={},{}; profile-level-id=64001F",
        b64(SPS),
        b64(PPS)
    );
    let mut s = Sender::new();
    let mut d = Depacketizer::new(Codec::H264, &fmtp).unwrap();
    let mut events = Vec::new();
    for p in s.au(vec![idr(1, 50)]) {
        d.push(p, &mut events).unwrap();
    }
    assert!(matches!(&events[0], Event::Config(VideoConfig::Avc(c)) if &c.sps[0][..] == SPS));
    assert!(matches!(&events[1], Event::Frame(f) if f.keyframe));
    // A new SPS in-band (another level) replaces the SDP's.
    let sps2 = [0x67, 0x64, 0x00, 0x28, 0xac, 0xd9];
    events.clear();
    for p in s.au(vec![stap_a(&[&sps2, PPS]), idr(2, 50)]) {
        d.push(p, &mut events).unwrap();
    }
    assert!(matches!(&events[0], Event::Config(VideoConfig::Avc(c)) if c.sps[0][..] == sps2));
    // The same sets again: no new Config.
    events.clear();
    for p in s.au(vec![stap_a(&[&sps2, PPS]), idr(3, 50)]) {
        d.push(p, &mut events).unwrap();
    }
    assert!(matches!(&events[..], [Event::Frame(_)]));
}

#[test]
fn broken_sprop_is_ignored_and_in_band_sets_do() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::STANDARD.encode(b);
    for sprop in [
        "%%%not base64%%%,@@".to_string(),
        b64(&idr(1, 10)) + "," + &b64(&[0x80 | 0x67, 1, 2, 3]),
        b64(&[0x67, 0x64]) + ",",             // truncated SPS, no PPS
        b64(&[0x67, 0x64]) + "," + &b64(PPS), // a pair that makes no config
        ",,".to_string(),
        b64(&vec![0x67; MAX_PARAMETER_SET_BYTES + 1]),
    ] {
        let mut d = Depacketizer::new(Codec::H264, &format!("sprop-parameter-sets={sprop}"))
            .unwrap_or_else(|e| panic!("{sprop}: {e}"));
        let mut s = Sender::new();
        // Before in-band sets nothing can be handed out...
        assert!(run(&mut d, s.au(vec![idr(1, 50)])).is_empty(), "{sprop}");
        // ... after them everything.
        let frames = run(&mut d, [s.keyframe(2), s.p_frame(3)].concat());
        assert_eq!(keyframes(&frames), [true, false], "{sprop}");
        assert!(matches!(d.config(), Some(VideoConfig::Avc(c)) if &c.sps[0][..] == SPS));
    }
}

#[test]
fn unsupported_setups_are_refused() {
    for (codec, fmtp) in [
        (Codec::H264, "packetization-mode=2"),
        (Codec::H265, "sprop-max-don-diff=2"),
        (Codec::H265, "sprop-depack-buf-nalus=1"),
        (Codec::Vp8, ""),
    ] {
        assert!(
            matches!(
                Depacketizer::new(codec, fmtp),
                Err(Error::RtpUnsupported(_))
            ),
            "{fmtp}"
        );
    }
    assert!(Depacketizer::new(Codec::H264, "packetization-mode=0").is_ok());
    assert!(Depacketizer::new(Codec::H265, "sprop-max-don-diff=0").is_ok());
}

#[test]
fn an_access_unit_past_the_byte_limit_is_dropped_and_counted() {
    let mut s = Sender::new();
    let mut d = h264();
    d.set_max_access_unit_bytes(2000);
    let mut events = Vec::new();
    let mut errors = Vec::new();
    for p in [s.keyframe(1), s.p_frame(2)].concat() {
        if let Err(e) = d.push(p, &mut events) {
            errors.push(e);
        }
    }
    assert!(
        frames(events).is_empty(),
        "P-frame after a dropped keyframe"
    );
    assert!(
        matches!(errors[0], Error::TooLarge { limit: 2000, .. }),
        "{errors:?}"
    );
    let c = d.counters();
    assert_eq!((c.frames_oversized, c.frames_dropped), (1, 2));
}

#[test]
fn an_access_unit_of_too_many_nal_units_is_dropped_and_counted() {
    let mut s = Sender::new();
    let mut d = h264();
    let mut payloads = vec![stap_a(&[SPS, PPS])];
    payloads.extend((0..MAX_NALS_PER_ACCESS_UNIT).map(|_| SEI.to_vec()));
    payloads.push(idr(1, 100));
    let mut frames = run(&mut d, s.au(payloads));
    assert!(frames.is_empty());
    assert_eq!(d.counters().frames_oversized, 1);
    frames.extend(run(&mut d, s.keyframe(2)));
    assert_eq!(keyframes(&frames), [true]);
}

// ------------------------------------------------------------------ H.265

const VPS5: &[u8] = &[0x40, 0x01, 0x0c, 0x01, 0xff];
const SPS5: &[u8] = &[0x42, 0x01, 0x01, 0x01, 0x60];
const PPS5: &[u8] = &[0x44, 0x01, 0xc1, 0x72];

fn nal5(t: u8, fill: u8, len: usize) -> Vec<u8> {
    let mut n = vec![t << 1, 0x01];
    n.resize(len, fill);
    n
}

fn ap(nals: &[&[u8]]) -> Vec<u8> {
    let mut p = vec![48 << 1, 0x01];
    for n in nals {
        p.extend_from_slice(&(n.len() as u16).to_be_bytes());
        p.extend_from_slice(n);
    }
    p
}

fn fu5(nal: &[u8], size: usize) -> Vec<Vec<u8>> {
    let t = (nal[0] >> 1) & 0x3f;
    let pieces: Vec<&[u8]> = nal[2..].chunks(size).collect();
    let last = pieces.len() - 1;
    pieces
        .iter()
        .enumerate()
        .map(|(i, piece)| {
            let mut fu = t;
            if i == 0 {
                fu |= 0x80;
            }
            if i == last {
                fu |= 0x40;
            }
            let mut p = vec![(nal[0] & 0x81) | (49 << 1), nal[1], fu];
            p.extend_from_slice(piece);
            p
        })
        .collect()
}

#[test]
fn h265_ap_and_fu_make_config_and_frames() {
    let mut s = Sender::new();
    let mut d = Depacketizer::new(Codec::H265, "").unwrap();
    let idr = nal5(19, 1, 4000); // IDR_W_RADL
    let cra = nal5(21, 3, 3000); // CRA: an IRAP too
    let trail = nal5(1, 2, 300);
    let sei = nal5(39, 4, 20);
    let aud = nal5(35, 0, 3);
    let mut payloads = vec![aud.clone(), ap(&[VPS5, SPS5, PPS5, &sei])];
    payloads.extend(fu5(&idr, 1400));
    let mut packets = s.au(payloads);
    packets.extend(s.au(vec![trail.clone()]));
    packets.extend(s.au(fu5(&cra, 1000)));
    let mut events = Vec::new();
    for p in packets {
        d.push(p, &mut events).unwrap();
    }
    let Event::Config(VideoConfig::Hevc(c)) = &events[0] else {
        panic!("{:?}", events[0]);
    };
    assert_eq!(
        (&c.vps[0][..], &c.sps[0][..], &c.pps[0][..]),
        (VPS5, SPS5, PPS5)
    );
    let frames = frames(events);
    assert_eq!(keyframes(&frames), [true, false, true]);
    assert_eq!(&frames[0].data[..], avcc(&[&sei, &idr]));
    assert_eq!(&frames[1].data[..], avcc(&[&trail]));
    assert_eq!(&frames[2].data[..], avcc(&[&cra]));
}

#[test]
fn h265_loss_and_bad_payloads() {
    let mut s = Sender::new();
    let mut d = Depacketizer::new(Codec::H265, "").unwrap();
    let key = |s: &mut Sender, fill| {
        let mut payloads = vec![ap(&[VPS5, SPS5, PPS5])];
        payloads.extend(fu5(&nal5(19, fill, 4000), 1400));
        s.au(payloads)
    };
    let mut packets = key(&mut s, 1);
    let mut p = s.au(fu5(&nal5(1, 2, 3000), 1000));
    p.remove(1);
    packets.extend(p);
    packets.extend(s.au(vec![nal5(1, 3, 100)]));
    packets.extend(key(&mut s, 4));
    let frames = run(&mut d, packets);
    assert_eq!(keyframes(&frames), [true, true]);
    assert_eq!(
        (d.counters().packets_lost, d.counters().frames_dropped),
        (1, 2)
    );
    for payload in [
        vec![0x02],
        vec![50 << 1, 1, 0, 0],
        vec![49 << 1, 1],
        vec![48 << 1, 1, 0, 1, 2],
        vec![48 << 1, 1, 0, 5, 2, 1],
        vec![0x80, 1, 0],
    ] {
        let p = s.au(vec![payload.clone()]).remove(0);
        assert!(d.push(p, &mut Vec::new()).is_err(), "{payload:?} accepted");
    }
}
