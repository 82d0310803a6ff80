# syntax=docker/dockerfile:1
# One image for every Tollgate role (gateway, aggregator, control; all three by default) and for
# the simulator. Build:  docker build -t tollgate .
# Run:    docker run -p 8080:8080 -v tollgate-data:/data tollgate                 (embedded, every role)
#         docker run … tollgate --roles gateway                                    (with KAFKA_BROKERS, REDIS_URL, …)
#         docker run … tollgate reconcile --url http://aggregator:8080             (operator commands)
# The TypeScript runs as is (Node 24 type stripping): there is no build step, only dependencies.

ARG NODE_IMAGE=node:24-bookworm-slim

# ---- dependencies: production only, from the lockfile ------------------------------------------
FROM ${NODE_IMAGE} AS deps
WORKDIR /app
# The manifests alone, so this layer is rebuilt only when dependencies change. Every workspace's
# package.json is needed: npm ci checks the lockfile against all of them.
COPY package.json package-lock.json .npmrc ./
COPY libs/anthropic/package.json libs/anthropic/
COPY libs/config/package.json libs/config/
COPY libs/events/package.json libs/events/
COPY libs/http/package.json libs/http/
COPY libs/keys/package.json libs/keys/
COPY libs/ledger/package.json libs/ledger/
COPY libs/limits/package.json libs/limits/
COPY libs/openai-compat/package.json libs/openai-compat/
COPY libs/pool/package.json libs/pool/
COPY libs/pricing/package.json libs/pricing/
COPY libs/telemetry/package.json libs/telemetry/
COPY libs/warehouse/package.json libs/warehouse/
COPY libs/webhooks/package.json libs/webhooks/
COPY services/aggregator/package.json services/aggregator/
COPY services/control/package.json services/control/
COPY services/gateway/package.json services/gateway/
COPY services/simulator/package.json services/simulator/
COPY services/tollgate/package.json services/tollgate/
# The root postinstall (scripts/node24.mjs --install) finds that this node IS 24 and downloads
# nothing into .tools/. chDB's native library comes as the optional package
# @chdb/lib-linux-x64-gnu (glibc, x64), which npm ci installs on this platform.
COPY scripts/node24.mjs scripts/
RUN npm ci --omit=dev --no-audit --no-fund \
 && test "$(node -p 'process.versions.node.split(".")[0]')" = 24 \
 && test ! -e .tools \
 && npm cache clean --force

# ---- runtime ------------------------------------------------------------------------------------
FROM ${NODE_IMAGE}
# tini is PID 1: it forwards SIGTERM/SIGINT to node (which drains in-flight streams for up to
# SHUTDOWN_GRACE_MS) and reaps zombies. Node as PID 1 would ignore signals it has no handler for.
RUN apt-get update \
 && apt-get install -y --no-install-recommends tini \
 && rm -rf /var/lib/apt/lists/*
ENV NODE_ENV=production \
    DATA_DIR=/data \
    PORT=8080
WORKDIR /app
COPY --from=deps /app/node_modules ./node_modules
COPY package.json ./
COPY libs ./libs
COPY services ./services
# Non-root: the image's own `node` user (uid 1000) owns only the data directory.
RUN mkdir -p /data && chown node:node /data
USER node
VOLUME ["/data"]
EXPOSE 8080
# Liveness: /health answers while the process serves HTTP (readiness is /ready, for load balancers
# and Kubernetes). No curl in the slim image: node's own fetch.
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:'+(process.env.PORT||8080)+'/health').then(r=>process.exit(r.ok?0:1),()=>process.exit(1))"]
# Exec form all the way: tini → node, no shell in between to swallow signals. Arguments given to
# `docker run IMAGE …` (or compose `command:`) go to the program: --roles LIST, or a command.
ENTRYPOINT ["/usr/bin/tini", "--", "node", "services/tollgate/src/main.ts"]
CMD []
