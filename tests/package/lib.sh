# Shared by the package tests: assertions that name what failed, and a
# bounded wait for a condition (never a bare sleep as synchronisation).
fail() {
    echo "FAIL: $*" >&2
    exit 1
}

expect() {  # expect "what" command...
    local what=$1
    shift
    "$@" || fail "$what"
}

expect_eq() {  # expect_eq "what" actual expected
    [ "$2" = "$3" ] || fail "$1: got '$2', expected '$3'"
}

wait_for() {  # wait_for SECONDS command...: polls every 0.1 s
    local deadline=$((SECONDS + $1))
    shift
    until "$@"; do
        [ "$SECONDS" -lt "$deadline" ] || return 1
        sleep 0.1
    done
}
