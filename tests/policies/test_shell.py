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
    ("echo $(rm -rf /) | sh", ["echo", "rm", "sh"]),
    ("cat <(ls) > out", ["cat", "ls"]),
    ("echo `id`", ["echo", "id"]),
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
