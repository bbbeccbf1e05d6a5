#!/usr/bin/env python3
"""Prefixes every bare spec citation with the name of the spec it cites (issue 16).

Three wire references live in docs/protocols/ (distcache.md, daemonproxy.md, clacks.md), each with numbered
sections, and a bare "spec 12" is ambiguous between them. This rewrites

    spec 13.4            ->  distcache §13.4        (the spec chosen by the file, see below)
    Spec 2.4 step 4      ->  daemonproxy §2.4 step 4
    spec section 11      ->  distcache §11
    spec sections 5, 6   ->  distcache §5, §6
    spec 10.1 and 12     ->  distcache §10.1 and §12
    spec 8/12            ->  daemonproxy §8/§12
    distcache spec 2.1   ->  distcache §2.1          (already named: only the form is made uniform)
    daemonproxy 3.2      ->  daemonproxy §3.2        (a dotted section after a spec name)

and leaves "distcache §13.4" alone, so running it again changes nothing (idempotent). Re-run it after merging
branches that add comments: `python3 tools/prefix-spec-citations.py` (rewrites in place, lists the changes),
`--check` (changes nothing, exit 1 if anything would change or cannot be decided).

Which spec a bare citation means, first rule that decides:
  1. FILE_SPEC: a few files whose project is shared (host, transport) but whose citations are all one spec;
  2. PROJECT_SPEC: the file's project directory (a distcache role cites distcache, the supervisor daemonproxy);
  3. the nearest spec word earlier on the same line ("dc_server's start-up order (spec 9.2)" is distcache);
  4. the only spec whose words appear in the file.
A citation none of these decides is listed and the script exits 1: add the file to FILE_SPEC (or write the
spec name in the comment) and run it again.
"""

import os
import re
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

SPECS = ("distcache", "daemonproxy", "clacks")

# Project directories (relative to the repository) -> the spec their citations mean.
PROJECT_SPEC = {
    "src/CacheHost.Protocols.DistCache": "distcache",
    "src/CacheHost.Roles.CacheServer": "distcache",
    "src/CacheHost.Roles.ClientProxy": "distcache",
    "src/CacheHost.Roles.Snoop": "distcache",
    "src/CacheHost.Client": "distcache",
    "src/CacheHost.LoadTool": "distcache",
    "tests/CacheHost.CacheServer.Tests": "distcache",
    "tests/CacheHost.ClientProxy.Tests": "distcache",
    "tests/CacheHost.Snoop.Tests": "distcache",
    "tests/CacheHost.Client.Tests": "distcache",
    "tests/CacheHost.LoadTool.Tests": "distcache",
    "bench/CacheHost.Benchmarks": "distcache",
    "docs/distcache-tools.md": "distcache",
    "src/CacheHost.Protocols.Tsv": "daemonproxy",
    "src/CacheHost.Roles.ProcessSupervisor": "daemonproxy",
    "tests/CacheHost.ProcessSupervisor.Tests": "daemonproxy",
    # The control socket follows daemonproxy's line conventions.
    "src/CacheHost.Core/Control": "daemonproxy",
    "src/CacheHost.Systemd/Control": "daemonproxy",
    "docs/daemonproxy.md": "daemonproxy",
    "src/CacheHost.Protocols.Clacks": "clacks",
    "src/CacheHost.Roles.Clacks": "clacks",
    "tests/CacheHost.Clacks.Tests": "clacks",
    "bench/CacheHost.Clacks.Bench": "clacks",
    "docs/clacks.md": "clacks",
}

# Single files in shared projects whose citations rules 3 and 4 cannot decide.
FILE_SPEC = {
    "tests/CacheHost.Systemd.Tests/RoleStatsCommandTests.cs": "distcache",  # dc_client's "no link" reply (§10.4)
    "tests/CacheHost.Host.Tests/CacheStatsControlTests.cs": "distcache",  # an ADD exchange (§5.1)
    "src/CacheHost.Transport/OutboundConnector.cs": "distcache",  # libnal connect semantics (§2.1)
    "src/CacheHost.Transport/TransportAddress.cs": "distcache",  # libnal address strings (§2.1)
}

# Words that name (or only belong to) one spec, for rules 3 and 4.
SPEC_WORDS = {
    "distcache": r"distcache|libdistcache|libnal|dc_server|dc_client|dc_snoop|dc_test|DC_CTX",
    "daemonproxy": r"daemonproxy",
    "clacks": r"Net::Clacks|clacks|interclacks",
}
WORD_RE = {name: re.compile(r"(?<![A-Za-z])(?:%s)(?![A-Za-z])" % words, re.IGNORECASE) for name, words in SPEC_WORDS.items()}

