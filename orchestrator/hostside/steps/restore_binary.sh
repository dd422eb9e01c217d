# restore-binary: put the backed-up runc SHA back at TARGET, by a copy to a temporary name
# beside it and a rename.
src=$BACKUP_DIR/$SHA
[ -f "$src" ] || { echo "error=no backup $src"; exit 1; }
tmp=$(mktemp "${TARGET%/*}/.runc-rollout-restore.XXXXXX") || exit 1
cp -p "$src" "$tmp" || { rm -f "$tmp"; exit 1; }
[ "$(sha256sum "$tmp" | cut -d' ' -f1)" = "$SHA" ] || { rm -f "$tmp"; exit "$EXIT_MISMATCH"; }
mv -f "$tmp" "$TARGET" || { rm -f "$tmp"; exit 1; }
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
