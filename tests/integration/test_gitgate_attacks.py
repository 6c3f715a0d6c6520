"""Attacks on the git gate from inside real bottles, as the agent: issue 10, item 6.

Two bottles on one local upstream must neither move nor read each other's
branches (nor upstream's unrelated ones), and a secret must not leave in any
part of a push: a file name, an identity, a ref name, a commit header, an
annotated tag or a blob reached without a commit. Every refusal names what
found the secret and where, never the secret, and leaves upstream as it was.
"""

import base64
import hashlib
import random
import string

import pytest

from tests.integration.test_escape import bottles  # noqa: F401  (a fixture)
from tests.integration.test_gitgate_bottle import _refusal, git, refs, upstream  # noqa: F401  (upstream: a fixture)

pytestmark = pytest.mark.integration

# GitHub's token shape, made here: no vendor's documented example, no literal in this file.
GITHUB_TOKEN = "ghp_" + "".join(random.Random(10).choices(string.ascii_letters + string.digits, k=36))
COMMIT = "git -c core.hooksPath=/dev/null commit --quiet"
FRESH = "cd /workspace && git reset --quiet --hard origin/main &&"


def gate_lines(out: str) -> str:
    """What the gate said to the agent (git relays it as "remote:" lines), without git's own report
    of the refs, which names them as the agent wrote them."""
    return "\n".join(line for line in out.splitlines() if line.startswith("remote:"))


def raw_push(ref: str, new: str) -> bytes:
    """A receive-pack request creating *ref* at *new* (an object the gate has), with an empty pack:
    what git's client would not send for a ref name it finds invalid."""
    command = f"{'0' * 40} {new} {ref}\0report-status side-band-64k\n".encode()
    pack = b"PACK" + (2).to_bytes(4, "big") + (0).to_bytes(4, "big")
    return b"%04x" % (len(command) + 4) + command + b"0000" + pack + hashlib.sha1(pack).digest()


def sideband_messages(answer: bytes) -> str:
    """The messages (band 2) in a receive-pack answer: what ``git push`` shows as "remote:" lines,
    however receive-pack cut them into packets."""
    messages, at = [], 0
    while at + 4 <= len(answer):
        size = int(answer[at:at + 4], 16)
        if size > 4 and answer[at + 4] == 2:
            messages.append(answer[at + 5:at + size])
        at += max(size, 4)
    return b"".join(messages).decode(errors="replace")


@pytest.fixture
def unrelated(upstream):
    """The shared upstream, with a branch of a person's that no bottle has business with."""
    git("branch", "feature", "main", cwd=upstream)
    return upstream


def test_bottles_neither_move_nor_read_each_others_branches(home, api_profile, unrelated, bottles):  # noqa: F811
    home.profile("default", api_profile(extra="") + f'\n[git]\nupstream = "{unrelated}"\n')
    first, second = bottles("first"), bottles("second")
    code, out = second.sh(f"{FRESH} echo mine > mine.txt && git add mine.txt && {COMMIT} -m 'the work' "
                          "&& git push 2>&1", timeout=30)
    assert code == 0, out
    theirs = f"refs/heads/bottle/{second.slug}"
    before = refs(unrelated)

    fetches = {name: first.sh(f"cd /workspace && git fetch origin {name} 2>&1", timeout=30)
               for name in (theirs, "refs/heads/bottle/other", "refs/heads/feature")}
    by_id = first.sh(f"cd /workspace && git fetch origin {before[theirs]} 2>&1", timeout=30)
    listed = first.sh("cd /workspace && git ls-remote origin", timeout=30)
    # Build on their branch if it can be had, and fast-forward it.
    onto = first.sh(f"cd /workspace && git fetch --quiet origin {theirs}; git reset --quiet --hard FETCH_HEAD; "
                    f"echo mine > onto.txt && git add onto.txt && {COMMIT} -m onto && "
                    f"git push origin HEAD:{theirs} 2>&1", timeout=30)

    # Every attack at once: which got through, not only the first.
    got_through = [f"fetch {name}: exit {code}: {out}" for name, (code, out) in fetches.items()
                   if code == 0 or "couldn't find remote ref" not in out]
    if by_id[0] == 0:
        got_through.append(f"fetch of {theirs}'s commit by its id: {by_id[1]}")
    served = sorted(line.split("\t")[1] for line in listed[1].splitlines())
    if listed[0] != 0 or served != ["HEAD", "refs/heads/main"]:
        got_through.append(f"ls-remote: exit {listed[0]}: {served}")
    own = f"refs/heads/bottle/{first.slug}"
    refusal = f"{theirs} is not a ref the agent may push (allowed: {own}, {own}/*)"
    if onto[0] == 0 or _refusal(onto[1], theirs) != refusal:
        got_through.append(f"push onto {theirs}: exit {onto[0]}: {gate_lines(onto[1]) or onto[1]}")
    assert not got_through, "\n".join(got_through)
    assert refs(unrelated) == before, "one bottle moved another's branch"


