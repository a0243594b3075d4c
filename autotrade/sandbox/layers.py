"""The isolation layers around a candidate, each set up, measured and reported on its own.

Where each one is applied (see pool.py for the processes):
- fork server, once at start: network namespace (no interface but a down loopback), mount
  namespace + chroot into a read-only view holding only the Python libraries (no /proc,
  no home, no project directory, no /tmp).
- worker child, before the candidate runs: rlimits (CPU, address space, file size 0, no
  processes, no core files), uid nobody when the harness runs as root, no_new_privs plus a
  seccomp filter (no exec, fork, socket, write-mode open, unlink/rename/mkdir, mount,
  ptrace, kill, io_uring, ...), an empty environment, then a PEP 578 audit hook.

The kernel layers hold against native code; the audit hook is in-process (it can be
walked around by memory tricks) and exists to turn attempts into clear errors and to stop
what the kernel layers cannot name, such as reading files inside the library view.
Every layer degrades on its own: when the machine does not allow it (a normal user on Ubuntu,
whose AppArmor policy refuses unprivileged user namespaces; a container without mount rights;
no libseccomp; macOS, with neither namespaces nor seccomp), it is reported as the reason string
and the others still apply. Who we are is asked with the real uid BEFORE any namespace is
entered: inside a user namespace every process can look like root. FAULTS lets the tests refuse
each facility the way such a machine would.
"""

from __future__ import annotations

import ctypes
import errno
import os
import resource
import signal
import sys
import sysconfig
import types
from collections.abc import Callable, Iterable
from typing import Any

from autotrade.contract import ALLOWED_MODULES

NOBODY = 65534  # uid and gid of nobody on Linux; no /etc/passwd lookup needed

# Facilities a machine may refuse, by the name a test uses to refuse them (see pool.SandboxPool faults).
FAULTS = {
    "namespaces": "every unshare refused (a container without CAP_SYS_ADMIN, namespaces disabled)",
    "user_namespace": "unprivileged user namespaces refused (Ubuntu 23.10+ restricts them through AppArmor)",
    "mount": "mounts refused (a container without mount rights)",
    "seccomp": "no libseccomp",
    "nobody": "changing to uid nobody refused",
    "linux": "no Linux facilities: no namespaces, no prctl, no seccomp (macOS)",
    # Not a machine's refusal the self-test sees: a layer that held there and fails in each worker child.
    "child_dumpable": "prctl(PR_SET_DUMPABLE) refused in every worker child, after the self-test",
    "fork_once": "the first worker child's fork fails with EAGAIN (RLIMIT_NPROC or the pid limit reached)",
}

# Linux constants (identical on x86_64 and aarch64).
_CLONE_NEWNS = 0x00020000
_CLONE_NEWUSER = 0x10000000
_CLONE_NEWNET = 0x40000000
_CLONE_THREAD = 0x00010000
_MS_RDONLY, _MS_NOSUID, _MS_NODEV, _MS_REMOUNT, _MS_BIND, _MS_REC, _MS_PRIVATE = 1, 2, 4, 32, 4096, 16384, 1 << 18
_PR_SET_PDEATHSIG, _PR_SET_DUMPABLE, _PR_SET_SECCOMP, _PR_SET_NO_NEW_PRIVS = 1, 4, 22, 38
_SECCOMP_MODE_FILTER = 2
_O_WRITE_BITS = (os.O_WRONLY, os.O_RDWR, os.O_CREAT, os.O_TRUNC)
_TIOCSTI = 0x5412
_EPERM, _ENOSYS = 1, 38

