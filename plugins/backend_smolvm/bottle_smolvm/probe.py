"""Can a libkrun microVM boot here? Answered once, cached, with its reason.

``bottle doctor``, ``bottle ls`` and every ``bottle run --backend smolvm``
ask; the answer must come in seconds and never hang. So the probe goes from
cheapest to dearest and stops at the first definite "no":

1. **Host facts** (microseconds, in-process): ``/dev/kvm`` exists; on x86 the
   CPU shows ``vmx`` or ``svm`` (a KVM without them -- a paravirtual one such
   as ``kvm_pvm``, or a VM whose hypervisor hides nested virtualization --
   accepts ``KVM_CREATE_VM`` yet never runs a libkrun guest: smolvm only
   notices after its 30 s "no boot progress" watchdog); this user can open
   ``/dev/kvm``; ``KVM_CREATE_VM`` succeeds.
2. **The SDK's own host check** (``smol.local_availability``): platform,
   glibc, the native engine loads.
3. **A tiny boot**: ``smolvm machine run -- true`` (the bundled bare VM, no
   image, no network) under a hard timeout, its process group killed when the
   time is up. Its error is classified (see :func:`classify_boot_failure`).

Each "no" also says whether it is a fact of this host (``host_limit``: no
KVM, no hardware virtualization, no permission on ``/dev/kvm``, an unsupported
platform) or a failure of smolvm or of bottle's call to it, which someone
should look at: the tests skip for the first kind only.

The answer is cached under ``$XDG_CACHE_HOME/bottle/smolvm/`` keyed by the
smolmachines version and the kernel, and also by what changes the answer
without changing either: the user, ``/dev/kvm``'s owner and mode, and
``SMOLVM_VM_UID_DROP``. It expires after :data:`CACHE_TTL` (a user added to the
``kvm`` group, or a module loaded, changes none of the key).
``BOTTLE_SMOLVM_REPROBE=1`` ignores the cache.
"""

import contextlib
import errno
import fcntl
import hashlib
import json
import os
import platform
import signal
import stat
import subprocess
import time
from dataclasses import asdict, dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import NamedTuple

KVM = "/dev/kvm"
#: The tiny boot's hard limit. A healthy first boot here also unpacks the
#: bundled agent rootfs (about 15 s once); later boots take about a second.
BOOT_TIMEOUT = 20.0
REPROBE_ENV = "BOTTLE_SMOLVM_REPROBE"
#: How long a cached answer holds, in seconds.
CACHE_TTL = 24 * 3600.0

# ioctl numbers from <linux/kvm.h> (_IO(0xAE, n)).
KVM_GET_API_VERSION = 0xAE00
KVM_CREATE_VM = 0xAE01


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    reason: str
    stage: str  # "host", "sdk", "boot", "cache"
    seconds: float = 0.0
    host_limit: bool = False  # a "no" for a reason of this host (hardware, kernel, permissions, platform)


class BootFailure(NamedTuple):
    reason: str
    host_limit: bool  # see ProbeResult


@dataclass(frozen=True)
class HostFacts:
    """What the probe reads about this machine, gathered once (and faked in tests)."""

    system: str
    machine: str
    euid: int
    kvm_exists: bool
    kvm_owner: tuple[int, int] | None = None  # uid, gid
    kvm_mode: int | None = None
    open_errno: int | None = None  # opening /dev/kvm read-write as this user
    create_vm_errno: int | None = None  # KVM_CREATE_VM on that fd
    cpu_flags: frozenset[str] = field(default_factory=frozenset)
    kvm_modules: frozenset[str] = field(default_factory=frozenset)  # kvm, kvm_intel, kvm_pvm...
    uid_drop: bool = False  # smolvm drops each VMM to its own uid (root, not opted out)


def smolmachines_version() -> str:
    try:
        return version("smolmachines")
    except PackageNotFoundError:
        return "not installed"


def uid_drop_active(euid: int, environ=os.environ) -> bool:
    """smolvm's per-VM uid isolation: on when started as root, off with SMOLVM_VM_UID_DROP=off."""
    return euid == 0 and environ.get("SMOLVM_VM_UID_DROP") != "off"


