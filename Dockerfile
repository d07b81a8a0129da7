# syntax=docker/dockerfile:1
# Build: one static binary, no cgo.
FROM golang:1.26-bookworm AS build
WORKDIR /src
COPY go.mod go.sum ./
RUN go mod download
COPY . .
RUN CGO_ENABLED=0 go build -trimpath -ldflags="-s -w" -o /out/pushdesk .

# Run: distroless static image (CA certificates, tzdata, a non-root user).
FROM gcr.io/distroless/static-debian12:nonroot
COPY --from=build /out/pushdesk /pushdesk
ENV PUSHDESK_ADDR=:8080
EXPOSE 8080
USER nonroot:nonroot
# CMD only (no ENTRYPOINT): fly.toml's process and release commands replace
# it whole, as does `docker run image /pushdesk migrate`.
CMD ["/pushdesk", "serve"]
