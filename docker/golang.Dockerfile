# Stands in for the official golang:1.26-bullseye image where no registry
# can be reached: Debian bullseye, a C compiler for cgo, the Go toolchain of
# the build machine, and the build machine's CA bundle (its network may
# reach the Go module proxy through a TLS-inspecting gateway).  The build
# context is made by "make image-golang"; only used when the image is missing.
FROM debian:bullseye
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
 && apt-get install -y --no-install-recommends gcc libc6-dev ca-certificates git \
 && rm -rf /var/lib/apt/lists/*
COPY go /usr/local/go
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PATH=/usr/local/go/bin:/go/bin:$PATH GOPATH=/go
WORKDIR /go
