# check-staged: prove the uploaded file STAGED is the artifact (sha256 SHA) and runs here, as
# the kernel would run it; remove it if not.
actual=$(sha256sum "$STAGED" 2>/dev/null | cut -d' ' -f1)
if [ "$actual" != "$SHA" ]; then
    rm -f "$STAGED"; echo "actual=${actual:-missing}"; exit "$EXIT_MISMATCH"
fi
# What the kernel would run: `--version` below would not tell, since a shell (and execvp)
# runs a file the kernel refuses (ENOEXEC) as a script, where containerd-shim would fail.
refuse() { rm -f "$STAGED"; echo "$1"; exit "$EXIT_WONT_RUN"; }
case "$(od -An -tx1 -N4 "$STAGED" | tr -d ' \n')" in
7f454c46)
    machine=$(od -An -tu2 -j18 -N2 "$STAGED" | tr -d ' \n')
    case "$machine" in 62) elf=x86_64;; 183) elf=aarch64;; 3) elf=i386;; 40) elf=arm;;
        21) elf=ppc64;; 22) elf=s390x;; 243) elf=riscv64;; *) elf="machine $machine";; esac
    here=$(uname -m)
    case "$here" in i?86) here=i386;; armv*) here=arm;; ppc64le) here=ppc64;;
        arm64) here=aarch64;; esac
    [ "$elf" = "$here" ] || refuse "an ELF binary for $elf, but this host is $(uname -m)";;
2321*) ;;
*) refuse "not an executable: neither an ELF binary nor a #! script";;
esac
chmod 0755 "$STAGED" || { rm -f "$STAGED"; exit 1; }
if ! out=$(timeout -s KILL "$TIMEOUT" "$STAGED" --version 2>&1); then
    rm -f "$STAGED"; printf '%s\n' "$out" | head -c 400; exit "$EXIT_WONT_RUN"
fi
printf '%s\n' "$out"
