"""The supervise plugin's part of the plan, and the queue every bottle's supervise server shares with the operator."""

import os
from pathlib import Path
from typing import ClassVar

from pydantic import Field

from bottle.plan import PlanSection
from bottle.sidecar.runtime import hand_over
from bottle_supervise_sidecar.proposals import Queue

SERVER_PORT = 8765
QUEUE_DIR = "supervise"  # in the state root: the proposal queue every bottle shares with the operator
QUEUE_FILE = "queue.sqlite"
QUEUE_MOUNT = "/bottle/supervise"


class SupervisePlan(PlanSection):
    """The supervise channel: MCP tools for asking, hooks that report and may deny."""

    SECTION: ClassVar[str] = "supervise"

    answer_timeout: int
    deny: tuple[dict, ...]
    url: str = Field(description="the supervise server as the guest reaches it")


def prepare_queue(state_root: Path) -> Path:
    """The directory holding the queue (created, with the queue, if missing):
    what a bottle's sidecar gets bind-mounted. It is the sidecars' user's alone
    (0700): the operator's, or the sidecar user's when bottle runs as root
    (``sidecar_user``; root answers all the same). No other local user may
    read the asks or, worse, answer them."""
    directory = Path(state_root) / QUEUE_DIR
    directory.mkdir(parents=True, mode=0o700, exist_ok=True)
    os.chmod(directory, 0o700)
    Queue(directory / QUEUE_FILE)
    hand_over([directory, *directory.iterdir()])
    return directory
