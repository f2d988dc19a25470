//! Process plumbing for the load bench: CPU pinning, the open-file limit,
//! and reading another process's CPU time and resident memory.

use std::time::Duration;

/// Pins the calling thread (and every thread it starts later) to `core`.
/// Returns false where the machine has no such core or the call fails.
pub fn pin_to_core(core: usize) -> bool {
    if core >= online_cores() {
        return false;
    }
    // SAFETY: `set` is a plain bitmask owned by this frame; CPU_ZERO/CPU_SET
    // only write inside it, and sched_setaffinity reads `size_of` bytes.
    unsafe {
        let mut set: libc::cpu_set_t = std::mem::zeroed();
        libc::CPU_ZERO(&mut set);
        libc::CPU_SET(core, &mut set);
        libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) == 0
    }
}

/// Cores online, whatever this thread's affinity (which children inherit).
pub fn online_cores() -> usize {
    // SAFETY: sysconf has no memory effects.
    let n = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    usize::try_from(n).unwrap_or(1).max(1)
}

/// Asks the kernel to kill this process when its parent dies, so that an
/// interrupted bench leaves no server behind.
pub fn die_with_parent() {
    // SAFETY: prctl(PR_SET_PDEATHSIG) takes a signal number, no pointers.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
    }
}

/// The open-file limit every bench process asks for: enough for the scale
/// mode's connections; [`raise_nofile`] stops at the hard limit where the
/// process may not raise it (no CAP_SYS_RESOURCE).
pub const NOFILE_WANTED: u64 = 1 << 20;

/// Raises RLIMIT_NOFILE as far as allowed (the hard limit too, as root)
/// and returns the new soft limit.
pub fn raise_nofile(want: u64) -> u64 {
    // SAFETY: getrlimit/setrlimit read and write the local struct only.
    unsafe {
        let mut lim: libc::rlimit = std::mem::zeroed();
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) != 0 {
            return 0;
        }
        if lim.rlim_cur >= want {
            return lim.rlim_cur;
        }
        let raised = libc::rlimit {
            rlim_cur: want,
            rlim_max: lim.rlim_max.max(want),
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) == 0 {
            return want;
        }
        let soft = libc::rlimit {
            rlim_cur: lim.rlim_max,
            rlim_max: lim.rlim_max,
        };
        if libc::setrlimit(libc::RLIMIT_NOFILE, &soft) == 0 {
            lim.rlim_max
        } else {
            lim.rlim_cur
        }
    }
}

/// CPU time (user + system, all threads) used so far by process `pid`.
///
/// Reads the kernel's per-process CPU clock (nanosecond resolution) and
/// falls back to utime + stime from `/proc/<pid>/stat` (clock ticks).
pub fn cpu_time(pid: u32) -> Duration {
    // SAFETY: both calls only write the local out-parameters.
    unsafe {
        let mut clock: libc::clockid_t = 0;
        if libc::clock_getcpuclockid(pid as libc::pid_t, &mut clock) == 0 {
            let mut ts: libc::timespec = std::mem::zeroed();
            if libc::clock_gettime(clock, &mut ts) == 0 {
                return Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32);
            }
        }
    }
    stat_cpu_time(pid)
}

/// utime + stime of `/proc/<pid>/stat`.
pub fn stat_cpu_time(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    // Fields after the command name, which is in parentheses and may hold spaces.
    let rest = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15; `rest` starts at field 3.
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let total = ticks(11) + ticks(12);
    Duration::from_nanos(total * 1_000_000_000 / hz)
}

/// CPU time of this process.
pub fn own_cpu_time() -> Duration {
    cpu_time(std::process::id())
}

/// The cores `pid` may run on, as the kernel lists them ("1", "0-1").
pub fn cpus_allowed(pid: u32) -> String {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
                .map(|v| v.trim().to_owned())
        })
        .unwrap_or_default()
}

/// Resident set size of `pid` in KiB (VmRSS of `/proc/<pid>/status`).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse().ok())
        })
        .unwrap_or(0)
}

/// Busy and stolen time of every core so far, from `/proc/stat`: what
/// ran on the cores besides the bench shows as busy time the server and
/// client did not use; `steal` is time the hypervisor gave to others.
#[derive(Clone, Copy, Debug, Default)]
pub struct CoreTimes {
    pub busy: Duration,
    pub steal: Duration,
}

pub fn core_times() -> CoreTimes {
    // SAFETY: sysconf has no memory effects.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = |t: u64| Duration::from_nanos(t * 1_000_000_000 / hz);
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let mut total = CoreTimes::default();
    for line in stat
        .lines()
        .filter(|l| l.starts_with("cpu") && !l.starts_with("cpu "))
    {
        let f: Vec<u64> = line
            .split_whitespace()
            .skip(1)
            .map(|v| v.parse().unwrap_or(0))
            .collect();
        // user nice system idle iowait irq softirq steal
        let get = |i: usize| f.get(i).copied().unwrap_or(0);
        total.busy += ticks(get(0) + get(1) + get(2) + get(5) + get(6));
        total.steal += ticks(get(7));
    }
    total
}
