//! One counted token's record and the pure transitions every backend applies to it. No I/O,
//! no clock: `now` is a field of each request, so the rules are tested without a store.
//!
//! A record counts final uses, remembers which clients made them ([`Holder`]s, so their
//! `Range` requests continue a use instead of starting one) and holds upload reservations
//! that become uses only when settled. A reservation whose lease ran out no longer counts,
//! so an upload that never reports back gives its slot back instead of losing it.

use serde::{Deserialize, Serialize};

/// Clients remembered per token; the oldest is forgotten first. Past this many distinct
/// clients a `Range` request from a forgotten one counts as a new use.
pub const MAX_HOLDERS: usize = 16;

/// A client that made a use: a keyed hash of its address and user agent (the edge computes
/// it; the store only compares).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Holder(pub [u8; 16]);

/// An upload reservation: its id and the unix second its lease ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pending {
    /// Random reservation id, handed to nginx and back.
    pub id: [u8; 16],
    /// The reservation stops counting at this unix second.
    pub lease_until: u64,
}

/// The stored state of one counted token.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UseRecord {
    /// Final uses so far.
    pub count: u32,
    /// Unix second after which the record may be dropped: the token's expiry, or a later
    /// lease end.
    pub keep_until: u64,
    /// Clients that made a use, oldest first, at most [`MAX_HOLDERS`].
    pub holders: Vec<Holder>,
    /// Open upload reservations (leases may have run out; see [`UseRecord::live_pending`]).
    pub pending: Vec<Pending>,
}

impl UseRecord {
    /// Reservations whose lease has not run out at `now`.
    pub fn live_pending(&self, now: u64) -> usize {
        self.pending.iter().filter(|p| p.lease_until > now).count()
    }

    /// Uses that count against the limit at `now`: final ones and live reservations.
    pub fn taken(&self, now: u64) -> u64 {
        u64::from(self.count) + self.live_pending(now) as u64
    }

    fn remember(&mut self, holder: Holder) {
        self.holders.retain(|known| *known != holder);
        if self.holders.len() == MAX_HOLDERS {
            self.holders.remove(0);
        }
        self.holders.push(holder);
    }

    fn forget_lapsed(&mut self, now: u64) {
        self.pending.retain(|p| p.lease_until > now);
    }
}

/// What kind of request wants to use a counted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UseKind {
    /// A request for a new copy (no `Range`, or `Range` from a client that made no use yet).
    New,
    /// A `Range` request: free for a client that already made a use, else a new use.
    Continue,
    /// `HEAD`: allowed when a use would be (or the client holds one); never counts.
    Peek,
}

/// A request to use a counted token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Consume {
    /// The token's use limit (at least 1).
    pub limit: u32,
    /// The token's expiry (unix seconds): the record is kept until then.
    pub expires: u64,
    /// The requesting client.
    pub holder: Holder,
    /// What the request is.
    pub kind: UseKind,
    /// Unix seconds.
    pub now: u64,
}

/// The answer to a [`Consume`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Consumed {
    /// A new use was counted; this is its number (1 for the first).
    Counted(u32),
    /// The client continued its earlier use; nothing was counted.
    Continued,
    /// A `HEAD` that a use would be allowed for; nothing was counted.
    Peeked,
    /// The limit is reached.
    UsedUp,
}

impl Consumed {
    /// True when the request may proceed.
    pub fn allowed(self) -> bool {
        !matches!(self, Consumed::UsedUp)
    }
}

/// Applies `request` to `record` (`None`: never used). Returns the record to write back, or
/// `None` when nothing changed (so a backend writes only for counted uses).
pub fn consume(record: Option<&UseRecord>, request: &Consume) -> (Option<UseRecord>, Consumed) {
    let empty = UseRecord::default();
    let current = record.unwrap_or(&empty);
    let holds = current.holders.contains(&request.holder);
    let room = current.taken(request.now) < u64::from(request.limit);
    match request.kind {
        UseKind::Peek => (
            None,
            if holds || room {
                Consumed::Peeked
            } else {
                Consumed::UsedUp
            },
        ),
        UseKind::Continue if holds => (None, Consumed::Continued),
        UseKind::New | UseKind::Continue if !room => (None, Consumed::UsedUp),
        UseKind::New | UseKind::Continue => {
            let mut next = current.clone();
            next.forget_lapsed(request.now);
            next.count += 1;
            next.keep_until = next.keep_until.max(request.expires);
            next.remember(request.holder);
            let number = next.count;
            (Some(next), Consumed::Counted(number))
        }
    }
}

