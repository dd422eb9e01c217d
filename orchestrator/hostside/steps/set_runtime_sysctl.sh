# set-runtime-sysctl: the runtime value of SYSCTL_KEY to VALUE (the files are not touched).
printf '%s\n' "$VALUE" > "$SYSCTL_PROC" || exit 1
echo "runtime=$(cat "$SYSCTL_PROC")"
