"""benchmarks/gitgate.py pushes 50 MB of random bytes through the gate: they must never look like a secret, or
the gate refuses the push and the benchmark fails at random (as it did on fresh clones)."""

from benchmarks.gitgate import HIGH_BYTES, undetectable_random
from bottle_sidecar.secrets_scan import Scanner, builtin


def test_every_byte_but_the_newline_is_outside_ascii():
    assert all(byte >= 0x80 or byte == 0x0A for byte in HIGH_BYTES)
    sample = undetectable_random(1 << 20)
    assert len(set(sample)) > 100 and all(byte >= 0x80 or byte == 0x0A for byte in sample)


def test_no_detector_can_start_outside_ascii():
    """Each built-in detector's pattern needs an ASCII character (its first is a letter, a digit or a sign)."""
    for detector in builtin():
        assert detector.regex.search(bytes(range(0x80, 0x100)) * 64 + b"\n") is None, detector.name


def test_a_large_sample_scans_clean():
    assert Scanner().scan(undetectable_random(8 << 20)) is None