/// A request to reserve one use of an upload slot until `lease_until`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reserve {
    /// The token's use limit (at least 1).
    pub limit: u32,
    /// The token's expiry (unix seconds).
    pub expires: u64,
    /// Random id naming this reservation.
    pub reservation: [u8; 16],
    /// When the reservation stops counting unless settled.
    pub lease_until: u64,
    /// Unix seconds.
    pub now: u64,
}

/// The answer to a [`Reserve`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Reserved {
    /// The reservation holds a use until it is settled or its lease runs out.
    Granted,
    /// Every use is final or reserved.
    Full,
}

/// Applies `request` to `record`; returns the record to write back (`None`: unchanged).
pub fn reserve(record: Option<&UseRecord>, request: &Reserve) -> (Option<UseRecord>, Reserved) {
    let mut next = record.cloned().unwrap_or_default();
    next.forget_lapsed(request.now);
    if next.taken(request.now) >= u64::from(request.limit) {
        return (None, Reserved::Full);
    }
    next.pending.push(Pending {
        id: request.reservation,
        lease_until: request.lease_until,
    });
    next.keep_until = next
        .keep_until
        .max(request.expires)
        .max(request.lease_until);
    (Some(next), Reserved::Granted)
}

/// The answer to a settle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Settled {
    /// The reservation became a final use.
    Committed,
    /// The reservation was given back; the use is free again.
    Released,
    /// No live reservation has this id (its lease ran out, or it was settled already). A
    /// commit is still counted, since the upload did happen; a release changes nothing.
    Unknown,
}

