#!/usr/bin/env bash
# The CI recipe's steps, as one script: docs/ci/workflow.yml runs it, and
# tests/integration/test_ci_recipe.py runs this same file against a loopback registry and cache.
#
#   1. envnix.lock still matches build.envd (exit 5 otherwise);
#   2. build from the lock, substituting from the binary cache CACHE_DIR when an earlier run
#      left one there (a run that changed nothing builds nothing);
#   3. push to the registry, verified by digest, when credentials are given, then
#      `envnix verify` the pushed tag against the lock (prints "verified sha256:...");
#   4. add this build to CACHE_DIR, signed, for the next run.
#
# Environment (only IMAGE is required):
#   CONTEXT           directory holding build.envd and envnix.lock (default: .)
#   REGISTRY          registry host[:port] (default: localhost, i.e. build without pushing)
#   IMAGE             repository name, e.g. team/app
#   TAG               image tag (default: the commit, git rev-parse --short=12 HEAD)
#   CACHE_DIR         binary cache directory the CI keeps between runs (optional)
#   CACHE_PUBLIC_KEY  NAME:BASE64, the public half of the cache's key (with CACHE_DIR)
#   CACHE_KEY_FILE    the secret half (a file); without it the cache is read, not written
#   ENVNIX_REGISTRY_CREDS  USER:PASSWORD; without it the image is built but not pushed
#   STORE             Nix store to build in (default: the machine's; tests give a fresh one)
# plus what envnix itself reads (ENVNIX_REGISTRY_CERT_DIR, ENVNIX_REGISTRY_TLS_VERIFY, ...).
set -euo pipefail

context=${CONTEXT:-.}
: "${IMAGE:?set IMAGE to the repository name, e.g. team/app}"
tag=${TAG:-$(git -C "$context" rev-parse --short=12 HEAD)}
ref="${REGISTRY:-localhost}/$IMAGE:$tag"
store=()
if [ -n "${STORE:-}" ]; then
  store=(--store "$STORE")
fi

envnix lock --check "$context"

cache=()
if [ -n "${CACHE_DIR:-}" ] && [ -f "$CACHE_DIR/nix-cache-info" ]; then
  : "${CACHE_PUBLIC_KEY:?set CACHE_PUBLIC_KEY to the public half of the cache key (NAME:BASE64)}"
  cache=(--substituters "file://$CACHE_DIR" --nix-option trusted-public-keys "$CACHE_PUBLIC_KEY")
fi
# --locked: never re-resolve in CI; the same lock gives the same digests anywhere.
# --no-load: CI pushes the image; loading it into the runner's engine would only cost time.
envnix build --locked --no-load "$context" -t "$ref" "${store[@]}" "${cache[@]}"

if [ -n "${ENVNIX_REGISTRY_CREDS:-}" ]; then
  envnix push -p "$context" "${store[@]}"
  # What a reviewer runs anywhere: rebuild from the lock, compare with what the tag serves
  # (here the build above is reused, so nothing is built twice).
  envnix verify "$context" "$ref" "${store[@]}" "${cache[@]}"
else
  echo "no registry credentials (fork pull request?): not pushing"
fi

if [ -n "${CACHE_DIR:-}" ] && [ -n "${CACHE_KEY_FILE:-}" ]; then
  envnix cache push "file://$CACHE_DIR" -p "$context" --sign-key "$CACHE_KEY_FILE" "${store[@]}"
fi