# Syscalls a strategy never needs. Names the running kernel/library does not know are skipped.
_DENIED_SYSCALLS = (
    "execve",
    "execveat",
    "fork",
    "vfork",
    "creat",
    "openat2",
    "open_by_handle_at",
    "name_to_handle_at",
    "socket",
    "socketpair",
    "connect",
    "bind",
    "listen",
    "accept",
    "accept4",
    "unlink",
    "unlinkat",
    "rename",
    "renameat",
    "renameat2",
    "mkdir",
    "mkdirat",
    "rmdir",
    "link",
    "linkat",
    "symlink",
    "symlinkat",
    "mknod",
    "mknodat",
    "truncate",
    "chmod",
    "fchmod",
    "fchmodat",
    "chown",
    "fchown",
    "lchown",
    "fchownat",
    "utime",
    "utimes",
    "utimensat",
    "futimesat",
    "setxattr",
    "lsetxattr",
    "fsetxattr",
    "removexattr",
    "lremovexattr",
    "fremovexattr",
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "setns",
    "unshare",
    "mount_setattr",
    "move_mount",
    "open_tree",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_open",
    "pidfd_getfd",
    "pidfd_send_signal",
    "kill",
    "tkill",
    "tgkill",
    "rt_sigqueueinfo",
    "rt_tgsigqueueinfo",
    "setrlimit",
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    "bpf",
    "perf_event_open",
    "userfaultfd",
    "keyctl",
    "add_key",
    "request_key",
    "init_module",
    "finit_module",
    "delete_module",
    "kexec_load",
    "kexec_file_load",
    "reboot",
    "swapon",
    "swapoff",
    "acct",
    "quotactl",
    "sethostname",
    "setdomainname",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "iopl",
    "ioperm",
    "personality",
    "vhangup",
    "fanotify_init",
    # SysV/POSIX IPC would let two workers smuggle state past the look-ahead gate.
    "shmget",
    "shmat",
    "msgget",
    "msgsnd",
    "semget",
    "semop",
    "semtimedop",
    "mq_open",
)

# Audit events a sealed worker may raise freely: attribute access on frames/tracebacks
# (warnings, tracebacks), sys._getframe (pandas' warnings need it), type attribute writes
# (monkeypatching only affects the worker itself).
_FREE_EVENTS = frozenset(
    {
        "object.__getattr__",
        "object.__setattr__",
        "object.__delattr__",
        "sys._getframe",
        "builtins.id",
        "array.__new__",
        "time.sleep",
        "sys.excepthook",
        "sys.unraisablehook",
    }
)
# Modules no strategy needs, even indirectly; the import is refused whoever asks.
_DENIED_IMPORTS = frozenset(
    {
        "ctypes",
        "_ctypes",
        "socket",
        "_socket",
        "ssl",
        "_ssl",
        "subprocess",
        "_posixsubprocess",
        "multiprocessing",
        "_multiprocessing",
        "concurrent",
        "asyncio",
        "mmap",
        "pty",
        "tty",
        "termios",
        "fcntl",
        "resource",
        "select",
        "selectors",
        "urllib",
        "http",
        "ftplib",
        "smtplib",
        "imaplib",
        "poplib",
        "nntplib",
        "telnetlib",
        "xmlrpc",
        "socketserver",
        "webbrowser",
        "shutil",
        "tempfile",
        "sqlite3",
        "_sqlite3",
        "dbm",
        "shelve",
        "pdb",
        "bdb",
        "code",
        "codeop",
        "runpy",
        "pickle",
        "_pickle",
        "marshal",
        "zipimport",
        "faulthandler",
        "tracemalloc",
        "pkgutil",
        "glob",
        "platform",
        "sysconfig",
        "site",
        "venv",
        "ensurepip",
        "distutils",
        "setuptools",
        "pip",
        "_thread",
        "cffi",
        "_cffi_backend",
        "psutil",
        "requests",
        "urllib3",
        "httpx",
        "openai",
        "dotenv",
        "autotrade",
    }
)
_IMPORT_MACHINERY = ("<frozen importlib", os.path.dirname(os.path.realpath(__import__("importlib").__file__)))
# Stdlib code that legitimately compiles and execs generated source (namedtuple, dataclass).
_CODEGEN_FILES = frozenset(os.path.realpath(m.__file__) for m in (__import__("collections"), __import__("dataclasses")))
# ast.parse compiles to a syntax tree only (pandas' eval/query parse their expression this way).
_PARSE_ONLY_FILES = frozenset({os.path.realpath(__import__("ast").__file__)})
_ZONEINFO = "/usr/share/zoneinfo"  # named time zones (tz_localize("US/Eastern")) are read from here


