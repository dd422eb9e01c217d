# probe-write: why an upload to STAGED failed, in the shell's words (full, read-only, ...).
head -c 65536 /dev/zero > "$STAGED"; rc=$?; rm -f "$STAGED"; exit "$rc"
