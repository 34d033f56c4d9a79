# Gatehouse tasks. `just --list` shows them.
set shell := ["bash", "-euo", "pipefail", "-c"]

fuzztime := env_var_or_default("FUZZTIME", "30s")

default: test

# Build the server binary into bin/gatehouse.
build:
    go build -o bin/gatehouse ./cmd/gatehouse

# Build and run the server.
run: build
    ./bin/gatehouse serve

# Install the Debian packages the tests need (same script as CI).
deps:
    bash .ci/deps.sh

# With CI=true an interop test whose client is missing fails instead of skipping.
# vet and the full test suite with the race detector, interop clients included.
test: deps
    go vet ./...
    go test -race -count=1 -timeout 20m ./...

# gofmt must list nothing; go vet must pass.
lint:
    #!/usr/bin/env bash
    set -euo pipefail
    unformatted=$(gofmt -l .)
    if [ -n "$unformatted" ]; then echo "gofmt -l lists:"; echo "$unformatted"; exit 1; fi
    go vet ./...

# Run every Fuzz* target for FUZZTIME (default 30s) each.
fuzz:
    #!/usr/bin/env bash
    set -euo pipefail
    listing=$(go test -list '^Fuzz' ./...)
    targets=()
    names=()
    # `go test -list` prints a package's matching names, then "ok <pkg> <time>".
    while IFS= read -r line; do
      case "$line" in
        Fuzz*) names+=("$line") ;;
        ok*)
          pkg=$(awk '{print $2}' <<<"$line")
          for n in "${names[@]}"; do targets+=("$pkg $n"); done
          names=()
          ;;
      esac
    done <<<"$listing"
    if [ "${#targets[@]}" -eq 0 ]; then echo "no fuzz targets"; exit 0; fi
    for t in "${targets[@]}"; do
      read -r pkg name <<<"$t"
      echo "== fuzz $pkg $name for {{fuzztime}}"
      go test -run '^$' -fuzz "^${name}\$" -fuzztime "{{fuzztime}}" "$pkg"
    done

# Benchmarks, no tests. deps installs Prosody and ejabberd (Debian packages) like CI;
# testdata/bench/run.sh starts them and Gatehouse one after another on loopback and writes
# its table into docs/performance.md (BENCH_SIZE=tiny: a quick run of the whole flow).
# Go microbenchmarks, then the side-by-side load run against Prosody and ejabberd.
bench: deps
    #!/usr/bin/env bash
    set -uo pipefail
    # A failing microbenchmark does not skip the side-by-side run; the recipe fails at the end.
    go test -run '^$' -bench . -benchmem ./...; micro=$?
    bash testdata/bench/run.sh; side=$?
    if [ "$micro" -ne 0 ]; then echo "bench: a Go microbenchmark failed (see above)" >&2; fi
    if [ "$micro" -ne 0 ] || [ "$side" -ne 0 ]; then exit 1; fi

# Only the interop tests (real clients against an in-process server), verbose.
interop: deps
    go test -race -count=1 -v -timeout 10m ./xmpp/interop/
