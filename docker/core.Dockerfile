# The Go core library, pg_keeper_go_core.so, and the command pg_keeper_go,
# built once for every image (the library's glibc matters, see below):
# on bullseye, the oldest glibc of the supported Debian releases, so that
# the same file loads on bullseye, bookworm, trixie and sid.
FROM golang:1.26-bullseye
ARG GOPROXY=https://proxy.golang.org,direct
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY gosrc gosrc
COPY sql sql
COPY extension/pg_keeper_go_host.h extension/
# Asynchronous preemption off: see the Makefile and docs/design.md, "The C/Go boundary".
RUN CGO_ENABLED=1 go build -buildmode=c-shared -trimpath \
      -ldflags '-X=runtime.godebugDefault=asyncpreemptoff=1' \
      -o /out/pg_keeper_go_core.so ./gosrc/core \
 && rm /out/pg_keeper_go_core.h \
 && CGO_ENABLED=0 go build -trimpath -o /out/pg_keeper_go ./gosrc/cmd/pg_keeper_go
