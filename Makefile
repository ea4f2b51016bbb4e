# SmartStream: `make demo` installs everything and runs the demo; `make install` only installs.
PYTHON ?= python3
APT_PACKAGES = build-essential pkg-config python3-dev libnghttp2-dev libspeexdsp-dev sox
# What the tests use besides: the compose validator, openssl for test certificates, Node for interop.
APT_PACKAGES += docker-compose openssl nodejs

.PHONY: install demo system-deps
install: system-deps
	$(PYTHON) -m pip install -q -e '.[test]'
	$(MAKE) -C csrc
	npm ci --prefix tests/node_server --no-audit --no-fund --silent   # the independent Node.js AI server of the interop tests

# Debian packages the build needs; skipped when they are all there (or not root).
system-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq $$missing; \
		else echo "please install: $$missing" >&2; exit 1; fi; \
	fi
	@command -v npm >/dev/null || apt-get install -y -qq npm   # nodesource's nodejs brings its own

demo: install
	smartstream demo
