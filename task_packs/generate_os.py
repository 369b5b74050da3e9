"""Generate the operations task pack (task_packs/os.jsonl) and its reference solutions
(tests/task_packs/solutions/os.jsonl).

Each task is a request an operator might make of the agent (tidy a folder, count log
errors, rotate logs under a size budget, edit a config without disturbing the rest, write a
small script, do a git chore, ...). A task has a bash setup that builds realistic fixtures in
an empty workspace and a bash check that verifies the outcome and that nothing else was
damaged. Fixture contents are produced here, so expected values (counts, file lists,
sha256 checksums) are computed here and embedded in the checks: the agent never sees the
checks and cannot read or change what they expect.

Everything is drawn from seeded random.Random instances, one per family, so the output is
byte-identical on every run and editing one family does not reshuffle the others.

Splits: families present in both splits draw file names and values from disjoint train and
test pools (about 60/40). The cron, diskusage and git families are test-only: they exercise
the same skills (line-preserving edits, sizes, commands with exact effects) on chores never
seen in training, to measure transfer.

Regenerate both files with:  .venv/bin/python task_packs/generate_os.py
"""

from __future__ import annotations

import hashlib
import json
import random
import shlex
import textwrap
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

T = TypeVar("T")
SEED = 20260105
HERE = Path(__file__).resolve().parent
PACK_PATH = HERE / "os.jsonl"
SOLUTIONS_PATH = HERE.parent / "tests" / "task_packs" / "solutions" / "os.jsonl"
q = shlex.quote


@dataclass(frozen=True)
class Draft:
    """One task before it gets its id and split."""
    goal: str
    setup: str
    check: str
    solution: str
    tags: tuple[str, ...] = ()
    timeout_s: int = 120


Variant = Callable[[random.Random, str], Draft]


@dataclass(frozen=True)
class Family:
    name: str
    train: int
    test: int
    variants: tuple[Variant, ...]


def pick(rng: random.Random, split: str, train: Sequence[T], test: Sequence[T]) -> T:
    """Parameters come from disjoint pools per split, so test tasks are unseen instances."""
    return rng.choice(train if split == "train" else test)


def phrase(rng: random.Random, templates: Sequence[str], **values: object) -> str:
    return rng.choice(templates).format(**values)


def sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def blob_bytes(seed: str, size: int) -> bytes:
    # Incompressible, so du and apparent sizes agree even on compressing file systems.
    return random.Random(seed).randbytes(size)


def heredoc(path: str, text: str) -> str:
    assert text.endswith("\n") and "\nEOF\n" not in "\n" + text, path
    return f"cat > {q(path)} <<'EOF'\n{text}EOF"


BLOB_WRITER = """python3 - <<'PY'
import random
for path, size, seed in {items}:
    with open(path, 'wb') as f:
        f.write(random.Random(seed).randbytes(size))
PY"""


@dataclass
class Tree:
    """Fixture files a setup writes; their bytes stay here so checks can embed checksums."""
    data: dict[str, bytes] = field(default_factory=dict)
    texts: list[str] = field(default_factory=list)
    blobs: list[tuple[str, int, str]] = field(default_factory=list)
    after: list[str] = field(default_factory=list)

    def text(self, path: str, content: str, mtime: str | None = None, mode: str | None = None) -> None:
        self.data[path] = content.encode()
        self.texts.append(path)
        self._meta(path, mtime, mode)

    def blob(self, path: str, size: int, mtime: str | None = None, mode: str | None = None) -> None:
        seed = f"{path}:{size}"
        self.data[path] = blob_bytes(seed, size)
        self.blobs.append((path, size, seed))
        self._meta(path, mtime, mode)

    def _meta(self, path: str, mtime: str | None, mode: str | None) -> None:
        if mtime:
            self.after.append(f"touch -d {q(mtime)} {q(path)}")
        if mode:
            self.after.append(f"chmod {mode} {q(path)}")

    def only(self, paths: Sequence[str]) -> dict[str, bytes]:
        return {p: self.data[p] for p in paths}

    def setup(self, *extra: str) -> str:
        parts = ["set -e"]
        dirs = sorted({str(Path(p).parent) for p in self.data} - {"."})
        if dirs:
            parts.append("mkdir -p " + " ".join(q(d) for d in dirs))
        parts += [heredoc(p, self.data[p].decode()) for p in self.texts]
        if self.blobs:
            parts.append(BLOB_WRITER.format(items=repr(self.blobs)))
        return "\n".join(parts + self.after + list(extra))


# ---------------------------------------------------------------- check building blocks

PRELUDE = 'fail() { echo "check failed: $*"; exit 1; }'


def check(*parts: str) -> str:
    return "\n".join((PRELUDE, *parts))


def unchanged(expect: dict[str, bytes]) -> str:
    """Every listed path exists with exactly these bytes."""
    body = "".join(f"{sha(data)}  {path}\n" for path, data in sorted(expect.items()))
    return f"sha256sum --quiet -c - <<'EOF' || fail 'a file that must be kept is missing or changed'\n{body}EOF"


def absent(paths: Sequence[str]) -> str:
    return f'for p in {" ".join(q(p) for p in sorted(paths))}; do [ ! -e "$p" ] || fail "$p should be gone"; done'


def moved(tree: Tree, moves: dict[str, str]) -> str:
    return unchanged({dst: tree.data[src] for src, dst in moves.items()}) + "\n" + absent(list(moves))


def holds_number(path: str, value: object) -> str:
    return (f"[ -f {q(path)} ] || fail '{path} is missing'\n"
            f"[ \"$(tr -d '[:space:]' < {q(path)})\" = '{value}' ] || fail '{path} does not hold the right number'")


def modes(expect: dict[str, str]) -> str:
    return "\n".join(f'[ "$(stat -c %a {q(p)} 2>/dev/null)" = "{m}" ] || fail "{p} should have mode {m}"'
                     for p, m in sorted(expect.items()))


def py(code: str) -> str:
    return f"python3 - <<'PY' || fail 'see the message above'\n{textwrap.dedent(code).strip()}\nPY"


def py_lines_equal(path: str, expected: Sequence[str], ordered: bool) -> str:
    """The file's non-blank lines (trimmed, without a leading ./) equal the expected ones."""
    return py(f"""
        import sys
        try:
            got = [l.strip() for l in open({path!r})]
        except OSError:
            sys.exit({path!r} + ' is missing')
        got = [(l[2:] if l.startswith('./') else l).rstrip('/') for l in got if l]
        want = {list(expected)!r}
        if ({ordered!r} and got != want) or sorted(got) != sorted(want):
            sys.exit({path!r} + ' should list ' + repr(want) + ', got ' + repr(got))
    """)


# ---------------------------------------------------------------- housekeep

STEMS = ("invoice_2025_11", "team_photo", "q4_summary", "contract_acme", "budget_2026", "scan_0042",
         "meeting_notes", "roadmap", "headshot", "receipt_7731", "export_users", "offsite_plan",
         "network_diagram", "payroll_dec", "minutes_0107", "logo_final", "price_list", "onboarding")


def hk_sort(rng: random.Random, split: str) -> Draft:
    folder = pick(rng, split, ("downloads", "inbox", "scans/incoming"), ("desktop/unsorted", "uploads/new", "shared/dropbox"))
    exts = rng.sample(("pdf", "jpg", "png", "csv", "txt", "docx", "xlsx"), 4)
    tree, moves = Tree(), {}
    for k, stem in enumerate(rng.sample(STEMS, 9)):
        ext = exts[k % 4]
        name = f"{stem}.{ext.upper() if k == 8 else ext}"  # one upper-case extension: lower-cased folder
        tree.text(f"{folder}/{name}", f"{stem} ({ext}) {rng.randint(1000, 9999)}\n")
        moves[f"{folder}/{name}"] = f"{folder}/{ext}/{name}"
    tree.text("notes/todo.txt", "renew certificates\nrotate api keys\n")
    goal = phrase(rng, (
        "Tidy up `{f}/`: move every file in it into a subfolder of `{f}/` named after the file's extension in lower case "
        "(for example `{f}/{e}/`). Keep the file names as they are; afterwards no file should be left directly in `{f}/`.",
        "Please organise `{f}` by file type. Each file should end up in `{f}/<extension>/` (extension lower-cased, "
        "e.g. `{f}/{e}/`), with its name unchanged, and nothing should remain loose in `{f}` itself.",
        "Sort the files sitting in `{f}/` into per-extension folders inside it (`{f}/{e}/`, `{f}/{e2}/` and so on), using "
        "the extension in lower case as the folder name. Don't rename any file."), f=folder, e=exts[0], e2=exts[1])
    chk = check(moved(tree, moves), unchanged(tree.only(["notes/todo.txt"])),
                f'[ -z "$(find {folder} -maxdepth 1 -type f)" ] || fail "files left loose in {folder}"',
                f'[ "$(find {folder} -type f | wc -l)" -eq 9 ] || fail "unexpected files in {folder}"')
    sol = f"""cd {folder}
for f in *.*; do
  [ -f "$f" ] || continue
  e=$(printf '%s' "${{f##*.}}" | tr '[:upper:]' '[:lower:]')
  mkdir -p "$e" && mv "$f" "$e/"
done"""
    return Draft(goal, tree.setup(), chk, sol)


def hk_rename(rng: random.Random, split: str) -> Draft:
    old, new, root = pick(rng, split, (("jpeg", "jpg", "photos"), ("htm", "html", "site"), ("yml", "yaml", "deploy/k8s")),
                          (("markdown", "md", "docs"), ("tif", "tiff", "scans/archive"), ("text", "txt", "notes")))
    subs = ("", "2025/", "2025/q4/", "misc/", "team/")
    tree, moves = Tree(), {}
    for stem in rng.sample(STEMS, 5):
        path = f"{root}/{rng.choice(subs)}{stem}.{old}"
        tree.text(path, f"{stem} body {rng.randint(10, 99)}\n")
        moves[path] = path[: -len(old)] + new
    keep = [f"{root}/{rng.choice(subs)}index.{new}", f"{root}/README", f"{root}/{rng.choice(subs)}old.{old}.bak"]
    for path in keep:
        tree.text(path, f"keep {path}\n")
    goal = phrase(rng, (
        "Rename every file under `{r}/` (subfolders included) whose name ends in `.{a}` so that it ends in `.{b}` "
        "instead; keep the rest of the name and the folder the same. Leave all other files alone.",
        "We're standardising on `.{b}`: change the extension of all `.{a}` files anywhere below `{r}` to `.{b}`, in place "
        "(same folder, same base name). Nothing else should change.",
        "Under `{r}`, every `*.{a}` file should become `*.{b}` (same folder, same base name); other files stay as they are."),
        r=root, a=old, b=new)
    chk = check(moved(tree, moves), unchanged(tree.only(keep)))
    sol = f"""find {root} -type f -name '*.{old}' | while read -r f; do mv "$f" "${{f%.{old}}}.{new}"; done"""
    return Draft(goal, tree.setup(), chk, sol)


def hk_prefix(rng: random.Random, split: str) -> Draft:
    prefix, folder = pick(rng, split, (("draft_", "reports"), ("tmp_", "exports"), ("old_", "invoices/2025")),
                          (("wip_", "proposals"), ("copy_of_", "documents/hr"), ("bak_", "finance/ledgers")))
    dest = pick(rng, split, ("archive", "attic"), ("old", "parked"))
    stems = rng.sample(STEMS, 7)
    tree, moves = Tree(), {}
    for stem in stems[:4]:
        tree.text(f"{folder}/{prefix}{stem}.txt", f"{prefix}{stem}\n")
        moves[f"{folder}/{prefix}{stem}.txt"] = f"{folder}/{dest}/{prefix}{stem}.txt"
    keep = [f"{folder}/{stems[4]}.txt", f"{folder}/final_{prefix}{stems[5]}.txt", f"{folder}/{stems[6]}.csv"]
    for path in keep:
        tree.text(path, f"final {path}\n")
    goal = phrase(rng, (
        "Move every file directly inside `{f}/` whose name starts with `{p}` into `{f}/{d}/` (create it if needed), keeping "
        "the file names. Files whose names don't start with `{p}` stay where they are.",
        "In `{f}`, files named `{p}*` are clutter: put them all into the subfolder `{f}/{d}/` without renaming them, and "
        "leave every other file in place.",
        "Please file away the `{p}...` files from `{f}/` into `{f}/{d}/` (same names). Only names beginning with `{p}` "
        "should move."), f=folder, p=prefix, d=dest)
    chk = check(moved(tree, moves), unchanged(tree.only(keep)))
    sol = f"""mkdir -p {folder}/{dest}
for f in {folder}/{prefix}*; do
  if [ -f "$f" ]; then mv "$f" {folder}/{dest}/; fi
done"""
    return Draft(goal, tree.setup(), chk, sol)


def hk_skeleton(rng: random.Random, split: str) -> Draft:
    app = pick(rng, split, ("billing", "auth", "inventory", "search"), ("ledger", "gateway", "catalog", "notifier"))
    extra = rng.sample(("releases", "shared/logs", "shared/run", "shared/uploads", "backups", "shared/cache"), 3)
    dirs = ["shared/config"] + sorted(extra)
    base = f"srv/{app}"
    tree = Tree()
    tree.text(f"templates/{app}.conf", f"[{app}]\nlisten = 127.0.0.1:{rng.randint(8000, 8999)}\nworkers = {rng.randint(2, 8)}\n")
    tree.text(f"{base}/README", f"{app} deployment root\n")
    listing = ", ".join(f"`{d}/`" for d in dirs)
    goal = phrase(rng, (
        "Prepare the deployment layout for {a}: create the folders {l} under `{b}/`, and copy `templates/{a}.conf` to "
        "`{b}/shared/config/{a}.conf`. The template must stay where it is.",
        "Set up `{b}/` for the {a} service: it needs the subfolders {l}, and `templates/{a}.conf` copied (not moved) to "
        "`{b}/shared/config/{a}.conf`."), a=app, b=base, l=listing)
    chk = check(*(f'[ -d {base}/{d} ] || fail "{base}/{d} is not a directory"' for d in dirs),
                unchanged({**tree.data, f"{base}/shared/config/{app}.conf": tree.data[f"templates/{app}.conf"]}))
    sol = "mkdir -p " + " ".join(f"{base}/{d}" for d in dirs) + f"\ncp templates/{app}.conf {base}/shared/config/{app}.conf"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- findfiles

SUBDIRS = ("", "a/", "a/b/", "2025/", "2025/12/", "misc/", "misc/old/")
BIN_EXTS = ("bin", "dat", "sql", "tar", "img", "dump")