def gather_host_facts(kvm: str = KVM) -> HostFacts:
    uname = platform.uname()
    euid = os.geteuid()
    facts = dict(system=uname.system, machine=uname.machine.lower(), euid=euid, uid_drop=uid_drop_active(euid))
    try:
        st = os.stat(kvm)
    except FileNotFoundError:
        return HostFacts(kvm_exists=False, **facts)
    facts.update(kvm_exists=True, kvm_owner=(st.st_uid, st.st_gid), kvm_mode=stat.S_IMODE(st.st_mode))
    try:
        with open("/proc/cpuinfo", encoding="ascii", errors="replace") as cpuinfo:
            for line in cpuinfo:
                if line.startswith(("flags", "Features")):
                    facts["cpu_flags"] = frozenset(line.split(":", 1)[1].split())
                    break
    except OSError:
        pass
    try:
        facts["kvm_modules"] = frozenset(m for m in os.listdir("/sys/module") if m == "kvm" or m.startswith("kvm_"))
    except OSError:
        pass
    try:
        fd = os.open(kvm, os.O_RDWR | os.O_CLOEXEC)
    except OSError as err:
        return HostFacts(open_errno=err.errno, **facts)
    try:
        fcntl.ioctl(fd, KVM_GET_API_VERSION)
        vm = fcntl.ioctl(fd, KVM_CREATE_VM, 0)
        os.close(vm)
    except OSError as err:
        facts["create_vm_errno"] = err.errno
    finally:
        os.close(fd)
    return HostFacts(**facts)


def _owner_mode(facts: HostFacts) -> str:
    uid, gid = facts.kvm_owner or (-1, -1)

    def name(lookup, ident):
        try:
            return lookup(ident)[0]
        except (KeyError, OSError):
            return str(ident)

    import grp
    import pwd

    return f"{name(pwd.getpwuid, uid)}:{name(grp.getgrgid, gid)} {facts.kvm_mode or 0:04o}"


def classify_host(facts: HostFacts) -> str | None:
    """The reason this host cannot boot a libkrun guest, or None when a boot is worth trying."""
    if facts.system != "Linux":
        return None  # macOS (Hypervisor.framework): only a boot can tell
    if not facts.kvm_exists:
        return (
            f"no {KVM}: the KVM kernel module is not loaded (modprobe kvm_intel or kvm_amd), "
            "or this machine or container was not given the device"
        )
    if facts.machine in ("x86_64", "amd64", "i686") and not facts.cpu_flags & {"vmx", "svm"}:
        why = []
        if "hypervisor" in facts.cpu_flags:
            why.append("this machine is itself a VM whose hypervisor does not expose nested virtualization")
        if "kvm_pvm" in facts.kvm_modules:
            why.append(f"{KVM} comes from kvm_pvm, a paravirtual KVM that boots only PVM-enabled guest kernels, "
                       "and libkrun's is not one")
        accepted = facts.open_errno is None and facts.create_vm_errno is None
        reason = (
            "KVM here lacks hardware virtualization extensions: no vmx or svm among the CPU flags in /proc/cpuinfo"
            + (f" ({'; '.join(why)})" if why else "")
            + (". KVM_CREATE_VM succeeds, yet a" if accepted else ". A")
            + " libkrun guest never boots: smolvm would only give up after its 30 s watchdog. "
            "Use bare metal or a VM with nested virtualization"
        )
        also = _uid_drop_blocked(facts)
        return reason + (f" (also: {also})" if also else "") + "."
    if facts.open_errno in (errno.EACCES, errno.EPERM):
        return (
            f"permission denied on {KVM} ({_owner_mode(facts)}) for uid {facts.euid}: "
            "add this user to the group that owns it (usually `kvm`), then log in again"
        )
    if facts.open_errno is not None:
        return f"{KVM} exists but cannot be opened: {os.strerror(facts.open_errno)} (errno {facts.open_errno})"
    if facts.create_vm_errno is not None:
        hint = ""
        if facts.create_vm_errno == errno.EBUSY:
            hint = " (another hypervisor, such as VirtualBox or VMware, holds the CPU's virtualization extensions)"
        return f"KVM_CREATE_VM failed: {os.strerror(facts.create_vm_errno)} (errno {facts.create_vm_errno}){hint}"
    return None


