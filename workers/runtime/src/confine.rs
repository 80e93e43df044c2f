//! Confinement: before any provider code runs, a worker limits itself to what it needs.
//!
//! On Linux, two layers, both inherited by every thread and child started afterwards:
//!
//! * **Landlock** (best effort across kernel ABIs; the ABI obtained is reported): the
//!   filesystem shrinks to the worker's own socket directory, the folders the supervisor
//!   names in [`Policy`] (its state folder, read-write; anything else read-only), and the
//!   read-only system paths in [`SYSTEM_READ_ONLY`] (shared libraries, CA certificates,
//!   time zones, name resolution, `/dev/urandom`, its own binary and `/proc/self`). Nothing
//!   of the supervisor's state directory is reachable: not its database, not the
//!   device-token key, not another worker's folder. From ABI 6 it also cannot signal a
//!   process outside itself (the supervisor, another worker) or reach an abstract Unix
//!   socket made outside it.
//! * **seccomp** (`no_new_privs` set): an allow-list of system calls ([`syscalls`]); any
//!   other kills the process with `SIGSYS`, which the supervisor reports as such and
//!   restarts like any crash. A worker that may spawn a helper (`spawn`) also gets the
//!   process calls and the helper's paths with execute rights, and only such a worker may
//!   `execve` at all.
//!
//! What the worker got goes to the log once and, as one line on stdout
//! ([`switchboard_proto::CONFINEMENT_LINE`]), to the supervisor, which shows it in
//! `workers list` and `health`: `landlock: abi 7, seccomp: on`, or why not. A kernel
//! without Landlock or seccomp means running unconfined, said as loudly; never silently.
//! Elsewhere than Linux nothing is confined and the report says so.

use std::path::PathBuf;

/// What the supervisor allows this worker, passed as JSON in
/// [`switchboard_proto::env::CONFINEMENT`]. Absent: nothing beyond the defaults.
#[derive(Debug, Clone, Default, serde::Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(default, rename_all = "camelCase")]
pub struct Policy {
    /// Folders (or files) the worker may read and write: its state folder.
    pub read_write: Vec<PathBuf>,
    /// Folders (or files) it may only read.
    pub read_only: Vec<PathBuf>,
    /// Programs (or folders of programs) it may execute, with read access; only with
    /// `spawn`.
    pub exec: Vec<PathBuf>,
    /// Whether it may start child processes (a helper such as signal-cli or imsg).
    pub spawn: bool,
    /// The operator turned confinement off for this worker.
    pub off: bool,
}

/// Read-only for every worker: what a Rust program with rustls, DNS and time zones
/// touches after `exec`. Missing paths are skipped.
pub const SYSTEM_READ_ONLY: &[&str] = &[
    // Shared libraries and the dynamic loader's cache (NSS modules are loaded late).
    "/lib",
    "/lib32",
    "/lib64",
    "/usr/lib",
    "/usr/lib32",
    "/usr/lib64",
    "/usr/local/lib",
    "/etc/ld.so.cache",
    // CA certificates (for libraries that read the system store).
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/pki",
    "/usr/share/ca-certificates",
    // Time zones.
    "/etc/localtime",
    "/etc/timezone",
    "/usr/share/zoneinfo",
    // Name resolution.
    "/etc/resolv.conf",
    "/etc/hosts",
    "/etc/host.conf",
    "/etc/nsswitch.conf",
    "/etc/gai.conf",
    "/etc/services",
    "/etc/protocols",
    // Randomness; CPU count.
    "/dev/urandom",
    "/dev/random",
    "/sys/devices/system/cpu",
];

/// Read-write for every worker.
const SYSTEM_READ_WRITE: &[&str] = &["/dev/null"];

/// Read-only in addition for a worker that spawns a helper: the programs and scripts a
/// helper is made of (a shell script, a JVM, ssh) and the user database a JVM or ssh
/// reads for the home directory.
const SPAWN_READ_ONLY: &[&str] = &["/usr", "/bin", "/sbin", "/etc/passwd", "/etc/group"];

/// How this worker is confined, in the words `workers list` shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Report {
    /// `abi N`, or why not.
    pub landlock: String,
    /// `on`, or why not.
    pub seccomp: String,
    /// Whether both layers are in force.
    pub confined: bool,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "landlock: {}, seccomp: {}", self.landlock, self.seccomp)
    }
}

