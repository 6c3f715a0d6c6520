"""The smolvm availability probe: classifying each failure, the tiny boot, the cache.

The error texts below are smolvm 1.32.2's, as observed on a real host: a
KVM without VMX/SVM (kvm_pvm), root with smolvm's per-VM uid drop, a plain
user without access to /dev/kvm, and a mount namespace without /dev/kvm.
"""

import errno
import json
import subprocess

import pytest

from bottle_smolvm import probe
from bottle_smolvm.probe import HostFacts, ProbeResult

# -- real texts, smolvm 1.32.2 ------------------------------------------------------

NOTE = (
    "note: no packed assets found for 'smol-vmm' (looked for a 'smol-vmm.smolmachine' sidecar next to the "
    "executable); running as the plain smolvm CLI. If this is a packed binary, keep its .smolmachine file alongside it."
)
#: root, per-VM uid drop active, /dev/kvm root:root 0600 (the JSON message is smolvm's, truncated by smolvm).
UID_DROP_EACCES = (
    "agent operation failed: start machine: agent operation failed: monitor agent: Then log out and log back in "
    "for the change to take effect.); libkrun detail: build microVM: Internal error while starting microVM: "
    "KvmContext(KvmOpen(Error(13))) (boot process exited (code 1) before the agent was ready)"
)
#: The same failure as the VM's agent-startup-error.log words it.
UID_DROP_LOG = (
    "Error: agent operation failed: start vm: krun_start_enter returned: -22 (KVM inaccessible to the VM process "
    "after privilege drop — kvm permission denied: Cannot access /dev/kvm (permission denied).\nAdd your user to the "
    "'kvm' group:\n\nsudo usermod -aG kvm $USER\n\nThen log out and log back in for the change to take effect.); "
    "libkrun detail: build microVM: Internal error while starting microVM: KvmContext(KvmOpen(Error(13)))"
)
#: An unprivileged user, /dev/kvm root:root 0600.
USER_EACCES = (
    "agent operation failed: start machine: kvm permission denied: Cannot access /dev/kvm (permission denied).\n"
    "Add your user to the 'kvm' group:\n\nsudo usermod -aG kvm $USER\n\nThen log out and log back in for the "
    "change to take effect."
)
#: No /dev/kvm at all: the CLI, then the SDK's local_availability().
NO_KVM_CLI = (
    "agent operation failed: start machine: kvm not available: KVM not available. Ensure KVM kernel module is "
    "loaded.\nTry: sudo modprobe kvm && sudo modprobe kvm_intel  # (or kvm_amd)"
)
NO_KVM_SDK = ("KVM_UNAVAILABLE", "KVM unavailable: KVM not available. Ensure KVM kernel module is loaded.")
#: kvm_pvm with the uid drop off: the VMM runs, the guest never does.
NO_PROGRESS = (
    "agent operation failed: start machine: agent operation failed: wait for ready: agent did not become ready "
    "within 30 seconds: no boot progress for 30 seconds"
)

PVM_FLAGS = frozenset({"fpu", "sse2", "avx2", "hypervisor", "vmmcall", "lm"})


def facts(**overrides) -> HostFacts:
    """A healthy x86 KVM host (vmx, kvm group 0660, unprivileged user), changed by *overrides*."""
    base = dict(
        system="Linux",
        machine="x86_64",
        euid=1000,
        kvm_exists=True,
        kvm_owner=(0, 0),
        kvm_mode=0o660,
        cpu_flags=frozenset({"fpu", "vmx", "lm"}),
        kvm_modules=frozenset({"kvm", "kvm_intel"}),
        uid_drop=False,
    )
    return HostFacts(**{**base, **overrides})


# -- host facts ------------------------------------------------------------------------


def test_this_kind_of_machine_kvm_pvm_without_vmx_or_svm():
    reason = probe.classify_host(
        facts(euid=0, uid_drop=True, kvm_mode=0o600, cpu_flags=PVM_FLAGS, kvm_modules=frozenset({"kvm", "kvm_pvm"}))
    )
    assert reason.startswith("KVM here lacks hardware virtualization extensions: no vmx or svm")
    assert "itself a VM" in reason and "kvm_pvm" in reason
    assert "KVM_CREATE_VM succeeds, yet a libkrun guest never boots" in reason
    assert "also: /dev/kvm is root:root 0600" in reason and "unprivileged uid" in reason


def test_no_virtualization_extensions_on_bare_metal_says_so_without_the_vm_detail():
    reason = probe.classify_host(facts(cpu_flags=frozenset({"fpu", "lm"}), create_vm_errno=errno.ENODEV))
    assert "lacks hardware virtualization extensions" in reason
    assert "itself a VM" not in reason and "kvm_pvm" not in reason and "also:" not in reason
    assert ". A libkrun guest never boots" in reason


