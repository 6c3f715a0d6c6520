"""``bottle ports``: which ports of a bottle this machine reaches, and publishing one more while it runs."""

import time
from typing import Optional

import typer

from bottle.cli.common import SLUG

#: Seconds between two looks at whether the bottle still runs, while ``--add`` forwards.
WATCH = 1.0


def ports(
    slug: str = SLUG,
    add: Optional[str] = typer.Option(None, "--add", metavar="PORT", help="Publish PORT (or HOST_PORT:PORT) on "
                                      "127.0.0.1 until Ctrl-C or the bottle stops; the server must listen on 0.0.0.0 "
                                      "in the bottle."),
    as_json: bool = typer.Option(False, "--json", help="Print the published ports as JSON."),
) -> None:
    """List the ports of a running bottle published on this machine's loopback (`bottle run --publish`), or
    publish one more (--add), as `kubectl port-forward` does: this command forwards while it runs."""
    from bottle.cli.common import print_json
    from bottle.cli.manage import find
    from bottle.errors import UsageError
    from bottle.ports import Forwarder, Published, records

    bottle = find(slug)
    if bottle.stored is None:
        raise UsageError(f"Bottle {slug!r} has no state dir here: its ports are not known to this user.")
    if add is None:
        published = records(bottle.stored.state_dir)
        if as_json:
            print_json(published)
            return
        for record in published:
            print(f"{record['address']} -> {slug}:{record['guest']}")
        if not published:
            print(f"no port of {slug} is published")
        return
    if bottle.status != "running":
        raise UsageError(f"Bottle {slug!r} is {bottle.status}, not running: publish a port of it with "
                         f"`bottle resume {slug} --publish PORT`.")
    forwarder = Forwarder(bottle.backend, slug, Published.parse(add, "--add"), bottle.stored.state_dir).start()
    print(f"127.0.0.1:{forwarder.published.host} -> {slug}:{forwarder.published.guest} (Ctrl-C stops)", flush=True)
    try:
        while any(info.slug == slug and info.status == "running" for info in bottle.backend.list()):
            time.sleep(WATCH)
        print(f"bottle {slug} stopped")
    except KeyboardInterrupt:
        pass
    finally:
        forwarder.stop()
