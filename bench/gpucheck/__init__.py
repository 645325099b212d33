"""The parts of bench/gpu_check.py: training copies side by side (training), the correctness
checks (checks) and host-sync counting (syncs), the speed measures (measures), and the
report they all add to (results). Every check and measure takes its device."""
