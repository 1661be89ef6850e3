#!/usr/bin/env bash
# The packaged bash completion for kanbanctl: completes verbs, sub-verbs and
# the config's domains, and knows every verb `kanbanctl --help` lists.
#   completion_test.sh <packaging/kanbanctl.bash-completion> <kanbanctl>
set -uo pipefail
script=$1
kanbanctl=$2
fails=0
fail() { echo "FAIL: $*" >&2; fails=$((fails + 1)); }

if [ ! -r /usr/share/bash-completion/bash_completion ]; then
    echo "bash-completion is not installed (scripts/install-deps.sh)" >&2
    exit 1
fi
# shellcheck disable=SC1091
source /usr/share/bash-completion/bash_completion
# shellcheck disable=SC1090
source "$script"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cat >"$work/kanban.toml" <<'TOML'
[[domain]]
name = "payment"
[domain.settings]
name = "not a domain"
[[domain]]
name = "health_check"
[[schedule]]
name = "nightly"
domain = "payment"
cron = "0 3 * * *"
TOML

# complete "<words...>": COMPREPLY for the last word (may be empty).
complete_words() {
    COMP_WORDS=("$@")
    COMP_CWORD=$((${#COMP_WORDS[@]} - 1))
    COMP_LINE="${COMP_WORDS[*]}"
    COMP_POINT=${#COMP_LINE}
    COMPREPLY=()
    _kanbanctl kanbanctl "${COMP_WORDS[COMP_CWORD]}" "${COMP_WORDS[COMP_CWORD - 1]}"
    printf '%s\n' "${COMPREPLY[@]}" | sort | tr '\n' ' '
}

expect_eq() {  # what got want
    [ "$2" = "$3" ] || fail "$1: got '$2', want '$3'"
}

expect_eq "verbs" "$(complete_words kanbanctl "")" "--admin --config --help config dlq domain drain health log-level publish schedule stalled status "
expect_eq "domain sub-verbs" "$(complete_words kanbanctl domain "")" "pause resume "
expect_eq "domains of domain pause" "$(complete_words kanbanctl --config "$work/kanban.toml" domain pause "")" \
    "--json health_check payment "
expect_eq "dlq sub-verbs" "$(complete_words kanbanctl dlq "")" "list purge replay "
expect_eq "domains of dlq list" "$(complete_words kanbanctl --config "$work/kanban.toml" dlq list "")" \
    "--json --limit --reason health_check payment "
expect_eq "--domain" "$(complete_words kanbanctl --config "$work/kanban.toml" publish --domain p)" "payment "
expect_eq "--priority" "$(complete_words kanbanctl publish --priority "")" "high low normal "
expect_eq "schedule cancel" "$(complete_words kanbanctl --config "$work/kanban.toml" schedule cancel "")" "nightly "
expect_eq "log-level" "$(complete_words kanbanctl log-level w)" "warning "

# Every verb kanbanctl itself lists is completed.
verbs=$("$kanbanctl" --help | awk 'tolower($0) ~ /^subcommands:/ {on = 1; next} on && /^  [a-z]/ {print $1}')
[ -n "$verbs" ] || fail "no verbs in kanbanctl --help"
for v in $verbs; do
    grep -q "$v" <<<"$(complete_words kanbanctl "")" || fail "verb $v of kanbanctl --help is not completed"
done

[ "$fails" -eq 0 ] && echo "completion: all checks passed"
exit "$fails"