def _libc() -> ctypes.CDLL:
    """A fresh handle on the C library (kept in no module global, so candidate code cannot find it)."""
    return ctypes.CDLL(None, use_errno=True)


def _simulated(what: str) -> OSError:
    return OSError(_EPERM, f"{what}: Operation not permitted (simulated)")


def has_prctl(faults: frozenset[str] = frozenset()) -> bool:
    """True on Linux, where prctl (parent-death signal, no core dumps, seccomp) exists."""
    return "linux" not in faults and hasattr(_libc(), "prctl")


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, f"{what}: {os.strerror(errno)}")


def library_roots() -> tuple[str, ...]:
    """Directories the worker may read: the stdlib, lib-dynload and the site-packages of numpy/pandas."""
    import numpy
    import pandas

    paths: set[str] = set()
    for base, platbase in ((sys.prefix, sys.exec_prefix), (sys.base_prefix, sys.base_exec_prefix)):
        scheme = sysconfig.get_paths(
            vars={"base": base, "platbase": platbase, "installed_base": base, "installed_platbase": platbase}
        )
        paths.update(scheme[key] for key in ("stdlib", "platstdlib", "purelib", "platlib"))
    paths.update(os.path.dirname(os.path.dirname(m.__file__)) for m in (numpy, pandas))
    paths.update(p for p in sys.path if "site-packages" in p or "dist-packages" in p)
    stdlib_extension = getattr(sys.modules.get("_json"), "__file__", None)  # lives in lib-dynload
    if stdlib_extension:
        paths.add(os.path.dirname(stdlib_extension))
    return _outermost(os.path.realpath(p) for p in paths if os.path.isdir(p))


def _outermost(paths: Iterable[str]) -> tuple[str, ...]:
    """Sorted paths with any path inside another dropped."""
    kept: list[str] = []
    for path in sorted(set(paths)):
        if not any(path == k or path.startswith(k.rstrip("/") + "/") for k in kept):
            kept.append(path)
    return tuple(kept)


def _system_binds() -> tuple[list[str], list[tuple[str, str]]]:
    """Shared libraries and loader cache the libraries need (dirs to bind, symlinks to copy)."""
    binds, links = [], []
    for path in ("/usr/lib", "/usr/lib64", "/lib", "/lib64", "/usr/share/zoneinfo", "/etc/ld.so.cache", "/dev/null"):
        if os.path.islink(path):
            links.append((path, os.readlink(path)))
        elif os.path.exists(path):
            binds.append(path)
    return binds, links


def enter_namespaces(
    roots: tuple[str, ...], host_uid: int, host_gid: int, faults: frozenset[str] = frozenset()
) -> dict[str, bool | str]:
    """In the fork server: a new network namespace and a read-only filesystem view of `roots` only.

    Returns {"network_namespace": True|reason, "filesystem_view": True|reason}. Root (by the
    real uid, `host_uid`, asked before this call) uses mount and network namespaces directly;
    other users get them inside a user namespace that maps their own uid to itself, so that
    nothing inside mistakes them for root, and the server then drops the capabilities the new
    namespace gave it: its children hold none.
    """
    libc = _libc()
    if "linux" in faults or not hasattr(libc, "unshare"):
        reason = "unavailable (no namespaces on this system)"
        return {"network_namespace": reason, "filesystem_view": reason}
    user = 0 if host_uid == 0 else _CLONE_NEWUSER

    def unshare(flags: int) -> None:
        if "namespaces" in faults or ("user_namespace" in faults and flags & _CLONE_NEWUSER):
            raise _simulated("unshare")
        try:
            _check(libc.unshare(flags), "unshare")
        except OSError as exc:
            threads = len(os.listdir("/proc/self/task")) if os.path.isdir("/proc/self/task") else 1
            if exc.errno == errno.EINVAL and flags & _CLONE_NEWUSER and threads > 1:
                # The one EINVAL a library can cause: a user namespace needs a single-threaded process.
                raise OSError(exc.errno, f"{exc.strerror}: the sandbox server runs {threads} threads") from None
            raise

    view: bool | str = True
    try:
        unshare(user | _CLONE_NEWNET | _CLONE_NEWNS)
    except OSError as exc:
        view = f"unavailable ({exc.strerror})"
        try:  # a network namespace alone may still be allowed
            unshare(user | _CLONE_NEWNET)
        except OSError as exc2:
            return {"network_namespace": f"unavailable ({exc2.strerror})", "filesystem_view": view}
    try:
        if user:
            for name, text in (
                ("setgroups", "deny"),
                ("uid_map", f"{host_uid} {host_uid} 1"),
                ("gid_map", f"{host_gid} {host_gid} 1"),
            ):
                with open(f"/proc/self/{name}", "w") as handle:
                    handle.write(text)
        if view is True:
            _chroot_into_view(libc, roots, faults)
    except OSError as exc:
        view = f"unavailable ({exc})"
    network: bool | str = True
    if user:
        try:
            drop_capabilities()
        except OSError as exc:
            network = f"on, but the namespace's capabilities were kept ({exc})"
    return {"network_namespace": network, "filesystem_view": view}


