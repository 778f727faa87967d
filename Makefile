# The commands the README and CI use.
.PHONY: demo test lint bench build

build:
	cargo build --workspace --bins

# The main job on an embedded default (needs root: it starts a private sshd).
demo: build
	./target/debug/demo

# The whole test suite. Integration tests run the real binaries, so build them first.
test: build
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks print numbers (see BENCHMARKS.md); they need the release binaries.
bench:
	cargo build --release --workspace --bins
	cargo bench --workspace