def ff_large(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("data", "var/backups", "media"), ("storage", "srv/files", "archive/raw"))
    kb = pick(rng, split, (100, 200, 150), (50, 250, 120))
    out = pick(rng, split, ("large_files.txt", "big_files.txt"), ("over_limit.txt", "large.txt"))
    tree, large = Tree(), []
    for k, stem in enumerate(rng.sample(STEMS, 8)):
        path = f"{root}/{rng.choice(SUBDIRS)}{stem}.{rng.choice(BIN_EXTS)}"
        big = k < 3
        size = rng.randint(2 * kb * 1024, 4 * kb * 1024) if big else rng.randint(kb * 50, kb * 500)
        tree.blob(path, size)
        if big:
            large.append(path)
    goal = phrase(rng, (
        "Find every file under `{r}/` that is larger than {k} KB and write their paths (relative to the workspace, like "
        "`{r}/sub/file.bin`) to `{o}`, one per line. Don't move or delete anything.",
        "Which files in `{r}` (at any depth) are bigger than {k} KB? Put the list in `{o}`, one path per line, written "
        "relative to the workspace (e.g. `{r}/sub/file.bin`).",
        "I need a list of the files over {k} KB anywhere in `{r}/`: write their workspace-relative paths to `{o}`, one per "
        "line, and leave the files themselves alone."), r=root, k=kb, o=out)
    chk = check(py_lines_equal(out, sorted(large), ordered=False), unchanged(tree.data))
    sol = f"find {root} -type f -size +{kb}k > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def ff_old_delete(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("tmp/cache", "var/spool/reports", "uploads/tmp"), ("cache/thumbnails", "var/tmp/exports", "workdir/scratch"))
    days = pick(rng, split, (30, 14, 60), (21, 45, 7))
    tree, old, new = Tree(), [], []
    for k, stem in enumerate(rng.sample(STEMS, 8)):
        path = f"{root}/{rng.choice(SUBDIRS)}{stem}.{rng.choice(('tmp', 'json', 'png', 'csv'))}"
        is_old = k % 2 == 0
        age = rng.randint(days + 5, days + 90) if is_old else rng.randint(0, max(days - 3, 1))
        tree.text(path, f"{stem} cached {age}\n", mtime=f"{age} days ago")
        (old if is_old else new).append(path)
    goal = phrase(rng, (
        "Delete every file under `{r}` (subfolders included) that was last modified more than {d} days ago; keep "
        "everything newer.",
        "`{r}/` is full of stale files. Remove all files in it, at any depth, whose modification time is older than {d} "
        "days. Files changed within the last {d} days must stay.",
        "Clean out anything in `{r}` not modified in the last {d} days (files only, any subfolder)."), r=root, d=days)
    chk = check(absent(old), unchanged(tree.only(new)))
    sol = f"find {root} -type f -mtime +{days} -delete"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def ff_pattern_delete(rng: random.Random, split: str) -> Draft:
    pattern, desc, traps = pick(rng, split, (
        ("*.bak", "whose name ends in `.bak`", ("notes.bak.txt", "bak")),
        ("*~", "whose name ends in `~` (editor backups)", ("x~y.txt", "home~backup.txt")),
        ("*.tmp", "with the `.tmp` extension", ("tmp_data.csv", "plan.tmp.md"))), (
        ("*.orig", "whose name ends in `.orig` (leftovers from merges)", ("origin.txt", "orig.patch.md")),
        ("*.swp", "that is a vim swap file (name ending in `.swp`)", ("swp.log", "notes.swp.txt")),
        ("*.pyc", "that is compiled Python (name ending in `.pyc`)", ("pyc_notes.md", "build.pyc.txt"))))
    root = pick(rng, split, ("project", "home/dev/src"), ("workspace/app", "repo-copy"))
    tree, doomed, keep = Tree(), [], []
    for k, stem in enumerate(rng.sample(STEMS, 4)):
        name = pattern.replace("*", ("." if k == 0 else "") + stem)  # one hidden match: a shell glob would miss it
        doomed.append(f"{root}/{rng.choice(SUBDIRS)}{name}")
    for stem in rng.sample(STEMS, 2):
        keep.append(f"{root}/{rng.choice(SUBDIRS)}{stem}.py")
    keep += [f"{root}/{rng.choice(SUBDIRS)}{t}" for t in traps]
    for path in dict.fromkeys(doomed + keep):
        tree.text(path, f"content of {path}\n")
    goal = phrase(rng, (
        "Clean up `{r}`: delete every file {d}, in any subfolder. Nothing else may be removed.",
        "Remove all files {d} from `{r}/` and all of its subfolders; leave every other file untouched.",
        "Please get rid of every file anywhere under `{r}` {d}. Other files must survive."), r=root, d=desc)
    chk = check(absent(doomed), unchanged(tree.only(keep)))
    sol = f"find {root} -type f -name '{pattern}' -delete"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def ff_old_move(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("logs", "var/log/app"), ("service/logs", "var/log/batch"))
    dest = pick(rng, split, ("archive/old-logs", "old_logs"), ("cold-storage/logs", "retired"))
    days = pick(rng, split, (30, 14), (21, 60))
    tree, moves, keep = Tree(), {}, []
    for k, stem in enumerate(rng.sample(STEMS, 7)):
        sub = rng.choice(("", "api/", "worker/", "cron/"))
        is_old = k not in (3, 4)
        age = rng.randint(days + 5, days + 80) if is_old else rng.randint(0, days - 5)
        name = f"{stem}.log" if k < 5 else f"{stem}.{('txt', 'log.gz')[k - 5]}"  # old, but not .log: stays
        tree.text(f"{root}/{sub}{name}", f"{stem} log line\n", mtime=f"{age} days ago")
        if is_old and k < 5:
            moves[f"{root}/{sub}{name}"] = f"{dest}/{name}"
        else:
            keep.append(f"{root}/{sub}{name}")
    goal = phrase(rng, (
        "Move every `.log` file under `{r}` that hasn't been modified in the last {d} days into `{t}/` (directly into that "
        "folder, keeping the file names). All other files stay where they are.",
        "Archive stale logs: any file under `{r}/` (any depth) named `*.log` and last modified more than {d} days ago goes "
        "into `{t}/`, flat, same name. Create `{t}` if needed; don't touch anything else."), r=root, d=days, t=dest)
    chk = check(moved(tree, moves), unchanged(tree.only(keep)))
    sol = f"mkdir -p {dest}\nfind {root} -type f -name '*.log' -mtime +{days} -exec mv {{}} {dest}/ \\;"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- logs (shared by logcount)

@dataclass(frozen=True)
class LogStyle:
    name: str
    levels: tuple[str, ...]
    weights: tuple[int, ...]
    targets: tuple[str, ...]
    messages: dict[str, tuple[str, ...]]
    paths: tuple[str, ...]

    def line(self, ts: datetime, level: str, msg: str, rng: random.Random) -> str:
        ms = f"{rng.randint(0, 999):03d}"
        if self.name == "app":
            return f"{ts:%Y-%m-%d %H:%M:%S} {level} [worker-{rng.randint(1, 4)}] {msg}"
        if self.name == "pylog":
            return f"{ts:%Y-%m-%d %H:%M:%S},{ms} {level} {rng.choice(('billing.tasks', 'billing.api', 'billing.db'))}: {msg}"
        if self.name == "postgres":
            return f"{ts:%Y-%m-%d %H:%M:%S}.{ms} UTC [{rng.randint(3000, 3010)}] {level}:  {msg}"
        return f"{ts:%Y/%m/%d %H:%M:%S} [{level}] 311#311: *{rng.randint(1, 900)} {msg}"


# Some messages mention level names ("0 ERROR", "[error]", 'FATAL', ...) on purpose: counting words
# instead of the level field gives a wrong answer, as it would on a real log.
APP_MSGS = {
    "DEBUG": ("cache lookup key=user:{n}", "parsed payload in {n} ms", "sql: SELECT * FROM orders WHERE id={n}"),
    "INFO": ("request completed in {n} ms", "user {n} logged in", "job {n} finished", "retrying request after error (attempt {k})",
             "health check passed (0 ERROR, {k} WARN)", "error budget at {k}0%", "scheduled {n} tasks"),
    "WARN": ("slow query took {n} ms", "retry {k}/3 for job {n}", "disk usage at {k}0%", "deprecated config key 'timeout' used"),
    "ERROR": ("payment declined for order {n}", "failed to connect to db: timeout", "unhandled exception in worker {k}",
              "upstream returned 502 for job {n}"),
}
PYLOG_MSGS = {
    "DEBUG": APP_MSGS["DEBUG"],
    "INFO": tuple(m.replace("WARN)", "WARNING)") for m in APP_MSGS["INFO"]) + ("alert 'CRITICAL: disk full' resolved",),
    "WARNING": APP_MSGS["WARN"],
    "ERROR": APP_MSGS["ERROR"] + ("invoice {n} could not be rendered",),
    "CRITICAL": ("worker pool exhausted", "out of memory while processing batch {n}", "ledger checksum mismatch"),
}
PG_MSGS = {
    "LOG": ("checkpoint starting: time", "checkpoint complete: wrote {n} buffers", "connection received: host=10.0.0.{k} port={n}",
            "could not receive data from client: Connection reset by peer",
            "statement: SELECT count(*) FROM job_errors WHERE kind = 'ERROR'",
            "statement: UPDATE alerts SET level = 'FATAL' WHERE id = {n}"),
    "WARNING": ("there is already a transaction in progress", "skipping vacuum of \"sessions\" --- lock not available"),
    "ERROR": ("duplicate key value violates unique constraint \"orders_pkey\"", "relation \"tmp_import_{k}\" does not exist",
              "canceling statement due to statement timeout", "deadlock detected"),
    "FATAL": ("password authentication failed for user \"report\"", "terminating connection due to administrator command",
              "the database system is starting up"),
}
NGINX_MSGS = {
    "notice": ("signal process started", "start worker process {n}", "gracefully shutting down"),
    "warn": ("an upstream response is buffered to a temporary file /var/cache/nginx/proxy_temp/{n}",
             "client sent invalid header line: \"X-Debug: [error]\" while reading client request headers",
             "ssl_stapling ignored, issuer certificate not found for \"[crit] alerts\" host"),
    "error": ("connect() failed (111: Connection refused) while connecting to upstream, client: 10.1.{k}.{k}",
              "open() \"/usr/share/nginx/html/favicon.ico\" failed (2: No such file or directory)",
              "upstream timed out (110: Connection timed out) while reading response header from upstream"),
    "crit": ("SSL_do_handshake() failed (SSL: error:0A00006C:SSL routines::bad key share)",
             "open() \"/var/run/nginx.pid\" failed (13: Permission denied)"),
}
STYLES = {
    "app": LogStyle("app", ("DEBUG", "INFO", "WARN", "ERROR"), (10, 60, 16, 14), ("ERROR", "WARN"), APP_MSGS,
                    ("logs/app.log", "var/log/billing/app.log", "srv/api/logs/app.log")),
    "postgres": LogStyle("postgres", ("LOG", "WARNING", "ERROR", "FATAL"), (62, 12, 18, 8), ("ERROR", "FATAL"), PG_MSGS,
                         ("logs/postgresql.log", "var/log/postgresql/postgresql-main.log")),
    "pylog": LogStyle("pylog", ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"), (10, 58, 14, 13, 5),
                      ("ERROR", "WARNING", "CRITICAL"), PYLOG_MSGS, ("logs/billing.log", "srv/billing/log/worker.log")),
    "nginx": LogStyle("nginx", ("notice", "warn", "error", "crit"), (30, 30, 32, 8), ("error", "crit"), NGINX_MSGS,
                      ("logs/nginx/error.log", "var/log/nginx/error.log")),
}
SQL = ("INSERT INTO orders (id, total) VALUES (4411, 19.90)", "DROP TABLE tmp_import", "UPDATE accounts SET balance = 0")


def make_log(rng: random.Random, style: LogStyle, n: int, start: datetime, step: int) -> tuple[str, list[tuple[datetime, str]]]:
    """Log text and (timestamp, level) per entry; postgres ERRORs may carry a STATEMENT line, not an entry."""
    lines, recs, ts = [], [], start
    for _ in range(n):
        ts += timedelta(seconds=rng.randint(1, step))
        level = rng.choices(style.levels, style.weights)[0]
        msg = rng.choice(style.messages[level]).format(n=rng.randint(100, 9999), k=rng.randint(1, 9))
        lines.append(style.line(ts, level, msg, rng))
        recs.append((ts, level))
        if style.name == "postgres" and level == "ERROR" and rng.random() < 0.5:
            lines.append(style.line(ts, "STATEMENT", rng.choice(SQL), rng))
    return "\n".join(lines) + "\n", recs


def counts(recs: list[tuple[datetime, str]]) -> Counter[str]:
    return Counter(level for _, level in recs)


def style_for(rng: random.Random, split: str) -> LogStyle:
    # The log formats themselves are split parameters: test tasks read formats unseen in training.
    return STYLES[pick(rng, split, ("app", "postgres"), ("pylog", "nginx"))]


def lc_level(rng: random.Random, split: str) -> Draft:
    style = style_for(rng, split)
    path, level = rng.choice(style.paths), rng.choice(style.targets)
    out = pick(rng, split, ("error_count.txt", "count.txt"), ("level_total.txt", "answer.txt"))
    text, recs = make_log(rng, style, rng.randint(80, 140), datetime(2026, 1, 5, 9, 0), 40)
    tree = Tree()
    tree.text(path, text)
    goal = phrase(rng, (
        "How many entries in `{p}` were logged at level `{l}`? Write just the number to `{o}`.",
        "Count the lines of `{p}` whose log level is `{l}` (the level field, not words inside messages) and put the count "
        "in `{o}`.",
        "Please write the number of `{l}`-level lines in `{p}` into `{o}` (only the number)."), p=path, l=level, o=out)
    chk = check(holds_number(out, counts(recs)[level]), unchanged(tree.data))
    field_no = {"app": 3, "pylog": 3, "postgres": 5, "nginx": 3}[style.name]
    token = {"postgres": f"{level}:", "nginx": f"[{level}]"}.get(style.name, level)
    sol = f"awk '${field_no} == \"{token}\"' {path} | wc -l > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def lc_rotated(rng: random.Random, split: str) -> Draft:
    style = style_for(rng, split)
    path, level = rng.choice(style.paths), rng.choice(style.targets)
    out = pick(rng, split, ("total_errors.txt", "rotated_count.txt"), ("all_logs_count.txt", "sum.txt"))
    tree, total, gz = Tree(), 0, []
    start = datetime(2026, 1, 5, 0, 0)
    for k, suffix in enumerate(("", ".1", ".2", ".3")):
        text, recs = make_log(rng, style, rng.randint(30, 60), start - timedelta(days=k), 60)
        total += counts(recs)[level]
        tree.text(path + suffix, text)
        if k >= 2:
            gz.append(path + suffix)
    goal = phrase(rng, (
        "Count the `{l}` entries across `{p}` and all of its rotated copies (`{p}.1`, `{p}.2.gz`, `{p}.3.gz`; the `.gz` "
        "ones are compressed) and write the total to `{o}`. Leave the logs as they are.",
        "What is the total number of lines logged at level `{l}` in `{p}` plus its rotations `.1`, `.2.gz` and `.3.gz`? Put "
        "the number in `{o}` and don't decompress the archives in place."), l=level, p=path, o=out)
    field_no = {"app": 3, "pylog": 3, "postgres": 5, "nginx": 3}[style.name]
    token = {"postgres": f"{level}:", "nginx": f"[{level}]"}.get(style.name, level)
    gz_check = "\n".join(f'[ "$(zcat {p}.gz | sha256sum | cut -c1-64)" = "{sha(tree.data[p])}" ] || fail "{p}.gz changed"'
                         for p in gz)
    chk = check(holds_number(out, total), unchanged(tree.only([path, path + ".1"])), gz_check)
    setup = tree.setup(*(f"gzip -n {q(p)}" for p in gz))
    sol = f"zcat -f {path} {path}.1 {path}.2.gz {path}.3.gz | awk '${field_no} == \"{token}\"' | wc -l > {out}"
    return Draft(goal, setup, chk, sol)


def lc_by_level(rng: random.Random, split: str) -> Draft:
    style = style_for(rng, split)
    path = rng.choice(style.paths)
    out = pick(rng, split, ("level_counts.txt", "summary.txt"), ("levels.txt", "per_level.txt"))
    text, recs = make_log(rng, style, rng.randint(90, 150), datetime(2026, 1, 6, 8, 0), 30)
    want = {lv: counts(recs)[lv] for lv in style.levels}
    tree = Tree()
    tree.text(path, text)
    names = ", ".join(f"`{lv}`" for lv in style.levels)
    goal = phrase(rng, (
        "Summarise `{p}` by level: for each of the levels {n}, write a line `LEVEL COUNT` (for example `{e} 12`) to `{o}`, "
        "where COUNT is how many entries have that level. Any order.",
        "I need per-level entry counts for `{p}`. Write one line per level ({n}) to `{o}`, formatted as the level name, a "
        "space, and the number of entries at that level."), p=path, n=names, e=style.levels[-1], o=out)
    chk = check(py(f"""
        import re, sys
        try:
            lines = [l.strip() for l in open({out!r}) if l.strip()]
        except OSError:
            sys.exit({out!r} + ' is missing')
        got = {{}}
        for l in lines:
            m = re.fullmatch(r'\\[?(\\w+)\\]?:?\\s+(\\d+)', l)
            if not m:
                sys.exit('bad line: ' + l)
            got[m.group(1)] = int(m.group(2))
        if got != {want!r}:
            sys.exit('wrong counts: ' + repr(got))
    """), unchanged(tree.data))
    field_no = {"app": 3, "pylog": 3, "postgres": 5, "nginx": 3}[style.name]
    sol = (f"for l in {' '.join(style.levels)}; do\n"
           f"  t=$l; case {style.name} in postgres) t=\"$l:\";; nginx) t=\"[$l]\";; esac\n"
           f"  echo \"$l $(awk -v t=\"$t\" '${field_no} == t' {path} | wc -l)\"\n"
           f"done > {out}")
    return Draft(goal, tree.setup(), chk, sol)


def lc_window(rng: random.Random, split: str) -> Draft:
    style = style_for(rng, split)
    path, level = rng.choice(style.paths), rng.choice(style.targets)
    hour = rng.randint(1, 21)
    out = pick(rng, split, ("window_count.txt", "hour_errors.txt"), ("incident_count.txt", "slot.txt"))
    n = 0
    while n == 0:  # a window with no entries at all would make a weak task
        text, recs = make_log(rng, style, rng.randint(100, 160), datetime(2026, 1, 7, hour - 1, 20), 110)
        n = sum(1 for ts, lv in recs if lv == level and ts.hour == hour)
    tree = Tree()
    tree.text(path, text)
    goal = phrase(rng, (
        "During the incident on 2026-01-07 between {h:02d}:00:00 and {h:02d}:59:59 (inclusive), how many `{l}` entries did "
        "`{p}` get? Write the number to `{o}`.",
        "Count the `{l}`-level entries in `{p}` with a timestamp from {h:02d}:00 up to {h:02d}:59:59 on 2026-01-07 and save "
        "that number in `{o}`."), h=hour, l=level, p=path, o=out)
    chk = check(holds_number(out, n), unchanged(tree.data))
    field_no = {"app": 3, "pylog": 3, "postgres": 5, "nginx": 3}[style.name]
    token = {"postgres": f"{level}:", "nginx": f"[{level}]"}.get(style.name, level)
    sol = f"awk '${field_no} == \"{token}\" && substr($2, 1, 2) == \"{hour:02d}\"' {path} | wc -l > {out}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- accesslog