def drop_capabilities() -> None:
    """capset(2) with empty sets: no capability, in this namespace or any other, for us or our children."""

    class Header(ctypes.Structure):
        _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]

    class Data(ctypes.Structure):
        _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]

    libc = _libc()
    header = Header(0x20080522, 0)  # _LINUX_CAPABILITY_VERSION_3: two 32-bit data structs
    _check(libc.capset(ctypes.byref(header), (Data * 2)()), "capset")


def _chroot_into_view(libc: ctypes.CDLL, roots: tuple[str, ...], faults: frozenset[str]) -> None:
    """Mount a tmpfs, bind the library dirs read-only at their own paths, make it read-only, chroot."""

    def mount(source: str | None, target: str, fstype: str | None, flags: int, data: bytes | None = None) -> None:
        if "mount" in faults:
            raise _simulated(f"mount {target}")
        _check(
            libc.mount(
                source.encode() if source else None, target.encode(), fstype.encode() if fstype else None, flags, data
            ),
            f"mount {target}",
        )

    binds, links = _system_binds()
    sources = _outermost([*roots, *binds])
    # The new root's mount point must not hide any bind source; mounts stay inside our namespace.
    spots = ("/mnt", "/media", "/srv", "/opt", "/var/tmp", "/tmp", "/home")
    top = next(
        (
            d
            for d in spots
            if os.path.isdir(d) and not os.path.islink(d) and not any(s == d or s.startswith(d + "/") for s in sources)
        ),
        None,
    )
    if top is None:
        raise OSError(0, "no directory to mount the view on")
    mount(None, "/", None, _MS_REC | _MS_PRIVATE)
    mount("tmpfs", top, "tmpfs", _MS_NOSUID | _MS_NODEV, b"size=1m,mode=755")
    for source in sources:
        target = top + source
        if os.path.isdir(source):
            os.makedirs(target, exist_ok=True)
        else:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "a").close()  # noqa: SIM115 - an empty mount point inside our own tmpfs
        mount(source, target, None, _MS_BIND | _MS_REC)
        nodev = 0 if source.startswith("/dev/") else _MS_NODEV  # /dev/null must stay a device
        mount(None, target, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | nodev)
    for path, destination in links:
        if not os.path.lexists(top + path):
            os.symlink(destination, top + path)
    mount(None, top, None, _MS_BIND | _MS_REMOUNT | _MS_RDONLY | _MS_NOSUID | _MS_NODEV)
    os.chroot(top)
    os.chdir("/")


