# esia-broker — see README.md.
GO ?= go
STATICCHECK ?= $(GO) run honnef.co/go/tools/cmd/staticcheck@v0.8.2

.PHONY: dev test lint build clean fuzz bench mutate screenshots

FUZZTIME ?= 10s
FUZZ_TARGETS = FuzzNormalizeSNILS:./linking FuzzRosterCSV:./linking FuzzNormalize:./invites FuzzVerifyAccessToken:./esia FuzzTimestampAndDates:./esia

## dev: run the broker with the embedded store and the demo relying party on http://127.0.0.1:8080
dev:
	$(GO) build -o bin/esia-broker ./cmd/esia-broker
	exec ./bin/esia-broker dev

## test: prepare the machine (PostgreSQL, packages) and run every test suite with the race detector
test:
	./scripts/test-env.sh
	$(GO) test -race -count=1 -timeout 20m $(TESTFLAGS) ./...

## lint: gofmt, go vet and staticcheck
lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(STATICCHECK) ./...

## fuzz: run every fuzz target for $(FUZZTIME) (CI runs them briefly)
fuzz:
	@for t in $(FUZZ_TARGETS); do name=$${t%%:*}; pkg=$${t#*:}; echo "fuzz $$name ($$pkg, $(FUZZTIME))"; \
		$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; done

## bench: the load benchmark of complete brokered logins (see docs/BENCHMARKS.md)
bench:
	./scripts/bench.sh
	$(GO) test -run '^$$' -bench . -benchtime 2s ./esia/gost/ ./broker/ ./linking/ ./invites/

## mutate: mutation testing of linking, invites and storage (gremlins; minutes, not in CI)
mutate:
	./scripts/mutate.sh

## screenshots: regenerate docs/screenshots/ (the main journey at 360 px) from the browser tests
screenshots:
	./scripts/screenshots.sh

## build: the binary in ./bin
build:
	$(GO) build -o bin/esia-broker ./cmd/esia-broker

clean:
	rm -rf bin
