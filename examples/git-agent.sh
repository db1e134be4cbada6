#!/bin/sh
# A stand-in for a coding agent in a git plan: it runs in its own worktree ($CONCORD_WORKTREE, on branch
# $CONCORD_BRANCH), edits files there, and reports. It does not commit: concord commits what it left.
set -e
concord report working "in $(basename "$CONCORD_WORKTREE") on $CONCORD_BRANCH" >/dev/null
sleep 0.5
case "$CONCORD_JOB" in
  greet)
    mkdir -p src
    printf '#!/bin/sh\necho "hello, ${1:-world}"\n' > src/greet.sh
    msg="src/greet.sh greets its first argument" ;;
  tests)
    test -f src/greet.sh # its dependency's work is in its worktree
    printf 'set -e\nsh src/greet.sh Ada | grep -qx "hello, Ada"\necho "tests pass"\n' > test.sh
    msg="test.sh checks the greeting" ;;
  docs)
    mkdir -p docs
    printf '# Usage\n\n    sh src/greet.sh NAME\n' > docs/usage.md
    printf '# greeter\n\nSays hello. See docs/usage.md.\n' > README.md
    msg="docs/usage.md and README" ;;
esac
echo "[$CONCORD_JOB] $msg"
concord report completed "$msg" >/dev/null
