# write-record: replace the host-side record with RECORD (JSON) atomically. The JSON travels
# inside the script, not on stdin: a controller killed mid-send would leave `cat` a short read.
t=$(mktemp "$RECORD_PATH.XXXXXX") || exit 1
if printf '%s\n' "$RECORD" > "$t" && sync "$t" && mv -f "$t" "$RECORD_PATH"; then
    echo record=written
else
    rm -f "$t"; exit 1
fi