def test_missing_dev_kvm():
    reason = probe.classify_host(facts(kvm_exists=False, kvm_owner=None, kvm_mode=None))
    assert reason.startswith("no /dev/kvm")


def test_permission_denied_on_dev_kvm(monkeypatch):
    monkeypatch.setattr(probe, "_owner_mode", lambda f: "root:kvm 0660")
    reason = probe.classify_host(facts(open_errno=errno.EACCES))
    assert reason.startswith("permission denied on /dev/kvm (root:kvm 0660) for uid 1000")
    assert "group" in reason


def test_dev_kvm_that_cannot_be_opened_otherwise():
    assert "No such device" in probe.classify_host(facts(open_errno=errno.ENODEV))


def test_create_vm_busy_names_the_other_hypervisor():
    reason = probe.classify_host(facts(create_vm_errno=errno.EBUSY))
    assert reason.startswith("KVM_CREATE_VM failed") and "VirtualBox" in reason


@pytest.mark.parametrize(
    "host",
    [facts(), facts(cpu_flags=frozenset({"svm"})), facts(machine="aarch64", cpu_flags=frozenset({"fp", "asimd"})),
     facts(system="Darwin", kvm_exists=False)],
    ids=["vmx", "svm", "arm64-no-x86-flags", "macos"],
)
def test_a_healthy_looking_host_is_left_to_the_boot(host):
    assert probe.classify_host(host) is None


def test_gather_host_facts_reads_this_machine():
    gathered = probe.gather_host_facts()
    assert gathered.system and gathered.machine
    assert gathered.uid_drop == (gathered.euid == 0 and probe.uid_drop_active(gathered.euid))


def test_uid_drop_follows_smolvm_rule():
    assert probe.uid_drop_active(0, {}) is True
    assert probe.uid_drop_active(0, {"SMOLVM_VM_UID_DROP": "off"}) is False
    assert probe.uid_drop_active(1000, {}) is False


# -- the boot's error texts ---------------------------------------------------------------


# Each of these is a fact of the host (host_limit): where the tests may skip.


def test_uid_drop_permission_as_root():
    reason, host_limit = probe.classify_boot_failure("SMOLVM_ERROR", UID_DROP_EACCES, uid_drop=True)
    assert reason.startswith("permission denied on /dev/kvm for the VM process") and host_limit
    assert "SMOLVM_VM_UID_DROP=off" in reason and "KvmOpen(Error(13))" in reason


def test_uid_drop_permission_from_the_startup_log_needs_no_hint():
    reason, host_limit = probe.classify_boot_failure(None, UID_DROP_LOG)
    assert "for the VM process" in reason and host_limit


def test_user_permission():
    reason, host_limit = probe.classify_boot_failure("SMOLVM_ERROR", USER_EACCES, uid_drop=False)
    assert reason.startswith("permission denied on /dev/kvm: add this user to the group") and host_limit


@pytest.mark.parametrize("code, message", [("SMOLVM_ERROR", NO_KVM_CLI), NO_KVM_SDK])
def test_missing_kvm(code, message):
    reason, host_limit = probe.classify_boot_failure(code, message)
    assert reason.startswith("no usable /dev/kvm: ") and host_limit


def test_no_boot_progress_is_the_kvm_without_hardware_virtualization():
    reason, host_limit = probe.classify_boot_failure("SMOLVM_ERROR", NO_PROGRESS)
    assert reason.startswith("the microVM started but the guest made no boot progress") and host_limit
    assert "without hardware virtualization extensions" in reason and "no boot progress for 30 seconds" in reason


def test_hypervisor_unavailable():
    reason, host_limit = probe.classify_boot_failure("HYPERVISOR_UNAVAILABLE", "Hypervisor.framework refused")
    assert reason.startswith("no hypervisor available") and host_limit


def test_any_other_boot_failure_is_reported_with_its_message_and_is_not_the_hosts():
    """An error smolvm does not explain by the host may be bottle's call or smolvm's bug: a test must fail on it."""
    reason, host_limit = probe.classify_boot_failure("STORAGE_ERROR", "disk full\n  while formatting overlay")
    assert reason == "a tiny microVM boot failed: [STORAGE_ERROR] disk full while formatting overlay"
    assert host_limit is False


def test_parse_cli_error_finds_the_json_line_after_the_noise():
    stderr = f"{NOTE}\nStarting ephemeral machine (vm-7b370581)...\n" + json.dumps(
        {"error": {"code": "SMOLVM_ERROR", "message": UID_DROP_EACCES}}
    )
    assert probe.parse_cli_error(stderr) == ("SMOLVM_ERROR", UID_DROP_EACCES)