PATHS = {"train": ("/api/orders", "/api/users", "/login", "/static/app.js", "/health", "/api/cart", "/search",
                   "/static/style.css", "/api/orders/export"),
         "test": ("/api/v2/items", "/api/v2/payments", "/checkout", "/assets/main.js", "/status", "/api/v2/sessions",
                  "/docs", "/favicon.ico", "/api/v2/items/bulk")}
AGENTS = ("curl/8.5.0", "Mozilla/5.0 (X11; Linux x86_64)", "kube-probe/1.29", "python-requests/2.31")


def distinct_counts(rng: random.Random, k: int, total: int) -> list[int]:
    """k distinct positive counts summing to total, so top-N lists never tie."""
    while True:
        counts_ = rng.sample(range(2, 22), k - 1)
        last = total - sum(counts_)
        if last > 0 and last not in counts_:
            return counts_ + [last]


def access_log(rng: random.Random, split: str) -> tuple[str, list[dict[str, object]]]:
    prefix = "10.0." if split == "train" else "192.168."
    ips = [f"{prefix}{rng.randint(0, 9)}.{rng.randint(2, 250)}" for _ in range(9)]
    ips = list(dict.fromkeys(ips))
    ip_counts = rng.sample(range(3, 26), len(ips))
    total = sum(ip_counts)
    paths = list(PATHS[split])
    ip_seq = [ip for ip, c in zip(ips, ip_counts) for _ in range(c)]
    path_seq = [p for p, c in zip(paths, distinct_counts(rng, len(paths), total)) for _ in range(c)]
    rng.shuffle(ip_seq)
    rng.shuffle(path_seq)
    ts, lines, reqs = datetime(2026, 1, 5, 10, 0), [], []
    for ip, path in zip(ip_seq, path_seq):
        ts += timedelta(seconds=rng.randint(1, 30))
        status = rng.choices((200, 301, 404, 500, 502, 503), (80, 4, 7, 4, 3, 2))[0]
        size = rng.randint(150, 620) if status != 200 else rng.randint(200, 25000)  # small sizes overlap 5xx codes
        method = "POST" if path.startswith("/api") and rng.random() < 0.3 else "GET"
        reqs.append({"ip": ip, "path": path, "status": status, "bytes": size})
        lines.append(f'{ip} - - [{ts:%d/%b/%Y:%H:%M:%S} +0000] "{method} {path} HTTP/1.1" {status} {size} "-" "{rng.choice(AGENTS)}"')
    return "\n".join(lines) + "\n", reqs


def al_setup(rng: random.Random, split: str) -> tuple[str, str, list[dict[str, object]], Tree]:
    path = pick(rng, split, ("logs/nginx/access.log", "var/log/nginx/access.log"), ("logs/web/access.log", "srv/proxy/logs/access.log"))
    text, reqs = access_log(rng, split)
    tree = Tree()
    tree.text(path, text)
    return path, text, reqs, tree


def top_pairs_check(out: str, want: list[tuple[int, str]]) -> str:
    return py(f"""
        import sys
        try:
            rows = [l.split() for l in open({out!r}) if l.strip()]
        except OSError:
            sys.exit({out!r} + ' is missing')
        got = [(int(r[0]), r[1]) if len(r) == 2 and r[0].isdigit() else ('bad', r) for r in rows]
        if got != {want!r}:
            sys.exit('expected ' + repr({want!r}) + ', got ' + repr(got))
    """)


def al_top_ips(rng: random.Random, split: str) -> Draft:
    path, _, reqs, tree = al_setup(rng, split)
    n = rng.choice((3, 5))
    out = pick(rng, split, ("top_ips.txt", "busiest_clients.txt"), ("top_clients.txt", "ip_report.txt"))
    want = [(c, ip) for ip, c in Counter(r["ip"] for r in reqs).most_common(n)]
    goal = phrase(rng, (
        "Find the {n} client IPs that made the most requests in `{p}` and write them to `{o}`, one per line as "
        "`<count> <ip>`, busiest first.",
        "Which {n} IP addresses hit us most often according to `{p}`? Put them in `{o}`, most requests first, each line "
        "being the request count, a space, and the IP.",
        "Write the top {n} IPs by number of requests in `{p}` to `{o}` (format per line: `<count> <ip>`, sorted by count "
        "descending)."), n=n, p=path, o=out)
    chk = check(top_pairs_check(out, want), unchanged(tree.data))
    sol = f"awk '{{print $1}}' {path} | sort | uniq -c | sort -rn | head -{n} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def al_top_paths(rng: random.Random, split: str) -> Draft:
    path, _, reqs, tree = al_setup(rng, split)
    n = rng.choice((3, 4))
    out = pick(rng, split, ("top_endpoints.txt", "hot_paths.txt"), ("popular_urls.txt", "endpoint_report.txt"))
    want = [(c, p) for p, c in Counter(r["path"] for r in reqs).most_common(n)]
    goal = phrase(rng, (
        "Which {n} request paths appear most often in `{p}`? Write them to `{o}` as `<count> <path>` lines, most requested "
        "first.",
        "From `{p}`, list the {n} most requested endpoints (the URL path in the request line, any method) in `{o}`, one "
        "per line as `<count> <path>`, highest count first."), n=n, p=path, o=out)
    chk = check(top_pairs_check(out, want), unchanged(tree.data))
    sol = f"awk '{{print $7}}' {path} | sort | uniq -c | sort -rn | head -{n} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def al_5xx(rng: random.Random, split: str) -> Draft:
    path, _, reqs, tree = al_setup(rng, split)
    out = pick(rng, split, ("server_errors.txt", "5xx_count.txt"), ("failures.txt", "error_responses.txt"))
    n = sum(1 for r in reqs if int(r["status"]) >= 500)
    goal = phrase(rng, (
        "How many requests in `{p}` got a server error response (status 500-599)? Write the number to `{o}`.",
        "Count the 5xx responses in the access log `{p}` and save the number in `{o}`.",
        "Write to `{o}` the number of requests in `{p}` whose HTTP status code was in the 500 range."), p=path, o=out)
    chk = check(holds_number(out, n), unchanged(tree.data))
    sol = f"awk '$9 >= 500 && $9 < 600' {path} | wc -l > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def al_404_ips(rng: random.Random, split: str) -> Draft:
    path, _, reqs, tree = al_setup(rng, split)
    out = pick(rng, split, ("ips_404.txt", "not_found_clients.txt"), ("missing_page_ips.txt", "404_clients.txt"))
    want = sorted({str(r["ip"]) for r in reqs if r["status"] == 404})
    goal = phrase(rng, (
        "Which client IPs received a 404 in `{p}`? Write each such IP once to `{o}`, one per line.",
        "Extract the distinct IP addresses that got `404 Not Found` responses from `{p}` into `{o}` (one IP per line, no "
        "duplicates, any order)."), p=path, o=out)
    chk = check(py_lines_equal(out, want, ordered=False), py(f"""
        import sys
        got = [l.strip() for l in open({out!r}) if l.strip()]
        if len(got) != len(set(got)):
            sys.exit('duplicate IPs in ' + {out!r})
    """), unchanged(tree.data))
    sol = f"awk '$9 == 404 {{print $1}}' {path} | sort -u > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def al_bytes(rng: random.Random, split: str) -> Draft:
    path, _, reqs, tree = al_setup(rng, split)
    target = PATHS[split][0]  # its longer sibling (/export, /bulk) is also in the log, to catch prefix matches
    out = pick(rng, split, ("bytes_total.txt", "traffic.txt"), ("volume.txt", "sent_bytes.txt"))
    n = sum(int(r["bytes"]) for r in reqs if r["path"] == target)
    goal = phrase(rng, (
        "Add up the response sizes (the bytes field) of all requests to exactly `{t}` in `{p}` and write the total number "
        "of bytes to `{o}`.",
        "How many bytes did we send for requests whose path is exactly `{t}` (not sub-paths), according to `{p}`? Put the "
        "total in `{o}`."), t=target, p=path, o=out)
    chk = check(holds_number(out, n), unchanged(tree.data))
    sol = f"awk '$7 == \"{target}\" {{s += $10}} END {{print s + 0}}' {path} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- archive

WEB_FILES = ("index.html", "about.html", "css/site.css", "js/app.js", "img/logo.svg", "robots.txt")
CONF_FILES = ("app.ini", "db.conf", "nginx/site.conf", "certs/README", "env/production.env")


def file_set(rng: random.Random, root: str, names: Sequence[str], k: int) -> dict[str, str]:
    return {f"{root}/{n}": f"{n} for {root} rev {rng.randint(1, 99)}\n" for n in rng.sample(list(names), k)}


def members_check(archive: str, kind: str, want: dict[str, bytes]) -> str:
    """The archive's regular files are exactly these paths with these contents."""
    opener = (f"zf = zipfile.ZipFile({archive!r}); files = {{n: zf.read(n) for n in zf.namelist() if not n.endswith('/')}}"
              if kind == "zip" else
              f"tf = tarfile.open({archive!r}, 'r:gz'); files = {{m.name: tf.extractfile(m).read() for m in tf.getmembers() if m.isfile()}}")
    return py(f"""
        import hashlib, sys, tarfile, zipfile
        try:
            {opener}
        except Exception as exc:
            sys.exit('cannot read {archive}: ' + str(exc))
        files = {{(n[2:] if n.startswith('./') else n): hashlib.sha256(b).hexdigest() for n, b in files.items()}}
        want = {{p: h for p, h in {sorted((p, sha(b)) for p, b in want.items())!r}}}
        if files != want:
            sys.exit('archive members differ: got ' + repr(sorted(files)) + ' want ' + repr(sorted(want)))
    """)


def ar_tar(rng: random.Random, split: str) -> Draft:
    src = pick(rng, split, ("www", "site/public"), ("htdocs", "web/dist"))
    arc = pick(rng, split, ("backups/www-2026-01-05.tar.gz", "backups/site.tar.gz"), ("archives/web-2026-02-01.tar.gz", "snapshots/site.tgz"))
    tree = Tree()
    for p, t in file_set(rng, src, WEB_FILES, 5).items():
        tree.text(p, t)
    goal = phrase(rng, (
        "Back up `{s}/` into a gzip-compressed tar archive `{a}`. The paths inside the archive must start with `{s}/` "
        "(as seen from the workspace). Keep the original folder.",
        "Create `{a}` (tar + gzip) containing the whole `{s}` folder, stored with workspace-relative paths like "
        "`{s}/index.html`; `{s}` itself must stay as it is."), s=src, a=arc)
    chk = check(members_check(arc, "tar", tree.data), unchanged(tree.data))
    sol = f"mkdir -p {Path(arc).parent}\ntar -czf {arc} {src}"
    return Draft(goal, tree.setup(), chk, sol)


def ar_tar_exclude(rng: random.Random, split: str) -> Draft:
    src = pick(rng, split, ("app", "frontend"), ("service", "dashboard"))
    skip = pick(rng, split, ("node_modules", "cache"), ("tmp", "build"))
    arc = pick(rng, split, ("release.tar.gz", "dist/app-src.tar.gz"), ("bundle.tar.gz", "out/source.tar.gz"))
    tree = Tree()
    for p, t in file_set(rng, src, ("main.py", "README.md", "lib/util.py", "lib/db.py", "config/default.json", "tests/test_util.py"), 5).items():
        tree.text(p, t)
    skipped = {f"{src}/{skip}/{n}": f"generated {n}\n" for n in ("a.bin", "deep/b.bin")}
    for p, t in skipped.items():
        tree.text(p, t)
    wanted = {p: b for p, b in tree.data.items() if p not in skipped}
    goal = phrase(rng, (
        "Package `{s}/` into `{a}` (gzip-compressed tar, paths starting with `{s}/`) but leave out everything under "
        "`{s}/{x}/`.",
        "Make a .tar.gz of the `{s}` folder at `{a}`, with workspace-relative paths (`{s}/...`), excluding its `{x}` "
        "subfolder entirely. Don't delete anything."), s=src, a=arc, x=skip)
    chk = check(members_check(arc, "tar", wanted), unchanged(tree.data))
    parent = Path(arc).parent
    sol = ("" if str(parent) == "." else f"mkdir -p {parent}\n") + f"tar -czf {arc} --exclude={src}/{skip} {src}"
    return Draft(goal, tree.setup(), chk, sol)


def ar_zip(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("reports", "finance/exports"), ("analytics", "hr/exports"))
    arc = pick(rng, split, ("exports/reports-q1.zip", "reports.zip"), ("outbox/analytics.zip", "share/csv-bundle.zip"))
    tree, wanted = Tree(), []
    for k, stem in enumerate(rng.sample(STEMS, 7)):
        ext = "csv" if k < 4 else rng.choice(("xlsx", "pdf", "txt"))
        path = f"{root}/{rng.choice(('', '2025/', '2026/01/'))}{stem}.{ext}"
        tree.text(path, f"id,value\n{k},{rng.randint(1, 999)}\n")
        if ext == "csv":
            wanted.append(path)
    goal = phrase(rng, (
        "Create the zip file `{a}` containing every `.csv` file under `{r}/` (subfolders too), stored under their paths "
        "relative to the workspace (e.g. `{r}/2025/x.csv`). No other files should be in the zip.",
        "Zip up all the CSV files found anywhere in `{r}` into `{a}`; entries must keep their workspace-relative paths "
        "(`{r}/...`) and nothing but `.csv` files goes in. Leave the originals in place."), a=arc, r=root)
    chk = check(members_check(arc, "zip", tree.only(wanted)), unchanged(tree.data))
    parent = Path(arc).parent
    sol = ("" if str(parent) == "." else f"mkdir -p {parent}\n") + f"find {root} -type f -name '*.csv' | zip -q {arc} -@"
    return Draft(goal, tree.setup(), chk, sol)


def ar_extract(rng: random.Random, split: str) -> Draft:
    app = pick(rng, split, ("shop", "api"), ("portal", "relay"))
    ver = f"{rng.randint(1, 4)}.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    name = f"{app}-{ver}"
    arc = pick(rng, split, (f"releases/{name}.tar.gz", f"downloads/{name}.tar.gz"), (f"incoming/{name}.tgz", f"artifacts/{name}.tar.gz"))
    dest = pick(rng, split, ("deploy", "opt"), ("install", "srv/apps"))
    tree = Tree()
    staged = file_set(rng, f"_stage/{name}", ("bin/run.sh", "lib/core.py", "config/app.ini", "VERSION", "docs/CHANGES.md"), 5)
    for p, t in staged.items():
        tree.text(p, t)
    tree.text(f"{dest}/README", "deployments live here\n")
    setup = tree.setup(f"mkdir -p {Path(arc).parent}", f"tar -czf {arc} -C _stage {name}", "rm -rf _stage")
    expect = {p.replace("_stage/", f"{dest}/", 1): tree.data[p] for p in staged}
    goal = phrase(rng, (
        "Unpack `{a}` into `{d}/`. It contains a top-level folder `{n}/`, so the files should end up in `{d}/{n}/...`. Keep "
        "the archive.",
        "Extract the release archive `{a}` under `{d}` (result: `{d}/{n}/` with the release files); don't delete the archive "
        "or anything already in `{d}`."), a=arc, d=dest, n=name)
    chk = check(unchanged({**expect, f"{dest}/README": tree.data[f"{dest}/README"]}),
                f'tar -tzf {arc} >/dev/null 2>&1 || fail "{arc} is missing or damaged"')
    sol = f"mkdir -p {dest}\ntar -xzf {arc} -C {dest}"
    return Draft(goal, setup, chk, sol)


def ar_restore(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("etc", "config"), ("conf", "settings"))
    arc = pick(rng, split, ("backups/etc-backup.zip", "backup/config.zip"), ("snapshots/conf.zip", "saved/settings-backup.zip"))
    old = file_set(rng, root, CONF_FILES, 4)
    target = rng.choice(sorted(old))
    tree = Tree()
    for p, t in old.items():
        tree.text(p, t)
    current = {p: (t + "# tuned after the backup\n" if p != target else "### truncated during copy\n") for p, t in old.items()}
    setup = tree.setup(f"mkdir -p {Path(arc).parent}", f"zip -q -r {arc} {root}", *(heredoc(p, t) for p, t in current.items()))
    expect = {p: t.encode() for p, t in current.items()}
    expect[target] = old[target].encode()
    goal = phrase(rng, (
        "`{t}` got corrupted. Restore just that file from `{a}` (it was zipped with paths like `{t}`). The other files in "
        "`{r}/` were changed on purpose since the backup and must keep their current content.",
        "Please put back the backed-up version of `{t}` from the zip `{a}`, overwriting the broken one. Only that file: "
        "everything else under `{r}` is newer than the backup and must stay as it is now."), t=target, a=arc, r=root)
    chk = check(unchanged(expect), f'[ -f {arc} ] || fail "{arc} is gone"')
    sol = f"unzip -o -q {arc} {target}"
    return Draft(goal, setup, chk, sol, tags=("destructive",))


