"""``bottle plugins`` and ``bottle doctor``: what is installed and what works."""

import typer


def plugins(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """List loaded plugins: name, distribution, version, the hooks each implements and what it provides."""
    from bottle.cli.common import print_json, settings_and_plugins

    settings, loaded = settings_and_plugins()
    infos = loaded.info()
    if as_json:
        print_json(
            {
                "plugins": infos,
                "distributions": _distributions(infos),
                "failed": loaded.failures,
                "disabled": list(loaded.disabled),
                "not_allowed": list(loaded.not_allowed),
                "backends": sorted(loaded.backends),
            }
        )
        return
    for plugin in infos:
        print(f"{plugin.name:12} {plugin.distribution} {plugin.version}{' (essential)' if plugin.essential else ''}")
        print(f"{'':12} hooks: {', '.join(plugin.hooks)}")
        for kind in PROVIDED:
            if getattr(plugin, kind):
                print(f"{'':12} {kind}: {', '.join(getattr(plugin, kind))}")
    for name, error in loaded.failures.items():
        print(f"{name:12} FAILED: {error}")
    for name in loaded.disabled:
        print(f"{name:12} disabled by BOTTLE_DISABLE_PLUGINS")
    for name in loaded.not_allowed:
        print(f"{name:12} not in BOTTLE_PLUGINS")


#: What a plugin may provide besides hook implementations, as PluginInfo names it.
PROVIDED = ("backends", "commands", "tables", "sidecar_parts")


def _distributions(infos) -> list[dict]:
    """The plugins grouped by the distribution that installed them, with what each distribution provides."""
    grouped: dict[tuple[str, str], list] = {}
    for info in infos:
        grouped.setdefault((info.distribution, info.version), []).append(info)
    return [
        {
            "name": name,
            "version": version,
            "plugins": [info.name for info in members],
            "hooks": sorted({hook for info in members for hook in info.hooks}),
            **{kind: sorted(item for info in members for item in getattr(info, kind)) for kind in PROVIDED},
        }
        for (name, version), members in sorted(grouped.items())
    ]


def doctor(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")) -> None:
    """Check this machine: each backend (available or why not), images, config files found.

    Exits 1 when no backend can run here, after the whole report.
    """
    from bottle import paths
    from bottle.cli.common import print_json, settings_and_plugins
    from bottle.errors import EnvironmentProblem

    settings, loaded = settings_and_plugins()
    report: dict = {"backends": {}, "config": {}, "plugin_failures": loaded.failures}
    for name, backend in sorted(loaded.backends.items()):
        availability = backend.availability()
        report["backends"][name] = {"available": availability.ok, "reason": availability.reason}
    sections = [section for section in loaded.hook.bottle_doctor(settings=settings) if section is not None]
    for section in sections:
        report[section.key] = section.data
    config_dir = paths.config_dir()
    project = paths.project_dir() / ".bottle"
    for label, path in {
        "config file": paths.config_file(),
        "profiles": config_dir / "bottles",
        "user agents": config_dir / "agents",
        "user skills": config_dir / "skills",
        "repo agents": project / "agents",
        "repo skills": project / "skills",
        "state root": paths.state_root(),
    }.items():
        report["config"][label] = {"path": str(path), "exists": path.exists()}
    report["limits"] = _limits(settings.image, loaded.backends, report["backends"])
    if as_json:
        print_json(report)
    else:
        _print_report(report, [line for section in sections for line in section.lines])
    if not any(result["available"] for result in report["backends"].values()):
        names = ", ".join(report["backends"]) or "none is installed"
        raise EnvironmentProblem(f"No backend can run here ({names}); the report says why.")


def _limits(image: str, backends: dict, availability: dict) -> dict:
    """Bottle's default limits on this machine, and how each backend that runs here bounds disk."""
    from bottle.limits import Host, built_in

    defaults = built_in(Host.this_one())
    disk = {name: backend.disk_bound(image, defaults.disk) for name, backend in sorted(backends.items())
            if availability[name]["available"]}
    return {"defaults": defaults.model_dump(), "disk": {name: how for name, how in disk.items() if how}}


def _print_report(report: dict, plugin_lines: list[str]) -> None:
    for name, result in report["backends"].items():
        mark = "ok " if result["available"] else "NO "
        print(f"backend {name:10} {mark} {result['reason']}")
    for line in plugin_lines:
        print(line)
    for label, result in report["config"].items():
        print(f"config  {label:12} {'found  ' if result['exists'] else 'absent '} {result['path']}")
    for name, error in report["plugin_failures"].items():
        print(f"plugin  {name:12} FAILED: {error}")
    defaults = " ".join(f"{name}={value}" for name, value in report["limits"]["defaults"].items())
    print(f'limits  {"defaults":12} {defaults} (a profile sets each, or lifts it with "unlimited")')
    for name, how in report["limits"]["disk"].items():
        print(f"limits  {name:12} disk: {how}")