def test_parse_cli_error_without_json_keeps_the_tail_without_the_note():
    assert probe.parse_cli_error(f"{NOTE}\nStarting ephemeral machine (vm-1)...\nboom") == (
        None,
        "Starting ephemeral machine (vm-1)...\nboom",
    )


# -- the tiny boot ---------------------------------------------------------------------------


class FakeProcess:
    def __init__(self, argv, kwargs, *, returncode=0, output=b"", hang=False):
        self.argv, self.kwargs = argv, kwargs
        self.returncode, self._stderr, self._hang = returncode, output, hang
        self.pid = 4242

    def communicate(self, timeout=None):
        if self._hang:  # until killed
            self._hang = False
            raise subprocess.TimeoutExpired(self.argv, timeout)
        return b"", self._stderr


def popen(**behaviour):
    made = []

    def run(argv, **kwargs):
        made.append(FakeProcess(argv, kwargs, **behaviour))
        return made[-1]

    return run, made


def test_boot_argv_is_a_bare_vm_without_network():
    assert probe.boot_argv("/x/smol-vmm") == ["/x/smol-vmm", "--error-format", "json", "machine", "run", "--", "true"]


def test_tiny_boot_success():
    run, made = popen(returncode=0)
    result = probe.tiny_boot("/x/smol-vmm", run=run)
    assert result.ok and result.stage == "boot" and result.reason.startswith("a microVM booted in")
    assert made[0].kwargs["start_new_session"] is True
    assert made[0].kwargs["stdin"] == subprocess.DEVNULL


def test_tiny_boot_failure_is_classified():
    stderr = f"{NOTE}\n" + json.dumps({"error": {"code": "SMOLVM_ERROR", "message": NO_PROGRESS}})
    run, _ = popen(returncode=1, output=stderr.encode())
    result = probe.tiny_boot("/x/smol-vmm", run=run)
    assert not result.ok and "no boot progress" in result.reason and result.host_limit


def test_tiny_boot_with_an_unexplained_error_is_not_the_hosts():
    stderr = json.dumps({"error": {"code": "SMOLVM_ERROR", "message": "unknown flag --error-format"}})
    run, _ = popen(returncode=2, output=stderr.encode())
    result = probe.tiny_boot("/x/smol-vmm", run=run)
    assert (result.ok, result.host_limit) == (False, False)
    assert result.reason == "a tiny microVM boot failed: unknown flag --error-format"


def test_tiny_boot_that_hangs_is_killed_with_its_group(monkeypatch):
    killed = []
    monkeypatch.setattr(probe.os, "killpg", lambda pid, sig: killed.append((pid, sig)))
    run, _ = popen(hang=True, output=b"Starting ephemeral machine (vm-55fd3453)...\n")
    result = probe.tiny_boot("/x/smol-vmm", run=run, timeout=3)
    assert killed == [(4242, probe.signal.SIGKILL)]
    assert not result.ok and not result.host_limit  # a boot that hangs is not explained by the host
    assert result.reason.startswith("a tiny microVM boot did not finish within 3 s and was killed")
    assert "Starting ephemeral machine" in result.reason


# -- the whole probe and its cache ----------------------------------------------------------------


class Recorder:
    def __init__(self, boot=ProbeResult(True, "a microVM booted in 0.9 s", "boot"), sdk=None):
        self.boots, self.sdks = [], 0
        self._boot, self._sdk = boot, sdk

    def boot(self, binary, *, uid_drop):
        self.boots.append((binary, uid_drop))
        return self._boot

    def sdk(self):
        self.sdks += 1
        return self._sdk


def run_probe(tmp_path, recorder, host=None, environ=None, now=1_000_000.0):
    """One probe with its cache in *tmp_path*, at time *now* (seconds since the epoch)."""
    return probe.probe(
        tmp_path / "cache",
        binary=lambda: "/x/smol-vmm",
        facts=host or facts(),
        environ=environ or {},
        sdk=recorder.sdk,
        boot=recorder.boot,
        clock=lambda: now,
    )


def test_the_answer_is_cached_and_not_probed_again(tmp_path):
    recorder = Recorder()
    first = run_probe(tmp_path, recorder)
    second = run_probe(tmp_path, recorder)
    assert (first.ok, first.stage) == (True, "boot")
    assert (second.ok, second.reason, second.stage) == (True, first.reason, "cache")
    assert recorder.boots == [("/x/smol-vmm", False)] and recorder.sdks == 1
    (cached,) = (tmp_path / "cache").glob("probe-*.json")
    assert json.loads(cached.read_text())["key"]["smolmachines"] == probe.smolmachines_version()


