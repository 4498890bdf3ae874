# modelplane's images, from one Dockerfile (deploy/README.md, docs/decisions.md "Deployment"):
#
#   docker build --target modelplane -t modelplane:dev .        # api, gateway, worker, migrate, keys
#   docker build --target agent      -t modelplane-agent:dev .  # the node agent of a GPU host
#
# The first is one static binary (CGO_ENABLED=0: NVML is the only cgo user, and without cgo
# the binary says "no GPUs" instead) on a distroless base, running as a user without rights.
# The second is the same program built with cgo, so that the agent loads NVML at run time,
# on Debian with the Python that python-runtime models run on; it starts as root so that it
# can run each model server as a user of its own (--replica-uids).
ARG GO_IMAGE=golang:1.27.3-trixie
ARG STATIC_BASE=gcr.io/distroless/static-debian13:nonroot
ARG AGENT_BASE=debian:trixie-slim

FROM ${GO_IMAGE} AS build
ENV GOTOOLCHAIN=go1.27.3 CGO_CFLAGS=-Wno-deprecated-declarations GOFLAGS=-trimpath
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -ldflags='-s -w' -o /out/static/modelplane ./cmd/modelplane
RUN CGO_ENABLED=1 go build -ldflags='-s -w' -o /out/cgo/modelplane ./cmd/modelplane

FROM ${STATIC_BASE} AS modelplane
COPY --from=build /out/static/modelplane /usr/local/bin/modelplane
# distroless's "nonroot"; the Helm chart and the Compose file run it as this user too.
USER 65532:65532
EXPOSE 8080 8081 9090
ENTRYPOINT ["/usr/local/bin/modelplane"]
CMD ["api"]

FROM ${AGENT_BASE} AS agent
RUN apt-get update \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      ca-certificates python3 python3-venv python3-pip \
 && rm -rf /var/lib/apt/lists/*
COPY --from=build /out/cgo/modelplane /usr/local/bin/modelplane
ENV MODELPLANE_PYTHON=/usr/bin/python3 \
    MODELPLANE_AGENT_STATE_DIR=/var/lib/modelplane/agent
RUN mkdir -p /var/lib/modelplane/agent && chmod 0755 /var/lib/modelplane /var/lib/modelplane/agent
EXPOSE 7070
ENTRYPOINT ["/usr/local/bin/modelplane"]
CMD ["agent"]
