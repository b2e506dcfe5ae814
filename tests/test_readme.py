"""Every code block of README.md runs, so the README cannot drift from the code.

A fenced block in ``python``, ``bash``, ``sh``, ``shell`` or without a language is code and is
run here, unless the HTML comment right before it (blank lines allowed in between) says
otherwise. The comment starts with ``<!-- readme-test`` and holds one directive per line:

- ``skip: REASON``: not runnable here (installs, hours of work, placeholders); a reason is required.
- ``setup:`` followed by Python lines (up to the closing ``-->``): run before a Python block, in
  the same namespace (the data the block assumes, e.g. a normal map).
- ``replace: OLD => NEW``: text substitution before running (tiny arguments for big jobs,
  dropping install steps); OLD must occur in the block.
- ``in-file: PATH``: the block's text must also appear verbatim in PATH (e.g. ``.ci/run``).

Blocks whose language is anything else (``text``, ``toml``...) are not code. Python blocks are
run in one process with the working directory a temporary folder; shell blocks with
``bash -e`` there, with this interpreter's ``bin`` folder first on PATH.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
CODE_LANGS = {"python", "bash", "sh", "shell", ""}


def _blocks() -> list[dict]:
    """The README's fenced blocks: language, code, line number and the directives before them."""
    lines = README.read_text(encoding="utf-8").splitlines()
    out, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        start, lang = i, m.group(1)
        j = i + 1
        while j < len(lines) and lines[j].strip() != "```":
            j += 1
        code = "\n".join(lines[i + 1 : j]) + "\n"
        # the directive comment right before the fence (blank lines allowed)
        k = start - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        directives: dict = {"replace": [], "setup": "", "skip": None, "in-file": []}
        if k >= 0 and lines[k].strip().endswith("-->"):
            e = k
            while k >= 0 and "<!--" not in lines[k]:
                k -= 1
            comment = lines[k : e + 1]
            if comment[0].strip().startswith("<!-- readme-test"):
                _parse(comment, directives, start + 1)
        out.append({"lang": lang, "code": code, "line": start + 1, **directives})
        i = j + 1
    return out


def _parse(comment: list[str], d: dict, line: int) -> None:
    body = list(comment)
    body[0] = body[0].strip()[len("<!-- readme-test") :].lstrip(":").strip()
    body[-1] = body[-1].rstrip()[: -len("-->")] if body[-1].rstrip().endswith("-->") else body[-1]
    setup = None
    for raw in body:
        s = raw.strip()
        if setup is not None and not re.match(r"^(skip|replace|in-file):", s):
            setup.append(raw)
            continue
        if not s:
            continue
        if s.startswith("skip:"):
            d["skip"] = s[5:].strip()
        elif s.startswith("replace:"):
            m = re.match(r"^(.+?) =>(?: (.*))?$", s[8:].strip())
            assert m, f"README line {line}: replace needs 'OLD => NEW' (NEW may be empty); got {s!r}"
            d["replace"].append((m.group(1), m.group(2) or ""))
        elif s.startswith("in-file:"):
            d["in-file"].append(s[8:].strip())
        elif s.startswith("setup:"):
            setup = [s[6:]]
        else:
            raise AssertionError(f"README line {line}: unknown readme-test directive {s!r}")
    if setup is not None:
        d["setup"] = "\n".join(setup) + "\n"


BLOCKS = [b for b in _blocks() if b["lang"] in CODE_LANGS]


def test_readme_has_code_blocks_and_every_skip_has_a_reason():
    assert len(BLOCKS) >= 5
    for b in BLOCKS:
        assert b["skip"] is None or len(b["skip"]) >= 10, f"README line {b['line']}: skip needs a reason"
        for path in b["in-file"]:
            assert b["code"].strip() in (ROOT / path).read_text(), (
                f"README line {b['line']}: block not verbatim in {path}"
            )


def _apply(b: dict) -> str:
    code = b["code"]
    for old, new in b["replace"]:
        assert old in code, f"README line {b['line']}: replace: {old!r} is not in the block"
        code = code.replace(old, new)
    return code


@pytest.mark.parametrize("block", [b for b in BLOCKS if b["skip"] is None], ids=lambda b: f"line{b['line']}")
def test_readme_block_runs(block, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code = _apply(block)
    if block["lang"] == "python":
        ns: dict = {"__name__": "__readme__"}
        exec(compile(block["setup"], f"README.md:{block['line']}:setup", "exec"), ns)
        exec(compile(code, f"README.md:{block['line']}", "exec"), ns)
        return
    assert not block["setup"], f"README line {block['line']}: setup is for Python blocks"
    env = {**os.environ, "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    p = subprocess.run(
        ["bash", "-e", "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=240, check=False
    )
    assert p.returncode == 0, f"README line {block['line']} failed ({p.returncode}):\n{code}\n{p.stderr[-3000:]}"