def ar_list(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("logs-2025", "audit-2025"), ("metrics-2024", "events-2025h2"))
    arc = pick(rng, split, (f"archive/{name}.tar.gz", f"{name}.tar.gz"), (f"vault/{name}.tar.gz", f"cold/{name}.tgz"))
    out = pick(rng, split, ("contents.txt", "archive_list.txt"), ("manifest.txt", "inventory.txt"))
    tree = Tree()
    staged = {f"_stage/{name}/{rng.choice(('', 'jan/', 'feb/', 'q3/'))}{stem}.log": f"{stem}\n" for stem in rng.sample(STEMS, 6)}
    for p, t in staged.items():
        tree.text(p, t)
    want = sorted(p.replace("_stage/", "", 1) for p in staged)
    setup = tree.setup(f"mkdir -p {Path(arc).parent}", f"tar -czf {arc} -C _stage {name}", "rm -rf _stage")
    goal = phrase(rng, (
        "Write the list of files stored in `{a}` to `{o}`: one path per line exactly as stored in the archive, files only "
        "(no directory entries). Don't extract the archive.",
        "What's inside `{a}`? Put the path of every file it contains (as stored, without directory entries) into `{o}`, one "
        "per line, without unpacking it into the workspace."), a=arc, o=out)
    chk = check(py_lines_equal(out, want, ordered=False), f'[ ! -e {name} ] || fail "the archive was extracted"',
                f'tar -tzf {arc} >/dev/null 2>&1 || fail "{arc} is missing or damaged"')
    sol = f"tar -tzf {arc} | grep -v '/$' > {out}"
    return Draft(goal, setup, chk, sol)


# ---------------------------------------------------------------- perms

def pm_scripts(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("scripts", "bin"), ("tools", "ops/bin"))
    mode = pick(rng, split, ("755", "755", "700"), ("750", "755"))
    tree, want = Tree(), {}
    for stem in rng.sample(("deploy", "backup", "restart", "migrate", "healthcheck", "purge_cache", "sync_assets"), 4):
        path = f"{root}/{rng.choice(('', 'lib/', 'cron/'))}{stem}.sh"
        tree.text(path, f"#!/bin/sh\necho {stem}\n", mode="644")
        want[path] = mode
    for path in (f"{root}/README.md", f"{root}/settings.conf", f"{root}/lib/notes.txt"):
        tree.text(path, f"{path}\n", mode="644")
        want[path] = "644"
    goal = phrase(rng, (
        "Give every `.sh` file under `{r}/` (subfolders too) mode {m}. The other files there keep mode 644.",
        "The shell scripts in `{r}` aren't executable. Set all `*.sh` files anywhere under `{r}/` to permissions {m}; don't "
        "change the permissions of anything else.",
        "Please chmod the `.sh` scripts in `{r}` (recursively) to {m}, leaving non-script files at 644."), r=root, m=mode)
    chk = check(modes(want), unchanged(tree.data))
    sol = f"find {root} -type f -name '*.sh' -exec chmod {mode} {{}} +"
    return Draft(goal, tree.setup(), chk, sol)


def pm_secrets(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("secrets", "config/keys"), ("credentials", "deploy/certs"))
    dmode, fmode = pick(rng, split, (("700", "600"), ("700", "400")), (("750", "640"), ("700", "600")))
    tree, want = Tree(), {root: dmode}
    for name in rng.sample(("api.key", "tls.pem", "db_password.txt", "service-account.json", "jwt.key", "token"), 4):
        tree.text(f"{root}/{name}", f"secret-{rng.randint(10**8, 10**9)}\n", mode="644")
        want[f"{root}/{name}"] = fmode
    tree.text("public/index.html", "<h1>hi</h1>\n", mode="644")
    want["public/index.html"] = "644"
    tree.after.append(f"chmod 755 {root}")
    goal = phrase(rng, (
        "Lock down `{r}/`: the folder itself should have mode {d} and every file in it mode {f}.",
        "The files in `{r}` are world-readable. Set the directory `{r}` to {d} and each file inside it to {f}; nothing "
        "outside `{r}` should change.",
        "Fix the permissions on `{r}`: directory {d}, all files in it {f}."), r=root, d=dmode, f=fmode)
    chk = check(modes(want), unchanged(tree.data))
    sol = f"chmod {dmode} {root}\nfind {root} -type f -exec chmod {fmode} {{}} +"
    return Draft(goal, tree.setup(), chk, sol)


def pm_private(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("private", "home/alice/finance"), ("hr/records", "vault"))
    tree, want = Tree(), {}
    subs = ("", "2025/", "2025/tax/")
    for stem in rng.sample(STEMS, 5):
        path = f"{root}/{rng.choice(subs)}{stem}.{rng.choice(('pdf', 'csv', 'sh'))}"
        mode = rng.choice(("644", "664", "755", "640", "600"))
        tree.text(path, f"{stem}\n", mode=mode)
        want[path] = oct(int(mode, 8) & 0o700)[2:]
    dirs = {str(a) for p in want for a in Path(p).parents if a.is_relative_to(root)}
    for d in sorted(dirs):
        mode = rng.choice(("755", "775"))
        tree.after.append(f"chmod {mode} {d}")
        want[d] = "700"
    tree.text("shared/notice.txt", "office closed friday\n", mode="644")
    want["shared/notice.txt"] = "644"
    goal = phrase(rng, (
        "Remove all group and other permissions from `{r}` and everything in it (folders included), without changing the "
        "owner's permissions.",
        "Nobody but the owner should have any access to `{r}/`: strip every group/other permission bit from it and from all "
        "files and folders below it, keeping the owner bits as they are.",
        "Make `{r}` and its whole contents private to the owner: clear the group and other bits recursively; the owner's "
        "rwx bits must not change."), r=root)
    chk = check(modes(want), unchanged(tree.data))
    sol = f"chmod -R go-rwx {root}"
    return Draft(goal, tree.setup(), chk, sol)


def pm_readonly(rng: random.Random, split: str) -> Draft:
    root = pick(rng, split, ("etc", "config"), ("settings", "deploy/conf"))
    ext = pick(rng, split, ("conf", "cfg"), ("ini", "toml"))
    tree, want = Tree(), {}
    for stem in rng.sample(("nginx", "postgres", "redis", "app", "logging", "worker"), 3):
        tree.text(f"{root}/{stem}.{ext}", f"# {stem}\n", mode="644")
        want[f"{root}/{stem}.{ext}"] = "444"
    for name, mode in (("reload.sh", "755"), ("local.env", "600"), ("README", "644")):
        tree.text(f"{root}/{name}", f"{name}\n", mode=mode)
        want[f"{root}/{name}"] = mode
    goal = phrase(rng, (
        "Make every `.{e}` file in `{r}/` read-only for everyone (mode 444). Other files keep their current modes.",
        "To stop accidental edits, set the `*.{e}` files in `{r}` to 444; leave the permissions of the other files alone."),
        r=root, e=ext)
    chk = check(modes(want), unchanged(tree.data))
    sol = f"chmod 444 {root}/*.{ext}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- rotate

def budget_plan(rng: random.Random, sizes_kb: list[int], current_kb: int) -> tuple[int, int]:
    """(budget KB, how many of the oldest files go) with a 12 KB margin on both sides, so a
    du-based or apparent-size measurement gives the same answer."""
    k = rng.randint(2, len(sizes_kb) - 2)
    oldest_first = sizes_kb[::-1]
    remaining = current_kb + sum(sizes_kb) - sum(oldest_first[:k])
    return remaining + 12 + rng.randint(0, oldest_first[k - 1] - 25), k


def ro_numbered(rng: random.Random, split: str) -> Draft:
    base = pick(rng, split, ("app", "api", "worker"), ("gateway", "scheduler", "ingest"))
    root = pick(rng, split, ("logs", f"var/log/{base}"), (f"srv/{base}/logs", "data/logs"))
    sizes = [4 * rng.randint(7, 30) for _ in range(rng.randint(6, 8))]  # .1 (newest) .. .N (oldest)
    cur = 4 * rng.randint(5, 15)
    budget, k = budget_plan(rng, sizes, cur)
    tree = Tree()
    tree.blob(f"{root}/{base}.log", cur * 1024, mtime="2026-01-05 10:00")
    for n, kb in enumerate(sizes, start=1):
        tree.blob(f"{root}/{base}.log.{n}", kb * 1024, mtime=f"{datetime(2026, 1, 5) - timedelta(days=n):%Y-%m-%d} 00:05")
    doomed = [f"{root}/{base}.log.{n}" for n in range(len(sizes), len(sizes) - k, -1)]
    goal = phrase(rng, (
        "`{r}` is using too much space. Delete the oldest rotated logs (`{b}.log.N`, where a higher N is older) one at a "
        "time, oldest first, until the files in `{r}` add up to at most {k} KB (1 KB = 1024 bytes). Keep `{b}.log` itself "
        "and don't delete more than needed.",
        "Bring `{r}/` down to {k} KB or less in total (1 KB = 1024 bytes) by removing rotated `{b}.log.N` files, starting "
        "from the oldest (highest N). Stop as soon as it fits; the live `{b}.log` must stay."), r=root, b=base, k=budget)
    chk = check(absent(doomed), unchanged({p: b for p, b in tree.data.items() if p not in doomed}))
    sol = f"""cd {root}
for n in $(ls {base}.log.* | sed 's/.*\\.//' | sort -rn); do
  total=$(find . -maxdepth 1 -type f -printf '%s\\n' | awk '{{s += $1}} END {{print s}}')
  [ "$total" -le $(({budget} * 1024)) ] && break
  rm {base}.log.$n
done
exit 0"""
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def ro_dated(rng: random.Random, split: str) -> Draft:
    base = pick(rng, split, ("nginx-access", "billing"), ("proxy", "events"))
    root = pick(rng, split, ("logs/archive", "var/log/old"), ("srv/logs/history", "data/rotated"))
    sizes = [4 * rng.randint(7, 30) for _ in range(rng.randint(6, 8))]  # newest first
    cur = 4 * rng.randint(5, 15)
    budget, k = budget_plan(rng, sizes, cur)
    tree = Tree()
    tree.blob(f"{root}/{base}.log", cur * 1024, mtime="2026-01-05 10:00")
    names = []
    for n, kb in enumerate(sizes, start=1):
        day = datetime(2026, 1, 5) - timedelta(days=n)
        path = f"{root}/{base}-{day:%Y-%m-%d}.log.gz"
        tree.blob(path, kb * 1024, mtime=f"{day:%Y-%m-%d} 00:05")
        names.append(path)
    doomed = names[::-1][:k]
    goal = phrase(rng, (
        "Free space in `{r}`: remove the compressed archives `{b}-YYYY-MM-DD.log.gz`, oldest date first, until all files in "
        "`{r}` total at most {k} KB (1 KB = 1024 bytes). Keep `{b}.log` and don't delete more than necessary.",
        "The folder `{r}/` must fit in {k} KB (1 KB = 1024 bytes). Delete the oldest dated `{b}-*.log.gz` files one by one "
        "until it does, and no further; the current `{b}.log` stays."), r=root, b=base, k=budget)
    chk = check(absent(doomed), unchanged({p: b for p, b in tree.data.items() if p not in doomed}))
    sol = f"""cd {root}
for f in $(ls {base}-*.log.gz | sort); do
  total=$(find . -maxdepth 1 -type f -printf '%s\\n' | awk '{{s += $1}} END {{print s}}')
  [ "$total" -le $(({budget} * 1024)) ] && break
  rm "$f"
done
exit 0"""
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def ro_keep(rng: random.Random, split: str) -> Draft:
    base = pick(rng, split, ("app", "cron", "mailer"), ("queue", "indexer", "webhook"))
    root = pick(rng, split, ("logs", "var/log/service"), ("srv/logs", "data/log"))
    total, keep_n = rng.randint(6, 9), rng.randint(2, 4)
    tree = Tree()
    tree.text(f"{root}/{base}.log", f"{base} current\n")
    for n in range(1, total + 1):
        tree.text(f"{root}/{base}.log.{n}", f"{base} rotation {n}\n", mtime=f"{n * 24} hours ago")
    doomed = [f"{root}/{base}.log.{n}" for n in range(keep_n + 1, total + 1)]
    goal = phrase(rng, (
        "In `{r}`, keep only the {k} most recent rotated logs (`{b}.log.1` is the newest, higher numbers are older) and "
        "delete the older ones. Don't touch `{b}.log`.",
        "Trim the rotations of `{r}/{b}.log`: `{b}.log.1` .. `{b}.log.{k}` stay, every older `{b}.log.N` goes. The live log "
        "stays too."), r=root, b=base, k=keep_n)
    chk = check(absent(doomed), unchanged({p: b for p, b in tree.data.items() if p not in doomed}))
    sol = f"""for f in {root}/{base}.log.*; do
  n=${{f##*.}}
  if [ "$n" -gt {keep_n} ]; then rm "$f"; fi
done"""
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def ro_truncate(rng: random.Random, split: str) -> Draft:
    base = pick(rng, split, ("app", "worker"), ("gateway", "ingest"))
    root = pick(rng, split, ("logs", "var/log/app"), ("srv/logs", "data/logs"))
    cur = 4 * rng.randint(40, 120)
    tree = Tree()
    tree.blob(f"{root}/{base}.log", cur * 1024)
    for n in (1, 2):
        tree.blob(f"{root}/{base}.log.{n}", 4 * rng.randint(5, 20) * 1024)
    live = f"{root}/{base}.log"
    goal = phrase(rng, (
        "`{p}` has grown to {k} KB and the service keeps it open, so don't delete or rename it: empty it in place (size "
        "0). Leave the rotated files alone.",
        "Truncate `{p}` to zero bytes without removing or replacing the file (a process has it open). The `.1` and `.2` "
        "rotations must stay as they are."), p=live, k=cur)
    chk = check(f'[ -f {live} ] && [ ! -s {live} ] || fail "{live} should exist and be empty"',
                unchanged({p: b for p, b in tree.data.items() if p != live}))
    sol = f": > {live}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


# ---------------------------------------------------------------- config edits (ini, envfile, jsonconf, yamlconf)

def line_edit_check(path: str, orig: list[str], index: int, pattern: str) -> str:
    """Only line `index` changed (and matches pattern); every other line is byte-identical."""
    return py(f"""
        import re, sys
        try:
            new = open({path!r}).read().splitlines()
        except OSError:
            sys.exit({path!r} + ' is missing')
        orig = {orig!r}
        if len(new) != len(orig):
            sys.exit('line count changed: only one line should be edited')
        for i, (a, b) in enumerate(zip(orig, new)):
            if i == {index} and not re.fullmatch({pattern!r}, b):
                sys.exit('line %d is not the expected setting: %r' % (i + 1, b))
            if i != {index} and a.rstrip() != b.rstrip():
                sys.exit('line %d changed: %r' % (i + 1, b))
    """)


def line_insert_check(path: str, orig: list[str], pattern: str, owner: str | None = None, heads: str = "") -> str:
    """Exactly one line matching pattern was added and the other non-blank lines are unchanged
    and in order (an extra blank line is harmless). With owner, the nearest line above the new
    one that matches the `heads` regex (section headers) must be owner."""
    return py(f"""
        import re, sys
        try:
            new = open({path!r}).read().splitlines()
        except OSError:
            sys.exit({path!r} + ' is missing')
        orig = {orig!r}
        hits = [i for i, l in enumerate(new) if re.fullmatch({pattern!r}, l)]
        if len(hits) != 1:
            sys.exit('expected exactly one new setting line, found %d' % len(hits))
        i = hits[0]
        if [l.rstrip() for l in new[:i] + new[i + 1:] if l.strip()] != [l.rstrip() for l in orig if l.strip()]:
            sys.exit('other lines changed')
        above = [l.rstrip() for l in new[:i] if re.fullmatch({heads!r}, l.rstrip())]
        if {owner!r} is not None and (not above or above[-1] != {owner!r}):
            sys.exit('the new line is not in the right section (line %d)' % (i + 1))
    """)


def ini_doc(rng: random.Random, app: str) -> list[str]:
    return [
        f"; {app} configuration - managed by ops",
        "[server]",
        "host = 0.0.0.0",
        f"port = {rng.choice((8080, 8000, 9000))}",
        f"workers = {rng.randint(2, 8)}",
        "",
        "[database]",
        "# primary connection",
        f"host = db-{rng.randint(1, 3)}.internal",
        "port = 5432",
        f"name = {app}",
        f"user = {app}_rw",
        f"pool_size = {rng.choice((5, 10, 20))}",
        "",
        "[cache]",
        "host = redis.internal",
        "port = 6379",
        f"ttl = {rng.choice((60, 300, 900))}",
        "",
        "[logging]",
        "level = info",
        f"file = /var/log/{app}/{app}.log",
    ]


