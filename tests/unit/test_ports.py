"""``--publish`` and ``--add`` specs (``bottle.ports.Published``) and the records ``bottle ports`` lists."""

import json
import os

import pytest

from bottle.errors import UsageError
from bottle.ports import PORTS, Published, records


@pytest.mark.parametrize("spec, published", [("8080", Published(8080, 8080)), ("9000:8080", Published(9000, 8080)),
                                             (" 1:65535 ", Published(1, 65535))])
def test_a_port_or_a_pair(spec, published):
    assert Published.parse(spec, "--publish") == published


@pytest.mark.parametrize("spec", ["", "http", "0", "65536", "80:", ":80", "1:2:3", "127.0.0.1:80:80", "-1"])
def test_anything_else_is_refused_naming_the_option(spec):
    with pytest.raises(UsageError, match=r"Option --add: .* is not a port: PORT or HOST_PORT:PORT, each 1 to 65535"):
        Published.parse(spec, "--add")


def test_only_records_of_live_forwarders_are_listed(tmp_path):
    (tmp_path / PORTS).mkdir()
    (tmp_path / PORTS / "18000.json").write_text(json.dumps({"host": 18000, "guest": 80, "pid": os.getpid()}))
    (tmp_path / PORTS / "18001.json").write_text(json.dumps({"host": 18001, "guest": 81, "pid": 2**22 + 1}))
    (tmp_path / PORTS / "18002.json").write_text("{half")
    assert [record["host"] for record in records(tmp_path)] == [18000]
    assert records(tmp_path / "none") == []