def can_drop_to_nobody(roots: tuple[str, ...], view_active: bool, host_uid: int) -> bool | str:
    """Whether children can run unprivileged: True for a normal user (they run as that user), and for
    root when nobody can read the library dirs (pyenv under /root often cannot); else why not.

    `host_uid` is the real uid asked before any namespace was entered. Inside the filesystem view
    the roots' parents are our own 0755 directories; outside it every parent directory must be
    searchable by others too.
    """
    if host_uid != 0:
        return True
    import numpy
    import pandas

    probes = {*roots, os.path.dirname(numpy.__file__), os.path.dirname(pandas.__file__), os.path.dirname(os.__file__)}
    if not view_active:
        probes |= {parent for path in probes for parent in _parents(path)}
    for path in sorted(probes):
        if os.stat(path).st_mode & 0o005 != 0o005:
            return f"unavailable ({path} is not readable by nobody)"
    return True


def _parents(path: str) -> list[str]:
    parents = []
    while (parent := os.path.dirname(path)) != path:
        parents.append(parent)
        path = parent
    return parents


def build_seccomp_filter(faults: frozenset[str] = frozenset()) -> bytes:
    """The worker's seccomp filter as raw BPF, compiled once by libseccomp (via ctypes, no dependency).

    Raises OSError when libseccomp is missing or refuses; the worker then runs without this layer.
    """
    if faults & {"seccomp", "linux"}:
        raise OSError(0, "libseccomp.so.2 not found (simulated)")
    lib = None
    for name in ("libseccomp.so.2", "libseccomp.so"):
        try:
            lib = ctypes.CDLL(name, use_errno=True)
            break
        except OSError:
            continue
    if lib is None:
        raise OSError(0, "libseccomp.so.2 not found")

    class ArgCmp(ctypes.Structure):
        _fields_ = [
            ("arg", ctypes.c_uint),
            ("op", ctypes.c_int),
            ("datum_a", ctypes.c_uint64),
            ("datum_b", ctypes.c_uint64),
        ]

    masked_eq, not_equal = 7, 1
    allow = 0x7FFF0000
    deny, no_such_call = 0x00050000 | _EPERM, 0x00050000 | _ENOSYS
    lib.seccomp_init.restype = ctypes.c_void_p
    lib.seccomp_init.argtypes = [ctypes.c_uint32]
    lib.seccomp_rule_add_array.argtypes = [
        ctypes.c_void_p,
        ctypes.c_uint32,
        ctypes.c_int,
        ctypes.c_uint,
        ctypes.POINTER(ArgCmp),
    ]
    lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]
    lib.seccomp_export_bpf.argtypes = [ctypes.c_void_p, ctypes.c_int]
    lib.seccomp_release.argtypes = [ctypes.c_void_p]
    ctx = lib.seccomp_init(allow)
    if not ctx:
        raise OSError(0, "seccomp_init failed")

    def rule(action: int, name: str, *conditions: tuple[int, int, int, int]) -> None:
        number = lib.seccomp_syscall_resolve_name(name.encode())
        if number < 0:  # unknown to this libseccomp, or absent on this architecture: nothing to filter
            return
        array = (ArgCmp * max(1, len(conditions)))(*[ArgCmp(*c) for c in conditions])
        result = lib.seccomp_rule_add_array(ctx, action, number, len(conditions), array)
        if result not in (0, -17):  # -EEXIST: same rule twice
            raise OSError(-result, f"seccomp rule for {name}")

    try:
        for name in _DENIED_SYSCALLS:
            rule(deny, name)
        for bit in _O_WRITE_BITS:  # reads stay allowed: lazy imports need them
            rule(deny, "open", (1, masked_eq, bit, bit))
            rule(deny, "openat", (2, masked_eq, bit, bit))
        rule(deny, "clone", (0, masked_eq, _CLONE_THREAD, 0))  # threads yes, processes no
        rule(no_such_call, "clone3")  # glibc falls back to clone(), which the rule above can inspect
        rule(deny, "prlimit64", (2, not_equal, 0, 0))  # getrlimit yes, setting no
        rule(deny, "ioctl", (1, masked_eq, 0xFFFFFFFF, _TIOCSTI))  # no typing into a terminal
        read_end, write_end = os.pipe()
        try:
            result = lib.seccomp_export_bpf(ctx, write_end)
            os.close(write_end)
            write_end = -1
            if result != 0:
                raise OSError(-result, "seccomp_export_bpf")
            program = b""
            while chunk := os.read(read_end, 65536):
                program += chunk
        finally:
            os.close(read_end)
            if write_end >= 0:
                os.close(write_end)
    finally:
        lib.seccomp_release(ctx)
    if not program or len(program) % 8:
        raise OSError(0, "seccomp filter export gave no program")
    return program