def ini_sections(lines: list[str]) -> dict[str, tuple[int, int]]:
    """Section name -> (header index, index of its last line)."""
    heads = [(i, l[1:-1]) for i, l in enumerate(lines) if l.startswith("[")]
    return {name: (i, (heads[k + 1][0] - 1 if k + 1 < len(heads) else len(lines) - 1)) for k, (i, name) in enumerate(heads)}


def ini_path(rng: random.Random, split: str, app: str) -> str:
    return pick(rng, split, ("config/app.ini", f"etc/{app}/settings.ini"), ("conf/service.ini", f"deploy/{app}.ini"))


APPS = {"train": ("billing", "auth", "inventory", "search"), "test": ("ledger", "gateway", "catalog", "notifier")}


def ini_change(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, lines = ini_path(rng, split, app), ini_doc(rng, app)
    section, key, value = rng.choice((("database", "port", str(rng.choice((6432, 5433)))), ("cache", "host", "redis-2.internal"),
                                      ("server", "port", str(rng.choice((8081, 8443)))), ("cache", "port", "6380"),
                                      ("database", "host", "db-replica.internal"), ("logging", "level", "debug"),
                                      ("server", "workers", str(rng.randint(10, 16)))))
    lo, hi = ini_sections(lines)[section]
    index = next(i for i in range(lo, hi + 1) if lines[i].startswith(f"{key} ="))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "In `{p}`, change `{k}` in the `[{s}]` section to `{v}`. Everything else in the file must stay exactly as it is.",
        "Set `{k} = {v}` under `[{s}]` in `{p}`. Other sections also have settings, some with the same name; leave them "
        "and the comments untouched.",
        "Update `{p}`: the `[{s}]` section's `{k}` should now be `{v}`. No other line may change."), p=path, k=key, s=section, v=value)
    chk = check(line_edit_check(path, lines, index, rf"\s*{key}\s*=\s*[\"']?{value}[\"']?\s*"))
    sol = f"sed -i '/^\\[{section}\\]/,/^\\[/{{s|^{key} *=.*|{key} = {value}|}}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


def ini_add(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, lines = ini_path(rng, split, app), ini_doc(rng, app)
    section, key, value = rng.choice((("database", "connect_timeout", str(rng.choice((5, 10, 15)))), ("server", "keepalive", "75"),
                                      ("cache", "max_entries", str(rng.choice((5000, 20000)))), ("server", "max_body", "10m"),
                                      ("database", "sslmode", "require")))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Add the setting `{k} = {v}` to the `[{s}]` section of `{p}`. Don't change any existing line.",
        "`{p}` needs a new key in `[{s}]`: `{k}` with value `{v}`. Put it inside that section and leave the rest of the "
        "file as it is."), p=path, k=key, s=section, v=value)
    chk = check(line_insert_check(path, lines, rf"\s*{key}\s*=\s*[\"']?{value}[\"']?\s*", f"[{section}]", r"\[.*\]"))
    sol = f"sed -i '/^\\[{section}\\]/a {key} = {value}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


ENV_VARS = (("APP_ENV", "production"), ("APP_PORT", "8080"), ("DB_HOST", "db.internal"), ("DB_HOST_REPLICA", "db-ro.internal"),
            ("DB_PORT", "5432"), ("DB_NAME", "app"), ("REDIS_URL", "redis://cache:6379/0"), ("LOG_LEVEL", "info"),
            ("SMTP_HOST", "smtp.internal"), ("SMTP_PORT", "587"), ("CACHE_TTL", "300"), ("WORKERS", "4"),
            ("SENTRY_DSN", "https://key@sentry.example.com/12"), ("FEATURE_SEARCH_V2", "false"))


def env_doc(rng: random.Random, app: str) -> list[tuple[str, str]]:
    """(name, line); name is '' for comments and blank lines. A commented-out DB_HOST and a
    DB_HOST_REPLICA trap edits that match by prefix."""
    out = [("", f"# {app} environment"), ("", "")]
    for name, value in ENV_VARS:
        if name == "DB_HOST":
            out.append(("", "# DB_HOST=old-db.internal"))
        if name == "SENTRY_DSN":
            out.append(("", "# error reporting"))
        out.append((name, f"{name}={value}"))
    return out


def env_path(rng: random.Random, split: str, app: str) -> str:
    return pick(rng, split, (".env", "app/.env", f"{app}/.env"), ("deploy/.env.production", f"services/{app}/.env"))


def env_change(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = env_path(rng, split, app), env_doc(rng, app)
    name, value = rng.choice((("DB_HOST", "db-2.internal"), ("LOG_LEVEL", "debug"), ("WORKERS", str(rng.randint(6, 16))),
                              ("DB_PORT", "6432"), ("REDIS_URL", "redis://cache-2:6379/1"), ("FEATURE_SEARCH_V2", "true")))
    lines = [l for _, l in doc]
    index = next(i for i, (n, _) in enumerate(doc) if n == name)
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "In `{p}`, set `{n}` to `{v}`. Leave every other line (comments included) exactly as it is.",
        "Change the value of the environment variable `{n}` in `{p}` to `{v}`; nothing else in the file should change.",
        "Update `{p}` so that `{n}={v}`. Only that variable's line may change."), p=path, n=name, v=value)
    chk = check(line_edit_check(path, lines, index, rf"{name}=([\"']?){value}\1\s*"))
    sol = f"sed -i 's|^{name}=.*|{name}={value}|' {path}"
    return Draft(goal, tree.setup(), chk, sol)


def env_add(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = env_path(rng, split, app), env_doc(rng, app)
    name, value = rng.choice((("DB_POOL_SIZE", "20"), ("HTTP_TIMEOUT", "30"), ("S3_BUCKET", f"{app}-uploads"),
                              ("METRICS_PORT", "9102"), ("OTEL_EXPORTER_URL", "http://otel:4318")))
    lines = [l for _, l in doc]
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Add the variable `{n}` with value `{v}` to `{p}`. Existing lines must stay unchanged and in order.",
        "`{p}` is missing `{n}`; add it as `{n}={v}` without touching the other entries.",
        "Please append a new setting `{n}={v}` to the env file `{p}` (keep everything else as is)."), p=path, n=name, v=value)
    chk = check(line_insert_check(path, lines, rf"{name}=([\"']?){value}\1\s*"))
    sol = f"echo '{name}={value}' >> {path}"
    return Draft(goal, tree.setup(), chk, sol)


def env_remove(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = env_path(rng, split, app), env_doc(rng, app)
    name = rng.choice(("SENTRY_DSN", "DB_HOST", "SMTP_PORT", "CACHE_TTL", "FEATURE_SEARCH_V2"))
    lines = [l for _, l in doc]
    kept = [l for n, l in doc if n != name]
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Remove the `{n}` variable from `{p}`. All other lines, comments included, must stay as they are.",
        "We no longer use `{n}`: delete its line from `{p}` and leave everything else (including commented-out lines) "
        "untouched."), p=path, n=name)
    chk = check(py(f"""
        import sys
        try:
            new = [l.rstrip() for l in open({path!r}).read().splitlines()]
        except OSError:
            sys.exit({path!r} + ' is missing')
        if new != {kept!r} and [l for l in new if l] != [l for l in {kept!r} if l]:
            sys.exit('the file should be the original without the {name} line')
    """))
    sol = f"sed -i '/^{name}=/d' {path}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def json_doc(rng: random.Random, app: str) -> dict[str, object]:
    return {
        "service": {"name": app, "port": rng.choice((8080, 9000)), "workers": rng.randint(2, 8)},
        "database": {"host": f"db-{rng.randint(1, 3)}.internal", "port": 5432,
                     "pool": {"min_size": 2, "max_size": rng.choice((10, 15))}, "timeout_s": 30},
        "features": {"new_checkout": rng.random() < 0.5, "beta_search": False, "dark_mode": True},
        "logging": {"level": "info", "targets": ["stdout", "file"]},
        "cache": {"enabled": True, "ttl_s": rng.choice((60, 300))},
    }


def json_path(rng: random.Random, split: str, app: str) -> str:
    return pick(rng, split, ("config/settings.json", "app/config.json"), (f"deploy/{app}.json", f"etc/{app}/runtime.json"))


def json_edit(rng: random.Random, split: str, kind: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = json_path(rng, split, app), json_doc(rng, app)
    new = json.loads(json.dumps(doc))
    if kind == "number":
        keys, value = rng.choice(((("database", "pool", "max_size"), rng.choice((25, 40))), (("service", "workers"), 12),
                                  (("cache", "ttl_s"), 900), (("database", "timeout_s"), 5)))
        what = f"to {value} (a number, not a string)"
    elif kind == "bool":
        keys = rng.choice((("features", "new_checkout"), ("features", "dark_mode"), ("cache", "enabled"), ("features", "beta_search")))
        value = not _dig(doc, keys)
        what = f"to `{json.dumps(value)}` (a JSON boolean)"
    elif kind == "string":
        keys, value = rng.choice(((("logging", "level"), "debug"), (("database", "host"), "db-replica.internal"),
                                  (("service", "name"), f"{app}-v2")))
        what = f"to the string `{value}`"
    else:  # add
        keys, value = rng.choice(((("cache", "backend"), "redis"), (("service", "timeout_s"), 15),
                                  (("database", "pool", "idle_timeout_s"), 60), (("logging", "format"), "json")))
        what = f"with the value {json.dumps(value)}" + (" (a number)" if isinstance(value, int) else " (a string)")
    _dig(new, keys[:-1])[keys[-1]] = value
    dotted = ".".join(keys)
    tree = Tree()
    tree.text(path, json.dumps(doc, indent=2) + "\n")
    verb = "Add the key" if kind == "add" else "Set"
    goal = phrase(rng, (
        "{verb} `{d}` in `{p}` {w}. Every other setting must keep its current value.",
        "In the JSON config `{p}`, {verbl} `{d}` (the `{last}` key inside `{parent}`) {w}; leave the rest of the "
        "configuration as it is."), verb=verb, verbl=verb[0].lower() + verb[1:], d=dotted, p=path, w=what, last=keys[-1],
        parent=".".join(keys[:-1]))
    chk = check(json_check(path, new))
    sol = f"jq '.{dotted} = {json.dumps(value)}' {path} > {path}.new && mv {path}.new {path}"
    return Draft(goal, tree.setup(), chk, sol)


def _dig(doc: object, keys: Sequence[str]) -> object:
    for key in keys:
        doc = doc[key]  # type: ignore[index]
    return doc


def json_check(path: str, want: object) -> str:
    return py(f"""
        import json, sys
        try:
            got = json.load(open({path!r}))
        except (OSError, ValueError) as exc:
            sys.exit({path!r} + ' is missing or not JSON: ' + str(exc))
        want = json.loads({json.dumps(want)!r})
        def norm(x):
            # 5 and 5.0 are the same number; true is not 1
            if isinstance(x, bool) or not isinstance(x, (int, float)):
                return {{k: norm(v) for k, v in x.items()}} if isinstance(x, dict) else [norm(v) for v in x] if isinstance(x, list) else x
            return float(x)
        got, want = norm(got), norm(want)
        if json.dumps(got, sort_keys=True) != json.dumps(want, sort_keys=True):
            sys.exit('configuration differs from what was asked: ' + json.dumps(got, sort_keys=True))
    """)


def js_number(rng: random.Random, split: str) -> Draft:
    return json_edit(rng, split, "number")


def js_bool(rng: random.Random, split: str) -> Draft:
    return json_edit(rng, split, "bool")


def js_string(rng: random.Random, split: str) -> Draft:
    return json_edit(rng, split, "string")


def js_add(rng: random.Random, split: str) -> Draft:
    return json_edit(rng, split, "add")


def js_remove(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = json_path(rng, split, app), json_doc(rng, app)
    keys = rng.choice((("features", "beta_search"), ("database", "timeout_s"), ("cache", "ttl_s"), ("service", "workers")))
    new = json.loads(json.dumps(doc))
    del _dig(new, keys[:-1])[keys[-1]]  # type: ignore[attr-defined]
    tree = Tree()
    tree.text(path, json.dumps(doc, indent=2) + "\n")
    dotted = ".".join(keys)
    goal = phrase(rng, (
        "Remove the `{d}` setting from `{p}` entirely (the key, not just its value). Keep everything else.",
        "`{d}` in `{p}` is obsolete: delete that key from the JSON and leave the other settings unchanged."), d=dotted, p=path)
    chk = check(json_check(path, new))
    sol = f"jq 'del(.{dotted})' {path} > {path}.new && mv {path}.new {path}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def js_append(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, doc = json_path(rng, split, app), json_doc(rng, app)
    item = rng.choice(("syslog", "loki", "otel"))
    new = json.loads(json.dumps(doc))
    new["logging"]["targets"].append(item)  # type: ignore[index]
    tree = Tree()
    tree.text(path, json.dumps(doc, indent=2) + "\n")
    goal = phrase(rng, (
        "Add `\"{i}\"` as a new last entry of the `logging.targets` list in `{p}`; the existing targets and all other "
        "settings stay as they are.",
        "Logs should also go to {i}: append the string `{i}` to the `targets` array under `logging` in `{p}`, without "
        "changing anything else."), i=item, p=path)
    chk = check(json_check(path, new))
    sol = f"jq '.logging.targets += [\"{item}\"]' {path} > {path}.new && mv {path}.new {path}"
    return Draft(goal, tree.setup(), chk, sol)


def compose_doc(rng: random.Random, app: str, tag: str) -> list[str]:
    return [
        f"# compose file for {app}",
        "services:",
        "  web:",
        f"    image: nginx:1.25.{rng.randint(1, 4)}",
        "    ports:",
        "      - \"80:80\"",
        "    depends_on:",
        "      - api",
        "  api:",
        f"    image: registry.example.com/{app}/api:{tag}",
        "    environment:",
        "      LOG_LEVEL: info",
        "      DB_PORT: \"5432\"",
        "    deploy:",
        f"      replicas: {rng.randint(2, 4)}",
        "  worker:",
        f"    image: registry.example.com/{app}/worker:{tag}",
        "    command: [\"python\", \"-m\", \"worker\"]",
        "    deploy:",
        "      replicas: 1",
    ]


def settings_yaml(rng: random.Random, app: str) -> list[str]:
    return [
        f"# {app} settings",
        "server:",
        "  host: 0.0.0.0",
        f"  port: {rng.choice((8080, 9000))}",
        "database:",
        f"  host: db-{rng.randint(1, 3)}.internal",
        "  port: 5432",
        f"  name: {app}",
        "cache:",
        "  url: redis://cache:6379/0",
        "  port: 6379",
        "logging:",
        "  level: info",
    ]


def yaml_paths(rng: random.Random, split: str, app: str) -> tuple[str, str]:
    compose = pick(rng, split, ("docker-compose.yml", "deploy/compose.yaml"), (f"stacks/{app}/compose.yml", "infra/docker-compose.yaml"))
    settings = pick(rng, split, ("config/settings.yaml", f"etc/{app}.yml"), (f"conf/{app}.yaml", "deploy/values.yml"))
    return compose, settings


def ym_image(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    tag = f"2.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    new_tag = f"3.{rng.randint(0, 9)}.0"
    path, _ = yaml_paths(rng, split, app)
    lines = compose_doc(rng, app, tag)
    service = rng.choice(("api", "worker"))
    image = f"registry.example.com/{app}/{service}:{new_tag}"
    index = next(i for i, l in enumerate(lines) if l.startswith(f"    image: registry.example.com/{app}/{service}:"))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Roll the `{s}` service in `{p}` forward to image `{i}`. The other services keep their images and nothing else in "
        "the file changes.",
        "In `{p}`, change the image of the `{s}` service (only that one) to `{i}`; leave all other lines as they are."),
        s=service, p=path, i=image)
    chk = check(line_edit_check(path, lines, index, rf"    image:\s+([\"']?){image}\1\s*"))
    sol = f"sed -i '/^  {service}:/,/^  [a-z]/{{s|^    image: .*|    image: {image}|}}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


def ym_replicas(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, _ = yaml_paths(rng, split, app)
    lines = compose_doc(rng, app, "2.0.0")
    service = rng.choice(("api", "worker"))
    count = rng.randint(5, 9)
    start = lines.index(f"  {service}:")
    index = next(i for i in range(start, len(lines)) if lines[i].strip().startswith("replicas:"))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Scale the `{s}` service in `{p}` to {n} replicas (its `deploy.replicas` setting). Don't change the other service's "
        "replicas or anything else.",
        "Set `deploy.replicas` of service `{s}` to {n} in `{p}`; every other line stays the same."), s=service, p=path, n=count)
    chk = check(line_edit_check(path, lines, index, rf"      replicas:\s+([\"']?){count}\1\s*"))
    sol = f"sed -i '/^  {service}:/,/^  [a-z]/{{s|^      replicas: .*|      replicas: {count}|}}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


