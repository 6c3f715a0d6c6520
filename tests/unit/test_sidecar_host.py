"""The sidecar host: what plugins put in place for their services (``SidecarSetup``), the init's bundle made
of it, and the image parts a plan needs. No engine: the values, and what goes on the sidecar's stdin."""

import json
from typing import ClassVar

import pytest

from bottle.errors import EnvironmentProblem, UsageError
from bottle.plan import Plan, PlanSection
from bottle.sidecar import runtime
from bottle.sidecar.kit import kit_part
from bottle.sidecar.service import CREDENTIALS, RUN_DIR, ImagePart, SecretRef, SidecarService, SidecarSetup


def test_a_secret_is_read_when_declared_and_a_missing_one_names_who_asked(tmp_path, monkeypatch):
    setup = SidecarSetup(state_dir=tmp_path)
    monkeypatch.setenv("HELLO_TOKEN", "s3cret")
    setup.secret(SecretRef(name="hello", env="HELLO_TOKEN", what="Field `hello.token`: the hello token"))
    key = tmp_path / "key"
    key.write_text("k")
    setup.secret(SecretRef(name="key", file=key, what="Field `hello.key`: the key"))
    assert setup.secrets == {"hello": "s3cret", "key": "k"}

    monkeypatch.delenv("HELLO_TOKEN")
    with pytest.raises(UsageError, match=r"^Field `hello.token`: the hello token is read from the host environment "
                                         r"variable HELLO_TOKEN, which is not set\.$"):
        setup.secret(SecretRef(name="hello", env="HELLO_TOKEN", what="Field `hello.token`: the hello token"))
    with pytest.raises(UsageError, match="the key is read from .*gone, which cannot be read"):
        setup.secret(SecretRef(name="key", file=tmp_path / "gone", what="Field `hello.key`: the key"))


def test_tmpfs_files_live_under_the_run_dir_and_state_files_in_the_state(tmp_path):
    setup = SidecarSetup(state_dir=tmp_path)
    setup.tmpfs_file(f"{RUN_DIR}/hello.json", "{}", 0o644)
    with pytest.raises(ValueError, match="under /run/bottle/"):
        setup.tmpfs_file("/etc/passwd", "root::0:0")
    assert setup.state_file("sub/hello.txt", "hi").read_text() == "hi"
    assert (tmp_path / "sub" / "hello.txt").is_file()


def test_the_bundle_holds_the_planned_services_the_files_and_every_secret_in_one_file(tmp_path):
    setup = SidecarSetup(state_dir=tmp_path)
    setup.secrets["hello"] = "s3cret"
    setup.tmpfs_file(f"{RUN_DIR}/hello.json", "{}", 0o644)
    service = SidecarService(name="hello", argv=("python", "-m", "hello"), ready="hello: up", port=8900, part="hello")
    plan = type("P", (), {"sidecar": type("S", (), {"services": (service,)})()})()

    bundle = json.loads(runtime._bundle(plan, setup))

    assert bundle["services"] == [{"name": "hello", "argv": ["python", "-m", "hello"], "ready": "hello: up"}]
    assert bundle["files"][0] == {"path": f"{RUN_DIR}/hello.json", "content": "{}", "mode": 0o644}
    assert bundle["files"][-1] == {"path": CREDENTIALS, "content": json.dumps({"hello": "s3cret"}), "mode": 0o600}


def test_the_parts_a_plan_needs_start_with_the_kit_and_an_undeclared_one_is_refused():
    hello = ImagePart(name="hello", packages=("bottle_hello_sidecar",))
    services = (SidecarService(name="a", argv=("a",), ready="a", part="hello"),
                SidecarService(name="b", argv=("b",), ready="b", part="hello"),
                SidecarService(name="c", argv=("c",), ready="c"))
    plan = type("P", (), {"sidecar": type("S", (), {"services": services})()})()
    assert runtime.needed_parts(plan, {"hello": hello}) == (kit_part(), hello)
    with pytest.raises(EnvironmentProblem, match="service 'a' needs the image part 'hello', which no loaded plugin"):
        runtime.needed_parts(plan, {})


class Greeting(PlanSection):
    SECTION: ClassVar[str] = "greeting"

    text: str


def test_a_section_reads_back_from_json_as_its_own_class(home, plugins):
    from bottle.prepare import build_plan
    from bottle.settings import load_settings

    home.profile("default", "")
    home.agent("agent")
    planned = build_plan("agent", settings=load_settings(), plugins=plugins)
    plan = planned.model_copy(update={"sections": {**planned.sections, "greeting": Greeting(text="hi")}})
    again = Plan.model_validate_json(plan.model_dump_json())
    assert again.section(Greeting) == Greeting(text="hi") and type(again.sections["greeting"]) is Greeting
    data = json.loads(plan.model_dump_json())
    data["sections"]["greeting"]["kind"] = "os:path"
    with pytest.raises(ValueError, match="'os:path' is not the PlanSection whose SECTION is 'greeting'"):
        Plan.model_validate(data)


def test_a_started_sidecar_waits_for_its_start_and_says_why_it_failed():
    from concurrent.futures import Future
    from types import SimpleNamespace

    from bottle.sidecar.runtime import StartedDockerSidecar

    failed = Future()
    failed.set_exception(EnvironmentProblem("The sidecar image 'x' is not built."))
    sidecar = StartedDockerSidecar(failed)
    sidecar.settle()  # returns: the start ended
    assert sidecar.failure() is None  # it never ran: the start's own error says it all
    with pytest.raises(EnvironmentProblem, match="is not built"):
        sidecar.wait_ready()

    container = SimpleNamespace(name="s", attrs={"NetworkSettings": {"Networks": {"net": {"IPAddress": "10.1.2.3"}}}},
                                reload=lambda: None)
    started = Future()
    started.set_result(SimpleNamespace(container=container, failure=lambda: "exit code 1", wait_ready=lambda: None))
    sidecar = StartedDockerSidecar(started)
    assert (sidecar.address("net"), sidecar.failure()) == ("10.1.2.3", "exit code 1")
    container.attrs["NetworkSettings"]["Networks"]["net"]["IPAddress"] = ""
    with pytest.raises(EnvironmentProblem, match="has no address on net"):
        sidecar.address("net")