def apply_seccomp(program: bytes) -> None:
    """Load a BPF program (from build_seccomp_filter) into this process, after setting no_new_privs."""

    class SockFprog(ctypes.Structure):
        _fields_ = [("len", ctypes.c_ushort), ("filter", ctypes.c_void_p)]

    libc = _libc()
    if not hasattr(libc, "prctl"):
        raise OSError(0, "no prctl on this system")
    buffer = ctypes.create_string_buffer(program, len(program))
    fprog = SockFprog(len(program) // 8, ctypes.cast(buffer, ctypes.c_void_p))
    _check(libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "prctl(NO_NEW_PRIVS)")
    _check(libc.prctl(_PR_SET_SECCOMP, _SECCOMP_MODE_FILTER, ctypes.byref(fprog), 0, 0), "prctl(SECCOMP)")


def die_with_parent(parent_pid: int, prctl: bool = True) -> None:
    """SIGKILL this process when its parent goes away (where prctl exists), and exit now if it already has."""
    if prctl:
        _libc().prctl(_PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent_pid:
        os._exit(1)


def make_undumpable(prctl: bool = True, faults: frozenset[str] = frozenset()) -> None:
    """No ptrace attach by same-uid processes, no core dump, /proc entries owned by root (where prctl exists)."""
    if "child_dumpable" in faults:
        raise _simulated("prctl(PR_SET_DUMPABLE)")
    if prctl:
        _libc().prctl(_PR_SET_DUMPABLE, 0, 0, 0, 0)


def close_descriptors_from(first: int) -> None:
    """Close every descriptor numbered `first` or above, up to the process's real ceiling.

    No descriptor can be opened at or above the soft RLIMIT_NOFILE, which may well exceed 65536, and
    the fork server never lowers it, so that limit bounds every descriptor a child can inherit.
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    ceiling = soft if soft != resource.RLIM_INFINITY else os.sysconf("SC_OPEN_MAX")
    # An unlimited soft limit gives no number to stop at (SC_OPEN_MAX is then -1 or as unlimited): a generous one.
    os.closerange(first, ceiling if 0 < ceiling < 1 << 31 else 1 << 20)


def set_limits(memory_mb: int, cpu_s: int) -> list[str]:
    """rlimits for one worker child: CPU seconds (soft < hard), address space, no files, no processes.

    Each limit is set on its own (macOS, for one, refuses some); returns those the system refused.
    """
    memory = memory_mb * 1024 * 1024
    wanted = (
        ("RLIMIT_CORE", (0, 0)),
        ("RLIMIT_FSIZE", (0, 0)),
        ("RLIMIT_CPU", (cpu_s, cpu_s + 1)),  # SIGXCPU first, SIGKILL one second later
        ("RLIMIT_AS", (memory, memory)),
        ("RLIMIT_NPROC", (0, 0)),  # no effect for root: seccomp and uid nobody cover it
        ("RLIMIT_NOFILE", (64, 64)),
    )
    refused = []
    for name, value in wanted:
        try:
            resource.setrlimit(getattr(resource, name), value)
        except (AttributeError, ValueError, OSError):
            refused.append(name)
    return refused


def drop_privileges(uid: int = NOBODY, faults: frozenset[str] = frozenset()) -> None:
    """Become `uid` (nobody) with no supplementary groups; irreversible, and drops all capabilities."""
    if "nobody" in faults:
        raise _simulated("setuid")
    os.setgroups([])
    os.setgid(uid)
    os.setuid(uid)


def read_roots(roots: tuple[str, ...]) -> tuple[str, ...]:
    """What the audit hook lets a worker read: the library roots plus the time zone database."""
    return _outermost([*roots, *([_ZONEINFO] if os.path.isdir(_ZONEINFO) else [])])


def install_audit_hook(read_roots: tuple[str, ...], candidate_code: types.CodeType) -> None:
    """Seal the process with a PEP 578 audit hook: from now on only library reads and safe events pass.

    Allowed: reads (and directory listings) under `read_roots`, importing numpy/pandas/math
    from candidate code and other modules from library code (except a denylist), running
    `candidate_code` (a fresh namespace each time), and the code generation namedtuple/dataclass do. Everything else
    (writes, sockets, processes, ctypes, gc walks, tracing, pickle, marshal, compile...) raises
    PermissionError. The hook is a closure over immutable values and is referenced from
    nowhere but the interpreter, so candidate code has no handle on its state.
    """
    hook = _make_hook(tuple(r.rstrip("/") + "/" for r in read_roots), frozenset(read_roots), candidate_code)
    sys.addaudithook(hook)


def _make_hook(
    prefixes: tuple[str, ...], exact: frozenset[str], candidate_code: types.CodeType
) -> Callable[[str, tuple[Any, ...]], None]:
    realpath, fsdecode, getframe = os.path.realpath, os.fsdecode, sys._getframe
    code_type = types.CodeType
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_TRUNC | os.O_APPEND
    free, denied_imports, machinery, codegen = _FREE_EVENTS, _DENIED_IMPORTS, _IMPORT_MACHINERY, _CODEGEN_FILES
    parse_only = _PARSE_ONLY_FILES
    allowed_roots = frozenset(ALLOWED_MODULES)

    def refuse(what: str) -> None:
        raise PermissionError(f"sandbox: {what} is not allowed")

    def shown(path: Any) -> str:  # never call a candidate's own __repr__ from inside the hook
        return repr(path) if type(path) in (str, bytes, int) else f"<{type(path).__name__}>"

    def readable(path: Any) -> bool:
        if type(path) is bytes:
            path = fsdecode(path)
        if type(path) is not str:
            return False
        real = realpath(path)
        return real in exact or real.startswith(prefixes)

    def caller_file(depth: int) -> str:
        return getframe(depth).f_code.co_filename

    def importer_is_candidate() -> bool:
        frame = getframe(2)
        while frame is not None and frame.f_code.co_filename.startswith(machinery):
            frame = frame.f_back
        return frame is None or not frame.f_code.co_filename.startswith(prefixes)

    def hook(event: str, args: tuple[Any, ...]) -> None:
        if event in free:
            return
        if event == "open":
            path, mode, flags = args
            if (type(mode) is str and any(c in mode for c in "wax+")) or (type(flags) is int and flags & write_flags):
                refuse(f"opening {shown(path)} for writing")
            if not readable(path):
                refuse(f"opening {shown(path)}")
        elif event in ("os.listdir", "os.scandir"):
            if not readable(args[0]):
                refuse(f"listing {shown(args[0])}")
        elif event == "import":
            name = args[0] if type(args[0]) is str else ""
            root = name.partition(".")[0]
            if root in denied_imports or (root not in allowed_roots and importer_is_candidate()):
                refuse(f"import of '{name}'")
        elif event == "exec":
            code = args[0]
            if code is candidate_code:  # the harness runs the block's top level in each fresh namespace
                return
            if type(code) is code_type and (
                code.co_filename.startswith(prefixes) or code.co_filename.startswith("<frozen ")
            ):
                return
            if realpath(caller_file(2)) in codegen:
                return
            refuse("exec of generated code")
        elif event == "compile":
            caller = caller_file(2)
            if caller.startswith("<frozen importlib") and type(args[1]) is str and readable(args[1]):
                return
            if realpath(caller) in codegen or realpath(caller) in parse_only:
                return
            refuse("compile")
        elif event in ("marshal.loads", "marshal.load"):
            if not caller_file(2).startswith("<frozen importlib"):
                refuse(event)
        else:
            refuse(event)

    return hook