def ym_nested(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    _, path = yaml_paths(rng, split, app)
    lines = settings_yaml(rng, app)
    section, key, value = rng.choice((("database", "port", "6432"), ("cache", "port", "6380"), ("server", "port", "8443"),
                                      ("database", "host", "db-replica.internal"), ("logging", "level", "debug")))
    start = lines.index(f"{section}:")
    index = next(i for i in range(start, len(lines)) if lines[i].startswith(f"  {key}:"))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "In `{p}`, set `{s}.{k}` (the `{k}` key under `{s}:`) to `{v}`. Other keys named `{k}` and the rest of the file must "
        "stay unchanged.",
        "Change `{k}` in the `{s}` block of `{p}` to `{v}`; only that line may change."), p=path, s=section, k=key, v=value)
    chk = check(line_edit_check(path, lines, index, rf"  {key}:\s+([\"']?){value}\1\s*"))
    sol = f"sed -i '/^{section}:/,/^[a-z]/{{s|^  {key}: .*|  {key}: {value}|}}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


def ym_add(rng: random.Random, split: str) -> Draft:
    app = rng.choice(APPS[split])
    path, _ = yaml_paths(rng, split, app)
    lines = compose_doc(rng, app, "2.1.0")
    service = rng.choice(("web", "api", "worker"))
    key, value = rng.choice((("restart", "unless-stopped"), ("restart", "always"), ("container_name", f"{app}-{service}")))
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Add `{k}: {v}` to the `{s}` service in `{p}` (as a direct setting of that service). Keep every existing line.",
        "The `{s}` service in `{p}` needs the option `{k}` set to `{v}`; add it there without changing the other lines."),
        k=key, v=value, s=service, p=path)
    chk = check(line_insert_check(path, lines, rf"    {key}:\s+([\"']?){value}\1\s*", f"  {service}:", r"  \S.*"),
                py(f"""
        import sys
        new = open({path!r}).read().splitlines()
        i = next(i for i, l in enumerate(new) if l.startswith('    {key}:'))
        after = new[i + 1] if i + 1 < len(new) else ''
        if after.startswith('      '):
            sys.exit('the new key splits another setting from its children')
    """))
    sol = f"sed -i '/^  {service}:/a\\    {key}: {value}' {path}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- csvfix

FIRST = ("Ana", "Ben", "Chloe", "Dmitri", "Eva", "Farid", "Grace", "Hugo", "Ines", "Jonas", "Kira", "Liam", "Mia", "Noah")
LAST = ("Silva", "Meyer", "Novak", "Kim", "Rossi", "Okafor", "Larsen", "Dubois", "Tanaka", "Berg")


@dataclass(frozen=True)
class Table:
    path: str
    header: list[str]
    rows: list[list[str]]
    num: str      # a numeric column with distinct values
    status: str   # a categorical column


def make_table(rng: random.Random, split: str) -> Table:
    if split == "train":
        path = rng.choice(("data/orders.csv", "exports/orders_2025.csv", "reports/sales.csv"))
        header = ["order_id", "customer", "email", "amount", "status"]
        amounts = rng.sample(range(500, 99999), 16)
        rows = [[str(1000 + i), f"{rng.choice(FIRST)} {rng.choice(LAST)}", "", f"{a / 100:.2f}",
                 rng.choice(("paid", "paid", "refunded", "failed"))] for i, a in enumerate(amounts)]
        for r in rows:
            r[2] = f"{r[1].split()[0].lower()}.{r[1].split()[1].lower()}@example.com"
        return Table(path, header, rows, "amount", "status")
    path = rng.choice(("inventory/stock.csv", "data/tickets.csv", "hr/staff.csv"))
    header = ["sku", "name", "warehouse", "qty", "state"]
    qtys = rng.sample(range(1, 900), 16)
    rows = [[f"SKU-{rng.randint(10000, 99999)}", rng.choice(("bolt", "washer", "hinge", "bracket", "spring", "gasket")) + f"-{i}",
             rng.choice(("BER", "AMS", "LIS")), str(qt), rng.choice(("active", "active", "retired", "backorder"))]
            for i, qt in enumerate(qtys)]
    return Table(path, header, rows, "qty", "state")


def csv_text(header: list[str], rows: list[list[str]]) -> str:
    return "\n".join(",".join(r) for r in [header] + rows) + "\n"


def csv_rows_check(path: str, want: list[list[str]]) -> str:
    return py(f"""
        import csv, sys
        try:
            rows = [[c.strip() for c in r] for r in csv.reader(open({path!r}, newline='')) if r]
        except OSError:
            sys.exit({path!r} + ' is missing')
        if rows != {want!r}:
            sys.exit({path!r} + ' does not have the expected rows; got ' + repr(rows[:5]) + '...')
    """)


def cv_dedupe(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    rows = list(t.rows)
    for _ in range(rng.randint(3, 5)):
        rows.insert(rng.randint(1, len(rows)), list(rng.choice(t.rows)))
    seen, want = set(), []
    for r in rows:
        if tuple(r) not in seen:
            seen.add(tuple(r))
            want.append(r)
    tree = Tree()
    tree.text(t.path, csv_text(t.header, rows))
    goal = phrase(rng, (
        "`{p}` contains exact duplicate rows. Remove the duplicates in place, keeping the first occurrence of each row, the "
        "header line, and the original order.",
        "De-duplicate `{p}`: every row should appear only once (first occurrence wins), header first, order otherwise "
        "unchanged. Overwrite the file."), p=t.path)
    chk = check(csv_rows_check(t.path, [t.header] + want))
    sol = f"awk '!seen[$0]++' {t.path} > {t.path}.tmp && mv {t.path}.tmp {t.path}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def cv_fix(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    col = t.header.index("email" if split == "train" else "warehouse")
    rows = [list(r) for r in t.rows]
    for r in rng.sample(rows, 6):
        r[col] = r[col].upper() if split == "train" else r[col].lower()
    want = [list(r) for r in rows]
    for r in want:
        r[col] = r[col].lower() if split == "train" else r[col].upper()
    tree = Tree()
    tree.text(t.path, csv_text(t.header, rows))
    case = "lower case" if split == "train" else "upper case"
    goal = phrase(rng, (
        "Some values in the `{c}` column of `{p}` have the wrong case. Make every `{c}` value {k}, in place; all other "
        "columns and rows stay exactly as they are.",
        "Normalise the `{c}` column of `{p}` to {k} (edit the file in place, leave the other columns, the header and the "
        "row order alone)."), c=t.header[col], p=t.path, k=case)
    chk = check(csv_rows_check(t.path, [t.header] + want))
    fn = "tolower" if split == "train" else "toupper"
    sol = f"awk -F, -v OFS=, 'NR > 1 {{${col + 1} = {fn}(${col + 1})}} 1' {t.path} > {t.path}.tmp && mv {t.path}.tmp {t.path}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def cv_json(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    out = t.path[:-4] + ".json"
    idcol = t.header[0]
    numeric = {t.num}
    want = [{h: (float(v) if h == t.num and "." in v else int(v) if h in numeric else v) for h, v in zip(t.header, r)}
            for r in t.rows]
    tree = Tree()
    tree.text(t.path, csv_text(t.header, t.rows))
    goal = phrase(rng, (
        "Convert `{p}` to JSON at `{o}`: an array with one object per data row, in file order, using the header names as "
        "keys. `{n}` must be a number; every other field, `{i}` included, stays a string. Keep the CSV.",
        "Write `{o}` as a JSON array of objects, one per row of `{p}` (same order, keys from the header line), with `{n}` "
        "as a JSON number and all other values as strings."), p=t.path, o=out, n=t.num, i=idcol)
    chk = check(json_check(out, want), unchanged(tree.data))
    conv = "float(v)" if split == "train" else "int(v)"
    sol = f"""python3 - <<'SOL'
import csv, json
rows = list(csv.DictReader(open({t.path!r}, newline='')))
for r in rows:
    v = r[{t.num!r}]
    r[{t.num!r}] = {conv}
json.dump(rows, open({out!r}, 'w'), indent=2)
SOL"""
    return Draft(goal, tree.setup(), chk, sol)


def cv_sort(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    col = t.header.index(t.num)
    desc = rng.random() < 0.5
    out = t.path[:-4] + "_sorted.csv"
    want = sorted(t.rows, key=lambda r: float(r[col]), reverse=desc)
    tree = Tree()
    tree.text(t.path, csv_text(t.header, t.rows))
    order = "largest first" if desc else "smallest first"
    goal = phrase(rng, (
        "Write a copy of `{p}` to `{o}` with the data rows sorted by `{c}` numerically, {d}; the header stays on the first "
        "line. Leave the original file as it is.",
        "I need `{p}` ordered by the numeric column `{c}` ({d}) in a new file `{o}` (header first, same columns)."),
        p=t.path, o=out, c=t.num, d=order)
    chk = check(csv_rows_check(out, [t.header] + want), unchanged(tree.data))
    sol = f"(head -n 1 {t.path}; tail -n +2 {t.path} | sort -t, -k{col + 1},{col + 1}{'r' if desc else ''}n) > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def cv_filter(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    col = t.header.index(t.status)
    value = rng.choice(sorted({r[col] for r in t.rows} - {"paid", "active"}))
    out = f"{Path(t.path).parent}/{value}.csv"
    want = [r for r in t.rows if r[col] == value]
    tree = Tree()
    tree.text(t.path, csv_text(t.header, t.rows))
    goal = phrase(rng, (
        "Extract the rows of `{p}` whose `{c}` is `{v}` into `{o}` (same columns, header line first, original order). Don't "
        "modify `{p}`.",
        "Make `{o}` containing only the `{v}` rows (by the `{c}` column) of `{p}`, with the header; keep the source file "
        "unchanged."), p=t.path, c=t.status, v=value, o=out)
    chk = check(csv_rows_check(out, [t.header] + want), unchanged(tree.data))
    sol = f"awk -F, 'NR == 1 || ${col + 1} == \"{value}\"' {t.path} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def cv_sum(rng: random.Random, split: str) -> Draft:
    t = make_table(rng, split)
    col = t.header.index(t.num)
    value = rng.choice(sorted({r[t.header.index(t.status)] for r in t.rows}))
    total = sum(float(r[col]) for r in t.rows if r[t.header.index(t.status)] == value)
    out = pick(rng, split, ("total.txt", "sum.txt"), ("qty_total.txt", "stock_sum.txt"))
    tree = Tree()
    tree.text(t.path, csv_text(t.header, t.rows))
    goal = phrase(rng, (
        "What is the total `{c}` over the rows of `{p}` whose `{s}` is `{v}`? Write the number to `{o}`.",
        "Sum the `{c}` column of `{p}` for rows with `{s}` = `{v}` and save the result in `{o}` (just the number)."),
        c=t.num, p=t.path, s=t.status, v=value, o=out)
    chk = check(py(f"""
        import sys
        try:
            got = float(open({out!r}).read().strip())
        except (OSError, ValueError):
            sys.exit({out!r} + ' is missing or not a number')
        if abs(got - {total!r}) > 0.005:
            sys.exit('wrong total: %s' % got)
    """), unchanged(tree.data))
    sol = f"awk -F, '${t.header.index(t.status) + 1} == \"{value}\" {{s += ${col + 1}}} END {{printf \"%.2f\\n\", s}}' {t.path} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- script

FIXTURE = 't=$(mktemp -d "$PWD/.check.XXXXXX")\ntrap \'rm -rf "$t"\' EXIT'


def sc_count_lines(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("count_lines.sh", "total_lines.sh"), ("linecount.sh", "lines_in.sh"))
    ext = pick(rng, split, ("txt", "log"), ("md", "csv"))
    a, b, c, d = (rng.randint(1, 9) for _ in range(4))
    goal = phrase(rng, (
        "Write `scripts/{n}`: given a directory as its only argument, it prints the total number of lines in all `*.{e}` "
        "files in that directory and its subfolders, as a bare number (0 if there are none). Make it executable.",
        "I want an executable script `scripts/{n}` that takes a folder and prints one number: the sum of the line counts of "
        "every `.{e}` file anywhere under that folder (other files don't count; print 0 when there are no such files)."),
        n=name, e=ext)
    chk = check(FIXTURE, f'[ -x scripts/{name} ] || fail "scripts/{name} is missing or not executable"',
                f'mkdir -p "$t/one/sub/deep" "$t/two" "$t/three"',
                f'seq {a} > "$t/one/a.{ext}"; seq {b} > "$t/one/sub/b.{ext}"; seq {c} > "$t/one/sub/deep/with space.{ext}"',
                f'seq 50 > "$t/one/other.dat"; seq {d} > "$t/two/x.{ext}"; seq 7 > "$t/three/notes.bin"',
                f'[ "$(./scripts/{name} "$t/one" | tr -d "[:space:]")" = "{a + b + c}" ] || fail "wrong total for a nested folder"',
                f'[ "$(./scripts/{name} "$t/two" | tr -d "[:space:]")" = "{d}" ] || fail "wrong total for a single file"',
                f'[ "$(./scripts/{name} "$t/three" | tr -d "[:space:]")" = "0" ] || fail "should print 0 with no .{ext} files"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
#!/bin/sh
find "$1" -type f -name '*.{ext}' -exec cat {{}} + | wc -l
SCRIPT
chmod +x scripts/{name}"""
    return Draft(goal, "mkdir -p scripts", chk, sol, timeout_s=180)


def sc_largest(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("largest_file.sh", "biggest_file.sh"), ("biggest.sh", "top_file.sh"))
    sizes = rng.sample(range(100, 5000), 4)
    goal = phrase(rng, (
        "Create an executable script `scripts/{n}` that takes a directory and prints the name (just the file name, no path) "
        "of the largest regular file directly inside it; files in subfolders don't count.",
        "Write `scripts/{n}` (executable): `scripts/{n} DIR` prints the base name of the biggest file in DIR itself (not "
        "looking into subdirectories)."), n=name)
    files = ["alpha.log", "beta data.bin", "gamma.txt", "delta.csv"]
    big = files[sizes.index(max(sizes))]
    make = "; ".join(f'head -c {s} /dev/zero > "$t/d/{f}"' for f, s in zip(files, sizes))
    chk = check(FIXTURE, f'[ -x scripts/{name} ] || fail "scripts/{name} is missing or not executable"',
                'mkdir -p "$t/d/sub" "$t/e"', make, f'head -c {max(sizes) * 3} /dev/zero > "$t/d/sub/huge.bin"',
                'head -c 10 /dev/zero > "$t/e/small.txt"; head -c 20 /dev/zero > "$t/e/bigger.txt"',
                f'[ "$(./scripts/{name} "$t/d")" = "{big}" ] || fail "wrong answer for the first folder"',
                f'[ "$(./scripts/{name} "$t/e")" = "bigger.txt" ] || fail "wrong answer for the second folder"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
#!/bin/sh
find "$1" -maxdepth 1 -type f -printf '%s\\t%f\\n' | sort -rn | head -n 1 | cut -f2-
SCRIPT
chmod +x scripts/{name}"""
    return Draft(goal, "mkdir -p scripts", chk, sol, timeout_s=180)


def sc_prune(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("prune_old.py", "cleanup_old.py"), ("expire_files.py", "purge_stale.py"))
    days = rng.choice((7, 10, 30))
    goal = phrase(rng, (
        "Write the Python script `scripts/{n}`, run as `python3 scripts/{n} DIR DAYS`: it deletes every regular file under "
        "DIR (recursively) last modified more than DAYS days ago, and prints how many files it deleted (just the number).",
        "I need `scripts/{n}` (Python 3, standard library only): given a directory and a number of days, remove all files "
        "anywhere below the directory whose modification time is older than that many days, then print the count of "
        "deleted files. Usage: `python3 scripts/{n} DIR DAYS`."), n=name)
    chk = check(FIXTURE, f'[ -f scripts/{name} ] || fail "scripts/{name} is missing"',
                'mkdir -p "$t/a/b/c"',
                f'for f in old1 b/old2 b/c/old3; do echo x > "$t/a/$f"; touch -d "{days + 3} days ago" "$t/a/$f"; done',
                f'for f in new1 b/new2; do echo y > "$t/a/$f"; touch -d "{max(days - 3, 1)} days ago" "$t/a/$f"; done',
                'echo z > "$t/a/b/c/fresh"',
                f'[ "$(python3 scripts/{name} "$t/a" {days} | tr -d "[:space:]")" = "3" ] || fail "should report 3 deleted files"',
                '[ ! -e "$t/a/old1" ] && [ ! -e "$t/a/b/old2" ] && [ ! -e "$t/a/b/c/old3" ] || fail "old files still exist"',
                '[ -f "$t/a/new1" ] && [ -f "$t/a/b/new2" ] && [ -f "$t/a/b/c/fresh" ] || fail "recent files were deleted"',
                f'[ "$(python3 scripts/{name} "$t/a" {days} | tr -d "[:space:]")" = "0" ] || fail "a second run should report 0"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
import os, sys, time
root, days = sys.argv[1], float(sys.argv[2])
cutoff = time.time() - days * 86400
n = 0
for d, _, files in os.walk(root):
    for f in files:
        p = os.path.join(d, f)
        if os.path.isfile(p) and not os.path.islink(p) and os.path.getmtime(p) < cutoff:
            os.remove(p)
            n += 1
print(n)
SCRIPT"""
    return Draft(goal, "mkdir -p scripts", chk, sol, tags=("destructive",), timeout_s=180)


def sc_status(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("check_status.sh", "status_ok.sh"), ("is_healthy.sh", "probe.sh"))
    ok = pick(rng, split, ("status: ok", "health=ok"), ("STATE=healthy", "ready: true"))
    goal = phrase(rng, (
        "Write an executable script `scripts/{n}` taking one file path: exit with status 0 if the file contains a line "
        "that is exactly `{o}`, 1 if it exists but has no such line, and 2 if the file does not exist.",
        "Create `scripts/{n}` (executable) for our monitoring: `scripts/{n} FILE` must exit 0 when FILE has a line "
        "exactly equal to `{o}`, exit 1 when it doesn't, and exit 2 when FILE is missing."), n=name, o=ok)
    chk = check(FIXTURE, f'[ -x scripts/{name} ] || fail "scripts/{name} is missing or not executable"',
                f"printf 'uptime: 3d\\n{ok}\\nload: 0.2\\n' > \"$t/good\"",
                f"printf 'uptime: 3d\\n{ok} (degraded)\\n {ok}\\n' > \"$t/bad\"",
                f'./scripts/{name} "$t/good" >/dev/null 2>&1; [ $? -eq 0 ] || fail "should exit 0 when the line is there"',
                f'./scripts/{name} "$t/bad" >/dev/null 2>&1; [ $? -eq 1 ] || fail "should exit 1 without an exact line"',
                f'./scripts/{name} "$t/missing" >/dev/null 2>&1; [ $? -eq 2 ] || fail "should exit 2 for a missing file"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
#!/bin/sh
[ -e "$1" ] || exit 2
grep -qxF '{ok}' "$1" && exit 0
exit 1
SCRIPT
chmod +x scripts/{name}"""
    return Draft(goal, "mkdir -p scripts", chk, sol, timeout_s=180)


def sc_sum(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("sum_column.py", "csv_total.py"), ("column_total.py", "add_up.py"))
    vals = [[rng.randint(-50, 500) for _ in range(3)] for _ in range(6)]
    goal = phrase(rng, (
        "Write `scripts/{n}`, run as `python3 scripts/{n} FILE COLUMN`: FILE is a CSV whose first line is the header, "
        "COLUMN a header name of an integer column; it prints the sum of that column as an integer.",
        "I need a Python helper `scripts/{n}`: `python3 scripts/{n} data.csv qty` prints the integer total of the column "
        "named `qty` (any column name works, looked up in the header line)."), n=name)
    rows = "\\n".join(",".join(str(v) for v in r) for r in vals)
    sums = [sum(r[i] for r in vals) for i in range(3)]
    chk = check(FIXTURE, f'[ -f scripts/{name} ] || fail "scripts/{name} is missing"',
                f"printf 'units,price,qty\\n{rows}\\n' > \"$t/in.csv\"",
                f'[ "$(python3 scripts/{name} "$t/in.csv" qty | tr -d "[:space:]")" = "{sums[2]}" ] || fail "wrong sum for qty"',
                f'[ "$(python3 scripts/{name} "$t/in.csv" units | tr -d "[:space:]")" = "{sums[0]}" ] || fail "wrong sum for units"',
                f'[ "$(python3 scripts/{name} "$t/in.csv" price | tr -d "[:space:]")" = "{sums[1]}" ] || fail "wrong sum for price"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
import csv, sys
print(sum(int(r[sys.argv[2]]) for r in csv.DictReader(open(sys.argv[1], newline=''))))
SCRIPT"""
    return Draft(goal, "mkdir -p scripts", chk, sol, timeout_s=180)


def sc_lower_ext(rng: random.Random, split: str) -> Draft:
    name = pick(rng, split, ("lower_ext.sh", "fix_ext_case.sh"), ("normalize_ext.sh", "ext_lower.sh"))
    goal = phrase(rng, (
        "Write an executable script `scripts/{n}` that takes a directory and renames every file directly in it whose "
        "extension contains upper-case letters so that the extension is lower case (e.g. `IMG_01.JPG` becomes "
        "`IMG_01.jpg`). The rest of the name stays as is; subfolders are not touched.",
        "Create `scripts/{n}` (executable): `scripts/{n} DIR` lower-cases the extension of each file in DIR (not "
        "recursively), e.g. `Report.PDF` -> `Report.pdf`, leaving the part before the extension alone."), n=name)
    made = ("IMG_01.JPG", "Report Q1.PDF", "notes.txt", "Mixed.TxT", "README", "archive.tar.GZ")
    want = ("IMG_01.jpg", "Report Q1.pdf", "notes.txt", "Mixed.txt", "README", "archive.tar.gz")
    touch = " ".join(f'"$t/d/{m}"' for m in made)
    expect = "|".join(sorted(want + ("sub",)))
    chk = check(FIXTURE, f'[ -x scripts/{name} ] || fail "scripts/{name} is missing or not executable"',
                'mkdir -p "$t/d/sub"', f"touch {touch}", 'touch "$t/d/sub/DEEP.PNG"',
                f'./scripts/{name} "$t/d" || fail "the script failed"',
                f'[ "$(ls "$t/d" | sort | tr "\\n" "|")" = "{expect}|" ] || fail "wrong names: $(ls "$t/d" | tr "\\n" " ")"',
                '[ -e "$t/d/sub/DEEP.PNG" ] || fail "files in subfolders must not be renamed"')
    sol = f"""mkdir -p scripts
cat > scripts/{name} <<'SCRIPT'
#!/bin/bash
for f in "$1"/*.*; do
  [ -f "$f" ] || continue
  ext="${{f##*.}}"; low=$(printf '%s' "$ext" | tr '[:upper:]' '[:lower:]')
  [ "$ext" = "$low" ] || mv "$f" "${{f%.*}}.$low"
done
SCRIPT
chmod +x scripts/{name}"""
    return Draft(goal, "mkdir -p scripts", chk, sol, timeout_s=180)


# ---------------------------------------------------------------- cron (test-only)

JOBS = (("15 2 * * *", "/opt/app/bin/backup.sh >> /var/log/app/backup.log 2>&1", "nightly database backup"),
        ("*/5 * * * *", "/usr/local/bin/healthcheck --quiet", "liveness probe"),
        ("0 3 * * 0", "/usr/local/bin/rotate-logs --keep 7", "weekly log rotation"),
        ("30 6 * * 1-5", "/opt/app/bin/report.sh --daily", "weekday report"),
        ("0 * * * *", "/usr/local/bin/sync-assets --bucket static", "hourly asset sync"),
        ("45 23 * * *", "/opt/app/bin/cleanup-sessions", "expire sessions"),
        ("0 4 1 * *", "/usr/local/bin/certbot renew --quiet", "certificate renewal"))
SCHEDULES = (("every day at 01:30", ("30 1 * * *",)),
             ("every 10 minutes", ("*/10 * * * *", "0,10,20,30,40,50 * * * *", "0-59/10 * * * *")),
             ("every Monday at 04:00", ("0 4 * * 1", "0 4 * * mon")),
             ("on weekdays (Monday to Friday) at 07:45", ("45 7 * * 1-5", "45 7 * * mon-fri", "45 7 * * 1,2,3,4,5")),
             ("at minute 0 of every hour", ("0 * * * *",)),
             ("on the first day of every month at 05:00", ("0 5 1 * *",)),
             ("every Sunday at 23:30", ("30 23 * * 0", "30 23 * * 7", "30 23 * * sun")))
NEW_CMDS = ("/opt/app/bin/export-metrics --push", "/usr/local/bin/vacuum-db --analyze", "/opt/app/bin/send-digest",
            "/usr/local/bin/prune-docker-images", "/opt/app/bin/reindex-search --full")


def cron_doc(rng: random.Random) -> tuple[str, list[str], list[tuple[str, str]]]:
    """(path, lines, [(schedule, command)] of its jobs)."""
    path = rng.choice(("crontab.txt", "ops/crontab.txt", "deploy/cron/crontab.txt"))
    jobs = rng.sample(JOBS, 5)
    lines = ["# m h dom mon dow command", "SHELL=/bin/bash", "MAILTO=ops@example.com", ""]
    for sched, cmd, desc in jobs:
        lines += [f"# {desc}", f"{sched} {cmd}"]
    return path, lines, [(s, c) for s, c, _ in jobs]


CRON_PARSE = """
import re, sys
def norm_fields(fields):
    return ' '.join(re.sub(r'\\d+', lambda m: str(int(m.group())), f.lower()) for f in fields)
def job(line):
    parts = line.split(None, 5)
    if len(parts) < 6 or line.lstrip().startswith('#') or '=' in parts[0]:
        return None
    return norm_fields(parts[:5]), ' '.join(parts[5].split())
try:
    new = [' '.join(l.split()) for l in open(PATH).read().splitlines() if l.strip()]
except OSError:
    sys.exit(PATH + ' is missing')
orig = [' '.join(l.split()) for l in ORIG if l.strip()]
"""


def cron_check(path: str, lines: list[str], body: str) -> str:
    head = CRON_PARSE.replace("PATH", repr(path)).replace("ORIG", repr(lines))
    return py(head + textwrap.dedent(body))


def cr_add_words(rng: random.Random, split: str) -> Draft:
    path, lines, _ = cron_doc(rng)
    words, forms = rng.choice(SCHEDULES)
    cmd = rng.choice(NEW_CMDS)
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Add a job to `{p}` that runs `{c}` {w}. Keep all existing lines.",
        "Schedule `{c}` to run {w} by adding an entry to the crontab file `{p}`; the existing entries and comments must "
        "stay as they are.",
        "In `{p}`, add a cron line so that `{c}` runs {w}. Don't change the other lines."), p=path, c=cmd, w=words)
    chk = check(cron_check(path, lines, f"""
        extra = [l for l in new if l not in orig]
        if len(new) != len(orig) + 1 or len(extra) != 1 or [l for l in new if l != extra[0]] != orig:
            sys.exit('expected exactly one added line, existing lines unchanged')
        j = job(extra[0])
        if not j or j[1] != {cmd!r} or j[0] not in {[" ".join(f.split()) for f in forms]!r}:
            sys.exit('the new entry has the wrong schedule or command: ' + extra[0])
    """))
    sol = f"echo '{forms[0]} {cmd}' >> {path}"
    return Draft(goal, tree.setup(), chk, sol)


def cr_add_expr(rng: random.Random, split: str) -> Draft:
    path, lines, _ = cron_doc(rng)
    sched = rng.choice(("*/15 * * * *", "0 */6 * * *", "20 3 * * 2", "5 0 * * 6", "0 12 15 * *"))
    cmd = rng.choice(NEW_CMDS)
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Add the cron entry with schedule `{s}` and command `{c}` to `{p}`, keeping every existing line.",
        "`{p}` needs one more job: `{c}` on the schedule `{s}`. Leave the rest of the file unchanged."), p=path, c=cmd, s=sched)
    chk = check(cron_check(path, lines, f"""
        extra = [l for l in new if l not in orig]
        if len(new) != len(orig) + 1 or len(extra) != 1 or [l for l in new if l != extra[0]] != orig:
            sys.exit('expected exactly one added line, existing lines unchanged')
        if job(extra[0]) != (norm_fields({sched!r}.split()), {cmd!r}):
            sys.exit('the new entry is wrong: ' + extra[0])
    """))
    sol = f"echo '{sched} {cmd}' >> {path}"
    return Draft(goal, tree.setup(), chk, sol)


