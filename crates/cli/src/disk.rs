//! Room on the disk holding the home directory: `doctor` reports it, `serve` watches it.
//!
//! Once that disk is full the audit log cannot be written, and orders, withdrawals and
//! transfers are refused (`audit_unavailable`); a flood of refused requests writes about a
//! kilobyte each. The watch warns before that happens.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::Context;
use keygate_monitor::{Alert, AlertRule, Alerter, Severity};

/// Free space below which the disk is low (a warning), as is less than a twentieth of it.
const LOW_BYTES: u64 = 1 << 30;
/// Free space below which the disk is nearly full (critical), as is less than a
/// hundredth of it.
const NEARLY_FULL_BYTES: u64 = 100 << 20;
/// How often `serve` looks.
const LOOK_EVERY: Duration = Duration::from_secs(60);
/// How often a low disk is alerted on again while it stays as low.
const REMIND_EVERY: Duration = Duration::from_secs(60 * 60);

/// What a disk has.
#[derive(Clone, Copy, Debug)]
pub struct Room {
    /// Bytes an unprivileged process may still write.
    pub free: u64,
    /// Bytes in all.
    pub total: u64,
}

impl Room {
    /// The room on the disk holding `dir`; `None` where this system cannot tell.
    pub fn of(dir: &Path) -> std::io::Result<Option<Room>> {
        #[cfg(unix)]
        {
            let fs = rustix::fs::statvfs(dir)?;
            Ok(Some(Room {
                free: fs.f_bavail.saturating_mul(fs.f_frsize),
                total: fs.f_blocks.saturating_mul(fs.f_frsize),
            }))
        }
        #[cfg(not(unix))]
        {
            let _ = dir;
            Ok(None)
        }
    }

    /// How worrying the room is: `None` while there is enough.
    pub fn severity(&self) -> Option<Severity> {
        if self.free < NEARLY_FULL_BYTES || self.free.saturating_mul(100) < self.total {
            Some(Severity::Critical)
        } else if self.free < LOW_BYTES || self.free.saturating_mul(20) < self.total {
            Some(Severity::Warning)
        } else {
            None
        }
    }

    /// `1.5 GiB free of 20.0 GiB under DIR`; below a GiB in MiB (`3.2 MiB free of
    /// 12.0 MiB`), which a nearly full small disk would otherwise show as `0.0 GiB`.
    pub fn describe(&self, dir: &Path) -> String {
        format!(
            "{} free of {} under {}",
            size(self.free),
            size(self.total),
            dir.display()
        )
    }
}

/// `bytes` in GiB, or in MiB below one GiB, to a tenth.
fn size(bytes: u64) -> String {
    const GIB: u64 = 1 << 30;
    if bytes >= GIB {
        format!("{:.1} GiB", bytes as f64 / GIB as f64)
    } else {
        format!("{:.1} MiB", bytes as f64 / f64::from(1u32 << 20))
    }
}

/// Looks at the disk holding `dir` every minute for as long as the process runs, in a
/// thread of its own, and raises `disk_low` through `alerter` while it runs low.
pub fn watch(dir: PathBuf, alerter: Alerter) -> anyhow::Result<()> {
    let mut watch = Watch::default();
    let raise = move |alert: Alert| alerter.raise(alert);
    watch.look(&dir, Room::of(&dir), Instant::now(), &raise);
    std::thread::Builder::new()
        .name("keygate-disk".into())
        .spawn(move || loop {
            std::thread::sleep(LOOK_EVERY);
            watch.look(&dir, Room::of(&dir), Instant::now(), &raise);
        })
        .context("starting the disk watch thread")?;
    Ok(())
}

/// What was last said.
#[derive(Default)]
struct Watch {
    /// The last alert: when, and its severity.
    reminded: Option<(Instant, Severity)>,
    /// Whether a failure to look was logged since the last look that worked.
    failure_logged: bool,
}

impl Watch {
    /// Raises an alert while the disk is low: at the first look that finds it so, when
    /// the severity changes, and once an hour while it lasts.
    fn look(
        &mut self,
        dir: &Path,
        room: std::io::Result<Option<Room>>,
        now: Instant,
        raise: &dyn Fn(Alert),
    ) {
        let room = match room {
            Ok(Some(room)) => room,
            Ok(None) => return,
            Err(e) => {
                if !std::mem::replace(&mut self.failure_logged, true) {
                    tracing::warn!(dir = %dir.display(), error = %e, "cannot tell how much room the disk has");
                }
                return;
            }
        };
        self.failure_logged = false;
        let Some(severity) = room.severity() else {
            self.reminded = None;
            return;
        };
        if let Some((at, was)) = self.reminded {
            if was == severity && now.saturating_duration_since(at) < REMIND_EVERY {
                return;
            }
        }
        self.reminded = Some((now, severity));
        raise(Alert::outside_log(
            severity,
            AlertRule::DiskLow,
            format!(
                "{}: once it is full the audit log cannot be written, and orders, \
                 withdrawals and transfers are refused",
                room.describe(dir)
            ),
        ));
    }
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;

    use super::*;

    const GIB: u64 = 1 << 30;

    fn room(free: u64, total: u64) -> std::io::Result<Option<Room>> {
        Ok(Some(Room { free, total }))
    }

    #[test]
    fn low_and_nearly_full_are_told_apart() {
        let severity = |free, total| Room { free, total }.severity();
        assert_eq!(severity(50 * GIB, 100 * GIB), None);
        assert_eq!(severity(4 * GIB, 100 * GIB), Some(Severity::Warning));
        assert_eq!(severity(GIB - 1, 2 * GIB), Some(Severity::Warning));
        assert_eq!(severity(GIB / 2, 100 * GIB), Some(Severity::Critical));
        assert_eq!(severity(99 << 20, 150 << 20), Some(Severity::Critical));
    }

    #[test]
    fn a_low_disk_is_alerted_on_once_per_change() {
        let raised = RefCell::new(Vec::new());
        let raise = |alert: Alert| raised.borrow_mut().push((alert.severity, alert.summary));
        let dir = Path::new("/var/lib/keygate");
        let mut watch = Watch::default();
        let now = Instant::now();
        let mut look = |room| watch.look(dir, room, now, &raise);
        look(room(50 * GIB, 100 * GIB));
        assert!(raised.borrow().is_empty());
        look(room(4 * GIB, 100 * GIB));
        look(room(3 * GIB, 100 * GIB));
        look(room(GIB / 2, 100 * GIB));
        look(room(GIB / 2, 100 * GIB));
        {
            let raised = raised.borrow();
            assert_eq!(raised.len(), 2, "{raised:?}");
            assert_eq!(raised[0].0, Severity::Warning);
            assert!(raised[0]
                .1
                .starts_with("4.0 GiB free of 100.0 GiB under /var/lib/keygate"));
            assert_eq!(raised[1].0, Severity::Critical);
            // Below a GiB, in MiB (found by review: a small disk read "0.0 GiB free of
            // 0.0 GiB").
            assert!(raised[1]
                .1
                .starts_with("512.0 MiB free of 100.0 GiB under /var/lib/keygate"));
        }
        // Room made, then lost again: told again.
        look(room(50 * GIB, 100 * GIB));
        look(Err(std::io::ErrorKind::NotFound.into()));
        look(room(4 * GIB, 100 * GIB));
        assert_eq!(raised.borrow().len(), 3);
        // An hour on, still low: reminded.
        watch.look(dir, room(4 * GIB, 100 * GIB), now + REMIND_EVERY, &raise);
        assert_eq!(raised.borrow().len(), 4);
    }
}