/// Reads the policy from the environment (malformed: the defaults, with a warning; the
/// policy only ever adds rights, so a broken one can only confine more).
pub fn policy_from_env() -> Policy {
    match std::env::var(switchboard_proto::env::CONFINEMENT) {
        Ok(s) if !s.trim().is_empty() => serde_json::from_str(&s).unwrap_or_else(|e| {
            tracing::warn!("confinement policy is not valid JSON ({e}); using the defaults");
            Policy::default()
        }),
        _ => Policy::default(),
    }
}

/// Confines the calling process (call it while it has one thread). `socket` is the
/// worker's socket path: its directory gets the rights to create and replace it.
pub fn confine(policy: &Policy, socket: &std::path::Path) -> Report {
    if policy.off {
        return Report {
            landlock: "off (turned off in the supervisor's config)".into(),
            seccomp: "off (turned off in the supervisor's config)".into(),
            confined: false,
        };
    }
    imp::confine(policy, socket)
}

#[cfg(not(target_os = "linux"))]
mod imp {
    use super::*;

    pub fn confine(_: &Policy, _: &std::path::Path) -> Report {
        Report {
            landlock: "unavailable (not Linux)".into(),
            seccomp: "unavailable (not Linux)".into(),
            confined: false,
        }
    }
}

#[cfg(target_os = "linux")]
mod imp {
    use std::path::{Path, PathBuf};

    use landlock::{
        ABI, Access, AccessFs, BitFlags, CompatLevel, Compatible, LandlockStatus, PathBeneath,
        PathFd, Ruleset, RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
    };

    use super::*;

    /// The newest ABI whose rights we ask for; older kernels get what they support.
    const TARGET_ABI: ABI = ABI::V7;

    pub fn confine(policy: &Policy, socket: &Path) -> Report {
        let landlock = match landlock(policy, socket) {
            Ok(s) => s,
            Err(e) => format!("failed ({e})"),
        };
        let seccomp = match super::syscalls::apply(policy.spawn) {
            Ok(()) => "on".to_owned(),
            Err(e) => format!("unavailable ({e})"),
        };
        Report {
            confined: landlock.starts_with("abi ") && seccomp == "on",
            landlock,
            seccomp,
        }
    }

    fn landlock(policy: &Policy, socket: &Path) -> Result<String, landlock::RulesetError> {
        let all = AccessFs::from_all(TARGET_ABI);
        let read = AccessFs::from_read(TARGET_ABI) & !AccessFs::Execute;
        let read_exec = AccessFs::from_read(TARGET_ABI);
        let mut rules: Vec<(PathBuf, BitFlags<AccessFs>)> = Vec::new();
        for p in SYSTEM_READ_ONLY {
            rules.push((p.into(), read));
        }
        for p in SYSTEM_READ_WRITE {
            rules.push((p.into(), read | AccessFs::WriteFile));
        }
        // Its own binary, and its own /proc entry (not other processes': their environ
        // may hold secrets). `/proc/self` resolves to this process's directory.
        if let Ok(exe) = std::fs::read_link("/proc/self/exe") {
            rules.push((exe, read));
        }
        rules.push(("/proc/self".into(), read));
        // Its socket: create, replace, nothing else in that directory.
        if let Some(dir) = socket.parent() {
            rules.push((dir.into(), AccessFs::MakeSock | AccessFs::RemoveFile));
        }
        for p in &policy.read_only {
            rules.push((p.clone(), read));
        }
        for p in &policy.read_write {
            // A state folder that does not exist yet is made now (0700): once confined,
            // the worker could not create it.
            if !p.exists() {
                use std::os::unix::fs::DirBuilderExt;
                let _ = std::fs::DirBuilder::new()
                    .recursive(true)
                    .mode(0o700)
                    .create(p);
            }
            rules.push((p.clone(), all & !AccessFs::Execute));
        }
        if policy.spawn {
            for p in SPAWN_READ_ONLY {
                rules.push((p.into(), read_exec));
            }
            for p in &policy.exec {
                rules.push((p.clone(), read_exec));
            }
        }
        let mut created = Ruleset::default()
            .set_compatibility(CompatLevel::BestEffort)
            .handle_access(all)?
            // ABI 6+: no signals to processes outside the worker (the supervisor, other
            // workers) and no abstract Unix sockets made outside it.
            .scope(Scope::from_all(TARGET_ABI))?
            .create()?;
        for (path, access) in rules {
            // Missing paths are skipped; a file gets only the rights a file can have.
            let Ok(fd) = PathFd::new(&path) else { continue };
            let access = if path.is_dir() {
                access
            } else {
                access & AccessFs::from_file(TARGET_ABI)
            };
            if access.is_empty() {
                continue;
            }
            created = created.add_rule(PathBeneath::new(fd, access))?;
        }
        let status = created.restrict_self()?;
        Ok(match (status.ruleset, status.landlock) {
            (RulesetStatus::NotEnforced, LandlockStatus::NotEnabled) => {
                "unavailable (not enabled in this kernel)".into()
            }
            (RulesetStatus::NotEnforced, LandlockStatus::NotImplemented) => {
                "unavailable (not built into this kernel)".into()
            }
            (RulesetStatus::NotEnforced, _) => "unavailable (not enforced)".into(),
            (
                _,
                LandlockStatus::Available {
                    kernel_abi,
                    effective_abi,
                },
            ) => match kernel_abi {
                Some(k) => format!("abi {k}"),
                None => format!("abi {}", effective_abi as i32),
            },
            (_, _) => "unavailable".into(),
        })
    }
}

