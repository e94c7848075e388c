//! File identity by content: a hash of the first `fingerprint_bytes` bytes.
//!
//! Paths change on rotation and inode numbers are reused after deletion, but
//! a log file's first bytes (its first line has a timestamp) stay the same
//! for its whole life, under any name, and survive being copied
//! (copytruncate) or compressed: for gzip files the hash is taken over the
//! decompressed bytes. A file shorter than `fingerprint_bytes` has no
//! identity yet and waits until it does.
//!
//! The hash is 64-bit FNV-1a, fixed here because checkpoints store it.

use std::fs::File;
use std::io::{self, Read, Seek};
use std::os::unix::fs::FileExt;
use std::path::Path;

use flate2::read::MultiGzDecoder;

pub type Fingerprint = u64;

/// FNV-1a, 64 bits.
pub fn hash(bytes: &[u8]) -> Fingerprint {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

/// What looking at a file's first bytes found.
#[derive(Debug, PartialEq, Eq)]
pub enum Probe {
    Ready {
        fingerprint: Fingerprint,
        compressed: bool,
    },
    /// Fewer than `fingerprint_bytes` bytes so far (this many).
    TooShort { len: usize, compressed: bool },
}

/// Whether the file starts with the gzip magic bytes.
pub fn is_gzip(file: &File) -> io::Result<bool> {
    let mut magic = [0u8; 2];
    let n = read_at_full(file, &mut magic, 0)?;
    Ok(n == 2 && magic == [0x1f, 0x8b])
}

fn read_at_full(file: &File, buf: &mut [u8], offset: u64) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match file.read_at(&mut buf[got..], offset + got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

/// Fingerprints an open file. A plain file's read position does not move;
/// a gzip file's is left at its start.
pub fn probe_file(file: &File, n: usize) -> io::Result<Probe> {
    if is_gzip(file)? {
        let mut dec = MultiGzDecoder::new(file.try_clone()?);
        let mut buf = vec![0; n];
        let mut got = 0;
        // A gzip file still being written can end early: that is "too short".
        while got < n {
            match dec.read(&mut buf[got..]) {
                Ok(0) => break,
                Ok(k) => got += k,
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        // The clone shares the read position: put it back at the start.
        let mut f = file;
        f.seek(io::SeekFrom::Start(0))?;
        return Ok(finish(&buf[..got], n, true));
    }
    let mut buf = vec![0; n];
    let got = read_at_full(file, &mut buf, 0)?;
    Ok(finish(&buf[..got], n, false))
}

/// Like [`probe_file`] for a file known to be plain: positional reads only,
/// so the file's read position stays where it is.
pub fn probe_plain(file: &File, n: usize) -> io::Result<Probe> {
    let mut buf = vec![0; n];
    let got = read_at_full(file, &mut buf, 0)?;
    Ok(finish(&buf[..got], n, false))
}

fn finish(bytes: &[u8], n: usize, compressed: bool) -> Probe {
    if bytes.len() < n {
        Probe::TooShort {
            len: bytes.len(),
            compressed,
        }
    } else {
        Probe::Ready {
            fingerprint: hash(bytes),
            compressed,
        }
    }
}

pub fn probe_path(path: &Path, n: usize) -> io::Result<Probe> {
    probe_file(&File::open(path)?, n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[test]
    fn same_content_same_fingerprint_under_any_name_or_compression() {
        let dir = tempfile::tempdir().unwrap();
        let body = "x".repeat(300);
        std::fs::write(dir.path().join("a.log"), &body).unwrap();
        std::fs::write(dir.path().join("copy.log"), format!("{body}more")).unwrap();
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(body.as_bytes()).unwrap();
        std::fs::write(dir.path().join("a.log.1.gz"), gz.finish().unwrap()).unwrap();
        let p = |n: &str| probe_path(&dir.path().join(n), 256).unwrap();
        let Probe::Ready {
            fingerprint,
            compressed: false,
        } = p("a.log")
        else {
            panic!()
        };
        assert_eq!(
            p("copy.log"),
            Probe::Ready {
                fingerprint,
                compressed: false
            }
        );
        assert_eq!(
            p("a.log.1.gz"),
            Probe::Ready {
                fingerprint,
                compressed: true
            }
        );
    }

    #[test]
    fn short_files_wait() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("s.log"), "tiny\n").unwrap();
        assert_eq!(
            probe_path(&dir.path().join("s.log"), 256).unwrap(),
            Probe::TooShort {
                len: 5,
                compressed: false
            }
        );
    }

    #[test]
    fn fnv_reference_values() {
        assert_eq!(hash(b""), 0xcbf29ce484222325);
        assert_eq!(hash(b"a"), 0xaf63dc4c8601ec8c);
    }
}
