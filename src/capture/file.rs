//! Where a capture goes on disk: one new file per run named by its start time, or a file the
//! user named.

// Unsafe is allowed here, and only here: localtime_r(3) for the file name's local time, into a
// zeroed libc::tm we own (std has no local time), and fallocate(2) on a file we hold open (std
// has no preallocation).
#![allow(unsafe_code)]

use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use anyhow::Context;

use super::CaptureFormat;

/// A name that never collides: `-2`, `-3`… are tried after the plain one. Beyond this many
/// runs in one second something is wrong, and an error says so.
const MAX_SUFFIX: u32 = 1000;

/// Creates `dir` if missing and a new file in it named by `started`, e.g.
/// `tunlab-20261122-184501.pcap`; an existing file is never overwritten.
pub fn create_in_dir(
    dir: &Path,
    started: SystemTime,
    format: CaptureFormat,
) -> anyhow::Result<(PathBuf, File)> {
    let hint = "choose another directory with --capture-dir, or run with --no-capture";
    fs::create_dir_all(dir).with_context(|| {
        format!(
            "cannot create the capture directory '{}' ({hint})",
            dir.display()
        )
    })?;
    let stem = format!("tunlab-{}", local_timestamp(started));
    for n in 1..=MAX_SUFFIX {
        let name = match n {
            1 => format!("{stem}.{}", format.extension()),
            n => format!("{stem}-{n}.{}", format.extension()),
        };
        let path = dir.join(name);
        // create_new, so that two labs started in the same second cannot share a file.
        match OpenOptions::new().write(true).create_new(true).open(&path) {
            Ok(file) => return Ok((path, file)),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(e).with_context(|| {
                    format!(
                        "cannot write a capture file in '{}' ({hint})",
                        dir.display()
                    )
                });
            }
        }
    }
    anyhow::bail!(
        "'{}' already holds {MAX_SUFFIX} captures named {stem}…; clean it up or {hint}",
        dir.display()
    )
}

/// Creates (or truncates) the file the user named.
pub fn create_named(path: &Path) -> anyhow::Result<File> {
    File::create(path).with_context(|| format!("cannot create capture file '{}'", path.display()))
}

/// Allocates `len` bytes of `file` on disk from `offset` without changing its size
/// (`FALLOC_FL_KEEP_SIZE`): later writes there find their blocks allocated.
#[cfg(target_os = "linux")]
pub fn preallocate(file: &File, offset: u64, len: u64) -> io::Result<()> {
    fallocate(file, libc::FALLOC_FL_KEEP_SIZE, offset, len)
}

/// Frees what [`preallocate`] allocated past `end` (the end of what was written), the
/// file's size and bytes unchanged: a truncation to its own size, which ext4 and XFS take
/// as the moment to drop blocks allocated past the end (punching a hole there does nothing
/// on ext4, which only punches below the size).
pub fn release_preallocated(file: &File, end: u64) -> io::Result<()> {
    file.set_len(end)
}

#[cfg(target_os = "linux")]
fn fallocate(file: &File, mode: libc::c_int, offset: u64, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (libc::off_t::try_from(offset), libc::off_t::try_from(len)) else {
        return Err(io::ErrorKind::InvalidInput.into());
    };
    // SAFETY: fallocate only acts on the descriptor it is given, which `file` owns and keeps
    // open for the call; it touches no memory of ours.
    match unsafe { libc::fallocate(file.as_raw_fd(), mode, offset, len) } {
        0 => Ok(()),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Elsewhere the file grows as it is written.
#[cfg(not(target_os = "linux"))]
pub fn preallocate(_file: &File, _offset: u64, _len: u64) -> io::Result<()> {
    Err(io::ErrorKind::Unsupported.into())
}

/// `20261122-184501` in local time (what a person expects to find in `ls`), UTC where the
/// local time zone is unavailable.
pub fn local_timestamp(time: SystemTime) -> String {
    let secs = time
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let tm = broken_down(secs as i64);
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        tm.year, tm.month, tm.day, tm.hour, tm.minute, tm.second
    )
}

struct BrokenDown {
    year: i64,
    month: u32,
    day: u32,
    hour: u32,
    minute: u32,
    second: u32,
}

#[cfg(unix)]
fn broken_down(secs: i64) -> BrokenDown {
    let t = secs as libc::time_t;
    // SAFETY: localtime_r only reads `t` and writes the `tm` we own; a null return means it
    // could not convert, and `tm` is then not used.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    let converted = unsafe { !libc::localtime_r(&raw const t, &raw mut tm).is_null() };
    if !converted {
        return utc(secs);
    }
    BrokenDown {
        year: i64::from(tm.tm_year) + 1900,
        month: (tm.tm_mon + 1) as u32,
        day: tm.tm_mday as u32,
        hour: tm.tm_hour as u32,
        minute: tm.tm_min as u32,
        second: tm.tm_sec as u32,
    }
}

#[cfg(not(unix))]
fn broken_down(secs: i64) -> BrokenDown {
    utc(secs)
}

/// Civil date from days since the epoch (Howard Hinnant's algorithm).
fn utc(secs: i64) -> BrokenDown {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    BrokenDown {
        year,
        month,
        day,
        hour: (rem / 3600) as u32,
        minute: (rem % 3600 / 60) as u32,
        second: (rem % 60) as u32,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn utc_dates_match_known_instants() {
        let at = |secs| {
            let t = utc(secs);
            format!(
                "{:04}{:02}{:02}-{:02}{:02}{:02}",
                t.year, t.month, t.day, t.hour, t.minute, t.second
            )
        };
        assert_eq!(at(0), "19700101-000000");
        // 2026-11-22T18:45:01Z
        assert_eq!(at(1_795_373_101), "20261122-184501");
        // A leap day.
        assert_eq!(at(951_782_400), "20000229-000000");
    }

    #[test]
    fn a_second_run_in_the_same_second_gets_a_suffix() {
        let dir = tempfile::tempdir().unwrap();
        let t = SystemTime::UNIX_EPOCH + Duration::from_secs(1_795_373_101);
        let (first, _) = create_in_dir(dir.path(), t, CaptureFormat::Pcap).unwrap();
        let (second, _) = create_in_dir(dir.path(), t, CaptureFormat::Pcap).unwrap();
        let stem = format!("tunlab-{}", local_timestamp(t));
        assert_eq!(first.file_name().unwrap(), &*format!("{stem}.pcap"));
        assert_eq!(second.file_name().unwrap(), &*format!("{stem}-2.pcap"));
    }

    #[test]
    fn a_missing_directory_is_created() {
        let dir = tempfile::tempdir().unwrap();
        let nested = dir.path().join("a/b");
        let (path, _) = create_in_dir(&nested, SystemTime::now(), CaptureFormat::Pcapng).unwrap();
        assert!(path.starts_with(&nested));
        assert_eq!(path.extension().unwrap(), "pcapng");
    }

    #[test]
    fn an_unwritable_directory_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        // A regular file where the directory should be: fails even when running as root.
        let blocker = dir.path().join("not-a-dir");
        std::fs::write(&blocker, b"").unwrap();
        let error = create_in_dir(&blocker.join("sub"), SystemTime::now(), CaptureFormat::Pcap)
            .unwrap_err();
        let text = format!("{error:#}");
        assert!(
            text.contains("cannot create the capture directory"),
            "{text}"
        );
        assert!(text.contains("--no-capture"), "{text}");
    }
}
