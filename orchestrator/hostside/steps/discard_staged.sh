# discard-staged: remove this run's staged copy of the artifact, STAGED.
rm -f "$STAGED"
