# swap: the one rename that changes what every new container gets: STAGED over TARGET.
mv -f "$STAGED" "$TARGET" || exit 1
echo "sha256=$(sha256sum "$TARGET" | cut -d' ' -f1)"