def cr_remove(rng: random.Random, split: str) -> Draft:
    path, lines, jobs = cron_doc(rng)
    sched, cmd = rng.choice(jobs)
    target = f"{sched} {cmd}"
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Remove the job that runs `{c}` from `{p}`; every other line stays. (Its comment line may stay or go.)",
        "We decommissioned `{c}`: delete its entry from the crontab file `{p}` and leave the other jobs untouched; "
        "whether the comment above it stays is up to you."), p=path, c=cmd.split()[0])
    comment = lines[lines.index(target) - 1]
    chk = check(cron_check(path, lines, f"""
        want = [l for l in orig if l != {" ".join(target.split())!r}]
        if new != want and new != [l for l in want if l != {comment!r}]:
            sys.exit('expected the original file without the {cmd.split()[0]} job')
    """))
    sol = f"grep -vF -- '{cmd}' {path} > {path}.new && mv {path}.new {path}"
    return Draft(goal, tree.setup(), chk, sol, tags=("destructive",))


def cr_reschedule(rng: random.Random, split: str) -> Draft:
    path, lines, jobs = cron_doc(rng)
    sched, cmd = rng.choice(jobs)
    words, forms = rng.choice([s for s in SCHEDULES if sched not in s[1]])
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    index = lines.index(f"{sched} {cmd}")
    goal = phrase(rng, (
        "In `{p}`, the job running `{c}` should now run {w} instead. Change only its schedule; the command and every other "
        "line stay the same.",
        "Reschedule `{c}` in `{p}` to {w}. Nothing else in the file may change."), p=path, c=cmd.split()[0], w=words)
    chk = check(cron_check(path, lines, f"""
        if len(new) != len(orig):
            sys.exit('lines were added or removed')
        i = {len([l for l in lines[:index] if l.strip()])}
        if new[:i] + new[i + 1:] != orig[:i] + orig[i + 1:]:
            sys.exit('other lines changed')
        j = job(new[i])
        if not j or j[1] != {" ".join(cmd.split())!r} or j[0] not in {[" ".join(f.split()) for f in forms]!r}:
            sys.exit('the job line is wrong: ' + new[i])
    """))
    sol = f"""python3 - <<'SOL'
p = {path!r}
lines = open(p).read().splitlines()
lines = [{forms[0]!r} + ' ' + {cmd!r} if l == {lines[index]!r} else l for l in lines]
open(p, 'w').write('\\n'.join(lines) + '\\n')
SOL"""
    return Draft(goal, tree.setup(), chk, sol)


def cr_disable(rng: random.Random, split: str) -> Draft:
    path, lines, jobs = cron_doc(rng)
    sched, cmd = rng.choice(jobs)
    index = lines.index(f"{sched} {cmd}")
    tree = Tree()
    tree.text(path, "\n".join(lines) + "\n")
    goal = phrase(rng, (
        "Temporarily disable the `{c}` job in `{p}` by commenting out its line (put `#` in front of it); keep the line's "
        "text and all other lines as they are.",
        "Comment out (don't delete) the cron entry for `{c}` in `{p}`. The other lines must stay unchanged."),
        p=path, c=cmd.split()[0])
    chk = check(cron_check(path, lines, f"""
        if len(new) != len(orig):
            sys.exit('lines were added or removed')
        i = {len([l for l in lines[:index] if l.strip()])}
        if new[:i] + new[i + 1:] != orig[:i] + orig[i + 1:]:
            sys.exit('other lines changed')
        if not new[i].startswith('#') or ' '.join(new[i].lstrip('#').split()) != orig[i]:
            sys.exit('the job line should be commented out unchanged: ' + new[i])
    """))
    sol = f"""python3 - <<'SOL'
p = {path!r}
lines = open(p).read().splitlines()
lines = ['#' + l if l == {lines[index]!r} else l for l in lines]
open(p, 'w').write('\\n'.join(lines) + '\\n')
SOL"""
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- diskusage (test-only)

def du_tree(rng: random.Random) -> tuple[str, Tree, dict[str, int]]:
    """A root with 6 folders whose totals differ by >= 30%, plus a big loose file at the root
    (a file, not a folder, so it must not be listed as one)."""
    root = rng.choice(("data", "var/lib", "srv/storage", "home"))
    names = rng.sample(("cache", "uploads", "db", "backups", "media", "logs", "tmp", "exports", "builds"), 6)
    tree, totals = Tree(), {}
    kb = 24
    for name in names[::-1]:
        kb = int(kb * rng.uniform(1.35, 1.6))
        totals[f"{root}/{name}"] = 0
        parts = rng.randint(1, 3)
        for part in range(parts):
            size = (kb * 1024) // parts + rng.randint(0, 999)
            sub = rng.choice(("", "a/", "a/b/", "2025/"))
            path = f"{root}/{name}/{sub}part{part}.{rng.choice(('log', 'bin', 'dat'))}"
            tree.blob(path, size)
            totals[f"{root}/{name}"] += size
    tree.blob(f"{root}/big-dump.log", max(totals.values()) + 50_000)
    return root, tree, totals


