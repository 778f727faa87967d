# The commands the README and CI use. `demo` and `test` install what a fresh
# Debian machine lacks first (deploy/deps.sh is idempotent and quick when
# nothing is missing).
.PHONY: deps deps-demo demo test lint bench build install uninstall

# `sudo make …` resets PATH to sudo's secure_path, which has no cargo: add
# the toolchain rustup installed for root or for the user who ran sudo.
SUDO_HOME := $(if $(SUDO_USER),$(shell getent passwd $(SUDO_USER) | cut -d: -f6))
export PATH := $(PATH):$(HOME)/.cargo/bin$(if $(SUDO_HOME),:$(SUDO_HOME)/.cargo/bin)
ifneq ($(SUDO_HOME),)
ifeq ($(wildcard $(HOME)/.rustup),)
export RUSTUP_HOME ?= $(SUDO_HOME)/.rustup
export CARGO_HOME ?= $(SUDO_HOME)/.cargo
endif
endif

deps:
	deploy/deps.sh

deps-demo:
	deploy/deps.sh --demo

build:
	cargo build --workspace --bins

# The main job on an embedded default (needs root: it starts a private sshd).
demo: deps-demo build
	./target/debug/demo

# The whole test suite. Integration tests run the real binaries, so build them first.
test: deps build
	cargo test --workspace --no-fail-fast

lint:
	cargo fmt --all -- --check
	cargo clippy --workspace --all-targets -- -D warnings

# Benchmarks print numbers (see BENCHMARKS.md); they need the release binaries.
bench:
	cargo build --release --workspace --bins
	cargo bench --workspace

# Release binaries, system users, /etc/infrabroker and the systemd units.
install:
	deploy/install.sh

uninstall:
	deploy/install.sh --uninstall