def _uid_drop_blocked(facts: HostFacts) -> str | None:
    """smolvm run as root drops each VMM to a fresh uid; a root-only /dev/kvm stops it."""
    if facts.uid_drop and facts.kvm_owner and facts.kvm_owner[0] == 0 and not (facts.kvm_mode or 0) & 0o066:
        return (
            f"{KVM} is {_owner_mode(facts)}, and smolvm started as root drops each VM to its own unprivileged uid, "
            "which cannot open it"
        )
    return None


def classify_boot_failure(code: str | None, message: str, *, uid_drop: bool = False) -> BootFailure:
    """Turn smolvm's error for the tiny boot into a reason a person can act on, and
    say whether it is the host's (KVM, permissions, hypervisor) rather than smolvm's.

    The texts matched are smolvm 1.32's, observed on real hosts (see the unit
    tests); anything unrecognised is reported as it is. *uid_drop* says whether
    smolvm dropped the VM process to its own uid (it was started as root): its
    error then names /dev/kvm's permission without saying whose.
    """
    text = " ".join(message.split())
    lower = text.lower()
    if code == "KVM_UNAVAILABLE" or "kvm not available" in lower or "kvm unavailable" in lower:
        return BootFailure(f"no usable {KVM}: {text}", True)
    denied = ("kvmopen(error(13))", "kvm permission denied", "cannot access /dev/kvm", "after privilege drop")
    if any(marker in lower for marker in denied):
        if uid_drop or "after privilege drop" in lower:
            return BootFailure(
                f"permission denied on {KVM} for the VM process: smolvm started as root drops each VM to its own "
                f"unprivileged uid, and that uid cannot open {KVM} (give the device to a group that uid gets, or set "
                f"SMOLVM_VM_UID_DROP=off to run VMs as root). smolvm said: {text}",
                True,
            )
        return BootFailure(
            f"permission denied on {KVM}: add this user to the group that owns it (usually `kvm`). smolvm said: {text}",
            True,
        )
    if "no boot progress" in lower or "did not become ready" in lower:
        return BootFailure(
            "the microVM started but the guest made no boot progress: KVM accepted the VM yet its vCPU never ran "
            "the guest kernel, which is what a KVM without hardware virtualization extensions (a paravirtual or "
            f"nested KVM) does. smolvm said: {text}",
            True,
        )
    if code == "HYPERVISOR_UNAVAILABLE":
        return BootFailure(f"no hypervisor available: {text}", True)
    prefix = f"[{code}] " if code and code != "SMOLVM_ERROR" else ""
    return BootFailure(f"a tiny microVM boot failed: {prefix}{text}", False)


def parse_cli_error(stderr: str) -> tuple[str | None, str]:
    """The ``{"error": {"code", "message"}}`` line of ``--error-format json``, else the stderr tail."""
    for line in reversed(stderr.splitlines()):
        line = line.strip()
        if line.startswith("{") and '"error"' in line:
            try:
                error = json.loads(line)["error"]
                return error.get("code"), error.get("message", "")
            except (ValueError, KeyError, TypeError, AttributeError):
                continue
    lines = [line for line in stderr.splitlines() if line.strip() and not line.startswith("note: no packed assets")]
    return None, "\n".join(lines[-5:]) or "(no output)"


def boot_argv(binary: str) -> list[str]:
    """The tiny boot: the bundled bare VM, no image, no network, one `true`."""
    return [binary, "--error-format", "json", "machine", "run", "--", "true"]


def tiny_boot(binary: str, *, uid_drop: bool = False, timeout: float = BOOT_TIMEOUT, run=subprocess.Popen) -> ProbeResult:
    started = time.monotonic()
    process = run(
        boot_argv(binary),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        start_new_session=True,  # its own process group: the VMM goes with it on timeout
    )
    try:
        _, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(OSError):
            os.killpg(process.pid, signal.SIGKILL)
        try:  # a descendant that left the group could hold the pipes open
            _, stderr = process.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            stderr = b""
        _, tail = parse_cli_error(stderr.decode(errors="replace"))
        return ProbeResult(
            False,
            f"a tiny microVM boot did not finish within {timeout:g} s and was killed "
            f"(a guest that never boots usually means a KVM without hardware virtualization). Last output: {tail}",
            "boot",
            time.monotonic() - started,
        )
    seconds = time.monotonic() - started
    if process.returncode == 0:
        return ProbeResult(True, f"a microVM booted in {seconds:.1f} s", "boot", seconds)
    code, message = parse_cli_error(stderr.decode(errors="replace"))
    reason, host_limit = classify_boot_failure(code, message, uid_drop=uid_drop)
    return ProbeResult(False, reason, "boot", seconds, host_limit)