def du_dirs(rng: random.Random, split: str) -> Draft:
    root, tree, totals = du_tree(rng)
    n = rng.choice((2, 3, 4))
    out = rng.choice(("du_report.txt", "reports/largest_dirs.txt", "space.txt"))
    top = sorted(totals, key=totals.get, reverse=True)[:n]  # type: ignore[arg-type]
    want = [(p, totals[p] / 1024) for p in top]
    goal = phrase(rng, (
        "Write the {n} largest folders directly under `{r}/` (counting everything inside them) to `{o}`, largest first, "
        "one per line as `<size in KB> <path>`, where the path is relative to the workspace (like `{r}/name`) and 1 KB = "
        "1024 bytes.",
        "Which {n} subfolders of `{r}` take the most space? List them in `{o}` biggest first, each line `<KB> <path>` "
        "(path relative to the workspace, total size of the folder's contents in KB of 1024 bytes)."), n=n, r=root, o=out)
    chk = check(py(f"""
        import sys
        try:
            rows = [l.split() for l in open({out!r}) if l.strip()]
        except OSError:
            sys.exit({out!r} + ' is missing')
        want = {want!r}
        if len(rows) != len(want) or any(len(r) != 2 for r in rows):
            sys.exit('expected %d lines of "<KB> <path>"' % len(want))
        for (size, path), (wpath, wkb) in zip(rows, want):
            path = path[2:] if path.startswith('./') else path
            if path.rstrip('/') != wpath:
                sys.exit('wrong folder or order: ' + path)
            if not size.isdigit() or abs(int(size) - wkb) > max(32, 0.1 * wkb):
                sys.exit('size for %s is off: %s' % (wpath, size))
    """), unchanged(tree.data))
    parent = Path(out).parent
    mk = "" if str(parent) == "." else f"mkdir -p {parent}\n"
    sol = f"{mk}du -sk {root}/*/ | sort -rn | head -n {n} | sed 's|/$||' > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def du_files(rng: random.Random, split: str) -> Draft:
    root, tree, _ = du_tree(rng)
    n = rng.choice((3, 5))
    out = rng.choice(("largest_files.txt", "top_files.txt", "reports/big_files.txt"))
    want = sorted(((len(b), p) for p, b in tree.data.items()), reverse=True)[:n]
    goal = phrase(rng, (
        "List the {n} largest files anywhere under `{r}/` in `{o}`, biggest first, one per line as `<size in bytes> <path>` "
        "with the path relative to the workspace.",
        "Find the {n} biggest files below `{r}` and write them to `{o}`: each line is the exact size in bytes, a space, "
        "and the workspace-relative path; largest first."), n=n, r=root, o=out)
    chk = check(top_pairs_check(out, want), unchanged(tree.data))
    parent = Path(out).parent
    mk = "" if str(parent) == "." else f"mkdir -p {parent}\n"
    sol = f"{mk}find {root} -type f -printf '%s %p\\n' | sort -rn | head -n {n} > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def du_logs(rng: random.Random, split: str) -> Draft:
    root, tree, _ = du_tree(rng)
    out = rng.choice(("log_bytes.txt", "logs_total.txt"))
    total = sum(len(b) for p, b in tree.data.items() if p.endswith(".log"))
    goal = phrase(rng, (
        "How many bytes do all the `.log` files under `{r}/` (any depth) take together? Write the exact total in bytes to "
        "`{o}`.",
        "Add up the sizes in bytes of every file ending in `.log` anywhere below `{r}` and put the number in `{o}`."),
        r=root, o=out)
    chk = check(holds_number(out, total), unchanged(tree.data))
    sol = f"find {root} -type f -name '*.log' -printf '%s\\n' | awk '{{s += $1}} END {{print s}}' > {out}"
    return Draft(goal, tree.setup(), chk, sol)


def du_biggest(rng: random.Random, split: str) -> Draft:
    root, tree, totals = du_tree(rng)
    out = rng.choice(("biggest_dir.txt", "answer.txt"))
    top = max(totals, key=totals.get)  # type: ignore[arg-type]
    goal = phrase(rng, (
        "Which folder directly inside `{r}/` uses the most disk space (including its subfolders)? Write its path, relative "
        "to the workspace (like `{r}/name`), to `{o}`.",
        "Find the largest subdirectory of `{r}` by total size and save its workspace-relative path in `{o}`."), r=root, o=out)
    chk = check(py_lines_equal(out, [top], ordered=True), unchanged(tree.data))
    sol = f"du -sk {root}/*/ | sort -rn | head -n 1 | cut -f2 | sed 's|/$||' > {out}"
    return Draft(goal, tree.setup(), chk, sol)


# ---------------------------------------------------------------- git (test-only)

def git_repo(rng: random.Random) -> tuple[str, list[str], dict[str, str], str]:
    """(setup, commit subjects oldest first, final tracked files, repo dir); fixed dates keep it reproducible."""
    repo = rng.choice(("repo", "src/webapp", "projects/api"))
    app = rng.choice(("shop", "portal", "relay", "tracker"))
    version = f"1.{rng.randint(0, 9)}.{rng.randint(0, 9)}"
    steps = [("Initial commit", {"README.md": f"# {app}\n", "VERSION": f"{version}\n", ".gitignore": "*.pyc\n__pycache__/\n"}),
             ("Add settings", {"config/settings.ini": "[server]\nport = 8080\n"}),
             ("Fix login redirect", {"src/app.py": "def login():\n    return '/home'\n"}),
             ("Add debug logging", {"src/log.py": "DEBUG = True\n", ".env": f"SECRET_KEY={rng.randint(10**9, 10**10)}\n"})]
    lines = ["set -e", f"mkdir -p {repo}", f"cd {repo}", "git init -q -b main", "git config user.name 'Ops Bot'",
             "git config user.email 'ops@example.com'"]
    files: dict[str, str] = {}
    for day, (subject, changes) in enumerate(steps, start=1):
        for path, text in changes.items():
            if "/" in path:
                lines.append(f"mkdir -p {Path(path).parent}")
            lines.append(heredoc(path, text))
        files.update(changes)
        date = f"2026-01-0{day}T10:00:00Z"
        lines.append(f"git add -A && GIT_AUTHOR_DATE={date} GIT_COMMITTER_DATE={date} git commit -q -m {q(subject)}")
    return "\n".join(lines), [s for s, _ in steps], files, repo


def subjects_check(repo: str, ref: str, subjects: list[str]) -> str:
    joined = "|".join(subjects[::-1]) + "|"
    return f'[ "$(git -C {repo} log --format=%s {ref} 2>/dev/null | tr "\\n" "|")" = {q(joined)} ] || fail "history of {ref} is not as expected"'


def commit_of(repo: str, subject: str) -> str:
    return f"$(git -C {repo} log --format='%H %s' main | awk -v s={q(subject)} '{{h = $1; sub(/^[^ ]+ /, \"\")}} $0 == s {{print h}}')"


def gt_branch(rng: random.Random, split: str) -> Draft:
    setup, subjects, _, repo = git_repo(rng)
    base = rng.choice(subjects[1:])
    branch = rng.choice(("release/2.4", "hotfix/login", "feature/search-v2", "backport-1.x"))
    goal = phrase(rng, (
        "In the git repository `{r}`, create a branch named `{b}` that starts at the commit with the message `{s}`. Don't "
        "add commits and leave `main` as it is.",
        "Make a new branch `{b}` in `{r}` pointing at the commit \"{s}\" on main (not at the tip unless that is the same "
        "commit). `main` must not change."), r=repo, b=branch, s=base)
    chk = check(f'want={commit_of(repo, base)}', f'got=$(git -C {repo} rev-parse -q --verify refs/heads/{branch})',
                f'[ -n "$want" ] && [ "$got" = "$want" ] || fail "branch {branch} does not point at the right commit"',
                subjects_check(repo, "main", subjects))
    sol = f"cd {repo}\ngit branch {branch} {commit_of('.', base)}"
    return Draft(goal, setup, chk, sol, timeout_s=180)


def gt_commit(rng: random.Random, split: str) -> Draft:
    setup, subjects, files, repo = git_repo(rng)
    version = f"2.{rng.randint(0, 9)}.0"
    msg = rng.choice((f"Bump version to {version}", f"Release {version}", f"Prepare {version}"))
    goal = phrase(rng, (
        "In `{r}`, set the contents of `VERSION` to `{v}` and commit only that change on `main` with the message `{m}`.",
        "Bump `{r}/VERSION` to `{v}` and record it as a new commit on main whose message is exactly \"{m}\". No other file "
        "should be part of the commit."), r=repo, v=version, m=msg)
    chk = check(subjects_check(repo, "main", subjects + [msg]),
                f'[ "$(git -C {repo} show main:VERSION | tr -d "[:space:]")" = "{version}" ] || fail "VERSION in the commit is wrong"',
                f'[ "$(git -C {repo} diff-tree --no-commit-id --name-only -r main)" = "VERSION" ] || fail "the commit should change only VERSION"',
                f'[ -z "$(git -C {repo} status --porcelain --untracked-files=no)" ] || fail "uncommitted changes remain"')
    sol = f"cd {repo}\necho {version} > VERSION\ngit add VERSION\ngit commit -q -m {q(msg)}"
    return Draft(goal, setup, chk, sol, timeout_s=180)


def gt_tag(rng: random.Random, split: str) -> Draft:
    setup, subjects, _, repo = git_repo(rng)
    subject = rng.choice(subjects[1:])
    tag = f"v1.{rng.randint(0, 9)}.{rng.randint(1, 9)}"
    note = rng.choice((f"Release {tag}", f"Hotfix {tag}", f"Version {tag[1:]}"))
    goal = phrase(rng, (
        "Tag the commit with the message `{s}` in `{r}` as `{t}`, using an annotated tag whose message is `{n}`.",
        "Create the annotated tag `{t}` (tag message: \"{n}\") on the commit \"{s}\" in the repository `{r}`."),
        s=subject, r=repo, t=tag, n=note)
    chk = check(f'[ "$(git -C {repo} cat-file -t {tag} 2>/dev/null)" = "tag" ] || fail "{tag} is not an annotated tag"',
                f'[ "$(git -C {repo} rev-parse {tag}^{{commit}})" = "{commit_of(repo, subject)}" ] || fail "{tag} points at the wrong commit"',
                f'[ "$(git -C {repo} cat-file -p {tag} | sed "1,/^$/d" | sed "/^$/d")" = {q(note)} ] || fail "wrong tag message"',
                subjects_check(repo, "main", subjects))
    sol = f"cd {repo}\ngit tag -a {tag} -m {q(note)} {commit_of('.', subject)}"
    return Draft(goal, setup, chk, sol, timeout_s=180)


def gt_untrack(rng: random.Random, split: str) -> Draft:
    setup, subjects, files, repo = git_repo(rng)
    target = rng.choice((".env", "src/log.py"))
    msg = rng.choice((f"Stop tracking {target}", f"Untrack {target}", f"Remove {target} from the repository"))
    ignore = files[".gitignore"].splitlines()
    goal = phrase(rng, (
        "`{t}` was committed to `{r}` by mistake. Stop tracking it but keep the file on disk, add it to `.gitignore` "
        "(keeping the existing entries), and commit that with the message `{m}`.",
        "In `{r}`: remove `{t}` from version control (not from disk), make git ignore it via `.gitignore`, and commit the "
        "change as \"{m}\"."), t=target, r=repo, m=msg)
    chk = check(subjects_check(repo, "main", subjects + [msg]),
                f'[ -z "$(git -C {repo} ls-tree -r --name-only main -- {target})" ] || fail "{target} is still tracked"',
                f'git -C {repo} check-ignore -q {target} || fail "{target} is not ignored"',
                unchanged({f"{repo}/{target}": files[target].encode()}),
                py(f"""
        import subprocess, sys
        out = subprocess.run(['git', '-C', {repo!r}, 'show', 'main:.gitignore'], capture_output=True, text=True).stdout
        lines = [l.strip() for l in out.splitlines() if l.strip() and not l.lstrip().startswith('#')]
        if [l for l in lines if l.lstrip('/') != {target!r}] != {ignore!r} or len(lines) != {len(ignore) + 1}:
            sys.exit('.gitignore should keep its entries and gain one for {target}')
    """),
                f'[ -z "$(git -C {repo} status --porcelain)" ] || fail "the working tree is not clean"')
    sol = f"cd {repo}\ngit rm -q --cached {target}\necho '{target}' >> .gitignore\ngit add .gitignore\ngit commit -q -m {q(msg)}"
    return Draft(goal, setup, chk, sol, tags=("destructive",), timeout_s=180)


def gt_feature(rng: random.Random, split: str) -> Draft:
    setup, subjects, _, repo = git_repo(rng)
    branch, path, text = rng.choice((("feature/healthz", "src/health.py", "STATUS = 'ok'"),
                                     ("docs/runbook", "docs/RUNBOOK.md", "Restart with systemctl restart app"),
                                     ("chore/ci-notes", "ci/NOTES.txt", "Pipeline runs on every push")))
    msg = rng.choice((f"Add {path}", f"Add {Path(path).name}"))
    goal = phrase(rng, (
        "In `{r}`, create a branch `{b}` from `main` and on it commit a new file `{p}` containing the single line `{t}`, with "
        "the commit message `{m}`. `main` itself must not change.",
        "Start branch `{b}` off main in `{r}`, add `{p}` there (one line: `{t}`) and commit it as \"{m}\"; leave main "
        "untouched."), r=repo, b=branch, p=path, t=text, m=msg)
    chk = check(subjects_check(repo, "main", subjects), subjects_check(repo, branch, subjects + [msg]),
                f'[ "$(git -C {repo} show {branch}:{path} 2>/dev/null)" = {q(text)} ] || fail "{path} on {branch} is wrong"',
                f'[ "$(git -C {repo} rev-parse {branch}~1)" = "$(git -C {repo} rev-parse main)" ] || fail "{branch} should branch off main"')
    sol = (f"cd {repo}\ngit checkout -q -b {branch}\nmkdir -p {Path(path).parent}\necho {q(text)} > {path}\n"
           f"git add {path}\ngit commit -q -m {q(msg)}")
    return Draft(goal, setup, chk, sol, timeout_s=180)


# ---------------------------------------------------------------- assembly

FAMILIES: tuple[Family, ...] = (
    Family("housekeep", 7, 5, (hk_sort, hk_rename, hk_prefix, hk_skeleton)),
    Family("findfiles", 7, 5, (ff_large, ff_old_delete, ff_pattern_delete, ff_old_move)),
    Family("logcount", 7, 4, (lc_level, lc_rotated, lc_by_level, lc_window)),
    Family("accesslog", 7, 5, (al_top_ips, al_top_paths, al_5xx, al_404_ips, al_bytes)),
    Family("archive", 7, 5, (ar_tar, ar_tar_exclude, ar_zip, ar_extract, ar_restore, ar_list)),
    Family("perms", 6, 4, (pm_scripts, pm_secrets, pm_private, pm_readonly)),
    Family("rotate", 6, 4, (ro_numbered, ro_dated, ro_keep, ro_truncate)),
    Family("ini", 6, 4, (ini_change, ini_add)),
    Family("envfile", 6, 4, (env_change, env_add, env_remove)),
    Family("jsonconf", 6, 4, (js_number, js_bool, js_string, js_add, js_remove, js_append)),
    Family("yamlconf", 6, 4, (ym_image, ym_replicas, ym_nested, ym_add)),
    Family("csvfix", 7, 5, (cv_dedupe, cv_fix, cv_json, cv_sort, cv_filter, cv_sum)),
    Family("script", 7, 5, (sc_count_lines, sc_largest, sc_prune, sc_status, sc_sum, sc_lower_ext)),
    Family("cron", 0, 10, (cr_add_words, cr_add_expr, cr_remove, cr_reschedule, cr_disable)),
    Family("diskusage", 0, 10, (du_dirs, du_files, du_logs, du_biggest)),
    Family("git", 0, 10, (gt_branch, gt_commit, gt_tag, gt_untrack, gt_feature)),
)


def build() -> tuple[list[str], list[str]]:
    """The pack's JSONL lines and the solutions' JSONL lines, in the same task order."""
    pack, solutions = [], []
    for fam in FAMILIES:
        rng = random.Random(f"{SEED}:{fam.name}")
        goals: set[str] = set()
        for i in range(fam.train + fam.test):
            split = "train" if i < fam.train else "test"
            draft = fam.variants[i % len(fam.variants)](rng, split)
            while draft.goal in goals:  # two tasks worded identically teach and measure less: draw again
                draft = fam.variants[i % len(fam.variants)](rng, split)
            goals.add(draft.goal)
            task_id = f"os-{fam.name}-{i + 1:03d}"
            pack.append(json.dumps({"id": task_id, "family": fam.name, "goal": draft.goal, "setup": draft.setup,
                                    "check": draft.check, "timeout_s": draft.timeout_s, "split": split,
                                    "tags": list(draft.tags)}, ensure_ascii=False))
            solutions.append(json.dumps({"id": task_id, "solution": draft.solution}, ensure_ascii=False))
    return pack, solutions


def main() -> None:
    pack, solutions = build()
    SOLUTIONS_PATH.parent.mkdir(parents=True, exist_ok=True)
    PACK_PATH.write_text("\n".join(pack) + "\n")
    SOLUTIONS_PATH.write_text("\n".join(solutions) + "\n")
    print(f"wrote {len(pack)} tasks to {PACK_PATH} and {SOLUTIONS_PATH}")


if __name__ == "__main__":
    main()
