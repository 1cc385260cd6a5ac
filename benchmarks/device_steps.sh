# Shared by the device scripts (device_run.sh, device_train.sh); source it.
# step NAME SECONDS CMD...: runs CMD with a time limit, logs to $OUT/NAME.log,
# prints its exit code, time and the log's tail; a failing step does not stop
# the next one.
step() {
  local name=$1 limit=$2; shift 2
  local t0=$SECONDS
  timeout "$limit" "$@" > "$OUT/$name.log" 2>&1
  echo "== $name: rc $? in $((SECONDS - t0)) s (limit $limit)"
  tail -n "${STEP_TAIL:-25}" "$OUT/$name.log"
}