/// The seccomp allow-list, in one place.
pub mod syscalls {
    #[cfg(target_os = "linux")]
    use std::collections::BTreeMap;

    /// What every worker does: memory, threads and futexes (tokio), epoll and sockets
    /// (tokio, hyper, tonic), files (its state folder), time, randomness (ring,
    /// getrandom), signals (tokio's signal handling, Rust's stack guard), and the few
    /// process calls the runtime makes itself (`getppid` for the parent watch, `prctl`,
    /// `exit_group`).
    #[cfg(target_os = "linux")]
    pub const BASE: &[libc::c_long] = &[
        // Memory.
        libc::SYS_brk,
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_membarrier,
        // Threads, futexes, scheduling.
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_get_robust_list,
        libc::SYS_set_tid_address,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_gettid,
        libc::SYS_getpid,
        libc::SYS_getppid,
        libc::SYS_exit,
        libc::SYS_exit_group,
        libc::SYS_prctl,
        libc::SYS_getrlimit,
        libc::SYS_prlimit64,
        libc::SYS_getrusage,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_uname,
        // Signals (tokio's handlers, the stack guard, `tgkill` for panics and abort).
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_tgkill,
        // Event loop.
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_epoll_pwait2,
        libc::SYS_eventfd2,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_pipe2,
        // Descriptors and files.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_pwrite64,
        libc::SYS_close,
        libc::SYS_openat,
        libc::SYS_newfstatat,
        libc::SYS_fstat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_dup,
        libc::SYS_dup3,
        libc::SYS_fsync,
        libc::SYS_fdatasync,
        libc::SYS_ftruncate,
        libc::SYS_fallocate,
        libc::SYS_flock,
        libc::SYS_getdents64,
        libc::SYS_getcwd,
        libc::SYS_readlinkat,
        libc::SYS_faccessat,
        libc::SYS_faccessat2,
        libc::SYS_mkdirat,
        libc::SYS_unlinkat,
        libc::SYS_renameat,
        libc::SYS_renameat2,
        libc::SYS_fchmod,
        libc::SYS_fchmodat,
        libc::SYS_fchown,
        libc::SYS_utimensat,
        libc::SYS_statfs,
        libc::SYS_fstatfs,
        libc::SYS_close_range,
        // Sockets.
        libc::SYS_socket,
        libc::SYS_socketpair,
        libc::SYS_bind,
        libc::SYS_listen,
        libc::SYS_accept,
        libc::SYS_accept4,
        libc::SYS_connect,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_setsockopt,
        libc::SYS_getsockopt,
        libc::SYS_sendto,
        libc::SYS_recvfrom,
        libc::SYS_sendmsg,
        libc::SYS_recvmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
        libc::SYS_shutdown,
        // Time and randomness.
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        libc::SYS_getrandom,
        // x86_64 names of the calls above that glibc still uses there.
        #[cfg(target_arch = "x86_64")]
        libc::SYS_open,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_stat,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_lstat,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_access,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_readlink,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_poll,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_wait,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_arch_prctl,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_time,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_pipe,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_dup2,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_mkdir,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_unlink,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_rename,
        // `set_permissions` on the socket.
        #[cfg(target_arch = "x86_64")]
        libc::SYS_chmod,
    ];

