//! Thin wrappers over the few libc calls the load tools need.

use std::io;

use serde::Serialize;

/// CPU time used, from `getrusage`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct CpuTime {
    /// User seconds.
    pub user: f64,
    /// System seconds.
    pub system: f64,
}

impl CpuTime {
    /// User plus system seconds.
    pub fn total(&self) -> f64 {
        self.user + self.system
    }

    /// `self - earlier`, field by field.
    pub fn since(&self, earlier: &CpuTime) -> CpuTime {
        CpuTime {
            user: self.user - earlier.user,
            system: self.system - earlier.system,
        }
    }
}

fn tv_secs(tv: libc::timeval) -> f64 {
    tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6
}

fn rusage(who: libc::c_int) -> io::Result<CpuTime> {
    // SAFETY: getrusage writes a plain struct; zeroed is a valid initial value.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: `ru` is a valid, writable rusage.
    if unsafe { libc::getrusage(who, &mut ru) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(CpuTime {
        user: tv_secs(ru.ru_utime),
        system: tv_secs(ru.ru_stime),
    })
}

/// CPU time of this whole process (all threads).
pub fn process_cpu() -> io::Result<CpuTime> {
    rusage(libc::RUSAGE_SELF)
}

/// CPU time of the calling thread.
pub fn thread_cpu() -> io::Result<CpuTime> {
    rusage(libc::RUSAGE_THREAD)
}

/// Raise the soft `RLIMIT_NOFILE` to at least `want` (up to the hard limit; as root, raise the
/// hard limit too). Returns the soft limit now in force.
pub fn raise_nofile(want: u64) -> io::Result<u64> {
    // SAFETY: getrlimit writes a plain struct.
    let mut lim: libc::rlimit = unsafe { std::mem::zeroed() };
    // SAFETY: `lim` is a valid, writable rlimit.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(io::Error::last_os_error());
    }
    if lim.rlim_cur >= want {
        return Ok(lim.rlim_cur);
    }
    let mut new = lim;
    new.rlim_cur = want;
    if new.rlim_max < want {
        new.rlim_max = want;
    }
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } == 0 {
        return Ok(want);
    }
    // Not allowed to raise the hard limit: take what it allows.
    new.rlim_max = lim.rlim_max;
    new.rlim_cur = lim.rlim_max.min(want);
    // SAFETY: `new` is a valid rlimit.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &new) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(new.rlim_cur)
}

/// Pin the calling thread (and the threads it spawns later) to the CPUs in `cpus`.
pub fn pin_to_cpus(cpus: &[usize]) -> io::Result<()> {
    // SAFETY: cpu_set_t is a plain bit set; zeroed is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    for &c in cpus {
        // SAFETY: CPU_SET bounds-checks against the set size.
        unsafe { libc::CPU_SET(c, &mut set) };
    }
    // SAFETY: `set` is a valid cpu_set_t of the size passed; 0 means the calling thread.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Set a socket buffer (`SO_RCVBUF` or `SO_SNDBUF`) to `bytes`, using the root-only
/// `*BUFFORCE` variant first so `net.core.rmem_max` does not cap it.
pub fn set_socket_buffer(fd: libc::c_int, receive: bool, bytes: usize) -> io::Result<()> {
    let (force, plain) = if receive {
        (libc::SO_RCVBUFFORCE, libc::SO_RCVBUF)
    } else {
        (libc::SO_SNDBUFFORCE, libc::SO_SNDBUF)
    };
    let val = libc::c_int::try_from(bytes).unwrap_or(libc::c_int::MAX);
    let len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    for opt in [force, plain] {
        // SAFETY: `val` outlives the call and `len` is its size.
        let rc = unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&val as *const libc::c_int).cast(),
                len,
            )
        };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(io::Error::last_os_error())
}
