# SmartStream on a Debian host (as root, or with the packages below installed):
#   make demo      the daemon installed in a virtual environment ($(VENV)), then the demo
#   make test      that environment plus the test set-up, then the tests
#   make install   the daemon alone, as a FreeSWITCH host runs it
#   make service   install + the systemd unit (ExecStart in $(VENV)), its user, the settings file
VENV ?= .venv
# The interpreter the environment is made from; empty: Debian's /usr/bin/python3 if
# there is one (a pyenv or conda on PATH must not be what makes the install work).
PYTHON ?=
# What building and running the daemon needs (ca-certificates: pip fetches from PyPI
# over TLS; procps: /bin/kill, the unit's ExecReload).
APT_PACKAGES = build-essential pkg-config python3 python3-dev python3-venv libnghttp2-dev libspeexdsp-dev ca-certificates procps
# What only the tests use: Node.js (interop and fault servers), the compose validator,
# openssl (test certificates), systemd-analyze (the unit file), espeak-ng (the bots' tests).
TEST_APT_PACKAGES = nodejs docker-compose openssl systemd espeak-ng
# pyproject.toml's optional extras the tests use, comma-separated (test,pipecat): add one here.
TEST_EXTRAS = test,bots
UNITDIR ?= /etc/systemd/system
PIP = $(VENV)/bin/python -m pip -q --disable-pip-version-check

# $(call apt,packages): installs those dpkg lacks; not root: names them and stops.
apt = missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
		if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
		else echo "please install (apt-get install): $$missing" >&2; exit 1; fi; \
	fi

.PHONY: install demo test service unit system-deps test-deps venv
install: system-deps venv
	$(PIP) install -e .

demo: install
	$(VENV)/bin/smartstream demo

test: system-deps test-deps venv
	$(PIP) install -e '.[$(TEST_EXTRAS)]'
	$(MAKE) -C csrc
	npm ci --prefix tests/node_server --no-audit --no-fund --silent   # the Node.js AI server of the interop tests
	$(VENV)/bin/python -m pytest $(PYTEST_ARGS)

system-deps:
	@$(call apt,$(APT_PACKAGES))

test-deps:
	@$(call apt,$(TEST_APT_PACKAGES))
	@command -v npm >/dev/null || { $(call apt,npm); }   # nodesource's nodejs brings its own

venv:
	@[ -x $(VENV)/bin/python ] || { py="$(PYTHON)"; [ -n "$$py" ] || py=$$(command -v /usr/bin/python3 || command -v python3); \
		echo "creating $(VENV) with $$py"; "$$py" -m venv $(VENV); }

# The unit with ExecStart in this install's environment (systemd wants an absolute path).
unit:
	sed 's|^ExecStart=[^ ]*/smartstream |ExecStart=$(abspath $(VENV))/bin/smartstream |' \
		packaging/smartstream.service > $(UNITDIR)/smartstream.service

# The service user, FreeSWITCH's group if FreeSWITCH is not installed yet, and the
# settings file; an existing settings file is kept.
service: install unit
	getent group freeswitch >/dev/null || groupadd --system freeswitch
	id -u smartstream >/dev/null 2>&1 || useradd --system --user-group --no-create-home --shell /usr/sbin/nologin smartstream
	install -d -m 0750 -g smartstream /etc/smartstream
	[ -e /etc/smartstream/smartstream.toml ] || install -m 0640 -g smartstream packaging/smartstream.toml /etc/smartstream/
	systemctl daemon-reload 2>/dev/null || echo "systemd is not running: start smartstream.service once it is"

# The bots (docs/bots.md): their extra and espeak-ng.
.PHONY: bots demo-bot
bots: venv
	@$(call apt,espeak-ng)
	$(PIP) install -e '.[bots]'

# The offline bot answers a question spoken by espeak-ng on a simulated call, with its latency.
demo-bot: bots
	$(MAKE) -C csrc
	$(VENV)/bin/python examples/offline_demo.py
