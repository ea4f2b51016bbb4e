# SmartStream in a container: the gateway daemon, the example AI server
# (examples/echo_server.py) and the media simulator (csrc/build/mediasim) all
# run from this one image (see docker-compose.yml).
#
# It installs exactly as the README's set-up does: `make install` from the
# top-level Makefile (its APT_PACKAGES, a virtual environment, `pip install -e .`),
# then the C build of the simulator (`make -C csrc`). The Makefiles are the single
# source; tests/test_deploy.py checks that this file calls them and installs
# nothing else of the project's.
FROM debian:bookworm-slim

ENV DEBIAN_FRONTEND=noninteractive \
    PYTHONUNBUFFERED=1 \
    VIRTUAL_ENV=/opt/venv \
    PATH=/opt/venv/bin:$PATH

# What `make install` itself needs before it can run; it apt-installs the rest.
RUN apt-get update -qq \
 && apt-get install -y -qq --no-install-recommends make \
 && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/smartstream
COPY . .
# Build artefacts of the host's checkout are rebuilt here, not reused.
RUN rm -rf build csrc/build smartstream/*.so .venv \
 && make install VENV="$VIRTUAL_ENV" \
 && make -C csrc \
 && rm -rf /var/lib/apt/lists/*

# /metrics, /status, /health: on every interface inside the container, so
# Prometheus (another container) can scrape it. Publish it no further than needed.
ENV SMARTSTREAM_ADMIN_LISTEN=0.0.0.0:9464
EXPOSE 9464
STOPSIGNAL SIGTERM
CMD ["smartstream", "run"]
