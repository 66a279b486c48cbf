# syntax=docker/dockerfile:1
# vigil: multi-stage build on Node LTS (slim), running as the non-root `node` user.

FROM node:22-bookworm-slim AS build
WORKDIR /app
COPY package.json package-lock.json ./
RUN npm ci --ignore-scripts
COPY tsconfig.json tsconfig.build.json ./
COPY src ./src
RUN npm run build && npm prune --omit=dev

FROM node:22-bookworm-slim
# iputils-ping for the ping command (its binary carries cap_net_raw, so it works as non-root), fping
# for batched pings, the basic Nagios plugins for exec checks, and tini as PID 1 to reap the orphans
# of plugins killed at their timeout.
RUN apt-get update \
 && apt-get install -y --no-install-recommends iputils-ping fping monitoring-plugins-basic tini \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /app
ENV NODE_ENV=production \
    VIGIL_HOST=0.0.0.0
COPY --from=build /app/node_modules ./node_modules
COPY --from=build /app/dist ./dist
COPY package.json ./
COPY config ./config
RUN mkdir -p /app/data && chown node:node /app/data
USER node
VOLUME ["/app/data"]
EXPOSE 9470
HEALTHCHECK --interval=30s --timeout=5s --start-period=15s --retries=3 \
  CMD ["node", "-e", "fetch('http://127.0.0.1:9470/healthz').then((r) => process.exit(r.ok ? 0 : 1), () => process.exit(1))"]
ENTRYPOINT ["/usr/bin/tini", "--", "node", "dist/cli.js"]
CMD ["run", "-c", "config/vigil.yaml"]
