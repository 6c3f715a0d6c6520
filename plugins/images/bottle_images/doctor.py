"""The images plugin's part of ``bottle doctor``: the agent, sidecar and base images, what each runs on, and
whether this bottle would run it."""

from dataclasses import asdict

from bottle.doctor import DoctorSection
from bottle.engine import BUILD_TAG_FLAG
from bottle.errors import EnvironmentProblem

MISSING = "missing: run `bottle image bootstrap` / `bottle image build`"


def images_section(settings) -> DoctorSection:
    from bottle.engine import docker_client
    from bottle_images.build import describe_versions, format_problem, image_status, image_versions

    try:
        client = docker_client(timeout=10)
    except EnvironmentProblem as err:
        return DoctorSection("images", {}, (f"image   {'':30} not checked: {err}",))
    report, lines = {}, []
    for kind, tag in (("agent", settings.image), ("sidecar", settings.sidecar_image), ("base", settings.image_base)):
        status = image_status(client, tag)
        if status is None:
            report[tag] = {"present": False}
            lines.append(f"image   {tag:30} {MISSING}")
            continue
        problem = format_problem(kind, status.labels)
        report[tag] = {"present": True, **asdict(status), "kind": kind, "versions": image_versions(status.labels),
                       "problem": problem}
        lines.append(f"image   {tag:30} present")
        if report[tag]["versions"]:
            lines.append(f"image   {'':30} {describe_versions(status.labels)}")
        if problem:
            lines.append(f"image   {'':30} NOT RUNNABLE: {problem}; "
                         f"run `bottle image build --only {kind} {BUILD_TAG_FLAG[kind]} {tag}`")
    return DoctorSection("images", report, tuple(lines))
