# Shared by tests/gpu/e2e.sh and e2e_quant.sh (sourced after they set py, root,
# results, log and parts; e2e.sh may set the array strict): the calls of
# check_e2e.py and the small helpers around them.

# chk SUBCOMMAND ARGS... (a compare's rerun command comes last, after --):
# a checker that writes no verdict (a usage error, a crash) is recorded as a FAIL
chk() {
  local sub=$1 n0 rc part=checker case=$1 a prev=; shift
  n0=$(wc -l < "$results")
  "$py" "$root/tests/gpu/check_e2e.py" "$sub" --results "$results" ${strict[@]+"${strict[@]}"} "$@" >> "$log" 2>&1
  rc=$?
  [ "$sub" = record ] || [ "$(wc -l < "$results")" -gt "$n0" ] && return $rc
  for a in "$@"; do
    [ "$a" = -- ] && break
    [ "$prev" = --part ] && part=$a
    [ "$prev" = --case ] && case=$a
    prev=$a
  done
  "$py" "$root/tests/gpu/check_e2e.py" record --results "$results" --part "$part" --case "$case" --status FAIL \
    --detail "check_e2e.py $sub wrote no verdict (rc $rc): see log.txt" >> "$log" 2>&1
  printf '%-4s  %-9s %s  %s\n' FAIL "$part" "$case" "check_e2e.py $sub wrote no verdict (rc $rc)"
  return 1
}
record() {  # record PART CASE STATUS DETAIL
  chk record --part "$1" --case "$2" --status "$3" --detail "$4"
  printf '%-4s  %-9s %s  %s\n' "$3" "$1" "$2" "$4"
}
show_last() { "$py" "$root/tests/gpu/check_e2e.py" last --results "$results" "$@"; }
has_part() { [[ $parts == *",$1,"* ]]; }
now() { date +%s.%N; }
secs() { awk -v a="$1" -v b="$(now)" 'BEGIN{printf "%.1f", b - a}'; }
