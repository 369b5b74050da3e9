"""A shell line is read as the simple commands it would run, however it is written."""

import pytest

from hybrid_agent.policies.shell import ShellParseError, parse


def programs(line: str) -> list[str]:
    return [command.program for command in parse(line)]


@pytest.mark.parametrize("line, expected", [
    ("wc -l < list.tsv > n.out", ["wc"]),
    ("mkdir -p out && mv x.ini out/", ["mkdir", "mv"]),
    ("FOO=1 sort a | uniq -c", ["sort", "uniq"]),
    ("for f in *; do gzip $f; done", ["gzip"]),
    ("if true; then ls; fi", ["true", "ls"]),
    ("(cd a && make)", ["cd", "make"]),
    ("echo $(rm -rf /) | sh", ["rm", "echo", "sh"]),
    ("cat <(ls) > out", ["ls", "cat"]),
    ("echo `id`", ["id", "echo"]),
])
def test_pipes_lists_subshells_and_substitutions_are_seen_through(line, expected):
    assert programs(line) == expected


@pytest.mark.parametrize("line, inner, via", [
    ('bash -c "rm -rf /"', "rm", ("bash -c",)),
    ("sh -c 'curl x | sh'", "curl", ("sh -c",)),
    ('eval "rm -rf /"', "rm", ("eval",)),
    ("ls | xargs -n 1 rm", "rm", ("xargs",)),
    ("find . -name '*.log' -exec rm {} \\;", "rm", ("find -exec",)),
    ("sudo -u root env A=1 timeout 5 nohup /bin/rm -rf /", "rm", ("sudo", "env", "timeout", "nohup")),
    ("bash -c \"sh -c 'eval rm -rf /'\"", "rm", ("bash -c", "sh -c", "eval")),
])
def test_nested_shells_eval_xargs_find_and_wrappers_reveal_the_command(line, inner, via):
    found = [command for command in parse(line) if command.program == inner]
    assert found and found[0].via == via


def test_an_absolute_path_names_the_same_program():
    assert programs("/usr/bin/rm -f x") == ["rm"]


@pytest.mark.parametrize("line", ['echo "unbalanced', "bash -c " + '"bash -c \\"' * 8,
                                  "case $x in a) rm -rf /;; esac", "echo $((1+2))"])
def test_what_cannot_be_parsed_is_an_error_not_a_pass(line):
    with pytest.raises(ShellParseError):
        parse(line)


def argvs(line: str) -> list[tuple[str, ...]]:
    return [command.argv for command in parse(line)]


@pytest.mark.parametrize("line, expected", [
    ("X=/etc; rm -r $X", ("rm", "-r", "/etc")),
    ('C="rm -rf /"; $C', ("rm", "-rf", "/")),                     # unquoted: split into words
    ("export T=/boot; ls ${T}", ("ls", "/boot")),
    ("alias x='rm -rf /'; x", ("rm", "-rf", "/")),
    ("for d in /etc /usr; do rm -r $d; done", ("rm", "-r", "/usr")),
    ("find /var -name x -exec shred of={} \\;", ("shred", "of=/var")),
    ("bash -lc 'wipefs -a /dev/sda'", ("wipefs", "-a", "/dev/sda")),
    ("time rm -rf /usr", ("rm", "-rf", "/usr")),
    ("busybox rm -rf /", ("rm", "-rf", "/")),
    ("python3 -m pip install x", ("pip", "install", "x")),
])
def test_literal_values_aliases_loops_and_keywords_are_seen_through(line, expected):
    assert expected in argvs(line)


def test_redirects_pipelines_and_directories_are_recorded():
    first, second, third = parse("cd /tmp && curl -s x | base64 -d > out 2>&1 | sh")[1:]
    assert first.cwd == "/tmp" and first.program == "curl"
    assert [r.target for r in second.redirects if r.writes] == ["out"]
    assert [c.program for c in third.stdin_from] == ["curl", "base64"]


def test_a_bare_redirect_is_a_command_that_writes():
    (command,) = parse("> /etc/passwd")
    assert command.redirects[0].target == "/etc/passwd" and command.redirects[0].writes


def test_a_quoted_here_document_is_understood():
    (command,) = parse("cat > conf.ini <<'EOF'\n[a]\nb = 1\nEOF")
    assert command.program == "cat"


def test_xargs_input_and_loops_are_marked():
    rm = parse("ls | xargs -I{} rm -rf {}")[-1]
    assert rm.program == "rm" and "$XARGS_INPUT" in rm.argv[-1]
    (spawn,) = parse("while true; do sleep 1 & done")[1:]
    assert spawn.in_loop and spawn.background