SECTION = r"\d{1,2}(?:\.\d{1,2})*"
# More sections after the first: ", 6", " and 12", "/12", "-3.2" (a range keeps its second number bare).
# Not a count ("5 s") or a defect range ("spec 15, 1-5").
MORE = r"(?:(?:,\s|\sand\s|\sor\s|/)(?:§)?%s(?![\d.]*(?:\s*(?:ms|s|bytes|KiB|MiB)\b|-)))*" % SECTION
# A bare citation: "spec 4.1", "Spec 2.4", "spec section 11", "spec sections 5, 6", "specs 3 and 4".
BARE = re.compile(r"(?<![A-Za-z§])(?P<spec>[Ss]pecs?)(?:\s+sections?)?\s+(?P<first>%s)(?![\d])(?P<more>%s)" % (SECTION, MORE))
# Already named, in another form: "distcache spec 2.1", "daemonproxy spec section 3", "distcache 13.1".
NAMED = re.compile(
    r"(?<![A-Za-z])(?P<name>distcache|daemonproxy|clacks)(?:\s+specs?(?:\s+sections?)?\s+|\s+(?=\d+\.\d))(?P<first>%s)(?![\d])(?!\.[\dA-Za-z])(?P<more>%s)" % (SECTION, MORE),
    re.IGNORECASE)
MORE_ITEM = re.compile(r"(,\s|\sand\s|\sor\s|/)(§)?(%s)" % SECTION)

# In C# only comments are rewritten (a log message or an error text is behaviour, and tests may match it).
EXTENSIONS = (".cs", ".csproj", ".props", ".md")
SKIP_DIRS = {"bin", "obj", ".git", "artifacts", "TestResults", "Vectors"}
# The references themselves number their own sections.
SKIP_FILES = {"docs/protocols/distcache.md", "docs/protocols/daemonproxy.md", "docs/protocols/clacks.md",
              "tools/prefix-spec-citations.py"}


def split_comment(rel, line):
    """(code, comment) of a line: the whole line is prose except in C#, where it is what follows // or a
    line inside a /* */ block (a line starting with *). A // inside a string literal ends the code early; the
    citation regexes then find nothing there anyway unless the string itself cites a spec."""
    if not rel.endswith(".cs"):
        return "", line
    stripped = line.lstrip()
    if stripped.startswith(("//", "*", "/*")):
        return "", line
    in_string = False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        elif not in_string and line.startswith("//", i):
            return line[:i], line[i:]
    return line, ""


def spec_for_path(rel):
    if rel in FILE_SPEC:
        return FILE_SPEC[rel]
    best = None
    for prefix, spec in PROJECT_SPEC.items():
        if (rel == prefix or rel.startswith(prefix + "/")) and (best is None or len(prefix) > len(best[0])):
            best = (prefix, spec)
    return best[1] if best else None


def nearest_word(line, end):
    best = None
    for name, regex in WORD_RE.items():
        for m in regex.finditer(line, 0, end):
            if best is None or m.start() > best[0]:
                best = (m.start(), name)
    return best[1] if best else None


def file_words(text):
    return {name for name, regex in WORD_RE.items() if regex.search(text)}


def render(name, first, more):
    more = MORE_ITEM.sub(lambda m: m.group(1) + "§" + m.group(3), more)
    return f"{name.lower()} §{first}{more}"


def rewrite(rel, text):
    """Returns (new text, changes, undecided)."""
    by_path = spec_for_path(rel)
    in_file = file_words(text)
    changes, undecided, out = [], [], []
    for number, whole in enumerate(text.split("\n"), 1):
        code, line = split_comment(rel, whole)
        new = NAMED.sub(lambda m: render(m.group("name"), m.group("first"), m.group("more")), line)

        def bare(m):
            spec = by_path or nearest_word(new, m.start()) or (next(iter(in_file)) if len(in_file) == 1 else None)
            if spec is None:
                undecided.append(f"{rel}:{number}: {line.strip()}")
                return m.group(0)
            return render(spec, m.group("first"), m.group("more"))

        new = code + BARE.sub(bare, new)
        if new != whole:
            changes.append(f"{rel}:{number}: {whole.strip()}\n    -> {new.strip()}")
        out.append(new)
    return "\n".join(out), changes, undecided


def files():
    for top in ("src", "tests", "bench", "docs", "tools", "deploy", "packaging", ".ci"):
        for directory, dirs, names in os.walk(os.path.join(ROOT, top)):
            dirs[:] = [d for d in dirs if d not in SKIP_DIRS]
            for name in sorted(names):
                if name.endswith(EXTENSIONS):
                    yield os.path.relpath(os.path.join(directory, name), ROOT)
    yield "README.md"


def main():
    check = "--check" in sys.argv[1:]
    all_changes, all_undecided = [], []
    for rel in files():
        if rel in SKIP_FILES:
            continue
        path = os.path.join(ROOT, rel)
        with open(path, encoding="utf-8", newline="") as f:
            text = f.read()
        new, changes, undecided = rewrite(rel, text)
        all_changes += changes
        all_undecided += undecided
        if changes and not check:
            with open(path, "w", encoding="utf-8", newline="") as f:
                f.write(new)
    for change in all_changes:
        print(change)
    for item in all_undecided:
        print("cannot decide the spec (add the file to FILE_SPEC or name the spec):", item, file=sys.stderr)
    print(f"{len(all_changes)} line(s) {'would change' if check else 'changed'}, {len(all_undecided)} undecided", file=sys.stderr)
    return 1 if all_undecided or (check and all_changes) else 0


if __name__ == "__main__":
    sys.exit(main())