    /// A worker that spawns a helper (signal-cli, imsg, ssh) also starts, waits for and
    /// signals its child, and the child (which inherits this filter) execs and sets up
    /// its own process: a shell script, a JVM or ssh.
    #[cfg(target_os = "linux")]
    pub const SPAWN: &[libc::c_long] = &[
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_wait4,
        libc::SYS_waitid,
        // tokio's child handling.
        libc::SYS_pidfd_open,
        libc::SYS_pidfd_send_signal,
        libc::SYS_kill,
        libc::SYS_setpgid,
        libc::SYS_getpgid,
        libc::SYS_setsid,
        libc::SYS_getsid,
        libc::SYS_chdir,
        libc::SYS_fchdir,
        libc::SYS_umask,
        libc::SYS_sysinfo,
        libc::SYS_getresuid,
        libc::SYS_getresgid,
        libc::SYS_getgroups,
        libc::SYS_sched_getparam,
        libc::SYS_sched_getscheduler,
        libc::SYS_sched_setaffinity,
        libc::SYS_mlock,
        libc::SYS_munlock,
        libc::SYS_msync,
        libc::SYS_mincore,
        libc::SYS_memfd_create,
        libc::SYS_rt_sigtimedwait,
        libc::SYS_rt_sigsuspend,
        libc::SYS_rt_sigqueueinfo,
        libc::SYS_tkill,
        libc::SYS_inotify_init1,
        libc::SYS_inotify_add_watch,
        libc::SYS_inotify_rm_watch,
        libc::SYS_symlinkat,
        libc::SYS_linkat,
        libc::SYS_fadvise64,
        libc::SYS_timerfd_create,
        libc::SYS_timerfd_settime,
        libc::SYS_timer_create,
        libc::SYS_timer_settime,
        libc::SYS_timer_delete,
        libc::SYS_capget,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_fork,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_vfork,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_getpgrp,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_select,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_alarm,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_rmdir,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_symlink,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_getdents,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_inotify_init,
        #[cfg(target_arch = "x86_64")]
        libc::SYS_epoll_create,
    ];

    /// Installs the filter on every thread (`no_new_privs` first): listed calls pass,
    /// any other kills the process (`SIGSYS`).
    #[cfg(target_os = "linux")]
    pub fn apply(spawn: bool) -> Result<(), String> {
        use seccompiler::{BpfProgram, SeccompAction, SeccompFilter, TargetArch};
        let arch = TargetArch::try_from(std::env::consts::ARCH).map_err(|e| e.to_string())?;
        let mut rules: BTreeMap<i64, Vec<seccompiler::SeccompRule>> = BTreeMap::new();
        let extra: &[libc::c_long] = if spawn { SPAWN } else { &[] };
        for nr in BASE.iter().chain(extra) {
            rules.insert(*nr, Vec::new());
        }
        let filter = SeccompFilter::new(
            rules,
            SeccompAction::KillProcess,
            SeccompAction::Allow,
            arch,
        )
        .map_err(|e| e.to_string())?;
        let program: BpfProgram = filter
            .try_into()
            .map_err(|e: seccompiler::BackendError| e.to_string())?;
        seccompiler::apply_filter_all_threads(&program).map_err(|e| match e {
            seccompiler::Error::Seccomp(io) if io.raw_os_error() == Some(libc::EINVAL) => {
                "not supported by this kernel".to_owned()
            }
            other => other.to_string(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_reads_as_the_supervisor_writes_it_and_off_is_reported_as_such() {
        let p: Policy = serde_json::from_str(
            r#"{"readWrite":["/s/wa"],"readOnly":[],"exec":["/usr/bin/ssh"],"spawn":true,"off":false}"#,
        )
        .unwrap();
        assert_eq!(p.read_write, vec![PathBuf::from("/s/wa")]);
        assert!(p.spawn && !p.off);
        let off = confine(
            &Policy {
                off: true,
                ..Policy::default()
            },
            std::path::Path::new("/tmp/x.sock"),
        );
        assert!(!off.confined);
        assert_eq!(
            off.to_string(),
            "landlock: off (turned off in the supervisor's config), seccomp: off (turned off in the supervisor's config)"
        );
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn no_allow_listed_call_is_listed_twice_and_mount_and_ptrace_are_not() {
        let mut all: Vec<_> = syscalls::BASE.iter().chain(syscalls::SPAWN).collect();
        let n = all.len();
        all.sort_unstable();
        all.dedup();
        assert_eq!(all.len(), n);
        for forbidden in [
            libc::SYS_mount,
            libc::SYS_ptrace,
            libc::SYS_bpf,
            libc::SYS_reboot,
        ] {
            assert!(!all.contains(&&forbidden));
        }
        assert!(!syscalls::BASE.contains(&libc::SYS_execve));
    }
}
