"""The git plugin's profile table ``[git]``: the gate between the agent's commits and the real remote.

``extends`` layers merge field by field (a child sets only what it changes);
whether upstream, credential and host key can work together is checked on
the merged table (a child may complete its parent).
"""

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, ValidationInfo, field_validator, model_validator

from bottle.manifests.tables import ProfileTable


class GitIdentity(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field("bottle agent", min_length=1)
    email: str = Field("agent@bottle.invalid", pattern=r"^[^@\s]+@[^@\s]+$")


class GitCredential(BaseModel):
    """How the gate authenticates upstream; the value is read on the host at launch."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["token", "ssh_key"]
    env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="host variable holding it")
    file: Path | None = Field(None, description="host file holding it (an SSH private key, say)")
    username: str = Field("x-access-token", description="HTTP user sent with a token")

    @field_validator("file")
    @classmethod
    def _expand(cls, file: Path | None) -> Path | None:
        return file.expanduser() if file is not None else None

    @model_validator(mode="after")
    def _one_source(self) -> "GitCredential":
        if (self.env is None) == (self.file is None):
            raise ValueError("give exactly one of `env` (a host variable) or `file` (a host file)")
        return self


def upstream_transport(upstream: str) -> str:
    """How the gate reaches *upstream*: "local" (a path), "ssh" (git's scp-like ``[user@]host:path``) or the
    URL's scheme; by the gate's own rule, so that what is refused here is what the gate could not do."""
    from bottle_gitgate_sidecar.gitgate import is_ssh

    if "://" in upstream:
        return upstream.split("://", 1)[0].lower()
    return "ssh" if is_ssh(upstream) else "local"


class GitConfig(BaseModel):
    """``[git]``: the gate between the agent's commits and the real remote."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    upstream: str | None = Field(None, description="the real remote: ssh or https URL, or a local path")
    push_refs: tuple[str, ...] = Field(
        ("refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*"),
        description="refs the agent may push: fnmatch globs over full ref names, {slug} replaced by the bottle's "
        "slug. The default is the bottle's own branch and those below it, so that no bottle moves another's; "
        'refs/heads/bottle/* lets bottles share. An agent\'s `branch` is its work branch when these allow it, '
        "else it starts from that branch and works on bottle/<slug>",
    )
    fetch_refs: tuple[str, ...] | None = Field(
        None,
        description="refs the agent may fetch besides push_refs (globs, {slug} replaced; HEAD: upstream's default "
        "branch); nothing else of upstream enters the gate. Default: HEAD and the agent's `branch`",
    )
    protected: tuple[str, ...] | None = Field(None, description="refs never updated; default: upstream's default branch")
    allow_force: StrictBool = False
    identity: GitIdentity = GitIdentity()
    max_push_mb: StrictInt = Field(50, gt=0)
    max_push_refs: StrictInt = Field(20, gt=0, description="refs one push may update (each is checked and audited)")
    credential: GitCredential | None = None
    known_hosts: str | None = Field(None, description="upstream's SSH host key line(s), pinned")

    def pairing_problem(self) -> tuple[str, str] | None:
        """The field and why, if upstream, credential and known_hosts cannot work together.

        These are the gate's own rules (``bottle_gitgate_sidecar.gitgate``), checked
        when the profile is read instead of once the sidecar has started: a
        token goes in an HTTPS header only, a key goes to ssh, the gate reads a
        local upstream directly, and it pins ``known_hosts`` only for the ssh
        it runs with the key (without one, the sidecar's ssh has no way in).
        Only the merged profile is checked: a child may set what its parent lacks.
        """
        upstream = self.upstream or "the repository under work (`git.upstream` is not set)"
        transport = upstream_transport(self.upstream) if self.upstream else "local"
        kind = self.credential.kind if self.credential else None
        if kind and transport == "local":
            return "git.credential", f"upstream is {upstream}, a local path, which the gate reads with no credential"
        if kind == "token" and transport != "https":
            return "git.credential.kind", (
                f'"token" is sent in an HTTPS header, but upstream {upstream} is not https://; '
                'an ssh upstream takes { kind = "ssh_key", file = "~/.ssh/KEY" }'
            )
        if kind == "ssh_key" and transport != "ssh":
            return "git.credential.kind", (
                f'"ssh_key" needs an ssh upstream (ssh://... or user@host:path), but upstream is {upstream}; '
                'an https:// upstream takes { kind = "token", env = "VARIABLE" }'
            )
        if transport == "ssh" and kind is None:
            return "git.credential", (
                f'the ssh upstream {upstream} needs credential = {{ kind = "ssh_key", file = "~/.ssh/KEY" }}: '
                "the sidecar holds no other SSH key"
            )
        if self.known_hosts is not None and kind != "ssh_key":
            return "git.known_hosts", (
                f"it pins the SSH host key of an ssh upstream reached with an ssh_key credential; upstream is {upstream}"
            )
        return None

    @field_validator("push_refs", "fetch_refs", "protected")
    @classmethod
    def _full_ref_names(cls, patterns: tuple[str, ...] | None, info: ValidationInfo) -> tuple[str, ...] | None:
        # The gate matches full ref names; it would refuse "bottle/*" only once the sidecar starts.
        head = info.field_name == "fetch_refs"  # where HEAD (upstream's default branch) may stand too
        for pattern in patterns or ():
            if not pattern.startswith("refs/") and not (head and pattern == "HEAD"):
                raise ValueError(f"{pattern!r} is not a full ref name: patterns start with refs/ (refs/heads/bottle/*)"
                                 + (", or are HEAD" if head else ""))
        return patterns


TABLES = (ProfileTable(key="git", model=GitConfig, default=GitConfig, check=GitConfig.pairing_problem),)