#: ``smol.local_availability`` codes that describe the host, not the installation.
HOST_CODES = frozenset({"UNSUPPORTED_PLATFORM", "KVM_UNAVAILABLE", "HYPERVISOR_UNAVAILABLE"})


def sdk_check() -> BootFailure | None:
    """smol's own host check (platform, glibc, native engine); None when it has no objection.
    A native engine that is missing or fails to load is the installation's fault, not the host's."""
    try:
        import smol
    except ImportError as err:
        return BootFailure(f"the smolmachines package is not importable: {err}", False)
    available, code, reason = smol.local_availability()
    if available:
        return None
    return BootFailure(f"{reason} [{code}]", code in HOST_CODES)


def cache_key(facts: HostFacts, smol_version: str, environ=os.environ) -> dict:
    uname = platform.uname()
    return {
        "smolmachines": smol_version,
        "kernel": f"{uname.release} {uname.version}",
        "machine": facts.machine,
        "euid": facts.euid,
        "kvm": [facts.kvm_exists, facts.kvm_owner, facts.kvm_mode],
        "uid_drop": environ.get("SMOLVM_VM_UID_DROP", ""),
    }


def cache_path(cache_dir: Path, key: dict) -> Path:
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:16]
    return cache_dir / f"probe-{digest}.json"


def probe(
    cache_dir: Path,
    *,
    binary,
    facts: HostFacts | None = None,
    environ=os.environ,
    sdk=sdk_check,
    boot=tiny_boot,
    ttl: float = CACHE_TTL,
    clock=time.time,
) -> ProbeResult:
    """Whether a microVM boots here: the cached answer, if under *ttl* seconds old, or a
    fresh one (then cached).

    *binary* is a callable returning the smolvm CLI's path (only a boot needs it).
    """
    facts = facts if facts is not None else gather_host_facts()
    key = cache_key(facts, smolmachines_version(), environ)
    path = cache_path(cache_dir, key)
    reprobe = environ.get(REPROBE_ENV, "") not in ("", "0")
    if not reprobe and (cached := _read(path, clock(), ttl)) is not None:
        return cached
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        lock = open(cache_dir / "probe.lock", "a")
    except OSError:  # no cache to be had: answer anyway
        return _probe_now(facts, binary, sdk, boot)
    # One prober at a time: a second process waits for the first's answer.
    with lock:
        _lock(lock, timeout=BOOT_TIMEOUT + 10)
        if not reprobe and (cached := _read(path, clock(), ttl)) is not None:
            return cached
        result = _probe_now(facts, binary, sdk, boot)
        with contextlib.suppress(OSError):
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_text(json.dumps({**asdict(result), "key": key, "probed_at": clock()}, indent=2))
            os.replace(tmp, path)
    return result


def _probe_now(facts: HostFacts, binary, sdk, boot) -> ProbeResult:
    started = time.monotonic()
    reason = classify_host(facts)
    if reason:
        return ProbeResult(False, reason, "host", time.monotonic() - started, host_limit=True)
    objection = sdk()
    if objection:
        return ProbeResult(False, objection.reason, "sdk", time.monotonic() - started, objection.host_limit)
    return boot(binary(), uid_drop=facts.uid_drop)


def _read(path: Path, now: float, ttl: float) -> ProbeResult | None:
    """The cached answer at *path*; None when there is none, it is older than *ttl* (or
    dated in the future), or it predates ``host_limit``."""
    try:
        data = json.loads(path.read_text())
        if not 0 <= now - float(data["probed_at"]) < ttl:
            return None
        return ProbeResult(bool(data["ok"]), str(data["reason"]), "cache", float(data.get("seconds", 0.0)),
                           bool(data["host_limit"]))
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _lock(handle, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                return  # a stuck prober must not stall us: probe anyway
            time.sleep(0.1)
