#!/bin/sh
# Builds the two shipped binaries exactly as the images carry them: glibc linked
# statically (+crt-static; no musl, per the project's target rule), the `dist`
# profile (fat LTO, one codegen unit, stripped, panic=abort), one cargo
# invocation so shared dependencies compile once. The Dockerfile's build stage
# and .ci/run both call this script, so CI tests the bytes the images ship.
#
# Output: target/x86_64-unknown-linux-gnu/dist/{queue-proxy,activator}
set -eu
cd "$(dirname "$0")/.."
RUSTFLAGS="${RUSTFLAGS:-} -C target-feature=+crt-static" \
  exec cargo build --locked --profile dist --target x86_64-unknown-linux-gnu \
    -p queue-proxy -p activator "$@"
