//! Puts one track's RTP packets back in sequence-number order (UDP reorders and duplicates;
//! TCP does neither, and then every packet goes straight through).
//!
//! A packet ahead of the one expected is held until the gap before it fills or
//! [`REORDER_PACKETS`] packets wait; then the gap is given up as lost. The window is counted in
//! packets because a sans-IO core has no clock: at 2 Mbit/s 32 packets are about 0.2 s of
//! video (much less inside a keyframe's burst). The I/O loop bounds the wait in time: after
//! [`REORDER_WAIT`] it gives up with [`Reorder::flush`].

use std::collections::VecDeque;
use std::time::Duration;

use super::Packet;

/// Most packets held while waiting for a missing one.
pub const REORDER_PACKETS: usize = 32;
/// How long an I/O loop lets packets wait for a missing one before it flushes: UDP reordering
/// on real paths spans a few milliseconds; a packet later than this is as good as lost.
pub const REORDER_WAIT: Duration = Duration::from_millis(50);
/// A packet at most this far behind the expected one is a duplicate or came too late; one
/// further off (either way, [`MAX_DROPOUT`] ahead) may be a sender that restarted its numbering
/// (RFC 3550 A.1 uses the same two bounds).
const MAX_MISORDER: u16 = 100;
/// A packet at least this far ahead is not a gap but a jump (see [`MAX_MISORDER`]).
const MAX_DROPOUT: u16 = 3000;

/// What came before a packet handed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Gap {
    /// Nothing missing: the packet follows the last one handed on.
    None,
    /// This many packets are missing before it.
    Lost(u16),
    /// The sender restarted its sequence numbers: an unknown number of packets is missing.
    Restart,
}

/// See the module documentation.
#[derive(Debug, Default)]
pub(super) struct Reorder {
    /// Sequence number of the packet expected next; `None` before the first.
    next: Option<u16>,
    /// Packets ahead of `next`, in sequence order.
    held: VecDeque<Packet>,
    /// A packet far off the expected sequence; if the next one follows it, the numbering restarted.
    probation: Option<Packet>,
    /// Packets dropped: duplicates, too late, far off and not followed by the next one.
    pub discarded: u64,
}

impl Reorder {
    /// Takes a packet and appends whatever is now in order to `out`.
    pub fn push(&mut self, packet: Packet, out: &mut Vec<(Packet, Gap)>) {
        let Some(next) = self.next else {
            return self.hand_on(packet, Gap::None, out);
        };
        let ahead = packet.sequence.wrapping_sub(next);
        let behind = next.wrapping_sub(packet.sequence);
        if ahead == 0 {
            self.hand_on(packet, Gap::None, out);
            return self.release(out);
        }
        if behind <= MAX_MISORDER {
            self.discarded += 1;
            return;
        }
        if ahead >= MAX_DROPOUT {
            return self.probe(packet, out);
        }
        let place = self
            .held
            .binary_search_by_key(&ahead, |p| p.sequence.wrapping_sub(next));
        let Err(place) = place else {
            self.discarded += 1; // a duplicate of a held packet
            return;
        };
        self.held.insert(place, packet);
        while self.held.len() > REORDER_PACKETS {
            self.give_up_one(out);
            self.release(out);
        }
    }

    /// True while packets wait for a missing one.
    pub fn waiting(&self) -> bool {
        !self.held.is_empty()
    }

    /// Gives up on every gap: all held packets are handed on, in order, with their gaps.
    pub fn flush(&mut self, out: &mut Vec<(Packet, Gap)>) {
        while !self.held.is_empty() {
            self.give_up_one(out);
        }
    }

    /// A packet far off the expected number: kept on probation; if the next one follows it,
    /// the sender restarted its numbering and both are handed on.
    fn probe(&mut self, packet: Packet, out: &mut Vec<(Packet, Gap)>) {
        match self.probation.take() {
            Some(first) if first.sequence.wrapping_add(1) == packet.sequence => {
                self.flush(out);
                self.hand_on(first, Gap::Restart, out);
                self.hand_on(packet, Gap::None, out);
            }
            other => {
                self.discarded += u64::from(other.is_some());
                self.probation = Some(packet);
            }
        }
    }

    /// Hands on the first held packet, counting what is missing before it.
    fn give_up_one(&mut self, out: &mut Vec<(Packet, Gap)>) {
        if let (Some(next), Some(first)) = (self.next, self.held.pop_front()) {
            let lost = first.sequence.wrapping_sub(next);
            let gap = if lost == 0 {
                Gap::None
            } else {
                Gap::Lost(lost)
            };
            self.hand_on(first, gap, out);
        }
    }

    /// Hands on the held packets that now follow without a gap.
    fn release(&mut self, out: &mut Vec<(Packet, Gap)>) {
        while self.held.front().map(|p| p.sequence) == self.next {
            if let Some(p) = self.held.pop_front() {
                self.hand_on(p, Gap::None, out);
            }
        }
    }

    fn hand_on(&mut self, packet: Packet, gap: Gap, out: &mut Vec<(Packet, Gap)>) {
        self.next = Some(packet.sequence.wrapping_add(1));
        if self.probation.take().is_some() {
            self.discarded += 1;
        }
        out.push((packet, gap));
    }
}
