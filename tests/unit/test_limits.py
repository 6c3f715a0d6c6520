"""Bottle's default limits, sized from the host; a profile's own, or lifted; how Docker bounds disk."""

import pytest
from docker.errors import APIError, ImageNotFound

from bottle.limits import GiB, MiB, Host, built_in, resources, size_bytes
from bottle.manifests.profile import load_profile
from bottle.plan import Resources
from bottle_docker.backend import storage_quota, tmpfs_size


@pytest.mark.parametrize(
    ("host", "cpus", "memory"),
    [
        (Host(cores=2, memory=23 * GiB), 1.0, "8192m"),  # half the RAM is more than the cap
        (Host(cores=1, memory=3 * GiB), 1.0, "1536m"),  # a single core is the bottle's too
        (Host(cores=32, memory=256 * GiB), 31.0, "8192m"),
        (Host(cores=4, memory=8 * GiB + 5), 3.0, "4096m"),  # MiB, rounded down
    ],
)
def test_the_defaults_are_sized_from_the_host(host, cpus, memory):
    assert built_in(host) == Resources(cpus=cpus, memory=memory, pids=1024, disk="20g")


def test_this_host_is_measured():
    host = Host.this_one()
    assert host.cores >= 1 and host.memory > 256 * MiB


@pytest.fixture
def profile(home):
    return lambda name: load_profile(name, home.config_dir)


HOST = Host(cores=4, memory=16 * GiB)


def test_a_profile_without_limits_gets_the_defaults(home, profile):
    home.profile("plain", 'image = "img:x"\n')
    assert resources(profile("plain"), HOST) == built_in(HOST)


def test_a_profile_sets_or_lifts_each_limit_and_a_child_may_lift_a_parents(home, profile):
    home.profile("base", 'cpus = 0.5\nmemory = "2g"\npids = 64\ndisk = "1g"\n')
    home.profile("free", 'extends = "base"\nmemory = "unlimited"\npids = "unlimited"\n')
    assert resources(profile("base"), HOST) == Resources(cpus=0.5, memory="2g", pids=64, disk="1g")
    assert resources(profile("free"), HOST) == Resources(cpus=0.5, memory=None, pids=None, disk="1g")
    home.profile("all", 'cpus = "unlimited"\nmemory = "unlimited"\npids = "unlimited"\ndisk = "unlimited"\n')
    assert resources(profile("all"), HOST) == Resources()


@pytest.mark.parametrize(
    ("toml", "field"),
    [
        ("pids = 0", "pids"),  # not a way to lift it: "unlimited" is
        ('pids = "none"', "pids"),
        ("pids = 1.5", "pids"),
        ('memory = "0"', "memory"),
        ('memory = "Unlimited"', "memory"),
        ('disk = "20 GB"', "disk"),
        ("disk = 20", "disk"),
        ("cpus = 2000", "cpus"),
        ("cpus = true", "cpus"),
    ],
)
def test_a_bad_limit_names_the_file_the_field_and_how_to_lift_it(home, profile, usage_error, toml, field):
    path = home.profile("bad", toml + "\n")
    usage_error(lambda: profile("bad"), path, f"`{field}`", '"unlimited"')


def test_more_cpus_than_the_host_has_is_refused_before_the_engine_sees_it(home, profile, usage_error):
    path = home.profile("greedy", "cpus = 6\n")
    usage_error(lambda: resources(profile("greedy"), HOST), path, "field `cpus`", "more than the 4", '"unlimited"')
    home.profile("all", "cpus = 4\n")
    assert resources(profile("all"), HOST).cpus == 4.0


@pytest.mark.parametrize(
    ("spec", "size"), [("512m", 512 * MiB), ("4G", 4 * GiB), ("100k", 102400), ("7", 7), ("3b", 3)]
)
def test_size_bytes(spec, size):
    assert size_bytes(spec) == size


def test_tmpfs_size_is_disk_but_at_most_half_the_memory():
    assert tmpfs_size(Resources(memory="8g", disk="20g")) == 4 * GiB
    assert tmpfs_size(Resources(memory="8g", disk="1g")) == GiB
    assert tmpfs_size(Resources(memory=None, disk="20g")) == 20 * GiB


class FakeEngine:
    """What storage_quota asks of the engine: its info, and a probe container (refused with *refusal*)."""

    def __init__(self, driver: str, backing: str | None, refusal: Exception | None = None):
        status = [["Backing Filesystem", backing]] if backing else []
        self._info = {"Driver": driver, "DriverStatus": status}
        self.refusal, self.created, self.removed = refusal, [], []
        self.api = self

    def info(self):
        return self._info

    def create_host_config(self, **config):
        return config

    def create_container(self, image, **kwargs):
        if self.refusal is not None:
            raise self.refusal
        self.created.append((image, kwargs["host_config"]))
        return {"Id": "probe"}

    def remove_container(self, ref, **kwargs):
        self.removed.append(ref)


def test_no_quota_where_the_storage_has_none_and_no_container_is_made_to_ask():
    engine = FakeEngine("overlay2", "extfs")
    assert storage_quota(engine, "img", "20g") == (False, "overlay2 over extfs has no disk quota per container")
    assert engine.created == []


def test_a_storage_that_may_have_a_quota_is_asked_with_a_container_it_then_removes():
    engine = FakeEngine("overlay2", "xfs")
    quota, why = storage_quota(engine, "img", "1g")
    assert quota and "overlay2 over xfs" in why
    assert engine.created == [("img", {"storage_opt": {"size": str(GiB)}})] and engine.removed == ["probe"]


@pytest.mark.parametrize(
    ("refusal", "said"),
    [
        (APIError("500", explanation="--storage-opt is supported only for overlay over xfs with 'pquota' mount option"),
         "refuses a disk quota per container: --storage-opt is supported only"),
        (ImageNotFound("no such image"), "the image img to try it with is not built"),
    ],
)
def test_a_storage_that_refuses_the_quota_has_none(refusal, said):
    quota, why = storage_quota(FakeEngine("overlay2", "xfs", refusal), "img", "1g")
    assert not quota and said in why