@pytest.mark.parametrize("host_limit", [True, False])
def test_a_failure_is_cached_with_its_reason_and_whose_it_is(tmp_path, host_limit):
    recorder = Recorder(boot=ProbeResult(False, "a tiny microVM boot failed: x", "boot", host_limit=host_limit))
    run_probe(tmp_path, recorder)
    again = run_probe(tmp_path, recorder)
    assert (again.ok, again.reason, again.stage, again.host_limit) == (
        False, "a tiny microVM boot failed: x", "cache", host_limit)
    assert len(recorder.boots) == 1


def test_a_cached_answer_expires(tmp_path):
    """A user added to the kvm group changes nothing in the key: only the TTL brings the new answer."""
    recorder = Recorder()
    run_probe(tmp_path, recorder, now=1_000_000.0)
    assert run_probe(tmp_path, recorder, now=1_000_000.0 + probe.CACHE_TTL - 1).stage == "cache"
    assert run_probe(tmp_path, recorder, now=1_000_000.0 + probe.CACHE_TTL).stage == "boot"
    assert len(recorder.boots) == 2


def test_an_answer_dated_in_the_future_is_not_trusted(tmp_path):
    recorder = Recorder()
    run_probe(tmp_path, recorder, now=2_000_000.0)
    assert run_probe(tmp_path, recorder, now=1_000_000.0).stage == "boot"


def test_an_answer_cached_before_host_limit_existed_is_probed_again(tmp_path):
    """Such an answer cannot say whether a test may skip on it."""
    recorder = Recorder()
    run_probe(tmp_path, recorder)
    (cached,) = (tmp_path / "cache").glob("probe-*.json")
    data = json.loads(cached.read_text())
    del data["host_limit"]
    cached.write_text(json.dumps(data))
    assert run_probe(tmp_path, recorder).stage == "boot" and len(recorder.boots) == 2


def test_what_changes_the_answer_changes_the_key(tmp_path):
    recorder = Recorder()
    run_probe(tmp_path, recorder)
    run_probe(tmp_path, recorder, host=facts(kvm_mode=0o666))
    run_probe(tmp_path, recorder, host=facts(euid=0, uid_drop=True))
    run_probe(tmp_path, recorder, environ={"SMOLVM_VM_UID_DROP": "off"})
    assert len(recorder.boots) == 4


def test_reprobe_ignores_the_cache(tmp_path):
    recorder = Recorder()
    run_probe(tmp_path, recorder)
    run_probe(tmp_path, recorder, environ={probe.REPROBE_ENV: "1"})
    assert len(recorder.boots) == 2


def test_an_unwritable_cache_still_answers(tmp_path):
    (tmp_path / "cache").write_text("a file where the directory should be")
    recorder = Recorder()
    assert run_probe(tmp_path, recorder).ok and len(recorder.boots) == 1


def test_a_host_that_cannot_boot_is_never_booted(tmp_path):
    recorder = Recorder()
    result = run_probe(tmp_path, recorder, host=facts(cpu_flags=PVM_FLAGS, kvm_modules=frozenset({"kvm_pvm"})))
    assert (result.ok, result.stage, result.host_limit) == (False, "host", True)
    assert recorder.boots == [] and recorder.sdks == 0


@pytest.mark.parametrize("host_limit", [True, False], ids=["old-glibc", "engine-missing"])
def test_the_sdk_check_stops_before_the_boot(tmp_path, host_limit):
    objection = probe.BootFailure("the local engine needs glibc >= 2.34 [UNSUPPORTED_PLATFORM]", host_limit)
    recorder = Recorder(sdk=objection)
    result = run_probe(tmp_path, recorder)
    assert (result.ok, result.stage, result.reason, result.host_limit) == (False, "sdk", objection.reason, host_limit)
    assert recorder.boots == []


@pytest.mark.parametrize(
    ("answer", "host_limit"),
    [((False, "UNSUPPORTED_PLATFORM", "needs glibc"), True), ((False, "KVM_UNAVAILABLE", "no kvm"), True),
     ((False, "HYPERVISOR_UNAVAILABLE", "no hv"), True), ((False, "RUNTIME_NOT_INSTALLED", "no engine"), False)],
)
def test_sdk_check_says_whose_objection_it_is(monkeypatch, answer, host_limit):
    import smol

    monkeypatch.setattr(smol, "local_availability", lambda: answer)
    assert probe.sdk_check() == (f"{answer[2]} [{answer[1]}]", host_limit)


def test_cache_key_names_version_and_kernel():
    key = probe.cache_key(facts(), "1.32.2", {})
    assert key["smolmachines"] == "1.32.2"
    assert key["kernel"] == f"{probe.platform.uname().release} {probe.platform.uname().version}"
