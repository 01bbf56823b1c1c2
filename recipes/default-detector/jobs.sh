# Background jobs of the default-detector recipes (sourced by package.sh and telephone_eval.sh): at most two
# at a time (one per core of the 2-core machine), and a failed job stops the recipe under `set -e`
# (`wait -n` and `wait PID` return the job's status; a bare `wait` would return 0 and hide it).
throttle() { if [ "$(jobs -pr | wc -l)" -ge 2 ]; then wait -n; fi; }
wait_all() { for p in $(jobs -p); do wait "$p"; done; }
