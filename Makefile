# Fanout: the two commands a newcomer needs are `make dev` and `make test`.
GO ?= go
# Debian packages the suite needs: Chromium for the browser tests; an
# outside WHIP publisher (simple-whip-client with GStreamer's encoders and
# ICE) and a C compiler for its libgupnp-igd stub, for the WHIP tests;
# ffprobe (ffmpeg) to check the HLS egress's output, and nginx as the
# caching proxy in front of it; iproute2 and nftables for the chaos test's
# namespaced subscribers (a UDP blackhole and a crawling link).
APT_PACKAGES ?= chromium simple-whip-client gstreamer1.0-nice gstreamer1.0-plugins-base \
	gstreamer1.0-plugins-good gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly gcc ffmpeg nginx \
	iproute2 nftables

.PHONY: dev test deps lint unit interop browser bench bench-hls fuzz fuzz-long soak congestion

# Start a single node with the embedded defaults (API key devkey / secret).
dev:
	$(GO) run ./cmd/fanout --dev

# Run the whole test suite, installing what it needs first.
test: deps lint unit interop browser

# Go modules come through the module proxy on first use; system packages the
# suite needs are installed here (as root, with apt) when missing.
deps:
	./scripts/install-deps.sh $(APT_PACKAGES)

lint:
	@out="$$(git ls-files '*.go' | xargs gofmt -l)"; if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	cd interop && $(GO) vet ./...

# One package at a time (-p 1): the HLS egress's load tests (200 clients
# behind nginx) and the signaling package's real-time media tests would
# otherwise share 2 cores, and starve each other's timings. The congestion
# tests run once more without the race detector, whose slowdown starves
# their in-process receivers (the link-shape matrix and the jitter test
# run only then).
unit:
	$(GO) test -race -count=1 -p 1 -timeout 15m ./...
	$(GO) test -count=1 -run '^TestCongestion' -timeout 10m ./signaling/

# LiveKit's own Go SDK against a real fanout binary. Includes the short form
# of the congestion matrix (one tbf shape, 10 s window; skipped unless root).
interop:
	cd interop && $(GO) test -count=1 -timeout 10m ./...

# The web SDK's unit tests, then the demo page and livekit-client in
# headless Chromium against a real fanout binary (with the short form of the
# congestion matrix, test/e2e/congestion-matrix.test.mjs).
browser:
	cd webclient && npm ci --no-audit --no-fund && npm run typecheck && npm run test:unit && npm run test:e2e

# Issue 13's congestion matrix in network namespaces (root, ip, tc): a
# server-sdk-go and a Chromium (livekit-client) subscriber behind tc tbf
# links (700 kbit/s x burst 2/16/32 kB x queue 50/100 ms, 300 and
# 1,200 kbit/s, the 100 kbit/s pause), 30 s windows, one congestion-metric
# line per run. LIVEKIT_SERVER=/path/to/livekit-server also runs every case
# against livekit-server (send-side BWE) for the anchor (BENCHMARKS.md).
# About 9 minutes per subscriber kind and server. First, the whole vnet
# matrix (every rate x bucket x queue of the issue, a Go subscriber over
# pion's virtual network, two shapes at a time, about 20 minutes); make
# unit runs three of its shapes.
congestion:
	FANOUT_CC_MATRIX=full FANOUT_CC_PARALLEL=2 $(GO) test -count=1 -run '^TestCongestion(Matrix|JitterIsNotCongestion)$$' -v -timeout 60m ./signaling/
	cd interop && FANOUT_CC=full $(GO) test -count=1 -run '^TestCongestion$$' -v -timeout 60m .
	cd webclient && FANOUT_CC=full node --test --test-concurrency=1 test/e2e/congestion-matrix.test.mjs

# The long soak: 1,000 join/publish/subscribe/leave cycles from 20 clients,
# under the race detector (goroutines and Go heap checked), then without it
# (RSS checked: the race detector's shadow memory only grows). make unit
# runs a 200-cycle version under the race detector.
soak:
	FANOUT_SOAK_CYCLES=1000 FANOUT_SOAK_CLIENTS=20 $(GO) test -race -count=1 -run '^TestSoak$$' -v -timeout 60m ./signaling/
	FANOUT_SOAK_CYCLES=1000 FANOUT_SOAK_CLIENTS=20 $(GO) test -count=1 -run '^TestSoak$$' -v -timeout 60m ./signaling/

bench:
	$(GO) test -run xxx -bench . -benchmem ./sfu/ ./simulcast/
	$(GO) test -run xxx -bench JitterBuffer -benchmem ./egress/

# 1,000 LL-HLS viewers against one egress for 10 s (BENCHMARKS.md).
bench-hls:
	$(GO) test -run xxx -bench HLSViewers -benchtime 1x ./egress/

# Every fuzz target for 30 s (fuzz) or 10 minutes (fuzz-long, which also
# copies the corpus it found into testdata/fuzz to be committed); both print
# a table of executions and crashes (BENCHMARKS.md keeps the long one).
fuzz:
	./scripts/fuzz.sh

fuzz-long:
	FUZZTIME=10m KEEP_CORPUS=1 ./scripts/fuzz.sh

# Rebuild the TypeScript SDK's demo pages into webclient/dist (committed and
# embedded by the server, so plain `go build` needs no Node).
.PHONY: web
web:
	cd webclient && npm ci && npm run build
