//! The shadow-word rules and the global table, without a kernel.

use super::table::{WordTable, MAX_WORDS};
use super::*;

const EPOCH: u32 = 7;

fn acc(thread: usize) -> Acc {
    Acc::new(thread, 100 + thread as u32)
}

fn run(w: &mut Word, steps: &[(usize, AccessKind)]) -> Option<(u32, AccessKind)> {
    steps
        .iter()
        .find_map(|&(t, k)| w.access(EPOCH, k, acc(t)))
        .map(|c| (c.earlier.thread(), c.kind))
}

#[test]
fn conflicting_pairs_of_different_threads_race() {
    use AccessKind::*;
    let cases = [
        (vec![(1, Write), (2, Read)], Some((1, Write))),
        (vec![(1, Read), (2, Write)], Some((1, Read))),
        (vec![(1, Write), (2, Write)], Some((1, Write))),
        (vec![(1, Atomic), (2, Read)], Some((1, Atomic))),
        (vec![(1, Write), (2, Atomic)], Some((1, Write))),
        (vec![(1, Read), (2, Atomic)], Some((1, Read))),
        // Not races: reads together, atomics together, one thread alone.
        (vec![(1, Read), (2, Read), (3, Read)], None),
        (vec![(1, Atomic), (2, Atomic), (3, Atomic)], None),
        (vec![(1, Write), (1, Read), (1, Atomic), (1, Write)], None),
    ];
    for (steps, want) in cases {
        let mut w = Word::STALE;
        assert_eq!(run(&mut w, &steps), want, "{steps:?}");
    }
}

#[test]
fn a_writer_after_many_readers_names_another_thread_than_itself() {
    let mut w = Word::STALE;
    for t in 0..40 {
        assert!(w.access(EPOCH, AccessKind::Read, acc(t)).is_none());
    }
    // Thread 0 is one of the two readers recorded; the other one is named.
    let c = w.access(EPOCH, AccessKind::Write, acc(0)).unwrap();
    assert_eq!((c.earlier.thread(), c.earlier.site()), (1, 101));
    let c = w.access(EPOCH, AccessKind::Write, acc(39)).unwrap();
    assert_eq!(c.earlier.thread(), 0);
}

#[test]
fn a_new_epoch_forgets_earlier_accesses() {
    let mut w = Word::STALE;
    assert!(w.access(EPOCH, AccessKind::Write, acc(1)).is_none());
    assert!(w.access(EPOCH + 1, AccessKind::Read, acc(2)).is_none());
    assert!(w.access(EPOCH + 1, AccessKind::Write, acc(3)).is_some());
}

#[test]
fn huge_site_numbers_saturate_without_touching_the_thread() {
    let a = Acc::new(1023, u32::MAX);
    assert_eq!(a.thread(), 1023);
    assert_ne!(a, Acc::NOBODY);
}

#[test]
fn table_keeps_words_within_an_epoch_and_drops_them_after() {
    let mut t = WordTable::default();
    for key in 0..5000u64 {
        let w = t.word(key * 977, 1).unwrap();
        assert!(w
            .access(1, AccessKind::Write, acc(key as usize % 1000))
            .is_none());
    }
    // Growth kept every word: a second writer races on each.
    for key in 0..5000u64 {
        let w = t.word(key * 977, 1).unwrap();
        let c = w.access(1, AccessKind::Write, acc(1001)).unwrap();
        assert_eq!(c.earlier.thread(), (key % 1000) as u32);
    }
    let w = t.word(977, 2).unwrap();
    assert!(w.access(2, AccessKind::Write, acc(1001)).is_none());
}

#[test]
fn table_stops_tracking_at_its_limit() {
    let mut t = WordTable::default();
    for key in 0..MAX_WORDS as u64 {
        assert!(t.word(key, 1).is_some());
    }
    assert!(t.word(u64::MAX, 1).is_none());
    // Words already tracked are still found.
    assert!(t.word(5, 1).is_some());
}

/// Race reports box their details so that `Result<_, InterpError>` stays cheap to return.
#[test]
fn interp_errors_stay_small() {
    assert!(std::mem::size_of::<crate::interp::InterpError>() <= 128);
}
