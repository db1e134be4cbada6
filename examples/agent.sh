#!/bin/sh
# A stand-in for an AI coding agent: it reports progress through `concord report`, as a real agent
# (Claude Code, Codex, OpenCode, a script) would from inside a job, then finishes one way or another.
#   agent.sh STEPS OUTCOME [together]     OUTCOME: complete | fail | complete-and-idle
# With "together" and DEMO_AT (ms since the epoch) set, the agent finishes exactly at DEMO_AT, so
# several agents finish "at the same moment".
steps=${1:-3}
outcome=${2:-complete}
together=${3:-}
i=1
while [ "$i" -le "$steps" ]; do
  pct=$(( i * 90 / steps ))
  concord report progress "step $i of $steps" --progress "$pct" >/dev/null
  echo "[$CONCORD_JOB] step $i of $steps"
  sleep 0.4
  i=$(( i + 1 ))
done
if [ "$together" = together ] && [ -n "$DEMO_AT" ]; then
  node -e "setTimeout(() => {}, Math.max(0, $DEMO_AT - Date.now()))"
fi
case "$outcome" in
  fail)
    echo "[$CONCORD_JOB] tests failed: 3 of 120" >&2
    exit 1 ;;
  complete-and-idle)
    concord report completed "all green" --progress 100 >/dev/null
    echo "[$CONCORD_JOB] done; idling like an agent waiting for input"
    sleep 60 ;;
  *)
    concord report completed "done" --progress 100 >/dev/null ;;
esac
