use super::*;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;

const KIND: FileKind = FileKind {
    magic: *b"WFTEST\0\n",
    format: 3,
};

/// A payload whose every byte identifies its writer, so a mix of two writes is detectable.
fn payload(writer: u8, len: usize) -> Vec<u8> {
    (0..len).map(|i| writer ^ (i as u8 & 0x0f)).collect()
}

/// Panics unless `bytes` is one whole payload written by [`payload`].
fn assert_whole(bytes: &[u8], len: usize) {
    assert_eq!(bytes.len(), len, "a read returned a partial payload");
    let writer = bytes[0];
    assert!(bytes == payload(writer, len).as_slice(), "mixed payload");
}

#[test]
fn round_trip_and_missing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("sub").join("entry.bin");
    assert!(matches!(read_checked(&path, KIND), Read::Missing));
    write_checked(&path, KIND, b"hello").unwrap();
    match read_checked(&path, KIND) {
        Read::Valid(p) => assert_eq!(p, b"hello"),
        other => panic!("expected the payload, got {other:?}"),
    }
    let names: Vec<_> = std::fs::read_dir(path.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, ["entry.bin"], "no temporary file left");
}

#[test]
fn every_truncation_and_every_bit_flip_is_detected() {
    let good = encode(KIND, &payload(7, 40));
    for len in 0..good.len() {
        assert!(decode(KIND, &good[..len]).is_err(), "prefix of {len} bytes");
    }
    for at in 0..good.len() {
        let mut bad = good.clone();
        bad[at] ^= 0x01;
        assert!(decode(KIND, &bad).is_err(), "flip at byte {at}");
    }
    let mut longer = good.clone();
    longer.push(0);
    assert!(decode(KIND, &longer).unwrap_err().contains("header says"));
    let other = FileKind { format: 4, ..KIND };
    assert!(decode(other, &good)
        .unwrap_err()
        .contains("format 3, expected 4"));
    assert_eq!(decode(KIND, &good).unwrap(), payload(7, 40).as_slice());
}

#[test]
fn corrupt_file_reads_as_corrupt_with_a_reason() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("e");
    write_checked(&path, KIND, &payload(1, 100)).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
    match read_checked(&path, KIND) {
        Read::Corrupt(reason) => assert!(reason.contains("header says"), "{reason}"),
        other => panic!("expected Corrupt, got {other:?}"),
    }
}

const LEN: usize = 256 * 1024;

/// Several threads rewrite one path while others read it: every read is missing (before
/// the first write) or one writer's whole payload, never a torn file.
#[test]
fn concurrent_writers_never_leave_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = Arc::new(dir.path().join("shared.bin"));
    let done = Arc::new(AtomicBool::new(false));
    let readers: Vec<_> = (0..2)
        .map(|_| {
            let (path, done) = (Arc::clone(&path), Arc::clone(&done));
            std::thread::spawn(move || {
                let mut seen = 0;
                while !done.load(Ordering::Relaxed) {
                    match read_checked(&path, KIND) {
                        Read::Missing => {}
                        Read::Valid(p) => {
                            assert_whole(&p, LEN);
                            seen += 1;
                        }
                        other => panic!("a reader saw {other:?}"),
                    }
                }
                seen
            })
        })
        .collect();
    let writers: Vec<_> = (0..6u8)
        .map(|w| {
            let path = Arc::clone(&path);
            std::thread::spawn(move || {
                for _ in 0..15 {
                    write_checked(&path, KIND, &payload(w * 16, LEN)).unwrap();
                }
            })
        })
        .collect();
    for w in writers {
        w.join().unwrap();
    }
    done.store(true, Ordering::Relaxed);
    let seen: usize = readers.into_iter().map(|r| r.join().unwrap()).sum();
    match read_checked(&path, KIND) {
        Read::Valid(p) => assert_whole(&p, LEN),
        other => panic!("final read: {other:?}"),
    }
    eprintln!("{seen} whole reads during the writes");
}

/// Environment variable through which the process test hands a child its path and id.
const CHILD_ENV: &str = "WARPFORGE_CACHE_FILE_CHILD";

/// Writes the shared path `rounds` times as writer `id`, validating a read after each.
fn write_and_check(path: &Path, id: u8, rounds: usize) {
    for _ in 0..rounds {
        write_checked(path, KIND, &payload(id, LEN)).unwrap();
        match read_checked(path, KIND) {
            Read::Valid(p) => assert_whole(&p, LEN),
            other => panic!("writer {id} read back {other:?}"),
        }
    }
}

/// In a child process (see the next test): writes the path its parent gave. Run directly,
/// it does the same on a path of its own.
#[test]
fn child_process_writer() {
    match std::env::var(CHILD_ENV) {
        Ok(spec) => {
            let (id, path) = spec.split_once(':').expect("id:path");
            write_and_check(Path::new(path), id.parse().unwrap(), 20);
        }
        Err(_) => {
            let dir = tempfile::tempdir().unwrap();
            write_and_check(&dir.path().join("own.bin"), 9, 3);
        }
    }
}

/// Several processes (this test binary re-run on [`child_process_writer`]) write one path
/// at once, as two programs sharing a cache directory do.
#[test]
fn concurrent_processes_never_leave_a_torn_file() {
    let dir = tempfile::tempdir().unwrap();
    let path: PathBuf = dir.path().join("shared.bin");
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (1..=4u8)
        .map(|id| {
            std::process::Command::new(&exe)
                .args(["--exact", "cache_file::tests::child_process_writer"])
                .env(CHILD_ENV, format!("{}:{}", id * 16, path.display()))
                .stdout(std::process::Stdio::null())
                .spawn()
                .unwrap()
        })
        .collect();
    // The parent reads while the children write.
    let mut reads = 0;
    while reads < 200 {
        if let Read::Valid(p) = read_checked(&path, KIND) {
            assert_whole(&p, LEN);
        }
        reads += 1;
    }
    for mut child in children {
        assert!(child.wait().unwrap().success(), "a child writer failed");
    }
    match read_checked(&path, KIND) {
        Read::Valid(p) => assert_whole(&p, LEN),
        other => panic!("final read: {other:?}"),
    }
    let leftovers: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers, ["shared.bin"], "no temporary files left");
}