def test_a_secret_anywhere_in_a_push_is_refused(home, api_profile, upstream, bottles):  # noqa: F811
    allowed = '["refs/heads/bottle/{slug}", "refs/heads/bottle/{slug}/*", "refs/tags/bottle/{slug}/*"]'
    home.profile("default", api_profile(extra="") + f'\n[git]\nupstream = "{upstream}"\npush_refs = {allowed}\n')
    bottle = bottles("leaker")
    own, token = f"bottle/{bottle.slug}", GITHUB_TOKEN
    branch, tag = f"refs/heads/{own}", f"refs/tags/{own}"
    crafted = (  # a commit with a header of its own, which git's porcelain cannot write
        "t=$(git rev-parse HEAD^{tree}) && p=$(git rev-parse HEAD) && c=$(printf "
        "'tree %s\\nparent %s\\nauthor A <a@example.org> 1700000000 +0000\\n"
        "committer A <a@example.org> 1700000000 +0000\\nx-note %s\\n\\ncrafted\\n' "
        f'"$t" "$p" "{token}" | git hash-object -t commit -w --stdin --literally) && '
        f'git push origin "$c:{branch}/header"'
    )
    cases = {  # what the agent runs (each to a ref of its own), the ref the gate names, how its reason begins
        "file name": (f'mkdir notes && echo fine > "notes/{token}.txt" && git add notes && {COMMIT} -m notes '
                      f"&& git push origin HEAD:{branch}/name", f"{branch}/name",
                      "the push holds what looks like a secret: GitHub Token in a file or directory name (commit "),
        "author": (f"{COMMIT} --allow-empty -m hello --author 'Agent <{token}@example.org>' "
                   f"&& git push origin HEAD:{branch}/author", f"{branch}/author",
                   "the push holds what looks like a secret: GitHub Token in the author (commit "),
        # The gate names the ref with the secret replaced by its marker (the first this gate made).
        "ref name": (f"git push origin HEAD:{branch}/{token}", f"{branch}/[bottle:redacted:github-token:1]",
                     "the ref name holds what looks like a secret: GitHub Token"),
        "commit header": (crafted, f"{branch}/header",
                          "the push holds what looks like a secret: GitHub Token in an extra header (commit "),
        "tag message": (f"git tag -a -m 'notes {token}' {own}/v1 && git push origin {tag}/v1", f"{tag}/v1",
                        "the push holds what looks like a secret: GitHub Token in the message (tag "),
        "tag to a blob": (f"b=$(printf 'k = %s\\n' {token} | git hash-object -w --stdin) "
                          f'&& git push origin "$b:{tag}/blob"', f"{tag}/blob",
                          "the push holds what looks like a secret: GitHub Token in the content (blob "),
        "bidi in a ref name": (f"git push origin 'HEAD:{branch}/x\u202ey'", f"{branch}/x\\u202ey",
                               "the ref name holds U+202E RIGHT-TO-LEFT OVERRIDE"),
    }
    before = refs(upstream)
    results = {case: bottle.sh(f"{FRESH} {script} 2>&1", timeout=30) for case, (script, _, _) in cases.items()}
    after = refs(upstream)
    # ESC, which git's client will not send: the receive-pack request written by hand.
    request = base64.b64encode(raw_push(f"{branch}/a\x1bb", before["refs/heads/main"])).decode()
    esc = bottle.sh(f"echo {request} | base64 -d > /tmp/push && curl -sS --noproxy '*' -H 'Content-Type: "
                    "application/x-git-receive-pack-request' --data-binary @/tmp/push "
                    "http://sidecar:8418/repo.git/git-receive-pack | base64 -w0", timeout=30)
    many = bottle.sh(f"{FRESH} git push origin $(seq -f 'HEAD:{branch}/many-%g' 21) 2>&1", timeout=30)
    clean = bottle.sh(f"{FRESH} echo fine > fine.txt && git add fine.txt && {COMMIT} -m fine "
                      f"&& git push origin HEAD:{branch} 2>&1", timeout=30)

    # Every attack at once, each with what the gate said: which got through, not only the first.
    got_through = [f"{case}: exit {code}: {gate_lines(out) or out}" for case, (_, ref, why) in cases.items()
                   for code, out in [results[case]] if code == 0 or not _refusal(out, ref).startswith(why)]
    said = sideband_messages(base64.b64decode(esc[1]))
    if f"{branch}/a\\x1bb: refused: the ref name holds U+001B (a control character)" not in said:
        got_through.append(f"ESC in a ref name: {said or esc[1]}")
    if many[0] == 0 or "remote: the push updates 21 refs, more than the 20 a push may update" not in many[1]:
        got_through.append(f"21 refs in one push: exit {many[0]}: {gate_lines(many[1])[:400]}")
    assert not got_through, "\n".join(got_through)
    shown = "".join(gate_lines(out) for _, out in results.values())
    assert token not in shown and "\u202e" not in shown
    assert after == before, "a refused push changed upstream"
    assert set(refs(upstream)) == set(before) | {branch}, "only the clean push may land"
    assert clean[0] == 0, clean[1]
    assert token not in (home.state / bottle.slug / "sidecar" / "audit.sqlite").read_bytes().decode(errors="replace")