/// Settles reservation `id`: a final use when `committed`, else given back.
pub fn settle(
    record: Option<&UseRecord>,
    id: [u8; 16],
    committed: bool,
    now: u64,
) -> (Option<UseRecord>, Settled) {
    let Some(current) = record else {
        return (None, Settled::Unknown);
    };
    let mut next = current.clone();
    let found = next
        .pending
        .iter()
        .position(|p| p.id == id && p.lease_until > now);
    next.forget_lapsed(now);
    next.pending.retain(|p| p.id != id);
    match (found, committed) {
        (Some(_), true) => {
            next.count = next.count.saturating_add(1);
            (Some(next), Settled::Committed)
        }
        (Some(_), false) => (Some(next), Settled::Released),
        (None, true) => {
            next.count = next.count.saturating_add(1);
            (Some(next), Settled::Unknown)
        }
        (None, false) => (None, Settled::Unknown),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: Holder = Holder([1; 16]);
    const B: Holder = Holder([2; 16]);

    fn use_of(limit: u32, holder: Holder, kind: UseKind, now: u64) -> Consume {
        Consume {
            limit,
            expires: 1_000,
            holder,
            kind,
            now,
        }
    }

    /// Runs requests in order against one record, returning each answer.
    fn run(requests: &[Consume]) -> Vec<Consumed> {
        let mut record = None;
        requests
            .iter()
            .map(|request| {
                let (next, answer) = consume(record.as_ref(), request);
                if next.is_some() {
                    record = next;
                }
                answer
            })
            .collect()
    }

    #[test]
    fn a_single_use_token_counts_once_then_is_used_up() {
        let new = use_of(1, A, UseKind::New, 10);
        assert_eq!(
            run(&[new, new, new]),
            [Consumed::Counted(1), Consumed::UsedUp, Consumed::UsedUp]
        );
    }

    #[test]
    fn range_requests_from_the_holder_continue_its_use_and_others_pay() {
        let answers = run(&[
            use_of(1, A, UseKind::Continue, 10),
            use_of(1, A, UseKind::Continue, 11),
            use_of(1, A, UseKind::Peek, 12),
            use_of(1, B, UseKind::Continue, 13),
            use_of(1, B, UseKind::Peek, 14),
            use_of(1, A, UseKind::New, 15),
        ]);
        assert_eq!(
            answers,
            [
                Consumed::Counted(1),
                Consumed::Continued,
                Consumed::Peeked,
                Consumed::UsedUp,
                Consumed::UsedUp,
                Consumed::UsedUp,
            ]
        );
    }

    #[test]
    fn peeking_never_counts() {
        let peek = use_of(1, A, UseKind::Peek, 10);
        assert_eq!(run(&[peek, peek]), [Consumed::Peeked, Consumed::Peeked]);
        assert_eq!(consume(None, &peek).0, None, "a peek writes nothing");
    }

    #[test]
    fn holders_are_bounded_and_the_oldest_is_forgotten() {
        let mut record = UseRecord::default();
        for n in 0..=MAX_HOLDERS as u8 {
            let request = use_of(100, Holder([n; 16]), UseKind::New, 10);
            record = consume(Some(&record), &request).0.expect("counted");
        }
        assert_eq!(record.holders.len(), MAX_HOLDERS);
        assert!(!record.holders.contains(&Holder([0; 16])));
        let forgotten = use_of(100, Holder([0; 16]), UseKind::Continue, 11);
        assert_eq!(consume(Some(&record), &forgotten).1, Consumed::Counted(18));
    }

    fn reservation(id: u8, lease_until: u64, now: u64) -> Reserve {
        Reserve {
            limit: 1,
            expires: 1_000,
            reservation: [id; 16],
            lease_until,
            now,
        }
    }

    #[test]
    fn a_reserved_slot_is_full_until_settled_and_a_release_gives_it_back() {
        let (record, answer) = reserve(None, &reservation(1, 100, 10));
        assert_eq!(answer, Reserved::Granted);
        let record = record.expect("written");
        assert_eq!(
            reserve(Some(&record), &reservation(2, 100, 11)).1,
            Reserved::Full
        );
        let (record, settled) = settle(Some(&record), [1; 16], false, 12);
        assert_eq!(settled, Settled::Released);
        let record = record.expect("written");
        assert_eq!(record.count, 0);
        assert_eq!(
            reserve(Some(&record), &reservation(2, 100, 13)).1,
            Reserved::Granted
        );
    }

    #[test]
    fn a_committed_reservation_is_a_final_use() {
        let record = reserve(None, &reservation(1, 100, 10)).0.expect("written");
        let (record, settled) = settle(Some(&record), [1; 16], true, 20);
        assert_eq!(settled, Settled::Committed);
        let record = record.expect("written");
        assert_eq!((record.count, record.pending.len()), (1, 0));
        assert_eq!(
            reserve(Some(&record), &reservation(2, 200, 21)).1,
            Reserved::Full
        );
        assert_eq!(settle(Some(&record), [1; 16], true, 22).1, Settled::Unknown);
    }

    #[test]
    fn a_lapsed_lease_frees_the_slot_and_a_late_commit_still_counts() {
        let record = reserve(None, &reservation(1, 100, 10)).0.expect("written");
        let (record, answer) = reserve(Some(&record), &reservation(2, 300, 100));
        assert_eq!(answer, Reserved::Granted, "the first lease ended at 100");
        let record = record.expect("written");
        let (record, settled) = settle(Some(&record), [1; 16], true, 150);
        assert_eq!(settled, Settled::Unknown);
        assert_eq!(record.expect("written").count, 1);
    }

    #[test]
    fn downloads_and_reservations_share_the_limit() {
        let request = use_of(2, A, UseKind::New, 10);
        let record = consume(None, &request).0.expect("counted");
        let mut second = reservation(1, 100, 11);
        second.limit = 2;
        let record = reserve(Some(&record), &second).0.expect("reserved");
        assert_eq!(
            consume(Some(&record), &use_of(2, B, UseKind::New, 12)).1,
            Consumed::UsedUp
        );
    }
}
